"""Summarises a py-spy ``--format raw`` profile (collapsed stacks): top functions by self and
by inclusive samples, so a benchmark report can name the hotspots without a flame graph viewer.

    python bench/profile_top.py profile.txt [--top 20] [--focus server/]
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path
from typing import Any

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def _short(file: str) -> str:
    for marker in ("/site-packages/", "/lib/python3.11/", "/work/main/"):
        if marker in file:
            return file.split(marker, 1)[1]
    return file


def frame_name(frame: str) -> str:
    """``func (path:line)`` → ``short/path.py:func``."""
    m = _FRAME.match(frame.strip())
    if not m:
        return frame.strip()
    return f"{_short(m['file'])}:{m['func']}"


def package(name: str) -> str:
    """``httpx/_client.py:f`` → ``httpx``; ``server/http_shim/asgi.py:f`` → ``server/http_shim``;
    stdlib modules by module name (``logging``, ``asyncio``)."""
    path = name.split(":", 1)[0]
    parts = path.split("/")
    if parts[0] == "server" and len(parts) > 2:
        return "/".join(parts[:2])
    return parts[0].removesuffix(".py")


def summarize(path: Path, top: int = 20, focus: str | None = None) -> dict[str, Any]:
    """Self and inclusive sample counts per function, plus (with ``focus``) the first frame
    whose file contains ``focus`` (e.g. ``server/``): where our own code spends its samples."""
    by_pkg: Counter[str] = Counter()
    self_c: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    ours: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [frame_name(f) for f in stack.split(";")]
        if frames and frames[0].startswith("process "):
            frames = frames[1:]
        if frames and frames[0].startswith("thread "):
            frames = frames[1:]
        if not frames or all(f.startswith("threading.py:") for f in frames):
            # A native thread (grpc's poller) blocked in C: py-spy cannot tell it is idle.
            continue
        total += n
        self_c[frames[-1]] += n
        by_pkg[package(frames[-1])] += n
        for fr in set(frames):
            incl[fr] += n
        if focus:
            own = [f for f in frames if f.startswith(focus)]
            if own:
                ours[own[-1]] += n

    def pct(c: Counter[str]) -> list[tuple[str, float]]:
        return [(k, round(100 * v / total, 1)) for k, v in c.most_common(top)] if total else []

    return {
        "samples": total,
        "self": pct(self_c),
        "inclusive": pct(incl),
        "own_leaf": pct(ours),
        "self_by_package": pct(by_pkg),
    }


def render(s: dict[str, Any]) -> str:
    """The summary as text."""
    out = [f"samples: {s['samples']}", "top self (% of samples):"]
    out += [f"  {p:5.1f}  {k}" for k, p in s["self"]]
    out.append("top inclusive:")
    out += [f"  {p:5.1f}  {k}" for k, p in s["inclusive"]]
    out.append("self time by package:")
    out += [f"  {p:5.1f}  {k}" for k, p in s["self_by_package"]]
    if s["own_leaf"]:
        out.append("deepest own frame (time below it included):")
        out += [f"  {p:5.1f}  {k}" for k, p in s["own_leaf"]]
    return "\n".join(out)


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("profile")
    p.add_argument("--top", type=int, default=20)
    p.add_argument("--focus", default="server/")
    a = p.parse_args()
    print(render(summarize(Path(a.profile), a.top, a.focus)))


if __name__ == "__main__":
    main()
