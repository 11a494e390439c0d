"""State events in an adjoint solve (``heaviside(c - x)``, sign, Piecewise on the state): saltation terms.

:func:`_event_gradients` is :func:`odeverify.adjoint_gradients` for a field
whose f switches where a condition on the state crosses zero: the forward
solve locates the crossings, the backward sweep runs segment by segment on
each one's smooth branch, and the adjoint jumps at each crossing by the
transposed saltation matrix. Used by :mod:`odeverify._adjoint`, below it.
"""

from __future__ import annotations

import numpy as np

from ._adjoint_backward import _backward_system, _observation_time_gradients
from ._adjoint_quadrature import _parameter_and_time_integrals
from ._adjoint_result import AdjointResult, SolverStats
from ._integrate import check_event_problem, forward_jacobian, integrate_intervals
from ._loss import loss_and_jumps
from ._validate import IMPLICIT_METHODS


def _event_gradients(fld, z0_2d, batched, ts, theta, loss, *, mode, method, rtol, atol, max_steps):
    """:func:`adjoint_gradients` for a field with state events (B = 1; odeverify._events).

    The forward solve stops at every crossing tau of a state condition g
    (:func:`~odeverify._events.integrate_events`); between crossings f is one
    smooth branch, whose own kernels run the backward sweep of that segment.
    At each crossing, going backwards, the adjoint jumps by the transposed
    saltation matrix, a^- = a^+ + n_z w with w = (f_a - f_b) . a^+ / D, and
    dL/dtheta and dL/dt_0 gain g_theta w and g_t w (see
    :class:`~odeverify._switches.Event` for the derivation). A crossing within
    rounding of an observation time is taken as just before it.
    """
    n, p, T = fld.n_states, fld.n_params, len(ts)
    check_event_problem(fld, z0_2d.shape[0], fld.switch_times(theta, ts[0], ts[-1]).times, "adjoint_gradients")
    stats = SolverStats()

    fwd = _forward_with_events(fld, z0_2d, ts, theta, method=method, rtol=rtol, atol=atol, max_steps=max_steps)
    stats.nfev_forward, stats.njev_forward, stats.nlu = fwd.nfev, fwd.njev, fwd.nlu
    stats.nsteps_forward = fwd.nsteps
    zs = fwd.y_at.reshape(T, 1, n)
    zs_user = zs if batched else zs[:, 0, :]
    value, g = loss_and_jumps(loss, zs_user.copy())
    g = g.reshape(T, n)
    t_grad = np.zeros(T)
    t_grad[1:] = _observation_time_gradients(fld, theta, zs[1:], ts[1:], g[1:, None, :])

    # ---------------------------------------------------------------- backward, segment by segment
    sweep_options = dict(mode=mode, method=method, rtol=rtol, atol_z=atol, atol_a=float(np.min(atol)),
                         max_steps=max_steps)
    a_off = n if mode == "backsolve" else 0
    extra_theta, extra_t = np.zeros(p), 0.0  # the event terms g_theta w, g_t w
    y = None
    a_theta, a_t, nquad = np.zeros(p), 0.0, 0
    drift = np.zeros(T - 1)
    for k in range(len(fwd.segments) - 1, -1, -1):
        seg = fwd.segments[k]
        sub = fld.branch(seg.signs)
        out, nodes, size = _segment_sweep(sub, seg, y, ts, theta, g, t_grad, zs, **sweep_options)
        for key, name in [("nfev", "nfev_backward"), ("njev", "njev_backward"), ("nlu", "nlu"),
                          ("nsteps", "nsteps_backward")]:
            setattr(stats, name, getattr(stats, name) + out[1][key])
        stats.backward_state_size = size
        if mode == "backsolve":
            _segment_drift(drift, out[0], nodes, ts, zs)
        if mode == "quadrature":
            th, at, nq = _parameter_and_time_integrals(sub, theta, seg.dense, out[2], method, 1, n)
            a_theta, a_t, nquad = a_theta + th, a_t + at, nquad + nq
        y = out[0][-1].copy()
        if k > 0:  # the event that starts this segment: a^- = S^T a^+
            event = fwd.events[k - 1]
            w = _pull_back(event, y, a_off, n, mode)
            extra_theta += event.g_theta * w
            extra_t += event.g_t * w
    stats.nquadrature = nquad

    # ---------------------------------------------------------------- the gradients at t_0
    a_plus = y[a_off : a_off + n].copy()
    if mode == "quadrature":
        a_t -= float(np.sum(t_grad[1:]))
    else:
        a_theta, a_t = y[a_off + n : a_off + n + p].copy(), float(y[-1])
    a_theta = a_theta + extra_theta
    a_t += extra_t
    t_grad[0] = a_t
    f0 = fld.branch(fwd.segments[0].signs).eval_f(z0_2d, float(ts[0]), theta)[0]
    t0_identity = -float(np.dot(a_plus, f0))
    rec_err = None
    if mode == "backsolve":
        rec_err = float(np.max(np.abs(y[:n] - z0_2d[0])))
    return AdjointResult(
        loss=value,
        z0=(a_plus + g[0])[None, :] if batched else a_plus + g[0],
        theta=a_theta,
        t=t_grad,
        zs=zs_user,
        ts=ts,
        mode=mode,
        method=method,
        rtol=rtol,
        atol=atol,
        stats=stats,
        z0_reconstruction_error=rec_err,
        backsolve_drift=drift if mode == "backsolve" else None,
        diagnostics={"t0_via_a_t": a_t, "t0_via_identity": t0_identity, "t0_discrepancy": abs(a_t - t0_identity)},
        events=fwd.events,
    )


