"""AWS tunnel options: AWS's names, ranges and defaults; errors name the field and the allowed values."""

from __future__ import annotations

import pytest

from cgw_peer.config import (
    PROFILES,
    Behaviour,
    DpdTimeoutAction,
    IkeVersion,
    PeerConfig,
    Retransmit,
    Role,
    SeqOnRetry,
    StartupAction,
    TunnelOptions,
    check_pre_shared_key,
)
from cgw_peer.errors import ConfigError


def test_defaults_match_aws() -> None:
    o = TunnelOptions()
    assert o.dpd_timeout_action is DpdTimeoutAction.CLEAR
    assert o.startup_action is StartupAction.ADD
    assert o.phase1_lifetime_seconds == 28800 and o.phase2_lifetime_seconds == 3600
    assert o.rekey_margin_time_seconds == 270 and o.rekey_fuzz_percentage == 100
    assert o.replay_window_size == 1024
    assert o.ike_versions == (IkeVersion.IKEV1, IkeVersion.IKEV2)
    assert o.phase1_dh_group_numbers == (2, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24)
    assert 5 in o.phase2_dh_group_numbers and 5 not in o.phase1_dh_group_numbers


def test_aws_spelling_round_trip() -> None:
    src = {
        "DPDTimeoutSeconds": 30,
        "DPDTimeoutAction": "restart",
        "IKEVersions": [{"Value": "ikev1"}],
        "Phase1DHGroupNumbers": [{"Value": 14}, {"Value": 19}],
        "Phase1EncryptionAlgorithms": "AES128,AES256",
        "RekeyMarginTimeSeconds": 540,
        "Phase2LifetimeSeconds": 3600,
    }
    o = TunnelOptions.from_mapping(src)
    aws = o.to_aws()
    assert aws["DPDTimeoutSeconds"] == 30
    assert aws["DPDTimeoutAction"] == "restart"
    assert aws["IKEVersions"] == ["ikev1"]
    assert aws["Phase1DHGroupNumbers"] == [14, 19]
    assert aws["Phase1EncryptionAlgorithms"] == ["AES128", "AES256"]
    assert TunnelOptions.from_mapping(aws) == o
    assert TunnelOptions.from_mapping({"dpd_timeout_seconds": 45}).dpd_timeout_seconds == 45


@pytest.mark.parametrize(
    ("mapping", "field", "hint"),
    [
        ({"DPDTimeoutSeconds": 29}, "DPDTimeoutSeconds", ">= 30"),
        ({"DPDTimeoutAction": "hold"}, "DPDTimeoutAction", "clear, restart, none"),
        ({"StartupAction": "route"}, "StartupAction", "add, start"),
        ({"IKEVersions": ["ikev3"]}, "IKEVersions", "ikev1, ikev2"),
        ({"Phase1EncryptionAlgorithms": ["3DES"]}, "Phase1EncryptionAlgorithms", "AES128"),
        ({"Phase1IntegrityAlgorithms": ["MD5"]}, "Phase1IntegrityAlgorithms", "SHA2-256"),
        ({"Phase1DHGroupNumbers": [5]}, "Phase1DHGroupNumbers", "2, 14"),
        ({"Phase2DHGroupNumbers": [1]}, "Phase2DHGroupNumbers", "2, 5, 14"),
        ({"Phase1LifetimeSeconds": 899}, "Phase1LifetimeSeconds", "900 and 28800"),
        ({"Phase2LifetimeSeconds": 3601}, "Phase2LifetimeSeconds", "900 and 3600"),
        ({"Phase1LifetimeSeconds": 1000, "Phase2LifetimeSeconds": 1000}, "Phase2LifetimeSeconds", "less than"),
        ({"RekeyMarginTimeSeconds": 59}, "RekeyMarginTimeSeconds", "60 and"),
        ({"RekeyMarginTimeSeconds": 1801}, "RekeyMarginTimeSeconds", "(1800)"),
        ({"RekeyFuzzPercentage": 101}, "RekeyFuzzPercentage", "0 and 100"),
        ({"ReplayWindowSize": 32}, "ReplayWindowSize", "64 and 2048"),
        ({"TunnelInsideCidr": "169.254.10.0/29"}, "TunnelInsideCidr", "/30"),
        ({"TunnelInsideCidr": "10.0.0.0/30"}, "TunnelInsideCidr", "169.254.0.0/16"),
        ({"TunnelInsideCidr": "169.254.5.0/30"}, "TunnelInsideCidr", "reserved"),
        ({"TunnelInsideCidr": "169.254.169.252/30"}, "TunnelInsideCidr", "reserved"),
        ({"PreSharedKey": "short"}, "PreSharedKey", "8-64"),
        ({"PreSharedKey": "0startswithzero"}, "PreSharedKey", "must not start with 0"),
        ({"PreSharedKey": "has-a-dash-char"}, "PreSharedKey", "A-Z"),
        ({"StartupAction": "start"}, "StartupAction", "ikev2"),
        ({"Bogus": 1}, "Bogus", "allowed"),
    ],
)
def test_bad_values_name_the_field(mapping: dict[str, object], field: str, hint: str) -> None:
    with pytest.raises(ConfigError) as ei:
        TunnelOptions.from_mapping(mapping)
    assert ei.value.field == field
    assert hint in str(ei.value)


