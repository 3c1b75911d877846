"""The SIP service's hot path compiled with mypyc, and the guard that keeps a stale build unused.

The SIP stack and the service are pure Python and run as such everywhere. Where a C compiler and
mypyc are at hand, ``python -m sipsync.native build`` compiles the modules in ``COMPILED`` from
that same source into extension modules beside it (a third less CPU per registration, see
docs/benchmarks.md). ``./dev`` runs it after installing; nothing else needs to.

A compiled module shadows its ``.py`` file, so editing the source would silently keep running the
old code. The build therefore records a hash of every compiled source; ``activate()``, which runs
when ``sipsync`` is imported, uses the compiled modules only while every hash still matches, and
otherwise (or with ``SIPSYNC_PURE=1``) imports all of them from source. It is all or nothing:
compiled modules call each other directly, so a mix of old and new code is never run.

What mypyc leaves interpreted: the methods ``@dataclass`` generates at import time, ``__init__``
among them (a frozen one also goes through ``object.__setattr__`` per field). The classes built
for every message or call (``HOT_CLASSES``) therefore use ``@dataclass(init=False)`` with an
``__init__`` written out, which is compiled: building a transaction action became five times
faster, and a call needs 7 % fewer instructions.
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import sys
import sysconfig
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent.parent  # sipsync/
ROOT = PACKAGE_DIR.parent
MANIFEST = PACKAGE_DIR / "native" / "build.json"
GROUP = "sipsync.native_lib"  # the shared library every compiled module links to

# Everything a SIP message passes through. Left out: the command line, the configuration, the
# provisioning tools and the aiohttp control interface (none of them is on a message's path).
COMPILED = tuple(
    f"sipsync.{name}"
    for name in (
        "sip.errors", "sip.uri", "sip.headers", "sip.message", "sip.parser", "sip.digest", "sip.sdp",
        "sip.timers", "sip.transaction",
        "server.causes", "server.accounts", "server.auth", "server.calls", "server.core",
        "server.dialplan", "server.documents", "server.events", "server.location", "server.node",
        "server.notifier", "server.packages", "server.policy", "server.proxy", "server.rating",
        "server.registrar", "server.routing", "server.store", "server.subscriptions", "server.transport",
    )
)  # fmt: skip

# Built for every message or call; their __init__ must be written out (see above).
HOT_CLASSES = (
    "sip.transaction.Send", "sip.transaction.PassToTU", "sip.transaction.Timeout",
    "sip.transaction.TransportError", "sip.transaction.Terminated", "sip.digest.DigestCredentials",
    "server.proxy.Hop", "server.proxy.Branch", "server.proxy.InviteContext", "server.calls.Call",
    "server.causes.Reply", "server.policy.Verdict", "server.routing.Destination",
    "server.dialplan.CountrySettings", "server.location.Binding", "server.location.ContactChange",
    "server.packages.DialogView",
)  # fmt: skip

_EXTENSION = sysconfig.get_config_var("EXT_SUFFIX") or ".so"
state = "pure Python"  # what activate() decided, for logs and benchmarks


def source_path(module: str) -> Path:
    return ROOT.joinpath(*module.split(".")).with_suffix(".py")


def _compiled(module: str) -> Path:
    return ROOT.joinpath(*module.split(".")).with_name(module.rsplit(".", 1)[1] + _EXTENSION)


def fingerprint() -> dict[str, str]:
    """The hash of every compiled module's source, and what the build depends on besides."""
    prints = {m: hashlib.blake2b(source_path(m).read_bytes(), digest_size=16).hexdigest() for m in COMPILED}
    prints["python"] = sys.version
    prints["ext"] = _EXTENSION
    return prints


def built_files() -> list[Path]:
    files = [_compiled(m) for m in COMPILED]
    files.append(ROOT.joinpath(*GROUP.split(".")).with_name(GROUP.rsplit(".", 1)[1] + "__mypyc" + _EXTENSION))
    return files


def is_fresh() -> bool:
    """True when a build exists and was made from the sources and interpreter now present."""
    try:
        recorded = json.loads(MANIFEST.read_text())
    except (OSError, ValueError):
        return False
    return recorded == fingerprint() and all(path.exists() for path in built_files())


class _SourceFirst(importlib.abc.MetaPathFinder):
    """Import the listed modules from their ``.py`` files even where an extension shadows them."""

    def __init__(self, modules: tuple[str, ...]) -> None:
        self._modules = frozenset(modules)

    def find_spec(self, name, path=None, target=None):  # noqa: ANN001 - importlib's protocol
        if name not in self._modules:
            return None
        source = source_path(name)
        loader = importlib.machinery.SourceFileLoader(name, str(source))
        return importlib.util.spec_from_file_location(name, source, loader=loader)


def activate() -> str:
    """Choose compiled or pure modules for this process (before any of them is imported)."""
    global state
    if not any(path.exists() for path in built_files()):
        state = "pure Python (not compiled)"
        return state
    if os.environ.get("SIPSYNC_PURE") == "1":
        reason = "SIPSYNC_PURE=1"
    elif not is_fresh():
        reason = "the compiled build is stale: run ./dev test, ./dev run or python -m sipsync.native build"
    else:
        state = "compiled with mypyc"
        return state
    sys.meta_path.insert(0, _SourceFirst(COMPILED))
    state = f"pure Python ({reason})"
    return state
