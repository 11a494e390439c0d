"""Hypothesis strategies for ODE gradient problems.

Generate many well-posed problems ``(system, z0, ts, theta, loss)`` and assert
that a gradient is right on all of them; a failure shrinks to a small,
readable counterexample (one state, two times, z0 = 1, theta = 0).

* :func:`time_grids` -- strictly monotone observation grids with a minimum gap;
* :func:`ode_systems` -- random right-hand sides built from polynomials, trig
  functions, exp, tanh and sigmoid, damped so that solutions stay bounded;
* :func:`linear_systems` -- dz/dt = A(theta) z with a controlled spectrum;
* :func:`mlp_fields` -- Neural-ODE vector fields (:class:`odeverify.MLPField`);
* :func:`losses` -- smooth losses at a random subset of the observation times;
* :func:`problems` combines them; :func:`from_system` fills in the rest for a
  system of your own.

hypothesis is an optional dependency (``pip install 'odeverify[hypothesis]'``).
Every strategy validates its arguments when it is called, not when it is
drawn from, and raises :class:`StrategyArgumentError` (both an
:class:`odeverify.errors.InvalidArgumentError` and hypothesis's
``InvalidArgument``) with hypothesis-style messages.

Conventions that make every drawn problem well-posed:

* parameters are drawn from [-1, 1] (MLP fields: their own ``init_params``);
  every system drawn here stays bounded for all such parameters;
* initial states have entries of magnitude in [0.1, 1.5] (never 0, so no
  solution is identically zero and no loss gradient vanishes at t0);
* grids span at most a few time units by default;
* no right-hand side is free of damping, and problems whose solution the
  solvers integrate exactly (z0 at an equilibrium) are rejected, since
  :func:`odeverify.check_gradients` calls such a test trivial;
* numbers come from fine lattices (z0 in steps of 0.1, theta of 1/16, times
  of a twentieth of the span range), so counterexamples read well and shrink
  in few steps.

Shrinking goes towards one state, two times, the loss ``1/2 z(tN)^2``,
z0 = 1, theta = 0 and the first entry of ``functions``.

Examples
--------
A user's own gradient, checked on generated problems (here the adjoint
itself; in your tests, your code):

>>> from hypothesis import given, settings
>>> import odeverify
>>> from odeverify.strategies import problems
>>> @settings(max_examples=3, deadline=None, database=None)
... @given(problems(n_states=1, n_times=(2, 3)))
... def test_adjoint(problem):
...     odeverify.testing.assert_gradients_close(*problem, references=["forward", "fd"])
>>> test_adjoint()
"""

from __future__ import annotations

import functools
import math
import numbers
from dataclasses import dataclass
from typing import NamedTuple

import autograd.numpy as anp
import numpy as np
import sympy as sp

try:
    from hypothesis import assume
    from hypothesis import strategies as st
    from hypothesis.errors import InvalidArgument
except ImportError as exc:  # pragma: no cover - tested in a subprocess without hypothesis
    raise ImportError(
        "odeverify.strategies needs hypothesis, an optional dependency of odeverify; install it with "
        "pip install 'odeverify[hypothesis]' (or pip install hypothesis)"
    ) from exc

from ._adjoint import adjoint_gradients
from ._check import _integrated_exactly
from ._field import AbstractVectorField
from ._functions import sigmoid
from ._system import ODESystem
from .errors import IntegrationError, InvalidArgumentError, InvalidTypeError
from .references import make_problem

__all__ = [
    "time_grids",
    "ode_systems",
    "linear_systems",
    "mlp_fields",
    "losses",
    "problems",
    "from_system",
    "Problem",
    "GeneratedLoss",
    "FUNCTIONS",
    "LOSS_KINDS",
    "StrategyArgumentError",
    "StrategyTypeError",
]

#: the function families of :func:`ode_systems`, simplest first
FUNCTIONS = ("poly", "sin", "cos", "exp", "tanh", "sigmoid")
#: the terms of :func:`losses`, simplest first
LOSS_KINDS = ("square", "linear", "sin", "exp")

_MAX_STATES = 8
_MAX_PARAMS = 24
_MAX_TIMES = 50
_MAX_DEPTH = 4
_MAX_BATCH = 16
# damping rates k in dz_i/dt = -k z_i + ..., and the constants inside terms
_DAMPINGS = (sp.Integer(1), sp.Rational(1, 2), sp.Integer(2))
_CONSTANTS = (sp.Integer(1), sp.Integer(-1), sp.Integer(2), sp.Rational(1, 2), sp.Integer(-2), sp.Rational(3, 2))
_WEIGHTS = (1.0, -1.0, 2.0, 0.5, -2.0)
# Givens rotations with rational entries (Pythagorean triples): (cos, sin)
_ROTATIONS = (
    (sp.Integer(1), sp.Integer(0)),
    (sp.Rational(3, 5), sp.Rational(4, 5)),
    (sp.Rational(5, 13), sp.Rational(12, 13)),
    (sp.Rational(8, 17), sp.Rational(-15, 17)),
)
_PARAM_LETTERS = "abcdfghkmpqrsuv"  # no e (the constant), t, w, x, y, z


class StrategyArgumentError(InvalidArgumentError, InvalidArgument):
    """A strategy was called with an impossible value or combination of values."""


class StrategyTypeError(InvalidTypeError, InvalidArgument):
    """A strategy was called with an argument of the wrong type."""


