"""adjoint_gradients: dL/dz0, dL/dtheta and dL/dt_i by the continuous adjoint method."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

from ._integrate import (
    DEFAULT_MAX_STEPS,
    BlockJacobian,
    branch_margin,
    forward_jacobian,
    integrate_intervals,
    integrate_segments,
    integrate_span,
    join_dense,
    on_branch,
    switch_segments,
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
from ._display import fmt
from .errors import NonDifferentiableWarning, OdeverifyWarning

__all__ = ["adjoint_gradients", "AdjointResult", "AdjointTrajectory", "SolverStats", "BacksolveDriftWarning"]


class BacksolveDriftWarning(OdeverifyWarning):
    """The backward reconstruction of z in backsolve mode drifted from the forward solution."""


@dataclass
class SolverStats:
    """Work done by the forward and backward solves."""

    nfev_forward: int = 0
    nfev_backward: int = 0
    njev_forward: int = 0
    njev_backward: int = 0
    nlu: int = 0
    nsteps_forward: int = 0
    nsteps_backward: int = 0
    #: components of the backward state: 2 B n + p + 1 (backsolve), B n + p + 1 (interpolated), B n (quadrature)
    backward_state_size: int = 0
    #: quadrature nodes at which a^T df/dtheta and a^T df/dt were evaluated (quadrature mode), per sample
    nquadrature: int = 0

    def __repr__(self):
        return f"<SolverStats {self}>"

    def __str__(self):
        return (
            f"forward: {self.nsteps_forward} steps, {self.nfev_forward} f-evaluations; "
            f"backward: {self.nsteps_backward} steps, {self.nfev_backward} evaluations"
            + (f"; {self.njev_forward + self.njev_backward} Jacobians, {self.nlu} LU" if self.nlu else "")
        )


@dataclass
class AdjointResult:
    """Loss and gradients from :func:`adjoint_gradients`.

    Attributes
    ----------
    loss : float
        L(z(t_0), ..., z(t_N)).
    z0 : ndarray, shape (n,) or (B, n)
        dL/dz(t_0).
    theta : ndarray, shape (p,)
        dL/dtheta.
    t : ndarray, shape (T,)
        dL/dt_i for every entry of ``ts``; ``t[0]`` is dL/dt_0.
    zs : ndarray, shape (T, n) or (T, B, n)
        The forward states at ``ts``.
    ts : ndarray, shape (T,)
    mode, method : str
    rtol : float
    atol : float or ndarray
    stats : SolverStats
    z0_reconstruction_error : float or None
        Backsolve mode: max-norm distance between the backwards-reconstructed
        z(t_0) and the given z0. None in interpolated mode.
    backsolve_drift : ndarray, shape (T - 1,) or None
        Backsolve mode: for each interval [t_{i-1}, t_i], the max-norm
        distance between z(t_{i-1}) reconstructed backwards from z(t_i) and
        the forward solution (each interval restarts from the forward state).
    diagnostics : dict
        ``t0_via_a_t`` (the integrated a_t, reported as ``t[0]``),
        ``t0_via_identity`` (``-a(t_0^+) . f(z_0, t_0)``, equal in exact
        arithmetic) and ``t0_discrepancy``, their distance.
    trajectory : AdjointTrajectory or None
        With ``keep_adjoint=True``: a(t) and z(t) anywhere in the span
        (:meth:`adjoint`, :meth:`state`).
    switches : SwitchTimes or None
        The switch times in t the solves stopped at (None without any).
    one_sided : dict
        Where a jump of f falls on an observation time the loss is not
        differentiable in the switch's parameters and in that time: those
        entries are NaN and this maps their names (``"theta[1]"``, ``"t[2]"``)
        to ``(left, right)``, the one-sided derivatives as the entry
        decreases and increases.
    """

    loss: float
    z0: np.ndarray
    theta: np.ndarray
    t: np.ndarray
    zs: np.ndarray
    ts: np.ndarray
    mode: str
    method: str
    rtol: float
    atol: object
    stats: SolverStats
    z0_reconstruction_error: float | None = None
    backsolve_drift: np.ndarray | None = None
    diagnostics: dict = field(default_factory=dict)
    trajectory: AdjointTrajectory | None = field(default=None, repr=False)
    switches: object = None
    one_sided: dict = field(default_factory=dict)

    def adjoint(self, t, *, include_jump=True):
        """The adjoint a(t) = dL/dz(t) at time(s) ``t`` (needs ``keep_adjoint=True``).

        Parameters
        ----------
        t : float or array_like
            Times between the first and the last of ``ts``.
        include_jump : bool
            At an observation time t_i: True (default) gives a *with* the
            jump g_i = dL/dz(t_i) added, the total derivative of L with
            respect to z(t_i) (so ``adjoint(ts[0])`` equals ``.z0``); for
            increasing ``ts`` a is then left-continuous. False gives the value
            before the jump (the limit from the later times' side). Elsewhere
            it makes no difference.

        Returns
        -------
        ndarray, shape ``np.shape(t) + (n,)``, or ``np.shape(t) + (B, n)`` for a batch
        """
        return self._kept("adjoint").adjoint(t, include_jump)

    def state(self, t):
        """The forward state z(t) at time(s) ``t`` (needs ``keep_adjoint=True``); shapes as :meth:`adjoint`."""
        return self._kept("state").state(t)

    def plot(self, *, ax=None, names=None):
        """States over time and the adjoint a(t) with its jumps (needs ``keep_adjoint=True``).

        See :func:`odeverify.plotting.plot_adjoint`; returns the matplotlib Figure.
        """
        from .plotting import plot_adjoint

        return plot_adjoint(self, ax=ax, names=names)

    def _kept(self, what):
        if self.trajectory is None:
            from .errors import InvalidArgumentError

            raise InvalidArgumentError(
                f"this AdjointResult kept no trajectory, so {what}(t) is not available; compute it with "
                "adjoint_gradients(..., keep_adjoint=True)"
            )
        return self.trajectory

    def __repr__(self):
        shapes = ", ".join(f"{k} {np.shape(v)}" for k, v in self.as_dict().items())
        return (f"<AdjointResult loss {fmt(self.loss, '.6g')}: gradients {shapes}; {self.mode}, {self.method}, "
                f"rtol {self.rtol:g}>")

    def as_dict(self):
        """The gradients as a mapping with keys ``"z0"``, ``"theta"``, ``"t"``."""
        return {"z0": self.z0, "theta": self.theta, "t": self.t}

    def to_dict(self):
        """A JSON-serialisable dictionary."""
        return {
            "loss": self.loss,
            "z0": np.asarray(self.z0).tolist(),
            "theta": np.asarray(self.theta).tolist(),
            "t": np.asarray(self.t).tolist(),
            "ts": np.asarray(self.ts).tolist(),
            "mode": self.mode,
            "method": self.method,
            "rtol": self.rtol,
            "atol": np.asarray(self.atol).tolist(),
            "stats": dict(self.stats.__dict__),
            "z0_reconstruction_error": self.z0_reconstruction_error,
            "diagnostics": dict(self.diagnostics),
        }


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
    if mode != "backsolve":  # z from the forward dense output
        dense = fwd.dense
        z_buf = np.empty(Bn)

        def z_of(t):
            return dense.at(t).reshape(B, n)

    if mode == "interpolated":
        # y = [a (B*n), a_theta (p), a_t (1)]
        def fun_backward(t, y, out):
            kernels.adjoint(t, dense.at(t, z_buf), y, out)

        jac_backward = _interpolated_jacobian(fld, theta, B, n, p, method, z_of) if implicit else None
        size = Bn + p + 1
        groups = (Bn, p, 1)  # the mixed error norm's groups (in-house methods)
        atol_b = atol_a
    elif mode == "quadrature":
        products = np.empty(Bn + p + 1)  # [a_z, a_theta, a_t]: only a_z is integrated

        # y = a (B*n)
        if kernels.adjoint_a is not None:

            def fun_backward(t, y, out):
                kernels.adjoint_a(t, dense.at(t, z_buf), y, out)

        else:  # the fused kernel of all products (generated for ODESystem; the sums are cheap there)

            def fun_backward(t, y, out):
                kernels.adjoint(t, dense.at(t, z_buf), y, products)
                out[:] = products[:Bn]

        jac_backward = _quadrature_jacobian(fld, theta, B, n, method, z_of) if implicit else None
        size = Bn
        groups = None
        atol_b = atol_a
    else:
        # y = [z (B*n), a (B*n), a_theta (p), a_t (1)]
        fun_backward = kernels.backward
        jac_backward = _backsolve_jacobian(fld, theta, B, n, p, method) if implicit else None
        size = 2 * Bn + p + 1
        groups = (Bn, Bn, p, 1)
        atol_b = np.concatenate([np.broadcast_to(atol_z, (Bn,)), np.full(Bn + p + 1, atol_a)])

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
        trajectory=trajectory,
        switches=switches if plan else None,
        one_sided=one_sided,
    )


def _before_jumps(Y_end, a_off, B, n):
    """a at every observation time before its jump is added, shape (T, B, n): 0 at ts[-1], then each
    interval's end (``Y_end`` is in backward order: row k ends at ts[T - 2 - k])."""
    K = Y_end.shape[0]
    out = np.zeros((K + 1, B, n))
    out[:-1] = Y_end[::-1, a_off : a_off + B * n].reshape(K, B, n)
    return out


class AdjointTrajectory:
    """The adjoint a(t) and the state z(t) of one adjoint solve (``adjoint_gradients(..., keep_adjoint=True)``).

    a(t) = dL/dz(t) jumps by g_i = dL/dz(t_i) (the loss's direct partial
    derivative) at every observation time. At an observation time t_i the
    value *includes* the jump (``include_jump=True``): a(t_i) is the total
    derivative of L with respect to the state at t_i, its own term counted,
    so that ``a(ts[0])`` is ``dL/dz0``. For increasing ``ts`` that makes a
    left-continuous (a(t_i) = lim a(s) as s -> t_i from below, the side of
    t_0); ``include_jump=False`` gives the other limit, the value the
    backward solve arrives with (right-continuous for increasing ``ts``).
    Between observation times a is the backward solve's dense output.

    Attributes
    ----------
    ts : ndarray, shape (T,)
    batched : bool
    """

    def __init__(self, ts, backward_dense, a_off, a_before, g, forward_dense, batched):
        self.ts = np.asarray(ts, dtype=float)
        self.batched = batched
        self._backward = backward_dense  # over ts[-1] -> ts[0], state [..., a (B n) at a_off, ...]
        self._forward = forward_dense
        self._a_off = a_off
        self._a_before = a_before  # (T, B, n)
        self._a_with = a_before + g  # (T, B, n)
        self._B, self._n = a_before.shape[1:]

    def at_observations(self, include_jump=True):
        """a at every observation time, shape (T, B, n) (a batch axis even for one sample)."""
        return (self._a_with if include_jump else self._a_before).copy()

    def adjoint_2d(self, t, include_jump=True):
        """a at the times ``t`` (1-D), shape (len(t), B, n)."""
        t = self._times(t)
        Bn = self._B * self._n
        a = self._backward.at_many(t)[:, self._a_off : self._a_off + Bn].reshape(t.size, self._B, self._n)
        # on an observation time the dense output may hold either side of the jump: use the exact value
        hit = np.searchsorted(np.sort(self.ts), t)
        hit = np.clip(hit, 0, len(self.ts) - 1)
        order = np.argsort(self.ts)
        on = np.sort(self.ts)[hit] == t
        values = self._a_with if include_jump else self._a_before
        a[on] = values[order[hit[on]]]
        return a

    def adjoint(self, t, include_jump=True):
        """a(t), shape ``np.shape(t) + (B, n)`` for a batch, else ``np.shape(t) + (n,)``."""
        shape = np.shape(t)
        a = self.adjoint_2d(np.reshape(t, -1), include_jump)
        return a.reshape(shape + ((self._B, self._n) if self.batched else (self._n,)))

    def state(self, t):
        """z(t) from the forward dense output, shape ``np.shape(t) + (B, n)`` or ``np.shape(t) + (n,)``."""
        shape = np.shape(t)
        t = self._times(np.reshape(t, -1))
        z = self._forward.at_many(t).reshape(t.size, self._B, self._n)
        return z.reshape(shape + ((self._B, self._n) if self.batched else (self._n,)))

    def _times(self, t):
        from ._validate import _as_float_array
        from .errors import InvalidArgumentError

        t = _as_float_array(t, "t").reshape(-1)
        lo, hi = float(np.min(self.ts)), float(np.max(self.ts))
        bad = ~((t >= lo) & (t <= hi))
        if np.any(bad):
            raise InvalidArgumentError(
                f"t = {float(t[bad][0])!r} is outside the span [{lo!r}, {hi!r}] of ts; the adjoint is only "
                "defined between the first and the last observation time"
            )
        return t


def _span(fun, t_start, t_end, y0, switch_times, **kwargs):
    """:func:`integrate_span` with the signature of :func:`integrate_segments` (no switch times)."""
    return integrate_span(fun, t_start, t_end, y0, **kwargs)


#: the order of each method's steps (the highest for the variable-order BDF and LSODA)
METHOD_ORDERS = {"RK23": 3, "RK45": 5, "dopri5": 5, "tsit5": 5, "DOP853": 8, "Radau": 5, "BDF": 5, "LSODA": 12}

#: samples (nodes times B) of one quadrature kernel call: bounds the temporaries of the field (an MLP
#: keeps a few (samples, width) arrays), so that they do not grow with the number of steps
QUADRATURE_CHUNK = 512


def gauss_legendre_nodes(method):
    """Gauss–Legendre nodes and weights on [0, 1] for the accepted steps of ``method``.

    A G-point rule integrates polynomials of degree 2G - 1 exactly, so on a
    step of length h its error is O(h^(2G + 1)). With G = ceil(q / 2) + 1
    for a method of order q that is O(h^(q + 3)): two orders below the step's
    own local error O(h^(q + 1)), so the quadrature never dominates (3 nodes
    for RK23, 4 for the 5th-order methods, 5 for DOP853, 7 for LSODA).

    Returns
    -------
    x, w : ndarray, shape (G,)
        Nodes in (0, 1) and weights summing to 1.
    """
    G = -(-METHOD_ORDERS[method] // 2) + 1
    x, w = np.polynomial.legendre.leggauss(G)
    return (x + 1.0) / 2.0, w / 2.0


def _observation_time_gradients(fld, theta, zs, ts, g):
    """dL/dt_i = g_i . f(z(t_i), t_i) for every row: one evaluation of f at all states, shape (T,)."""
    T, B, n = zs.shape
    if T == 0:
        return np.zeros(0)
    f = fld.eval_f_at(zs.reshape(T * B, n), np.repeat(ts, B), theta).reshape(T, B * n)
    return np.einsum("ij,ij->i", g.reshape(T, B * n), f)


def _parameter_and_time_integrals(fld, theta, z_dense, a_dense, method, B, n):
    r"""Quadrature mode: ``a_theta(t_0) = -\int a^T f_theta dt`` and the integral part of ``a_t(t_0)``.

    The integrals run along the backward solve, from ``ts[-1]`` to ``ts[0]``,
    by Gauss–Legendre quadrature on every piece between consecutive step
    boundaries of the backward *and* the forward solve: on a piece both a
    (backward dense output) and z (forward dense output) are one polynomial,
    and the pieces are as fine as either solve needed. (The backward steps
    alone are not enough: where a is constant, as between observation times
    of a linear loss on dx/dt = k sin(w t), they span many periods of f.) On
    a piece of signed length h the contribution is ``-h sum_g w_g a(t_g)^T
    f_theta(z(t_g), t_g)``; as the products are linear in a, a is weighted by
    ``-h w_g`` and every node of every piece (and sample) goes into one
    kernel call (in chunks of :data:`QUADRATURE_CHUNK` samples).

    Returns
    -------
    a_theta : ndarray, shape (p,)
    a_t : float
        Without the jumps at the observation times.
    nodes : int
        Quadrature nodes evaluated (per sample).
    """
    x, w = gauss_legendre_nodes(method)
    tb = a_dense.step_times  # backward order
    tf = z_dense.step_times
    lo_t, hi_t = min(tb[0], tb[-1]), max(tb[0], tb[-1])
    grid = np.unique(np.concatenate([tb, tf[(tf > lo_t) & (tf < hi_t)]]))  # ascending
    if tb[-1] < tb[0]:
        grid = grid[::-1]
    h = np.diff(grid)
    nodes = (grid[:-1, None] + h[:, None] * x).reshape(-1)  # (N G,): piece-major
    weights = (-h[:, None] * w).reshape(-1)
    a_theta = np.zeros(fld.n_params)
    a_t = 0.0
    per_call = max(1, QUADRATURE_CHUNK // B)  # nodes per kernel call
    for lo in range(0, nodes.size, per_call):
        t = nodes[lo : lo + per_call]
        a = a_dense.at_many(t) * weights[lo : lo + per_call, None]  # (k, B n)
        z = z_dense.at_many(t)
        _, ath, at = fld.eval_vjp_at(a.reshape(-1, n), z.reshape(-1, n), np.repeat(t, B), theta)
        a_theta += ath
        a_t += at
    return a_theta, float(a_t), int(nodes.size)


def _quadrature_jacobian(fld, theta, B, n, method, z_of):
    """Jacobian of a' = -f_z^T a (block diagonal) with z from the dense output; None without field Jacobians."""
    if not fld.has_jacobians:
        return None
    asm = BlockJacobian(B * n, B, dense=(method == "LSODA"))
    asm.diag(0, 0, n, n)
    asm.finish()

    def jac(t, y):
        return asm.build(-np.swapaxes(fld.eval_jac_z(z_of(t), t, theta), 1, 2))

    return jac


def _interpolated_jacobian(fld, theta, B, n, p, method, z_of):
    """Jacobian of [a, a_theta, a_t]' with z from the dense output; None without field Jacobians."""
    if not fld.has_jacobians:
        return None
    size = B * n + p + 1
    asm = BlockJacobian(size, B, dense=(method == "LSODA"))
    asm.diag(0, 0, n, n)  # d(da)/da = -f_z^T
    asm.row(B * n, 0, p, n)  # d(da_theta)/da = -f_theta^T
    asm.row(B * n + p, 0, 1, n)  # d(da_t)/da = -f_t^T
    asm.finish()

    def jac(t, y):
        fz, fth, ft = fld.eval_jacobians(z_of(t), t, theta)
        return asm.build(
            -np.swapaxes(fz, 1, 2),
            -np.swapaxes(fth, 1, 2),
            -ft[:, None, :],
        )

    return jac


def _backsolve_jacobian(fld, theta, B, n, p, method):
    """Jacobian of [z, a, a_theta, a_t]'; None without field Jacobians."""
    if not fld.has_jacobians:
        return None
    Bn = B * n
    size = 2 * Bn + p + 1
    asm = BlockJacobian(size, B, dense=(method == "LSODA"))
    asm.diag(0, 0, n, n)  # dz'/dz = f_z
    asm.diag(Bn, 0, n, n)  # da'/dz = -a_zz
    asm.diag(Bn, Bn, n, n)  # da'/da = -f_z^T
    asm.row(2 * Bn, 0, p, n)  # da_theta'/dz
    asm.row(2 * Bn, Bn, p, n)  # da_theta'/da = -f_theta^T
    asm.row(2 * Bn + p, 0, 1, n)  # da_t'/dz
    asm.row(2 * Bn + p, Bn, 1, n)  # da_t'/da = -f_t^T
    asm.finish()

    def jac(t, y):
        z = y[:Bn].reshape(B, n)
        a = y[Bn : 2 * Bn].reshape(B, n)
        fz, azz, athz, atz = fld.eval_backward_jac(z, a, t, theta)
        _, fth, ft = fld.eval_jacobians(z, t, theta)
        return asm.build(
            fz,
            -azz,
            -np.swapaxes(fz, 1, 2),
            -athz,
            -np.swapaxes(fth, 1, 2),
            -atz,
            -ft[:, None, :],
        )

    return jac


class _SwitchPlan:
    """The switch times of one adjoint solve among its observation times, and the jump terms there.

    The nodes of both sweeps are the observation times ``ts`` and the switch
    times between them (a switch within a few rounding errors of an
    observation time is that time). With f_b and f_a the values of f just
    before and just after a switch time tau *in the order of integration* and
    a(tau) the adjoint there (after the jumps of later observations), moving
    tau by d tau changes the state after it by (f_b - f_a) d tau (in both
    directions of time: for t1 < t0, f_b is f(tau^+)), so

    * dL/dtheta gains a(tau)^T (f_b - f_a) d tau / d theta;
    * a_t (dL/dt_0) gains a(tau)^T (f_a - f_b): the integral of a^T df/dt
      across tau, whose DiracDelta the kernels evaluate as 0.

    A jump on an observation time t_i is not differentiable in tau: moving tau
    later (in integration order) acts after t_i, through a(t_i^+) (the adjoint
    before g_i is added), moving it earlier also changes z(t_i), through
    a(t_i^+) + g_i (at t_0: through a(t_0^+) and 0). Those entries get both
    one-sided values. There a_t jumps by -g_i . f_b, consistently with
    a(t_i^+) in its switch term (the sum telescopes to -a(t_0^+) . f(z_0, t_0)).
    """

    def __init__(self, ts, switches):
        self.ts = ts
        self.switches = switches
        T = len(ts)
        self.direction = 1.0 if ts[-1] >= ts[0] else -1.0
        snap = 8 * np.finfo(float).eps * max(float(np.max(np.abs(ts))), abs(float(ts[-1] - ts[0])))
        tau = switches.times.astype(float).copy()
        self.obs_of = np.full(tau.size, -1)  # the observation time each switch falls on, or -1
        for j, t in enumerate(tau):
            near = np.flatnonzero(np.abs(ts - t) <= snap)
            if near.size:
                self.obs_of[j] = near[0]
                tau[j] = ts[near[0]]
        self.tau = tau
        extra = tau[self.obs_of < 0]
        nodes = np.concatenate([ts, extra])
        order = np.argsort(self.direction * nodes, kind="stable")
        self.nodes = nodes[order]
        position = np.empty(nodes.size, dtype=int)
        position[order] = np.arange(nodes.size)
        self.obs = position[:T]  # node index of each observation time
        self.sw_node = np.where(self.obs_of >= 0, self.obs[np.maximum(self.obs_of, 0)], 0)
        self.sw_node[self.obs_of < 0] = position[T:]
        self.inner = tau  # integrate_segments splits at those strictly inside
        self.delta = branch_margin(ts[0], ts[-1])
        first = switch_segments(float(ts[0]), float(ts[-1]), tau)[0]
        self.first_time = first[2] if self.direction > 0 else first[3]

    def __bool__(self):
        return True

    def one_sided_f(self, f, z_nodes, Bn):
        """f just before and just after each switch time (integration order) at z there, each (k, Bn)."""
        k = self.tau.size
        before, after = np.empty((k, Bn)), np.empty((k, Bn))
        for j in range(k):
            z = z_nodes[self.sw_node[j]]
            f(self.tau[j] - self.direction * self.delta, z, before[j])
            f(self.tau[j] + self.direction * self.delta, z, after[j])
        return before, after

    def observation_jumps(self, t_grad, g, f_before):
        """The jumps of a_t at the observation times, ``g_i . f_b`` where a jump falls on t_i, shape (T,)."""
        t_jump = t_grad.copy()
        for j, i in enumerate(self.obs_of):
            if i >= 1 and self.switches.jump[j]:
                t_jump[i] = float(np.dot(g[i], f_before[j]))
        return t_jump

    def backward_sweep(self, fun, keep, add, z_nodes, *, method, rtol, atol, jac, max_steps, groups, dense):
        """:func:`integrate_intervals` over the observation intervals, stopped at every switch time.

        ``add`` holds the observation jumps as for the sweep without switches;
        ``z_nodes`` (backsolve mode) restarts z from the forward state at every
        node. Each piece between switch times is one call, with f evaluated
        on its branch.

        Returns
        -------
        Y_end : ndarray, shape (T - 1, size)
            At the ends of the observation intervals, as :func:`integrate_intervals`.
        stats : dict
        dense_output : StepwiseDenseOutput or None
        Y_nodes : ndarray, shape (nodes - 1, size)
            At the end of every interval between consecutive nodes (backward order).
        """
        T, M = len(self.ts), self.nodes.size
        nodes_b = self.nodes[::-1]
        size = add.shape[1]
        add_full = np.zeros((M - 1, size))
        for i in range(1, T):  # the interval starting at observation i
            add_full[M - 1 - self.obs[i]] = add[T - 1 - i]
        if z_nodes is not None:
            Bn = z_nodes.shape[1]
            add_full[:, :Bn] = z_nodes[::-1][: M - 1]
        cuts = sorted({0, M - 1, *(M - 1 - int(m) for m in self.sw_node)})
        Y_nodes = np.empty((M - 1, size))
        stats = {"nfev": 0, "njev": 0, "nlu": 0, "nsteps": 0}
        parts = []
        for k0, k1 in zip(cuts[:-1], cuts[1:]):
            times = nodes_b[k0 : k1 + 1]
            start = add_full[k0:k1].copy()
            if k0 > 0:
                start[0] += keep * Y_nodes[k0 - 1]
            lo, hi = _clamp_range(float(times[0]), float(times[-1]), self.delta)
            out = integrate_intervals(
                on_branch(fun, lo, hi), times, keep, start, method=method, rtol=rtol, atol=atol,
                jac=None if jac is None else on_branch(jac, lo, hi), max_steps=max_steps, groups=groups, dense=dense,
                what=lambda k, times=times: f"backward (adjoint) solve over [{float(times[k + 1])!r}, {float(times[k])!r}]",
            )
            Y_nodes[k0:k1] = out[0]
            for key in stats:
                stats[key] += out[1][key]
            if dense:
                parts.append(out[2])
        Y_end = Y_nodes[M - 1 - self.obs[T - 2 :: -1] - 1] if T >= 2 else np.zeros((0, size))
        return Y_end, stats, (join_dense(parts) if dense else None), Y_nodes

    def add_jump_terms(self, a_theta, a_t, t_grad, Y_nodes, a_off, Bn, g, a_plus, f_before, f_after):
        """dL/dtheta and a_t with the jump terms; ``{name: (left, right)}`` where a jump is on an observation time."""
        M = self.nodes.size
        a_theta = np.array(a_theta, dtype=float)
        st = self.switches
        pending = {}  # theta entry -> [left, right] terms of jumps on observation times
        one_sided = {}
        for j in range(self.tau.size):
            J = f_before[j] - f_after[j]
            if not st.jump[j] or not np.any(J):
                continue
            pb = M - 1 - int(self.sw_node[j])  # node position in backward order
            a_sw = np.zeros(Bn) if pb == 0 else Y_nodes[pb - 1, a_off : a_off + Bn]
            i = int(self.obs_of[j])
            dtau = st.dtheta[j]
            if i != 0:
                a_t -= float(np.dot(a_sw, J))  # a_t gains a^T (f_a - f_b)
            if i < 0:
                a_theta += float(np.dot(a_sw, J)) * dtau
                continue
            later = float(np.dot(a_plus if i == 0 else a_sw, J))
            earlier = 0.0 if i == 0 else float(np.dot(a_sw + g[i], J))
            for q in np.flatnonzero(dtau != 0):
                up_is_later = self.direction * dtau[q] > 0
                terms = pending.setdefault(int(q), [0.0, 0.0])
                terms[0] += (earlier if up_is_later else later) * dtau[q]
                terms[1] += (later if up_is_later else earlier) * dtau[q]
            f_lo, f_hi = (f_before[j], f_after[j]) if self.direction > 0 else (f_after[j], f_before[j])
            w = -a_plus if i == 0 else g[i]
            one_sided[f"t[{i}]"] = (float(np.dot(w, f_lo)), float(np.dot(w, f_hi)))
        for q, (left, right) in sorted(pending.items()):
            one_sided[f"theta[{q}]"] = (float(a_theta[q] + left), float(a_theta[q] + right))
        return a_theta, a_t, one_sided


def _clamp_range(a, b, delta):
    """[lo, hi]: the piece a -> b shrunk by delta at each end (to its midpoint when shorter)."""
    lo, hi, mid = min(a, b), max(a, b), 0.5 * (a + b)
    return min(lo + delta, mid), max(hi - delta, mid)
