"""External tools the tests use as oracles (tshark, charon, ike-scan, ...): one rule for when they are missing.

In CI (``CI`` set to 1/true/yes) a missing tool fails the test, because the real-peer and dissector checks are
part of what CI proves; on a developer machine without them the test is skipped with the reason and the
command that installs them (``make system``)."""

from __future__ import annotations

import os
import shutil
from typing import NoReturn

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def tool_missing(msg: str) -> NoReturn:
    """Fail in CI, skip elsewhere, with ``msg``."""
    if in_ci():
        pytest.fail(msg)
    pytest.skip(msg)


def require_tool(name: str) -> str:
    """The path of executable ``name``, or fail (CI) / skip (elsewhere)."""
    path = shutil.which(name)
    if path is None:
        tool_missing(f"{name} is needed (run `make system`)")
    return path
