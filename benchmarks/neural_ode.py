"""How the cost of a Neural ODE gradient grows with B, n, width and T; memory of the two adjoint modes.

Run from the repository root (not part of the test suite)::

    PYTHONPATH=. python benchmarks/neural_ode.py          # full tables, a few minutes
    PYTHONPATH=. python benchmarks/neural_ode.py --quick  # small tables, seconds

The vector field is an ``MLPField((n, width, n))`` (tanh) whose weights make it
rotate: ``W2 = A pinv(W1)`` with A a block rotation generator, so that
``f(z) ~ A z`` near the origin and the trajectories keep turning (bounded,
since tanh saturates) instead of settling; the number of steps therefore grows
with the horizon T. One gradient is ``adjoint_gradients`` of
``L = |z(T)|^2`` summed over a batch of B initial states drawn from N(0, 1).

Tables:

1. wall time and steps of one gradient (forward + backward) as B, n, width
   and T vary one at a time around (B, n, width, T) = (16, 2, 64, 10);
2. the tracemalloc peak of one gradient in backsolve, interpolated and
   quadrature mode at T = 1, 10, 100: backsolve keeps O(1) state (it
   re-integrates z backwards), interpolated keeps every forward step's
   interpolant (O(steps)), quadrature every forward and backward step's
   (O(steps), with a backward state of B n instead of B n + p + 1).
"""

from __future__ import annotations

import argparse
import time
import tracemalloc

import autograd.numpy as anp
import numpy as np

import odeverify as ov


#: the adjoint modes of the memory table
MODES = ("backsolve", "interpolated", "quadrature")


def rotating_field(n, width, seed=0):
    """An MLPField((n, width, n)) with f(z) ~ A z near 0, A a block rotation with slight damping."""
    field = ov.MLPField((n, width, n))
    rng = np.random.default_rng(seed)
    W1 = rng.uniform(-1, 1, size=(width, n)) / np.sqrt(n)
    A = -0.05 * np.eye(n)
    for i in range(0, n - 1, 2):
        A[i, i + 1], A[i + 1, i] = -1.0, 1.0
    W2 = A @ np.linalg.pinv(W1)
    return field, field.pack([(W1, np.zeros(width)), (W2, np.zeros(n))])


def loss(zs):
    return anp.sum(zs[-1] ** 2)


def one_gradient(n, width, B, T, *, mode="backsolve", repeats=3):
    field, theta = rotating_field(n, width)
    z0 = np.random.default_rng(1).normal(size=(B, n))
    best = np.inf
    ov.adjoint_gradients(field, z0, [0.0, T], theta, loss, mode=mode, method="RK45", rtol=1e-7, atol=1e-9)  # warm-up
    for _ in range(repeats):
        start = time.perf_counter()
        res = ov.adjoint_gradients(field, z0, [0.0, T], theta, loss, mode=mode, method="RK45", rtol=1e-7, atol=1e-9)
        best = min(best, time.perf_counter() - start)
    return best, res


def scaling_table(grid, repeats):
    print("1. One gradient (RK45, rtol 1e-7, atol 1e-9, backsolve): time and steps, one factor at a time")
    print(f"{'vary':>6} {'B':>5} {'n':>4} {'width':>6} {'T':>6} {'params':>8} {'steps f/b':>11} "
          f"{'f-evals':>8} {'time [ms]':>10} {'us/eval':>8} {'us/eval/(B*w*n)':>16}")
    base = grid["base"]
    summary = []
    for vary in ("B", "n", "width", "T"):
        rows = []
        for value in grid[vary]:
            cfg = dict(base, **{vary: value})
            seconds, res = one_gradient(cfg["n"], cfg["width"], cfg["B"], cfg["T"], repeats=repeats)
            evals = res.stats.nfev_forward + res.stats.nfev_backward
            p = ov.MLPField((cfg["n"], cfg["width"], cfg["n"])).n_params
            per = 1e6 * seconds / evals
            work = cfg["B"] * cfg["width"] * cfg["n"]
            rows.append((cfg[vary], seconds, evals))
            print(f"{vary:>6} {cfg['B']:>5} {cfg['n']:>4} {cfg['width']:>6} {cfg['T']:>6g} {p:>8} "
                  f"{res.stats.nsteps_forward:>5}/{res.stats.nsteps_backward:<5} {evals:>8} {1e3 * seconds:>10.1f} "
                  f"{per:>8.1f} {1e3 * per / work:>16.3f}")
        (v0, s0, e0), (v1, s1, e1) = rows[0], rows[-1]
        if v1 != v0:
            summary.append(f"   {vary} {v0:g} -> {v1:g} (x{v1 / v0:g}): time x{s1 / s0:.2f}, f/VJP evaluations x{e1 / e0:.2f}")
    print("   us/eval: one f or VJP evaluation including the solver's per-step overhead; last column: us/eval")
    print("   divided by B*width*n, x1000 (the matmul work). Measured growth, first to last value of each factor:")
    print("\n".join(summary))


def memory_table(horizons, B, width):
    """Print and return ``(peaks, steps)``, dicts keyed by ``(T, mode)``: tracemalloc peak in bytes, total steps."""
    print()
    print(f"2. tracemalloc peak of one gradient (B={B}, n=2, width={width}, RK45)")
    print(f"{'T':>6} {'mode':>13} {'steps f/b':>11} {'peak [KiB]':>11}")
    peaks, steps = {}, {}
    for T in horizons:
        for mode in MODES:
            field, theta = rotating_field(2, width)
            z0 = np.random.default_rng(1).normal(size=(B, 2))
            kw = dict(mode=mode, method="RK45", rtol=1e-7, atol=1e-9)
            ov.adjoint_gradients(field, z0, [0.0, T], theta, loss, **kw)  # warm caches outside the measurement
            tracemalloc.start()
            res = ov.adjoint_gradients(field, z0, [0.0, T], theta, loss, **kw)
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            peaks[T, mode] = peak
            steps[T, mode] = res.stats.nsteps_forward + res.stats.nsteps_backward
            print(f"{T:>6g} {mode:>13} {res.stats.nsteps_forward:>5}/{res.stats.nsteps_backward:<5} {peak / 1024:>11.1f}")
    lo, hi = min(horizons), max(horizons)
    growth = ", ".join(f"{mode} peak x{peaks[hi, mode] / peaks[lo, mode]:.2f}" for mode in MODES)
    print(f"   T {lo:g} -> {hi:g}: {growth}; "
          f"steps (forward + backward, backsolve) x{steps[hi, 'backsolve'] / steps[lo, 'backsolve']:.1f}")
    return peaks, steps


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small grid, one repeat (a smoke run)")
    args = parser.parse_args(argv)
    if args.quick:
        grid = dict(base=dict(B=4, n=2, width=16, T=2.0), B=[1, 8], n=[4], width=[64], T=[5.0])
        repeats, width_mem, B_mem = 1, 16, 4
    else:
        grid = dict(
            base=dict(B=16, n=2, width=64, T=10.0),
            B=[1, 4, 16, 64, 256],
            n=[2, 8, 32],
            width=[16, 64, 256, 1024],
            T=[1.0, 10.0, 100.0],
        )
        repeats, width_mem, B_mem = 3, 64, 16
    print(f"odeverify {ov.__version__}, numpy {np.__version__}")
    scaling_table(grid, repeats)
    return memory_table((1.0, 10.0, 100.0), B_mem, width_mem)


if __name__ == "__main__":
    main()
