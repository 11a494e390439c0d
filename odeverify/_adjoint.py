"""adjoint_gradients: dL/dz0, dL/dtheta and dL/dt_i by the continuous adjoint method.

The algorithm is here, as named steps; its parts live below it, one module each:
``_adjoint_result`` (AdjointResult, AdjointTrajectory, SolverStats, BacksolveDriftWarning),
``_adjoint_backward`` (the backward system of each mode, its Jacobian), ``_adjoint_quadrature``
(quadrature mode's parameter integrals), ``_adjoint_switches`` (switches in t) and ``_adjoint_events``
(state events, its own sweep). Every name once defined here is still importable from here.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from ._adjoint_backward import (  # noqa: F401 (the Jacobians: re-exported)
    _backsolve_jacobian,
    _backward_system,
    _interpolated_jacobian,
    _observation_time_gradients,
    _quadrature_jacobian,
)
from ._adjoint_events import _event_gradients
from ._adjoint_quadrature import (  # noqa: F401 (METHOD_ORDERS, QUADRATURE_CHUNK, gauss_legendre_nodes: re-exported)
    METHOD_ORDERS,
    QUADRATURE_CHUNK,
    _parameter_and_time_integrals,
    gauss_legendre_nodes,
)
from ._adjoint_result import AdjointResult, AdjointTrajectory, BacksolveDriftWarning, SolverStats
from ._adjoint_switches import _clamp_range, _span, _switch_plan, _SwitchPlan  # noqa: F401 (_clamp_range, _SwitchPlan: re-exported)
from ._integrate import (
    DEFAULT_MAX_STEPS,
    forward_jacobian,
    integrate_intervals,
    integrate_segments,
)
from ._loss import loss_and_jumps
from ._validate import (
    IMPLICIT_METHODS,
    check_method,
    check_mode,
    check_positive_int,
    check_problem,
    check_tolerances,
)
from .errors import NonDifferentiableWarning

__all__ = ["adjoint_gradients", "AdjointResult", "AdjointTrajectory", "SolverStats", "BacksolveDriftWarning"]


def adjoint_gradients(
    system,
    z0,
    ts,
    theta=None,
    loss=None,
    *,
    mode="interpolated",
    method="DOP853",
    rtol=1e-8,
    atol=1e-8,
    max_steps=DEFAULT_MAX_STEPS,
    keep_adjoint=False,
):
    r"""Gradients of a loss on the states at ``ts`` by the continuous adjoint method.

    Solves dz/dt = f(z, t; theta), z(t_0) = z0 forward, evaluates
    L(z(t_0), ..., z(t_N)), then integrates the adjoint a(t) = dL/dz(t),
    da/dt = -(df/dz)^T a, together with a_theta and a_t backwards interval by
    interval, adding the jump dL/dz(t_i) at every observation time (notes
    section 4.3; Chen et al. 2018, Algorithm 2 extended to several times).

    Parameters
    ----------
    system : ODESystem, MLPField, vector field or callable
        Any :class:`~odeverify.AbstractVectorField`, or a function
        ``f(z, t, theta)`` written with ``autograd.numpy`` taking ``z`` of
        shape (B, n) (see :class:`~odeverify.CallableField`). Every kind goes
        through the same adjoint code, which calls only the field's methods.
    z0 : array_like, shape (n,) or (B, n)
        Initial state, or a batch of B initial states (one vectorized solve;
        theta and the times are shared, so their gradients are summed over
        the batch).
    ts : array_like, shape (T,)
        Strictly increasing or strictly decreasing, T >= 2; ``ts[0]`` is t_0
        and every entry is an observation time.
    theta : array_like, shape (p,)
    loss : callable
        ``loss(zs) -> float`` with ``zs`` of shape (T, n), or (T, B, n) for a
        batch, written with ``autograd.numpy``; its gradient gives the jumps
        of ``a`` at the observation times.
    mode : {'interpolated', 'backsolve', 'quadrature'}
        ``'backsolve'`` reconstructs z backwards alongside a (memory does not
        grow with the number of steps; each interval restarts from the
        forward state at its right end) and reports how far the
        reconstruction drifts; ``'interpolated'`` takes z from the forward
        solution's dense output (robust when the backward reconstruction is
        unstable). ``'quadrature'`` (SciMLSensitivity's QuadratureAdjoint /
        GaussAdjoint) takes z from the forward dense output too but
        integrates a alone backwards (B n states instead of B n + p + 1),
        keeping the backward steps' dense output; then dL/dtheta = int a^T
        df/dtheta dt and the integral of a^T df/dt (for dL/dt_0) come from
        Gauss–Legendre quadrature on every piece between the accepted steps
        of both solves (nodes from the method's order,
        ``odeverify._adjoint.gauss_legendre_nodes``), all nodes in a few
        vectorized kernel calls (of ``QUADRATURE_CHUNK`` samples each, which
        bounds their temporaries). The quadrature is as accurate as the steps resolve a and z; a
        df/dtheta that varies where neither f nor a does (e.g. f = k g(t)
        at k = 0) is under-resolved in this mode. The step control watches a
        only, and an implicit method's Newton systems have B n unknowns, so it
        is the fastest accurate choice with ``'Radau'``, ``'BDF'``,
        ``'LSODA'`` on fields with many parameters (half the time of
        ``'interpolated'`` with Radau on a 322-parameter MLP). With the
        explicit methods it costs about as much as ``'interpolated'`` or more:
        the quadrature evaluates all products at every node of both step
        sequences. Memory grows with the number of steps (it keeps the
        forward and the backward dense output), like ``'interpolated'``; only
        ``'backsolve'`` is flat.
    method : str
        The solver of both ways: one of :func:`scipy.integrate.solve_ivp`
        (``'DOP853'``, ``'RK45'``, ``'RK23'``, ``'Radau'``, ``'BDF'``,
        ``'LSODA'``) or odeverify's ``'dopri5'``, ``'tsit5'``, which are much
        faster on small and batched problems (benchmarks/README.md) and
        control the backward error with a mixed norm: the largest of the
        RMS errors of z, a, a_theta and a_t, so that a large batch does not
        dilute the error of the summed parameter gradient.
    rtol, atol : float
        Tolerances of both solves.
    max_steps : int
        Step budget of each solve.
    keep_adjoint : bool
        Keep the dense output of the forward solve and of the backward
        sweep, so that the result can evaluate the adjoint ``a(t)``
        (:meth:`AdjointResult.adjoint`) and the state ``z(t)``
        (:meth:`AdjointResult.state`) anywhere in the span, and be plotted
        (:meth:`AdjointResult.plot`). Memory grows with the number of steps.

    Returns
    -------
    AdjointResult
        ``.loss``, ``.z0``, ``.theta``, ``.t`` and solver statistics.

    Notes
    -----
    With g_i = dL/dz(t_i) (the direct partial derivative):

    * dL/dt_i = g_i . f(z(t_i), t_i) for i >= 1;
    * dL/dt_0 = a_t(t_0), where a_t starts at 0, jumps by -g_i . f(z(t_i),
      t_i) at every t_i, i >= 1, and obeys da_t/dt = -a^T df/dt;
    * dL/dtheta = a_theta(t_0), with a_theta(t_N) = 0;
    * dL/dz0 = a(t_0) + g_0.

    A jump of f where a condition on the state crosses zero (``heaviside(c -
    x)``, sign, Piecewise) is an event: the forward solve locates each
    crossing tau by root finding and restarts on the new branch, and the
    adjoint jumps there by the transposed saltation matrix, with dL/dtheta and
    dL/dt_0 gaining the terms of d tau (:class:`odeverify._switches.Event`;
    ``.events`` of the result). Events need an unbatched z0 and no switches
    in t in the same field; sliding along a switching surface is refused.

    ``stats.backward_state_size`` is the size of the backward system and
    ``stats.nquadrature`` the number of quadrature nodes (quadrature mode).

    References
    ----------
    R. T. Q. Chen, Y. Rubanova, J. Bettencourt, D. Duvenaud, "Neural Ordinary
    Differential Equations", NeurIPS 2018.

    Examples
    --------
    >>> import numpy as np, odeverify
    >>> growth = odeverify.ODESystem.from_strings("x", "a", ["a*x"])
    >>> res = odeverify.adjoint_gradients(growth, [1.0], [0.0, 1.0], [0.5],
    ...                                   lambda zs: zs[-1, 0] ** 2,
    ...                                   rtol=1e-10, atol=1e-10)
    >>> bool(np.isclose(res.theta[0], 2 * np.e, rtol=1e-8))  # d/da of e^(2a) at a = 1/2
    True
    """
    prob = _validated(system, z0, ts, theta, loss, mode=mode, method=method, rtol=rtol, atol=atol,
                      max_steps=max_steps, keep_adjoint=keep_adjoint)
    if prob.fld.state_conditions is not None:  # switches in the state: events located during the solve
        return _event_gradients(prob.fld, prob.z0_2d, prob.batched, prob.ts, prob.theta, prob.loss, mode=prob.mode,
                                method=prob.method, rtol=prob.rtol, atol=prob.atol, max_steps=prob.max_steps)
    kernels = prob.fld.solver_kernels(prob.theta, prob.B)
    plan = _switch_plan(prob.fld, prob.theta, prob.ts)  # switches in t: both solves stop there (None without)

    fwd, z_nodes, zs = _forward_solve(prob, kernels, plan, dense=(prob.mode != "backsolve" or keep_adjoint))
    value, zs_user, g = _loss_and_its_jumps(prob, zs)
    t_grad, t_jump, f_sides = _observation_time_jumps(prob, kernels, plan, z_nodes, zs, g)
    sweep = _backward_sweep(prob, kernels, plan, fwd.dense, z_nodes, zs, g, t_jump,
                            dense=(prob.mode == "quadrature" or keep_adjoint))

    a_plus = sweep.a_at_t0(prob.B, prob.n)  # a(t_0^+), before the jump g_0
    a_theta, a_t, nquadrature = _parameter_and_time_adjoints(prob, sweep, fwd.dense, t_jump)
    one_sided = {}
    if plan:  # the jump terms at the switch times, with a there (from the sweep)
        a_theta, a_t, one_sided = plan.add_jump_terms(a_theta, a_t, t_grad, sweep.Y_nodes, sweep.a_off, prob.Bn,
                                                      g.reshape(prob.T, prob.Bn), a_plus.reshape(-1), *f_sides)
    t_grad[0] = a_t
    diagnostics = _t0_diagnostics(prob, kernels, plan, a_plus, a_t)
    if one_sided:
        _not_differentiable(one_sided, a_theta, t_grad)  # those entries become NaN, with a warning
    drift, z0_error = _backsolve_drift(prob, sweep, zs)  # (None, None) outside backsolve mode
    a = a_plus + g[0]
    return AdjointResult(
        loss=value, z0=a if prob.batched else a[0], theta=a_theta, t=t_grad, zs=zs_user, ts=prob.ts,
        mode=prob.mode, method=prob.method, rtol=prob.rtol, atol=prob.atol,
        stats=_solver_stats(fwd, sweep, nquadrature), z0_reconstruction_error=z0_error, backsolve_drift=drift,
        diagnostics=diagnostics, switches=plan.switches if plan else None, one_sided=one_sided,
        trajectory=_trajectory(prob, sweep, g, fwd.dense) if keep_adjoint else None,
    )


@dataclass
class _Problem:
    """A validated call of :func:`adjoint_gradients`, with the sizes and tolerances derived from it."""

    fld: object  # AbstractVectorField
    z0_2d: np.ndarray  # (B, n)
    batched: bool
    ts: np.ndarray  # (T,)
    theta: np.ndarray  # (p,)
    loss: object
    mode: str
    method: str
    rtol: float
    atol: object  # float or (n,)
    max_steps: int

    def __post_init__(self):
        self.n, self.p = self.fld.n_states, self.fld.n_params
        self.B = self.z0_2d.shape[0]
        self.Bn = self.B * self.n
        self.T = len(self.ts)
        self.atol_z = self.atol if np.ndim(self.atol) == 0 else np.tile(self.atol, self.B)  # of z, (B n,)
        self.atol_a = float(np.min(self.atol))  # of a, a_theta and a_t


def _validated(system, z0, ts, theta, loss, *, mode, method, rtol, atol, max_steps, keep_adjoint):
    """Every argument checked (the package's own errors), as a :class:`_Problem`."""
    fld, z0_2d, batched, ts, theta = check_problem(system, z0, ts, theta)
    if loss is None:
        from .errors import InvalidTypeError

        raise InvalidTypeError("loss is required: a callable loss(zs) -> float written with autograd.numpy")
    mode = check_mode(mode)
    method = check_method(method)
    rtol, atol = check_tolerances(rtol, atol, fld.n_states)
    max_steps = check_positive_int(max_steps, "max_steps")
    prob = _Problem(fld, z0_2d, batched, ts, theta, loss, mode, method, rtol, atol, max_steps)
    if keep_adjoint and fld.state_conditions is not None:
        from .errors import InvalidArgumentError

        raise InvalidArgumentError(
            "keep_adjoint=True is not available yet for a system with switches in the state (events: "
            + "; ".join(str(d) for d in fld.discontinuities if d.in_state)
            + "); call adjoint_gradients without it"
        )
    return prob


def _forward_solve(prob, kernels, plan, *, dense):
    """z from z0 over ts, stopped at every switch time in t.

    Returns
    -------
    fwd : SpanResult
        Counts, and with ``dense`` the dense output z(t) (``fwd.dense``).
    z_nodes : ndarray, shape (nodes, B n)
        z at the observation times, and at the switch times when there are
        any (at ``plan.nodes``).
    zs : ndarray, shape (T, B, n)
        z at the observation times.
    """
    ts = prob.ts
    implicit = prob.method in IMPLICIT_METHODS
    fwd = (integrate_segments if plan else _span)(
        kernels.f,
        float(ts[0]),
        float(ts[-1]),
        prob.z0_2d.reshape(-1),
        plan.inner if plan else (),
        method=prob.method,
        rtol=prob.rtol,
        atol=prob.atol_z,
        jac=forward_jacobian(prob.fld, prob.theta, prob.B, prob.n, prob.method) if implicit else None,
        t_out=plan.nodes if plan else ts,
        dense=dense,
        max_steps=prob.max_steps,
        what="forward solve",
        inplace=True,
    )
    z_nodes = fwd.y_at
    zs = (z_nodes[plan.obs] if plan else z_nodes).reshape(prob.T, prob.B, prob.n)
    return fwd, z_nodes, zs


def _loss_and_its_jumps(prob, zs):
    """The loss at the forward states and its jumps g_i = dL/dz(t_i), the direct partial derivatives.

    Returns
    -------
    value : float
    zs_user : ndarray, shape (T, n), or (T, B, n) for a batch
        The states as the loss saw them.
    g : ndarray, shape (T, B, n)
    """
    zs_user = zs if prob.batched else zs[:, 0, :]
    value, g = loss_and_jumps(prob.loss, zs_user.copy())
    return value, zs_user, g.reshape(prob.T, prob.B, prob.n)


def _observation_time_jumps(prob, kernels, plan, z_nodes, zs, g):
    """dL/dt_i at the observation times, and the jumps of a_t there.

    Returns
    -------
    t_grad : ndarray, shape (T,)
        dL/dt_i = g_i . f(z(t_i), t_i) for i >= 1; ``t_grad[0]`` is 0 (dL/dt_0 comes last).
    t_jump : ndarray, shape (T,)
        The jump -t_jump[i] of a_t at t_i: ``t_grad`` itself, except g_i . f_b
        where a jump of f falls on t_i (f_b: f before it in integration order).
    f_sides : (ndarray, ndarray), each shape (k, B n), or None
        f just before and just after each of the k switch times (None without switches).
    """
    t_grad = np.zeros(prob.T)
    t_grad[1:] = _observation_time_gradients(prob.fld, prob.theta, zs[1:], prob.ts[1:], g[1:])
    if not plan:
        return t_grad, t_grad, None
    f_before, f_after = plan.one_sided_f(kernels.f, z_nodes, prob.Bn)
    t_jump = plan.observation_jumps(t_grad, g.reshape(prob.T, prob.Bn), f_before)
    return t_grad, t_jump, (f_before, f_after)


@dataclass
class _Sweep:
    """The backward sweep of one mode; y is its backward state (:mod:`odeverify._adjoint_backward`)."""

    Y_end: np.ndarray  # (T - 1, size): y at the end of each observation interval, backward order
    stats: dict  # nfev, njev, nlu, nsteps
    dense: object  # dense output of y over ts[-1] -> ts[0], or None
    Y_nodes: np.ndarray | None  # (nodes - 1, size): y at the end of every piece between nodes (with switches)
    size: int
    a_off: int  # where a starts in y

    def a_at_t0(self, B, n):
        """a(t_0^+), the adjoint at t_0 before the jump g_0, shape (B, n)."""
        return self.Y_end[-1][self.a_off : self.a_off + B * n].reshape(B, n).copy()


def _backward_sweep(prob, kernels, plan, z_dense, z_nodes, zs, g, t_jump, *, dense):
    """One sweep of the mode's backward system over ts[T-1] -> ... -> ts[0], stopped at every switch time.

    ``z_dense`` is the forward dense output (not used in backsolve mode,
    which restarts z from ``zs``, or from ``z_nodes`` with switches). With
    ``dense`` the sweep keeps its dense output. Returns a :class:`_Sweep`.
    """
    mode, ts, T = prob.mode, prob.ts, prob.T
    fun, jac, size, groups, atol_b = _backward_system(
        mode, prob.fld, kernels, prob.theta, prob.B, prob.method, None if mode == "backsolve" else z_dense,
        prob.atol_z, prob.atol_a,
    )
    a_off = prob.Bn if mode == "backsolve" else 0  # where a starts in y
    keep, add = _interval_starts(prob, size, a_off, zs, g, t_jump)
    options = dict(method=prob.method, rtol=prob.rtol, atol=atol_b, jac=jac, max_steps=prob.max_steps,
                   groups=groups, dense=dense)
    if plan:
        Y_end, stats, y_dense, Y_nodes = plan.backward_sweep(
            fun, keep, add, z_nodes if mode == "backsolve" else None, **options
        )
    else:
        out = integrate_intervals(
            fun, ts[::-1], keep, add,
            what=lambda k: f"backward (adjoint) solve over [{float(ts[T - 2 - k])!r}, {float(ts[T - 1 - k])!r}]",
            **options,
        )
        Y_end, stats, y_dense, Y_nodes = out[0], out[1], (out[2] if dense else None), None
    return _Sweep(Y_end, stats, y_dense, Y_nodes, size, a_off)


def _interval_starts(prob, size, a_off, zs, g, t_jump):
    """What each backward interval starts from: ``keep * y_end(k - 1) + add[k]``.

    Interval k (from ts[i], i = T-1-k) starts from its predecessor's end plus
    the jumps at ts[i]: a += g_i and a_t -= dL/dt_i (``t_jump[i]``); in
    backsolve mode z restarts from the forward state zs[i].

    Returns
    -------
    keep : ndarray, shape (size,)
    add : ndarray, shape (T - 1, size)
    """
    T, Bn = prob.T, prob.Bn
    rows = np.arange(T - 1, 0, -1)  # i of interval k
    keep = np.ones(size)
    add = np.zeros((T - 1, size))
    add[:, a_off : a_off + Bn] = g[rows].reshape(T - 1, Bn)
    if prob.mode != "quadrature":
        add[:, -1] = -t_jump[rows]
    if prob.mode == "backsolve":
        keep[:Bn] = 0.0
        add[:, :Bn] = zs[rows].reshape(T - 1, Bn)
    return keep, add


def _parameter_and_time_adjoints(prob, sweep, z_dense, t_jump):
    """a_theta(t_0) and a_t(t_0), before the jump terms of switch times.

    From the end of the sweep, or in quadrature mode from the integrals along
    it (with the jumps of a_t at t_1 .. t_N).

    Returns
    -------
    a_theta : ndarray, shape (p,)
    a_t : float
    nquadrature : int
        Quadrature nodes per sample (0 outside quadrature mode).
    """
    if prob.mode == "quadrature":
        a_theta, a_t, nquadrature = _parameter_and_time_integrals(
            prob.fld, prob.theta, z_dense, sweep.dense, prob.method, prob.B, prob.n
        )
        a_t -= float(np.sum(t_jump[1:]))  # the jumps of a_t at t_1 .. t_N
        return a_theta, a_t, nquadrature
    y = sweep.Y_end[-1]  # at t0, before the jump g_0
    start = sweep.a_off + prob.Bn
    return y[start : start + prob.p].copy(), float(y[-1]), 0


def _t0_diagnostics(prob, kernels, plan, a_plus, a_t):
    """dL/dt_0 two ways: the integrated ``a_t`` and the identity -a(t_0^+) . f(z_0, t_0); their distance."""
    f0 = np.empty(prob.Bn)
    # f(z0, t0) on the first segment's branch (a switch at t0 itself does not act on the solve)
    kernels.f(plan.first_time if plan else float(prob.ts[0]), prob.z0_2d.reshape(-1), f0)
    t0_identity = -float(np.dot(a_plus.reshape(-1), f0))
    return {
        "t0_via_a_t": a_t,
        "t0_via_identity": t0_identity,
        "t0_discrepancy": abs(a_t - t0_identity),
    }


def _not_differentiable(one_sided, a_theta, t_grad):
    """Set the entries named in ``one_sided`` to NaN (in place) and warn with both one-sided values."""
    for name in one_sided:
        if name.startswith("theta["):
            a_theta[int(name[6:-1])] = np.nan
        else:
            t_grad[int(name[2:-1])] = np.nan
    warnings.warn(
        "the loss is not differentiable at this point: a jump of f falls on an observation time, so "
        + "; ".join(f"dL/d{name} is NaN (one-sided: {lr[0]!r} as it decreases, {lr[1]!r} as it increases)"
                    for name, lr in one_sided.items())
        + "; see .one_sided of the result",
        NonDifferentiableWarning,
        stacklevel=3,  # the caller of adjoint_gradients
    )


def _backsolve_drift(prob, sweep, zs):
    """Backsolve mode: how far the backwards-reconstructed z drifted from the forward one.

    Warns (:class:`BacksolveDriftWarning`) when z(t_0) is reconstructed over
    1000 times the tolerance away from z0.

    Returns
    -------
    drift : ndarray, shape (T - 1,), or None outside backsolve mode
        drift[i - 1]: at ts[i - 1], the end of the interval from ts[i].
    z0_error : float or None
        Max-norm distance of the reconstructed z(t_0) from z0.
    """
    if prob.mode != "backsolve":
        return None, None
    T, B, n, Bn = prob.T, prob.B, prob.n, prob.Bn
    rows = np.arange(T - 1, 0, -1)  # i of interval k
    drift = np.max(np.abs(sweep.Y_end[:, :Bn] - zs[rows - 1].reshape(T - 1, Bn)), axis=1)[::-1].copy()
    z0_rec = sweep.Y_end[-1][:Bn].reshape(B, n)
    z0_error = float(np.max(np.abs(z0_rec - prob.z0_2d)))
    scale = float(np.max(prob.atol_z + prob.rtol * np.abs(prob.z0_2d.reshape(-1))))
    if z0_error > 1e3 * scale:
        warnings.warn(
            f"backsolve reconstructed z(t0) {z0_error:.3g} away from z0 (over 1000 times the tolerance "
            f"{scale:.1e}); the backward solve of z is unstable and the gradients may be inaccurate: "
            "use mode='interpolated'",
            BacksolveDriftWarning,
            stacklevel=3,  # the caller of adjoint_gradients
        )
    return drift, z0_error


def _solver_stats(fwd, sweep, nquadrature):
    """The work of both solves as :class:`SolverStats`."""
    stats = SolverStats(nfev_forward=fwd.nfev, njev_forward=fwd.njev, nlu=fwd.nlu, nsteps_forward=fwd.nsteps)
    stats.nfev_backward += sweep.stats["nfev"]
    stats.njev_backward += sweep.stats["njev"]
    stats.nlu += sweep.stats["nlu"]
    stats.nsteps_backward += sweep.stats["nsteps"]
    stats.backward_state_size = sweep.size
    stats.nquadrature = nquadrature
    return stats


def _trajectory(prob, sweep, g, z_dense):
    """``keep_adjoint=True``: a(t) and z(t) from the dense outputs of both solves, as :class:`AdjointTrajectory`."""
    a_before = _before_jumps(sweep.Y_end, sweep.a_off, prob.B, prob.n)
    return AdjointTrajectory(prob.ts, sweep.dense, sweep.a_off, a_before, g, z_dense, prob.batched)


def _before_jumps(Y_end, a_off, B, n):
    """a at every observation time before its jump is added, shape (T, B, n): 0 at ts[-1], then each
    interval's end (``Y_end`` is in backward order: row k ends at ts[T - 2 - k])."""
    K = Y_end.shape[0]
    out = np.zeros((K + 1, B, n))
    out[:-1] = Y_end[::-1, a_off : a_off + B * n].reshape(K, B, n)
    return out
