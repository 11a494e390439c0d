"""Verdict time: odeverify's gradient checks against torch.autograd.gradcheck and jax.test_util.check_grads.

Run from the repository root with the peers' venv (see benchmarks/README.md)::

    PYTHONPATH=. /work/venv-bench/bin/python benchmarks/verdicts.py [--quick] [--label NAME]

On the same problems in one run (Lotka-Volterra, B = 1; a 2-16-2 tanh MLP
Neural ODE, B = 8; a linear system, n = 4), every tool answers "is this
gradient right?" with its defaults, and we time the whole call:

* odeverify: ``check_gradients`` (default references, the candidate is
  odeverify's own adjoint), broken down by reference from
  ``report.references[i].seconds``; ``taylor_test``; and the adjoint it
  checks (``adjoint_gradients`` with its defaults), the cost of the gradient;
* ``torch.autograd.gradcheck`` on a torchdiffeq ``odeint_adjoint`` model of
  the same field and loss (finite differences of every entry of y0 and of the
  parameters against the adjoint's backward pass);
* ``jax.test_util.check_grads`` (order 1, reverse mode) on a diffrax
  ``diffeqsolve`` with ``BacksolveAdjoint`` (one random direction, finite
  differences against the VJP); its first call includes JAX's compilation.

The loss is L = sum(c * z(t_i)) + 1/2 sum |z(t_i)|^2 over the observation
times, in float64, one thread per library. The peers integrate with dopri5 at
``--peer-rtol`` / ``--peer-atol``; before timing, the script checks that the
torch/JAX right-hand sides equal odeverify's field. A peer missing from the
environment is skipped with a note. Times: the first (cold) call, then the
median and minimum of up to ``repeats`` further calls within a time budget.
Results are printed and written to
benchmarks/results/verdicts-<date>[-label].{txt,json}.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import fmt_time, machine_lines, versions, write_results  # noqa: E402  (one thread per library)

import argparse  # noqa: E402
import datetime  # noqa: E402
import os  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402

import autograd.numpy as anp  # noqa: E402
import numpy as np  # noqa: E402

import odeverify as ov  # noqa: E402

#: verdict / adjoint on a small problem (n <= 6, p <= 6): at most this (issue 10's target)
VERDICT_OVER_ADJOINT = 10.0


# ---------------------------------------------------------------------------- problems
@dataclass
class Problem:
    """One problem as every tool sees it.

    ``system`` is odeverify's field; ``blocks`` are the parameters as the
    peers hold them (arrays whose ravel, concatenated, is theta); ``rhs(xp, z,
    blocks)`` is the right-hand side written against an array namespace
    (numpy, torch or jax.numpy) on z of shape (n,) or (B, n).
    """

    name: str
    system: object
    z0: np.ndarray
    ts: np.ndarray
    theta: np.ndarray
    c: np.ndarray
    blocks: list
    rhs: object
    n: int
    p: int
    setup_seconds: float | None = None

    def loss(self, zs):
        return anp.sum(self.c * zs) + 0.5 * anp.sum(zs**2)

    @property
    def small(self):
        return self.n <= 6 and self.p <= 6


def _lv_rhs(xp, z, blocks):
    a, b, c, d = blocks[0]
    x, y = z[..., 0], z[..., 1]
    return xp.stack([a * x - b * x * y, c * x * y - d * y], -1)


def _linear_rhs(xp, z, blocks):
    return z @ blocks[0].T


def _mlp_rhs(xp, z, blocks):
    W1, b1, W2, b2 = blocks
    return xp.tanh(z @ W1.T + b1) @ W2.T + b2


def _from_strings(states, params, rhs):
    t0 = time.perf_counter()
    system = ov.ODESystem.from_strings(states, params, rhs)
    return system, time.perf_counter() - t0


def lotka_volterra(rng, quick):
    theta = np.array([1.5, 1.0, 1.0, 3.0])
    ts = np.linspace(0.0, 1.0, 4) if quick else np.linspace(0.0, 5.0, 11)
    system, secs = _from_strings("x y", "a b c d", ["a*x - b*x*y", "c*x*y - d*y"])
    return Problem(
        f"Lotka-Volterra n=2 p=4 B=1, {len(ts)} times on [0, {ts[-1]:g}]",
        system, np.array([1.0, 1.0]), ts, theta, rng.normal(size=(len(ts), 2)), [theta], _lv_rhs, 2, 4, secs,
    )


def mlp(rng, quick):
    sizes, B = ((2, 4, 2), 2) if quick else ((2, 16, 2), 8)
    ts = np.linspace(0.0, 0.5, 3) if quick else np.linspace(0.0, 1.0, 11)
    system = ov.MLPField(sizes)
    theta = system.init_params(rng)
    blocks = [np.array(a) for layer in system.unpack(theta) for a in layer]
    z0 = rng.normal(size=(B, sizes[0]))
    return Problem(
        f"MLP Neural ODE {'-'.join(map(str, sizes))} tanh p={system.n_params} B={B}, {len(ts)} times on [0, {ts[-1]:g}]",
        system, z0, ts, theta, rng.normal(size=(len(ts), B, sizes[0])), blocks, _mlp_rhs, sizes[0], system.n_params,
    )


def linear(rng, quick):
    n = 2 if quick else 4
    ts = np.linspace(0.0, 1.0, 3) if quick else np.linspace(0.0, 2.0, 6)
    A = rng.normal(scale=0.6, size=(n, n)) - 0.3 * np.eye(n)
    names = [f"a{i}{j}" for i in range(n) for j in range(n)]
    rhs = [" + ".join(f"a{i}{j}*z{j}" for j in range(n)) for i in range(n)]
    system, secs = _from_strings(" ".join(f"z{i}" for i in range(n)), " ".join(names), rhs)
    return Problem(
        f"linear dz/dt = A z n={n} p={n * n} B=1, {len(ts)} times on [0, {ts[-1]:g}]",
        system, rng.normal(size=n), ts, A.ravel(), rng.normal(size=(len(ts), n)), [A], _linear_rhs, n, n * n, secs,
    )


def check_same_field(prob):
    """The peers' right-hand side must be odeverify's field (else the comparison is void)."""
    z = np.atleast_2d(prob.z0)
    want = prob.system.eval_f(z, float(prob.ts[0]), prob.theta)
    got = prob.rhs(np, z, prob.blocks)
    if not np.allclose(got, want, rtol=1e-13, atol=1e-13):
        raise RuntimeError(f"{prob.name}: the peers' right-hand side differs from odeverify's field by "
                           f"{np.max(np.abs(got - want)):.2e}")


# ---------------------------------------------------------------------------- timing
@dataclass
class Timing:
    """The first (cold) call, and the calls after it that the median and minimum summarise (the first when none)."""

    first: float
    times: list
    calls: int

    @property
    def median(self):
        return statistics.median(self.times)

    @property
    def min(self):
        return min(self.times)

    @classmethod
    def once(cls, seconds, calls=1):
        return cls(seconds, [seconds], calls)


def measure(fn, repeats, budget):
    """Call ``fn()`` once cold, then up to ``repeats`` times more: once at least, then while within ``budget`` seconds.

    Returns
    -------
    Timing, list
        The timing and the results of the calls its median summarises (the
        warm calls, or the first call when there were none).
    """
    t0 = time.perf_counter()
    outs = [fn()]
    first = time.perf_counter() - t0
    warm, warm_outs = [], []
    # at least one warm call (the first may be mostly compilation), more while the budget lasts
    while len(warm) < repeats and (not warm or first + sum(warm) + warm[-1] <= budget):
        t0 = time.perf_counter()
        warm_outs.append(fn())
        warm.append(time.perf_counter() - t0)
    return Timing(first, warm or [first], 1 + len(warm)), (warm_outs or outs)


@dataclass
class Row:
    problem: str
    tool: str
    what: str
    timing: Timing | None
    passed: bool | None = None
    checks: str = ""
    per_entry: str = ""
    note: str = ""
    parts: dict = field(default_factory=dict)

    def to_dict(self):
        out = dict(self.__dict__)
        t = self.timing
        out["timing"] = None if t is None else {"first": t.first, "median": t.median, "min": t.min, "calls": t.calls,
                                                "times": list(t.times)}
        return out


# ---------------------------------------------------------------------------- odeverify
def run_odeverify(prob, repeats, budget):
    """Rows: the adjoint, check_gradients with its references, taylor_test."""
    args = (prob.system, prob.z0, prob.ts, prob.theta, prob.loss)
    rows = []
    if prob.setup_seconds is not None:
        rows.append(Row(prob.name, "odeverify", "ODESystem.from_strings", Timing.once(prob.setup_seconds),
                        note="SymPy derivation + code generation, once per system"))
    # the denominator of every ratio: always warm calls (it takes milliseconds)
    timing, _ = measure(lambda: ov.adjoint_gradients(*args), max(repeats, 5), budget)
    rows.append(Row(prob.name, "odeverify", "adjoint_gradients", timing, checks="-", per_entry="-",
                    note="the gradient under test (defaults: DOP853, interpolated, rtol=atol=1e-8)"))
    rows += _check_gradients_rows(prob, args, repeats, budget)
    timing, results = measure(lambda: ov.taylor_test(*args, seed=0), repeats, budget)
    res = results[-1]
    rows.append(Row(prob.name, "odeverify", "taylor_test", timing, all(r.passed for r in results),
                    f"z0, θ, t along {len(res.directions)} random directions",
                    "no (a rate per direction)",
                    f"{len(res.directions)} directions x {len(res.steps[0])} steps; seed=0"))
    return rows


def _check_gradients_rows(prob, args, repeats, budget):
    """check_gradients, then one row per reference (median of its own seconds) and the rest of the call."""
    timing, reports = measure(lambda: ov.check_gradients(*args), repeats, budget)
    names = list(dict.fromkeys(e.name for rep in reports for e in rep.references))
    parts = {name: statistics.median([e.seconds for rep in reports for e in rep.references if e.name == name])
             for name in names}
    rest = statistics.median([t - sum(e.seconds for e in rep.references) for t, rep in zip(timing.times, reports)])
    skipped = "; ".join(f"{k}: {v}" for k, v in reports[-1].reference_status.items())
    rows = [Row(prob.name, "odeverify", "check_gradients", timing, all(rep.passed for rep in reports),
                "z0, θ, every t, entry by entry", "yes", skipped, parts=parts)]
    for name, secs in parts.items():
        rows.append(Row(prob.name, "odeverify", f"  of which {name}", Timing.once(secs, timing.calls)))
    rows.append(Row(prob.name, "odeverify", "  of which the rest", Timing.once(rest, timing.calls),
                    note="candidate adjoint, consensus, diagnostics (median call minus its references)"))
    return rows


# ---------------------------------------------------------------------------- peers
def run_gradcheck(prob, repeats, budget, rtol, atol):
    """torch.autograd.gradcheck (its default eps/atol/rtol) of the loss through torchdiffeq's odeint_adjoint."""
    what = "torch.autograd.gradcheck"
    try:
        import torch
        from torchdiffeq import odeint_adjoint
    except ImportError as exc:
        return [Row(prob.name, "torchdiffeq", what, None, note=f"skipped, not installed: {exc}")]
    torch.set_num_threads(1)
    ts, c = torch.tensor(prob.ts), torch.tensor(prob.c)

    def loss(y0, *blocks):
        zs = odeint_adjoint(lambda t, z: prob.rhs(torch, z, blocks), y0, ts, rtol=rtol, atol=atol, method="dopri5",
                            adjoint_params=blocks)
        return torch.sum(c * zs) + 0.5 * torch.sum(zs**2)

    inputs = tuple(torch.tensor(np.asarray(a, dtype=float), requires_grad=True) for a in [prob.z0, *prob.blocks])

    def call():
        try:
            return torch.autograd.gradcheck(loss, inputs, raise_exception=False), ""
        except Exception as exc:  # noqa: BLE001 - a peer's crash is a result to report
            return False, f"raised {type(exc).__name__}: {str(exc).splitlines()[0][:80]}"

    timing, results = measure(call, repeats, budget)
    n_in = sum(int(np.size(a)) for a in [prob.z0, *prob.blocks])
    note = f"dopri5 rtol={rtol:g} atol={atol:g}; eps=1e-6 atol=1e-5 rtol=1e-3 (defaults); {n_in} inputs"
    return [Row(prob.name, "torchdiffeq", what, timing, all(ok for ok, _ in results), "y0, params, entry by entry",
                "no", note + "".join(f"; {msg}" for _, msg in results[-1:] if msg))]


