"""Discontinuities of a symbolic right-hand side and the times where they switch.

A right-hand side built from Heaviside, sign, Abs, Max/Min, relu or Piecewise
is smooth except where the argument of such a function (its *condition*)
crosses zero. :func:`find_discontinuities` lists every such subexpression of
f with the row it appears in, the condition, and whether f itself jumps there
(``'jump'``) or only its derivative does (``'kink'``).

When a condition depends on the time t and the parameters theta only (not on
the state), its zeros in t are the switch times tau(theta): :class:`SwitchSolver`
solves each condition for t once with SymPy (``solveset``; periodic conditions
give every root as ``base + n * period``), compiles the roots and the
derivatives of the condition with ``sympy.lambdify``, and then evaluates the
switch times and d tau / d theta = -(dc/dtheta) / (dc/dt) (the implicit
function theorem) for any theta with a few NumPy operations.

This module uses SymPy and NumPy only and imports nothing from the rest of
odeverify except its errors.
"""

from __future__ import annotations

from dataclasses import dataclass

import warnings

import numpy as np
import sympy as sp

from .errors import InvalidArgumentError, NonDifferentiableWarning

__all__ = [
    "Discontinuity", "SwitchTimes", "SwitchSolver", "find_discontinuities", "MAX_SWITCHES",
    "EVENT_FUNCTIONS", "substitute_branch", "StateConditions", "Event",
]

#: most switch times one interval may hold (a periodic condition with a huge frequency raises beyond it)
MAX_SWITCHES = 10_000


@dataclass(frozen=True)
class Discontinuity:
    """One non-smooth subexpression of a right-hand side.

    Attributes
    ----------
    row : int
        The component of f it appears in.
    function : str
        ``'Heaviside'``, ``'sign'``, ``'Abs'``, ``'Max'``, ``'Min'``, ``'relu'``,
        ``'Piecewise'``, ``'floor'``, ``'ceiling'`` or ``'DiracDelta'``.
    expression : sympy.Expr
        The subexpression, e.g. ``Heaviside(t - s)``.
    condition : sympy.Expr
        f switches where ``condition == 0``.
    kind : str
        ``'jump'`` when f jumps there, ``'kink'`` when f is continuous but its
        derivative jumps (Abs, Max, Min, relu), ``'impulse'`` for a DiracDelta
        in f itself (a point mass, which the solvers do not represent).
    in_state : bool
        The condition depends on the state z (an event: its time is not
        known before the solve).
    in_time : bool
        The condition depends on the time t.
    state : str
        The name of the state of row ``row`` (for messages).
    time : str
        The name of the time variable (for messages).
    """

    row: int
    function: str
    expression: sp.Expr
    condition: sp.Expr
    kind: str
    in_state: bool
    in_time: bool
    state: str = ""
    time: str = "t"

    @property
    def where(self):
        """``'t'`` (a switch time known from theta), ``'state'`` (an event) or ``'parameters'`` (constant in a solve)."""
        if self.in_state:
            return "state"
        return "t" if self.in_time else "parameters"

    def __str__(self):
        what = {"jump": "jumps", "kink": "has a kink", "impulse": "has a point mass"}[self.kind]
        where = {
            "t": f"a switch in {self.time}",
            "state": "a switch in the state: an event",
            "parameters": f"a switch in the parameters only, constant in {self.time}",
        }[self.where]
        lhs = f"d{self.state}/d{self.time}" if self.state else "f"
        return f"f[{self.row}] = {lhs}: {self.expression} {what} where {self.condition} = 0 ({where})"


