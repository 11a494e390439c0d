"""ODESystem: a symbolic right-hand side, its derivatives, and compiled kernels."""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
import sympy as sp

from ._codegen import ArrayKernel, Group, _Facts, compile_solver_kernels
from ._field import AbstractVectorField, SolverKernels
from ._functions import ALLOWED_FUNCTIONS, NONSMOOTH_FUNCTIONS, relu, sigmoid, softplus
from ._switches import SwitchSolver, find_discontinuities
from ._parse import MAX_NAMES, constant_out_of_range, describe_constant, parse_expression, parse_names
from .errors import InvalidArgumentError, InvalidTypeError

__all__ = ["ODESystem"]

_PRINTABLE_FUNCTIONS = tuple(
    {ctor for ctor, _ in ALLOWED_FUNCTIONS.values() if isinstance(ctor, type)}
    | {sp.log, sp.Heaviside, sp.DiracDelta, sp.Piecewise, sp.sign, sp.Abs, sigmoid, softplus, relu, sp.Min, sp.Max}
)
_NONANALYTIC = NONSMOOTH_FUNCTIONS


def _as_symbol(obj, argname):
    if isinstance(obj, sp.Symbol):
        return obj
    if isinstance(obj, str):
        return sp.Symbol(obj)
    raise InvalidTypeError(f"{argname} must be a sympy.Symbol or a name, got {type(obj).__name__} {obj!r:.60}")


def _symbol_list(spec, argname, reserved):
    if spec is None:
        return []
    if isinstance(spec, sp.Symbol):
        spec = [spec]
    if isinstance(spec, str):
        return [sp.Symbol(n) for n in parse_names(spec, argname, reserved=reserved)]
    if isinstance(spec, sp.MatrixBase):
        spec = list(spec)
    if not isinstance(spec, Sequence):
        raise InvalidTypeError(
            f"{argname} must be a sequence of sympy Symbols or a string of names such as 'x y', "
            f"got {type(spec).__name__}"
        )
    syms = [_as_symbol(s, f"{argname}[{i}]") for i, s in enumerate(spec)]
    parse_names([s.name for s in syms], argname, reserved=reserved)
    return syms


class _Differentiator:
    """``expr.diff(symbol)`` for the derivation, memoized and without ``sympy.Derivative``'s overhead.

    ``Derivative`` asks ``is_zero`` of every partial result on the way up, an
    assumption query that walks the whole sum each time: most of the cost of
    differentiating a long right-hand side. Here sums, products, powers and
    the functions that use SymPy's chain rule (``Function._eval_derivative``:
    sin, exp, tanh, sigmoid, ...) are differentiated by the same rules as
    SymPy's and built with the same constructors, so the results are the
    same expressions; anything else (Abs, Piecewise, Min/Max, Heaviside, ...)
    is left to ``expr.diff``. Subtrees without the symbol are skipped on their
    free symbols, and every derivative is kept, so the Jacobians and the
    second derivatives of the backward system share the work.
    """

    def __init__(self):
        self._memo = {}
        self.free = _Facts().free  # memoized free symbols, shared with the code generator's

    def __call__(self, expr, sym):
        """d expr / d sym."""
        if sym not in self.free(expr):
            return sp.S.Zero
        if expr is sym or not expr.args:
            return sp.S.One if expr == sym else sp.S.Zero
        key = (expr, sym)
        out = self._memo.get(key)
        if out is None:
            out = self._memo[key] = self._rule(expr, sym)
        return out

    def _rule(self, e, s):
        if e.is_Add:
            return sp.Add(*[self(a, s) for a in e.args])
        if e.is_Mul:  # as Mul._eval_derivative
            args = list(e.args)
            terms = []
            for i, a in enumerate(args):
                da = self(a, s)
                if da is not sp.S.Zero:
                    terms.append(functools.reduce(lambda x, y: x * y, args[:i] + [da] + args[i + 1 :], sp.S.One))
            return sp.Add(*terms)
        if e.is_Pow:  # as Pow._eval_derivative
            base, exp = e.args
            return e * (self(exp, s) * sp.log(base) + self(base, s) * exp / base)
        if isinstance(e, sp.Function) and type(e)._eval_derivative is sp.Function._eval_derivative:
            terms = []
            for i, a in enumerate(e.args, start=1):
                da = self(a, s)
                if da is not sp.S.Zero:
                    terms.append(e.fdiff(i) * da)
            return sp.Add(*terms)
        return e.diff(s)

    def jacobian(self, exprs, syms):
        """The matrix d exprs_i / d syms_j, shape (len(exprs), len(syms))."""
        return sp.Matrix(len(exprs), len(syms), [self(e, x) for e in exprs for x in syms])


