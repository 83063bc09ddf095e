"""Our `?prefix=ns:` option on Redis URLs: a key namespace, so fleets or test runs can share one
Redis. redis-py would reject the unknown option, so it is taken off the URL here, once."""

from __future__ import annotations

from urllib.parse import parse_qs, urlencode, urlsplit


def split_prefix(url: str) -> tuple[str, str]:
    """(the URL redis-py understands, the key prefix or "")."""
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    prefix = query.pop("prefix", [""])[0]
    return parts._replace(query=urlencode(query, doseq=True)).geturl(), prefix
