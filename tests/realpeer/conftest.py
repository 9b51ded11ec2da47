"""Fixtures for tests against real peers (see harness.py for the API)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.realpeer.harness import Lab, require_tools


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    """Two fresh namespaces joined by a veth (ours 10.99.0.1, charon 10.99.0.2); everything started in them
    is killed and both namespaces are deleted afterwards, whatever the test's outcome."""
    require_tools()
    lab = Lab(tmp_path)
    try:
        lab.setup()
        yield lab
    finally:
        lab.cleanup()
