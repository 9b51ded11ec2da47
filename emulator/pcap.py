"""A small classic-pcap writer (no scapy at run time) and IPv4/IPv6 + UDP header synthesis.

Simulated traffic has no real IP layer, so :func:`udp_frame` builds one (with correct checksums) around each
UDP payload; Wireshark then dissects ports 500/4500 as ISAKMP / UDP-encapsulated ISAKMP.
"""

from __future__ import annotations

import ipaddress
import struct
from typing import BinaryIO

LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101  # raw IPv4/IPv6, no link layer

_GLOBAL_HDR = struct.Struct("<IHHiIII")
_REC_HDR = struct.Struct("<IIII")
_IPV4 = struct.Struct("!BBHHHBBH4s4s")
_UDP = struct.Struct("!HHHH")
_IPV6 = struct.Struct("!IHBB16s16s")


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


def ipv4_header(src: bytes, dst: bytes, proto: int, payload_len: int, ident: int = 0, ttl: int = 64) -> bytes:
    hdr = _IPV4.pack(0x45, 0, 20 + payload_len, ident & 0xFFFF, 0x4000, ttl, proto, 0, src, dst)
    return hdr[:10] + struct.pack("!H", _checksum(hdr)) + hdr[12:]


def udp_frame(src_ip: str, sport: int, dst_ip: str, dport: int, payload: bytes, ident: int = 0) -> bytes:
    """An IPv4 or IPv6 packet carrying ``payload`` in UDP, checksums filled in."""
    s = ipaddress.ip_address(src_ip)
    d = ipaddress.ip_address(dst_ip)
    ulen = 8 + len(payload)
    if s.version == 4 and d.version == 4:
        pseudo = s.packed + d.packed + struct.pack("!BBH", 0, 17, ulen)
        csum = _checksum(pseudo + _UDP.pack(sport, dport, ulen, 0) + payload) or 0xFFFF
        udp = _UDP.pack(sport, dport, ulen, csum) + payload
        return ipv4_header(s.packed, d.packed, 17, len(udp), ident) + udp
    if s.version == 6 and d.version == 6:
        pseudo = s.packed + d.packed + struct.pack("!I3xB", ulen, 17)
        csum = _checksum(pseudo + _UDP.pack(sport, dport, ulen, 0) + payload) or 0xFFFF
        udp = _UDP.pack(sport, dport, ulen, csum) + payload
        return _IPV6.pack(6 << 28, ulen, 17, 64, s.packed, d.packed) + udp
    raise ValueError(f"mixed address families: {src_ip} -> {dst_ip}")


class PcapWriter:
    """Writes classic pcap (microsecond timestamps). ``ts_origin`` is added to every (virtual) timestamp."""

    def __init__(
        self, f: BinaryIO, linktype: int = LINKTYPE_RAW, snaplen: int = 262144, ts_origin: float = 0.0
    ) -> None:
        self._f = f
        self.linktype = linktype
        self.ts_origin = ts_origin
        self.count = 0
        f.write(_GLOBAL_HDR.pack(0xA1B2C3D4, 2, 4, 0, 0, snaplen, linktype))

    @classmethod
    def open(cls, path: str, linktype: int = LINKTYPE_RAW, ts_origin: float = 0.0) -> PcapWriter:
        return cls(open(path, "wb"), linktype, ts_origin=ts_origin)

    def write(self, ts: float, frame: bytes) -> None:
        t = ts + self.ts_origin
        sec = int(t)
        usec = round((t - sec) * 1_000_000)
        if usec >= 1_000_000:
            sec, usec = sec + 1, usec - 1_000_000
        self._f.write(_REC_HDR.pack(sec, usec, len(frame), len(frame)))
        self._f.write(frame)
        self.count += 1

    def write_udp(self, ts: float, src: tuple[str, int], dst: tuple[str, int], payload: bytes) -> None:
        frame = udp_frame(src[0], src[1], dst[0], dst[1], payload, ident=self.count)
        if self.linktype == LINKTYPE_ETHERNET:
            etype = b"\x86\xdd" if ":" in src[0] else b"\x08\x00"
            frame = b"\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01" + etype + frame
        self.write(ts, frame)

    def flush(self) -> None:
        self._f.flush()

    def close(self) -> None:
        self._f.close()


def read_pcap(path: str) -> list[tuple[float, bytes]]:
    """Read a classic pcap written by :class:`PcapWriter` (or any little-endian microsecond pcap)."""
    out: list[tuple[float, bytes]] = []
    with open(path, "rb") as f:
        hdr = f.read(24)
        magic = struct.unpack("<I", hdr[:4])[0]
        if magic != 0xA1B2C3D4:
            raise ValueError(f"{path}: not a little-endian microsecond pcap (magic {magic:#x})")
        while True:
            rh = f.read(16)
            if len(rh) < 16:
                break
            sec, usec, incl, _orig = _REC_HDR.unpack(rh)
            out.append((sec + usec / 1e6, f.read(incl)))
    return out