def _minus_transpose_times(jac, a):
    """-J^T a as a column, entry i = sum_k -a_k J_ki.

    The same value as ``-jac.T * Matrix(a)``, built without negating the
    entries of J first: SymPy distributes ``-(t_1 + ... + t_m)`` over the
    terms, which rebuilds every long sum of the Jacobian.
    """
    rows, cols = jac.shape
    return sp.Matrix(cols, 1, [sp.Add(*[-a[k] * jac[k, i] for k in range(rows) if jac[k, i] != 0]) for i in range(cols)])


#: Largest matrix (in expression-tree nodes) drawn in two dimensions by :meth:`ODESystem.pretty`.
PRETTY_MAX_NODES = 2_000


def _pretty_matrix(mat, unicode=True):
    """``sympy.pretty`` of a matrix, or one line per non-zero entry when the matrix is large.

    SymPy's two-dimensional layout costs seconds per kilobyte of expression
    and is unreadable at that size; the linear form is printed without
    sorting the terms.
    """
    nodes = 0
    for e in mat:
        for _ in sp.preorder_traversal(e):
            nodes += 1
        if nodes > PRETTY_MAX_NODES:
            break
    if nodes <= PRETTY_MAX_NODES:
        return sp.pretty(mat, use_unicode=unicode)
    lines = [
        f"[{i}, {j}] = {sp.sstr(mat[i, j], order='none')}"
        for i in range(mat.rows)
        for j in range(mat.cols)
        if mat[i, j] != 0
    ]
    return "\n".join(lines) if lines else "(all entries zero)"


def _unique_name(base, taken):
    name = base
    k = 1
    while name in taken:
        name = f"{base}_{k}"
        k += 1
    taken.add(name)
    return name