def find_discontinuities(rhs, states, params, time, state_names=None):
    """Every non-smooth subexpression of ``rhs``, row by row.

    Parameters
    ----------
    rhs : sequence of sympy.Expr, length n
    states, params : sequence of sympy.Symbol
    time : sympy.Symbol
    state_names : sequence of str, optional
        For the messages; default the states' names.

    Returns
    -------
    tuple of Discontinuity
        In row order, then in the order of a pre-order walk of the row; a
        subexpression that occurs twice in a row is listed once.
    """
    states = frozenset(states)
    names = [s.name for s in states] if state_names is None else list(state_names)
    found = []
    for row, expr in enumerate(rhs):
        seen = set()
        for sub in sp.preorder_traversal(expr):
            if not isinstance(sub, sp.Basic) or sub in seen:
                continue
            for function, condition, kind in _conditions(sub):
                key = (sub, condition)
                if key in seen or condition.is_number:
                    continue
                seen.add(key)
                free = condition.free_symbols
                found.append(
                    Discontinuity(
                        row=row,
                        function=function,
                        expression=sub,
                        condition=condition,
                        kind=kind,
                        in_state=bool(free & states),
                        in_time=time in free,
                        state=names[row] if row < len(names) else "",
                        time=time.name,
                    )
                )
    return tuple(found)


def _conditions(e):
    """``(function, condition, kind)`` for each switch of the node ``e`` (empty for smooth nodes)."""
    name = type(e).__name__
    if isinstance(e, sp.Heaviside):
        return [("Heaviside", e.args[0], "jump")]
    if isinstance(e, sp.sign):
        return [("sign", e.args[0], "jump")]
    if isinstance(e, sp.Abs):
        return [("Abs", e.args[0], "kink")]
    if isinstance(e, (sp.Max, sp.Min)):
        args = e.args
        return [(name, args[j] - args[i], "kink") for i in range(len(args)) for j in range(i + 1, len(args))]
    if name == "relu":
        return [("relu", e.args[0], "kink")]
    if isinstance(e, (sp.floor, sp.ceiling)):
        # integer crossings of the argument: the zeros of sin(pi x)
        return [(name, sp.sin(sp.pi * e.args[0]), "jump")]
    if isinstance(e, sp.DiracDelta):
        return [("DiracDelta", e.args[0], "impulse")]
    if isinstance(e, sp.Piecewise):
        out = []
        for _, cond in e.args:
            for rel in _relationals(cond):
                c = rel.lhs - rel.rhs
                out.append(("Piecewise", c, "kink" if _continuous_across(e, c) else "jump"))
        return out
    return []


def _relationals(cond):
    if isinstance(cond, sp.core.relational.Relational):
        return [cond]
    if isinstance(cond, (sp.And, sp.Or, sp.Not)):
        return [r for a in cond.args for r in _relationals(a)]
    return []


def _continuous_across(pw, condition):
    """True when the pieces of ``pw`` provably agree where ``condition`` = 0 (only then is it a kink)."""
    free = sorted(condition.free_symbols, key=lambda s: s.name)
    for sym in free:
        try:
            roots = sp.solve(condition, sym, dict=False)
        except (NotImplementedError, ValueError, TypeError):
            continue
        if len(roots) != 1:
            continue
        values = [sp.simplify(v.subs(sym, roots[0])) for v, _ in pw.args]
        return all(sp.simplify(v - values[0]) == 0 for v in values[1:])
    return False


@dataclass(frozen=True)
class SwitchTimes:
    """The switch times of one solve, from :meth:`ODESystem.switch_times`.

    Attributes
    ----------
    times : ndarray, shape (k,)
        The distinct switch times in [t0, t1] (ends included), in the order
        of integration from t0 to t1 (decreasing when t1 < t0).
    dtheta : ndarray, shape (k, p)
        d tau / d theta of each time (NaN where the condition touches zero
        without crossing, dc/dt = 0).
    source : ndarray of int, shape (k,)
        Index into the field's ``discontinuities`` of the condition that
        gave each time (the first one when several give the same time).
    jump : ndarray of bool, shape (k,)
        Whether f jumps there (False: only a kink, no jump term).
    unsolved : tuple of int
        Discontinuities in t (and theta) whose condition SymPy could not
        solve for t: the solves do not stop at them.
    """

    times: np.ndarray
    dtheta: np.ndarray
    source: np.ndarray
    jump: np.ndarray
    unsolved: tuple = ()

    @classmethod
    def none(cls, p):
        """No switch times (a smooth field, or one whose switches are not in t)."""
        return cls(np.zeros(0), np.zeros((0, p)), np.zeros(0, dtype=int), np.zeros(0, dtype=bool))

    def __len__(self):
        return int(self.times.size)


