"""``awsnetemu tgw trace|replay``: run packets through a topology and show what the dataplane did.

* ``tgw trace TOPOLOGY --flow 'tcp 10.0.1.10:40000 > 10.1.2.20:443' [--json]`` sends the flow's first packet
  and its reply (SYN / SYN-ACK for TCP; request / reply for UDP and ICMP) and prints every hop of both
  directions and each direction's verdict.
* ``tgw replay TOPOLOGY IN.pcap --out DIR`` forwards every packet of a capture (each from the instance owning
  its source address, at its capture time) and writes ``DIR/hops/<node>.pcap`` (per-hop captures, raw IP;
  a TGW has one per ingress attachment, ``<tgw>.<attachment>.pcap``, with the TTL on arrival),
  ``DIR/flowlogs.txt`` (TGW flow logs, default format) and ``DIR/summary.json`` (verdicts per flow).

TOPOLOGY is a YAML file (``tgw_dataplane/TOPOLOGY.md``) or AWS API JSON (``tgw_dataplane.aws_import``).
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import struct
from pathlib import Path
from typing import Any

from emulator.errors import ConfigError
from tgw_dataplane.capture import HopCaptures
from tgw_dataplane.craft import parse_flow
from tgw_dataplane.dataplane import DELIVERED, Dataplane, Result
from tgw_dataplane.model import Topology, load_topology
from tgw_dataplane.packet import PROTO_TCP, PROTO_UDP, Packet, parse

_HOP_COLUMNS = ("node", "kind", "az", "attachment", "eni", "route_table", "route")


def load_any(path: str) -> Topology:
    """Load a YAML topology or AWS API JSON (detected by content)."""
    try:
        with open(path, "rb") as f:
            head = f.read(4096).lstrip()
    except OSError as e:
        raise ConfigError(f"topology {path}: {e.strerror}") from e
    if head.startswith(b"{"):
        try:
            from tgw_dataplane import aws_import
        except ImportError as e:  # pragma: no cover - the import module is a separate piece
            raise ConfigError(f"topology {path}: AWS JSON import is not available ({e})") from e
        loader = getattr(aws_import, "load_aws_json", None)
        if loader is None:  # pragma: no cover
            raise ConfigError(f"topology {path}: AWS JSON import is not available")
        topo: Topology = loader(path)
        return topo
    return load_topology(path)


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("tgw", help="Transit Gateway dataplane: trace a flow, replay a capture")
    sub = p.add_subparsers(dest="tgw_command", required=True, metavar="TGW_COMMAND")
    t = sub.add_parser("trace", help="send a flow's first packet and its reply; print every hop")
    t.add_argument("topology", help="YAML topology or AWS API JSON")
    t.add_argument("--flow", required=True, help="e.g. 'tcp 10.0.1.10:40000 > 10.1.2.20:443'")
    t.add_argument("--from", dest="source", help="source node id (default: the instance owning SRC)")
    t.add_argument(
        "--reply-from",
        dest="reply_source",
        help="reply source node id (default: where the request was delivered, else the owner of DST)",
    )
    t.add_argument(
        "--appliance-mode",
        action="append",
        default=[],
        metavar="ATTACHMENT=on|off",
        help="override ApplianceModeSupport of an attachment (repeatable)",
    )
    t.add_argument("--json", action="store_true", help="machine-readable output")
    t.set_defaults(func=cmd_trace)
    r = sub.add_parser("replay", help="forward every packet of a pcap; write per-hop pcaps, flow logs, summary")
    r.add_argument("topology", help="YAML topology or AWS API JSON")
    r.add_argument("pcap", help="input capture (raw IP or Ethernet link type)")
    r.add_argument("--out", required=True, help="output directory")
    r.set_defaults(func=cmd_replay)


def _dataplane(args: argparse.Namespace, **kw: Any) -> Dataplane:
    dp = Dataplane(load_any(args.topology), **kw)
    for spec in getattr(args, "appliance_mode", []):
        att, _, val = spec.partition("=")
        if val not in ("on", "off"):
            raise ConfigError(f"--appliance-mode {spec!r}: expected ATTACHMENT=on|off")
        dp.set_appliance_mode(att, val == "on")
    return dp


def _direction(r: Result) -> dict[str, Any]:
    return {"verdict": r.verdict, "reason": r.reason or None, "hops": r.hops or []}


def cmd_trace(args: argparse.Namespace) -> int:
    try:
        flow = parse_flow(args.flow)
    except ValueError as e:
        raise ConfigError(f"--flow: {e}") from None
    dp = _dataplane(args, flow_logs=True)
    src = args.source or dp.source_for_ip(flow.src)
    fwd = dp.send(flow.request(), src, 0.0, trace=True)
    # The reply comes from where the request arrived (an instance, an IGW or a VPN attachment for on-premises
    # addresses); when the request was dropped, from the instance that owns DST.
    rsrc = args.reply_source or (fwd.node if fwd.verdict == "delivered" else dp.source_for_ip(flow.dst))
    rev = dp.send(flow.reply(), rsrc, 0.001, trace=True)
    if args.json:
        print(json.dumps({"forward": _direction(fwd), "reverse": _direction(rev)}, indent=2))
        return 0
    for title, res in (("forward", fwd), ("reverse", rev)):
        print(f"== {title}: {res.verdict}" + (f" ({res.reason})" if res.reason else ""))
        for i, h in enumerate(res.hops or [], 1):
            cols = [f"{k}={h[k]}" for k in _HOP_COLUMNS[1:] if h.get(k)]
            keys = ("egress_attachment", "egress_eni", "egress_az", "egress_tunnel", "mss_clamped", "reason")
            extra = [f"{k}={h[k]}" for k in keys if h.get(k)]
            print(f"  {i:2d}. {h['node']:<22} " + " ".join(cols + extra))
    return 0


def _read_capture(path: str) -> list[tuple[float, bytes]]:
    """Packets of a classic pcap (µs or ns, either byte order) as raw IP, whatever the link type."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ConfigError(f"pcap {path}: {e.strerror}") from e
    if len(data) < 24:
        raise ConfigError(f"pcap {path}: too short for a pcap header")
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        end = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        end = ">"
    else:
        raise ConfigError(f"pcap {path}: not a classic pcap file (pcapng is not supported)")
    nano = magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
    linktype = struct.unpack(end + "I", data[20:24])[0] & 0xFFFF
    if linktype not in (1, 101, 228, 229, 12, 14):
        raise ConfigError(f"pcap {path}: link type {linktype} (only Ethernet and raw IP are supported)")
    rec = struct.Struct(end + "IIII")
    out: list[tuple[float, bytes]] = []
    off = 24
    while off + 16 <= len(data):
        sec, frac, incl, _orig = rec.unpack_from(data, off)
        off += 16
        frame = data[off : off + incl]
        off += incl
        if linktype == 1:
            if len(frame) < 14 or frame[12:14] not in (b"\x08\x00", b"\x86\xdd"):
                frame = b""  # not IP: dropped as truncated by the parser
            else:
                frame = frame[14:]
        out.append((sec + frac / (1e9 if nano else 1e6), frame))
    return out


