"""One cell of a sweep: a problem, a solver method, a tolerance and an adjoint mode, checked on a worker.

A :class:`Cell` is small and picklable: it names its problem by a seed (generated), a path (a spec file) or a
factory and a seed, never by a compiled system, so the problem is rebuilt where the cell runs.
:func:`run_cell` never raises: a cell that blows up, raises or exceeds its time limit becomes a row with
its error.
"""

from __future__ import annotations

import ctypes
import os
import threading
import time
import traceback
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Cell", "CellTimeout", "COLUMNS", "DETERMINISTIC_COLUMNS", "STATUSES", "run_cell", "check_cell"]

#: the columns of a row, in order, with their types
COLUMNS = {
    "cell_id": str, "problem_id": str, "problem_seed": int, "problem": str,
    "method": str, "rtol": float, "mode": str,
    "status": str, "worst_entry": str, "worst_ratio": float,
    "error_z0": float, "error_theta": float, "error_t": float,
    "taylor_rate": float, "nfe": int, "error_type": str, "error_message": str, "wall_time": float,
}
#: the columns a sweep reproduces bit for bit, whatever the executor and the number of workers (all but the
#: wall time; for a cell that finishes within its time limit: whether a cell is cut depends on the machine)
DETERMINISTIC_COLUMNS = tuple(c for c in COLUMNS if c != "wall_time")
#: a cell's outcome: the check passed; failed (an entry off, or the Taylor test); inconclusive (no consensus
#: of the references on some entry, none off); error (the cell raised, blew up or exceeded its time limit)
STATUSES = ("passed", "failed", "inconclusive", "error")
#: longest error message kept in a row, in characters
MAX_MESSAGE = 500


@dataclass(frozen=True)
class Cell:
    """What a worker needs to run one cell; every field is plain data except a user's factory and candidate."""

    cell_id: str
    problem_id: str
    problem: tuple  # ("generated", seed, options) | ("spec", path) | ("factory", factory, seed)
    method: str
    rtol: float
    mode: str
    atol: float | None = None  # None: the cell's rtol
    candidate: object = None  # None: odeverify.adjoint_gradients
    references: tuple | None = None
    check_rtol: float | None = None
    taylor: bool = False
    timeout: float | None = None
    markers: str | None = field(default=None, compare=False)  # local pool: where a worker notes its cell

    @property
    def seed(self):
        kind = self.problem[0]
        return self.problem[1] if kind == "generated" else self.problem[2] if kind == "factory" else None


class CellTimeout(Exception):
    """Raised in a cell's thread when it exceeds its time limit."""


@contextmanager
def deadline(seconds):
    """Raise :class:`CellTimeout` in this thread once ``seconds`` have passed (None: no limit).

    Cooperative: the exception is raised asynchronously (``PyThreadState_SetAsyncExc``) at the thread's next
    Python bytecode, so it cuts any Python loop -- every solver step here returns to Python -- and works in
    a pool process or a Dask worker thread alike; a single C call that never returns is not cut (kill that
    worker: its cells are retried). The limit covers building the problem and the check.
    """
    if seconds is None:
        yield
        return
    tid = ctypes.c_ulong(threading.get_ident())
    lock = threading.Lock()
    state = {"done": False, "fired": False}

    def fire():
        with lock:
            if not state["done"]:
                state["fired"] = True
                ctypes.pythonapi.PyThreadState_SetAsyncExc(tid, ctypes.py_object(CellTimeout))

    timer = threading.Timer(seconds, fire)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        with lock:
            state["done"] = True
            timer.cancel()
            if state["fired"]:
                ctypes.pythonapi.PyThreadState_SetAsyncExc(tid, None)  # clear it if not raised yet
        if state["fired"]:
            raise CellTimeout


# ---------------------------------------------------------------------------- building the problem
def build_problem(cell):
    """The cell's problem ``(system, z0, ts, theta, loss)`` and its description in words, built here."""
    kind = cell.problem[0]
    if kind == "generated":
        from ._generate import generated_problem

        problem = generated_problem(cell.problem[1], cell.problem[2])
        return tuple(problem), repr(problem)[len("Problem("):-1]
    if kind == "spec":
        from ..spec import load_spec

        spec = load_spec(cell.problem[1])
        args = (spec.system, spec.z0, spec.ts, spec.theta, spec.loss)
        return args, f"{spec.name}: {_describe(*args, loss_text=spec.loss_description)}"
    args = tuple(cell.problem[1](cell.problem[2]))
    return args, _describe(*args)


def _describe(system, z0, ts, theta, loss, loss_text=None):
    import numpy as np

    if hasattr(system, "state_names") and hasattr(system, "f"):
        rhs = "; ".join(f"d{s}/dt = {e}" for s, e in zip(system.state_names, system.f))
    else:
        rhs = system.describe() if hasattr(system, "describe") else repr(system)
    if loss_text is None:
        loss_text = loss.formula() if hasattr(loss, "formula") else repr(loss)
    return (f"{rhs}, z0={np.asarray(z0).tolist()}, ts={np.asarray(ts).tolist()}, "
            f"theta={np.asarray(theta).tolist()}, loss: {loss_text}")


