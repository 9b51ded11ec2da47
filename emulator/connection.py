"""Connection scenarios: a Site-to-Site VPN connection with two tunnels on a TGW, and traffic through it.

A scenario file with a ``connection:`` section (:meth:`emulator.scenario.Scenario.load` hands it here) puts both
halves of the product together, in virtual time:

* on-premises hosts behind a customer gateway (one public address, two tunnels);
* the connection as AWS provisions it: two AWS tunnel endpoints (two outside addresses), each tunnel's inside
  /30 from 169.254.0.0/16 (``TunnelInsideCidr``, or one picked for it), static routing (a tunnel's routes are
  in use while it is UP) or dynamic routing (a BGP session inside each tunnel, :mod:`cgw_peer.connection.bgp`);
* the TGW dataplane (:mod:`tgw_dataplane`) with the connection's VPN attachment, spoke and inspection VPCs;
* traffic generators (constant-rate UDP one way, or echo request/response) and emulated hosts that answer.

A packet from an on-premises host is routed by the CGW onto a tunnel, encrypted there with the child SA's keys
(ESP as IP protocol 50, or in UDP 4500 when encapsulation is on), crosses the simulated network (with the
tunnel path's fault plan), is decrypted by the AWS endpoint and enters the TGW through the VPN attachment. The
reverse path is encrypted on the tunnel the TGW chose. The TGW's choice between the two tunnels is its VPN
attachment's (``Dataplane.set_tunnel_state`` with the tunnels whose routes are in use): with static routing only
the first routable tunnel in the attachment's order is offered (active/standby: a static VPN never uses ECMP,
tgw.md §1.10, and AWS's "internal metrics" are not published **[U]**), with dynamic routing every tunnel whose
BGP session is established with prefixes, so a TGW with ``vpn_ecmp`` spreads flows over both. The customer
gateway does the same on its side (``cgw.routing``: ``active-standby``, the first tunnel that is UP /
established, or ``ecmp``, a CRC of the 5-tuple over those).

The format (YAML; the keys shared with single-tunnel scenarios mean the same)::

    name: conn-failover-clear
    seed: 1
    duration: 150                      # virtual seconds
    max_events: 2000000                # budget, as in single-tunnel scenarios
    ike_version: 1
    psk: examplePSK.123                # both tunnels (or PreSharedKey per tunnel)
    metrics_period: 10                 # seconds per tunnel_metrics / flow_metrics datapoint (default 60)
    connection:
      topology: topologies/connection-tgw.yaml   # *required*: the TGW topology (YAML or AWS JSON), relative
                                       #   to the file (or to emulator/scenarios/, for an edited copy)
      attachment: tgw-attach-vpn       # *required*: its VPN attachment, with exactly two tunnels
      routing: static                  # static | dynamic (BGP)
      tunnel: {DPDTimeoutAction: clear}    # AWS tunnel options for both tunnels (AWS spelling)
      tunnels:                         # optional, per tunnel in the attachment's order
        - {address: 203.0.113.10, options: {TunnelInsideCidr: 169.254.10.0/30}}
        - {address: 203.0.113.20}
      aws: {profile: aws, behaviour: {}, asn: 64512}
      cgw: {address: 198.51.100.20, profile: strongswan, behaviour: {}, asn: 65000, force_encap: false,
            routing: active-standby, hosts: [192.168.10.5]}
      bgp: {hold_time: 30, keepalive: 10, connect_retry: 5}
      limits: {tunnel: true}           # AWS's 1.25 Gbps / 140,000 packets/s per tunnel and direction
      instances:                       # EC2 bandwidth per instance (baseline, burst credits), optional
        i-app: {type: t3.micro, burst_seconds: 300}   # or baseline_gbps / burst_gbps
      links:                           # fault plans per tunnel path and direction
        tunnel1: {cgw->aws: {delay: 0.01}, aws->cgw: {delay: 0.01}}
    flows:
      - {name: to-dc, from: i-app, to: 192.168.10.5, kind: udp, rate: 50, size: 200, start: 10, until: 140}
      - {name: ping, from: 192.168.10.5, to: 10.0.1.10, kind: echo, rate: 1, size: 84, start: 10, until: 140}
    schedule:
      - {at: 60, do: crash, node: cgw1}          # aws1 | aws2 | cgw1 | cgw2 | cgw (both CGW tunnels)
      - {at: 100, do: revive, node: cgw1, initiate: false}
      - {at: 60, do: initiate, node: aws2}       # initiate | close
      - {at: 60, do: blackhole, tunnel: tunnel1, direction: both, until: 90}
      - {at: 60, do: faults, tunnel: tunnel1, direction: cgw->aws, plan: {loss: 0.5}}
    expect:                            # as in single-tunnel scenarios; nodes are
      - {event: flow_summary, node: flows, fields: {name: to-dc, lost: 0}}   # aws1 aws2 cgw1 cgw2 tgw vpc flows

Node names: ``aws1``/``aws2`` are the AWS endpoints of the attachment's first / second tunnel, ``cgw1``/``cgw2``
the customer gateway's ends (one public address, shared by peer), ``tgw`` records ``tgw_routes_changed``,
``vpc`` EC2 events, ``flows`` the traffic's events. Flow endpoints are an instance id of the topology, an
instance's address, or an on-premises host (``cgw.hosts``, answering echo). A flow packet is an IPv4/UDP packet
of ``size`` octets from port 40000 + the flow's number to ``port`` (default 5001), its payload starting with a
probe header (:func:`cgw_peer.connection.packets.probe_payload`) that the receiving end reads.

Outputs (``--out DIR``, as every scenario): ``NAME.pcap`` holds every datagram between the gateways (IKE and
ESP), ``NAME-keys/`` Wireshark's IKE tables and ``esp_sa`` (so tshark shows the inner packets), ``NAME.jsonl``
the events (ESP packets are not traced one by one: ``datagram_sent`` covers IKE only), ``NAME-timeline.txt``.
Events of a connection run besides the engines': ``tgw_routes_changed``, ``tunnel_metrics`` (CloudWatch's
``TunnelState``/``TunnelDataIn``/``TunnelDataOut`` per period), ``flow_metrics``, ``flow_outage``,
``flow_summary``, ``ec2_credits_exhausted``, ``bgp_session_up``/``down``, ``bgp_routes_received``.

Settings the emulator chooses where AWS is silent (each a key above, defaults here): the static active/standby
rule (the first routable tunnel), the CGW's routing (active-standby), BGP's connect retry (5 s), EC2 credit size
(``burst_seconds`` 300), the per-tunnel limits per direction; an AWS endpoint that crashes withdraws its tunnel's
routes at once (AWS knows its own endpoint is gone) **[U]**.
"""

from __future__ import annotations

import functools
import ipaddress
import math
import os
import random
import struct
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from cgw_peer import events as ev
from cgw_peer.connection.bgp import AMAZON_ASN, CUSTOMER_ASN, BgpSpeaker, BgpTimers
from cgw_peer.connection.hosts import EchoHost
from cgw_peer.connection.limits import (
    DEFAULT_BURST_SECONDS,
    INSTANCE_BANDWIDTH,
    VPN_TUNNEL_BPS,
    VPN_TUNNEL_PPS,
    Ec2Bandwidth,
    TunnelLimit,
)
from cgw_peer.connection.packets import ip_bytes, parse4, probe_payload, read_probe, udp4
from cgw_peer.connection.tunnel import VpnTunnel
from cgw_peer.tunnel_endpoint import KIND_ESP, TunnelEndpoint
from emulator import validate as v
from emulator.actions import Action, Address, Transmit
from emulator.errors import ConfigError
from emulator.keytables import KeyTables
from emulator.link import FaultPlan
from emulator.pcap import LINKTYPE_RAW, PcapWriter
from emulator.scenario import (
    PCAP_EPOCH,
    Expectation,
    Scenario,
    ScenarioResult,
    ScheduleItem,
    parse_expectation,
    write_timeline,
)
from emulator.scheduler import BudgetExceeded
from emulator.simnet import SimNetwork
from emulator.trace import StreamingTrace, TraceRecord

