"""What the in-process drivers (bench/register_profile.py, bench/call_profile.py) share: their
common options, the warm-up before the measured run, and the count of instructions they execute
per unit of work (a registration, a call) by valgrind's cachegrind. For the count the driver runs
twice, with ``count`` and with ``2 * count`` units, and the difference is divided by ``count``, so
start-up and warm-up cancel out; it moves by under 1 % from run to run however busy the machine
is, which timings on a shared machine do not."""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from sipsync.server.node import tune_gc

_REFS = re.compile(r"I\s+refs:\s+([\d,]+)")
# valgrind runs some 50 times slower: --instructions cuts the default counts
VALGRIND_COUNT_SHARE, VALGRIND_WARMUP_SHARE = 20, 10


def add_options(parser: argparse.ArgumentParser, units: str, *, count: int, warmup: int, batch: str) -> None:
    """The options every driver has; ``units`` names what is counted ("calls", "registrations")."""
    add = parser.add_argument
    add("--users", type=int, default=1000, help="accounts taking turns (default 1,000)")
    add("--count", type=int, default=count, help=f"{units} measured (default {count:,})")
    add("--warmup", type=int, default=warmup, help=f"{units} before measuring (default {warmup:,})")
    add("--batch", type=int, default=100, help=f"{batch} (default 100)")
    add("--profile", type=int, default=0, metavar="N", help="print cProfile's top N functions")
    add("--no-gc-tuning", action="store_true", help="leave the garbage collector as it is")
    add("--instructions", action="store_true",
        help=f"instructions per unit under valgrind (runs --count and 2 x --count {units})")  # fmt: skip
    add("--quiet", action="store_true", help=argparse.SUPPRESS)


def parse(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """The options, checked; with --instructions, counts left at their defaults are cut down."""
    args = parser.parse_args(argv)
    if args.count % args.batch or args.warmup % args.batch:
        parser.error("--count and --warmup must be multiples of --batch")
    if args.instructions:
        if args.count == parser.get_default("count"):
            args.count //= VALGRIND_COUNT_SHARE
        if args.warmup == parser.get_default("warmup"):
            args.warmup //= VALGRIND_WARMUP_SHARE
    return args


def warm_then_measure(
    run: Callable[[int, int], Coroutine[Any, Any, None]], args: argparse.Namespace, reset: Callable[[], None]
) -> None:
    """``run(args.warmup, args.batch)``; the collector tuned as ``python -m sipsync.server`` does
    once started (unless --no-gc-tuning); ``reset()`` to zero the driver's timings; then the
    measured ``run(args.count, args.batch)``, under cProfile with --profile N (its top N printed)."""
    asyncio.run(run(args.warmup, args.batch))
    if not args.no_gc_tuning:
        tune_gc()
    reset()
    profiler = cProfile.Profile() if args.profile else None
    if profiler is not None:
        profiler.enable()
    asyncio.run(run(args.count, args.batch))
    if profiler is not None:
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(args.profile)


def instructions_per_unit(script: Path, args: argparse.Namespace, extra: list[str], cwd: Path) -> int:
    """Instructions per unit of ``script`` run with ``args``' common options and ``extra``."""
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        raise SystemExit("--instructions needs valgrind (Debian package valgrind)")
    totals = []
    for units in (args.count, 2 * args.count):
        argv = [valgrind, "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null",
                sys.executable, str(script), "--quiet", "--count", str(units), "--warmup", str(args.warmup),
                "--users", str(args.users), "--batch", str(args.batch), *extra]  # fmt: skip
        if args.no_gc_tuning:
            argv.append("--no-gc-tuning")
        done = subprocess.run(argv, capture_output=True, text=True, cwd=cwd, check=False)
        match = _REFS.search(done.stderr)
        if done.returncode != 0 or match is None:
            raise SystemExit(f"valgrind run failed ({done.returncode}):\n{done.stderr[-2000:]}")
        totals.append(int(match.group(1).replace(",", "")))
    return (totals[1] - totals[0]) // args.count
