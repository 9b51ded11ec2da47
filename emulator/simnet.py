"""A simulated network in virtual time: sans-I/O nodes wired by seeded, fault-injecting links.

Nodes own IP addresses; a :class:`~emulator.actions.Transmit` goes to the node that owns its destination IP,
through the :class:`~emulator.link.Link` for that (source IP, destination IP) direction. Every node's
``next_deadline()`` is kept armed on the :class:`~emulator.scheduler.Scheduler`. Events become
:class:`~emulator.trace.TraceRecord` s; datagrams can be captured to a pcap at send time.

Typical use (tests and scenario files)::

    net = SimNetwork(seed=1)
    net.add_node("aws", aws_peer, ["203.0.113.1"])
    net.add_node("cgw", cgw_peer, ["198.51.100.1"])
    net.set_faults("198.51.100.1", "203.0.113.1", FaultPlan(blackholes=((100, 200),)))
    net.start_all()
    net.run_until(300)
    net.trace.select("dpd_timeout")

Faults beyond the links (each a method, used by scenario ``schedule:`` actions and campaigns): :meth:`crash` and
:meth:`revive` (``kill -9`` and a fresh process), :meth:`pause` and :meth:`resume` (a process stopped as with
SIGSTOP, or too busy to answer: what arrives waits in its receive queue), :meth:`clock_step` (the node's clock
jumps; the network's does not), :meth:`nat_rebind` (a NAT in front of the node gets new mappings: its source
port, and optionally its address, change; datagrams to the old mapping are lost).

Nodes may share an address by peer (``add_node(..., peers=[...])``: a customer gateway's one public IP with a
tunnel process per AWS endpoint). A :class:`~emulator.actions.Transmit` with both ports 0 is ESP as IP protocol
50 (:data:`cgw_peer.tunnel_endpoint.IP_PROTO_PORT`) and is captured as such; ``untraced_kinds`` (e.g. ``esp``)
leaves a traffic run's per-packet ``datagram_sent`` events out of the trace.

``strict_events=True`` checks every recorded event against its declaration in :mod:`cgw_peer.events` (name,
fields, types) and raises ``AssertionError`` listing the problems: the engines' own events and the network's
``datagram_sent`` / ``node_crashed`` / ``node_revived``. ``trace`` may be any :class:`~emulator.trace.BaseTrace`,
e.g. a :class:`~emulator.trace.StreamingTrace` that keeps a long run's records on disk.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable
from typing import Any

from cgw_peer import events as ev
from cgw_peer.esp.framing import frame_esp
from emulator.actions import Action, Address, Event, Transmit
from emulator.link import PERFECT, FaultPlan, Link
from emulator.node import SansIoNode
from emulator.pcap import LINKTYPE_ETHERNET, PcapWriter
from emulator.scheduler import Scheduler, TimerHandle
from emulator.trace import BaseTrace, Trace, TraceRecord

EventHook = Callable[[TraceRecord], None]


DEFAULT_PAUSE_QUEUE = 256
"""How many inputs (datagrams, API calls) a paused node holds; later ones are lost. A stopped process's UDP
receive buffer (Linux default ``rmem_default`` 208 KiB) holds a few hundred IKE datagrams."""


class _NodeSlot:
    __slots__ = (
        "addresses",
        "alive",
        "deadline",
        "held",
        "held_limit",
        "name",
        "nat",
        "nat_ip",
        "nat_next_port",
        "nat_rev",
        "node",
        "offset",
        "paused",
        "timer",
        "timer_at",
    )

    def __init__(self, name: str, node: SansIoNode, addresses: list[str]) -> None:
        self.name = name
        self.node = node
        self.addresses = addresses
        self.timer: TimerHandle | None = None
        self.timer_at: float | None = None
        self.deadline: float | None = None
        """The node's own deadline (its clock) behind ``timer_at`` (the network's clock)."""
        self.alive = True
        self.offset = 0.0
        """The node's clock minus the network's (``clock_step``)."""
        self.paused = False
        self.held: list[Callable[[], None]] = []
        self.held_limit = DEFAULT_PAUSE_QUEUE
        self.nat: dict[Address, Address] | None = None
        """Local -> public (address, port) once a NAT rebinding happened (None: no NAT)."""
        self.nat_rev: dict[Address, Address] = {}
        self.nat_ip = ""
        self.nat_next_port = 0


class SimNetwork:
    """Wires sans-I/O nodes together on a virtual-time scheduler."""

    def __init__(
        self,
        seed: int = 0,
        *,
        scheduler: Scheduler | None = None,
        trace: BaseTrace | None = None,
        pcap: PcapWriter | None = None,
        trace_datagrams: bool = True,
        strict_events: bool = False,
        untraced_kinds: frozenset[str] = frozenset(),
    ) -> None:
        self.seed = seed
        self.scheduler = scheduler or Scheduler()
        self.trace: BaseTrace = trace if trace is not None else Trace()
        self.pcap = pcap
        self.trace_datagrams = trace_datagrams
        self.untraced_kinds = untraced_kinds
        """Datagram kinds sent without a ``datagram_sent`` event (still captured and counted), e.g. ``esp``: a
        traffic run would otherwise record one event per packet."""
        self.capture_hook: Callable[[float, str, Transmit, bool], None] | None = None
        """Called for every datagram sent (in send order, which is the capture's order) with the instant, the
        sending node, the transmission and whether the link delivered it: a run that does not trace some
        datagrams (``untraced_kinds``) can still explain every record of its capture."""
        self.strict_events = strict_events
        """Check every recorded event against :mod:`cgw_peer.events`; a mismatch raises ``AssertionError``."""
        self._nodes: dict[str, _NodeSlot] = {}
        self._by_ip: dict[str, _NodeSlot] = {}
        self._by_pair: dict[tuple[str, str], _NodeSlot] = {}
        self._links: dict[tuple[str, str], Link] = {}
        self._plans: dict[tuple[str, str], FaultPlan] = {}
        self._hooks: list[EventHook] = []
        self._nat_public: dict[str, _NodeSlot] = {}
        self.datagrams_sent = 0
        self.datagrams_delivered = 0
        self.datagrams_lost = 0

    # -- topology ---------------------------------------------------------------------------------------

    @property
    def now(self) -> float:
        return self.scheduler.now

    def add_node(self, name: str, node: SansIoNode, addresses: list[str], peers: list[str] | None = None) -> None:
        """Add a node owning ``addresses``. With ``peers``, the node gets only what those source addresses send
        to its addresses, and several nodes may share an address that way (one device with one public IP and a
        process per peer, e.g. a customer gateway's two VPN tunnels); an address is either owned by one node or
        shared by peer, never both."""
        if name in self._nodes:
            raise ValueError(f"node {name!r} already exists")
        slot = _NodeSlot(name, node, list(addresses))
        for ip in addresses:
            if ip in self._by_ip:
                raise ValueError(f"address {ip} already belongs to node {self._by_ip[ip].name!r}")
            if peers is None and any(k[0] == ip for k in self._by_pair):
                raise ValueError(f"address {ip} is shared by peer: name the peers of node {name!r}")
            for p in peers or ():
                other = self._by_pair.get((ip, p))
                if other is not None:
                    raise ValueError(f"address {ip} already takes {p}'s datagrams for node {other.name!r}")
        self._nodes[name] = slot
        for ip in addresses:
            if peers is None:
                self._by_ip[ip] = slot
            for p in peers or ():
                self._by_pair[(ip, p)] = slot

    def node(self, name: str) -> SansIoNode:
        return self._nodes[name].node

    def set_faults(self, src_ip: str, dst_ip: str, plan: FaultPlan) -> None:
        """Set the fault plan for one direction (``src_ip`` -> ``dst_ip``)."""
        self._plans[(src_ip, dst_ip)] = plan
        link = self._links.get((src_ip, dst_ip))
        if link is not None:
            link.plan = plan

    def link(self, src_ip: str, dst_ip: str) -> Link:
        key = (src_ip, dst_ip)
        link = self._links.get(key)
        if link is None:
            # String seeds are hashed with SHA-512 by random.Random: stable across runs and Python builds.
            rng = random.Random(f"{self.seed}:{src_ip}->{dst_ip}")
            link = Link(self._plans.get(key, PERFECT), rng)
            self._links[key] = link
        return link

    def on_event(self, hook: EventHook) -> None:
        """Call ``hook`` for every event any node reports (e.g. to withdraw TGW routes on ``tunnel_down``)."""
        self._hooks.append(hook)

    # -- driving ----------------------------------------------------------------------------------------

    def call(self, name: str, fn: Callable[[float], list[Action]], at: float | None = None) -> None:
        """Run ``fn(now)`` against node ``name`` (now, or at virtual time ``at``) and carry out its actions."""

        def run() -> None:
            slot = self._nodes[name]
            if not slot.alive:
                return
            if slot.paused:
                self._hold(slot, run)
                return
            self._dispatch(slot, fn(self.scheduler.now + slot.offset))

        if at is None:
            run()
        else:
            self.scheduler.call_at(at, run)

    def start_all(self, at: float | None = None) -> None:
        for name, slot in self._nodes.items():
            self.call(name, slot.node.start, at)

    def at(self, t: float, fn: Callable[[], Any]) -> None:
        """Schedule an arbitrary callback (a fault switch, a crash...) at virtual time ``t``."""
        self.scheduler.call_at(t, fn)

    def crash(self, name: str) -> None:
        """The node stops: its timers stop and datagrams to it are lost (a ``kill -9``)."""
        slot = self._nodes[name]
        slot.alive = False
        slot.paused = False
        slot.held.clear()
        self._disarm(slot)
        self._record(name, ev.node_crashed())

    def revive(self, name: str, node: SansIoNode | None = None, start: bool = True) -> None:
        """Bring a crashed node back, optionally as a fresh process (``node``), and start it."""
        slot = self._nodes[name]
        if node is not None:
            slot.node = node
        slot.alive = True
        slot.paused = False
        slot.held.clear()
        self._record(name, ev.node_revived())
        if start:
            self.call(name, slot.node.start)
        else:
            self._rearm(slot)

    def pause(self, name: str, queue: int = DEFAULT_PAUSE_QUEUE) -> None:
        """The node stops running (SIGSTOP, a VM paused, a process too busy to answer): no timer fires, and
        datagrams and API calls for it wait, up to ``queue`` of them (later ones are lost), until :meth:`resume`.
        A crash while paused loses what waits."""
        slot = self._nodes[name]
        if not slot.alive or slot.paused:
            return
        slot.paused = True
        slot.held_limit = queue
        self._disarm(slot)

    def resume(self, name: str, datagrams_first: bool = True) -> None:
        """The paused node runs again: what waited is handled in arrival order, then every overdue timer fires
        at once (``datagrams_first``; False: the timers first). Which comes first in a real process depends on
        its threads; both orders are worth testing."""
        slot = self._nodes[name]
        if not slot.alive or not slot.paused:
            return
        slot.paused = False
        held, slot.held = slot.held, []
        if not datagrams_first:
            self._overdue(slot)
        for fn in held:
            if slot.alive and not slot.paused:
                fn()
        self._rearm(slot)

    def clock_step(self, name: str, by: float) -> None:
        """The node's clock jumps by ``by`` seconds (negative: backwards) while the network's runs on: from now
        on the node is given ``now + offset``, and its deadlines are converted back. A revived process runs on
        the same (stepped) clock."""
        slot = self._nodes[name]
        slot.offset += by
        self._disarm(slot)
        self._rearm(slot)

    def nat_rebind(self, name: str, port: int, address: str | None = None) -> None:
        """A NAT in front of node ``name`` drops its mappings and makes new ones: from now on each local
        (address, port) the node sends from leaves as (``address`` or the node's first address, a new port
        counted up from ``port``), and only datagrams sent to a current mapping reach the node (the others are
        lost, as at a NAT whose mapping expired). The links keep applying the plans of the node's own address."""
        slot = self._nodes[name]
        public = address or slot.addresses[0]
        owner = self._by_ip.get(public)
        if owner is not None and owner is not slot:
            raise ValueError(f"address {public} already belongs to node {owner.name!r}")
        if slot.nat_ip and slot.nat_ip not in slot.addresses and slot.nat_ip != public:
            self._nat_public.pop(slot.nat_ip, None)
        if public not in slot.addresses:
            self._nat_public[public] = slot
        slot.nat = {}
        slot.nat_rev = {}
        slot.nat_ip = public
        slot.nat_next_port = port

    def run_until(self, t: float, max_events: int | None = 10_000_000) -> None:
        self.scheduler.run_until(t, max_events)

    # -- internals --------------------------------------------------------------------------------------

    def _hold(self, slot: _NodeSlot, fn: Callable[[], None]) -> None:
        if len(slot.held) < slot.held_limit:
            slot.held.append(fn)
        else:
            self.datagrams_lost += 1

    def _disarm(self, slot: _NodeSlot) -> None:
        if slot.timer is not None:
            slot.timer.cancel()
        slot.timer = None
        slot.timer_at = None

    def _overdue(self, slot: _NodeSlot) -> None:
        at = slot.node.next_deadline()
        if at is not None and at - slot.offset <= self.scheduler.now:
            slot.deadline = at
            self._fire(slot)

    def _public(self, slot: _NodeSlot, local: Address) -> Address:
        """The (address, port) a datagram from ``local`` leaves the node's NAT with (a new mapping if needed)."""
        assert slot.nat is not None
        pub = slot.nat.get(local)
        if pub is None:
            pub = (slot.nat_ip, slot.nat_next_port)
            slot.nat_next_port = slot.nat_next_port + 1 if slot.nat_next_port < 65535 else 1024
            slot.nat[local] = pub
            slot.nat_rev[pub] = local
        return pub

    def _dispatch(self, slot: _NodeSlot, actions: list[Action]) -> None:
        now = self.scheduler.now
        for a in actions:
            if isinstance(a, Transmit):
                self._send(slot, a, now)
            elif isinstance(a, Event):
                rec = self._record(slot.name, a)
                for hook in self._hooks:
                    hook(rec)
        self._rearm(slot)

    def _record(self, node: str, event: Event) -> TraceRecord:
        if self.strict_events:
            problems = ev.check_event(event.name, event.fields)
            if problems:
                raise AssertionError(
                    f"t={self.now:.6f} node {node}: event does not match cgw_peer.events: " + "; ".join(problems)
                )
        return self.trace.add(self.now, node, event.name, dict(event.fields))

    def _send(self, slot: _NodeSlot, tx: Transmit, now: float) -> None:
        self.datagrams_sent += 1
        src = tx.src if slot.nat is None else self._public(slot, tx.src)
        if self.pcap is not None:
            self._capture(now, src, tx.dst, tx.data)
        dst_slot = self._by_ip.get(tx.dst[0])
        if dst_slot is None and self._by_pair:
            dst_slot = self._by_pair.get((tx.dst[0], tx.src[0]))
        dst_ip = tx.dst[0]
        if dst_slot is None:
            dst_slot = self._nat_public.get(dst_ip)
            if dst_slot is not None:
                dst_ip = dst_slot.addresses[0]  # the path to a node behind a NAT is the path to the node
        link = self.link(tx.src[0], dst_ip)
        arrivals = link.transmit(tx.data, tx.kind, now)
        if self.capture_hook is not None:
            self.capture_hook(now, slot.name, tx, bool(arrivals))
        if self.trace_datagrams and tx.kind not in self.untraced_kinds:
            self._record(
                slot.name,
                ev.datagram_sent(
                    kind=tx.kind,
                    src=f"{src[0]}:{src[1]}",
                    dst=f"{tx.dst[0]}:{tx.dst[1]}",
                    len=len(tx.data),
                    lost=not arrivals,
                ),
            )
        if not arrivals or dst_slot is None:
            self.datagrams_lost += 1
            return
        corrupt = link.plan.corrupt
        for at in arrivals:
            data = link.corrupt(tx.data) if corrupt else tx.data
            self.scheduler.call_at(at, self._deliver, dst_slot, data, src, tx.dst)

    def _capture(self, now: float, src: Address, dst: Address, data: bytes) -> None:
        pcap = self.pcap
        assert pcap is not None
        if src[1] == 0 and dst[1] == 0:
            # Both ports 0: ESP as IP protocol 50, not UDP (cgw_peer.tunnel_endpoint.IP_PROTO_PORT).
            frame = frame_esp(data, src[0], dst[0], encap=False, ident=pcap.count)
            if pcap.linktype == LINKTYPE_ETHERNET:
                etype = b"\x86\xdd" if ":" in src[0] else b"\x08\x00"
                frame = b"\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01" + etype + frame
            pcap.write(now, frame)
        else:
            pcap.write_udp(now, src, dst, data)

    def _deliver(self, slot: _NodeSlot, data: bytes, src: Address, dst: Address) -> None:
        if not slot.alive:
            self.datagrams_lost += 1
            return
        if slot.nat is not None:
            local = slot.nat_rev.get(dst)
            if local is None:  # no current mapping at the node's NAT
                self.datagrams_lost += 1
                return
            dst = local
        if slot.paused:
            self._hold(slot, functools.partial(self._receive, slot, data, src, dst))
            return
        self._receive(slot, data, src, dst)

    def _receive(self, slot: _NodeSlot, data: bytes, src: Address, dst: Address) -> None:
        if not slot.alive:
            self.datagrams_lost += 1
            return
        self.datagrams_delivered += 1
        self._dispatch(slot, slot.node.receive_datagram(data, src, dst, self.scheduler.now + slot.offset))

    def _rearm(self, slot: _NodeSlot) -> None:
        if not slot.alive or slot.paused:
            return
        d = slot.node.next_deadline()
        at = d if d is None or not slot.offset else d - slot.offset
        if at == slot.timer_at and slot.timer is not None and not slot.timer.cancelled:
            return
        if slot.timer is not None:
            slot.timer.cancel()
        slot.timer_at = at
        slot.deadline = d
        slot.timer = None if at is None else self.scheduler.call_at(at, self._fire, slot)

    def _fire(self, slot: _NodeSlot) -> None:
        slot.timer = None
        slot.timer_at = None
        if not slot.alive:
            return
        now = self.scheduler.now
        if slot.offset:
            # Never hand the node an instant before the deadline it asked for (rounding in the conversion).
            now += slot.offset
            if slot.deadline is not None and now < slot.deadline:
                now = slot.deadline
        self._dispatch(slot, slot.node.handle_timer(now))