# ---------------------------------------------------------------------------- validation
def _check_type(value, types, type_name, name):
    if isinstance(value, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
        raise StrategyTypeError(f"Expected {type_name} but got {name}={value!r} (type=bool)")
    if not isinstance(value, types):
        raise StrategyTypeError(f"Expected {type_name} but got {name}={value!r} (type={type(value).__name__})")
    return value


def _check_int(value, name, *, minimum, maximum):
    _check_type(value, numbers.Integral, "int", name)
    value = int(value)
    if value < minimum:
        raise StrategyArgumentError(f"Invalid argument {name}={value} < {minimum}")
    if value > maximum:
        raise StrategyArgumentError(f"Invalid argument {name}={value} > {maximum}; keep generated problems small")
    return value


def _check_bool(value, name):
    return bool(_check_type(value, (bool, np.bool_), "bool", name))


def _check_interval(lo, hi, lo_name, hi_name):
    if hi < lo:
        raise StrategyArgumentError(f"Cannot have {hi_name}={hi!r} < {lo_name}={lo!r}")


def _check_size_range(value, name, *, minimum, maximum):
    """An int or a (min, max) pair of ints; returns (min, max)."""
    if isinstance(value, (tuple, list)) and len(value) == 2:
        lo = _check_int(value[0], f"{name}[0]", minimum=minimum, maximum=maximum)
        hi = _check_int(value[1], f"{name}[1]", minimum=minimum, maximum=maximum)
        _check_interval(lo, hi, f"{name}[0]", f"{name}[1]")
        return lo, hi
    if isinstance(value, (tuple, list)) or not isinstance(value, numbers.Integral) or isinstance(value, bool):
        raise StrategyTypeError(
            f"Expected an int or a (min, max) pair of ints but got {name}={value!r} (type={type(value).__name__})"
        )
    value = _check_int(value, name, minimum=minimum, maximum=maximum)
    return value, value


def _check_float(value, name):
    _check_type(value, numbers.Real, "float", name)
    value = float(value)
    if not math.isfinite(value):
        raise StrategyArgumentError(f"Invalid argument {name}={value!r}; it must be finite")
    return value


def _check_float_range(value, name, *, positive=False):
    """A float or a (min, max) pair of floats; returns (min, max)."""
    if isinstance(value, (tuple, list)) and len(value) == 2:
        lo, hi = _check_float(value[0], f"{name}[0]"), _check_float(value[1], f"{name}[1]")
        _check_interval(lo, hi, f"{name}[0]", f"{name}[1]")
    elif isinstance(value, (tuple, list)) or isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise StrategyTypeError(
            f"Expected a float or a (min, max) pair of floats but got {name}={value!r} (type={type(value).__name__})"
        )
    else:
        lo = hi = _check_float(value, name)
    if positive and lo <= 0:
        raise StrategyArgumentError(f"Invalid argument {name}={value!r}; it must be positive")
    return lo, hi


def _check_strategy(value, name):
    if not isinstance(value, st.SearchStrategy):
        raise StrategyTypeError(
            f"Expected a hypothesis strategy but got {name}={value!r:.80} (type={type(value).__name__})"
        )
    return value


def _lattice(lo, hi, *, steps=20, towards=0.0):
    """The values lo + (hi - lo) k / steps, k = 0..steps, nearest to ``towards`` first.

    Numbers come from lattices rather than all floats: counterexamples then
    read well (z0 = 1, theta = 0.25) and shrink in few steps, since
    ``sampled_from`` shrinks to its first element.
    """
    values = sorted({round(lo + (hi - lo) * k / steps, 12) for k in range(steps + 1)})
    return st.sampled_from(sorted(values, key=lambda v: (abs(v - towards), v < towards)))


# ---------------------------------------------------------------------------- time grids
def time_grids(*, min_size=2, max_size=5, span=(0.5, 2.0), start=(0.0, 1.0), min_gap=0.05, irregular=True,
               decreasing=False):
    """Strictly monotone observation grids ``ts`` with a minimum gap.

    Parameters
    ----------
    min_size, max_size : int
        Number of times T (at least 2: t0 and a final time).
    span : float or (float, float)
        |t_N - t_0|, or the range it is drawn from; positive.
    start : float or (float, float)
        t_0, or the range it is drawn from.
    min_gap : float
        Every |t_{i+1} - t_i| is at least this (so finite differences in time
        and the solvers see distinct times); ``(max_size - 1) * min_gap`` must
        fit in the smallest span.
    irregular : bool
        Irregular gaps (otherwise a uniform grid).
    decreasing : bool or None
        Decreasing grids (the adjoint runs forward); None draws both.

    Returns
    -------
    SearchStrategy of ndarray, shape (T,)
        Shrinks towards two times, a uniform grid and t_0 = 0 (or ``start``).

    Examples
    --------
    >>> from hypothesis import find
    >>> from odeverify.strategies import time_grids
    >>> find(time_grids(), lambda ts: True)          # the simplest grid
    array([0. , 0.5])
    >>> ts = find(time_grids(max_size=6), lambda ts: len(ts) == 6 and ts[0] > 0)
    >>> bool(np.all(np.diff(ts) >= 0.05))
    True
    """
    min_size = _check_int(min_size, "min_size", minimum=2, maximum=_MAX_TIMES)
    max_size = _check_int(max_size, "max_size", minimum=2, maximum=_MAX_TIMES)
    _check_interval(min_size, max_size, "min_size", "max_size")
    span_lo, span_hi = _check_float_range(span, "span", positive=True)
    start_lo, start_hi = _check_float_range(start, "start")
    min_gap = _check_float(min_gap, "min_gap")
    if min_gap <= 0:
        raise StrategyArgumentError(f"Invalid argument min_gap={min_gap!r}; it must be positive")
    if (max_size - 1) * min_gap > span_lo:
        raise StrategyArgumentError(
            f"Cannot fit max_size - 1 = {max_size - 1} gaps of min_gap={min_gap!r} in span={span!r}; "
            "lower max_size or min_gap, or widen the span"
        )
    magnitude = max(abs(start_lo), abs(start_hi)) + span_hi
    if min_gap < 1e-9 * max(1.0, magnitude):
        # times are rounded to 12 decimals and float64 resolves ~16 digits: the gaps would vanish
        raise StrategyArgumentError(
            f"Invalid argument min_gap={min_gap!r}: times up to {magnitude:.3g} cannot resolve gaps below "
            f"{1e-9 * max(1.0, magnitude):.3g}; raise min_gap or bring start closer to 0"
        )
    irregular = _check_bool(irregular, "irregular")
    if decreasing is not None:
        decreasing = _check_bool(decreasing, "decreasing")
    weights = st.integers(0, 3) if irregular else st.just(0)
    direction = st.booleans() if decreasing is None else st.just(decreasing)

    @st.composite
    def grids(draw):
        # gap i is min_gap plus a share (1 + w_i) / sum(1 + w) of the rest of the span
        w = 1.0 + np.array(draw(st.lists(weights, min_size=min_size - 1, max_size=max_size - 1)))
        total = draw(_lattice(span_lo, span_hi, towards=span_lo))
        t0 = draw(_lattice(start_lo, start_hi))
        sign = -1.0 if draw(direction) else 1.0
        gaps = min_gap + (total - len(w) * min_gap) * w / w.sum()
        # rounded so that counterexamples read 0.0875, not 0.08749999999999997
        return np.round(t0 + sign * np.concatenate([[0.0], np.cumsum(gaps)]), 12)

    return grids()


# ---------------------------------------------------------------------------- systems
@functools.lru_cache(maxsize=512)
def _system(states, params, rhs, time, name):
    """One ODESystem per right-hand side: the shrinker redraws the same system
    many times, and its derivation and compiled kernels are then reused."""
    return ODESystem(list(states), list(params), list(rhs), time, name=name)


def _param_names(p):
    return [_PARAM_LETTERS[k] if k < len(_PARAM_LETTERS) else f"th{k}" for k in range(p)]


def _state_names(n):
    return ["x", "y", "z", "w"][:n] if n <= 4 else [f"x{i}" for i in range(1, n + 1)]


def _apply(name, u):
    if name == "exp":  # a Gaussian bump: bounded whatever u is
        return sp.exp(-(u**2))
    return {"sin": sp.sin, "cos": sp.cos, "tanh": sp.tanh, "sigmoid": sigmoid}[name](u)


# Raw trees, built into SymPy once the number of parameters is known:
#   inner     = [monomial, ...]                (a sum of distinct monomials)
#   monomial  = (coef, [factor, ...])          coef: ("c", k) constant k, ("p", j) parameter j
#   factor    = atom index (int) or (function name, inner)
def _inner(n_atoms, bounded, depth):
    factor = st.integers(0, n_atoms - 1)
    if depth > 1 and bounded:
        factor = st.one_of(factor, st.tuples(st.sampled_from(bounded), _inner(n_atoms, bounded, depth - 1)))
    coef = st.one_of(
        st.tuples(st.just("c"), st.integers(0, len(_CONSTANTS) - 1)),
        st.tuples(st.just("p"), st.integers(0, _MAX_PARAMS - 1)),
    )
    monomial = st.tuples(coef, st.lists(factor, min_size=1, max_size=2).map(lambda f: sorted(f, key=repr)))
    return st.lists(monomial, min_size=1, max_size=2, unique_by=lambda m: repr(m[1]))


def _build_inner(raw, atoms, params):
    return sp.Add(*[_build_coef(c, params) * sp.Mul(*[_build_factor(f, atoms, params) for f in fs]) for c, fs in raw])


def _build_coef(coef, params):
    kind, k = coef
    if kind == "p" and params:
        return params[k % len(params)]
    return _CONSTANTS[k % len(_CONSTANTS)]


def _build_factor(f, atoms, params):
    if isinstance(f, int):
        return atoms[f]
    name, inner = f
    return _apply(name, _build_inner(inner, atoms, params))


def ode_systems(*, n_states=(1, 3), n_params=(1, 4), functions=FUNCTIONS, max_depth=2, time_dependent=True,
                decreasing=False):
    r"""Random ODE systems whose solutions stay bounded.

    Every component is

    .. math:: \frac{dz_i}{dt} = -k_i z_i \;[-\, z_i^3] + \sum_{\text{terms } j \to i} \theta_j\, \phi_j(u_j),

    with a damping rate k_i in {1, 1/2, 2} and one parameter per term. A
    term's function φ is one of ``functions``: ``"sin"``, ``"cos"``,
    ``"tanh"``, ``"sigmoid"`` or ``"exp"`` (as the Gaussian ``exp(-u²)``),
    all bounded by 1, of a polynomial u in the states and t whose
    coefficients are small constants or parameters and whose factors may
    themselves be bounded functions (up to ``max_depth`` nested calls); or
    ``"poly"``, a monomial of degree 1 or 2 in the states and t. A state
    that receives a monomial with a state in it gets the cubic damping
    ``-z_i^3`` too.

    Why bounded: bounded terms contribute at most |θ_j| each, and monomials
    of t alone at most |θ_j| t^2, so |z_i| <= max(|z_i(t0)|, sum_j |θ_j|
    max(1, t^2) / k_i) for them; the cubic damping dominates every monomial
    of degree 1 or 2 in the states, however large its coefficient (a factor
    t included): d|z|^2/dt <= -2 sum z_i^4 + O(|z|^3). So for every θ in
    [-1, 1]^p the solution exists and stays moderate on the grids of
    :func:`time_grids`. The linear damping makes no solution a polynomial
    in t.

    Parameters
    ----------
    n_states : int or (int, int)
        Number of states n (at most 8).
    n_params : int or (int, int)
        Number of parameters p, one per term (at most 24; 0 gives
        ``dz/dt = -k z``).
    functions : sequence of str
        A non-empty subset of :data:`FUNCTIONS`; shrinks to the first.
    max_depth : int
        Nesting of functions inside terms (1: ``θ sin(2 x y)``; 2 also
        ``θ tanh(x + cos(t))``).
    time_dependent : bool
        Let t appear in the terms (non-autonomous systems).
    decreasing : bool
        Damp towards decreasing t (``+k z + z^3`` instead of ``-k z - z^3``),
        for decreasing time grids: a system damped forwards in time blows up
        when integrated backwards (the cubic term in finite time).

    Returns
    -------
    SearchStrategy of ODESystem
        States named x, y, z, w; parameters a, b, c, d, f, ...

    Examples
    --------
    >>> from hypothesis import find
    >>> from odeverify.strategies import ode_systems
    >>> find(ode_systems(), lambda s: True)          # the simplest system
    ODESystem(states=[x], params=[a], rhs=[a*x - x**3 - x], time=t)
    >>> find(ode_systems(functions=("tanh", "sin")), lambda s: s.n_states == 2).f
    Matrix([
    [a*tanh(x) - x],
    [           -y]])
    """
    n_lo, n_hi = _check_size_range(n_states, "n_states", minimum=1, maximum=_MAX_STATES)
    p_lo, p_hi = _check_size_range(n_params, "n_params", minimum=0, maximum=_MAX_PARAMS)
    if isinstance(functions, str) or not isinstance(functions, (tuple, list)):
        raise StrategyTypeError(
            f"Expected a sequence of function names but got functions={functions!r} (type={type(functions).__name__})"
        )
    functions = tuple(functions)
    if not functions:
        raise StrategyArgumentError(f"functions=() is empty; name at least one of {FUNCTIONS}")
    for f in functions:
        if f not in FUNCTIONS:
            raise StrategyArgumentError(f"functions={functions!r} contains {f!r}, which is not one of {FUNCTIONS}")
    if len(set(functions)) != len(functions):
        raise StrategyArgumentError(f"functions={functions!r} names a function twice")
    max_depth = _check_int(max_depth, "max_depth", minimum=1, maximum=_MAX_DEPTH)
    time_dependent = _check_bool(time_dependent, "time_dependent")
    sign = -1 if _check_bool(decreasing, "decreasing") else 1
    bounded = tuple(f for f in functions if f != "poly")

    @st.composite
    def systems(draw):
        damping = draw(st.lists(st.sampled_from(_DAMPINGS), min_size=n_lo, max_size=n_hi))
        n = len(damping)
        names = _state_names(n)
        t = sp.Symbol("t", real=True)
        states = [sp.Symbol(s, real=True) for s in names]
        atoms = states + ([t] if time_dependent else [])
        monomial = st.lists(st.integers(0, len(atoms) - 1), min_size=1, max_size=2)
        shapes = [
            st.tuples(st.just(fn), monomial if fn == "poly" else _inner(len(atoms), bounded, max_depth))
            for fn in functions
        ]
        term = st.tuples(st.integers(0, n - 1), st.one_of(shapes))
        terms = draw(st.lists(term, min_size=p_lo, max_size=p_hi))
        params = [sp.Symbol(s, real=True) for s in _param_names(len(terms))]
        rhs = [-sign * k * z for k, z in zip(damping, states)]
        cubic = [False] * n
        for j, (i, (fn, raw)) in enumerate(terms):
            if fn == "poly":
                rhs[i] += params[j] * sp.Mul(*[atoms[a] for a in raw])
                cubic[i] |= any(a < n for a in raw)  # a state in the monomial: damp it cubically
            else:
                rhs[i] += params[j] * _apply(fn, _build_inner(raw, atoms, params))
        rhs = [r - sign * z**3 if c else r for r, z, c in zip(rhs, states, cubic)]
        return _system(tuple(states), tuple(params), tuple(rhs), t, "generated")

    return systems()


def linear_systems(*, n_states=(1, 3), real_parts=(-1.5, -0.1), max_imag=2.0):
    r"""Linear systems dz/dt = A(θ) z whose spectrum lies where you ask.

    ``A(θ) = V D(θ) V^T`` with V orthogonal (a product of Givens rotations
    with rational entries, so V^T = V^{-1} exactly) and D block-diagonal:
    a 1x1 block ``c + r θ_k`` for a real eigenvalue, or a 2x2 block
    ``[[c + r θ_k, ω θ_{k+1}], [-ω θ_{k+1}, c + r θ_k]]`` for a complex pair,
    where ``c ± r`` are the ends of ``real_parts`` and ω = ``max_imag``. For
    every θ in [-1, 1]^p (what :func:`problems` draws) every eigenvalue has
    its real part in ``real_parts`` and its imaginary part within
    ``±max_imag``; A is normal, so ``|exp(A t)| = exp(max Re λ · t)``.

    Parameters
    ----------
    n_states : int or (int, int)
    real_parts : (float, float)
        Range of the real parts, lo < hi. The default keeps every solution
        decaying; a range that contains 0 allows an (almost) constant
        solution, which :func:`odeverify.check_gradients` flags as a trivial test.
    max_imag : float
        Largest imaginary part; 0 gives only real eigenvalues.

    Returns
    -------
    SearchStrategy of ODESystem
        Parameters: one per real eigenvalue, two per complex pair. Shrinks to
        a diagonal A with real eigenvalues.

    Examples
    --------
    >>> from hypothesis import find
    >>> from odeverify.strategies import linear_systems
    >>> find(linear_systems(real_parts=(-1.0, 0.0)), lambda s: True)
    ODESystem(states=[x], params=[a], rhs=[x*(a/2 - 1/2)], time=t)
    """
    n_lo, n_hi = _check_size_range(n_states, "n_states", minimum=1, maximum=_MAX_STATES)
    if not (isinstance(real_parts, (tuple, list)) and len(real_parts) == 2):
        raise StrategyTypeError(
            f"Expected a (min, max) pair of floats but got real_parts={real_parts!r} (type={type(real_parts).__name__})"
        )
    lo, hi = _check_float_range(real_parts, "real_parts")
    if lo == hi:
        raise StrategyArgumentError(
            f"Cannot have real_parts[0] = real_parts[1] = {lo!r}; the parameters move the real parts, "
            "so the range must be an interval"
        )
    max_imag = _check_float(max_imag, "max_imag")
    if max_imag < 0:
        raise StrategyArgumentError(f"Invalid argument max_imag={max_imag!r} < 0")
    # decimal rationals: -0.1 is -1/10, not the binary fraction nearest to it
    c = (sp.Rational(repr(lo)) + sp.Rational(repr(hi))) / 2
    r = (sp.Rational(repr(hi)) - sp.Rational(repr(lo))) / 2
    omega = sp.Rational(repr(max_imag))
    kinds = st.sampled_from(("real", "pair")) if max_imag > 0 else st.just("real")

    @st.composite
    def systems(draw):
        blocks, size = [], 0
        for kind in draw(st.lists(kinds, min_size=1, max_size=n_hi)):
            width = 2 if kind == "pair" and size + 2 <= n_hi else 1
            if size + width > n_hi:
                break
            blocks.append(width)
            size += width
        blocks += [1] * (n_lo - size)
        n = sum(blocks)
        p = sum(blocks)  # one parameter per real eigenvalue, two per pair
        params = [sp.Symbol(s, real=True) for s in _param_names(p)]
        D = sp.zeros(n, n)
        k = 0
        for width in blocks:
            if width == 1:
                D[k, k] = c + r * params[k]
            else:
                re, im = c + r * params[k], omega * params[k + 1]
                D[k, k] = D[k + 1, k + 1] = re
                D[k, k + 1], D[k + 1, k] = im, -im
            k += width
        V = sp.eye(n)
        for i, rot in enumerate(draw(st.lists(st.sampled_from(_ROTATIONS), min_size=n - 1, max_size=n - 1))):
            G = sp.eye(n)
            G[i, i] = G[i + 1, i + 1] = rot[0]
            G[i, i + 1], G[i + 1, i] = -rot[1], rot[1]
            V = V * G
        A = (V * D * V.T).applyfunc(sp.expand)
        states = [sp.Symbol(s, real=True) for s in _state_names(n)]
        rhs = list(A * sp.Matrix(states))
        t = sp.Symbol("t", real=True)
        return _system(
            tuple(states), tuple(params), tuple(rhs), t, f"linear, spectrum Re in [{lo:g}, {hi:g}], |Im| <= {max_imag:g}"
        )

    return systems()


def mlp_fields(*, n_states=(1, 3), hidden_layers=(1, 2), width=(2, 8), activations=("tanh", "sigmoid", "softplus"),
               time_input=None):
    """Neural-ODE vector fields: :class:`odeverify.MLPField` multilayer perceptrons.

    Parameters
    ----------
    n_states : int or (int, int)
    hidden_layers : int or (int, int)
        Number of hidden layers (0 gives the linear field ``W z + b``).
    width : int or (int, int)
        Width of each hidden layer.
    activations : sequence of str
        Drawn from, first one preferred when shrinking.
    time_input : bool or None
        Feed t to the first layer; None draws both.

    Returns
    -------
    SearchStrategy of MLPField
        :func:`from_system` draws their parameters with ``init_params``
        (bounded activations keep the solutions moderate).

    """
    from odeverify.fields import MLPField as cls
    n_lo, n_hi = _check_size_range(n_states, "n_states", minimum=1, maximum=_MAX_STATES)
    h_lo, h_hi = _check_size_range(hidden_layers, "hidden_layers", minimum=0, maximum=4)
    w_lo, w_hi = _check_size_range(width, "width", minimum=1, maximum=64)
    if isinstance(activations, str) or not isinstance(activations, (tuple, list)) or not activations:
        raise StrategyTypeError(
            f"Expected a non-empty sequence of activation names but got activations={activations!r} "
            f"(type={type(activations).__name__})"
        )
    for act in activations:
        try:  # MLPField knows its activations: ask it now rather than at the first draw
            cls((1, 1), activation=act)
        except (ValueError, TypeError) as exc:
            raise StrategyArgumentError(f"activations={tuple(activations)!r} contains {act!r}: {exc}") from None
    if time_input is not None:
        time_input = _check_bool(time_input, "time_input")

    @st.composite
    def fields(draw):
        n = draw(st.integers(n_lo, n_hi))
        hidden = draw(st.lists(st.integers(w_lo, w_hi), min_size=h_lo, max_size=h_hi))
        act = draw(st.sampled_from(tuple(activations)))
        with_t = draw(st.booleans()) if time_input is None else time_input
        return cls((n, *hidden, n), activation=act, time_input=with_t)

    return fields()


# ---------------------------------------------------------------------------- losses
@dataclass(frozen=True)
class GeneratedLoss:
    """A smooth loss on the states at some observation times, drawn by :func:`losses`.

    ``L(zs) = sum over i in times, over the terms (k, kind, w): w * phi(z_k(t_i))``
    with ``phi`` one of ``1/2 u^2``, ``u``, ``sin u``, ``exp u``; summed over
    a batch when ``zs`` has shape (T, B, n). Written with autograd.numpy, and
    analytic (so finite differences may use the complex step).

    Attributes
    ----------
    times : tuple of int
        Indices of the observation times used (sorted).
    terms : tuple of (int, str, float)
        ``(state index, kind, weight)``, one per state.
    n_times, n_states : int
    names : tuple of str
        State names for the formula.
    """

    times: tuple
    terms: tuple
    n_times: int
    n_states: int
    names: tuple = ()

    def __call__(self, zs):
        sel = zs[np.asarray(self.times)]
        total = 0.0
        for k, kind, w in self.terms:
            u = sel[..., k]
            if kind == "square":
                total = total + w * anp.sum(0.5 * u * u)
            elif kind == "linear":
                total = total + w * anp.sum(u)
            elif kind == "sin":
                total = total + w * anp.sum(anp.sin(u))
            else:
                total = total + w * anp.sum(anp.exp(u))
        return total

    def formula(self):
        names = self.names or tuple(f"z{k}" for k in range(self.n_states))
        parts = []
        for k, kind, w in self.terms:
            z = f"{names[k]}(t_i)"
            body = {"square": f"{z}**2/2", "linear": z, "sin": f"sin({z})", "exp": f"exp({z})"}[kind]
            coef = "" if w == 1 else "-" if w == -1 else f"{w:g}*"
            parts.append(coef + body)
        expr = " + ".join(parts).replace("+ -", "- ")
        last = self.n_times - 1
        if self.times == (last,):
            where = f"i = {last} (tN)"
        elif self.times == (0,):
            where = "i = 0 (t0)"
        elif self.times == tuple(range(self.n_times)):
            where = f"every i = 0..{last}"
        else:
            where = "i in {" + ", ".join(map(str, self.times)) + "}"
        return f"L = sum over {where} of {expr}"

    def __repr__(self):
        return f"<loss: {self.formula()}>"


def losses(n_times, n_states, *, kinds=LOSS_KINDS, t0_alone=True, names=None):
    """Random smooth losses at random subsets of the observation times.

    The subset is tN alone, t0 alone, every time, or any set of times; every
    state has one term ``w * phi(z_k)`` with phi in ``kinds`` and a weight w
    in {1, -1, 2, 1/2, -2}, so a parameter that moves any state moves the
    loss. No term's derivative vanishes for the initial states of
    :func:`problems` (|z| in [0.1, 1.5]), so dL/dz(t_i) is not zero at the
    times used. A loss at t0 alone does not depend on theta or on the times:
    :func:`odeverify.check_gradients` warns (TrivialTestWarning) for those.

    Parameters
    ----------
    n_times : int
        Number of observation times T.
    n_states : int
        Number of states n.
    kinds : sequence of str
        A non-empty subset of :data:`LOSS_KINDS`.
    t0_alone : bool
        Draw losses at t0 alone (False: a drawn {t0} becomes {t0, tN}).
    names : sequence of str, optional
        State names for the printed formula.

    Returns
    -------
    SearchStrategy of GeneratedLoss
        Shrinks to ``sum_k 1/2 z_k(tN)^2``.

    Examples
    --------
    >>> from hypothesis import find
    >>> from odeverify.strategies import losses
    >>> loss = find(losses(3, 2), lambda loss: 0 in loss.times)
    >>> loss
    <loss: L = sum over i = 0 (t0) of z0(t_i)**2/2 + z1(t_i)**2/2>
    >>> float(loss(np.ones((3, 2)))), float(loss(np.ones((3, 4, 2))))   # a batch of 4 sums
    (1.0, 4.0)
    """
    n_times = _check_int(n_times, "n_times", minimum=2, maximum=_MAX_TIMES)
    n_states = _check_int(n_states, "n_states", minimum=1, maximum=10_000)
    if isinstance(kinds, str) or not isinstance(kinds, (tuple, list)) or not kinds:
        raise StrategyTypeError(
            f"Expected a non-empty sequence of loss kinds but got kinds={kinds!r} (type={type(kinds).__name__})"
        )
    for k in kinds:
        if k not in LOSS_KINDS:
            raise StrategyArgumentError(f"kinds={tuple(kinds)!r} contains {k!r}, which is not one of {LOSS_KINDS}")
    if names is not None:
        names = tuple(str(s) for s in names)
        if len(names) != n_states:
            raise StrategyArgumentError(f"names={names!r} has {len(names)} entries but n_states={n_states}")
    t0_alone = _check_bool(t0_alone, "t0_alone")
    last = n_times - 1

    def subset(indices):
        indices = tuple(sorted(indices))
        return indices if t0_alone or indices != (0,) else (0, last)

    times = st.one_of(
        st.just((last,)),
        *([st.just((0,))] if t0_alone else []),
        st.just(tuple(range(n_times))),
        st.lists(st.integers(0, last), min_size=1, max_size=n_times, unique=True).map(subset),
    )
    # one term per state: a parameter that moves any state moves the loss
    term = st.tuples(st.sampled_from(tuple(kinds)), st.sampled_from(_WEIGHTS))
    terms = st.lists(term, min_size=n_states, max_size=n_states).map(
        lambda te: tuple((k, kind, w) for k, (kind, w) in enumerate(te))
    )
    return st.builds(lambda ti, te: GeneratedLoss(ti, te, n_times, n_states, names or ()), times, terms)


# ---------------------------------------------------------------------------- problems
class Problem(NamedTuple):
    """A drawn gradient problem; unpacks as ``system, z0, ts, theta, loss``."""

    system: object
    z0: np.ndarray
    ts: np.ndarray
    theta: np.ndarray
    loss: object

    def __repr__(self):
        fld = self.system
        if isinstance(fld, ODESystem):
            rhs = "; ".join(f"d{s}/dt = {e}" for s, e in zip(fld.states, fld.f))
        else:
            rhs = fld.describe() if hasattr(fld, "describe") else repr(fld)
        return (
            f"Problem({rhs}, z0={np.asarray(self.z0).tolist()}, ts={np.asarray(self.ts).tolist()}, "
            f"theta={np.asarray(self.theta).tolist()}, loss: {getattr(self.loss, 'formula', lambda: repr(self.loss))()})"
        )

    def _repr_pretty_(self, printer, cycle):  # hypothesis's "Falsifying example" uses this
        printer.text(repr(self))


def _magnitudes():
    """Numbers with |x| in {0.1, 0.2, ..., 1.5}; shrink to 1.0."""
    return st.builds(lambda m, neg: -m if neg else m, _lattice(0.1, 1.5, steps=14, towards=1.0), st.booleans())


def _parameters(p):
    """p numbers in {-1, -15/16, ..., 1}; shrink to 0."""
    return st.lists(_lattice(-1.0, 1.0, steps=32), min_size=p, max_size=p)


def _gradient_vanishes(problem):
    """True when a whole gradient quantity (dL/dz0, dL/dθ or dL/dt) is zero, up to 1e-9 of the largest entry.

    Structural zeros (``a*sin(a*t)`` at a = 0) and symmetric cancellations (two identical states in
    ``x**2/2 - y**2/2``) are exact or rounding-level zeros; the solve's own error is far below 1e-9.
    A loss at t0 alone is exempt for θ and t, whose gradients vanish there by design.
    """
    try:
        res = adjoint_gradients(*problem, rtol=1e-9, atol=1e-12)
    except IntegrationError:  # not ours to hide: the test will meet it
        return False
    grads = {"z0": res.z0, "theta": res.theta, "t": res.t}
    if problem.loss.times == (0,):
        del grads["theta"], grads["t"]
    largest = max(float(np.max(np.abs(g), initial=0.0)) for g in grads.values())
    return any(np.size(g) and float(np.max(np.abs(g))) <= 1e-9 * largest for g in grads.values()) or largest == 0


def from_system(system, *, grids=None, batch_size=None, theta=None, z0=None, t0_alone=False):
    """Problems for a system of yours: draws ``z0``, ``ts``, ``theta`` and a loss.

    The defaults suit an ordinary model (Lotka–Volterra, SIR, decay, logistic growth): positive rates of
    order one and positive states. Draws whose forward solve fails (finite-time blow-up, a step size
    collapse) are rejected, so the test meets well-posed problems only; when the first draws for a system
    all fail, the strategy raises an error that says how to bound ``theta`` and ``z0``.

    Two kinds of problem, for which :func:`odeverify.check_gradients` would
    warn that the test is trivial, are rejected (``hypothesis.assume``):
    those whose solution the solvers integrate exactly (a constant solution:
    z0 at an equilibrium; or a polynomial one), and those where dL/dz0,
    dL/dθ or dL/dt vanishes as a whole (e.g. ``a*sin(a*t)`` at a = 0, where
    df/da = sin(a t) + a t cos(a t) is zero; or ``x**2/2 - y**2/2`` at tN
    with x and y following the same equation from the same start, so that
    dL/dtN = x f_x - y f_y = 0). A loss at t0 alone (``t0_alone=True``)
    keeps its zero dL/dθ and dL/dt.

    Parameters
    ----------
    system : ODESystem or vector field
    grids : SearchStrategy of ndarray, optional
        Default :func:`time_grids` ``()``.
    batch_size : int or (int, int), optional
        Draw a batch of initial states, shape (B, n); default one state.
    theta : SearchStrategy or array_like, shape (p,), optional
        Parameters: a strategy, or values of yours, near which parameters are drawn (each entry times a
        factor in [0.5, 1.5], shrinking to your values). Default: ``system.init_params`` with a drawn seed
        when the system has it (MLP fields), else entries in [0.5, 1.5] (shrinking to 1).
    z0 : SearchStrategy or array_like, shape (n,), optional
        Initial states: a strategy, or values near which they are drawn (as for ``theta``); default
        entries in [0.5, 1.5] (shrinking to 1).
    t0_alone : bool
        Also draw losses at t0 alone. Their gradients with respect to theta
        and the times are identically zero, so check_gradients warns
        (TrivialTestWarning); off by default.

    Notes
    -----
    A gradient check takes 0.1-1 s, over hypothesis's default deadline of 200 ms: give the test
    ``@settings(deadline=None)``, or run it under the profile ``odeverify-ci`` of odeverify's pytest plugin.
    The system's kernels are compiled when the first problem is drawn, outside the test's time.

    Returns
    -------
    SearchStrategy of Problem
    """
    if not isinstance(system, AbstractVectorField):
        raise StrategyTypeError(
            f"Expected an ODESystem or another odeverify vector field but got system={system!r:.80} "
            f"(type={type(system).__name__})"
        )
    n, p = system.n_states, system.n_params
    theta = _near_values(theta, "theta", p)
    z0 = _near_values(z0, "z0", n)
    if theta is None and not hasattr(system, "init_params"):
        theta = st.lists(_lattice(0.5, 1.5, steps=16, towards=1.0), min_size=p, max_size=p)
    if z0 is None and batch_size is None:
        z0 = st.lists(_lattice(0.5, 1.5, steps=10, towards=1.0), min_size=n, max_size=n)
    return _from_system(system, grids=grids, batch_size=batch_size, theta=theta, z0=z0, t0_alone=t0_alone,
                        reject_failures=True)


def _near_values(values, name, size):
    """A strategy from ``values``: a strategy as it is, None as None, numbers as draws near them."""
    if values is None or isinstance(values, st.SearchStrategy):
        return values
    if isinstance(values, (str, bytes)):
        raise StrategyTypeError(
            f"Expected a hypothesis strategy or an array of {size} numbers but got {name}={values!r:.80} "
            f"(type={type(values).__name__})"
        )
    try:
        arr = np.asarray(values, dtype=float)
    except (TypeError, ValueError, OverflowError):
        raise StrategyTypeError(
            f"Expected a hypothesis strategy or an array of {size} numbers but got {name}={values!r:.80} "
            f"(type={type(values).__name__})"
        ) from None
    if arr.shape != (size,) or not np.all(np.isfinite(arr)):
        raise StrategyArgumentError(
            f"Invalid argument {name}={values!r:.80}: expected {size} finite numbers (shape ({size},)), "
            f"got shape {arr.shape}"
        )
    factors = _lattice(0.5, 1.5, steps=16, towards=1.0)
    return st.lists(factors, min_size=size, max_size=size).map(lambda f: arr * np.asarray(f, dtype=float))


#: draws in a row whose forward solve fails before from_system gives up with advice
_MAX_FAILED_SOLVES = 20


def _from_system(system, *, grids, batch_size, theta, z0, t0_alone, reject_failures):
    grids = time_grids() if grids is None else _check_strategy(grids, "grids")
    batch = None if batch_size is None else _check_size_range(batch_size, "batch_size", minimum=1, maximum=_MAX_BATCH)
    if theta is not None:
        _check_strategy(theta, "theta")
    if z0 is not None:
        _check_strategy(z0, "z0")
    t0_alone = _check_bool(t0_alone, "t0_alone")
    n, p = system.n_states, system.n_params
    names = tuple(getattr(system, "state_names", ()) or ())
    tally = {"solved": 0, "failed": 0}

    @st.composite
    def build(draw):
        ts = np.asarray(draw(grids), dtype=float)
        if z0 is not None:
            z = np.asarray(draw(z0), dtype=float)
        elif batch is None:
            z = np.array(draw(st.lists(_magnitudes(), min_size=n, max_size=n)))
        else:
            rows = st.lists(_magnitudes(), min_size=n, max_size=n)
            z = np.array(draw(st.lists(rows, min_size=batch[0], max_size=batch[1])))
        if theta is not None:
            th = np.asarray(draw(theta), dtype=float)
        elif hasattr(system, "init_params"):
            th = np.asarray(system.init_params(np.random.default_rng(draw(st.integers(0, 2**32 - 1)))))
        else:
            th = np.array(draw(_parameters(p)), dtype=float)
        loss = draw(losses(len(ts), n, t0_alone=t0_alone, names=names if len(names) == n else None))
        problem = Problem(system, z, ts, th, loss)
        if reject_failures:
            assume(_solves(problem, tally))
        assume(_integrated_exactly(make_problem(*problem)) is None)
        assume(not _gradient_vanishes(problem))
        return problem

    return build()


def _solves(problem, tally):
    """Whether the forward and adjoint solves of ``problem`` succeed; after many failures in a row, advice."""
    try:
        adjoint_gradients(*problem, rtol=1e-8, atol=1e-8)  # also compiles the kernels, outside the test's time
    except IntegrationError as exc:
        tally["failed"] += 1
        if tally["solved"] == 0 and tally["failed"] >= _MAX_FAILED_SOLVES:
            raise StrategyArgumentError(
                f"from_system: the first {tally['failed']} problems drawn for {problem.system!r:.80} could not be "
                f"solved (last: z0={problem.z0.tolist()}, theta={problem.theta.tolist()}: {str(exc)[:200]}). "
                "Bound the draws to values where the model is well-posed: from_system(system, theta=[...], "
                "z0=[...]) draws near your values (factors 0.5-1.5), or pass strategies, e.g. "
                f"theta=st.lists(st.floats(0.5, 1.5), min_size={problem.system.n_params}, "
                f"max_size={problem.system.n_params})"
            ) from None
        return False
    tally["solved"] += 1
    return True


def problems(*, systems=None, n_states=(1, 3), n_times=(2, 4), decreasing=False, batch_size=None, grids=None,
             t0_alone=False):
    """Complete gradient problems ``(system, z0, ts, theta, loss)``.

    Parameters
    ----------
    systems : SearchStrategy, optional
        Of ODESystems or vector fields; default :func:`ode_systems` with
        ``n_states`` states and 1 to 3 parameters.
    n_states : int or (int, int)
        Used only for the default ``systems``.
    n_times : int or (int, int)
        Number of observation times, for the default ``grids``.
    decreasing : bool or None
        Decreasing time grids; None draws both. With the default systems,
        each is damped in the direction of its grid.
    batch_size : int or (int, int), optional
        Batches of initial states (see :func:`from_system`).
    grids : SearchStrategy, optional
        Default :func:`time_grids` with ``n_times`` times (and ``decreasing``).
        The default systems are damped in the direction of each drawn grid,
        also when the grids are yours.
    t0_alone : bool
        Also draw losses at t0 alone (see :func:`from_system`).

    Returns
    -------
    SearchStrategy of Problem
        A named tuple; ``check_gradients(*problem)`` works. Its repr shows
        the right-hand side, inputs and loss formula, so a falsifying example
        reads as a problem. Each costs well under a second to check with
        ``references=["forward", "fd"]``.
    """
    t_lo, t_hi = _check_size_range(n_times, "n_times", minimum=2, maximum=_MAX_TIMES)
    if decreasing is not None:
        decreasing = _check_bool(decreasing, "decreasing")
    if systems is not None:
        _check_strategy(systems, "systems")
    if grids is not None:
        _check_strategy(grids, "grids")
    if batch_size is not None:
        _check_size_range(batch_size, "batch_size", minimum=1, maximum=_MAX_BATCH)
    t0_alone = _check_bool(t0_alone, "t0_alone")
    directions = [False, True] if decreasing is None else [decreasing]
    grid_strategy = grids if grids is not None else st.one_of(
        # the default span (at least 0.5) holds t_hi - 1 gaps: narrower than 0.05 for many times
        *[time_grids(min_size=t_lo, max_size=t_hi, decreasing=d, min_gap=min(0.05, 0.5 / (t_hi - 1)))
          for d in directions])
    # validated now, drawn from later; the default systems are damped in the direction of the drawn grid
    # (a system damped forwards blows up when integrated backwards), whoever made the grid
    default_systems = {d: ode_systems(n_states=n_states, n_params=(1, 3), decreasing=d) for d in (False, True)}

    @st.composite
    def build(draw):
        ts = np.asarray(draw(grid_strategy), dtype=float)
        backwards = len(ts) > 1 and bool(ts[-1] < ts[0])
        system = draw(systems if systems is not None else default_systems[backwards])
        return draw(_from_system(system, grids=st.just(ts), batch_size=batch_size, theta=None, z0=None,
                                 t0_alone=t0_alone, reject_failures=False))

    return build()


def __dir__():
    # tab completion shows the public names, not the modules imported here
    return sorted(__all__)
