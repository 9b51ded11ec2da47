"""The 28-byte ISAKMP header (RFC 2408 §3.1; IKEv2 keeps the same layout, RFC 7296 §3.1).

::

     0                   1                   2                   3
     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    !                          Initiator                            !
    !                            Cookie                             !
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    !                          Responder                            !
    !                            Cookie                             !
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    !  Next Payload ! MjVer ! MnVer ! Exchange Type !     Flags     !
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    !                          Message ID                           !
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    !                            Length                             !
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from cgw_peer.errors import DecodeError

HEADER = struct.Struct(">8s8sBBBBII")
HEADER_LEN = HEADER.size  # 28


@dataclass(frozen=True, slots=True)
class IsakmpHeader:
    """A decoded ISAKMP header."""

    icookie: bytes
    rcookie: bytes
    next_payload: int
    version: int
    exchange: int
    flags: int
    message_id: int
    length: int


def parse_header(data: bytes, *, major: int = 1) -> IsakmpHeader:
    """Decode and check the header of one ISAKMP message (``data`` is the whole message, no marker).

    Rules: at least 28 bytes; major version ``major``; ``length`` equal to ``len(data)`` (RFC 2408 §3.1:
    "Length of total message (header + payloads) in octets").
    """
    if len(data) < HEADER_LEN:
        raise DecodeError("truncated_header", f"{len(data)} bytes")
    icky, rcky, np, ver, exch, flags, mid, length = HEADER.unpack_from(data)
    if ver >> 4 != major:
        raise DecodeError("bad_version", f"0x{ver:02x}")
    if length != len(data):
        raise DecodeError("length_mismatch", f"header says {length}, datagram has {len(data)}")
    return IsakmpHeader(icky, rcky, np, ver, exch, flags, mid, length)


def encode_header(h: IsakmpHeader) -> bytes:
    return HEADER.pack(h.icookie, h.rcookie, h.next_payload, h.version, h.exchange, h.flags, h.message_id, h.length)