def test_start_is_accepted_with_ikev2_only() -> None:
    o = TunnelOptions.from_mapping({"StartupAction": "start", "IKEVersions": ["ikev2"]})
    assert o.startup_action is StartupAction.START
    cfg = PeerConfig(role=Role.AWS, ike_version=IkeVersion.IKEV2, options=o)
    assert cfg.initiates_at_startup
    assert not PeerConfig(role=Role.AWS).initiates_at_startup
    assert PeerConfig(role=Role.CGW).initiates_at_startup


def test_valid_inside_cidr_and_psk() -> None:
    o = TunnelOptions.from_mapping({"TunnelInsideCidr": "169.254.10.0/30", "PreSharedKey": "abc.DEF_123"})
    assert PeerConfig(role=Role.CGW, options=o).psk == b"abc.DEF_123"


def test_peer_version_must_be_allowed() -> None:
    o = TunnelOptions.from_mapping({"IKEVersions": ["ikev2"]})
    with pytest.raises(ConfigError, match="ike_version"):
        PeerConfig(role=Role.AWS, ike_version=IkeVersion.IKEV1, options=o)


def test_dpd_timeout_per_role() -> None:
    o = TunnelOptions(dpd_timeout_seconds=35)
    assert PeerConfig(role=Role.AWS, options=o).dpd_timeout == 35.0
    cgw = PeerConfig(role=Role.CGW, options=o, behaviour=PROFILES["strongswan"])
    assert cgw.dpd_timeout == 30.0


def test_behaviour_from_mapping() -> None:
    b = Behaviour.from_mapping(
        {
            "seq_on_retry": "increment",
            "dup_answer_limit": 3,
            "dpd_delay": 2,
            "retransmit": {"timeout": 1.0, "base": 1.4, "tries": 3},
        }
    )
    assert b.seq_on_retry is SeqOnRetry.INCREMENT and b.dup_answer_limit == 3 and b.dpd_delay == 2.0
    assert b.retransmit == Retransmit(1.0, 1.4, 3)
    with pytest.raises(ConfigError, match=r"behaviour\.seq_on_retry.*reuse, increment"):
        Behaviour.from_mapping({"seq_on_retry": "random"})
    with pytest.raises(ConfigError, match=r"behaviour\.nope"):
        Behaviour.from_mapping({"nope": 1})
    with pytest.raises(ConfigError, match="true or false"):
        Behaviour.from_mapping({"dpd_enabled": "yes"})


def test_strongswan_retransmit_schedule() -> None:
    # charon.opt defaults: 4 s * 1.8^n, 5 tries -> gives up after ~165 s (ike-dpd.md §5.1)
    waits = Retransmit().waits()
    assert [round(w, 1) for w in waits] == [4.0, 7.2, 13.0, 23.3, 42.0, 75.6]
    assert round(sum(waits), 0) == 165


# -- issue 13: inputs that used to be accepted silently or to crash later --------------------------------------


