"""``awsnetemu vpn``: one IKE peer (the AWS endpoint or a customer gateway) on real UDP until SIGINT/SIGTERM.

Settings come from flags, or from ``--config FILE`` (YAML with the same keys: the flag names with ``-`` or
``_``, plus optional ``tunnel_options:`` in AWS spelling and ``behaviour:`` with
:class:`cgw_peer.config.Behaviour` field names); flags override the file.

Defaults that are the emulator's own choices (named here so they are never silent):

* ``--profile`` defaults to ``aws`` for ``--role aws`` and ``strongswan`` for ``--role cgw`` (AWS's CGW
  template is strongSwan's: dpddelay 10 s, dpdtimeout 30 s).
* ``--local``/``--remote`` ports default to 500; when the local port is 500 the NAT-T port 4500 is bound too.
* ``--local-ts``/``--remote-ts`` default to ``0.0.0.0/0`` (AWS's default traffic selectors).
* ``--psk`` is checked against AWS's PreSharedKey rules for ``--role aws`` only (a CGW may use any key).
* ``--faults JSON`` applies an :class:`emulator.link.FaultPlan` to what this peer sends (real-time fault
  injection; windows count from start; seeded by ``--seed``).
* ``--timer-slack`` defaults to 0.05 s: timers fire up to 50 ms after their deadline, never before
  (``emulator.drivers.asyncio_udp.TIMER_SLACK``); 0 asks for exact wake-ups.
* Without ``--ike-versions`` (``IKEVersions``), the tunnel options allow the version this peer runs
  (``--ike-version``), so ``--ike-version 2 --startup-action start`` is enough for an AWS-initiated IKEv2
  tunnel. An explicit contradiction (``--ike-versions ikev1 --ike-version 2``) is an error.

Validation (:mod:`emulator.validate`): every setting is checked before a socket is opened, with the same rules
for a flag and for its ``--config`` key: numbers are finite numbers, timers (``dpd-delay``, ``dpd-interval``,
``dpd-timeout``, the retransmission schedule, ``behaviour:`` periods) are at least
:data:`emulator.validate.MIN_PERIOD` (10 ms), booleans are booleans or yes/no, the PSK is text (quote a numeric
one in YAML), output paths (``--events``, ``--pcap``, ``--keys``) are writable. ``--check`` stops after the
validation (and after building the engine, which checks the proposals) and exits 0 without opening sockets.

Emulated network (``--role aws`` only): ``--topology FILE`` (a TGW topology, YAML or AWS JSON), ``--attachment ID``
(its VPN attachment; may be left out when there is one) and ``--tunnel NAME`` (default: the attachment's first
tunnel) put :class:`emulator.vpn_site.AwsSite` behind the endpoint: the peer's ESP is decrypted, enters the TGW
through the attachment, emulated VPC hosts answer ICMP echo and UDP/TCP echo, and the answers return encrypted.

Outputs: ``--events`` (JSON lines: ``t`` seconds since start, ``event``, ``peer`` and the event's fields; the
first line is the driver's ``listening`` event with ``wall_clock_start``, the Unix time of ``t = 0``; the last
is ``stopped``), ``--pcap`` (every datagram sent and
received, real addresses, wall-clock timestamps), ``--keys DIR`` (Wireshark ``ikev1_decryption_table`` /
``ikev2_decryption_table`` and ``esp_sa`` for the IPsec SAs, rewritten on every new SA, so
``WIRESHARK_CONFIG_DIR=DIR tshark -r FILE`` decrypts). A one-line status goes to stderr on start, on tunnel up/down
and on stop.

Exit codes: 0 after a signal, 1 when the sockets cannot be bound, 2 on a configuration error (the message
names the field).
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import os
import random
import signal
import sys
from dataclasses import dataclass, fields, replace
from typing import IO, Any

from cgw_peer.config import (
    PROFILES,
    Behaviour,
    IkeVersion,
    PeerConfig,
    Retransmit,
    Role,
    TrafficSelector,
    TunnelOptions,
)
from cgw_peer.errors import ConfigError as PeerConfigError
from emulator import validate
from emulator.actions import Address, Event
from emulator.drivers.asyncio_udp import TIMER_SLACK, JsonLinesEvents, PeerHandle, UdpDriver, check_timer_slack
from emulator.errors import ConfigError
from emulator.keytables import KeyTables
from emulator.link import FaultPlan
from emulator.pcap import LINKTYPE_RAW, PcapWriter

# AWS tunnel options exposed as flags: (flag, TunnelOptions field, type or None for a comma list).
_TUNNEL_FLAGS: tuple[tuple[str, str, str], ...] = (
    ("--startup-action", "startup_action", "add | start"),
    ("--dpd-timeout-action", "dpd_timeout_action", "clear | restart | none"),
    ("--dpd-timeout-seconds", "dpd_timeout_seconds", "DPDTimeoutSeconds, >= 30"),
    ("--phase1-lifetime-seconds", "phase1_lifetime_seconds", "900..28800"),
    ("--phase2-lifetime-seconds", "phase2_lifetime_seconds", "900..3600"),
    ("--rekey-margin-time-seconds", "rekey_margin_time_seconds", "60..phase2/2"),
    ("--rekey-fuzz-percentage", "rekey_fuzz_percentage", "0..100"),
    ("--replay-window-size", "replay_window_size", "64..2048"),
    ("--ike-versions", "ike_versions", "comma list: ikev1,ikev2"),
    ("--phase1-encryption-algorithms", "phase1_encryption_algorithms", "comma list, e.g. AES128,AES256"),
    ("--phase2-encryption-algorithms", "phase2_encryption_algorithms", "comma list"),
    ("--phase1-integrity-algorithms", "phase1_integrity_algorithms", "comma list, e.g. SHA1,SHA2-256"),
    ("--phase2-integrity-algorithms", "phase2_integrity_algorithms", "comma list"),
    ("--phase1-dh-group-numbers", "phase1_dh_group_numbers", "comma list, e.g. 14,19"),
    ("--phase2-dh-group-numbers", "phase2_dh_group_numbers", "comma list"),
    ("--tunnel-inside-cidr", "tunnel_inside_cidr", "a /30 in 169.254.0.0/16"),
)

# Every key accepted in --config (flag spelling with underscores), besides tunnel_options and behaviour.
_KEYS = {
    "role",
    "local",
    "remote",
    "ike_version",
    "psk",
    "proposal",
    "esp_proposal",
    "local_ts",
    "remote_ts",
    "local_id",
    "remote_id",
    "name",
    "profile",
    "dpd_delay",
    "dpd_interval",
    "dpd_timeout",
    "retransmit_timeout",
    "retransmit_base",
    "retransmit_tries",
    "force_encap",
    "no_nat_t",
    "initiate",
    "seed",
    "events",
    "pcap",
    "keys",
    "faults",
    "timer_slack",
    "tunnel_options",
    "behaviour",
    "topology",
    "attachment",
    "tunnel",
} | {f for _, f, _ in _TUNNEL_FLAGS}


def register(sub: Any) -> None:
    p = sub.add_parser(
        "vpn",
        help="run one IKE peer (AWS endpoint or customer gateway) on real UDP until SIGINT/SIGTERM",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    g = p.add_argument_group("peer")
    g.add_argument("--config", metavar="FILE", help="YAML file with the same keys as these flags")
    g.add_argument("--role", choices=["aws", "cgw"], help="which side this peer plays (default cgw)")
    g.add_argument("--local", metavar="IP[:PORT]", help="local IKE address (port default 500)")
    g.add_argument("--remote", metavar="IP[:PORT]", help="the other peer's IKE address (port default 500)")
    g.add_argument("--ike-version", choices=["1", "2"], help="IKE version to run (default 1)")
    g.add_argument("--psk", help="pre-shared key")
    g.add_argument("--proposal", action="append", help="IKE proposal, strongSwan style (repeatable)")
    g.add_argument("--esp-proposal", action="append", help="ESP proposal, strongSwan style (repeatable)")
    g.add_argument("--local-ts", metavar="CIDR", help="local traffic selector (default 0.0.0.0/0)")
    g.add_argument("--remote-ts", metavar="CIDR", help="remote traffic selector (default 0.0.0.0/0)")
    g.add_argument("--local-id", help="IKE identity (default: the local IP address)")
    g.add_argument("--remote-id", help="expected peer identity (default: the remote IP address)")
    g.add_argument("--name", help="tunnel name used in events (default tunnel)")
    g.add_argument("--seed", type=int, help="seed the peer's random generator (reproducible SPIs/nonces)")
    t = p.add_argument_group("AWS tunnel options")
    for flag, field_name, hint in _TUNNEL_FLAGS:
        t.add_argument(flag, dest=field_name, metavar="VALUE", help=hint)
    e = p.add_argument_group("emulator settings")
    e.add_argument("--profile", choices=sorted(PROFILES), help="behaviour profile (default: aws or strongswan)")
    e.add_argument("--dpd-delay", type=float, help="idle seconds before the first R-U-THERE")
    e.add_argument("--dpd-interval", type=float, help="seconds between repeated R-U-THEREs")
    e.add_argument("--dpd-timeout", type=float, help="CGW role: seconds to declare the peer dead")
    e.add_argument("--retransmit-timeout", type=float, help="first retransmission wait, seconds")
    e.add_argument("--retransmit-base", type=float, help="retransmission back-off base")
    e.add_argument("--retransmit-tries", type=int, help="retransmissions before giving up")
    e.add_argument("--force-encap", action="store_true", default=None, help="float to 4500 without NAT")
    e.add_argument("--no-nat-t", action="store_true", default=None, help="do not advertise NAT-T")
    e.add_argument(
        "--initiate",
        choices=["yes", "no"],
        help="override who initiates at start (default: CGW yes, AWS only with startup-action start)",
    )
    e.add_argument(
        "--faults",
        metavar="JSON",
        help='fault plan applied to what this peer sends, e.g. \'{"loss": 0.1, "drop_kinds": ["dpd_ack"]}\' '
        "(emulator.link.FaultPlan fields; windows are seconds since start)",
    )
    e.add_argument(
        "--timer-slack",
        type=float,
        metavar="SECONDS",
        help=f"round timer wake-ups up to a multiple of this (default {TIMER_SLACK}; 0: exact)",
    )
    n = p.add_argument_group("emulated network behind the AWS endpoint (--role aws)")
    n.add_argument(
        "--topology",
        metavar="FILE",
        help="TGW topology (YAML or AWS JSON): the peer's traffic enters its VPN attachment, emulated VPC hosts "
        "answer ICMP echo and UDP/TCP echo, their answers return through the tunnel",
    )
    n.add_argument("--attachment", metavar="ID", help="the topology's VPN attachment this tunnel belongs to")
    n.add_argument("--tunnel", metavar="NAME", help="the attachment's tunnel this peer is (default: its first)")
    o = p.add_argument_group("outputs")
    o.add_argument("--events", metavar="FILE|-", help="JSON-lines events ('-' for stdout)")
    o.add_argument("--pcap", metavar="FILE", help="capture of every datagram sent and received")
    o.add_argument("--keys", metavar="DIR", help="Wireshark decryption tables, kept current")
    p.add_argument(
        "--check",
        action="store_true",
        help="validate every setting (and build the engine), print a summary and exit 0 without opening sockets",
    )
    p.set_defaults(func=cmd_vpn)


# -- configuration --------------------------------------------------------------------------------------


def parse_address(text: Any, field: str) -> Address:
    """``IP``, ``IP:PORT``, ``[IPv6]:PORT`` -> (ip, port); default port 500."""
    s = validate.string(text, field).strip()
    host, port = s, "500"
    if s.startswith("["):
        host, _, rest = s[1:].partition("]")
        if rest.startswith(":"):
            port = rest[1:]
    elif s.count(":") == 1:
        host, port = s.split(":")
    try:
        ip = ipaddress.ip_address(host)
        p = int(port)
        if not 0 < p < 65536:
            raise ValueError
    except ValueError:
        raise ConfigError(f"{field}: expected IP[:PORT] (port 1-65535), got {text!r}") from None
    return (str(ip), p)


def _selector(text: Any, field: str) -> TrafficSelector:
    return TrafficSelector(cidr=validate.cidr(text, field))


def load_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The merged settings: the YAML file's keys, overridden by every flag that was given."""
    settings: dict[str, Any] = {}
    if args.config:
        raw = validate.load_yaml(args.config, "config")
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise ConfigError(f"config: {args.config} must hold a mapping of settings")
        for k, v in raw.items():
            key = str(k).replace("-", "_")
            if key == "proposals":
                key = "proposal"
            elif key == "esp_proposals":
                key = "esp_proposal"
            if key not in _KEYS:
                raise ConfigError(f"{validate.key_text(k)}: unknown setting (allowed: {', '.join(sorted(_KEYS))})")
            settings[key] = v
    for key in _KEYS:
        v = getattr(args, key, None)
        if v is not None:
            settings[key] = v
    return settings