__all__ = ["EXPECT_NODES", "NODES", "ConnectionScenario"]

TOP_KEYS = {
    "name",
    "description",
    "seed",
    "duration",
    "max_events",
    "ike_version",
    "psk",
    "metrics_period",
    "connection",
    "flows",
    "schedule",
    "expect",
}
CONNECTION_KEYS = {
    "topology",
    "attachment",
    "routing",
    "tunnel",
    "tunnels",
    "aws",
    "cgw",
    "bgp",
    "limits",
    "instances",
    "links",
}
TUNNEL_KEYS = {"address", "options"}
SIDE_KEYS = {"profile", "behaviour", "proposals", "esp_proposals", "asn", "initiate"}
CGW_KEYS = SIDE_KEYS | {"address", "force_encap", "nat_t", "routing", "hosts"}
BGP_KEYS = {"hold_time", "keepalive", "connect_retry"}
LIMIT_KEYS = {"tunnel", "tunnel_bps", "tunnel_pps"}
INSTANCE_KEYS = {"type", "baseline_gbps", "burst_gbps", "burst_seconds"}
FLOW_KEYS = {"name", "kind", "from", "to", "rate", "size", "start", "until", "port"}
ROUTING = ("static", "dynamic")
CGW_ROUTING = ("active-standby", "ecmp")
NODES = ("aws1", "aws2", "cgw1", "cgw2")
"""The tunnel-end nodes: AWS endpoints and CGW ends of the first and second tunnel."""
EXPECT_NODES = (*NODES, "tgw", "vpc", "flows")
ACTION_KEYS: dict[str, frozenset[str]] = {
    "crash": frozenset({"node"}),
    "revive": frozenset({"node", "initiate"}),
    "initiate": frozenset({"node"}),
    "close": frozenset({"node"}),
    "blackhole": frozenset({"tunnel", "direction", "until"}),
    "faults": frozenset({"tunnel", "direction", "plan"}),
}
DIRECTIONS = ("both", "cgw->aws", "aws->cgw")
DEFAULT_AWS_ADDRESSES = ("203.0.113.10", "203.0.113.20")
DEFAULT_CGW_ADDRESS = "198.51.100.20"
DEFAULT_METRICS_PERIOD = 60.0
"""CloudWatch's standard resolution is one minute; AWS's VPN alarm examples use 5-minute periods."""
DEFAULT_FLOW_PORT = 5001
EMBEDDED_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "scenarios")
"""Where a relative ``connection.topology`` is also looked for when it is not beside the scenario file."""
MIN_PACKET = 28 + 18
"""The smallest flow packet: IPv4 (20) + UDP (8) + the probe header (18)."""
MAX_PACKET = 8500
"""The largest flow packet: the TGW's MTU for VPC attachments (tgw.md §1.11)."""
_RESERVED_INSIDE = [ipaddress.IPv4Network(f"169.254.{i}.0/30") for i in range(6)] + [
    ipaddress.IPv4Network("169.254.169.252/30")
]


# =========================================================================================== validated specs


@dataclass(frozen=True)
class TunnelSpec:
    """One tunnel of the connection."""

    name: str
    aws_address: str
    inside: ipaddress.IPv4Network
    options: Mapping[str, Any]

    @property
    def aws_inside(self) -> str:
        return str(self.inside.network_address + 1)

    @property
    def cgw_inside(self) -> str:
        return str(self.inside.network_address + 2)


@dataclass(frozen=True)
class FlowSpec:
    """One generated flow."""

    index: int
    name: str
    kind: str
    src_ip: str
    src_instance: str | None
    """The instance that sends (None: an on-premises host)."""
    dst_ip: str
    rate: float
    size: int
    start: float
    until: float
    port: int

    @property
    def interval(self) -> float:
        return 1.0 / self.rate

    def count(self) -> int:
        """Packets the flow sends: at start, start + 1/rate, ... up to and including ``until``."""
        return max(0, math.floor((self.until - self.start) * self.rate + 1e-9) + 1)


@dataclass(frozen=True)
class Ec2Spec:
    baseline: float
    burst: float
    burst_seconds: float


@dataclass(frozen=True)
class ConnectionItem(ScheduleItem):
    """One validated ``schedule:`` entry of a connection scenario: ``nodes`` for crash / revive / initiate /
    close, ``tunnel`` (and the inherited ``directions``, ``until``, ``plan``) for blackhole / faults."""

    nodes: tuple[str, ...] = ()
    tunnel: str = ""


def _inside_for(name: str, seed: int, taken: set[ipaddress.IPv4Network]) -> ipaddress.IPv4Network:
    """A /30 AWS would pick: inside 169.254.0.0/16, not reserved, not taken (seeded, so runs repeat)."""
    rng = random.Random(f"{seed}:inside:{name}")
    while True:
        net = ipaddress.IPv4Network((0xA9FE0000 | (rng.randrange(6 * 64, 16384) << 2), 30))
        if net not in _RESERVED_INSIDE and net not in taken:
            return net


