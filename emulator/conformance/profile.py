"""Which AWS tunnel options the battery plays: AWS's defaults, a YAML file, or a real connection's JSON.

Three sources (``awsnetemu conformance --profile FILE [--tunnel 1|2]``):

* no ``--profile``: AWS's defaults (:class:`cgw_peer.config.TunnelOptions` ``()``: both IKE versions, every
  algorithm and DH group AWS offers, DPDTimeoutSeconds 40 / clear, StartupAction add, lifetimes 28800 / 3600).
* a YAML (or JSON) mapping of tunnel options, in AWS API spelling (``DPDTimeoutSeconds: 40``,
  ``IKEVersions: [ikev2]``, ``Phase1EncryptionAlgorithms: [AES256]``), the ``describe-vpn-connections``
  spelling (``DpdTimeoutSeconds``, ``IkeVersions``, lists of ``{"Value": ...}``) or snake_case; plus the two
  connection-level selectors ``LocalIpv4NetworkCidr`` (the customer side) and ``RemoteIpv4NetworkCidr`` (the
  AWS side). An unknown key is a configuration error naming it and the allowed keys.
* the JSON that ``aws ec2 describe-vpn-connections`` prints (``{"VpnConnections": [...]}``, or one
  connection object): the connection's ``Options.TunnelOptions[N-1]`` for ``--tunnel N``, its
  ``Options.LocalIpv4NetworkCidr`` / ``RemoteIpv4NetworkCidr`` and the tunnel's ``PreSharedKey``. With several
  connections in the file, ``--vpn-connection-id`` picks one.

Members of a described tunnel that are not tunnel options we can play are handled explicitly, never silently:
``OutsideIpAddress`` is kept for the report (the address the device would really target), ``LogOptions``,
``TunnelInsideIpv6Cidr`` and ``EnableTunnelLifecycleControl`` are ignored (they change nothing on the wire),
and a non-empty ``Phase1AdditionalKeyExchanges`` / ``Phase2AdditionalKeyExchanges`` (post-quantum hybrid
key exchange, RFC 9370) is an error: the engine does not implement it.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cgw_peer.config import TunnelOptions
from cgw_peer.errors import ConfigError as PeerConfigError
from emulator.errors import ConfigError

CONNECTION_KEYS = {"LocalIpv4NetworkCidr": "local", "RemoteIpv4NetworkCidr": "remote"}
"""Connection-level options a tunnel-options file may also carry (``VpnConnectionOptions`` names)."""

IGNORED_TUNNEL_KEYS = ("LogOptions", "TunnelInsideIpv6Cidr", "EnableTunnelLifecycleControl")
"""``TunnelOption`` members that do not change what the AWS endpoint sends or accepts."""

UNSUPPORTED_TUNNEL_KEYS = ("Phase1AdditionalKeyExchanges", "Phase2AdditionalKeyExchanges")
"""``TunnelOption`` members the engine cannot play when they are set (RFC 9370 additional key exchanges)."""


@dataclass(frozen=True)
class Profile:
    """The AWS side the battery plays."""

    options: TunnelOptions = field(default_factory=TunnelOptions)
    aws_cidr: str = "0.0.0.0/0"
    """``RemoteIpv4NetworkCidr``: the AWS side's traffic selector (AWS default: any)."""
    customer_cidr: str = "0.0.0.0/0"
    """``LocalIpv4NetworkCidr``: the customer side's traffic selector (AWS default: any)."""
    source: str = "AWS defaults"
    """Where it came from, for the report."""
    outside_ip: str | None = None
    """The tunnel's ``OutsideIpAddress`` in a described connection (informational)."""
    psk: str | None = None
    """The tunnel's ``PreSharedKey`` from a described connection."""
    notes: tuple[str, ...] = ()
    """What was ignored or assumed while reading the file."""

    def to_json(self) -> dict[str, Any]:
        opts = self.options.to_aws()
        if opts.get("PreSharedKey") is not None:
            opts["PreSharedKey"] = "(set)"
        return {
            "source": self.source,
            "tunnel_options": opts,
            "LocalIpv4NetworkCidr": self.customer_cidr,
            "RemoteIpv4NetworkCidr": self.aws_cidr,
            "outside_ip": self.outside_ip,
            "notes": list(self.notes),
        }


def default_profile() -> Profile:
    return Profile()


def load_profile(path: str, *, tunnel: int = 1, connection_id: str | None = None) -> Profile:
    """Read ``path`` (YAML tunnel options, or describe-vpn-connections JSON); errors name the key."""
    import yaml

    try:
        with open(path) as f:
            text = f.read()
    except OSError as e:
        raise ConfigError(f"profile: cannot read {path}: {e.strerror}") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        try:  # JSON is YAML, but a JSON syntax error reads better from the JSON parser
            doc = json.loads(text)
        except json.JSONDecodeError:
            raise ConfigError(f"profile: {path} is neither YAML nor JSON: {e}") from None
    if not isinstance(doc, Mapping):
        raise ConfigError(f"profile: {path} must hold a mapping (tunnel options or describe-vpn-connections output)")
    if "VpnConnections" in doc or "Options" in doc or "VpnConnectionId" in doc:
        return profile_from_describe(doc, tunnel=tunnel, connection_id=connection_id, source=path)
    return profile_from_options(doc, source=path)


