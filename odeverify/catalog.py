"""Problems with exact solutions and exact gradients, for use as oracles.

Every problem carries an ODE, inputs (z0, ts, theta) and a loss

    L = sum_i sum_k ( c_ik z_k(t_i) + 1/2 w_ik z_k(t_i)^2 )

over all observation times (t0 included, so the adjoint's jump at the initial
time is exercised), with fixed coefficients. Its exact loss and exact
gradients with respect to z0, theta and every time come from the closed-form
solution: differentiated by SymPy and evaluated with 30 significant digits,
or, for linear systems, from the matrix exponential and its Fréchet
derivative (``scipy.linalg.expm``, ``expm_frechet``).

Examples
--------
>>> from odeverify import catalog
>>> prob = catalog.exponential()
>>> g = prob.exact_gradients()
>>> sorted(g)
['t', 'theta', 'z0']
>>> report = prob.check()          # odeverify's adjoint against the closed form
>>> report.passed
True
"""

from __future__ import annotations

from dataclasses import dataclass, field

import autograd.numpy as anp
import numpy as np
import sympy as sp

from ._system import ODESystem
from ._validate import check_rng
from .errors import InvalidArgumentError

__all__ = [
    "CatalogProblem",
    "exponential",
    "logistic",
    "forced_decay",
    "linear_system",
    "harmonic_oscillator",
    "problems",
    "get",
]


def _coefficients(T, n, seed):
    rng = check_rng(seed)
    return rng.uniform(-1.0, 1.0, size=(T, n)), rng.uniform(0.5, 1.5, size=(T, n))


@dataclass
class CatalogProblem:
    """A problem with an exact solution and exact gradients.

    Attributes
    ----------
    name, description : str
    system : ODESystem
    z0 : ndarray, shape (n,)
    ts : ndarray, shape (T,)
    theta : ndarray, shape (p,)
    c, w : ndarray, shape (T, n)
        Coefficients of the loss ``sum c z + 1/2 w z^2``.
    """

    name: str
    description: str
    system: ODESystem
    z0: np.ndarray
    ts: np.ndarray
    theta: np.ndarray
    c: np.ndarray
    w: np.ndarray
    _exact: object = field(repr=False, default=None)
    _solution: object = field(repr=False, default=None)
    _factory: object = field(repr=False, default=None)
    _exact_loss: object = field(repr=False, default=None)

    def __repr__(self):
        from ._display import count

        return (f"<CatalogProblem {self.name}: {count(self.system.n_states, 'state')}, "
                f"{count(self.system.n_params, 'parameter')}, {count(len(self.ts), 'time')}>")

    def with_inputs(self, z0=None, ts=None, theta=None) -> "CatalogProblem":
        """The same problem (same loss coefficients) at other inputs."""
        z0 = self.z0 if z0 is None else np.asarray(z0, dtype=float)
        ts = self.ts if ts is None else np.asarray(ts, dtype=float)
        theta = self.theta if theta is None else np.asarray(theta, dtype=float)
        return self._factory(z0, ts, theta)

    def loss(self, zs):
        """L(zs) for zs of shape (T, n) (or (T, B, n), summed over the batch)."""
        c, w = self.c, self.w
        if anp.ndim(zs) == 3:
            c, w = c[:, None, :], w[:, None, :]
        return anp.sum(c * zs + 0.5 * w * zs * zs)

    def solution(self, t):
        """The exact state at time(s) ``t``, shape ``np.shape(t) + (n,)``."""
        t = np.asarray(t, dtype=float)
        return np.asarray(self._solution(t), dtype=float)

    def exact_loss(self) -> float:
        """The exact value of the loss."""
        if self._exact_loss is not None:
            return self._exact_loss()
        return self._exact()[0]

    def exact_gradients(self) -> dict:
        """Exact ``{"z0": (n,), "theta": (p,), "t": (T,)}``."""
        return self._exact()[1]

    def reference(self):
        """The exact gradients as a reference for :func:`odeverify.check_gradients`."""
        from .references import Exact

        L, g = self._exact()
        return Exact(g, loss=L, name=f"closed form ({self.name})")

    def args(self):
        """``(system, z0, ts, theta, loss)`` for the gradient functions."""
        return self.system, self.z0, self.ts, self.theta, self.loss

    def check(self, candidate=None, **kwargs):
        """:func:`odeverify.check_gradients` with the closed form among the references."""
        from ._check import DEFAULT_REFERENCES, check_gradients

        refs = kwargs.pop("references", None)
        refs = list(DEFAULT_REFERENCES if refs is None else refs) + [self.reference()]
        return check_gradients(*self.args(), candidate=candidate, references=refs, **kwargs)


