"""Scenario files: a VPN tunnel pair in virtual time, a fault schedule, and expectations to check.

The format (YAML; every key is optional unless marked *required*)::

    name: dpd-timeout-clear          # used for output file names (default: the file's stem)
    description: free text
    seed: 1                          # seeds every link and both peers' RNGs
    duration: 300                    # virtual seconds to run (default 600)
    ike_version: 1                   # 1 | 2
    psk: examplePSK.123              # shared by both sides (default: TunnelOptions.PreSharedKey or a fixed key)
    tunnel:                          # AWS tunnel options, AWS spelling (VpnTunnelOptionsSpecification)
      DPDTimeoutSeconds: 30
      DPDTimeoutAction: clear
    aws:                             # the AWS tunnel endpoint
      address: 203.0.113.10          # default 203.0.113.10
      profile: aws                   # behaviour profile: aws | strongswan | libreswan | device
      behaviour: {dpd_delay: 10}     # overrides (cgw_peer.config.Behaviour field names)
      proposals: []                  # strongSwan-style IKE proposals (empty: derived from `tunnel`)
      esp_proposals: []
      initiate: null                 # override who initiates at start-up
    cgw:                             # the customer gateway; same keys, default address 198.51.100.20,
      profile: strongswan            #   default profile strongswan
    links:                           # fault plans per direction (emulator.link.FaultPlan fields)
      cgw->aws: {delay: 0.01}
      aws->cgw: {delay: 0.01, drop_kinds: [dpd_ack], drop_kinds_window: [100, 200]}
    schedule:                        # timed actions
      - {at: 100, do: blackhole, direction: both, until: 200}   # direction: both | cgw->aws | aws->cgw
      - {at: 100, do: crash, node: cgw}
      - {at: 160, do: revive, node: cgw}       # a fresh process: new SAs, new cookies
      - {at: 160, do: revive, node: cgw, initiate: false}   # ... that waits for the other side
      - {at: 50, do: initiate, node: aws}
      - {at: 50, do: close, node: cgw}         # clean shutdown (Deletes)
      - {at: 70, do: esp, node: aws, every: 1, until: 90}      # inbound ESP seen (liveness traffic)
    tgw:                             # optional: a TGW whose VPN attachment follows the AWS side's tunnel state
      topology: topologies/vpn-tgw.yaml   # tgw_dataplane YAML (relative to this file) or AWS API JSON
      attachment: tgw-attach-vpn     # the VPN attachment this tunnel belongs to
      tunnel: tunnel1                # tunnel_up -> routes installed; tunnel_down/routes_withdrawn -> removed
      probes:                        # flows sent through the dataplane at given times
        - {at: 50, name: before, flow: "tcp 10.0.1.10:40000 > 192.168.10.5:443"}
        - {at: 150, name: after, flow: "tcp 10.0.1.10:40000 > 192.168.10.5:443", from: i-app}
    expect:                          # checked after the run; all must hold
      - event: dpd_timeout           # *required* in an event expectation
        node: aws                    # aws | cgw (default: either)
        fields: {action: clear}      # every given field must match
        at: 130                      # exact virtual time (tolerance `tolerance`, default 1e-6)
        within: [120, 140]           # or a window
        nth: 1                       # which occurrence `at`/`within` apply to (1-based; default 1)
        count: 1                     # exact number of matching events (or min / max)
      - event: tunnel_up
        node: aws
        min: 2
      - status: {node: aws, Status: DOWN}      # the tunnel status at the end of the run
      - absent: {event: dpd_timeout, node: cgw}
      - tgw_flow: {name: after, verdict: dropped, reason: no_route}   # a TGW probe's verdict

`awsnetemu run FILE` exits 0 when every expectation holds, 1 when one does not, 2 on a bad file (the message
names the field). ``--json`` prints machine-readable results; ``--out DIR`` writes ``NAME.pcap``,
``NAME.jsonl`` (the event trace), ``NAME-timeline.txt`` and ``NAME-keys/`` (Wireshark decryption tables).
"""

from __future__ import annotations

import functools
import io
import os
import random
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import yaml