def run_check_grads(prob, repeats, budget, rtol, atol):
    """jax.test_util.check_grads(order=1, modes=("rev",)) of the loss through diffrax's diffeqsolve."""
    what = "jax.test_util.check_grads"
    try:
        import diffrax
        import jax
        import jax.numpy as jnp
        from jax.test_util import check_grads
    except ImportError as exc:
        return [Row(prob.name, "diffrax", what, None, note=f"skipped, not installed: {exc}")]
    jax.config.update("jax_enable_x64", True)
    ts, c = jnp.asarray(prob.ts), jnp.asarray(prob.c)

    # one term for every call: a new closure per call would make diffeqsolve recompile each time
    term = diffrax.ODETerm(lambda t, z, args: prob.rhs(jnp, z, args))

    def loss(z0, blocks):
        sol = diffrax.diffeqsolve(
            term, diffrax.Dopri5(), ts[0], ts[-1], None, z0,
            args=blocks, saveat=diffrax.SaveAt(ts=ts), stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol),
            adjoint=diffrax.BacksolveAdjoint(), max_steps=100_000,
        )
        return jnp.sum(c * sol.ys) + 0.5 * jnp.sum(sol.ys**2)

    args = (jnp.asarray(prob.z0), tuple(jnp.asarray(a) for a in prob.blocks))

    def call():
        try:
            check_grads(loss, args, order=1, modes=("rev",))
            return True, ""
        except AssertionError as exc:
            return False, "failed: " + " ".join(str(exc).split())[:80]
        except Exception as exc:  # noqa: BLE001 - a peer's crash is a result to report
            return False, f"raised {type(exc).__name__}: {str(exc).splitlines()[0][:80]}"

    timing, results = measure(call, repeats, budget)
    note = (f"Dopri5 + BacksolveAdjoint rtol={rtol:g} atol={atol:g}; eps=1e-4 atol=rtol=1e-5 (defaults); "
            "first call compiles")
    return [Row(prob.name, "diffrax", what, timing, all(ok for ok, _ in results), "z0, θ along 1 random direction",
                "no", note + "".join(f"; {msg}" for _, msg in results[-1:] if msg))]


