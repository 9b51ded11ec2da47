"""What a battery leaves behind: the terminal table, JSON, JUnit XML and the ``--out`` directory.

``--out DIR`` holds:

* ``report.txt`` (the table and every explanation), ``report.json`` (as ``--json``);
* ``events.jsonl``: every event of the run, one JSON object a line (``t``, ``event``, ``engine``, ``check`` and
  the event's fields, as declared in :mod:`cgw_peer.events`);
* ``keys/``: Wireshark's ``ikev1_decryption_table`` / ``ikev2_decryption_table`` for every IKE SA of the run;
* ``captures/<ID>.pcap`` and ``captures/<ID>.txt``: each check's own capture (frame numbers are the packet
  numbers its explanation cites) and its explanation with a ready tshark command.

JUnit: one ``<testcase>`` per check (``classname`` = ``awsnetemu.conformance.<group>``); ``fail`` is a
``<failure>`` whose message is the summary and whose text is the whole explanation; ``skip`` and
``unsupported`` are ``<skipped>``; ``warn`` passes with the warning in ``<system-out>``.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from typing import IO, Any

from emulator.conformance.model import CheckResult, Verdict
from emulator.conformance.runner import Report, results_json
from emulator.pcap import LINKTYPE_RAW, PcapWriter

_COLOURS = {
    Verdict.PASS: "\x1b[32m",
    Verdict.FAIL: "\x1b[31m",
    Verdict.WARN: "\x1b[33m",
    Verdict.SKIP: "\x1b[90m",
    Verdict.UNSUPPORTED: "\x1b[36m",
}
_RESET = "\x1b[0m"


def verdict_text(v: Verdict, colour: bool) -> str:
    text = v.value.upper()
    return f"{_COLOURS[v]}{text:<11}{_RESET}" if colour else f"{text:<11}"


def progress_line(index: int, total: int, r: CheckResult, colour: bool = False) -> str:
    """One line per finished check: ``[ 3/31] AWS-DPD-01  PASS   1.2 s  answered seq 7 ...``."""
    summary = r.summary if len(r.summary) <= 90 else r.summary[:87] + "..."
    return f"[{index:>2}/{total}] {r.id:<11} {verdict_text(r.verdict, colour)} {r.duration:5.1f} s  {summary}"


def table(report: Report, colour: bool = False, width: int = 100) -> str:
    """The result table (one row per check) and the counts."""
    s = report.settings
    head = (
        f"awsnetemu conformance: device {s.cgw[0]}:{s.cgw[1]}, IKEv{s.ike_version}, profile {s.profile.source}, "
        f"{'--fast timers' if s.timers.fast else 'AWS timers'}"
    )
    rows = [head, "", f"{'ID':<11} {'level':<8} {'verdict':<11} {'time':>6}  summary", "-" * width]
    for r in report.results:
        summary = r.summary if len(r.summary) <= width - 42 else r.summary[: width - 45] + "..."
        rows.append(f"{r.id:<11} {r.level.value:<8} {verdict_text(r.verdict, colour)} {r.duration:5.1f}s  {summary}")
    c = report.counts()
    rows.append("-" * width)
    rows.append(
        f"{c['pass']} pass, {c['fail']} fail, {c['warn']} warn, {c['unsupported']} unsupported, {c['skip']} skip "
        f"in {report.duration:.1f} s"
    )
    return "\n".join(rows)


def explanations(report: Report, only_problems: bool = True) -> str:
    """The explanation of every fail / warn (or every check)."""
    out: list[str] = []
    for r in report.results:
        if only_problems and r.verdict not in (Verdict.FAIL, Verdict.WARN):
            continue
        out.append(f"{r.id} {r.verdict.value.upper()}: {r.title}")
        out.extend("  " + line for line in r.explanation.splitlines())
        if r.capture:
            out.append(f"  Capture: {r.capture} ({r.frames} packets)")
        out.append("")
    return "\n".join(out)


def write_junit(report: Report, path: str) -> None:
    """JUnit XML for CI systems (see the module docstring)."""
    from junitparser import Failure, JUnitXml, Skipped, SystemOut, TestCase, TestSuite

    s = report.settings
    suite = TestSuite(f"awsnetemu-conformance-ikev{s.ike_version}")
    suite.add_property("device", f"{s.cgw[0]}:{s.cgw[1]}")
    suite.add_property("ike_version", str(s.ike_version))
    suite.add_property("profile", s.profile.source)
    suite.add_property("timers", "fast" if s.timers.fast else "aws")
    for r in report.results:
        case = TestCase(f"{r.id} {r.title}", f"awsnetemu.conformance.{r.group}", round(r.duration, 3))
        if r.verdict is Verdict.FAIL:
            f = Failure(r.summary, r.id)
            f.text = r.explanation + (f"\nCapture: {r.capture}" if r.capture else "")
            case.result = [f]
        elif r.verdict in (Verdict.SKIP, Verdict.UNSUPPORTED):
            case.result = [Skipped(f"{r.verdict.value}: {r.summary}")]
        if r.verdict is Verdict.WARN or r.verdict is Verdict.PASS:
            case.system_out = f"{r.verdict.value.upper()}: {r.explanation}"
        suite.add_testcase(case)
    suite.time = round(report.duration, 3)
    xml = JUnitXml()
    xml.add_testsuite(suite)
    xml.write(path, pretty=True)
    del SystemOut


def write_json(report: Report, out: IO[str]) -> None:
    json.dump(results_json(report), out, indent=2, default=str)
    out.write("\n")


def tshark_command(report: Report, pcap: str, keys_dir: str) -> str:
    """A tshark command that decrypts ``pcap`` with the run's key tables (and decodes a custom IKE port)."""
    s = report.settings
    parts = [f"WIRESHARK_CONFIG_DIR={shlex.quote(keys_dir)}", "tshark", "-r", shlex.quote(pcap)]
    for port in sorted({s.cgw[1], s.local[1]} - {500, 4500}):
        parts += ["-d", f"udp.port=={port},udpencap"]
    fields = "-T fields -e frame.number -e frame.time_relative -e ip.src -e isakmp.exchangetype -e isakmp.messageid"
    return " ".join(parts) + " -Y isakmp " + fields