class _RootFamily:
    """The zeros in t of one condition, compiled: a finite set ``r(theta)`` or ``base(theta) + n period(theta)``."""

    def __init__(self, root, period, time, params):
        self.root = sp.lambdify([list(params)], root, modules="numpy")
        self.period = None if period is None else sp.lambdify([list(params)], period, modules="numpy")

    def times(self, theta, lo, hi):
        with np.errstate(all="ignore"):
            base = complex(self.root(theta))
            if abs(base.imag) > 1e-12 * max(1.0, abs(base.real)) or not np.isfinite(base.real):
                return np.zeros(0)
            base = base.real
            if self.period is None:
                return np.array([base])
            period = abs(float(np.real(self.period(theta))))
        if not np.isfinite(period) or period == 0.0:
            return np.zeros(0)
        n_lo, n_hi = np.ceil((lo - base) / period) - 1, np.floor((hi - base) / period) + 1
        if n_hi - n_lo > MAX_SWITCHES:
            raise InvalidArgumentError(
                f"a periodic switch (period {period:.3g}) has over MAX_SWITCHES={MAX_SWITCHES} switch times in "
                f"[{lo!r}, {hi!r}]; shorten the interval or smooth the switch"
            )
        return base + period * np.arange(n_lo, n_hi + 1)


