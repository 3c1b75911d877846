"""Instructions a benchmark driver executes per unit of work (a registration, a call), counted by
valgrind's cachegrind: the driver runs twice, with ``count`` and with ``2 * count`` units, and the
difference is divided by ``count``, so start-up and warm-up cancel out. The count moves by under
1 % from run to run however busy the machine is, which timings on a shared machine do not."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

_REFS = re.compile(r"I\s+refs:\s+([\d,]+)")


def per_unit(script: Path, arguments_for: Callable[[int], list[str]], count: int, cwd: Path) -> int:
    """Instructions per unit of ``script`` run as ``python script *arguments_for(units)``."""
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        raise SystemExit("--instructions needs valgrind (Debian package valgrind)")
    totals = []
    for units in (count, 2 * count):
        argv = [valgrind, "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null",
                sys.executable, str(script), *arguments_for(units)]  # fmt: skip
        done = subprocess.run(argv, capture_output=True, text=True, cwd=cwd, check=False)
        match = _REFS.search(done.stderr)
        if done.returncode != 0 or match is None:
            raise SystemExit(f"valgrind run failed ({done.returncode}):\n{done.stderr[-2000:]}")
        totals.append(int(match.group(1).replace(",", "")))
    return (totals[1] - totals[0]) // count