# ---------------------------------------------------------------------------- the check
def _candidate(cell, system, loss, nfe):
    """The cell's candidate as check_gradients takes it: a callable that may be re-solved tighter."""
    if cell.candidate is None:
        from .._adjoint import adjoint_gradients as user
    else:
        user = cell.candidate
    atol = cell.rtol if cell.atol is None else cell.atol

    def candidate(z0, ts, theta, rtol=cell.rtol, atol=atol):
        result = user(system, z0, ts, theta, loss, method=cell.method, mode=cell.mode, rtol=rtol, atol=atol)
        stats = getattr(result, "stats", None)
        if not nfe and stats is not None:  # the first call, at the cell's own tolerances
            nfe.append(int(stats.nfev_forward + stats.nfev_backward))
        return result.as_dict() if hasattr(result, "as_dict") else result

    name = getattr(user, "__name__", type(user).__name__)
    candidate.__name__ = f"{name} ({cell.mode}, {cell.method}, rtol={cell.rtol:g}, atol={atol:g})"
    return candidate


def check_cell(cell, row=None):
    """Build the cell's problem and check it. Returns (row values, GradientReport, TaylorResult or None).

    ``row``, when given, receives the problem's description as soon as the problem is built.
    """
    from .._check import check_gradients

    args, words = build_problem(cell)
    if row is not None:
        row["problem"] = words
    system, z0, ts, theta, loss = args
    nfe = []
    candidate = _candidate(cell, system, loss, nfe)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a trivial test or backsolve drift shows in the report, not as noise
        report = check_gradients(*args, candidate=candidate, references=cell.references, rtol=cell.check_rtol)
        taylor = None
        if cell.taylor:
            from .._taylor import taylor_test

            taylor = taylor_test(*args, candidate=candidate, seed=0)
    return _verdict(report, taylor, words, nfe), report, taylor


def _verdict(report, taylor, words, nfe):
    statuses = {r.status for r in report.rows}
    if report.passed and (taylor is None or taylor.passed):
        status = "passed"
    elif statuses & {"FAIL", "missing"} or (taylor is not None and not taylor.passed):
        status = "failed"
    elif "inconclusive" in statuses:
        status = "inconclusive"
    else:
        status = "failed"  # nothing could be checked
    worst = report.worst()
    errors = {}
    for q in ("z0", "theta", "t"):
        diffs = [r.diff for r in report.rows if r.quantity == q and r.diff is not None]
        errors[f"error_{q}"] = float(max(diffs)) if diffs else None
    return {
        "problem": words, "status": status,
        "worst_entry": worst.label if worst else None,
        "worst_ratio": float(worst.ratio) if worst else None,
        **errors,
        "taylor_rate": None if taylor is None else float(taylor.rate),
        "nfe": nfe[0] if nfe else None,
    }


# ---------------------------------------------------------------------------- the worker's entry point
def run_cell(cell):
    """Run one cell; returns its row (a dict with the keys of :data:`COLUMNS`). Never raises."""
    marker = _mark(cell)
    row = dict.fromkeys(COLUMNS)
    row.update(cell_id=cell.cell_id, problem_id=cell.problem_id, problem_seed=cell.seed,
               method=cell.method, rtol=float(cell.rtol), mode=cell.mode)
    start = time.perf_counter()
    try:
        with deadline(cell.timeout):
            values, _, _ = check_cell(cell, row)
        row.update(values)
    except CellTimeout:
        row.update(status="error", error_type="CellTimeout",
                   error_message=f"the cell exceeded its time limit of {cell.timeout:g} s and was cut")
    except Exception as exc:  # a cell that raises is a row with its error, never a crashed sweep
        row.update(status="error", error_type=type(exc).__name__, error_message=_message(exc))
    row["wall_time"] = time.perf_counter() - start
    if marker is not None:
        marker.unlink(missing_ok=True)
    return row


def _message(exc):
    text = " ".join(str(exc).split()) or "".join(traceback.format_exception_only(type(exc), exc)).strip()
    return text[:MAX_MESSAGE]


def _mark(cell):
    """Local pool: note in ``cell.markers/<pid>`` that this process runs this cell (read if it dies)."""
    if cell.markers is None:
        return None
    marker = Path(cell.markers) / str(os.getpid())
    marker.write_text(cell.cell_id)
    return marker


def error_row(cell, error_type, message):
    """The row of a cell that could not run (its worker died too often)."""
    row = dict.fromkeys(COLUMNS)
    row.update(cell_id=cell.cell_id, problem_id=cell.problem_id, problem_seed=cell.seed, method=cell.method,
               rtol=float(cell.rtol), mode=cell.mode, status="error", error_type=error_type,
               error_message=message[:MAX_MESSAGE])
    return row
