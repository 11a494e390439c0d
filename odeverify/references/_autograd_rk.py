r"""Discretise, then differentiate: the exact gradient of a fixed-step Runge–Kutta solve.

The loss of a fixed-step explicit Runge–Kutta solve (every interval [t_i, t_{i+1}]
split into m_i equal steps h = (t_{i+1} - t_i) / m_i, as
:func:`odeverify.tableaux.odeint_fixed` does) is a function of z0, theta and
the times built from the tableau's additions and multiplications and from f.
Its gradient is computed here by the discrete adjoint of the scheme, with every
derivative of f taken by autograd from :meth:`~odeverify.AbstractVectorField.f_autograd`
(never from the field's own derived Jacobians or products), so the result is
what autograd through ``odeint_fixed`` gives, up to rounding, at a fraction of
its cost:

1. Forward, in NumPy on the batch: one step from z (time s, size h) has stages
   Y_j = z + h sum_{l<j} A_jl k_l, k_j = f(Y_j, tau_j), tau_j = s + c_j h, and
   z' = z + h sum_j b_j k_j. Every Y_j, k_j and tau_j is stored.
2. Linearisation by autograd over whole blocks of stage points: one trace of
   ``f_autograd`` on the stacked points and n backward passes give df/dz at every
   point (f acts row by row, so the pass with cotangent e_i gives row i of every
   Jacobian); the same trace later gives the products with theta and t.
3. Reverse sweep, step by step from the last: with zbar the cotangent of z',
   stages in reverse, w_j = b_j zbar + sum_{m>j} A_mj Ybar_m (so that the
   cotangent of k_j is h w_j) and Ybar_j = h J(Y_j)^T w_j; then the cotangent of
   z is zbar + sum_j Ybar_j. At every observation time the loss's jump dL/dz(t_i)
   is added.
4. Theta and the times do not feed back into the recursion: after the sweep of a
   block, one autograd product of sum_j h w_j . f(Y_j, tau_j, theta) gives dL/dtheta
   and the cotangent taubar_j of every stage time. The step's cotangents are
   then hbar = sum_j w_j . k_j + sum_j c_j taubar_j and sbar = sum_j taubar_j, and
   for step k of interval i (s = t_i + k h, h = (t_{i+1} - t_i) / m):
   dL/dt_i += sbar (1 - k/m) - hbar/m and dL/dt_{i+1} += sbar k/m + hbar/m.

References
----------
J. M. Sanz-Serna, "Symplectic Runge–Kutta schemes for adjoint equations, automatic
differentiation, optimal control, and more", SIAM Review 58 (2016) 3–33;
W. W. Hager, "Runge–Kutta methods in optimal control and the transformed
adjoint system", Numerische Mathematik 87 (2000) 247–282.
"""

from __future__ import annotations

import math
import warnings

import autograd
import numpy as np

from .._integrate import integrate_segments
from ..tableaux import get_tableau
from ._base import GradientEstimate, Reference, SwitchLayout

__all__ = ["AutogradRK", "MAX_AUTOGRAD_STEPS"]

#: factor on the Richardson error estimate: the leading error coefficient of a
#: gradient entry can nearly vanish, leaving higher-order terms that the
#: estimate does not see (seen on the harmonic oscillator's dL/domega with RK4)
_SAFETY = 4.0

#: refinement of the autograd-through-RK reference stops before the steps of one solve exceed this
MAX_AUTOGRAD_STEPS = 20_000

_TINY = 1e-300

#: a block of stage points is linearised at once: at most this many bytes of Jacobians ...
_BLOCK_BYTES = 2**25
#: ... and at most this many points (rows of the autograd trace)
_BLOCK_POINTS = 2**15


