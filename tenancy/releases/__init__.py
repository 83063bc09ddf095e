"""Releases by when the code runs: `compile/` (files → release JSON, at publish), `model` and
`gates` (the runtime release the request path reads), `apply/` (additive DDL at publish), `store`
(bundles and manifests in the KV store)."""
