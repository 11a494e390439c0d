r"""Backpropagation, gradient descent and the vanishing gradient (notes §3.2–3.5).

A multilayer perceptron here is a list of layers :math:`l = 1, \dots, L`:
:math:`z_l = W_l u_l + b_l` on the layer's input :math:`u_l`
(:math:`u_1 = x`, :math:`u_{l+1} = h_l`), :math:`h_l = \sigma(z_l)` for the
hidden layers and :math:`\hat y = h_L = z_L` for the output layer, with
:math:`\mathcal L = \tfrac12 \|\hat y - y\|_2^2` summed over a batch. A
*residual* network adds the skip connection :math:`h_l = u_l + s\,\sigma(z_l)`
(notes §3.6, :math:`s = 1`; with :math:`s = T/N` it is Euler's step, §4.1)
to every hidden layer whose input and output widths agree.

Backpropagation (§3.2) is the chain rule taken from the output backwards,
one layer at a time, with the formulas of §3.3 for each layer:
:math:`\partial\mathcal L/\partial z_l = \partial\mathcal L/\partial h_l
\circ \sigma'(z_l)`, :math:`\partial\mathcal L/\partial W_l =
\partial\mathcal L/\partial z_l\, u_l^T`, :math:`\partial\mathcal
L/\partial b_l = \partial\mathcal L/\partial z_l` and
:math:`\partial\mathcal L/\partial u_l = W_l^T \partial\mathcal L/\partial
z_l` (plus :math:`\partial\mathcal L/\partial h_l` through a skip
connection).
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import autograd
import autograd.numpy as anp
import numpy as np

from .._validate import _as_float_array, check_rng
from .._display import fmt
from ..errors import InvalidArgumentError, InvalidTypeError
from ._table import table_lines

__all__ = [
    "Activation",
    "ACTIVATIONS",
    "MLP",
    "Gradients",
    "backprop",
    "notes_backprop",
    "BackpropCheck",
    "check_backprop",
    "DescentResult",
    "gradient_descent",
    "DepthReport",
    "gradient_norms_by_depth",
]


@dataclass(frozen=True)
class Activation:
    """An activation function with its derivative.

    Attributes
    ----------
    name : str
    f : callable
        ``f(x, xp) -> sigma(x)``, elementwise, written with the array module
        ``xp`` (``numpy`` or ``autograd.numpy``).
    df : callable
        ``df(x) -> sigma'(x)`` with NumPy, elementwise.
    """

    name: str
    f: object
    df: object


def _sigmoid(x, xp=np):
    return 0.5 * (1.0 + xp.tanh(0.5 * x))  # = 1 / (1 + exp(-x)), without overflow


#: the built-in activation functions by name
ACTIVATIONS = {
    "sigmoid": Activation("sigmoid", _sigmoid, lambda x: _sigmoid(x) * (1.0 - _sigmoid(x))),
    "tanh": Activation("tanh", lambda x, xp=np: xp.tanh(x), lambda x: 1.0 - np.tanh(x) ** 2),
    "relu": Activation("relu", lambda x, xp=np: xp.maximum(x, 0.0), lambda x: (x > 0).astype(float)),
    "softplus": Activation("softplus", lambda x, xp=np: xp.logaddexp(0.0, x), lambda x: _sigmoid(x)),
    "identity": Activation("identity", lambda x, xp=np: x, lambda x: np.ones_like(x)),
}


def _activation(act):
    if isinstance(act, Activation):
        return act
    if isinstance(act, str) and act in ACTIVATIONS:
        return ACTIVATIONS[act]
    raise InvalidArgumentError(
        f"activation={act!r} is not known; use one of {', '.join(ACTIVATIONS)} or an Activation(name, f, df)"
    )


@dataclass(frozen=True, eq=False)
class MLP:
    """A multilayer perceptron: hidden layers with an activation, a linear output layer.

    The plain network of the notes' §3.3 (backpropagation, depth), a map x -> y. The Neural ODE's vector
    field f(z, t; θ) given by an MLP is :class:`odeverify.MLPField`, with flat parameters and batched
    adjoint products.

    Attributes
    ----------
    weights : tuple of ndarray
        ``W_l`` of shape ``(n_l, n_{l-1})``, layer by layer.
    biases : tuple of ndarray
        ``b_l`` of shape ``(n_l,)``.
    activation : str or Activation
        Activation of the hidden layers (the output layer is linear).
    residual : bool
        Add the layer's input to every hidden layer with square ``W_l``.
    step : float
        Residual branch scale s: ``h_l = u_l + s * sigma(z_l)`` (1 in a
        ResNet; T/N makes the network Euler's method on [0, T], notes §4.1).

    Examples
    --------
    >>> import numpy as np
    >>> from odeverify.theory import MLP
    >>> net = MLP.random([2, 2, 2], activation="sigmoid", seed=0)   # the network of notes §3.3
    >>> net.predict(np.zeros(2)).shape
    (2,)
    """

    weights: tuple
    biases: tuple
    activation: object = "sigmoid"
    residual: bool = False
    step: float = 1.0

    def __repr__(self):
        sizes = "→".join(str(n) for n in [self.weights[0].shape[1], *(W.shape[0] for W in self.weights)])
        kind = f", residual (step {self.step:g})" if self.residual else ""
        return f"<MLP {sizes}, {getattr(self.activation, 'name', self.activation)}{kind}>"

    def __post_init__(self):
        if len(self.weights) != len(self.biases) or not self.weights:
            raise InvalidArgumentError(
                f"got {len(self.weights)} weight matrices and {len(self.biases)} bias vectors; give one of each "
                "per layer (at least one layer)"
            )
        ws, bs = [], []
        for l, (W, b) in enumerate(zip(self.weights, self.biases)):
            W = _as_float_array(W, f"weights[{l}]")
            b = _as_float_array(b, f"biases[{l}]")
            if W.ndim != 2 or b.shape != (W.shape[0],):
                raise InvalidArgumentError(
                    f"layer {l}: weights[{l}] has shape {W.shape} and biases[{l}] shape {b.shape}; "
                    "W must be (n_out, n_in) and b (n_out,)"
                )
            if l > 0 and W.shape[1] != ws[-1].shape[0]:
                raise InvalidArgumentError(
                    f"layer {l}: weights[{l}] takes {W.shape[1]} inputs but layer {l - 1} gives {ws[-1].shape[0]}"
                )
            ws.append(W)
            bs.append(b)
        object.__setattr__(self, "weights", tuple(ws))
        object.__setattr__(self, "biases", tuple(bs))
        object.__setattr__(self, "activation", _activation(self.activation))
        if isinstance(self.step, bool) or not isinstance(self.step, (int, float)) or not np.isfinite(self.step):
            raise InvalidArgumentError(f"step={self.step!r} must be a finite number")

    @classmethod
    def random(cls, sizes, *, activation="tanh", residual=False, step=1.0, gain=1.0, seed=0):
        """Weights drawn from N(0, gain^2 / n_in), biases N(0, 0.1^2), layer widths ``sizes``.

        Parameters
        ----------
        sizes : sequence of int
            ``[n_in, n_1, ..., n_out]``, at least two entries.
        activation : str or Activation
        residual : bool
        step : float
        gain : float
            Scale of the weights (1 preserves the variance of a linear layer).
        seed : int
        """
        if isinstance(sizes, (str, bytes)) or not hasattr(sizes, "__len__") or not all(
            isinstance(s, numbers.Integral) and not isinstance(s, bool) for s in sizes
        ):
            raise InvalidTypeError(f"sizes must be a sequence of integer layer widths such as [2, 2, 2], got {sizes!r:.60}")
        sizes = [int(s) for s in sizes]
        if len(sizes) < 2 or min(sizes) < 1:
            raise InvalidArgumentError(f"sizes={sizes} must list at least 2 positive layer widths")
        rng = check_rng(seed)
        ws = [rng.normal(0.0, gain / np.sqrt(a), size=(b, a)) for a, b in zip(sizes[:-1], sizes[1:])]
        bs = [rng.normal(0.0, 0.1, size=b) for b in sizes[1:]]
        return cls(tuple(ws), tuple(bs), activation, residual, step)

    @property
    def n_layers(self):
        return len(self.weights)

    def _skip(self, l):
        W = self.weights[l]
        return self.residual and l < self.n_layers - 1 and W.shape[0] == W.shape[1]

    def forward(self, x, params=None, xp=np):
        """Inputs ``u_l``, pre-activations ``z_l`` and the output, for ``x`` of shape (..., n_in).

        ``params`` (a list ``[W_1, b_1, W_2, b_2, ...]``) overrides the
        network's own, so that autograd can differentiate with ``xp=autograd.numpy``.
        """
        if params is None:
            params = self.params()
        us, zs = [], []
        h = x
        for l in range(self.n_layers):
            W, b = params[2 * l], params[2 * l + 1]
            us.append(h)
            z = h @ W.T + b  # z = W u + b for each sample
            zs.append(z)
            if l == self.n_layers - 1:
                h = z  # linear output layer: yhat = W_L h + b_L
            elif self._skip(l):
                h = h + self.step * self.activation.f(z, xp)
            else:
                h = self.activation.f(z, xp)
        return us, zs, h

    def predict(self, x):
        """The output ŷ for ``x`` of shape (n_in,) or (B, n_in)."""
        return self.forward(_as_float_array(x, "x"))[2]

    def loss(self, x, y, params=None, xp=np):
        """L = sum over the batch of 1/2 ||ŷ - y||^2."""
        return 0.5 * xp.sum((self.forward(x, params, xp)[2] - y) ** 2)

    def params(self):
        """``[W_1, b_1, W_2, b_2, ...]``."""
        return [p for wb in zip(self.weights, self.biases) for p in wb]

    def with_params(self, params):
        """A copy with the parameters ``[W_1, b_1, ...]``."""
        return MLP(tuple(params[0::2]), tuple(params[1::2]), self.activation, self.residual, self.step)

    def param_names(self):
        names = []
        for l, (W, b) in enumerate(zip(self.weights, self.biases), start=1):
            names += [f"W{l}[{i},{j}]" for i in range(W.shape[0]) for j in range(W.shape[1])]
            names += [f"b{l}[{i}]" for i in range(b.shape[0])]
        return names


def _check_xy(net, x, y):
    x = _as_float_array(x, "x")
    y = _as_float_array(y, "y")
    n_in, n_out = net.weights[0].shape[1], net.weights[-1].shape[0]
    if x.shape[-1:] != (n_in,) or x.ndim > 2:
        raise InvalidArgumentError(f"x has shape {x.shape}; pass ({n_in},) or a batch ({'B'}, {n_in})")
    if y.shape != x.shape[:-1] + (n_out,):
        raise InvalidArgumentError(f"y has shape {y.shape}; it must be {x.shape[:-1] + (n_out,)} to match x")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise InvalidArgumentError("x and y must be finite")
    return x, y


@dataclass
class Gradients:
    """Loss and gradients of an MLP by backpropagation.

    Attributes
    ----------
    loss : float
    weights : list of ndarray
        dL/dW_l, shapes of ``W_l``.
    biases : list of ndarray
        dL/db_l, shapes of ``b_l``.
    x : ndarray
        dL/dx, shape of ``x`` (the gradient at the input layer).
    """

    loss: float
    weights: list
    biases: list
    x: np.ndarray

    def __repr__(self):
        return f"<Gradients loss {fmt(self.loss, '.6g')}: {len(self.weights)} layers, dL/dx {np.shape(self.x)}>"

    def flat(self):
        """``[dW_1, db_1, dW_2, ...]`` flattened into one vector, in :meth:`MLP.param_names` order."""
        return np.concatenate([g.ravel() for wb in zip(self.weights, self.biases) for g in wb])


def backprop(net, x, y):
    r"""Loss and gradients of an MLP by backpropagation, the notes' §3.3 formulas layer by layer.

    Parameters
    ----------
    net : MLP
    x : array_like, shape (n_in,) or (B, n_in)
    y : array_like, shape (n_out,) or (B, n_out)

    Returns
    -------
    Gradients
        ``.loss``, ``.weights`` (dL/dW_l), ``.biases`` (dL/db_l), ``.x`` (dL/dx).

    Notes
    -----
    Starting from :math:`\partial\mathcal L/\partial\hat y = \hat y - y`, for
    :math:`l = L, \dots, 1` with :math:`g = \partial\mathcal L/\partial h_l`:
    :math:`\delta = g \circ \sigma'(z_l)` (:math:`\delta = g` for the
    linear output layer), :math:`\partial\mathcal L/\partial W_l = \delta
    u_l^T`, :math:`\partial\mathcal L/\partial b_l = \delta`,
    :math:`\partial\mathcal L/\partial u_l = W_l^T\delta` (+ g through a
    skip connection). On a batch the outer products and biases are summed
    over samples (one matrix product each).

    References
    ----------
    D. E. Rumelhart, G. E. Hinton, R. J. Williams, "Learning representations
    by back-propagating errors", Nature 323 (1986) 533–536.

    Examples
    --------
    >>> import numpy as np
    >>> from odeverify.theory import MLP, backprop
    >>> net = MLP([np.eye(2), np.eye(2)], [np.zeros(2), np.zeros(2)], "identity")
    >>> g = backprop(net, [1.0, 2.0], [0.0, 0.0])        # ŷ = x, L = 1/2 |x|^2
    >>> float(g.loss), g.x.tolist()
    (2.5, [1.0, 2.0])
    """
    if not isinstance(net, MLP):
        raise InvalidTypeError(f"net must be an odeverify.theory.MLP, got {type(net).__name__}")
    x, y = _check_xy(net, x, y)
    us, zs, yhat = net.forward(x)
    g = yhat - y  # dL/dŷ = dL/dL (ŷ - y), dL/dL = 1
    dWs, dbs = [None] * net.n_layers, [None] * net.n_layers
    for l in range(net.n_layers - 1, -1, -1):
        last = l == net.n_layers - 1
        skip = net._skip(l)
        if last:
            delta = g  # linear output layer
        else:
            delta = g * net.activation.df(zs[l])  # dL/dz = dL/dh ∘ σ'(z)
            if skip:
                delta = net.step * delta  # h = u + s σ(z)
        u = us[l]
        dWs[l] = delta.T @ u if delta.ndim == 2 else np.outer(delta, u)  # dL/dW = dL/dz u^T
        dbs[l] = delta.sum(axis=0) if delta.ndim == 2 else delta  # dL/db = dL/dz
        du = delta @ net.weights[l]  # dL/du = W^T dL/dz
        g = du + g if skip else du  # the skip connection passes dL/dh on unchanged
    loss = 0.5 * float(np.sum((yhat - y) ** 2))
    return Gradients(loss=loss, weights=dWs, biases=dbs, x=g)


def notes_backprop(x, y, W1, b1, W2, b2, activation="sigmoid"):
    r"""The gradients of the one-hidden-layer network of notes §3.3, formula by formula.

    :math:`z = W^{(1)}x + b^{(1)}`, :math:`h = \sigma(z)`, :math:`\hat y =
    W^{(2)}h + b^{(2)}`, :math:`\mathcal L = \tfrac12\|\hat y - y\|_2^2` for one
    sample.

    Parameters
    ----------
    x : array_like, shape (d,)
    y : array_like, shape (k,)
    W1 : array_like, shape (m, d)
    b1 : array_like, shape (m,)
    W2 : array_like, shape (k, m)
    b2 : array_like, shape (k,)
    activation : str or Activation

    Returns
    -------
    dict
        ``"L"``, ``"dL/dL"``, ``"dL/dyhat"``, ``"dL/dW2"``, ``"dL/db2"``,
        ``"dL/dh"``, ``"dL/dz"``, ``"dL/dW1"``, ``"dL/db1"``, and the forward
        values ``"z"``, ``"h"``, ``"yhat"``.

    Examples
    --------
    >>> import numpy as np
    >>> from odeverify.theory import notes_backprop
    >>> g = notes_backprop([1.0, 0.0], [0.0, 0.0], np.eye(2), np.zeros(2), np.eye(2), np.zeros(2))
    >>> g["dL/dW2"].shape, float(g["dL/dL"])
    ((2, 2), 1.0)
    """
    act = _activation(activation)
    x, y, W1, b1, W2, b2 = (
        _as_float_array(v, nm) for v, nm in zip((x, y, W1, b1, W2, b2), ("x", "y", "W1", "b1", "W2", "b2"))
    )
    net = MLP([W1, W2], [b1, b2], act)  # validates the shapes
    if x.ndim != 1:
        raise InvalidArgumentError(f"x has shape {x.shape}; notes_backprop takes one sample, shape ({W1.shape[1]},)")
    _check_xy(net, x, y)
    z = W1 @ x + b1
    h = act.f(z)
    yhat = W2 @ h + b2
    L = 0.5 * float(np.sum((yhat - y) ** 2))
    dL_dL = 1.0
    dL_dyhat = dL_dL * (yhat - y)
    dL_dW2 = np.outer(dL_dyhat, h)  # dL/dŷ h^T
    dL_db2 = dL_dyhat
    dL_dh = W2.T @ dL_dyhat
    dL_dz = dL_dh * act.df(z)  # dL/dh ∘ σ'(z)
    dL_dW1 = np.outer(dL_dz, x)  # dL/dz x^T
    dL_db1 = dL_dz
    return {
        "L": L,
        "dL/dL": dL_dL,
        "dL/dyhat": dL_dyhat,
        "dL/dW2": dL_dW2,
        "dL/db2": dL_db2,
        "dL/dh": dL_dh,
        "dL/dz": dL_dz,
        "dL/dW1": dL_dW1,
        "dL/db1": dL_db1,
        "z": z,
        "h": h,
        "yhat": yhat,
    }


@dataclass
class BackpropCheck:
    """Backpropagation's gradient against autograd and central finite differences.

    Attributes
    ----------
    names : list of str
        Parameter labels (``W1[0,1]``, ``b2[0]``, ...) then ``x[...]``.
    backprop, autograd, finite_differences : ndarray, shape (P,)
        dL/dtheta and dL/dx from each method.
    err_autograd, err_fd : float
        Max relative error of backprop against each (relative to the
        largest entry of the reference).
    rtol_autograd, rtol_fd : float
        Tolerances applied.
    """

    names: list
    backprop: np.ndarray
    autograd: np.ndarray
    finite_differences: np.ndarray
    err_autograd: float
    err_fd: float
    rtol_autograd: float
    rtol_fd: float

    def __repr__(self):
        return (f"<BackpropCheck {'PASSED' if self.passed else 'FAILED'}: {len(self.names)} entries, error "
                f"{fmt(self.err_autograd, '.2g')} against autograd, {fmt(self.err_fd, '.2g')} against finite differences>")

    @property
    def passed(self) -> bool:
        return self.err_autograd <= self.rtol_autograd and self.err_fd <= self.rtol_fd

    def __str__(self):
        lines = [
            f"backprop vs autograd: max rel. error {self.err_autograd:.2e} (tol {self.rtol_autograd:.0e}); "
            f"vs finite differences: {self.err_fd:.2e} (tol {self.rtol_fd:.0e}) -> "
            + ("PASSED" if self.passed else "FAILED"),
            f"  {'':>10} {'backprop':>14} {'autograd':>14} {'finite diff.':>14}",
        ]
        for nm, a, b, c in zip(self.names, self.backprop, self.autograd, self.finite_differences):
            lines.append(f"  {nm:>10} {a:>14.6e} {b:>14.6e} {c:>14.6e}")
        return "\n".join(lines)


def _rel(got, want):
    return float(np.max(np.abs(got - want)) / max(np.max(np.abs(want)), 1e-300))


def check_backprop(net, x, y, *, eps=1e-6, rtol_autograd=1e-12, rtol_fd=1e-6):
    """Compare :func:`backprop` with autograd and central finite differences on ``net``.

    Parameters
    ----------
    net : MLP
        Any layer sizes and activation.
    x, y : array_like
        As for :func:`backprop`.
    eps : float
        Finite-difference step (relative to ``max(1, |parameter|)``).
    rtol_autograd, rtol_fd : float
        Pass thresholds of the two comparisons.

    Returns
    -------
    BackpropCheck

    Examples
    --------
    >>> from odeverify.theory import MLP, check_backprop
    >>> net = MLP.random([2, 2, 2], activation="sigmoid", seed=1)
    >>> check_backprop(net, [0.5, -1.0], [1.0, 0.0]).passed
    True
    """
    g = backprop(net, x, y)
    x, y = _check_xy(net, x, y)
    params = net.params()

    def loss_all(params, x):
        return net.loss(x, y, params, anp)

    ag_params = autograd.grad(loss_all, 0)(params, x)
    ag_x = autograd.grad(loss_all, 1)(params, x)
    ours = np.concatenate([g.flat(), g.x.ravel()])
    ref_ag = np.concatenate([p.ravel() for p in ag_params] + [ag_x.ravel()])
    # central differences over every parameter and input entry
    flat = [p.copy() for p in params] + [x.copy()]
    fd = []
    for k, arr in enumerate(flat):
        for idx in np.ndindex(arr.shape):
            step = eps * max(1.0, abs(arr[idx]))
            vals = []
            for sgn in (1.0, -1.0):
                pert = [a.copy() for a in flat]
                pert[k][idx] += sgn * step
                vals.append(net.loss(pert[-1], y, pert[:-1]))
            fd.append((vals[0] - vals[1]) / (2 * step))
    fd = np.array(fd)
    names = net.param_names() + [f"x[{','.join(map(str, i))}]" for i in np.ndindex(x.shape)]
    return BackpropCheck(
        names=names,
        backprop=ours,
        autograd=ref_ag,
        finite_differences=fd,
        err_autograd=_rel(ours, ref_ag),
        err_fd=_rel(ours, fd),
        rtol_autograd=rtol_autograd,
        rtol_fd=rtol_fd,
    )


@dataclass
class DescentResult:
    """Gradient descent on an MLP (notes §3.4).

    Attributes
    ----------
    net : MLP
        The network after the last step.
    losses : ndarray, shape (steps + 1,)
        The loss before each step and after the last.
    lr : float
    """

    net: MLP
    losses: np.ndarray
    lr: float

    def __repr__(self):
        return (f"<DescentResult loss {fmt(self.losses[0], '.4g')} → {fmt(self.losses[-1], '.4g')} in "
                f"{len(self.losses) - 1} steps, lr {self.lr:g}>")

    @property
    def monotone(self) -> bool:
        """Every step decreased the loss or kept it (f(x_n) >= f(x_{n+1}))."""
        return bool(np.all(np.diff(self.losses) <= 0))

    @property
    def first_increase(self):
        """Index of the first step that increased the loss, or None."""
        up = np.flatnonzero(np.diff(self.losses) > 0)
        return int(up[0]) if up.size else None

    def __str__(self):
        return (
            f"gradient descent, {len(self.losses) - 1} steps of lr={self.lr:g}: loss {self.losses[0]:.6g} -> "
            f"{self.losses[-1]:.6g}; "
            + ("monotone decrease" if self.monotone else f"loss increased at step {self.first_increase}")
        )


def gradient_descent(net, x, y, *, lr, steps=100):
    r"""Plain gradient descent :math:`\theta_{n+1} = \theta_n - \gamma \nabla\mathcal L(\theta_n)` (notes §3.4).

    Parameters
    ----------
    net : MLP
        The starting network.
    x, y : array_like
        Data, as for :func:`backprop` (the loss sums over the batch).
    lr : float
        Step size :math:`\gamma > 0`.
    steps : int

    Returns
    -------
    DescentResult
        ``.losses``, ``.monotone`` and the final ``.net``.

    Examples
    --------
    >>> import numpy as np
    >>> from odeverify.theory import MLP, gradient_descent
    >>> net = MLP.random([2, 2, 2], activation="sigmoid", seed=0)
    >>> res = gradient_descent(net, np.eye(2), np.eye(2), lr=0.05, steps=50)
    >>> res.monotone, bool(res.losses[-1] < res.losses[0])
    (True, True)
    """
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not (lr > 0 and np.isfinite(lr)):
        raise InvalidArgumentError(f"lr={lr!r} must be a positive finite step size such as 0.01")
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise InvalidArgumentError(f"steps={steps!r} must be a positive integer")
    losses = []
    for _ in range(steps):
        g = backprop(net, x, y)
        losses.append(g.loss)
        grads = [d for wb in zip(g.weights, g.biases) for d in wb]
        net = net.with_params([p - lr * d for p, d in zip(net.params(), grads)])
    losses.append(backprop(net, x, y).loss)
    return DescentResult(net=net, losses=np.array(losses), lr=float(lr))


@dataclass
class DepthReport:
    """Gradient norms at the input layer against depth, plain versus residual (notes §3.5–3.6).

    Attributes
    ----------
    depths : ndarray of int, shape (D,)
        Numbers of hidden layers.
    plain, residual, euler : ndarray, shape (D,)
        Frobenius norm of dL/dW_1 (the first layer's weights) for the plain
        network, the residual one (branch scale 1) and the residual one with
        branch scale 1/D (Euler's method with h = 1/D on [0, 1], notes §4.1),
        all with the same weights.
    plain_input, residual_input, euler_input : ndarray, shape (D,)
        Norm of dL/dx.
    activation : str
    width : int
    gain : float
    """

    depths: np.ndarray
    plain: np.ndarray
    residual: np.ndarray
    euler: np.ndarray
    plain_input: np.ndarray
    residual_input: np.ndarray
    euler_input: np.ndarray
    activation: str
    width: int
    gain: float

    def __repr__(self):
        depths = f"{self.depths[0]}…{self.depths[-1]}" if len(self.depths) else "none"
        return f"<DepthReport {self.activation}, width {self.width}: depths {depths}>"

    def __str__(self):
        lines = [
            f"‖dL/dW1‖ against depth ({self.activation}, width {self.width}, gain {self.gain:g}):",
        ]
        cols = [("depth", 6, "d"), ("plain", 12, ".4e"), ("residual", 12, ".4e"), ("residual h=1/D", 15, ".4e")]
        lines += table_lines(cols, zip(self.depths, self.plain, self.residual, self.euler))
        return "\n".join(lines)


def gradient_norms_by_depth(
    depths, *, width=16, n_in=2, n_out=2, batch=32, activation="tanh", gain=1.0, seed=0
):
    """Measure the vanishing gradient: ‖dL/dW_1‖ against depth, with and without skip connections.

    For each depth D, draws one network with D hidden layers of ``width``
    (weights N(0, gain^2 / n_in)) and one batch of data, and backpropagates
    through it twice: as a plain network and as a residual one (same
    weights, skip connections on the square hidden layers), and a third
    time with the residual branch scaled by 1/D. With tanh, whose
    derivative lies in (0, 1], the plain network's gradient at the first
    layer is a product of D factors that are typically of norm below 1 and
    decays exponentially; the identity path of the residual network carries
    it across (notes §3.5–3.6). With branch scale 1 the residual factors
    I + diag(σ') W can exceed 1 in norm and the gradient may instead grow
    (the exploding gradient); with scale 1/D the network is Euler's method
    for an ODE on [0, 1] and the gradient stays bounded as D grows.

    Parameters
    ----------
    depths : sequence of int
    width, n_in, n_out, batch : int
    activation : str or Activation
    gain : float
    seed : int
        The same seed at every depth: all networks share the data and the
        first layer's weights.

    Returns
    -------
    DepthReport
    """
    depths = np.asarray(depths)
    if depths.ndim != 1 or depths.size == 0 or depths.dtype.kind not in "iu" or np.any(depths < 1):
        raise InvalidArgumentError(f"depths={depths.tolist()!r} must be a sequence of positive integers")
    act = _activation(activation)
    out = {k: [] for k in ("plain", "residual", "euler", "plain_input", "residual_input", "euler_input")}
    for D in depths:
        rng = check_rng(seed)
        x = rng.normal(size=(batch, n_in))
        y = rng.normal(size=(batch, n_out))
        net = MLP.random([n_in] + [width] * int(D) + [n_out], activation=act, gain=gain, seed=seed + 1)
        for kind, res, step in (("plain", False, 1.0), ("residual", True, 1.0), ("euler", True, 1.0 / int(D))):
            g = backprop(MLP(net.weights, net.biases, act, res, step), x, y)
            out[kind].append(np.linalg.norm(g.weights[0]))
            out[kind + "_input"].append(np.linalg.norm(g.x))
    return DepthReport(
        depths=depths.astype(int),
        **{k: np.array(v) for k, v in out.items()},
        activation=act.name,
        width=int(width),
        gain=float(gain),
    )
