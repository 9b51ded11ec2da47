"""Load the published test vectors under ``fixtures/vectors/``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

VECTORS = Path(__file__).resolve().parents[2] / "fixtures" / "vectors"


def load(name: str) -> dict[str, Any]:
    with open(VECTORS / name) as f:
        data: dict[str, Any] = json.load(f)
    assert data.get("source"), f"{name} must name its source"
    return data


def h(s: str) -> bytes:
    return bytes.fromhex("".join(s.split()))