class ConnectionScenario(Scenario):
    """A validated connection scenario (see the module docstring); :meth:`run` it like any scenario."""

    def __init__(self, raw: dict[str, Any], default_name: str = "scenario", base_dir: str = ".") -> None:
        self.raw = raw
        self.base_dir = base_dir
        v.keys(raw, "", TOP_KEYS, required=("connection",))
        self.name = v.safe_name(raw["name"], "name") if "name" in raw else v.sanitise_name(default_name)
        if raw.get("description") is not None:
            v.string(raw["description"], "description", empty=True, single_line=False)
        self.seed = v.integer(raw.get("seed", 0), "seed")
        self.duration = v.number(raw.get("duration", 600), "duration", above=0.0)
        self.max_events = v.integer(raw.get("max_events", v.DEFAULT_MAX_EVENTS), "max_events", minimum=1)
        self.ike_version = v.choice(raw.get("ike_version", 1), "ike_version", (1, 2))
        self.metrics_period = v.seconds(raw.get("metrics_period", DEFAULT_METRICS_PERIOD), "metrics_period", floor=1.0)
        self.psk: str | None = None
        if "psk" in raw:
            from cgw_peer.config import check_pre_shared_key
            from cgw_peer.errors import ConfigError as PeerConfigError

            try:
                self.psk = check_pre_shared_key(raw["psk"], "psk")
            except PeerConfigError as e:
                raise ConfigError(str(e)) from None
        c = v.mapping(raw["connection"], "connection", none_is_empty=False)
        v.keys(c, "connection", CONNECTION_KEYS, required=("topology", "attachment"))
        self.conn = c
        self.routing = v.choice(c.get("routing", "static"), "connection.routing", ROUTING)
        self.topology_path = v.string(c["topology"], "connection.topology")
        self.attachment = v.string(c["attachment"], "connection.attachment")
        dp = self.make_dataplane()
        self.tunnel_names = self._attachment_tunnels(dp)
        self.cgw_address = v.ip_address(
            v.mapping(c.get("cgw"), "connection.cgw").get("address", DEFAULT_CGW_ADDRESS), "connection.cgw.address"
        )
        self.tunnels = self._tunnels()
        self.tunnel_configs = self._configs()
        self.bgp_timers = self._bgp()
        self.tunnel_limits = self._limits()
        self.onprem_hosts = self._hosts()
        self.cgw_routing = v.choice(
            v.mapping(c.get("cgw"), "connection.cgw").get("routing", "active-standby"),
            "connection.cgw.routing",
            CGW_ROUTING,
        )
        self.asn = {
            "aws": self._asn("aws", AMAZON_ASN),
            "cgw": self._asn("cgw", CUSTOMER_ASN),
        }
        self.instances_bw = self._instances(dp)
        self.link_plans = self._links()
        self.flows = self._flows(dp)
        items = v.sequence(raw.get("schedule"), "schedule")
        self.items = [self._item(it, f"schedule[{i}]") for i, it in enumerate(items)]
        self.schedule: list[ScheduleItem] = list(self.items)
        self.site: _Site | None = None
        """The last run's wiring (network, nodes, dataplane, flows), for inspection after :meth:`run`."""
        self._expect_raw = v.sequence(raw.get("expect"), "expect")
        for i, item in enumerate(self._expect_raw):
            _connection_expectation(item, f"expect[{i}]")
        for i in range(2):  # build every engine once: proposals fail here, naming the tunnel
            for side in ("aws", "cgw"):
                self.make_tunnel(side, i, 0)

    # -- validation ----------------------------------------------------------------------------------------

    def make_dataplane(self) -> Any:
        from tgw_dataplane.dataplane import Dataplane
        from tgw_dataplane.loader import load_any

        path = self.topology_path
        if not os.path.isabs(path):
            here = os.path.join(self.base_dir, path)
            # An edited copy of an embedded scenario kept elsewhere still finds the embedded topologies.
            embedded = os.path.join(EMBEDDED_DIR, path)
            path = here if os.path.exists(here) or not os.path.exists(embedded) else embedded
        try:
            return Dataplane(load_any(path))
        except ConfigError as e:
            raise ConfigError(f"connection.topology: {e}") from None

    def _attachment_tunnels(self, dp: Any) -> tuple[str, str]:
        from tgw_dataplane.model import VpnAttachment

        att = dp.topology.attachments().get(self.attachment)
        if not isinstance(att, VpnAttachment):
            names = sorted(a for a, x in dp.topology.attachments().items() if isinstance(x, VpnAttachment))
            v.fail(
                "connection.attachment",
                f"no VPN attachment {self.attachment!r} (VPN attachments: {v.allowed(names) or 'none'})",
            )
        if len(att.tunnels) != 2:
            v.fail(
                "connection.attachment",
                f"a Site-to-Site VPN connection has two tunnels; {att.id} has {len(att.tunnels)}",
            )
        return att.tunnels[0], att.tunnels[1]

    def _tunnels(self) -> tuple[TunnelSpec, TunnelSpec]:
        c = self.conn
        common = dict(v.mapping(c.get("tunnel"), "connection.tunnel"))
        items = v.sequence(c.get("tunnels"), "connection.tunnels")
        if len(items) > 2:
            v.fail("connection.tunnels", f"at most two entries (one per tunnel), got {len(items)}")
        out: list[TunnelSpec] = []
        taken: set[ipaddress.IPv4Network] = set()
        addresses: list[str] = []
        for i, name in enumerate(self.tunnel_names):
            w = f"connection.tunnels[{i}]"
            t = v.mapping(items[i] if i < len(items) else None, w)
            v.keys(t, w, TUNNEL_KEYS)
            addr = v.ip_address(t.get("address", DEFAULT_AWS_ADDRESSES[i]), f"{w}.address")
            if addr == self.cgw_address or addr in addresses:
                v.fail(f"{w}.address", f"must differ from the CGW's and the other tunnel's address, got {addr}")
            if ipaddress.ip_address(addr).version != ipaddress.ip_address(self.cgw_address).version:
                v.fail(f"{w}.address", "must be the same address family as connection.cgw.address")
            addresses.append(addr)
            opts = {**common, **v.mapping(t.get("options"), f"{w}.options")}
            cidr_text = opts.get("TunnelInsideCidr")
            if cidr_text is not None:
                try:
                    inside = ipaddress.IPv4Network(str(cidr_text))
                except ValueError:
                    v.fail(f"{w}.options.TunnelInsideCidr", f"a /30 inside 169.254.0.0/16, got {cidr_text!r}")
                if inside in taken:
                    v.fail(f"{w}.options.TunnelInsideCidr", f"{inside} is the other tunnel's (they must differ)")
            else:
                inside = _inside_for(name, self.seed, taken)
                opts["TunnelInsideCidr"] = str(inside)
            taken.add(inside)
            out.append(TunnelSpec(name, addr, inside, opts))
        return out[0], out[1]

    def _configs(self) -> dict[tuple[str, int], Any]:
        from cgw_peer.config import PROFILES, Behaviour, IkeVersion, PeerConfig, Role, TunnelOptions
        from cgw_peer.errors import ConfigError as PeerConfigError

        version = IkeVersion.IKEV1 if self.ike_version == 1 else IkeVersion.IKEV2
        out: dict[tuple[str, int], Any] = {}
        for i, t in enumerate(self.tunnels):
            tw = f"connection.tunnels[{i}].options"
            try:
                opts = TunnelOptions.from_mapping(dict(t.options), f"{tw}.", ike_version=version)
            except PeerConfigError as e:
                raise ConfigError(str(e) if str(e).startswith("connection") else f"{tw}.{e}") from None
            for side, role, default in (("aws", Role.AWS, "aws"), ("cgw", Role.CGW, "strongswan")):
                w = f"connection.{side}"
                s = v.mapping(self.conn.get(side), w)
                v.keys(s, w, CGW_KEYS if side == "cgw" else SIDE_KEYS)
                profile = v.choice(s.get("profile", default), f"{w}.profile", tuple(PROFILES))
                beh: Behaviour = PROFILES[profile]
                overrides = v.mapping(s.get("behaviour"), f"{w}.behaviour")
                kw: dict[str, Any] = {}
                try:
                    if overrides:
                        merged = Behaviour.from_mapping(overrides, f"{w}.behaviour.")
                        names = [str(k).replace("-", "_") for k in overrides]
                        beh = replace(beh, **{n: getattr(merged, n) for n in names})
                    if self.psk is not None:
                        kw["psk"] = self.psk.encode()
                    for key in ("proposals", "esp_proposals"):
                        if s.get(key):
                            kw[key] = v.string_list(s[key], f"{w}.{key}")
                    for flag in ("force_encap", "nat_t"):
                        if flag in s:
                            kw[flag] = v.boolean(s[flag], f"{w}.{flag}")
                    if s.get("initiate") is not None:
                        kw["initiate"] = v.boolean(s["initiate"], f"{w}.initiate")
                    out[(side, i)] = PeerConfig(
                        role=role, ike_version=version, options=opts, behaviour=beh, name=t.name, **kw
                    )
                except PeerConfigError as e:
                    msg = str(e)
                    raise ConfigError(msg if msg.startswith("connection") else f"{w}.{msg}") from None
                v.check_timer_floors(beh, f"{w}.behaviour.")
        return out

    def _asn(self, side: str, default: int) -> int:
        s = v.mapping(self.conn.get(side), f"connection.{side}")
        return v.integer(s.get("asn", default), f"connection.{side}.asn", minimum=1, maximum=4294967294)

    def _bgp(self) -> BgpTimers:
        b = v.mapping(self.conn.get("bgp"), "connection.bgp")
        v.keys(b, "connection.bgp", BGP_KEYS)
        hold = v.number(b.get("hold_time", 30), "connection.bgp.hold_time", minimum=3, maximum=65535)
        keepalive = v.seconds(b.get("keepalive", hold / 3), "connection.bgp.keepalive", floor=1.0)
        retry = v.seconds(b.get("connect_retry", 5), "connection.bgp.connect_retry", floor=1.0)
        return BgpTimers(hold_time=hold, keepalive=keepalive, connect_retry=retry)

    def _limits(self) -> tuple[float, float] | None:
        lm = v.mapping(self.conn.get("limits"), "connection.limits")
        v.keys(lm, "connection.limits", LIMIT_KEYS)
        if not v.boolean(lm.get("tunnel", False), "connection.limits.tunnel"):
            for k in ("tunnel_bps", "tunnel_pps"):
                if k in lm:
                    v.fail(f"connection.limits.{k}", "only with tunnel: true")
            return None
        bps = v.number(lm.get("tunnel_bps", VPN_TUNNEL_BPS), "connection.limits.tunnel_bps", above=0.0, maximum=1e12)
        pps = v.number(lm.get("tunnel_pps", VPN_TUNNEL_PPS), "connection.limits.tunnel_pps", above=0.0, maximum=1e9)
        return bps, pps

    def _hosts(self) -> list[str]:
        s = v.mapping(self.conn.get("cgw"), "connection.cgw")
        hosts = [
            v.ip_address(h, f"connection.cgw.hosts[{i}]")
            for i, h in enumerate(v.sequence(s.get("hosts"), "connection.cgw.hosts"))
        ]
        for i, h in enumerate(hosts):
            if ipaddress.ip_address(h).version != 4:
                v.fail(f"connection.cgw.hosts[{i}]", f"an IPv4 address (inner traffic is IPv4), got {h}")
        return hosts

    def _instances(self, dp: Any) -> dict[str, Ec2Spec]:
        ins = v.mapping(self.conn.get("instances"), "connection.instances")
        known = dp.topology.instances()
        out: dict[str, Ec2Spec] = {}
        for iid, spec in ins.items():
            w = f"connection.instances.{v.key_text(iid)}"
            if iid not in known:
                v.fail(w, f"no instance {iid!r} in the topology (instances: {v.allowed(sorted(known))})")
            m = v.mapping(spec, w, none_is_empty=False)
            v.keys(m, w, INSTANCE_KEYS)
            base = INSTANCE_BANDWIDTH.get(str(m["type"])) if "type" in m else None
            if "type" in m and base is None:
                v.choice(m["type"], f"{w}.type", sorted(INSTANCE_BANDWIDTH))
            baseline = (
                v.number(m["baseline_gbps"], f"{w}.baseline_gbps", above=0.0, maximum=1000) * 1e9
                if "baseline_gbps" in m
                else None
            )
            burst = (
                v.number(m["burst_gbps"], f"{w}.burst_gbps", above=0.0, maximum=1000) * 1e9
                if "burst_gbps" in m
                else None
            )
            baseline = baseline if baseline is not None else (base.baseline if base else None)
            burst = burst if burst is not None else (base.burst if base else None)
            if baseline is None or burst is None:
                v.fail(w, f"needs type ({v.allowed(sorted(INSTANCE_BANDWIDTH))}) or baseline_gbps and burst_gbps")
            if baseline > burst:
                v.fail(f"{w}.baseline_gbps", "must be <= the burst bandwidth")
            secs = v.number(
                m.get("burst_seconds", DEFAULT_BURST_SECONDS), f"{w}.burst_seconds", minimum=0.0, maximum=1e6
            )
            out[str(iid)] = Ec2Spec(baseline, burst, secs)
        return out

    def _links(self) -> dict[tuple[str, str], FaultPlan]:
        lk = v.mapping(self.conn.get("links"), "connection.links")
        out: dict[tuple[str, str], FaultPlan] = {}
        for tname, dirs in lk.items():
            w = f"connection.links.{v.key_text(tname)}"
            if tname not in self.tunnel_names:
                v.fail(w, f"unknown tunnel (tunnels: {v.allowed(self.tunnel_names)})")
            dm = v.mapping(dirs, w)
            for d, plan in dm.items():
                if d not in DIRECTIONS[1:]:
                    v.fail(f"{w}.{v.key_text(d)}", f"unknown direction (allowed: {v.allowed(DIRECTIONS[1:])})")
                out[(str(tname), str(d))] = FaultPlan.from_mapping(plan, f"{w}.{d}")
        return out

    def _flows(self, dp: Any) -> list[FlowSpec]:
        instances = dp.topology.instances()
        by_ip = {i.ip: i.id for i in instances.values()}
        out: list[FlowSpec] = []
        names: set[str] = set()
        items = v.sequence(self.raw.get("flows"), "flows")
        if len(items) > 1000:
            v.fail("flows", f"at most 1,000 flows, got {len(items)}")
        for i, it in enumerate(items):
            w = f"flows[{i}]"
            m = v.mapping(it, w, none_is_empty=False)
            v.keys(m, w, FLOW_KEYS, required=("from", "to"))
            name = v.safe_name(m.get("name", f"flow{i + 1}"), f"{w}.name")
            if name in names:
                v.fail(f"{w}.name", f"{name!r} is used by another flow")
            names.add(name)
            kind = v.choice(m.get("kind", "udp"), f"{w}.kind", ev.FLOW_KINDS)
            src_text = v.string(m["from"], f"{w}.from")
            src_inst: str | None
            if src_text in instances:
                src_ip, src_inst = instances[src_text].ip, src_text
            else:
                src_ip = v.ip_address(src_text, f"{w}.from")
                src_inst = by_ip.get(src_ip)
                if src_inst is None and src_ip not in self.onprem_hosts:
                    v.fail(
                        f"{w}.from", f"{src_ip} is neither an instance nor an on-premises host (connection.cgw.hosts)"
                    )
            dst_text = v.string(m["to"], f"{w}.to")
            dst_ip = instances[dst_text].ip if dst_text in instances else v.ip_address(dst_text, f"{w}.to")
            for where, ip in ((f"{w}.from", src_ip), (f"{w}.to", dst_ip)):
                if ipaddress.ip_address(ip).version != 4:
                    v.fail(where, f"an IPv4 endpoint (inner traffic is IPv4), got {ip}")
            if dst_ip == src_ip:
                v.fail(f"{w}.to", "must differ from the source")
            rate = v.number(m.get("rate", 1), f"{w}.rate", above=0.0, maximum=1e6)
            size = v.integer(m.get("size", 100), f"{w}.size", minimum=MIN_PACKET, maximum=MAX_PACKET)
            start = v.number(m.get("start", 0), f"{w}.start", minimum=0.0)
            until = v.number(m.get("until", self.duration), f"{w}.until", minimum=0.0)
            if until < start:
                v.fail(f"{w}.until", f"must be >= start ({start:g}), got {until:g}")
            port = v.integer(m.get("port", DEFAULT_FLOW_PORT), f"{w}.port", minimum=1, maximum=65535)
            out.append(FlowSpec(i, name, kind, src_ip, src_inst, dst_ip, rate, size, start, until, port))
        return out

    def _node(self, value: Any, where: str, *, both: bool) -> tuple[str, ...]:
        options = (*NODES, "cgw") if both else NODES
        n = v.choice(value, where, options)
        return ("cgw1", "cgw2") if n == "cgw" else (n,)

    def _item(self, item: Any, where: str) -> ConnectionItem:
        m = v.mapping(item, where, none_is_empty=False)
        if "at" not in m:
            v.fail(f"{where}.at", "required")
        do = v.choice(m.get("do"), f"{where}.do", sorted(ACTION_KEYS))
        v.keys(m, where, {"at", "do", *ACTION_KEYS[do]})
        at = v.number(m["at"], f"{where}.at", minimum=0.0)
        if do in ("crash", "revive"):
            nodes = self._node(m.get("node"), f"{where}.node", both=True)
            init = None if m.get("initiate") is None else v.boolean(m["initiate"], f"{where}.initiate")
            return ConnectionItem(at, do, nodes=nodes, initiate=init)
        if do in ("initiate", "close"):
            return ConnectionItem(at, do, nodes=self._node(m.get("node"), f"{where}.node", both=False))
        tunnel = v.choice(m.get("tunnel"), f"{where}.tunnel", self.tunnel_names)
        d = v.choice(m.get("direction", "both"), f"{where}.direction", DIRECTIONS)
        dirs = DIRECTIONS[1:] if d == "both" else (d,)
        if do == "blackhole":
            until = v.number(m.get("until", math.inf), f"{where}.until", allow_inf=True)
            if not until >= at:
                v.fail(f"{where}.until", f"must be >= at ({at:g}), got {m.get('until')!r}")
            return ConnectionItem(at, do, tunnel=tunnel, directions=dirs, until=until)
        plan = FaultPlan.from_mapping(m.get("plan"), f"{where}.plan")
        return ConnectionItem(at, do, tunnel=tunnel, directions=dirs, plan=plan)

    # -- building ------------------------------------------------------------------------------------------

    def make_tunnel(self, side: str, index: int, incarnation: int, initiate: bool | None = None) -> VpnTunnel:
        """One tunnel end: the engine, its ESP, its BGP speaker (dynamic routing) and AWS's limits (AWS side).
        ``incarnation`` counts revivals (a fresh process: new SPIs, new keys); ``initiate`` overrides who
        initiates at start."""
        from cgw_peer.errors import ConfigError as PeerConfigError
        from cgw_peer.peer import create_peer

        t = self.tunnels[index]
        cfg = self.tunnel_configs[(side, index)]
        if initiate is not None:
            cfg = replace(cfg, initiate=initiate)
        local, remote = (t.aws_address, self.cgw_address) if side == "aws" else (self.cgw_address, t.aws_address)
        rng = random.Random(f"{self.seed}:{side}{index + 1}:{incarnation}")
        try:
            peer = create_peer(cfg, local=(local, 500), remote=(remote, 500), rng=rng)
        except PeerConfigError as e:
            raise ConfigError(f"connection.{side}: {e}") from None
        ep = TunnelEndpoint(peer, rng=random.Random(f"{self.seed}:esp:{side}{index + 1}:{incarnation}"))
        bgp = None
        if self.routing == "dynamic":
            aws_side = side == "aws"
            bgp = BgpSpeaker(
                local_ip=t.aws_inside if aws_side else t.cgw_inside,
                peer_ip=t.cgw_inside if aws_side else t.aws_inside,
                local_asn=self.asn[side],
                peer_asn=self.asn["cgw" if aws_side else "aws"],
                prefixes=self._advertised(side),
                active=not aws_side,
                timers=self.bgp_timers,
            )
        lim_in = lim_out = None
        if side == "aws" and self.tunnel_limits is not None:
            bps, pps = self.tunnel_limits
            lim_in, lim_out = TunnelLimit(bps, pps), TunnelLimit(bps, pps)
        return VpnTunnel(ep, name=t.name, bgp=bgp, limit_in=lim_in, limit_out=lim_out)

    @functools.cached_property
    def _topology(self) -> Any:
        return self.make_dataplane().topology

    def _advertised(self, side: str) -> list[str]:
        """AWS advertises the CIDRs of the VPCs attached to the TGW; the CGW the attachment's on-premises routes
        (what the TGW's VPN attachment installs, ``routes`` in the topology)."""
        from tgw_dataplane.model import VpcAttachment, VpnAttachment

        topo = self._topology
        att = topo.attachments()[self.attachment]
        assert isinstance(att, VpnAttachment)
        if side == "cgw":
            return [str(r.dest) for r in att.routes if r.dest.version == 4]
        tgw = topo.tgws[att.tgw_id]
        out: list[str] = []
        for a in tgw.attachments.values():
            if isinstance(a, VpcAttachment):
                out += [str(c) for c in topo.vpcs[a.vpc_id].cidrs if c.version == 4]
        return out

    # -- running -------------------------------------------------------------------------------------------

    def run(self, out_dir: str | None = None, *, max_events: int | None = None) -> ScenarioResult:
        """Run in virtual time; outputs as :meth:`Scenario.run` (``NAME.pcap`` with the ESP, ``NAME-keys/`` with
        ``esp_sa``, ``NAME.jsonl``, ``NAME-timeline.txt``)."""
        budget = self.max_events if max_events is None else max_events
        outputs: dict[str, str] = {}
        pcap: PcapWriter | None = None
        if out_dir is not None:
            v.output_dir(out_dir, "--out")
            os.makedirs(out_dir, exist_ok=True)
            outputs["pcap"] = os.path.join(out_dir, f"{self.name}.pcap")
            outputs["trace"] = os.path.join(out_dir, f"{self.name}.jsonl")
            pcap = PcapWriter.open(outputs["pcap"], LINKTYPE_RAW, ts_origin=PCAP_EPOCH)
        trace = StreamingTrace(outputs.get("trace"), max_events=budget)
        checks = [_connection_expectation(e, f"expect[{i}]") for i, e in enumerate(self._expect_raw)]

        def feed(rec: TraceRecord) -> None:
            for c in checks:
                c.feed(rec)

        trace.subscribe(feed)
        keys = KeyTables()
        net = SimNetwork(self.seed, pcap=pcap, trace=trace, untraced_kinds=frozenset({KIND_ESP}))
        site = _Site(self, net, keys)
        self.site = site
        if out_dir is not None:
            site.record_captures()
        try:
            site.wire()
            net.start_all(at=0.0)
            net.run_until(self.duration, max_events=budget)
            site.finish()
        except BudgetExceeded as e:
            where = f"; the trace so far is in {outputs['trace']}" if "trace" in outputs else ""
            raise BudgetExceeded(f"{e} [scenario {self.name}{where}]") from None
        finally:
            trace.flush()
            if pcap is not None:
                pcap.close()
        status = site.status()
        results = [c.result(status) for c in checks]
        res = ScenarioResult(self.name, all(r.ok for r in results), results, trace, status, outputs)
        if out_dir is not None:
            keys_dir = os.path.join(out_dir, f"{self.name}-keys")
            keys.write(keys_dir)
            outputs["keys"] = keys_dir
            outputs["timeline"] = tl_path = os.path.join(out_dir, f"{self.name}-timeline.txt")
            with open(tl_path, "w") as ft:
                write_timeline(trace, ft)
        return res


