"""Fixtures of the crop tests (the helpers live in crop_fixtures.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.crop.crop_fixtures import Mosaic, write_mosaic


@pytest.fixture
def quad(tmp_path: Path) -> Mosaic:
    """2x2 FFV1 mosaic, 24 frames, with tiles one pixel apart in width and height."""
    return write_mosaic(tmp_path / "quad.avi", [96, 97], [64, 63], 24, sep=5)


@pytest.fixture
def stereo(tmp_path: Path) -> Mosaic:
    """1x2 side-by-side FFV1 mosaic, 24 frames, no border, 2-px separator."""
    return write_mosaic(tmp_path / "stereo.avi", [80, 80], [60], 24, border=0, sep=2)
