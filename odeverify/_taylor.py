"""taylor_test: the Taylor remainder convergence test of a gradient."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np

from ._check import _candidate_values
from ._display import fmt, some, taylor_html
from ._validate import _as_float_array, _check_finite, check_rng, check_tolerances
from .errors import IntegrationError, InvalidArgumentError, InvalidTypeError, TrivialTestWarning
from .references import QUANTITIES, make_problem
from .references._base import SwitchLayout
from .references._members import flat_inputs, member_losses

__all__ = ["taylor_test", "TaylorResult", "PASS_RATE"]

#: a direction passes when its observed rate is at least this
PASS_RATE = 1.8
#: residuals count only when this many times above the loss's noise
NOISE_FACTOR = 100.0


@dataclass
class TaylorResult:
    """Outcome of :func:`taylor_test`.

    Attributes
    ----------
    passed : bool
    rate : float
        The smallest observed rate over the conclusive directions (2 for a
        correct gradient, 1 for a wrong one); NaN when none is conclusive.
    rates : list of float
        The observed rate of each direction (NaN when inconclusive).
    residuals : list of ndarray
        ``|L(x + h d) - L(x) - h grad.d|`` for each direction and step.
    steps : list of ndarray
        The step sizes h of each direction.
    directions : list of str
        What each direction perturbs ("all inputs", "z0", "theta", "t").
    noise : float
        Estimated noise of a loss evaluation (the solver's error).
    warnings : list of str
    summary : str
    """

    passed: bool
    rate: float
    rates: list
    residuals: list
    steps: list
    directions: list
    noise: float
    warnings: list = field(default_factory=list)
    summary: str = ""
    windows: list = field(default_factory=list)
    floors: list = field(default_factory=list)

    def __bool__(self):
        return bool(self.passed)

    def plot(self, *, ax=None):
        """Remainders against h, log–log, per direction, with slopes 1 and 2 (:func:`odeverify.plotting.plot_taylor`).

        Returns the matplotlib Figure (drawn on ``ax`` when given).
        """
        from .plotting import plot_taylor

        return plot_taylor(self, ax=ax)

    def __repr__(self):
        rates = [r for r in self.rates if np.isfinite(r)]
        low = sum(r < PASS_RATE for r in rates)
        text = f"rate {fmt(self.rate, '.2f')} (2 for a right gradient) over {len(self.rates)} directions"
        text += (f", {low} below {PASS_RATE:g}" if low else "") + (
            f", {len(self.rates) - len(rates)} inconclusive" if len(rates) < len(self.rates) else "")
        return f"<TaylorResult {'PASSED' if self.passed else 'FAILED'}: {text}>"

    def _repr_html_(self):
        return taylor_html(self, PASS_RATE)

    def __str__(self):
        lines = [f"taylor_test: {'PASSED' if self.passed else 'FAILED'} — {self.summary}"]
        lines.append(
            f"noise of a loss evaluation: {self.noise:.2e} (model); residuals are used only above {NOISE_FACTOR:g}× "
            "the smaller of that and the plateau the smallest steps show"
        )
        for name, rate, h, r, win, fl in zip(
            self.directions, self.rates, self.steps, self.residuals, self.windows, self.floors
        ):
            rate_s = f"{rate:.3f}" if np.isfinite(rate) else "inconclusive"
            lines.append(f"direction {name}: rate {rate_s} (residuals used above {fl:.1e}, marked *)")
            for k, (hk, rk) in enumerate(zip(h, r)):
                mark = "*" if k in win else " "
                lines.append(f"   {mark} h = {hk:9.3e}   residual = {rk:9.3e}")
        if self.warnings:
            lines.append("warnings:")
            lines += [f"  - {w}" for w in self.warnings]
        return "\n".join(lines)

    def to_dict(self):
        return {
            "passed": self.passed,
            "rate": self.rate,
            "rates": list(self.rates),
            "directions": list(self.directions),
            "steps": [list(map(float, h)) for h in self.steps],
            "residuals": [list(map(float, r)) for r in self.residuals],
            "noise": self.noise,
            "warnings": list(self.warnings),
            "summary": self.summary,
        }


def _observed_rate(h, r, floor):
    """Rate from the smallest steps whose residuals stand above the noise floor."""
    valid = [k for k in range(len(h)) if np.isfinite(r[k]) and r[k] > floor]
    # the longest run of consecutive valid points that ends at the smallest valid step
    if not valid:
        return math.nan, []
    run = [valid[-1]]
    for k in reversed(valid[:-1]):
        if k == run[-1] - 1:
            run.append(k)
        else:
            break
    run = sorted(run)
    if len(run) < 2:
        return math.nan, run
    rates = [math.log(r[k] / r[k + 1]) / math.log(h[k] / h[k + 1]) for k in run[:-1]]
    return float(np.mean(rates[-2:])), run


def _steps(d, steps, gaps, scale):
    """The step sizes along direction ``d``: the given ones, or 12 from the largest allowed, dividing by 4."""
    if steps is not None:
        hs = np.asarray(steps, dtype=float)
        if hs.ndim != 1 or len(hs) < 3 or np.any(hs <= 0) or np.any(np.diff(hs) >= 0):
            raise InvalidArgumentError("steps must be at least 3 positive, strictly decreasing step sizes")
        return hs
    hmax = 0.05
    for q, v in d.items():
        if q == "t":
            dv = np.abs(np.diff(v))
            if np.any(dv > 0):
                hmax = min(hmax, 0.5 * float(np.min(gaps[dv > 0] / dv[dv > 0])))
        else:
            m = float(np.max(np.abs(v) / scale[q], initial=0.0))
            if m > 0:
                hmax = min(hmax, 0.05 / m)
    return hmax * 4.0 ** -np.arange(12)


def _losses_along(problem, dirs, hss, rtol):
    """L(x) and L(x + h d) for every direction d and its steps h, from one batched solve.

    Every perturbed problem and the unperturbed one (member 0) share every
    step, so a residual compares values of one smooth discrete map. If the
    batch fails (a large step blows up), each perturbed problem is solved
    together with its own copy of the unperturbed one; those that fail
    alone are NaN.

    Returns
    -------
    L0 : list of ndarray
        Per direction, the unperturbed loss each residual is taken against.
    L : list of ndarray
        Per direction, the loss at every step.
    """
    base = flat_inputs(problem)
    Bn, p = problem.z0.size, problem.p
    rows = [base]
    for d, hs in zip(dirs, hss):
        flat_d = np.concatenate([np.ravel(d.get("z0", np.zeros(Bn))), d.get("theta", np.zeros(p)),
                                 d.get("t", np.zeros(len(problem.ts)))])
        rows += [base + h * flat_d for h in hs]
    X = np.array(rows)
    try:
        L, _, _, _ = member_losses(problem, X, rtol=rtol)
        L0 = np.full(len(X), L[0])
    except IntegrationError:
        L, L0 = np.full(len(X), np.nan), np.full(len(X), np.nan)
        for m in range(1, len(X)):
            try:
                pair, _, _, _ = member_losses(problem, X[[0, m]], rtol=rtol)
            except IntegrationError:
                continue
            L0[m], L[m] = pair
    out0, out, start = [], [], 1
    for hs in hss:
        out0.append(L0[start : start + len(hs)])
        out.append(L[start : start + len(hs)])
        start += len(hs)
    return out0, out


def _discontinuity_warnings(problem):
    """The discontinuities of f in words, and the entries a jump on an observation time makes non-differentiable."""
    found = getattr(problem.field, "discontinuities", ())
    if not found:
        return []
    layout = SwitchLayout(problem.field, problem.theta, problem.ts, batch=problem.B)
    blind = [d for d in layout.unhandled if d.in_state]
    out = [f"f is not smooth: {'; '.join(map(str, found))}"
           + (f"; every loss evaluation stops at the switch times in t ({some(f'{t:.6g}' for t in layout.times)})"
              if len(layout) else "")
           + ("; every loss evaluation locates the crossings of the state conditions (events), each perturbed "
              "copy its own, and restarts on the new branch" if layout.events_located and layout.events else "")
           + (f"; jumps on the state are not located here ({layout.event_reason or 'floor, ceiling or a point mass'}):"
              " a direction that moves the crossing sees the loss's kink" if blind else "")]
    reasons = sorted(set(layout.nondifferentiable(problem.ts).values()))
    return out + reasons


def _locates_events(problem):
    """Whether the loss evaluations of ``problem`` locate state events (crossings found by root finding)."""
    if not getattr(problem.field, "discontinuities", ()):
        return False
    layout = SwitchLayout(problem.field, problem.theta, problem.ts, batch=problem.B)
    return bool(layout.events_located and layout.events)


def taylor_test(
    system, z0, ts, theta, loss, *, candidate=None, directions=None, steps=None, seed=None, rtol=1e-12
):
    r"""The Taylor remainder test: |L(x + h d) - L(x) - h grad L . d| must fall as h^2.

    The inputs x are z0, theta and the times; d is a direction in that
    space. With a correct gradient the remainder is O(h^2) (rate 2); with a
    wrong one it is dominated by h (grad - candidate).d (rate 1) as h -> 0.

    Parameters
    ----------
    system, z0, ts, theta, loss
        As for :func:`odeverify.adjoint_gradients`.
    candidate : callable, mapping or None
        As for :func:`odeverify.check_gradients`; by default odeverify's
        adjoint at rtol = atol = 1e-10. Quantities it leaves out are not
        perturbed.
    directions : sequence of mapping, optional
        Explicit directions ``{"z0": ..., "theta": ..., "t": ...}``. By default
        several: two random directions over all inputs, and one random
        direction in each quantity group (z0, theta, t) -- never the gradient
        itself, so that no single direction nearly orthogonal to the error,
        or with little curvature, decides the outcome.
    steps : sequence of float, optional
        Step sizes h (decreasing). By default 12 steps from a largest one,
        dividing by 4: the largest moves each input by at most 5% of its
        size (at least 1) and each time by at most half its gap to the next.
    seed : int, optional
        Seed of the random directions (reproducible).
    rtol : float
        Tolerance of the forward solves that evaluate L (their error is the
        noise floor).

    Returns
    -------
    TaylorResult
        ``.passed`` when every conclusive direction has a rate of at least
        1.8 and every direction is conclusive; ``.rate``, per-direction
        ``.rates`` and ``.residuals``.

    Notes
    -----
    Only residuals more than 100 times above the noise of a loss evaluation
    are used; the noise is the smaller of a model (a tenth of the distance
    between solves at ``rtol`` and ``10 rtol``) and the plateau that the
    residuals of the three smallest steps show (an upper bound of the noise
    of a difference of nearby losses, usually far below the model); the rate of a direction is the mean of the last two
    rates between consecutive steps of the run of usable residuals that
    reaches the smallest usable step (the asymptotic end, where the
    first-order error of a wrong gradient dominates). A direction whose residuals all sink into the noise (a gradient
    with too little curvature along it) is inconclusive, reported with a
    warning, and the test does not pass on it.

    References
    ----------
    P. E. Farrell, D. A. Ham, S. W. Funke, M. E. Rognes, "Automated derivation
    of the adjoint of high-level transient finite element programs", SIAM J.
    Sci. Comput. 35 (2013) -- the Taylor test of dolfin-adjoint/pyadjoint.

    Examples
    --------
    >>> from odeverify import catalog, taylor_test
    >>> prob = catalog.exponential()
    >>> result = taylor_test(*prob.args(), seed=0)
    >>> result.passed, round(result.rate)
    (True, 2)
    """
    problem = make_problem(system, z0, ts, theta, loss)
    rtol, _ = check_tolerances(rtol, rtol, problem.n)
    if rtol > 1e-3:
        raise InvalidArgumentError(
            f"rtol={rtol!r} is too loose for a Taylor test: the loss must be far more accurate than the "
            "second-order residuals it measures; use rtol <= 1e-3 (the default is 1e-12)"
        )
    if steps is not None:
        steps = _as_float_array(steps, "steps")
        _check_finite(steps, "steps")
    if candidate is None:
        from ._adjoint import adjoint_gradients

        grads = adjoint_gradients(
            problem.field, problem.user_z0(problem.z0), problem.ts, problem.theta, problem.loss, rtol=1e-10, atol=1e-10
        ).as_dict()
    else:
        grads = _candidate_values(candidate, problem).values
    rng = check_rng(seed)
    x = {"z0": problem.user_z0(problem.z0), "theta": problem.theta, "t": problem.ts}
    groups = [q for q in QUANTITIES if q in grads and np.size(x[q]) > 0]
    if not groups:
        raise InvalidArgumentError("the candidate gives no gradient with respect to any input with entries")
    # scales: inputs move relative to their size (at least 1); times relative to their gaps
    gaps = np.abs(np.diff(problem.ts))
    scale = {
        "z0": np.maximum(np.abs(x["z0"]), 1.0),
        "theta": np.maximum(np.abs(x["theta"]), 1.0),
        "t": np.full(len(problem.ts), float(np.min(gaps))),
    }
    if directions is None:
        dirs, names = [], []
        for k in range(2):
            dirs.append({q: rng.standard_normal(np.shape(x[q])) * scale[q] for q in groups})
            names.append(f"all inputs #{k + 1}")
        for q in groups:
            dirs.append({q: rng.standard_normal(np.shape(x[q])) * scale[q]})
            names.append(q)
    else:
        if isinstance(directions, dict):
            directions = [directions]
        if isinstance(directions, (str, bytes)) or not isinstance(directions, (list, tuple)) or not directions:
            raise InvalidTypeError(
                f"directions must be None or a non-empty list of mappings such as [{{'theta': [1.0, 0.0]}}], "
                f"got {directions!r:.60}"
            )
        dirs, names = [], []
        for i, d in enumerate(directions):
            if not isinstance(d, dict) or not d or set(d) - set(QUANTITIES):
                raise InvalidTypeError(f"directions[{i}] must be a mapping with keys among 'z0', 'theta', 't'")
            dd = {}
            for q, v in d.items():
                arr = _as_float_array(v, f"directions[{i}][{q!r}]")
                _check_finite(arr, f"directions[{i}][{q!r}]")
                if arr.shape != np.shape(x[q]):
                    raise InvalidArgumentError(f"directions[{i}][{q!r}] has shape {arr.shape}, expected {np.shape(x[q])}")
                if q not in grads:
                    raise InvalidArgumentError(f"directions[{i}] perturbs {q!r}, which the candidate gives no gradient for")
                dd[q] = arr
            dirs.append(dd)
            names.append(f"given #{i + 1}")
    # the loss and its noise
    L0 = problem.loss_value(rtol=rtol, atol=rtol)
    L1 = problem.loss_value(rtol=rtol * 10, atol=rtol * 10)
    # the error of L at rtol is about a tenth of its distance to L at 10 rtol
    noise = abs(L0 - L1) / 10 + 16 * np.finfo(float).eps * abs(L0) + 1e-300
    if _locates_events(problem):
        # a located crossing restarts the solve: its steps after the crossing jump with every perturbation,
        # so L along a direction is only as smooth as the tolerance promises, not as the model above measures
        noise = max(noise, rtol * abs(L0))
    hss = [_steps(d, steps, gaps, scale) for d in dirs]
    slopes = [float(sum(np.sum(np.asarray(grads[q]) * v) for q, v in d.items())) for d in dirs]
    L0s, Ls = _losses_along(problem, dirs, hss, rtol)
    result_rates, result_res, result_h, windows, warn, floors = [], [], [], [], [], []
    for name, hs, slope, L0k, Lk in zip(names, hss, slopes, L0s, Ls):
        res = np.abs(Lk - L0k - hs * slope)
        # where the residuals of the smallest steps show the actual noise plateau
        # (usually far below the model's estimate), use it: the usable window
        # then reaches the asymptotic regime
        tail = res[-3:][np.isfinite(res[-3:])]
        plateau = max(float(np.max(tail)) if tail.size else np.inf, 16 * np.finfo(float).eps * abs(L0))
        dir_floor = NOISE_FACTOR * min(noise, plateau)
        rate, win = _observed_rate(hs, res, dir_floor)
        floors.append(dir_floor)
        if not np.isfinite(rate):
            warn.append(
                f"direction {name}: the residuals sink into the noise floor ({noise:.1e}) before two usable steps — "
                "too little curvature along it; this direction is inconclusive"
            )
        elif win and win[-1] < len(hs) - 1:
            warn.append(f"direction {name}: residuals reach the noise floor below h = {hs[win[-1]]:.1e}")
        result_rates.append(rate)
        result_res.append(res)
        result_h.append(hs)
        windows.append(win)
    warn += _discontinuity_warnings(problem)
    conclusive = [r for r in result_rates if np.isfinite(r)]
    rate = min(conclusive) if conclusive else math.nan
    passed = bool(conclusive) and len(conclusive) == len(result_rates) and rate >= PASS_RATE
    nondiff = [w for w in warn if w.startswith("not differentiable")]
    if passed:
        summary = f"every direction converges at rate ≥ {PASS_RATE} (smallest {rate:.3f}): the gradient is consistent"
    elif nondiff:
        summary = f"the loss is not differentiable here, so no rate is expected: {nondiff[0]}"
    elif conclusive and rate < PASS_RATE:
        worst = names[result_rates.index(rate)]
        summary = (
            f"direction {worst} converges at rate {rate:.3f} (a correct gradient gives 2, a wrong one 1): "
            "the gradient is inconsistent with the loss"
        )
    else:
        summary = "inconclusive: some directions' residuals never rose above the noise floor"
    for w in warn:
        if "inconclusive" in w:
            warnings.warn(w, TrivialTestWarning, stacklevel=2)
    return TaylorResult(
        passed=passed,
        rate=rate,
        rates=result_rates,
        residuals=result_res,
        steps=result_h,
        directions=names,
        noise=noise,
        warnings=warn,
        summary=summary,
        windows=windows,
        floors=floors,
    )
