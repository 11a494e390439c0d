"""Forward solves that locate the crossings of state conditions (events) and restart on the new branch.

A right-hand side with ``heaviside(x - c)`` switches where the *solution*
crosses x = c, at a time tau known only during the solve. :func:`integrate_events`
integrates one smooth branch (f with every state condition's sign fixed:
``ODESystem.branch``), evaluates the conditions g(z, t, theta) at the accepted
step boundaries from the dense output (one array evaluation per window),
locates the first sign change by Brent's method on the dense interpolant
(tau to a few rounding errors), truncates the window there and restarts on
the branch the new signs select. Each crossing is returned as an
:class:`~odeverify._switches.Event` with its saltation data.

Refused with :class:`~odeverify.errors.IntegrationError`, naming the condition
and the time: a branch that pushes the solution straight back across the
surface (sliding or chattering: Filippov solutions are out of scope), a
crossing where the solution grazes the surface (n_z . f = 0, the saltation
matrix is undefined), more than :data:`~odeverify._switches.MAX_SWITCHES`
events. A sign change that starts and ends within one accepted step is not
seen (as in every event-locating solver).

This module builds on :mod:`odeverify._integrate`; it imports nothing from the
higher-level modules (the field's ``branch`` and ``state_conditions`` come in
as the system argument).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._integrate import SpanResult, integrate_span, join_dense
from ._rk import RKDenseOutput, ScipyDenseOutput
from ._switches import MAX_SWITCHES, Event
from .errors import IntegrationError

__all__ = ["integrate_events", "EventSolve", "EventSegment"]


@dataclass
class EventSegment:
    """One piece of an event-located solve: ``start -> end`` on the branch ``signs``."""

    start: float
    end: float
    signs: tuple
    dense: object  # a StepwiseDenseOutput over start -> end


@dataclass
class EventSolve:
    """The result of :func:`integrate_events`.

    Attributes
    ----------
    y_at : ndarray, shape (len(t_out), n)
    y_end : ndarray, shape (n,)
    segments : list of EventSegment
        In integration order; segment k + 1 starts at ``events[k].time``.
    events : tuple of Event
    nfev, njev, nlu, nsteps : int
        Summed over every window (including the steps past an event, discarded).
    """

    y_at: np.ndarray
    y_end: np.ndarray
    segments: list
    events: tuple
    nfev: int = 0
    njev: int = 0
    nlu: int = 0
    nsteps: int = 0

    @property
    def dense(self):
        """One dense output over the whole span (continuous across the events)."""
        return join_dense([s.dense for s in self.segments])

    def as_span(self):
        """A :class:`~odeverify._integrate.SpanResult` of the whole solve (for :func:`odeverify.solve`)."""
        return SpanResult(y_at=self.y_at, y_end=self.y_end, nfev=self.nfev, njev=self.njev, nlu=self.nlu,
                          nsteps=self.nsteps, interpolants=None, step_times=None, _dense=self.dense)


def integrate_events(system, theta, t_start, t_end, z0, *, t_out=(), jac_for=None, **kwargs):
    """Integrate ``system`` (one state, B = 1) from ``t_start`` to ``t_end``, stopping at every event.

    Parameters
    ----------
    system : ODESystem
        With ``state_conditions`` (a StateConditions) and ``branch(signs)``.
    theta : ndarray, shape (p,)
    t_start, t_end : float
    z0 : ndarray, shape (n,)
    t_out : sequence of float
        Times in integration order at which to report the state.
    jac_for : callable, optional
        ``jac_for(branch_system) -> jac(t, y)`` for the implicit methods.
    **kwargs
        ``method``, ``rtol``, ``atol``, ``max_steps``, ``what`` as for
        :func:`~odeverify._integrate.integrate_span`.

    Returns
    -------
    EventSolve
    """
    cond = system.state_conditions
    theta = np.asarray(theta, dtype=float)
    direction = 1.0 if t_end >= t_start else -1.0
    span_len = abs(t_end - t_start)
    t, z = float(t_start), np.asarray(z0, dtype=float).reshape(-1).copy()
    signs = _initial_signs(system, cond, theta, t, z, direction)
    segments, events, counts = [], [], dict(nfev=0, njev=0, nlu=0, nsteps=0)
    window = span_len
    pieces = []  # windows of the current branch, joined when the branch ends
    while True:
        stop = t_end if abs(t_end - t) <= window else t + direction * window
        kern = system.branch(signs).solver_kernels(theta, 1).f
        span = _window(system, signs, kern, t, stop, z, jac_for, counts, kwargs)
        found = _first_crossing(cond, theta, span.dense, signs, direction)
        if found is None:
            pieces.append(span.dense)
            t, z = stop, span.y_end.copy()
            if t == t_end:
                segments.append(EventSegment(_seg_start(segments, t_start), t, signs, join_dense(pieces)))
                break
            window *= 2.0
            continue
        tau, crossed = found
        z_tau = span.dense.at(tau).copy()
        pieces.append(_truncate(span.dense, tau))
        segments.append(EventSegment(_seg_start(segments, t_start), tau, signs, join_dense(pieces)))
        pieces = []
        new = tuple(-s if i in crossed else s for i, s in enumerate(signs))
        events.append(_event(system, cond, theta, tau, z_tau, signs, new, crossed, kern, direction))
        if len(events) > MAX_SWITCHES:
            raise IntegrationError(
                f"the {kwargs.get('what', 'solve')} crossed state conditions over MAX_SWITCHES={MAX_SWITCHES} times "
                f"before t = {tau!r} (a Zeno or chattering solution?); last: {cond.describe(crossed[0])}",
                t_reached=tau, t_target=float(t_end), solver_message="too many events",
            )
        window = max(2.0 * abs(tau - segments[-1].start), 1e-3 * span_len)
        t, z, signs = tau, z_tau, new
        if t == t_end:
            break
    y_at = _outputs(segments, np.asarray(t_out, dtype=float).reshape(-1), direction, z0, z, t_start, t_end)
    return EventSolve(y_at=y_at, y_end=z, segments=segments, events=tuple(events), **counts)


def _seg_start(segments, t_start):
    return float(segments[-1].end) if segments else float(t_start)


def _window(system, signs, kern, t, stop, z, jac_for, counts, kwargs):
    """One integration of the branch ``signs`` over t -> stop, with dense output; counts accumulated."""
    jac = None if jac_for is None else jac_for(system.branch(signs))
    span = integrate_span(kern, t, stop, z, jac=jac, dense=True, inplace=True, **kwargs)
    for key in counts:
        counts[key] += getattr(span, key)
    return span


def _first_crossing(cond, theta, dense, signs, direction):
    """``(tau, crossed)``: the first time in the window where a condition leaves its branch's sign, or None.

    The conditions are evaluated at every step boundary in one array
    operation; in the first step where one has the wrong sign, each such
    condition's root is found with Brent's method on the step's interpolant,
    and the earliest (in integration order) is tau. ``crossed`` lists every
    condition whose root lies within a few rounding errors of tau (a
    condition and its negative cross together).
    """
    from scipy.optimize import brentq

    st = dense.step_times
    if st.size < 2:
        return None
    s = np.asarray(signs, dtype=float)
    G = cond.values(dense.at_many(st), st, theta) * s  # (k, m), > 0 on the branch
    wrong = np.flatnonzero(np.any(G[1:] < 0, axis=1))
    if not wrong.size:
        return None
    j = int(wrong[0]) + 1
    lo, hi = float(st[j - 1]), float(st[j])
    xtol = 4 * np.finfo(float).eps * max(abs(lo), abs(hi), 1e-300)
    roots = {}
    for i in np.flatnonzero(G[j] < 0):

        def g(t, i=i):
            return float(cond.values(dense.at(t)[None, :], np.array([t]), theta)[0, i]) * s[i]

        roots[int(i)] = lo if G[j - 1, i] <= 0 else brentq(g, lo, hi, xtol=xtol, rtol=4 * np.finfo(float).eps)
    tau = min(roots.values(), key=lambda r: direction * r)
    crossed = tuple(sorted(i for i, r in roots.items() if abs(r - tau) <= 64 * xtol))
    return tau, crossed


def _truncate(dense, tau):
    """``dense`` cut at ``tau`` (inside its span): the steps before it, the last one ending at tau."""
    st = dense.step_times
    direction = 1.0 if st[-1] >= st[0] else -1.0
    j = int(np.searchsorted(direction * st, direction * tau, side="left"))  # st[j - 1] < tau <= st[j]
    j = min(max(j, 1), st.size - 1)
    times = np.append(st[:j], tau)
    if isinstance(dense, RKDenseOutput):
        R = dense._R[:j].copy()
        scale = (tau - st[j - 1]) / (st[j] - st[j - 1])  # the last step's fraction s -> s * scale
        R[-1] *= (scale ** np.arange(R.shape[1]))[:, None]
        return RKDenseOutput(times, R)
    return ScipyDenseOutput(times, list(dense._interpolants[:j]))


def _rate(system, cond, theta, signs, t, z, i, direction):
    """d g_i / dt along the branch ``signs`` at (z, t), in the direction of integration."""
    f = system.branch(signs).eval_f(z[None, :], t, theta)[0]
    n_z, g_t, _ = cond.gradients(z, t, theta)
    return direction * (float(np.dot(n_z[i], f)) + float(g_t[i])), f


def _initial_signs(system, cond, theta, t, z, direction):
    """The branch at the start; a condition that is exactly 0 there takes the side the solution moves into."""
    g = cond.values(z[None, :], np.array([t]), theta)[0]
    signs = list(cond.signs(g))
    for i in np.flatnonzero(g == 0):
        ok = []
        for s in (1, -1):
            trial = tuple(s if k == i else v for k, v in enumerate(signs))
            rate, _ = _rate(system, cond, theta, trial, t, z, i, direction)
            if s * rate > 0:
                ok.append(s)
        if len(ok) != 1:
            raise IntegrationError(
                f"the solve starts on the switching surface of {cond.describe(i)} at t = {t!r} and "
                + ("both branches move away from it (the solution is not unique)" if ok else
                   "neither branch leaves it: the solution slides along the surface (a Filippov solution, "
                   "which odeverify does not integrate)")
                + "; move z0 off the surface",
                t_reached=t, t_target=t, solver_message="starts on a switching surface",
            )
        signs[i] = ok[0]
    return tuple(signs)


def _event(system, cond, theta, tau, z, old, new, crossed, kern, direction):
    """The Event at tau, after checking that the solution crosses the surface (no grazing, no sliding)."""
    i = crossed[0]
    rate_b, f_b = _rate(system, cond, theta, old, tau, z, i, direction)
    rate_a, f_a = _rate(system, cond, theta, new, tau, z, i, direction)
    n_z, g_t, g_theta = cond.gradients(z, tau, theta)
    scale = float(np.linalg.norm(n_z[i]) * max(np.linalg.norm(f_b), np.linalg.norm(f_a)) + abs(g_t[i]))
    if not old[i] * rate_b < -1e-10 * scale:
        raise IntegrationError(
            f"the solution grazes the switching surface of {cond.describe(i)} at t = {tau!r} "
            f"(d g/dt = {rate_b * direction:.3g} there): the crossing time is not differentiable; "
            "move the parameters or z0 so that it crosses cleanly",
            t_reached=tau, t_target=tau, solver_message="grazing event",
        )
    if not new[i] * rate_a > 1e-10 * scale:
        raise IntegrationError(
            f"chattering at t = {tau!r}: after the solution crosses the surface of {cond.describe(i)}, the new "
            f"branch pushes it straight back (d g/dt = {rate_a * direction:.3g} there, on the wrong side), so it "
            "would slide along the surface; sliding (Filippov) solutions are not supported: smooth the switch "
            "(e.g. sigmoid(k*g) for heaviside(g)) or change the model",
            t_reached=tau, t_target=tau, solver_message="chattering",
        )
    return Event(time=float(tau), condition=int(cond.source[i]), z=z.copy(), f_before=f_b, f_after=f_a,
                 n_z=n_z[i].copy(), g_t=float(g_t[i]), g_theta=g_theta[i].copy())


def _outputs(segments, t_out, direction, z0, z_end, t_start, t_end):
    """The state at ``t_out`` from the segments' dense outputs; the ends exactly."""
    y_at = np.empty((t_out.size, np.size(z0)))
    ends = np.array([s.end for s in segments])
    k = np.searchsorted(direction * ends, direction * t_out, side="left")  # the segment ending at or after t
    for m, seg in enumerate(segments):
        rows = np.flatnonzero(np.minimum(k, len(segments) - 1) == m)
        if rows.size:
            y_at[rows] = seg.dense.at_many(t_out[rows])
    y_at[t_out == t_start] = np.asarray(z0, dtype=float).reshape(-1)
    y_at[t_out == t_end] = z_end
    return y_at