class AutogradRK(Reference):
    r"""Discretise, then differentiate: the gradient of a fixed-step Runge–Kutta solve.

    The loss of a fixed-step solve (every interval [t_i, t_{i+1}] split into
    m_i equal steps) is differentiated with respect to z0, theta and every
    time: by the discrete adjoint of the scheme, with the derivatives of f
    from autograd on the field's ``f_autograd`` (see the module's notes), so
    the result equals autograd through
    :func:`odeverify.tableaux.odeint_fixed` up to rounding. Run with steps h
    and h/2 (exactly twice the steps in every interval), the two gradients
    G_h, G_{h/2} are combined by Richardson extrapolation,
    G = G_{h/2} + (G_{h/2} - G_h) / (2^q - 1) for a method of order q, and
    4 |G_{h/2} - G_h| / (2^q - 1) is the error estimate (the classical
    estimate of the error of G_{h/2}, with a safety factor of 4 because a
    gradient entry's leading error coefficient can nearly vanish). The first
    steps follow an adaptive solve at a tolerance set by ``target``; while
    the estimate exceeds ``target`` relative to the largest gradient of each
    group, the steps are scaled by the factor that the estimate's h^q
    behaviour predicts meets it, at most ``max_refinements`` times.

    Parameters
    ----------
    method : str
        A tableau of :mod:`odeverify.tableaux` (default ``'dop853'``, order 8).
    target : float
        Relative accuracy aimed at.
    max_refinements : int
    """

    def __init__(self, method="dop853", *, target=1e-8, max_refinements=3):
        self.tableau = get_tableau(method)
        self.target = target
        self.max_refinements = max_refinements
        self.name = f"autograd through {self.tableau.name}"

    def __repr__(self):
        return f"AutogradRK(method={self.tableau.name!r}, target={self.target:g})"

    def available(self, problem):
        """Not on a field that jumps on the state: fixed steps cannot end on a crossing that moves.

        Differentiating the discrete map through a step that contains the
        crossing gives the derivative of one branch's formula, not the event
        correction (the crossing moves within a fixed step), so the result is
        wrong by the saltation term however fine the steps.
        """
        jumps = [d for d in getattr(problem.field, "discontinuities", ()) if d.in_state and d.kind != "kink"]
        if jumps:
            return (f"f jumps on the state ({'; '.join(map(str, jumps))}): the fixed steps cannot stop at a crossing "
                    "that moves with the inputs, so autograd through them misses the event correction (the "
                    "saltation term); left out of the consensus")
        return None

    def _compute(self, problem):
        q = self.tableau.order
        budget = MAX_AUTOGRAD_STEPS // 2  # steps of the coarse solve, so that the fine one stays within the cap
        steps = _scaled(self._first_steps(problem), 1.0, budget)
        notes = []
        for k in range(self.max_refinements + 1):
            _, coarse = discrete_adjoint(problem, self.tableau, steps)
            loss, fine = discrete_adjoint(problem, self.tableau, [2 * m for m in steps])
            err = {key: _SAFETY * np.abs(fine[key] - coarse[key]) / (2**q - 1) for key in fine}
            ratio = self._ratio(err, fine)
            if ratio <= 1:
                break
            # the error of G(h/2) scales as h^q: aim below the target in one refinement
            # (a factor >= 1.25, so at least the longest interval's steps grow)
            grown = _scaled(steps, max(1.25, ratio ** (1.0 / q) / 0.8), budget)
            capped = sum(grown) <= sum(steps)
            if k == self.max_refinements or capped:
                why = (f"{2 * sum(steps)} steps (the cap is {MAX_AUTOGRAD_STEPS})" if capped
                       else f"{self.max_refinements} refinements")
                notes.append(f"Richardson error estimate still {ratio:.1f} times the target {self.target:g} after {why}")
                break
            steps = grown
        values = {key: fine[key] + (fine[key] - coarse[key]) / (2**q - 1) for key in fine}
        errors = {key: _floored(err[key], values[key]) + 1e-14 * np.abs(values[key]) for key in fine}
        layout = SwitchLayout(problem.field, problem.theta, problem.ts)
        left_out = layout.nondifferentiable(problem.ts) if len(layout) else {}
        for key, idx in left_out:  # the fixed steps end on the switch there: no one-sided values
            values[key][idx] = errors[key][idx] = np.nan
        if len(layout):
            notes.append(f"the steps end on every switch time ({len(layout)}); dL/dtau of each enters dL/dtheta "
                         "through dtau/dtheta")
        return GradientEstimate(
            name=self.name,
            values=values,
            errors=errors,
            loss=loss,
            error_model=(
                f"Richardson: 4|G(h/2) - G(h)|/(2^{q}-1) with up to {2 * max(steps)} {self.tableau.name} steps per interval"
            ),
            notes=notes,
            differentiates_f=True,
            left_out=left_out,
        )

    def _ratio(self, err, values):
        """The largest error estimate relative to what the target allows for its group.

        Relative to each quantity's size, but at least a thousandth of the largest quantity's: a
        quantity that is identically zero (dL/dt of a conserved loss) must not demand ever finer steps.
        """
        # (nan-aware: entries not differentiable at a switch on an observation time are NaN)
        size = {key: float(np.nanmax(np.abs(values[key]), initial=0.0)) for key in values}
        scale_all = max(size.values())
        return max(
            float(np.nanmax(err[key], initial=0.0)) / max(self.target * max(size[key], 1e-3 * scale_all), _TINY)
            for key in values
        )

    def _first_steps(self, problem):
        """Steps per interval for the first try: as many as an adaptive solve of similar order takes there.

        The adaptive solve runs at tolerance ``target`` (a tenth of it for methods below order 7, which
        are paired with an adaptive method of order 5, whose steps are then shrunk to the tableau's
        order); an interval gets the number of adaptive steps over it (fractions of steps counted),
        rounded up.
        """
        q = self.tableau.order
        method, rtol = ("DOP853", self.target) if q >= 7 else ("RK45", self.target / 10)
        rtol = max(rtol, 1e-13)
        nodes = _Nodes(problem)
        ts = nodes.t  # the observation times and the switch times between them, where the solve restarts
        with np.errstate(all="ignore"):
            res = integrate_segments(
                problem.field.solver_kernels(problem.theta, problem.B).f, float(ts[0]), float(ts[-1]),
                problem.z0.reshape(-1).copy(), nodes.layout.times, method=method, rtol=rtol, atol=rtol * 1e-2,
                dense=True, inplace=True, what="forward solve",
            )
        # the number of adaptive steps taken up to time t, linear within a step
        step_times = np.abs(np.asarray(res.dense.step_times) - ts[0])
        counts = np.diff(np.interp(np.abs(ts - ts[0]), step_times, np.arange(len(step_times), dtype=float)))
        if q < 7:
            counts *= rtol ** (1.0 / 5 - 1.0 / q)  # an order-5 step for rtol, shrunk to the tableau's order
        return [max(1, math.ceil(c - 1e-9)) for c in counts]