# ============================================================================================ expectations


def _connection_expectation(e: Any, where: str) -> Expectation:
    """An ``expect:`` item with the connection's node names (:data:`EXPECT_NODES`); everything else as in
    :func:`emulator.scenario.parse_expectation` (``tgw_flow`` has no meaning here: there are no probes)."""
    m = v.mapping(e, where, none_is_empty=False)
    raw = dict(m)
    if "tgw_flow" in raw:
        v.fail(f"{where}.tgw_flow", "a connection scenario has no TGW probes (use flows and flow_summary)")
    node: str | None = None
    inner = raw
    key = None
    if "absent" in raw and isinstance(raw["absent"], Mapping):
        key = "absent"
        inner = dict(raw["absent"])
    elif "status" in raw and isinstance(raw["status"], Mapping):
        key = "status"
        inner = dict(raw["status"])
    if inner.get("node") is not None:
        options = NODES if key == "status" else EXPECT_NODES
        node = v.choice(inner["node"], f"{where}{'.' + key if key else ''}.node", options)
        inner = {k: x for k, x in inner.items() if k != "node"}
        if key == "status":
            inner["node"] = "aws"  # a placeholder the single-tunnel checker accepts; replaced below
    probe = {**raw, key: inner} if key else inner
    exp = parse_expectation(probe, where, [])
    exp.raw = raw
    if node is not None:
        exp.node = node  # type: ignore[attr-defined]
    return exp


