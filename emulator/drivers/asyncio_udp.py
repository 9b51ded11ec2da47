"""Run sans-I/O IKE peers on real UDP sockets with asyncio (aioquic's transmit/re-arm pattern).

The driver owns the sockets, the clock and the timers; the peers own every protocol decision. For each call
into a peer (``start``, ``receive_datagram``, ``handle_timer``, ``close``) the driver

1. executes the returned actions in order: :class:`~emulator.actions.Transmit` goes out on the socket bound to
   ``Transmit.src`` (through the peer's optional :class:`~emulator.link.Link` fault plan), every
   :class:`~emulator.actions.Event` goes to the ``on_event`` callback;
2. refreshes the peer's entries in the SPI demultiplexing table (``peer.ike_spis()``, when the peer has it);
3. re-arms the peer's timer from ``peer.next_deadline()``.

Time given to peers is ``loop.time() - t0`` (seconds since the driver was created). A timer that fires calls
``handle_timer(max(deadline, now))`` so an early wake-up by the loop's clock resolution is never an early
call (aioquic's guard).

Timers: the driver keeps its own heap of ``(deadline, sequence, peer)`` tuples and one ``loop.call_at`` handle
for the earliest of them, instead of one asyncio timer per peer: tuples compare in C, while asyncio's heap of
``TimerHandle`` objects calls a Python ``__lt__`` on every sift (with 20,000 peers that was a quarter of the
CPU of the DPD phase). Re-arming is lazy: a deadline that only moved later (every inbound datagram pushes DPD
back) keeps the earlier entry, which looks again when it fires; superseded entries are skipped when popped.

Sockets: one non-blocking UDP socket per local (address, port), shared by every peer on that address. Peers
whose local port is 500 also get the address's NAT-T port (4500) so a peer that floats (RFC 3947 §4) is
reachable there. Reads use ``loop.add_reader`` + ``recvfrom(65535)``: asyncio's datagram transport reads
256 KiB per datagram, which costs page faults on every read (``perf-facts.md`` §5). SO_RCVBUF is raised to
4 MiB because bursts of thousands of handshakes overflow the default 208 KiB buffer.

Demultiplexing a datagram that arrived on local address L from (R, port):

* If it starts with the RFC 3948 §2.2 non-ESP marker (four zero bytes) the IKE header follows the marker.
* The initiator cookie/SPI (header bytes 0-8), then the responder one (8-16, when non-zero), is looked up in
  L's SPI table (filled from ``peer.ike_spis()``).
* Otherwise (a new exchange, NAT keepalive, ESP) the peer registered for the address pair (L, R) gets it.

Whatever the payload, the peer receives the datagram as it came off the wire (marker included): stripping
the marker, recognising ESP and keepalives is the engine's job.

Sockets of this driver talking to each other (``local_fastpath``, on by default): a datagram sent to an address
this driver has bound has, on Linux loopback, already been queued on the receiving socket when ``sendto``
returns. The driver then reads that socket as soon as the sending peer's call is finished (its actions done,
its timer re-armed), instead of waiting for the loop to poll again: a request and its answer between two
peers of one process take one loop iteration instead of three, and a datagram is never left waiting in a
socket while a timer batch makes the receiving peer act as if it had not arrived. The datagram still crosses
the kernel; if it is not there yet the read finds nothing and the loop delivers it as usual. At most
``LOCAL_PUMP`` such reads follow one callback, then the loop polls again (fairness).
"""

from __future__ import annotations

import asyncio
import errno
import heapq
import json
import math
import random
import socket
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import IO, Any, Protocol

from emulator.actions import Action, Address, Event, Transmit
from emulator.link import FaultPlan, Link

