"""GENEVE codec (tgw_dataplane.geneve): round trips, strict rejection, scapy and tshark as independent oracles."""

from __future__ import annotations

import ipaddress
import struct
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emulator.pcap import LINKTYPE_RAW, PcapWriter
from tests.tools import require_tool
from tgw_dataplane import geneve as g

# ---- helpers: inner packets built by hand (no scapy) so hypothesis stays fast ----------------------------------


def ipv4_packet(src: str, dst: str, proto: int = 6, payload: bytes = b"", ttl: int = 64) -> bytes:
    hdr = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0,
        20 + len(payload),
        1,
        0,
        ttl,
        proto,
        0,
        ipaddress.IPv4Address(src).packed,
        ipaddress.IPv4Address(dst).packed,
    )
    return hdr + payload


def ipv6_packet(src: str, dst: str, nh: int = 17, payload: bytes = b"") -> bytes:
    return (
        struct.pack("!IHBB", 6 << 28, len(payload), nh, 64)
        + ipaddress.IPv6Address(src).packed
        + ipaddress.IPv6Address(dst).packed
        + payload
    )


META = g.GwlbMetadata(
    endpoint_id=g.vpce_id_to_int("vpce-0a1b2c3d4e5f60718"),
    attachment_id=0x1122334455667788,
    flow_cookie=0xDEADBEEF,
)


def test_layout_matches_tgw_md_byte_table() -> None:
    inner = ipv4_packet("10.0.1.10", "10.1.2.20")
    out = g.encapsulate(inner, META)
    assert len(out) - len(inner) == g.GWLB_HEADER_LEN == 40
    assert g.OUTER_OVERHEAD == 68
    # b0: version 0, Opt Len 8 (32 bytes / 4); b1: O=0, C=0; protocol 0x0800; VNI 0.
    assert out[:8] == bytes([0x08, 0x00, 0x08, 0x00, 0, 0, 0, 0])
    assert out[8:12] == bytes([0x01, 0x08, 0x01, 0x02])
    assert out[12:20] == (0x0A1B2C3D4E5F60718).to_bytes(8, "big")
    assert out[20:24] == bytes([0x01, 0x08, 0x02, 0x02])
    assert out[24:32] == bytes.fromhex("1122334455667788")
    assert out[32:36] == bytes([0x01, 0x08, 0x03, 0x01])
    assert out[36:40] == bytes.fromhex("deadbeef")
    assert out[40:] == inner
    v6 = ipv6_packet("2001:db8::1", "2001:db8::2")
    assert g.encapsulate(v6, META)[2:4] == b"\x86\xdd"


def test_vpce_id_conversion() -> None:
    assert g.int_to_vpce_id(g.vpce_id_to_int("vpce-0123456789abcdef0")) == "vpce-0123456789abcdef0"
    for bad in ("vpc-0123", "vpce-", "vpce-1123456789abcdef0", "vpce-0x12", "vpce-ABC", "vpce-1_2"):
        with pytest.raises(ValueError):
            g.vpce_id_to_int(bad)


def test_metadata_ranges() -> None:
    with pytest.raises(ValueError, match="flow_cookie"):
        g.GwlbMetadata(1, 2, 1 << 32)
    with pytest.raises(ValueError, match="vni"):
        g.GwlbMetadata(1, 2, 3, vni=1 << 24)


@given(
    eid=st.integers(0, 2**64 - 1),
    att=st.integers(0, 2**64 - 1),
    cookie=st.integers(0, 2**32 - 1),
    vni=st.integers(0, 2**24 - 1),
    v6=st.booleans(),
    payload=st.binary(max_size=64),
)
def test_round_trip(eid: int, att: int, cookie: int, vni: int, v6: bool, payload: bytes) -> None:
    meta = g.GwlbMetadata(eid, att, cookie, vni)
    inner = (
        ipv6_packet("2001:db8::1", "2001:db8::2", 17, payload)
        if v6
        else ipv4_packet("10.0.0.1", "10.9.9.9", 17, payload)
    )
    got_meta, got_inner = g.decapsulate(g.encapsulate(inner, meta))
    assert got_meta == meta
    assert got_inner == inner
    outer = g.encapsulate_ipv4(inner, meta, 0x0A000001, 0x0A000002, g.geneve_source_port(cookie))
    hdr, m2, i2 = g.decapsulate_ipv4(outer)
    assert (hdr.src, hdr.dst, hdr.dst_port) == (0x0A000001, 0x0A000002, 6081)
    assert 49152 <= hdr.src_port <= 65535
    assert (m2, i2) == (meta, inner)