# ============================================================================================ the running site


@dataclass(frozen=True)
class Captured:
    """A datagram as it was sent, for its comment in the annotated capture (ESP is not in the event trace)."""

    t: float
    node: str
    kind: str
    length: int
    delivered: bool
    """False: the path's fault plan dropped it."""
    peer_alive: bool
    spi: int
    seq: int
    """ESP only: the SPI and sequence number of the ESP header the endpoint wrote."""
    inner: bytes | None
    """ESP only: the inner packet handed to the tunnel (None: the tunnel's own, a BGP message)."""
    routes: int
    """Which tunnels the sender's side could use then (bit 0: the first): the TGW's routes in use for an AWS
    end, the tunnels UP for the CGW."""

    @property
    def peer(self) -> str:
        """The tunnel end it is sent to (``cgw1`` for ``aws1``'s datagrams ...)."""
        return _PEER[self.node]


_ESP_HEAD = struct.Struct("!II")
_PEER = {"aws1": "cgw1", "aws2": "cgw2", "cgw1": "aws1", "cgw2": "aws2"}
"""The other end of each tunnel-end node."""


class _Flow:
    """A flow's run-time state: what was sent, which sequence numbers arrived, drops by reason."""

    __slots__ = (
        "arrived",
        "count",
        "delivered",
        "drops",
        "dst",
        "head",
        "p_delivered",
        "p_octets",
        "p_sent",
        "sent",
        "spec",
        "src",
        "via",
    )

    def __init__(self, spec: FlowSpec) -> None:
        self.spec = spec
        self.src = ip_bytes(spec.src_ip)
        self.dst = ip_bytes(spec.dst_ip)
        self.count = spec.count()
        # The IPv4 + UDP headers are the same for every packet of the flow (identification 0, no UDP checksum:
        # RFC 768 allows 0 over IPv4), so they are built once; each packet only gets its probe header.
        self.head = udp4(self.src, self.dst, 40000 + spec.index, spec.port, bytes(spec.size - 28))[:26] + b"\0\0"
        self.sent = 0
        self.delivered = 0
        self.arrived = bytearray()
        self.drops: dict[str, int] = {}
        self.via: dict[str, int] = {}
        self.p_sent = 0
        self.p_delivered = 0
        self.p_octets = 0


