"""``awsnetemu tgw trace|replay``: run packets through a topology and show what the dataplane did.

* ``tgw trace TOPOLOGY --flow 'tcp 10.0.1.10:40000 > 10.1.2.20:443' [--json]`` sends the flow's first packet
  and its reply (SYN / SYN-ACK for TCP; request / reply for UDP and ICMP) and prints every hop of both
  directions and each direction's verdict.
* ``tgw replay TOPOLOGY IN.pcap --out DIR`` forwards every packet of a capture (each from the instance owning
  its source address, at its capture time) and writes ``DIR/hops/<node>.pcap`` (per-hop captures, raw IP;
  a TGW has one per ingress attachment, ``<tgw>.<attachment>.pcap``, with the TTL on arrival),
  ``DIR/flowlogs.txt`` (TGW flow logs, default format) and ``DIR/summary.json`` (verdicts per flow). Captures
  and flow logs are written as the replay goes (:func:`tgw_dataplane.replay.replay`), so memory does not grow
  with the capture's length.

TOPOLOGY is a YAML file (``tgw_dataplane/TOPOLOGY.md``) or AWS API JSON (``tgw_dataplane.aws_import``).
Every input (topology, flow, pcap, flags, the output directory) is checked before anything runs; a bad one is a
ConfigError naming the field and what is allowed (exit 2).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from emulator.errors import ConfigError
from tgw_dataplane.checks import show_path
from tgw_dataplane.craft import FlowSpec, parse_flow
from tgw_dataplane.dataplane import Dataplane, Result
from tgw_dataplane.loader import load_any
from tgw_dataplane.model import Topology
from tgw_dataplane.pcapfile import check_pcap, iter_frames
from tgw_dataplane.replay import FlowCounts, ReplaySummary, check_appliance_mode, replay

_HOP_COLUMNS = ("node", "kind", "az", "attachment", "eni", "route_table", "route")


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
    _appliance_flag(t)
    t.add_argument("--json", action="store_true", help="machine-readable output")
    t.set_defaults(func=cmd_trace)
    r = sub.add_parser("replay", help="forward every packet of a pcap; write per-hop pcaps, flow logs, summary")
    r.add_argument("topology", help="YAML topology or AWS API JSON")
    r.add_argument("pcap", help="input capture (classic pcap; Ethernet or raw IP link type)")
    r.add_argument("--out", required=True, help="output directory (created if missing)")
    _appliance_flag(r)
    r.add_argument(
        "--dask",
        metavar="ADDRESS",
        help="replay in partitions of whole flows on a Dask scheduler at ADDRESS, or 'local' (a LocalCluster), "
        "then merge (emulator.campaign.tgw_partitioned)",
    )
    r.add_argument("--workers", type=int, default=2, metavar="K", help="--dask local: worker processes (default 2)")
    r.set_defaults(func=cmd_replay)


def _appliance_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--appliance-mode",
        action="append",
        default=[],
        metavar="ATTACHMENT=on|off",
        help="override ApplianceModeSupport of a VPC attachment (repeatable)",
    )


# -- input checks (all before anything runs) ----------------------------------------------------------------


def appliance_overrides(topology: Topology, specs: list[str]) -> dict[str, bool]:
    """``--appliance-mode`` values as attachment -> on, checked against the topology."""
    out: dict[str, bool] = {}
    for spec in specs:
        att, eq, val = str(spec).partition("=")
        if not eq or not att or val not in ("on", "off"):
            raise ConfigError(f"--appliance-mode {spec!r}: expected ATTACHMENT=on|off (on, off)")
        out[att] = val == "on"
    check_appliance_mode(topology, out)
    return out


def _flow(text: str) -> FlowSpec:
    try:
        return parse_flow(text)
    except ValueError as e:
        raise ConfigError(f"--flow: {e}") from None


def _source(dp: Dataplane, flag: str, node: str | None) -> None:
    if node is None or node in dp.source_ids():
        return
    ids = dp.source_ids()
    shown = ", ".join(ids[:12]) + (f", ... ({len(ids)} in all)" if len(ids) > 12 else "")
    raise ConfigError(
        f"{flag}: {node!r} is not a source in the topology (an instance, internet gateway or VPN attachment id: "
        f"{shown or 'none'})"
    )


def output_directory(path: str, flag: str = "--out") -> Path:
    """Check that ``path`` is, or can be created as, a directory this process may write; returns it."""
    if not str(path).strip():
        raise ConfigError(f"{flag}: empty path (a directory to write)")
    p = Path(path)
    if p.exists():
        if not p.is_dir():
            raise ConfigError(f"{flag} {show_path(path)}: exists and is not a directory")
        if not os.access(p, os.W_OK | os.X_OK):
            raise ConfigError(f"{flag} {show_path(path)}: the directory is not writable")
        return p
    parent = p.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise ConfigError(f"{flag} {show_path(path)}: {show_path(parent)} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"{flag} {show_path(path)}: cannot create it ({show_path(parent)} is not writable)")
    return p


# -- trace ---------------------------------------------------------------------------------------------------


def _direction(r: Result) -> dict[str, Any]:
    return {"verdict": r.verdict, "reason": r.reason or None, "hops": r.hops or []}


def cmd_trace(args: argparse.Namespace) -> int:
    flow = _flow(args.flow)
    topo = load_any(args.topology)
    overrides = appliance_overrides(topo, list(getattr(args, "appliance_mode", None) or []))
    dp = Dataplane(topo, flow_logs=True)
    for att, on in overrides.items():
        dp.set_appliance_mode(att, on)
    _source(dp, "--from", args.source)
    _source(dp, "--reply-from", args.reply_source)
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


# -- replay --------------------------------------------------------------------------------------------------


class DirectoryOutput:
    """A :class:`tgw_dataplane.replay.ReplayOutput` writing ``DIR/hops/*.pcap`` and ``DIR/flowlogs.txt`` as the
    replay goes (each capture file is opened per chunk, so a topology with many nodes holds no descriptors)."""

    def __init__(self, out: Path) -> None:
        self.hops = out / "hops"
        self.hops.mkdir(parents=True, exist_ok=True)
        self._flowlogs = open(out / "flowlogs.txt", "w")  # noqa: SIM115 - closed by close()
        self._started: set[str] = set()

    def hop_capture(self, node: str, file_name: str, data: bytes) -> None:
        mode = "ab" if file_name in self._started else "wb"
        self._started.add(file_name)
        with open(self.hops / file_name, mode) as f:
            f.write(data)

    def flow_log_lines(self, lines: list[str]) -> None:
        self._flowlogs.write("".join(line + "\n" for line in lines))

    def close(self) -> None:
        self._flowlogs.close()


def cmd_replay(args: argparse.Namespace) -> int:
    topo = load_any(args.topology)
    overrides = appliance_overrides(topo, list(getattr(args, "appliance_mode", None) or []))
    Dataplane(topo)  # plug-in settings (GWLB options) are checked when a dataplane is built: before any output
    pcap = str(args.pcap)
    if not os.path.isfile(pcap):  # also keeps a FIFO from blocking the open
        raise ConfigError(f"pcap {show_path(pcap)}: {'not a regular file' if os.path.exists(pcap) else 'no such file'}")
    try:
        f = open(pcap, "rb")  # noqa: SIM115 - closed below
    except OSError as e:
        raise ConfigError(f"pcap {show_path(pcap)}: {e.strerror or e}") from None
    with f:
        info = check_pcap(f, pcap)
        out = output_directory(args.out)
        if getattr(args, "dask", None):
            from emulator.campaign.tgw_partitioned import replay_partitioned

            if not 1 <= args.workers <= 256:
                raise ConfigError(f"--workers: {args.workers} (allowed: 1..256)")
            out.mkdir(parents=True, exist_ok=True)
            doc = replay_partitioned(args.topology, pcap, out, overrides, args.dask, args.workers)
            flows = {k: FlowCounts(**v) for k, v in doc["flows"].items()}
            _print_summary(
                ReplaySummary(doc["packets"], doc["delivered"], doc["drops"], flows, doc["hop_captures"]), out
            )
            return 0
        f.seek(0)
        sink = DirectoryOutput(out)
        try:
            summary = replay(topo, iter_frames(f, info), sink, appliance_mode=overrides)
        finally:
            sink.close()
    (out / "summary.json").write_text(json.dumps(summary.to_json(), indent=2) + "\n")
    _print_summary(summary, out)
    return 0


def _print_summary(s: ReplaySummary, out: Path) -> None:
    print(f"{s.packets} packets: {s.delivered} delivered, {sum(s.drops.values())} dropped")
    for name, f in s.flows.items():
        extra = ", ".join(f"{k}={v}" for k, v in f.reasons.items())
        print(f"  {name}: {f.delivered} delivered, {f.dropped} dropped" + (f" ({extra})" if extra else ""))
    print(f"wrote {out}/hops/*.pcap ({len(s.hop_captures)}), {out}/flowlogs.txt, {out}/summary.json")
