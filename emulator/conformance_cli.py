"""``awsnetemu conformance``: test a real customer gateway device against our AWS endpoint.

The command plays the AWS tunnel endpoint on real UDP (the AWS role of the IKE engine on the asyncio driver)
at ``--local`` against the device at ``--cgw`` and runs the battery of checks
(:mod:`emulator.conformance.checks`): transport, phase 1, Child SA / phase 2, retransmission, DPD, each
StartupAction x DPDTimeoutAction the IKE version allows, rekey, lifecycle, robustness. Configure the device
for a tunnel to ``--local`` with the same pre-shared key, as it would be for AWS (AWS's template: DPD 10 s /
restart, lifetimes 28800 / 3600 s), and start the battery; it waits for the device to initiate.

Defaults that are the command's own choices:

* ``--local`` defaults to the address the kernel would use to reach ``--cgw``, port 500 (so the command needs
  the privilege to bind UDP 500 and 4500, as the device expects the AWS side there).
* ``--ike-version`` defaults to 1 when the profile allows IKEv1, else 2.
* ``--profile`` defaults to AWS's defaults; ``--tunnel`` to 1.
* ``--fast`` shortens the AWS side's timers (DPD delay and interval 2 s, DPDTimeoutSeconds 6 s, AWS requests
  retransmitted after 1, 1.5, 2.25, 3.4, 5.1 s) and the waits for the device's first initiation (10 s) and its
  lifetimes (30 s); the bounds on the device's own timers stay those AWS recommends.

Output: progress lines on stderr while it runs; the table on stdout (``--json``: the JSON report instead);
``--junit FILE``; ``--out DIR`` (captures per check, key tables, event trace, see
:mod:`emulator.conformance.report`).

Exit codes: 0 no check failed (warnings allowed), 1 at least one failed, 2 a bad argument (an address that
cannot be reached or bound, a pre-shared key the device does not share, a bad profile), with one line naming it.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import socket
import sys
from typing import Any

from cgw_peer.config import IkeVersion, TunnelOptions
from cgw_peer.errors import ConfigError as PeerConfigError
from emulator.actions import Address
from emulator.errors import ConfigError


def register(sub: Any) -> None:
    p = sub.add_parser(
        "conformance",
        help="test a customer gateway device against the AWS endpoint (real UDP) and report per check",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    p.add_argument("--cgw", metavar="IP[:PORT]", help="the device's IKE address (port default 500)")
    p.add_argument("--local", metavar="IP[:PORT]", help="our (AWS endpoint) address; default: the route's source")
    p.add_argument("--psk", help="pre-shared key (default: the profile's PreSharedKey)")
    p.add_argument("--ike-version", choices=["1", "2"], help="IKE version to test (default 1 if allowed)")
    p.add_argument("--profile", metavar="FILE", help="tunnel options (YAML) or describe-vpn-connections JSON")
    p.add_argument("--tunnel", type=int, choices=[1, 2], default=1, help="which tunnel of a described connection")
    p.add_argument("--vpn-connection-id", metavar="ID", help="which connection of a describe-vpn-connections file")
    p.add_argument("--only", action="append", metavar="GLOB", help="run only these check IDs (globs, comma lists)")
    p.add_argument("--fast", action="store_true", help="short AWS-side timers (see docs/conformance.md)")
    p.add_argument("--ike-only", action="store_true", help="the device cannot install IPsec SAs: IKE checks only")
    p.add_argument("--json", action="store_true", help="print the JSON report instead of the table")
    p.add_argument("--junit", metavar="FILE", help="write JUnit XML")
    p.add_argument("--out", metavar="DIR", help="captures per check, key tables, event trace, reports")
    p.add_argument("--seed", type=int, help="seed our random choices (SPIs, nonces) for a reproducible run")
    p.add_argument("--list", action="store_true", help="list the checks and exit")
    p.set_defaults(func=cmd_conformance)


def parse_address(text: str, field: str, default_port: int = 500) -> Address:
    s = str(text).strip()
    host, port = s, str(default_port)
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


def route_source(cgw: Address) -> str:
    """The local address the kernel would use to reach ``cgw`` (no packet is sent)."""
    fam = socket.AF_INET6 if ":" in cgw[0] else socket.AF_INET
    with socket.socket(fam, socket.SOCK_DGRAM) as s:
        try:
            s.connect(cgw)
        except OSError as e:
            raise ConfigError(f"cgw: cannot reach {cgw[0]}:{cgw[1]}: {e.strerror} (no route)") from None
        return str(s.getsockname()[0])


def build_settings(args: argparse.Namespace) -> Any:
    """Arguments -> :class:`emulator.conformance.session.Settings` (ConfigError naming the bad one)."""
    from emulator.conformance.profile import default_profile, load_profile
    from emulator.conformance.session import Settings, make_timers

    if not args.cgw:
        raise ConfigError("cgw: required (the device's IKE address, IP[:PORT])")
    cgw = parse_address(args.cgw, "cgw")
    profile = (
        load_profile(args.profile, tunnel=args.tunnel, connection_id=args.vpn_connection_id)
        if args.profile
        else default_profile()
    )
    local = parse_address(args.local, "local") if args.local else (route_source(cgw), 500)
    if ipaddress.ip_address(local[0]).version != ipaddress.ip_address(cgw[0]).version:
        raise ConfigError("local: must be the same address family as cgw")
    psk = args.psk if args.psk is not None else profile.psk
    if not psk:
        raise ConfigError("psk: required (the tunnel's pre-shared key; or a profile with PreSharedKey)")
    try:
        TunnelOptions(pre_shared_key=psk)
    except PeerConfigError as e:
        raise ConfigError(f"psk: {e}") from None
    allowed = [v.value for v in profile.options.ike_versions]
    if args.ike_version is not None:
        version = int(args.ike_version)
    else:
        version = 1 if IkeVersion.IKEV1.value in allowed else 2
    if f"ikev{version}" not in allowed:
        raise ConfigError(f"ike-version: {version} is not in the profile's IKEVersions ({', '.join(allowed)})")
    return Settings(
        cgw=cgw,
        local=local,
        psk=psk,
        ike_version=version,
        profile=profile,
        timers=make_timers(profile, fast=args.fast),
        ike_only=args.ike_only,
        seed=args.seed,
    )


def _list_checks() -> int:
    from emulator.conformance.checks import CHECKS

    for c in CHECKS:
        vs = "/".join(f"v{v}" for v in sorted(c.versions))
        print(f"{c.id:<11} {c.level.value:<8} {vs:<6} {c.title}")
    return 0


def cmd_conformance(args: argparse.Namespace) -> int:
    if args.list:
        return _list_checks()
    settings = build_settings(args)
    from emulator.conformance.runner import select_checks

    select_checks(settings.ike_version, args.only)  # a glob that matches nothing is a usage error, before any I/O
    return asyncio.run(_run(args, settings))


async def _run(args: argparse.Namespace, settings: Any) -> int:
    from emulator.conformance import report as rep
    from emulator.conformance.model import CheckResult, CheckSpec
    from emulator.conformance.probe import Unreachable
    from emulator.conformance.runner import run_battery, select_checks
    from emulator.conformance.scenarios import PskMismatch

    err = sys.stderr
    colour = rep.use_colour(err)
    total = len(select_checks(settings.ike_version, args.only)[0])
    done = [0]

    def progress(phase: str, spec: CheckSpec | None, result: CheckResult | None) -> None:
        if phase == "note":
            print(
                f"awsnetemu conformance: AWS endpoint on {settings.local[0]}:{settings.local[1]}, waiting for the "
                f"device {settings.cgw[0]}:{settings.cgw[1]} (IKEv{settings.ike_version}, {total} checks)",
                file=err,
                flush=True,
            )
        elif phase == "done" and result is not None:
            done[0] += 1
            print(rep.progress_line(done[0], total, result, colour), file=err, flush=True)

    try:
        report = await run_battery(settings, only=args.only, progress=progress)
    except Unreachable as e:
        raise ConfigError(f"cgw: {e}") from None
    except PskMismatch as e:
        raise ConfigError(f"psk: the device's pre-shared key differs from --psk: {e}") from None
    except OSError as e:
        raise ConfigError(f"local: cannot bind {settings.local[0]}:{settings.local[1]}: {e.strerror}") from None
    if args.out:
        rep.write_out_dir(report, args.out)
    if args.junit:
        rep.write_junit(report, args.junit)
    if args.json:
        rep.write_json(report, sys.stdout)
    else:
        print(rep.table(report, rep.use_colour(sys.stdout)))
        problems = rep.explanations(report)
        if problems:
            print()
            print(problems)
    return 1 if report.failed else 0
