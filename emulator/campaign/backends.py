"""Where a campaign's runs go: a local pool of worker processes, or a Dask cluster. One interface.

Both take a list of :class:`~emulator.campaign.runner.RunTask` and call ``on_result(result_dict)`` once per task,
in completion order, from the calling thread; the campaign loop (:mod:`emulator.campaign.engine`) is the same
for both. A worker process that dies under a run (a crash of the interpreter, the OOM killer, ``os._exit``) is
that run's outcome, ``worker_died``; the other runs go on.

* :class:`ProcessBackend` (the default): ``workers`` processes started by the ``forkserver`` method (so a parent
  with threads, e.g. one that also used Dask, forks nothing but a clean server), each running one task at a
  time with the next one already queued. Death is seen on the process's sentinel: the task it was running is
  reported, the one queued behind it runs elsewhere, and a fresh process replaces it.
* :class:`DaskBackend`: ``dask.distributed``. ``address`` is a scheduler (``tcp://host:8786``) or ``local``
  (a :class:`distributed.LocalCluster` of ``workers`` single-threaded worker processes, closed with the
  backend). A Dask task is a chunk of up to ``chunk`` (8) runs of one entry with neighbouring seeds (a run takes
  about 10 ms; one Dask task costs the scheduler and client about 3 ms of CPU, so one task per run spent a
  quarter of the machine on bookkeeping), keyed by its runs' keys (:func:`~emulator.campaign.runner.task_key`,
  from the base, the parts, the seed, the invariants and :data:`~emulator.campaign.runner.VERSION`); the
  scheduler treats a key it still holds as done, so a repeated campaign against the same cluster gets finished
  runs back without running them. The base (scenario, topology) is scattered to the workers once. On a remote
  cluster the futures of a campaign are kept on the scheduler as a published dataset named
  ``awsnetemu-<campaign>-<digest>`` (``Client.publish_dataset``) so that they outlive this client; free them
  with ``Client.unpublish_dataset``. A worker that dies is retried by the scheduler up to its ``allowed-failures``
  (a local cluster here: 0) and then reported by Dask as ``KilledWorker``, for every task that was on that worker:
  the runs of those chunks are run again one at a time, alone on the cluster (each keyed by its own key), and
  the one that kills its worker again is reported as ``worker_died``.
"""

from __future__ import annotations

import contextlib
import hashlib
import multiprocessing as mp
import multiprocessing.connection as mpc
import os
import traceback
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any, Protocol

from emulator.campaign.runner import RunTask, call, worker_died
from emulator.errors import ConfigError


def call_with_base(task: RunTask, base: Any) -> dict[str, Any]:
    """A Dask task: ``task`` travelled without its base, which was scattered to the workers once."""
    return call(replace(task, base=base))


def call_chunk(tasks: list[RunTask], base: Any) -> list[dict[str, Any]]:
    """A Dask task of several runs of one entry (their base scattered once)."""
    return [call(replace(t, base=base)) for t in tasks]


def chunk_key(chunk: Sequence[RunTask]) -> str:
    """A chunk's key, from its runs' keys (each from base, parts, seed, invariants and version)."""
    h = hashlib.sha256("\n".join(t.key for t in chunk).encode()).hexdigest()[:32]
    return f"awsnetemu-runs-{h}"