@pytest.mark.parametrize(
    ("psk", "hint"),
    [
        ("goodkey.123\n", "'\\n' at position 12"),  # Python's `$` matches before a trailing newline
        ("goodkey.123\r\n", "'\\r' at position 12"),
        ("\ngoodkey.123", "'\\n' at position 1"),
        ("0goodkey.123", "starting with 0"),
        ("seven.7", "7 characters"),
        ("x" * 65, "65 characters"),
        ("päss.word.1", "'ä' at position 2"),
    ],
)
def test_psk_rule_is_a_full_match(psk: str, hint: str) -> None:
    with pytest.raises(ConfigError) as ei:
        TunnelOptions.from_mapping({"PreSharedKey": psk})
    assert ei.value.field == "PreSharedKey" and hint in str(ei.value)
    assert psk.strip() not in str(ei.value) or len(psk.strip()) < 8  # the secret is not echoed
    assert check_pre_shared_key("x" * 64) == "x" * 64 and check_pre_shared_key("A.b_1234") == "A.b_1234"


@pytest.mark.parametrize(
    ("mapping", "field"),
    [
        ({"DPDTimeoutSeconds": True}, "DPDTimeoutSeconds"),  # a boolean is not an integer
        ({"DPDTimeoutSeconds": 30.5}, "DPDTimeoutSeconds"),
        ({"DPDTimeoutSeconds": float("inf")}, "DPDTimeoutSeconds"),
        ({"DPDTimeoutSeconds": float("nan")}, "DPDTimeoutSeconds"),
        ({"DPDTimeoutSeconds": [30]}, "DPDTimeoutSeconds"),
        ({"DPDTimeoutAction": ["clear"]}, "DPDTimeoutAction"),  # str(['clear']) used to be tried
        ({"DPDTimeoutAction": True}, "DPDTimeoutAction"),
        ({"IKEVersions": None}, "IKEVersions"),  # used to raise TypeError (iterating None)
        ({"IKEVersions": {"Value": "ikev1"}}, "IKEVersions"),  # a mapping used to be iterated by key
        ({"IKEVersions": True}, "IKEVersions"),
        ({"Phase1DHGroupNumbers": [14.9]}, "Phase1DHGroupNumbers"),  # used to be truncated to 14
        ({"Phase1DHGroupNumbers": [True]}, "Phase1DHGroupNumbers"),
        ({"Phase1EncryptionAlgorithms": [["AES128"]]}, "Phase1EncryptionAlgorithms"),
        ({"PreSharedKey": 12345678}, "PreSharedKey"),  # YAML 0123 is an octal int: a key must be text
        ({"TunnelInsideCidr": 169254}, "TunnelInsideCidr"),
        ({"DPDTimeoutSeconds": 30, "dpd_timeout_seconds": 31}, "dpd_timeout_seconds"),  # given twice
    ],
)
def test_wrong_types_in_tunnel_options_name_the_field(mapping: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError) as ei:
        TunnelOptions.from_mapping(mapping)
    assert ei.value.field == field
    assert "allowed" in str(ei.value) or "twice" in str(ei.value)


def test_tunnel_options_must_be_a_mapping() -> None:
    with pytest.raises(ConfigError, match="tunnel: must be a mapping"):
        TunnelOptions.from_mapping(["DPDTimeoutSeconds"], "tunnel.")  # type: ignore[arg-type]


