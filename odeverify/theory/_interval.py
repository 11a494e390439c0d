"""Rigorous interval enclosures of SymPy expressions with ``mpmath.iv``.

:class:`Encloser` evaluates an expression tree over intervals: every state,
time and parameter symbol is replaced by an interval, and every node by an
interval that is guaranteed to contain all values the node takes. The
guarantee rests on outward rounding:

* ``+ - * /``, integer powers, ``exp``, ``log``, ``log1p``, ``expm1``, ``sqrt``,
  ``sin``, ``cos`` and ``tan`` are mpmath's interval operations, which round
  every lower end down and every upper end up;
* ``tanh``, ``sinh``, ``cosh``, ``asinh``, ``acosh``, ``atanh``, ``sigmoid`` and
  ``softplus`` (which ``mpmath.iv`` lacks) are monotone (``cosh`` on each side
  of 0), so their range over ``[a, b]`` is spanned by the values at the ends,
  and those values are enclosed by interval evaluation of an exact identity
  (``tanh x = expm1(2x) / (expm1(2x) + 2)``, ``sigmoid x = 1 / (1 + exp(-x))``,
  ...) at the point intervals ``[a, a]`` and ``[b, b]``;
* ``atan``, ``asin``, ``acos`` are enclosed by inverting ``tan``, ``sin``,
  ``cos``: a candidate end ``y`` is accepted only once the interval value of
  ``tan(y)`` (say) proves it lies on the right side of the argument;
* ``Abs``, ``Max``, ``Min``, ``relu``, ``Heaviside`` and ``sign`` are exact on
  the interval ends.

Anything else (``erf``, ``atan2``, unknown functions, an argument outside a
function's domain) raises :class:`~odeverify.errors.EnclosureError` instead
of returning a number that is not a guaranteed bound.

Non-smooth nodes are recorded as *switches*: a *kink* (``Abs``, ``Max``,
``Min``, ``relu``: continuous, not differentiable) or a *jump* (``Heaviside``,
``sign``, ``DiracDelta``, an undecided ``Piecewise``: possibly discontinuous)
whose switching point may lie inside the intervals.

References
----------
R. E. Moore, R. B. Kearfott, M. J. Cloud, *Introduction to Interval
Analysis*, SIAM 2009, ch. 2-5 (interval arithmetic and its inclusion
property).
"""

from __future__ import annotations

from dataclasses import dataclass

import mpmath
import sympy as sp
from mpmath import iv

from .._functions import relu, sigmoid, softplus
from ..errors import EnclosureError

__all__ = ["Encloser", "Switch", "point", "interval", "lo", "hi", "is_finite"]

# The enclosures below use 53-bit interval arithmetic; mpmath.iv is a global
# context, so Encloser sets its precision for each evaluation and restores it.
_PREC = 53


@dataclass(frozen=True)
class Switch:
    """A non-smooth sub-expression whose switching point may lie in the box.

    Attributes
    ----------
    expr : sympy.Expr
        The sub-expression, e.g. ``relu(w*x + b)``.
    kind : {'kink', 'jump'}
        ``'kink'``: continuous but not differentiable there (``Abs``,
        ``Max``, ``Min``, ``relu``); ``'jump'``: possibly discontinuous
        (``Heaviside``, ``sign``, ``DiracDelta``, ``Piecewise``).
    symbols : frozenset of sympy.Symbol
        The free symbols of its arguments (tells whether it switches with
        the states, the time, or both).
    """

    expr: sp.Expr
    kind: str
    symbols: frozenset

    def describe(self):
        return f"{self.expr}" if len(str(self.expr)) <= 80 else f"{str(self.expr)[:77]}..."


def interval(a, b=None):
    """The interval ``[a, b]`` (``[a, a]`` when ``b`` is omitted) from floats or mpf."""
    if b is None:
        return iv.mpf(a)
    return iv.mpf([a, b])


def point(x):
    """The degenerate interval of a float (exact)."""
    return iv.mpf(x)


def lo(x) -> float:
    """Lower end as a float (exact: the ends are 53-bit numbers)."""
    return float(x.a)


