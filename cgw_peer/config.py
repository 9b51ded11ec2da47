"""Configuration: AWS tunnel options (AWS's names, ranges and defaults) and the emulator's own named settings.

Two layers:

* :class:`TunnelOptions` mirrors ``VpnTunnelOptionsSpecification`` field for field, validated the way AWS
  validates it (``../shared/reference/ike-dpd.md`` §1.1). :meth:`TunnelOptions.from_mapping` accepts the AWS
  API spelling (``DPDTimeoutSeconds``) and snake_case (``dpd_timeout_seconds``).
* :class:`Behaviour` holds what AWS leaves undocumented and what differs between implementations (strongSwan,
  libreswan, a hardware device). Every field is a named setting with a documented default; nothing is a
  silent guess. :data:`PROFILES` gives ready-made sets.

Errors are :class:`~cgw_peer.errors.ConfigError` naming the field and the allowed values.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from enum import StrEnum
from typing import Any

from cgw_peer.errors import ConfigError


class Role(StrEnum):
    AWS = "aws"
    """The AWS tunnel endpoint."""
    CGW = "cgw"
    """The customer gateway."""


class StartupAction(StrEnum):
    """AWS ``StartupAction``: who brings the tunnel up."""

    ADD = "add"
    """The CGW must initiate; the AWS endpoint waits (AWS default)."""
    START = "start"
    """The AWS endpoint initiates (IKEv2 only, as AWS documents)."""


class DpdTimeoutAction(StrEnum):
    """AWS ``DPDTimeoutAction``: what happens when the peer is declared dead."""

    CLEAR = "clear"
    """Stop IKE, delete the SAs, tunnel DOWN, routes removed; wait for the CGW (AWS default)."""
    RESTART = "restart"
    """Tear down and re-initiate IKE (with backoff)."""
    NONE = "none"
    """Take no action: keep the SAs and the UP status."""


class IkeVersion(StrEnum):
    IKEV1 = "ikev1"
    IKEV2 = "ikev2"


PHASE_ENCRYPTION = ("AES128", "AES256", "AES128-GCM-16", "AES256-GCM-16")
PHASE_INTEGRITY = ("SHA1", "SHA2-256", "SHA2-384", "SHA2-512")
PHASE1_DH_GROUPS = (2, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24)
PHASE2_DH_GROUPS = (2, 5, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24)

_PSK_RE = re.compile(r"[A-Za-z0-9._]{8,64}")
"""AWS PreSharedKey characters and length (``ike-dpd.md`` §1.1). Used with ``fullmatch``: ``$`` would also match
before a trailing newline, letting ``"key\\n"`` through."""
PSK_RULE = "8-64 characters of A-Z a-z 0-9 . _ and must not start with 0"
_RESERVED_INSIDE = [ipaddress.ip_network(f"169.254.{i}.0/30") for i in range(6)] + [
    ipaddress.ip_network("169.254.169.252/30")
]
_LINK_LOCAL = ipaddress.ip_network("169.254.0.0/16")


def _snake(name: str) -> str:
    """``DPDTimeoutSeconds`` -> ``dpd_timeout_seconds``; ``IKEVersions`` -> ``ike_versions``."""
    s = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name)
    s = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", s)
    return s.replace("-", "_").lower()


def _allowed(values: Any) -> str:
    return ", ".join(str(v) for v in values)


def _key(k: Any) -> str:
    """A user's key in an error message: as written when plain text, else its repr (keeps the message one line)."""
    return k if isinstance(k, str) and k and k.isprintable() and k.strip() == k else repr(k)


