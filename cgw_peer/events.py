"""Every event the product emits: its name, its fields, what each field means. One definition each.

An event is a fact in the past tense that a node reports (:class:`emulator.actions.Event`: a ``name`` and a
mapping of JSON-serialisable ``fields``). The IKE engines (both versions), the runtime (virtual-time network,
UDP driver, scenario runner) and the TGW binding all use the names below, and nothing else. This module is the
vocabulary a reader of a JSON-lines trace, a scenario's ``expect:`` list or a timeline learns.

Each event is declared once, as a typed builder::

    @event("engine")
    def tunnel_down(*, reason: str) -> Event:
        '''The tunnel went DOWN (Status UP -> DOWN). ...

        Fields:
            reason: why, one of :data:`DOWN_REASONS`.
        '''
        return Event("tunnel_down", {"reason": reason})

The decorator records the name, the fields and their types (from the signature) and the documentation of each
field (from the ``Fields:`` section) in :data:`EVENTS`. A field whose default is ``None`` is *optional*: it is
present only where it applies (e.g. ``seq`` on IKEv1 DPD events, ``message_id`` on IKEv2 ones) and is never
sent as ``null``. Every other field is always present.

Builders are what code calls, except on the few per-packet paths (the DPD exchange in both engines), which build
the same dictionary inline to save a call; :func:`check_event` verifies those against the declaration, and the
test suite runs every trace it produces through it (``SimNetwork(strict_events=True)``).

Where the two IKE versions genuinely differ on the wire, the difference is a documented field of the same event,
never a different event: an IKEv1 R-U-THERE has a ``seq`` (RFC 3706 §6), an IKEv2 liveness check a
``message_id`` (RFC 7296 §2.2). Everything else is identical in both versions.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from emulator.actions import Event

Source = Literal["engine", "runtime", "tgw"]
"""Who emits an event: an IKE engine (either role, either version), the runtime (network, driver, scenario
runner), or the TGW binding of a scenario."""


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One field of one event."""

    name: str
    types: tuple[type, ...]
    """Accepted Python types of the value (``int`` never accepts ``bool``; ``float`` accepts ``int``)."""
    optional: bool
    """Present only where it applies (see the event's documentation); never ``None`` when present."""
    doc: str
    type_text: str
    """The annotation as written, for documentation and error messages."""

    def accepts(self, value: Any) -> bool:
        if isinstance(value, bool):
            return bool in self.types
        if isinstance(value, int) and float in self.types:
            return True
        return isinstance(value, self.types)


@dataclass(frozen=True, slots=True)
class EventSpec:
    """One event: its name, who emits it, what it means and its fields."""

    name: str
    source: Source
    doc: str
    fields: Mapping[str, FieldSpec]
    open_fields: bool = False
    """True for the few events whose field set is not fixed (a driver's statistics): any field is allowed."""
    choices: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)
    """Fields whose value must be one of a fixed set (e.g. ``tunnel_down.reason``)."""

    @property
    def summary(self) -> str:
        return self.doc.strip().split("\n\n", 1)[0].replace("\n", " ")


EVENTS: dict[str, EventSpec] = {}
"""Every event, by name, in declaration order."""

_F = TypeVar("_F", bound=Callable[..., Event])


def _field_docs(doc: str) -> dict[str, str]:
    """The ``Fields:`` section of a builder's docstring: ``name: text`` lines, continuation lines indented."""
    out: dict[str, str] = {}
    lines = inspect.cleandoc(doc).splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == "Fields:")
    except StopIteration:
        return out
    current: str | None = None
    for line in lines[start + 1 :]:
        if not line.strip():
            current = None
            continue
        stripped = line.strip()
        head, sep, rest = stripped.partition(":")
        if sep and head.isidentifier() and line.startswith("    ") and not line.startswith("        "):
            current = head
            out[head] = rest.strip()
        elif current is not None:
            out[current] += " " + stripped
    return out


