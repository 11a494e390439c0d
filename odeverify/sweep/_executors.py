"""Where cells run: a local process pool (the default) or a Dask cluster. Each yields rows as cells finish.

odeverify schedules nothing: it submits every cell to the executor and collects the results as they come.
A worker that dies takes its running cells with it; they are run again, each at most
:data:`MAX_ATTEMPTS` times, and a cell whose worker died that often becomes a row with that error. Dask
does this itself (the scheduler reschedules the tasks of a lost worker; after
``distributed.scheduler.allowed-failures`` it raises ``KilledWorker``); for the local pool, whose
``concurrent.futures`` executor breaks when one of its processes dies, the pool is started again with the
cells that have no row yet.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import tempfile
import uuid
from pathlib import Path

from ._cells import error_row, run_cell

__all__ = ["local_pool", "dask_cluster", "MAX_ATTEMPTS"]

#: times a cell is run on a worker that dies before it is recorded as an error
MAX_ATTEMPTS = 3


def _context():
    import multiprocessing

    # forkserver: workers are forked from a clean single-threaded server (the driver may run threads), with
    # odeverify already imported
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["odeverify", "odeverify._check", "odeverify.strategies", "odeverify.sweep._cells"])
    return ctx


def local_pool(cells, workers):
    """Run ``cells`` on a pool of ``workers`` local processes; yields each row as its cell finishes."""
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    markers = tempfile.mkdtemp(prefix="odeverify-sweep-")
    attempts = dict.fromkeys((c.cell_id for c in cells), 0)
    pending = {c.cell_id: c for c in cells}
    try:
        while pending:
            todo = [dataclasses.replace(c, markers=markers) for c in pending.values()]
            pool = ProcessPoolExecutor(max_workers=workers, mp_context=_context())
            finished = False
            try:
                futures = [pool.submit(run_cell, c) for c in todo]
                processes = dict(getattr(pool, "_processes", None) or {})  # pid -> Process, exit codes read live
                broken = False
                for fut in as_completed(futures):
                    try:
                        row = fut.result()
                    except BrokenProcessPool:
                        broken = True
                        continue
                    del pending[row["cell_id"]]
                    yield row
                processes.update(getattr(pool, "_processes", None) or {})
                finished = True
            finally:
                if not finished:  # interrupted: drop the queued cells, stop the running ones
                    for process in list((getattr(pool, "_processes", None) or {}).values()):
                        process.terminate()
                pool.shutdown(wait=True, cancel_futures=True)
            if broken:
                yield from _after_a_death(markers, processes, pending, attempts)
    finally:
        shutil.rmtree(markers, ignore_errors=True)


def _after_a_death(markers, processes, pending, attempts):
    """Count an attempt for each cell that was running when the pool broke; rows for those out of attempts.

    Every process notes its running cell in ``markers/<pid>``. The process that died first (killed, out of
    memory) is told from those the executor then terminated by its exit code; when that cannot be told,
    every running cell counts an attempt.
    """
    running = {}
    for marker in Path(markers).iterdir():
        running[int(marker.name)] = marker.read_text()
        marker.unlink()
    dead = {pid for pid in running
            if pid in processes and processes[pid].exitcode not in (None, -signal.SIGTERM, 0)}
    for pid in dead or running:
        cell_id = running[pid]
        if cell_id not in pending:
            continue
        attempts[cell_id] += 1
        if attempts[cell_id] >= MAX_ATTEMPTS:
            cell = pending.pop(cell_id)
            yield error_row(cell, "WorkerDied",
                            f"the worker process running this cell died {attempts[cell_id]} times "
                            "(killed, out of memory, or a crash in compiled code)")


def dask_cluster(cells, *, n_workers=None, scheduler=None, client=None):
    """Run ``cells`` on Dask: an existing ``client``, the cluster at ``scheduler``, or a new
    ``LocalCluster`` of ``n_workers`` single-threaded processes; yields each row as its cell finishes."""
    try:
        from distributed import Client, LocalCluster, as_completed
    except ImportError:
        raise ImportError(
            "running a sweep on Dask needs dask and distributed: pip install 'odeverify[dask]'"
        ) from None
    own, futures = [], {}
    try:
        if client is None:
            if scheduler is None:
                cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                                       dashboard_address=None)
                own.append(cluster)
                client = Client(cluster)
            else:
                client = _connect(Client, scheduler)
            own.append(client)
        token = uuid.uuid4().hex[:8]
        futures = {client.submit(run_cell, c, key=f"odeverify-cell-{token}-{i}", pure=False): c
                   for i, c in enumerate(cells)}
        for fut in as_completed(futures):
            try:
                row = fut.result()
            except Exception as exc:  # KilledWorker: the scheduler gave up on it after repeated worker deaths
                row = error_row(futures[fut], type(exc).__name__, " ".join(str(exc).split()))
            yield row
    finally:
        if client is not None and futures:
            client.cancel(list(futures))  # interrupted: nothing of ours left on the cluster
        for thing in reversed(own):
            thing.close()


#: seconds to wait for the scheduler at ``scheduler=`` to answer
CONNECT_TIMEOUT = 10


def _connect(Client, scheduler):
    """A client of the cluster at ``scheduler``; an unreachable or malformed address is a one-line error."""
    from ..errors import InvalidArgumentError

    try:
        return Client(scheduler, timeout=CONNECT_TIMEOUT)
    except (OSError, ValueError, TypeError) as exc:  # distributed: OSError when it times out, ValueError on parse
        raise InvalidArgumentError(
            f"scheduler={scheduler!r:.100}: no Dask scheduler there ({' '.join(str(exc).split())[:200]}); start one "
            "(`dask scheduler`, then `dask worker ADDRESS`) or give its address, tcp://HOST:8786"
        ) from None


def default_workers():
    """The number of local workers by default: the CPUs this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1
