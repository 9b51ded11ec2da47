"""Worker functions a test names in RunTask.function (module:name): they run in the campaign's workers."""

from __future__ import annotations

import os
import threading
from typing import Any

from emulator.campaign.runner import RunTask, execute

EXECUTED: list[str] = []
"""Keys of the tasks this process executed (a Dask cluster of threads shares it with the test)."""
_LOCK = threading.Lock()


def counting_execute(task: RunTask) -> dict[str, Any]:
    with _LOCK:
        EXECUTED.append(task.key)
    return execute(task)


def die_on_seed_2(task: RunTask) -> dict[str, Any]:
    """The worker process dies (as with kill -9 or the OOM killer) under the run with seed 2."""
    if task.seed == 2:
        os._exit(7)
    return execute(task)
