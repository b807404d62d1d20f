"""CPU per usage row written by the embedded ledger, as its file grows, by kind of row id.

The ledger writes its buffered rows in batches (``SqliteLedger._write``, one transaction each);
this writes ``--batches`` batches of ``--batch`` rows into a new ``usage.db`` and prints the
writer's CPU per row for each block of ``--block`` rows, once with time-ordered row ids
(``new_row_id``, what the ledger records) and once with random ones (what it recorded before):
a random key lands anywhere in the unique index on ``row_id``, so each insert dirties a page of
its own and the cost grows with the file. Rows are built before the clock starts; only the
write is timed. No network; files in a temporary directory.

    python bench/ledger_write.py [--batches 400] [--batch 1000] [--block 100000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from server.core.ids import new_request_id, new_row_id  # noqa: E402
from server.core.state import UsageRow  # noqa: E402
from server.store.embedded.ledger import SqliteLedger  # noqa: E402


def row(row_id: str, when: float) -> UsageRow:
    """One successful non-streamed request's row, as the bench's gateway records it."""
    return UsageRow(
        when, new_request_id(), "key_bench", "http", "mock-model", "mock-model", "openai",
        "mock-model", "openai/mock-model", False, "success", 200, 1, 30, 9, 0, 0, 0,
        4500, 5400, 0, 0, 9900, 0.412, row_id, None,
    )  # fmt: skip


def cpu_per_row(ids: Callable[[], str], args: argparse.Namespace) -> list[float]:
    """Microseconds of CPU per row written, one figure per block of rows."""
    with tempfile.TemporaryDirectory(prefix="bench-ledger-") as tmp:
        ledger = SqliteLedger(Path(tmp))
        try:
            start, spent, written, out = time.time(), 0.0, 0, []
            for n in range(args.batches):
                rows = [row(ids(), start + (n * args.batch + i) * 1e-4) for i in range(args.batch)]
                before = time.process_time()
                ledger._write(rows)
                spent += time.process_time() - before
                written += len(rows)
                if written >= args.block:
                    out.append(1e6 * spent / written)
                    spent, written = 0.0, 0
            return out
        finally:
            ledger._close_conn()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=400)
    parser.add_argument("--batch", type=int, default=1000, help="rows per transaction")
    parser.add_argument("--block", type=int, default=100_000, help="rows per printed figure")
    args = parser.parse_args()
    kinds: dict[str, Callable[[], str]] = {"ordered": new_row_id, "random": new_request_id}
    print(f"CPU us per row written, per block of {args.block:,} rows ({args.batch} per batch)")
    for name, ids in kinds.items():
        figures = cpu_per_row(ids, args)
        print(f"  {name:8} " + "  ".join(f"{f:6.1f}" for f in figures))


if __name__ == "__main__":
    main()
