"""The gradient sources: the adjoint, forward sensitivities and exact values
(autograd through fixed-step Runge–Kutta is in :mod:`._autograd_rk`, finite
differences in :mod:`._finite_differences`).

Each returns a :class:`~odeverify.references.GradientEstimate` whose ``errors``
estimate the absolute error of every entry; the estimate's model is stated in
``error_model``.
"""

from __future__ import annotations

import warnings

import numpy as np
from .._adjoint import BacksolveDriftWarning, adjoint_gradients
from .._integrate import integrate_span, on_branch, switch_segments
from .._validate import check_method, check_mode
from ..errors import InvalidArgumentError
from ._base import GradientEstimate, Reference, SwitchLayout

__all__ = ["Adjoint", "ForwardSensitivity", "Exact"]


def _abs_diff(a, b, floor_rel=1e-14):
    return {k: np.abs(a[k] - b[k]) + floor_rel * np.abs(b[k]) for k in b}


class Adjoint(Reference):
    """odeverify's own adjoint at tight tolerances.

    Error model: the result at ``rtol`` and at ``rtol / 100`` are compared;
    their difference bounds the error of the tighter one (a conservative
    bound when the error is proportional to the tolerance). Not independent
    of the adjoint derivation, so it never stands alone as evidence.

    Parameters
    ----------
    mode : {'interpolated', 'backsolve', 'quadrature'}
        ``'quadrature'`` integrates a alone backwards and the parameter
        gradient by Gauss–Legendre quadrature on the backward steps (see
        :func:`~odeverify.adjoint_gradients`): the cheapest of the three
        with an implicit method on a field with many parameters.
    method : str
    rtol, atol : float
        Tolerances of the looser of the two runs.
    """

    def __init__(self, mode="interpolated", *, method="DOP853", rtol=1e-10, atol=1e-10):
        self.mode = check_mode(mode)
        self.method = check_method(method)
        self.rtol = rtol
        self.atol = atol
        self.name = f"adjoint ({mode})"

    def __repr__(self):
        return f"Adjoint(mode={self.mode!r}, method={self.method!r}, rtol={self.rtol:g})"

    def _run(self, problem, rtol, atol):
        z0 = problem.user_z0(problem.z0)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", BacksolveDriftWarning)
            res = adjoint_gradients(
                problem.field, z0, problem.ts, problem.theta, problem.loss,
                mode=self.mode, method=self.method, rtol=rtol, atol=atol,
            )
        return res, [str(w.message) for w in caught if issubclass(w.category, BacksolveDriftWarning)]

    def _compute(self, problem):
        r1, _ = self._run(problem, self.rtol, self.atol)
        r2, drift = self._run(problem, max(self.rtol / 100, 2.3e-14), self.atol / 100)
        notes = []
        if self.mode == "backsolve":
            notes.append(f"backsolve reconstructed z(t0) {r2.z0_reconstruction_error:.2g} from z0")
            notes += drift
        if r2.switches is not None:
            notes.append(f"stopped at {len(r2.switches)} switch time(s) and added the jump terms a^T(f_b - f_a) dtau")
        if r2.events:
            notes.append(f"located {len(r2.events)} crossing(s) of state conditions and added the saltation terms "
                         "(a^- = S^T a^+, g_theta w, g_t w)")
        return GradientEstimate(
            name=self.name,
            values=r2.as_dict(),
            errors=_abs_diff(r1.as_dict(), r2.as_dict()),
            loss=r2.loss,
            error_model=f"difference of the adjoint at rtol={self.rtol:g} and {max(self.rtol / 100, 2.3e-14):g}",
            independent=False,
            notes=notes,
            differentiates_f=True,
            one_sided={_entry(name): lr for name, lr in r2.one_sided.items()},
        )


def _entry(name):
    """``"theta[1]"`` -> ``("theta", (1,))`` (the names of :attr:`AdjointResult.one_sided`)."""
    q, i = name[:-1].split("[")
    return q, (int(i),)


