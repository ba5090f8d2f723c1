"""The compiled build's bookkeeping: which modules setup.py compiles, and how mosnpy
says it runs compiled ones.  (.ci/run builds it and runs the protocol tests against it.)"""

from __future__ import annotations

import ast
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

from mosnpy.cli import compiled_modules, version_line

ROOT = Path(__file__).resolve().parents[1]


def _compiled_list() -> list[str]:
    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and [getattr(t, "id", "") for t in node.targets] == ["COMPILED"]:
            value = ast.literal_eval(node.value)
            assert isinstance(value, list)
            return value
    raise AssertionError("setup.py has no COMPILED list")


def test_setup_compiles_only_existing_sans_io_modules() -> None:
    compiled = _compiled_list()
    assert compiled, "nothing to compile"
    for path in compiled:
        source = ROOT / path
        assert source.is_file(), path
        # The Protocol layer never imports trio (import-linter); compiled modules stay there.
        assert path.startswith("mosnpy/protocol/"), path
        assert "import trio" not in source.read_text(), path


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
