"""Where recorded provider traffic lives: ``../shared/fixtures`` next to the repository.

Tests read it at test time and never copy it into the repository. ``SWITCHBOARD_FIXTURES_DIR``
overrides the location. When the directory is absent the calling test is skipped with the
reason, unless ``SWITCHBOARD_REQUIRE_FIXTURES=1``, in which case it fails.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


def shared_fixtures_dir() -> Path:
    """The shared fixtures directory; skips (or, when required, fails) the test if missing."""
    override = os.environ.get("SWITCHBOARD_FIXTURES_DIR")
    path = Path(override) if override else REPO_ROOT.parent / "shared" / "fixtures"
    if path.is_dir():
        return path
    reason = (
        f"recorded provider fixtures not found at {path} "
        "(set SWITCHBOARD_FIXTURES_DIR to their location)"
    )
    if os.environ.get("SWITCHBOARD_REQUIRE_FIXTURES") == "1":
        pytest.fail(reason + "; SWITCHBOARD_REQUIRE_FIXTURES=1 requires them")
    pytest.skip(reason)