class ForwardSensitivity(Reference):
    r"""The direct method: integrate S = dz/d[z0, theta] alongside z.

    dS/dt = (df/dz) S + [0, df/dtheta], S(t0) = [I, 0], solved as one system
    (``method``: DOP853 by default, stepped by odeverify's loop with SciPy's
    steps; any SciPy method runs in SciPy's own solver class), with the
    Jacobians from the field, never the adjoint's derived products. Then, with g_i = dL/dz(t_i):
    dL/dz0 = sum_i S_z0(t_i)^T g_i, dL/dtheta = sum_i S_theta(t_i)^T g_i,
    dL/dt_i = g_i . f(z(t_i), t_i) for i >= 1 and
    dL/dt_0 = -sum_{i>=1} g_i^T S_z0(t_i) f(z_0, t_0).

    Error model: difference of the results at ``rtol`` and ``rtol / 100``.
    """

    name = "forward sensitivities"

    def __init__(self, *, method="DOP853", rtol=1e-10, atol=1e-10):
        self.method = check_method(method)
        self.rtol = rtol
        self.atol = atol

    def __repr__(self):
        return f"ForwardSensitivity(method={self.method!r}, rtol={self.rtol:g})"

    def available(self, problem):
        if not problem.field.has_jacobians:
            return "the vector field provides no Jacobians"
        return None

    def _run(self, problem, rtol, atol):
        fld = problem.field
        B, n, p = problem.B, problem.n, problem.p
        theta = problem.theta
        m = n + p
        size_z = B * n
        S0 = np.zeros((B, n, m))
        S0[:, :, :n] = np.eye(n)
        y0 = np.concatenate([problem.z0.reshape(-1), S0.reshape(-1)])
        ts = problem.ts
        layout = SwitchLayout(fld, theta, ts, batch=B)
        with np.errstate(all="ignore"):
            if layout.events_located:
                Y, branches = _sensitivities_through_events(fld, theta, ts, y0, n, method=self.method, rtol=rtol,
                                                            atol=atol)
                on_obs = []
            else:
                Y, on_obs = _sensitivities_through_switches(_sensitivity_rhs(fld, theta, B, n), fld, theta, ts, y0,
                                                             layout, B, n, method=self.method, rtol=rtol, atol=atol)
                branches = [fld] * len(ts)
        zs = Y[:, :size_z].reshape(len(ts), B, n)
        Ss = Y[:, size_z:].reshape(len(ts), B, n, m)
        value, g = problem.jumps(zs)
        # sum_i S_i^T g_i for every sample
        grad_all = np.einsum("tbnm,tbn->bm", Ss, g)
        dz0 = grad_all[:, :n]
        dth = grad_all[:, n:].sum(axis=0)
        if len(layout):  # entries whose switch is not differentiable (see _sensitivities_through_switches)
            dth[np.any(np.isnan(layout.dtheta), axis=0)] = np.nan
        dts = np.zeros(len(ts))
        for i in range(1, len(ts)):  # f on the branch the observation is on (at an event: the one before it)
            dts[i] = float(np.sum(g[i] * branches[i].eval_f(zs[i], float(ts[i]), theta)))
        f0 = branches[0].eval_f(problem.z0, float(ts[0]), theta)  # (B, n)
        a0 = np.einsum("tbn,tbnk->bk", g[1:], Ss[1:, :, :, :n])  # a(t0^+) = sum_i S_z0(t_i)^T g_i
        dts[0] = -float(np.sum(a0 * f0))
        values = {"z0": problem.user_z0(dz0), "theta": dth, "t": dts}
        return value, values, _one_sided(layout, on_obs, values, g, a0, zs, fld, theta, ts)

    def _compute(self, problem):
        _, v1, _ = self._run(problem, self.rtol, self.atol)
        loss, v2, one_sided = self._run(problem, max(self.rtol / 100, 2.3e-14), self.atol / 100)
        layout = SwitchLayout(problem.field, problem.theta, problem.ts, batch=problem.B)
        notes = [f"stopped at {len(layout)} switch time(s) and added the jumps (f_b - f_a) dtau/dtheta of S_theta"] \
            if len(layout) else []
        if layout.events_located:
            notes.append("stopped at every crossing of a state condition (located by root finding) and carried "
                         "S = [S_z0 | S_theta] across it by the saltation matrix and the shift of the event time")
        return GradientEstimate(
            name=self.name,
            values=v2,
            errors=_abs_diff(v1, v2),
            loss=loss,
            error_model=f"difference of the solves at rtol={self.rtol:g} and {max(self.rtol / 100, 2.3e-14):g}",
            differentiates_f=True,
            notes=notes,
            one_sided=one_sided,
        )


