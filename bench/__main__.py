"""``python -m bench [--quick] [NAME ...]``: run every benchmark module and print one table."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
import time

import bench
from bench.common import Row, fmt


def main() -> int:
    ap = argparse.ArgumentParser(prog="bench")
    ap.add_argument("--quick", action="store_true", help="shorter runs (smoke test)")
    ap.add_argument("names", nargs="*", help="only these modules (e.g. ikev1 tgw)")
    args = ap.parse_args()
    mods = sorted(m.name for m in pkgutil.iter_modules(bench.__path__) if m.name.startswith("bench_"))
    all_rows: list[Row] = []
    for name in mods:
        short = name.removeprefix("bench_")
        if args.names and short not in args.names:
            continue
        t0 = time.time()
        mod = importlib.import_module(f"bench.{name}")
        print(f"== {short}", flush=True)
        rows: list[Row] = mod.run(args.quick)
        print(fmt(rows), flush=True)
        print(f"   ({time.time() - t0:.1f} s)", flush=True)
        all_rows.extend(rows)
    misses = [r for r in all_rows if r.ok is False]
    print(f"\n{len(all_rows)} measurements, {len(misses)} below target")
    return 0


if __name__ == "__main__":
    sys.exit(main())