class _Node:
    """A tunnel end on the simulated network: a :class:`VpnTunnel` whose decrypted packets go on at once (to
    the TGW on the AWS side, to the on-premises hosts on the CGW's)."""

    def __init__(self, site: _Site, name: str, index: int, tunnel: VpnTunnel) -> None:
        self.site = site
        self.name = name
        self.index = index
        self.tunnel = tunnel
        self.aws = name.startswith("aws")

    @property
    def status(self) -> Any:
        return self.tunnel.status

    def start(self, now: float) -> list[Action]:
        return self._after(self.tunnel.start(now), now)

    def receive_datagram(self, data: bytes, src: Address, dst: Address, now: float) -> list[Action]:
        return self._after(self.tunnel.receive_datagram(data, src, dst, now), now)

    def next_deadline(self) -> float | None:
        return self.tunnel.next_deadline()

    def handle_timer(self, now: float) -> list[Action]:
        return self._after(self.tunnel.handle_timer(now), now)

    def initiate(self, now: float) -> list[Action]:
        return self._after(self.tunnel.initiate(now), now)

    def close(self, now: float) -> list[Action]:
        return self._after(self.tunnel.close(now), now)

    def ike_spis(self) -> set[bytes]:
        return self.tunnel.ike_spis()

    def _after(self, actions: list[Action], now: float) -> list[Action]:
        site = self.site
        if self.tunnel.refused:
            for p, reason in self.tunnel.take_refused():
                site._drop(p, reason)
        inner = self.tunnel.take_received()
        for p in inner:
            if self.aws:
                site.from_vpn(self.index, p, now)
            else:
                site.to_onprem(p, now)
        return actions


