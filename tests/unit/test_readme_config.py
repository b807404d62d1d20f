"""Every YAML block in README.md is a valid configuration file (``switchboard check-config``
checks the same model), so a config snippet pasted from the README loads."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.config import load_config
from tests.e2e.test_readme import blocks

README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.mark.parametrize("index", range(len(blocks(README, "yaml"))))
def test_each_yaml_snippet_is_a_valid_config(tmp_path: Path, index: int) -> None:
    path = tmp_path / "switchboard.yaml"
    path.write_text(blocks(README, "yaml")[index])
    load_config(path)


def test_the_tracing_and_cache_snippets_say_what_they_turn_on(tmp_path: Path) -> None:
    path = tmp_path / "switchboard.yaml"
    path.write_text("\n".join(blocks(README, "yaml")))
    config = load_config(path)
    assert config.tracing.enabled and config.tracing.protocol == "http/protobuf"
    assert config.cache.enabled and config.cache.backend == "memory"
    assert "chat-fast" in config.cache.routes
