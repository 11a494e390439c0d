r"""Implicit layers (notes §3.7): y(x) defined by g(x, y) = 0, with its implicit-function-theorem gradient.

An explicit layer is a function :math:`y = f(x)`; an implicit layer only
states a condition :math:`g(x, y) = 0` that its output satisfies. Here the
output is found by :func:`scipy.optimize.root` and differentiated by the
implicit function theorem: where :math:`\partial g/\partial y` is
invertible, y is locally a differentiable function of x with

.. math:: \frac{dy}{dx} = -\Big(\frac{\partial g}{\partial y}\Big)^{-1} \frac{\partial g}{\partial x},

which needs neither the solver's iterations nor their number. Where
:math:`\partial g/\partial y` is singular (a fold, or a whole curve of
solutions), the theorem does not apply and a
:class:`~odeverify.errors.SingularJacobianError` is raised.

References
----------
S. G. Krantz, H. R. Parks, *The Implicit Function Theorem*, Birkhäuser 2002.
Z. Kolter, D. Duvenaud, M. Johnson, *Deep Implicit Layers*, NeurIPS 2020
tutorial, ch. 1 and 4 (https://implicit-layers-tutorial.org/).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import autograd
import numpy as np
import sympy as sp

from ._codegen import ArrayKernel, Group
from ._parse import parse_expression, parse_names
from ._validate import _as_float_array, check_positive_float
from ._display import fmt
from .errors import ConvergenceError, InvalidArgumentError, InvalidTypeError, SingularJacobianError

__all__ = ["ImplicitLayer", "ImplicitSolution", "ImplicitCheck", "check_implicit"]


@dataclass
class ImplicitSolution:
    """The output of an implicit layer at one input, with its gradient.

    Attributes
    ----------
    x : ndarray, shape (n_x,)
    y : ndarray, shape (n_y,)
        The solution of g(x, y) = 0.
    dy_dx : ndarray, shape (n_y, n_x)
        ``-(dg/dy)^{-1} dg/dx`` at (x, y).
    residual : float
        ``max |g(x, y)|``.
    uncertainty : float
        Relative change of dy/dx when y moves within the solve's accuracy
        (see :meth:`ImplicitLayer.gradient`); near 0 far from singular points.
    nfev : int
        Evaluations of g by the root finder.
    """

    x: np.ndarray
    y: np.ndarray
    dy_dx: np.ndarray
    residual: float
    uncertainty: float
    nfev: int

    def __repr__(self):
        return (f"<ImplicitSolution y {self.y.shape}: residual {fmt(self.residual, '.2g')}, "
                f"dy/dx uncertainty {fmt(self.uncertainty, '.2g')}, {self.nfev} evaluations>")


class ImplicitLayer:
    r"""A layer whose output y solves g(x, y) = 0.

    Parameters
    ----------
    g : callable
        ``g(x, y) -> array of shape (n_y,)``, x of shape (n_x,), y of shape
        (n_y,), written with ``autograd.numpy`` (its Jacobians come from
        autograd). Use :meth:`from_sympy` or :meth:`from_strings` for
        symbolic g, whose Jacobians are derived by SymPy.

    Examples
    --------
    >>> import numpy as np
    >>> from odeverify.implicit import ImplicitLayer
    >>> circle = ImplicitLayer.from_strings("x**2 + y**2 - 1", x="x", y="y")
    >>> sol = circle.solve([0.6], y0=[1.0])
    >>> round(float(sol.y[0]), 12), round(float(sol.dy_dx[0, 0]), 12)   # y = sqrt(1 - x^2), dy/dx = -x/y
    (0.8, -0.75)
    """

    def __init__(self, g):
        if not callable(g):
            raise InvalidTypeError(
                f"g must be a callable g(x, y) -> array written with autograd.numpy, got {type(g).__name__}; "
                "for SymPy expressions use ImplicitLayer.from_sympy(g, x, y)"
            )
        self._g = g
        self._gx = autograd.jacobian(g, 0)
        self._gy = autograd.jacobian(g, 1)
        self._kernel = None
        self._traced = False
        self.n_x = None
        self.n_y = None

    @classmethod
    def from_sympy(cls, g, x, y):
        """An implicit layer from SymPy expressions.

        Parameters
        ----------
        g : sympy.Expr or sequence of sympy.Expr
            The n_y equations g(x, y) = 0.
        x, y : sequence of sympy.Symbol
            The input and output symbols; g may use no other symbol.

        Returns
        -------
        ImplicitLayer
        """
        x = _symbols(x, "x")
        y = _symbols(y, "y")
        if set(x) & set(y):
            raise InvalidArgumentError(f"x and y share the symbols {sorted(map(str, set(x) & set(y)))}")
        if isinstance(g, sp.Basic) and not isinstance(g, sp.MatrixBase):
            g = [g]
        g = sp.Matrix(list(g))
        if g.shape[0] != len(y):
            raise InvalidArgumentError(
                f"g has {g.shape[0]} equations but y has {len(y)} unknowns; an implicit layer needs as many "
                "equations as outputs"
            )
        extra = g.free_symbols - set(x) - set(y)
        if extra:
            raise InvalidArgumentError(
                f"g uses the symbols {sorted(map(str, extra))}, which are neither in x nor in y; substitute "
                "numbers for them (g.subs(...)) or list them in x"
            )
        layer = cls.__new__(cls)
        layer._traced = True  # generated code, not a user function
        layer._g = layer._gx = layer._gy = None
        layer.n_x, layer.n_y = len(x), len(y)
        layer.equations = g
        layer._kernel = ArrayKernel(
            [Group("x", tuple(x)), Group("y", tuple(y))],
            [("g", g), ("g_x", g.jacobian(x), "matrix"), ("g_y", g.jacobian(y), "matrix")],
            name="implicit_g",
        )
        return layer

    @classmethod
    def from_strings(cls, g, *, x, y):
        """An implicit layer from text, parsed safely: ``from_strings("x**2 + y**2 - 1", x="x", y="y")``.

        Parameters
        ----------
        g : str or sequence of str
            The equations, in the syntax of :func:`odeverify.parse_expression`.
        x, y : str or sequence of str
            Names of the inputs and outputs.
        """
        xn = parse_names(x, "x")
        yn = parse_names(y, "y", reserved=xn)
        symbols = {n: sp.Symbol(n, real=True) for n in xn + yn}
        if isinstance(g, str):
            g = [g]
        exprs = [parse_expression(text, symbols, argname=f"g[{i}]") for i, text in enumerate(g)]
        return cls.from_sympy(exprs, [symbols[n] for n in xn], [symbols[n] for n in yn])

    # ------------------------------------------------------------------ evaluation
    def residual(self, x, y):
        """g(x, y), shape (n_y,)."""
        if self._kernel is not None:
            return self._kernel(x, y)[0]
        return np.asarray(self._g(x, y), dtype=float)

    def jacobians(self, x, y):
        """``(dg/dx (n_y, n_x), dg/dy (n_y, n_y))`` at (x, y)."""
        if self._kernel is not None:
            _, gx, gy = self._kernel(x, y)
            return gx, gy
        if not self._traced:
            self._check_traceable(x, y)
        gx = np.asarray(self._gx(x, y), dtype=float).reshape(len(y), len(x))
        gy = np.asarray(self._gy(x, y), dtype=float).reshape(len(y), len(y))
        return gx, gy

    def _check_traceable(self, x, y):
        """Once: g must keep autograd's trace (np.array of boxes gives zero Jacobians, not an error)."""
        for argnum in (0, 1):
            try:
                with warnings.catch_warnings():
                    warnings.filterwarnings("ignore", message="Output seems independent of input")
                    _, out = autograd.make_vjp(lambda *a: self._g(*a), argnum)(
                        np.asarray(x, float), np.asarray(y, float)
                    )
            except Exception as exc:  # noqa: BLE001 - user code under autograd
                raise InvalidTypeError(
                    f"g could not be differentiated by autograd ({type(exc).__name__}: {exc}); write g with "
                    "autograd.numpy (import autograd.numpy as np) and build arrays with np.stack, not np.array"
                ) from exc
            if isinstance(out, np.ndarray) and out.dtype == object:
                raise InvalidTypeError(
                    "g could not be differentiated by autograd: it returned an object array (a NumPy function such "
                    "as np.array or np.asarray broke autograd's trace, which would give zero Jacobians); write g "
                    "with autograd.numpy (import autograd.numpy as np) and build arrays with np.stack"
                )
        self._traced = True

    def _check_inputs(self, x, y0):
        x = np.atleast_1d(_as_float_array(x, "x"))
        y0 = np.atleast_1d(_as_float_array(y0, "y0"))
        for nm, v, n in (("x", x, self.n_x), ("y0", y0, self.n_y)):
            if v.size == 0:
                raise InvalidArgumentError(f"{nm} is empty; pass at least one number")
            if v.ndim != 1 or (n is not None and v.shape[0] != n):
                want = f"({n},)" if n is not None else "1-dimensional"
                raise InvalidArgumentError(f"{nm} has shape {v.shape}; pass shape {want}")
            if not np.all(np.isfinite(v)):
                raise InvalidArgumentError(f"{nm} = {v.tolist()} is not finite")
        g0 = self.residual(x, y0)
        if np.shape(g0) != y0.shape:
            raise InvalidArgumentError(
                f"g(x, y0) has shape {np.shape(g0)} but y0 has shape {y0.shape}; g must return one equation per "
                "output"
            )
        return x, y0

    def gradient(self, x, y, *, tol=1e-12, singular_rtol=1e-4):
        """dy/dx = -(dg/dy)^{-1} dg/dx at a solution (x, y), and how well it is determined.

        Parameters
        ----------
        x : array_like, shape (n_x,)
        y : array_like, shape (n_y,)
            A solution of g(x, y) = 0, accurate to ``max |g| <= tol``.
        tol : float
            The accuracy of y, as a bound on the residual.
        singular_rtol : float
            Largest accepted relative change of dy/dx when y moves within its
            accuracy, ``tol / s_min`` along the most singular direction of
            dg/dy (``s_min`` its smallest singular value).

        Returns
        -------
        dy_dx : ndarray, shape (n_y, n_x)
        uncertainty : float
            That relative change.

        Raises
        ------
        SingularJacobianError
            When dg/dy is singular, or so nearly singular that dy/dx is not
            determined to ``singular_rtol`` by a y accurate to ``tol``.
        """
        x = np.atleast_1d(_as_float_array(x, "x"))
        y = np.atleast_1d(_as_float_array(y, "y"))
        gx, gy = self.jacobians(x, y)
        dy_dx, uncertainty = _ift(gx, gy), np.inf
        _, s, Vt = np.linalg.svd(gy)
        if dy_dx is not None and s[-1] > 0:
            # the solve only pins y down to about tol / s_min along the most singular direction
            dy = tol / s[-1] * Vt[-1]
            size = max(float(np.max(np.abs(dy_dx))), np.finfo(float).tiny)
            uncertainty = 0.0
            for y_moved in (y + dy, y - dy):
                other = _ift(*self.jacobians(x, y_moved))
                change = np.inf if other is None else float(np.max(np.abs(other - dy_dx))) / size
                uncertainty = max(uncertainty, change)
        if not uncertainty <= singular_rtol:
            raise SingularJacobianError(
                f"dg/dy = {np.array2string(gy, precision=3, separator=', ').replace(chr(10), '')} is singular or nearly so at x = {x.tolist()}, "
                f"y = {y.tolist()} (smallest singular value {s[-1]:.1e}): moving y within its accuracy changes "
                f"dy/dx by {uncertainty:.1e} (relative), over singular_rtol={singular_rtol:g}. The hypothesis of the "
                "implicit function theorem (invertible dg/dy) fails here, or nearly: y is not a differentiable "
                "function of x at such a point (e.g. a fold where two solutions meet, or a curve of solutions); "
                "move x away from it"
            )
        return dy_dx, uncertainty

    def solve(self, x, y0, *, tol=1e-12, singular_rtol=1e-4, method="hybr"):
        """Solve g(x, y) = 0 for y from the guess ``y0`` and differentiate the solution.

        Parameters
        ----------
        x : array_like, shape (n_x,)
        y0 : array_like, shape (n_y,)
            Starting guess; selects the solution when there are several.
        tol : float
            Accept y when ``max |g(x, y)| <= tol * max(1, max |g(x, y0)|)``.
        singular_rtol : float
            See :meth:`gradient`: dg/dy counts as singular when dy/dx is not
            determined to this relative accuracy.
        method : str
            A method of :func:`scipy.optimize.root` (``'hybr'``, ``'lm'``, ...).

        Returns
        -------
        ImplicitSolution

        Raises
        ------
        ConvergenceError
            When the root finder does not reach ``tol``.
        SingularJacobianError
            When dg/dy is singular at the solution.
        """
        tol = check_positive_float(tol, "tol", example="1e-12", below_one=True)
        singular_rtol = check_positive_float(singular_rtol, "singular_rtol", example="1e-4")
        if not isinstance(method, str) or method not in _ROOT_METHODS:
            raise InvalidArgumentError(
                f"method={method!r} is not a method of scipy.optimize.root; use one of {', '.join(_ROOT_METHODS)}"
            )
        x, y0 = self._check_inputs(x, y0)
        scale = max(1.0, float(np.max(np.abs(self.residual(x, y0)))))
        import scipy.optimize  # imported on first use, not with the package

        res = scipy.optimize.root(
            lambda y: self.residual(x, y),
            y0,
            jac=lambda y: self.jacobians(x, y)[1],
            method=method,
            options={"xtol": 1e-14} if method == "hybr" else None,
        )
        y = np.asarray(res.x, dtype=float)
        r = float(np.max(np.abs(self.residual(x, y))))
        if not (r <= tol * scale):
            _, gy = self.jacobians(x, y)
            raise ConvergenceError(
                f"scipy.optimize.root({method!r}) did not solve g(x, y) = 0 at x = {x.tolist()} from y0 = "
                f"{y0.tolist()}: max |g| = {r:.3e} > tol * scale = {tol * scale:.1e} ({res.message.strip()}); "
                f"the smallest singular value of dg/dy there is {np.linalg.svd(gy, compute_uv=False).min():.2e}. "
                "Try another y0, or check that a solution exists"
            )
        dy_dx, uncertainty = self.gradient(x, y, tol=tol * scale, singular_rtol=singular_rtol)
        return ImplicitSolution(
            x=x, y=y, dy_dx=dy_dx, residual=r, uncertainty=uncertainty, nfev=int(getattr(res, "nfev", 0))
        )

    def __call__(self, x, y0, **kwargs):
        """The output y at ``x`` (see :meth:`solve`)."""
        return self.solve(x, y0, **kwargs).y

    def as_autograd(self, y0, **kwargs):
        """The layer as a function ``x -> y`` that autograd can differentiate (by the implicit function theorem).

        Parameters
        ----------
        y0 : array_like, shape (n_y,)
            Starting guess used at every call.
        **kwargs
            Passed to :meth:`solve`.

        Returns
        -------
        callable
            ``layer(x)``, an autograd primitive whose vector-Jacobian product
            is ``v -> v^T dy/dx``.
        """
        from autograd.extend import defvjp, primitive

        @primitive
        def layer(x):
            return self.solve(x, y0, **kwargs).y

        def vjp_maker(y, x):
            dy_dx = self.solve(x, y, **kwargs).dy_dx  # starts at the solution: no iterations
            return lambda v: np.asarray(v) @ dy_dx

        defvjp(layer, vjp_maker)
        return layer


