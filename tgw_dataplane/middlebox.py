"""The plug-in interface for packet processing inside a VPC: appliances and GWLB endpoints.

The dataplane walks a packet from route table to route table. When a VPC route sends it to an appliance ENI
(``eni-...``/``i-...``) or a GWLB endpoint (``gwlbe-...``/``vpce-...``), the dataplane hands it to that node's
:class:`Middlebox`:

* ``process(pkt, ctx, now)`` returns ``None`` (PASS: the packet goes on, routed by the route table of the
  node's own subnet) or a drop-reason string (counted under that reason and reported as the verdict).
* It must not raise on any packet; bad input is a drop reason.
* It may add trace hops and per-hop captures through ``ctx`` (e.g. a GWLB adds its own hop and the target
  appliance's, and captures the GENEVE-encapsulated frames).
* It may send packets of its own through ``ctx.emit(data, now)`` (e.g. a GWLB's TCP RSTs); they are forwarded
  from the node after the current packet.
* It may have ``expire(now) -> int``: ``Dataplane.expire_flows`` / ``Dataplane.expire`` call it to drop idle
  state (returning how many entries went); it may emit packets from there too (:meth:`MiddleboxHost.emit`).

Layering: middleboxes never see the ``Dataplane`` class. Everything they may use of it is the narrow
:class:`MiddleboxHost` the dataplane owns and hands to each factory (topology, settings, a random source,
node health, other nodes' middleboxes, captures, trace hops, emissions, and a per-dataplane ``state`` mapping
where a plug-in keeps objects shared by its nodes, e.g. the GWLB state machines). This module imports nothing
from the dataplane; the dataplane imports it.

Flow plans: after a packet of a flow has been walked once, the dataplane replays later packets of that flow
along the recorded path (``Dataplane`` docs, ``_Plan``), still calling ``process`` of every middlebox on it.
A middlebox whose decisions can change the path itself (not just pass/drop) must set a class attribute
``replayable = False``; its flows then always take the full walk. Middleboxes without the attribute are
replayable.

One middlebox object exists per node, created by the factory the dataplane's registry names for the node's
kind. The registry is a plain mapping kind -> factory, given to the dataplane (default:
:data:`tgw_dataplane.registry.MIDDLEBOXES`); a factory is called as ``factory(host, node_id)``.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from tgw_dataplane.packet import Packet

if TYPE_CHECKING:
    from tgw_dataplane.model import Settings, Topology

PASS: None = None
"""The verdict "forward the packet"; any string is a drop reason."""

Verdict = str | None


class MiddleboxHost:
    """The dataplane as its middleboxes see it: what they may read and do, and nothing else.

    Built by the dataplane (one per dataplane) from its own bound methods; plug-ins get it in their factory
    and through every :class:`HopContext`.

    * ``topology``, ``settings``: the configuration (read-only by convention).
    * ``rng``: the dataplane's injected random source (draw from it at set-up, e.g. to seed a plug-in's own).
    * ``tracing``: True while the packet being processed is traced (set by the dataplane).
    * ``state``: per-dataplane plug-in state, keyed by plug-in name (e.g. ``"gwlb"``: GWLB id -> state machine).
    * :meth:`node_up`, :meth:`middlebox`, :meth:`capture`, :meth:`add_hop`, :meth:`emit`,
      :meth:`forward_emitted`: see each.
    """

    __slots__ = (
        "_add_hop",
        "_capture",
        "_emit",
        "_forward",
        "_middlebox",
        "_node_up",
        "rng",
        "settings",
        "state",
        "topology",
        "tracing",
    )

    def __init__(
        self,
        topology: Topology,
        settings: Settings,
        rng: random.Random,
        *,
        node_up: Callable[[str], bool],
        middlebox: Callable[[str], Middlebox | None],
        capture: Callable[[str, bytes, float], None],
        add_hop: Callable[[str, str, dict[str, Any]], None],
        emit: Callable[[str, bytes, float], None],
        forward_emitted: Callable[[], None],
    ) -> None:
        self.topology = topology
        self.settings = settings
        self.rng = rng
        self.tracing = False
        self.state: dict[str, Any] = {}
        self._node_up = node_up
        self._middlebox = middlebox
        self._capture = capture
        self._add_hop = add_hop
        self._emit = emit
        self._forward = forward_emitted

    def node_up(self, node_id: str) -> bool:
        """Whether a node forwards (an instance by instance or ENI id, a GWLB endpoint, a TGW attachment ENI).
        Unknown ids raise ConfigError."""
        return self._node_up(node_id)

    def middlebox(self, node_id: str) -> Middlebox | None:
        """Another node's middlebox object, if it has one (e.g. a GWLB endpoint reaching its target)."""
        return self._middlebox(node_id)

    def capture(self, node: str, frame: bytes, now: float) -> None:
        """Write ``frame`` (raw IPv4/IPv6) to ``node``'s per-hop capture (no-op unless captures are on)."""
        self._capture(node, frame, now)

    def add_hop(self, node: str, kind: str, fields: dict[str, Any]) -> None:
        """Record a trace hop (no-op unless tracing)."""
        self._add_hop(node, kind, fields)

    def emit(self, node_id: str, data: bytes, now: float) -> None:
        """Queue a packet sent by ``node_id`` itself; the dataplane forwards it from that node's subnet once the
        current packet is finished (or at :meth:`forward_emitted`) and keeps the outcome in
        ``Dataplane.emitted``."""
        self._emit(node_id, data, now)

    def forward_emitted(self) -> None:
        """Forward the queued emissions now (for plug-ins that emit outside packet processing and expiry)."""
        self._forward()


