"""TGW campaign runs: seeded traffic through a topology while dataplane faults come and go.

A run builds a fresh :class:`~tgw_dataplane.dataplane.Dataplane` over the topology (its public API only:
``send``, ``set_az_health``, ``set_eni_health``, ``set_appliance_mode``, ``set_tunnel_state``), draws ``flows``
TCP flows from the seed (two hosts in different VPCs, or a host and an address behind the VPN attachment's
routes), each ``packets`` packets long (SYN, SYN-ACK, then ACKs both ways, ``gap`` seconds apart), and sends
them in time order with the faults' calls in between. Every packet becomes a ``tgw_flow`` record (verdict,
reason, the nodes it passed), every route change a ``tgw_routes_changed`` record: the run's trace, hashed like
a VPN run's.

Packets from the on-premises side are not sent while every tunnel of the VPN attachment is down (nothing can
arrive over a tunnel that is down).

Expected outcomes (names in :data:`emulator.campaign.catalogue.OUTCOMES`):

* ``unaffected_flows_delivered`` (AZ, appliance, GWLB target failure): every packet of a flow none of whose
  packets passed a failed node (an instance or TGW ENI in the failed AZ; the failed instance) and whose end
  hosts are not in the failed AZ is delivered. Flows pinned to what failed are not judged: AWS leaves their fate
  undocumented (``pinned_flow_on_failure`` is a setting, tgw.md §1.4).
* ``new_flows_delivered_after_recovery``: every packet of a flow whose first packet is sent after the fault
  healed is delivered.
* ``new_flows_keep_one_appliance`` (appliance mode switched on): every packet of a flow that starts after the
  switch is delivered (that it keeps one appliance is the invariant ``flows_keep_their_appliance``).
* ``cross_az_replies_dropped`` (appliance mode switched off): a flow started after the switch between hosts in
  different AZs loses its SYN-ACK at the other AZ's firewall (``appliance_no_state``, the classic failure of
  tgw.md §1.5); a flow within one AZ is delivered.
* ``delivered_iff_routes_up`` (route flap): a packet towards the VPN routes is delivered exactly when at least
  one tunnel is up, and otherwise dropped (:data:`ROUTE_DOWN_REASONS`); every other packet is delivered.
"""

from __future__ import annotations

import ipaddress
import os
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cgw_peer import events as ev
from emulator.campaign.invariants import ApplianceChecker, ApplianceEvent, Outcome
from emulator.errors import ConfigError
from emulator.trace import Trace

DEFAULT_TOPOLOGY = os.path.join(os.path.dirname(__file__), "topologies", "inspection.yaml")
APPLIANCE_KINDS = frozenset({"stateful-firewall", "router", "gwlb-target"})
FLOW_KEYS = {"flows", "packets", "duration", "gap"}
ROUTE_DOWN_REASONS = frozenset({"no_route", "vpn_tunnel_down", "blackhole", "appliance_no_state"})
"""How a packet towards withdrawn VPN routes may end: no route, the tunnel, a blackhole route, or a firewall
that the default route now leads to and that never saw the flow's SYN."""


@dataclass(frozen=True)
class TgwInfo:
    """What a TGW run needs to know about a topology (read from the model once)."""

    hosts: dict[str, tuple[str, str, str]]
    """Host instance id -> (IP, AZ ID, VPC id)."""
    appliances: dict[str, str]
    """Appliance instance id (firewall/router) -> AZ ID."""
    targets: dict[str, str]
    """GWLB target instance id -> AZ ID."""
    az_ids: tuple[str, ...]
    inspection: str | None
    """The VPC attachment in front of the appliances (None: there is none)."""
    appliance_mode: bool
    """Its ApplianceModeSupport in the topology."""
    vpn: str | None
    vpn_tunnels: tuple[str, ...]
    vpn_routes: tuple[str, ...]