def _types_of(hint: Any) -> tuple[tuple[type, ...], bool]:
    """(accepted runtime types, whether None is part of the annotation)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        ts: list[type] = []
        nullable = False
        for a in typing.get_args(hint):
            if a is type(None):
                nullable = True
                continue
            sub, _ = _types_of(a)
            ts.extend(sub)
        return tuple(ts), nullable
    if origin is not None:
        return (origin,), False
    if hint is Any:
        return (object,), False
    return (hint,), False


def event(
    source: Source, *, open_fields: bool = False, choices: Mapping[str, tuple[Any, ...]] | None = None
) -> Callable[[_F], _F]:
    """Register a builder in :data:`EVENTS` (see the module docstring)."""

    def deco(fn: _F) -> _F:
        name = fn.__name__
        if name in EVENTS:
            raise ValueError(f"event {name!r} declared twice")
        doc = inspect.getdoc(fn) or ""
        docs = _field_docs(doc)
        hints = typing.get_type_hints(fn)
        sig = inspect.signature(fn)
        fields: dict[str, FieldSpec] = {}
        for p in sig.parameters.values():
            if p.kind is not inspect.Parameter.KEYWORD_ONLY:
                continue
            ts, nullable = _types_of(hints[p.name])
            optional = p.default is None
            if nullable and not optional:
                raise ValueError(f"{name}.{p.name}: a nullable field must default to None (optional)")
            if p.name not in docs:
                raise ValueError(f"{name}.{p.name}: no documentation in the Fields: section")
            fields[p.name] = FieldSpec(p.name, ts, optional, docs[p.name], str(p.annotation))
        for extra in docs:
            if extra not in fields:
                raise ValueError(f"{name}: documents a field {extra!r} it does not have")
        body = doc.split("Fields:", 1)[0].strip()
        for c in choices or {}:
            if c not in fields:
                raise ValueError(f"{name}: choices for an unknown field {c!r}")
        EVENTS[name] = EventSpec(name, source, body, fields, open_fields, dict(choices or {}))
        return fn

    return deco


def _ev(name: str, **fields: Any) -> Event:
    """An Event with the optional (None) fields left out."""
    return Event(name, {k: v for k, v in fields.items() if v is not None})


# ==================================================================================================== values

DOWN_REASONS: tuple[str, ...] = (
    "dpd_timeout",
    "delete_received",
    "ike_deleted",
    "child_deleted",
    "expired",
    "closed",
    "initial_contact",
    "negotiation_failed",
)
"""Why a tunnel went DOWN (``tunnel_down.reason`` and ``routes_withdrawn.reason``):