def write_out_dir(report: Report, out_dir: str) -> None:
    """Everything under ``--out`` (see the module docstring)."""
    s = report.session
    os.makedirs(os.path.join(out_dir, "captures"), exist_ok=True)
    keys_dir = os.path.join(out_dir, "keys")
    s.keys.write(keys_dir)
    with open(os.path.join(out_dir, "events.jsonl"), "w") as f:
        for rec in s.events:
            d: dict[str, Any] = {"t": round(rec.t, 6), "event": rec.name, "engine": rec.generation, "check": rec.check}
            for k, v in rec.fields.items():
                d.setdefault(k, v)
            f.write(json.dumps(d, default=str) + "\n")
    wall0 = s.driver.wall0 if s.driver is not None else report.started
    for run in report.runs:
        r = run.result
        if not run.frames:
            continue
        rel = os.path.join("captures", f"{r.id}.pcap")
        path = os.path.join(out_dir, rel)
        w = PcapWriter.open(path, LINKTYPE_RAW, ts_origin=wall0)
        try:
            for seq in run.frames:
                dg = s.datagrams[seq]
                w.write_udp(dg.t, dg.src, dg.dst, dg.data)
        finally:
            w.close()
        r.capture = rel
        r.tshark = tshark_command(report, path, keys_dir)
        with open(os.path.join(out_dir, "captures", f"{r.id}.txt"), "w") as f:
            f.write(f"{r.id} {r.verdict.value.upper()}: {r.title}\n\n{r.explanation}\n\n")
            f.write(f"Capture: {rel} ({r.frames} packets; packet numbers above are its frame numbers)\n")
            f.write(f"Decrypt and list it:\n  {r.tshark}\n")
    with open(os.path.join(out_dir, "report.txt"), "w") as f:
        f.write(table(report) + "\n\n" + explanations(report, only_problems=False))
    with open(os.path.join(out_dir, "report.json"), "w") as f:
        write_json(report, f)


def use_colour(stream: IO[str]) -> bool:
    return stream.isatty() and os.environ.get("NO_COLOR") is None and sys.platform != "win32"