def _scaled(steps, factor, budget):
    """``steps`` times ``factor`` (rounded up), scaled down to at most ``budget`` in all (at least one per interval)."""
    grown = [math.ceil(m * factor - 1e-9) for m in steps]
    if sum(grown) > budget:
        fit = budget / sum(grown)
        grown = [max(1, math.floor(m * fit)) for m in grown]
    return grown


def _floored(err, values):
    """Each entry's estimate, at least the group's error level (largest estimate over largest value) times its size.

    An entry's own difference |G(h/2) - G(h)| can vanish by chance (its leading error coefficient
    crosses zero) while its error, from the higher-order terms, does not; no entry of a group is
    claimed more accurate, relative to its size, than the group as a whole.
    """
    size = float(np.nanmax(np.abs(values), initial=0.0))
    level = float(np.nanmax(err, initial=0.0)) / size if size > 0 else 0.0
    return np.maximum(err, level * np.abs(values))


# ---------------------------------------------------------------------------------------------- the adjoint


class _Grid:
    """The steps of a fixed-step solve: interval ``i``, index ``k`` in it, count ``m``, start ``s``, size ``h``.

    Every array has one entry per step, in the order of the solve; computed as
    :func:`~odeverify.tableaux.odeint_fixed` computes them (``h = (t1 - t0) / m``, ``s = t0 + k h``).
    """

    def __init__(self, ts, steps):
        self.bounds = ts
        self.interval = np.repeat(np.arange(len(steps)), steps)
        self.m = np.repeat(np.asarray(steps, dtype=float), steps)
        self.k = np.concatenate([np.arange(m, dtype=float) for m in steps])
        h_int = (ts[1:] - ts[:-1]) / np.asarray(steps, dtype=float)
        self.h = h_int[self.interval]
        self.s = ts[self.interval] + self.k * self.h
        self.ends = self.k == self.m - 1  # the step ends at t_{interval + 1}

    def __len__(self):
        return len(self.h)