from emulator.errors import ConfigError
from emulator.keytables import KeyTables
from emulator.link import FaultPlan
from emulator.pcap import LINKTYPE_RAW, PcapWriter
from emulator.simnet import SimNetwork
from emulator.trace import Trace, TraceRecord

TOP_KEYS = {
    "name",
    "description",
    "seed",
    "duration",
    "ike_version",
    "psk",
    "tunnel",
    "aws",
    "cgw",
    "links",
    "schedule",
    "expect",
    "tgw",
}
TGW_KEYS = {"topology", "attachment", "tunnel", "probes"}
SIDE_KEYS = {
    "address",
    "profile",
    "behaviour",
    "proposals",
    "esp_proposals",
    "initiate",
    "force_encap",
    "nat_t",
    "local_ts",
    "remote_ts",
}
ACTIONS = {"blackhole", "crash", "revive", "initiate", "close", "esp", "faults"}
DIRECTIONS = {"both", "cgw->aws", "aws->cgw"}
PCAP_EPOCH = 1_767_225_600.0  # 2026-01-01T00:00:00Z: virtual t=0 in captures


@dataclass
class ExpectResult:
    expectation: dict[str, Any]
    ok: bool
    detail: str

    def to_json(self) -> dict[str, Any]:
        return {"expectation": self.expectation, "ok": self.ok, "detail": self.detail}


@dataclass
class ScenarioResult:
    name: str
    ok: bool
    results: list[ExpectResult]
    trace: Trace
    status: dict[str, dict[str, Any]] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "ok": self.ok,
            "expectations": [r.to_json() for r in self.results],
            "status": self.status,
            "outputs": self.outputs,
            "events": len(self.trace),
        }


