"""Browser clients in a real headless Chromium (`docs/browser.md`, issue 13): pages served from an
allowed and a disallowed origin call a real `stk-bridge serve` with `fetch()`.

Tenants: `alpha`, `beta` and `gamma`, the demo project on their own SQLite databases, each
allowing the origin `app` (and never `evil`), with a public logic that writes
(`logics/public/sign`): the kind of tenant a simple cross-origin request could once write to.
`alpha` is reached by Host (`alpha.localhost`, which Chromium resolves to the loopback), the others
by path (`/p/beta`); `gamma` has a small rate limit.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from support.bridge import ADMIN_TOKEN
from support.browser import FETCH, static_site
from support.processes import Server, master_keys, serving, stk_env
from support.world import PASSWORD, demo_files, new_email, seeded_sqlite

pytestmark = pytest.mark.slow

SIGN = "---\nauth: public\nparams:\n  name: {type: string, required: true}\n---\n"
SIGN += "INSERT INTO categories (name) VALUES (:name)\n"
MAX_BODY = 65536
PER_MINUTE = 3


@dataclass
class Setup:
    server: Server
    app: str  # the allowed origin
    evil: str  # an origin no tenant allows
    data: Path

    def base(self, project: str) -> str:
        """alpha by Host, the others by path."""
        if project == "alpha":
            return f"http://alpha.localhost:{self.server.port}"
        return f"{self.server.base}/p/{project}"

    def signed(self, project: str, name: str) -> int:
        """Rows `logics/public/sign` wrote with a name starting with `name`, read from the
        tenant's database."""
        with sqlite3.connect(self.data / f"{project}.db") as db:
            return int(
                db.execute(
                    "SELECT COUNT(*) FROM categories WHERE name LIKE ?", (name + "%",)
                ).fetchone()[0]
            )


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    cwd = tmp_path_factory.mktemp("browser")
    env = stk_env(
        data_dir=str(cwd / "data"),
        tenant_data_dir=str(cwd),
        master_keys=master_keys(),
        admin_tokens=ADMIN_TOKEN,
        host_suffix="localhost",
        max_body_bytes=str(MAX_BODY),
    )
    with static_site() as app, static_site() as evil, serving(["serve"], env, cwd) as server:
        auth = f'signup: {{enabled: true}}\ncors: {{origins: ["{app}"]}}\n'
        files = demo_files() | {"config/auth.yaml": auth, "logics/public/sign.sql": SIGN}
        for project in ("alpha", "beta", "gamma"):
            assert server.admin("POST", "/projects", json={"id": project}).status_code == 201
            url = seeded_sqlite(cwd / f"{project}.db")
            path = f"/projects/{project}/envs/prod"
            assert server.admin("PUT", f"{path}/connections/main", json={"url": url}).is_success
            published = server.admin("POST", f"{path}/releases", json={"files": files})
            assert published.status_code == 201, published.text
        limits = {"limits": {"requestsPerMinute": PER_MINUTE}}
        assert server.admin("PATCH", "/projects/gamma", json=limits).is_success
        yield Setup(server, app, evil, cwd)


@pytest.fixture
def page_at(chromium: Any) -> Iterator[Any]:
    """`page_at(origin)`: a fresh page (own cookies and cache) loaded from `origin`."""
    contexts = []

    def open_page(origin: str) -> Any:
        context = chromium.new_context()
        contexts.append(context)
        page = context.new_page()
        page.goto(origin + "/")
        return page

    yield open_page
    for context in contexts:
        context.close()


def fetch(
    page: Any, url: str, body: Any = None, *, method: str = "POST", **init: Any
) -> dict[str, Any]:
    """`fetch(url, init)` in the page; a JSON body is sent as JSON unless `init` says otherwise."""
    options: dict[str, Any] = {"method": method, **init}
    headers = dict(options.pop("headers", {}))
    if body is not None:
        options["body"] = body if isinstance(body, str) else _json(body)
        headers.setdefault("Content-Type", "application/json")
    options["headers"] = headers
    answer: dict[str, Any] = page.evaluate(FETCH, [url, options])
    return answer


def _json(value: Any) -> str:
    return json.dumps(value)


def code(answer: dict[str, Any]) -> str:
    assert answer.get("body") and "error" in answer["body"], answer
    assert answer["body"]["error"]["requestId"] == answer["requestId"]  # the header is readable
    return str(answer["body"]["error"]["code"])


def test_login_read_and_write_from_an_allowed_origin(setup: Setup, page_at: Any) -> None:
    page = page_at(setup.app)
    base = setup.base("alpha")
    credentials = {"email": new_email(), "password": PASSWORD}
    assert fetch(page, f"{base}/auth/signup", credentials)["status"] == 201
    login = fetch(page, f"{base}/auth/login", credentials)
    assert login["status"] == 200, login
    auth = {"Authorization": f"Bearer {login['body']['access_token']}"}
    me = fetch(page, f"{base}/auth/me", method="GET", headers=auth)
    assert me["status"] == 200 and me["body"]["email"] == credentials["email"]
    user = me["body"]["id"]
    insert = {
        "path": "db/notebooks/insert",
        "params": {"values": {"owner_id": user, "title": "Browser"}},
    }
    wrote = fetch(page, f"{base}/call", insert, headers=auth)
    assert wrote["status"] == 200, wrote
    read = fetch(page, f"{base}/call", {"path": "db/notebooks/select", "params": {}}, headers=auth)
    assert read["status"] == 200 and [n["title"] for n in read["body"]["data"]] == ["Browser"]
    assert read["requestId"]


