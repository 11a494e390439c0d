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
from .._integrate import integrate_span
from .._validate import check_method, check_mode
from ..errors import InvalidArgumentError
from ._base import GradientEstimate, Reference

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
        return GradientEstimate(
            name=self.name,
            values=r2.as_dict(),
            errors=_abs_diff(r1.as_dict(), r2.as_dict()),
            loss=r2.loss,
            error_model=f"difference of the adjoint at rtol={self.rtol:g} and {max(self.rtol / 100, 2.3e-14):g}",
            independent=False,
            notes=notes,
            differentiates_f=True,
        )


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

        # y = [z (B*n), S (B*n*(n+p))], S[b] = [S_z0 | S_theta] of shape (n, n+p)
        def rhs(t, y):
            z = y[:size_z].reshape(B, n)
            S = y[size_z:].reshape(B, n, m)
            fz, fth, _ = fld.eval_jacobians(z, t, theta)
            dS = fz @ S
            dS[:, :, n:] += fth
            return np.concatenate([fld.eval_f(z, t, theta).reshape(-1), dS.reshape(-1)])

        S0 = np.zeros((B, n, m))
        S0[:, :, :n] = np.eye(n)
        y0 = np.concatenate([problem.z0.reshape(-1), S0.reshape(-1)])
        ts = problem.ts
        with np.errstate(all="ignore"):
            Y = integrate_span(rhs, float(ts[0]), float(ts[-1]), y0, method=self.method, rtol=rtol, atol=atol,
                               t_out=ts, what="forward sensitivity solve").y_at
        zs = Y[:, :size_z].reshape(len(ts), B, n)
        Ss = Y[:, size_z:].reshape(len(ts), B, n, m)
        value, g = problem.jumps(zs)
        # sum_i S_i^T g_i for every sample
        grad_all = np.einsum("tbnm,tbn->bm", Ss, g)
        dz0 = grad_all[:, :n]
        dth = grad_all[:, n:].sum(axis=0)
        dts = np.zeros(len(ts))
        for i in range(1, len(ts)):
            dts[i] = float(np.sum(g[i] * fld.eval_f(zs[i], float(ts[i]), theta)))
        f0 = fld.eval_f(problem.z0, float(ts[0]), theta)  # (B, n)
        Sz = Ss[1:, :, :, :n]
        dts[0] = -float(np.einsum("tbn,tbnk,bk->", g[1:], Sz, f0))
        return value, {"z0": problem.user_z0(dz0), "theta": dth, "t": dts}

    def _compute(self, problem):
        _, v1 = self._run(problem, self.rtol, self.atol)
        loss, v2 = self._run(problem, max(self.rtol / 100, 2.3e-14), self.atol / 100)
        return GradientEstimate(
            name=self.name,
            values=v2,
            errors=_abs_diff(v1, v2),
            loss=loss,
            error_model=f"difference of the solves at rtol={self.rtol:g} and {max(self.rtol / 100, 2.3e-14):g}",
            differentiates_f=True,
        )


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
