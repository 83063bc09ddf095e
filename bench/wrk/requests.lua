-- wrk script: every request is drawn uniformly at random from a pre-built list.
--
-- BENCH_REQUESTS names a Lua file (written by the harness) returning
-- { {headers = {...}, body = "..."}, ... }. Requests are formatted once in init(), so
-- picking one costs a random number and a table index (S4 spreads traffic over 100 tenants by
-- giving each its own Host and API key). done() prints one machine-readable line.

local pool = {}

function init(args)
  local specs = dofile(os.getenv("BENCH_REQUESTS"))
  for i, spec in ipairs(specs) do
    pool[i] = wrk.format("POST", "/call", spec.headers, spec.body)
  end
  math.randomseed(os.time() + tonumber(tostring(pool):match("0x(%x+)") or "0", 16) % 100000)
end

function request()
  return pool[math.random(#pool)]
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH_RESULT {\"requests\":%d,\"duration_us\":%d,\"bytes\":%d," ..
    "\"p50_us\":%d,\"p90_us\":%d,\"p99_us\":%d,\"max_us\":%d,\"mean_us\":%.1f," ..
    "\"errors\":{\"connect\":%d,\"read\":%d,\"write\":%d,\"timeout\":%d,\"status\":%d}}\n",
    summary.requests, summary.duration, summary.bytes,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    latency.mean, e.connect, e.read, e.write, e.timeout, e.status))
end