def _sensitivity_rhs(fld, theta, B, n):
    """d/dt [z, S] for ``fld``: dS/dt = (df/dz) S + [0, df/dtheta], y = [z (B*n), S (B*n*(n+p))]."""
    m = n + fld.n_params
    size_z = B * n

    def rhs(t, y):
        z = y[:size_z].reshape(B, n)
        S = y[size_z:].reshape(B, n, m)
        fz, fth, _ = fld.eval_jacobians(z, t, theta)
        dS = fz @ S
        dS[:, :, n:] += fth
        return np.concatenate([fld.eval_f(z, t, theta).reshape(-1), dS.reshape(-1)])

    return rhs


def _sensitivities_through_events(fld, theta, ts, y0, n, *, method, rtol, atol):
    """The state and sensitivities at ``ts`` (B = 1) of a field with state events, and each observation's branch.

    The crossings are located by :func:`~odeverify._events.integrate_events`;
    between them [z, S] is integrated on the branch that segment is on, and at
    each event tau the sensitivities jump as a perturbation does
    (:meth:`~odeverify._switches.Event.propagate`): a column for z0 by the
    saltation matrix, dS^+ = S dS^-, a column for theta_q also by the shift of
    tau it causes through g's explicit dependence, (f_b - f_a) d tau/d theta_q.
    The state restarts on the surface, at the event's z. An observation at
    an event's time is the state just before it (as in the adjoint).

    Returns
    -------
    Y : ndarray, shape (T, n + n (n + p))
    branches : list of ODESystem, length T
        The branch each observation lies on (for f there).
    """
    from .._events import integrate_events

    p = fld.n_params
    m = n + p
    direction = 1.0 if ts[-1] >= ts[0] else -1.0
    fwd = integrate_events(fld, theta, float(ts[0]), float(ts[-1]), y0[:n], t_out=ts, method=method, rtol=rtol,
                           atol=atol, what="forward sensitivity solve (events)")
    dtheta = np.concatenate([np.zeros((p, n)), np.eye(p)], axis=1)  # (p, m): what each column moves theta by
    Y = np.empty((len(ts), y0.size))
    Y[0], y, k = y0, y0.copy(), 1
    branches = [fld.branch(fwd.segments[0].signs)] * len(ts)
    for number, seg in enumerate(fwd.segments):
        sub = fld.branch(seg.signs)
        k_end = k + int(np.searchsorted(direction * ts[k:], direction * seg.end, side="right"))
        res = integrate_span(_sensitivity_rhs(sub, theta, 1, n), seg.start, seg.end, y, method=method, rtol=rtol,
                             atol=atol, t_out=ts[k:k_end], what="forward sensitivity solve")
        Y[k:k_end], y = res.y_at, res.y_end.copy()
        branches[k:k_end] = [sub] * (k_end - k)
        k = k_end
        if number < len(fwd.events):
            event = fwd.events[number]
            y[:n] = event.z
            y[n:] = event.propagate(y[n:].reshape(n, m), dtheta).ravel()
    return Y, branches