def discrete_adjoint(problem, tableau, steps):
    """Loss and gradients of a fixed-step solve of ``problem``, by the discrete adjoint of the scheme.

    Parameters
    ----------
    problem : Problem
    tableau : Tableau
        An explicit method.
    steps : sequence of int, shape (nodes - 1,)
        Steps in every interval between consecutive nodes (:class:`_Nodes`: the
        observation times, and the switch times in t between them).

    Returns
    -------
    loss : float
    grads : dict
        ``"z0"`` shape (n,) or (B, n) as the user passed z0, ``"theta"`` (p,), ``"t"`` (T,).

    Notes
    -----
    A switch time tau(theta) is a node: the steps end on it, and the stages
    of the steps next to it are evaluated on their own side (their times
    clamped off tau by a few rounding errors). The discrete map is then smooth
    in tau, and its node-time cotangent dL/dtau, from the same recursion as
    the observation times', enters dL/dtheta through d tau / d theta: the
    discrete counterpart of the adjoint's jump term.
    """
    nodes = _Nodes(problem)
    grid = _Grid(nodes.t, steps)
    Y, K, tau, z_nodes = _forward(problem, tableau, grid, nodes.lo, nodes.hi)
    loss, jumps = problem.jumps(z_nodes[nodes.obs])
    node_jumps = np.zeros_like(z_nodes)
    node_jumps[nodes.obs] = jumps
    dz0, dtheta, wk, taubar = _reverse(problem, tableau, grid, Y, K, tau, node_jumps)
    d_nodes = _time_cotangents(tableau, grid, wk, taubar, len(nodes.t))
    dtheta = dtheta + d_nodes[nodes.switch_node] @ nodes.layout.dtheta if len(nodes.layout) else dtheta
    return loss, {"z0": problem.user_z0(dz0), "theta": dtheta, "t": d_nodes[nodes.obs]}


class _Nodes:
    """The observation times and the switch times in t between them, in integration order.

    Attributes
    ----------
    t : ndarray, shape (nodes,)
    obs : ndarray of int, shape (T,)
        The node of each observation time.
    switch_node : ndarray of int, shape (k,)
        The node of each switch time (an observation's node when it falls on one).
    lo, hi : ndarray, shape (nodes - 1,)
        Where each interval's stage times are clamped: shrunk off an end that is
        a switch time (by the solver's branch margin), unbounded otherwise.
    layout : SwitchLayout
    """

    def __init__(self, problem):
        ts = problem.ts
        self.layout = layout = SwitchLayout(problem.field, problem.theta, ts)
        off = layout.times[layout.on_obs < 0]
        t = np.concatenate([ts, off])
        order = np.argsort(layout.direction * t, kind="stable")
        position = np.empty(t.size, dtype=int)
        position[order] = np.arange(t.size)
        self.t = t[order]
        self.obs = position[: len(ts)]
        self.switch_node = np.where(layout.on_obs >= 0, self.obs[np.maximum(layout.on_obs, 0)], 0)
        self.switch_node[layout.on_obs < 0] = position[len(ts):]
        at_switch = np.zeros(t.size, dtype=bool)
        at_switch[self.switch_node] = True
        a, b = self.t[:-1], self.t[1:]
        lo, hi = np.minimum(a, b), np.maximum(a, b)
        mid = 0.5 * (lo + hi)
        low_end = np.where(layout.direction > 0, at_switch[:-1], at_switch[1:])
        high_end = np.where(layout.direction > 0, at_switch[1:], at_switch[:-1])
        self.lo = np.where(low_end, np.minimum(lo + layout.delta, mid), -np.inf)
        self.hi = np.where(high_end, np.maximum(hi - layout.delta, mid), np.inf)