def topology_info(topo: Any) -> TgwInfo:
    """Hosts, appliances, AZs, the inspection and VPN attachments of a loaded topology."""
    hosts: dict[str, tuple[str, str, str]] = {}
    appliances: dict[str, str] = {}
    targets: dict[str, str] = {}
    azs: set[str] = set()
    appliance_vpcs: set[str] = set()
    for vpc in topo.vpcs.values():
        for sub in vpc.subnets.values():
            azs.add(sub.az_id)
        for inst in vpc.instances.values():
            az = vpc.subnets[inst.subnet].az_id
            kind = str(inst.kind.value)
            if kind == "host":
                if ":" not in inst.ip:
                    hosts[inst.id] = (inst.ip, az, vpc.id)
            elif kind == "gwlb-target":
                targets[inst.id] = az
                appliance_vpcs.add(vpc.id)
            else:
                appliances[inst.id] = az
                appliance_vpcs.add(vpc.id)
        if vpc.gwlb_endpoints:
            appliance_vpcs.add(vpc.id)
    inspection: str | None = None
    vpn: str | None = None
    mode = False
    tunnels: tuple[str, ...] = ()
    routes: tuple[str, ...] = ()
    for tgw in topo.tgws.values():
        for att in tgw.attachments.values():
            t = str(att.type.value)
            if t == "vpc" and inspection is None and att.vpc_id in appliance_vpcs:
                inspection, mode = att.id, bool(att.appliance_mode)
            elif t == "vpn" and vpn is None:
                vpn, tunnels, routes = att.id, tuple(att.tunnels), tuple(str(r.dest) for r in att.routes)
    return TgwInfo(hosts, appliances, targets, tuple(sorted(azs)), inspection, mode, vpn, tunnels, routes)


@dataclass(frozen=True)
class TgwBase:
    """The base of a TGW campaign: a topology and the traffic to send through it."""

    topology: Any
    """A loaded :class:`tgw_dataplane.model.Topology` (shipped to the workers as it is)."""
    path: str
    flows: int = 16
    packets: int = 8
    duration: float = 60.0
    gap: float = 1.0
    info: TgwInfo = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "info", topology_info(self.topology))

    def check_fault(self, name: str, params: Mapping[str, Any], where: str) -> None:
        """Refuse a fault this topology cannot take, naming ``where``."""
        info = self.info
        if name == "az_failure" and params.get("az", "any") not in ("any", *info.az_ids):
            raise ConfigError(
                f"{where}.az: {params['az']!r} is not an AZ ID of the topology ({', '.join(info.az_ids)})"
            )
        if name == "appliance_failure":
            if not info.appliances:
                raise ConfigError(f"{where}: the topology has no appliance instance (stateful-firewall or router)")
            if params.get("appliance", "any") not in ("any", *info.appliances):
                raise ConfigError(f"{where}.appliance: not an appliance of the topology ({', '.join(info.appliances)})")
        if name == "gwlb_target_failure":
            if not info.targets:
                raise ConfigError(f"{where}: the topology has no GWLB target")
            if params.get("target", "any") not in ("any", *info.targets):
                raise ConfigError(f"{where}.target: not a GWLB target of the topology ({', '.join(info.targets)})")
        if name == "appliance_mode_toggle" and info.inspection is None:
            raise ConfigError(f"{where}: the topology has no VPC attachment in front of appliances")
        if name == "route_flap" and info.vpn is None:
            raise ConfigError(f"{where}: the topology has no VPN attachment")

    def resolve(self, name: str, params: dict[str, Any], rng: random.Random) -> None:
        """Replace ``any`` by a concrete id drawn with ``rng`` (so a replay names it)."""
        info = self.info
        for key, pool in (("az", info.az_ids), ("appliance", tuple(info.appliances)), ("target", tuple(info.targets))):
            if params.get(key) == "any" and pool:
                params[key] = rng.choice(sorted(pool))


@dataclass
class _Flow:
    name: str
    text: str
    a: str
    """Initiator source id."""
    b: str
    """Responder source id (a host, or the VPN attachment)."""
    a_ip: str
    b_ip: str
    sport: int
    a_az: str
    b_az: str
    t0: float
    to_vpn: bool
    results: list[tuple[float, int, str, str, list[str]]] = field(default_factory=list)
    """(t, index, verdict, reason, nodes) per packet sent."""


