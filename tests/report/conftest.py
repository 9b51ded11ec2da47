"""One tour run shared by the report tests (about 10 s): the captures, pictures and pages they check."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tour_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from emulator.tour import run_tour

    out = tmp_path_factory.mktemp("tour")
    assert run_tour(str(out), quiet=True) == 0
    return out