class SwitchSolver:
    """The switch times of the discontinuities in t of a right-hand side, solved once, evaluated per theta.

    Parameters
    ----------
    discontinuities : sequence of Discontinuity
    params : sequence of sympy.Symbol, length p
    time : sympy.Symbol

    Notes
    -----
    ``__init__`` runs SymPy (``solveset`` on each distinct condition in t and
    theta, a few tens of milliseconds each); :meth:`__call__` only evaluates
    compiled expressions.
    """

    def __init__(self, discontinuities, params, time):
        self.p = len(params)
        self._families = []  # (source index, jump?, [families], dc/dtheta kernel, dc/dt kernel, c kernel)
        self.unsolved = []
        solved = {}
        for i, d in enumerate(discontinuities):
            if d.in_state or not d.in_time or d.kind == "impulse":
                continue
            key = d.condition
            if key in solved:
                if solved[key] is None:
                    self.unsolved.append(i)
                continue
            families = _solve_for_time(d.condition, time, params)
            solved[key] = families
            if families is None:
                self.unsolved.append(i)
                continue
            grad = [sp.diff(d.condition, q) for q in params]
            self._families.append(
                (
                    i,
                    d.kind == "jump",
                    families,
                    sp.lambdify([time, list(params)], grad, modules="numpy"),
                    sp.lambdify([time, list(params)], sp.diff(d.condition, time), modules="numpy"),
                    sp.lambdify([time, list(params)], d.condition, modules="numpy"),
                )
            )
        self.unsolved = tuple(self.unsolved)

    def __call__(self, theta, t0, t1):
        """The switch times in [t0, t1] for ``theta`` (see :class:`SwitchTimes`)."""
        theta = np.asarray(theta, dtype=float).reshape(self.p)
        t0, t1 = float(t0), float(t1)
        lo, hi = min(t0, t1), max(t0, t1)
        # a root within a few rounding errors of an end is that end
        snap = 8 * np.finfo(float).eps * max(abs(lo), abs(hi), hi - lo, 1e-300)
        times, dtheta, source, jump = [], [], [], []
        for i, is_jump, families, grad, dcdt, cond in self._families:
            found = np.concatenate([fam.times(theta, lo, hi) for fam in families]) if families else np.zeros(0)
            found = np.where(np.abs(found - lo) <= snap, lo, np.where(np.abs(found - hi) <= snap, hi, found))
            found = np.unique(found[(found >= lo) & (found <= hi)])
            if not found.size:
                continue
            shape = found.shape
            with np.errstate(all="ignore"):  # every root of this condition in one evaluation
                c_t = np.broadcast_to(np.asarray(dcdt(found, theta), dtype=float), shape)
                c_th = np.stack([np.broadcast_to(np.asarray(g, dtype=float), shape) for g in grad(found, theta)]
                                + [np.zeros(shape)], 1)[:, : self.p]
                residual = np.broadcast_to(np.asarray(cond(found, theta), dtype=float), shape)
                # drop spurious roots of solveset's general solution (e.g. where theta breaks its condition)
                scale = np.abs(c_t) * np.maximum(np.abs(found), max(hi - lo, 1.0))
                ok = np.isfinite(residual) & (np.abs(residual) <= 1e-8 * scale)
                ok |= (c_t == 0) & (np.abs(residual) <= 1e-12)  # a touching zero: kept, d tau / d theta NaN
                d = np.where((c_t != 0)[:, None], -c_th / c_t[:, None], np.nan)
            times.append(found[ok])
            dtheta.append(d[ok])
            source.append(np.full(int(ok.sum()), i))
            jump.append(np.full(int(ok.sum()), is_jump))
        times = np.concatenate(times) if times else np.zeros(0)
        if not times.size:
            out = SwitchTimes.none(self.p)
            return SwitchTimes(out.times, out.dtheta, out.source, out.jump, self.unsolved)
        dtheta = np.concatenate(dtheta).reshape(times.size, self.p)
        source, jump = np.concatenate(source).astype(int), np.concatenate(jump).astype(bool)
        # integration order; at a time shared by several conditions a jumping one first, and kept
        order = np.lexsort((~jump, times if t1 >= t0 else -times))
        times = times[order]
        first = np.ones(times.size, dtype=bool)
        first[1:] = times[1:] != times[:-1]
        pick = order[first]
        return SwitchTimes(
            times=times[first],
            dtheta=_shared_times(times, first, dtheta[order], source[order], jump[order]),
            source=source[pick],
            jump=jump[pick],
            unsolved=self.unsolved,
        )


def _shared_times(times, first, dtheta, source, jump):
    """d tau / d theta of each distinct time, NaN where conditions sharing it move it differently.

    Two conditions that vanish at the same time (``heaviside(t - s1)`` and
    ``heaviside(t - s2)`` at s1 = s2) are one switch only while they move
    together. Where their d tau / d theta differ, perturbing theta splits the
    switch in two, and the jump term depends on which of them comes first
    (the branch in between, which no side of the shared time shows): the loss
    is in general not differentiable in those entries, which become NaN, with
    a :class:`NonDifferentiableWarning`. All inputs are in integration order
    (``times``, ``dtheta`` (m, p), ``source``, ``jump`` of length m); ``first``
    marks the first row of each distinct time.
    """
    group = np.cumsum(first) - 1
    out = dtheta[first].copy()
    split = []
    for g in np.unique(group[~first]):
        rows = np.flatnonzero(group == g)
        if not np.any(jump[rows]) or np.unique(source[rows]).size < 2:
            continue
        d = dtheta[rows]
        differ = np.flatnonzero(np.any(d != d[0], axis=0))
        if differ.size:
            out[g, differ] = np.nan
            split.append(f"t = {times[rows[0]]:.6g} (theta entries {', '.join(map(str, differ))})")
    if split:
        warnings.warn(
            "switch conditions that move differently with theta vanish at the same time: " + "; ".join(split)
            + ". The loss is in general not differentiable there (the jump term depends on which switch comes "
            "first), so those entries of dL/dtheta are NaN; move one switch time off the other",
            NonDifferentiableWarning,
            stacklevel=4,
        )
    return out