_ROOT_METHODS = ("hybr", "lm", "broyden1", "broyden2", "anderson", "linearmixing", "diagbroyden",
                 "excitingmixing", "krylov", "df-sane")


def _symbols(spec, argname):
    if isinstance(spec, sp.Symbol):
        spec = [spec]
    if isinstance(spec, sp.MatrixBase):
        spec = list(spec)
    if not isinstance(spec, (list, tuple)) or not spec or not all(isinstance(s, sp.Symbol) for s in spec):
        raise InvalidTypeError(f"{argname} must be a non-empty list of sympy Symbols, got {spec!r:.80}")
    if len(set(spec)) != len(spec):
        raise InvalidArgumentError(f"{argname} lists a symbol twice: {spec}")
    return list(spec)


def _ift(gx, gy):
    """-(gy)^{-1} gx, or None when gy is exactly singular."""
    try:
        return -np.linalg.solve(gy, gx)
    except np.linalg.LinAlgError:
        return None


@dataclass
class ImplicitCheck:
    """The implicit-function-theorem gradient against central finite differences of the solve.

    Attributes
    ----------
    ift, finite_differences : ndarray, shape (n_y, n_x)
    rel_error : float
        Max entry difference over the largest entry of the finite differences.
    rtol : float
    """

    ift: np.ndarray
    finite_differences: np.ndarray
    rel_error: float
    rtol: float

    def __repr__(self):
        return (f"<ImplicitCheck {'PASSED' if self.passed else 'FAILED'}: relative error "
                f"{fmt(self.rel_error, '.2g')} (rtol {self.rtol:g})>")

    @property
    def passed(self) -> bool:
        return self.rel_error <= self.rtol

    def __str__(self):
        return (
            f"implicit function theorem vs finite differences: rel. error {self.rel_error:.2e} "
            f"(tol {self.rtol:.0e}) -> {'PASSED' if self.passed else 'FAILED'}\n"
            f"  IFT:          {np.array2string(self.ift, precision=8)}\n"
            f"  finite diff.: {np.array2string(self.finite_differences, precision=8)}"
        )


