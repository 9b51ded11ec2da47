"""Shared helpers for the TGW dataplane tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tgw_dataplane.model import Topology, load_topology

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "tgw"


def topo(name: str) -> Topology:
    """Load ``fixtures/tgw/<name>.yaml``."""
    return load_topology(FIXTURES / f"{name}.yaml")


@pytest.fixture
def seed() -> Topology:
    return topo("seed")
