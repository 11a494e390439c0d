"""Interval enclosures: every supported function is enclosed rigorously and tightly.

The reference values are mpmath at 50 digits on a dense grid including the
interval's ends (independent of mpmath.iv), so a missed value would show.
"""

import mpmath
import numpy as np
import pytest
import sympy as sp
from mpmath import iv

from odeverify._functions import relu, sigmoid, softplus
from odeverify.errors import EnclosureError
from odeverify.theory._interval import Encloser, hi, interval, lo

X = sp.Symbol("x", real=True)

REFERENCE = {
    "tanh": (sp.tanh(X), mpmath.tanh),
    "sinh": (sp.sinh(X), mpmath.sinh),
    "cosh": (sp.cosh(X), mpmath.cosh),
    "asinh": (sp.asinh(X), mpmath.asinh),
    "atan": (sp.atan(X), mpmath.atan),
    "exp": (sp.exp(X), mpmath.exp),
    "sin": (sp.sin(X), mpmath.sin),
    "cos": (sp.cos(X), mpmath.cos),
    "sigmoid": (sigmoid(X), lambda v: 1 / (1 + mpmath.exp(-v))),
    "softplus": (softplus(X), lambda v: mpmath.log(1 + mpmath.exp(v))),
    "relu": (relu(X), lambda v: max(v, 0)),
    "abs": (sp.Abs(X), abs),
    "square minus x": (X**2 - X, lambda v: v**2 - v),
    "x exp(-x^2)": (X * sp.exp(-(X**2)), lambda v: v * mpmath.exp(-(v**2))),
}
BOUNDED = {
    "asin": (sp.asin(X), mpmath.asin),
    "acos": (sp.acos(X), mpmath.acos),
    "atanh": (sp.atanh(X), mpmath.atanh),
}
POSITIVE = {
    "log": (sp.log(X), mpmath.log),
    "sqrt": (sp.sqrt(X), mpmath.sqrt),
    "acosh": (sp.acosh(X + 1), lambda v: mpmath.acosh(v + 1)),
    "x^1.5": (X ** sp.Rational(3, 2), lambda v: v ** mpmath.mpf(1.5)),
    "1/x^2": (1 / X**2, lambda v: 1 / v**2),
}


def _check(expr, ref, a, b):
    y = Encloser({X: interval(a, b)})(expr)
    with mpmath.workdps(50):
        grid = [mpmath.mpf(a) + (mpmath.mpf(b) - mpmath.mpf(a)) * k / 400 for k in range(401)]
        vals = [ref(v) for v in grid]
        vmin, vmax = min(vals), max(vals)
        assert mpmath.mpf(y.a) <= vmin, (expr, a, b, y, vmin)
        assert mpmath.mpf(y.b) >= vmax, (expr, a, b, y, vmax)
    return y, float(vmin), float(vmax)


@pytest.mark.parametrize("name", list(REFERENCE))
@pytest.mark.parametrize("ab", [(-1.0, 2.0), (0.3, 0.7), (-3.5, -0.1), (0.0, 0.0), (-20.0, 30.0)])
def test_encloses_the_range(name, ab):
    expr, ref = REFERENCE[name]
    _check(expr, ref, *ab)


COMPOSITE = ("square minus x", "x exp(-x^2)")


@pytest.mark.parametrize("name", [n for n in [*REFERENCE, *BOUNDED, *POSITIVE] if n not in COMPOSITE])
def test_monotone_enclosures_are_tight(name):
    # on a small interval where the function is monotone, the enclosure is its
    # exact range up to a few units in the last place (composite expressions,
    # where x occurs twice, are overestimated: the dependency problem)
    table = {**REFERENCE, **BOUNDED, **POSITIVE}
    expr, ref = table[name]
    y, vmin, vmax = _check(expr, ref, 0.25, 0.5)
    assert lo(y) >= vmin - 1e-13 * max(1, abs(vmin))
    assert hi(y) <= vmax + 1e-13 * max(1, abs(vmax))


