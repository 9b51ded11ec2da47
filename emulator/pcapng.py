"""A small pcapng writer and reader (no scapy, no third-party library): enough for captures that explain
themselves, with a comment on every packet and a named interface per capture point.

pcapng (IETF draft-ietf-opsawg-pcapng, the format Wireshark writes by default) is a sequence of blocks, each
``block type (u32), block total length (u32), body, block total length (u32)``, the body padded to 32 bits.
This module writes three block types:

* Section Header Block (SHB, type ``0x0A0D0D0A``): byte-order magic ``0x1A2B3C4D``, version 1.0, section
  length -1 (not computed), options ``shb_userappl`` (4) and a comment.
* Interface Description Block (IDB, type 1): link type, snap length, options ``if_name`` (2),
  ``if_description`` (3) and ``if_tsresol`` (9; we write 6, microseconds, which is also the default).
* Enhanced Packet Block (EPB, type 6): interface id, a 64-bit timestamp in ``if_tsresol`` units split into
  high and low 32-bit words, captured and original length, the packet, and the option ``opt_comment`` (1):
  UTF-8 text that Wireshark shows as the packet comment and tshark as ``frame.comment``.

Options are ``code (u16), length (u16), value`` padded to 32 bits and closed by ``opt_endofopt`` (0, 0).
Everything is written little-endian (a reader learns the byte order from the magic).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import BinaryIO

SHB_TYPE = 0x0A0D0D0A
IDB_TYPE = 0x00000001
EPB_TYPE = 0x00000006
BYTE_ORDER_MAGIC = 0x1A2B3C4D

OPT_ENDOFOPT = 0
OPT_COMMENT = 1
SHB_USERAPPL = 4
IF_NAME = 2
IF_DESCRIPTION = 3
IF_TSRESOL = 9

_HDR = struct.Struct("<II")
_SHB = struct.Struct("<IHHq")
_IDB = struct.Struct("<HHI")
_EPB = struct.Struct("<IIIII")
_OPT = struct.Struct("<HH")


def _pad(n: int) -> int:
    return (4 - n % 4) % 4


def _options(opts: list[tuple[int, bytes]]) -> bytes:
    if not opts:
        return b""
    out = bytearray()
    for code, value in opts:
        out += _OPT.pack(code, len(value)) + value + b"\0" * _pad(len(value))
    out += _OPT.pack(OPT_ENDOFOPT, 0)
    return bytes(out)


def _block(btype: int, body: bytes) -> bytes:
    body += b"\0" * _pad(len(body))
    total = len(body) + 12
    return _HDR.pack(btype, total) + body + struct.pack("<I", total)


class PcapngWriter:
    """Writes one pcapng section. Add interfaces first, then packets (each names its interface by the index
    :meth:`add_interface` returned). Timestamps are integer microseconds, so that a virtual-time capture keeps
    exactly the instants its classic-pcap twin has."""

    def __init__(self, f: BinaryIO, *, application: str = "awsnetemu", comment: str | None = None) -> None:
        self._f = f
        self.count = 0
        self.interfaces: list[str] = []
        opts = [(SHB_USERAPPL, application.encode())]
        if comment:
            opts.append((OPT_COMMENT, comment.encode()))
        f.write(_block(SHB_TYPE, _SHB.pack(BYTE_ORDER_MAGIC, 1, 0, -1) + _options(opts)))

    def add_interface(
        self, linktype: int, name: str | None = None, description: str | None = None, snaplen: int = 262144
    ) -> int:
        """Declare a capture interface (link type, e.g. 101 raw IP); returns its id for :meth:`write`."""
        opts: list[tuple[int, bytes]] = []
        if name:
            opts.append((IF_NAME, name.encode()))
        if description:
            opts.append((IF_DESCRIPTION, description.encode()))
        opts.append((IF_TSRESOL, bytes([6])))  # 10^-6 s: microseconds
        self._f.write(_block(IDB_TYPE, _IDB.pack(linktype, 0, snaplen) + _options(opts)))
        self.interfaces.append(name or f"if{len(self.interfaces)}")
        return len(self.interfaces) - 1

    def write(self, frame: bytes, *, ts_us: int, interface: int = 0, comment: str | None = None) -> None:
        """One Enhanced Packet Block: ``frame`` captured at ``ts_us`` microseconds since the Unix epoch."""
        if not 0 <= interface < len(self.interfaces):
            raise ValueError(f"interface {interface} was not added (have {len(self.interfaces)})")
        opts = [(OPT_COMMENT, comment.encode())] if comment else []
        body = (
            _EPB.pack(interface, (ts_us >> 32) & 0xFFFFFFFF, ts_us & 0xFFFFFFFF, len(frame), len(frame))
            + frame
            + b"\0" * _pad(len(frame))
            + _options(opts)
        )
        self._f.write(_block(EPB_TYPE, body))
        self.count += 1

    def close(self) -> None:
        self._f.close()


@dataclass
class PcapngPacket:
    """One packet read back: interface id, timestamp (microseconds), bytes and its comments."""

    interface: int
    ts_us: int
    data: bytes
    comments: list[str] = field(default_factory=list)


@dataclass
class PcapngFile:
    """What :func:`read_pcapng` found: interfaces as (link type, name), packets, the section's comments."""

    interfaces: list[tuple[int, str | None]]
    packets: list[PcapngPacket]
    comments: list[str]