@dataclass(frozen=True)
class TunnelOptions:
    """AWS Site-to-Site VPN tunnel options (``VpnTunnelOptionsSpecification``), validated as AWS does.

    Algorithm lists use AWS's spelling; the order in the list does not matter, because AWS evaluates the
    CGW's proposals "starting with the lowest configured value" (see :meth:`sorted_for_selection`).
    """

    dpd_timeout_seconds: int = 40
    """``DPDTimeoutSeconds``, >= 30. Default 40: the current API/User Guide value. The older API page and
    the archived guide say 30 (``ike-dpd.md`` §1.1); give ``DPDTimeoutSeconds: 30`` to model the older default.
    The effective value is always reported by :meth:`to_aws` (terraform-aws-vpn-gateway#107: report it)."""
    dpd_timeout_action: DpdTimeoutAction = DpdTimeoutAction.CLEAR
    startup_action: StartupAction = StartupAction.ADD
    ike_versions: tuple[IkeVersion, ...] = (IkeVersion.IKEV1, IkeVersion.IKEV2)
    phase1_encryption_algorithms: tuple[str, ...] = PHASE_ENCRYPTION
    phase2_encryption_algorithms: tuple[str, ...] = PHASE_ENCRYPTION
    phase1_integrity_algorithms: tuple[str, ...] = PHASE_INTEGRITY
    phase2_integrity_algorithms: tuple[str, ...] = PHASE_INTEGRITY
    phase1_dh_group_numbers: tuple[int, ...] = PHASE1_DH_GROUPS
    phase2_dh_group_numbers: tuple[int, ...] = PHASE2_DH_GROUPS
    phase1_lifetime_seconds: int = 28800
    phase2_lifetime_seconds: int = 3600
    rekey_margin_time_seconds: int = 270
    rekey_fuzz_percentage: int = 100
    replay_window_size: int = 1024
    tunnel_inside_cidr: str | None = None
    pre_shared_key: str | None = None

    def __post_init__(self) -> None:
        self.validate()

    # -- validation ---------------------------------------------------------------------------------------

    def validate(self) -> None:
        if not isinstance(self.dpd_timeout_seconds, int) or self.dpd_timeout_seconds < 30:
            raise ConfigError("DPDTimeoutSeconds", f"must be an integer >= 30, got {self.dpd_timeout_seconds!r}")
        _check_subset("IKEVersions", self.ike_versions, tuple(IkeVersion))
        if not self.ike_versions:
            raise ConfigError("IKEVersions", f"must not be empty (allowed: {_allowed(tuple(IkeVersion))})")
        for name, values, allowed in (
            ("Phase1EncryptionAlgorithms", self.phase1_encryption_algorithms, PHASE_ENCRYPTION),
            ("Phase2EncryptionAlgorithms", self.phase2_encryption_algorithms, PHASE_ENCRYPTION),
            ("Phase1IntegrityAlgorithms", self.phase1_integrity_algorithms, PHASE_INTEGRITY),
            ("Phase2IntegrityAlgorithms", self.phase2_integrity_algorithms, PHASE_INTEGRITY),
            ("Phase1DHGroupNumbers", self.phase1_dh_group_numbers, PHASE1_DH_GROUPS),
            ("Phase2DHGroupNumbers", self.phase2_dh_group_numbers, PHASE2_DH_GROUPS),
        ):
            _check_subset(name, values, allowed)
            if not values:
                raise ConfigError(name, f"must not be empty (allowed: {_allowed(allowed)})")
        if not 900 <= self.phase1_lifetime_seconds <= 28800:
            raise ConfigError(
                "Phase1LifetimeSeconds", f"must be between 900 and 28800, got {self.phase1_lifetime_seconds}"
            )
        if not 900 <= self.phase2_lifetime_seconds <= 3600:
            raise ConfigError(
                "Phase2LifetimeSeconds", f"must be between 900 and 3600, got {self.phase2_lifetime_seconds}"
            )
        if self.phase2_lifetime_seconds >= self.phase1_lifetime_seconds:
            raise ConfigError(
                "Phase2LifetimeSeconds",
                f"must be less than Phase1LifetimeSeconds ({self.phase1_lifetime_seconds}), "
                f"got {self.phase2_lifetime_seconds}",
            )
        max_margin = self.phase2_lifetime_seconds // 2
        if not 60 <= self.rekey_margin_time_seconds <= max_margin:
            raise ConfigError(
                "RekeyMarginTimeSeconds",
                f"must be between 60 and Phase2LifetimeSeconds/2 ({max_margin}), got {self.rekey_margin_time_seconds}",
            )
        if not 0 <= self.rekey_fuzz_percentage <= 100:
            raise ConfigError("RekeyFuzzPercentage", f"must be between 0 and 100, got {self.rekey_fuzz_percentage}")
        if not 64 <= self.replay_window_size <= 2048:
            raise ConfigError("ReplayWindowSize", f"must be between 64 and 2048, got {self.replay_window_size}")
        if self.tunnel_inside_cidr is not None:
            _check_inside_cidr(self.tunnel_inside_cidr)
        if self.pre_shared_key is not None:
            check_pre_shared_key(self.pre_shared_key, "PreSharedKey")
        if self.startup_action is StartupAction.START and self.ike_versions != (IkeVersion.IKEV2,):
            # AWS: "AWS-initiated ... is supported for IKEv2 only" (ike-dpd.md §1.3).
            raise ConfigError(
                "StartupAction",
                "'start' requires IKEVersions to be [ikev2] only (AWS initiates IKEv2 only); "
                f"got IKEVersions={[v.value for v in self.ike_versions]} (without IKEVersions, a peer's options "
                "default to the IKE version it runs: run IKEv2, or set IKEVersions to [ikev2])",
            )

    # -- construction -------------------------------------------------------------------------------------

    @classmethod
    def from_mapping(
        cls, m: Mapping[str, Any], where: str = "", *, ike_version: IkeVersion | None = None
    ) -> TunnelOptions:
        """Build from a mapping in AWS spelling or snake_case. Unknown keys are an error naming the key.

        ``ike_version``: the version of the peer these options are for. When the mapping gives no
        ``IKEVersions``, they default to that version alone, so ``StartupAction: start`` works for an IKEv2 peer
        without also spelling ``IKEVersions: [ikev2]``. An explicit ``IKEVersions`` is kept as given (a
        contradiction with the peer's version is :class:`PeerConfig`'s error). Without ``ike_version`` the
        default is AWS's (both versions).
        """
        if not isinstance(m, Mapping):
            raise ConfigError(where.rstrip(".") or "tunnel options", "must be a mapping of AWS tunnel options")
        known = {f.name for f in fields(cls)}
        kw: dict[str, Any] = {}
        for key, value in m.items():
            name = _snake(key) if isinstance(key, str) else ""
            if name not in known:
                raise ConfigError(f"{where}{_key(key)}", f"unknown tunnel option (allowed: {_allowed(sorted(known))})")
            if name in kw:
                raise ConfigError(f"{where}{key}", "given twice (AWS spelling and snake_case)")
            kw[name] = _coerce(name, value, f"{where}{key}")
        if ike_version is not None and "ike_versions" not in kw:
            kw["ike_versions"] = (ike_version,)
        try:
            return cls(**kw)
        except ConfigError as e:
            if where and not e.field.startswith(where):
                raise ConfigError(f"{where}{e.field}", str(e).split(": ", 1)[1]) from None
            raise

    def to_aws(self) -> dict[str, Any]:
        """The effective options, in AWS API spelling (what ``describe-vpn-connections`` would show)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, tuple):
                v = [x.value if isinstance(x, StrEnum) else x for x in v]
            elif isinstance(v, StrEnum):
                v = v.value
            out[_AWS_NAMES[f.name]] = v
        return out

    def with_(self, **changes: Any) -> TunnelOptions:
        return replace(self, **changes)

    @staticmethod
    def sorted_for_selection(values: tuple[str, ...] | tuple[int, ...], order: tuple[Any, ...]) -> list[Any]:
        """AWS evaluates proposals "starting with the lowest configured value" regardless of the CGW's order."""
        return sorted(values, key=order.index)


