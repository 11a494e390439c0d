r"""ResNet = Euler (notes §3.6, §4.1): residual networks as Euler's method on a Neural ODE.

A residual network :math:`x_{k+1} = x_k + f_k(x_k)` is Euler's method
:math:`z_{k+1} = z_k + h f(z_k, t_k)` with :math:`h = 1` on the ODE whose
vector field at time :math:`t_k = k` is the k-th layer. With :math:`N`
layers of a shared field scaled by :math:`h = T/N`, the network's output
converges to the Neural ODE's z(T) at order 1 as N grows, and its
backpropagated gradient to the adjoint gradient (notes §4.3).
"""

from __future__ import annotations

from dataclasses import dataclass

import autograd
import autograd.numpy as anp
import numpy as np
import sympy as sp

from .._adjoint import adjoint_gradients
from .._functions import relu, sigmoid, softplus
from .._system import ODESystem
from .._validate import _as_float_array, as_field, check_theta
from .._display import fmt
from ..errors import InvalidArgumentError, InvalidTypeError
from ..tableaux import odeint_fixed
from ._checks import check_state, check_steps, check_t_span
from ._order import FLOOR_FACTOR, fit_order
from ._table import table_lines

__all__ = [
    "neural_ode_system",
    "pack_mlp_params",
    "unpack_mlp_params",
    "resnet_forward",
    "ResNetEulerCheck",
    "resnet_equals_euler",
    "ResNetConvergence",
    "resnet_convergence",
]

_SYMPY_ACTIVATIONS = {"tanh": sp.tanh, "sigmoid": sigmoid, "softplus": softplus, "relu": relu}