class ODESystem(AbstractVectorField):
    r"""An ODE dz/dt = f(z, t; theta) given symbolically, with its adjoint derivation.

    Parameters
    ----------
    states : sequence of sympy.Symbol or str
        The n states z, e.g. ``sympy.symbols("x y")`` or ``"x y"``.
    params : sequence of sympy.Symbol or str
        The p parameters theta (may be empty).
    rhs : sequence of sympy.Expr
        The n components of f. SymPy objects, not strings: use
        :meth:`from_strings` for text, which is parsed safely.
    time : sympy.Symbol or str, optional
        The time variable; default ``t``.
    name : str, optional
        A label for reports.

    Notes
    -----
    Every symbol is given the assumption ``real=True`` (a symbol passed
    without it is replaced by a real one of the same name), so that
    derivatives of ``Abs`` and friends are the real ones.

    The derivation follows the adjoint method as in Chen et al. (2018) and
    the notes (section 4.3). With the adjoint :math:`a(t) = \partial L /
    \partial z(t)` (a column vector here, the transpose of the notes' row
    vector):

    * ``jac_z``, ``jac_theta``, ``jac_t``: :math:`\partial f/\partial z`
      (n, n), :math:`\partial f/\partial\theta` (n, p),
      :math:`\partial f/\partial t` (n, 1);
    * ``adjoint_rhs`` :math:`= -(\partial f/\partial z)^T a` (n, 1),
      ``adjoint_theta_rhs`` :math:`= -(\partial f/\partial\theta)^T a` (p, 1),
      ``adjoint_t_rhs`` :math:`= -(\partial f/\partial t)^T a` (1, 1);
    * ``augmented_state`` :math:`[z, \theta, t]`, ``f_aug`` :math:`= [f, 0, 1]`
      and ``jac_aug`` :math:`= \partial f_{aug} / \partial [z, \theta, t]`
      (n + p + 1 square), whose only non-zero block row is
      :math:`[f_z, f_\theta, f_t]`;
    * ``augmented_adjoint_rhs`` :math:`= -(\partial f_{aug}/\partial[z,\theta,t])^T a_{aug}`;
    * ``backward_state`` :math:`[z, a, a_\theta, a_t]`, ``backward_rhs``
      :math:`= [f, -f_z^T a, -f_\theta^T a, -f_t^T a]` and ``backward_jac``, its
      Jacobian (2n + p + 1 square), for implicit solvers.

    Each is a SymPy Matrix; :meth:`latex` renders them. Their compiled,
    vectorized evaluators are on :attr:`numeric`.

    References
    ----------
    R. T. Q. Chen, Y. Rubanova, J. Bettencourt, D. Duvenaud, "Neural Ordinary
    Differential Equations", NeurIPS 2018, arXiv:1806.07366.

    Examples
    --------
    >>> import odeverify
    >>> lv = odeverify.ODESystem.from_strings(
    ...     states="x y", params="a b c d",
    ...     rhs=["a*x - b*x*y", "c*x*y - d*y"])
    >>> lv.jac_z
    Matrix([
    [a - b*y,    -b*x],
    [    c*y, c*x - d]])
    >>> lv.numeric.f([[1.0, 2.0]], 0.0, [1.0, 0.5, 0.25, 1.0])
    array([[ 0. , -1.5]])
    """

    has_jacobians = True

    def __init__(self, states, params, rhs, time=None, *, name=None):
        time = "t" if time is None else time
        time_sym = _as_symbol(time, "time")
        parse_names([time_sym.name], "time")
        state_syms = _symbol_list(states, "states", reserved=(time_sym.name,))
        if not state_syms:
            raise InvalidArgumentError("states is empty; an ODE needs at least one state, e.g. states='x'")
        param_syms = _symbol_list(params, "params", reserved=[time_sym.name] + [s.name for s in state_syms])
        if isinstance(rhs, (str, sp.Basic)) and not isinstance(rhs, sp.MatrixBase):
            rhs = [rhs]
        if isinstance(rhs, sp.MatrixBase):
            rhs = list(rhs)
        if isinstance(rhs, (bytes, bytearray)) or not isinstance(rhs, Sequence):
            raise InvalidTypeError(f"rhs must be a sequence of SymPy expressions, got {type(rhs).__name__}")
        if len(rhs) != len(state_syms):
            raise InvalidArgumentError(
                f"rhs has {len(rhs)} components but there are {len(state_syms)} states "
                f"({', '.join(s.name for s in state_syms)}); give one right-hand side per state"
            )
        # Replace every symbol by a real one of the same name.
        real = {}
        for s in [time_sym, *state_syms, *param_syms]:
            real[s] = sp.Symbol(s.name, real=True)
        self.time = real[time_sym]
        self.states = tuple(real[s] for s in state_syms)
        self.params = tuple(real[s] for s in param_syms)
        by_name = {s.name: s for s in [self.time, *self.states, *self.params]}
        exprs = []
        for i, e in enumerate(rhs):
            if isinstance(e, str):
                raise InvalidTypeError(
                    f"rhs[{i}] is a string; strings are parsed only by ODESystem.from_strings(...), "
                    "never passed to sympify"
                )
            if isinstance(e, (int, float)) and not isinstance(e, bool):
                e = sp.Float(e) if isinstance(e, float) else sp.Integer(e)
            if not isinstance(e, sp.Expr):
                raise InvalidTypeError(f"rhs[{i}] must be a SymPy expression, got {type(e).__name__} {e!r:.60}")
            sub = {}
            for s in e.free_symbols:
                if s.name not in by_name:
                    raise InvalidArgumentError(
                        f"rhs[{i}] = {e} uses the undeclared symbol {s.name!r}; declared: "
                        f"states {[x.name for x in self.states]}, params {[x.name for x in self.params]}, "
                        f"time {self.time.name!r}"
                    )
                if s is not by_name[s.name]:
                    sub[s] = by_name[s.name]
            if sub:  # xreplace rebuilds the whole tree even when every symbol maps to itself
                e = e.xreplace(sub)
            self._check_expression(e, f"rhs[{i}]")
            exprs.append(e)
        self.f = sp.Matrix(exprs)
        self.name = name or "ODESystem"
        self.n_states = len(self.states)
        self.n_params = len(self.params)
        self.state_names = tuple(s.name for s in self.states)
        self.param_names = tuple(s.name for s in self.params)
        self.is_autonomous = self.time not in self.f.free_symbols
        taken = set(by_name)
        self.adjoint = tuple(sp.Symbol(_unique_name(f"a_{s.name}", taken), real=True) for s in self.states)
        self.adjoint_theta = tuple(sp.Symbol(_unique_name(f"a_{s.name}", taken), real=True) for s in self.params)
        self.adjoint_time = sp.Symbol(_unique_name(f"a_{self.time.name}", taken), real=True)
        self.numeric = _Numeric(self)
        rough = [e if e.has(*NONSMOOTH_FUNCTIONS) else sp.S.Zero for e in exprs]
        self.discontinuities = find_discontinuities(rough, self.states, self.params, self.time, self.state_names)

    @functools.cached_property
    def _switch_solver(self):
        return SwitchSolver(self.discontinuities, self.params, self.time)

    def switch_times(self, theta, t0, t1):
        """The times in [t0, t1] where a condition in t and theta switches, and d tau / d theta.

        Each condition in t and the parameters (``t - s``, ``sin(w*t)``, ...) is
        solved for t with SymPy once (on the first call); later calls only
        evaluate the compiled roots, so perturbed theta are cheap. Conditions on
        the state (events) are not included.

        Parameters
        ----------
        theta : array_like, shape (p,)
        t0, t1 : float
            The interval, in integration order (t1 < t0 allowed).

        Returns
        -------
        SwitchTimes
            ``times`` (k,) in the order of integration, the ends t0 and t1
            included when a switch falls on them; ``dtheta`` (k, p), d tau / d
            theta by the implicit function theorem, -(dc/dtheta) / (dc/dt);
            ``source`` (k,), indices into :attr:`discontinuities`; ``jump``
            (k,), whether f jumps there; ``unsolved``, the discontinuities in t
            SymPy could not solve.
        """
        if not self.discontinuities:
            return super().switch_times(theta, t0, t1)
        return self._switch_solver(theta, t0, t1)

    @staticmethod
    def _check_expression(e, argname):
        if e.has(sp.oo, -sp.oo, sp.zoo, sp.nan):
            raise InvalidArgumentError(f"{argname} = {e} contains an infinity or NaN")
        huge = constant_out_of_range(e)
        if huge is not None:  # before anything prints e: SymPy's printer evaluates constants
            raise InvalidArgumentError(
                f"{argname} holds the constant {describe_constant(huge)}, beyond the double range (about 1.8e308); "
                "rescale the model"
            )
        if e.has(sp.I):
            raise InvalidArgumentError(f"{argname} = {e} is complex; right-hand sides must be real")
        for bad in (sp.Derivative, sp.Integral, sp.Sum, sp.Product, sp.Subs):
            if e.has(bad):
                raise InvalidArgumentError(
                    f"{argname} = {e} contains an unevaluated {bad.__name__}; evaluate it (.doit()) first"
                )
        for fn in e.atoms(sp.Function):
            if not isinstance(fn, _PRINTABLE_FUNCTIONS):
                raise InvalidArgumentError(
                    f"{argname} uses the function {type(fn).__name__}, which odeverify cannot compile; "
                    f"use one of {', '.join(sorted(ALLOWED_FUNCTIONS))}"
                )

    @classmethod
    def from_strings(cls, states, params, rhs, time="t", *, name=None):
        """Build a system from text, parsed safely (never evaluated).

        Parameters
        ----------
        states : str or sequence of str
            State names, e.g. ``"x y"``.
        params : str or sequence of str
            Parameter names, e.g. ``"a b c d"`` (``""`` for none).
        rhs : str or sequence of str
            One expression per state in the syntax of
            :func:`odeverify.parse_expression`: numbers, the declared names,
            ``+ - * / **`` and the functions ``sin, cos, tan, asin, acos, atan,
            atan2, sinh, cosh, tanh, asinh, acosh, atanh, exp, log, sqrt, abs,
            sign, erf, sigmoid, softplus, relu, heaviside, min, max`` and the
            constants ``pi`` and ``e``.
        time : str, optional
            Name of the time variable, default ``"t"``.

        Returns
        -------
        ODESystem

        Raises
        ------
        ParseError
            For anything outside that syntax, naming the token and position.
        """
        time_names = parse_names(time, "time")
        if len(time_names) != 1:
            raise InvalidArgumentError(f"time must be one name, got {time!r}")
        tname = time_names[0]
        snames = parse_names(states, "states", reserved=(tname,))
        pnames = parse_names(params, "params", reserved=[tname, *snames])
        if isinstance(rhs, str):
            rhs = [rhs]
        if isinstance(rhs, (bytes, bytearray)) or not isinstance(rhs, Sequence):
            raise InvalidTypeError(
                f"rhs must be a string or a list of strings, got {type(rhs).__name__} {rhs!r:.60}"
                + ("; decode it first, e.g. rhs=data.decode()" if isinstance(rhs, (bytes, bytearray)) else "")
            )
        if len(rhs) > MAX_NAMES:
            raise InvalidArgumentError(f"rhs has {len(rhs)} entries, over the limit of {MAX_NAMES}")
        symbols = {n: sp.Symbol(n, real=True) for n in [tname, *snames, *pnames]}
        if len(rhs) != len(snames):
            raise InvalidArgumentError(
                f"rhs has {len(rhs)} components but there are {len(snames)} states ({', '.join(snames)}); "
                "give one right-hand side per state"
            )
        exprs = [parse_expression(text, symbols, argname=f"rhs[{i}]") for i, text in enumerate(rhs)]
        return cls(
            [symbols[n] for n in snames], [symbols[n] for n in pnames], exprs, symbols[tname], name=name
        )

    # ------------------------------------------------------------------ derivation
    @functools.cached_property
    def _diff(self):
        return _Differentiator()

    @functools.cached_property
    def jac_z(self) -> sp.Matrix:
        """df/dz, shape (n, n)."""
        return self._diff.jacobian(list(self.f), self.states)

    @functools.cached_property
    def jac_theta(self) -> sp.Matrix:
        """df/dtheta, shape (n, p)."""
        return self._diff.jacobian(list(self.f), self.params) if self.params else sp.zeros(self.n_states, 0)

    @functools.cached_property
    def jac_t(self) -> sp.Matrix:
        """df/dt, shape (n, 1)."""
        return self._diff.jacobian(list(self.f), [self.time])

    @property
    def _a(self):
        return sp.Matrix(self.adjoint)

    @functools.cached_property
    def adjoint_rhs(self) -> sp.Matrix:
        """da/dt = -(df/dz)^T a, shape (n, 1)."""
        return _minus_transpose_times(self.jac_z, self.adjoint)

    @functools.cached_property
    def adjoint_theta_rhs(self) -> sp.Matrix:
        """da_theta/dt = -(df/dtheta)^T a, shape (p, 1)."""
        return _minus_transpose_times(self.jac_theta, self.adjoint)

    @functools.cached_property
    def adjoint_t_rhs(self) -> sp.Matrix:
        """da_t/dt = -(df/dt)^T a, shape (1, 1)."""
        return _minus_transpose_times(self.jac_t, self.adjoint)

    @property
    def augmented_state(self) -> sp.Matrix:
        """[z, theta, t], shape (n + p + 1, 1)."""
        return sp.Matrix([*self.states, *self.params, self.time])

    @functools.cached_property
    def f_aug(self) -> sp.Matrix:
        """f_aug = [f, 0, 1], shape (n + p + 1, 1)."""
        return sp.Matrix.vstack(self.f, sp.zeros(self.n_params, 1), sp.Matrix([1]))

    @functools.cached_property
    def jac_aug(self) -> sp.Matrix:
        """d f_aug / d[z, theta, t], shape (n + p + 1, n + p + 1)."""
        top = sp.Matrix.hstack(self.jac_z, self.jac_theta, self.jac_t)
        return sp.Matrix.vstack(top, sp.zeros(self.n_params + 1, self.n_states + self.n_params + 1))

    @property
    def augmented_adjoint(self) -> sp.Matrix:
        """a_aug = [a, a_theta, a_t], shape (n + p + 1, 1)."""
        return sp.Matrix([*self.adjoint, *self.adjoint_theta, self.adjoint_time])

    @functools.cached_property
    def augmented_adjoint_rhs(self) -> sp.Matrix:
        """d a_aug/dt = -(d f_aug / d[z, theta, t])^T a_aug, shape (n + p + 1, 1).

        Only the first n rows of the augmented Jacobian are non-zero, so this
        is [-f_z^T a, -f_theta^T a, -f_t^T a]: the three adjoint right-hand
        sides stacked (not re-derived from the mostly zero product).
        """
        return sp.Matrix.vstack(self.adjoint_rhs, self.adjoint_theta_rhs, self.adjoint_t_rhs)

    @property
    def backward_state(self) -> sp.Matrix:
        """[z, a, a_theta, a_t], shape (2n + p + 1, 1) -- the state integrated backwards."""
        return sp.Matrix([*self.states, *self.adjoint, *self.adjoint_theta, self.adjoint_time])

    @functools.cached_property
    def backward_rhs(self) -> sp.Matrix:
        """[f, -f_z^T a, -f_theta^T a, -f_t^T a], shape (2n + p + 1, 1)."""
        return sp.Matrix.vstack(self.f, self.adjoint_rhs, self.adjoint_theta_rhs, self.adjoint_t_rhs)

    @functools.cached_property
    def _second_derivative_blocks(self):
        # d(a^T f_z)_i/dz_j = sum_k a_k d^2 f_k / dz_i dz_j, built from the
        # Jacobian entries (differentiating the products a_k * J_ki instead
        # costs ten times more on large polynomials).
        # Entries of J that are zero or free of z_j are skipped before any SymPy call.
        n, p = self.n_states, self.n_params
        a, d = self.adjoint, self._diff

        def block(jac, rows):
            out = sp.zeros(rows, n)
            for i in range(rows):
                column = [(a[k], jac[k, i]) for k in range(n) if jac[k, i] != 0]
                for j, z in enumerate(self.states):
                    terms = [ak * d(e, z) for ak, e in column if z in d.free(e)]
                    if terms:
                        out[i, j] = sp.Add(*terms)
            return out

        return block(self.jac_z, n), block(self.jac_theta, p), block(self.jac_t, 1)

    @functools.cached_property
    def backward_jac(self) -> sp.Matrix:
        """d backward_rhs / d backward_state, shape (2n + p + 1, 2n + p + 1)."""
        n, p = self.n_states, self.n_params
        zz, thz, tz = self._second_derivative_blocks
        Z = sp.zeros
        rows = [
            sp.Matrix.hstack(self.jac_z, Z(n, n), Z(n, p), Z(n, 1)),
            sp.Matrix.hstack(-zz, -self.jac_z.T, Z(n, p), Z(n, 1)),
            sp.Matrix.hstack(-thz, -self.jac_theta.T, Z(p, p), Z(p, 1)),
            sp.Matrix.hstack(-tz, -self.jac_t.T, Z(1, p), Z(1, 1)),
        ]
        return sp.Matrix.vstack(*rows)

    #: names of the derived matrices, in derivation order
    DERIVATION = (
        "f",
        "jac_z",
        "jac_theta",
        "jac_t",
        "adjoint_rhs",
        "adjoint_theta_rhs",
        "adjoint_t_rhs",
        "f_aug",
        "jac_aug",
        "augmented_adjoint_rhs",
        "backward_rhs",
        "backward_jac",
    )

    _TITLES = {
        "f": "right-hand side f(z, t; θ)",
        "jac_z": "∂f/∂z",
        "jac_theta": "∂f/∂θ",
        "jac_t": "∂f/∂t",
        "adjoint_rhs": "da/dt = −(∂f/∂z)ᵀ a",
        "adjoint_theta_rhs": "da_θ/dt = −(∂f/∂θ)ᵀ a",
        "adjoint_t_rhs": "da_t/dt = −(∂f/∂t)ᵀ a",
        "f_aug": "f_aug([z, θ, t]) = [f, 0, 1]",
        "jac_aug": "∂f_aug/∂[z, θ, t]",
        "augmented_adjoint_rhs": "da_aug/dt = −(∂f_aug/∂[z, θ, t])ᵀ a_aug",
        "backward_rhs": "backward system d[z, a, a_θ, a_t]/dt",
        "backward_jac": "Jacobian of the backward system ∂(d[z, a, a_θ, a_t]/dt)/∂[z, a, a_θ, a_t]",
    }

    _LATEX_TITLES = {
        "f": r"f(z, t; \theta)",
        "jac_z": r"\frac{\partial f}{\partial z}",
        "jac_theta": r"\frac{\partial f}{\partial \theta}",
        "jac_t": r"\frac{\partial f}{\partial t}",
        "adjoint_rhs": r"\frac{da}{dt} = -\left(\frac{\partial f}{\partial z}\right)^T a",
        "adjoint_theta_rhs": r"\frac{da_\theta}{dt} = -\left(\frac{\partial f}{\partial \theta}\right)^T a",
        "adjoint_t_rhs": r"\frac{da_t}{dt} = -\left(\frac{\partial f}{\partial t}\right)^T a",
        "f_aug": r"f_{aug}([z, \theta, t])",
        "jac_aug": r"\frac{\partial f_{aug}}{\partial [z, \theta, t]}",
        "augmented_adjoint_rhs": r"\frac{d a_{aug}}{dt}",
        "backward_rhs": r"\frac{d}{dt}[z, a, a_\theta, a_t]",
        "backward_jac": r"\frac{\partial}{\partial [z, a, a_\theta, a_t]} \frac{d}{dt}[z, a, a_\theta, a_t]",
    }

    def derivation(self) -> dict:
        """Every derived matrix by name (see :attr:`DERIVATION`)."""
        return {name: getattr(self, name) for name in self.DERIVATION}

    def latex(self, name=None) -> str:
        """LaTeX of one derived matrix, or of the whole derivation.

        Parameters
        ----------
        name : str, optional
            One of :attr:`DERIVATION`; all of them when omitted.
        """
        names = self.DERIVATION if name is None else (name,)
        out = []
        for nm in names:
            if nm not in self.DERIVATION:
                raise InvalidArgumentError(f"name={nm!r} is not one of {', '.join(self.DERIVATION)}")
            out.append(f"{self._LATEX_TITLES[nm]} = {sp.latex(getattr(self, nm))}")
        return "\n\n".join(out)

    def _repr_latex_(self):
        # the system as equations, dx/dt = ..., one per line (Jupyter renders it)
        from ._display import system_equations

        return "$$" + system_equations(self) + "$$"

    def show(self, name=None):
        r"""A derived matrix rendered with its name: LaTeX in a notebook, text with ``print``.

        Parameters
        ----------
        name : str or sequence of str, optional
            One of :attr:`DERIVATION` (``"jac_z"``, ``"jac_aug"``, ``"backward_jac"``, ...), several, or
            None for the whole derivation, one aligned equation per matrix.

        Returns
        -------
        odeverify._display.Equations
            With ``_repr_latex_`` (e.g. :math:`\frac{\partial f}{\partial z} = \begin{pmatrix}…\end{pmatrix}`),
            ``.latex`` (the source) and ``str()`` (the matrices drawn in text). The adjoint is written
            :math:`\lambda` (``λ_x``, ``λ_a``, ...), never ``a``, so it cannot be taken for a parameter ``a``.

        Examples
        --------
        >>> import odeverify
        >>> lv = odeverify.ODESystem.from_strings("x y", "a b c d", ["a*x - b*x*y", "c*x*y - d*y"])
        >>> lv.show("adjoint_rhs").latex.startswith(r"\frac{d\lambda}{dt}")
        True
        """
        from ._display import derivation_display

        return derivation_display(self, name)

    def pretty(self, names=None, *, latex=False, unicode=True) -> str:
        """A readable multi-line rendering of the derivation (``latex=True`` for LaTeX; ``unicode=False``
        draws the matrices in ASCII)."""
        names = self.DERIVATION if names is None else names
        parts = [
            f"{self.name}: states ({', '.join(self.state_names)}), params ({', '.join(self.param_names)}), "
            f"time {self.time.name}{' (autonomous)' if self.is_autonomous else ''}"
        ]
        for nm in names:
            mat = getattr(self, nm)
            if latex:
                parts.append(f"% {self._TITLES[nm]}\n{self._LATEX_TITLES[nm]} = {sp.latex(mat)}")
            else:
                parts.append(f"{self._TITLES[nm]}  [{mat.rows}×{mat.cols}]\n{_pretty_matrix(mat, unicode)}")
        return "\n\n".join(parts)

    def __repr__(self):
        return (
            f"ODESystem(states={list(self.states)}, params={list(self.params)}, "
            f"rhs={list(self.f)}, time={self.time})"
        )

    def describe(self):
        text = f"{self.name}: " + ", ".join(f"d{s}/d{self.time} = {e}" for s, e in zip(self.states, self.f))
        if self.discontinuities:
            text += "; discontinuities: " + "; ".join(str(d) for d in self.discontinuities)
        return text

    def nonsmooth_functions(self) -> list:
        """Names of non-smooth functions in f (Abs, Max/Min, Heaviside, sign, Piecewise, relu)."""
        found = set()
        for e in self.f:
            for cls in NONSMOOTH_FUNCTIONS:
                if e.has(cls):
                    found.add(cls.__name__)
        return sorted(found)

    def complex_step_safe(self):
        return not self.nonsmooth_functions()

    # ------------------------------------------------------------------ vector-field interface
    def eval_f(self, z, t, theta):
        return self.numeric._kernel("f")(z, t, theta, check=False)[0]

    def eval_vjp(self, a, z, t, theta, *, with_f=False):
        f, az, ath, at = self.numeric._kernel("vjp")(a, z, t, theta, check=False)
        return (f if with_f else None), az, ath.sum(axis=0), float(at.sum())

    def eval_f_at(self, z, t, theta):
        return self.numeric._kernel("f")(z, t, theta, check=False)[0]

    def eval_vjp_at(self, a, z, t, theta):
        _, az, ath, at = self.numeric._kernel("vjp")(a, z, t, theta, check=False)
        return az, ath.sum(axis=0), float(at.sum())

    def f_autograd(self, z, t, theta):
        return self.numeric._kernel("f").autograd(z, t, theta)[0]

    def eval_f_complex(self, z, t, theta):
        return self.numeric._kernel("f").evaluate_complex(z, t, theta)[0]

    def eval_f_each(self, z, t, theta):
        # one call of the generated kernel: it broadcasts per-member t and theta against z
        return self.numeric._kernel("f")(*_member_args(z, t, theta), check=False)[0]

    def eval_f_each_complex(self, z, t, theta):
        return self.numeric._kernel("f").evaluate_complex(*_member_args(z, t, theta), check=False)[0]

    def eval_jac_z(self, z, t, theta):
        return self.numeric._kernel("jac_z")(z, t, theta, check=False)[0]

    def eval_jacobians(self, z, t, theta):
        fz, fth, ft = self.numeric._kernel("jacobians")(z, t, theta, check=False)
        return fz, fth, ft

    def eval_backward_jac(self, z, a, t, theta):
        return self.numeric._kernel("backward_blocks")(z, a, t, theta, check=False)

    def solver_kernels(self, theta, batch):
        """Fused, generated kernels (see :func:`odeverify._codegen.generate_solver_source`).

        Theta is unpacked once here; the batch sums of the parameter and
        time products happen inside the generated code; B = 1 gets scalar
        code without slicing.
        """
        theta = np.ascontiguousarray(theta, dtype=float)
        make = self.numeric._solver_factory("batch" if batch > 1 else "scalar")
        with np.errstate(all="ignore"):
            return SolverKernels(*make(theta, int(batch)))