def _solve_for_time(condition, time, params):
    """The zeros in ``time`` of ``condition`` as a list of :class:`_RootFamily`, or None when SymPy cannot say."""
    try:
        solution = sp.solveset(condition, time, domain=sp.S.Reals)
    except (NotImplementedError, ValueError, TypeError):
        return None
    families = []
    if not _collect(solution, time, params, families):
        return None
    return families


def _collect(s, time, params, out):
    """Append the families of the solution set ``s`` to ``out``; False when ``s`` is not understood."""
    if isinstance(s, sp.FiniteSet):
        for r in s.args:
            if r.has(time):
                return False
            out.append(_RootFamily(r, None, time, params))
        return True
    if isinstance(s, sp.Union):
        return all(_collect(a, time, params, out) for a in s.args)
    if isinstance(s, sp.Intersection):  # {roots} ∩ Reals: the roots are checked to be real when evaluated
        sets = [a for a in s.args if not (a == sp.S.Reals or isinstance(a, sp.Interval))]
        return len(sets) == 1 and _collect(sets[0], time, params, out)
    if isinstance(s, sp.Complement):
        return _collect(s.args[0], time, params, out)
    if isinstance(s, sp.ConditionSet):  # a condition on theta only (w != 0): the evaluation filters it
        return s.sym == time and _collect(s.base_set, time, params, out)
    if isinstance(s, sp.ImageSet) and s.base_sets == (sp.S.Integers,):
        lam = s.lamda
        (n,) = lam.variables
        expr = lam.expr
        period = sp.diff(expr, n)
        if period.has(n) or expr.has(time):
            return False
        out.append(_RootFamily(expr.subs(n, 0), period, time, params))
        return True
    if s == sp.S.EmptySet:
        return True
    return False


# ---------------------------------------------------------------------------- events: switches in the state
#: the jumping functions whose state conditions the solves locate as events (floor/ceiling are not: their
#: branch is an integer per crossing, which :func:`substitute_branch` does not represent)
EVENT_FUNCTIONS = ("Heaviside", "sign", "Piecewise")


def substitute_branch(expr, signs):
    """``expr`` on one branch: every non-smooth function whose condition has a known sign replaced by its piece.

    Heaviside(c) becomes 0 or 1, sign(c) becomes -1 or 1, Abs(c) becomes -c or c, relu(c) 0 or c, Max/Min
    the argument that is largest/smallest, and a Piecewise condition on c True or False, for every condition
    c with ``signs[c]`` (or ``signs[-c]``) known. Conditions are read from the original arguments, before
    anything inside them is substituted (top-down), as :func:`find_discontinuities` reads them.

    Parameters
    ----------
    expr : sympy.Expr
    signs : dict
        ``{condition: +1 or -1}``.

    Returns
    -------
    sympy.Expr
    """

    def sign_of(c):
        if c in signs:
            return signs[c]
        if -c in signs:
            return -signs[-c]
        return None

    def sub(e):
        if not isinstance(e, sp.Basic) or not e.args:
            return e
        name = type(e).__name__
        if isinstance(e, (sp.Heaviside, sp.sign, sp.Abs)) or name == "relu":
            c = e.args[0]
            s = sign_of(c)
            if s is not None:
                if isinstance(e, sp.Heaviside):
                    return sp.S.One if s > 0 else sp.S.Zero
                if isinstance(e, sp.sign):
                    return sp.S.One if s > 0 else sp.S.NegativeOne
                if isinstance(e, sp.Abs):
                    return sub(c) if s > 0 else -sub(c)
                return sub(c) if s > 0 else sp.S.Zero
        if isinstance(e, (sp.Max, sp.Min)):
            args, big = e.args, isinstance(e, sp.Max)
            for i, ai in enumerate(args):  # the argument that wins against every other one
                wins = True
                for j, aj in enumerate(args):
                    if i == j:
                        continue
                    s = sign_of(aj - ai) if i < j else sign_of(ai - aj)  # conditions args[j] - args[i], i < j
                    if s is None:
                        wins = False
                        break
                    above = (s < 0) if i < j else (s > 0)  # ai > aj
                    if above != big:
                        wins = False
                        break
                if wins:
                    return sub(ai)
        if isinstance(e, sp.Piecewise):
            pieces = [(sub(v), _decide(cond, sign_of)) for v, cond in e.args]
            return sp.Piecewise(*pieces)
        return e.func(*[sub(a) for a in e.args])

    return sub(expr)


