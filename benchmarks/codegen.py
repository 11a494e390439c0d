"""Cost of symbolic derivation and code generation as the problem grows (run on demand).

Two workloads, each in a fresh process (SymPy's cache and the imports start cold):

* ``poly20``: a 20-state, 40-parameter polynomial system (tests/helpers.py: polynomial_system(20, 40,
  seed=0); each rhs_i a damping term plus 3-5 monomials of degree <= 3 with parameter coefficients).
  Target: derivation plus code generation of what a first ``adjoint_gradients`` call builds under 5 s.
* ``long``: the spec tests/data/long_expression.toml, dx/dt a legal 7 KB sum of 264 smooth terms
  (tests/helpers.py: long_expression(7000, seed=0)).

Each phase is timed on its own, in the order a user meets them: parsing, the Jacobians, the adjoint
right-hand sides, the kernels of an explicit adjoint solve (``f``, ``vjp``, the fused solver kernels of
both styles), then what implicit methods (Radau) add (the Jacobian kernel, the second-derivative blocks
and their kernel), then the autograd and complex-step backends of f. ``--check`` also times the phases
of ``odeverify check`` on the long spec: the candidate adjoint and every default reference.

    PYTHONPATH=. python benchmarks/codegen.py            # both workloads, about 10 s on an idle machine
    PYTHONPATH=. python benchmarks/codegen.py --check    # plus the references on the long spec

Times are wall clock and CPU time of the process (the machine is shared; the CPU time is less
sensitive to the load, which the header records).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "tests" / "data" / "long_expression.toml"


def _phases(system, z0, theta):
    """(name, thunk) of every phase after the system is built, in the order a solve needs them."""
    import numpy as np

    s = system
    k = s.numeric._kernel
    z, th = np.asarray(z0, dtype=float), np.asarray(theta, dtype=float)
    return [
        ("jac_z", lambda: s.jac_z),
        ("jac_theta", lambda: s.jac_theta),
        ("jac_t", lambda: s.jac_t),
        ("adjoint right-hand sides", lambda: (s.adjoint_rhs, s.adjoint_theta_rhs, s.adjoint_t_rhs)),
        ("kernel f", lambda: k("f")),
        ("kernel vjp", lambda: k("vjp")),
        ("solver kernels (batch)", lambda: s.numeric._solver_factory("batch")),
        ("solver kernels (B = 1)", lambda: s.numeric._solver_factory("scalar")),
        ("implicit: kernel jacobians", lambda: k("jacobians")),
        ("implicit: second derivatives", lambda: s._second_derivative_blocks),
        ("implicit: kernel backward_blocks", lambda: k("backward_blocks")),
        ("autograd f (import, compile, call)", lambda: s.f_autograd(z, 0.1, th)),
        ("complex-step f (compile, call)", lambda: s.eval_f_complex(z + 0j, 0.1, th)),
    ]


def _timed(fn):
    w, c = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w, time.process_time() - c


def _workload(name):
    """Run one workload in this process; returns [(phase, wall, cpu)]."""
    sys.path.insert(0, str(ROOT / "tests"))
    rows = []
    if name == "poly20":
        from helpers import polynomial_system

        import odeverify as ov

        states, params, rhs = polynomial_system(20, 40, seed=0)
        holder = {}
        rows.append(("from_strings", *_timed(lambda: holder.update(s=ov.ODESystem.from_strings(" ".join(states), " ".join(params), rhs)))))
        system, z0, theta = holder["s"], [0.1] * 20, [0.3] * 40
    else:
        from odeverify.spec import load_spec

        holder = {}
        rows.append(("load_spec (parse)", *_timed(lambda: holder.update(p=load_spec(SPEC)))))
        problem = holder["p"]
        system, z0, theta = problem.system, problem.z0, problem.theta
    for phase, thunk in _phases(system, z0, theta):
        rows.append((phase, *_timed(thunk)))
    return rows


def _check_phases():
    """Phases of `odeverify check` on the long spec: candidate adjoint, then each default reference."""
    from odeverify._adjoint import adjoint_gradients
    from odeverify._check import _REFERENCE_NAMES, DEFAULT_REFERENCES
    from odeverify.references import make_problem
    from odeverify.spec import load_spec

    p = load_spec(SPEC)
    rows = [("candidate adjoint (first: derivation + codegen)", *_timed(lambda: adjoint_gradients(p.system, p.z0, p.ts, p.theta, p.loss)))]
    problem = make_problem(p.system, p.z0, p.ts, p.theta, p.loss)
    for name in DEFAULT_REFERENCES:
        ref = _REFERENCE_NAMES[name]()
        rows.append((f"reference {name}", *_timed(lambda ref=ref: ref.compute(problem))))
    return rows


def _in_subprocess(flag):
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run(
        [sys.executable, __file__, "--_run", flag], capture_output=True, text=True, env=env, check=True
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def _table(title, rows, target=None):
    print(f"\n{title}")
    print(f"  {'phase':44s} {'wall s':>8s} {'cpu s':>8s}")
    for phase, wall, cpu in rows:
        print(f"  {phase:44s} {wall:8.3f} {cpu:8.3f}")
    total_w, total_c = sum(r[1] for r in rows), sum(r[2] for r in rows)
    print(f"  {'total':44s} {total_w:8.3f} {total_c:8.3f}")
    if target is not None:
        first = [r for r in rows if not r[0].startswith(("implicit", "autograd", "complex"))]
        w, c = sum(r[1] for r in first), sum(r[2] for r in first)
        verdict = "met" if w < target else f"missed by {w / target:.1f}x"
        print(f"  what a first explicit adjoint solve builds: {w:.3f} s wall, {c:.3f} s cpu "
              f"(target {target:g} s: {verdict})")
        return w
    return None


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true", help="also time the references of `odeverify check` on the long spec")
    ap.add_argument("--_run", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args._run:
        rows = _check_phases() if args._run == "check" else _workload(args._run)
        print(json.dumps(rows))
        return None
    print(f"odeverify code generation benchmark, {time.strftime('%Y-%m-%d %H:%M')}, "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}")
    results = {}
    results["poly20"] = _in_subprocess("poly20")
    _table("20 states, 40 parameters, polynomial (fresh process)", results["poly20"], target=5.0)
    results["long"] = _in_subprocess("long")
    _table(f"7 KB expression: {SPEC.relative_to(ROOT)} (fresh process)", results["long"])
    if args.check:
        results["check"] = _in_subprocess("check")
        _table("odeverify check on the 7 KB spec: candidate and default references (fresh process)", results["check"])
    return results


if __name__ == "__main__":
    main()