def check_implicit(layer, x, y0, *, eps=1e-6, rtol=1e-6):
    """Compare the IFT gradient of an implicit layer with central differences of its solve.

    Each column re-solves g(x ± eps e_j, y) = 0 starting from the solution
    at x (the same branch).

    Parameters
    ----------
    layer : ImplicitLayer
    x : array_like, shape (n_x,)
    y0 : array_like, shape (n_y,)
    eps : float
        Step, relative to ``max(1, |x_j|)``.
    rtol : float

    Returns
    -------
    ImplicitCheck

    Examples
    --------
    >>> from odeverify.implicit import ImplicitLayer, check_implicit
    >>> kepler = ImplicitLayer.from_strings("En - ecc*sin(En) - M", x="M ecc", y="En")   # Kepler's equation
    >>> check_implicit(kepler, [1.0, 0.3], [1.0]).passed
    True
    """
    if not isinstance(layer, ImplicitLayer):
        raise InvalidTypeError(f"layer must be an ImplicitLayer, got {type(layer).__name__}")
    eps = check_positive_float(eps, "eps", example="1e-6", below_one=True)
    rtol = check_positive_float(rtol, "rtol", example="1e-6")
    sol = layer.solve(x, y0)
    x = sol.x
    fd = np.empty_like(sol.dy_dx)
    for j in range(x.size):
        step = eps * max(1.0, abs(x[j]))
        e = np.zeros_like(x)
        e[j] = step
        fd[:, j] = (layer(x + e, sol.y) - layer(x - e, sol.y)) / (2 * step)
    err = float(np.max(np.abs(sol.dy_dx - fd)) / max(np.max(np.abs(fd)), 1e-300))
    return ImplicitCheck(ift=sol.dy_dx, finite_differences=fd, rel_error=err, rtol=rtol)


def __dir__():
    # tab completion shows the public names, not the modules imported here (np, sp, ...)
    return sorted(__all__)
