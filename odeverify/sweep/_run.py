"""``odeverify.sweep``: the product of problems, methods, tolerances and adjoint modes, one check per cell."""

from __future__ import annotations

import itertools
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import InvalidArgumentError, InvalidTypeError
from ._cells import Cell
from ._results import open_writer, output_format, read_rows, summary_table

__all__ = ["sweep", "plan", "SweepResult", "MAX_CELLS"]

#: the most cells a sweep may have (the driver holds every cell and row in memory)
MAX_CELLS = 1_000_000


@dataclass
class SweepResult:
    """The rows of a sweep and what they say.

    Attributes
    ----------
    rows : list of dict
        One per cell, in the sweep's order (problems, then methods, tolerances, modes); keys
        :data:`odeverify.sweep.COLUMNS`. After ``resume=True``, the rows found in the file as well.
    ran : int
        How many cells this call ran (the others were already in the output file).
    output : str or None
    spec : str or None
        The sweep's spec file, when it came from one: the reproducing commands name it.
    """

    rows: list
    ran: int = 0
    output: str | None = None
    spec: str | None = None
    seconds: float = 0.0  # wall time of the call

    @property
    def failing(self):
        """The rows that did not pass (failed, inconclusive, error)."""
        return [r for r in self.rows if r["status"] != "passed"]

    def reproduce(self, cell_id):
        """The command that runs cell ``cell_id`` alone and prints its full report."""
        if self.spec is not None:
            return f"odeverify sweep {self.spec} --cell {cell_id}"
        return f"odeverify.sweep(..., cells=[{cell_id!r}])  # the same arguments"

    def summary(self):
        """The pass rate by method x tolerance x mode, the failing cells and how to reproduce each, as text."""
        lines = [f"sweep: {len(self.rows)} cells ({self.ran} run now, {self.seconds:.1f} s)"
                 + (f", results in {self.output}" if self.output else "")]
        lines += summary_table(self.rows)
        failing = self.failing
        if failing:
            lines += ["", f"{len(failing)} cells did not pass:"]
            for r in failing:
                lines.append(f"  {r['cell_id']}  {r['status']}  {_why(r)}"[:300])
                lines.append(f"    {self.reproduce(r['cell_id'])}")
        return "\n".join(lines)

    __str__ = summary


def _why(row):
    """Why a cell did not pass, in a few words (its full report: the --cell command)."""
    if row["status"] == "error":
        return f"{row['error_type']}: {row['error_message']}"
    ratio = row["worst_ratio"]
    if ratio is not None and ratio > 1:
        return f"worst {row['worst_entry']} at {ratio:.3g} x tolerance"
    if row["status"] == "failed" and row["taylor_rate"] is not None:  # every entry within tolerance
        return f"the Taylor test: rate {row['taylor_rate']:.3g} (2 for a correct gradient)"
    if row["status"] == "inconclusive":
        return "some entries have no verdict (the references do not agree, or too few computed them)"
    return "nothing could be checked" if ratio is None else f"worst {row['worst_entry']} at {ratio:.3g} x tolerance"


def _as_list(value, name, kind):
    values = [value] if isinstance(value, (str, int, float)) else list(value)
    if not values:
        raise InvalidArgumentError(f"{name}=[] is empty; give at least one {kind}")
    return values


def _problem_refs(count, seed, problem_options, specs, factory):
    """``(problem_id, problem)`` of every problem, ``problem`` as a :class:`Cell` holds it."""
    given = [name for name, v in (("count", count), ("specs", specs)) if v is not None]
    if factory is not None and specs is not None or not given:
        raise InvalidArgumentError(
            "say which problems to sweep: count=N (generated from odeverify.strategies, or by factory=), "
            "or specs=[paths of spec files]"
        )
    from ._generate import problem_seed

    if specs is not None:
        refs, seen = [], {}
        for path in _as_list(specs, "specs", "spec file"):
            stem = Path(path).stem
            seen[stem] = seen.get(stem, 0) + 1
            refs.append((stem if seen[stem] == 1 else f"{stem}-{seen[stem]}", ("spec", str(Path(path).resolve()))))
        return refs
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise InvalidArgumentError(f"count={count!r} must be a positive integer, the number of problems")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise InvalidArgumentError(f"seed={seed!r} must be a non-negative integer")
    if factory is not None:
        if not callable(factory):
            raise InvalidTypeError(f"factory={factory!r:.60} must be callable: factory(seed) -> (system, z0, ts, "
                                   "theta, loss)")
        return [(f"f{i}", ("factory", factory, problem_seed(seed, i))) for i in range(count)]
    from ._generate import strategy

    options = tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in (problem_options or {}).items()))
    strategy(dict(options))  # validated now (StrategyArgumentError names the option), drawn on the workers
    return [(f"g{i}", ("generated", problem_seed(seed, i), options)) for i in range(count)]