def hi(x) -> float:
    """Upper end as a float (exact: the ends are 53-bit numbers)."""
    return float(x.b)


def is_finite(x) -> bool:
    return mpmath.isfinite(mpmath.mpf(x.a)) and mpmath.isfinite(mpmath.mpf(x.b))


def _contains_zero(x):
    return x.a <= 0 <= x.b


def _degenerate(x):
    return x.a == x.b


def _hull(*xs):
    return iv.mpf([min(mpmath.mpf(x.a) for x in xs), max(mpmath.mpf(x.b) for x in xs)])


def _intersect(x, a, b):
    """``x`` intersected with ``[a, b]`` (a and b exact)."""
    return iv.mpf([max(mpmath.mpf(x.a), a), min(mpmath.mpf(x.b), b)])


def _monotone(x, f_point, *, increasing=True):
    """Range of a monotone function over ``x`` from enclosures at its two ends."""
    ya = f_point(iv.mpf(x.a))
    yb = f_point(iv.mpf(x.b))
    if increasing:
        return iv.mpf([mpmath.mpf(ya.a), mpmath.mpf(yb.b)])
    return iv.mpf([mpmath.mpf(yb.a), mpmath.mpf(ya.b)])


def _tanh_point(x):
    if x.a == mpmath.inf:
        return iv.mpf(1)
    if x.a == -mpmath.inf:
        return iv.mpf(-1)
    # tanh x = expm1(2x) / (expm1(2x) + 2), and -tanh(-x) for x < 0 (no overflow)
    if x.a < 0:
        return -_tanh_point(-x)
    e = iv.expm1(2 * x)
    return e / (e + 2) if mpmath.isfinite(mpmath.mpf(e.b)) else iv.mpf([mpmath.mpf(1) / 2, 1])


def _sinh_point(x):
    if not mpmath.isfinite(mpmath.mpf(x.a)):
        return iv.mpf(x.a)
    return (iv.exp(x) - iv.exp(-x)) / 2


def _cosh_point(x):
    if not mpmath.isfinite(mpmath.mpf(x.a)):
        return iv.mpf(mpmath.inf)
    return (iv.exp(x) + iv.exp(-x)) / 2


def _asinh_point(x):
    if not mpmath.isfinite(mpmath.mpf(x.a)):
        return iv.mpf(x.a)
    if x.a < 0:
        return -_asinh_point(-x)
    return iv.log(x + iv.sqrt(x * x + 1))


def _acosh_point(x):
    if x.a == mpmath.inf:
        return iv.mpf(mpmath.inf)
    return iv.log(x + iv.sqrt(x * x - 1))


def _atanh_point(x):
    if x.a == 1:
        return iv.mpf(mpmath.inf)
    if x.a == -1:
        return iv.mpf(-mpmath.inf)
    return (iv.log1p(x) - iv.log1p(-x)) / 2


def _sigmoid_point(x):
    return 1 / (1 + iv.exp(-x))


def _softplus_point(x):
    if x.a == mpmath.inf:
        return iv.mpf(mpmath.inf)
    # log(1 + e^x) = x + log1p(e^-x) for x > 0 (no overflow)
    if x.a > 0:
        return x + iv.log1p(iv.exp(-x))
    return iv.log1p(iv.exp(x))


def _inverse_end(y_approx, forward, target, *, below, increasing, bound):
    """A verified end of the inverse of a monotone ``forward`` at ``target``.

    Returns ``y`` with ``forward(y) <= target`` (``below`` and increasing) or
    ``>= target``, proved by the interval value of ``forward(y)``; widens the
    step away from ``y_approx`` until proved, or falls back to ``bound``.
    """
    step = mpmath.mpf(2) ** -45 * max(1, abs(y_approx))
    for _ in range(40):
        y = y_approx - step if below else y_approx + step
        fy = forward(iv.mpf(y))
        # for an increasing forward, y below the inverse iff forward(y) <= target
        if increasing == below:
            ok = fy.b <= target
        else:
            ok = fy.a >= target
        if ok:
            return y
        step *= 16
    return bound


