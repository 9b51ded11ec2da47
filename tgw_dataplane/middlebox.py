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
  from the node after the current packet. ``Dataplane.node_up(node_id)`` tells whether another node (e.g. a
  GWLB target instance) is up in the dataplane.
* It may have ``expire(now) -> int``: :meth:`Dataplane.expire_flows` / :meth:`Dataplane.expire` call it to drop
  idle state (returning how many entries went); it may emit packets from there too (``Dataplane.inject``).

Flow plans: after a packet of a flow has been walked once, the dataplane replays later packets of that flow
along the recorded path (``Dataplane`` docs, ``_Plan``), still calling ``process`` of every middlebox on it.
A middlebox whose decisions can change the path itself (not just pass/drop) must set a class attribute
``replayable = False``; its flows then always take the full walk. Middleboxes without the attribute are
replayable.

One middlebox object exists per node. The dataplane creates it with the factory registered for the node's
kind (:func:`register_middlebox`):

==================== =========================================== =====================================
kind                 node                                        registered by
==================== =========================================== =====================================
``stateful-firewall`` an instance with that kind                  :mod:`tgw_dataplane.appliances`
``router``            an instance with that kind                  :mod:`tgw_dataplane.appliances`
``gwlb-endpoint``     a GWLB endpoint (:class:`model.GwlbEndpoint`) :mod:`tgw_dataplane.gwlb` (plug-in)
``gwlb-target``       an instance with that kind                  :mod:`tgw_dataplane.gwlb` (plug-in)
==================== =========================================== =====================================

A factory is called as ``factory(dataplane, node_id)`` and returns the middlebox. The dataplane imports
:mod:`tgw_dataplane.gwlb` (when it exists) before building nodes, so its module-level
``register_middlebox(...)`` calls take effect without any edit elsewhere.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from tgw_dataplane.packet import Packet

if TYPE_CHECKING:
    from tgw_dataplane.dataplane import Dataplane

PASS: None = None
"""The verdict "forward the packet"; any string is a drop reason."""

Verdict = str | None


class HopContext:
    """What a middlebox may see and do while processing one packet. One context object per node (reused).

    Attributes: ``dataplane`` (the :class:`~tgw_dataplane.dataplane.Dataplane`: topology, settings, health,
    ``middlebox(node_id)`` to reach another node's plug-in, e.g. a GWLB target), ``node`` (this node's id),
    ``kind`` (its kind), ``vpc_id``, ``subnet_id``, ``az`` (AZ name) and ``az_id``.
    """

    __slots__ = ("az", "az_id", "dataplane", "kind", "node", "subnet_id", "vpc_id")

    def __init__(
        self, dataplane: Dataplane, node: str, kind: str, vpc_id: str, subnet_id: str, az: str, az_id: str
    ) -> None:
        self.dataplane = dataplane
        self.node = node
        self.kind = kind
        self.vpc_id = vpc_id
        self.subnet_id = subnet_id
        self.az = az
        self.az_id = az_id

    @property
    def tracing(self) -> bool:
        """True when the current packet is being traced (hops are recorded)."""
        return bool(self.dataplane.tracing)

    def hop(self, node: str, kind: str, **fields: Any) -> None:
        """Record a trace hop (no-op unless tracing). Usual fields: az, az_id, eni, attachment, route_table,
        route, note."""
        self.dataplane.add_hop(node, kind, fields)

    def capture(self, node: str, frame: bytes, now: float) -> None:
        """Write ``frame`` (raw IPv4/IPv6, e.g. a GENEVE-encapsulated packet) to ``node``'s per-hop capture
        (no-op unless captures are on)."""
        self.dataplane.capture(node, frame, now)

    def emit(self, data: bytes, now: float) -> None:
        """Send a packet of this node's own (raw IPv4/IPv6, e.g. a TCP RST) into the VPC: it is routed from
        this node's subnet by its route table, like a packet the node forwards. The dataplane forwards it once
        the packet being processed is finished (never re-entrantly) and records the outcome in
        ``Dataplane.emitted``. The emitting node does not capture it implicitly (use :meth:`capture`)."""
        self.dataplane.queue_emit(self.node, data, now)


class Middlebox(Protocol):
    """A node that processes packets routed to it (an appliance or a GWLB endpoint)."""

    def process(self, pkt: Packet, ctx: HopContext, now: float) -> Verdict:
        """Return ``None`` to forward the packet, or a drop-reason string. Never raises."""
        ...


MiddleboxFactory = Callable[["Dataplane", str], Middlebox]

_REGISTRY: dict[str, MiddleboxFactory] = {}


def register_middlebox(kind: str, factory: MiddleboxFactory) -> None:
    """Register (or replace) the factory for a node kind."""
    _REGISTRY[kind] = factory


def middlebox_factory(kind: str) -> MiddleboxFactory | None:
    """The factory registered for ``kind``, if any."""
    return _REGISTRY.get(kind)


def registered_kinds() -> list[str]:
    return sorted(_REGISTRY)
