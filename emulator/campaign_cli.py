"""``awsnetemu campaign``: many seeded fault-injection runs over a base, with invariants checked on every run.

* ``awsnetemu campaign SPEC [--seeds N] [--workers K] [--dask ADDRESS|local] [--out DIR] [--json]`` runs the
  campaign (:mod:`emulator.campaign.spec` documents the file): a progress line on stderr, then the summary table
  of outcomes per fault and parameter band, then each failure with the command that replays it (and, for a
  schedule of several parts, the smaller one it shrank to). ``--out DIR`` writes ``results.json``,
  ``summary.txt``, ``failures.txt`` and a result cache (``cache.jsonl``) that a rerun uses to skip finished runs.
  Runs go to ``--workers`` local processes (default: the number of CPUs), or with ``--dask`` to a Dask
  scheduler at ADDRESS, or to a Dask ``LocalCluster`` of ``--workers`` processes (``--dask local``).
* ``awsnetemu campaign SPEC --seed S [--entry N] --fault NAME:k=v,... [--fault ...]`` replays one run exactly
  (the command each failure prints): its checks and its trace hash, which is the campaign's. With ``--out DIR``
  the run's files go there: a VPN run's capture, event trace, timeline and Wireshark key tables (as
  ``awsnetemu run --out`` writes them), a TGW run's trace.
* ``awsnetemu campaign --list-faults`` prints the catalogue: every fault, its parameters with types, ranges and
  defaults, and its expected outcomes.

Exit status: 0 every run passed, 1 a run did not, 2 a bad campaign file or flag (one line naming the field).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from emulator import validate
from emulator.campaign import catalogue, engine
from emulator.campaign import spec as spec_mod
from emulator.campaign.backends import cpu_count, make_backend
from emulator.campaign.invariants import INVARIANTS
from emulator.campaign.runner import run_parts
from emulator.errors import ConfigError


def register(sub: Any) -> None:
    p = sub.add_parser("campaign", help="seeded fault-injection runs over a fault catalogue, checked by invariants")
    p.add_argument("spec", nargs="?", metavar="SPEC", help="campaign file (YAML)")
    p.add_argument("--seeds", type=int, metavar="N", help="runs per fault entry (overrides the file)")
    p.add_argument("--workers", type=int, metavar="K", help="worker processes (default: the CPUs)")
    p.add_argument("--dask", metavar="ADDRESS", help="run on a Dask scheduler at ADDRESS, or 'local' (LocalCluster)")
    p.add_argument("--out", metavar="DIR", help="write results.json, summary.txt, failures.txt and the run cache")
    p.add_argument("--json", action="store_true", help="print the results as JSON instead of the table")
    p.add_argument("--no-shrink", action="store_true", help="do not shrink failing schedules")
    p.add_argument("--seed", type=int, metavar="S", help="replay one run with this seed (needs --fault)")
    p.add_argument("--entry", type=int, metavar="N", help="replay: the campaign entry (faults[N]) it belongs to")
    p.add_argument("--fault", action="append", default=[], metavar="NAME:k=v,...", help="replay: one fault part")
    p.add_argument("--list-faults", action="store_true", help="print the fault catalogue and the invariants")
    p.set_defaults(func=cmd_campaign)


def cmd_campaign(args: argparse.Namespace) -> int:
    if args.list_faults:
        sys.stdout.write(catalogue.catalogue_text())
        sys.stdout.write("invariants:\n" + "".join(f"    {k}: {d}\n" for k, d in INVARIANTS.items()))
        sys.stdout.write("outcomes:\n" + "".join(f"    {k}: {d}\n" for k, d in catalogue.OUTCOMES.items()))
        return 0
    if args.spec is None:
        raise ConfigError("SPEC: a campaign file is required (or --list-faults)")
    if args.seeds is not None:
        validate.integer(args.seeds, "--seeds", minimum=1, maximum=spec_mod.MAX_SEEDS)
    if args.workers is not None:
        validate.integer(args.workers, "--workers", minimum=1, maximum=1024)
    if args.out is not None:
        validate.output_dir(args.out, "--out")
    if args.dask is not None:
        validate.string(args.dask, "--dask")
    replay = args.seed is not None or args.fault or args.entry is not None
    parts = [catalogue.parse_fault(f) for f in args.fault]
    if replay:
        if args.seed is None or not parts:
            raise ConfigError("--seed: a replay needs --seed S and at least one --fault NAME:k=v,...")
        validate.integer(args.seed, "--seed", minimum=0)
    spec = spec_mod.load(args.spec)
    if replay:
        return _replay(spec, args.seed, args.entry, parts, args.json, args.out)
    workers = args.workers or (2 if args.dask == "local" else cpu_count())
    tasks = engine.plan(spec, args.seeds)
    dataset = f"awsnetemu-{spec.name}-{engine.spec_digest(spec)}" if args.dask and args.dask != "local" else None
    backend = make_backend(workers, args.dask, dataset=dataset)
    try:
        print(f"campaign {spec.name}: {len(tasks)} runs on {backend.name}", file=sys.stderr)
        res = engine.run_campaign(spec, tasks, backend, args.out, do_shrink=not args.no_shrink and spec.shrink)
    finally:
        backend.close()
    if args.json:
        print(json.dumps(res.to_json(), indent=1, default=str))
    else:
        sys.stdout.write(engine.summary_table(res))
        rate = len(res.results) / res.seconds if res.seconds > 0 else 0.0
        print(
            f"\n{len(res.results)} runs ({res.cached} from the cache) in {res.seconds:.1f} s ({rate:.1f} runs/s); "
            f"{len(res.failures)} did not pass"
        )
        fails = engine.failure_text(res)
        if fails:
            print("\n" + fails, end="")
    return 1 if res.failures else 0


def _replay(
    spec: spec_mod.CampaignSpec,
    seed: int,
    entry: int | None,
    parts: list[catalogue.Part],
    as_json: bool,
    out_dir: str | None = None,
) -> int:
    kinds = {catalogue.FAULTS[p.fault].kind for p in parts}
    if len(kinds) != 1:
        raise ConfigError("--fault: a run's parts are all VPN faults or all TGW faults")
    kind = kinds.pop()
    if entry is not None:
        validate.integer(entry, "--entry", minimum=0, maximum=len(spec.entries) - 1)
        if spec.entries[entry].fault.kind != kind:
            raise ConfigError(
                f"--entry: faults[{entry}] is a {spec.entries[entry].fault.kind} fault, the parts are {kind}"
            )
    base = spec.vpn_base if kind == "vpn" else spec.tgw_base
    if base is None:
        if kind == "vpn":
            raise ConfigError("--fault: a VPN fault needs the campaign's scenario")
        from emulator.campaign.tgwrun import TgwBase
        from tgw_dataplane.loader import load_any

        base = TgwBase(load_any(spec.tgw_topology), spec.tgw_topology, **spec.tgw)
    if kind == "tgw":
        for p in parts:
            base.check_fault(p.fault, p.params, f"--fault {p.fault}")
    out = run_parts(kind, base, parts, seed, spec.invariants_for(kind), out_dir)
    return _print_run(seed, parts, out, as_json)


def _print_run(seed: int, parts: list[catalogue.Part], out: Any, as_json: bool) -> int:
    if as_json:
        doc = {
            "seed": seed,
            "parts": [p.text() for p in parts],
            "status": out.status,
            "failed": out.failed,
            "checks": {k: o.to_json() for k, o in out.checks.items()},
            "trace_hash": out.trace_hash,
            "events": out.events,
            "error": out.error,
        }
        print(json.dumps(doc, indent=1))
    else:
        print(f"{out.status.upper()} seed {seed}: {' '.join(p.text() for p in parts)}")
        for name, o in out.checks.items():
            mark = "n/a" if o.ok is None else ("ok" if o.ok else "FAILED")
            print(f"  [{mark}] {name}: {o.detail}")
        if out.error:
            print(f"  error: {out.error}")
        print(f"trace hash: {out.trace_hash} ({out.events} events)")
    return 0 if out.status == "pass" else 1


def run_scenario_with_faults(args: argparse.Namespace) -> int:
    """``awsnetemu run FILE [--seed S] [--fault NAME:k=v,...]...``: one scenario file with catalogue faults on
    top of its own schedule, checked like a campaign run (every VPN invariant, the faults' expected outcomes,
    the file's expectations); prints the checks and the trace hash (``--json``: as a document). ``--out`` writes
    the run's files as ``awsnetemu run --out`` does."""
    from emulator.campaign.invariants import VPN_INVARIANTS
    from emulator.campaign.runner import VpnBase
    from emulator.scenario import Scenario

    if len(args.files) != 1:
        raise ConfigError("FILE: --seed and --fault run one scenario file")
    parts = [catalogue.parse_fault(f) for f in args.fault or []]
    for p in parts:
        if catalogue.FAULTS[p.fault].kind != "vpn":
            raise ConfigError(f"--fault {p.fault}: a TGW fault (awsnetemu campaign runs those on a topology)")
    if args.seed is not None:
        validate.integer(args.seed, "--seed", minimum=0)
    if args.out is not None:
        validate.output_dir(args.out, "--out")
    sc = Scenario.load(args.files[0])
    if not isinstance(sc, Scenario) or type(sc) is not Scenario:
        raise ConfigError(f"FILE: {args.files[0]} is not a tunnel-pair scenario (faults apply to those)")
    base = VpnBase(sc.raw, sc.base_dir, sc.name)
    seed = sc.seed if args.seed is None else args.seed
    out = run_parts("vpn", base, parts, seed, VPN_INVARIANTS, args.out)
    return _print_run(seed, parts, out, args.json)
