"""The actions every sans-I/O node returns.

A node's entry points (``start``, ``receive_datagram``, ``handle_timer``, ``close``) return ``list[Action]``.
There are only two kinds:

* :class:`Transmit`, a command: send this UDP payload from ``src`` to ``dst``.
* :class:`Event`, a fact in the past tense (``dpd_request_sent``, ``tunnel_down``...): drivers write it to the
  trace, tests assert on it. ``fields`` holds only JSON-serialisable values.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

Address = tuple[str, int]
"""An (IP address, UDP port) pair."""


@dataclass(frozen=True, slots=True)
class Transmit:
    """Send ``data`` as one UDP datagram from ``src`` to ``dst``."""

    data: bytes
    src: Address
    dst: Address
    kind: str = ""
    """What the datagram carries, for fault predicates and traces (e.g. ``dpd_ack``, ``main_mode_1``).
    The bytes may be encrypted; ``kind`` lets a fault plan drop "only R-U-THERE-ACKs" all the same."""


@dataclass(frozen=True, slots=True)
class Event:
    """Something that happened inside a node."""

    name: str
    """Event name, snake_case, past tense (e.g. ``dpd_ack_received``)."""
    fields: Mapping[str, Any] = field(default_factory=dict)
    """JSON-serialisable details (e.g. ``{"seq": 4660}``)."""

    def get(self, key: str, default: Any = None) -> Any:
        return self.fields.get(key, default)


Action = Transmit | Event


def events(actions: Iterable[Action], name: str | None = None) -> list[Event]:
    """The events in ``actions`` (optionally only those called ``name``), in order."""
    return [a for a in actions if isinstance(a, Event) and (name is None or a.name == name)]


def transmits(actions: Iterable[Action]) -> list[Transmit]:
    """The datagrams in ``actions``, in order."""
    return [a for a in actions if isinstance(a, Transmit)]