def _forward(problem, tableau, grid, lo, hi):
    """The solve, keeping every stage (stage times of interval i clamped into [lo_i, hi_i]).

    Returns
    -------
    Y, K : ndarray, shape (N, s, B*n)
        Stage inputs Y_j and rates k_j = f(Y_j, tau_j) of every step (flat batch, sample-major).
    tau : ndarray, shape (N, s)
        Stage times s + c_j h.
    zs : ndarray, shape (nodes, B, n)
        The states at the nodes.
    """
    A, b, c = tableau.A, tableau.b, tableau.c
    S = len(b)
    B, n = problem.B, problem.n
    f = problem.field.solver_kernels(problem.theta, B).f
    N = len(grid)
    Y = np.empty((N, S, B * n))
    K = np.empty((N, S, B * n))
    tau = grid.s[:, None] + c[None, :] * grid.h[:, None]
    tau = np.clip(tau, lo[grid.interval, None], hi[grid.interval, None])
    zs = np.empty((len(grid.bounds), B * n))
    z = zs[0] = problem.z0.reshape(-1)
    rows = [A[j, :j] for j in range(S)]
    with np.errstate(all="ignore"):
        for step in range(N):
            h = grid.h[step]
            Ys, Ks = Y[step], K[step]
            Ys[0] = z
            f(tau[step, 0], Ys[0], Ks[0])
            for j in range(1, S):
                np.add(z, h * (rows[j] @ Ks[:j]), out=Ys[j])
                f(tau[step, j], Ys[j], Ks[j])
            z = z + h * (b @ Ks)
            if grid.ends[step]:
                zs[grid.interval[step] + 1] = z
    return Y, K, tau, zs.reshape(len(grid.bounds), B, n)


