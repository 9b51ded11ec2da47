"""Quick Mode client identities (RFC 2409 §5.5): the responder returns the IDci/IDcr it accepted, ours or
narrower ones; an initiator refuses wider or different ones with INVALID-ID-INFORMATION (RFC 2407 §4.6.3)."""

from __future__ import annotations

import ipaddress
import struct
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cgw_peer.config import TrafficSelector
from cgw_peer.ikev1 import peer as peer_mod
from cgw_peer.ikev1.peer import IkeV1Peer, _id_span, _id_text, _ts_body, _ts_within
from cgw_peer.wire.constants import IdType
from tests.ikev1.helpers import cgw_config, make_net, sel

CGW_LOCAL = "192.168.0.0/24"
CGW_REMOTE = "10.0.0.0/16"


def body(cidr: str, proto: int = 0, port: int = 0) -> bytes:
    return _ts_body(cidr, proto, port, port if port else 65535)


def range_body(first: str, last: str, proto: int = 0, port: int = 0) -> bytes:
    a, b = ipaddress.ip_address(first), ipaddress.ip_address(last)
    t = IdType.IPV4_ADDR_RANGE if a.version == 4 else IdType.IPV6_ADDR_RANGE
    return struct.pack("!BBH", t, proto, port) + a.packed + b.packed


def test_id_span_decodes_every_address_type() -> None:
    assert _id_span(body("10.0.0.0/16")) == (4, 0x0A000000, 0x0A00FFFF, 0, 0)
    assert _id_span(struct.pack("!BBH", IdType.IPV4_ADDR, 6, 443) + bytes([10, 0, 0, 1])) == (
        4,
        0x0A000001,
        0x0A000001,
        6,
        443,
    )
    lo6 = int(ipaddress.ip_address("2001:db8::"))
    assert _id_span(body("2001:db8::/32")) == (6, lo6, lo6 | (2**96 - 1), 0, 0)
    assert _id_span(range_body("10.0.0.5", "10.0.0.9")) == (4, 0x0A000005, 0x0A000009, 0, 0)
    assert _id_span(range_body("10.0.0.9", "10.0.0.5")) is None  # an empty range
    assert _id_span(struct.pack("!BBH", IdType.FQDN, 0, 0) + b"cgw.example") is None
    assert _id_span(body("10.0.0.0/16")[:-1]) is None
    assert _id_span(b"\x04\x00") is None


@pytest.mark.parametrize(
    ("got", "offered", "ok"),
    [
        (body(CGW_REMOTE), body(CGW_REMOTE), True),
        (body("10.0.1.0/24"), body(CGW_REMOTE), True),  # narrowed
        (range_body("10.0.0.10", "10.0.0.20"), body(CGW_REMOTE), True),
        (body("10.0.0.0/8"), body(CGW_REMOTE), False),  # wider
        (body("10.1.0.0/16"), body(CGW_REMOTE), False),  # elsewhere
        (body("2001:db8::/32"), body(CGW_REMOTE), False),  # another IP version
        (body(CGW_REMOTE, proto=6), body(CGW_REMOTE), True),  # a protocol where we offered any
        (body(CGW_REMOTE, proto=6, port=443), body(CGW_REMOTE, proto=6), True),
        (body(CGW_REMOTE), body(CGW_REMOTE, proto=6), False),  # any protocol where we offered TCP
        (body(CGW_REMOTE, proto=17), body(CGW_REMOTE, proto=6), False),
        (body(CGW_REMOTE, proto=6, port=80), body(CGW_REMOTE, proto=6, port=443), False),
    ],
)
def test_ts_within(got: bytes, offered: bytes, ok: bool) -> None:
    assert _ts_within(got, offered) is ok


@given(st.integers(0, 2**32 - 1), st.integers(0, 32), st.integers(0, 2**32 - 1), st.integers(0, 32))
def test_ts_within_matches_ipaddress_subnet_of(a: int, alen: int, b: int, blen: int) -> None:
    """The span check agrees with the standard library's subnet_of for every pair of IPv4 subnets."""
    na = ipaddress.ip_network((a, alen), strict=False)
    nb = ipaddress.ip_network((b, blen), strict=False)
    assert _ts_within(body(str(na)), body(str(nb))) is na.subnet_of(nb)


def _answering_with(monkeypatch: pytest.MonkeyPatch, ids: list[bytes]) -> None:
    """Make the responder (the AWS peer) return ``ids`` in its QM2 instead of echoing what it got."""
    real = IkeV1Peer._parse_qm

    def patched(self: IkeV1Peer, raw: Any, on_sa: Any) -> Any:
        got = real(self, raw, on_sa)
        if self.config.role.value == "aws" and on_sa == self._p2.select:
            return (got[0], got[1], got[2], list(ids))
        return got

    monkeypatch.setattr(peer_mod.IkeV1Peer, "_parse_qm", patched)


