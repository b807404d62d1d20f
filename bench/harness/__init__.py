"""The benchmark harness behind bench/run.py: processes, load, summary and report.

Importing it puts bench/ and the repository root on sys.path, because the harness uses its
sibling scripts (loadgen, fake_upstream, profile_top) as top-level modules and starts gateways
with tests/support/server.py, as the test suite does.
"""

from __future__ import annotations

import sys
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parents[1]
REPO_ROOT = BENCH_DIR.parent

for _path in (str(BENCH_DIR), str(REPO_ROOT)):
    if _path not in sys.path:
        sys.path.append(_path)
