"""The guided tour (``make demo``): every seed behaviour run in virtual time, each with its annotated capture,
pictures and HTML page, an index page, and a short table of what happened and where the material is.

Topics: the DPD exchange (IKEv1 R-U-THERE, IKEv2 liveness checks), lost ACKs, the DPD timeout with each
``DPDTimeoutAction`` (clear, restart, none) in both IKE versions, ``StartupAction`` add and start, a lost and
retransmitted IKEv2 request, a one-way blackhole, the TGW routes of a VPN attachment following the tunnel,
rekeying while DPD runs, both sides restarting at once, a VPN connection's failover between its two tunnels (ESP
through the TGW), and on the TGW side appliance mode off and on, an AZ
failure with pinned flows, two TGWs on one appliance VPC and inter-Region peering.

Scenario files come from ``emulator/scenarios/`` (VPN) and ``emulator/scenarios/tgw/`` (TGW stories); the
IKEv2 DPD-timeout scenarios of ``tests/ikev2/scenarios/`` are included when the source tree is there.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

HERE = os.path.dirname(os.path.abspath(__file__))
SCENARIOS = os.path.join(HERE, "scenarios")
TGW_STORIES = os.path.join(SCENARIOS, "tgw")
REPO_TESTS = os.path.join(os.path.dirname(HERE), "tests", "ikev2", "scenarios")


@dataclass(frozen=True)
class Stop:
    """One stop of the tour: a topic and the scenario (VPN) or story (TGW) that shows it."""

    topic: str
    kind: str  # vpn | tgw | connection
    path: str


def _s(name: str) -> str:
    return os.path.join(SCENARIOS, name)


STOPS: tuple[Stop, ...] = (
    Stop("StartupAction=add, IKEv1 (the CGW initiates)", "vpn", _s("01-tunnel-up-startup-add.yaml")),
    Stop("DPD exchange, IKEv1 (R-U-THERE / ACK)", "vpn", _s("02-idle-dpd.yaml")),
    Stop("DPD timeout, DPDTimeoutAction=clear (IKEv1)", "vpn", _s("03-dpd-timeout-clear.yaml")),
    Stop("DPD timeout, DPDTimeoutAction=restart (IKEv1)", "vpn", _s("04-dpd-timeout-restart.yaml")),
    Stop("DPD timeout, DPDTimeoutAction=none (IKEv1)", "vpn", _s("05-dpd-timeout-none.yaml")),
    Stop("lost ACKs that do not kill the tunnel", "vpn", _s("06-lost-acks.yaml")),
    Stop("one-way blackhole: liveness needs a round trip", "vpn", _s("07-one-way-blackhole.yaml")),
    Stop("TGW VPN attachment routes follow the tunnel", "vpn", _s("08-vpn-routes-follow-tunnel.yaml")),
    Stop("rekeying while DPD runs", "vpn", _s("09-rekey-while-dpd.yaml")),
    Stop("both sides restart at once (backoff, jitter)", "vpn", _s("10-simultaneous-restart.yaml")),
    Stop("StartupAction=start, IKEv2 (AWS initiates) + liveness", "vpn", _s("11-ikev2-startup-start.yaml")),
    Stop("StartupAction=add, IKEv2", "vpn", os.path.join(REPO_TESTS, "v2-02-startup-add.yaml")),
    Stop("a lost IKEv2 request, retransmitted", "vpn", _s("12-ikev2-lost-ike-sa-init.yaml")),
    Stop(
        "DPD timeout, DPDTimeoutAction=clear (IKEv2)", "vpn", os.path.join(REPO_TESTS, "v2-03-aws-timeout-clear.yaml")
    ),
    Stop(
        "DPD timeout, DPDTimeoutAction=restart (IKEv2)",
        "vpn",
        os.path.join(REPO_TESTS, "v2-04-aws-timeout-restart.yaml"),
    ),
    Stop("DPD timeout, DPDTimeoutAction=none (IKEv2)", "vpn", _s("13-ikev2-dpd-timeout-none.yaml")),
    Stop(
        "a strongSwan CGW's liveness model (retransmit budget)",
        "vpn",
        os.path.join(REPO_TESTS, "v2-05-strongswan-cgw-timeout.yaml"),
    ),
    Stop(
        "a libreswan CGW's liveness model (retransmit timeout)",
        "vpn",
        os.path.join(REPO_TESTS, "v2-06-libreswan-cgw-timeout.yaml"),
    ),
    Stop(
        "failover between two tunnels: the active tunnel's CGW dies (clear)",
        "connection",
        _s("14-connection-dpd-clear.yaml"),
    ),
    Stop(
        "a connection with DPDTimeoutAction=none: routes stay, traffic is blackholed",
        "connection",
        _s("15-connection-dpd-none.yaml"),
    ),
    Stop(
        "a connection with DPDTimeoutAction=restart (IKEv2): AWS re-initiates",
        "connection",
        _s("16-connection-dpd-restart.yaml"),
    ),
    Stop("an EC2 burst runs out of credits (t3.micro)", "connection", _s("17-connection-burst-credits.yaml")),
    Stop("dynamic routing: BGP in each tunnel, ECMP over both", "connection", _s("18-connection-bgp-ecmp.yaml")),
    Stop(
        "appliance mode OFF: the reply meets a firewall without state",
        "tgw",
        os.path.join(TGW_STORIES, "appliance-mode-off.yaml"),
    ),
    Stop(
        "appliance mode ON: both directions through one firewall",
        "tgw",
        os.path.join(TGW_STORIES, "appliance-mode-on.yaml"),
    ),
    Stop("AZ failure with a pinned flow", "tgw", os.path.join(TGW_STORIES, "az-failure.yaml")),
    Stop("two TGWs on one appliance VPC", "tgw", os.path.join(TGW_STORIES, "two-tgws.yaml")),
    Stop("inter-Region peering", "tgw", os.path.join(TGW_STORIES, "peering.yaml")),
)


@dataclass
class TourRow:
    """One line of the tour's table and of the index page."""

    topic: str
    name: str
    kind: str
    ok: bool
    summary: str
    html: str