def build_config(settings: dict[str, Any]) -> tuple[PeerConfig, Address, Address]:
    """Turn merged settings into a :class:`PeerConfig` and the two addresses; errors name the field."""
    try:
        return _build_config(settings)
    except PeerConfigError as e:
        raise ConfigError(str(e)) from None


def _ike_version(v: Any) -> IkeVersion:
    """``1``, ``2``, ``"1"``, ``"ikev2"``... (never a boolean)."""
    if isinstance(v, int | str) and not isinstance(v, bool):
        text = str(v).strip().lower().removeprefix("ikev")
        if text in ("1", "2"):
            return IkeVersion.IKEV1 if text == "1" else IkeVersion.IKEV2
    raise ConfigError(f"ike-version: must be 1 or 2, got {v!r}")


def _behaviour_override(beh: Behaviour, name: str, value: Any, flag: str) -> Behaviour:
    """One flat timer setting (flag or --config key) through the same rules as ``behaviour:`` entries
    (:meth:`Behaviour.from_mapping`), the error naming the flag."""
    try:
        merged = Behaviour.from_mapping({name: value}, "")
    except PeerConfigError as e:
        raise ConfigError(f"{flag}: {str(e).split(': ', 1)[1]}") from None
    return replace(beh, **{name: getattr(merged, name)})


