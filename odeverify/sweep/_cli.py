"""``odeverify sweep SPEC.toml``: the command line of a sweep (registered by :mod:`odeverify.cli`).

Exit status: 0 every cell passed, 1 some cell did not pass (or ``--cell``'s check failed), 2 a bad spec or
option (one line on stderr), 130 interrupted (Ctrl-C), 143 terminated (SIGTERM); the finished rows are kept: run again with
``--resume``.
"""

from __future__ import annotations

import signal
import sys
import threading
from contextlib import contextmanager

__all__ = ["add_parser", "run"]

EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143


def add_parser(sub):
    """Add the ``sweep`` subcommand to the subparsers ``sub`` of odeverify's parser."""
    p = sub.add_parser(
        "sweep",
        help="check gradients over generated or given problems x methods x tolerances x modes (exit 0 all "
        "passed, 1 some did not, 2 bad spec)",
        description="Run a verification sweep (a TOML sweep spec, see examples/sweep.toml): one check per cell, "
        "rows streamed to a .parquet or .csv file.",
    )
    p.add_argument("spec", help="a TOML sweep spec, e.g. examples/sweep.toml")
    p.add_argument("--output", metavar="FILE", help="results file, .parquet or .csv (default: the spec's "
                   "output, else SPEC-results.csv)")
    p.add_argument("--resume", action="store_true", help="keep the rows in the output file, run only the missing cells")
    p.add_argument("--cell", metavar="ID", help="run this cell alone, here, and print its full report")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--workers", type=int, metavar="N", help="local worker processes (default: the CPUs)")
    where.add_argument("--dask-local", type=int, metavar="N", help="run on a new Dask LocalCluster of N workers")
    where.add_argument("--scheduler", metavar="ADDRESS", help="run on the Dask cluster at tcp://HOST:PORT")
    p.add_argument("--cell-timeout", type=float, metavar="SECONDS", help="time limit of a cell (default: the spec's)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (shown on a terminal by default)")
    return p


def run(args, out):
    """Run ``odeverify sweep`` with parsed ``args``, writing to ``out``; returns the exit status."""
    from ._run import sweep
    from ._spec import default_output, load_sweep_spec

    kwargs = load_sweep_spec(args.spec)
    if args.cell_timeout is not None:
        kwargs["cell_timeout"] = args.cell_timeout
    if args.cell is not None:
        return _one_cell(kwargs, args.cell, out)
    output = args.output or kwargs.pop("output", None) or default_output(args.spec)
    kwargs.pop("output", None)
    try:
        with _terminate_as_interrupt():
            result = sweep(**kwargs, output=output, resume=args.resume, workers=args.workers,
                           dask_local=args.dask_local, scheduler=args.scheduler,
                           progress=False if args.no_progress else None, spec=args.spec)
    except KeyboardInterrupt as exc:
        sys.stderr.write(f"odeverify sweep: {'terminated' if isinstance(exc, _Terminated) else 'interrupted'}; "
                         f"the finished rows are in {output}: run the same command with --resume to run only "
                         "the rest\n")
        return EXIT_TERMINATED if isinstance(exc, _Terminated) else EXIT_INTERRUPTED
    out.write(result.summary() + "\n")
    return 0 if not result.failing else 1


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that the sweep stops its workers and writes its rows before exiting."""


@contextmanager
def _terminate_as_interrupt():
    """While the sweep runs, SIGTERM (``kill``, a batch system's time limit) unwinds like Ctrl-C: Python's
    default would end this process at once, leaving its pool's workers running and the last rows unwritten."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise _Terminated

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _one_cell(kwargs, cell_id, out):
    """Run one cell in this process and print its problem, its row and the check's full report."""
    from ..errors import InvalidArgumentError
    from ._cells import check_cell, deadline
    from ._run import plan

    cells = {c.cell_id: c for c in plan(**{k: v for k, v in kwargs.items() if k != "output"})}
    if cell_id not in cells:
        raise InvalidArgumentError(f"--cell {cell_id!r} is not a cell of this sweep; ids look like "
                                   f"{next(iter(cells))!r}")
    cell = cells[cell_id]
    with deadline(cell.timeout):
        row, report, taylor = check_cell(cell)
    out.write(f"cell {cell_id}: {row['status']}\n  problem: {row['problem']}\n"
              f"  seed {cell.seed}, {cell.method}, rtol {cell.rtol:g}, mode {cell.mode}, NFE {row['nfe']}\n\n")
    out.write(str(report) + "\n")
    if taylor is not None:
        out.write("\n" + str(taylor) + "\n")
    return 0 if row["status"] == "passed" else 1

