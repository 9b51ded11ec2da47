"""Conformance testing of a customer gateway device against the AWS endpoint (``awsnetemu conformance``).

Public API:

* :data:`CHECKS`, :func:`get_check`: the battery (stable IDs, levels, sources, bounds, functions);
* :class:`Settings`, :func:`make_timers`, :class:`Session`: the AWS endpoint on real UDP and its records;
* :func:`run_battery`, :class:`Report`: run checks and collect results;
* :class:`Verdict`, :class:`Level`, :class:`CheckResult`, :class:`Outcome`;
* :mod:`emulator.conformance.profile`: tunnel options from AWS's defaults, YAML or describe-vpn-connections;
* :mod:`emulator.conformance.report`: table, JSON, JUnit, the ``--out`` directory.
"""

from __future__ import annotations

from emulator.conformance.checks import CHECKS, get_check
from emulator.conformance.model import CheckResult, CheckSpec, Level, Outcome, Verdict
from emulator.conformance.profile import Profile, default_profile, load_profile
from emulator.conformance.runner import Report, run_battery, select_checks
from emulator.conformance.session import Session, Settings, Timers, make_timers

__all__ = [
    "CHECKS",
    "CheckResult",
    "CheckSpec",
    "Level",
    "Outcome",
    "Profile",
    "Report",
    "Session",
    "Settings",
    "Timers",
    "Verdict",
    "default_profile",
    "get_check",
    "load_profile",
    "make_timers",
    "run_battery",
    "select_checks",
]
