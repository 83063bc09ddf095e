"""The admin API's OpenAPI document is true (`docs/admin.md` "OpenAPI"): schemathesis generates
requests for every operation from `/admin/v1/openapi.json` and sends them to a real
`stk-bridge serve`; no answer is a 5xx, and every status, content type and body is one the
document gives that operation. Bounded (a few examples per operation) to stay well under a minute.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from openapi_spec_validator import validate
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    response_schema_conformance,
    status_code_conformance,
)

from support.bridge import ADMIN_TOKEN
from support.processes import Server
from support.world import DEMO_DIR, serving_demo_tenant

pytestmark = pytest.mark.slow
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    # One real tenant, so generated calls also meet existing projects and envs.
    with serving_demo_tenant(tmp_path_factory.mktemp("admin-openapi")) as server:
        yield server


@pytest.fixture(scope="module")
def document(server: Server) -> dict[str, Any]:
    r = httpx.get(server.base + "/admin/v1/openapi.json", headers=AUTH)
    assert r.status_code == 200, r.text
    doc: dict[str, Any] = r.json()
    return doc


@pytest.fixture(scope="module")
def admin_schema(document: dict[str, Any]) -> Any:
    return schemathesis.openapi.from_dict(document)


def test_document_is_valid_and_complete(server: Server, document: dict[str, Any]) -> None:
    validate(document)
    assert document["openapi"] == "3.1.0"
    assert document["security"] == [{"adminToken": []}]
    operations = {(method, path) for path, item in document["paths"].items() for method in item}
    # Every admin route: as many operations as route decorators in bridge/routes/admin/.
    declared = sum(
        len(re.findall(r"^@router\.(get|post|put|patch|delete)\(", f.read_text(), re.M))
        for f in (ROOT / "bridge" / "routes" / "admin").glob("*.py")
    )
    assert len(operations) == declared
    for path, item in document["paths"].items():
        for method, operation in item.items():
            answers = operation["responses"]
            assert "422" not in answers, (method, path)
            assert {"400", "401", "403", "404", "503"} <= set(answers), (method, path)
    publish = document["paths"]["/admin/v1/projects/{project}/envs/{env}/releases"]["post"]
    assert "409" in publish["responses"]
    created = publish["responses"]["201"]["content"]["application/json"]["schema"]
    assert created == {"$ref": "#/components/schemas/Published"}
    # Without the token: 401 in the envelope, before anything else.
    r = httpx.get(server.base + "/admin/v1/openapi.json")
    assert r.status_code == 401 and r.json()["error"]["code"] == "UNAUTHORIZED"
    # A demo-sized release is publishable through the documented body.
    files = {
        str(p.relative_to(DEMO_DIR)): p.read_text()
        for p in DEMO_DIR.rglob("*")
        if p.is_file() and p.suffix in (".yaml", ".sql") and "seed" not in p.parts
    }
    r = server.admin("POST", "/projects/demo/envs/prod/releases", json={"files": files})
    assert r.status_code == 201, r.text


def _operations() -> list[tuple[str, str]]:
    """(method, path) of every admin operation, from the same builder the server runs."""
    from bridge.app import admin_router
    from bridge.routes.admin.openapi import document as build

    paths = build(admin_router().routes)["paths"]
    return [(method.upper(), path) for path, item in paths.items() for method in item]


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
@pytest.mark.parametrize(("method", "path"), _operations())
def test_every_answer_conforms(
    admin_schema: Any, server: Server, method: str, path: str, mode: GenerationMode
) -> None:
    operation = admin_schema[path][method]

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=4,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def check(case: Any) -> None:
        if method == "PUT" and path.endswith("/connections/{alias}"):
            # Never let a generated URL be dialed: without verify only the scheme is checked.
            case.query = {**(case.query or {}), "verify": "false"}
        case.call_and_validate(
            base_url=server.base,
            headers=AUTH,
            checks=[
                not_a_server_error,
                status_code_conformance,
                content_type_conformance,
                response_schema_conformance,
                ignored_auth,
            ],
            timeout=30,
        )

    check()
