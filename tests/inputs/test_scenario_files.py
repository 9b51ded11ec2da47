"""Issue 13, scenario YAML: arbitrary and mutated documents (every embedded scenario, mutated), run through
``awsnetemu run`` in-process. Every outcome is exit 0, 1 or 2 within the time bound; never a traceback."""

from __future__ import annotations

import copy
import glob
import os
import tempfile

import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from emulator.scenario_cli import embedded_scenarios
from tests.inputs.helpers import BUDGET, assert_clean, mutate, run_cli, values

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FILES = embedded_scenarios() + sorted(glob.glob(os.path.join(ROOT, "tests", "ikev2", "scenarios", "*.yaml")))


def _base(path: str) -> dict[str, object]:
    with open(path) as f:
        doc = yaml.safe_load(f)
    tgw = doc.get("tgw")
    if isinstance(tgw, dict) and isinstance(tgw.get("topology"), str):
        # The mutated copy lives elsewhere: keep the topology reachable (a mutation may still change it).
        tgw["topology"] = os.path.join(os.path.dirname(path), tgw["topology"])
    return doc


BASES = {os.path.basename(f): _base(f) for f in FILES}
FUZZ = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _run_doc(doc: object, *, out: bool, extra: list[str]) -> None:
    with tempfile.TemporaryDirectory(prefix="h2-inputs-") as d:
        path = os.path.join(d, "scenario.yaml")
        with open(path, "w") as f:
            yaml.safe_dump(doc, f, allow_unicode=True)
        argv = ["run", path, *extra, "--max-events", str(BUDGET)]
        if out:
            argv += ["--out", os.path.join(d, "out")]
        o = run_cli(argv)
        event(f"exit {o.code}")
        assert_clean(o)
        if o.code in (0, 1) and out and "--check" not in extra:
            # A run that finished wrote its outputs inside --out, nowhere else.
            written = sorted(os.listdir(os.path.join(d, "out")))
            # The raw outputs (pcap, JSON lines, timeline, keys) and the teaching material (pcapng, sequence
            # diagram, timeline pictures, run.json, HTML page), all named after the scenario.
            assert len(written) >= 4 and all(w.startswith(written[0].split("-keys")[0]) for w in written), written
            assert sorted(os.listdir(d)) == ["out", "scenario.yaml"]


options = st.lists(st.sampled_from(["--json", "--timeline", "--check"]), max_size=2, unique=True)


@FUZZ
@given(st.data(), st.sampled_from(sorted(BASES)), st.booleans(), options)
def test_mutated_embedded_scenarios(data: st.DataObject, name: str, out: bool, extra: list[str]) -> None:
    doc = mutate(data, copy.deepcopy(BASES[name]))
    _run_doc(doc, out=out, extra=extra)


@settings(FUZZ, max_examples=150)
@given(values, st.booleans())
def test_arbitrary_documents(doc: object, out: bool) -> None:
    _run_doc(doc, out=out, extra=[])


@settings(FUZZ, max_examples=100)
@given(st.dictionaries(st.sampled_from(sorted({k for b in BASES.values() for k in b})), values, max_size=6))
def test_arbitrary_values_under_known_keys(doc: dict[str, object]) -> None:
    _run_doc(doc, out=False, extra=["--check"])


@settings(FUZZ, max_examples=100)
@given(st.text(max_size=200) | st.binary(max_size=200))
def test_arbitrary_text(text: str | bytes) -> None:
    with tempfile.TemporaryDirectory(prefix="h2-inputs-") as d:
        path = os.path.join(d, "s.yaml")
        with open(path, "wb") as f:
            f.write(text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text)
        o = run_cli(["run", path, "--max-events", str(BUDGET)])
        event(f"exit {o.code}")
        assert_clean(o)


def test_every_base_runs_clean() -> None:
    # The unmutated documents pass through the same path (exit 0): the mutations start from valid files.
    for name, doc in BASES.items():
        with tempfile.TemporaryDirectory(prefix="h2-inputs-") as d:
            path = os.path.join(d, name)
            with open(path, "w") as f:
                yaml.safe_dump(doc, f)
            o = run_cli(["run", path])
            assert o.code == 0, (name, o.out, o.err)
