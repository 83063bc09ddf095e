"""The one recipe for an async S3 client (aiobotocore), shared by tenant stores and the s3:// KV.

Each client gets its own `AioSession`, so credentials from the standard AWS chain are resolved
for that client and not frozen in a process-wide session; all sessions share one data loader, so
botocore's endpoint and service models (hundreds of milliseconds to load) are read once.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession, get_session

from tenancy.storage.credentials import StoreCredentials


@cache
def _loader() -> Any:
    return get_session().get_component("data_loader")


def _session() -> AioSession:
    session = get_session()
    session.register_component("data_loader", _loader())
    return session


def s3_client(
    *,
    region: str,
    endpoint: str | None,
    path_style: bool,
    credentials: StoreCredentials | None,
    limit: float,
) -> Any:
    """An async context manager giving an S3 client; `credentials=None` uses the AWS chain.

    `limit` bounds connect and read; two attempts (botocore's standard retry mode) so a store's
    brief hiccup is absorbed, while the caller's overall timeout still bounds the whole call.
    """
    config = AioConfig(
        signature_version="s3v4",
        connect_timeout=limit,
        read_timeout=limit,
        retries={"max_attempts": 2, "mode": "standard"},
        s3={"addressing_style": "path" if path_style else "virtual"},
    )
    return _session().create_client(
        "s3",
        region_name=region,
        endpoint_url=endpoint,
        aws_access_key_id=credentials.access_key_id if credentials else None,
        aws_secret_access_key=credentials.secret_access_key if credentials else None,
        aws_session_token=credentials.session_token if credentials else None,
        config=config,
    )