def plan(*, count=None, seed=0, problem_options=None, specs=None, factory=None, methods=("DOP853",),
         rtols=(1e-8,), modes=("interpolated",), atol=None, candidate=None, references=None, check_rtol=None,
         taylor=False, cell_timeout=None):
    """Every cell of a sweep, in order: problems, then methods, tolerances, modes (see :func:`sweep`)."""
    from .._validate import MODES, check_method

    methods = [check_method(m) for m in _as_list(methods, "methods", "solver method")]
    modes = _as_list(modes, "modes", "adjoint mode")
    for m in modes:
        if m not in MODES:
            raise InvalidArgumentError(f"modes: {m!r} is not an adjoint mode; use one of {', '.join(MODES)}")
    rtols = [_positive(r, "rtols") for r in _as_list(rtols, "rtols", "tolerance")]
    atol = None if atol is None else _positive(atol, "atol")
    check_rtol = None if check_rtol is None else _positive(check_rtol, "check_rtol")
    cell_timeout = None if cell_timeout is None else _positive(cell_timeout, "cell_timeout")
    if candidate is not None and not callable(candidate):
        raise InvalidTypeError(f"candidate={candidate!r:.60} must be callable like odeverify.adjoint_gradients")
    if references is not None:
        from .._check import _REFERENCE_NAMES

        from ..references import Reference

        references = tuple(_as_list(references, "references", "reference"))
        for name in references:
            if isinstance(name, str) and name not in _REFERENCE_NAMES:
                raise InvalidArgumentError(f"references: {name!r:.40} is not one of {', '.join(_REFERENCE_NAMES)}")
            if not isinstance(name, (str, Reference)):
                raise InvalidTypeError(f"references: {name!r:.40} must be a name ({', '.join(_REFERENCE_NAMES)}) or "
                                       "an odeverify.references.Reference")
        # with fewer than two, every cell would be inconclusive: a verdict needs two references that agree
        if len({r if isinstance(r, str) else id(r) for r in references}) < 2:
            raise InvalidArgumentError(f"references={list(references)!r:.80}: a verdict needs two references that "
                                       "agree; add another, e.g. references=['forward', 'fd']")
    per_problem = len(methods) * len(rtols) * len(modes)
    n_problems = len(_as_list(specs, "specs", "spec file")) if specs is not None else count
    if isinstance(n_problems, int) and n_problems * per_problem > MAX_CELLS:  # before building them
        raise InvalidArgumentError(f"the sweep has {n_problems * per_problem} cells, more than {MAX_CELLS}; sweep "
                                   "fewer problems, methods, tolerances or modes")
    problems = _problem_refs(count, seed, problem_options, specs, factory)
    cells = []
    for (pid, problem), method, rtol, mode in itertools.product(problems, methods, rtols, modes):
        cells.append(Cell(cell_id=f"{pid}:{method}:{rtol!r}:{mode}", problem_id=pid, problem=problem,
                          method=method, rtol=rtol, mode=mode, atol=atol, candidate=candidate,
                          references=references, check_rtol=check_rtol, taylor=bool(taylor), timeout=cell_timeout))
    return cells


def _positive(value, name):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 or value == float("inf"):
        raise InvalidArgumentError(f"{name}: {value!r} must be a positive finite number")
    return float(value)


