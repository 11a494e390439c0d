"""Sweep throughput: cells per second on the local pool (1 and 2 workers) and a 2-worker Dask LocalCluster,
and the overhead per cell against calling ``check_gradients`` directly.

Run from the repository root (needs hypothesis; dask and distributed for the cluster row)::

    PYTHONPATH=. python benchmarks/sweep.py [--count 25] [--quick] [--label NAME] [--no-write]

The cells: ``count`` generated problems (one state, two times, one parameter; the problems of
tests/test_sweep.py) x DOP853, RK45 x rtol 1e-6, 1e-8, references forward and finite differences.
"direct" is what a user would write without a sweep: in one process, build each problem once
(``generated_problem``: drawing, derivation, code generation) and call ``check_gradients`` on it for each
method and tolerance. Every sweep time is the whole ``odeverify.sweep`` call, executor start-up included
(the pool's processes import odeverify; the LocalCluster starts its scheduler and workers). Overhead per
cell = (sweep time x workers - direct time) / cells: the extra CPU-seconds a cell costs on a sweep (start-up,
pickling, each worker building the problems it meets, whose cells the other worker may also run).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import fmt_time, machine_lines, versions, write_results  # noqa: E402  (one thread per library)

import argparse  # noqa: E402
import os  # noqa: E402
import time  # noqa: E402

CHEAP = {"n_states": 1, "n_times": 2, "n_params": 1, "functions": ["poly", "sin"], "max_depth": 1}
METHODS, RTOLS, REFERENCES = ["DOP853", "RK45"], [1e-6, 1e-8], ["forward", "fd"]


def direct(count):
    """Build each problem once, check it for every method and tolerance; returns seconds."""
    import odeverify
    from odeverify.sweep import problem_seed
    from odeverify.sweep._generate import generated_problem

    options = tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in CHEAP.items()))
    start = time.perf_counter()
    for i in range(count):
        system, z0, ts, theta, loss = generated_problem(problem_seed(0, i), options)
        for method in METHODS:
            for rtol in RTOLS:
                def candidate(z0, ts, theta, rtol=rtol, atol=rtol, method=method):
                    return odeverify.adjoint_gradients(system, z0, ts, theta, loss, method=method, rtol=rtol,
                                                       atol=atol).as_dict()

                odeverify.check_gradients(system, z0, ts, theta, loss, candidate=candidate, references=REFERENCES)
    return time.perf_counter() - start


def timed_sweep(count, **executor):
    from odeverify import sweep

    start = time.perf_counter()
    result = sweep(count=count, seed=0, problem_options=CHEAP, methods=METHODS, rtols=RTOLS,
                   references=REFERENCES, progress=False, **executor)
    return time.perf_counter() - start, result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=25, help="generated problems (cells = 4 x count)")
    parser.add_argument("--quick", action="store_true", help="count = 6")
    parser.add_argument("--label", default="")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    count = 6 if args.quick else args.count
    cells = 4 * count
    load = os.getloadavg()
    t_direct = direct(count)
    rows = [("direct check_gradients, 1 process", 1, t_direct)]
    for label, workers, executor in [("local pool, 1 worker", 1, {"workers": 1}),
                                     ("local pool, 2 workers", 2, {"workers": 2}),
                                     ("Dask LocalCluster, 2 workers", 2, {"dask_local": 2})]:
        try:
            seconds, result = timed_sweep(count, **executor)
        except ImportError as exc:
            print(f"{label}: skipped ({exc})")
            continue
        assert len(result.rows) == cells
        rows.append((label, workers, seconds))
    lines = machine_lines(load, versions())
    lines.append(f"{cells} cells: {count} generated problems x {METHODS} x rtol {RTOLS}, references {REFERENCES}")
    lines.append(f"{'how':<32} {'time':>10} {'cells/s':>8} {'overhead per cell (worker-s)':>29}")
    for label, workers, seconds in rows:
        overhead = (seconds * workers - t_direct) / cells
        lines.append(f"{label:<32} {fmt_time(seconds):>10} {cells / seconds:>8.2f} "
                     f"{'-' if label.startswith('direct') else fmt_time(overhead):>29}")
    print("\n".join(lines))
    if not args.no_write:
        stem = write_results("sweep", args.label, lines, {"cells": cells, "rows": rows, "load": load})
        print(f"written benchmarks/results/{stem}.txt")


if __name__ == "__main__":
    main()
