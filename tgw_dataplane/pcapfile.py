"""Classic pcap input for replays: a whole-file check first, then a streaming read of (timestamp, raw IP frame).

The caller opens the file (this module only reads from a binary file object it is given). :func:`check_pcap`
walks every record header once, without keeping frames, and raises :class:`emulator.errors.ConfigError` for
anything that would stop a replay half-way: a short or unknown file header (pcapng is named as such), a link
type the dataplane cannot take, a record whose captured length is larger than :data:`MAX_RECORD` (libpcap's
``MAXIMUM_SNAPLEN``: no capture tool writes more, so such a length means a corrupt file) and a file cut short
inside a record. :func:`iter_frames` then yields the frames one at a time, so memory does not grow with the
capture's length.

Formats (the pcap file format, draft-ietf-opsawg-pcap §4-§5): magic ``a1b2c3d4`` (microsecond timestamps) or
``a1b23c4d`` (nanosecond), in either byte order. Link types: 1 (Ethernet: IPv4/IPv6 ethertypes are unwrapped,
other frames become empty and are dropped by the parser as ``truncated``), 101, 228, 229 and the BSD raw
types 12 and 14 (raw IP).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from emulator.errors import ConfigError
from tgw_dataplane.checks import show_path

MAX_RECORD = 262144
"""Largest captured length accepted per record (libpcap's MAXIMUM_SNAPLEN)."""
LINK_TYPES = {1: "Ethernet", 101: "raw IP", 228: "raw IPv4", 229: "raw IPv6", 12: "raw IP (BSD)", 14: "raw IP (BSD)"}
_MAGIC = {
    b"\xd4\xc3\xb2\xa1": ("<", 1e6),
    b"\x4d\x3c\xb2\xa1": ("<", 1e9),
    b"\xa1\xb2\xc3\xd4": (">", 1e6),
    b"\xa1\xb2\x3c\x4d": (">", 1e9),
}
_PCAPNG = b"\x0a\x0d\x0d\x0a"
_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class PcapInfo:
    """What :func:`check_pcap` found: byte order (``<``/``>``), timestamp units per second, link type, and the
    number of records."""

    endian: str
    units: float
    linktype: int
    records: int


def _header(head: bytes, name: str) -> tuple[str, float, int]:
    name = show_path(name)
    if len(head) < 24:
        raise ConfigError(f"pcap {name}: {len(head)} bytes, too short for a pcap file header (24 bytes)")
    magic = head[:4]
    if magic == _PCAPNG:
        raise ConfigError(f"pcap {name}: pcapng is not supported (classic pcap only; convert with editcap -F pcap)")
    fmt = _MAGIC.get(magic)
    if fmt is None:
        raise ConfigError(
            f"pcap {name}: magic number {magic.hex()} is not a classic pcap's "
            "(allowed: a1b2c3d4 or a1b23c4d, either byte order)"
        )
    endian, units = fmt
    linktype = struct.unpack(endian + "I", head[20:24])[0] & 0xFFFF
    if linktype not in LINK_TYPES:
        allowed = ", ".join(f"{k} ({v})" for k, v in sorted(LINK_TYPES.items()))
        raise ConfigError(f"pcap {name}: link type {linktype} is not supported (allowed: {allowed})")
    return endian, units, linktype


def check_pcap(f: BinaryIO, name: str) -> PcapInfo:
    """Check a whole capture from the current position (its start) without keeping frames; leaves ``f`` at the
    end. Raises ConfigError naming the file, the record and what is wrong."""
    name = show_path(name)
    endian, units, linktype = _header(f.read(24), name)
    rec = struct.Struct(endian + "IIII")
    n = 0
    pos = 24  # file offset of buf[0]
    buf = b""
    off = 0
    while True:
        if len(buf) - off < 16:
            more = f.read(_CHUNK)
            buf = buf[off:] + more
            pos += off
            off = 0
            if not more:
                break
            continue
        _sec, _frac, incl, _orig = rec.unpack_from(buf, off)
        if incl > MAX_RECORD:
            raise ConfigError(
                f"pcap {name}: record {n + 1} (byte {pos + off}): captured length {incl} is larger than "
                f"{MAX_RECORD} (allowed: 0..{MAX_RECORD}); the file is corrupt"
            )
        end = off + 16 + incl
        if end > len(buf):
            # The record runs past the buffer: keep only its start, then read at least the rest of it.
            buf = buf[off:]
            pos += off
            off = 0
            end = 16 + incl
            while end > len(buf):
                more = f.read(max(_CHUNK, end - len(buf)))
                if not more:
                    raise ConfigError(
                        f"pcap {name}: record {n + 1} (byte {pos}) is cut short: it needs {16 + incl} bytes, "
                        f"{len(buf)} are left (the file is truncated)"
                    )
                buf += more
        off = end
        n += 1
    if len(buf) - off:
        raise ConfigError(
            f"pcap {name}: {len(buf) - off} stray bytes after record {n} (byte {pos + off}): a record header "
            "needs 16 (the file is truncated)"
        )
    return PcapInfo(endian, units, linktype, n)


def iter_frames(f: BinaryIO, info: PcapInfo) -> Iterator[tuple[float, bytes]]:
    """(timestamp in seconds, raw IPv4/IPv6 frame) for every record of a capture :func:`check_pcap` accepted,
    read from its start (``f`` at offset 0)."""
    f.read(24)
    rec = struct.Struct(info.endian + "IIII")
    unpack = rec.unpack_from
    units = info.units
    ether = info.linktype == 1
    buf = b""
    off = 0
    while True:
        if len(buf) - off < 16:
            more = f.read(_CHUNK)
            if not more:
                return
            buf = buf[off:] + more
            off = 0
            continue
        sec, frac, incl, _orig = unpack(buf, off)
        end = off + 16 + incl
        if end > len(buf):
            more = f.read(max(_CHUNK, end - len(buf)))
            if not more:
                return  # cannot happen after check_pcap (the file changed under us): stop
            buf = buf[off:] + more
            off = 0
            continue
        frame = buf[off + 16 : end]
        off = end
        if ether:
            if len(frame) < 14 or frame[12:14] not in (b"\x08\x00", b"\x86\xdd"):
                frame = b""  # not IP: dropped as truncated by the parser
            else:
                frame = frame[14:]
        yield sec + frac / units, frame