def profile_from_options(m: Mapping[str, Any], *, source: str = "tunnel options") -> Profile:
    """A profile from a mapping of tunnel options (plus the two connection CIDRs)."""
    opts: dict[str, Any] = {}
    cidrs: dict[str, str] = {}
    notes: list[str] = []
    psk: str | None = None
    for key, value in m.items():
        k = str(key)
        if k in CONNECTION_KEYS:
            cidrs[CONNECTION_KEYS[k]] = _cidr(value, k)
        elif k in IGNORED_TUNNEL_KEYS:
            notes.append(f"{k} ignored (it changes nothing the AWS endpoint sends or accepts)")
        elif k in UNSUPPORTED_TUNNEL_KEYS:
            if value:
                raise ConfigError(f"{k}: additional key exchanges (RFC 9370) are not implemented by the emulator")
        elif k == "OutsideIpAddress":
            notes.append(f"OutsideIpAddress {value} is AWS's real address; the emulator uses --local instead")
        else:
            opts[k] = value
            if k in ("PreSharedKey", "pre_shared_key") and value is not None:
                psk = str(value)
    try:
        options = TunnelOptions.from_mapping(opts)
    except PeerConfigError as e:
        raise ConfigError(f"profile {source}: {e}") from None
    return Profile(
        options=options,
        aws_cidr=cidrs.get("remote", "0.0.0.0/0"),
        customer_cidr=cidrs.get("local", "0.0.0.0/0"),
        source=source,
        psk=psk,
        notes=tuple(notes),
    )


def profile_from_describe(
    doc: Mapping[str, Any], *, tunnel: int = 1, connection_id: str | None = None, source: str = "describe"
) -> Profile:
    """A profile from ``describe-vpn-connections`` output: one connection, tunnel ``tunnel`` (1 or 2)."""
    if tunnel not in (1, 2):
        raise ConfigError(f"tunnel: must be 1 or 2, got {tunnel!r}")
    if "VpnConnections" in doc:
        conns = doc["VpnConnections"]
        if not isinstance(conns, list) or not conns:
            raise ConfigError(f"profile {source}: VpnConnections is empty")
    else:
        conns = [doc]
    ids = [str(c.get("VpnConnectionId", "?")) for c in conns if isinstance(c, Mapping)]
    if connection_id is not None:
        chosen = [c for c in conns if isinstance(c, Mapping) and c.get("VpnConnectionId") == connection_id]
        if not chosen:
            raise ConfigError(f"vpn-connection-id: {connection_id} is not in {source} (it has: {', '.join(ids)})")
        conn = chosen[0]
    elif len(conns) > 1:
        raise ConfigError(f"vpn-connection-id: {source} describes {len(conns)} connections; pick one of {ids}")
    else:
        conn = conns[0]
    if not isinstance(conn, Mapping):
        raise ConfigError(f"profile {source}: a VPN connection must be a mapping")
    options = conn.get("Options") or {}
    if not isinstance(options, Mapping):
        raise ConfigError(f"profile {source}: Options must be a mapping")
    tunnels = options.get("TunnelOptions") or []
    if not isinstance(tunnels, list) or len(tunnels) < tunnel:
        raise ConfigError(
            f"tunnel: {source} has {len(tunnels) if isinstance(tunnels, list) else 0} TunnelOptions entries, "
            f"no tunnel {tunnel} (describe-vpn-connections lists one per tunnel under Options.TunnelOptions)"
        )
    t = tunnels[tunnel - 1]
    if not isinstance(t, Mapping):
        raise ConfigError(f"profile {source}: TunnelOptions[{tunnel - 1}] must be a mapping")
    merged: dict[str, Any] = dict(t)
    for k in CONNECTION_KEYS:
        if options.get(k):
            merged[k] = options[k]
    base = profile_from_options(
        merged, source=f"{source} ({conn.get('VpnConnectionId', 'connection')}, tunnel {tunnel})"
    )
    outside = t.get("OutsideIpAddress")
    notes = tuple(n for n in base.notes if not n.startswith("OutsideIpAddress"))
    return Profile(
        options=base.options,
        aws_cidr=base.aws_cidr,
        customer_cidr=base.customer_cidr,
        source=base.source,
        outside_ip=str(outside) if outside else None,
        psk=base.psk,
        notes=notes,
    )


def _cidr(value: Any, key: str) -> str:
    try:
        return str(ipaddress.ip_network(str(value), strict=False))
    except ValueError:
        raise ConfigError(f"{key}: expected a CIDR block such as 10.0.0.0/16, got {value!r}") from None