@dataclass
class Scenario:
    name: str
    raw: dict[str, Any]
    seed: int
    duration: float
    base_dir: str = "."

    @classmethod
    def load(cls, path: str) -> Scenario:
        try:
            with open(path) as f:
                raw = yaml.safe_load(f)
        except OSError as e:
            raise ConfigError(f"{path}: cannot read: {e.strerror}") from None
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML: {e}") from None
        default_name = os.path.splitext(os.path.basename(path))[0]
        return cls.from_mapping(raw, default_name, os.path.dirname(os.path.abspath(path)))

    @classmethod
    def from_mapping(cls, raw: Any, default_name: str = "scenario", base_dir: str = ".") -> Scenario:
        if not isinstance(raw, dict):
            raise ConfigError("scenario: the top level must be a mapping")
        for k in raw:
            if k not in TOP_KEYS:
                raise ConfigError(f"{k}: unknown key (allowed: {', '.join(sorted(TOP_KEYS))})")
        seed = _num(raw.get("seed", 0), "seed", int)
        duration = _num(raw.get("duration", 600), "duration", float)
        if duration <= 0:
            raise ConfigError(f"duration: must be > 0, got {duration}")
        sc = cls(str(raw.get("name", default_name)), raw, int(seed), float(duration), base_dir)
        sc.validate()
        return sc

    # -- validation (everything that can be checked before building peers) -------------------------------

    def validate(self) -> None:
        raw = self.raw
        if raw.get("ike_version", 1) not in (1, 2):
            raise ConfigError(f"ike_version: must be 1 or 2, got {raw.get('ike_version')!r}")
        for side in ("aws", "cgw"):
            s = raw.get(side) or {}
            if not isinstance(s, dict):
                raise ConfigError(f"{side}: must be a mapping")
            for k in s:
                if k not in SIDE_KEYS:
                    raise ConfigError(f"{side}.{k}: unknown key (allowed: {', '.join(sorted(SIDE_KEYS))})")
        links = raw.get("links") or {}
        if not isinstance(links, dict):
            raise ConfigError("links: must be a mapping of direction -> fault plan")
        for d, plan in links.items():
            if d not in ("cgw->aws", "aws->cgw"):
                raise ConfigError(f"links.{d}: unknown direction (allowed: cgw->aws, aws->cgw)")
            try:
                FaultPlan.from_mapping(plan or {}, f"links.{d}")
            except ValueError as e:
                raise ConfigError(str(e)) from None
        for i, item in enumerate(raw.get("schedule") or []):
            where = f"schedule[{i}]"
            if not isinstance(item, dict):
                raise ConfigError(f"{where}: must be a mapping")
            if "at" not in item:
                raise ConfigError(f"{where}.at: required")
            _num(item["at"], f"{where}.at", float)
            if item.get("do") not in ACTIONS:
                raise ConfigError(f"{where}.do: must be one of {', '.join(sorted(ACTIONS))}, got {item.get('do')!r}")
            if item["do"] in ("crash", "revive", "initiate", "close", "esp") and item.get("node") not in ("aws", "cgw"):
                raise ConfigError(f"{where}.node: must be aws or cgw, got {item.get('node')!r}")
            if item["do"] in ("blackhole", "faults") and item.get("direction", "both") not in DIRECTIONS:
                raise ConfigError(
                    f"{where}.direction: must be one of {', '.join(sorted(DIRECTIONS))}, got {item.get('direction')!r}"
                )
        for i, exp in enumerate(raw.get("expect") or []):
            where = f"expect[{i}]"
            if not isinstance(exp, dict):
                raise ConfigError(f"{where}: must be a mapping")
            kinds = [k for k in ("event", "status", "absent", "tgw_flow") if k in exp]
            if len(kinds) != 1:
                raise ConfigError(f"{where}: needs exactly one of event, status, absent, tgw_flow")
            allowed = {
                "event",
                "node",
                "fields",
                "at",
                "within",
                "nth",
                "count",
                "min",
                "max",
                "tolerance",
                "status",
                "absent",
                "tgw_flow",
            }
            for k in exp:
                if k not in allowed:
                    raise ConfigError(f"{where}.{k}: unknown key (allowed: {', '.join(sorted(allowed))})")
        self._validate_tgw()
        # Build the peer configs now so option errors surface at load time, naming the field.
        self.peer_configs()

    def _validate_tgw(self) -> None:
        t = self.raw.get("tgw")
        if t is None:
            return
        if not isinstance(t, dict):
            raise ConfigError("tgw: must be a mapping")
        for k in t:
            if k not in TGW_KEYS:
                raise ConfigError(f"tgw.{k}: unknown key (allowed: {', '.join(sorted(TGW_KEYS))})")
        for k in ("topology", "attachment"):
            if not t.get(k):
                raise ConfigError(f"tgw.{k}: required")
        for i, pr in enumerate(t.get("probes") or []):
            where = f"tgw.probes[{i}]"
            if not isinstance(pr, dict) or "at" not in pr or "flow" not in pr:
                raise ConfigError(f"{where}: needs at and flow")
            _num(pr["at"], f"{where}.at", float)
        dp = self.make_dataplane()
        from tgw_dataplane.craft import parse_flow

        for i, pr in enumerate(t.get("probes") or []):
            try:
                parse_flow(str(pr["flow"]))
            except ValueError as e:
                raise ConfigError(f"tgw.probes[{i}].flow: {e}") from None
        try:
            dp.set_tunnel_state(str(t["attachment"]), str(t.get("tunnel", "tunnel1")), False)
        except ConfigError as e:
            raise ConfigError(f"tgw.attachment: {e}") from None

    def make_dataplane(self) -> Any:
        from tgw_dataplane.cli import load_any
        from tgw_dataplane.dataplane import Dataplane

        path = str(self.raw["tgw"]["topology"])
        if not os.path.isabs(path):
            path = os.path.join(self.base_dir, path)
        try:
            return Dataplane(load_any(path))
        except ConfigError as e:
            raise ConfigError(f"tgw.topology: {e}") from None

    # -- building ----------------------------------------------------------------------------------------

    def peer_configs(self) -> dict[str, Any]:
        from cgw_peer.config import PROFILES, Behaviour, IkeVersion, PeerConfig, Role, TunnelOptions
        from cgw_peer.errors import ConfigError as PeerConfigError

        raw = self.raw
        try:
            opts = TunnelOptions.from_mapping(raw.get("tunnel") or {}, "tunnel.")
        except PeerConfigError as e:
            raise ConfigError(str(e) if str(e).startswith("tunnel.") else f"tunnel.{e}") from None
        version = IkeVersion.IKEV1 if raw.get("ike_version", 1) == 1 else IkeVersion.IKEV2
        out: dict[str, Any] = {}
        for side, role, default_profile in (("aws", Role.AWS, "aws"), ("cgw", Role.CGW, "strongswan")):
            s = raw.get(side) or {}
            profile = s.get("profile", default_profile)
            if profile not in PROFILES:
                raise ConfigError(f"{side}.profile: must be one of {', '.join(PROFILES)}, got {profile!r}")
            try:
                beh: Behaviour = PROFILES[profile]
                overrides = s.get("behaviour") or {}
                if overrides:
                    merged = Behaviour.from_mapping(overrides, f"{side}.behaviour.")
                    names = [k.replace("-", "_") for k in overrides]
                    beh = replace(beh, **{n: getattr(merged, n) for n in names})
                kw: dict[str, Any] = {}
                if "psk" in raw:
                    kw["psk"] = str(raw["psk"]).encode()
                if s.get("proposals"):
                    kw["proposals"] = tuple(str(p) for p in s["proposals"])
                if s.get("esp_proposals"):
                    kw["esp_proposals"] = tuple(str(p) for p in s["esp_proposals"])
                for flag in ("force_encap", "nat_t"):
                    if flag in s:
                        kw[flag] = bool(s[flag])
                if s.get("initiate") is not None:
                    kw["initiate"] = bool(s["initiate"])
                out[side] = PeerConfig(role=role, ike_version=version, options=opts, behaviour=beh, name=side, **kw)
            except PeerConfigError as e:
                msg = str(e)
                raise ConfigError(msg if msg.startswith(side) else f"{side}.{msg}") from None
        return out

    def addresses(self) -> dict[str, str]:
        return {
            "aws": str((self.raw.get("aws") or {}).get("address", "203.0.113.10")),
            "cgw": str((self.raw.get("cgw") or {}).get("address", "198.51.100.20")),
        }

    def make_peer(self, side: str, incarnation: int = 0, initiate: bool | None = None) -> Any:
        from cgw_peer.peer import create_peer

        cfgs = self.peer_configs()
        if initiate is not None:
            cfgs[side] = replace(cfgs[side], initiate=initiate)
        addrs = self.addresses()
        other = "cgw" if side == "aws" else "aws"
        rng = random.Random(f"{self.seed}:{side}:{incarnation}")
        return create_peer(cfgs[side], local=(addrs[side], 500), remote=(addrs[other], 500), rng=rng)

    # -- running -----------------------------------------------------------------------------------------

    def run(self, out_dir: str | None = None) -> ScenarioResult:
        addrs = self.addresses()
        pcap_buf = io.BytesIO()
        pcap = PcapWriter(pcap_buf, LINKTYPE_RAW, ts_origin=PCAP_EPOCH)
        keys = KeyTables()
        net = SimNetwork(self.seed, pcap=pcap)
        net.on_event(lambda rec: keys.add(rec.fields) if rec.event == "sa_keys" else None)
        incarnations = {"aws": 0, "cgw": 0}
        net.add_node("aws", self.make_peer("aws"), [addrs["aws"]])
        net.add_node("cgw", self.make_peer("cgw"), [addrs["cgw"]])
        base_plans: dict[str, FaultPlan] = {}
        for d in ("cgw->aws", "aws->cgw"):
            plan = FaultPlan.from_mapping((self.raw.get("links") or {}).get(d) or {}, f"links.{d}")
            base_plans[d] = plan
            src, dst = d.split("->")
            net.set_faults(addrs[src], addrs[dst], plan)

        def directions(item: dict[str, Any]) -> list[str]:
            d = item.get("direction", "both")
            return ["cgw->aws", "aws->cgw"] if d == "both" else [d]

        def set_plan(d: str, plan: FaultPlan) -> None:
            src, dst = d.split("->")
            net.set_faults(addrs[src], addrs[dst], plan)

        def revive(node: str, initiate: bool | None) -> None:
            incarnations[node] += 1
            net.revive(node, self.make_peer(node, incarnations[node], initiate))

        def api_call(node: str, method: str, now: float) -> list[Any]:
            result = getattr(net.node(node), method)(now)
            return list(result) if result else []

        for item in self.raw.get("schedule") or []:
            at = float(item["at"])
            do = item["do"]
            node = item.get("node")
            if do == "blackhole":
                until = float(item.get("until", float("inf")))
                for d in directions(item):
                    cur = base_plans[d]
                    base_plans[d] = replace(cur, blackholes=(*cur.blackholes, (at, until)))
                    set_plan(d, base_plans[d])
            elif do == "faults":
                for d in directions(item):
                    plan = FaultPlan.from_mapping(item.get("plan") or {}, "schedule.plan")
                    net.at(at, functools.partial(set_plan, d, plan))
            elif do == "crash":
                net.at(at, functools.partial(net.crash, node))
            elif do == "revive":
                init = item.get("initiate")
                net.at(at, functools.partial(revive, node, None if init is None else bool(init)))
            elif do in ("initiate", "close"):
                net.call(node, functools.partial(api_call, node, do), at=at)
            elif do == "esp":
                every = float(item.get("every", 1.0))
                until = float(item.get("until", at))
                t = at
                while t <= until + 1e-9:
                    net.call(node, functools.partial(api_call, node, "note_esp_inbound"), at=t)
                    t += every
        if self.raw.get("tgw"):
            self._bind_tgw(net)
        net.start_all(at=0.0)
        net.run_until(self.duration)

        status = {side: _status_dict(net.node(side)) for side in ("aws", "cgw")}
        results = [check(e, net.trace, status) for e in self.raw.get("expect") or []]
        res = ScenarioResult(self.name, all(r.ok for r in results), results, net.trace, status)
        if out_dir is not None:
            os.makedirs(out_dir, exist_ok=True)
            pcap_path = os.path.join(out_dir, f"{self.name}.pcap")
            with open(pcap_path, "wb") as fb:
                fb.write(pcap_buf.getvalue())
            res.outputs["pcap"] = pcap_path
            trace_path = os.path.join(out_dir, f"{self.name}.jsonl")
            net.trace.write_jsonl(trace_path)
            res.outputs["trace"] = trace_path
            keys_dir = os.path.join(out_dir, f"{self.name}-keys")
            keys.write(keys_dir)
            res.outputs["keys"] = keys_dir
            tl_path = os.path.join(out_dir, f"{self.name}-timeline.txt")
            with open(tl_path, "w") as ft:
                ft.write(timeline(net.trace))
            res.outputs["timeline"] = tl_path
        return res

    def _bind_tgw(self, net: SimNetwork) -> None:
        """The AWS side's tunnel state drives the VPN attachment's routes; probes record their verdicts."""
        from tgw_dataplane.craft import parse_flow

        t = self.raw["tgw"]
        dp = self.make_dataplane()
        att = str(t["attachment"])
        tunnel = str(t.get("tunnel", "tunnel1"))
        dp.set_tunnel_state(att, tunnel, False)
        state = {"up": False}

        def on_event(rec: TraceRecord) -> None:
            if rec.node != "aws":
                return
            if rec.event == "tunnel_up":
                up = True
            elif rec.event in ("tunnel_down", "routes_withdrawn"):
                up = False
            else:
                return
            if up != state["up"]:
                state["up"] = up
                dp.set_tunnel_state(att, tunnel, up)
                net.trace.add(net.now, "tgw", "tgw_routes_changed", {"attachment": att, "tunnel": tunnel, "up": up})

        net.on_event(on_event)

        def probe(pr: dict[str, Any]) -> None:
            flow = parse_flow(str(pr["flow"]))
            src = str(pr.get("from") or dp.source_for_ip(flow.src))
            res = dp.send(flow.request(), src, net.now, trace=True)
            net.trace.add(
                net.now,
                "tgw",
                "tgw_flow",
                {
                    "name": str(pr.get("name", pr["flow"])),
                    "flow": str(pr["flow"]),
                    "verdict": str(res.verdict),
                    "reason": str(res.reason or ""),
                    "hops": [h.get("node") for h in res.hops or []],
                },
            )

        for pr in t.get("probes") or []:
            net.at(float(pr["at"]), functools.partial(probe, pr))