def _generic_options(opts: list[tuple[int, int, bytes]], proto: int = 0x0800, first: int = 0) -> bytes:
    body = b"".join(struct.pack("!HBB", c, t, len(d) // 4) + d for c, t, d in opts)
    return bytes([first | (len(body) // 4), 0]) + struct.pack("!HI", proto, 0) + body


AWS_OPTS = [
    (0x0108, 1, (5).to_bytes(8, "big")),
    (0x0108, 2, (6).to_bytes(8, "big")),
    (0x0108, 3, (7).to_bytes(4, "big")),
]


def test_generic_path_accepts_reordered_and_extra_noncritical_options() -> None:
    inner = ipv4_packet("10.0.0.1", "10.0.0.2")
    opts = [(0x0101, 0x05, b"\0" * 4), AWS_OPTS[2], AWS_OPTS[0], AWS_OPTS[1]]
    meta, got = g.decapsulate(_generic_options(opts) + inner)
    assert (meta.endpoint_id, meta.attachment_id, meta.flow_cookie) == (5, 6, 7)
    assert got == inner


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"\x08\x00\x08", g.GeneveDropReason.TOO_SHORT),
        (
            bytes([0x40]) + _generic_options(AWS_OPTS)[1:] + ipv4_packet("1.1.1.1", "2.2.2.2"),
            g.GeneveDropReason.BAD_VERSION,
        ),
        (
            _generic_options(AWS_OPTS)[:1]
            + b"\x80"
            + _generic_options(AWS_OPTS)[2:]
            + ipv4_packet("1.1.1.1", "2.2.2.2"),
            g.GeneveDropReason.OAM_PACKET,
        ),
        (_generic_options(AWS_OPTS, proto=0x6558) + b"\0" * 20, g.GeneveDropReason.BAD_PROTOCOL),
        (_generic_options(AWS_OPTS)[:-4], g.GeneveDropReason.OPTIONS_TRUNCATED),
        (_generic_options(AWS_OPTS[:2]) + ipv4_packet("1.1.1.1", "2.2.2.2"), g.GeneveDropReason.MISSING_GWLB_OPTIONS),
        (_generic_options([]) + ipv4_packet("1.1.1.1", "2.2.2.2"), g.GeneveDropReason.MISSING_GWLB_OPTIONS),
        (
            _generic_options([*AWS_OPTS, AWS_OPTS[2]]) + ipv4_packet("1.1.1.1", "2.2.2.2"),
            g.GeneveDropReason.BAD_AWS_OPTION,
        ),
        (
            _generic_options([AWS_OPTS[0], AWS_OPTS[1], (0x0108, 3, b"\0" * 8)]) + ipv4_packet("1.1.1.1", "2.2.2.2"),
            g.GeneveDropReason.BAD_AWS_OPTION,
        ),
        (
            _generic_options([*AWS_OPTS, (0x0101, 0x85, b"")]) + ipv4_packet("1.1.1.1", "2.2.2.2"),
            g.GeneveDropReason.UNKNOWN_CRITICAL_OPTION,
        ),
        (g.encapsulate(ipv4_packet("1.1.1.1", "2.2.2.2"), META)[:-1], g.GeneveDropReason.INNER_TRUNCATED),
        (g.encapsulate(ipv4_packet("1.1.1.1", "2.2.2.2"), META) + b"\0", g.GeneveDropReason.INNER_LENGTH_MISMATCH),
        (g.encapsulate(ipv4_packet("1.1.1.1", "2.2.2.2"), META)[:40], g.GeneveDropReason.INNER_TRUNCATED),
        (
            _generic_options(AWS_OPTS, proto=0x86DD) + ipv4_packet("1.1.1.1", "2.2.2.2") + b"\0" * 20,
            g.GeneveDropReason.INNER_VERSION_MISMATCH,
        ),
        (_generic_options(AWS_OPTS) + ipv6_packet("::1", "::2"), g.GeneveDropReason.INNER_VERSION_MISMATCH),
    ],
)
def test_rejections_are_typed(payload: bytes, reason: g.GeneveDropReason) -> None:
    with pytest.raises(g.GeneveDecodeError) as ei:
        g.decapsulate(payload)
    assert ei.value.reason is reason


def test_option_crossing_opt_len_is_truncation() -> None:
    # Opt Len says 4 bytes of options, but the option header inside claims 8 bytes of data.
    p = bytes([0x01, 0]) + struct.pack("!HI", 0x0800, 0) + struct.pack("!HBB", 0x0108, 1, 2) + b"\0" * 8
    with pytest.raises(g.GeneveDecodeError) as ei:
        g.decapsulate(p + ipv4_packet("1.1.1.1", "2.2.2.2"))
    assert ei.value.reason is g.GeneveDropReason.OPTIONS_TRUNCATED


def test_outer_rejections() -> None:
    good = g.encapsulate_ipv4(ipv4_packet("1.1.1.1", "2.2.2.2"), META, 1, 2, 50000)
    for bad in (good[:27], good[:-1], good[:22] + b"\x12\x34" + good[24:], b"\x46" + good[1:]):
        with pytest.raises(g.GeneveDecodeError) as ei:
            g.decapsulate_ipv4(bad)
        assert ei.value.reason is g.GeneveDropReason.OUTER_NOT_GENEVE


@settings(max_examples=500)
@given(st.binary(max_size=200))
def test_fuzz_never_raises_anything_but_decode_error(data: bytes) -> None:
    try:
        meta, inner = g.decapsulate(data)
    except g.GeneveDecodeError as e:
        assert isinstance(e.reason, g.GeneveDropReason)
    else:
        assert len(inner) <= len(data) - g.GWLB_HEADER_LEN
        assert meta.flow_cookie < 2**32


@settings(max_examples=300)
@given(st.binary(min_size=1, max_size=40), st.integers(0, 120), st.booleans())
def test_fuzz_mutations_of_a_valid_packet(junk: bytes, at: int, outer: bool) -> None:
    # Overwrite, splice or cut a valid packet anywhere: the only allowed exception is the typed one.
    inner = ipv4_packet("10.0.0.1", "10.0.0.2", 6, b"x" * 20)
    good = g.encapsulate_ipv4(inner, META, 1, 2, 3) if outer else g.encapsulate(inner, META)
    decode = g.decapsulate_ipv4 if outer else g.decapsulate
    at = min(at, len(good))
    for data in (good[:at] + junk + good[at + len(junk) :], good[:at] + junk, good[:at]):
        try:
            decode(data)
        except g.GeneveDecodeError as e:
            assert isinstance(e.reason, g.GeneveDropReason)


# ---- scapy as an independent dissector ------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    eid=st.integers(0, 2**64 - 1),
    att=st.integers(0, 2**64 - 1),
    cookie=st.integers(0, 2**32 - 1),
    vni=st.integers(0, 2**24 - 1),
    v6=st.booleans(),
)
def test_scapy_dissects_our_bytes(eid: int, att: int, cookie: int, vni: int, v6: bool) -> None:
    from scapy.contrib.geneve import GENEVE
    from scapy.layers.inet import IP, TCP, UDP
    from scapy.layers.inet6 import IPv6

    inner_pkt = (IPv6(src="2001:db8::a", dst="2001:db8::b") if v6 else IP(src="10.0.1.10", dst="10.1.2.20")) / TCP(
        sport=40000, dport=443, flags="S"
    )
    inner = bytes(inner_pkt)
    outer = g.encapsulate_ipv4(inner, g.GwlbMetadata(eid, att, cookie, vni), 0x0A640A0A, 0x0A640B0B, 50123)
    p = IP(outer)
    assert p[UDP].dport == 6081
    gen = p[GENEVE]
    assert (gen.version, gen.optionlen, gen.oam, gen.critical, gen.vni) == (0, 8, 0, 0, vni)
    assert gen.proto == (0x86DD if v6 else 0x0800)
    opts = [(o.classid, o.type, o.length, bytes(o.data)) for o in gen.options]
    assert opts == [
        (0x0108, 1, 2, eid.to_bytes(8, "big")),
        (0x0108, 2, 2, att.to_bytes(8, "big")),
        (0x0108, 3, 1, cookie.to_bytes(4, "big")),
    ]
    inner_layer = gen[IPv6] if v6 else gen[IP]
    assert bytes(inner_layer) == inner
    # scapy recomputes the header checksum when we clear it: ours must equal its value.
    q = IP(outer)
    del q.chksum
    assert IP(bytes(q)).chksum == IP(outer).chksum


def test_scapy_built_geneve_decodes() -> None:
    """The other direction: a packet scapy builds (as a target would send it back) parses with our codec."""
    from scapy.contrib.geneve import GENEVE, GeneveOptions
    from scapy.layers.inet import IP, UDP

    inner = bytes(IP(src="10.1.2.20", dst="10.0.1.10", proto=1) / b"\x00\x00\xff\xff\x00\x00\x00\x00")
    pkt = (
        IP(src="10.100.1.5", dst="10.100.1.200")
        / UDP(sport=6081, dport=6081)
        / GENEVE(
            proto=0x0800,
            options=[
                GeneveOptions(classid=0x0108, type=3, data=(99).to_bytes(4, "big")),
                GeneveOptions(classid=0x0108, type=1, data=(11).to_bytes(8, "big")),
                GeneveOptions(classid=0x0108, type=2, data=(22).to_bytes(8, "big")),
            ],
        )
        / IP(inner)
    )
    hdr, meta, got = g.decapsulate_ipv4(bytes(pkt))
    assert (meta.endpoint_id, meta.attachment_id, meta.flow_cookie) == (11, 22, 99)
    assert got == inner
    assert hdr.src == int(ipaddress.IPv4Address("10.100.1.5"))


# ---- tshark as a second independent dissector ------------------------------------------------------------------


def _need(tool: str) -> str:
    return require_tool(tool)


@pytest.mark.realpeer
def test_tshark_dissects_our_pcap_without_malformed_packets(tmp_path: Path) -> None:
    tshark = _need("tshark")
    from scapy.layers.inet import IP, TCP, UDP
    from scapy.layers.inet6 import IPv6

    inners = [
        bytes(IP(src="10.0.1.10", dst="10.1.2.20") / TCP(sport=40000, dport=443, flags="S")),
        bytes(IP(src="10.1.2.20", dst="10.0.1.10") / TCP(sport=443, dport=40000, flags="SA")),
        bytes(IPv6(src="2001:db8::a", dst="2001:db8::b") / UDP(sport=40001, dport=40002) / (b"q" * 10)),
    ]
    path = tmp_path / "geneve.pcap"
    w = PcapWriter.open(str(path), LINKTYPE_RAW)
    for i, inner in enumerate(inners):
        meta = g.GwlbMetadata(g.vpce_id_to_int("vpce-0a1b2c3d4e5f60718"), 0x1122334455667788, 0x1000 + i)
        w.write(float(i), g.encapsulate_ipv4(inner, meta, 0x0A640A0A, 0x0A640B0B, g.geneve_source_port(i)))
    w.close()
    out = subprocess.run(
        [
            tshark,
            "-n",
            "-r",
            str(path),
            "-T",
            "fields",
            "-E",
            "separator=|",
            "-e",
            "geneve.option.class",
            "-e",
            "geneve.option.type",
            "-e",
            "geneve.proto_type",
            "-e",
            "ip.src",
            "-e",
            "ipv6.src",
            "-e",
            "_ws.malformed",
            "-e",
            "_ws.expert.severity",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    lines = [ln.split("|") for ln in out.stdout.strip().splitlines()]
    assert len(lines) == 3
    for ln in lines:
        assert ln[5] == "", f"malformed: {ln}"
        assert "0x0108" in ln[0].replace("0x00000108", "0x0108") or "264" in ln[0]
    assert lines[0][2] in ("0x0800", "0x00000800")
    assert lines[2][2] in ("0x86dd", "0x000086dd")
    # The inner IPv4/IPv6 source is dissected below GENEVE (outer 10.100.10.10 comes first).
    assert "10.0.1.10" in lines[0][3] and "10.100.10.10" in lines[0][3]
    assert "2001:db8::a" in lines[2][4]
    # Nothing in the capture is flagged Malformed anywhere (a second check over the text output).
    text = subprocess.run([tshark, "-n", "-r", str(path), "-V"], capture_output=True, text=True, check=True, timeout=60)
    assert "Malformed" not in text.stdout
    assert text.stdout.count("Generic Network Virtualization Encapsulation") == 3