_AWS_NAMES = {
    "dpd_timeout_seconds": "DPDTimeoutSeconds",
    "dpd_timeout_action": "DPDTimeoutAction",
    "startup_action": "StartupAction",
    "ike_versions": "IKEVersions",
    "phase1_encryption_algorithms": "Phase1EncryptionAlgorithms",
    "phase2_encryption_algorithms": "Phase2EncryptionAlgorithms",
    "phase1_integrity_algorithms": "Phase1IntegrityAlgorithms",
    "phase2_integrity_algorithms": "Phase2IntegrityAlgorithms",
    "phase1_dh_group_numbers": "Phase1DHGroupNumbers",
    "phase2_dh_group_numbers": "Phase2DHGroupNumbers",
    "phase1_lifetime_seconds": "Phase1LifetimeSeconds",
    "phase2_lifetime_seconds": "Phase2LifetimeSeconds",
    "rekey_margin_time_seconds": "RekeyMarginTimeSeconds",
    "rekey_fuzz_percentage": "RekeyFuzzPercentage",
    "replay_window_size": "ReplayWindowSize",
    "tunnel_inside_cidr": "TunnelInsideCidr",
    "pre_shared_key": "PreSharedKey",
}


def _check_subset(name: str, values: tuple[Any, ...], allowed: tuple[Any, ...]) -> None:
    for v in values:
        if v not in allowed:
            raise ConfigError(name, f"{v!r} is not allowed (allowed: {_allowed(allowed)})")


def _check_inside_cidr(cidr: str) -> None:
    try:
        net = ipaddress.ip_network(cidr, strict=True)
    except ValueError:
        raise ConfigError("TunnelInsideCidr", f"{cidr!r} is not a CIDR block") from None
    if net.version != 4 or net.prefixlen != 30 or not net.subnet_of(_LINK_LOCAL):  # type: ignore[arg-type]
        raise ConfigError("TunnelInsideCidr", f"must be a /30 inside 169.254.0.0/16, got {cidr}")
    for r in _RESERVED_INSIDE:
        if net == r:
            raise ConfigError(
                "TunnelInsideCidr",
                f"{cidr} is reserved (169.254.0.0/30 - 169.254.5.0/30 and 169.254.169.252/30 are reserved)",
            )


