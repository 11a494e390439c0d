"""Closed-form references for the tests (independent of odeverify's solvers)."""

from __future__ import annotations

import os
from importlib.metadata import entry_points

import numpy as np
import scipy.linalg
import scipy.optimize
import sympy as sp


def rel_err(got, want):
    """Max relative error, measured against the largest reference entry."""
    got = np.asarray(got, dtype=float)
    want = np.asarray(want, dtype=float)
    scale = max(np.max(np.abs(want)), 1e-300)
    return float(np.max(np.abs(got - want)) / scale)


def entry_rel_err(got, want):
    """Max over entries of |got - want| / |want| (entries of the reference that are 0 use an absolute error)."""
    got = np.asarray(got, dtype=float).ravel()
    want = np.asarray(want, dtype=float).ravel()
    den = np.where(want == 0, 1.0, np.abs(want))
    return float(np.max(np.abs(got - want) / den))


def linear_reference(A, z0, ts, c):
    """Exact loss and gradients of L = sum_i (c_i . z_i + 1/2 |z_i|^2) for dz/dt = A z.

    ``theta`` is A flattened row by row. Uses the matrix exponential and its
    Frechet derivative (scipy.linalg.expm, expm_frechet).

    Returns
    -------
    L, dz0, dA (flattened), dts
    """
    A = np.asarray(A, float)
    z0 = np.asarray(z0, float)
    ts = np.asarray(ts, float)
    n = len(z0)
    T = len(ts)
    zs = np.array([scipy.linalg.expm(A * (t - ts[0])) @ z0 for t in ts])
    L = float(np.sum(c * zs) + 0.5 * np.sum(zs**2))
    g = c + zs
    dz0 = sum(scipy.linalg.expm(A * (t - ts[0])).T @ g[i] for i, t in enumerate(ts))
    dA = np.zeros((n, n))
    for i, t in enumerate(ts):
        tau = t - ts[0]
        for k in range(n):
            for l in range(n):
                E = np.zeros((n, n))
                E[k, l] = 1.0
                _, dexp = scipy.linalg.expm_frechet(A * tau, E * tau)
                dA[k, l] += g[i] @ (dexp @ z0)
    dts = np.zeros(T)
    for i in range(1, T):
        dts[i] = g[i] @ (A @ zs[i])
    dts[0] = -sum(g[i] @ (scipy.linalg.expm(A * (ts[i] - ts[0])) @ (A @ z0)) for i in range(1, T))
    return L, dz0, dA.ravel(), dts


def forced_decay_reference(k, w, x0, ts, weights):
    """dx/dt = -k x + sin(w t): exact L = sum_i weights_i x(t_i)^2 and its gradients.

    The closed form x(t) = xp(t) + (x0 - xp(t0)) exp(-k (t - t0)), with
    xp(t) = (k sin(w t) - w cos(w t)) / (k^2 + w^2), is differentiated by
    SymPy and evaluated with 30 digits.

    Returns
    -------
    L, dx0, (dk, dw), dts
    """
    K, W, X0 = sp.symbols("k w x0", real=True)
    tsym = sp.symbols(f"t0:{len(ts)}", real=True)

    def xp(t):
        return (K * sp.sin(W * t) - W * sp.cos(W * t)) / (K**2 + W**2)

    def x(t):
        return xp(t) + (X0 - xp(tsym[0])) * sp.exp(-K * (t - tsym[0]))

    L = sum(wt * x(tsym[i]) ** 2 for i, wt in enumerate(weights))
    subs = {K: k, W: w, X0: x0, **{tsym[i]: ts[i] for i in range(len(ts))}}

    def ev(e):
        return float(sp.N(e.subs(subs), 30))

    return (
        ev(L),
        ev(sp.diff(L, X0)),
        np.array([ev(sp.diff(L, K)), ev(sp.diff(L, W))]),
        np.array([ev(sp.diff(L, ti)) for ti in tsym]),
    )


def plugin_autoloaded():
    """True when pytest loads odeverify's plugin through its entry point (odeverify installed, as in CI).

    From a source tree on PYTHONPATH (no entry point) the plugin has to be named: ``-p odeverify.pytest_plugin``
    or ``pytest_plugins``; naming it as well as autoloading it would register it twice.
    """
    if os.environ.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD"):
        return False
    return any(ep.value == "odeverify.pytest_plugin" for ep in entry_points(group="pytest11"))