def _flow_name(p: Packet) -> str:
    fam = ipaddress.IPv4Address if p.version == 4 else ipaddress.IPv6Address
    proto = {PROTO_TCP: "tcp", PROTO_UDP: "udp"}.get(p.proto, f"proto{p.proto}")
    if p.proto in (PROTO_TCP, PROTO_UDP):
        return f"{proto} {fam(p.src)}:{p.sport} > {fam(p.dst)}:{p.dport}"
    return f"{proto} {fam(p.src)} > {fam(p.dst)}"


def cmd_replay(args: argparse.Namespace) -> int:
    packets = _read_capture(args.pcap)
    out = Path(args.out)
    t0 = packets[0][0] if packets else 0.0
    sink = HopCaptures(ts_origin=t0)
    dp = _dataplane(args, flow_logs=True, capture_sink=sink)
    assert dp.flow_logs is not None
    dp.flow_logs.ts_origin = t0  # flow-log start/end in the capture's Unix time
    sources: dict[int, str | None] = {}
    flows: dict[str, dict[str, Any]] = {}
    for ts, frame in packets:
        now = ts - t0
        p = parse(frame)
        if isinstance(p, str):
            res = dp.send(frame, "-", now)  # counted under the parse error's reason
            name = f"unparsable ({p})"
        else:
            src = sources.get(p.src, "")
            if src == "":
                fam = ipaddress.IPv4Address if p.version == 4 else ipaddress.IPv6Address
                try:
                    src = dp.source_for_ip(str(fam(p.src)))
                except ConfigError:
                    src = None
                sources[p.src] = src
            res = dp.send(frame, src or "-", now)
            name = _flow_name(p)
        f = flows.setdefault(name, {"packets": 0, "delivered": 0, "dropped": 0, "reasons": {}})
        f["packets"] += 1
        if res.verdict == DELIVERED:
            f["delivered"] += 1
        else:
            f["dropped"] += 1
            f["reasons"][res.reason] = f["reasons"].get(res.reason, 0) + 1
    written = sink.write(out / "hops")
    assert dp.flow_logs is not None
    (out / "flowlogs.txt").write_text("\n".join(dp.flow_logs.lines()) + "\n")
    summary = {
        "packets": len(packets),
        "delivered": dp.delivered,
        "drops": dict(sorted(dp.drops.items())),
        "flows": flows,
        "hop_captures": sorted(p.name for p in written),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"{len(packets)} packets: {dp.delivered} delivered, {sum(dp.drops.values())} dropped")
    for name, f in flows.items():
        extra = ", ".join(f"{k}={v}" for k, v in f["reasons"].items())
        print(f"  {name}: {f['delivered']} delivered, {f['dropped']} dropped" + (f" ({extra})" if extra else ""))
    print(f"wrote {out}/hops/*.pcap ({len(written)}), {out}/flowlogs.txt, {out}/summary.json")
    return 0