def check_pre_shared_key(psk: Any, field: str = "PreSharedKey") -> str:
    """``psk`` if it satisfies AWS's PreSharedKey rule (:data:`PSK_RULE`), else ConfigError naming ``field``."""
    if not isinstance(psk, str):
        raise ConfigError(field, f"must be text ({PSK_RULE}), got {psk!r}")
    if not _PSK_RE.fullmatch(psk) or psk.startswith("0"):
        # Say what is wrong without echoing the secret.
        bad = next((i for i, c in enumerate(psk) if not (c.isascii() and (c.isalnum() or c in "._"))), None)
        if bad is not None:
            what = f"{psk[bad]!r} at position {bad + 1} of {len(psk)}"
        elif psk.startswith("0"):
            what = "a key starting with 0"
        else:
            what = f"{len(psk)} characters"
        raise ConfigError(field, f"must be {PSK_RULE}, got {what}")
    return psk


_INT_OPTIONS = (
    "dpd_timeout_seconds",
    "phase1_lifetime_seconds",
    "phase2_lifetime_seconds",
    "rekey_margin_time_seconds",
    "rekey_fuzz_percentage",
    "replay_window_size",
)


def _int(value: Any) -> int:
    """An integer option: an ``int`` or its decimal text; never a boolean, a float or anything else."""
    if isinstance(value, bool):
        raise ValueError
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        return int(value.strip())
    raise ValueError


def _coerce(name: str, value: Any, where: str) -> Any:
    try:
        if name in _INT_OPTIONS:
            return _int(value)
        if name == "dpd_timeout_action":
            return DpdTimeoutAction(_word(value))
        if name == "startup_action":
            return StartupAction(_word(value))
        if name == "ike_versions":
            return tuple(IkeVersion(_word(v)) for v in _items(value))
        if name in ("phase1_dh_group_numbers", "phase2_dh_group_numbers"):
            return tuple(_int(v) for v in _items(value))
        if name.endswith("_algorithms"):
            return tuple(_word(v).upper() for v in _items(value))
        if name in ("tunnel_inside_cidr", "pre_shared_key"):
            if value is not None and not isinstance(value, str):
                raise ValueError
            return value
    except (ValueError, TypeError, OverflowError):
        allowed = {
            "dpd_timeout_action": _allowed(tuple(DpdTimeoutAction)),
            "startup_action": _allowed(tuple(StartupAction)),
            "ike_versions": "a list of " + _allowed(tuple(IkeVersion)),
            "phase1_dh_group_numbers": "a list of " + _allowed(PHASE1_DH_GROUPS),
            "phase2_dh_group_numbers": "a list of " + _allowed(PHASE2_DH_GROUPS),
            "phase1_encryption_algorithms": "a list of " + _allowed(PHASE_ENCRYPTION),
            "phase2_encryption_algorithms": "a list of " + _allowed(PHASE_ENCRYPTION),
            "phase1_integrity_algorithms": "a list of " + _allowed(PHASE_INTEGRITY),
            "phase2_integrity_algorithms": "a list of " + _allowed(PHASE_INTEGRITY),
            "tunnel_inside_cidr": "a /30 inside 169.254.0.0/16, as text",
            "pre_shared_key": PSK_RULE,
        }.get(name, "an integer" if name in _INT_OPTIONS else "see the AWS VpnTunnelOptionsSpecification")
        shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
        raise ConfigError(where, f"invalid value {shown} (allowed: {allowed})") from None
    return value


def _word(value: Any) -> str:
    """An enumeration word (any case); anything but text is refused rather than ``str()``-ed."""
    if not isinstance(value, str):
        raise ValueError
    return value.strip().lower()


def _items(value: Any) -> list[Any]:
    """AWS lists come as ``[{"Value": x}]``, plain lists, or comma-separated strings (a single integer is a list
    of one). Anything else (a mapping, null, a boolean) is refused."""
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(value, int) and not isinstance(value, bool):
        return [value]
    if not isinstance(value, list | tuple):
        raise ValueError
    out = []
    for v in value:
        out.append(v["Value"] if isinstance(v, Mapping) and "Value" in v else v)
    return out


