"""--profile: py-spy attached to a gateway for one run, summarised into the report."""

from __future__ import annotations

import argparse
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from harness.config import PY


def start_profile(
    args: argparse.Namespace, pid: int, target: str, test: str, rnd: int
) -> tuple[subprocess.Popen[bytes], Path] | None:
    """py-spy record on ``pid`` for this run, when --profile asks for it."""
    if not args.profile or test not in args.profile_tests:
        return None
    pyspy = Path(PY).with_name("py-spy")
    exe = str(pyspy) if pyspy.exists() else shutil.which("py-spy")
    if exe is None:
        print("note: py-spy not found (pip install py-spy); not profiling", file=sys.stderr)
        args.profile = False
        return None
    out = Path(args.out) / f"profile-{args.stamp}-{test}-{target}-r{rnd}.txt"
    cmd = [
        exe,
        "record",
        "--pid",
        str(pid),
        "--rate",
        str(args.profile_rate),
        "--format",
        "raw",
        # Only samples where a thread holds the GIL: CPU the event loop spends, not waits.
        "--gil",
        "--output",
        str(out),
    ]
    popen = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL
    )
    time.sleep(0.3)  # let it attach before the load starts
    return popen, out


def finish_profile(popen: subprocess.Popen[bytes], out: Path) -> dict[str, Any]:
    """Stops py-spy (SIGINT makes it write the file) and summarises the hotspots."""
    from profile_top import summarize as summarize_profile

    popen.send_signal(signal.SIGINT)
    try:
        _, err = popen.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        popen.kill()
        _, err = popen.communicate()
    if not out.exists():
        return {"error": err.decode(errors="replace")[-500:]}
    return {"file": str(out)} | summarize_profile(out, top=15, focus="server/")
