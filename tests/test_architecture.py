"""The layout rules of `docs/architecture.md`, checked on the source itself with `ast`.

- `tenancy/` (the core) imports nothing from `bridge/` (HTTP), not even lazily or for typing.
- One place turns an unexpected exception into the 500 envelope: `bridge.middleware`. Any other
  catch-all handler in `bridge/` may log, degrade or re-raise, never answer 500.

Each checker is also run on a small source that breaks its rule, so a checker that cannot fail
fails here.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CATCH_ALL = frozenset({"Exception", "BaseException"})
# What answering an error looks like in `bridge/`: the envelope helpers and Starlette's responses.
RESPONDERS = frozenset({"envelope", "from_stk", "JSONResponse", "Response", "PlainTextResponse"})
THE_500 = ("bridge/middleware.py", "RequestMiddleware.__call__")


def sources(package: str) -> Iterator[tuple[str, ast.Module]]:
    for path in sorted((ROOT / package).rglob("*.py")):
        yield str(path.relative_to(ROOT)), ast.parse(path.read_text(), str(path))


# --- tenancy/ imports nothing from bridge/ -----------------------------------------------------


def _is_bridge(module: str) -> bool:
    return module == "bridge" or module.startswith("bridge.")


def bridge_imports(tree: ast.Module) -> list[int]:
    """Lines importing `bridge` in any form: `import`, `from`, `importlib`, `__import__`."""
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""] if node.level == 0 else []
        elif isinstance(node, ast.Call) and _called(node) in {"import_module", "__import__"}:
            first = node.args[0] if node.args else None
            text = first.value if isinstance(first, ast.Constant) else None
            names = [text] if isinstance(text, str) else []
        else:
            continue
        if any(_is_bridge(name) for name in names):
            lines.append(node.lineno)
    return sorted(lines)


def test_tenancy_imports_nothing_from_bridge() -> None:
    found = {path: lines for path, tree in sources("tenancy") if (lines := bridge_imports(tree))}
    assert found == {}, f"tenancy/ must not import bridge/ (docs/architecture.md): {found}"


def test_the_import_checker_sees_every_form() -> None:
    source = """
import bridge.app
from bridge import errors
import importlib
def later():
    from bridge.state import AppState
    importlib.import_module("bridge.cli")
    __import__("bridge")
if TYPE_CHECKING:
    from bridge.context import info
import bridgework
from tenancy import bridge_like
"""
    assert bridge_imports(ast.parse(source)) == [2, 3, 6, 7, 8, 10]


# --- one place renders the 500 envelope --------------------------------------------------------


def _called(node: ast.Call) -> str:
    func = node.func
    return func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")


def _catches_all(expr: ast.expr | None) -> bool:
    if expr is None:  # a bare `except:`
        return True
    names = expr.elts if isinstance(expr, ast.Tuple) else [expr]
    return any(isinstance(n, ast.Name | ast.Attribute) and _name(n) in CATCH_ALL for n in names)


def _name(node: ast.expr) -> str:
    return node.id if isinstance(node, ast.Name) else getattr(node, "attr", "")


def _answers(body: list[ast.stmt]) -> bool:
    """Whether these statements answer the request: a 500, an envelope or a response built or
    returned (a handler that only logs, degrades to a value or re-raises does not)."""
    for node in (n for stmt in body for n in ast.walk(stmt)):
        if isinstance(node, ast.Constant) and node.value == 500:
            return True
        if isinstance(node, ast.Call) and _called(node) in RESPONDERS:
            return True
    return False


def _catch_all_handlers(tree: ast.Module) -> Iterator[tuple[str, list[ast.stmt]]]:
    """(qualified function name, body) of every catch-all `except` block, and of every function
    registered with a web framework for `Exception` (`add_exception_handler(Exception, f)`,
    `@app.exception_handler(Exception)`)."""
    functions: dict[str, tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]] = {}

    def visit(node: ast.AST, scope: str) -> Iterator[tuple[str, list[ast.stmt]]]:
        for child in ast.iter_child_nodes(node):
            inner = scope
            if isinstance(child, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                inner = f"{scope}.{child.name}" if scope else child.name
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                functions[child.name] = (inner, child)
                if any(_registers_catch_all(d) for d in child.decorator_list):
                    yield inner, child.body
            if isinstance(child, ast.ExceptHandler) and _catches_all(child.type):
                yield scope, child.body
            yield from visit(child, inner)

    yield from visit(tree, "")
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and _called(node) == "add_exception_handler":
            kind, handler = [*node.args, None, None][:2]
            if kind is not None and _catches_all(kind) and isinstance(handler, ast.Name):
                yield functions[handler.id][0], functions[handler.id][1].body


def _registers_catch_all(decorator: ast.expr) -> bool:
    return (
        isinstance(decorator, ast.Call)
        and _called(decorator) == "exception_handler"
        and bool(decorator.args)
        and _catches_all(decorator.args[0])
    )


def renderers_of_500(path: str, tree: ast.Module) -> list[tuple[str, str]]:
    return [(path, where) for where, body in _catch_all_handlers(tree) if _answers(body)]


def test_only_the_request_middleware_turns_an_unexpected_exception_into_a_500() -> None:
    found = [hit for path, tree in sources("bridge") for hit in renderers_of_500(path, tree)]
    assert found == [THE_500], (
        "an unexpected exception becomes the 500 envelope in bridge/middleware.py only"
        f" (docs/architecture.md): {found}"
    )


def test_the_500_checker_finds_a_second_renderer() -> None:
    source = """
class Route:
    async def __call__(self, scope, receive, send):
        try:
            await work()
        except (ValueError, Exception):
            await envelope(500, "Internal error", rid)(scope, receive, send)
        try:
            await ping()
        except Exception:
            log.warning("degraded")  # logs and degrades: allowed
            return {"ok": False}

def install(app):
    async def unexpected(request, exc):
        return JSONResponse({"error": "boom"}, status_code=500)
    async def passes_on(request, exc):
        raise exc
    app.add_exception_handler(Exception, unexpected)
    app.add_exception_handler(BaseException, passes_on)

@app.exception_handler(Exception)
async def decorated(request, exc):
    return PlainTextResponse("no", 500)

def bare():
    try:
        pass
    except:
        return Response(status_code=500)
"""
    assert renderers_of_500("x.py", ast.parse(source)) == [
        ("x.py", "Route.__call__"),
        ("x.py", "decorated"),
        ("x.py", "bare"),
        ("x.py", "install.unexpected"),
    ]