class SeqOnRetry(StrEnum):
    """IKEv1 DPD: the sequence number of a repeated (unanswered) R-U-THERE."""

    REUSE = "reuse"
    """strongSwan, OpenBSD: increment only after a valid ACK."""
    INCREMENT = "increment"
    """libreswan, RFC 3706 §7: every R-U-THERE gets the next number."""


class LivenessTraffic(StrEnum):
    """What inbound traffic resets the DPD idle timer."""

    IKE = "ike"
    """Only authenticated IKE messages."""
    IKE_ESP = "ike+esp"
    """IKE and inbound ESP."""
    IKE_ESP_NAT = "ike+esp-if-nat"
    """IKE always; ESP only when NAT-T is in use (strongSwan's ``get_use_time``)."""


class LivenessModel(StrEnum):
    """Whose Dead Peer Detection this side reproduces, in both IKE versions (:mod:`cgw_peer.lifecycle` has the
    full table and the sources). All three probe after ``dpd_delay`` without authenticated inbound traffic."""

    AWS = "aws"
    """The AWS endpoint (``ike-dpd.md`` §1.2): dead at the last authenticated inbound message + the DPD timeout.
    IKEv1 repeats R-U-THERE every ``dpd_interval``; IKEv2 retransmits its INFORMATIONAL request every
    ``dpd_interval`` (AWS logs "DPD timed out after N retransmits")."""
    STRONGSWAN = "strongswan"
    """charon (§5.1): IKEv1 as AWS with ``dpd_timeout``; IKEv2 dead when the request's ``retransmit`` schedule
    (4 s * 1.8**n, 5 tries) is spent."""
    LIBRESWAN = "libreswan"
    """pluto (§5.2): IKEv1 dead at the first unanswered probe + ``dpdtimeout``; IKEv2 dead when the
    ``retransmit`` budget (60 s) is spent."""


@dataclass(frozen=True)
class Retransmit:
    """Retransmission of IKE requests: waits are ``timeout * base**n`` for n in 0..tries (strongSwan)."""

    timeout: float = 4.0
    base: float = 1.8
    tries: int = 5
    limit: float | None = None
    """Cap on a single wait (strongSwan ``retransmit_limit``)."""
    jitter: float = 0.0
    """Fraction in [0, 1) by which each wait may be shortened (strongSwan ``retransmit_jitter``)."""
    budget: float | None = None
    """Total time after the first send at which the request is given up, if shorter than the sum of
    :meth:`waits` (libreswan ``retransmit-timeout``, 60 s). None: the sum of the waits (strongSwan)."""

    def waits(self) -> list[float]:
        out = []
        for n in range(self.tries + 1):
            w = self.timeout * self.base**n
            if self.limit is not None:
                w = min(w, self.limit)
            out.append(w)
        return out