def neural_ode_system(n, hidden, *, activation="tanh", name=None):
    r"""The Neural ODE vector field :math:`f(z) = W_2\,\sigma(W_1 z + b_1) + b_2` as an ODESystem.

    Parameters
    ----------
    n : int
        Number of states.
    hidden : int
        Width of the hidden layer.
    activation : {'tanh', 'sigmoid', 'softplus', 'relu'}
    name : str, optional

    Returns
    -------
    ODESystem
        States ``z0 .. z{n-1}``; parameters in the order of
        :func:`pack_mlp_params`: ``W1_i_j`` (row-major, hidden x n),
        ``b1_i``, ``W2_i_j`` (n x hidden), ``b2_i``.

    Examples
    --------
    >>> from odeverify.theory import neural_ode_system
    >>> sys = neural_ode_system(2, 3)
    >>> sys.n_states, sys.n_params
    (2, 17)
    """
    for nm, v in (("n", n), ("hidden", hidden)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise InvalidArgumentError(f"{nm}={v!r} must be a positive integer")
    if not isinstance(activation, str) or activation not in _SYMPY_ACTIVATIONS:
        raise InvalidArgumentError(f"activation={activation!r} is not one of {', '.join(_SYMPY_ACTIVATIONS)}")
    sigma = _SYMPY_ACTIVATIONS[activation]
    z = sp.Matrix(sp.symbols(f"z0:{n}", real=True))
    W1 = sp.Matrix(hidden, n, lambda i, j: sp.Symbol(f"W1_{i}_{j}", real=True))
    b1 = sp.Matrix(sp.symbols(f"b1_0:{hidden}", real=True))
    W2 = sp.Matrix(n, hidden, lambda i, j: sp.Symbol(f"W2_{i}_{j}", real=True))
    b2 = sp.Matrix(sp.symbols(f"b2_0:{n}", real=True))
    f = W2 * (W1 * z + b1).applyfunc(sigma) + b2
    params = list(W1) + list(b1) + list(W2) + list(b2)  # sympy Matrix iterates row-major
    return ODESystem(list(z), params, list(f), name=name or f"Neural ODE ({n}-{hidden}-{n}, {activation})")


def pack_mlp_params(W1, b1, W2, b2):
    """theta for :func:`neural_ode_system`: ``[W1.ravel(), b1, W2.ravel(), b2]``, shape (2 n hidden + hidden + n,)."""
    W1, b1 = _as_float_array(W1, "W1"), _as_float_array(b1, "b1")
    W2, b2 = _as_float_array(W2, "W2"), _as_float_array(b2, "b2")
    if W1.ndim != 2 or W2.shape != W1.shape[::-1] or b1.shape != (W1.shape[0],) or b2.shape != (W1.shape[1],):
        raise InvalidArgumentError(
            f"W1 {W1.shape}, b1 {b1.shape}, W2 {W2.shape}, b2 {b2.shape} do not fit together; expected W1 (hidden, n), "
            "b1 (hidden,), W2 (n, hidden), b2 (n,)"
        )
    return np.concatenate([np.ravel(W1), np.ravel(b1), np.ravel(W2), np.ravel(b2)]).astype(float)


def unpack_mlp_params(theta, n, hidden):
    """Inverse of :func:`pack_mlp_params`: ``(W1 (hidden, n), b1 (hidden,), W2 (n, hidden), b2 (n,))``."""
    theta = np.asarray(theta, dtype=float)
    sizes = [hidden * n, hidden, n * hidden, n]
    if theta.shape != (sum(sizes),):
        raise InvalidArgumentError(f"theta has shape {theta.shape}; expected ({sum(sizes)},) for n={n}, hidden={hidden}")
    parts = np.split(theta, np.cumsum(sizes)[:-1])
    return parts[0].reshape(hidden, n), parts[1], parts[2].reshape(n, hidden), parts[3]


def resnet_forward(x, layers, *, xp=np):
    """The states of a residual network, ``x_{k+1} = x_k + f_k(x_k)`` (notes §3.6).

    Parameters
    ----------
    x : array, shape (..., n)
        The input x_0.
    layers : sequence of callables
        ``f_k(x) -> array`` of the shape of ``x``, one per layer (repeat one
        callable for shared weights).
    xp : module
        ``numpy`` or ``autograd.numpy`` (to differentiate through the network).

    Returns
    -------
    array, shape (N + 1, ...) + x.shape[-1:]
        ``x_0, ..., x_N``.
    """
    xs = [x]
    for f in layers:
        x = x + f(x)
        xs.append(x)
    return xp.stack(xs)


@dataclass
class ResNetEulerCheck:
    """A residual network against Euler's method with h = 1 on the same layers.

    Attributes
    ----------
    resnet, euler : ndarray, shape (N + 1, n)
        The states x_0..x_N of each.
    identical : bool
        Bitwise equality of every state.
    max_abs_diff : float
    """

    resnet: np.ndarray
    euler: np.ndarray
    identical: bool
    max_abs_diff: float

    def __repr__(self):
        same = "identical" if self.identical else f"max |difference| {fmt(self.max_abs_diff, '.2g')}"
        return f"<ResNetEulerCheck {len(self.resnet) - 1} layers: {same}>"

    def __str__(self):
        n = len(self.resnet) - 1
        return (
            f"ResNet of {n} layers vs Euler with h = 1 on [0, {n}]: "
            + ("identical to the last bit" if self.identical else f"differ by up to {self.max_abs_diff:.3e}")
        )


def resnet_equals_euler(layers, x):
    """Compare a ResNet ``x_{k+1} = x_k + f_k(x_k)`` with Euler's method, h = 1, on dz/dt = f_{floor(t)}(z).

    Euler's step is the one shared by every fixed-step solver
    (:func:`odeverify.tableaux.rk_step` with the ``euler`` tableau):
    ``z + (h * 1) * f(z, t)``, which for h = 1 is the residual update
    ``x + f(x)`` with the same floating-point operations, so the two agree
    exactly (==), not merely to rounding.

    Parameters
    ----------
    layers : sequence of callables
        ``f_k(x)``, one per layer; per-layer weights give a piecewise-constant
        field in t, shared weights an autonomous one.
    x : array_like, shape (n,) or (B, n)

    Returns
    -------
    ResNetEulerCheck

    Examples
    --------
    >>> import numpy as np
    >>> from odeverify.theory import resnet_equals_euler
    >>> W = np.array([[0.3, -1.2], [0.8, 0.1]])
    >>> resnet_equals_euler([lambda x: np.tanh(x @ W.T)] * 5, [0.4, -0.7]).identical
    True
    """
    layers = list(layers)
    if not layers or not all(callable(f) for f in layers):
        raise InvalidTypeError("layers must be a non-empty sequence of callables f_k(x)")
    x = _as_float_array(x, "x")
    if x.size == 0 or x.ndim not in (1, 2):
        raise InvalidArgumentError(f"x has shape {x.shape}; pass one state (n,) or a batch (B, n) with n >= 1")
    if not np.all(np.isfinite(x)):
        raise InvalidArgumentError(f"x holds NaN or inf ({np.array2string(x, threshold=6)}); pass finite numbers")
    N = len(layers)
    resnet = resnet_forward(x, layers)
    # ts = 0, 1, ..., N with one step per interval: h = 1.0 and t_k = k exactly
    euler = odeint_fixed(lambda z, t: layers[int(t)](z), x, np.arange(N + 1, dtype=float), method="euler", steps=1)
    return ResNetEulerCheck(
        resnet=resnet,
        euler=euler,
        identical=bool(np.array_equal(resnet, euler)),
        max_abs_diff=float(np.max(np.abs(resnet - euler))),
    )


@dataclass
class ResNetConvergence:
    """A ResNet with h = T/N converging to its Neural ODE as N grows.

    Attributes
    ----------
    layers : ndarray of int, shape (m,)
    h : ndarray, shape (m,)
    output_errors : ndarray, shape (m,)
        Max-norm distance of the network's output to z(T) of the ODE.
    gradient_errors : ndarray, shape (m,)
        Max-norm distance of the backpropagated gradient (dL/dz0, dL/dtheta)
        to the adjoint gradient, relative to the largest adjoint entry.
    output_order, gradient_order : float
        Fitted slopes of log error against log h.
    resnet_gradients : list of ndarray
        The backpropagated gradients ``[dL/dz0, dL/dtheta]`` concatenated, per N.
    adjoint_gradient : ndarray
        ``[dL/dz0, dL/dtheta]`` from :func:`odeverify.adjoint_gradients`.
    z_T : ndarray, shape (n,)
        The ODE's z(T) from the adjoint's forward solve.
    """

    layers: np.ndarray
    h: np.ndarray
    output_errors: np.ndarray
    gradient_errors: np.ndarray
    output_order: float
    gradient_order: float
    resnet_gradients: list
    adjoint_gradient: np.ndarray
    z_T: np.ndarray

    def __repr__(self):
        layers = f"{self.layers[0]}…{self.layers[-1]}" if len(self.layers) else "none"
        return (f"<ResNetConvergence N = {layers}: output order {fmt(self.output_order, '.2f')}, "
                f"gradient order {fmt(self.gradient_order, '.2f')}>")

    def __str__(self):
        lines = [
            f"ResNet (h = T/N) vs Neural ODE: output order {self.output_order:.3f}, "
            f"gradient order {self.gradient_order:.3f} (Euler: 1)",
        ]
        cols = [("N", 6, "d"), ("h", 11, ".4e"), ("|x_N - z(T)|", 14, ".4e"), ("grad. rel. err", 15, ".4e")]
        lines += table_lines(cols, zip(self.layers, self.h, self.output_errors, self.gradient_errors))
        return "\n".join(lines)


def resnet_convergence(system, z0, theta, t_span, loss, *, layers=(8, 16, 32, 64, 128), rtol=1e-12):
    r"""Output and gradient of a ResNet with h = T/N against the Neural ODE and its adjoint gradient.

    The network has N residual layers :math:`x_{k+1} = x_k + h f(x_k, t_k;
    \theta)`, :math:`h = (t_1 - t_0)/N`, :math:`t_k = t_0 + k h`
    (:func:`resnet_forward`), and its gradient is backpropagation through
    those layers (autograd). The references are the ODE solution z(t_1) and
    the continuous adjoint gradient (:func:`odeverify.adjoint_gradients`,
    DOP853 at ``rtol``). Euler's method has order 1 and so does its
    derivative (discretise-then-differentiate), so both errors fall as h.

    Parameters
    ----------
    system : ODESystem or vector field
    z0 : array_like, shape (n,)
    theta : array_like, shape (p,)
    t_span : (float, float)
    loss : callable
        ``loss(zs) -> float`` on ``zs`` of shape (2, n) = [z(t_0), z(t_1)],
        written with ``autograd.numpy`` (as for :func:`odeverify.adjoint_gradients`).
    layers : sequence of int
        Numbers of layers N (at least 3).
    rtol : float
        Tolerance of the adjoint reference (also its atol).

    Returns
    -------
    ResNetConvergence
        ``.output_order``, ``.gradient_order`` and the tables.

    References
    ----------
    E. Haber, L. Ruthotto, "Stable architectures for deep neural networks",
    Inverse Problems 34 (2017); R. T. Q. Chen et al., "Neural Ordinary
    Differential Equations", NeurIPS 2018, §1.
    """
    fld = as_field(system, z0, theta)
    z0 = check_state(z0, fld.n_states)
    theta = check_theta(theta, fld.n_params)
    t0, t1 = check_t_span(t_span)
    Ns = check_steps(layers, "layers")
    ref = adjoint_gradients(fld, z0, [t0, t1], theta, loss, rtol=rtol, atol=rtol)
    z_T = ref.zs[-1]
    g_ref = np.concatenate([ref.z0, ref.theta])
    out_err, grad_err, grads = [], [], []
    for N in Ns:
        h = (t1 - t0) / int(N)

        def network(z0_, theta_, N=int(N), h=h):
            steps = [lambda x, tk=t0 + k * h: h * fld.f_autograd(x, tk, theta_) for k in range(N)]
            xs = resnet_forward(z0_, steps, xp=anp)
            return anp.stack([xs[0], xs[-1]])

        def scalar(args):
            return loss(network(*args))

        x_N = network(z0, theta)[-1]
        g = np.concatenate(autograd.grad(scalar)((z0, theta)))
        grads.append(g)
        out_err.append(float(np.max(np.abs(x_N - z_T))))
        grad_err.append(float(np.max(np.abs(g - g_ref)) / max(np.max(np.abs(g_ref)), 1e-300)))
    hs = (t1 - t0) / Ns
    out_err, grad_err = np.array(out_err), np.array(grad_err)
    # errors at the floor set by the adjoint reference's tolerance and by rounding carry no order
    # (e.g. Euler is exact for a constant f): refuse, as convergence_order does, not report order 0
    scale = max(1.0, float(np.max(np.abs(z_T))))
    floor_out = FLOOR_FACTOR * np.maximum(rtol * scale, Ns * np.finfo(float).eps * scale)
    floor_grad = FLOOR_FACTOR * np.maximum(rtol, Ns * np.finfo(float).eps)
    for what, err, floor in (("output", out_err, floor_out), ("gradient", grad_err, floor_grad)):
        if int(np.sum(err > floor)) < 3:
            raise InvalidArgumentError(
                f"the ResNet's {what} errors {np.array2string(err, precision=2)} do not lie above the floor "
                f"{float(np.max(floor)):.1e} set by the reference's tolerance (rtol={rtol:g}) and rounding at three "
                f"or more layer counts: Euler is (nearly) exact for this problem (f constant along the solution?), "
                "so there is no order to measure; use a problem with curvature, or fewer layers"
            )
    return ResNetConvergence(
        layers=Ns.astype(int),
        h=np.abs(hs),
        output_errors=out_err,
        gradient_errors=grad_err,
        output_order=fit_order(np.abs(hs), out_err),
        gradient_order=fit_order(np.abs(hs), grad_err),
        resnet_gradients=grads,
        adjoint_gradient=g_ref,
        z_T=z_T,
    )