class _Site:
    """Everything one run wires together: network, nodes, dataplane, hosts, flows, metrics."""

    def __init__(self, sc: ConnectionScenario, net: SimNetwork, keys: KeyTables) -> None:
        self.sc = sc
        self.net = net
        self.keys = keys
        self.dp = sc.make_dataplane()
        self.att = sc.attachment
        self.names = sc.tunnel_names
        self.nodes: dict[str, _Node] = {}
        self.alive = dict.fromkeys(NODES, True)
        self.incarnation = dict.fromkeys(NODES, 0)
        self.exposed: dict[str, bool] = dict.fromkeys(self.names, False)
        self.flows = [_Flow(f) for f in sc.flows]
        topo = self.dp.topology
        self.instances = topo.instances()
        self.instance_by_ip = {i.ip: i.id for i in self.instances.values()}
        self.vpc_hosts = EchoHost(i.ip for i in self.instances.values() if i.ip and ":" not in i.ip)
        self.onprem = EchoHost(sc.onprem_hosts)
        self.onprem_ips = {ip_bytes(h) for h in sc.onprem_hosts}
        self.ec2: dict[tuple[str, str], Ec2Bandwidth] = {}
        for iid, spec in sc.instances_bw.items():
            for d in ("in", "out"):
                self.ec2[(iid, d)] = Ec2Bandwidth(spec.baseline, spec.burst, burst_seconds=spec.burst_seconds)
        self.ec2_reported: set[tuple[str, str]] = set()
        self.state: list[int] = [0, 0]
        self.p_max: list[int] = [0, 0]
        self.p_min: list[int] = [0, 0]
        self.data_in_base = [0, 0]
        self.data_out_base = [0, 0]
        self.plans = dict(sc.link_plans)
        self.captured: list[Captured] | None = None
        """One record per datagram sent (IKE and ESP), in capture order, once :meth:`record_captures` is on."""
        self._pending: dict[int, bytes] = {}

    def record_captures(self) -> None:
        """Keep a :class:`Captured` per datagram (for the annotated capture, :mod:`emulator.report.connection`):
        what each ESP packet carries is known here, where the inner packet was handed to the tunnel."""
        self.captured = []
        self.net.capture_hook = self._captured

    def _captured(self, now: float, node: str, tx: Transmit, delivered: bool) -> None:
        assert self.captured is not None
        n = self.nodes[node]
        spi = seq = 0
        inner: bytes | None = None
        if tx.kind == KIND_ESP:
            spi, seq = _ESP_HEAD.unpack_from(tx.data)
            inner = self._pending.pop(id(tx), None)
        routes = 0
        if n.aws:
            for i, name in enumerate(self.names):
                routes |= self.exposed[name] << i
        else:
            for i in range(2):
                routes |= self._routable(f"cgw{i + 1}") << i
        self.captured.append(
            Captured(now, node, tx.kind, len(tx.data), delivered, self.alive[_PEER[node]], spi, seq, inner, routes)
        )

    # -- wiring ----------------------------------------------------------------------------------------------

    def wire(self) -> None:
        sc, net = self.sc, self.net
        for att_tunnel in self.names:
            self.dp.set_tunnel_state(self.att, att_tunnel, False)
        for i, t in enumerate(sc.tunnels):
            a = _Node(self, f"aws{i + 1}", i, sc.make_tunnel("aws", i, 0))
            c = _Node(self, f"cgw{i + 1}", i, sc.make_tunnel("cgw", i, 0))
            self.nodes[a.name] = a
            self.nodes[c.name] = c
            net.add_node(a.name, a, [t.aws_address])
            net.add_node(c.name, c, [sc.cgw_address], peers=[t.aws_address])
        for (tname, d), plan in self.plans.items():
            self._set_plan(tname, d, plan)
        net.on_event(self._on_event)
        # Metrics first: a period's datapoint is taken before anything else that happens at its end instant, so
        # a period is [start, start + metrics_period).
        period = sc.metrics_period
        k = 1
        while k * period <= sc.duration + 1e-9:
            net.at(k * period, functools.partial(self._metrics, (k - 1) * period))
            k += 1
        for item in sc.items:
            self._schedule(item)
        for f in self.flows:
            if f.spec.count():
                net.at(f.spec.start, functools.partial(self._tick, f, 0))

    def _set_plan(self, tunnel: str, direction: str, plan: FaultPlan) -> None:
        i = self.names.index(tunnel)
        aws_ip, cgw_ip = self.sc.tunnels[i].aws_address, self.sc.cgw_address
        src, dst = (cgw_ip, aws_ip) if direction == "cgw->aws" else (aws_ip, cgw_ip)
        self.plans[(tunnel, direction)] = plan
        self.net.set_faults(src, dst, plan)

    def _schedule(self, item: ConnectionItem) -> None:
        net = self.net
        if item.do == "crash":
            for n in item.nodes:
                net.at(item.at, functools.partial(self._crash, n))
        elif item.do == "revive":
            for n in item.nodes:
                net.at(item.at, functools.partial(self._revive, n, item.initiate))
        elif item.do in ("initiate", "close"):
            for n in item.nodes:
                net.call(n, functools.partial(self._api, n, item.do), at=item.at)
        elif item.do == "blackhole":
            for d in item.directions:
                cur = self.plans.get((item.tunnel, d), FaultPlan())
                self._set_plan(item.tunnel, d, replace(cur, blackholes=(*cur.blackholes, (item.at, item.until))))
        elif item.do == "faults":
            assert item.plan is not None
            for d in item.directions:
                net.at(item.at, functools.partial(self._set_plan, item.tunnel, d, item.plan))

    def _api(self, name: str, method: str, now: float) -> list[Action]:
        result: list[Action] = getattr(self.nodes[name], method)(now)
        return result

    def _crash(self, name: str) -> None:
        if not self.alive[name]:
            return
        self.alive[name] = False
        self.net.crash(name)
        node = self.nodes[name]
        if node.aws:
            self.tunnel_state_changed(node.index, self.net.now)

    def _revive(self, name: str, initiate: bool | None) -> None:
        node = self.nodes[name]
        self.incarnation[name] += 1
        side = "aws" if node.aws else "cgw"
        node.tunnel = self.sc.make_tunnel(side, node.index, self.incarnation[name], initiate)
        if node.aws:
            self.data_in_base[node.index] = self.data_out_base[node.index] = 0  # a new process counts from 0
        self.alive[name] = True
        self.net.revive(name, node)
        if node.aws:
            self.tunnel_state_changed(node.index, self.net.now)

    def _on_event(self, rec: TraceRecord) -> None:
        if rec.event in _ROUTING_EVENTS:
            node = self.nodes.get(rec.node)
            if node is not None and node.aws:
                # After the engine's own events of this instant (dpd_timeout, tunnel_down, routes_withdrawn):
                # the TGW follows what the endpoint reported.
                self.tunnel_state_changed(node.index, rec.t)
        elif rec.event == "sa_keys":
            self.keys.add(rec.fields)
        elif rec.event == "child_sa_established":
            node = self.nodes.get(rec.node)
            if node is not None:
                for row in node.tunnel.endpoint.esp_sa_rows():
                    self.keys.add_esp(row)

    # -- routing state ---------------------------------------------------------------------------------------

    def _routable(self, name: str) -> bool:
        return self.alive[name] and self.nodes[name].tunnel.routable

    def tunnel_state_changed(self, index: int, now: float) -> None:
        """An AWS end may have changed: TunnelState for the metrics, and the routes the TGW uses."""
        name = f"aws{index + 1}"
        node = self.nodes.get(name)
        if node is None:
            return
        t = node.tunnel
        st = int(self.alive[name] and (t.bgp.established if t.bgp is not None else t.up))
        if st != self.state[index]:
            self.state[index] = st
            self.p_max[index] = max(self.p_max[index], st)
            self.p_min[index] = min(self.p_min[index], st)
        routable = [self._routable(f"aws{i + 1}") for i in range(2)]
        if self.sc.routing == "static":
            # Active/standby: a static VPN never uses ECMP; the first routable tunnel carries everything.
            first = routable.index(True) if any(routable) else None
            want = {n: i == first for i, n in enumerate(self.names)}
        else:
            want = {n: routable[i] for i, n in enumerate(self.names)}
        for n in self.names:
            if want[n] != self.exposed[n]:
                self.exposed[n] = want[n]
                self.dp.set_tunnel_state(self.att, n, want[n])
                e = ev.tgw_routes_changed(attachment=self.att, tunnel=n, up=want[n])
                self.net.trace.add(now, "tgw", e.name, dict(e.fields))

    # -- packets ---------------------------------------------------------------------------------------------

    def _drop(self, packet: bytes, reason: str) -> None:
        p = read_probe(packet)
        if p is not None and p.flow < len(self.flows):
            f = self.flows[p.flow]
            f.drops[reason] = f.drops.get(reason, 0) + 1

    def _via(self, packet: bytes, where: str) -> None:
        p = read_probe(packet)
        if p is not None and p.flow < len(self.flows):
            f = self.flows[p.flow]
            if packet[12:16] == f.src:
                f.via[where] = f.via.get(where, 0) + 1

    def _tick(self, f: _Flow, seq: int) -> None:
        spec = f.spec
        now = self.net.now
        pkt = f.head + probe_payload(spec.index, seq, now, spec.size - 28)
        f.sent += 1
        f.p_sent += 1
        f.arrived.append(0)
        if spec.src_instance is not None:
            self.from_instance(spec.src_instance, pkt, now)
        else:
            self.from_onprem(pkt, now)
        if seq + 1 < f.count:
            self.net.at(spec.start + (seq + 1) * spec.interval, functools.partial(self._tick, f, seq + 1))

    def _ec2(self, instance: str, direction: str, octets: int, now: float) -> bool:
        lim = self.ec2.get((instance, direction))
        if lim is None:
            return True
        ok = lim.admit(octets, now)
        if lim.exhausted_at is not None and (instance, direction) not in self.ec2_reported:
            self.ec2_reported.add((instance, direction))
            e = ev.ec2_credits_exhausted(instance=instance, direction=direction, baseline_bps=lim.credits.rate)
            self.net.trace.add(now, "vpc", e.name, dict(e.fields))
        return ok

    def from_instance(self, instance: str, pkt: bytes, now: float) -> None:
        """An instance sends ``pkt`` (EC2 outbound allowance first)."""
        if not self._ec2(instance, "out", len(pkt), now):
            self._drop(pkt, "bw_out_allowance_exceeded")
            return
        self._tgw(pkt, instance, now)

    def from_vpn(self, index: int, pkt: bytes, now: float) -> None:
        """A packet decrypted by AWS endpoint ``index`` enters the TGW on the VPN attachment."""
        self._tgw(pkt, self.att, now)

    def _tgw(self, pkt: bytes, source: str, now: float) -> None:
        multi = sum(self.exposed.values()) > 1
        res = self.dp.send(pkt, source, now, trace=multi)
        if res.verdict != "delivered":
            self._drop(pkt, str(res.reason))
            return
        out = res.packet.wire() if res.packet is not None else pkt
        node = res.node
        if node == self.att:
            if multi and res.hops:
                tunnel = str(res.hops[-1].get("tunnel"))
            else:
                tunnel = next((n for n, up in self.exposed.items() if up), self.names[0])
            self._to_vpn(self.names.index(tunnel), out, now)
        elif node in self.instances:
            self._at_instance(node, out, now)
        else:
            self._drop(pkt, "left_the_network")

    def _to_vpn(self, index: int, pkt: bytes, now: float) -> None:
        name = f"aws{index + 1}"
        if not self.alive[name]:
            self._drop(pkt, "aws_endpoint_down")
            return
        self._via(pkt, f"aws:{self.names[index]}")
        self.net.call(name, functools.partial(self._send, name, pkt))

    def _send(self, name: str, pkt: bytes, now: float) -> list[Action]:
        acts, reason = self.nodes[name].tunnel.send(pkt, now)
        if reason is not None:
            self._drop(pkt, reason)
        elif self.captured is not None:
            for a in acts:
                self._pending[id(a)] = pkt
        return acts

    def from_onprem(self, pkt: bytes, now: float) -> None:
        """An on-premises host sends ``pkt``: the CGW routes it onto a tunnel."""
        ready = [i for i in range(2) if self._routable(f"cgw{i + 1}")]
        if not ready:
            self._drop(pkt, "cgw_no_route")
            return
        if self.sc.cgw_routing == "ecmp" and len(ready) > 1:
            i = ready[zlib.crc32(_five_tuple(pkt)) % len(ready)]
        else:
            i = ready[0]
        self._via(pkt, f"cgw:{self.names[i]}")
        self.net.call(f"cgw{i + 1}", functools.partial(self._send, f"cgw{i + 1}", pkt))

    def to_onprem(self, pkt: bytes, now: float) -> None:
        """A packet decrypted by the CGW for the on-premises network."""
        ip = parse4(pkt)
        if ip is None or ip.dst not in self.onprem_ips:
            self._drop(pkt, "no_host")
            return
        if self._arrive(pkt, now):
            return
        for reply in self.onprem.respond(pkt):
            self.from_onprem(reply, now)

    def _at_instance(self, instance: str, pkt: bytes, now: float) -> None:
        if not self._ec2(instance, "in", len(pkt), now):
            self._drop(pkt, "bw_in_allowance_exceeded")
            return
        if self._arrive(pkt, now):
            return
        for reply in self.vpc_hosts.respond(pkt):
            self.from_instance(instance, reply, now)

    def _arrive(self, pkt: bytes, now: float) -> bool:
        """Count a flow packet at its end; True when it is consumed here (a one-way packet, or an echo answer
        back at its source), False when the host should answer it (an echo request, other traffic)."""
        p = read_probe(pkt)
        if p is None or p.flow >= len(self.flows):
            return False
        f = self.flows[p.flow]
        spec = f.spec
        dst = pkt[16:20]
        if spec.kind == "echo" and dst != f.src:
            return False  # the request, at the far end: the host answers it
        if p.seq < len(f.arrived) and not f.arrived[p.seq]:
            f.arrived[p.seq] = 1
            f.delivered += 1
            f.p_delivered += 1
            f.p_octets += len(pkt)
        return True

    # -- metrics and summaries ---------------------------------------------------------------------------

    def _metrics(self, start: float) -> None:
        now = self.net.now
        trace = self.net.trace
        period = self.sc.metrics_period
        for i, name in enumerate(self.names):
            node = self.nodes[f"aws{i + 1}"]
            c = node.tunnel.endpoint.counters
            din, dout = c["esp_in_octets"], c["esp_out_octets"]
            e = ev.tunnel_metrics(
                tunnel=name,
                start=start,
                tunnel_state=self.p_max[i],
                tunnel_state_min=self.p_min[i],
                tunnel_data_in=max(0, din - self.data_in_base[i]),
                tunnel_data_out=max(0, dout - self.data_out_base[i]),
            )
            trace.add(now, f"aws{i + 1}", e.name, dict(e.fields))
            self.data_in_base[i], self.data_out_base[i] = din, dout
            self.p_max[i] = self.p_min[i] = self.state[i]
        for f in self.flows:
            if f.spec.start > now or f.spec.until < start - period:
                continue
            e = ev.flow_metrics(
                name=f.spec.name,
                start=start,
                sent=f.p_sent,
                delivered=f.p_delivered,
                delivered_bps=round(f.p_octets * 8 / period, 3),
            )
            trace.add(now, "flows", e.name, dict(e.fields))
            f.p_sent = f.p_delivered = f.p_octets = 0

    def finish(self) -> None:
        """The flows' outages and summaries, recorded at the end of the run."""
        now = self.net.now
        trace = self.net.trace
        for f in self.flows:
            spec = f.spec
            outages: list[tuple[int, int]] = []
            run_start: int | None = None
            for seq, ok in enumerate(f.arrived):
                if not ok and run_start is None:
                    run_start = seq
                elif ok and run_start is not None:
                    outages.append((run_start, seq))
                    run_start = None
            if run_start is not None:
                outages.append((run_start, len(f.arrived)))
            longest = 0.0
            for a, b in outages:
                recovered = b < len(f.arrived)
                t0 = spec.start + a * spec.interval
                t1 = spec.start + b * spec.interval if recovered else spec.start + (b - 1) * spec.interval
                longest = max(longest, t1 - t0)
                e = ev.flow_outage(
                    name=spec.name, start=round(t0, 9), end=round(t1, 9), lost=b - a, recovered=recovered
                )
                trace.add(now, "flows", e.name, dict(e.fields))
            lost = f.sent - f.delivered
            drops = dict(sorted(f.drops.items()))
            known = sum(drops.values())
            if lost > known:
                drops["in_transit"] = lost - known
            e = ev.flow_summary(
                name=spec.name,
                kind=spec.kind,
                sent=f.sent,
                delivered=f.delivered,
                lost=lost,
                outages=len(outages),
                time_to_recover=round(longest, 9),
                drops=drops,
                via=dict(sorted(f.via.items())),
            )
            trace.add(now, "flows", e.name, dict(e.fields))

    def status(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for name, node in self.nodes.items():
            st = node.tunnel.status
            out[name] = dict(st.to_aws()) if hasattr(st, "to_aws") else {}
        return out


_ROUTING_EVENTS = frozenset(
    {"tunnel_up", "routes_withdrawn", "bgp_session_up", "bgp_session_down", "bgp_routes_received"}
)
"""Events of an AWS end after which its tunnel's routes may have changed."""


def _five_tuple(pkt: bytes) -> bytes:
    ip = parse4(pkt)
    if ip is None:
        return pkt[:20]
    return ip.src + ip.dst + bytes((ip.proto,)) + pkt[ip.start : ip.start + 4]