# ---------------------------------------------------------------------------- report
def fmt_pass(p):
    return "-" if p is None else ("pass" if p else "FAIL")


def table(rows):
    head = (f"{'tool':<12} {'what':<40} {'median':>9} {'min':>9} {'first':>9} {'calls':>5} {'verdict':>7}  "
            f"{'checks':<36} {'error/entry':<26} note")
    out = [head, "-" * len(head)]
    for r in rows:
        t = r.timing
        if t is None:
            cells = ("-", "-", "-", "-")
        elif r.what.startswith("  of which"):  # one median per reference, over the calls of its check
            cells = (fmt_time(t.median), "", "", t.calls)
        else:
            cells = (fmt_time(t.median), fmt_time(t.min), fmt_time(t.first), t.calls)
        out.append(f"{r.tool:<12} {r.what:<40} {cells[0]:>9} {cells[1]:>9} {cells[2]:>9} {cells[3]:>5} "
                   f"{fmt_pass(r.passed):>7}  {r.checks:<36} {r.per_entry:<26} {r.note}")
    return out


def _against(ratio, target, words):
    """``12.3x (target at most 10x: missed by 1.2x)``."""
    return f"{ratio:.2f}x ({words} {target:g}x: {'met' if ratio <= target else f'missed by {ratio / target:.1f}x'})"


