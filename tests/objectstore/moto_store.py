"""moto's S3 server with authentication on, for the s3:// KV tests (docs/storage.md).

Run by `.venv-s3/bin/python` (never imported by the suite): `moto_store.py PORT SPEC_JSON`, where
SPEC_JSON maps an IAM user name to the buckets it owns. Users, their access keys, an inline policy
allowing `s3:*` on their own buckets only, and the buckets are made in-process before the port is
bound, so authentication is on from the first request (INITIAL_NO_AUTH_ACTION_COUNT=0). The keys
are printed as one JSON line. The server is single-threaded: moto checks an `If-Match` and then
writes, and only one request at a time makes that pair atomic (see docs/storage.md).
"""

from __future__ import annotations

import json
import os
import sys

os.environ["INITIAL_NO_AUTH_ACTION_COUNT"] = "0"

from moto.core import DEFAULT_ACCOUNT_ID  # after the env var it reads at import
from moto.iam.models import iam_backends
from moto.s3.models import s3_backends
from moto.server import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import make_server


def main() -> None:
    port, spec = int(sys.argv[1]), json.loads(sys.argv[2])
    iam = iam_backends[DEFAULT_ACCOUNT_ID]["global"]
    s3 = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
    keys = {}
    for user, buckets in spec.items():
        iam.create_user("us-east-1", user)
        resources = [f"arn:aws:s3:::{b}{suffix}" for b in buckets for suffix in ("", "/*")]
        policy = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": resources}],
        }
        iam.put_user_policy(user, "own-buckets", json.dumps(policy))
        key = iam.create_access_key(user)
        keys[user] = {"accessKeyId": key.access_key_id, "secretAccessKey": key.secret_access_key}
        for bucket in buckets:
            s3.create_bucket(bucket, "us-east-1")
    app = DomainDispatcherApplication(create_backend_app)
    server = make_server("127.0.0.1", port, app, threaded=False)
    print(json.dumps(keys), flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
