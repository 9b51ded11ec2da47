"""Replay a stream of captured packets through a topology, streaming per-hop captures and flow logs out.

:func:`replay` is the seam ``awsnetemu tgw replay`` runs on (and a partitioned replay can run per partition):
it takes an iterable of ``(timestamp, raw IP frame)`` and a :class:`ReplayOutput` that receives bytes and lines
as the replay goes, and returns a :class:`ReplaySummary`. Memory does not grow with the number of packets:
per-hop records are handed to the output every ``flush_every`` packets (:meth:`HopCaptures.drain`) and flow-log
records once the capture's time has left their 60 s aggregation window (plus one window of grace for slightly
out-of-order captures, :meth:`FlowLogs.drain`). What does grow is per flow, not per packet: the dataplane's
flow state (pins, firewall connections, flow plans) and the summary's one entry per flow.

Each packet is sent from the instance that owns its source address (``-`` when none does: counted as
``unknown_source``), at its capture time minus the first packet's; capture files and flow logs carry the
capture's own Unix time.
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from emulator.errors import ConfigError
from tgw_dataplane.capture import HopCaptures
from tgw_dataplane.dataplane import DELIVERED, Dataplane
from tgw_dataplane.flowlogs import FIELDS
from tgw_dataplane.model import Topology
from tgw_dataplane.packet import PROTO_TCP, PROTO_UDP, Packet, parse

FLUSH_EVERY = 4096
"""Packets between two hand-overs of per-hop records to the output."""


class ReplayOutput(Protocol):
    """Where a replay's outputs go, as they are produced."""

    def hop_capture(self, node: str, file_name: str, data: bytes) -> None:
        """Append ``data`` to ``node``'s per-hop capture file ``file_name`` (the first chunk of each node begins
        with the pcap file header)."""
        ...

    def flow_log_lines(self, lines: list[str]) -> None:
        """Append TGW flow-log lines (default format; the first call brings the header line)."""
        ...


@dataclass(slots=True)
class FlowCounts:
    """Per flow (one direction) of a replay: packets, delivered, dropped, drop reasons."""

    packets: int = 0
    delivered: int = 0
    dropped: int = 0
    reasons: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"packets": self.packets, "delivered": self.delivered, "dropped": self.dropped, "reasons": self.reasons}


@dataclass(slots=True)
class ReplaySummary:
    """The outcome of a replay: packet count, deliveries, drops by reason, per-flow counts (flows named
    ``tcp 10.0.1.10:40000 > 10.1.2.20:443``, ``proto47 SRC > DST``, ``unparsable (REASON)``, first-seen
    order) and the per-hop capture files written."""

    packets: int
    delivered: int
    drops: dict[str, int]
    flows: dict[str, FlowCounts]
    hop_captures: list[str]

    def to_json(self) -> dict[str, Any]:
        """The ``summary.json`` document."""
        return {
            "packets": self.packets,
            "delivered": self.delivered,
            "drops": dict(sorted(self.drops.items())),
            "flows": {k: v.to_json() for k, v in self.flows.items()},
            "hop_captures": sorted(self.hop_captures),
        }


def flow_name(p: Packet) -> str:
    """A packet's flow as the summary names it (one direction)."""
    fam = ipaddress.IPv4Address if p.version == 4 else ipaddress.IPv6Address
    proto = {PROTO_TCP: "tcp", PROTO_UDP: "udp"}.get(p.proto, f"proto{p.proto}")
    if p.proto in (PROTO_TCP, PROTO_UDP):
        return f"{proto} {fam(p.src)}:{p.sport} > {fam(p.dst)}:{p.dport}"
    return f"{proto} {fam(p.src)} > {fam(p.dst)}"


def check_appliance_mode(topology: Topology, overrides: Mapping[str, bool], where: str = "--appliance-mode") -> None:
    """Refuse an override naming an attachment that does not exist or is not a VPC attachment (ConfigError)."""
    atts = topology.attachments()
    for att in overrides:
        a = atts.get(att)
        if a is None or a.type.value != "vpc":
            vpc = sorted(k for k, v in atts.items() if v.type.value == "vpc")
            raise ConfigError(
                f"{where}: {att!r} is not a VPC attachment of the topology (allowed: {', '.join(vpc) or 'none'})"
            )


def replay(
    topology: Topology,
    packets: Iterable[tuple[float, bytes]],
    out: ReplayOutput,
    *,
    appliance_mode: Mapping[str, bool] | None = None,
    rng: random.Random | None = None,
    flush_every: int = FLUSH_EVERY,
    origin: float | None = None,
) -> ReplaySummary:
    """Forward every ``(timestamp, frame)`` through a fresh dataplane over ``topology`` (appliance-mode
    overrides applied first), streaming per-hop captures and flow logs to ``out``; returns the summary.

    ``origin``: the capture time that is the dataplane's time 0 (default: the first packet's). A partition of a
    capture (``awsnetemu tgw replay --dask``) passes the whole capture's first timestamp, so that every partition
    sees the same instants as one replay of the whole."""
    if flush_every < 1:
        raise ConfigError(f"flush_every: {flush_every} is not a positive integer")
    overrides = dict(appliance_mode or {})
    check_appliance_mode(topology, overrides)
    sink = HopCaptures()
    dp = Dataplane(topology, rng=rng, flow_logs=True, capture_sink=sink)
    for att, on in overrides.items():
        dp.set_appliance_mode(att, on)
    fl = dp.flow_logs
    assert fl is not None
    out.flow_log_lines([" ".join(FIELDS)])
    send = dp.send
    sources: dict[int, str | None] = {}
    names: dict[int, str] = {}
    flows: dict[str, FlowCounts] = {}
    files: dict[str, str] = {}
    t0 = 0.0
    n = 0
    next_flush = flush_every
    open_window = 0
    for ts, frame in packets:
        if n == 0:
            t0 = ts if origin is None else origin
            sink.ts_origin = t0
            fl.ts_origin = t0  # flow-log start/end in the capture's Unix time
            open_window = fl.window(ts - t0)
        now = ts - t0
        p = parse(frame)
        if isinstance(p, str):
            res = send(frame, "-", now)  # counted under the parse error's reason
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
            res = send(frame, src or "-", now)
            fk = (p.key << 1) | p.forward
            nm = names.get(fk)
            if nm is None:
                nm = names[fk] = flow_name(p)
            name = nm
        f = flows.get(name)
        if f is None:
            f = flows[name] = FlowCounts()
        f.packets += 1
        if res.verdict == DELIVERED:
            f.delivered += 1
        else:
            f.dropped += 1
            f.reasons[res.reason] = f.reasons.get(res.reason, 0) + 1
        n += 1
        if n >= next_flush:
            next_flush = n + flush_every
            _drain_captures(sink, out, files)
            w = fl.window(now)
            if w > open_window + 1:
                # Records of windows before the previous one are final (one window of grace for reordering).
                open_window = w - 1
                lines = fl.drain(open_window)
                if lines:
                    out.flow_log_lines(lines)
    _drain_captures(sink, out, files)
    lines = fl.lines(header=False)
    if lines:
        out.flow_log_lines(lines)
    return ReplaySummary(n, dp.delivered, dict(dp.drops), flows, list(files.values()))


def _drain_captures(sink: HopCaptures, out: ReplayOutput, files: dict[str, str]) -> None:
    for node, data in sink.drain():
        name = files.get(node)
        if name is None:
            name = files[node] = HopCaptures.file_name(node)
        out.hop_capture(node, name, data)