def _inverse_interval(x, approx, forward, *, increasing, lo_bound, hi_bound):
    """Enclosure over ``x`` of the inverse g of a monotone ``forward``, g's range within [lo_bound, hi_bound]."""

    def end(t, below):
        t = mpmath.mpf(t)
        if not mpmath.isfinite(t):  # atan(±inf) = ±pi/2
            return lo_bound if (t < 0) == increasing else hi_bound
        with mpmath.workprec(_PREC + 20):
            y0 = approx(t)
        return _inverse_end(
            y0, forward, t, below=below, increasing=increasing, bound=lo_bound if below else hi_bound
        )

    a, b = (end(x.a, True), end(x.b, False)) if increasing else (end(x.b, True), end(x.a, False))
    return iv.mpf([max(a, lo_bound), min(b, hi_bound)])


def _atan_interval(x):
    half_pi = mpmath.mpf((iv.pi / 2).b)
    return _inverse_interval(x, mpmath.atan, iv.tan, increasing=True, lo_bound=-half_pi, hi_bound=half_pi)


def _asin_interval(x):
    if x.a < -1 or x.b > 1:
        raise _Domain("asin", x)
    half_pi = mpmath.mpf((iv.pi / 2).b)
    return _inverse_interval(x, mpmath.asin, iv.sin, increasing=True, lo_bound=-half_pi, hi_bound=half_pi)


def _acos_interval(x):
    if x.a < -1 or x.b > 1:
        raise _Domain("acos", x)
    pi = mpmath.mpf(iv.pi.b)
    return _inverse_interval(x, mpmath.acos, iv.cos, increasing=False, lo_bound=mpmath.mpf(0), hi_bound=pi)


class _Domain(Exception):
    def __init__(self, name, x):
        self.name = name
        self.x = x


def _number(e):
    if e.is_Integer:
        return iv.mpf(int(e))
    if e.is_Rational:
        return iv.mpf(int(e.p)) / iv.mpf(int(e.q))
    if e.is_Float:
        r = sp.Rational(e)  # the exact binary value
        return iv.mpf(int(r.p)) / iv.mpf(int(r.q))
    if e is sp.pi:
        return iv.pi
    if e is sp.E:
        return iv.e
    raise EnclosureError(f"cannot enclose the constant {e} rigorously")


_UNARY = {
    sp.exp: iv.exp,
    sp.sin: iv.sin,
    sp.cos: iv.cos,
    sp.tan: iv.tan,
}


