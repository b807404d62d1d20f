"""Issue 11's speed targets from one peer run: Switchboard against Portkey (and LiteLLM) and the
direct calls, all measured in the same interleaved run of ../shared/bench-peers/bench.py.

    python bench/peers_targets.py [RAW_JSON]   # default: newest bench/results/peers/raw-*.json

Reads bench.py's raw JSON (medians over rounds, as its own summary computes them) and prints
one markdown table: per metric the direct figure, Switchboard's, Portkey's and LiteLLM's, then
each target with the measured ratio and whether it is met. "Added" latency is target minus
direct from the same run. `bench/peers.sh` runs this at the end of every peer run.
"""

from __future__ import annotations

import json
import statistics
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results" / "peers"
US, PORTKEY, LITELLM, DIRECT = "switchboard", "portkey", "litellm", "direct"


def _median(runs: Sequence[dict[str, Any]], target: str, test: str, *path: str) -> float | None:
    vals = []
    for r in runs:
        if r.get("target") != target or r.get("test") != test or "error" in r:
            continue
        v: Any = r.get("result")
        for key in path:
            v = v.get(key) if isinstance(v, dict) else None
        if isinstance(v, (int, float)):
            vals.append(float(v))
    return statistics.median(vals) if vals else None


def _added(value: float | None, direct: float | None) -> float | None:
    return None if value is None or direct is None else value - direct


def _ratio(a: float | None, b: float | None) -> float | None:
    # A ratio to a figure <= 0 says nothing (an added latency below 0 is direct's noise).
    return None if a is None or b is None or b <= 0 else a / b


def _fmt(v: float | None, nd: int = 2) -> str:
    return "-" if v is None else f"{v:,.{nd}f}"


def table(raw: dict[str, Any]) -> str:
    runs: list[dict[str, Any]] = raw["runs"]
    conc = max(int(c) for c in raw["args"]["conc"])
    c_test = f"c{conc}"
    names = [t["name"] for t in raw["targets"]]

    def metric(name: str) -> dict[str, float | None]:
        d50 = _median(runs, DIRECT, "c1", "lat_ms", "p50")
        d99 = _median(runs, DIRECT, "c1", "lat_ms", "p99")
        return {
            "rps": _median(runs, name, c_test, "rps"),
            "cpu": _median(runs, name, c_test, "target_cpu_ms_per_req"),
            "rss": _median(runs, name, c_test, "target_rss_mb"),
            "p50": _added(_median(runs, name, "c1", "lat_ms", "p50"), d50)
            if name != DIRECT
            else d50,
            "p99": _added(_median(runs, name, "c1", "lat_ms", "p99"), d99)
            if name != DIRECT
            else d99,
            "ttft": _median(runs, name, "stream", "ttft_ms", "p50"),
        }

    cols = [n for n in (DIRECT, US, PORTKEY, LITELLM) if n in names]
    m = {n: metric(n) for n in cols}
    rows = [
        ("c1 p50 ms (direct) / added p50 ms", "p50", 3),
        ("c1 p99 ms (direct) / added p99 ms", "p99", 3),
        (f"req/s @c{conc}", "rps", 0),
        (f"CPU ms/req @c{conc}", "cpu", 3),
        ("streaming TTFT p50 ms", "ttft", 2),
        (f"RSS MB @c{conc}", "rss", 0),
    ]
    out = [
        f"Issue 11 targets, one peer run ({raw.get('started', '?')}, "
        f"{raw['args'].get('rounds')} rounds, {raw.get('meta', {}).get('host', '')})",
        "",
        "| metric | " + " | ".join(cols) + " |",
        "|---|" + "---|" * len(cols),
    ]
    for label, key, nd in rows:
        out.append(f"| {label} | " + " | ".join(_fmt(m[n][key], nd) for n in cols) + " |")
    us, pk, direct = m.get(US, {}), m.get(PORTKEY, {}), m.get(DIRECT, {})

    def check(
        label: str, value: float | None, ok: Callable[[float], bool], goal: str
    ) -> tuple[str, str, str, str]:
        verdict = "n/a" if value is None else ("met" if ok(value) else "NOT met")
        return label, _fmt(value, 2), goal, verdict

    targets = [
        check(
            f"shim req/s @c{conc} vs Portkey",
            _ratio(us.get("rps"), pk.get("rps")),
            lambda r: r >= 3.0,
            ">= 3x",
        ),
        check(
            "CPU ms/req vs Portkey",
            _ratio(us.get("cpu"), pk.get("cpu")),
            lambda r: r <= 0.25,
            "<= 0.25x",
        ),
        check(
            "c1 added p50 vs Portkey's",
            _ratio(us.get("p50"), pk.get("p50")),
            lambda r: r <= 0.25,
            "<= 0.25x",
        ),
        check(
            "c1 added p99 vs Portkey's",
            _ratio(us.get("p99"), pk.get("p99")),
            lambda r: r <= 0.2,
            "<= 0.2x",
        ),
        check(
            "streaming TTFT vs direct TTFT",
            _ratio(us.get("ttft"), direct.get("ttft")),
            lambda r: r <= 2.0,
            "<= 2x",
        ),
        check(f"RSS MB @c{conc}", us.get("rss"), lambda v: v <= 100.0, "<= 100 MB"),
    ]
    out += ["", "| target | measured | goal | verdict |", "|---|---|---|---|"]
    out += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in targets]
    out.append(
        "\n(n/a: a figure is missing or the one divided by is <= 0, e.g. direct's p99 above"
        " a peer's in a short run)"
    )
    if PORTKEY not in names:
        out.append("\n(Portkey was not running: ../shared/bench-peers/peers.sh start)")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args:
        path = Path(args[0])
    else:
        found = sorted(RESULTS.glob("raw-*.json"))
        if not found:
            print(f"no raw-*.json in {RESULTS}", file=sys.stderr)
            return 2
        path = found[-1]
    print(table(json.loads(path.read_text())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
