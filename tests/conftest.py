"""Suite-wide: every virtual-time network in the tests checks every event against ``cgw_peer/events.py``.

A test that wires toy nodes with made-up events opts out with ``pytestmark = pytest.mark.toy_events``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from emulator import simnet


@pytest.fixture(autouse=True)
def _strict_events(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    if request.node.get_closest_marker("toy_events") is None:
        original = simnet.SimNetwork.__init__

        def strict_init(self: simnet.SimNetwork, *args: Any, **kw: Any) -> None:
            kw.setdefault("strict_events", True)
            original(self, *args, **kw)

        monkeypatch.setattr(simnet.SimNetwork, "__init__", strict_init)
    yield
