"""Per-hop captures: a capture sink for :class:`~tgw_dataplane.dataplane.Dataplane` that keeps each node's
capture in memory as ready-to-join pcap pieces and writes classic pcap files (raw IP, link type 101).

Each record is stored as two pieces, so a capture file is one ``b"".join`` (perf-facts §12: joining records and
writing once is the fastest way in pure Python): either (16-byte record header, frame), or, for a frame whose TTL
the TGW lowered, (record header + the frame's first 12 bytes, the rest of the frame). A frame's length does not
change from hop to hop (only the TTL and the header checksum do, both in the first 12 bytes), so the dataplane
builds a packet's record header once and shares it between hops, and shares the rest of the frame between all
the TTLs it is captured with. The format is that of :class:`emulator.pcap.PcapWriter` (little-endian,
microsecond timestamps).

Long runs stream: :meth:`HopCaptures.drain` hands out what has accumulated per node as bytes to append to that
node's file (the first chunk of a node starts with the pcap file header) and empties the lists in place, so
memory stays bounded however many packets pass; the caller writes the bytes (this module does no I/O for it).
"""

from __future__ import annotations

import struct
from pathlib import Path

LINKTYPE_RAW = 101
_GLOBAL_HDR = struct.Struct("<IHHiIII")
_PAIR = struct.Struct("<II")  # a record header is (ts_sec, ts_usec) + (incl_len, orig_len)
_REC = struct.Struct("<IIII")


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


class HopCaptures:
    """Callable sink ``(node, ts, frame)``. ``records[node]`` is the flat list of pcap pieces, two per record
    (see the module docstring); :meth:`frames` decodes it and :meth:`pcap_bytes` joins it."""

    __slots__ = ("_hdrs", "_last_ts", "_last_tsb", "_started", "records", "ts_origin")

    def __init__(self, ts_origin: float = 0.0) -> None:
        self.records: dict[str, list[bytes]] = {}
        self.ts_origin = ts_origin
        self._last_ts: float | None = None
        self._last_tsb = b""
        self._hdrs: dict[int, bytes] = {}  # frame length -> record header, for the timestamp _last_ts
        self._started: set[str] = set()  # nodes whose file header drain() has handed out

    def header(self, ts: float, n: int) -> bytes:
        """The pcap record header for an ``n``-byte frame captured at ``ts`` (cached per timestamp and length:
        packets arrive in bursts with the same virtual time, and with few distinct lengths)."""
        if ts == self._last_ts:
            h = self._hdrs.get(n)
            if h is not None:
                return h
        else:
            t = ts + self.ts_origin
            sec = int(t)
            usec = int((t - sec) * 1_000_000 + 0.5)
            if usec >= 1_000_000:
                sec, usec = sec + 1, usec - 1_000_000
            self._last_ts = ts
            self._last_tsb = _PAIR.pack(sec, usec)
            self._hdrs = {}
        h = self._hdrs[n] = self._last_tsb + _PAIR.pack(n, n)
        return h

    def pieces(self, node: str) -> list[bytes]:
        """The (created on demand) piece list of ``node``; the dataplane appends to it directly."""
        r = self.records.get(node)
        if r is None:
            r = self.records[node] = []
        return r

    def __call__(self, node: str, ts: float, frame: bytes) -> None:
        r = self.records.get(node)
        if r is None:
            r = self.records[node] = []
        r.append(self.header(ts, len(frame)))
        r.append(frame)

    def frames(self, node: str) -> list[tuple[float, bytes]]:
        """The records of ``node`` as (timestamp, frame), timestamps including ``ts_origin``."""
        r = self.records.get(node, [])
        out = []
        for i in range(0, len(r), 2):
            first = r[i]
            sec, usec, _n, _o = _REC.unpack_from(first)
            out.append((sec + usec / 1e6, first[_REC.size :] + r[i + 1] if len(first) > _REC.size else r[i + 1]))
        return out

    def pcap_bytes(self, node: str) -> bytes:
        """The capture of ``node`` as a pcap file image."""
        return _GLOBAL_HDR.pack(0xA1B2C3D4, 2, 4, 0, 0, 262144, LINKTYPE_RAW) + b"".join(self.records.get(node, ()))

    def drain(self) -> list[tuple[str, bytes]]:
        """(node, bytes) for every node with records since the last drain, in first-capture order: the bytes to
        append to that node's file (its first chunk begins with the pcap file header). The records are emptied
        in place (the dataplane's flow plans hold the lists). Appending every chunk of a node gives exactly
        :meth:`pcap_bytes` of an undrained run."""
        out: list[tuple[str, bytes]] = []
        for node, r in self.records.items():
            if not r:
                continue
            data = b"".join(r)
            r.clear()
            if node not in self._started:
                self._started.add(node)
                data = _GLOBAL_HDR.pack(0xA1B2C3D4, 2, 4, 0, 0, 262144, LINKTYPE_RAW) + data
            out.append((node, data))
        return out

    def drained_nodes(self) -> list[str]:
        """Nodes whose capture :meth:`drain` has started handing out."""
        return [n for n in self.records if n in self._started]

    @staticmethod
    def file_name(node: str) -> str:
        """The file name of ``node``'s capture (unsafe characters replaced)."""
        return f"{_safe(node)}.pcap"

    def file_names(self) -> dict[str, str]:
        """node -> the file name used by :meth:`write` (node ids with unsafe characters replaced)."""
        return {n: f"{_safe(n)}.pcap" for n, r in self.records.items() if r}

    def write(self, directory: str | Path) -> list[Path]:
        """Write one ``<node>.pcap`` per node into ``directory``; returns the paths."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        out = []
        for node, name in self.file_names().items():
            p = d / name
            p.write_bytes(self.pcap_bytes(node))
            out.append(p)
        return out

    def clear(self) -> None:
        """Forget the records (the per-node lists are emptied in place: the dataplane may hold them)."""
        for r in self.records.values():
            r.clear()