* ``dpd_timeout``: the DPD timeout action ``clear`` or ``restart`` tore the SAs down;
* ``delete_received``: the peer deleted the IKE SA or the last Child SA / IPsec SA pair;
* ``ike_deleted``: we deleted the last IKE SA (and with it the Child SAs);
* ``child_deleted``: we deleted the last Child SA;
* ``expired``: a hard lifetime ended and nobody had rekeyed;
* ``closed``: :meth:`close` was called (a clean shutdown);
* ``initial_contact``: the peer came back as a new process (INITIAL_CONTACT) and the old SAs were dropped;
* ``negotiation_failed``: a (re)negotiation that would have brought the tunnel back failed.
"""

DPD_MODELS: tuple[str, ...] = ("aws", "strongswan", "libreswan")
"""``dpd_timeout.model``: the liveness model that declared the peer dead (``Behaviour.liveness_model``; the
rules are in :mod:`cgw_peer.lifecycle`)."""
DPD_ACTIONS: tuple[str, ...] = ("clear", "restart", "none")

SA_KINDS: tuple[str, ...] = ("ike", "child")
PROTOCOLS: tuple[str, ...] = ("ike", "esp")

# =========================================================================================== tunnel lifecycle


@event("engine")
def tunnel_up() -> Event:
    """The tunnel came UP (Status DOWN -> UP): an IPsec SA pair / Child SA is installed. Exactly once per
    transition; a rekey that keeps traffic flowing is not a transition."""
    return Event("tunnel_up", {})


@event("engine", choices={"reason": DOWN_REASONS})
def tunnel_down(*, reason: str) -> Event:
    """The tunnel went DOWN (Status UP -> DOWN): no usable SA pair is left. Exactly once per transition, always
    followed at the same instant by ``routes_withdrawn``.

    Fields:
        reason: why, one of :data:`DOWN_REASONS`.
    """
    return Event("tunnel_down", {"reason": reason})


@event("engine", choices={"reason": DOWN_REASONS})
def routes_withdrawn(*, reason: str) -> Event:
    """The routes through this tunnel are removed (static routes while DOWN, or the BGP prefixes learnt over it).
    Emitted with every ``tunnel_down``; a TGW VPN attachment follows it.

    Fields:
        reason: the ``tunnel_down`` reason.
    """
    return Event("routes_withdrawn", {"reason": reason})


@event("engine", choices={"action": DPD_ACTIONS, "model": DPD_MODELS})
def dpd_timeout(*, action: str, last_inbound: float, model: str, probes: int, retransmits: int) -> Event:
    """The peer was declared dead by Dead Peer Detection; ``action`` (AWS ``DPDTimeoutAction``) follows at the
    same instant. Reported once per silence: not again until an authenticated message arrives (also with
    ``DPDTimeoutAction=none``, where the SAs stay and probing goes on).

    Fields:
        action: the DPDTimeoutAction applied: clear | restart | none.
        last_inbound: the instant the last authenticated inbound message (or liveness-counting ESP) actually
            arrived; the SA's establishment time if nothing arrived since.
        model: the liveness model that decided, one of :data:`DPD_MODELS`.
        probes: liveness requests sent since ``last_inbound`` (IKEv1: R-U-THERE messages; IKEv2: the
            INFORMATIONAL request and its retransmissions, or the unanswered request of another exchange).
        retransmits: ``probes - 1``: the repeats of the first probe (the count in AWS's IKEv2 log line).
    """
    return Event(
        "dpd_timeout",
        {
            "action": action,
            "last_inbound": last_inbound,
            "model": model,
            "probes": probes,
            "retransmits": retransmits,
        },
    )


@event("engine")
def restart_scheduled(*, at: float, attempt: int, delay: float) -> Event:
    """This side will initiate IKE again at ``at`` (DPDTimeoutAction=restart, or a failed (re)negotiation while
    restarting), after a backoff.

    Fields:
        at: the instant of the new initiation.
        attempt: 1 for the first restart after the tunnel was last UP, then 2, 3, ...
        delay: ``at - now``: min(max, initial * 2**(attempt-1)), shortened by the jitter.
    """
    return Event("restart_scheduled", {"at": at, "attempt": attempt, "delay": delay})


# ======================================================================================= Dead Peer Detection


@event("engine")
def dpd_request_sent(*, attempt: int, seq: int | None = None, message_id: int | None = None) -> Event:
    """A liveness request went out: an IKEv1 R-U-THERE (RFC 3706) or an IKEv2 empty INFORMATIONAL request
    (RFC 7296 §1.4), including IKEv2 retransmissions of that request.

    Fields:
        attempt: 1 for the first probe since the last authenticated inbound message, 2 for the next, ...
        seq: IKEv1: the R-U-THERE sequence number.
        message_id: IKEv2: the request's message ID (the same on retransmissions).
    """
    return _ev("dpd_request_sent", attempt=attempt, seq=seq, message_id=message_id)


@event("engine")
def dpd_request_received(*, seq: int | None = None, message_id: int | None = None) -> Event:
    """An authenticated liveness request arrived (IKEv1 R-U-THERE, IKEv2 empty INFORMATIONAL request).

    Fields:
        seq: IKEv1: its sequence number.
        message_id: IKEv2: its message ID.
    """
    return _ev("dpd_request_received", seq=seq, message_id=message_id)


@event("engine")
def dpd_ack_sent(*, seq: int | None = None, message_id: int | None = None) -> Event:
    """We answered a liveness request (IKEv1 R-U-THERE-ACK echoing the sequence number, IKEv2 empty response).

    Fields:
        seq: IKEv1: the echoed sequence number.
        message_id: IKEv2: the response's message ID.
    """
    return _ev("dpd_ack_sent", seq=seq, message_id=message_id)


@event("engine")
def dpd_ack_received(*, valid: bool, seq: int | None = None, message_id: int | None = None) -> Event:
    """An answer to our liveness request arrived.

    Fields:
        valid: it answers the outstanding request (IKEv1: the sequence number matches, RFC 3706 §6.2; IKEv2:
            always, any response is success). An invalid ACK earns liveness credit only where the behaviour
            says so (``wrong_seq_ack_counts``).
        seq: IKEv1: its sequence number.
        message_id: IKEv2: its message ID.
    """
    return _ev("dpd_ack_received", valid=valid, seq=seq, message_id=message_id)


# ============================================================================================== SA lifecycle


@event("engine")
def ike_sa_established(
    *,
    spi_i: str,
    spi_r: str,
    version: int,
    proposal: str,
    initiator: bool,
    nat: bool,
    local: str,
    remote: str,
) -> Event:
    """An IKE SA (IKEv1 ISAKMP SA, IKEv2 IKE SA) is authenticated and usable, new or from a rekey.

    Fields:
        spi_i: initiator SPI / cookie, hex.
        spi_r: responder SPI / cookie, hex.
        version: 1 or 2.
        proposal: the negotiated suite, strongSwan-style (``aes128-sha1-modp2048``).
        initiator: we initiated this SA.
        nat: NAT was detected (or encapsulation forced): IKE and ESP use UDP 4500.
        local: our address:port for this SA.
        remote: the peer's address:port for this SA.
    """
    return Event(
        "ike_sa_established",
        {
            "spi_i": spi_i,
            "spi_r": spi_r,
            "version": version,
            "proposal": proposal,
            "initiator": initiator,
            "nat": nat,
            "local": local,
            "remote": remote,
        },
    )


@event("engine")
def child_sa_established(
    *,
    spi_in: str,
    spi_out: str,
    proposal: str,
    ts_local: list[str],
    ts_remote: list[str],
    enc_in: str,
    integ_in: str,
    enc_out: str,
    integ_out: str,
    encap: bool,
) -> Event:
    """An IPsec SA pair (IKEv1 Quick Mode) / Child SA (IKEv2) is installed.

    Fields:
        spi_in: our inbound SPI (the peer sends ESP with it), hex.
        spi_out: the peer's inbound SPI (we send with it), hex.
        proposal: the negotiated ESP suite, strongSwan-style.
        ts_local: our traffic selectors, ``first-last[proto/port-port]``.
        ts_remote: the peer's traffic selectors.
        enc_in: the encryption key of inbound ESP, hex (AES-GCM: key and 4-octet salt).
        integ_in: the integrity key of inbound ESP, hex (empty for AES-GCM).
        enc_out: the encryption key of outbound ESP, hex.
        integ_out: the integrity key of outbound ESP, hex.
        encap: ESP is UDP-encapsulated (RFC 3948) on port 4500.
    """
    return Event(
        "child_sa_established",
        {
            "spi_in": spi_in,
            "spi_out": spi_out,
            "proposal": proposal,
            "ts_local": ts_local,
            "ts_remote": ts_remote,
            "enc_in": enc_in,
            "integ_in": integ_in,
            "enc_out": enc_out,
            "integ_out": integ_out,
            "encap": encap,
        },
    )


@event("engine")
def sa_keys(
    *,
    ike_version: int,
    icookie: str | None = None,
    rcookie: str | None = None,
    enc_key: str | None = None,
    spi_i: str | None = None,
    spi_r: str | None = None,
    sk_ei: str | None = None,
    sk_er: str | None = None,
    encr_alg: str | None = None,
    sk_ai: str | None = None,
    sk_ar: str | None = None,
    integ_alg: str | None = None,
) -> Event:
    """An IKE SA got keys: one row of Wireshark's decryption table (:mod:`emulator.keytables`). The two IKE
    versions have different tables, so the fields differ by version.

    Fields:
        ike_version: 1 or 2.
        icookie: IKEv1: the initiator cookie, hex.
        rcookie: IKEv1: the responder cookie, hex.
        enc_key: IKEv1: Ka, the phase-1 encryption key, hex.
        spi_i: IKEv2: SPIi, hex.
        spi_r: IKEv2: SPIr, hex.
        sk_ei: IKEv2: SK_ei, hex.
        sk_er: IKEv2: SK_er, hex.
        encr_alg: IKEv2: Wireshark's name of the encryption algorithm.
        sk_ai: IKEv2: SK_ai, hex (empty for AES-GCM).
        sk_ar: IKEv2: SK_ar, hex.
        integ_alg: IKEv2: Wireshark's name of the integrity algorithm.
    """
    return _ev(
        "sa_keys",
        ike_version=ike_version,
        icookie=icookie,
        rcookie=rcookie,
        enc_key=enc_key,
        spi_i=spi_i,
        spi_r=spi_r,
        sk_ei=sk_ei,
        sk_er=sk_er,
        encr_alg=encr_alg,
        sk_ai=sk_ai,
        sk_ar=sk_ar,
        integ_alg=integ_alg,
    )


@event("engine")
def ike_sa_expired(*, spi_i: str, spi_r: str) -> Event:
    """An IKE SA reached its hard lifetime (Phase1LifetimeSeconds) without a rekey and is deleted with its
    Child SAs (RFC 7296 §2.8; RFC 2407 §4.5 life duration).

    Fields:
        spi_i: initiator SPI / cookie, hex.
        spi_r: responder SPI / cookie, hex.
    """
    return Event("ike_sa_expired", {"spi_i": spi_i, "spi_r": spi_r})


@event("engine")
def child_sa_expired(*, spi_in: str, spi_out: str) -> Event:
    """A Child SA / IPsec SA pair reached its hard lifetime (Phase2LifetimeSeconds) without a rekey.

    Fields:
        spi_in: our inbound SPI, hex.
        spi_out: the peer's inbound SPI, hex.
    """
    return Event("child_sa_expired", {"spi_in": spi_in, "spi_out": spi_out})


@event("engine")
def ike_sa_replaced(*, spi: str, reason: str) -> Event:
    """An IKE SA was dropped without a Delete because the peer showed it is gone (INITIAL_CONTACT: RFC 2407
    §4.6.3.3, RFC 7296 §2.4).

    Fields:
        spi: our SPI / the initiator cookie of the dropped SA, hex.
        reason: ``initial_contact``.
    """
    return Event("ike_sa_replaced", {"spi": spi, "reason": reason})


@event("engine", choices={"protocol": PROTOCOLS})
def delete_sent(*, protocol: str, spi: str, message_id: int | None = None) -> Event:
    """We sent a Delete (RFC 2408 §3.15, RFC 7296 §3.11).

    Fields:
        protocol: ``ike`` (the IKE / ISAKMP SA) or ``esp`` (an IPsec SA / Child SA).
        spi: for ``ike``, our SPI (IKEv2) or CKY-I|CKY-R (IKEv1); for ``esp``, our inbound SPI; hex.
        message_id: IKEv2: the INFORMATIONAL request's message ID.
    """
    return _ev("delete_sent", protocol=protocol, spi=spi, message_id=message_id)


@event("engine", choices={"protocol": PROTOCOLS})
def delete_received(*, protocol: str, spi: str) -> Event:
    """An authenticated Delete arrived.

    Fields:
        protocol: ``ike`` or ``esp``.
        spi: the SPI it names, hex (IKEv2 IKE SA Deletes name none: the peer's SPI of the SA it arrived on).
    """
    return Event("delete_received", {"protocol": protocol, "spi": spi})


@event("engine", choices={"sa": SA_KINDS})
def rekey_started(*, sa: str, spi: str) -> Event:
    """We started a rekey (IKEv1: a new Main Mode or Quick Mode; IKEv2: CREATE_CHILD_SA).

    Fields:
        sa: ``ike`` or ``child``.
        spi: the SA being rekeyed: our IKE SPI (IKEv1: CKY-I|CKY-R) or our inbound Child SPI, hex.
    """
    return Event("rekey_started", {"sa": sa, "spi": spi})


@event("engine", choices={"sa": SA_KINDS})
def rekey_done(*, sa: str, old_spi: str, new_spi: str, initiator: bool) -> Event:
    """A rekey finished: the new SA is installed (the old one is deleted by whoever the RFC says).

    Fields:
        sa: ``ike`` or ``child``.
        old_spi: the replaced SA (same form as in ``rekey_started``), hex.
        new_spi: its successor, hex.
        initiator: we started this rekey.
    """
    return Event("rekey_done", {"sa": sa, "old_spi": old_spi, "new_spi": new_spi, "initiator": initiator})


@event("engine", choices={"sa": SA_KINDS})
def rekey_collision(*, sa: str, kind: str, redundant: str | None = None, ours_redundant: bool | None = None) -> Event:
    """Both sides acted on the same SA at once (RFC 7296 §2.8.1, §2.25; RFC 2409 has no rule: see
    :mod:`cgw_peer.lifecycle`). One of the duplicates is deleted by its creator.

    Fields:
        sa: ``ike`` or ``child``.
        kind: ``simultaneous_rekey``, ``child_delete`` (a Delete crossed our rekey) or ``duplicate_ike_sa``
            (both sides set up an IKE SA at once).
        redundant: the SA that goes (our SPI of it), hex, once decided.
        ours_redundant: the redundant SA is one we created.
    """
    return _ev("rekey_collision", sa=sa, kind=kind, redundant=redundant, ours_redundant=ours_redundant)


@event(
    "engine",
    choices={"exchange": ("main_mode", "quick_mode", "ike_sa_init", "ike_auth", "create_child_sa", "informational")},
)
def negotiation_failed(*, exchange: str, reason: str, retransmits: int | None = None) -> Event:
    """An exchange that would create or rekey an SA failed: the peer refused it, or our request went
    unanswered until the retransmission schedule gave up.

    Fields:
        exchange: IKEv1 ``main_mode`` | ``quick_mode``; IKEv2 ``ike_sa_init`` | ``ike_auth`` |
            ``create_child_sa``.
        reason: ``peer_not_responding`` or the notify the peer sent (``no_proposal_chosen``,
            ``authentication_failed``, ``ts_unacceptable``, ...).
        retransmits: for ``peer_not_responding``, how many times the request was repeated.
    """
    return _ev("negotiation_failed", exchange=exchange, reason=reason, retransmits=retransmits)


# ================================================================================== retransmission and input


@event("engine")
def request_retransmitted(*, kind: str, retransmit: int, message_id: int) -> Event:
    """One of our requests went unanswered and was sent again, bitwise identical (RFC 7296 §2.1; IKEv1 Main and
    Quick Mode). IKEv2 liveness requests also emit ``dpd_request_sent``.

    Fields:
        kind: the datagram kind (``main_mode_3``, ``ike_auth_request``, ``liveness_request``, ...).
        retransmit: 1 for the first repeat, 2, ...
        message_id: the request's message ID (IKEv1 Main Mode: 0).
    """
    return Event("request_retransmitted", {"kind": kind, "retransmit": retransmit, "message_id": message_id})


@event("engine")
def response_retransmitted(*, kind: str, message_id: int) -> Event:
    """A retransmitted request arrived and got our cached answer again, unprocessed (RFC 7296 §2.1; RFC 2408
    §5 for IKEv1).

    Fields:
        kind: the datagram kind of the cached answer.
        message_id: the request's message ID (IKEv1 Main Mode: 0).
    """
    return Event("response_retransmitted", {"kind": kind, "message_id": message_id})


@event("engine")
def cookie_sent() -> Event:
    """IKEv2 responder: an IKE_SA_INIT was answered statelessly with a COOKIE (RFC 7296 §2.6)."""
    return Event("cookie_sent", {})


@event("engine")
def cookie_received(*, length: int) -> Event:
    """IKEv2 initiator: the responder asked for a COOKIE; IKE_SA_INIT is repeated with it (RFC 7296 §2.6).

    Fields:
        length: the cookie's length in octets.
    """
    return Event("cookie_received", {"length": length})


@event("engine")
def invalid_ke_payload(*, group: int) -> Event:
    """IKEv2 initiator: the responder wants another DH group; IKE_SA_INIT is repeated with it (RFC 7296 §1.2).

    Fields:
        group: the group the responder asked for.
    """
    return Event("invalid_ke_payload", {"group": group})


@event("engine")
def invalid_ke_payload_sent(*, group: int) -> Event:
    """IKEv2 responder: we asked the initiator for another DH group (RFC 7296 §1.2).

    Fields:
        group: the group we asked for.
    """
    return Event("invalid_ke_payload_sent", {"group": group})


@event("engine")
def datagram_dropped(*, reason: str, detail: str | None = None) -> Event:
    """A datagram was dropped: malformed, not authentic, unexpected, or refused. Never an exception.

    Fields:
        reason: a snake_case tag, also counted as ``dropped:<reason>`` in the node's counters.
        detail: free text for a human.
    """
    return _ev("datagram_dropped", reason=reason, detail=detail)


@event("engine")
def aws_log(*, message: str) -> Event:
    """A line of the AWS tunnel activity log, verbatim where AWS documents it (``ike-dpd.md`` §1.2, §1.5).
    The AWS role only.

    Fields:
        message: the log line.
    """
    return Event("aws_log", {"message": message})


# ==================================================================================================== runtime


@event("runtime")
def datagram_sent(*, kind: str, src: str, dst: str, len: int, lost: bool) -> Event:
    """A node sent a datagram on the simulated network (virtual time).

    Fields:
        kind: what it carries (``dpd_request``, ``main_mode_1``, ``ike_auth_request``, ``nat_keepalive``, ...).
        src: source address:port.
        dst: destination address:port.
        len: UDP payload length in octets.
        lost: the link's fault plan dropped it.
    """
    return Event("datagram_sent", {"kind": kind, "src": src, "dst": dst, "len": len, "lost": lost})


@event("runtime")
def node_crashed() -> Event:
    """The node stopped as with ``kill -9``: its timers stopped, datagrams to it are lost."""
    return Event("node_crashed", {})


@event("runtime")
def node_revived() -> Event:
    """The node runs again (a fresh process with new SAs, unless the scenario says otherwise)."""
    return Event("node_revived", {})


@event("runtime")
def fault_dropped(*, kind: str, dst: list[Any]) -> Event:
    """The UDP driver's fault plan dropped an outgoing datagram.

    Fields:
        kind: what it carried.
        dst: [address, port].
    """
    return Event("fault_dropped", {"kind": kind, "dst": dst})


@event("runtime")
def send_failed(*, src: list[Any], dst: list[Any], errno: str) -> Event:
    """The operating system refused to send a datagram.

    Fields:
        src: [address, port].
        dst: [address, port].
        errno: the error's symbolic name (``ECONNREFUSED``, ...).
    """
    return Event("send_failed", {"src": src, "dst": dst, "errno": errno})


@event("runtime")
def driver_error(*, where: str, error: str, traceback: str | None = None) -> Event:
    """A node raised inside the UDP driver (a bug): the datagram or timer is skipped, the node keeps running.

    Fields:
        where: ``datagram``, ``timer``, ``next_deadline``, ``start``, ...
        error: the exception's repr.
        traceback: the formatted traceback.
    """
    return _ev("driver_error", where=where, error=error, traceback=traceback)


@event("runtime")
def listening(*, local: list[str], remote: str, wall_clock_start: float) -> Event:
    """``awsnetemu vpn``: the peer's sockets are bound.

    Fields:
        local: the bound address:port strings.
        remote: the peer's address:port.
        wall_clock_start: the wall-clock time (Unix seconds) of driver time 0.
    """
    return Event("listening", {"local": local, "remote": remote, "wall_clock_start": wall_clock_start})


@event("runtime", open_fields=True)
def stopped() -> Event:
    """``awsnetemu vpn``: the driver stopped; the fields are its statistics (datagrams in/out, drops, ...)."""
    return Event("stopped", {})


# ================================================================================================ TGW binding


@event("tgw")
def tgw_routes_changed(*, attachment: str, tunnel: str, up: bool) -> Event:
    """A scenario's TGW VPN attachment followed the AWS side's tunnel state.

    Fields:
        attachment: the VPN attachment id.
        tunnel: the tunnel name in the attachment.
        up: the tunnel's routes are now installed.
    """
    return Event("tgw_routes_changed", {"attachment": attachment, "tunnel": tunnel, "up": up})


@event("tgw")
def tgw_flow(*, name: str, flow: str, verdict: str, reason: str, hops: list[Any]) -> Event:
    """A scenario's TGW probe: one packet sent through the dataplane.

    Fields:
        name: the probe's name.
        flow: the flow, as written in the scenario.
        verdict: ``delivered`` or ``dropped``.
        reason: the drop reason (empty when delivered).
        hops: the nodes the packet went through.
    """
    return Event("tgw_flow", {"name": name, "flow": flow, "verdict": verdict, "reason": reason, "hops": hops})


# ======================================================================== traffic through a VPN connection

BGP_DOWN_REASONS: tuple[str, ...] = ("hold_timer_expired", "tunnel_down", "notification_received", "peer_restarted")
"""Why a tunnel's BGP session went down (``bgp_session_down.reason``; :mod:`cgw_peer.connection.bgp`):

* ``hold_timer_expired``: nothing arrived from the peer for the hold time (30 s at AWS);
* ``tunnel_down``: the tunnel lost its IPsec SAs, so the session's transport is gone;
* ``notification_received``: the peer closed the session with a NOTIFICATION;
* ``peer_restarted``: an OPEN arrived while established (the peer started over).
"""
FLOW_KINDS: tuple[str, ...] = ("udp", "echo")
"""``flow_summary.kind``: ``udp``, packets one way at a constant rate; ``echo``, requests at a constant rate that the
destination host answers (a round trip counts as delivered when the answer is back)."""
EC2_DIRECTIONS: tuple[str, ...] = ("in", "out")


@event("engine")
def bgp_session_up(*, hold_time: float, peer_asn: int) -> Event:
    """The tunnel's BGP session is established (RFC 4271 Established): the prefixes both ends advertise follow.
    For a dynamic VPN this is CloudWatch's ``TunnelState`` 1.

    Fields:
        hold_time: the negotiated hold time, seconds (the smaller of the two OPENs').
        peer_asn: the peer's ASN.
    """
    return Event("bgp_session_up", {"hold_time": hold_time, "peer_asn": peer_asn})


@event("engine", choices={"reason": BGP_DOWN_REASONS})
def bgp_session_down(*, reason: str) -> Event:
    """The tunnel's BGP session left Established; the prefixes learnt over it are withdrawn.

    Fields:
        reason: one of :data:`BGP_DOWN_REASONS`.
    """
    return Event("bgp_session_down", {"reason": reason})


@event("engine")
def bgp_routes_received(*, prefixes: list[str]) -> Event:
    """An UPDATE from the peer advertised prefixes over the tunnel's BGP session.

    Fields:
        prefixes: the advertised IPv4 prefixes (NLRI), ``a.b.c.d/n``.
    """
    return Event("bgp_routes_received", {"prefixes": prefixes})


@event("runtime")
def tunnel_metrics(
    *, tunnel: str, start: float, tunnel_state: int, tunnel_state_min: int, tunnel_data_in: int, tunnel_data_out: int
) -> Event:
    """One CloudWatch period of a tunnel's ``AWS/VPN`` metrics, at the AWS endpoint (ike-dpd.md §1.5): recorded
    at the end of each ``metrics_period`` of a connection scenario.

    Fields:
        tunnel: the tunnel's name in the VPN attachment.
        start: the period's first instant (it ends ``metrics_period`` later, when the event is recorded).
        tunnel_state: ``TunnelState``, Maximum statistic: 1 if the tunnel was UP (static VPN) / its BGP session
            ESTABLISHED (dynamic VPN) at any instant of the period, else 0.
        tunnel_state_min: the Minimum statistic: 0 if it was down at any instant of the period.
        tunnel_data_in: ``TunnelDataIn``, Sum: octets received through the tunnel in the period, after
            decryption.
        tunnel_data_out: ``TunnelDataOut``, Sum: octets sent through the tunnel, before encryption.
    """
    return Event(
        "tunnel_metrics",
        {
            "tunnel": tunnel,
            "start": start,
            "tunnel_state": tunnel_state,
            "tunnel_state_min": tunnel_state_min,
            "tunnel_data_in": tunnel_data_in,
            "tunnel_data_out": tunnel_data_out,
        },
    )


@event("runtime")
def flow_metrics(*, name: str, start: float, sent: int, delivered: int, delivered_bps: float) -> Event:
    """One ``metrics_period`` of a generated flow, recorded at the period's end.

    Fields:
        name: the flow's name.
        start: the period's first instant.
        sent: packets (``echo``: requests) the source sent in the period.
        delivered: packets (``echo``: answers back at the source) that arrived in the period.
        delivered_bps: the octets of those packets (inner IP packets) times 8, per second of the period.
    """
    return Event(
        "flow_metrics",
        {"name": name, "start": start, "sent": sent, "delivered": delivered, "delivered_bps": delivered_bps},
    )


@event("runtime")
def flow_outage(*, name: str, start: float, end: float, lost: int, recovered: bool) -> Event:
    """A run of consecutive lost packets of one flow (by sequence number), recorded when the run ends.

    Fields:
        name: the flow's name.
        start: when the first lost packet was sent.
        end: when the first packet after the run that arrived was sent (the flow's time to recover is
            ``end - start``); if none did, the instant the flow stopped sending.
        lost: the packets lost in the run.
        recovered: a packet after the run arrived.
    """
    return Event("flow_outage", {"name": name, "start": start, "end": end, "lost": lost, "recovered": recovered})


@event("runtime", choices={"kind": FLOW_KINDS})
def flow_summary(
    *,
    name: str,
    kind: str,
    sent: int,
    delivered: int,
    lost: int,
    outages: int,
    time_to_recover: float,
    drops: dict[str, Any],
    via: dict[str, Any],
) -> Event:
    """A generated flow's totals at the end of the run.

    Fields:
        name: the flow's name.
        kind: one of :data:`FLOW_KINDS`.
        sent: packets (``echo``: requests) sent.
        delivered: packets that arrived (``echo``: answers back at the source).
        lost: ``sent - delivered`` (a packet still on its way when the run ends counts as lost).
        outages: runs of consecutive lost packets (see ``flow_outage``).
        time_to_recover: the longest outage, seconds (``end - start`` of its ``flow_outage``); 0 without loss.
        drops: lost packets by where and why: the reason of the component that dropped it (``no_route``,
            ``esp_no_sa``, ``bw_out_allowance_exceeded``, ``cgw_no_route``...), ``in_transit`` for packets that left
            a tunnel endpoint and never arrived (a dead peer, a blackholed path).
        via: packets (``echo``: requests) handed to each tunnel, by tunnel name and side
            (``aws:tunnel1`` is the AWS endpoint encrypting towards the CGW).
    """
    return Event(
        "flow_summary",
        {
            "name": name,
            "kind": kind,
            "sent": sent,
            "delivered": delivered,
            "lost": lost,
            "outages": outages,
            "time_to_recover": time_to_recover,
            "drops": drops,
            "via": via,
        },
    )


@event("runtime", choices={"direction": EC2_DIRECTIONS})
def ec2_credits_exhausted(*, instance: str, direction: str, baseline_bps: float) -> Event:
    """An instance's network I/O credits in one direction ran out: from now on it gets its baseline bandwidth
    (``cgw_peer.connection.limits.Ec2Bandwidth``; tgw.md §2). Once per instance and direction.

    Fields:
        instance: the instance id.
        direction: ``in`` or ``out`` (EC2 keeps a credit bucket for each).
        baseline_bps: the baseline it falls back to, bits per second.
    """
    return Event("ec2_credits_exhausted", {"instance": instance, "direction": direction, "baseline_bps": baseline_bps})


# ================================================================================================ checking


def check_event(name: str, fields: Mapping[str, Any]) -> list[str]:
    """Problems with one emitted event (empty: it matches its declaration)."""
    spec = EVENTS.get(name)
    if spec is None:
        return [f"unknown event {name!r}"]
    problems: list[str] = []
    for f in spec.fields.values():
        if f.name not in fields:
            if not f.optional:
                problems.append(f"{name}: missing field {f.name!r}")
            continue
        v = fields[f.name]
        if v is None:
            problems.append(f"{name}.{f.name}: None (leave an optional field out instead)")
        elif not f.accepts(v):
            problems.append(f"{name}.{f.name}: {type(v).__name__} {v!r}, declared {f.type_text}")
        elif f.name in spec.choices and v not in spec.choices[f.name]:
            problems.append(f"{name}.{f.name}: {v!r} is not one of {', '.join(map(str, spec.choices[f.name]))}")
    if not spec.open_fields:
        for k in fields:
            if k not in spec.fields:
                problems.append(f"{name}: undeclared field {k!r}")
    return problems


def check_reference(name: Any, fields: Any = None) -> str | None:
    """Why an expectation that names event ``name`` with ``fields`` can never match (None: it can). Used to
    reject misspelt or renamed events and fields before a scenario runs."""
    if not isinstance(name, str) or name not in EVENTS:
        return f"unknown event {name!r} (known: {', '.join(sorted(EVENTS))})"
    spec = EVENTS[name]
    if fields is None:
        return None
    if not isinstance(fields, Mapping):
        return f"fields of {name!r} must be a mapping"
    if spec.open_fields:
        return None
    for k in fields:
        if k not in spec.fields:
            allowed = ", ".join(spec.fields) or "none"
            return f"event {name!r} has no field {k!r} (fields: {allowed})"
    return None


def markdown_reference() -> str:
    """Every event and field as a Markdown reference (``docs/events.md`` is generated from this)."""
    out = ["# Events", "", "Generated from `cgw_peer/events.py`; every trace line is one of these.", ""]
    for spec in EVENTS.values():
        out += [f"## `{spec.name}` ({spec.source})", "", spec.doc, ""]
        if spec.fields:
            out += ["| field | type | meaning |", "|---|---|---|"]
            for f in spec.fields.values():
                opt = " (optional)" if f.optional else ""
                out.append(f"| `{f.name}` | `{f.type_text}`{opt} | {f.doc} |")
            out.append("")
    return "\n".join(out)