RCVBUF_BYTES = 4 * 1024 * 1024
"""Receive buffer asked for on every socket (the kernel caps it at ``net.core.rmem_max`` unless root)."""
SNDBUF_BYTES = 1 * 1024 * 1024
MAX_DATAGRAM = 65535
READ_BATCH = 64
"""Datagrams read per readiness callback before yielding to the loop (fairness between sockets)."""
TIMER_SLACK = 0.05
"""Default of ``UdpDriver(timer_slack=...)``: wake-ups rounded up to a multiple of this many seconds."""
LOCAL_PUMP = 256
"""Eager reads of this driver's own sockets after one callback (see ``local_fastpath``)."""
IKE_PORT = 500
NATT_PORT = 4500
_NON_ESP_MARKER = b"\x00\x00\x00\x00"
_ZERO_SPI = b"\x00" * 8
# Linux socket(7) options Python's socket module does not name: like SO_RCVBUF/SO_SNDBUF but ignoring
# net.core.rmem_max / wmem_max when the process has CAP_NET_ADMIN.
_SO_SNDBUFFORCE = 32
_SO_RCVBUFFORCE = 33
_STUCK_LIMIT = 1000
"""Timer wake-ups in a row without the deadline moving before the driver declares a peer's timer stuck."""


def check_timer_slack(value: object) -> float:
    """``value`` as a timer slack (a finite number of seconds >= 0), or ValueError naming ``timer_slack``."""
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        v = math.nan
    if not (v >= 0.0 and math.isfinite(v)):
        raise ValueError(f"timer_slack: must be a finite number of seconds >= 0, got {value!r}")
    return v


class DrivenPeer(Protocol):
    """What the driver needs from a peer (``close`` and ``ike_spis`` are optional, looked up at run time)."""

    def start(self, now: float) -> list[Action]: ...

    def receive_datagram(self, data: bytes, src: Address, dst: Address, now: float) -> list[Action]: ...

    def next_deadline(self) -> float | None: ...

    def handle_timer(self, now: float) -> list[Action]: ...


@dataclass(eq=False)
class PeerHandle:
    """The driver's record of one peer: addresses, timer, fault plan and counters."""

    name: str
    node: DrivenPeer
    local: Address
    remote: Address
    link: Link | None = None
    armed: float | None = None
    """Deadline of the peer's live entry in the driver's timer heap (None: no timer)."""
    tseq: int = -1
    """Sequence number of that entry (entries with another number are superseded)."""
    spis: set[bytes] = field(default_factory=set)
    closed: bool = False
    rx: int = 0
    tx: int = 0
    errors: int = 0
    stuck: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    """Free for the caller (e.g. the vpn command keeps its status here)."""
    spis_fn: Callable[[], set[bytes]] | None = None
    """``node.ike_spis`` when the node has it (resolved once: a runtime Protocol check per call is slow)."""
    changes_fn: Callable[[], tuple[list[bytes], list[bytes]]] | None = None
    """``node.spi_changes`` when the node has it: the table follows (added, removed) deltas, so the work per
    datagram does not grow with the number of SAs the peer holds (a half-open flood, issue 13)."""
    close_fn: Callable[[float], list[Action]] | None = None


EventCallback = Callable[[PeerHandle | None, float, Event], None]
"""``(peer or None for driver-level events, t, event)``."""
DatagramTap = Callable[[float, str, Address, Address, bytes], None]
"""``(t, "in" | "out", src, dst, payload)``: every datagram that was really received or sent."""


class _Endpoint:
    __slots__ = ("addr", "family", "sock")

    def __init__(self, addr: Address, rcvbuf: int) -> None:
        family = socket.AF_INET6 if ":" in addr[0] else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            for opt, size in ((socket.SO_RCVBUF, rcvbuf), (socket.SO_SNDBUF, SNDBUF_BYTES)):
                try:
                    force = _SO_RCVBUFFORCE if opt == socket.SO_RCVBUF else _SO_SNDBUFFORCE
                    sock.setsockopt(socket.SOL_SOCKET, force, size)
                except OSError:  # no CAP_NET_ADMIN: the kernel caps the plain option at rmem_max
                    sock.setsockopt(socket.SOL_SOCKET, opt, size)
            sock.bind(addr)
        except BaseException:
            sock.close()
            raise
        self.sock = sock
        self.family = family
        self.addr: Address = (addr[0], sock.getsockname()[1])