def _build_config(s: dict[str, Any]) -> tuple[PeerConfig, Address, Address]:
    role_text = validate.string(s.get("role", "cgw"), "role").strip().lower()
    role = Role(validate.choice(role_text, "role", ("aws", "cgw")))
    if "local" not in s:
        raise ConfigError("local: required (IP[:PORT] of this peer)")
    if "remote" not in s:
        raise ConfigError("remote: required (IP[:PORT] of the other peer)")
    local = parse_address(s["local"], "local")
    remote = parse_address(s["remote"], "remote")
    if ipaddress.ip_address(local[0]).version != ipaddress.ip_address(remote[0]).version:
        raise ConfigError("remote: must be the same address family as local")
    version = _ike_version(s.get("ike_version", "1"))

    # AWS tunnel options: the nested mapping first, then the flat keys. Without IKEVersions they default to the
    # version this peer runs (so --ike-version 2 --startup-action start needs no --ike-versions ikev2).
    topts: dict[str, Any] = dict(validate.mapping(s.get("tunnel_options"), "tunnel_options"))
    for _, name, _ in _TUNNEL_FLAGS:
        if name in s:
            topts[name] = s[name]
    psk = None if s.get("psk") is None else validate.string(s["psk"], "psk")
    if psk is not None and role is Role.AWS:
        topts["pre_shared_key"] = psk  # validated the way AWS validates PreSharedKey
    options = TunnelOptions.from_mapping(topts, ike_version=version)

    default_profile = "aws" if role is Role.AWS else "strongswan"
    profile = validate.choice(s.get("profile") or default_profile, "profile", sorted(PROFILES))
    beh: Behaviour = PROFILES[profile]
    overrides = validate.mapping(s.get("behaviour"), "behaviour")
    if overrides:
        merged = Behaviour.from_mapping(overrides, "behaviour.")
        names = [str(k).replace("-", "_") for k in overrides]
        beh = replace(beh, **{n: getattr(merged, n) for n in names})
    for key in ("dpd_delay", "dpd_interval", "dpd_timeout"):
        if key in s:
            beh = _behaviour_override(beh, key, s[key], key.replace("_", "-"))
    rt = {f.name: s[f"retransmit_{f.name}"] for f in fields(Retransmit) if f"retransmit_{f.name}" in s}
    for k, v in rt.items():
        current = {f.name: getattr(beh.retransmit, f.name) for f in fields(Retransmit)}
        try:
            merged_rt = Behaviour.from_mapping({"retransmit": {**current, k: v}}, "")
        except PeerConfigError as e:
            raise ConfigError(f"retransmit-{k}: {str(e).split(': ', 1)[1]}") from None
        beh = replace(beh, retransmit=merged_rt.retransmit)
    validate.check_timer_floors(beh, "")

    pc: dict[str, Any] = {}
    if psk is not None:
        pc["psk"] = psk.encode()
    for key, attr in (("proposal", "proposals"), ("esp_proposal", "esp_proposals")):
        if key in s:
            pc[attr] = validate.string_list(s[key], key.replace("_", "-"), single=True)
    if "local_ts" in s:
        pc["local_ts"] = _selector(s["local_ts"], "local-ts")
    if "remote_ts" in s:
        pc["remote_ts"] = _selector(s["remote_ts"], "remote-ts")
    for key in ("local_id", "remote_id", "name"):
        if key in s:
            pc[key] = validate.string(s[key], key.replace("_", "-"))
    if "force_encap" in s:
        pc["force_encap"] = _bool(s["force_encap"], "force-encap")
    if "no_nat_t" in s:
        pc["nat_t"] = not _bool(s["no_nat_t"], "no-nat-t")
    if "initiate" in s:
        pc["initiate"] = _bool(s["initiate"], "initiate")
    cfg = PeerConfig(role=role, ike_version=version, options=options, behaviour=beh, **pc)
    return cfg, local, remote


