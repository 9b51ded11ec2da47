"""Transit Gateway Flow Logs in AWS's default format (tgw.md §1.13; FL).

Records are aggregated per flow, attachment, direction and aggregation interval (60 s windows, the
``start``/``end`` of the packets seen). For every TGW traversal two records are kept: one for the ingress
attachment (``flow-direction`` ingress, ``tgw-pair-attachment-id`` = the egress attachment) and, when the
packet left, one for the egress attachment (egress, pair = ingress). A drop yields only the ingress record with
the matching ``packets-lost-*`` count. Fields that do not apply are ``-``.

``tcp-flags`` follows FL: the OR of FIN (1), SYN (2), RST (4) and SYN-ACK (18) over the interval; a bare ACK
shows 0.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from tgw_dataplane.packet import PROTO_TCP, PROTO_UDP, TCP_ACK, TCP_SYN, Packet

FIELDS = (  # noqa: SIM905 - the doc's field list, kept readable
    "version resource-type account-id tgw-id tgw-attachment-id tgw-src-vpc-account-id tgw-dst-vpc-account-id "
    "tgw-src-vpc-id tgw-dst-vpc-id tgw-src-subnet-id tgw-dst-subnet-id tgw-src-eni tgw-dst-eni tgw-src-az-id "
    "tgw-dst-az-id tgw-pair-attachment-id srcaddr dstaddr srcport dstport protocol packets bytes start end "
    "log-status type packets-lost-no-route packets-lost-blackhole packets-lost-mtu-exceeded "
    "packets-lost-ttl-expired tcp-flags region flow-direction pkt-src-aws-service pkt-dst-aws-service"
).split()

AGGREGATION_INTERVAL = 60
_LOST = {"no_route": 0, "no_association": 0, "blackhole": 1, "mtu_exceeded": 2, "ttl_expired": 3}


class FlowLogs:
    """Collects TGW flow-log records; :meth:`lines` renders them in the default format."""

    def __init__(self, ts_origin: float = 0.0) -> None:
        self.ts_origin = ts_origin
        """Added to the dataplane's virtual ``now`` to give Unix seconds in ``start``/``end``."""
        # key (static fields) -> [packets, bytes, start, end, lost_no_route, lost_bh, lost_mtu, lost_ttl, flags]
        self._recs: dict[tuple[Any, ...], list[int]] = {}

    def record(
        self, pkt: Packet, in_att: Any, in_eni: Any, out_att: Any | None, out_eni: Any | None, now: float, reason: str
    ) -> None:
        """Account one packet crossing ``in_att`` (and ``out_att`` unless dropped, ``reason`` non-empty)."""
        tgw = in_att.tgw
        f = pkt.flags if pkt.proto == PROTO_TCP else 0
        fl = f & 0x07
        if f & TCP_SYN and f & TCP_ACK:
            fl |= 0x12
        ports = pkt.proto in (PROTO_TCP, PROTO_UDP)
        src_vpc = in_att.vpc
        dst_vpc = out_att.vpc if out_att is not None else None
        common = (
            tgw.account,
            tgw.id,
            src_vpc.account if src_vpc else "-",
            dst_vpc.account if dst_vpc and out_eni is not None else "-",
            src_vpc.id if src_vpc else "-",
            dst_vpc.id if dst_vpc and out_eni is not None else "-",
            in_eni.subnet_id if in_eni else "-",
            out_eni.subnet_id if out_eni else "-",
            in_eni.id if in_eni else "-",
            out_eni.id if out_eni else "-",
            in_eni.az_id if in_eni else "-",
            out_eni.az_id if out_eni else "-",
            pkt.version,
            pkt.src,
            pkt.dst,
            pkt.sport if ports else "-",
            pkt.dport if ports else "-",
            pkt.proto,
            tgw.region,
            int((now + self.ts_origin) // AGGREGATION_INTERVAL),
        )
        t = int(now + self.ts_origin)
        lost = _LOST.get(reason, -1) if reason else -1
        self._add(
            (in_att.id, out_att.id if out_att is not None and not reason else "-", "ingress", *common), pkt, t, lost, fl
        )
        if out_att is not None and not reason:
            self._add((out_att.id, in_att.id, "egress", *common), pkt, t, -1, fl)

    def _add(self, key: tuple[Any, ...], pkt: Packet, t: int, lost: int, fl: int) -> None:
        r = self._recs.get(key)
        if r is None:
            r = self._recs[key] = [0, 0, t, t, 0, 0, 0, 0, 0]
        r[0] += 1
        r[1] += pkt.length
        r[3] = t
        if lost >= 0:
            r[4 + lost] += 1
        r[8] |= fl

    def records(self) -> list[dict[str, str]]:
        """Every record as a field-name -> value mapping, in insertion order."""
        return [dict(zip(FIELDS, _values(k, r), strict=True)) for k, r in self._recs.items()]

    def lines(self, header: bool = True) -> list[str]:
        """The records as space-separated lines (default format), optionally with the field-name header."""
        out = [" ".join(FIELDS)] if header else []
        out.extend(" ".join(_values(k, r)) for k, r in self._recs.items())
        return out

    def window(self, now: float) -> int:
        """The aggregation window (index of the 60 s interval in Unix time) of virtual time ``now``."""
        return int((now + self.ts_origin) // AGGREGATION_INTERVAL)

    def drain(self, before_window: int) -> list[str]:
        """Remove and render (as :meth:`lines` without the header) the oldest records, in insertion order, up to
        the first one whose window is ``before_window`` or later. A replay calls this as its capture's time moves
        on, so records of finished windows go to disk instead of piling up; the lines of all drains followed by
        the final :meth:`lines` are those of one undrained run, as long as no packet arrives after its window
        was drained (a later packet of the same flow then starts a new record)."""
        recs = self._recs
        done = []
        for k in recs:
            if k[-1] >= before_window:
                break
            done.append(k)
        return [" ".join(_values(k, recs.pop(k))) for k in done]

    def __len__(self) -> int:
        return len(self._recs)

    def clear(self) -> None:
        self._recs.clear()


def _values(k: tuple[Any, ...], r: list[int]) -> list[str]:
    """One record's values, in the order of :data:`FIELDS`."""
    att, pair, direction, acct, tgw_id, sacct, dacct, svpc, dvpc, ssub, dsub, seni, deni, saz, daz = k[:15]
    version, src, dst, sport, dport, proto, region, _win = k[15:]
    fam = ipaddress.IPv4Address if version == 4 else ipaddress.IPv6Address
    vals = [
        "6",
        "TransitGatewayAttachment",
        acct,
        tgw_id,
        att,
        sacct,
        dacct,
        svpc,
        dvpc,
        ssub,
        dsub,
        seni,
        deni,
        saz,
        daz,
        pair,
        str(fam(src)),
        str(fam(dst)),
        str(sport),
        str(dport),
        str(proto),
        str(r[0]),
        str(r[1]),
        str(r[2]),
        str(r[3]),
        "OK",
        "IPv4" if version == 4 else "IPv6",
        str(r[4]),
        str(r[5]),
        str(r[6]),
        str(r[7]),
        str(r[8]),
        region,
        direction,
        "-",
        "-",
    ]
    return vals
