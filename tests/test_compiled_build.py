"""The compiled build's bookkeeping: which modules setup.py compiles, that plain Python
never derives from a class it compiles (mypyc refuses that at run time), and how mosnpy
says it runs compiled ones.  (.ci/run builds it and runs the suite against it.)"""

from __future__ import annotations

import ast
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

from mosnpy.cli import compiled_modules, version_line

ROOT = Path(__file__).resolve().parents[1]


def _compiled_list(setup: Path = ROOT / "setup.py") -> list[str]:
    """A ``setup.py``'s COMPILED list, as paths from the repository's root."""
    tree = ast.parse(setup.read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and [getattr(t, "id", "") for t in node.targets] == ["COMPILED"]:
            value = ast.literal_eval(node.value)
            assert isinstance(value, list)
            return [(setup.parent / path).relative_to(ROOT).as_posix() for path in value]
    raise AssertionError(f"{setup} has no COMPILED list")


def _every_compiled_list() -> list[str]:
    """mosnpy's and its protocol plugins' (each plugin builds its own extensions)."""
    plugins = sorted(ROOT.glob("plugins/*/setup.py"))
    assert plugins, "no plugin compiles"
    return _compiled_list() + [path for setup in plugins for path in _compiled_list(setup)]


def _opens(decorator: ast.expr) -> bool:
    """``@mypyc_attr(allow_interpreted_subclasses=True)`` or ``native_class=False``."""
    if not (isinstance(decorator, ast.Call) and getattr(decorator.func, "id", "") == "mypyc_attr"):
        return False
    given = {k.arg: getattr(k.value, "value", None) for k in decorator.keywords}
    return given.get("allow_interpreted_subclasses") is True or given.get("native_class") is False


def _closed_classes(compiled: list[str]) -> dict[str, str]:
    """Classes the build compiles that plain-Python classes cannot derive from."""
    closed: dict[str, str] = {}
    for path in compiled:
        for node in ast.parse((ROOT / path).read_text()).body:
            if isinstance(node, ast.ClassDef) and not any(_opens(d) for d in node.decorator_list):
                protocol = any(getattr(b, "id", "") == "Protocol" for b in node.bases)
                if not protocol:
                    closed[node.name] = path
    return closed


#: Plain-Python code allowed to derive from closed compiled classes, and why.
_INTERPRETED_ONLY = {
    # the phase-machine playbook subclasses the proxy's classes; its tests are marked
    # ``interpreted`` and .ci/run leaves them out of the compiled run
    "tests/proxy/playbook.py",
}


def test_setup_compiles_existing_modules_that_plain_python_never_subclasses() -> None:
    compiled = _every_compiled_list()
    assert compiled, "nothing to compile"
    for path in compiled:
        assert (ROOT / path).is_file(), path
        assert path != "mosnpy/native.py", path  # (its run-time half is unreachable to mypyc)
    closed = _closed_classes(compiled)
    assert "DownStream" in closed and "RequestView" in closed  # (the scan sees what it must)
    offenders = []
    sources = [*ROOT.glob("mosnpy/**/*.py"), *ROOT.glob("plugins/*/*/**/*.py")]
    sources += [*ROOT.glob("examples/**/*.py"), *ROOT.glob("tests/**/*.py")]
    for source in sources:
        rel = source.relative_to(ROOT).as_posix()
        if rel in compiled or rel in _INTERPRETED_ONLY:
            continue
        tree = ast.parse(source.read_text())
        imported = {
            alias.asname or alias.name
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("mosnpy")
            for alias in node.names
        }
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                for base in node.bases:
                    name = getattr(base.value if isinstance(base, ast.Subscript) else base, "id", "")
                    if name in closed and name in imported:
                        offenders.append(f"{rel}: {node.name}({name}) <- {closed[name]}")
    # mypyc: "interpreted classes cannot inherit from compiled"
    assert offenders == []


def test_compiled_modules_are_found_by_their_extension_suffix(tmp_path: Path) -> None:
    package = tmp_path / "mosnpy"
    (package / "protocol").mkdir(parents=True)
    (package / "cli.py").write_text("")
    (package / "protocol" / f"codec{EXTENSION_SUFFIXES[0]}").write_bytes(b"")
    (package / "protocol" / "codec.py").write_text("")
    assert compiled_modules(package) == ["mosnpy.protocol.codec"]
    assert compiled_modules(tmp_path / "empty") == []


def test_the_version_line_says_whether_modules_are_compiled() -> None:
    line = version_line()
    assert line.startswith("mosnpy ")
    assert ("modules compiled" in line) == bool(compiled_modules())