def _chunks(tasks: Sequence[RunTask], size: int) -> list[list[RunTask]]:
    """Runs grouped by entry and by blocks of ``size`` seeds: the same runs make the same chunks whatever the
    campaign's number of seeds (but the last block of an entry), so a longer campaign reuses the shorter one's."""
    groups: dict[tuple[int, int, str], list[RunTask]] = {}
    for t in tasks:
        groups.setdefault((t.entry, t.seed // size, t.function), []).append(t)
    return list(groups.values())


def _exception(fut: Any) -> BaseException | None:
    """A failed future's exception (a cancelled future raises when asked: that is the exception)."""
    try:
        exc: BaseException | None = fut.exception()
    except Exception as e:
        return e
    return exc


def _failed(task: RunTask, exc: BaseException | None) -> dict[str, Any]:
    if type(exc).__name__ == "KilledWorker":
        return worker_died(task, f"Dask {type(exc).__name__}: {exc}")
    res = worker_died(task, "")
    res["status"] = "error"
    res["error"] = f"{type(exc).__name__}: {exc}"
    return res


OnResult = Callable[[dict[str, Any]], None]


class Backend(Protocol):
    """Runs tasks somewhere and reports each result."""

    name: str
    workers: int

    def run(self, tasks: Sequence[RunTask], on_result: OnResult) -> None: ...

    def close(self) -> None: ...


# ===================================================================================== local processes


def _worker_main(conn: mpc.Connection) -> None:
    """A worker process: receive a task, send back its result, until told to stop (None)."""
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):
            return
        if task is None:
            return
        try:
            res = call(task)
        except Exception as e:  # a bug in the runner: reported as an error of this run, the worker lives on
            res = worker_died(task, "")
            res["status"] = "error"
            res["error"] = f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=6)}"
        conn.send(res)