@dataclass(frozen=True)
class Behaviour:
    """Named settings for what AWS does not document or what implementations do differently.

    Defaults model the AWS endpoint as documented (``ike-dpd.md`` §1.2): probe after 10 s without inbound
    traffic, repeat every 10 s, dead at last inbound + DPDTimeoutSeconds.
    """

    dpd_enabled: bool = True
    send_dpd_vendor_id: bool = True
    """Without the DPD vendor ID the peer does not run DPD (libreswan's 'remote peer did not advertise')."""
    dpd_delay: float = 10.0
    """Idle time (no inbound traffic) before the first R-U-THERE; AWS: 10 s."""
    dpd_interval: float = 10.0
    """Time between repeated R-U-THEREs while the peer stays silent; AWS: 10 s."""
    dpd_timeout: float | None = None
    """Seconds to dead; None means take ``TunnelOptions.dpd_timeout_seconds`` (AWS role) or
    ``dpd_delay * 3 + dpd_delay`` style values set by a profile (CGW role)."""
    liveness_model: LivenessModel = LivenessModel.AWS
    """Whose DPD timing to reproduce: aws | strongswan | libreswan (see :class:`LivenessModel`)."""
    seq_on_retry: SeqOnRetry = SeqOnRetry.REUSE
    dup_answer_limit: int | None = None
    """How many times a duplicate/old R-U-THERE is answered (libreswan 3, OpenBSD 5, strongSwan unlimited)."""
    wrong_seq_ack_counts: bool = False
    """Whether an authenticated ACK with a wrong sequence number cancels the DPD timeout (libreswan: yes)."""
    liveness_traffic: LivenessTraffic = LivenessTraffic.IKE_ESP
    dpd_during_rekey: bool = True
    """Whether probes go out while an IKE SA is being rekeyed (strongSwan IKEv1: no)."""
    periodic_dpd_with_nat: bool = True
    """AWS: 'on-demand DPD for peers not using NAT, periodic DPDs for peers using NAT'."""
    send_delete_on_clear: bool = False
    """Whether DPDTimeoutAction=clear sends Deletes (AWS: unspecified; the peer is presumed dead)."""
    restart_ikev1: bool = True
    """Whether DPDTimeoutAction=restart re-initiates under IKEv1 too (AWS documents initiation for IKEv2)."""
    retry_initiation: bool = True
    """Whether a side that brings the tunnel up (it initiates at start-up, or it is restarting after a DPD
    timeout) retries a failed negotiation, with the restart backoff. AWS does not document what an endpoint
    with StartupAction=start does when its IKE_SA_INIT goes unanswered; libreswan's ``keyingtries=%forever``
    (its default) keeps trying, and so does this by default."""
    restart_backoff_initial: float = 1.0
    restart_backoff_max: float = 60.0
    restart_backoff_jitter: float = 0.5
    """Restart delay = min(max, initial * 2**attempt) * (1 - jitter * U[0,1)), so two sides do not storm."""
    rekey_initiator: bool = True
    """Whether this side starts rekeys (AWS: yes; a CGW may leave it to AWS)."""
    retransmit: Retransmit = field(default_factory=Retransmit)
    nat_keepalive: float = 20.0
    """NAT keepalive interval (0xFF single byte on 4500); not a liveness proof."""
    ikev2_require_cookie: bool = False
    """IKEv2 responder: always demand a COOKIE (RFC 7296 §2.6) before keeping state for an IKE_SA_INIT (off by
    default: then cookies switch on by themselves above ``cookie_threshold``)."""
    cookie_threshold: int | None = 10
    """IKEv2 responder: half-open IKE SAs at or above which every new IKE_SA_INIT must return a COOKIE first
    (RFC 7296 §2.6). AWS does not document it; strongSwan's ``charon.cookie_threshold`` default is 10. None:
    never by themselves."""
    half_open_limit: int = 4096
    """Responder: most half-open SAs (IKEv2 IKE_SA_INIT answered, IKE_AUTH not yet; IKEv1 Main Mode before MM5)
    kept at once; a new request beyond it is refused and counted (``dropped:half_open_limit``). AWS does not
    document one; strongSwan's ``init_limit_half_open`` is off by default. This default bounds memory (each
    half-open IKEv2 SA holds its keys: a few KB)."""
    half_open_limit_per_source: int | None = 64
    """Responder: most half-open SAs per source IP address (strongSwan ``block_threshold``, default 5, counts the
    same thing; 64 leaves room for a NAT with many peers behind it). None: no per-source limit."""
    cached_answer_interval: float = 0.5
    """A retransmitted request is answered from the cache (RFC 7296 §2.1; RFC 2408 §5 for IKEv1) at most once per
    this many seconds (libreswan's first retransmission comes after 0.5 s, charon's after 4 s): a replay storm
    cannot turn us into an amplifier. AWS does not document it."""
    cached_answer_limit: int | None = 12
    """At most this many cached answers to one request (strongSwan retransmits 5 times, libreswan about 7 times in
    its 60 s budget). None: unlimited (strongSwan's own responder)."""

    @classmethod
    def from_mapping(cls, m: Mapping[str, Any], where: str = "behaviour.") -> Behaviour:
        """Build from a mapping of setting names (``-`` or ``_``); every value is checked by type and range
        (:func:`_coerce_behaviour`), unknown names are an error listing the known ones."""
        if not isinstance(m, Mapping):
            raise ConfigError(where.rstrip("."), "must be a mapping of Behaviour settings")
        known = {f.name: f for f in fields(cls)}
        kw: dict[str, Any] = {}
        for key, value in m.items():
            name = key.replace("-", "_") if isinstance(key, str) else ""
            if name not in known:
                raise ConfigError(f"{where}{_key(key)}", f"unknown setting (allowed: {_allowed(sorted(known))})")
            kw[name] = _coerce_behaviour(name, value, f"{where}{key}")
        return cls(**kw)


_BEHAVIOUR_ENUMS: dict[str, type[StrEnum]] = {
    "liveness_model": LivenessModel,
    "seq_on_retry": SeqOnRetry,
    "liveness_traffic": LivenessTraffic,
}


