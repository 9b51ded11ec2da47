"""The pytest plugin's example (docs/conformance.md) runs as a user's test file would: through pytester, in a
separate pytest process that finds the plugin through its ``pytest11`` entry point."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

DOC = Path(__file__).resolve().parents[2] / "docs" / "conformance.md"


def example() -> str:
    """The example test file: the fenced Python block of docs/conformance.md that defines tests."""
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
    tests = [b for b in blocks if "def test_" in b]
    assert len(tests) == 1, "docs/conformance.md must hold exactly one example test file"
    return tests[0]


def test_docs_example_runs_with_the_plugin(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_my_gateway=example())
    res = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-v", timeout=170)
    res.assert_outcomes(passed=3)
    res.stdout.fnmatch_lines(["*test_device_answers_dpd PASSED*"])


def test_plugin_options_are_registered(pytester: pytest.Pytester) -> None:
    res = pytester.runpytest_subprocess("--help")
    res.stdout.fnmatch_lines(["*awsnetemu*", "*--aws-cgw=IP[[]:PORT[]]*"])