def sweep(*, count=None, seed=0, problem_options=None, specs=None, factory=None, methods=("DOP853",),
          rtols=(1e-8,), modes=("interpolated",), atol=None, candidate=None, references=None, check_rtol=None,
          taylor=False, cell_timeout=None, output=None, resume=False, cells=None, workers=None, dask_local=None,
          scheduler=None, client=None, progress=None, on_row=None, spec=None):
    """Check gradients over the product of problems x methods x tolerances x adjoint modes.

    Each cell runs :func:`odeverify.check_gradients` (and :func:`odeverify.taylor_test` when ``taylor``)
    on one problem with the candidate solved by one method at one tolerance in one mode, and gives one row.

    Parameters
    ----------
    count : int, optional
        Number of problems: generated from :mod:`odeverify.strategies` (needs hypothesis) by the seeds
        derived from ``seed``, or made by ``factory``.
    seed : int
        The sweep's seed; problem i has seed ``problem_seed(seed, i)`` (the row's ``problem_seed``).
    problem_options : mapping, optional
        For generated problems: ``n_states``, ``n_times`` (an int or a (min, max) pair), ``n_params``,
        ``functions``, ``max_depth`` (see :func:`odeverify.strategies.ode_systems`).
    specs : sequence of path, optional
        Spec files (:mod:`odeverify.spec`), instead of ``count``.
    factory : callable, optional
        ``factory(seed) -> (system, z0, ts, theta, loss)``, called on the worker for each of ``count``
        problems; a module-level function (it is pickled by name).
    methods, rtols, modes : sequence
        Solver methods, tolerances (the candidate's rtol, and its atol unless ``atol`` is given) and adjoint
        modes of the product.
    candidate : callable, optional
        The gradient under test, called as ``candidate(system, z0, ts, theta, loss, method=, mode=, rtol=,
        atol=)`` and returning a mapping {"z0", "theta", "t"} or an AdjointResult; default
        :func:`odeverify.adjoint_gradients`. Module-level, so that it pickles.
    references, check_rtol
        Passed to check_gradients (``references``, ``rtol``).
    cell_timeout : float, optional
        Seconds a cell may take (building its problem included); a cell over it is cut and gives an error
        row. Cooperative: it interrupts Python code, not a single C call that never returns.
    output : path, optional
        A ``.csv`` or ``.parquet`` file the rows stream to as cells finish.
    resume : bool
        Keep the rows already in ``output`` and run only the missing cells.
    cells : sequence of str, optional
        Run only these cell ids.
    workers : int, optional
        Processes of the local pool (default: the CPUs available).
    dask_local : int, optional
        Run on a new ``dask.distributed.LocalCluster`` of this many worker processes instead.
    scheduler : str, optional
        Run on the Dask cluster at this address (``tcp://host:8786``); or pass a ``client``.
    progress : bool, optional
        A progress bar with ETA on stderr; default when stderr is a terminal.
    on_row : callable, optional
        Called with each row as its cell finishes (after it is written).

    Returns
    -------
    SweepResult
        ``.rows`` in the sweep's order; ``print(result)`` shows the pass rates, failing cells and the
        command reproducing each.

    Notes
    -----
    Determinism: the columns :data:`odeverify.sweep.DETERMINISTIC_COLUMNS` (all but the wall time) are the
    same bit for bit for the same arguments, whatever the executor and the number of workers, for a given
    version of odeverify, hypothesis, NumPy and SciPy. Rows are written in the order cells finish.
    """
    start = time.perf_counter()
    if output is not None:
        output_format(output)
    if sum(x is not None for x in (dask_local, scheduler, client)) > 1 or (workers is not None and (
            dask_local is not None or scheduler is not None or client is not None)):
        raise InvalidArgumentError("choose one executor: workers=N (local pool), dask_local=N, scheduler= or client=")
    every = plan(count=count, seed=seed, problem_options=problem_options, specs=specs, factory=factory,
                 methods=methods, rtols=rtols, modes=modes, atol=atol, candidate=candidate, references=references,
                 check_rtol=check_rtol, taylor=taylor, cell_timeout=cell_timeout)
    todo, kept = _to_run(every, cells, output, resume)
    writer = open_writer(output, kept) if output is not None else None
    rows = list(kept)
    bar = _progress_bar(len(todo), progress)
    stream = _executor(todo, workers=workers, dask_local=dask_local, scheduler=scheduler, client=client)
    try:
        for row in stream:
            rows.append(row)
            if writer is not None:
                writer.write(row)
            bar(row)
            if on_row is not None:
                on_row(row)
    finally:
        stream.close()  # an interrupted sweep stops its workers now
        bar(None)
        if writer is not None:
            writer.close()
    order = {c.cell_id: i for i, c in enumerate(every)}
    rows.sort(key=lambda r: order.get(r["cell_id"], len(order)))
    return SweepResult(rows=rows, ran=len(rows) - len(kept), output=None if output is None else str(output),
                       spec=spec, seconds=time.perf_counter() - start)


