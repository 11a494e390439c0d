"""Forward solves with the solvers of ``scipy.integrate.solve_ivp``.

The solver classes that ``solve_ivp`` drives (RK45, RK23, DOP853, Radau, BDF,
LSODA) are stepped here directly, which gives what ``solve_ivp`` hides: the
number of steps when output times are requested, a step budget, the time a
failed solve reached, and the step interpolants for dense output. The
in-house adaptive methods ``dopri5`` and ``tsit5`` (:mod:`odeverify._rk`) run
behind the same :func:`integrate_span`. Failures become
:class:`~odeverify.errors.IntegrationError` with the time reached and the
solver's message.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ._rk import (
    _MESSAGES, ADAPTIVE_TABLEAUX, BUDGET, F_NOT_FINITE, NOT_FINITE, RKDenseOutput, RKFailure, ScipyDenseOutput,
    integrate_rk, integrate_rk_intervals, joined_dense_output,
)
from ._validate import (
    IMPLICIT_METHODS,
    _as_float_array,
    check_method,
    check_positive_int,
    check_problem,
    check_tolerances,
)
from ._display import fmt
from .errors import IntegrationError, InvalidArgumentError

__all__ = ["solve", "Solution", "integrate_span", "DEFAULT_MAX_STEPS"]

#: default step budget of one solve
DEFAULT_MAX_STEPS = 100_000

def _scipy_solver(method):
    """SciPy's solver class for ``method`` (RK45, RK23, Radau, BDF, LSODA; DOP853 runs in odeverify's loop).

    scipy.integrate is imported here, on first use: over half a second, which a solve with odeverify's
    own explicit methods does not pay.
    """
    import scipy.integrate

    return getattr(scipy.integrate, method)


@dataclass
class SpanResult:
    """What one integration over [t_start, t_end] produced (internal)."""

    y_at: np.ndarray  # (len(t_out), size) states at the requested times
    y_end: np.ndarray
    nfev: int
    njev: int
    nlu: int
    nsteps: int
    interpolants: list | None
    step_times: list | None
    _dense: object = None  # a StepwiseDenseOutput (in-house methods), made on first use from the interpolants otherwise

    @property
    def dense(self):
        """A StepwiseDenseOutput of the kept steps when dense=True, else None."""
        if self._dense is None and self.interpolants is not None:
            self._dense = scipy_dense_output(self.step_times, self.interpolants)
        return self._dense


def integrate_span(
    fun,
    t_start,
    t_end,
    y0,
    *,
    method,
    rtol,
    atol,
    jac=None,
    t_out=(),
    dense=False,
    max_steps=DEFAULT_MAX_STEPS,
    what="forward solve",
    inplace=False,
    groups=None,
):
    """Integrate ``dy/dt = fun(t, y)`` from ``t_start`` to ``t_end``.

    Parameters
    ----------
    fun : callable
        ``fun(t, y) -> dy/dt`` on flat arrays, or with ``inplace=True``
        ``fun(t, y, out)`` writing dy/dt into ``out`` (faster for the
        in-house methods, which preallocate their stages).
    t_start, t_end : float
    y0 : ndarray, shape (size,)
    method : str
        One of :data:`odeverify._validate.METHODS`.
    rtol : float
    atol : float or ndarray of shape (size,)
    jac : callable, optional
        ``jac(t, y)``, dense or sparse; only used by implicit methods.
    t_out : sequence of float
        Times in ``[t_start, t_end]`` (in integration order) at which to
        report the state, interpolated with the step's dense output.
    dense : bool
        Keep every step's interpolant: ``.dense`` of the result evaluates
        the solution anywhere in the span (and the SciPy methods also give
        ``.interpolants``, ``.step_times`` for an
        :class:`scipy.integrate.OdeSolution`).
    max_steps : int
        Step budget; exceeding it raises :class:`IntegrationError`.
    what : str
        Name of the solve for error messages.
    inplace : bool
        ``fun`` has the signature ``fun(t, y, out)``.
    groups : sequence of int, optional
        Sizes of consecutive groups of components for a mixed error norm
        (max over groups of each group's RMS); in-house methods only, the
        SciPy methods use their plain RMS norm.

    Returns
    -------
    SpanResult
    """
    if method in ADAPTIVE_TABLEAUX:
        return _integrate_adaptive(
            fun if inplace else _into(fun), t_start, t_end, y0, ADAPTIVE_TABLEAUX[method],
            rtol=rtol, atol=atol, t_out=t_out, dense=dense, max_steps=max_steps, what=what,
            groups=groups,
        )
    if inplace:
        fun = _allocating(fun)
    fun = _Watched(fun)
    solver_cls = _scipy_solver(method)
    kwargs = dict(rtol=rtol, atol=atol)
    if method in IMPLICIT_METHODS and jac is not None:
        kwargs["jac"] = jac
    t_out = np.asarray(t_out, dtype=float)
    y_at = np.empty((len(t_out), y0.size), dtype=np.result_type(y0, np.float64))
    k = 0
    direction = np.sign(t_end - t_start)
    # requested times equal to t_start are the initial state
    while k < len(t_out) and t_out[k] == t_start:
        y_at[k] = y0
        k += 1
    with np.errstate(all="ignore"):
        try:
            solver = solver_cls(fun, t_start, y0, t_end, **kwargs)
        except ValueError as exc:
            if not _scipy_non_finite(exc):
                raise
            raise _undefined_at_start(what, fun, t_start, t_end, y0) from None
        f0 = getattr(solver, "f", None)
        if f0 is not None and not np.all(np.isfinite(f0)):
            # SciPy's explicit methods loop forever on a NaN initial step size: stop before stepping
            raise _undefined_at_start(what, fun, t_start, t_end, y0)
        interpolants = [] if dense else None
        step_times = [t_start] if dense else None
        nsteps = 0
        while solver.status == "running":
            try:
                message = solver.step()
            except ValueError as exc:  # Radau/BDF: "array must not contain infs or NaNs" from their LU
                if not _scipy_non_finite(exc):
                    raise
                _fail(what, solver, t_start, t_end, "the vector field or its Jacobian returned NaN or inf", fun)
            except RuntimeError as exc:  # BDF's sparse LU: "Factor is exactly singular" (NaN/inf entries, too)
                if "singular" not in str(exc).lower():
                    raise
                _fail(what, solver, t_start, t_end, f"the Newton iteration matrix is singular ({exc})", fun)
            if solver.status == "failed":
                _fail(what, solver, t_start, t_end, message, fun)
            nsteps += 1
            if not _all_finite(solver.y):
                _fail(what, solver, t_start, t_end, "the state became infinite or NaN", fun)
            t_new = solver.t
            if k < len(t_out) and direction * (t_out[k] - t_new) <= 0:
                interp = solver.dense_output()
                k_end = k + int(np.searchsorted(direction * t_out[k:], direction * t_new, side="right"))
                y_at[k:k_end] = np.asarray(interp(t_out[k:k_end])).T  # the step's outputs in one call
                if t_out[k_end - 1] == t_new:
                    y_at[k_end - 1] = solver.y
                k = k_end
                if dense:
                    interpolants.append(interp)
            elif dense:
                interpolants.append(solver.dense_output())
            if dense:
                step_times.append(t_new)
            if nsteps >= max_steps and solver.status == "running":
                hint = _blow_up_hint(solver.y, getattr(solver, "f", None), solver.t, t_end)
                raise IntegrationError(
                    _budget_message(what, max_steps, solver.t, t_start, t_end, hint),
                    t_reached=float(solver.t),
                    t_target=float(t_end),
                    solver_message="step budget exhausted",
                )
    if not np.all(np.isfinite(y_at)):
        raise IntegrationError(
            f"the {what} produced non-finite values at the output times", t_reached=float(solver.t), t_target=float(t_end)
        )
    return SpanResult(
        y_at=y_at,
        y_end=solver.y.copy(),
        nfev=int(solver.nfev),
        njev=int(getattr(solver, "njev", 0)),
        nlu=int(getattr(solver, "nlu", 0)),
        nsteps=nsteps,
        interpolants=interpolants,
        step_times=step_times,
    )


def scipy_dense_output(step_times, interpolants):
    """A :class:`StepwiseDenseOutput` of SciPy step interpolants.

    The interpolants of RK23, RK45 and Radau are polynomials in
    ``s = (t - t_old) / h``; they become one :class:`RKDenseOutput` (an
    evaluation is a few array operations instead of SciPy's Python call, and
    many times are evaluated in one). BDF's and LSODA's stay as they are.
    """
    coefficients = [_polynomial_coefficients(interp) for interp in interpolants]
    if not coefficients or any(R is None for R in coefficients) or len({R.shape for R in coefficients}) != 1:
        return ScipyDenseOutput(step_times, interpolants)
    return RKDenseOutput(np.asarray(step_times, dtype=float), np.stack(coefficients))


def _polynomial_coefficients(interp):
    """``R`` (d + 1, size) with ``interp(t_old + s h) = [1, s, ..., s^d] . R``, or None for other interpolants."""
    name = type(interp).__name__
    if name == "RkDenseOutput":  # y_old + h Q [s, s^2, ...]
        return np.vstack([interp.y_old, interp.h * interp.Q.T])
    if name == "RadauDenseOutput":  # y_old + Q [s, s^2, s^3]
        return np.vstack([interp.y_old, interp.Q.T])
    return None


def _into(fun):
    """``fun(t, y) -> dy`` as ``fun(t, y, out)``."""

    def fun_into(t, y, out):
        out[...] = fun(t, y)

    return fun_into


def _allocating(fun_into):
    """``fun(t, y, out)`` as ``fun(t, y) -> dy`` (for the SciPy solvers)."""

    def fun(t, y):
        out = np.empty_like(y)
        fun_into(t, y, out)
        return out

    return fun


def _scipy_non_finite(exc):
    return "infs or NaNs" in str(exc) or "must be finite" in str(exc)


def _undefined_at_start(what, fun, t_start, t_end, y0):
    if not np.all(np.isfinite(y0)):
        bad = np.flatnonzero(~np.isfinite(y0))
        return IntegrationError(
            f"the {what} cannot start: its initial state is NaN or inf in components {bad[:8].tolist()}"
            f"{' ...' if bad.size > 8 else ''} at t = {float(t_start)!r}; for a backward (adjoint) solve this is the "
            "loss gradient dL/dz at that time (an overflowing loss?) or a state that overflowed before it",
            t_reached=float(t_start), t_target=float(t_end), solver_message="non-finite initial state",
        )
    f0 = fun(t_start, y0)
    bad = np.flatnonzero(~np.isfinite(f0))
    return IntegrationError(
        f"the {what} cannot start: dz/dt at t = {float(t_start)!r} is NaN or inf in components "
        f"{bad[:8].tolist()}{' ...' if bad.size > 8 else ''} (integrating from {t_start!r} to {t_end!r}). "
        + _undefined_hint(y0, t_start),
        t_reached=float(t_start), t_target=float(t_end), solver_message="non-finite vector field",
    )


def _budget_message(what, max_steps, t_reached, t_start, t_end, hint):
    return (
        f"the {what} took more than max_steps={max_steps} steps and reached only t = {float(t_reached)!r} "
        f"of [{t_start!r}, {t_end!r}]; "
        + (f"{hint}; " if hint else "")
        + "the problem may be stiff (try method='Radau' or 'BDF'), the tolerances too tight, "
        "or raise max_steps"
    )


def _integrate_adaptive(fun, t_start, t_end, y0, tableau, *, rtol, atol, t_out, dense, max_steps, what, groups):
    """:func:`integrate_span` for the in-house methods of :mod:`odeverify._rk`."""
    t_out = np.asarray(t_out, dtype=float).reshape(-1)
    with np.errstate(all="ignore"):
        try:
            res = integrate_rk(
                fun, t_start, t_end, y0, tableau, rtol=rtol, atol=atol, t_out=() if dense else t_out, dense=dense,
                max_steps=max_steps, groups=groups,
            )
        except RKFailure as exc:
            raise _rk_error(exc, what, t_start, t_end, max_steps) from None
        if dense:  # every output from the kept steps in one array operation (not one call per output)
            res["y_at"] = _outputs_from_dense(res["dense"], t_out, t_start, t_end, y0, res["y_end"])
    if not np.all(np.isfinite(res["y_at"])):
        raise IntegrationError(
            f"the {what} produced non-finite values at the output times", t_reached=float(t_end), t_target=float(t_end)
        )
    return SpanResult(
        y_at=res["y_at"],
        y_end=res["y_end"],
        nfev=res["nfev"],
        njev=0,
        nlu=0,
        nsteps=res["nsteps"],
        interpolants=None,
        step_times=None,
        _dense=res["dense"],
    )


def _outputs_from_dense(dense, t_out, t_start, t_end, y0, y_end):
    """The states at ``t_out`` (len(t_out), size) from a dense output; the span's ends exactly."""
    if dense.step_times.size < 2:  # an empty span
        return np.broadcast_to(y0, (t_out.size, y0.size)).copy()
    y_at = dense.at_many(t_out)
    y_at[t_out == t_start] = y0
    y_at[t_out == t_end] = y_end
    return y_at


def _rk_error(exc, what, t_start, t_end, max_steps):
    """The IntegrationError for an :class:`RKFailure` of the solve ``what`` over [t_start, t_end]."""
    reason = str(exc)
    if exc.status == F_NOT_FINITE and _moderate(exc.y):  # f NaN/inf at a moderate state: undefined there
        hint = _undefined_hint(exc.y, exc.t)
    else:
        if exc.status == F_NOT_FINITE:  # a huge state whose stages overflow: a blow-up
            reason = _MESSAGES[NOT_FINITE] + " (the stages overflowed)"
        hint = _blow_up_hint(exc.y, exc.f, exc.t, t_end)
    if exc.status == BUDGET:
        message = _budget_message(what, max_steps, exc.t, t_start, t_end, hint)
    else:
        hints = [h for h in [hint] if h]
        hints.append("shorten the interval, check the parameters, or try a stiff method ('Radau', 'BDF')")
        message = (
            f"the {what} failed at t = {exc.t!r} (integrating from {t_start!r} to {t_end!r}): {reason}. "
            + "; ".join(hints)
        )
    return IntegrationError(message, t_reached=exc.t, t_target=float(t_end), solver_message=str(exc))


def integrate_intervals(fun, times, keep, add, *, method, rtol, atol, jac=None, max_steps=DEFAULT_MAX_STEPS,
                        what=None, groups=None, dense=False):
    """Integrate over ``times[k] -> times[k + 1]`` for every k, restarting each interval from
    ``keep * y_end(k - 1) + add[k]`` (interval 0 from ``add[0]``).

    The backward sweep of the adjoint: ``add`` holds the jumps of the adjoint
    at the observation times (and, in backsolve mode, the forward state that
    restarts the reconstructed one, where ``keep`` is 0). The in-house methods
    run every interval in one call;
    the SciPy methods one :func:`integrate_span` per interval. Each interval
    has its own step budget, and starts with the step size the previous one
    proposed (in-house methods).

    Parameters
    ----------
    fun : callable
        ``fun(t, y, out)``.
    times : ndarray, shape (K + 1,)
    keep : ndarray, shape (size,)
    add : ndarray, shape (K, size)
    method, rtol, atol, jac, max_steps, groups
        As for :func:`integrate_span`.
    what : callable, optional
        ``what(k)``, the name of interval k's solve for error messages.
    dense : bool
        Also return the dense output of every accepted step of every interval.

    Returns
    -------
    Y_end : ndarray, shape (K, size)
        The state at the end of each interval (before the next jump).
    stats : dict
        ``nfev``, ``njev``, ``nlu``, ``nsteps`` summed over the intervals.
    dense_output : StepwiseDenseOutput
        Only when ``dense``: one dense output over ``times[0] -> times[K]``
        whose steps are the accepted steps of all intervals (discontinuous at
        the interval boundaries, where the jumps are).
    """
    times = np.asarray(times, dtype=float)
    K = len(times) - 1
    what = what or (lambda k: f"solve over [{float(times[k])!r}, {float(times[k + 1])!r}]")
    if method in ADAPTIVE_TABLEAUX:
        with np.errstate(all="ignore"):
            try:
                res = integrate_rk_intervals(fun, times, keep, add, ADAPTIVE_TABLEAUX[method], rtol=rtol, atol=atol,
                                             max_steps=max_steps, groups=groups, dense=dense)
            except RKFailure as exc:
                k = exc.interval
                raise _rk_error(exc, what(k), float(times[k]), float(times[k + 1]), max_steps) from None
        stats = {"nfev": res["nfev"], "njev": 0, "nlu": 0, "nsteps": res["nsteps"]}
        return (res["Y_end"], stats, res["dense"]) if dense else (res["Y_end"], stats)
    Y_end = np.empty((K, add.shape[1]))
    stats = {"nfev": 0, "njev": 0, "nlu": 0, "nsteps": 0}
    step_times, interpolants = [float(times[0])], []
    for k in range(K):
        y0 = add[0].copy() if k == 0 else keep * Y_end[k - 1] + add[k]
        span = integrate_span(fun, float(times[k]), float(times[k + 1]), y0, method=method, rtol=rtol, atol=atol,
                              jac=jac, max_steps=max_steps, what=what(k), inplace=True, groups=groups, dense=dense)
        Y_end[k] = span.y_end
        for key in stats:
            stats[key] += getattr(span, key)
        if dense:
            step_times += span.step_times[1:]
            interpolants += span.interpolants
    if dense:
        return Y_end, stats, scipy_dense_output(step_times, interpolants)
    return Y_end, stats


# ---------------------------------------------------------------------------- switch times
def branch_margin(t_start, t_end):
    """The distance delta by which times are nudged off a switch time into the open segment.

    256 rounding errors of the span's largest time: far below any tolerance
    (an evaluation moved by delta changes f by delta |df/dt|, about 1e-13
    relative), yet large enough that a condition solved in floating point
    (w t - pi at t = pi / w) has its segment's sign there.
    """
    return 256 * np.finfo(float).eps * max(abs(float(t_start)), abs(float(t_end)), abs(float(t_end) - float(t_start)))


def switch_segments(t_start, t_end, switch_times):
    """The pieces ``[(a, b, lo, hi)]`` of [t_start, t_end] between switch times, in integration order.

    ``a -> b`` is the piece; ``[lo, hi]`` (ascending) is where its
    evaluations are clamped: the piece shrunk by :func:`branch_margin` at
    each end (to its midpoint when shorter than that), so that f is
    evaluated on the piece's own branch, also at a step ending on a switch.
    Switch times at or beyond the ends do not split.
    """
    direction = 1.0 if t_end >= t_start else -1.0
    inner = [float(tau) for tau in switch_times if direction * (tau - t_start) > 0 and direction * (t_end - tau) > 0]
    bounds = [float(t_start), *inner, float(t_end)]
    delta = branch_margin(t_start, t_end)
    out = []
    for a, b in zip(bounds[:-1], bounds[1:]):
        lo, hi, mid = min(a, b), max(a, b), 0.5 * (a + b)
        out.append((a, b, min(lo + delta, mid), max(hi - delta, mid)))
    return out


def on_branch(fun, lo, hi):
    """``fun(t, *args)`` evaluated at t clamped into [lo, hi] (see :func:`switch_segments`).

    Clamping t, rather than substituting each segment's branch into f
    symbolically, works for every field and every solver without generating
    a kernel per segment (a periodic switch has many segments); an RK stage
    at a switch time tau (the last stage of a step ending there, where
    Heaviside(0) = 1/2) then sees the segment's branch.
    """

    def clamped(t, *args):
        return fun(lo if t < lo else hi if t > hi else t, *args)

    return clamped


def integrate_segments(fun, t_start, t_end, y0, switch_times, *, jac=None, t_out=(), dense=False, **kwargs):
    """:func:`integrate_span` stopped and restarted at every switch time strictly inside the span.

    Each piece is a fresh solve whose right-hand side (and Jacobian) is
    evaluated on that piece's branch (:func:`on_branch`); the state is
    continuous across a switch, so each piece starts where the last ended.
    ``t_out`` (in integration order) may include the switch times; a time on
    a boundary is reported by the piece that ends there. Other arguments as
    for :func:`integrate_span` (``inplace=True`` is required).

    Returns
    -------
    SpanResult
        Over the whole span: counts summed, the dense output joined.
    """
    t_out = np.asarray(t_out, dtype=float).reshape(-1)
    direction = 1.0 if t_end >= t_start else -1.0
    y = np.asarray(y0, dtype=float)
    y_at = np.empty((t_out.size, y.size))
    counts = dict(nfev=0, njev=0, nlu=0, nsteps=0)
    k = 0
    parts = []
    for a, b, lo, hi in switch_segments(t_start, t_end, switch_times):
        k_end = k + int(np.searchsorted(direction * t_out[k:], direction * b, side="right"))
        span = integrate_span(
            on_branch(fun, lo, hi), a, b, y, jac=None if jac is None else on_branch(jac, lo, hi),
            t_out=t_out[k:k_end], dense=dense, **kwargs,
        )
        y_at[k:k_end] = span.y_at
        k = k_end
        y = span.y_end
        for key in counts:
            counts[key] += getattr(span, key)
        if dense:
            parts.append(span)
    out = SpanResult(y_at=y_at, y_end=y.copy(), interpolants=None, step_times=None, **counts)
    if dense:
        if parts[0].interpolants is not None:  # SciPy's methods
            out.step_times = [float(t_start)] + [t for p in parts for t in p.step_times[1:]]
            out.interpolants = [i for p in parts for i in p.interpolants]
        else:
            out._dense = join_dense([p.dense for p in parts])
    return out


def _no_switches(fun, t_start, t_end, y0, switch_times, **kwargs):
    """:func:`integrate_span` with the signature of :func:`integrate_segments` (no switch times)."""
    return integrate_span(fun, t_start, t_end, y0, **kwargs)


def join_dense(parts):
    """One dense output of consecutive pieces of one method (each starting where the last ended)."""
    if len(parts) == 1:
        return parts[0]
    if all(isinstance(p, RKDenseOutput) for p in parts):
        return joined_dense_output([(p.step_times, p._R) for p in parts])
    step_times = [float(parts[0].step_times[0])] + [float(t) for p in parts for t in p.step_times[1:]]
    return ScipyDenseOutput(step_times, [i for p in parts for i in p._interpolants])


def _blow_up_hint(y, fval, t, t_end):
    """A sentence when the state ``y`` or its rate of change ``fval`` at ``t`` looks like a finite-time blow-up,
    or when ``fval`` is NaN/inf at a finite state (the vector field is undefined there)."""
    if fval is not None and _moderate(y) and not np.all(np.isfinite(fval)):
        return _undefined_hint(y, t)
    finite = np.isfinite(y)
    ymax = float(np.max(np.abs(y[finite]))) if np.any(finite) else float("inf")
    fmax = float(np.max(np.abs(fval))) if fval is not None and np.all(np.isfinite(fval)) else float("inf")
    remaining = abs(t_end - t)
    if not np.all(finite) or ymax > 1e10 or fmax * remaining > 1e8 * max(ymax, 1.0):
        return (
            f"|z| reached {ymax:.3g} and |dz/dt| {fmax:.3g}: the solution may blow up in finite time "
            f"near t = {float(t)!r}"
        )
    return ""


def _moderate(y):
    """A finite state far from overflow: where f returns NaN or inf, f is undefined, not blowing up."""
    return bool(np.all(np.isfinite(y))) and float(np.max(np.abs(y), initial=0.0)) < 1e10


def _undefined_hint(y, t):
    ymax = float(np.max(np.abs(y))) if np.size(y) else 0.0
    return (
        f"the state is finite there (max |z| = {ymax:.3g}) but dz/dt is not: the vector field is undefined or "
        f"overflows at or near that state (a log or sqrt of a negative number, a division by zero, a power of a "
        "negative base?); check the initial state, the parameters and the time span"
    )


def _all_finite(a):
    """``np.isfinite(a).all()``, mostly by one reduction: a finite sum has finite terms, so only a
    non-finite sum (a NaN/inf entry, or an overflowing sum of huge ones) needs the exact test."""
    return math.isfinite(abs(np.add.reduce(a, axis=None))) or bool(np.isfinite(a).all())


class _Watched:
    """``fun(t, y)`` that remembers the first (t, y) where it returned NaN or inf.

    SciPy's solvers answer a NaN stage with ever smaller steps until "Required step size is less than
    spacing between numbers" (or, for Radau/BDF, a ValueError from their LU): this says why.
    """

    def __init__(self, fun):
        self.fun = fun
        self.bad = None

    def __call__(self, t, y):
        f = self.fun(t, y)
        if self.bad is None and not _all_finite(f):
            self.bad = (float(t), np.array(y, copy=True))
        return f


def _fail(what, solver, t_start, t_end, message, fun=None):
    bad = getattr(fun, "bad", None)
    if bad is not None and _moderate(bad[1]):
        # the vector field went NaN/inf at a finite state: undefined there, not a blow-up
        t_bad, y_bad = bad
        raise IntegrationError(
            f"the {what} failed at t = {float(solver.t)!r} (integrating from {t_start!r} to {t_end!r}): "
            f"{str(message).rstrip('.')}. The vector field returned NaN or inf at t = {t_bad!r}; "
            + _undefined_hint(y_bad, t_bad),
            t_reached=float(solver.t), t_target=float(t_end), solver_message=str(message),
        )
    fval = getattr(solver, "f", None)
    hints = [h for h in [_blow_up_hint(solver.y, fval, solver.t, t_end)] if h]
    hints.append("shorten the interval, check the parameters, or try a stiff method ('Radau', 'BDF')")
    raise IntegrationError(
        f"the {what} failed at t = {float(solver.t)!r} (integrating from {t_start!r} to {t_end!r}): "
        f"{str(message).rstrip('.')}. " + "; ".join(hints),
        t_reached=float(solver.t),
        t_target=float(t_end),
        solver_message=str(message),
    )


# ---------------------------------------------------------------------------- Jacobian assembly
class BlockJacobian:
    """Assembles a sparse (or dense, for LSODA) Jacobian from per-sample blocks.

    Placements are registered once; :meth:`build` takes the block arrays in
    the same order and returns the matrix. Two kinds of placement:

    * ``diag(row0, col0, r, c)``: a ``(B, r, c)`` array placed block-diagonally,
      sample ``b`` at rows ``row0 + b*r``, columns ``col0 + b*c``;
    * ``row(row0, col0, r, c)``: a ``(B, r, c)`` array placed side by side in
      the same rows ``row0 .. row0+r``, sample ``b`` at columns ``col0 + b*c``.
    """

    def __init__(self, size, batch, dense):
        self.size = size
        self.batch = batch
        self.dense = dense
        self._rows = []
        self._cols = []

    def diag(self, row0, col0, r, c):
        b = np.arange(self.batch)[:, None, None]
        i = np.arange(r)[None, :, None]
        j = np.arange(c)[None, None, :]
        self._rows.append(np.broadcast_to(row0 + b * r + i, (self.batch, r, c)).ravel())
        self._cols.append(np.broadcast_to(col0 + b * c + j, (self.batch, r, c)).ravel())

    def row(self, row0, col0, r, c):
        b = np.arange(self.batch)[:, None, None]
        i = np.arange(r)[None, :, None]
        j = np.arange(c)[None, None, :]
        self._rows.append(np.broadcast_to(row0 + i + 0 * b, (self.batch, r, c)).ravel())
        self._cols.append(np.broadcast_to(col0 + b * c + j, (self.batch, r, c)).ravel())

    def finish(self):
        self.rows = np.concatenate(self._rows) if self._rows else np.zeros(0, int)
        self.cols = np.concatenate(self._cols) if self._cols else np.zeros(0, int)
        return self

    def build(self, *blocks):
        data = np.concatenate([np.ravel(b) for b in blocks]) if blocks else np.zeros(0)
        if self.dense:
            out = np.zeros((self.size, self.size))
            np.add.at(out, (self.rows, self.cols), data)
            return out
        import scipy.sparse

        return scipy.sparse.csc_matrix((data, (self.rows, self.cols)), shape=(self.size, self.size))


def forward_jacobian(field, theta, batch, n, method):
    """``jac(t, y)`` for the forward system, or None when the field has no Jacobian."""
    if not field.has_jacobians:
        return None
    dense = method == "LSODA" or batch == 1
    if dense and batch == 1:

        def jac(t, y):
            return field.eval_jac_z(y.reshape(1, n), t, theta)[0]

        return jac
    asm = BlockJacobian(batch * n, batch, dense)
    asm.diag(0, 0, n, n)
    asm.finish()

    def jac(t, y):
        return asm.build(field.eval_jac_z(y.reshape(batch, n), t, theta))

    return jac


# ---------------------------------------------------------------------------- public solve
@dataclass
class Solution:
    """The result of :func:`solve`.

    Attributes
    ----------
    t : ndarray, shape (T,)
        The requested times ``ts``.
    z : ndarray, shape (T, n) or (T, B, n)
        The states at ``t`` (a batch axis when ``z0`` was batched).
    nfev, njev, nlu, nsteps : int
        Right-hand side and Jacobian evaluations, LU decompositions, steps.
    method : str
    rtol, atol : float
    sol : scipy.integrate.OdeSolution, odeverify._rk.RKDenseOutput or None
        Dense output over ``[ts[0], ts[-1]]`` when ``dense_output=True``
        (the latter for ``'dopri5'``, ``'tsit5'``); use :meth:`__call__`.
    """

    t: np.ndarray
    z: np.ndarray
    nfev: int
    njev: int
    nlu: int
    nsteps: int
    method: str
    rtol: float
    atol: object
    sol: object = None
    batched: bool = False
    _shape: tuple = field(default=(), repr=False)

    def __repr__(self):
        span = f"[{fmt(self.t[0], 'g')}, {fmt(self.t[-1], 'g')}]" if len(self.t) else "[]"
        return (f"<Solution {self.method}: z {np.shape(self.z)} at {len(self.t)} times in {span}, "
                f"{self.nsteps} steps, {self.nfev} f-evaluations{', dense output' if self.sol is not None else ''}>")

    def __call__(self, t):
        """The state at time(s) ``t`` from the dense output; shape ``np.shape(t) + z0.shape``."""
        if self.sol is None:
            raise InvalidArgumentError(
                "this Solution has no dense output, so it cannot be evaluated between the times ts; "
                "read its values at ts from .z, or call solve(..., dense_output=True)"
            )
        t = _as_float_array(t, "t")
        y = self.sol(t)  # (size,) or (size, k)
        y = np.moveaxis(np.asarray(y), 0, -1)
        return y.reshape(t.shape + self._shape)

    def plot(self, *, ax=None, names=None):
        """The states over time, the times ``t`` marked (:func:`odeverify.plotting.plot_solution`).

        Curves need ``solve(..., dense_output=True)``; otherwise the values at
        ``t`` are joined by straight segments. Returns the matplotlib Figure.
        """
        from .plotting import plot_solution

        return plot_solution(self, ax=ax, names=names)


def solve(
    system,
    z0,
    ts,
    theta=None,
    *,
    method="DOP853",
    rtol=1e-8,
    atol=1e-8,
    dense_output=False,
    max_steps=DEFAULT_MAX_STEPS,
):
    """Solve dz/dt = f(z, t; theta), z(ts[0]) = z0, and report z at every time in ``ts``.

    Parameters
    ----------
    system : ODESystem, MLPField, vector field or callable
        The right-hand side: any :class:`~odeverify.AbstractVectorField`, or
        a function ``f(z, t, theta)`` written with ``autograd.numpy`` taking
        ``z`` of shape (B, n) (see :class:`~odeverify.CallableField`).
    z0 : array_like, shape (n,) or (B, n)
        Initial state, or a batch of B initial states solved together.
    ts : array_like, shape (T,)
        Strictly increasing or strictly decreasing times, ``T >= 2``;
        ``ts[0]`` is the initial time.
    theta : array_like, shape (p,)
        Parameters (``None`` when the system has none).
    method : {'DOP853', 'RK45', 'RK23', 'Radau', 'BDF', 'LSODA', 'dopri5', 'tsit5'}
        A solver of :func:`scipy.integrate.solve_ivp` (implicit methods get
        the analytic Jacobian, sparse block-diagonal for a batch), or one of
        odeverify's own explicit 5(4) pairs, Dormand–Prince ``'dopri5'``
        (the steps of SciPy's RK45) and Tsitouras ``'tsit5'``, which cost
        far less Python time per step.
    rtol, atol : float
        Tolerances; ``atol`` may be an array of shape (n,).
    dense_output : bool
        Keep the step interpolants, so that the returned solution can be
        called at any time in the span.
    max_steps : int
        Step budget; exceeding it raises :class:`~odeverify.errors.IntegrationError`.

    Returns
    -------
    Solution

    Raises
    ------
    InvalidArgumentError, InvalidTypeError
        For bad inputs.
    IntegrationError
        When the solve fails (finite-time blow-up, step size collapse).

    Examples
    --------
    >>> import numpy as np, odeverify
    >>> exp = odeverify.ODESystem.from_strings("x", "", ["x"])
    >>> sol = odeverify.solve(exp, [1.0], [0.0, 1.0], rtol=1e-12, atol=1e-12)
    >>> bool(abs(sol.z[-1, 0] - np.e) < 1e-10)
    True
    """
    fld, z0_2d, batched, ts, theta = check_problem(system, z0, ts, theta)
    n = fld.n_states
    method = check_method(method)
    rtol, atol = check_tolerances(rtol, atol, n)
    max_steps = check_positive_int(max_steps, "max_steps")
    B = z0_2d.shape[0]
    atol_flat = atol if np.ndim(atol) == 0 else np.tile(atol, B)
    jac = forward_jacobian(fld, theta, B, n, method) if method in IMPLICIT_METHODS else None
    # a switch in t (heaviside(t - s), ...) stops the solve and restarts it on the next branch
    switches = fld.switch_times(theta, ts[0], ts[-1]).times if fld.discontinuities else ()
    res = (integrate_segments if len(switches) else _no_switches)(
        fld.solver_kernels(theta, B).f,
        float(ts[0]),
        float(ts[-1]),
        z0_2d.reshape(-1),
        switches,
        method=method,
        rtol=rtol,
        atol=atol_flat,
        jac=jac,
        t_out=ts,
        dense=dense_output,
        max_steps=max_steps,
        inplace=True,
    )
    z = res.y_at.reshape(len(ts), B, n)
    if not batched:
        z = z[:, 0, :]
    sol = None
    if dense_output:
        if res.interpolants is None:
            sol = res.dense
        else:
            import scipy.integrate

            sol = scipy.integrate.OdeSolution(np.asarray(res.step_times), res.interpolants)
    return Solution(
        t=ts,
        z=z,
        nfev=res.nfev,
        njev=res.njev,
        nlu=res.nlu,
        nsteps=res.nsteps,
        method=method,
        rtol=rtol,
        atol=atol,
        sol=sol,
        batched=batched,
        _shape=(B, n) if batched else (n,),
    )