def _bool(v: Any, field: str) -> bool:
    return validate.boolean(v, field, words=True)


def fault_plan(value: Any) -> FaultPlan | None:
    """``--faults`` (JSON text) or the YAML ``faults:`` mapping -> a :class:`FaultPlan`."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except (json.JSONDecodeError, RecursionError) as e:
            raise ConfigError(f"faults: not valid JSON ({getattr(e, 'msg', type(e).__name__)})") from None
    if not isinstance(value, dict):
        raise ConfigError("faults: must be a mapping of FaultPlan fields")
    return FaultPlan.from_mapping(value, "faults")


def timer_slack(value: Any) -> float:
    """``--timer-slack`` / ``timer_slack:``: seconds >= 0 (the driver's own check, as a config error)."""
    if isinstance(value, bool):
        raise ConfigError(f"timer_slack: must be a finite number of seconds >= 0, got {value!r}")
    try:
        return check_timer_slack(value)
    except ValueError as e:
        raise ConfigError(str(e)) from None


@dataclass(frozen=True)
class VpnPlan:
    """Everything ``awsnetemu vpn`` runs with, validated: built by :func:`plan` before any socket is opened."""

    cfg: PeerConfig
    local: Address
    remote: Address
    seed: int | None
    faults: FaultPlan | None
    timer_slack: float
    events: str | None
    pcap: str | None
    keys: str | None
    topology: str | None = None
    """``--topology``: the emulated network behind the AWS endpoint (:mod:`emulator.vpn_site`)."""
    attachment: str | None = None
    tunnel: str | None = None


def plan(settings: dict[str, Any]) -> VpnPlan:
    """Validate every setting (configuration, seed, fault plan, timer slack, output paths) at once."""
    cfg, local, remote = build_config(settings)
    seed = None if settings.get("seed") is None else validate.integer(settings["seed"], "seed")
    faults = fault_plan(settings.get("faults"))
    slack = timer_slack(settings.get("timer_slack", TIMER_SLACK))
    events = settings.get("events")
    if events is not None and validate.string(events, "events") != "-":
        validate.output_file(events, "events")
    pcap = None if settings.get("pcap") is None else validate.output_file(settings["pcap"], "pcap")
    keys = None if settings.get("keys") is None else validate.output_dir(settings["keys"], "keys")
    topology = attachment = tunnel = None
    if settings.get("topology") is not None:
        topology = validate.string(settings["topology"], "topology")
        if cfg.role is not Role.AWS:
            raise ConfigError("topology: an emulated network sits behind the AWS endpoint: only with --role aws")
        attachment = (
            None if settings.get("attachment") is None else validate.string(settings["attachment"], "attachment")
        )
        tunnel = None if settings.get("tunnel") is None else validate.string(settings["tunnel"], "tunnel")
        from emulator.vpn_site import load_site_dataplane

        _dp, attachment, tunnel = load_site_dataplane(topology, attachment, tunnel)
    else:
        for key in ("attachment", "tunnel"):
            if settings.get(key) is not None:
                raise ConfigError(f"{key}: only with --topology")
    return VpnPlan(cfg, local, remote, seed, faults, slack, events, pcap, keys, topology, attachment, tunnel)


def make_peer(cfg: PeerConfig, local: Address, remote: Address, rng: random.Random) -> Any:
    """The engine for ``cfg.ike_version`` (IKEv1: ``cgw_peer.peer.create_peer``)."""
    from cgw_peer.peer import create_peer

    try:
        return create_peer(cfg, local=local, remote=remote, rng=rng)
    except ImportError as e:  # an engine that is not built yet (the façade imports engines lazily)
        version = 1 if cfg.ike_version is IkeVersion.IKEV1 else 2
        raise ConfigError(f"ike-version: no IKEv{version} engine is available ({e})") from None


# -- running --------------------------------------------------------------------------------------------


class _Outputs:
    """The event callback of the vpn command: JSON lines, key tables, stderr status lines."""

    def __init__(self, events: IO[str] | None, keys: KeyTables | None, cfg: PeerConfig) -> None:
        self.json = JsonLinesEvents(events) if events is not None else None
        self.keys = keys
        self.cfg = cfg
        self.up = False
        self.outer: tuple[str, str] | None = None
        """(our address, the peer's) of the last IKE SA: the outer addresses of its ESP (Wireshark's esp_sa)."""

    def __call__(self, h: PeerHandle | None, t: float, ev: Event) -> None:
        if self.json is not None:
            self.json(h, t, ev)
        if ev.name == "sa_keys" and self.keys is not None:
            self.keys.add(ev.fields)
        elif ev.name == "ike_sa_established":
            self.outer = (str(ev.get("local")).rpartition(":")[0], str(ev.get("remote")).rpartition(":")[0])
        elif ev.name == "child_sa_established" and self.keys is not None and self.outer is not None:
            # --keys also gets Wireshark's esp_sa rows, both directions, so tshark shows the inner packets.
            self.keys.add_child_sa(ev.fields, *self.outer)
        elif ev.name == "tunnel_up" and not self.up:
            self.up = True
            status(f"tunnel UP ({self._what()}) at t={t:.3f}s")
        elif ev.name == "tunnel_down" and self.up:
            self.up = False
            status(f"tunnel DOWN ({self._what()}, reason {ev.get('reason', '?')}) at t={t:.3f}s")
        elif ev.name == "driver_error":
            status(f"internal error in {ev.get('where')}: {ev.get('error')}")

    def _what(self) -> str:
        return f"{self.cfg.role.value}, IKEv{1 if self.cfg.ike_version is IkeVersion.IKEV1 else 2}"


def status(msg: str) -> None:
    print(f"awsnetemu vpn: {msg}", file=sys.stderr, flush=True)


def cmd_vpn(args: argparse.Namespace) -> int:
    p = plan(load_settings(args))
    # The engine is sans-I/O and takes its randomness from this generator: seed it from the OS here (the
    # driver side), or from --seed for a reproducible run. Building it also checks the proposals.
    rng = random.Random(p.seed) if p.seed is not None else random.Random(os.urandom(32))
    peer = make_peer(p.cfg, p.local, p.remote, rng)
    if p.topology is not None:
        from cgw_peer.tunnel_endpoint import TunnelEndpoint
        from emulator.vpn_site import AwsSite, load_site_dataplane

        dp, att, tunnel = load_site_dataplane(p.topology, p.attachment, p.tunnel)
        peer = AwsSite(TunnelEndpoint(peer, rng=random.Random(rng.getrandbits(64))), dp, att, tunnel)
    if args.check:
        version = 1 if p.cfg.ike_version is IkeVersion.IKEV1 else 2
        behind = f", {p.attachment}/{p.tunnel} of {p.topology} behind it" if p.topology else ""
        print(
            f"awsnetemu vpn: configuration valid: {p.cfg.role.value} peer, IKEv{version}, "
            f"{p.local[0]}:{p.local[1]} -> {p.remote[0]}:{p.remote[1]}{behind} (not started: --check)"
        )
        return 0
    return asyncio.run(
        run_vpn(
            peer,
            p.cfg,
            p.local,
            p.remote,
            events_path=p.events,
            pcap_path=p.pcap,
            keys_dir=p.keys,
            faults=p.faults,
            fault_seed=p.seed if p.seed is not None else 0,
            timer_slack=p.timer_slack,
        )
    )


async def run_vpn(
    peer: Any,
    cfg: PeerConfig,
    local: Address,
    remote: Address,
    *,
    events_path: str | None = None,
    pcap_path: str | None = None,
    keys_dir: str | None = None,
    faults: FaultPlan | None = None,
    fault_seed: int = 0,
    stop: asyncio.Event | None = None,
    timer_slack: float = TIMER_SLACK,
) -> int:
    """Run one peer until ``stop`` is set (or SIGINT/SIGTERM), then close it cleanly."""
    loop = asyncio.get_running_loop()
    stop = stop or asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    events_f: IO[str] | None = None
    if events_path == "-":
        events_f = sys.stdout
    elif events_path:
        events_f = open(events_path, "w")  # noqa: SIM115 - closed in finally
    keys = KeyTables(keys_dir) if keys_dir else None
    if keys is not None and keys_dir:
        keys.write(keys_dir)  # empty tables exist from the start
    out = _Outputs(events_f, keys, cfg)
    pcap: PcapWriter | None = None
    try:
        driver = UdpDriver(loop=loop, on_event=out, timer_slack=timer_slack)
        if pcap_path:
            pcap = PcapWriter.open(pcap_path, LINKTYPE_RAW, ts_origin=driver.wall0)
            writer = pcap

            def tap(t: float, direction: str, src: Address, dst: Address, data: bytes) -> None:
                writer.write_udp(t, src, dst, data)
                writer.flush()

            driver.on_datagram = tap
        try:
            h = driver.add_peer(
                peer,
                name=cfg.name,
                local=local,
                remote=remote,
                natt=cfg.nat_t,
                fault_plan=faults,
                link_rng=random.Random(fault_seed),
            )
        except OSError as e:
            status(f"cannot bind {local[0]}:{local[1]}: {e.strerror}")
            await driver.aclose()
            return 1
        bound = [f"{a}:{p}" for a, p in driver.bound]
        listening = {"local": bound, "remote": f"{remote[0]}:{remote[1]}", "wall_clock_start": driver.wall0}
        out(None, driver.now(), Event("listening", listening))
        status(f"{cfg.role.value} peer on {', '.join(bound)}, remote {remote[0]}:{remote[1]} ({out._what()})")
        driver.start_peer(h)
        await stop.wait()
        linger = 0.5 if cfg.ike_version is IkeVersion.IKEV2 else 0.0
        await driver.aclose(linger=linger)
        out(None, driver.now(), Event("stopped", dict(driver.stats)))
        status("stopped")
        return 0
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        if pcap is not None:
            pcap.close()
        if events_f is not None and events_f is not sys.stdout:
            events_f.close()
