"""The gradient sources: the adjoint, forward sensitivities, autograd through
fixed-step Runge–Kutta, finite differences (central with Richardson, and
complex step), and exact values.

Each returns a :class:`~odeverify.references.GradientEstimate` whose ``errors``
estimate the absolute error of every entry; the estimate's model is stated in
``error_model``.
"""

from __future__ import annotations

import math
import warnings

import autograd
import autograd.numpy as anp
import numpy as np
import scipy.integrate

from .._adjoint import BacksolveDriftWarning, adjoint_gradients
from .._validate import check_method, check_mode
from ..errors import IntegrationError, InvalidArgumentError
from ..tableaux import get_tableau, odeint_fixed
from ._base import GradientEstimate, Reference

__all__ = ["Adjoint", "ForwardSensitivity", "AutogradRK", "FiniteDifferences", "Exact"]

_TINY = 1e-300


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
        )


class ForwardSensitivity(Reference):
    r"""The direct method: integrate S = dz/d[z0, theta] alongside z.

    dS/dt = (df/dz) S + [0, df/dtheta], S(t0) = [I, 0], solved with
    :func:`scipy.integrate.solve_ivp` directly (not odeverify's stepping loop),
    with the Jacobians from the field. Then, with g_i = dL/dz(t_i):
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
            sol = scipy.integrate.solve_ivp(
                rhs, (ts[0], ts[-1]), y0, method=self.method, t_eval=ts, rtol=rtol, atol=atol
            )
        if sol.status != 0 or sol.y.shape[1] != len(ts):
            raise IntegrationError(f"forward sensitivity solve failed: {sol.message}")
        Y = sol.y.T
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
        )


#: factor on the Richardson error estimate: the leading error coefficient of a
#: gradient entry can nearly vanish, leaving higher-order terms that the
#: estimate does not see (seen on the harmonic oscillator's dL/domega with RK4)
_SAFETY = 4.0


#: refinement of the autograd-through-RK reference stops before the steps of one solve exceed this
MAX_AUTOGRAD_STEPS = 20_000


class AutogradRK(Reference):
    r"""Discretise, then differentiate: autograd through a fixed-step Runge–Kutta solve.

    The loss of a fixed-step solve (every interval [t_i, t_{i+1}] split into
    m_i equal steps) is differentiated by autograd with respect to z0, theta
    and every time. Run with steps h and h/2 (exactly twice the steps in
    every interval), the two gradients G_h, G_{h/2} are combined by Richardson
    extrapolation, G = G_{h/2} + (G_{h/2} - G_h) / (2^q - 1) for a method of
    order q, and 4 |G_{h/2} - G_h| / (2^q - 1) is the error estimate (the
    classical estimate of the error of G_{h/2}, with a safety factor of 4
    because a gradient entry's leading error coefficient can nearly vanish).
    The steps are halved until the estimate falls below ``target`` relative
    to the largest gradient of each group, at most ``max_refinements`` times.

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

    def _gradients(self, problem, steps):
        fld = problem.field
        tab = self.tableau

        def L(z0, ts, theta):
            # parameters split once, so each stage does not index them again
            th = [theta[k] for k in range(problem.p)]
            zs = odeint_fixed(lambda z, t: fld.f_autograd(z, t, th), z0, ts, method=tab, steps=steps, xp=anp)
            return problem.loss(zs if problem.batched else zs[:, 0, :])

        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Output seems independent of input")
            with np.errstate(all="ignore"):
                value, (gz, gt, gth) = autograd.value_and_grad(L, argnum=(0, 1, 2))(
                    problem.z0, problem.ts.copy(), problem.theta.copy()
                )
        return float(getattr(value, "_value", value)), {
            "z0": problem.user_z0(np.asarray(gz)),
            "theta": np.asarray(gth, dtype=float).reshape(problem.p),
            "t": np.asarray(gt, dtype=float),
        }

    def _compute(self, problem):
        # initial step: that of an adaptive solver of similar order at a moderate tolerance
        q = self.tableau.order
        span = abs(problem.ts[-1] - problem.ts[0])
        if q >= 7:
            _, res = problem.states(rtol=1e-8, atol=1e-10, method="DOP853")
            h = span / max(res.nsteps, 4)
        else:
            _, res = problem.states(rtol=1e-6, atol=1e-9, method="RK45")
            h = span / max(2 * res.nsteps, 8)
        notes = []
        for k in range(self.max_refinements + 1):
            steps = [max(1, math.ceil(abs(b - a) / h)) for a, b in zip(problem.ts[:-1], problem.ts[1:])]
            _, coarse = self._gradients(problem, steps)
            loss, fine = self._gradients(problem, [2 * m for m in steps])
            err = {key: _SAFETY * np.abs(fine[key] - coarse[key]) / (2**q - 1) for key in fine}
            # relative to each quantity's size, but at least a thousandth of the largest quantity's: a quantity
            # that is identically zero (dL/dt of a conserved loss) must not demand ever finer steps
            scale_all = max(float(np.max(np.abs(fine[key]), initial=0.0)) for key in fine)
            ratio = max(
                float(np.max(err[key], initial=0.0))
                / max(self.target * max(float(np.max(np.abs(fine[key]), initial=0.0)), 1e-3 * scale_all), _TINY)
                for key in fine
            )
            capped = 2 * sum(steps) > MAX_AUTOGRAD_STEPS
            if ratio <= 1 or k == self.max_refinements or capped:
                if ratio > 1:
                    why = (f"{2 * sum(steps)} steps (the cap is {MAX_AUTOGRAD_STEPS})" if capped
                           else f"{self.max_refinements} refinements")
                    notes.append(
                        f"Richardson error estimate still {ratio:.1f} times the target {self.target:g} after {why}"
                    )
                break
            # the error of G(h/2) scales as h^q: aim below the target in one refinement
            h = h / 2 * min(0.5, 0.8 * ratio ** (-1.0 / q))
        values = {key: fine[key] + (fine[key] - coarse[key]) / (2**q - 1) for key in fine}
        errors = {key: err[key] + 1e-14 * np.abs(values[key]) for key in fine}
        return GradientEstimate(
            name=self.name,
            values=values,
            errors=errors,
            loss=loss,
            error_model=(
                f"Richardson: 4|G(h/2) - G(h)|/(2^{q}-1) with up to {2 * max(steps)} {self.tableau.name} steps per interval"
            ),
            notes=notes,
        )


class FiniteDifferences(Reference):
    r"""Finite differences of the loss of tightly solved forward problems.

    For every scalar input x_j (each entry of z0, theta and ts): central
    differences D(h) = (L(x + h e_j) - L(x - h e_j)) / 2h for steps
    h_k = h_0 4^{-k}, combined by Richardson extrapolation R_k = (16 D(h_{k+1})
    - D(h_k)) / 15 (fourth order); the step whose estimate |R_k - R_{k+1}| +
    noise / h is smallest is kept, where the noise is the loss's own solver
    error (the loss at ``rtol`` against ``rtol * 100``). Time steps are kept
    below a quarter of the gap to the neighbouring times, so perturbed grids
    stay monotone. The observation times after t0 are differenced on the
    dense output of one solve; since differences of an interpolant converge
    to its own derivative, their error adds twice the largest distance to
    the same derivative from solves at ``10 rtol`` and ``100 rtol``.

    Where the right-hand side is analytic and the loss passes an analyticity
    probe (its complex-step directional derivative matches autograd's),
    z0 and theta use the complex step dL/dx_j = Im L(x + i h e_j) / h with
    h = 1e-30 max(|x_j|, 1), exact up to the solver's error (estimated as
    twice the largest distance to the same step at ``10 rtol`` and ``100 rtol``).

    Parameters
    ----------
    rtol : float
        Tolerance of the forward solves.
    complex_step : bool or None
        Use the complex step where valid (None: automatically).
    levels : int
        Number of step sizes tried per entry.
    """

    name = "finite differences"

    def __init__(self, *, rtol=1e-12, method="DOP853", complex_step=None, levels=5):
        self.rtol = rtol
        self.method = check_method(method)
        self.complex_step = complex_step
        self.levels = levels

    def __repr__(self):
        return f"FiniteDifferences(rtol={self.rtol:g}, complex_step={self.complex_step})"

    def _L(self, problem, z0=None, ts=None, theta=None):
        return problem.loss_value(z0, ts, theta, rtol=self.rtol, atol=self.rtol, method=self.method)

    def _complex_ok(self, problem):
        if self.complex_step is False:
            return False, "complex step not requested"
        fld = problem.field
        if not fld.complex_step_safe():
            return False, "the right-hand side is not analytic (or has no complex kernel)"
        zs, _ = problem.states(rtol=1e-8, atol=1e-8)
        _, g = problem.jumps(zs)
        v = np.random.default_rng(0).normal(size=zs.shape)
        h = 1e-30
        try:
            with np.errstate(all="ignore"):
                val = problem.loss(problem.user_states(zs + 1j * h * v))
            d = float(np.imag(val)) / h
        except Exception as exc:  # noqa: BLE001 - any failure means the loss is not complex-safe
            return False, f"the loss cannot take complex states ({type(exc).__name__})"
        want = float(np.sum(g * v))
        if not np.isfinite(d) or abs(d - want) > 1e-8 * max(abs(want), 1e-300) + 1e-300:
            return False, "the loss is not analytic (complex-step probe disagrees with autograd)"
        return True, ""

    def _complex_grad(self, problem, rtol):
        """Complex-step gradients with respect to z0 (B, n) and theta (p,)."""
        z0, th = problem.z0, problem.theta
        vz = np.zeros_like(z0)
        for idx in np.ndindex(*z0.shape):
            h = 1e-30 * max(abs(z0[idx]), 1.0)
            zc = z0.astype(complex)
            zc[idx] += 1j * h
            vz[idx] = float(np.imag(self._complex_L(problem, zc, th.astype(complex), rtol))) / h
        vth = np.zeros(problem.p)
        for j in range(problem.p):
            h = 1e-30 * max(abs(th[j]), 1.0)
            tc = th.astype(complex)
            tc[j] += 1j * h
            vth[j] = float(np.imag(self._complex_L(problem, z0.astype(complex), tc, rtol))) / h
        return vz, vth

    def _complex_L(self, problem, z0, theta, rtol):
        fld = problem.field
        B, n = z0.shape
        ts = problem.ts

        def fun(t, y):
            return fld.eval_f_complex(y.reshape(B, n), t, theta).reshape(-1)

        from .._integrate import integrate_span

        res = integrate_span(
            fun, float(ts[0]), float(ts[-1]), z0.reshape(-1).astype(complex),
            method="DOP853", rtol=rtol, atol=rtol, t_out=ts,
        )
        zs = res.y_at.reshape(len(ts), B, n)
        return problem.loss(problem.user_states(zs))

    def _compute(self, problem):
        base = self._L(problem)
        noise = abs(base - problem.loss_value(rtol=self.rtol * 100, atol=self.rtol * 100, method=self.method))
        noise = max(noise, 1e-15 * abs(base), 1e-300)
        use_cs, why = self._complex_ok(problem)
        notes = [] if use_cs else [f"central differences only: {why}"]
        z0, th = problem.z0, problem.theta
        if use_cs:
            # The complex step differentiates the discrete solve exactly, but the
            # sensitivity's own discretisation error is not what the step-size
            # control watches: it need not shrink with the tolerance (seen: the
            # same 7e-12 error at rtol 1e-10 and 1e-12). Its estimate is twice the
            # largest distance to the solves at 10 and 100 times the tolerance
            # (a sample of the error's size, not a bound, hence the factor).
            vz, vth = self._complex_grad(problem, self.rtol)
            runs = [self._complex_grad(problem, self.rtol * f) for f in (10, 100)]
            ez = _spread(vz, [r[0] for r in runs]) + 1e-14 * np.abs(vz)
            eth = _spread(vth, [r[1] for r in runs]) + 1e-14 * np.abs(vth)
        else:
            vz, ez = np.zeros_like(z0), np.zeros_like(z0)
            for idx in np.ndindex(*z0.shape):
                vz[idx], ez[idx] = self._central(
                    lambda s, idx=idx: self._L(problem, z0=_bump(z0, idx, s)), max(abs(z0[idx]), 1.0), noise
                )
            vth, eth = np.zeros(problem.p), np.zeros(problem.p)
            for j in range(problem.p):
                vth[j], eth[j] = self._central(
                    lambda s, j=j: self._L(problem, theta=_bump(th, (j,), s)), max(abs(th[j]), 1.0), noise
                )
        # times: central differences, steps below a quarter of the neighbouring gaps.
        # Moving t_i (i >= 1) moves only an observation on the same trajectory, so
        # those losses come from one dense solve that runs a little past t_N;
        # moving t0 moves the initial time and needs new solves.
        ts = problem.ts
        gaps = np.abs(np.diff(ts))
        near = [min(gaps[max(i - 1, 0)], gaps[min(i, len(gaps) - 1)]) for i in range(len(ts))]
        vt, et = np.zeros(len(ts)), np.zeros(len(ts))
        vt[0], et[0] = self._central(lambda s: self._L(problem, ts=_bump(ts, (0,), s)), near[0], noise)
        # Differences of the dense output converge to the derivative of the interpolant, which is off
        # the solution's by more than the solver's tolerance (the thorough property suite found
        # dL/dtN off by 2.9e-8 while Richardson claimed 8.8e-10: the solver's error varies from step to
        # step, and differences see its slope). That bias is estimated as twice the largest distance to
        # the same derivative from solves at 10 and 100 times the tolerance, as for the complex step.
        vd, ed = self._times_on_dense(problem, near, noise, self.rtol)
        runs = [self._times_on_dense(problem, near, noise, self.rtol * f)[0] for f in (10, 100)]
        vt[1:] = vd[1:]
        et[1:] = np.maximum(ed, _spread(vd, runs))[1:]
        values = {"z0": problem.user_z0(vz), "theta": vth, "t": vt}
        errors = {"z0": problem.user_z0(ez), "theta": eth, "t": et}
        model = "central differences with Richardson extrapolation; error = |R_k - R_k+1| + noise/h"
        if use_cs:
            model = "complex step for z0 and theta (error: the solver's, from three tolerances); " + model + " for times"
        model += ("; times after t0 from the dense output of one solve, with the interpolant's bias "
                  "(twice the largest distance to solves at 10 and 100 rtol) added")
        return GradientEstimate(name=self.name, values=values, errors=errors, loss=base, error_model=model, notes=notes)

    @staticmethod
    def _first_step(scale):
        return 0.25 * scale if scale < 1.0 else 0.05 * scale

    def _times_on_dense(self, problem, near, noise, rtol):
        """dL/dt_i for i >= 1 (entry 0 is left at 0) and their errors: central differences of the
        observations on the dense output of one solve at ``rtol``."""
        ts = problem.ts
        dense, zs = self._dense(problem, self._first_step(near[-1]), rtol)
        values, errors = np.zeros(len(ts)), np.zeros(len(ts))
        for i in range(1, len(ts)):

            def L_obs(s, i=i):
                z = zs.copy()
                z[i] = dense(ts[i] + s).reshape(problem.B, problem.n)
                return float(problem.loss(problem.user_states(z)))

            values[i], errors[i] = self._central(L_obs, near[i], noise)
        return values, errors

    def _dense(self, problem, beyond, rtol):
        """Dense output of one solve at ``rtol`` over [t0, tN + beyond] and the states at ts."""
        from .._integrate import integrate_span

        fld, ts, th = problem.field, problem.ts, problem.theta
        B, n = problem.B, problem.n
        direction = np.sign(ts[-1] - ts[0])

        def fun(t, y):
            return fld.eval_f(y.reshape(B, n), t, th).reshape(-1)

        res = integrate_span(
            fun, float(ts[0]), float(ts[-1] + direction * 1.01 * beyond), problem.z0.reshape(-1),
            method=self.method, rtol=rtol, atol=rtol, t_out=ts, dense=True,
        )
        sol = scipy.integrate.OdeSolution(np.asarray(res.step_times), res.interpolants)
        return sol, res.y_at.reshape(len(ts), B, n)

    def _central(self, L_of_shift, scale, noise):
        """Central differences + Richardson over a ladder of steps; returns (value, error)."""
        h0 = self._first_step(scale)
        hs = [h0 * 4.0**-k for k in range(self.levels)]
        D = []
        for h in hs:
            try:
                D.append((L_of_shift(h) - L_of_shift(-h)) / (2 * h))
            except IntegrationError:
                D.append(np.nan)
        best = (np.nan, np.inf)
        for k in range(len(hs) - 2):
            R0 = (16 * D[k + 1] - D[k]) / 15
            R1 = (16 * D[k + 2] - D[k + 1]) / 15
            if not (np.isfinite(R0) and np.isfinite(R1)):
                continue
            err = abs(R1 - R0) + 2 * noise / hs[k + 2]
            if err < best[1]:
                best = (R1, err)
        if not np.isfinite(best[0]):
            raise IntegrationError("finite differences failed: the perturbed solves did not succeed")
        return best


def _spread(value, runs):
    """Twice the largest distance from ``value`` to the same quantity computed in ``runs`` (at looser
    tolerances): a sample of the solver's error in ``value``, not a bound, hence the factor."""
    return 2 * np.max([np.abs(value - r) for r in runs], axis=0)


def _bump(x, idx, s):
    y = np.array(x, dtype=float, copy=True)
    y[idx] += s
    return y


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