# Numeric settings: (integer, minimum, minimum inclusive, maximum, None allowed). A period of 0 makes no sense
# (a zero DPD delay livelocks a virtual-time run); the floor a run needs on top is emulator.validate's.
_NUMBER_RULES: dict[str, tuple[bool, float, bool, float, bool]] = {
    "dpd_delay": (False, 0.0, False, math.inf, False),
    "dpd_interval": (False, 0.0, False, math.inf, False),
    "dpd_timeout": (False, 0.0, False, math.inf, True),
    "dup_answer_limit": (True, 0, True, math.inf, True),
    "restart_backoff_initial": (False, 0.0, False, math.inf, False),
    "restart_backoff_max": (False, 0.0, False, math.inf, False),
    "restart_backoff_jitter": (False, 0.0, True, 1.0, False),
    "nat_keepalive": (False, 0.0, True, math.inf, False),
    "cookie_threshold": (True, 0, True, math.inf, True),
    "half_open_limit": (True, 1, True, math.inf, False),
    "half_open_limit_per_source": (True, 1, True, math.inf, True),
    "cached_answer_interval": (False, 0.0, True, 3600.0, False),
    "cached_answer_limit": (True, 0, True, math.inf, True),
}
_RETRANSMIT_RULES: dict[str, tuple[bool, float, bool, float, bool]] = {
    "timeout": (False, 0.0, False, math.inf, False),
    "base": (False, 0.0, False, math.inf, False),
    # strongSwan's default is 5, the libreswan profile's 7; 100 keeps waits() a short list.
    "tries": (True, 0, True, 100, False),
    "limit": (False, 0.0, False, math.inf, True),
    "jitter": (False, 0.0, True, 1.0, False),  # a fraction of each wait; below 1 (strongSwan: percent < 100)
    "budget": (False, 0.0, False, math.inf, True),
}


def _check_number(value: Any, rule: tuple[bool, float, bool, float, bool], where: str) -> Any:
    """``value`` under ``rule`` (see :data:`_NUMBER_RULES`): a finite number in range, never a boolean or NaN."""
    integer, lo, lo_incl, hi, nullable = rule
    if value is None and nullable:
        return None
    kind = "an integer" if integer else "a number"
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(where, f"expected {kind}{' or null' if nullable else ''}, got {value!r}")
    if integer and isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
        raise ConfigError(where, f"expected {kind}, got {value!r}")
    v: float = int(value) if integer else float(value)
    if not math.isfinite(v):
        raise ConfigError(where, f"must be a finite number, got {value!r}")
    if not (v >= lo if lo_incl else v > lo) or v > hi:
        low = f">= {lo:g}" if lo_incl else f"> {lo:g}"
        rng = low if hi == math.inf else f"{low} and <= {hi:g}"
        raise ConfigError(where, f"must be {rng}, got {value!r}")
    return v


def _coerce_retransmit(value: Any, where: str) -> Retransmit:
    if isinstance(value, Retransmit):
        value = {f.name: getattr(value, f.name) for f in fields(Retransmit)}
    if not isinstance(value, Mapping):
        raise ConfigError(where, f"must be a mapping of {_allowed(sorted(_RETRANSMIT_RULES))}, got {value!r}")
    kw: dict[str, Any] = {}
    for k, v in value.items():
        if k not in _RETRANSMIT_RULES:
            raise ConfigError(f"{where}.{_key(k)}", f"unknown setting (allowed: {_allowed(sorted(_RETRANSMIT_RULES))})")
        kw[k] = _check_number(v, _RETRANSMIT_RULES[k], f"{where}.{k}")
    if "jitter" in kw and not kw["jitter"] < 1.0:
        raise ConfigError(f"{where}.jitter", f"must be >= 0 and < 1 (a fraction of each wait), got {kw['jitter']!r}")
    return Retransmit(**kw)


def _coerce_behaviour(name: str, value: Any, where: str) -> Any:
    """One ``Behaviour`` setting from a mapping: enums by value, booleans as booleans, numbers by
    :data:`_NUMBER_RULES` (a setting without a rule: a finite number >= 0, like its default's type)."""
    if name in _BEHAVIOUR_ENUMS:
        enum = _BEHAVIOUR_ENUMS[name]
        try:
            if not isinstance(value, str):
                raise ValueError
            return enum(value)
        except ValueError:
            raise ConfigError(where, f"invalid value {value!r} (allowed: {_allowed(tuple(enum))})") from None
    if name == "retransmit":
        return _coerce_retransmit(value, where)
    f = Behaviour.__dataclass_fields__[name]
    default = f.default
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(where, f"expected true or false, got {value!r}")
        return value
    if isinstance(default, StrEnum):
        try:
            if not isinstance(value, str):
                raise ValueError
            return type(default)(value)
        except ValueError:
            raise ConfigError(where, f"invalid value {value!r} (allowed: {_allowed(tuple(type(default)))})") from None
    rule = _NUMBER_RULES.get(name)
    if rule is None:
        rule = (isinstance(default, int), 0.0, True, math.inf, default is None)
    return _check_number(value, rule, where)