def polynomial_system(n=20, p=40, *, seed=0):
    """A reproducible polynomial ODE: ``(states, params, rhs)`` as strings for ``ODESystem.from_strings``.

    Each ``rhs_i`` is a damping term ``-th*z_i`` plus 3 to 5 monomials of degree 1 to 3 in the states,
    each with a parameter coefficient drawn from the ``p`` parameters (every parameter is used).

    Parameters
    ----------
    n, p : int
        Numbers of states and parameters (``p >= n``).
    seed : int
        Seed of the random choices; the same seed gives the same system.

    Returns
    -------
    states : list of str, shape (n,)
    params : list of str, shape (p,)
    rhs : list of str, shape (n,)
    """
    rng = np.random.default_rng(seed)
    states = [f"z{i}" for i in range(n)]
    params = [f"th{j}" for j in range(p)]
    unused = list(rng.permutation(p))
    rhs = []
    for i in range(n):
        damping = unused.pop() if unused else rng.integers(p)
        terms = [f"-{params[damping]}*{states[i]}"]
        for _ in range(rng.integers(3, 6)):
            coef = unused.pop() if unused else rng.integers(p)
            degree = rng.integers(1, 4)
            factors = [states[k] for k in rng.integers(0, n, size=degree)]
            terms.append(f"{params[coef]}*{'*'.join(factors)}")
        rhs.append(" + ".join(terms))
    return states, params, rhs


def long_expression(length=7000, *, seed=0):
    """A reproducible legal expression of about ``length`` characters in x, y, t and a, b.

    A sum of small terms with ``sin``, ``cos``, ``exp``, ``tanh`` and products, e.g.
    ``0.0031*sin(0.7*a*x + 0.2*y)*exp(-0.4*x**2)``; smooth and bounded, so an ODE
    ``dx/dt = -a*x + <this>`` stays well behaved.

    Returns
    -------
    str
        Shorter than ``length`` and than the parser's 10,000-character limit.
    """
    rng = np.random.default_rng(seed)
    templates = [
        "{c}*sin({u}*a*x + {v}*y)",
        "{c}*cos({u}*x*y + {v}*t)",
        "{c}*exp(-{u}*x**2)*y",
        "{c}*x*y*tanh({u}*b*y)",
        "{c}*sin({u}*x)*cos({v}*b*y)",
        "{c}*exp(-{u}*(x - {v})**2)*sin(b*t)",
        "{c}*x**2*exp(-{u}*y**2)",
        "{c}*a*b*sin({u}*x + {v})*y",
    ]
    text = ""
    while True:
        template = templates[rng.integers(len(templates))]
        c, u, v = rng.uniform(0.001, 0.01), rng.uniform(0.1, 2.0), rng.uniform(0.1, 2.0)
        term = template.format(c=f"{c:.4f}", u=f"{u:.3f}", v=f"{v:.3f}")
        if len(text) + len(term) + 3 > length:
            return text
        text += (" + " if text else "") + term


def switched_oscillator_loss(p, tspan):
    """L = x(T)^2 + v(T)^2 of x' = v, v' = -w^2 x - d H(x - c) v, from matrix exponentials.

    ``p = (w, d, c, x0, v0)``, ``tspan = (t0, T)``; the crossings of x = c are found by root finding on the
    exact solution (the damping switches on while x > c).
    """
    w, dmp, cc, xi, vi = p
    t_start, t_end = tspan
    A = {0: np.array([[0.0, 1.0], [-w * w, 0.0]]), 1: np.array([[0.0, 1.0], [-w * w, -dmp]])}
    t, z, on = t_start, np.array([xi, vi]), int(xi > cc)
    while True:
        grid = np.linspace(0.0, t_end - t, 401)[1:]
        lam, V = np.linalg.eig(A[on])  # the grid only brackets the crossings: x(h) - c by eigenvectors, at once
        xs = np.real((V[0] * np.exp(np.multiply.outer(grid, lam))) @ np.linalg.solve(V, z)) - cc
        sign_change = np.flatnonzero(np.sign(xs) != (1 if on else -1))
        if not sign_change.size:
            z = scipy.linalg.expm(A[on] * (t_end - t)) @ z
            return float(z @ z)
        j = int(sign_change[0])
        lo = 0.0 if j == 0 else grid[j - 1]
        h = scipy.optimize.brentq(lambda h: (scipy.linalg.expm(A[on] * h) @ z)[0] - cc, lo, grid[j], xtol=1e-15,
                                  rtol=8.9e-16)
        z, t, on = scipy.linalg.expm(A[on] * h) @ z, t + h, 1 - on


def switched_oscillator_reference(p, tspan, h=1e-6):
    """The loss of :func:`switched_oscillator_loss` and its central differences in (w, d, c, x0, v0, t0, T)."""
    def at(q, e):
        pp, span = np.array(p, dtype=float), list(tspan)
        if q < 5:
            pp[q] += e
        else:
            span[q - 5] += e
        return switched_oscillator_loss(pp, span)

    return switched_oscillator_loss(p, tspan), np.array([(at(q, h) - at(q, -h)) / (2 * h) for q in range(7)])