def _forward_with_events(fld, z0_2d, ts, theta, *, method, rtol, atol, max_steps):
    """The forward solve, stopped and restarted at every crossing (:func:`~odeverify._events.integrate_events`).

    Returns
    -------
    EventSolve
        ``y_at`` of shape (T, n), the ``segments`` between crossings (each
        with its branch's signs and dense output) and the ``events``.
    """
    from ._events import integrate_events

    n = fld.n_states
    implicit = method in IMPLICIT_METHODS

    def jac_for(branch):
        return forward_jacobian(branch, theta, 1, n, method)

    return integrate_events(fld, theta, float(ts[0]), float(ts[-1]), z0_2d.reshape(-1), t_out=ts,
                            jac_for=jac_for if implicit else None, method=method, rtol=rtol, atol=atol,
                            max_steps=max_steps, what="forward solve")


def _segment_sweep(sub, seg, y, ts, theta, g, t_grad, zs, *, mode, method, rtol, atol_z, atol_a, max_steps):
    """The backward sweep over one segment between crossings, on its branch ``sub``, from ``y`` at its end.

    ``y`` is the backward state after the later segment's event (None for
    the last segment: zeros). The observation times in (start, end] add
    their jumps a += g_i, a_t -= dL/dt_i (backsolve: z restarts at zs[i]).

    Returns
    -------
    out : tuple
        :func:`integrate_intervals` over the segment's nodes (with the dense
        output in quadrature mode).
    nodes : list of float
        From the segment's end to its start: the observation times inside.
    size : int
        The size of the backward state.
    """
    n, T = sub.n_states, len(ts)
    direction = 1.0 if ts[-1] >= ts[0] else -1.0
    a_off = n if mode == "backsolve" else 0
    kern = sub.solver_kernels(theta, 1)
    fun, jac, size, groups, atol_b = _backward_system(
        mode, sub, kern, theta, 1, method, None if mode == "backsolve" else seg.dense, atol_z, atol_a
    )
    # the observation times in (start, end] of the segment, backwards; t_0 ends the first segment
    inside = [i for i in range(T - 1, 0, -1)
              if direction * (ts[i] - seg.start) > 0 and direction * (seg.end - ts[i]) >= 0]
    nodes = [seg.end] + [float(ts[i]) for i in inside if ts[i] != seg.end] + [seg.start]
    jumps = np.zeros((len(nodes) - 1, size))  # the state at the start of each interval, less keep * previous
    keep = np.ones(size)
    if mode == "backsolve":
        keep[:n] = 0.0
    if y is None:
        y = np.zeros(size)
    jumps[0] = y
    for i in inside:  # the observation jumps a += g_i, a_t -= dL/dt_i (backsolve: z restarts at zs[i])
        row = 0 if ts[i] == seg.end else nodes.index(float(ts[i]))
        jumps[row, a_off : a_off + n] += g[i]
        if mode != "quadrature":
            jumps[row, -1] -= t_grad[i]
        if mode == "backsolve":
            jumps[row, :n] = zs[i, 0]
    out = integrate_intervals(fun, np.array(nodes), keep, jumps, method=method, rtol=rtol, atol=atol_b, jac=jac,
                              max_steps=max_steps, groups=groups, dense=(mode == "quadrature"),
                              what=lambda j, nodes=nodes: f"backward (adjoint) solve over "
                              f"[{min(nodes[j], nodes[j + 1])!r}, {max(nodes[j], nodes[j + 1])!r}]")
    return out, nodes, size


def _segment_drift(drift, Y_end, nodes, ts, zs):
    """Backsolve mode: the reconstructed z against the forward one at each observation ending an interval (in place)."""
    T, n = len(ts), zs.shape[2]
    for j in range(len(nodes) - 1):
        hit = np.flatnonzero(ts[: T - 1] == nodes[j + 1])
        if hit.size:
            drift[hit[0]] = float(np.max(np.abs(Y_end[j, :n] - zs[hit[0], 0])))


def _pull_back(event, y, a_off, n, mode):
    """Across ``event``, backwards: a^- = S^T a^+ in ``y`` (in place; backsolve: z restarts at the event's state).

    Returns
    -------
    w : float
        (f_a - f_b) . a^+ / D, the factor of the event's terms g_theta w and g_t w.
    """
    a_minus, w = event.pull_back(y[a_off : a_off + n])
    y[a_off : a_off + n] = a_minus
    if mode == "backsolve":
        y[:n] = event.z
    return w