def _sensitivities_through_switches(rhs, fld, theta, ts, y0, layout, B, n, *, method, rtol, atol):
    """The state and sensitivities at ``ts``, stopped at every switch time with S_theta's jump added there.

    With f_b, f_a the values of f just before and just after a switch time tau
    in the order of integration, moving tau by d tau moves the state after it
    by (f_b - f_a) d tau (in both directions of time), so S_theta jumps by
    (f_b - f_a) (d tau / d theta)^T; S_z0 does not (tau depends on theta only).
    A switch on an observation time t_i jumps after the observation there (the
    one-sided value as tau moves later, see :func:`_one_sided`).

    Returns
    -------
    Y : ndarray, shape (T, size)
    on_obs : list of (j, i, J)
        The switches ``j`` on observation times ``i`` with f_b - f_a, shape (B, n).
    """
    size_z = B * n
    m = fld.n_params + n
    direction, delta = layout.direction, layout.delta
    Y = np.empty((len(ts), y0.size))
    y, k, on_obs = y0.copy(), 0, []

    def jump(y, j):
        tau = layout.times[j]
        z = y[:size_z].reshape(B, n)
        J = fld.eval_f(z, tau - direction * delta, theta) - fld.eval_f(z, tau + direction * delta, theta)
        if layout.jump[j]:
            S = y[size_z:].reshape(B, n, m)
            # a NaN d tau / d theta (switches that coincide but move apart) is carried to dL/dtheta by _run,
            # not through the solve, where it would poison the error norm of every column
            S[:, :, n:] += J[:, :, None] * np.nan_to_num(layout.dtheta[j], nan=0.0)[None, None, :]
        return J

    at_start = [j for j in range(len(layout)) if layout.times[j] == ts[0]]
    if len(ts):
        Y[0] = y
    for j in at_start:  # a switch at t0 acts as it moves later, into the interval
        on_obs.append((j, 0, jump(y, j)))
    pieces = switch_segments(float(ts[0]), float(ts[-1]), layout.times)
    inner = [j for j in range(len(layout)) if direction * (layout.times[j] - ts[0]) > 0
             and direction * (ts[-1] - layout.times[j]) > 0]
    k = 1
    for number, (a, b, lo, hi) in enumerate(pieces):
        k_end = k + int(np.searchsorted(direction * ts[k:], direction * b, side="right"))
        res = integrate_span(on_branch(rhs, lo, hi) if len(pieces) > 1 else rhs, a, b, y, method=method, rtol=rtol,
                             atol=atol, t_out=ts[k:k_end], what="forward sensitivity solve")
        Y[k:k_end], y, k = res.y_at, res.y_end.copy(), k_end
        if number < len(pieces) - 1:
            j = inner[number]
            J = jump(y, j)
            if layout.on_obs[j] >= 0:
                on_obs.append((j, int(layout.on_obs[j]), J))
    for j in range(len(layout)):  # a switch at tN: only as it moves earlier
        if layout.times[j] == ts[-1] and layout.on_obs[j] == len(ts) - 1 and len(ts) > 1:
            z = Y[-1, :size_z].reshape(B, n)
            tau = layout.times[j]
            on_obs.append((j, len(ts) - 1, fld.eval_f(z, tau - direction * delta, theta)
                           - fld.eval_f(z, tau + direction * delta, theta)))
    return Y, on_obs


def _one_sided(layout, on_obs, values, g, a0, zs, fld, theta, ts):
    """Where a jump falls on an observation time: NaN in ``values`` and ``{(q, index): (left, right)}``.

    ``values["theta"]`` holds every such jump as it acts when tau moves later
    (after the observation); as tau moves earlier it also changes z(t_i), by
    (f_b - f_a) d tau, which adds g_i^T (f_b - f_a) d tau (at t_0 instead the
    jump does not act at all). t_i itself: g_i . f just below and just above
    it (at t_0, -a(t_0^+) . f).
    """
    out = {}
    if not on_obs:
        return out
    base = values["theta"].copy()
    left, right = base.copy(), base.copy()
    touched = set()
    delta = layout.delta
    for j, i, J in on_obs:
        if not layout.jump[j] or not np.any(J):
            continue
        dtau = layout.dtheta[j]
        # earlier minus later, per unit d tau
        d = float(np.sum(g[i] * J)) if i > 0 else -float(np.sum(a0 * J))
        for q in np.flatnonzero(dtau != 0):
            later_is_up = layout.direction * dtau[q] > 0
            (left if later_is_up else right)[q] += d * dtau[q]
            touched.add(int(q))
        z = zs[i]
        f_lo = fld.eval_f(z, float(ts[i]) - delta, theta)
        f_hi = fld.eval_f(z, float(ts[i]) + delta, theta)
        w = g[i] if i > 0 else -a0
        out[("t", (i,))] = (float(np.sum(w * f_lo)), float(np.sum(w * f_hi)))
        values["t"][i] = np.nan
    for q in sorted(touched):
        out[("theta", (q,))] = (float(left[q]), float(right[q]))
        values["theta"][q] = np.nan
    return out


class Exact(Reference):
    """Known exact gradients (e.g. from :mod:`odeverify.catalog`).

    Parameters
    ----------
    values : mapping
        ``"z0"``, ``"theta"``, ``"t"`` arrays.
    loss : float, optional
    name : str
    """

    def __init__(self, values, *, loss=None, name="closed form"):
        self.values = {k: np.asarray(v, dtype=float) for k, v in values.items() if v is not None}
        unknown = set(self.values) - {"z0", "theta", "t"}
        if unknown:
            raise InvalidArgumentError(f"Exact(values): unknown keys {sorted(unknown)}; use 'z0', 'theta', 't'")
        self.loss = loss
        self.name = name

    def __repr__(self):
        return f"Exact({self.name!r})"

    def _compute(self, problem):
        return GradientEstimate(
            name=self.name,
            values=dict(self.values),
            errors={k: 4e-16 * np.abs(v) for k, v in self.values.items()},
            loss=self.loss,
            error_model="exact (rounding only)",
            exact=True,
        )