def summarise(problems, rows):
    """Per problem: verdict / adjoint, and odeverify's verdict time against each peer's."""
    lines = []
    for prob in problems:
        mine = {r.what: r for r in rows if r.problem == prob.name and r.tool == "odeverify" and r.timing is not None}
        peers = [r for r in rows if r.problem == prob.name and r.tool != "odeverify" and r.timing is not None]
        adj, chk, tay = (mine.get(k) for k in ("adjoint_gradients", "check_gradients", "taylor_test"))
        if adj is None or chk is None:
            continue
        verdict, gradient = chk.timing.median, adj.timing.median
        over = verdict / gradient
        lines.append(f"{prob.name}:")
        lines.append(
            f"  check_gradients / adjoint_gradients = {fmt_time(verdict)} / {fmt_time(gradient)} = "
            + (_against(over, VERDICT_OVER_ADJOINT, "target on a small problem: at most") if prob.small
               else f"{over:.1f}x (n={prob.n}, p={prob.p}: not a small problem, no target)")
        )
        if tay is not None:
            lines.append(f"  taylor_test / adjoint_gradients = {fmt_time(tay.timing.median)} / {fmt_time(gradient)} = "
                         f"{tay.timing.median / gradient:.1f}x")
        for peer in peers:
            name = peer.what.split(".")[-1]
            text = (f"  check_gradients / {name} = {fmt_time(verdict)} / {fmt_time(peer.timing.first)} (first call) = "
                    + _against(verdict / peer.timing.first, 1.0, "target: below"))
            if peer.timing.calls > 1:
                text += f"; against its median warm call ({fmt_time(peer.timing.median)}): {verdict / peer.timing.median:.2f}x"
            lines.append(text + f"; {name}: {fmt_pass(peer.passed)}")
    return lines


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small problems, the first call only (a smoke run)")
    ap.add_argument("--label", default="", help="suffix of the result files, e.g. 'before'")
    ap.add_argument("--only", choices=["odeverify", "all"], default="all")
    ap.add_argument("--peer-rtol", type=float, default=1e-8, help="the peers' solver rtol (odeverify's adjoint default)")
    ap.add_argument("--peer-atol", type=float, default=1e-8)
    ap.add_argument("--repeats", type=int, default=None, help="calls after the first (default 3, --quick 0)")
    ap.add_argument("--budget", type=float, default=None, help="seconds per row (default 60, --quick 5)")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)
    repeats = args.repeats if args.repeats is not None else (0 if args.quick else 3)
    budget = args.budget if args.budget is not None else (5.0 if args.quick else 60.0)
    load0, started = os.getloadavg(), datetime.datetime.now()
    rng = np.random.default_rng(20261201)
    problems = [lotka_volterra(rng, args.quick), mlp(rng, args.quick), linear(rng, args.quick)]
    rows = []
    for prob in problems:
        check_same_field(prob)
        print(f"== {prob.name}", flush=True)
        new = run_odeverify(prob, repeats, budget)
        if args.only == "all":
            new += run_gradcheck(prob, repeats, budget, args.peer_rtol, args.peer_atol)
            new += run_check_grads(prob, repeats, budget, args.peer_rtol, args.peer_atol)
        for line in table(new)[2:]:
            print(line, flush=True)
        rows += new
    header = [
        f"odeverify verdict benchmark {started.isoformat(timespec='seconds')} "
        f"{('[' + args.label + ']') if args.label else ''}{' (--quick)' if args.quick else ''}",
        "is this gradient right? each tool with its defaults, whole call timed; float64, one thread per library; "
        "loss L = sum(c * z(t_i)) + 1/2 sum |z(t_i)|^2",
        f"times: first (cold) call, then median and min of up to {repeats} more calls within {budget:g} s per row; "
        "'of which' rows: median seconds each reference reports",
        *machine_lines(load0, versions()),
        "",
    ]
    body = []
    for prob in problems:
        body += [f"== {prob.name}"] + table([r for r in rows if r.problem == prob.name]) + [""]
    text = header + body + summarise(problems, rows)
    print()
    print("\n".join(text[len(header):]))
    if not args.no_write:
        payload = {"label": args.label, "quick": args.quick, "versions": versions(),
                   "rows": [r.to_dict() for r in rows], "summary": summarise(problems, rows)}
        stem = write_results("verdicts", args.label, text, payload)
        print(f"\nwritten: benchmarks/results/{stem}.txt and .json")
    return rows


if __name__ == "__main__":
    main()