def _status_dict(peer: Any) -> dict[str, Any]:
    st = getattr(peer, "status", None)
    if st is None:
        return {}
    if hasattr(st, "to_aws"):
        d: dict[str, Any] = st.to_aws()
        return d
    return {
        "Status": getattr(st, "status", None),
        "StatusMessage": getattr(st, "status_message", None),
        "LastStatusChange": getattr(st, "last_status_change", None),
    }


def timeline(trace: Trace, skip: frozenset[str] = frozenset({"datagram_sent", "sa_keys"})) -> str:
    """A human-readable timeline: one line per event, virtual time first."""
    lines = []
    for r in trace:
        if r.event in skip:
            continue
        extra = " ".join(f"{k}={v}" for k, v in r.fields.items())
        lines.append(f"{r.t:12.6f}  {r.node:<4} {r.event:<22} {extra}".rstrip())
    return "\n".join(lines) + "\n"


def _num(v: Any, where: str, kind: type) -> Any:
    if isinstance(v, bool):
        raise ConfigError(f"{where}: expected a number, got {v!r}")
    try:
        return kind(v)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: expected a number, got {v!r}") from None


def _matches(r: TraceRecord, e: Mapping[str, Any]) -> bool:
    if r.event != e.get("event"):
        return False
    if e.get("node") is not None and r.node != e["node"]:
        return False
    return all(r.fields.get(k) == v for k, v in (e.get("fields") or {}).items())