def _flows(base: TgwBase, rng: random.Random) -> list[_Flow]:
    info = base.info
    hosts = sorted(info.hosts)
    out = []
    span = max(0.0, base.duration - base.packets * base.gap)
    for i in range(base.flows):
        a = rng.choice(hosts)
        a_ip, a_az, a_vpc = info.hosts[a]
        to_vpn = info.vpn is not None and bool(info.vpn_routes) and rng.random() < 0.3
        if to_vpn:
            net = ipaddress.ip_network(rng.choice(info.vpn_routes))
            b_ip = str(net.network_address + 1 + rng.randrange(max(1, min(net.num_addresses - 2, 65000))))
            b, b_az = str(info.vpn), ""
        else:
            others = [h for h in hosts if info.hosts[h][2] != a_vpc] or [h for h in hosts if h != a]
            b = rng.choice(others)
            b_ip, b_az, _ = info.hosts[b]
        sport = rng.randrange(1024, 65536)
        t0 = round(rng.uniform(0.0, span), 6)
        text = f"tcp {a_ip}:{sport} > {b_ip}:443"
        out.append(_Flow(f"f{i}", text, a, b, a_ip, b_ip, sport, a_az, b_az, t0, to_vpn))
    return out


def _packet(f: _Flow, k: int) -> tuple[str, bytes]:
    from tgw_dataplane.craft import build
    from tgw_dataplane.packet import TCP_ACK, TCP_SYN

    if k == 0:
        return f.a, build(f.a_ip, f.b_ip, 6, f.sport, 443, flags=TCP_SYN, seq=1000)
    if k == 1:
        return f.b, build(f.b_ip, f.a_ip, 6, 443, f.sport, flags=TCP_SYN | TCP_ACK, seq=5000, ack=1001)
    if k % 2 == 0:
        return f.a, build(f.a_ip, f.b_ip, 6, f.sport, 443, flags=TCP_ACK, seq=1001 + k, ack=5001 + k)
    return f.b, build(f.b_ip, f.a_ip, 6, 443, f.sport, flags=TCP_ACK, seq=5001 + k, ack=1001 + k)


@dataclass
class TgwRunResult:
    """What a TGW run produced: its trace and its expected outcomes and appliance invariant."""

    trace: Trace
    outcomes: dict[str, Outcome]
    appliance: Outcome