def _parse_options(data: bytes, end: str) -> list[tuple[int, bytes]]:
    out = []
    off = 0
    while off + 4 <= len(data):
        code, n = struct.unpack_from(end + "HH", data, off)
        off += 4
        if code == OPT_ENDOFOPT:
            break
        out.append((code, data[off : off + n]))
        off += n + _pad(n)
    return out


def read_pcapng(path: str) -> PcapngFile:
    """Read a pcapng file (one or more sections, either byte order; SHB, IDB and EPB, other blocks skipped).
    Timestamps are returned in microseconds whatever ``if_tsresol`` says (power-of-ten resolutions only)."""
    with open(path, "rb") as f:
        buf = f.read()
    end = "<"
    ifaces: list[tuple[int, str | None]] = []
    resol: list[int] = []
    packets: list[PcapngPacket] = []
    comments: list[str] = []
    off = 0
    while off + 12 <= len(buf):
        btype = struct.unpack_from("<I", buf, off)[0]
        if btype == SHB_TYPE:
            magic = struct.unpack_from("<I", buf, off + 8)[0]
            end = "<" if magic == BYTE_ORDER_MAGIC else ">"
            ifaces, resol = [], []
        total = struct.unpack_from(end + "I", buf, off + 4)[0]
        if total < 12 or off + total > len(buf):
            raise ValueError(f"{path}: block at offset {off} has a bad length {total}")
        body = buf[off + 8 : off + total - 4]
        if btype == SHB_TYPE:
            comments += [v.decode() for c, v in _parse_options(body[16:], end) if c == OPT_COMMENT]
        elif btype == IDB_TYPE:
            linktype = struct.unpack_from(end + "H", body, 0)[0]
            opts = dict(_parse_options(body[8:], end))
            name = opts[IF_NAME].decode() if IF_NAME in opts else None
            ts = opts.get(IF_TSRESOL, bytes([6]))[0]
            if ts & 0x80:
                raise ValueError(f"{path}: binary if_tsresol {ts:#x} is not supported")
            ifaces.append((linktype, name))
            resol.append(ts)
        elif btype == EPB_TYPE:
            iface, hi, lo, caplen, _orig = struct.unpack_from(end + "IIIII", body, 0)
            data = body[20 : 20 + caplen]
            ts = (hi << 32) | lo
            r = resol[iface]
            ts_us = ts * 10 ** (6 - r) if r <= 6 else ts // 10 ** (r - 6)
            opts_raw = body[20 + caplen + _pad(caplen) :]
            cm = [v.decode() for c, v in _parse_options(opts_raw, end) if c == OPT_COMMENT]
            packets.append(PcapngPacket(iface, ts_us, data, cm))
        off += total
    return PcapngFile(ifaces, packets, comments)


def read_pcap_us(path: str) -> tuple[int, list[tuple[int, bytes]]]:
    """A classic pcap (either byte order, micro- or nanosecond) as (link type, [(timestamp in µs, frame)]),
    keeping the integer timestamps (a float would lose microseconds at Unix-epoch magnitudes)."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 24:
        raise ValueError(f"{path}: too short for a pcap header")
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        end = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        end = ">"
    else:
        raise ValueError(f"{path}: not a classic pcap file")
    nano = magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
    linktype = struct.unpack(end + "I", data[20:24])[0] & 0xFFFF
    rec = struct.Struct(end + "IIII")
    out: list[tuple[int, bytes]] = []
    off = 24
    while off + 16 <= len(data):
        sec, frac, incl, _orig = rec.unpack_from(data, off)
        off += 16
        if off + incl > len(data):
            raise ValueError(f"{path}: the last record is cut off ({len(data) - off} of {incl} octets)")
        out.append((sec * 1_000_000 + (frac // 1000 if nano else frac), data[off : off + incl]))
        off += incl
    return linktype, out
