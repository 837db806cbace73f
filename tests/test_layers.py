"""The architecture, checked: which layer may import which, no import cycles, and only the
command line prints or names flags. Reads the sources (module-level and in-function imports)."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "lossland"

# What each layer may import (itself included). ``base`` is errors.py and _version.py.
ALLOWED = {
    "base": {"base"},
    "core": {"base", "core"},
    "io": {"base", "core", "io"},
    "engine": {"base", "core", "engine"},
    "directions": {"base", "core", "io", "engine", "directions"},
    "zoo": {"base", "core", "io", "engine", "zoo"},
    "analysis": {"base", "core", "io", "analysis"},
    "show": {"base", "core", "io", "analysis", "show"},
    "compare": {"base", "core", "io", "engine", "compare"},
    "run": {"base", "core", "io", "engine", "directions", "zoo", "analysis", "show", "run"},
    "integrations": {
        *("base", "core", "io", "engine", "directions", "zoo"),
        *("analysis", "show", "run", "integrations"),
    },
    "cli": {
        *("base", "core", "io", "engine", "directions", "zoo"),
        *("analysis", "show", "run", "compare", "cli"),
    },
    "api": {
        *("base", "core", "io", "engine", "directions", "zoo"),
        *("analysis", "show", "run", "compare", "api"),
    },
}
# The one exception, and nothing broader: a Surface's notebook display (``_repr_html_``,
# ``_repr_png_``) is drawn by ``show._display``, which io/_surface_file.py imports inside those
# two methods only (so importing that module never loads show).
DISPLAY_IMPORT = ("lossland.io._surface_file", "lossland.show._display")
DISPLAY_HOOKS = ("_repr_html_", "_repr_png_")
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z-]+(?![a-z_-])")
FOREIGN_FLAGS = ("--nproc_per_node",)  # torchrun's, which errors may name


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(SRC.rglob("*.py"))}


def layer(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1 or parts[1] in ("__main__", "presets"):
        return "cli" if parts[-1] == "__main__" else "api"
    return "base" if parts[1] in ("errors", "_version") else parts[1]


def imports(path: Path, *, nested: bool = True) -> list[tuple[int, str]]:
    """(line, module) for every lossland import anywhere in the file (``nested=False``: only
    those at module level, including under ``if``/``try``, not inside functions)."""
    found = []
    tree = ast.parse(path.read_text(encoding="utf-8"))
    functions = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)
    inside = {
        id(n) for f in ast.walk(tree) if isinstance(f, functions) for n in ast.walk(f) if n is not f
    }
    for node in ast.walk(tree):
        if not nested and id(node) in inside:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
            if node.module == "lossland":  # from lossland import run: a submodule, maybe
                names = [
                    f"lossland.{a.name}" for a in node.names if f"lossland.{a.name}" in MODULES
                ]
                names = names or ["lossland"]
            found += [(node.lineno, n) for n in names if n.split(".")[0] == "lossland"]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("lossland")]
    return found


def allowed_upward(module: str, target: str) -> bool:
    """The display exception (``DISPLAY_IMPORT``): that one module, that one target."""
    return (module, target) == DISPLAY_IMPORT


def test_every_import_respects_the_layers() -> None:
    broken = [
        f"{module} ({layer(module)}) line {line} imports {target} ({layer(target)})"
        for module, path in MODULES.items()
        for line, target in imports(path)
        if layer(target) not in ALLOWED[layer(module)] and not allowed_upward(module, target)
    ]
    assert not broken, "\n".join(broken)


def test_the_display_exception_stays_inside_the_display_hooks() -> None:
    """io imports show only in ``Surface._repr_html_``/``_repr_png_``, and only ``_display``."""
    module, target = DISPLAY_IMPORT
    path = MODULES[module]
    assert target in {t for _, t in imports(path)}, "the exception is unused: remove it"
    tree = ast.parse(path.read_text(encoding="utf-8"))
    hooks = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef) and node.name in DISPLAY_HOOKS
    ]
    assert sorted(h.name for h in hooks) == sorted(DISPLAY_HOOKS)
    inside = {id(n) for hook in hooks for n in ast.walk(hook)}
    upward = [
        f"line {node.lineno} imports {node.module}"
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and layer(node.module or "lossland") == "show"
        if id(node) not in inside or node.module != target
    ]
    assert not upward, "\n".join(upward)
    for hook in hooks:  # each hook imports the display module itself (lazily)
        assert any(isinstance(n, ast.ImportFrom) and n.module == target for n in ast.walk(hook)), (
            hook.name
        )


def test_nothing_imports_the_command_line_but_main() -> None:
    users = {
        module
        for module, path in MODULES.items()
        if layer(module) != "cli" and any(layer(t) == "cli" for _, t in imports(path))
    }
    assert users == set()


def test_no_import_cycles() -> None:
    """Edges include in-function imports: a cycle hidden inside functions is still a cycle."""
    # Without the display exception's edge: show → io → show only at display time, after
    # both are imported, so it can never be an import-time cycle.
    graph = {
        module: {
            t if t in MODULES else t.rsplit(".", 1)[0]
            for _, t in imports(path)
            if not allowed_upward(module, t)
        }
        - {module}
        for module, path in MODULES.items()
    }
    state: dict[str, int] = {}  # 1: on the stack, 2: done

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycle = " → ".join([*stack[stack.index(nxt) :], nxt])
                pytest.fail(f"import cycle: {cycle}")
            if nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])


def _library_files() -> list[tuple[str, Path]]:
    return [(m, p) for m, p in MODULES.items() if layer(m) not in ("cli",)]


PRINTER = "lossland.cli._output"  # the one printer: it escapes text from outside (say, shown)


def test_only_the_command_lines_printer_prints() -> None:
    """The library never prints; inside cli/ only ``cli._output`` does, so every line a
    command prints passes the escaping of text from outside."""
    printing = [
        f"{module} line {node.lineno}"
        for module, path in MODULES.items()
        if module != PRINTER
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Call)
        and (
            (isinstance(node.func, ast.Name) and node.func.id == "print")
            or (
                isinstance(node.func, ast.Attribute)
                and ast.unparse(node.func).startswith("sys.std")
            )
        )
    ]
    assert not printing, printing


def test_library_errors_name_arguments_not_flags() -> None:
    """Messages raised or warned by the library use errors.arg(name), never a --flag."""
    found = []
    for module, path in _library_files():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Raise) or (
                isinstance(node, ast.Call) and ast.unparse(node.func).endswith("warn")
            ):
                for text in (n.value for n in ast.walk(node) if isinstance(n, ast.Constant)):
                    if isinstance(text, str) and FLAG.search(text.replace(*FOREIGN_FLAGS, "")):
                        found.append(f"{module} line {node.lineno}: {text!r}")
    assert not found, "\n".join(found)


MAX_FUNCTION_LINES = 60  # the body, after its docstring; longer needs a "# long: why" comment


def _body_lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    first = node.body[0]
    has_doc = isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
    start = first.end_lineno + 1 if has_doc and len(node.body) > 1 else first.lineno  # type: ignore[operator]
    return node.end_lineno - start + 1  # type: ignore[operator]


def test_no_function_is_longer_than_a_screen() -> None:
    long = []
    for name, path in MODULES.items():
        lines = path.read_text().splitlines()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                source = lines[node.lineno - 1 : node.end_lineno]
                why = any("# long:" in line for line in source)
                if _body_lines(node) > MAX_FUNCTION_LINES and not why:
                    long.append(f"{name}.{node.name} ({_body_lines(node)} lines)")
    assert not long, f"split into named steps, or say why in a '# long:' comment: {long}"


PACKAGES = [
    "lossland",
    *(
        f"lossland.{m.name}"
        for m in sorted(SRC.iterdir())
        if (m / "__init__.py").exists() and m.name not in ("cli", "presets")
    ),
]


@pytest.mark.parametrize("package", PACKAGES)
def test_each_package_shows_what_it_exports(package: str) -> None:
    """A layer's ``__all__`` names what it exports (each once, each there) and ``dir()`` shows
    those names only (the private modules stay out of sight)."""
    module = importlib.import_module(package)
    names = list(module.__all__)
    assert len(set(names)) == len(names), package
    assert [n for n in names if not hasattr(module, n)] == []
    assert dir(module) == sorted(names)
