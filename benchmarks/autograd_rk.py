"""Wall time of the autograd-through-Runge–Kutta reference (``AutogradRK().compute``).

Run from the repository root::

    PYTHONPATH=. python benchmarks/autograd_rk.py [--repeats 5] [--compare]

Problems: the README's Lotka–Volterra spec (examples/lotka_volterra.toml, 16
observation times), an MLPField of sizes (2, 16, 2) on a batch of B = 8, and a
non-autonomous 6-state ODESystem. Each is timed after one warm-up call (which
generates the kernels). With ``--compare``, autograd through every primitive of
``odeint_fixed`` at the steps the reference chose is timed too (how the
reference worked before it ran the discrete adjoint), and the largest relative
difference of the two gradients at those steps is printed.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from pathlib import Path

import autograd
import autograd.numpy as anp
import numpy as np

import odeverify as ov
from odeverify.references import AutogradRK, make_problem
from odeverify.references import _autograd_rk
from odeverify.spec import load_spec
from odeverify.tableaux import odeint_fixed

ROOT = Path(__file__).resolve().parents[1]


def problems():
    spec = load_spec(ROOT / "examples" / "lotka_volterra.toml")
    yield "Lotka-Volterra spec", make_problem(spec.system, spec.z0, spec.ts, spec.theta, spec.loss)
    mlp = ov.MLPField((2, 16, 2))
    Z0 = np.random.default_rng(1).normal(size=(8, 2))
    yield "MLPField (2, 16, 2), B=8", make_problem(mlp, Z0, np.linspace(0, 1, 6), mlp.init_params(0),
                                                    lambda zs: anp.sum(zs**2))
    six = ov.ODESystem.from_strings(
        "x1 x2 x3 x4 x5 x6", "k1 k2 k3",
        ["-k1*x1 + x2*x3", "k1*x1 - k2*x2*x3", "k2*x2 - k3*x4 + sin(x5)", "k3*x4 - x5*x6", "x6 - 0.1*x5",
         "-x5 + 0.5*cos(t)"],
    )
    yield "6-state ODESystem", make_problem(six, [1.0, 0.5, 0.2, 0.1, 0.3, -0.2], np.linspace(0, 3, 8),
                                            [0.8, 1.2, 0.5], lambda zs: anp.sum(zs[1:] ** 2))


def autograd_through_odeint_fixed(problem, tableau, steps):
    fld = problem.field

    def L(z0, ts, theta):
        th = [theta[k] for k in range(problem.p)]
        zs = odeint_fixed(lambda z, t: fld.f_autograd(z, t, th), z0, ts, method=tableau, steps=steps, xp=anp)
        return problem.loss(problem.user_states(zs))

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Output seems independent of input")
        gz, gt, gth = autograd.grad(L, argnum=(0, 1, 2))(problem.z0, problem.ts.copy(), problem.theta.copy())
    return {"z0": problem.user_z0(np.asarray(gz)), "theta": np.asarray(gth, dtype=float), "t": np.asarray(gt)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--compare", action="store_true", help="also time autograd through odeint_fixed")
    args = parser.parse_args(argv)
    for name, problem in problems():
        ref = AutogradRK()
        ref.compute(problem)
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            est = ref.compute(problem)
            times.append(time.perf_counter() - start)
        print(f"{name:26s} median {statistics.median(times) * 1e3:8.1f} ms  min {min(times) * 1e3:8.1f} ms  "
              f"({est.error_model.split(' with ')[-1]})")
        if args.compare:
            steps = ref._first_steps(problem)
            start = time.perf_counter()
            want = autograd_through_odeint_fixed(problem, ref.tableau, steps)
            old = time.perf_counter() - start
            start = time.perf_counter()
            _, got = _autograd_rk.discrete_adjoint(problem, ref.tableau, steps)
            new = time.perf_counter() - start
            diff = max(float(np.max(np.abs(got[k] - want[k])) / np.max(np.abs(want[k]))) for k in want)
            print(f"{'':26s} one solve of {sum(steps)} steps: autograd through odeint_fixed {old * 1e3:.0f} ms, "
                  f"discrete adjoint {new * 1e3:.1f} ms, max relative difference {diff:.1e}")


if __name__ == "__main__":
    main()