class _Worker:
    def __init__(self, ctx: Any) -> None:
        parent, child = ctx.Pipe()
        self.conn: mpc.Connection = parent
        self.proc = ctx.Process(target=_worker_main, args=(child,), daemon=True)
        self.proc.start()
        child.close()
        self.tasks: deque[RunTask] = deque()
        """Sent and not answered yet, in order: the first is the one running."""

    def stop(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.conn.send(None)
        self.proc.join(5)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(5)
        self.conn.close()
        self.proc.close()


class ProcessBackend:
    """``workers`` local worker processes (see the module docstring)."""

    PREFETCH = 2
    """Tasks sent ahead to each worker, so that it never waits for this process to send the next one."""

    def __init__(self, workers: int = 1) -> None:
        self.name = f"{workers} local process{'es' if workers != 1 else ''}"
        self.workers = max(1, workers)
        self._ctx = mp.get_context("forkserver")
        self._ctx.set_forkserver_preload(["emulator.campaign.runner", "emulator.scenario", "tgw_dataplane.dataplane"])
        self._pool: list[_Worker] = []

    def _spawn(self) -> _Worker:
        w = _Worker(self._ctx)
        self._pool.append(w)
        return w

    def run(self, tasks: Sequence[RunTask], on_result: OnResult) -> None:
        todo = deque(tasks)
        while len(self._pool) < min(self.workers, len(tasks)):
            self._spawn()

        def feed(w: _Worker) -> None:
            while todo and len(w.tasks) < self.PREFETCH:
                t = todo.popleft()
                w.tasks.append(t)
                w.conn.send(t)

        for w in self._pool:
            feed(w)
        while any(w.tasks for w in self._pool):
            waiting: dict[Any, _Worker] = {}
            for w in self._pool:
                if w.tasks:
                    waiting[w.conn] = w
                    waiting[w.proc.sentinel] = w
            for obj in mpc.wait(list(waiting)):
                w = waiting[obj]
                if not w.tasks or w not in self._pool:
                    continue
                eof = False
                while w.tasks and w.conn.poll():
                    try:
                        res = w.conn.recv()
                    except (EOFError, OSError):
                        eof = True  # the process is gone (a closed pipe polls as readable)
                        break
                    w.tasks.popleft()
                    on_result(res)
                if w.tasks and (eof or not w.proc.is_alive()):
                    # The process died under its first task: that is the task's outcome; the ones sent behind it
                    # never started and go back to the queue; a fresh worker takes over.
                    dead = w.tasks.popleft()
                    todo.extendleft(reversed(w.tasks))
                    w.tasks.clear()
                    w.proc.join(5)
                    code = w.proc.exitcode
                    self._pool.remove(w)
                    w.conn.close()
                    on_result(worker_died(dead, f"worker process {w.proc.pid} died (exit code {code})"))
                    w = self._spawn()
                feed(w)
            for w in self._pool:
                feed(w)

    def close(self) -> None:
        for w in self._pool:
            w.stop()
        self._pool.clear()


# ================================================================================================ Dask


class DaskBackend:
    """A Dask cluster (see the module docstring)."""

    def __init__(
        self, address: str, workers: int = 2, *, processes: bool = True, dataset: str | None = None, chunk: int = 8
    ) -> None:
        import dask
        from distributed import Client, LocalCluster

        self.workers = workers
        self.dataset = dataset
        self._held: dict[Any, Any] = {}
        self.chunk = chunk
        self._cluster: Any = None
        if address == "local":
            # A task that kills its worker is reported at once instead of killing `allowed-failures` more.
            with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
                self._cluster = LocalCluster(  # type: ignore[no-untyped-call]
                    n_workers=workers,
                    threads_per_worker=1,
                    processes=processes,
                    dashboard_address=None,
                    silence_logs=40,
                )
            self.client = Client(self._cluster, set_as_default=False)  # type: ignore[no-untyped-call]
            self.name = f"Dask LocalCluster, {workers} worker{'s' if workers != 1 else ''}"
        else:
            try:
                self.client = Client(address, set_as_default=False, timeout="15s")  # type: ignore[no-untyped-call]
            except (OSError, TimeoutError, ValueError) as e:
                raise ConfigError(f"--dask: cannot reach a Dask scheduler at {address!r}: {e}") from None
            n = len(self.client.scheduler_info().get("workers", {}))
            self.workers = n or workers
            self.name = f"Dask cluster {address}, {n} workers"

    def run(self, tasks: Sequence[RunTask], on_result: OnResult) -> None:
        from distributed import as_completed

        # Each base (a scenario, a topology) goes to the workers once, not with every task.
        bases: dict[int, Any] = {}
        for t in tasks:
            if id(t.base) not in bases:
                bases[id(t.base)] = self.client.scatter(t.base, broadcast=True, hash=False)  # type: ignore[no-untyped-call]
        chunks = _chunks(tasks, self.chunk)
        futs = self.client.map(
            call_chunk,
            [[replace(t, base=None) for t in c] for c in chunks],
            [bases[id(c[0].base)] for c in chunks],
            key=[chunk_key(c) for c in chunks],
            pure=False,
            retries=0,
            batch_size=256,
        )
        futures = dict(zip(futs, chunks, strict=True))
        self._hold(futures)
        suspects: list[RunTask] = []
        for fut in as_completed(list(futures), loop=self.client.loop):  # type: ignore[no-untyped-call]
            chunk = futures[fut]
            if fut.status == "finished":
                for res in fut.result():
                    on_result(res)
                continue
            exc = _exception(fut)
            if type(exc).__name__ == "KilledWorker":
                # A run killed the worker this chunk was on (this one, or one queued there beside it): run the
                # chunk's runs again one at a time, alone on the cluster, so that only the culprit dies.
                suspects += chunk
                continue
            for t in chunk:
                on_result(_failed(t, exc))
        for t in suspects:
            # With its base: a worker's death may have taken the scattered copy with it.
            f = self.client.submit(call, t, key=t.key, pure=False, retries=0)
            self._hold({f: t})
            try:
                res = f.result()
            except Exception as e:  # KilledWorker: this is the culprit
                res = _failed(t, e)
            on_result(res)

    def _hold(self, futures: Mapping[Any, Any]) -> None:
        # Hold every future: the scheduler keeps a key's result while a client holds it, so the same runs asked
        # for again (a repeated campaign) are handed back instead of run.
        for f in futures:
            self._held[f.key] = f
        if self.dataset:
            # ... and after this client has gone, for a cluster that outlives it.
            self.client.publish_dataset(list(self._held.values()), name=self.dataset, override=True)

    def close(self) -> None:
        self._held.clear()
        self.client.close()  # type: ignore[no-untyped-call]
        if self._cluster is not None:
            self._cluster.close()


def make_backend(workers: int, dask: str | None, *, dataset: str | None = None, processes: bool = True) -> Backend:
    """The backend the CLI flags ask for."""
    if dask is None:
        return ProcessBackend(workers)
    return DaskBackend(dask, workers, processes=processes, dataset=dataset)


def cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