def test_every_error_status_is_readable_from_js(setup: Setup, page_at: Any) -> None:
    page = page_at(setup.app)
    base = setup.base("alpha")
    call = f"{base}/call"
    cases = [
        (fetch(page, call, {"path": "db/notes/select", "params": {"where": {"nope": 1}}}), 401),
        (
            fetch(
                page,
                call,
                {"path": "db/notes/select", "params": {"bad": 1}},
                headers={"Authorization": "Bearer x"},
            ),
            401,
        ),
        (
            fetch(page, call, {"path": "db/categories/select", "params": {"where": {"nope": 1}}}),
            400,
        ),
        (
            fetch(
                page,
                call,
                {"path": "logics/admin/activity"},
                headers={"X-Santokit-Api-Key": "stk_bad.bad"},
            ),
            401,
        ),
        (fetch(page, call, {"path": "logics/nope"}), 404),
        (fetch(page, call, {"path": "unknown/x"}), 404),
        (fetch(page, call, method="GET"), 405),
        (fetch(page, call, "x" * (MAX_BODY + 1)), 413),
        (
            fetch(
                page,
                call,
                '{"path": "logics/public/stats"}',
                headers={"Content-Type": "text/plain"},
            ),
            415,
        ),
        (fetch(page, f"{setup.server.base}/p/nobody/call", {"path": "logics/public/stats"}), None),
    ]
    expected_codes = {
        400: "BAD_REQUEST",
        401: "UNAUTHORIZED",
        404: "NOT_FOUND",
        405: "METHOD_NOT_ALLOWED",
        413: "PAYLOAD_TOO_LARGE",
        415: "UNSUPPORTED_MEDIA_TYPE",
    }
    for answer, status in cases[:-1]:
        assert answer.get("status") == status, answer
        assert code(answer) == expected_codes[status]
    # An unknown tenant cannot allow any origin: the browser hides its answer.
    assert cases[-1][0]["error"].startswith("TypeError"), cases[-1][0]


def test_429_and_retry_after_are_readable_from_js(setup: Setup, page_at: Any) -> None:
    page = page_at(setup.app)
    stats = {"path": "logics/public/stats"}
    url = f"{setup.base('gamma')}/call"
    answers = []
    # Past the limit within a minute (twice as many: the window may turn over meanwhile).
    while len(answers) <= 2 * PER_MINUTE and (not answers or answers[-1]["status"] == 200):
        answers.append(fetch(page, url, stats))
    limited = answers[-1]
    assert limited["status"] == 429, answers
    assert code(limited) == "TOO_MANY_REQUESTS"
    assert 1 <= int(limited["retryAfter"]) <= 60


def test_tenants_are_chosen_by_host_and_by_path(setup: Setup, page_at: Any) -> None:
    """The same user exists in one tenant only: a login at alpha's host fails at beta's path."""
    page = page_at(setup.app)
    credentials = {"email": new_email(), "password": PASSWORD}
    assert fetch(page, f"{setup.base('alpha')}/auth/signup", credentials)["status"] == 201
    assert fetch(page, f"{setup.base('alpha')}/auth/login", credentials)["status"] == 200
    beta = fetch(page, f"{setup.server.base}/p/beta/prod/auth/login", credentials)
    assert beta["status"] == 401 and code(beta) == "UNAUTHORIZED"
    # Host and path naming two projects: 400, and no project to judge the origin by, so the
    # browser shows a network error (`docs/browser.md`).
    conflict = f"http://alpha.localhost:{setup.server.port}/p/beta/call"
    stats = {"path": "logics/public/stats"}
    assert fetch(page, conflict, stats)["error"].startswith("TypeError")
    server_side = httpx.post(
        conflict.replace("alpha.localhost", "127.0.0.1"),
        json=stats,
        headers={"Host": f"alpha.localhost:{setup.server.port}"},
    )
    assert server_side.status_code == 400, server_side.text


def test_a_disallowed_origin_can_neither_read_nor_write(setup: Setup, page_at: Any) -> None:
    page = page_at(setup.evil)
    for project in ("alpha", "beta"):
        name = f"evil-{project}"
        sign = {"path": "logics/public/sign", "params": {"name": name}}
        url = f"{setup.base(project)}/call"
        # JSON needs a preflight, which the tenant refuses: the request is never sent.
        blocked = fetch(page, url, sign)
        assert blocked["error"].startswith("TypeError"), blocked
        # Simple requests skip the preflight: text/plain, and the form encodings.
        body = _json(sign)
        for content_type in (
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data",
        ):
            sent = fetch(page, url, body, mode="no-cors", headers={"Content-Type": content_type})
            assert sent.get("type") == "opaque", sent  # sent, and unreadable
        # The classic form trick: `name=value` is sent as is, the `=` inside a JSON string.
        page.set_content(
            f'<form method=post enctype=text/plain action="{url}">'
            f"<input name='{body[:-3]}' value='\"}}}}'></form>"
        )
        with page.expect_navigation():
            page.eval_on_selector("form", "form => form.submit()")
        assert '"UNSUPPORTED_MEDIA_TYPE"' in page.content()
        page.goto(setup.evil + "/")
        assert setup.signed(project, name) == 0  # nothing written
    # The same call as JSON from a server (no Origin) writes: the tenant really is writable.
    direct = httpx.post(
        f"{setup.base('beta')}/call",
        json={"path": "logics/public/sign", "params": {"name": "server"}},
    )
    assert direct.status_code == 200, direct.text
    assert setup.signed("beta", "server") == 1