def _sympy_problem(name, description, system, z0, ts, theta, solution, seed):
    """Build a CatalogProblem from a closed-form SymPy solution.

    ``solution(t, t0, z0_syms, theta_syms)`` returns the list of state
    expressions at time ``t`` for the initial state ``z0_syms`` at ``t0``.
    """
    ts = np.asarray(ts, dtype=float)
    z0 = np.asarray(z0, dtype=float)
    theta = np.asarray(theta, dtype=float)
    T, n, p = len(ts), len(z0), len(theta)
    c, w = _coefficients(T, n, seed)
    tsym = sp.symbols(f"tau0:{T}", real=True)
    zsym = sp.symbols(f"zeta0:{n}", real=True)
    psym = sp.symbols(f"phi0:{p}", real=True) if p else ()
    L = 0
    for i in range(T):
        zi = solution(tsym[i], tsym[0], zsym, psym) if i else list(zsym)
        for k in range(n):
            L += sp.Float(c[i, k], 30) * zi[k] + sp.Rational(1, 2) * sp.Float(w[i, k], 30) * zi[k] ** 2
    subs = {**dict(zip(tsym, ts)), **dict(zip(zsym, z0)), **dict(zip(psym, theta))}
    cache = {}

    def exact():
        if not cache:

            def ev(e):
                return float(sp.N(e.subs(subs), 30))

            cache["value"] = (
                ev(L),
                {
                    "z0": np.array([ev(sp.diff(L, s)) for s in zsym]),
                    "theta": np.array([ev(sp.diff(L, s)) for s in psym]),
                    "t": np.array([ev(sp.diff(L, s)) for s in tsym]),
                },
            )
        return cache["value"]

    def exact_loss():
        return float(sp.N(L.subs(subs), 30))

    tt = sp.Symbol("t", real=True)
    sol_exprs = solution(tt, sp.Float(ts[0], 30), [sp.Float(v, 30) for v in z0], [sp.Float(v, 30) for v in theta])
    sol_fun = sp.lambdify(tt, sol_exprs, modules="numpy")

    def sol(t):
        out = np.stack([np.broadcast_to(np.asarray(v, dtype=float), np.shape(t)) for v in sol_fun(t)], axis=-1)
        return out

    return CatalogProblem(name, description, system, z0, ts, theta, c, w, exact, sol, None, exact_loss)


def exponential(*, a=1.0, x0=1.0, ts=(0.0, 0.5, 1.0), seed=0):
    """dx/dt = a x: x(t) = x0 exp(a (t - t0)) -- the notes' example (§2.2) at a = 1, x0 = 1."""
    system = ODESystem.from_strings("x", "a", ["a*x"], name="exponential")

    def solution(t, t0, z, th):
        return [z[0] * sp.exp(th[0] * (t - t0))]

    prob = _sympy_problem("exponential", "dx/dt = a x, x = x0 e^{a (t - t0)}", system, [x0], ts, [a], solution, seed)
    prob._factory = lambda z, t, th: exponential(a=th[0], x0=z[0], ts=t, seed=seed)
    return prob


def logistic(*, r=1.3, K=2.0, x0=0.3, ts=(0.0, 0.7, 1.5, 3.0), seed=1):
    """dx/dt = r x (1 - x / K): x(t) = K x0 e^{r s} / (K + x0 (e^{r s} - 1)), s = t - t0."""
    system = ODESystem.from_strings("x", "r K", ["r*x*(1 - x/K)"], name="logistic")

    def solution(t, t0, z, th):
        e = sp.exp(th[0] * (t - t0))
        return [th[1] * z[0] * e / (th[1] + z[0] * (e - 1))]

    prob = _sympy_problem("logistic", "logistic growth", system, [x0], ts, [r, K], solution, seed)
    prob._factory = lambda z, t, th: logistic(r=th[0], K=th[1], x0=z[0], ts=t, seed=seed)
    return prob


def forced_decay(*, k=0.8, omega=2.5, x0=1.2, ts=(0.3, 1.0, 1.7, 2.9), seed=2):
    """dx/dt = -k x + sin(omega t), a forced linear scalar equation (time-dependent)."""
    system = ODESystem.from_strings("x", "k omega", ["-k*x + sin(omega*t)"], name="forced decay")

    def solution(t, t0, z, th):
        kk, w = th

        def xp(s):
            return (kk * sp.sin(w * s) - w * sp.cos(w * s)) / (kk**2 + w**2)

        return [xp(t) + (z[0] - xp(t0)) * sp.exp(-kk * (t - t0))]

    prob = _sympy_problem("forced_decay", "dx/dt = -k x + sin(ω t)", system, [x0], ts, [k, omega], solution, seed)
    prob._factory = lambda z, t, th: forced_decay(k=th[0], omega=th[1], x0=z[0], ts=t, seed=seed)
    return prob