def _decide(cond, sign_of):
    """A Piecewise condition with every relational of known sign replaced by True or False."""
    if isinstance(cond, sp.core.relational.Relational):
        s = sign_of(cond.lhs - cond.rhs)
        if s is None:
            return cond
        truth = {
            sp.StrictLessThan: s < 0, sp.LessThan: s < 0, sp.StrictGreaterThan: s > 0, sp.GreaterThan: s > 0,
            sp.Equality: False, sp.Unequality: True,
        }.get(type(cond))
        return cond if truth is None else sp.true if truth else sp.false
    if isinstance(cond, (sp.And, sp.Or, sp.Not)):
        return cond.func(*[_decide(a, sign_of) for a in cond.args])
    return cond


class StateConditions:
    """The jump conditions of a right-hand side on the state (its events), compiled.

    Parameters
    ----------
    discontinuities : sequence of Discontinuity
    states, params : sequence of sympy.Symbol, lengths n and p
    time : sympy.Symbol

    Attributes
    ----------
    conditions : tuple of sympy.Expr, length m
        The distinct conditions g(z, t, theta) of the Heaviside, sign and
        Piecewise jumps that depend on the state.
    source : tuple of int, length m
        Index into ``discontinuities`` of the first discontinuity of each.
    """

    def __init__(self, discontinuities, states, params, time):
        conditions, source = [], []
        for i, d in enumerate(discontinuities):
            if d.in_state and d.kind == "jump" and d.function in EVENT_FUNCTIONS and d.condition not in conditions:
                conditions.append(d.condition)
                source.append(i)
        self.conditions, self.source = tuple(conditions), tuple(source)
        self.discontinuities = tuple(discontinuities)
        self.n, self.p, self.m = len(states), len(params), len(conditions)
        args = [time, list(states), list(params)]
        self._g = sp.lambdify(args, list(conditions), modules="numpy")
        grads = [[sp.diff(c, v) for v in (*states, time, *params)] for c in conditions]
        self._grad = sp.lambdify(args, grads, modules="numpy")

    def __len__(self):
        return self.m

    def values(self, z, t, theta):
        """g at many states, shape (k, m), for ``z`` (k, n) and ``t`` (k,)."""
        z = np.asarray(z, dtype=float).reshape(-1, self.n)
        t = np.asarray(t, dtype=float).reshape(-1)
        with np.errstate(all="ignore"):
            out = self._g(t, list(z.T), list(np.asarray(theta, dtype=float).reshape(self.p)))
        return np.stack([np.broadcast_to(np.asarray(v, dtype=float), t.shape) for v in out], axis=1)

    def gradients(self, z, t, theta):
        """(dg/dz (m, n), dg/dt (m,), dg/dtheta (m, p)) at one state."""
        z = np.asarray(z, dtype=float).reshape(self.n)
        G = np.array(self._grad(float(t), list(z), list(np.asarray(theta, dtype=float).reshape(self.p))),
                     dtype=float).reshape(self.m, self.n + 1 + self.p)
        return G[:, : self.n], G[:, self.n], G[:, self.n + 1 :]

    def signs(self, values):
        """The branch of each condition, +1 or -1, for values of g of one state (0 counts as +1)."""
        return tuple(1 if v >= 0 else -1 for v in np.asarray(values, dtype=float).reshape(self.m))

    def mapping(self, signs):
        """``{condition: sign}`` for :func:`substitute_branch`."""
        return dict(zip(self.conditions, signs))

    def describe(self, i):
        """The discontinuity of condition ``i``, for messages."""
        return str(self.discontinuities[self.source[i]])


