"""``awsnetemu run FILE...`` (scenario files) and ``awsnetemu demo`` (the embedded scenarios).

Every file is loaded and validated, and ``--out`` checked, before the first run (a bad input exits 2 with one
line naming the field). ``--check`` stops there (exit 0). ``--max-events N`` overrides each scenario's event
budget (``max_events``; default :data:`emulator.validate.DEFAULT_MAX_EVENTS`): a run past it stops with exit 2.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import io
import json
import os
import sys
from typing import Any

from emulator import validate
from emulator.scenario import Scenario, ScenarioResult, write_timeline

SCENARIO_DIR = os.path.join(os.path.dirname(__file__), "scenarios")


def register(sub: Any) -> None:
    p = sub.add_parser("run", help="run scenario files in virtual time and check their expectations")
    p.add_argument("files", nargs="+", metavar="FILE", help="scenario YAML file(s)")
    p.add_argument("--json", action="store_true", help="print machine-readable results")
    p.add_argument("--out", metavar="DIR", help="write captures, key tables, traces and timelines here")
    p.add_argument("--timeline", action="store_true", help="print each scenario's timeline")
    p.add_argument(
        "--max-events",
        type=int,
        metavar="N",
        help="event budget of each run, overriding the files' max_events "
        f"(default {validate.DEFAULT_MAX_EVENTS:,}); a run past it stops with exit 2",
    )
    p.add_argument("--check", action="store_true", help="validate the files and --out, run nothing (exit 0 if valid)")
    p.add_argument("--seed", type=int, metavar="S", help="run one file with this seed (emulator.campaign_cli)")
    p.add_argument(
        "--fault",
        action="append",
        metavar="NAME:k=v,...",
        help="add a catalogue fault (awsnetemu campaign --list-faults)",
    )
    p.set_defaults(func=cmd_run)

    d = sub.add_parser("demo", help="run the embedded VPN and TGW scenarios, writing everything under --out")
    d.add_argument("--out", metavar="DIR", default="out")
    d.set_defaults(func=cmd_demo)


def embedded_scenarios() -> list[str]:
    return sorted(glob.glob(os.path.join(SCENARIO_DIR, "*.yaml")))


def _print_result(res: ScenarioResult, show_timeline: bool) -> None:
    mark = "PASS" if res.ok else "FAIL"
    print(f"{mark} {res.name}")
    for r in res.results:
        desc = ", ".join(f"{k}={v}" for k, v in r.expectation.items())
        print(f"  [{'ok' if r.ok else 'FAILED'}] {desc}: {r.detail}")
    for k, v in res.outputs.items():
        print(f"  {k}: {v}")
    if show_timeline:
        write_timeline(res.trace, sys.stdout)  # streamed from the trace file


def load_all(files: list[str], out: str | None) -> list[Scenario]:
    """Load and validate every file (and ``out``) before anything runs; names must not collide in ``out``."""
    if out is not None:
        validate.output_dir(out, "--out")
    scenarios = [Scenario.load(f) for f in files]
    if out is not None:
        seen: dict[str, str] = {}
        for f, sc in zip(files, scenarios, strict=True):
            if sc.name in seen:
                validate.fail(
                    "name",
                    f"{f} and {seen[sc.name]} are both named {sc.name!r}: their outputs would overwrite each other "
                    "in --out",
                )
            seen[sc.name] = f
    return scenarios


def cmd_run(args: argparse.Namespace) -> int:
    if getattr(args, "fault", None) or getattr(args, "seed", None) is not None:
        from emulator.campaign_cli import run_scenario_with_faults

        return run_scenario_with_faults(args)
    if args.max_events is not None:
        validate.integer(args.max_events, "--max-events", minimum=1)
    scenarios = load_all(args.files, args.out)
    if args.check:
        for sc in scenarios:
            print(
                f"valid {sc.name}: {len(sc.schedule)} scheduled actions, {len(sc.raw.get('expect') or [])} expectations"
            )
        return 0
    results = [sc.run(args.out, max_events=args.max_events) for sc in scenarios]
    if args.out is not None:
        # The teaching material next to the raw outputs: annotated pcapng, sequence diagram, timeline, HTML page
        # (issue 17); `awsnetemu report DIR` builds the index.
        from emulator.report import write_material

        for sc, res in zip(scenarios, results, strict=True):
            res.outputs.update(write_material(sc, res, args.out))
    if args.json:
        doc = [r.to_json() for r in results] if len(results) > 1 else results[0].to_json()
        print(json.dumps(doc, indent=2, default=str))
    else:
        for r in results:
            _print_result(r, args.timeline)
    return 0 if all(r.ok for r in results) else 1


SEED_TOPOLOGY = os.path.join(SCENARIO_DIR, "topologies", "tgw-seed.yaml")
SEED_FLOW = "tcp 10.0.1.10:40000 > 10.1.2.20:443"


def tgw_demo(out: str) -> bool:
    """The seed topology with appliance mode off (reply dropped by the other AZ's firewall) and on (both
    directions through one firewall): per-hop captures, flow logs, a summary and the hop-by-hop trace."""
    from emulator.pcap import LINKTYPE_RAW, PcapWriter
    from emulator.tgw_cli import cmd_replay, cmd_trace
    from tgw_dataplane.craft import parse_flow

    flow = parse_flow(SEED_FLOW)
    os.makedirs(out, exist_ok=True)
    capture = os.path.join(out, "seed-flow.pcap")
    w = PcapWriter.open(capture, LINKTYPE_RAW, ts_origin=1_767_225_600.0)
    w.write(0.0, flow.request())
    w.write(0.001, flow.reply())
    w.close()
    verdicts = {}
    for mode in ("off", "on"):
        d = os.path.join(out, f"seed-appliance-mode-{mode}")
        ns = dict(topology=SEED_TOPOLOGY, pcap=capture, out=d, appliance_mode=[f"tgw-attach-c={mode}"])
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            cmd_replay(argparse.Namespace(**ns))
            cmd_trace(
                argparse.Namespace(
                    topology=SEED_TOPOLOGY,
                    flow=SEED_FLOW,
                    source=None,
                    reply_source=None,
                    appliance_mode=ns["appliance_mode"],
                    json=False,
                )
            )
        text = buf.getvalue()
        with open(os.path.join(d, "trace.txt"), "w") as f:
            f.write(text)
        with open(os.path.join(d, "summary.json")) as f:
            summary = json.load(f)
        verdicts[mode] = summary
        print(
            f"appliance mode {mode}: {summary['delivered']} delivered, drops {summary['drops'] or '{}'}"
            f" -> {d}/ (hops/*.pcap, flowlogs.txt, trace.txt)"
        )
    # The point of the demo: the reply is dropped without appliance mode and delivered with it.
    return bool(verdicts["off"]["delivered"] == 1 and verdicts["on"]["delivered"] == 2)


def cmd_demo(args: argparse.Namespace) -> int:
    """The guided tour (emulator.tour: every seed behaviour, its annotated capture, pictures and page, an index),
    then any embedded scenario the tour does not visit, then the classic seed appliance-mode replay."""
    from emulator.report import write_material
    from emulator.tour import STOPS, run_tour

    out = validate.output_dir(args.out, "--out")
    vpn_out = os.path.join(out, "vpn")
    toured = {os.path.abspath(stop.path) for stop in STOPS}
    rest = load_all([p for p in embedded_scenarios() if os.path.abspath(p) not in toured], vpn_out)
    os.makedirs(out, exist_ok=True)
    print(f"== The guided tour (virtual time) -> {out}/index.html")
    ok = run_tour(out) == 0
    if rest:
        print(f"\n== Other embedded scenarios -> {vpn_out}/")
    for sc in rest:
        res = sc.run(vpn_out)
        res.outputs.update(write_material(sc, res, vpn_out))
        _print_result(res, False)
        ok &= res.ok
    tgw_out = os.path.join(out, "tgw")
    print(f"\n== TGW: the classic appliance-mode drop (tgw.md §1.5) -> {tgw_out}/")
    ok &= tgw_demo(tgw_out)
    print(f"\ndemo {'finished' if ok else 'finished with FAILED expectations'}; outputs under {out}/")
    if ok:
        print(
            f"open a capture with its comments and keys:  WIRESHARK_CONFIG_DIR={out}/vpn/<name>-keys "
            f"wireshark {out}/vpn/<name>.pcapng   (connection runs: {out}/connection/)"
        )
    return 0 if ok else 1


if __name__ == "__main__":
    from emulator.cli import main

    sys.exit(main(["run", *sys.argv[1:]]))