def _run(monkeypatch: pytest.MonkeyPatch, ids: list[bytes] | None) -> tuple[Any, IkeV1Peer, IkeV1Peer]:
    if ids is not None:
        _answering_with(monkeypatch, ids)
    cfg = cgw_config(local_ts=TrafficSelector(CGW_LOCAL), remote_ts=TrafficSelector(CGW_REMOTE))
    net, aws, cgw = make_net(cgw_cfg=cfg)
    net.start_all()
    net.run_until(5)
    return net, aws, cgw


def test_identities_echoed_tunnel_up(monkeypatch: pytest.MonkeyPatch) -> None:
    net, _aws, cgw = _run(monkeypatch, None)
    assert len(cgw.children) == 1 and cgw.counters == {}
    ev = sel(net, "child_sa_established", "cgw")[0].fields
    assert (ev["ts_local"], ev["ts_remote"]) == (
        ["192.168.0.0-192.168.0.255[0/0-65535]"],
        ["10.0.0.0-10.0.255.255[0/0-65535]"],
    )
    assert len(sel(net, "tunnel_up", "cgw")) == 1 and len(sel(net, "tunnel_up", "aws")) == 1


def test_narrowed_identities_are_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    net, _aws, cgw = _run(monkeypatch, [body("192.168.0.0/25"), body("10.0.1.0/24")])
    assert len(cgw.children) == 1 and cgw.counters == {}
    assert len(sel(net, "tunnel_up", "cgw")) == 1
    ev = sel(net, "child_sa_established", "cgw")[0].fields
    narrow_local, narrow_remote = "192.168.0.0-192.168.0.127[0/0-65535]", "10.0.1.0-10.0.1.255[0/0-65535]"
    assert (ev["ts_local"], ev["ts_remote"]) == ([narrow_local], [narrow_remote])
    ev = sel(net, "child_sa_established", "aws")[0].fields
    assert (ev["ts_local"], ev["ts_remote"]) == ([narrow_remote], [narrow_local])


def test_id_text_matches_the_ikev2_traffic_selector_format() -> None:
    from cgw_peer.ikev2.codec import Ts

    assert (
        _id_text(body("10.2.0.0/24"))
        == str(Ts(4, 0x0A020000, 0x0A0200FF, 0, 0, 65535))
        == ("10.2.0.0-10.2.0.255[0/0-65535]")
    )
    assert _id_text(body("10.2.0.0/24", proto=6, port=443)) == "10.2.0.0-10.2.0.255[6/443-443]"
    assert _id_text(range_body("10.0.0.5", "10.0.0.9")) == "10.0.0.5-10.0.0.9[0/0-65535]"
    assert _id_text(body("2001:db8::/48")) == "2001:db8::-2001:db8:0:ffff:ffff:ffff:ffff:ffff[0/0-65535]"
    fqdn = struct.pack("!BBH", IdType.FQDN, 0, 0) + b"x"
    assert _id_text(fqdn) == fqdn.hex()


@pytest.mark.parametrize(
    "ids",
    [
        [body(CGW_LOCAL), body("10.0.0.0/8")],  # remote side widened
        [body("192.168.1.0/24"), body(CGW_REMOTE)],  # local side moved
        [body(CGW_REMOTE), body(CGW_LOCAL)],  # swapped
        [struct.pack("!BBH", IdType.FQDN, 0, 0) + b"x.example", body(CGW_REMOTE)],
    ],
)
def test_wider_or_different_identities_are_refused(monkeypatch: pytest.MonkeyPatch, ids: list[bytes]) -> None:
    net, aws, cgw = _run(monkeypatch, ids)
    assert cgw.children == []
    assert cgw.counters["child:ts_unacceptable"] >= 1
    failed = sel(net, "negotiation_failed", "cgw")
    assert failed and failed[0].fields == {"exchange": "quick_mode", "reason": "ts_unacceptable"}
    assert "tunnel_up" not in [r.event for r in net.trace.records if r.node == "cgw"]
    # the responder is told (RFC 2407 §4.6.3 INVALID-ID-INFORMATION) and drops its half of the exchange
    assert aws.counters.get("notify:invalid_id_information") == 1
    assert aws.children == [] and "retransmits" not in aws.counters
    assert [r.fields for r in sel(net, "negotiation_failed", "aws")] == [
        {"exchange": "quick_mode", "reason": "invalid_id_information"}
    ]