@pytest.mark.parametrize("name", list(BOUNDED))
@pytest.mark.parametrize("ab", [(-0.9, 0.95), (-0.5, -0.2), (0.0, 0.999)])
def test_inverse_trig_and_atanh(name, ab):
    _check(*BOUNDED[name], *ab)


@pytest.mark.parametrize("name", list(POSITIVE))
@pytest.mark.parametrize("ab", [(0.5, 3.0), (1e-3, 1e-2), (2.0, 2.0)])
def test_functions_of_positive_arguments(name, ab):
    _check(*POSITIVE[name], *ab)


def test_sign_heaviside_and_their_switches():
    # mpmath.iv.sign([-1, 2]) returns [-1, -1]; odeverify's own enclosure is [-1, 1]
    enc = Encloser({X: interval(-1, 2)}, record=True)
    s = enc(sp.sign(X))
    assert (lo(s), hi(s)) == (-1.0, 1.0)
    h = enc(sp.Heaviside(X))
    assert (lo(h), hi(h)) == (0.0, 1.0)
    assert [sw.kind for sw in enc.switches] == ["jump", "jump"]
    enc = Encloser({X: interval(0.5, 2)}, record=True)
    assert (lo(enc(sp.sign(X))), hi(enc(sp.sign(X)))) == (1.0, 1.0)
    assert enc.switches == []


def test_kinks_are_recorded_only_inside():
    enc = Encloser({X: interval(-1, 1)}, record=True)
    enc(relu(X) + sp.Abs(X - 5) + sp.Max(X, 2 * X))
    kinks = sorted(str(s.expr) for s in enc.switches)
    assert kinks == ["Max(x, 2*x)", "relu(x)"]  # |x - 5| does not switch on [-1, 1]
    assert all(s.kind == "kink" for s in enc.switches)


def test_piecewise():
    pw = sp.Piecewise((X, X < 0), (2 * X, True))
    enc = Encloser({X: interval(0.5, 1)}, record=True)
    assert (lo(enc(pw)), hi(enc(pw))) == (1.0, 2.0)  # decided: second branch
    assert enc.switches == []
    enc = Encloser({X: interval(-1, 1)}, record=True)
    y = enc(pw)
    assert lo(y) <= -1 and hi(y) >= 2
    assert [s.kind for s in enc.switches] == ["jump"]
    with pytest.raises(EnclosureError, match="may be undefined"):
        Encloser({X: interval(-1, 1)})(sp.Piecewise((X, X < 0)))


def test_rational_and_float_constants_are_exact_or_outward():
    y = Encloser({})(sp.Rational(1, 3) + sp.Float(0.1))
    exact = mpmath.mpf(1) / 3 + mpmath.mpf(0.1)
    with mpmath.workdps(40):
        assert mpmath.mpf(y.a) <= exact <= mpmath.mpf(y.b)
    assert hi(y) - lo(y) < 1e-15


def test_unsupported_and_domain_errors():
    with pytest.raises(EnclosureError, match="cannot enclose erf"):
        Encloser({X: interval(0, 1)})(sp.erf(X))
    with pytest.raises(EnclosureError, match="log is applied to values in"):
        Encloser({X: interval(-1, 1)})(sp.log(X))
    with pytest.raises(EnclosureError, match="sqrt"):
        Encloser({X: interval(-1, 1)})(sp.sqrt(X))
    with pytest.raises(EnclosureError, match="no interval was given"):
        Encloser({})(X + 1)


def test_division_by_an_interval_containing_zero_is_unbounded():
    y = Encloser({X: interval(-1, 1)})(1 / X)
    assert lo(y) == -np.inf and hi(y) == np.inf


def test_precision_is_restored():
    saved = iv.prec
    iv.prec = 80
    try:
        Encloser({X: interval(0, 1)})(sp.exp(X))
        assert iv.prec == 80
    finally:
        iv.prec = saved