def run_tgw(base: TgwBase, parts: Sequence[Any], seed: int) -> TgwRunResult:
    """One TGW run: ``parts`` are :class:`~emulator.campaign.catalogue.Part` s of TGW faults."""
    from emulator.campaign.catalogue import FAULTS
    from tgw_dataplane.dataplane import Dataplane

    info = base.info
    rng = random.Random(f"tgw:{seed}")
    dp = Dataplane(base.topology, rng=random.Random(f"tgw-dp:{seed}"))
    trace = Trace()
    flows = _flows(base, rng)
    # Actions in time order: (t, order, callable). Faults sort before packets at the same instant.
    actions: list[tuple[float, int, int, Any]] = []
    mode = {"on": info.appliance_mode}
    tunnels_up = {"n": len(info.vpn_tunnels) if info.vpn else 0}
    excuses: list[ApplianceEvent] = []
    failed_windows: list[tuple[float, float, frozenset[str], str]] = []  # (start, end, instances, az)
    heal = 0.0
    toggles: list[tuple[float, bool]] = []
    flaps: list[tuple[float, float]] = []

    def flap(down: bool, t: float) -> None:
        assert info.vpn is not None
        for tn in info.vpn_tunnels:
            dp.set_tunnel_state(info.vpn, tn, not down)
        tunnels_up["n"] = 0 if down else len(info.vpn_tunnels)
        e = ev.tgw_routes_changed(attachment=info.vpn, tunnel=",".join(info.vpn_tunnels), up=not down)
        trace.add(t, "tgw", e.name, dict(e.fields))

    for n, part in enumerate(parts):
        p = part.params
        fd = FAULTS[part.fault]
        s, e = fd.window(p)
        heal = max(heal, e)
        if part.fault == "az_failure":
            az = str(p["az"])
            inst = frozenset(i for i, a in {**info.appliances, **info.targets}.items() if a == az)
            failed_windows.append((s, e, inst, az))
            excuses += [ApplianceEvent(s, inst), ApplianceEvent(e, inst)]
            actions.append((s, 0, n, lambda t, az=az: dp.set_az_health(az, False)))
            actions.append((e, 0, n, lambda t, az=az: dp.set_az_health(az, True)))
        elif part.fault in ("appliance_failure", "gwlb_target_failure"):
            node = str(p["appliance" if part.fault == "appliance_failure" else "target"])
            failed_windows.append((s, e, frozenset({node}), ""))
            excuses += [ApplianceEvent(s, frozenset({node})), ApplianceEvent(e, frozenset({node}))]
            actions.append((s, 0, n, lambda t, node=node: dp.set_eni_health(node, False)))
            actions.append((e, 0, n, lambda t, node=node: dp.set_eni_health(node, True)))
        elif part.fault == "appliance_mode_toggle":
            on = bool(p["enable"])
            assert info.inspection is not None
            excuses.append(ApplianceEvent(s, toggle=True))
            toggles.append((s, on))

            def toggle(t: float, on: bool = on) -> None:
                assert info.inspection is not None
                dp.set_appliance_mode(info.inspection, on)
                mode["on"] = on

            actions.append((s, 0, n, toggle))
        elif part.fault == "route_flap":
            flaps.append((s, e))
            actions.append((s, 0, n, lambda t: flap(True, t)))
            actions.append((e, 0, n, lambda t: flap(False, t)))
        else:
            raise ConfigError(f"fault {part.fault}: not a TGW fault")
    for fi, f in enumerate(flows):
        for k in range(base.packets):
            actions.append((round(f.t0 + k * base.gap, 6), 1, fi * 1000 + k, (f, k)))
    actions.sort(key=lambda a: (a[0], a[1], a[2]))
    checker = ApplianceChecker(excuses)
    for t, order, _, what in actions:
        if order == 0:
            what(t)
            continue
        f, k = what
        src, data = _packet(f, k)
        if f.to_vpn and k % 2 == 1 and tunnels_up["n"] == 0:
            continue  # nothing arrives over a tunnel that is down
        res = dp.send(data, src, t, trace=True)
        hops = res.hops or []
        nodes = [str(h.get("node")) for h in hops]
        appliance = next((str(h["node"]) for h in hops if h.get("kind") in APPLIANCE_KINDS), None)
        azs = {str(h.get("az_id")) for h in hops if h.get("az_id")}
        f.results.append((t, k, str(res.verdict), str(res.reason or ""), nodes + sorted(f"az:{a}" for a in azs)))
        rec = ev.tgw_flow(name=f.name, flow=f.text, verdict=str(res.verdict), reason=str(res.reason or ""), hops=nodes)
        trace.add(t, "tgw", rec.name, dict(rec.fields))
        if not f.to_vpn:
            checker.feed(t, f.name, appliance, mode["on"])
    outcomes = _outcomes(parts, flows, failed_windows, heal, toggles, flaps, info)
    return TgwRunResult(trace, outcomes, checker.result())


def _delivered_all(flows: Sequence[_Flow], label: str) -> Outcome:
    bad = [(f, r) for f in flows for r in f.results if r[2] != "delivered"]
    if not flows:
        return Outcome(None, f"no {label} flow in this run")
    if not bad:
        return Outcome(True, f"{len(flows)} {label} flows, every packet delivered")
    f, r = bad[0]
    return Outcome(
        False,
        f"{len(bad)} packets of {label} flows dropped, first {f.name} ({f.text}) packet {r[1]} "
        f"at t={r[0]:g}: {r[3]} at {r[4][-1] if r[4] else '?'}",
    )