def test_ike_versions_default_to_the_peers_version() -> None:
    # Not given: the version the peer runs, so StartupAction start needs no IKEVersions for an IKEv2 peer.
    o = TunnelOptions.from_mapping({"StartupAction": "start"}, ike_version=IkeVersion.IKEV2)
    assert o.ike_versions == (IkeVersion.IKEV2,)
    assert PeerConfig(role=Role.AWS, ike_version=IkeVersion.IKEV2, options=o).initiates_at_startup
    assert TunnelOptions.from_mapping({}, ike_version=IkeVersion.IKEV1).ike_versions == (IkeVersion.IKEV1,)
    # Given: kept as given; the contradictions stay errors naming the field.
    both = TunnelOptions.from_mapping({"IKEVersions": ["ikev1", "ikev2"]}, ike_version=IkeVersion.IKEV1)
    assert both.ike_versions == (IkeVersion.IKEV1, IkeVersion.IKEV2)
    with pytest.raises(ConfigError) as ei:
        TunnelOptions.from_mapping({"StartupAction": "start"}, ike_version=IkeVersion.IKEV1)
    assert ei.value.field == "StartupAction" and "ikev2" in str(ei.value)
    with pytest.raises(ConfigError) as ei:
        TunnelOptions.from_mapping(
            {"StartupAction": "start", "IKEVersions": ["ikev1", "ikev2"]}, ike_version=IkeVersion.IKEV2
        )
    assert ei.value.field == "StartupAction"
    v1_only = TunnelOptions.from_mapping({"IKEVersions": "ikev1"}, ike_version=IkeVersion.IKEV2)
    with pytest.raises(ConfigError, match="ike_version: ikev2 is not in IKEVersions"):
        PeerConfig(role=Role.AWS, ike_version=IkeVersion.IKEV2, options=v1_only)
    # Without a peer version, AWS's default (both) as before.
    assert TunnelOptions.from_mapping({}).ike_versions == (IkeVersion.IKEV1, IkeVersion.IKEV2)


@pytest.mark.parametrize(
    ("mapping", "needle"),
    [
        ({"dpd_delay": float("inf")}, "behaviour.dpd_delay: must be a finite number"),
        ({"dpd_delay": float("nan")}, "behaviour.dpd_delay: must be a finite number"),
        ({"dpd_delay": 0}, "behaviour.dpd_delay: must be > 0"),  # a zero delay livelocked virtual time
        ({"dpd_interval": -1}, "behaviour.dpd_interval: must be > 0"),
        ({"dpd_delay": "10"}, "behaviour.dpd_delay: expected a number"),
        ({"dpd_delay": True}, "behaviour.dpd_delay: expected a number"),
        ({"dpd_timeout": float("inf")}, "behaviour.dpd_timeout: must be a finite number"),
        ({"dup_answer_limit": 2.5}, "behaviour.dup_answer_limit: expected an integer"),
        ({"dup_answer_limit": -1}, "behaviour.dup_answer_limit: must be >= 0"),
        ({"restart_backoff_jitter": 1.5}, "behaviour.restart_backoff_jitter: must be >= 0 and <= 1"),
        ({"nat_keepalive": float("nan")}, "behaviour.nat_keepalive: must be a finite number"),
        ({"seq_on_retry": ["reuse"]}, "behaviour.seq_on_retry: invalid value"),
        ({"retransmit": 5}, "behaviour.retransmit: must be a mapping"),  # used to raise TypeError
        ({"retransmit": {"timeout": "soon"}}, "behaviour.retransmit.timeout: expected a number"),
        ({"retransmit": {"timeout": float("inf")}}, "behaviour.retransmit.timeout: must be a finite number"),
        ({"retransmit": {"tries": 10**9}}, "behaviour.retransmit.tries: must be >= 0 and <= 100"),
        ({"retransmit": {"tries": 2.5}}, "behaviour.retransmit.tries: expected an integer"),
        ({"retransmit": {"jitter": 1.0}}, "behaviour.retransmit.jitter: must be >= 0 and < 1"),
        ({"retransmit": {"tmeout": 1}}, "behaviour.retransmit.tmeout: unknown setting"),
    ],
)
def test_behaviour_values_are_checked(mapping: dict[str, object], needle: str) -> None:
    with pytest.raises(ConfigError) as ei:
        Behaviour.from_mapping(mapping)
    assert needle in str(ei.value)


def test_behaviour_accepts_good_values() -> None:
    b = Behaviour.from_mapping({"dpd_timeout": None, "dup_answer_limit": None, "nat_keepalive": 0, "dpd_delay": 1})
    assert b.dpd_timeout is None and b.dup_answer_limit is None and b.nat_keepalive == 0.0 and b.dpd_delay == 1.0
    assert Behaviour.from_mapping({"retransmit": Retransmit(2.0, 1.5, 3)}).retransmit == Retransmit(2.0, 1.5, 3)
    with pytest.raises(ConfigError, match="must be a mapping"):
        Behaviour.from_mapping([1])  # type: ignore[arg-type]
