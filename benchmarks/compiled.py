"""A ``MOSNPY_MYPYC=1`` build of a checkout, installed into a directory of its own.

    .venv/bin/python benchmarks/compiled.py DIR [--checkout PATH]

``setup.py`` compiles the modules it lists with mypyc when ``MOSNPY_MYPYC=1``, and so do
the protocol plugins' own; this installs such a build of mosnpy and its plugins (no
dependencies: the venv has them) into ``DIR``, so that
``PYTHONPATH=DIR python -P -m mosnpy`` runs the compiled modules.  ``-P`` keeps the
working directory (a checkout with the plain ``mosnpy``) off the path.  Used by the
``mosnpy-c`` row of ``compare.py`` and by ``.ci/run``; needs the ``dev`` extra (mypy
carries mypyc, and ``wheel``), a C compiler and the Python headers.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from mosnpy.cli import compiled_modules

ROOT = Path(__file__).resolve().parents[1]


class BuildFailed(Exception):
    """The compiled build did not install; the message ends with pip's own output."""


def plugins(checkout: Path) -> list[Path]:
    """The checkout's protocol plugins that compile too (a ``setup.py`` of their own)."""
    return sorted(p.parent for p in (checkout / "plugins").glob("*/setup.py"))


def build(target: Path, checkout: Path = ROOT, *, timeout: float = 900) -> Path:
    """Install the compiled build of ``checkout`` into ``target`` (once) and return it."""
    if (target / "mosnpy").is_dir():
        return target
    argv = [sys.executable, "-m", "pip", "install", "-q", "--no-build-isolation", "--no-deps"]
    argv += ["--target", str(target), str(checkout), *(str(p) for p in plugins(checkout))]
    done = subprocess.run(
        argv,
        env={**os.environ, "MOSNPY_MYPYC": "1"},
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    if done.returncode != 0:
        raise BuildFailed(f"compiled build of {checkout} failed:\n{done.stderr.strip()[-2000:]}")
    return target


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("target", type=Path)
    ap.add_argument("--checkout", type=Path, default=ROOT)
    args = ap.parse_args(argv)
    try:
        target = build(args.target.resolve(), args.checkout.resolve())
    except BuildFailed as exc:
        print(exc, file=sys.stderr)
        return 1
    modules = compiled_modules(target / "mosnpy")
    if not modules:
        print(f"{target}: no compiled module (is mypyc installed?)", file=sys.stderr)
        return 1
    print(f"{target}: {len(modules)} compiled modules: {', '.join(modules)}")
    for plugin in plugins(args.checkout.resolve()):
        package = next(plugin.glob("*/__init__.py")).parent.name
        found = compiled_modules(target / package)
        print(f"{target}: {plugin.name}: {len(found)} compiled modules: {', '.join(found)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
