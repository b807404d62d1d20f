"""grpcio's runtime defaults are set by ``import server``, before grpc core can read them."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

PROBE = "import os, server.cli; print(os.environ.get('GRPC_EXPERIMENTS'))"


def _probe(env: dict[str, str]) -> str:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_the_gateway_defaults_to_iomgrs_listener() -> None:
    env = {k: v for k, v in os.environ.items() if k != "GRPC_EXPERIMENTS"}
    assert _probe(env) == "-event_engine_listener"


@pytest.mark.parametrize("value", ["", "event_engine_listener"])
def test_an_operators_setting_wins(value: str) -> None:
    assert _probe({**os.environ, "GRPC_EXPERIMENTS": value}) == value


def test_grpc_is_not_imported_before_the_default_is_set() -> None:
    # grpc core reads GRPC_EXPERIMENTS once, at import: the package's __init__ must run first,
    # so it must not import anything that pulls grpc in.
    code = "import sys, server; print('grpc' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
