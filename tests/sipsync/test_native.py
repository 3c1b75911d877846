"""The choice between the compiled (mypyc) and the pure Python SIP service: a stale or unwanted
build is never run."""

import json
import os
import subprocess
import sys

from sipsync import native

ROOT = native.ROOT


def _loaded_in_subprocess(**env: str) -> tuple[str, str]:
    code = "import sipsync.native as n, sipsync.sip.parser as p; print(n.state); print(p.__file__)"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True,
        timeout=60, check=True,
    )  # fmt: skip
    state, path = done.stdout.strip().splitlines()
    return state, path


def test_every_compiled_module_has_its_source():
    assert all(native.source_path(module).is_file() for module in native.COMPILED)
    assert "sipsync.sip.parser" in native.COMPILED and "sipsync.server.core" in native.COMPILED


def test_sipsync_pure_imports_the_source_even_beside_a_build():
    state, path = _loaded_in_subprocess(SIPSYNC_PURE="1")
    assert path.endswith("parser.py")
    assert state.startswith("pure Python")


def test_a_fresh_build_is_what_runs():
    env = {"SIPSYNC_PURE": "0"}
    state, path = _loaded_in_subprocess(**env)
    if native.is_fresh():
        assert state == "compiled with mypyc" and not path.endswith(".py")
    else:
        assert state.startswith("pure Python") and path.endswith("parser.py")


def test_a_changed_source_makes_the_build_stale(tmp_path, monkeypatch):
    manifest = tmp_path / "build.json"
    prints = native.fingerprint()
    manifest.write_text(json.dumps(prints))
    monkeypatch.setattr(native, "MANIFEST", manifest)
    monkeypatch.setattr(native, "built_files", lambda: [])  # as if the extensions were all present
    assert native.is_fresh()
    prints["sipsync.sip.parser"] = "0" * 32  # the parser edited since the build
    manifest.write_text(json.dumps(prints))
    assert not native.is_fresh()
    manifest.write_text("not json")
    assert not native.is_fresh()


def test_the_source_first_finder_loads_py_files_for_compiled_modules_only():
    finder = native._SourceFirst(native.COMPILED)
    spec = finder.find_spec("sipsync.sip.parser")
    assert spec is not None and spec.origin.endswith("sipsync/sip/parser.py")
    assert finder.find_spec("sipsync.server.config") is None  # never compiled: the normal import


def test_the_classes_built_per_message_have_an_init_mypyc_compiles():
    import dataclasses
    import importlib

    for path in native.HOT_CLASSES:
        module, name = path.rsplit(".", 1)
        cls = getattr(importlib.import_module(f"sipsync.{module}"), name)
        assert "__init__" in vars(cls), path
        if dataclasses.is_dataclass(cls):
            params = cls.__dataclass_params__
            assert not params.init and not params.frozen, path  # a generated one is interpreted
