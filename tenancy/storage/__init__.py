"""Object storage: signed URLs with each tenant's own credentials (docs/storage.md).

- `compile`: `config/storage.yaml` → the release's compiled storage (publish time, pure).
- `model`: the compiled storage, ready to match (built once per loaded release).
- `params`, `keys`: the seven ops' params and object keys, checked into a `StorageRequest`.
- `access`: policy, rule, roles, condition and limits of one call.
- `credentials`, `signer`: a tenant secret's keys; SigV4 query signing by awscrt.
- `store`: the store calls the Bridge makes (delete, multipart) and the per-tenant clients.
- `sessions`: multipart sessions in the shared KV, so any replica can continue them.
- `service`: one `storage/<bucket>/<op>` call from params to the answer's `data`.

Nothing here imports HTTP code; the call pipeline calls `StorageService.call`.
"""
