"""``python -m bench [--quick] [NAME ...]``: run every benchmark module and print one table.

Each module runs in a fresh child process (``--module NAME``), so one module's heap (the load benchmark leaves
hundreds of MB behind) does not slow the next one's figures; every ratio compares figures measured in the
same child. The children report their rows to this process, which prints the total."""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import pkgutil
import subprocess
import sys
import time

import bench
from bench.common import Row, fmt

_ROWS = "@@bench-rows "


def _child(name: str, quick: bool) -> int:
    mod = importlib.import_module(f"bench.bench_{name}")
    rows: list[Row] = mod.run(quick)
    print(fmt(rows), flush=True)
    print(_ROWS + json.dumps([dataclasses.asdict(r) for r in rows]), flush=True)
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(prog="bench")
    ap.add_argument("--quick", action="store_true", help="shorter runs (smoke test)")
    ap.add_argument("--module", help=argparse.SUPPRESS)
    ap.add_argument("names", nargs="*", help="only these modules (e.g. ikev1 tgw)")
    args = ap.parse_args()
    if args.module:
        return _child(args.module, args.quick)
    mods = sorted(m.name for m in pkgutil.iter_modules(bench.__path__) if m.name.startswith("bench_"))
    all_rows: list[Row] = []
    failed: list[str] = []
    for name in mods:
        short = name.removeprefix("bench_")
        if args.names and short not in args.names:
            continue
        t0 = time.time()
        print(f"== {short}", flush=True)
        cmd = [sys.executable, "-m", "bench", "--module", short] + (["--quick"] if args.quick else [])
        with subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) as proc:
            assert proc.stdout is not None
            for line in proc.stdout:
                if line.startswith(_ROWS):
                    all_rows.extend(Row(**r) for r in json.loads(line[len(_ROWS) :]))
                else:
                    print(line, end="", flush=True)
        if proc.returncode != 0:
            failed.append(short)
        print(f"   ({time.time() - t0:.1f} s)", flush=True)
    misses = [r for r in all_rows if r.ok is False]
    print(f"\n{len(all_rows)} measurements, {len(misses)} below target")
    if failed:
        print(f"benchmark modules that failed: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