def check(e: dict[str, Any], trace: Trace, status: Mapping[str, Mapping[str, Any]]) -> ExpectResult:
    """Check one expectation against a finished run."""
    if "status" in e:
        want = dict(e["status"])
        node = want.pop("node", "aws")
        have = status.get(node, {})
        bad = {k: have.get(k) for k, v in want.items() if have.get(k) != v}
        return ExpectResult(e, not bad, f"{node} status {dict(have)}" if bad else f"{node} status matches")
    if "tgw_flow" in e:
        want = dict(e["tgw_flow"])
        recs = [r for r in trace.select("tgw_flow") if r.fields.get("name") == want.get("name")]
        if not recs:
            return ExpectResult(e, False, f"no TGW probe named {want.get('name')!r}")
        got = recs[-1].fields
        bad = {k: got.get(k) for k, v in want.items() if k != "name" and got.get(k) != v}
        if bad:
            return ExpectResult(e, False, f"probe {want.get('name')!r}: {got.get('verdict')} {got.get('reason')}")
        return ExpectResult(e, True, f"probe {want.get('name')!r}: {got.get('verdict')} via {got.get('hops')}")
    if "absent" in e:
        spec = dict(e["absent"])
        hits = [r for r in trace if _matches(r, spec)]
        if hits:
            return ExpectResult(e, False, f"found {len(hits)}, first at t={hits[0].t:.6f}")
        return ExpectResult(e, True, "none found")
    hits = [r for r in trace if _matches(r, e)]
    tol = float(e.get("tolerance", 1e-6))
    if "count" in e and len(hits) != int(e["count"]):
        return ExpectResult(e, False, f"expected {e['count']}, found {len(hits)} at {[round(r.t, 6) for r in hits]}")
    if "min" in e and len(hits) < int(e["min"]):
        return ExpectResult(e, False, f"expected at least {e['min']}, found {len(hits)}")
    if "max" in e and len(hits) > int(e["max"]):
        return ExpectResult(e, False, f"expected at most {e['max']}, found {len(hits)}")
    if not hits and ("at" in e or "within" in e or not any(k in e for k in ("count", "min", "max"))):
        return ExpectResult(e, False, "no matching event")
    if "at" in e or "within" in e:
        nth = int(e.get("nth", 1))
        if len(hits) < nth:
            return ExpectResult(e, False, f"only {len(hits)} matching events, wanted occurrence {nth}")
        t = hits[nth - 1].t
        if "at" in e and abs(t - float(e["at"])) > tol:
            return ExpectResult(e, False, f"at t={t:.6f}, expected {float(e['at']):.6f}")
        if "within" in e:
            lo, hi = (float(x) for x in e["within"])
            if not lo - tol <= t <= hi + tol:
                return ExpectResult(e, False, f"at t={t:.6f}, expected within [{lo}, {hi}]")
        return ExpectResult(e, True, f"at t={t:.6f}")
    return ExpectResult(e, True, f"found {len(hits)}")