def _to_run(every, cells, output, resume):
    """The cells to run and the rows kept from ``output``."""
    by_id = {c.cell_id: c for c in every}
    if cells is not None:
        unknown = [c for c in cells if c not in by_id]
        if unknown:
            raise InvalidArgumentError(
                f"cells: {unknown[0]!r} is not a cell of this sweep; ids look like {every[0].cell_id!r}")
        chosen = set(cells)
        todo = [c for c in every if c.cell_id in chosen]
    else:
        todo = every
    if not resume:
        return todo, []
    if output is None:
        raise InvalidArgumentError("resume=True needs output=, the file of the interrupted sweep")
    kept, seen = [], set()
    for row in read_rows(output):
        _same_sweep(row, by_id.get(row["cell_id"]), output)
        if row["cell_id"] not in seen:  # every row of this sweep is kept, also those of cells not chosen
            kept.append(row)
            seen.add(row["cell_id"])
    return [c for c in todo if c.cell_id not in seen], kept


def _same_sweep(row, cell, output):
    """Refuse to resume into a file of another sweep: its rows would be mixed with this one's, or dropped."""
    why = None
    if cell is None:
        why = f"its cell {row['cell_id']!r:.80} is not a cell of this sweep"
    elif row["problem_seed"] != cell.seed:
        why = f"its cell {row['cell_id']!r:.80} has problem seed {row['problem_seed']}, this sweep's {cell.seed}"
    elif (row["taylor_rate"] is not None) != cell.taylor and row["status"] != "error":
        why = f"its cell {row['cell_id']!r:.80} was run with taylor={not cell.taylor}"
    if why is not None:
        raise InvalidArgumentError(
            f"resume: {str(output)!r} holds rows of a different sweep ({why}); resume with the arguments that "
            "wrote it, or name another output (without resume, the file is overwritten)")


def _executor(cells, *, workers, dask_local, scheduler, client):
    from . import _executors

    if not cells:
        return (row for row in ())
    if dask_local is not None or scheduler is not None or client is not None:
        return _executors.dask_cluster(cells, n_workers=dask_local, scheduler=scheduler, client=client)
    if workers is None:
        workers = _executors.default_workers()
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise InvalidArgumentError(f"workers={workers!r} must be a positive integer")
    return _executors.local_pool(cells, min(workers, len(cells)))


def _progress_bar(total, progress):
    """``update(row)`` for each finished row and ``update(None)`` at the end: a tqdm bar with ETA on a
    terminal (or when asked), else nothing."""
    if progress is None:
        progress = sys.stderr.isatty()
    if not progress or total == 0:
        return lambda row: None
    try:
        from tqdm import tqdm
    except ImportError:
        return _text_progress(total)
    from .._progress import tqdm_size  # 80 x 24 where the terminal reports a size of 0 (some CI ptys)

    bar = tqdm(total=total, unit="cell", file=sys.stderr, **tqdm_size(sys.stderr))
    failed = [0]

    def update(row):
        if row is None:
            bar.close()
            return
        failed[0] += row["status"] != "passed"
        bar.set_postfix_str(f"{failed[0]} not passed", refresh=False)
        bar.update(1)

    return update


def _text_progress(total):
    start, done = time.monotonic(), [0]

    def update(row):
        if row is None:
            sys.stderr.write("\n")
            return
        done[0] += 1
        rate = done[0] / max(time.monotonic() - start, 1e-9)
        sys.stderr.write(f"\r{done[0]}/{total} cells, ETA {(total - done[0]) / rate:.0f} s ")
        sys.stderr.flush()

    return update
