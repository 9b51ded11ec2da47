"""The ``awsnetemu`` command. Each subcommand lives in its own module, which exposes ``register(subparsers)``.

Exit codes: 0 success (for ``run``: every expectation held), 1 an expectation failed, 2 bad usage or a bad
configuration (the message names the field).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from types import ModuleType

from emulator import campaign_cli, conformance_cli, report_cli, scenario_cli, tgw_cli, vpn_cli
from emulator.errors import ConfigError

__all__ = ["ConfigError", "build_parser", "main"]

# The subcommand modules, in help order; each registers one or more subcommands.
SUBCOMMAND_MODULES: tuple[ModuleType, ...] = (
    scenario_cli,  # run, demo
    vpn_cli,  # vpn
    tgw_cli,  # tgw
    report_cli,  # report
    conformance_cli,  # conformance
    campaign_cli,  # campaign
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="awsnetemu",
        description="Emulator for AWS Site-to-Site VPN tunnels (IKE + DPD) and Transit Gateway forwarding.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for mod in SUBCOMMAND_MODULES:
        mod.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        rc = args.func(args)
    except ConfigError as e:
        print(f"awsnetemu: configuration error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
