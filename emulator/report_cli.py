"""``awsnetemu report DIR``: one self-contained HTML page per run found in DIR (and below), and ``DIR/index.html``.

A run is either what the tour and ``write_material`` leave (``NAME-run.json`` next to the run's files) or
what ``awsnetemu run --out DIR`` writes (``NAME.jsonl`` with ``NAME.pcap``; the page then has no scenario
options or expectations). The pages need no server and fetch nothing: open ``DIR/index.html`` from disk.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from emulator.errors import ConfigError


def register(sub: Any) -> None:
    p = sub.add_parser("report", help="write an HTML page per run found in DIR, and DIR/index.html")
    p.add_argument("dir", metavar="DIR", help="a directory of runs (awsnetemu run --out DIR, the tour's output)")
    p.set_defaults(func=cmd_report)


def cmd_report(args: argparse.Namespace) -> int:
    from emulator.report import rebuild

    d = str(args.dir)
    if not os.path.isdir(d):
        raise ConfigError(f"DIR: {d} is not a directory")
    done = rebuild(d)
    for files in done:
        print(files.get("html", ""))
    print(f"{len(done)} page(s); index: {os.path.join(d, 'index.html')}")
    return 0 if done else 1
