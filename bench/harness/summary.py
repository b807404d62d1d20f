"""From raw runs to figures: medians over rounds, added latency, verdicts, baseline ratios."""

from __future__ import annotations

import statistics
from typing import Any

from harness.config import BASELINE, direct_client

# Issue 11's targets that one run of bench/run.py measures, each within the run (ratios, since
# absolute figures drift on these machines); the Portkey ratios come from bench/peers.sh
# (bench/peers_targets.py).
TARGETS = {
    "grpc_vs_shim_rps_c64": 1.0,
    "grpc_vs_shim_added_p50_c1": 1.0,
    "shim_ttft_vs_direct": 2.0,
    "shim_rss_c64_mb": 100.0,
    "shim_chunk_cpu_vs_baseline": 0.5,
    "grpc_chunk_cpu_vs_baseline": 0.5,
}


def get_path(d: Any, path: tuple[str, ...]) -> Any:
    """``d[path[0]][path[1]]...``, or None where a level is missing."""
    for k in path:
        d = d.get(k) if isinstance(d, dict) else None
    return d


def median(vals: list[Any]) -> float | None:
    """Median of the numbers in ``vals`` (None when there are none)."""
    v = [x for x in vals if isinstance(x, int | float)]
    return statistics.median(v) if v else None


def role(target: str) -> str:
    """Which sampled process answers ``target``'s client: the upstream or a gateway."""
    return "upstream" if target == "direct" else "gateway"


class Summary:
    """Medians across rounds, and added latency as the median of per-round differences."""

    def __init__(self, runs: list[dict[str, Any]]) -> None:
        self.runs = runs

    def values(self, test: str, target: str, client: str, *path: str) -> list[Any]:
        """The value at ``path`` of every completed run of (test, target, client)."""
        return [
            get_path(r["result"], path)
            for r in self.runs
            if r["test"] == test
            and r["target"] == target
            and r["client"] == client
            and "result" in r
        ]

    def med(self, test: str, target: str, client: str, *path: str) -> float | None:
        """Median over rounds of the value at ``path``."""
        return median(self.values(test, target, client, *path))

    def added(
        self, test: str, target: str, client: str, base_client: str, *path: str
    ) -> float | None:
        """Median over rounds of (target - direct) for the same round."""
        by_round: dict[int, dict[str, float]] = {}
        for r in self.runs:
            if r["test"] != test or "result" not in r:
                continue
            v = get_path(r["result"], path)
            if not isinstance(v, int | float):
                continue
            if r["target"] == target and r["client"] == client:
                by_round.setdefault(r["round"], {})["t"] = v
            elif r["target"] == "direct" and r["client"] == base_client:
                by_round.setdefault(r["round"], {})["d"] = v
        return median([x["t"] - x["d"] for x in by_round.values() if "t" in x and "d" in x])

    def errors(self, test: str, target: str, client: str) -> int:
        """Failed requests plus failed runs of (test, target, client)."""
        n = 0
        for r in self.runs:
            if r["test"] == test and r["target"] == target and r["client"] == client:
                n += int(get_path(r.get("result"), ("errors",)) or 0) + (1 if "error" in r else 0)
        return n


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b <= 0 else a / b


