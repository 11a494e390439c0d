"""Cost of the in-house Runge–Kutta step loop (tsit5) per attempt, and of one adjoint gradient.

Run from the repository root (not part of the test suite)::

    PYTHONPATH=. python benchmarks/hot_loop.py

Problem: Lotka–Volterra, z0 = (1, 1), theta = (1.5, 1, 1, 3), 11 observation
times on [0, 5], L = sum z^2, rtol = atol = 1e-6. Prints, for B = 1, 64, 1024,
the median and minimum of repeated gradients (wall clock and process CPU time:
on a shared machine the CPU minimum is the stable number), and the bare loop's
cost per step attempt split into its kernel calls and the rest.
"""

from __future__ import annotations

import time

import numpy as np

import odeverify
from odeverify._rk import integrate_rk
from odeverify.tableaux import TSIT5

LV = odeverify.ODESystem.from_strings("x y", "a b c d", ["a*x - b*x*y", "c*x*y - d*y"])
TS = np.linspace(0.0, 5.0, 11)
THETA = [1.5, 1.0, 1.0, 3.0]


def timings(fn, reps, inner):
    """(wall median, wall min, cpu median, cpu min) of ``fn`` in seconds per call."""
    fn()
    wall, cpu = [], []
    for _ in range(reps):
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(inner):
            fn()
        wall.append((time.perf_counter() - t0) / inner)
        cpu.append((time.process_time() - c0) / inner)
    return np.median(wall), np.min(wall), np.median(cpu), np.min(cpu)


def gradient_table():
    for B in (1, 64, 1024):
        z0 = [1.0, 1.0] if B == 1 else np.tile([1.0, 1.0], (B, 1)) * (1 + 0.1 * np.linspace(0, 1, B))[:, None]
        reps, inner = {1: (21, 5), 64: (15, 2), 1024: (9, 1)}[B]
        for mode in ("interpolated", "backsolve"):

            def grad():
                return odeverify.adjoint_gradients(
                    LV, z0, TS, THETA, lambda zs: (zs**2).sum(), method="tsit5", rtol=1e-6, atol=1e-6, mode=mode
                )

            st = grad().stats
            steps = st.nsteps_forward + st.nsteps_backward
            wm, wn, cm, cn = timings(grad, reps, inner)
            print(
                f"adjoint B={B:<4d} {mode:12s} wall median {wm * 1e3:7.3f} min {wn * 1e3:7.3f} ms | "
                f"cpu median {cm * 1e3:7.3f} min {cn * 1e3:7.3f} ms | {steps} steps, {cn / steps * 1e6:6.1f} us/step"
            )


def loop_breakdown():
    kernels = LV.solver_kernels(np.array(THETA), 1)

    def solve():
        return integrate_rk(kernels.f, 0.0, 5.0, np.array([1.0, 1.0]), TSIT5, rtol=1e-6, atol=1e-6, t_out=TS)

    res = solve()
    attempts = res["nsteps"] + res["nrejected"]
    cn = timings(solve, 21, 20)[3]
    y, out = np.ones(2), np.empty(2)
    kn = timings(lambda: kernels.f(0.3, y, out), 21, 5000)[3]
    per_attempt, kernel = cn / attempts * 1e6, kn * res["nfev"] / attempts * 1e6
    print(
        f"bare loop, B = 1 forward with 11 output times: {per_attempt:.1f} us CPU per attempt "
        f"({attempts} attempts, {res['nfev']} evaluations): kernels {kernel:.1f} us, the loop {per_attempt - kernel:.1f} us"
    )


if __name__ == "__main__":
    gradient_table()
    loop_breakdown()