def _reverse(problem, tableau, grid, Y, K, tau, jumps):
    """The reverse sweep, a block of steps at a time from the last.

    Returns
    -------
    dz0 : ndarray, shape (B, n)
    dtheta : ndarray, shape (p,)
    wk : ndarray, shape (N,)
        sum_j w_j . k_j of every step (h w_j is the cotangent of k_j).
    taubar : ndarray, shape (N, s)
        Cotangents of the stage times (summed over the batch).
    """
    A, b = tableau.A, tableau.b
    S = len(b)
    B, n, p = problem.B, problem.n, problem.p
    N = len(grid)
    lin = _Linearisation(problem.field, problem.theta, B)
    per_block = max(1, min(_BLOCK_BYTES // (8 * S * B * n * n), _BLOCK_POINTS // (S * B)))
    # V = [Ybar_0 .. Ybar_{s-1}, zbar] of the current step, so that w_j = C[j] @ V
    C = np.concatenate([A.T, b[:, None]], axis=1)
    V = np.zeros((S + 1, B * n))
    zbar = V[S]
    wk = np.empty(N)
    taubar = np.zeros((N, S))
    dtheta = np.zeros(p)
    for first in reversed(range(0, N, per_block)):
        block = slice(first, min(first + per_block, N))
        J, products = lin.at(Y[block], tau[block], K[block])
        J *= grid.h[block, None, None, None, None]  # h J: Ybar_j = (h J_j)^T w_j
        W = np.empty((block.stop - block.start, S, B * n))
        for step in range(block.stop - 1, block.start - 1, -1):
            if grid.ends[step]:
                zbar += jumps[grid.interval[step] + 1].reshape(-1)
            hJ = J[step - block.start]  # (s, B, n, n)
            for j in range(S - 1, -1, -1):
                w = np.matmul(C[j], V, out=W[step - block.start, j])
                np.matmul(w.reshape(B, 1, n), hJ[j], out=V[j].reshape(B, 1, n))
            zbar += V[:S].sum(axis=0)
        wk[block] = np.einsum("Nsx,Nsx->N", W, K[block])
        dth, tb = products(W * grid.h[block, None, None])
        dtheta += dth
        taubar[block] = tb
    zbar += jumps[0].reshape(-1)
    return zbar.reshape(B, n), dtheta, wk, taubar


def _time_cotangents(tableau, grid, wk, taubar, T):
    """dL/dts from the cotangents of every step's size h and start s (see the module's notes)."""
    hbar = wk + taubar @ tableau.c
    sbar = taubar.sum(axis=1)
    dts = np.zeros(T)
    np.add.at(dts, grid.interval, sbar * (1 - grid.k / grid.m) - hbar / grid.m)
    np.add.at(dts, grid.interval + 1, sbar * grid.k / grid.m + hbar / grid.m)
    return dts


# ---------------------------------------------------------------------------------------------- autograd


class _Linearisation:
    """df/dz and the products with theta and t of ``field.f_autograd`` at blocks of stage points, by autograd.

    The fast path traces ``f_autograd`` once on all points of a block stacked into one
    (M, n) array, with one time per point (or none for an autonomous field). A field whose
    ``f_autograd`` cannot take one time per row (it fails, or its values differ from the
    forward solve's rates) is linearised one stage at a time instead, with a float time:
    slower, never wrong.

    Parameters
    ----------
    field : AbstractVectorField
    theta : ndarray, shape (p,)
    batch : int
        B, the samples that share every stage time.
    """

    def __init__(self, field, theta, batch):
        self.field = field
        self.theta = np.asarray(theta, dtype=float)
        self.B = batch
        self.n = field.n_states
        self.autonomous = field.is_autonomous is True
        self.stacked = True  # until f_autograd fails on one time per row

    def at(self, Y, tau, K):
        """Linearise at the stage points of a block of steps.

        Parameters
        ----------
        Y, K : ndarray, shape (Nb, s, B*n)
            Stage inputs and the forward solve's rates there.
        tau : ndarray, shape (Nb, s)

        Returns
        -------
        J : ndarray, shape (Nb, s, B, n, n)
            ``J[..., i, k] = df_i/dz_k``.
        products : callable
            ``products(kbar)`` with ``kbar`` of shape (Nb, s, B*n) returns ``(sum kbar . f_theta``
            of shape (p,), ``kbar . f_t`` summed over the batch, shape (Nb, s)).
        """
        Nb, S = tau.shape
        B, n = self.B, self.n
        if self.stacked:
            t = float(tau[0, 0]) if self.autonomous else np.repeat(tau.reshape(-1), B)
            try:
                J, vjp = self._trace(Y.reshape(-1, n), t, want=K.reshape(-1, n))
            except Exception:  # noqa: BLE001 - f_autograd cannot take one time per row: per stage below
                self.stacked = False
            else:
                def products(kbar):
                    _, t_bar, th_bar = vjp(kbar.reshape(-1, n))
                    if self.autonomous:
                        return th_bar, np.zeros((Nb, S))
                    return th_bar, np.asarray(t_bar).reshape(Nb, S, B).sum(axis=2)

                return J.reshape(Nb, S, B, n, n), products
        # one stage at a time: B rows and a float time per trace
        traces = [self._trace(Y[i, j].reshape(B, n), float(tau[i, j]))
                  for i in range(Nb) for j in range(S)]
        J = np.stack([J for J, _ in traces]).reshape(Nb, S, B, n, n)

        def products(kbar):
            th_bar = np.zeros(self.theta.shape)
            t_bar = np.empty(Nb * S)
            for idx, ((_, vjp), kb) in enumerate(zip(traces, kbar.reshape(Nb * S, B, n))):
                _, tb, thb = vjp(kb)
                th_bar += thb
                t_bar[idx] = tb
            return th_bar, t_bar.reshape(Nb, S)

        return J, products

    def _trace(self, z, t, want=None):
        """Jacobians of f_autograd at the rows of ``z`` (M, n) and its VJP.

        Raises
        ------
        ValueError
            When ``want`` (the rates of the forward solve) is given and the traced values differ.
        """
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.filterwarnings("ignore", message="Output seems independent of input")
            vjp, value = autograd.make_vjp(_packed(self.field))((z, t, self.theta))
            if want is not None and not _close(np.asarray(value, dtype=float), want):
                raise ValueError("f_autograd's values differ from the forward solve's")
            M, n = z.shape
            J = np.empty((M, n, n))
            e = np.zeros((M, n))
            for i in range(n):
                e[:, i] = 1.0
                J[:, i, :] = vjp(e)[0]
                e[:, i] = 0.0

        def quiet_vjp(g):
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.filterwarnings("ignore", message="Output seems independent of input")
                z_bar, t_bar, th_bar = vjp(g)
            return z_bar, t_bar, np.asarray(th_bar, dtype=float).reshape(-1)

        return J, quiet_vjp


def _close(value, want):
    scale = float(np.max(np.abs(want), initial=0.0))
    return value.shape == want.shape and np.allclose(value, want, rtol=1e-8, atol=1e-10 * scale, equal_nan=True)


def _packed(field):
    def f(args):
        z, t, theta = args
        return field.f_autograd(z, t, theta)

    return f