def verdicts(s: Summary, http_client: str, grpc_client: str = "python") -> list[dict[str, Any]]:
    """Each issue target with the measured value and PASS/FAIL (n/a when not measured).

    The gRPC/shim pairs use each surface's first load generator (``grpc_client``: h2load when
    installed, else grpc.aio; ``http_client``: wrk when installed), as the tables do; "added"
    latency is the difference from direct calls in the same round, direct measured by the
    HTTP client for h2load (both C) and by the Python one for grpc.aio."""
    base = direct_client(grpc_client, http_client)
    rows = [
        (
            "grpc_vs_shim_rps_c64",
            f"gRPC unary req/s @c64 / shim's ({grpc_client} vs {http_client})",
            ">=",
            _ratio(
                s.med("c64", "grpc", grpc_client, "rps"), s.med("c64", "shim", http_client, "rps")
            ),
            "x",
        ),
        (
            "grpc_vs_shim_added_p50_c1",
            f"gRPC added p50 @c1 / shim's ({grpc_client}-{base} vs {http_client})",
            "<=",
            _ratio(
                s.added("c1", "grpc", grpc_client, base, "lat_ms", "p50"),
                s.added("c1", "shim", http_client, http_client, "lat_ms", "p50"),
            ),
            "x",
        ),
        (
            "shim_ttft_vs_direct",
            "shim streaming TTFT p50 / direct's",
            "<=",
            _ratio(
                s.med("stream", "shim", "python", "ttft_ms", "p50"),
                s.med("stream", "direct", "python", "ttft_ms", "p50"),
            ),
            "x",
        ),
        (
            "shim_rss_c64_mb",
            "gateway RSS after the shim @c64",
            "<=",
            s.med("c64", "shim", http_client, "cpu", "gateway", "rss_mb"),
            "MB",
        ),
        *(
            (
                f"{kind}_chunk_cpu_vs_baseline",
                f"{kind} stream CPU/chunk / --baseline's",
                "<=",
                _ratio(_stream_cpu(s, kind), _stream_cpu(s, kind + BASELINE)),
                "x",
            )
            for kind in ("shim", "grpc")
        ),
    ]
    out = []
    for key, label, op, value, unit in rows:
        goal = TARGETS[key]
        if value is None:
            status = "n/a"
        else:
            status = "PASS" if (value <= goal if op == "<=" else value >= goal) else "FAIL"
        out.append(
            {
                "key": key,
                "label": label,
                "op": op,
                "target": goal,
                "value": None if value is None else round(value, 4),
                "unit": unit,
                "status": status,
            }
        )
    return out


def _stream_cpu(s: Summary, target: str) -> float | None:
    """Gateway CPU ms per stream of CHUNKS chunks (n/a for a target this run did not start).

    Both sides stream the same CHUNKS chunks, so the ratio of the two is the per-chunk ratio
    with the fixed per-request work included: `bench/growth.py --baseline` isolates the
    per-chunk slope."""
    return s.med("stream", target, "python", "cpu", "gateway", "ms_per_req")


# What --baseline compares: (metric, which way is better, test, added vs direct?, path).
_COMPARED = (
    ("req/s", "higher", "c64", False, ("rps",)),
    ("gateway CPU ms/req", "lower", "c64", False, ("cpu", "gateway", "ms_per_req")),
    ("added p50 @c1", "lower", "c1", True, ("lat_ms", "p50")),
    ("added p99 @c1", "lower", "c1", True, ("lat_ms", "p99")),
    ("streaming TTFT added p50", "lower", "stream", True, ("ttft_ms", "p50")),
)


def comparison(s: Summary, http_client: str, grpc_client: str = "python") -> list[dict[str, Any]]:
    """The current gateway against the --baseline one: both figures and current / baseline.

    Each figure is what the tables show (a median over rounds; "added" is paired with direct
    per round). The ratio is of those two figures, None unless the baseline's is positive:
    a ratio to an added latency near 0 says nothing.
    """
    out = []
    for kind in ("shim", "grpc"):
        for metric, better, test, added, path in _COMPARED:
            client = (
                "python" if test == "stream" else grpc_client if kind == "grpc" else http_client
            )
            base = direct_client(client, http_client)
            current = _figure(s, test, kind, client, base, added, path)
            baseline = _figure(s, test, kind + BASELINE, client, base, added, path)
            if current is None and baseline is None:
                continue
            ratio = None
            if current is not None and baseline is not None and baseline > 0:
                ratio = current / baseline
            out.append(
                {
                    "target": kind,
                    "metric": metric,
                    "test": test,
                    "client": client,
                    "better": better,
                    "added": added,
                    "current": current,
                    "baseline": baseline,
                    "ratio": None if ratio is None else round(ratio, 4),
                }
            )
    return out


def _figure(
    s: Summary,
    test: str,
    target: str,
    client: str,
    base_client: str,
    added: bool,
    path: tuple[str, ...],
) -> float | None:
    if added:
        return s.added(test, target, client, base_client, *path)
    return s.med(test, target, client, *path)