def harmonic_oscillator(*, omega=1.7, z0=(1.0, -0.4), ts=(0.0, 0.8, 1.9, 3.1), seed=3):
    """dx/dt = v, dv/dt = -omega^2 x: x = x0 cos(ω s) + v0/ω sin(ω s)."""
    system = ODESystem.from_strings("x v", "omega", ["v", "-omega**2*x"], name="harmonic oscillator")

    def solution(t, t0, z, th):
        w = th[0]
        s = t - t0
        return [z[0] * sp.cos(w * s) + z[1] / w * sp.sin(w * s), -z[0] * w * sp.sin(w * s) + z[1] * sp.cos(w * s)]

    prob = _sympy_problem("harmonic_oscillator", "undamped harmonic oscillator", system, z0, ts, [omega], solution, seed)
    prob._factory = lambda z, t, th: harmonic_oscillator(omega=th[0], z0=z, ts=t, seed=seed)
    return prob


def linear_system(*, A=None, z0=(1.0, -0.5, 0.8), ts=(0.0, 0.3, 0.9, 1.4, 2.0), seed=4):
    """dz/dt = A z with theta = A (row by row): exact via expm and expm_frechet."""
    A = np.array([[-0.3, 1.1, 0.2], [-0.9, -0.2, 0.4], [0.1, -0.5, -0.6]]) if A is None else np.asarray(A, float)
    n = A.shape[0]
    if A.shape != (n, n):
        raise InvalidArgumentError(f"A must be square, got shape {A.shape}")
    z0 = np.asarray(z0, dtype=float)
    if z0.shape != (n,):
        raise InvalidArgumentError(f"z0 must have shape ({n},), got {z0.shape}")
    ts = np.asarray(ts, dtype=float)
    names = [f"a{i}{j}" for i in range(n) for j in range(n)]
    rhs = [" + ".join(f"a{i}{j}*z{j}" for j in range(n)) for i in range(n)]
    system = ODESystem.from_strings(" ".join(f"z{i}" for i in range(n)), names, rhs, name="linear system")
    c, w = _coefficients(len(ts), n, seed)

    def exact():
        import scipy.linalg  # imported when a closed form is evaluated, not with the package

        T = len(ts)
        Phi = [scipy.linalg.expm(A * (t - ts[0])) for t in ts]
        zs = np.array([P @ z0 for P in Phi])
        L = float(np.sum(c * zs + 0.5 * w * zs**2))
        g = c + w * zs
        dz0 = sum(Phi[i].T @ g[i] for i in range(T))
        dA = np.zeros((n, n))
        for i in range(1, T):
            tau = ts[i] - ts[0]
            for k in range(n):
                for m in range(n):
                    E = np.zeros((n, n))
                    E[k, m] = tau
                    dA[k, m] += g[i] @ (scipy.linalg.expm_frechet(A * tau, E, compute_expm=False) @ z0)
        dts = np.zeros(T)
        for i in range(1, T):
            dts[i] = g[i] @ (A @ zs[i])
        dts[0] = -sum(g[i] @ (Phi[i] @ (A @ z0)) for i in range(1, T))
        return L, {"z0": dz0, "theta": dA.ravel(), "t": dts}

    def solution(t):
        import scipy.linalg

        t = np.asarray(t, dtype=float)
        flat = np.array([scipy.linalg.expm(A * (s - ts[0])) @ z0 for s in t.ravel()])
        return flat.reshape(t.shape + (n,))

    def exact_loss():
        zs = solution(ts)
        return float(np.sum(c * zs + 0.5 * w * zs**2))

    return CatalogProblem(
        "linear_system", "dz/dt = A z (matrix exponential)", system, z0, ts, A.ravel(), c, w, exact, solution,
        lambda z, t, th: linear_system(A=np.reshape(th, (n, n)), z0=z, ts=t, seed=seed),
        exact_loss,
    )


_FACTORIES = {
    "exponential": exponential,
    "logistic": logistic,
    "forced_decay": forced_decay,
    "harmonic_oscillator": harmonic_oscillator,
    "linear_system": linear_system,
}


def problems():
    """One default instance of every catalog problem."""
    return [f() for f in _FACTORIES.values()]


def get(name, **kwargs) -> CatalogProblem:
    """A catalog problem by name, with optional keyword overrides."""
    if name not in _FACTORIES:
        raise InvalidArgumentError(f"no catalog problem {name!r}; available: {', '.join(_FACTORIES)}")
    return _FACTORIES[name](**kwargs)


def __dir__():
    # tab completion shows the public names, not the modules imported here (np, sp, ...)
    return sorted(__all__)
