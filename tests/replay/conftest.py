"""Everything under tests/replay replays recorded provider traffic (../shared/fixtures, located
by ``tests.fixtures_dir``), so every test here carries the ``replay`` marker and ``-m replay``
selects exactly this folder."""

from __future__ import annotations

from pathlib import Path

import pytest

_HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Called once with the whole session's items, not only this folder's: filter by path.
    for item in items:
        if _HERE in Path(item.path).resolve().parents:
            item.add_marker(pytest.mark.replay)
