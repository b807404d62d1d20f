"""Memory under load: the gateway's RSS idle, under c64 and over a soak.

Starts ``bench/fake_upstream.py`` and a gateway of this checkout (the same route and body as
``bench/run.py``), reads its RSS once it is ready (idle), then drives the shim with wrk at
``--conns`` connections for ``--minutes``, in slices of ``--slice`` seconds, alternating
non-streamed and streamed requests. After each slice it prints the slice's req/s and the RSS;
at the end the RSS at idle, after the first slice and at the end, and the growth from the
first slice to the end (the warm-up allocations are in the first slice, so growth after it is
what a leak would show).

    python bench/soak.py [--minutes 5] [--conns 64] [--slice 30]

Everything binds 127.0.0.1; the run is bounded by ``--minutes``.
"""

from __future__ import annotations

import argparse
import secrets
import sys
import tempfile
import time
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[1]
for path in (str(ROOT), str(ROOT / "bench")):
    if path not in sys.path:
        sys.path.insert(0, path)

from harness.config import BODY, STREAM_BODY  # noqa: E402
from harness.load import Target, run_wrk  # noqa: E402
from harness.process import fake_upstream, launch_gateway, rss_snapshot  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--conns", type=int, default=64)
    parser.add_argument("--slice", type=float, default=30.0, help="seconds per wrk run")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench-soak-") as tmp, fake_upstream() as upstream:
        work = Path(tmp)
        gateway = launch_gateway(
            "gateway",
            ROOT,
            work / "gw",
            upstream,
            "sk-upstream-" + secrets.token_hex(8),
            command=None,
            log_level=None,
            cpus=None,
            timeout=30,
        )
        try:
            pids = {"gateway": gateway.pid}
            time.sleep(2)  # startup work (imports, first flush) settles
            idle = rss_snapshot(pids)["gateway"]
            print(f"idle RSS {idle:.1f} MB")
            bodies = {}
            for name, body in (("unary", BODY), ("stream", STREAM_BODY)):
                bodies[name] = work / f"{name}.json"
                bodies[name].write_bytes(orjson.dumps(body))
            target = Target("shim", "http", gateway.url, gateway.key, pids)
            samples: list[float] = []
            end = time.monotonic() + args.minutes * 60
            n = 0
            while time.monotonic() < end:
                kind = "unary" if n % 2 == 0 else "stream"
                seconds = min(args.slice, max(1.0, end - time.monotonic()))
                res = run_wrk(target, bodies[kind], args.conns, seconds, warmup=0)
                rss = res["cpu"]["gateway"]["rss_mb"]
                samples.append(rss)
                print(
                    f"slice {n + 1:2d} {kind:6s} {res['rps']:8.0f} req/s  errors {res['errors']:4d}"
                    f"  RSS {rss:6.1f} MB",
                    flush=True,
                )
                n += 1
            first, last, peak = samples[0], samples[-1], max(samples)
            print(
                f"RSS idle {idle:.1f} MB; after the first slice {first:.1f} MB; end {last:.1f} MB;"
                f" peak {peak:.1f} MB; growth first->end {last - first:+.1f} MB over"
                f" {args.minutes:g} min at c{args.conns}"
            )
        finally:
            gateway.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
