"""Built-in appliances: a stateful firewall (connection tracking) and a stateless router.

Both are :class:`~tgw_dataplane.middlebox.Middlebox` plug-ins; :data:`tgw_dataplane.registry.MIDDLEBOXES` maps
the instance kinds ``stateful-firewall`` and ``router`` to :func:`firewall_factory` and :func:`router_factory`.

Firewall state (per appliance; keyed by the canonical flow key, so both directions share an entry) is one int
per connection, ``(last_seen_ms << 4) | state``, to keep a million entries small:

* TCP: a SYN without ACK creates the entry (SYN_SENT); SYN-ACK moves it to ESTABLISHED; FIN to CLOSING; RST
  removes it. Any other TCP packet with no entry is dropped as ``appliance_no_state`` (the classic asymmetric
  drop of tgw.md §1.5: the SYN-ACK reaches a firewall that never saw the SYN).
* ICMP/ICMPv6: an echo request (or any non-reply type) creates state; an echo reply with no entry is dropped.
* UDP and other protocols: the first packet in either direction creates state (a permissive policy: UDP has
  no handshake that proves the other side started it).

Idle expiry per protocol comes from the topology settings (``firewall_*_idle_timeout``).
"""

from __future__ import annotations

from tgw_dataplane.middlebox import HopContext, MiddleboxHost, Verdict
from tgw_dataplane.packet import (
    PROTO_ICMP,
    PROTO_ICMPV6,
    PROTO_TCP,
    PROTO_UDP,
    TCP_ACK,
    TCP_FIN,
    TCP_RST,
    TCP_SYN,
    Packet,
    key_proto,
)

ST_SYN_SENT = 1
ST_ESTABLISHED = 2
ST_CLOSING = 3
ST_UDP = 4
ST_ICMP = 5
ST_OTHER = 6

NO_STATE = "appliance_no_state"
_ECHO_REPLIES = frozenset(((PROTO_ICMP, 0), (PROTO_ICMPV6, 129)))


class StatefulFirewall:
    """Connection-tracking firewall. ``drops`` counts its own drops by reason; ``conntrack`` is the table."""

    __slots__ = ("_icmp_ms", "_tcp_ms", "_udp_ms", "conntrack", "drops", "node", "passed")

    def __init__(self, node: str, tcp_idle: float = 350.0, udp_idle: float = 120.0, icmp_idle: float = 60.0) -> None:
        self.node = node
        self.conntrack: dict[int, int] = {}
        self.drops: dict[str, int] = {}
        self.passed = 0
        self._tcp_ms = int(tcp_idle * 1000)
        self._udp_ms = int(udp_idle * 1000)
        self._icmp_ms = int(icmp_idle * 1000)

    def _idle_ms(self, proto: int) -> int:
        if proto == PROTO_TCP:
            return self._tcp_ms
        if proto == PROTO_UDP:
            return self._udp_ms
        return self._icmp_ms

    def process(self, pkt: Packet, ctx: HopContext, now: float) -> Verdict:
        key = pkt.key
        ct = self.conntrack
        now_ms = int(now * 1000)
        v = ct.get(key)
        proto = pkt.proto
        if proto == PROTO_TCP and v is not None and now_ms - (v >> 4) <= self._tcp_ms:
            # Fast path: a live TCP connection (most packets); same transitions as below.
            f = pkt.flags
            if f & TCP_RST:
                del ct[key]
            else:
                st = v & 0xF
                if f & TCP_FIN:
                    st = ST_CLOSING
                elif st == ST_SYN_SENT and f & TCP_SYN and f & TCP_ACK:
                    st = ST_ESTABLISHED
                ct[key] = (now_ms << 4) | st
            self.passed += 1
            return None
        if v is not None and now_ms - (v >> 4) > (
            self._tcp_ms if proto == PROTO_TCP else self._udp_ms if proto == PROTO_UDP else self._icmp_ms
        ):
            del ct[key]  # idle expiry: the next non-SYN is state-less (NFW FlowTimeouts semantics, §1.15)
            v = None
        if proto == PROTO_TCP:
            f = pkt.flags
            if v is None:
                if f & TCP_SYN and not f & (TCP_ACK | TCP_RST):
                    ct[key] = (now_ms << 4) | ST_SYN_SENT
                    self.passed += 1
                    return None
                self.drops[NO_STATE] = self.drops.get(NO_STATE, 0) + 1
                return NO_STATE
            if f & TCP_RST:
                del ct[key]
                self.passed += 1
                return None
            st = v & 0xF
            if f & TCP_FIN:
                st = ST_CLOSING
            elif st == ST_SYN_SENT and f & TCP_SYN and f & TCP_ACK:
                st = ST_ESTABLISHED
            ct[key] = (now_ms << 4) | st
            self.passed += 1
            return None
        if proto in (PROTO_ICMP, PROTO_ICMPV6):
            if v is None and (proto, pkt.icmp_type) in _ECHO_REPLIES:
                self.drops[NO_STATE] = self.drops.get(NO_STATE, 0) + 1
                return NO_STATE
            ct[key] = (now_ms << 4) | ST_ICMP
            self.passed += 1
            return None
        ct[key] = (now_ms << 4) | (ST_UDP if proto == PROTO_UDP else ST_OTHER)
        self.passed += 1
        return None

    def expire(self, now: float) -> int:
        """Remove idle entries; returns how many."""
        now_ms = int(now * 1000)
        dead = [k for k, v in self.conntrack.items() if now_ms - (v >> 4) > self._idle_ms(key_proto(k))]
        for k in dead:
            del self.conntrack[k]
        return len(dead)


class Router:
    """A stateless router: forwards every packet by its subnet's route table."""

    __slots__ = ("node", "passed")

    def __init__(self, node: str) -> None:
        self.node = node
        self.passed = 0

    def process(self, pkt: Packet, ctx: HopContext, now: float) -> Verdict:
        self.passed += 1
        return None


def firewall_factory(host: MiddleboxHost, node: str) -> StatefulFirewall:
    """The ``stateful-firewall`` kind: idle timeouts from the topology settings (``firewall_*_idle_timeout``)."""
    s = host.settings
    return StatefulFirewall(
        node, s.firewall_tcp_idle_timeout, s.firewall_udp_idle_timeout, s.firewall_icmp_idle_timeout
    )


def router_factory(host: MiddleboxHost, node: str) -> Router:
    """The ``router`` kind."""
    return Router(node)