def _outcomes(
    parts: Sequence[Any],
    flows: Sequence[_Flow],
    failed: Sequence[tuple[float, float, frozenset[str], str]],
    heal: float,
    toggles: Sequence[tuple[float, bool]],
    flaps: Sequence[tuple[float, float]],
    info: TgwInfo,
) -> dict[str, Outcome]:
    names = {n for p in parts for n in _fault_outcomes(p.fault)}
    out: dict[str, Outcome] = {}

    # Each outcome judges the flows the other faults of the run left alone, so that outcomes compose when
    # faults are combined.
    def touches_failure(f: _Flow) -> bool:
        for _, _, inst, az in failed:
            if az and az in (f.a_az, f.b_az):
                return True
            for r in f.results:
                if inst & set(r[4]) or (az and f"az:{az}" in r[4]):
                    return True
        return False

    def touches_flap(f: _Flow) -> bool:
        return f.to_vpn and any(s <= r[0] < e for r in f.results for s, e in flaps)

    def touches_toggle(f: _Flow) -> bool:
        return any(r[0] >= t for r in f.results for t, _ in toggles) and f.t0 < max(t for t, _ in toggles)

    if "unaffected_flows_delivered" in names:
        calm = [f for f in flows if not (touches_failure(f) or touches_flap(f) or (toggles and touches_toggle(f)))]
        out["unaffected_flows_delivered"] = _delivered_all(calm, "unaffected")
        after = [f for f in flows if f.t0 > heal]
        out["new_flows_delivered_after_recovery"] = _delivered_all(after, "post-recovery")
    if toggles:
        t_last, on = toggles[-1]
        after = [f for f in flows if f.t0 > t_last and not f.to_vpn and not touches_failure(f)]
        if on:
            out["new_flows_keep_one_appliance"] = _delivered_all(after, "post-toggle")
            out["cross_az_replies_dropped"] = Outcome(None, "appliance mode was switched on")
        else:
            out["new_flows_keep_one_appliance"] = Outcome(None, "appliance mode was switched off")
            problems = []
            for f in after:
                cross = f.a_az != f.b_az
                replies = [r for r in f.results if r[1] == 1]
                if not replies:
                    continue
                r = replies[0]
                if cross and (r[2] != "dropped" or r[3] != "appliance_no_state"):
                    problems.append(f"{f.name} ({f.a_az} -> {f.b_az}) reply {r[2]} {r[3]}")
                if not cross and any(x[2] != "delivered" for x in f.results):
                    problems.append(f"{f.name} (within {f.a_az}) lost a packet")
            out["cross_az_replies_dropped"] = (
                Outcome(True, f"{len(after)} flows after the switch behave as tgw.md §1.5 says")
                if after and not problems
                else Outcome(None, "no flow after the switch")
                if not after
                else Outcome(False, "; ".join(problems[:5]))
            )
    if flaps:
        problems = []
        n = 0
        for f in flows:
            if touches_failure(f) or (toggles and touches_toggle(f)):
                continue
            for t, k, verdict, reason, _ in f.results:
                towards_vpn = f.to_vpn and k % 2 == 0
                down = any(s <= t < e for s, e in flaps)
                n += 1
                if towards_vpn and down:
                    if verdict == "delivered" or reason not in ROUTE_DOWN_REASONS:
                        problems.append(f"{f.name} packet {k} at t={t:g} while down: {verdict} {reason}")
                elif verdict != "delivered":
                    problems.append(f"{f.name} packet {k} at t={t:g} with routes up: {verdict} {reason}")
        out["delivered_iff_routes_up"] = (
            Outcome(True, f"{n} packets as the routes said")
            if not problems
            else Outcome(False, "; ".join(problems[:5]))
        )
    return out


def _fault_outcomes(name: str) -> tuple[str, ...]:
    from emulator.campaign.catalogue import FAULTS

    return FAULTS[name].outcomes
