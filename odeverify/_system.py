"""ODESystem: a symbolic right-hand side, its derivatives, and compiled kernels."""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
import sympy as sp

from ._codegen import ArrayKernel, Group, compile_solver_kernels, generate_solver_source
from ._field import AbstractVectorField, SolverKernels
from ._functions import ALLOWED_FUNCTIONS, NONSMOOTH_FUNCTIONS, relu, sigmoid, softplus
from ._parse import MAX_NAMES, constant_out_of_range, describe_constant, parse_expression, parse_names
from ._rk import (
    CompiledRHS, RKDenseOutput, RKFailure, compiled_dense_rhs, dense_rhs_args, integrate_rk, integrate_rk_intervals,
)
from .tableaux import TSIT5
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
                sub[s] = by_name[s.name]
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
    def jac_z(self) -> sp.Matrix:
        """df/dz, shape (n, n)."""
        return self.f.jacobian(self.states)

    @functools.cached_property
    def jac_theta(self) -> sp.Matrix:
        """df/dtheta, shape (n, p)."""
        return self.f.jacobian(self.params) if self.params else sp.zeros(self.n_states, 0)

    @functools.cached_property
    def jac_t(self) -> sp.Matrix:
        """df/dt, shape (n, 1)."""
        return self.f.diff(self.time)

    @property
    def _a(self):
        return sp.Matrix(self.adjoint)

    @functools.cached_property
    def adjoint_rhs(self) -> sp.Matrix:
        """da/dt = -(df/dz)^T a, shape (n, 1)."""
        return -self.jac_z.T * self._a

    @functools.cached_property
    def adjoint_theta_rhs(self) -> sp.Matrix:
        """da_theta/dt = -(df/dtheta)^T a, shape (p, 1)."""
        return -self.jac_theta.T * self._a

    @functools.cached_property
    def adjoint_t_rhs(self) -> sp.Matrix:
        """da_t/dt = -(df/dt)^T a, shape (1, 1)."""
        return -self.jac_t.T * self._a

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
        """d a_aug/dt = -(d f_aug / d[z, theta, t])^T a_aug, shape (n + p + 1, 1)."""
        return -self.jac_aug.T * self.augmented_adjoint

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
        n, p = self.n_states, self.n_params
        a = self.adjoint
        zz = sp.zeros(n, n)
        for i in range(n):
            for j in range(n):
                zz[i, j] = sp.Add(*[a[k] * self.jac_z[k, i].diff(self.states[j]) for k in range(n)])
        thz = sp.zeros(p, n)
        for i in range(p):
            for j in range(n):
                thz[i, j] = sp.Add(*[a[k] * self.jac_theta[k, i].diff(self.states[j]) for k in range(n)])
        tz = sp.zeros(1, n)
        for j in range(n):
            tz[0, j] = sp.Add(*[a[k] * self.jac_t[k, 0].diff(self.states[j]) for k in range(n)])
        return zz, thz, tz

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
        return "$" + self.latex("f") + "$"

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
                parts.append(f"{self._TITLES[nm]}  [{mat.rows}×{mat.cols}]\n{sp.pretty(mat, use_unicode=unicode)}")
        return "\n\n".join(parts)

    def __repr__(self):
        return (
            f"ODESystem(states={list(self.states)}, params={list(self.params)}, "
            f"rhs={list(self.f)}, time={self.time})"
        )

    def describe(self):
        return f"{self.name}: " + ", ".join(f"d{s}/d{self.time} = {e}" for s, e in zip(self.states, self.f))

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

    def f_autograd(self, z, t, theta):
        return self.numeric._kernel("f").autograd(z, t, theta)[0]

    def eval_f_complex(self, z, t, theta):
        return self.numeric._kernel("f").evaluate_complex(z, t, theta)[0]

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
        if self.numeric._jit is not None:
            f, backward, adjoint, dense_rhs = self.numeric._jit

            def interpolated(dense):
                if isinstance(dense, RKDenseOutput):
                    return CompiledRHS(dense_rhs, dense_rhs_args(theta, dense))
                return None

            return SolverKernels(
                CompiledRHS(f, theta), CompiledRHS(backward, theta), functools.partial(adjoint, theta), interpolated
            )
        make = self.numeric._solver_factory("batch" if batch > 1 else "scalar")
        with np.errstate(all="ignore"):
            return SolverKernels(*make(theta, int(batch)))

    def jit(self, *, warm_up=True):
        """Compile the solver kernels with numba; returns the system.

        After ``system.jit()`` every solve and adjoint of this system calls
        machine code for f and the adjoint products instead of NumPy
        operations: on a batch of states a kernel call costs about as much as
        its arithmetic, not one NumPy call per operation. With the in-house
        methods ``'dopri5'`` and ``'tsit5'`` the whole step loop runs
        compiled too, so a step costs about a microsecond instead of tens.
        Compilation takes seconds (once per system and process), like a JAX
        jit. Needs the optional dependency numba (``pip install
        odeverify[jit]``).

        Parameters
        ----------
        warm_up : bool
            Compile the step loops now (by solving a tiny problem forward,
            backward and in interpolated mode) instead of at first use.

        Returns
        -------
        ODESystem
            ``self``, for chaining.

        Raises
        ------
        ImportError
            When numba is not installed.

        Examples
        --------
        >>> import numpy as np, odeverify as ov
        >>> lv = ov.ODESystem.from_strings("x y", "a b c d", ["a*x - b*x*y", "c*x*y - d*y"])
        >>> lv = lv.jit()  # doctest: +SKIP
        >>> res = ov.adjoint_gradients(lv, np.ones((512, 2)), np.linspace(0, 5, 11), [1.5, 1, 1, 3],
        ...                            lambda zs: (zs**2).sum(), method="tsit5")  # doctest: +SKIP
        """
        try:
            import numba  # noqa: F401
        except ImportError:
            raise ImportError(
                "ODESystem.jit() needs numba, an optional dependency: pip install numba (or odeverify[jit])"
            ) from None
        kernels, _ = self.numeric._loop_kernels()
        # compile now, for float64 arrays (the only kernels the solvers call)
        n, p = self.n_states, self.n_params
        theta = np.ones(p)
        with np.errstate(all="ignore"):
            kernels[0](theta, 0.5, np.ones(n), np.empty(n))
            kernels[1](theta, 0.5, np.ones(2 * n + p + 1), np.empty(2 * n + p + 1))
            kernels[2](theta, 0.5, np.ones(n), np.ones(n + p + 1), np.empty(n + p + 1))
        self.numeric._jit = (*kernels, compiled_dense_rhs(kernels[2]))
        if warm_up:
            self._warm_up()
        return self

    def _warm_up(self):
        """Compile the step loop for each right-hand side (tiny solves; the loop is typed, not the values)."""
        n, p = self.n_states, self.n_params
        kw = dict(rtol=1e-3, atol=1e-3, max_steps=1000)
        # the first call compiles, whatever the solve's outcome: f may be undefined at the warm-up point
        # (0/0 in a Michaelis-Menten rate at z = 0), which is no reason to fail
        fwd = None
        with np.errstate(all="ignore"):
            for value in (0.0, 1.0, 0.5):
                kernels = self.solver_kernels(np.full(p, value), 1)
                try:
                    fwd = integrate_rk(kernels.f, 0.0, 1e-3, np.full(n, value), TSIT5, t_out=np.array([0.0, 1e-3]),
                                       dense=True, **kw)
                    break
                except RKFailure:
                    continue
            # the backward sweep runs every interval in one call (odeverify._integrate.integrate_intervals)
            times, size_b, size_i = np.array([1e-3, 0.0]), 2 * n + p + 1, n + p + 1
            try:
                integrate_rk_intervals(kernels.backward, times, np.ones(size_b), np.zeros((1, size_b)), TSIT5,
                                       groups=(n, n, p, 1), **kw)
            except RKFailure:
                pass
            if fwd is not None:  # otherwise the interpolated sweep compiles on its first use
                try:
                    integrate_rk_intervals(kernels.interpolated(fwd["dense"]), times, np.ones(size_i),
                                           np.zeros((1, size_i)), TSIT5, groups=(n, p, 1), **kw)
                except RKFailure:
                    pass


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
        self._jit = None  # numba-compiled solver kernels after ODESystem.jit()

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

    def _loop_kernels(self):
        """The numba-compiled ``(f, backward, adjoint)`` (see :meth:`ODESystem.jit`) and their source."""
        self._solver_factory("loop")
        return self._kernels[("solver", "loop")]

    def source(self, kind="vjp") -> str:
        """The generated Python source of one kernel (for inspection).

        ``kind="solver"`` gives the fused batch kernels the solvers call
        (``"solver_scalar"`` their B = 1 variant, ``"solver_loop"`` the
        source that :meth:`ODESystem.jit` compiles).
        """
        styles = {"solver": "batch", "solver_scalar": "scalar", "solver_loop": "loop"}
        if kind == "solver_loop":
            return generate_solver_source(*self._solver_args(), style="loop")
        if kind in styles:
            self._solver_factory(styles[kind])
            return self._kernels[("solver", styles[kind])][1]
        return self._kernel(kind).source