class Encloser:
    """Interval enclosures of SymPy expressions over a fixed environment.

    Parameters
    ----------
    env : dict
        ``sympy.Symbol -> mpmath.iv.mpf``: the interval of every symbol.
    record : bool
        Record the non-smooth nodes whose switching point the intervals
        may contain, in :attr:`switches`.

    Examples
    --------
    >>> import sympy as sp
    >>> from odeverify.theory._interval import Encloser, interval, lo, hi
    >>> x = sp.Symbol("x", real=True)
    >>> enc = Encloser({x: interval(-1, 2)})
    >>> y = enc(x**2 - sp.tanh(x))
    >>> lo(y) <= 0.0 and hi(y) >= 4.0 - float(sp.tanh(-1))
    True
    """

    def __init__(self, env, *, record=False):
        self.env = dict(env)
        self.record = record
        self.switches: list[Switch] = []
        self._cache = {}

    def __call__(self, e):
        saved = iv.prec
        iv.prec = _PREC
        try:
            return self._enc(sp.sympify(e))
        except EnclosureError:
            raise
        except _Domain as d:
            raise EnclosureError(
                f"{d.name} is applied to values in {d.x} inside the box, outside its domain, so f is not "
                "defined on the whole box; shrink the box"
            ) from None
        except (ValueError, ZeroDivisionError) as exc:
            raise EnclosureError(
                f"interval evaluation of {str(e)[:80]} failed ({exc}); f may be undefined on part of the box; "
                "shrink the box"
            ) from None
        finally:
            iv.prec = saved

    def _note(self, e, kind, args):
        if self.record:
            syms = frozenset().union(*(a.free_symbols for a in args))
            self.switches.append(Switch(e, kind, syms))

    def _enc(self, e):
        hit = self._cache.get(e)
        if hit is not None:
            return hit
        out = self._compute(e)
        self._cache[e] = out
        return out

    def _compute(self, e):  # noqa: C901 - one dispatch over node types
        if e in self.env:
            return self.env[e]
        if e.is_Symbol:
            raise EnclosureError(f"no interval was given for the symbol {e}")
        if e.is_Number or e.is_NumberSymbol:
            return _number(e)
        if e.is_Add:
            out = self._enc(e.args[0])
            for a in e.args[1:]:
                out = out + self._enc(a)
            return out
        if e.is_Mul:
            out = self._enc(e.args[0])
            for a in e.args[1:]:
                out = out * self._enc(a)
            return out
        if e.is_Pow:
            return self._pow(*e.args)
        fn = type(e)
        args = e.args
        if fn in _UNARY:
            return _UNARY[fn](self._enc(args[0]))
        if fn is sp.log:
            x = self._enc(args[0])
            if x.a < 0:
                raise _Domain("log", x)
            return iv.log(x)
        if fn is sp.tanh:
            return _intersect(_monotone(self._enc(args[0]), _tanh_point), -1, 1)
        if fn is sp.sinh:
            return _monotone(self._enc(args[0]), _sinh_point)
        if fn is sp.cosh:
            x = self._enc(args[0])
            m = abs(x)  # cosh is even and increasing in |x|
            return _intersect(_monotone(m, _cosh_point), 1, mpmath.inf)
        if fn is sp.asinh:
            return _monotone(self._enc(args[0]), _asinh_point)
        if fn is sp.acosh:
            x = self._enc(args[0])
            if x.a < 1:
                raise _Domain("acosh", x)
            return _monotone(x, _acosh_point)
        if fn is sp.atanh:
            x = self._enc(args[0])
            if x.a < -1 or x.b > 1:
                raise _Domain("atanh", x)
            return _monotone(x, _atanh_point)
        if fn is sp.atan:
            return _atan_interval(self._enc(args[0]))
        if fn is sp.asin:
            return _asin_interval(self._enc(args[0]))
        if fn is sp.acos:
            return _acos_interval(self._enc(args[0]))
        if fn is sigmoid:
            return _intersect(_monotone(self._enc(args[0]), _sigmoid_point), 0, 1)
        if fn is softplus:
            return _intersect(_monotone(self._enc(args[0]), _softplus_point), 0, mpmath.inf)
        if fn is relu:
            x = self._enc(args[0])
            if x.a < 0 < x.b:
                self._note(e, "kink", args)
            return iv.mpf([max(mpmath.mpf(x.a), 0), max(mpmath.mpf(x.b), 0)])
        if fn is sp.Abs:
            x = self._enc(args[0])
            if x.a < 0 < x.b:
                self._note(e, "kink", args)
            return abs(x)
        if fn in (sp.Max, sp.Min):
            return self._maxmin(e, fn is sp.Max)
        if fn is sp.Heaviside:
            x = self._enc(args[0])
            h0 = self._enc(args[1]) if len(args) > 1 else iv.mpf(0.5)
            return self._step(e, x, [(x.a < 0, iv.mpf(0)), (x.b > 0, iv.mpf(1)), (_contains_zero(x), h0)])
        if fn is sp.sign:
            x = self._enc(args[0])
            return self._step(
                e, x, [(x.a < 0, iv.mpf(-1)), (x.b > 0, iv.mpf(1)), (_contains_zero(x), iv.mpf(0))]
            )
        if fn is sp.DiracDelta:
            x = self._enc(args[0])
            if _contains_zero(x):
                self._note(e, "jump", args)
                return iv.mpf([-mpmath.inf, mpmath.inf])
            return iv.mpf(0)
        if fn is sp.Piecewise:
            return self._piecewise(e)
        name = getattr(fn, "__name__", str(fn))
        raise EnclosureError(
            f"cannot enclose {name}(...) rigorously with interval arithmetic (in {str(e)[:80]}); "
            "odeverify encloses + - * / **, exp, log, sqrt, sin, cos, tan, asin, acos, atan, sinh, cosh, "
            "tanh, asinh, acosh, atanh, sigmoid, softplus, relu, abs, min, max, sign, heaviside; "
            "rewrite f with these"
        )

    def _pow(self, base, exp):
        b = self._enc(base)
        if exp.is_Number and exp == int(exp) and abs(int(exp)) <= 10**6:
            k = int(exp)
            if k < 0 and _contains_zero(b):
                return iv.mpf([-mpmath.inf, mpmath.inf]) if k % 2 else iv.mpf([0, mpmath.inf])
            return b**k
        if exp == sp.S.Half:
            if b.a < 0:
                raise _Domain("sqrt", b)
            return iv.sqrt(b)
        # general power: base > 0 required, b**y = exp(y log b)
        if b.a < 0:
            raise _Domain(f"the power **{exp}", b)
        return iv.exp(self._enc(exp) * iv.log(b))

    def _maxmin(self, e, is_max):
        xs = [self._enc(a) for a in e.args]
        if is_max:
            low = max(mpmath.mpf(x.a) for x in xs)
            candidates = [x for x in xs if x.b >= low]
            out = iv.mpf([low, max(mpmath.mpf(x.b) for x in xs)])
        else:
            high = min(mpmath.mpf(x.b) for x in xs)
            candidates = [x for x in xs if x.a <= high]
            out = iv.mpf([min(mpmath.mpf(x.a) for x in xs), high])
        if len(candidates) > 1 and not all(_degenerate(x) for x in candidates):
            self._note(e, "kink", e.args)
        return out

    def _step(self, e, x, cases):
        vals = [v for possible, v in cases if possible]
        if _contains_zero(x) and not _degenerate(x):
            self._note(e, "jump", e.args[:1])
        return _hull(*vals)

    def _truth(self, cond):
        """Three-valued truth of a condition over the box: True, False or None (undecided)."""
        if cond is sp.true:
            return True
        if cond is sp.false:
            return False
        if isinstance(cond, sp.And):
            vals = [self._truth(c) for c in cond.args]
            return False if False in vals else (True if all(v is True for v in vals) else None)
        if isinstance(cond, sp.Or):
            vals = [self._truth(c) for c in cond.args]
            return True if True in vals else (False if all(v is False for v in vals) else None)
        if isinstance(cond, sp.Not):
            v = self._truth(cond.args[0])
            return None if v is None else not v
        if isinstance(cond, (sp.StrictLessThan, sp.LessThan, sp.StrictGreaterThan, sp.GreaterThan)):
            d = self._enc(cond.lhs - cond.rhs)
            if isinstance(cond, sp.StrictLessThan):
                return True if d.b < 0 else (False if d.a >= 0 else None)
            if isinstance(cond, sp.LessThan):
                return True if d.b <= 0 else (False if d.a > 0 else None)
            if isinstance(cond, sp.StrictGreaterThan):
                return True if d.a > 0 else (False if d.b <= 0 else None)
            return True if d.a >= 0 else (False if d.b < 0 else None)
        if isinstance(cond, (sp.Eq, sp.Ne)):
            d = self._enc(cond.lhs - cond.rhs)
            eq = True if (d.a == 0 and d.b == 0) else (False if not _contains_zero(d) else None)
            return eq if (eq is None or isinstance(cond, sp.Eq)) else not eq
        raise EnclosureError(f"cannot decide the Piecewise condition {cond} with interval arithmetic")

    def _piecewise(self, e):
        possible = []
        for value, cond in e.args:
            truth = self._truth(cond)
            if truth is False:
                continue
            possible.append(self._enc(value))
            if truth is True:
                break
        else:
            # no condition is certainly true: f may be undefined (NaN) somewhere in the box
            raise EnclosureError(
                f"no branch of {str(e)[:80]} is certain to apply on the whole box, so f may be undefined "
                "there; add a final (expr, True) branch or shrink the box"
            )
        if len(possible) > 1:
            self._note(e, "jump", [c for _, c in e.args if c not in (sp.true, sp.false)])
        return _hull(*possible)