PROFILES: dict[str, Behaviour] = {
    # The AWS endpoint as documented.
    "aws": Behaviour(),
    # strongSwan charon 5.9 with AWS's recommended CGW values (dpddelay=10s, dpdtimeout=30s).
    "strongswan": Behaviour(
        dpd_delay=10.0,
        dpd_interval=10.0,
        dpd_timeout=30.0,
        seq_on_retry=SeqOnRetry.REUSE,
        dup_answer_limit=None,
        wrong_seq_ack_counts=False,
        liveness_traffic=LivenessTraffic.IKE_ESP_NAT,
        dpd_during_rekey=False,
        periodic_dpd_with_nat=False,
        liveness_model=LivenessModel.STRONGSWAN,
    ),
    # libreswan 4.x: seq increments on every probe, 3 answers to duplicates, timeout from the first probe.
    "libreswan": Behaviour(
        dpd_delay=10.0,
        dpd_interval=10.0,
        dpd_timeout=30.0,
        liveness_model=LivenessModel.LIBRESWAN,
        seq_on_retry=SeqOnRetry.INCREMENT,
        dup_answer_limit=3,
        wrong_seq_ack_counts=True,
        liveness_traffic=LivenessTraffic.IKE_ESP,
        retransmit=Retransmit(timeout=0.5, base=2.0, tries=7, limit=60.0, budget=60.0),
    ),
    # A generic hardware device (e.g. a branch firewall): OpenBSD-like duplicate limit, AWS-like timers.
    "device": Behaviour(
        dpd_delay=10.0,
        dpd_interval=10.0,
        dpd_timeout=30.0,
        seq_on_retry=SeqOnRetry.REUSE,
        dup_answer_limit=5,
        wrong_seq_ack_counts=False,
        liveness_traffic=LivenessTraffic.IKE,
    ),
}


@dataclass(frozen=True)
class TrafficSelector:
    """An IPv4/IPv6 subnet with optional protocol and port range."""

    cidr: str = "0.0.0.0/0"
    protocol: int = 0
    port_low: int = 0
    port_high: int = 65535


@dataclass(frozen=True)
class PeerConfig:
    """Everything one side of one tunnel needs."""

    role: Role
    ike_version: IkeVersion = IkeVersion.IKEV1
    options: TunnelOptions = field(default_factory=TunnelOptions)
    behaviour: Behaviour = field(default_factory=Behaviour)
    psk: bytes = b"awsnetemu.default.psk"
    local_id: str | None = None
    """IKE identity (ID_IPV4_ADDR of the local address when None)."""
    remote_id: str | None = None
    proposals: tuple[str, ...] = ()
    """strongSwan-style IKE proposals (``aes256-sha256-modp2048``); empty = derive from ``options``."""
    esp_proposals: tuple[str, ...] = ()
    local_ts: TrafficSelector = field(default_factory=TrafficSelector)
    remote_ts: TrafficSelector = field(default_factory=TrafficSelector)
    nat_t: bool = True
    """Advertise NAT-T (RFC 3947) and float to 4500 when NAT is detected (or when forced)."""
    force_encap: bool = False
    """Float to 4500 even without NAT (strongSwan ``encap = yes``)."""
    name: str = "tunnel"
    initiate: bool | None = None
    """Override who initiates at start-up (None: CGW initiates; AWS only with StartupAction=start)."""

    def __post_init__(self) -> None:
        if self.ike_version.value not in [v.value for v in self.options.ike_versions]:
            raise ConfigError(
                "ike_version",
                f"{self.ike_version.value} is not in IKEVersions "
                f"({_allowed([v.value for v in self.options.ike_versions])})",
            )
        if self.options.pre_shared_key is not None and self.psk == PeerConfig.__dataclass_fields__["psk"].default:
            object.__setattr__(self, "psk", self.options.pre_shared_key.encode())

    @property
    def dpd_timeout(self) -> float:
        """Seconds from the dead reference instant to declaring the peer dead."""
        if self.role is Role.AWS or self.behaviour.dpd_timeout is None:
            return float(self.options.dpd_timeout_seconds)
        return self.behaviour.dpd_timeout

    @property
    def initiates_at_startup(self) -> bool:
        """CGW initiates (unless told not to); AWS initiates only with StartupAction=start."""
        if self.initiate is not None:
            return self.initiate
        if self.role is Role.CGW:
            return True
        return self.options.startup_action is StartupAction.START
