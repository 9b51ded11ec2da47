"""The ``awsnetemu`` command. Each subcommand lives in its own module, which exposes ``register(subparsers)``.

Exit codes: 0 success (for ``run``: every expectation held), 1 an expectation failed, 2 bad usage or a bad
configuration (the message names the field).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import NoReturn

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


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: a control character in a user's argument (``\r``, ``\n``) is shown
    escaped, so the message stays on the line that says ``error:`` (subcommand parsers inherit this)."""

    def error(self, message: str) -> NoReturn:
        shown = "".join(c if c.isprintable() else repr(c)[1:-1] for c in message)
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {shown}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
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
