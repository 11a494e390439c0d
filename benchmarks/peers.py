"""Adjoint gradients of odeverify against torchdiffeq and diffrax: wall time and gradient error.

Run from the repository root with the peers' venv (see benchmarks/README.md)::

    PYTHONPATH=. /work/venv-bench/bin/python benchmarks/peers.py [--quick] [--label NAME]

Every contender computes the loss and its gradients with respect to z0 and
theta at the same rtol/atol, in float64, single-threaded. The reference
gradients are independent of every contender:

* Lotka-Volterra: forward sensitivities (dS/dt = f_z S + f_theta, Jacobians
  written by hand below) integrated by SciPy's DOP853 at rtol = atol = 1e-13;
* linear dz/dt = A z: exact, from scipy.linalg.expm / expm_frechet
  (tests/helpers.py: linear_reference).

odeverify runs Numba-free (whole-array NumPy work, no JIT). Timings are medians over repeats; JAX is timed after compilation. A peer that
is missing from the environment is skipped with a note. Results are printed
and written to benchmarks/results/peers-<date>[-label].{txt,json}.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, fmt_time, machine_lines, versions, write_results  # noqa: E402  (one thread per library)

import argparse  # noqa: E402
import datetime  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402

import autograd.numpy as anp  # noqa: E402
import numpy as np  # noqa: E402
import scipy.integrate  # noqa: E402

import odeverify as ov  # noqa: E402

sys.path.insert(0, str(ROOT / "tests"))
from helpers import linear_reference  # noqa: E402


# ---------------------------------------------------------------------------- problems
@dataclass
class Problem:
    """z0 (B, n) or (n,), ts (T,), theta (p,); loss L = sum(c * zs) + 1/2 sum(zs**2) with c of the shape of zs."""

    name: str
    rhs: list
    states: str
    params: str
    z0: np.ndarray
    ts: np.ndarray
    theta: np.ndarray
    c: np.ndarray
    ref_z0: np.ndarray = None
    ref_theta: np.ndarray = None
    notes: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def batched(self):
        return self.z0.ndim == 2

    def loss_np(self, zs):
        return anp.sum(self.c * zs) + 0.5 * anp.sum(zs**2)


def lotka_volterra(B, rng):
    theta = np.array([1.5, 1.0, 1.0, 3.0])
    ts = np.linspace(0.0, 5.0, 11)
    if B == 1:
        z0 = np.array([1.0, 1.0])
        c = rng.normal(size=(len(ts), 2))
    else:
        z0 = rng.uniform(0.5, 2.0, size=(B, 2))
        c = rng.normal(size=(len(ts), B, 2))
    prob = Problem(
        f"Lotka-Volterra n=2 p=4 B={B}",
        ["a*x - b*x*y", "c*x*y - d*y"],
        "x y",
        "a b c d",
        z0,
        ts,
        theta,
        c,
    )
    prob.ref_z0, prob.ref_theta = _lv_sensitivity_reference(prob)
    prob.notes = "reference: forward sensitivities, SciPy DOP853 at rtol=atol=1e-13"
    return prob


def _lv_sensitivity_reference(prob):
    """dL/dz0 and dL/dtheta from the forward sensitivity equations (hand-written Jacobians)."""
    a, b, c, d = prob.theta
    Z0 = np.atleast_2d(prob.z0)
    B = Z0.shape[0]
    # per sample: z (2), S (2 x 6) = [dz/dz0 (2x2), dz/dtheta (2x4)]
    S0 = np.zeros((B, 2, 6))
    S0[:, 0, 0] = S0[:, 1, 1] = 1.0
    y0 = np.concatenate([Z0, S0.reshape(B, 12)], axis=1).ravel()

    def rhs(t, y):
        y = y.reshape(B, 14)
        x, w = y[:, 0], y[:, 1]
        S = y[:, 2:].reshape(B, 2, 6)
        fz = np.empty((B, 2, 2))
        fz[:, 0, 0] = a - b * w
        fz[:, 0, 1] = -b * x
        fz[:, 1, 0] = c * w
        fz[:, 1, 1] = c * x - d
        fth = np.zeros((B, 2, 6))
        fth[:, 0, 2] = x
        fth[:, 0, 3] = -x * w
        fth[:, 1, 4] = x * w
        fth[:, 1, 5] = -w
        dS = fz @ S + fth
        out = np.empty((B, 14))
        out[:, 0] = a * x - b * x * w
        out[:, 1] = c * x * w - d * w
        out[:, 2:] = dS.reshape(B, 12)
        return out.ravel()

    sol = scipy.integrate.solve_ivp(rhs, (prob.ts[0], prob.ts[-1]), y0, method="DOP853", t_eval=prob.ts, rtol=1e-13, atol=1e-13)
    Y = sol.y.T.reshape(len(prob.ts), B, 14)
    zs = Y[:, :, :2]
    S = Y[:, :, 2:].reshape(len(prob.ts), B, 2, 6)
    c_ = prob.c.reshape(len(prob.ts), B, 2)
    g = c_ + zs  # dL/dz_i
    grad = np.einsum("tbi,tbij->bj", g, S)
    dz0, dth = grad[:, :2], grad[:, 2:].sum(axis=0)
    return (dz0 if prob.batched else dz0[0]), dth


def linear(n, rng):
    A = rng.normal(scale=0.6, size=(n, n)) - 0.3 * np.eye(n)
    z0 = rng.normal(size=n)
    ts = np.linspace(0.0, 2.0, 6)
    c = rng.normal(size=(len(ts), n))
    names = [f"a{i}{j}" for i in range(n) for j in range(n)]
    rhs = [" + ".join(f"a{i}{j}*z{j}" for j in range(n)) for i in range(n)]
    prob = Problem(f"linear dz/dt = A z, n={n} p={n * n} B=1", rhs, " ".join(f"z{i}" for i in range(n)), names, z0, ts, A.ravel(), c)
    _, prob.ref_z0, prob.ref_theta, _ = linear_reference(A, z0, ts, c)
    prob.notes = "reference: exact (scipy.linalg.expm, expm_frechet)"
    return prob


# ---------------------------------------------------------------------------- timing
def median_time(fn, repeats, min_total=0.0):
    """Median and minimum wall time of ``fn()`` over ``repeats`` calls (more when a call is short), and its last result."""
    out = fn()  # warm-up
    times = []
    t_start = time.perf_counter()
    while len(times) < repeats or (time.perf_counter() - t_start < min_total and len(times) < 50 * repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return (statistics.median(times), min(times)), out


def rel_err(got, want):
    got, want = np.asarray(got, float), np.asarray(want, float)
    return float(np.max(np.abs(got - want)) / max(np.max(np.abs(want)), 1e-300))


@dataclass
class Row:
    problem: str
    solver: str
    config: str
    seconds: float | None
    err_z0: float | None
    err_theta: float | None
    nfev: int | None = None
    note: str = ""
    min_seconds: float | None = None

    @property
    def err(self):
        return None if self.err_z0 is None else max(self.err_z0, self.err_theta)


# ---------------------------------------------------------------------------- contenders
def run_odeverify(prob, rtol, atol, repeats, methods):
    """odeverify rows: every method in ``methods`` that odeverify knows, in both adjoint modes."""
    system = ov.ODESystem.from_strings(prob.states, prob.params, prob.rhs)
    note = ""
    rows = []
    known = set(getattr(ov._validate, "METHODS", ()))
    for method in methods:
        if method not in known:
            continue
        for mode in ("interpolated", "backsolve"):

            def call():
                return ov.adjoint_gradients(
                    system, prob.z0, prob.ts, prob.theta, prob.loss_np, mode=mode, method=method, rtol=rtol, atol=atol
                )

            (secs, fastest), res = median_time(call, repeats, min_total=0.5)
            rows.append(
                Row(
                    prob.name,
                    "odeverify",
                    f"{method} {mode}",
                    secs,
                    rel_err(res.z0, prob.ref_z0),
                    rel_err(res.theta, prob.ref_theta),
                    res.stats.nfev_forward + res.stats.nfev_backward,
                    note=note,
                    min_seconds=fastest,
                )
            )
    return rows


def run_torchdiffeq(prob, rtol, atol, repeats):
    try:
        import torch
        from torchdiffeq import odeint_adjoint
    except ImportError as exc:
        return [Row(prob.name, "torchdiffeq", "odeint_adjoint dopri5", None, None, None, note=f"not installed: {exc}")]
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float64)
    lv = prob.name.startswith("Lotka")
    n = prob.z0.shape[-1]

    class Field(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.theta = torch.nn.Parameter(torch.tensor(prob.theta))
            self.nfev = 0

        def forward(self, t, z):
            self.nfev += 1
            if lv:
                a, b, c, d = self.theta
                x, y = z[..., 0], z[..., 1]
                return torch.stack([a * x - b * x * y, c * x * y - d * y], dim=-1)
            A = self.theta.reshape(n, n)
            return z @ A.T

    func = Field()
    ts = torch.tensor(prob.ts)
    cvec = torch.tensor(prob.c)

    def call():
        func.zero_grad()
        z0 = torch.tensor(prob.z0, requires_grad=True)
        zs = odeint_adjoint(func, z0, ts, rtol=rtol, atol=atol, method="dopri5", adjoint_params=(func.theta,))
        loss = torch.sum(cvec * zs) + 0.5 * torch.sum(zs**2)
        loss.backward()
        return z0.grad.numpy().copy(), func.theta.grad.numpy().copy()

    func.nfev = 0
    call()
    nfev = func.nfev
    (secs, fastest), (gz, gth) = median_time(call, repeats)
    return [
        Row(
            prob.name,
            "torchdiffeq",
            "odeint_adjoint dopri5",
            secs,
            rel_err(gz, prob.ref_z0),
            rel_err(gth, prob.ref_theta),
            nfev,
            note="torch.set_num_threads(1)",
            min_seconds=fastest,
        )
    ]


def run_diffrax(prob, rtol, atol, repeats):
    try:
        import diffrax
        import jax
        import jax.numpy as jnp
    except ImportError as exc:
        return [Row(prob.name, "diffrax", "-", None, None, None, note=f"not installed: {exc}")]
    jax.config.update("jax_enable_x64", True)
    lv = prob.name.startswith("Lotka")
    n = prob.z0.shape[-1]

    def vf(t, z, theta):
        if lv:
            a, b, c, d = theta
            x, y = z[..., 0], z[..., 1]
            return jnp.stack([a * x - b * x * y, c * x * y - d * y], axis=-1)
        return z @ theta.reshape(n, n).T

    ts = jnp.asarray(prob.ts)
    cvec = jnp.asarray(prob.c)
    rows = []
    for solver_name in ("Tsit5", "Dopri5"):
        for adjoint_name in ("BacksolveAdjoint", "RecursiveCheckpointAdjoint"):
            solver = getattr(diffrax, solver_name)()
            adjoint = getattr(diffrax, adjoint_name)()

            def loss(z0, theta, solver=solver, adjoint=adjoint):
                sol = diffrax.diffeqsolve(
                    diffrax.ODETerm(vf),
                    solver,
                    ts[0],
                    ts[-1],
                    None,
                    z0,
                    args=theta,
                    saveat=diffrax.SaveAt(ts=ts),
                    stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol),
                    adjoint=adjoint,
                    max_steps=100_000,
                )
                zs = sol.ys
                return jnp.sum(cvec * zs) + 0.5 * jnp.sum(zs**2)

            grad = jax.jit(jax.grad(loss, argnums=(0, 1)))
            z0 = jnp.asarray(prob.z0)
            th = jnp.asarray(prob.theta)
            t0 = time.perf_counter()
            jax.block_until_ready(grad(z0, th))
            compile_s = time.perf_counter() - t0

            def call():
                return jax.block_until_ready(grad(z0, th))

            (secs, fastest), (gz, gth) = median_time(call, repeats, min_total=0.5)
            rows.append(
                Row(
                    prob.name,
                    "diffrax",
                    f"{solver_name} {adjoint_name}",
                    secs,
                    rel_err(np.asarray(gz), prob.ref_z0),
                    rel_err(np.asarray(gth), prob.ref_theta),
                    note=f"jax.jit; compile {compile_s:.1f} s",
                    min_seconds=fastest,
                )
            )
    return rows


# ---------------------------------------------------------------------------- report
def fmt_err(e):
    return "-" if e is None else f"{e:.1e}"


def summarise(rows):
    """Per problem: the ratios of the brief (peer time / odeverify time) for the best rows."""
    lines = []
    for name in dict.fromkeys(r.problem for r in rows):
        prs = [r for r in rows if r.problem == name and r.seconds is not None]
        ours = [r for r in prs if r.solver == "odeverify"]
        torch_rows = [r for r in prs if r.solver == "torchdiffeq"]
        dfx = [r for r in prs if r.solver == "diffrax"]
        if not ours:
            continue
        best = min(ours, key=lambda r: r.seconds)
        lines.append(f"{name}: fastest odeverify = {best.config} ({fmt_time(best.seconds)}, grad err {fmt_err(best.err)})")
        default = [r for r in ours if r.config == "DOP853 interpolated"]
        if torch_rows:
            tr = torch_rows[0]
            lines.append(
                f"  torchdiffeq / odeverify = {tr.seconds / best.seconds:.1f}x"
                + (f" (vs the default DOP853 interpolated: {tr.seconds / default[0].seconds:.1f}x)" if default else "")
                + f"; grad err torchdiffeq {fmt_err(tr.err)}"
            )
        if dfx:
            fast = min(dfx, key=lambda r: r.seconds)
            lines.append(
                f"  diffrax fastest ({fast.config}, {fmt_time(fast.seconds)}, grad err {fmt_err(fast.err)}): "
                f"odeverify / diffrax = {best.seconds / fast.seconds:.2f}x"
            )
            # equal or better gradient error than that diffrax row
            ok = [r for r in ours if r.err is not None and fast.err is not None and r.err <= fast.err]
            if ok:
                b2 = min(ok, key=lambda r: r.seconds)
                lines.append(
                    f"  fastest odeverify with grad err <= diffrax's: {b2.config} {fmt_time(b2.seconds)} "
                    f"({b2.seconds / fast.seconds:.2f}x diffrax's time)"
                )
            else:
                lines.append("  no odeverify row reaches diffrax's gradient error at this tolerance")
    return lines


def table(rows):
    head = (
        f"{'problem':<36} {'solver':<12} {'config':<38} {'median':>11} {'min':>11} {'err z0':>8} {'err th':>8} "
        f"{'nfev':>6} {'torch/this':>10} {'this/dfx':>8}  note"
    )
    out = [head, "-" * len(head)]
    for r in rows:
        same = [x for x in rows if x.problem == r.problem and x.seconds is not None]
        tr = [x for x in same if x.solver == "torchdiffeq"]
        dfx = [x for x in same if x.solver == "diffrax"]
        ratio_t = f"{tr[0].seconds / r.seconds:.1f}" if tr and r.seconds else "-"
        ratio_d = f"{r.seconds / min(x.seconds for x in dfx):.2f}" if dfx and r.seconds else "-"
        out.append(
            f"{r.problem:<36} {r.solver:<12} {r.config:<38} {fmt_time(r.seconds):>11} {fmt_time(r.min_seconds):>11} {fmt_err(r.err_z0):>8} "
            f"{fmt_err(r.err_theta):>8} {r.nfev if r.nfev is not None else '-':>6} {ratio_t:>10} {ratio_d:>8}  {r.note}"
        )
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repeats and no B=512 torchdiffeq repeats")
    ap.add_argument("--label", default="", help="suffix of the result files, e.g. 'baseline'")
    ap.add_argument("--rtol", type=float, default=1e-6)
    ap.add_argument("--atol", type=float, default=1e-8)
    ap.add_argument("--only", choices=["odeverify", "all"], default="all")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)
    load0 = os.getloadavg()
    rng = np.random.default_rng(20261128)
    problems = [lotka_volterra(1, rng), lotka_volterra(512, rng), linear(4, rng)]
    methods = ["DOP853", "RK45", "dopri5", "tsit5"]
    reps = 3 if args.quick else 7
    rows = []
    for prob in problems:
        print(f"== {prob.name} ({prob.notes})", flush=True)
        rows += run_odeverify(prob, args.rtol, args.atol, reps, methods)
        if args.only == "all":
            rows += run_torchdiffeq(prob, args.rtol, args.atol, 1 if (args.quick and prob.batched) else reps)
            rows += run_diffrax(prob, args.rtol, args.atol, reps)
        for line in table([r for r in rows if r.problem == prob.name])[2:]:
            print(line, flush=True)
    vers = versions()
    header = [
        f"odeverify peer benchmark {datetime.datetime.now().isoformat(timespec='seconds')} "
        f"{('[' + args.label + ']') if args.label else ''}",
        f"rtol={args.rtol} atol={args.atol}, float64, one thread per library (torch.set_num_threads(1), "
        "XLA single-threaded, OPENBLAS_NUM_THREADS=1); median wall time; diffrax jitted, timed after compile",
        "loss L = sum(c * z(t_i)) + 1/2 sum |z(t_i)|^2 over the observation times; gradients w.r.t. z0 and theta",
        "err = max |g - g_ref| / max |g_ref| per gradient; torch/this = torchdiffeq time / this row's time; "
        "this/dfx = this row's time / fastest diffrax time",
        *machine_lines(load0, vers),
        "",
    ]
    text = header + table(rows) + [""] + summarise(rows)
    print()
    print("\n".join(text[len(header):]))
    if not args.no_write:
        payload = {
            "label": args.label,
            "rtol": args.rtol,
            "atol": args.atol,
            "versions": vers,
            "rows": [dict(r.__dict__) for r in rows],
            "summary": summarise(rows),
        }
        stem = write_results("peers", args.label, text, payload)
        print(f"\nwritten: benchmarks/results/{stem}.txt and .json")


if __name__ == "__main__":
    main()