@dataclass(frozen=True)
class Event:
    """One crossing of a state condition g(z, t, theta) = 0 during a solve, with its saltation data.

    With f_b, f_a the fields just before and just after the crossing (in the
    order of integration), n_z = dg/dz, g_t = dg/dt, g_theta = dg/dtheta at
    (z(tau), tau) and D = n_z . f_b + g_t (the rate of g along the solution
    as it arrives), the implicit function theorem on g(z(tau), tau, theta) = 0
    gives d tau = -(n_z . dz^- + g_theta . d theta) / D, and a perturbation
    just before tau leaves it (in either direction of time) as

        dz^+ = S dz^- + (f_b - f_a) (d tau / d theta) d theta,
        S = I + (f_a - f_b) n_z^T / D,          d tau / d theta = -g_theta / D,

    the saltation matrix S. The adjoint (the transpose) jumps, in the
    backward sweep, by a^- = S^T a^+ = a^+ + n_z w with
    w = (f_a - f_b) . a^+ / D; dL/dtheta gains g_theta w and the adjoint of
    time (dL/dt_0) gains g_t w.

    Attributes
    ----------
    time : float
        tau.
    condition : int
        Index into the field's ``discontinuities`` of the condition that crossed.
    z : ndarray, shape (n,)
        The state at tau.
    f_before, f_after : ndarray, shape (n,)
    n_z : ndarray, shape (n,)
    g_t : float
    g_theta : ndarray, shape (p,)
    """

    time: float
    condition: int
    z: np.ndarray
    f_before: np.ndarray
    f_after: np.ndarray
    n_z: np.ndarray
    g_t: float
    g_theta: np.ndarray

    @property
    def denominator(self):
        """D = n_z . f_b + g_t: how fast g changes along the solution as it reaches the surface."""
        return float(np.dot(self.n_z, self.f_before) + self.g_t)

    @property
    def dtau_dz(self):
        """d tau / d z(tau^-), shape (n,)."""
        return -self.n_z / self.denominator

    @property
    def dtau_dtheta(self):
        """d tau / d theta at fixed z(tau^-) (the explicit dependence of g), shape (p,).

        The total derivative along a solution adds ``dtau_dz @ dz(tau^-)/dtheta``.
        """
        return -self.g_theta / self.denominator

    @property
    def saltation(self):
        """S = I + (f_a - f_b) n_z^T / D, shape (n, n)."""
        return np.eye(self.z.size) + np.outer(self.f_after - self.f_before, self.n_z) / self.denominator

    def propagate(self, dz, dtheta):
        """A forward sensitivity across the event: S dz + (f_b - f_a) (d tau / d theta . dtheta).

        Parameters
        ----------
        dz : ndarray, shape (n,) or (n, k)
            dz(tau^-)/d(something), k directions.
        dtheta : ndarray, shape (p,) or (p, k)
            d theta/d(something) of the same directions (zeros for z0).

        Returns
        -------
        ndarray, the shape of ``dz``
        """
        dz = np.asarray(dz, dtype=float)
        dtheta = np.asarray(dtheta, dtype=float)
        jump = np.multiply.outer(self.f_before - self.f_after, self.dtau_dtheta @ dtheta)
        return self.saltation @ dz + jump.reshape(dz.shape)

    def pull_back(self, a_plus):
        """The adjoint across the event, backwards: ``(a^-, w)`` with a^- = S^T a^+ and w = (f_a - f_b) . a^+ / D."""
        w = float(np.dot(self.f_after - self.f_before, a_plus)) / self.denominator
        return a_plus + self.n_z * w, w
