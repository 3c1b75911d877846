"""``python -m sipsync.native build|clean|status``: compile the SIP service's hot path with mypyc."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from sipsync import native
from sipsync.native import COMPILED, GROUP, MANIFEST, ROOT, built_files, source_path


def clean() -> None:
    for path in [*built_files(), MANIFEST]:
        path.unlink(missing_ok=True)


def build(force: bool = False) -> bool:
    """Compile ``COMPILED`` in place unless a fresh build exists; False (and no build) on failure."""
    if not force and native.is_fresh():
        return True
    clean()
    if importlib.util.find_spec("mypyc") is None:
        print("sipsync.native: mypyc is not installed (pip install mypy); the SIP service stays pure Python",
              file=sys.stderr)
        return False
    print(f"sipsync.native: compiling {len(COMPILED)} modules of the SIP service with mypyc (about a minute)")
    with tempfile.TemporaryDirectory(prefix="sipsync-native-") as workdir:
        script = Path(workdir) / "setup.py"
        paths = [str(source_path(m).relative_to(ROOT)) for m in COMPILED]
        script.write_text(_SETUP.format(paths=paths, group=GROUP, target=str(Path(workdir) / "c")))
        argv = [sys.executable, str(script), "build_ext", "--inplace", "--build-temp", workdir]
        done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        clean()
        tail = "\n".join((done.stdout + done.stderr).splitlines()[-25:])
        print(f"sipsync.native: compiling failed; the SIP service runs as pure Python.\n{tail}",
              file=sys.stderr)
        return False
    MANIFEST.write_text(json.dumps(native.fingerprint(), indent=1, sort_keys=True))
    print("sipsync.native: compiled; python -m sipsync.native status tells which code a process runs")
    return True


_SETUP = """
from setuptools import setup
from mypyc.build import mypycify

setup(
    name="sipsync-native",
    ext_modules=mypycify(
        {paths!r}, group_name={group!r}, target_dir={target!r}, opt_level="3", debug_level="0"
    ),
)
"""


def main(argv: list[str]) -> int:
    command = argv[0] if argv else "status"
    if command == "build":
        return 0 if build(force="--force" in argv) or "--strict" not in argv else 1
    if command == "clean":
        clean()
        return 0
    if command == "status":
        print(native.state)
        return 0
    print("usage: python -m sipsync.native [build [--force] [--strict] | clean | status]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
