from __future__ import annotations

from pathlib import Path

import pytest

from tests.documents.factories import World, build_world


@pytest.fixture
def world(db, key) -> World:  # type: ignore[no-untyped-def]
    return build_world(db, key)


@pytest.fixture
def out_dir(tmp_path: Path) -> Path:
    return tmp_path / "documents"