class UdpDriver:
    """Runs many sans-I/O peers over shared UDP sockets on one asyncio loop.

    Use: ``d = UdpDriver(on_event=...)``, ``h = d.add_peer(node, name=..., local=..., remote=...)``,
    ``d.start_peer(h)`` (calls ``node.start``), let the loop run, then ``await d.aclose()`` (calls
    ``node.close`` on every peer, sends what it returns, closes the sockets).
    """

    def __init__(
        self,
        *,
        loop: asyncio.AbstractEventLoop | None = None,
        on_event: EventCallback | None = None,
        on_datagram: DatagramTap | None = None,
        rcvbuf: int = RCVBUF_BYTES,
        natt_port: int = NATT_PORT,
        local_fastpath: bool = True,
        timer_slack: float = TIMER_SLACK,
    ) -> None:
        self.loop = loop or asyncio.get_running_loop()
        self.t0 = self.loop.time()
        self.wall0 = time.time()
        """Wall-clock instant of driver time 0 (for pcap timestamps)."""
        self.on_event = on_event
        self.on_datagram = on_datagram
        self.rcvbuf = rcvbuf
        self.natt_port = natt_port
        self.peers: list[PeerHandle] = []
        self._endpoints: dict[Address, _Endpoint] = {}
        self._by_spi: dict[str, dict[bytes, PeerHandle]] = {}
        self._by_pair: dict[tuple[str, str], PeerHandle] = {}
        self._pending: set[asyncio.TimerHandle] = set()
        self._theap: list[tuple[float, int, PeerHandle]] = []
        self._tseq = 0
        self._wake: asyncio.TimerHandle | None = None
        self._wake_at: float | None = None
        # asyncio runs a timer once it is due within the clock's resolution; the driver's timers follow suit
        self._clock_res: float = getattr(self.loop, "_clock_resolution", time.get_clock_info("monotonic").resolution)
        self._closed = False
        self.local_fastpath = local_fastpath
        """Read a socket of this driver right after sending to it (see the module docstring)."""
        self.timer_slack = check_timer_slack(timer_slack)
        """Timer wake-ups are rounded up to a multiple of this (seconds; 0: exact)."""
        self._local_q: deque[_Endpoint] = deque()
        self._pumping = False
        self.stats: dict[str, int] = {
            "rx": 0,
            "tx": 0,
            "unmatched": 0,
            "send_errors": 0,
            "recv_errors": 0,
            "peer_errors": 0,
            "fault_dropped": 0,
            "wakeups": 0,
        }
        """Counters: datagrams received/sent, unmatched datagrams, socket errors, engine exceptions, datagrams a
        fault plan dropped, and ``wakeups`` (timer wake-ups of the loop, each firing every timer due then)."""

    # -- time ---------------------------------------------------------------------------------------------

    def now(self) -> float:
        """Seconds since the driver was created (the clock peers see)."""
        return self.loop.time() - self.t0

    # -- sockets ------------------------------------------------------------------------------------------

    def bind(self, addr: Address) -> Address:
        """Bind (or reuse) the socket for a local address; returns the bound address (port 0 -> real port)."""
        ep = self._endpoints.get(addr)
        if ep is None:
            ep = _Endpoint(addr, self.rcvbuf)
            self._endpoints[ep.addr] = ep
            self.loop.add_reader(ep.sock.fileno(), self._on_readable, ep)
        return ep.addr

    @property
    def bound(self) -> list[Address]:
        return list(self._endpoints)

    def endpoint_socket(self, addr: Address) -> socket.socket:
        """The UDP socket bound to ``addr`` (for inspection: buffer sizes, options). KeyError if none is."""
        return self._endpoints[addr].sock

    # -- peers --------------------------------------------------------------------------------------------

    def add_peer(
        self,
        node: DrivenPeer,
        *,
        name: str,
        local: Address,
        remote: Address,
        fault_plan: FaultPlan | None = None,
        link_rng: random.Random | None = None,
        natt: bool = True,
    ) -> PeerHandle:
        """Register a peer: bind its local sockets (the IKE port, plus 4500 when that port is 500 and
        ``natt``), and route datagrams from ``remote``'s address to it until SPIs identify it."""
        if self._closed:
            raise RuntimeError("driver is closed")
        key = (local[0], remote[0])
        if key in self._by_pair:
            raise ValueError(f"a peer for {local[0]} <-> {remote[0]} is already registered")
        local = self.bind(local)
        if natt and local[1] == IKE_PORT:
            self.bind((local[0], self.natt_port))
        link = None
        if fault_plan is not None and not fault_plan.perfect:
            link = Link(fault_plan, link_rng if link_rng is not None else random.Random(0))
        h = PeerHandle(
            name=name,
            node=node,
            local=local,
            remote=remote,
            link=link,
            spis_fn=getattr(node, "ike_spis", None),
            changes_fn=getattr(node, "spi_changes", None),
            close_fn=getattr(node, "close", None),
        )
        self.peers.append(h)
        self._by_pair[key] = h
        self._by_spi.setdefault(local[0], {})
        return h

    def start_peer(self, h: PeerHandle) -> None:
        """Call ``node.start(now)`` and act on the result."""
        self._call(h, "start", lambda now: h.node.start(now))

    def call(self, h: PeerHandle, fn: Callable[[float], list[Action]], what: str = "call") -> None:
        """Call an API function of the peer (e.g. ``lambda now: peer.initiate(now)``) and act on the result."""
        self._call(h, what, fn)

    def close_peer(self, h: PeerHandle) -> None:
        """Call ``node.close(now)`` (if it has one) and send what it returns immediately (no fault plan)."""
        if h.closed:
            return
        if h.close_fn is not None:
            self._call(h, "close", h.close_fn, bypass_faults=True)
        h.closed = True

    def remove_peer(self, h: PeerHandle) -> None:
        """Forget a peer (its timer is cancelled; its datagrams become unmatched)."""
        self._disarm(h)
        idx = self._by_spi.get(h.local[0], {})
        for spi in h.spis:
            if idx.get(spi) is h:
                del idx[spi]
        if self._by_pair.get((h.local[0], h.remote[0])) is h:
            del self._by_pair[(h.local[0], h.remote[0])]
        if h in self.peers:
            self.peers.remove(h)

    async def aclose(self, linger: float = 0.0) -> None:
        """Clean shutdown: ``close(now)`` on every peer, send its Deletes, optionally keep receiving for
        ``linger`` seconds (IKEv2 Delete responses), then cancel timers and close the sockets."""
        if self._closed:
            return
        for h in list(self.peers):
            self.close_peer(h)
        if linger > 0:
            await asyncio.sleep(linger)
        self._closed = True
        self._local_q.clear()
        for h in self.peers:
            self._disarm(h)
        self._theap.clear()
        if self._wake is not None:
            self._wake.cancel()
            self._wake = self._wake_at = None
        for th in self._pending:
            th.cancel()
        self._pending.clear()
        for ep in self._endpoints.values():
            self.loop.remove_reader(ep.sock.fileno())
            ep.sock.close()
        self._endpoints.clear()

    # -- the core loop: call a peer, act on its actions, re-arm -------------------------------------------

    def _call(
        self,
        h: PeerHandle,
        what: str,
        fn: Callable[[float], list[Action]],
        now: float | None = None,
        bypass_faults: bool = False,
    ) -> None:
        if now is None:
            now = self.now()
        try:
            actions = fn(now)
        except Exception as e:  # an engine bug must not take down every other tunnel on this loop
            self._engine_error(h, what, e, now)
            actions = []
        self._after(h, actions, now, bypass_faults)

    def _after(self, h: PeerHandle, actions: list[Action], now: float, bypass_faults: bool) -> None:
        """Act on what a peer returned, then refresh its SPIs and re-arm its timer."""
        if actions:
            self._dispatch(h, actions, now, bypass_faults)
        if self._closed:
            return
        if h.spis_fn is not None:
            self._refresh_spis(h)
        self._rearm(h, now)
        if self._local_q and not self._pumping:
            self._pump()

    def _pump(self) -> None:
        """Read the sockets of this driver that its peers just sent to (one datagram per send), delivering
        each, until none is left or ``LOCAL_PUMP`` reads were made. Deliveries made here queue their own sends;
        ``_pumping`` keeps the loop iterative (no recursion through ``_after``)."""
        q = self._local_q
        self._pumping = True
        try:
            n = 0
            while q and not self._closed:
                ep = q.popleft()
                n += 1
                if n > LOCAL_PUMP:
                    q.clear()  # the rest stays queued in the sockets: the loop's poll delivers it
                    return
                try:
                    data, addr = ep.sock.recvfrom(MAX_DATAGRAM)
                except (BlockingIOError, InterruptedError):
                    continue  # not there yet (or already read): the loop's poll delivers it
                except OSError:
                    self.stats["recv_errors"] += 1
                    continue
                self._deliver(ep, data, (addr[0], addr[1]))
        finally:
            self._pumping = False

    def _engine_error(self, h: PeerHandle, what: str, e: Exception, now: float) -> None:
        h.errors += 1
        self.stats["peer_errors"] += 1
        tb = traceback.format_exc(limit=8)
        self._emit(h, now, Event("driver_error", {"where": what, "error": repr(e), "traceback": tb}))

    def _dispatch(self, h: PeerHandle, actions: Iterable[Action], now: float, bypass_faults: bool) -> None:
        for a in actions:
            if isinstance(a, Transmit):
                self._transmit(h, a, now, bypass_faults)
            else:
                self._emit(h, now, a)

    def _emit(self, h: PeerHandle | None, now: float, ev: Event) -> None:
        if self.on_event is not None:
            self.on_event(h, now, ev)

    def _refresh_spis(self, h: PeerHandle) -> None:
        changes = h.changes_fn
        if changes is not None:
            try:
                added, removed = changes()
            except Exception:
                return
            if added or removed:
                self._apply_spi_changes(h, added, removed)
            return
        fn = h.spis_fn
        if fn is None:
            return
        try:
            spis = set(fn())
        except Exception:
            return
        if spis == h.spis:
            return
        idx = self._by_spi[h.local[0]]
        for spi in h.spis - spis:
            if idx.get(spi) is h:
                del idx[spi]
        for spi in spis - h.spis:
            if spi != _ZERO_SPI:
                idx[spi] = h
        h.spis = spis

    def _apply_spi_changes(self, h: PeerHandle, added: list[bytes], removed: list[bytes]) -> None:
        idx = self._by_spi[h.local[0]]
        spis = h.spis  # net changes: an SPI is in at most one of the two lists
        for spi in removed:
            spis.discard(spi)
            if idx.get(spi) is h:
                del idx[spi]
        for spi in added:
            spis.add(spi)
            if spi != _ZERO_SPI:
                idx[spi] = h

    def _rearm(self, h: PeerHandle, now: float) -> None:
        try:
            d = h.node.next_deadline()
        except Exception as e:
            self._emit(h, now, Event("driver_error", {"where": "next_deadline", "error": repr(e)}))
            d = None
        if d is None:
            self._disarm(h)
            return
        armed = h.armed
        if armed is not None and armed <= d:
            # Lazy re-arm: the deadline only moved later, so keep the earlier entry; when it fires it looks again.
            return
        self._arm(h, d)

    def _disarm(self, h: PeerHandle) -> None:
        h.armed = None
        h.tseq = -1

    def _arm(self, h: PeerHandle, d: float) -> None:
        """Give ``h`` a timer at driver time ``d`` (superseding its previous entry)."""
        seq = self._tseq = self._tseq + 1
        h.armed = d
        h.tseq = seq
        heapq.heappush(self._theap, (d, seq, h))
        wake_at = self._wake_at
        if wake_at is None or d < wake_at:
            self._schedule_wake(d)

    def _schedule_wake(self, d: float) -> None:
        slack = self.timer_slack
        if slack:
            d = math.ceil(d / slack) * slack
            if d == self._wake_at and self._wake is not None:
                return
        if self._wake is not None:
            self._wake.cancel()
        self._wake_at = d
        self._wake = self.loop.call_at(self.t0 + d, self._on_wake)

    def _on_wake(self) -> None:
        """The earliest timer is due: fire every entry due now (by the loop's own rule: due when earlier than
        now plus the clock resolution) that was in the heap when this wake-up began; entries armed while firing
        wait for the next wake-up, so a peer that keeps re-arming in the past cannot hold the loop."""
        self._wake = None
        self.stats["wakeups"] += 1
        self._wake_at = -math.inf  # while firing, arming only pushes entries: one wake-up is scheduled below
        heap = self._theap
        limit = self.loop.time() + self._clock_res - self.t0
        bound = self._tseq
        deferred: list[tuple[float, int, PeerHandle]] = []
        try:
            while heap and heap[0][0] < limit and not self._closed:
                entry = heapq.heappop(heap)
                d, seq, h = entry
                if h.tseq != seq:
                    continue  # superseded or cancelled
                if seq > bound:
                    deferred.append(entry)
                    continue
                h.armed = None
                h.tseq = -1
                self._on_timer(h, d)
        finally:
            self._wake_at = None
            if not self._closed:
                for entry in deferred:
                    heapq.heappush(heap, entry)
                while heap and heap[0][2].tseq != heap[0][1]:
                    heapq.heappop(heap)
                if heap:
                    self._schedule_wake(heap[0][0])

    def _on_timer(self, h: PeerHandle, fired: float) -> None:
        now = self.now()
        try:
            d = h.node.next_deadline()
        except Exception as e:
            self._emit(h, now, Event("driver_error", {"where": "next_deadline", "error": repr(e)}))
            return
        if d is None:
            return
        if d > fired and d > now:
            # the deadline moved on since this timer was set: just wait for the new one
            self._arm(h, d)
            return
        # aioquic's guard: the loop may wake us a hair before the deadline; never hand the peer an instant
        # earlier than the deadline it asked for.
        call_at = max(d, now)
        self._call(h, "handle_timer", h.node.handle_timer, call_at)
        # A peer whose deadline does not advance past the instant it was just given would spin the loop:
        # slow it down and say so instead of burning a core.
        if h.armed is not None and h.armed <= call_at:
            h.stuck += 1
            if h.stuck >= _STUCK_LIMIT:
                self._arm(h, self.now() + 0.1)
                if h.stuck == _STUCK_LIMIT:
                    self._emit(h, now, Event("driver_error", {"where": "timer", "error": "deadline not advancing"}))
        else:
            h.stuck = 0

    # -- sending ------------------------------------------------------------------------------------------

    def _transmit(self, h: PeerHandle, t: Transmit, now: float, bypass_faults: bool) -> None:
        h.tx += 1
        link = h.link
        if link is None or bypass_faults:
            self._send(h, t.data, t.src, t.dst)
            return
        arrivals = link.transmit(t.data, t.kind, now)
        if not arrivals:
            self.stats["fault_dropped"] += 1
            self._emit(h, now, Event("fault_dropped", {"kind": t.kind, "dst": list(t.dst)}))
            return
        for at in arrivals:
            data = link.corrupt(t.data) if link.plan.corrupt else t.data  # FaultPlan.corrupt: one flipped bit
            if at <= now:
                self._send(h, data, t.src, t.dst)
            else:
                holder: list[asyncio.TimerHandle] = []
                th = self.loop.call_at(self.t0 + at, self._delayed_send, h, data, t.src, t.dst, holder)
                holder.append(th)
                self._pending.add(th)

    def _delayed_send(
        self, h: PeerHandle, data: bytes, src: Address, dst: Address, holder: list[asyncio.TimerHandle]
    ) -> None:
        for th in holder:
            self._pending.discard(th)
        if not self._closed:
            self._send(h, data, src, dst)
            if self._local_q and not self._pumping:
                self._pump()

    def _send(self, h: PeerHandle | None, data: bytes, src: Address, dst: Address) -> None:
        ep = self._endpoints.get(src)
        if ep is None:
            try:
                self.bind(src)
                ep = self._endpoints[src]
            except OSError as e:
                self._send_failed(h, src, dst, e)
                return
        try:
            ep.sock.sendto(data, dst)
        except OSError as e:
            self._send_failed(h, src, dst, e)
            return
        self.stats["tx"] += 1
        if self.on_datagram is not None:
            self.on_datagram(self.now(), "out", src, dst, data)
        if self.local_fastpath:
            dep = self._endpoints.get(dst)
            if dep is not None:
                self._local_q.append(dep)

    def _send_failed(self, h: PeerHandle | None, src: Address, dst: Address, e: OSError) -> None:
        self.stats["send_errors"] += 1
        name = errno.errorcode.get(e.errno or 0, str(e.errno))
        self._emit(h, self.now(), Event("send_failed", {"src": list(src), "dst": list(dst), "errno": name}))

    # -- receiving ----------------------------------------------------------------------------------------

    def _on_readable(self, ep: _Endpoint) -> None:
        sock = ep.sock
        for _ in range(READ_BATCH):
            try:
                data, addr = sock.recvfrom(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                # e.g. ECONNREFUSED queued by an ICMP port unreachable: nothing to read, try again later.
                self.stats["recv_errors"] += 1
                return
            self._deliver(ep, data, (addr[0], addr[1]))
            if self._closed:
                return

    def _deliver(self, ep: _Endpoint, data: bytes, src: Address) -> None:
        self.stats["rx"] += 1
        now = self.now()
        if self.on_datagram is not None:
            self.on_datagram(now, "in", src, ep.addr, data)
        h = self.route(ep.addr[0], data, src)
        if h is None:
            self.stats["unmatched"] += 1
            return
        h.rx += 1
        try:
            actions = h.node.receive_datagram(data, src, ep.addr, now)
        except Exception as e:
            self._engine_error(h, "receive_datagram", e, now)
            actions = []
        self._after(h, actions, now, False)

    def route(self, local_ip: str, data: bytes, src: Address) -> PeerHandle | None:
        """The peer a datagram from ``src`` to ``local_ip`` belongs to (see the module docstring)."""
        idx = self._by_spi.get(local_ip)
        if idx:
            if data[:4] == _NON_ESP_MARKER:
                # Most likely the RFC 3948 marker; an IKE SPI may also begin with four zero bytes, so try both.
                h = self._lookup(idx, data, 4) or self._lookup(idx, data, 0)
            else:
                h = self._lookup(idx, data, 0)
            if h is not None:
                return h
        return self._by_pair.get((local_ip, src[0]))

    @staticmethod
    def _lookup(idx: dict[bytes, PeerHandle], data: bytes, off: int) -> PeerHandle | None:
        if len(data) < off + 16:
            return None
        h = idx.get(data[off : off + 8])
        if h is None:
            rspi = data[off + 8 : off + 16]
            if rspi != _ZERO_SPI:
                h = idx.get(rspi)
        return h


class JsonLinesEvents:
    """An ``on_event`` callback writing one JSON object per line: ``t`` (seconds since start), ``event``,
    ``peer`` (the peer's name) and the event's fields."""

    def __init__(self, out: IO[str], *, flush: bool = True) -> None:
        self.out = out
        self.flush = flush

    def __call__(self, h: PeerHandle | None, t: float, ev: Event) -> None:
        d: dict[str, Any] = {"t": round(t, 6), "event": ev.name, "peer": h.name if h else "driver"}
        for k, v in ev.fields.items():
            if k not in d:
                d[k] = v
        self.out.write(json.dumps(d, default=str) + "\n")
        if self.flush:
            self.out.flush()