class HopContext:
    """What a middlebox may see and do while processing one packet. One context object per node (reused).

    Attributes: ``host`` (the :class:`MiddleboxHost`), ``node`` (this node's id), ``kind`` (its kind),
    ``vpc_id``, ``subnet_id``, ``az`` (AZ name) and ``az_id``.
    """

    __slots__ = ("az", "az_id", "host", "kind", "node", "subnet_id", "vpc_id")

    def __init__(
        self, host: MiddleboxHost, node: str, kind: str, vpc_id: str, subnet_id: str, az: str, az_id: str
    ) -> None:
        self.host = host
        self.node = node
        self.kind = kind
        self.vpc_id = vpc_id
        self.subnet_id = subnet_id
        self.az = az
        self.az_id = az_id

    @property
    def tracing(self) -> bool:
        """True when the current packet is being traced (hops are recorded)."""
        return self.host.tracing

    def hop(self, node: str, kind: str, **fields: Any) -> None:
        """Record a trace hop (no-op unless tracing). Usual fields: az, az_id, eni, attachment, route_table,
        route, note."""
        self.host.add_hop(node, kind, fields)

    def capture(self, node: str, frame: bytes, now: float) -> None:
        """Write ``frame`` (raw IPv4/IPv6, e.g. a GENEVE-encapsulated packet) to ``node``'s per-hop capture
        (no-op unless captures are on)."""
        self.host.capture(node, frame, now)

    def emit(self, data: bytes, now: float) -> None:
        """Send a packet of this node's own (raw IPv4/IPv6, e.g. a TCP RST) into the VPC: it is routed from
        this node's subnet by its route table, like a packet the node forwards. The dataplane forwards it once
        the packet being processed is finished (never re-entrantly) and records the outcome in
        ``Dataplane.emitted``. The emitting node does not capture it implicitly (use :meth:`capture`)."""
        self.host.emit(self.node, data, now)


class Middlebox(Protocol):
    """A node that processes packets routed to it (an appliance or a GWLB endpoint)."""

    def process(self, pkt: Packet, ctx: HopContext, now: float) -> Verdict:
        """Return ``None`` to forward the packet, or a drop-reason string. Never raises."""
        ...


MiddleboxFactory = Callable[[MiddleboxHost, str], Middlebox]
"""``factory(host, node_id) -> Middlebox``: builds the middlebox of one node (may raise ConfigError)."""
