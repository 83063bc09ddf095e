"""Local S3-compatible servers for the storage and s3:// KV tests (docs/storage.md).

Two real servers, each for what it checks (the choice and its limits are in docs/storage.md):

- `object_store`: nanio, which verifies SigV4 in headers *and* presigned URLs, per access key
  (several users), with expiry and signed headers. Tenants' buckets and signed URLs are tested
  here.
- `kv_object_store`: moto's S3 server with authentication on (per-key header signatures, IAM
  policies per bucket) and conditional writes (`If-Match` / `If-None-Match`), for the s3:// KV.

Both are installed into `.venv-s3/` by `make test` (tests/objectstore/requirements.txt), started
once per session on a free port, waited for, and stopped. Missing → skip with one line, or fail
under STK_REQUIRE_SERVICES=1.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import botocore.session
import httpx
import pytest
from botocore.config import Config

from support.processes import free_port
from support.services import unavailable

TESTS = Path(__file__).resolve().parent.parent
S3_BIN = TESTS.parent / ".venv-s3" / "bin"
MOTO_SCRIPT = TESTS / "objectstore" / "moto_store.py"
REGION = "us-east-1"
START_TIMEOUT = 60.0
_SESSION = botocore.session.get_session()  # loading the S3 model once keeps clients cheap


@dataclass(frozen=True)
class Account:
    """One access key and the bucket made for it."""

    access_key_id: str
    secret_access_key: str = field(repr=False)
    bucket: str

    def secret_json(self) -> str:
        """The tenant-secret value the Bridge expects (docs/storage.md)."""
        return json.dumps(
            {"accessKeyId": self.access_key_id, "secretAccessKey": self.secret_access_key}
        )


@dataclass(frozen=True)
class ObjectStore:
    endpoint: str
    accounts: dict[str, Account]
    region: str = REGION
    _clients: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def client(self, name: str) -> Any:
        """A plain botocore S3 client with that account's key (path-style, like the tests)."""
        if name not in self._clients:
            self._clients[name] = self.new_client(name)
        return self._clients[name]

    def new_client(self, name: str) -> Any:
        account = self.accounts[name]
        return _SESSION.create_client(
            "s3",
            region_name=self.region,
            endpoint_url=self.endpoint,
            aws_access_key_id=account.access_key_id,
            aws_secret_access_key=account.secret_access_key,
            config=Config(
                signature_version="s3v4",
                s3={"addressing_style": "path"},
                retries={"max_attempts": 1},
            ),
        )

    def keys(self, name: str, prefix: str = "") -> list[str]:
        """Every object key in that account's bucket (to assert what was, or was not, written)."""
        listing = self.client(name).list_objects_v2(
            Bucket=self.accounts[name].bucket, Prefix=prefix
        )
        return sorted(item["Key"] for item in listing.get("Contents", []))


def _need(binary: Path, what: str) -> None:
    if not binary.exists():
        unavailable(what, "is not installed (run `make object-stores`)")


def _wait_http(proc: subprocess.Popen[bytes], url: str, log: Path, what: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-300:]
            unavailable(what, f"exited at start ({proc.returncode}): {tail}")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    unavailable(what, f"did not answer within {START_TIMEOUT:.0f}s")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


# Tenants of the nanio store: `alpha` has a second key for rotation tests; `beta` is a neighbour.
NANIO_USERS = {
    "alpha": ("alpha-key-0001", "bucket-alpha"),
    "alpha-rotated": ("alpha-key-0002", "bucket-alpha"),
    "beta": ("beta-key-0001", "bucket-beta"),
}


@pytest.fixture(scope="session")
def object_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ObjectStore]:
    """nanio with three access keys and two buckets, for the session."""
    what = "nanio object store"
    _need(S3_BIN / "nanio", what)
    root = tmp_path_factory.mktemp("nanio")
    accounts = {
        name: Account(key, f"{key}-secret-{name}-0123456789", bucket)
        for name, (key, bucket) in NANIO_USERS.items()
    }
    options = root / "options.toml"
    options.write_text(
        "".join(
            f'[[users]]\naccess_key = "{a.access_key_id}"\nsecret_key = "{a.secret_access_key}"\n'
            for a in accounts.values()
        )
    )
    port = free_port()
    log = root / "nanio.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                *(S3_BIN / "nanio", "serve", "--options", options, "--data-dir", root / "data"),
                *("--host", "127.0.0.1", "--port", str(port), "--no-access-log"),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        store = ObjectStore(f"http://127.0.0.1:{port}", accounts)
        _wait_http(proc, store.endpoint, log, what)
        for name in ("alpha", "beta"):
            store.client(name).create_bucket(Bucket=accounts[name].bucket)
        yield store
    finally:
        _stop(proc)


@pytest.fixture(scope="session")
def kv_object_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ObjectStore]:
    """moto (auth on) with an `operator` owning `stk-kv` and a `stranger` owning `stranger-kv`."""
    what = "moto object store"
    _need(S3_BIN / "python", what)
    root = tmp_path_factory.mktemp("moto")
    buckets = {"operator": "stk-kv", "stranger": "stranger-kv"}
    spec = json.dumps({user: [bucket] for user, bucket in buckets.items()})
    port = free_port()
    out_path, log = root / "keys.json", root / "moto.log"
    with open(out_path, "wb") as out, open(log, "wb") as err:
        proc = subprocess.Popen(
            [S3_BIN / "python", MOTO_SCRIPT, str(port), spec], stdout=out, stderr=err
        )
    try:
        endpoint = f"http://127.0.0.1:{port}"
        _wait_http(proc, endpoint, log, what)
        keys = json.loads(out_path.read_text().splitlines()[0])
        accounts = {
            user: Account(keys[user]["accessKeyId"], keys[user]["secretAccessKey"], bucket)
            for user, bucket in buckets.items()
        }
        yield ObjectStore(endpoint, accounts)
    finally:
        _stop(proc)


@pytest.fixture
def s3_kv_url(kv_object_store: ObjectStore, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """An s3:// KV URL with its own prefix; the operator's keys in the standard AWS variables."""
    operator = kv_object_store.accounts["operator"]
    for name, value in (
        ("AWS_ACCESS_KEY_ID", operator.access_key_id),
        ("AWS_SECRET_ACCESS_KEY", operator.secret_access_key),
        ("AWS_CONFIG_FILE", "/dev/null"),
        ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null"),
        ("AWS_EC2_METADATA_DISABLED", "true"),  # never ask an instance-metadata address
    ):
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    prefix = f"stktest-{uuid.uuid4().hex[:12]}"
    yield f"s3://{operator.bucket}/{prefix}?region={REGION}&endpoint={kv_object_store.endpoint}"
    client = kv_object_store.client("operator")
    for key in kv_object_store.keys("operator", prefix + "/"):
        client.delete_object(Bucket=operator.bucket, Key=key)
