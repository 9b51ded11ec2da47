"""Fault-injection campaigns: a named fault catalogue, many seeded runs, invariants checked on every run.

* :mod:`~emulator.campaign.catalogue`: the faults (names from tc-netem, toxiproxy, Jepsen and VOPR), their
  parameters with types and ranges, and the outcome AWS's documented behaviour implies for each;
* :mod:`~emulator.campaign.invariants`: what every run must satisfy, by name;
* :mod:`~emulator.campaign.spec`: the campaign file, validated as a whole before anything runs;
* :mod:`~emulator.campaign.runner`: one run (a base scenario, a fault schedule, a seed) -> its outcome and the
  hash of its event trace; shrinking a failing schedule;
* :mod:`~emulator.campaign.backends`: where runs go: a local process pool or a Dask cluster, one interface;
* :mod:`~emulator.campaign.engine`: the campaign loop, the result cache, the summary.

``awsnetemu campaign`` is :mod:`emulator.campaign_cli`; ``docs/campaigns.md`` is the user's guide.
"""

from __future__ import annotations
