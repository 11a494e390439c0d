"""adjoint_gradients: dL/dz0, dL/dtheta and dL/dt_i by the continuous adjoint method."""

from __future__ import annotations

import warnings

import numpy as np

from ._adjoint_backward import (  # noqa: F401 (_backsolve_jacobian, _interpolated_jacobian: re-exported)
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
from ._adjoint_switches import _clamp_range, _span, _SwitchPlan  # noqa: F401 (_clamp_range: re-exported)
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
    fld, z0_2d, batched, ts, theta = check_problem(system, z0, ts, theta)
    n, p = fld.n_states, fld.n_params
    if loss is None:
        from .errors import InvalidTypeError

        raise InvalidTypeError("loss is required: a callable loss(zs) -> float written with autograd.numpy")
    mode = check_mode(mode)
    method = check_method(method)
    rtol, atol = check_tolerances(rtol, atol, n)
    max_steps = check_positive_int(max_steps, "max_steps")
    B = z0_2d.shape[0]
    Bn = B * n
    T = len(ts)
    atol_z = atol if np.ndim(atol) == 0 else np.tile(atol, B)
    atol_a = float(np.min(atol))
    stats = SolverStats()

    if fld.state_conditions is not None:  # switches in the state: events located during the solve
        if keep_adjoint:
            from .errors import InvalidArgumentError

            raise InvalidArgumentError(
                "keep_adjoint=True is not available yet for a system with switches in the state (events: "
                + "; ".join(str(d) for d in fld.discontinuities if d.in_state)
                + "); call adjoint_gradients without it"
            )
        return _event_gradients(fld, z0_2d, batched, ts, theta, loss, mode=mode, method=method, rtol=rtol,
                                atol=atol, max_steps=max_steps)
    kernels = fld.solver_kernels(theta, B)
    # switches in t (heaviside(t - s), ...): both solves stop there and the jump terms are added
    switches = fld.switch_times(theta, ts[0], ts[-1]) if fld.discontinuities else None
    plan = _SwitchPlan(ts, switches) if switches is not None and len(switches) else None

    # ---------------------------------------------------------------- forward
    implicit = method in IMPLICIT_METHODS
    fwd = (integrate_segments if plan else _span)(
        kernels.f,
        float(ts[0]),
        float(ts[-1]),
        z0_2d.reshape(-1),
        plan.inner if plan else (),
        method=method,
        rtol=rtol,
        atol=atol_z,
        jac=forward_jacobian(fld, theta, B, n, method) if implicit else None,
        t_out=plan.nodes if plan else ts,
        dense=(mode != "backsolve" or keep_adjoint),
        max_steps=max_steps,
        what="forward solve",
        inplace=True,
    )
    stats.nfev_forward, stats.njev_forward, stats.nlu = fwd.nfev, fwd.njev, fwd.nlu
    stats.nsteps_forward = fwd.nsteps
    z_nodes = fwd.y_at  # (nodes, B n): at ts, and at the switch times when there are any
    zs = (z_nodes[plan.obs] if plan else z_nodes).reshape(T, B, n)

    # ---------------------------------------------------------------- loss and its jumps
    zs_user = zs if batched else zs[:, 0, :]
    value, g = loss_and_jumps(loss, zs_user.copy())
    g = g.reshape(T, B, n)

    # ---------------------------------------------------------------- backward
    fun_backward, jac_backward, size, groups, atol_b = _backward_system(
        mode, fld, kernels, theta, B, method, None if mode == "backsolve" else fwd.dense, atol_z, atol_a
    )

    # One sweep over the intervals ts[T-1] -> ... -> ts[0]. Interval k (from ts[i], i = T-1-k) starts
    # from its predecessor's end plus the jumps at ts[i]: a += g_i and a_t -= dL/dt_i, with
    # dL/dt_i = g_i . f(z(t_i), t_i); in backsolve mode z restarts from the forward state zs[i].
    t_grad = np.zeros(T)
    t_grad[1:] = _observation_time_gradients(fld, theta, zs[1:], ts[1:], g[1:])
    if plan:  # f on both sides of every jump; at an observation time on a jump, a_t jumps with f before it
        f_before, f_after = plan.one_sided_f(kernels.f, z_nodes, Bn)
        t_jump = plan.observation_jumps(t_grad, g.reshape(T, Bn), f_before)
    else:
        t_jump = t_grad
    rows = np.arange(T - 1, 0, -1)  # i of interval k
    a_off = Bn if mode == "backsolve" else 0  # where a starts in y
    keep = np.ones(size)
    add = np.zeros((T - 1, size))
    add[:, a_off : a_off + Bn] = g[rows].reshape(T - 1, Bn)
    if mode != "quadrature":
        add[:, -1] = -t_jump[rows]
    if mode == "backsolve":
        keep[:Bn] = 0.0
        add[:, :Bn] = zs[rows].reshape(T - 1, Bn)
    sweep_options = dict(
        method=method, rtol=rtol, atol=atol_b, jac=jac_backward, max_steps=max_steps, groups=groups,
        dense=(mode == "quadrature" or keep_adjoint),
    )
    if plan:
        swept = plan.backward_sweep(fun_backward, keep, add, z_nodes if mode == "backsolve" else None, **sweep_options)
    else:
        swept = integrate_intervals(
            fun_backward,
            ts[::-1],
            keep,
            add,
            what=lambda k: f"backward (adjoint) solve over [{float(ts[T - 2 - k])!r}, {float(ts[T - 1 - k])!r}]",
            **sweep_options,
        )
    Y_end, bstats = swept[:2]
    stats.nfev_backward += bstats["nfev"]
    stats.njev_backward += bstats["njev"]
    stats.nlu += bstats["nlu"]
    stats.nsteps_backward += bstats["nsteps"]
    stats.backward_state_size = size
    y = Y_end[-1]  # at t0, before the jump g_0
    a_plus = y[a_off : a_off + Bn].reshape(B, n).copy()
    a = a_plus + g[0]
    if mode == "quadrature":
        a_theta, a_t, stats.nquadrature = _parameter_and_time_integrals(fld, theta, fwd.dense, swept[2], method, B, n)
        a_t -= float(np.sum(t_jump[1:]))  # the jumps of a_t at t_1 .. t_N
    else:
        a_theta = y[a_off + Bn : a_off + Bn + p].copy()
        a_t = float(y[-1])
    drift = z0_rec = None
    if mode == "backsolve":
        # drift[i - 1]: at ts[i - 1], the end of the interval from ts[i]
        drift = np.max(np.abs(Y_end[:, :Bn] - zs[rows - 1].reshape(T - 1, Bn)), axis=1)[::-1].copy()
        z0_rec = y[:Bn].reshape(B, n)
    one_sided = {}
    if plan:  # the jump terms at the switch times, with a there (from the sweep)
        a_theta, a_t, one_sided = plan.add_jump_terms(
            a_theta, a_t, t_grad, swept[3], a_off, Bn, g.reshape(T, Bn), a_plus.reshape(-1), f_before, f_after
        )
    t_grad[0] = a_t
    f0 = np.empty(Bn)
    # f(z0, t0) on the first segment's branch (a switch at t0 itself does not act on the solve)
    kernels.f(plan.first_time if plan else float(ts[0]), z0_2d.reshape(-1), f0)
    t0_identity = -float(np.dot(a_plus.reshape(-1), f0))
    diagnostics = {
        "t0_via_a_t": a_t,
        "t0_via_identity": t0_identity,
        "t0_discrepancy": abs(a_t - t0_identity),
    }
    if one_sided:
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
            stacklevel=2,
        )
    rec_err = None
    if mode == "backsolve":
        rec_err = float(np.max(np.abs(z0_rec - z0_2d)))
        scale = float(np.max(atol_z + rtol * np.abs(z0_2d.reshape(-1))))
        if rec_err > 1e3 * scale:
            warnings.warn(
                f"backsolve reconstructed z(t0) {rec_err:.3g} away from z0 (over 1000 times the tolerance "
                f"{scale:.1e}); the backward solve of z is unstable and the gradients may be inaccurate: "
                "use mode='interpolated'",
                BacksolveDriftWarning,
                stacklevel=2,
            )
    trajectory = None
    if keep_adjoint:
        trajectory = AdjointTrajectory(ts, swept[2], a_off, _before_jumps(Y_end, a_off, B, n), g, fwd.dense, batched)
    return AdjointResult(
        loss=value,
        z0=a if batched else a[0],
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
        backsolve_drift=drift,
        diagnostics=diagnostics,
        switches=switches if plan else None,
        one_sided=one_sided,
        trajectory=trajectory,
    )


def _before_jumps(Y_end, a_off, B, n):
    """a at every observation time before its jump is added, shape (T, B, n): 0 at ts[-1], then each
    interval's end (``Y_end`` is in backward order: row k ends at ts[T - 2 - k])."""
    K = Y_end.shape[0]
    out = np.zeros((K + 1, B, n))
    out[:-1] = Y_end[::-1, a_off : a_off + B * n].reshape(K, B, n)
    return out