def run_tour(out_dir: str, stops: Sequence[Stop] = STOPS, *, quiet: bool = False) -> int:
    """Run every stop in virtual time, write its material under ``out_dir`` (``vpn/``, ``tgw/``) and
    ``out_dir/index.html``, print the table. Returns 0 when every expectation held, 1 otherwise."""
    from emulator.annotate import load_trace
    from emulator.report import summarize, tgw_summary, write_index, write_material, write_tgw_material
    from emulator.report.connection import connection_summary
    from emulator.report.tgw import load_story, run_story
    from emulator.scenario import Scenario

    t_start = time.perf_counter()
    rows: list[TourRow] = []
    skipped: list[str] = []
    for stop in stops:
        if not os.path.exists(stop.path):
            skipped.append(f"{stop.topic} ({os.path.relpath(stop.path)} is not in this installation)")
            continue
        if stop.kind == "vpn":
            sc = Scenario.load(stop.path)
            d = os.path.join(out_dir, "vpn")
            res = sc.run(d)
            files = write_material(sc, res, d)
            records = list(res.trace)
            rows.append(TourRow(stop.topic, sc.name, "VPN", bool(res.ok), summarize(records), files["html"]))
        elif stop.kind == "connection":
            sc = Scenario.load(stop.path)
            d = os.path.join(out_dir, "connection")
            res = sc.run(d)
            files = write_material(sc, res, d)
            summary = connection_summary(load_trace(files["trace"]))
            rows.append(TourRow(stop.topic, sc.name, "VPN + TGW", bool(res.ok), summary, files["html"]))
        else:
            story = run_story(load_story(stop.path))
            d = os.path.join(out_dir, "tgw")
            files = write_tgw_material(story, d)
            rows.append(TourRow(stop.topic, story.name, "TGW", story.ok, tgw_summary(story.packets), files["html"]))
    index = write_index(
        out_dir,
        [
            {"topic": r.topic, "name": r.name, "kind": r.kind, "ok": r.ok, "summary": r.summary, "html": r.html}
            for r in rows
        ],
        title="awsnetemu: a guided tour",
    )
    wall = time.perf_counter() - t_start
    if not quiet:
        _print_table(rows, out_dir, index, wall, skipped)
    return 0 if all(r.ok for r in rows) else 1


def _print_table(rows: Sequence[TourRow], out_dir: str, index: str, wall: float, skipped: Sequence[str]) -> None:
    w_topic = max(len(r.topic) for r in rows)
    print(f"{'topic':<{w_topic}}  result  what happened")
    print(f"{'-' * w_topic}  ------  {'-' * 60}")
    for r in rows:
        mark = "ok" if r.ok else "FAILED"
        summary = r.summary if len(r.summary) <= 110 else r.summary[:107] + "..."
        print(f"{r.topic:<{w_topic}}  {mark:<6}  {summary}")
    for s in skipped:
        print(f"skipped: {s}")
    print()
    print(f"{len(rows)} runs in {wall:.1f} s of wall time (virtual time inside).")
    print(f"Open {index} in a browser: one page per run with its sequence diagram or packet paths, timeline,")
    print(
        f"annotated captures (pcapng, a comment on every packet) and the tshark commands. Files: {out_dir}/vpn/, "
        f"{out_dir}/connection/, {out_dir}/tgw/"
    )


def stop_for(path: str) -> Stop:
    """A stop for any scenario file: a TGW story when it has ``steps``, a VPN scenario otherwise."""
    import yaml

    with open(path) as f:
        raw = yaml.safe_load(f)
    kind = "vpn"
    if isinstance(raw, dict):
        kind = "tgw" if "steps" in raw else "connection" if "connection" in raw else "vpn"
    return Stop(os.path.splitext(os.path.basename(path))[0], kind, os.path.abspath(path))


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m emulator.tour", description="The guided tour of awsnetemu.")
    p.add_argument("--out", default="out", help="output directory (default: out)")
    p.add_argument(
        "--run",
        nargs="+",
        metavar="FILE",
        help="run only these scenario files (VPN scenarios or TGW stories, e.g. an edited copy of one)",
    )
    args = p.parse_args(argv)
    if args.run:
        from emulator.errors import ConfigError

        try:
            return run_tour(args.out, [stop_for(f) for f in args.run])
        except (ConfigError, OSError) as e:
            print(f"tour: {e}", file=sys.stderr)
            return 2
    return run_tour(args.out)


if __name__ == "__main__":
    sys.exit(main())