class _Numeric:
    """Compiled, vectorized evaluators of an ODESystem's derived matrices.

    Every method takes arrays with optional leading batch axes: ``z`` of
    shape ``(..., n)``, ``t`` of shape ``(...)`` or a float, ``theta`` of shape
    ``(..., p)``, ``a`` of shape ``(..., n)``; results carry the broadcast batch
    shape in front. Kernels are generated on first use (with CSE) and cached.
    """

    def __init__(self, system: ODESystem):
        self._system = system
        self._kernels = {}

    def _kernel(self, kind) -> ArrayKernel:
        k = self._kernels.get(kind)
        if k is not None:
            return k
        s = self._system
        z = Group("z", s.states)
        a = Group("a", s.adjoint)
        t = Group("t", (s.time,), scalar=True)
        th = Group("theta", s.params)
        y = Group("y", tuple(s.backward_state))
        if kind == "f":
            k = ArrayKernel([z, t, th], [("f", s.f)], name="f")
        elif kind == "jac_z":
            k = ArrayKernel([z, t, th], [("jac_z", s.jac_z, "matrix")], name="jac_z")
        elif kind == "jacobians":
            k = ArrayKernel(
                [z, t, th],
                [("jac_z", s.jac_z, "matrix"), ("jac_theta", s.jac_theta, "matrix"), ("jac_t", s.jac_t)],
                name="jacobians",
            )
        elif kind == "vjp":
            k = ArrayKernel(
                [a, z, t, th],
                [
                    ("f", s.f),
                    ("a_z", -s.adjoint_rhs),
                    ("a_theta", -s.adjoint_theta_rhs),
                    ("a_t", -s.adjoint_t_rhs),
                ],
                name="vjp",
            )
        elif kind == "f_aug":
            k = ArrayKernel([z, t, th], [("f_aug", s.f_aug)], name="f_aug")
        elif kind == "jac_aug":
            k = ArrayKernel([z, t, th], [("jac_aug", s.jac_aug, "matrix")], name="jac_aug")
        elif kind == "backward_rhs":
            k = ArrayKernel([y, t, th], [("backward_rhs", s.backward_rhs)], name="backward_rhs")
        elif kind == "backward_jac":
            k = ArrayKernel([y, t, th], [("backward_jac", s.backward_jac, "matrix")], name="backward_jac")
        elif kind == "backward_blocks":
            zz, thz, tz = s._second_derivative_blocks
            k = ArrayKernel(
                [z, a, t, th],
                [("f_z", s.jac_z, "matrix"), ("a_zz", zz, "matrix"), ("a_theta_z", thz, "matrix"), ("a_t_z", tz, "matrix")],
                name="backward_blocks",
            )
        else:  # pragma: no cover - internal
            raise KeyError(kind)
        self._kernels[kind] = k
        return k

    def f(self, z, t, theta):
        """f(z, t; theta), shape ``batch + (n,)``."""
        return self._kernel("f")(z, t, theta)[0]

    def jac_z(self, z, t, theta):
        """df/dz, shape ``batch + (n, n)``."""
        return self._kernel("jac_z")(z, t, theta)[0]

    def jac_theta(self, z, t, theta):
        """df/dtheta, shape ``batch + (n, p)``."""
        return self._kernel("jacobians")(z, t, theta)[1]

    def jac_t(self, z, t, theta):
        """df/dt, shape ``batch + (n,)``."""
        return self._kernel("jacobians")(z, t, theta)[2]

    def vjp(self, a, z, t, theta):
        """Per-sample products ``(a^T f_z, a^T f_theta, a^T f_t)``, shapes ``batch + (n,)``, ``batch + (p,)``, ``batch``."""
        _, az, ath, at = self._kernel("vjp")(a, z, t, theta)
        return az, ath, at[..., 0]

    def adjoint_rhs(self, a, z, t, theta):
        """da/dt = -(df/dz)^T a, shape ``batch + (n,)``."""
        return -self.vjp(a, z, t, theta)[0]

    def f_aug(self, z, t, theta):
        """[f, 0, 1], shape ``batch + (n + p + 1,)``."""
        return self._kernel("f_aug")(z, t, theta)[0]

    def jac_aug(self, z, t, theta):
        """d f_aug / d[z, theta, t], shape ``batch + (n + p + 1, n + p + 1)``."""
        return self._kernel("jac_aug")(z, t, theta)[0]

    def backward_rhs(self, y, t, theta):
        """The backward system's right-hand side for y = [z, a, a_theta, a_t], shape ``batch + (2n + p + 1,)``."""
        return self._kernel("backward_rhs")(y, t, theta)[0]

    def backward_jac(self, y, t, theta):
        """Jacobian of :meth:`backward_rhs`, shape ``batch + (2n + p + 1, 2n + p + 1)``."""
        return self._kernel("backward_jac")(y, t, theta)[0]

    def _solver_factory(self, style):
        """The fused solver kernels of one style (see generate_solver_source), generated on first use."""
        key = ("solver", style)
        if key not in self._kernels:
            self._kernels[key] = compile_solver_kernels(*self._solver_args(), style=style)
        return self._kernels[key][0]

    def _solver_args(self):
        s = self._system
        return (
            s.states,
            s.adjoint,
            s.params,
            s.time,
            list(s.f),
            list(s.adjoint_rhs),
            list(s.adjoint_theta_rhs),
            list(s.adjoint_t_rhs),
        )

    def source(self, kind="vjp") -> str:
        """The generated Python source of one kernel (for inspection).

        ``kind="solver"`` gives the fused batch kernels the solvers call
        (``"solver_scalar"`` their B = 1 variant).
        """
        styles = {"solver": "batch", "solver_scalar": "scalar"}
        if kind in styles:
            self._solver_factory(styles[kind])
            return self._kernels[("solver", styles[kind])][1]
        return self._kernel(kind).source


def _member_args(z, t, theta):
    """``(z, t, theta)`` of ``eval_f_each`` shaped to broadcast: t (M, 1, ...), theta (M, 1, ..., p)."""
    z = np.asarray(z)
    extra = (1,) * (z.ndim - 2)
    if np.ndim(t) == 1:
        t = np.reshape(t, (-1,) + extra)
    if np.ndim(theta) == 2:
        theta = np.reshape(theta, (theta.shape[0],) + extra + (theta.shape[1],))
    return z, t, theta
