from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "emulator" / "campaign" / "examples"


@pytest.fixture
def examples(tmp_path: Path) -> Path:
    """A copy of the example campaign directory (base scenarios next to the campaign files)."""
    d = tmp_path / "examples"
    shutil.copytree(EXAMPLES, d)
    return d


def write(path: Path, text: str) -> str:
    path.write_text(text)
    return os.fspath(path)
