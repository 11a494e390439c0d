"""MLPField: a multilayer perceptron vector field with hand-derived batched products.

The forward pass, the three vector-Jacobian products and the Jacobians are
matrix formulas over the whole batch (notes §3.3 for one layer, here for any
depth); no autograd on the hot path and no loop over samples or units.

Notation (one batch of B samples, layers l = 1..L, X_0 the input)::

    U_l = X_{l-1} W_l^T + b_l          (B, h_l)       pre-activation
    X_l = sigma(U_l), l < L            (B, h_l)       hidden activation
    f   = U_L                          (B, n)         output layer is linear

With ``time_input=True`` the first layer sees ``[z, t]``: its weight matrix
has one more column, ``W_1 = [W_1z | w_1t]``, and
``U_1 = z W_1z^T + t w_1t^T + b_1``.

Reverse sweep for ``a^T f`` (the adjoint's products)::

    G_L = a                                            (B, n)
    a^T df/dW_l = G_l^T X_{l-1}  (summed over the batch by the matmul)
    a^T df/db_l = sum_b G_l
    G_{l-1} = (G_l W_l) * sigma'(U_{l-1})
    a^T df/dz = G_1 W_1z,   a^T df/dt = sum_b G_1 w_1t
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import numpy as np

from .._field import AbstractVectorField
from .._validate import _as_float_array, check_positive_float, check_rng
from ..errors import InvalidArgumentError, InvalidTypeError

__all__ = ["MLPField", "ACTIVATIONS"]

#: activations of the hidden layers (smooth, so the ODE has unique solutions, notes §4.2)
ACTIVATIONS = ("tanh", "sigmoid", "softplus")


# Each activation gives sigma(U) in place, and sigma', sigma'' from X = sigma(U)
# alone, so the backward sweep needs only the stored activations.
def _tanh(U):
    return np.tanh(U, out=U)


def _tanh_d1(X):
    d = X * X
    return np.subtract(1.0, d, out=d)


def _tanh_d2(X, d1):
    return -2.0 * X * d1


def _sigmoid(U):
    from scipy.special import expit  # imported on first use, not with the package

    return expit(U, out=U)


def _sigmoid_d1(X):
    d = np.subtract(1.0, X)
    d *= X
    return d


def _sigmoid_d2(X, d1):
    return d1 * (1.0 - 2.0 * X)


def _softplus(U):
    return np.logaddexp(0.0, U, out=U)


def _softplus_d1(X):
    # softplus'(U) = sigmoid(U) = 1 - exp(-softplus(U))
    return -np.expm1(-X)


def _softplus_d2(X, d1):
    return d1 * (1.0 - d1)


_NUMPY_ACTIVATIONS = {
    "tanh": (_tanh, _tanh_d1, _tanh_d2),
    "sigmoid": (_sigmoid, _sigmoid_d1, _sigmoid_d2),
    "softplus": (_softplus, _softplus_d1, _softplus_d2),
}


def _autograd_activation(name):
    import autograd.numpy as anp

    from .._codegen import autograd_ops  # expit as an autograd primitive, without autograd.scipy (scipy.stats)

    if name == "tanh":
        return anp.tanh
    if name == "sigmoid":
        return autograd_ops().sigmoid
    return lambda u: anp.logaddexp(0.0, u)


class MLPField(AbstractVectorField):
    r"""A Neural ODE's vector field f(z, t; theta): a multilayer perceptron.

    Parameters
    ----------
    sizes : sequence of int
        Layer widths from input to output, e.g. ``(2, 64, 2)``: ``sizes[0]``
        is the number of states n and ``sizes[-1]`` must equal it (f maps a
        state to its rate of change). ``(n, n)`` is the linear field
        ``f = W z + b``.
    activation : {'tanh', 'sigmoid', 'softplus'}
        Applied after every hidden layer; the output layer is linear.
    time_input : bool
        Feed the time t to the first layer as an extra input (a
        non-autonomous field).

    Attributes
    ----------
    n_states, n_params : int
    layer_shapes : tuple of (int, int)
        ``(out, in)`` of every weight matrix (``in`` counts t when
        ``time_input``).

    Notes
    -----
    **Packing of theta.** Layer by layer, first the weight matrix ``W_l`` of
    shape ``(sizes[l], sizes[l-1] (+1 for t in layer 1))`` in row-major (C)
    order, then the bias ``b_l`` of shape ``(sizes[l],)``::

        theta = [W_1.ravel(), b_1, W_2.ravel(), b_2, ..., W_L.ravel(), b_L]

    With ``time_input`` the time column is the last column of ``W_1``.
    :meth:`unpack` returns the ``(W_l, b_l)`` as views of theta (no copies) and
    :meth:`pack` inverts it; parameter names are ``W1_i_j`` and ``b1_i``.

    **Products.** Let ``G_L = a`` and ``G_{l-1} = (G_l W_l) * sigma'(U_{l-1})``.
    Then ``a^T f_z = G_1 W_1z``, ``a^T f_{W_l} = G_l^T X_{l-1}``,
    ``a^T f_{b_l} = sum_b G_l`` and ``a^T f_t = sum_b G_1 w_1t`` (notes §3.3,
    extended to L layers; summed over the batch as the interface requires).
    Each is one matmul per layer over the whole batch. Cost of one product:
    ``O(B * sum_l h_l h_{l-1})`` flops, the same as the forward pass.

    **Jacobians** (for the implicit solvers): ``f_z``, ``f_theta``, ``f_t`` by
    accumulating ``df/dU_l`` from the output, and the second-order blocks of
    the backward system (:meth:`eval_backward_jac`) by propagating tangents
    with respect to z through both sweeps (forward over reverse).

    References
    ----------
    R. T. Q. Chen, Y. Rubanova, J. Bettencourt, D. Duvenaud, "Neural Ordinary
    Differential Equations", NeurIPS 2018, arXiv:1806.07366.

    Examples
    --------
    >>> import numpy as np, odeverify as ov
    >>> field = ov.MLPField((2, 16, 2))
    >>> field.n_params                     # 16*2 + 16 + 2*16 + 2
    82
    >>> theta = field.init_params(0)
    >>> z = np.array([[1.0, 0.0], [0.5, -0.5]])
    >>> field.eval_f(z, 0.0, theta).shape
    (2, 2)
    >>> W1, b1 = field.unpack(theta)[0]
    >>> W1.shape, bool(np.shares_memory(W1, theta))
    ((16, 2), True)
    """

    has_jacobians = True

    def __init__(self, sizes, *, activation="tanh", time_input=False):
        sizes = _check_sizes(sizes)
        if not isinstance(activation, str) or activation not in ACTIVATIONS:
            raise InvalidArgumentError(
                f"activation={activation!r} is not supported; use one of {', '.join(map(repr, ACTIVATIONS))} "
                "(smooth activations keep the ODE's solution unique)"
            )
        if not isinstance(time_input, (bool, np.bool_)):
            raise InvalidTypeError(f"time_input must be True or False, got {time_input!r}")
        self.sizes = sizes
        self.activation = activation
        self.time_input = bool(time_input)
        self.n_states = sizes[0]
        self.is_autonomous = not self.time_input
        self._act, self._d1, self._d2 = _NUMPY_ACTIVATIONS[activation]
        shapes = []
        offsets = []
        off = 0
        for layer in range(1, len(sizes)):
            out, inp = sizes[layer], sizes[layer - 1] + (1 if layer == 1 and self.time_input else 0)
            shapes.append((out, inp))
            offsets.append((off, off + out * inp, off + out * inp + out))
            off += out * inp + out
        self.layer_shapes = tuple(shapes)
        self._offsets = tuple(offsets)  # (start of W_l, start of b_l, end of b_l)
        self.n_params = off

    # ------------------------------------------------------------------ packing
    @property
    def param_names(self):
        names = []
        for layer, (out, inp) in enumerate(self.layer_shapes, start=1):
            names.extend(f"W{layer}_{i}_{j}" for i in range(out) for j in range(inp))
            names.extend(f"b{layer}_{i}" for i in range(out))
        return tuple(names)

    @property
    def state_names(self):
        return tuple(f"z{i}" for i in range(self.n_states))

    def unpack(self, theta):
        """The layers' ``(W_l, b_l)`` as views of ``theta`` (no copies).

        Parameters
        ----------
        theta : ndarray, shape (p,)

        Returns
        -------
        list of (ndarray (out, in), ndarray (out,))
        """
        theta = self._check_theta(theta)
        return self._unpack(theta)

    def _unpack(self, theta):
        return [
            (theta[w0:b0].reshape(shape), theta[b0:end])
            for shape, (w0, b0, end) in zip(self.layer_shapes, self._offsets)
        ]

    def pack(self, layers):
        """Flatten ``[(W_1, b_1), ..., (W_L, b_L)]`` into theta (the inverse of :meth:`unpack`).

        Returns
        -------
        ndarray, shape (p,)
        """
        if not isinstance(layers, Sequence) or len(layers) != len(self.layer_shapes):
            raise InvalidArgumentError(
                f"layers must be a list of {len(self.layer_shapes)} (W, b) pairs, one per layer, got {layers!r:.80}"
            )
        theta = np.empty(self.n_params)
        for k, ((W, b), shape, (w0, b0, end)) in enumerate(zip(layers, self.layer_shapes, self._offsets), start=1):
            W = _as_float_array(W, f"layers[{k - 1}] W")
            b = _as_float_array(b, f"layers[{k - 1}] b")
            if W.shape != shape or b.shape != (shape[0],):
                raise InvalidArgumentError(
                    f"layer {k} has W of shape {W.shape} and b of shape {b.shape}; expected {shape} and ({shape[0]},)"
                )
            theta[w0:b0] = W.ravel()
            theta[b0:end] = b
        return theta

    def init_params(self, rng=None, *, scale=1.0):
        """Random parameters: every entry of ``W_l`` and ``b_l`` uniform on ``±scale/sqrt(in_l)``.

        This is the default initialisation of ``torch.nn.Linear``.

        Parameters
        ----------
        rng : numpy.random.Generator or int, optional
            Random generator or seed.
        scale : float
            Multiplies the bounds.

        Returns
        -------
        ndarray, shape (p,)
        """
        rng = check_rng(rng, "rng")
        scale = check_positive_float(scale, "scale")
        theta = np.empty(self.n_params)
        for (out, inp), (w0, _, end) in zip(self.layer_shapes, self._offsets):
            bound = float(scale) / np.sqrt(inp)
            theta[w0:end] = rng.uniform(-bound, bound, size=end - w0)
        return theta

    def _check_theta(self, theta):
        arr = np.asarray(theta, dtype=float)
        if arr.shape != (self.n_params,):
            raise InvalidArgumentError(
                f"theta has shape {arr.shape} but this MLPField{self.sizes} has {self.n_params} parameters; "
                f"pass theta of shape ({self.n_params},), e.g. field.init_params(0)"
            )
        return arr

    def describe(self):
        arch = " -> ".join(map(str, self.sizes))
        return (
            f"MLPField {arch} ({self.activation}{', time input' if self.time_input else ''}), "
            f"{self.n_params} parameters"
        )

    def __repr__(self):
        return f"MLPField({self.sizes}, activation={self.activation!r}, time_input={self.time_input})"

    # ------------------------------------------------------------------ forward
    def _forward(self, z, t, layers):
        """Output f and the inputs X_0 .. X_{L-1} of every layer (X_0 = z; t is kept apart)."""
        xs = [z]
        X = z
        last = len(layers) - 1
        for layer, (W, b) in enumerate(layers):
            if layer == 0 and self.time_input:
                n = self.n_states
                U = X @ W[:, :n].T
                U += t * W[:, n]
            else:
                U = X @ W.T
            U += b
            if layer == last:
                return U, xs
            X = self._act(U)
            xs.append(X)

    def eval_f(self, z, t, theta):
        z = np.asarray(z)
        if z.ndim != 2 or z.shape[1] != self.n_states:
            raise InvalidArgumentError(
                f"z has shape {z.shape}; eval_f takes a batch of shape (B, {self.n_states})"
            )
        if np.shape(theta) != (self.n_params,):
            raise InvalidArgumentError(f"theta has shape {np.shape(theta)}; expected ({self.n_params},)")
        return self._forward(z, t, self._unpack(theta))[0]

    def eval_f_each(self, z, t, theta):
        """f with a parameter vector per member (see :meth:`AbstractVectorField.eval_f_each`).

        Every layer is one batched matrix product over the members: the
        weights of member m are ``theta[m]`` unpacked, views, no copies.
        """
        z = np.asarray(z)
        M, n = z.shape[0], self.n_states
        X = z.reshape(M, -1, n)  # (M, B, n)
        thetas = np.asarray(theta).reshape(-1, self.n_params)  # (M or 1, p)
        last = len(self.layer_shapes) - 1
        for layer, (shape, (w0, b0, end)) in enumerate(zip(self.layer_shapes, self._offsets)):
            W = thetas[:, w0:b0].reshape((-1,) + shape)  # (M, out, in)
            if layer == 0 and self.time_input:
                U = np.matmul(X, np.swapaxes(W[:, :, :n], 1, 2))
                U += np.reshape(t, (-1, 1, 1)) * W[:, None, :, n]
            else:
                U = np.matmul(X, np.swapaxes(W, 1, 2))  # (M, B, out)
            U += thetas[:, None, b0:end]
            X = U if layer == last else self._act(U)
        return X.reshape(z.shape)

    def f_autograd(self, z, t, theta):
        import autograd.numpy as anp

        act = _autograd_activation(self.activation)
        n = self.n_states
        if isinstance(theta, (list, tuple)):  # p scalars, as the autograd references pass them
            theta = anp.stack(theta)
        X = z
        last = len(self.layer_shapes) - 1
        for layer, (shape, (w0, b0, end)) in enumerate(zip(self.layer_shapes, self._offsets)):
            W = anp.reshape(theta[w0:b0], shape)
            b = theta[b0:end]
            if layer == 0 and self.time_input:
                # t is a float or one time per row of z (the autograd references stack stages)
                tcol = anp.expand_dims(t, -1) if anp.ndim(t) else t
                U = anp.dot(X, anp.transpose(W[:, :n])) + tcol * W[:, n] + b
            else:
                U = anp.dot(X, anp.transpose(W)) + b
            X = U if layer == last else act(U)
        return X

    # ------------------------------------------------------------------ products
    def eval_vjp(self, a, z, t, theta, *, with_f=False):
        layers = self._unpack(theta)
        f, xs = self._forward(z, t, layers)
        n = self.n_states
        a_theta = np.empty(self.n_params)
        G = a  # G_l = a^T df/dU_l, per sample, (B, h_l)
        a_t = 0.0
        for layer in range(len(layers) - 1, -1, -1):
            W, _ = layers[layer]
            w0, b0, end = self._offsets[layer]
            gW = a_theta[w0:b0].reshape(W.shape)  # a view: the matmul writes into a_theta
            np.sum(G, axis=0, out=a_theta[b0:end])
            if layer == 0:
                if self.time_input:
                    np.matmul(G.T, xs[0], out=gW[:, :n])
                    # sum_b G_b t_b: t is a float, or a column (B, 1) of per-sample times (eval_vjp_at)
                    gW[:, n] = G.T @ t[:, 0] if np.ndim(t) else t * a_theta[b0:end]
                    a_t = float(a_theta[b0:end] @ W[:, n])
                    a_z = G @ W[:, :n]
                else:
                    np.matmul(G.T, xs[0], out=gW)
                    a_z = G @ W
            else:
                np.matmul(G.T, xs[layer], out=gW)
                G = G @ W
                G *= self._d1(xs[layer])
        return (f if with_f else None), a_z, a_theta, a_t

    def eval_vjp_z(self, a, z, t, theta):
        """``a^T df/dz`` without the parameter and time products (the reverse sweep through the weights only)."""
        layers = self._unpack(theta)
        _, xs = self._forward(z, t, layers)
        n = self.n_states
        G = a
        for layer in range(len(layers) - 1, 0, -1):
            G = G @ layers[layer][0]
            G *= self._d1(xs[layer])
        W = layers[0][0]
        return G @ (W[:, :n] if self.time_input else W)

    def eval_f_at(self, z, t, theta):
        t = np.asarray(t, dtype=float).reshape(-1, 1)  # a column: per-sample times in the first layer
        return self._forward(np.asarray(z, dtype=float), t, self._unpack(theta))[0]

    def eval_vjp_at(self, a, z, t, theta):
        t = np.asarray(t, dtype=float).reshape(-1, 1)
        _, a_z, a_theta, a_t = self.eval_vjp(np.asarray(a, dtype=float), np.asarray(z, dtype=float), t, theta)
        return a_z, a_theta, a_t

    # ------------------------------------------------------------------ Jacobians
    def _input(self, z, t):
        """X_0 including the time column, (B, in_1)."""
        if not self.time_input:
            return z
        return np.concatenate([z, np.full((z.shape[0], 1), float(t))], axis=1)

    def _output_sensitivities(self, xs, layers):
        """P_l = df/dU_l per sample, (B, n, h_l), for the hidden layers l = 1..L-1 (index l-1)."""
        P = []
        Q = layers[-1][0]  # df/dX_{L-1} = W_L, the same for every sample
        for layer in range(len(layers) - 1, 0, -1):
            Q = Q * self._d1(xs[layer])[:, None, :]  # df/dU_layer
            P.append(Q)
            Q = Q @ layers[layer - 1][0]  # df/dX_{layer-1}
        P.reverse()
        return P, Q  # Q = df/dX_0, (B, n, in_1) (or (n, in_1) for a linear field)

    def _jac_z_t(self, Q, B):
        n = self.n_states
        Q = np.broadcast_to(Q, (B,) + Q.shape[-2:])
        fz = np.ascontiguousarray(Q[:, :, :n])
        ft = np.ascontiguousarray(Q[:, :, n]) if self.time_input else np.zeros((B, n))
        return fz, ft

    def eval_jac_z(self, z, t, theta):
        layers = self._unpack(theta)
        _, xs = self._forward(z, t, layers)
        _, Q = self._output_sensitivities(xs, layers)
        return self._jac_z_t(Q, z.shape[0])[0]

    def eval_jacobians(self, z, t, theta):
        layers = self._unpack(theta)
        _, xs = self._forward(z, t, layers)
        P, Q = self._output_sensitivities(xs, layers)
        B, n = z.shape
        fz, ft = self._jac_z_t(Q, B)
        fth = np.zeros((B, n, self.n_params))
        inputs = [self._input(z, t)] + xs[1:]
        eye = np.broadcast_to(np.eye(n), (B, n, n))
        for layer, (w0, b0, end) in enumerate(self._offsets):
            Pl = P[layer] if layer < len(P) else eye  # df/dU_l; the identity for the output layer
            X = inputs[layer]
            # df_i/dW_l[j, k] = P_l[i, j] X_{l-1}[k]
            fth[:, :, w0:b0] = (Pl[:, :, :, None] * X[:, None, None, :]).reshape(B, n, -1)
            fth[:, :, b0:end] = Pl
        return fz, fth, ft

    def eval_backward_jac(self, z, a, t, theta):
        """Blocks ``(f_z, a_zz, a_theta_z, a_t_z)`` of the backward system's Jacobian.

        Tangents with respect to z (n directions at once, last axis) are
        pushed through the forward sweep (``dU_l``, ``dX_l``) and the reverse
        sweep (``dG_l``)::

            dX_0 = [I; 0],  dU_l = W_l dX_{l-1},  dX_l = sigma'_l * dU_l
            dG_L = 0,  dGX = W_l^T dG_l,  GX = G_l W_l
            dG_{l-1} = sigma'_{l-1} * dGX + (GX * sigma''_{l-1}) * dU_{l-1}

        so ``a_zz = W_1z^T dG_1``, ``d(a^T f_{W_l})/dz = dG_l X_{l-1}^T + G_l dX_{l-1}^T``,
        ``d(a^T f_{b_l})/dz = dG_l``, ``d(a^T f_t)/dz = w_1t^T dG_1``.
        """
        layers = self._unpack(theta)
        _, xs = self._forward(z, t, layers)
        B, n = z.shape
        L = len(layers)
        d1 = [None] + [self._d1(x) for x in xs[1:]]
        # forward tangents: dU[l] = dU_{l+1}/dz (B, h, n); dX[l] = dX_l/dz
        X0 = self._input(z, t)
        dX0 = np.zeros((X0.shape[1], n))
        dX0[:n] = np.eye(n)
        dX = [np.broadcast_to(dX0, (B,) + dX0.shape)]
        dU = []
        for layer in range(L - 1):
            W = layers[layer][0]
            du = W @ dX[layer]
            dU.append(du)
            dX.append(d1[layer + 1][:, :, None] * du)
        # reverse sweep with tangents; G_l and dG_l for l = L..1
        G = a
        dG = None  # dG_L = 0
        a_theta_z = np.empty((B, self.n_params, n))
        inputs = [X0] + xs[1:]
        for layer in range(L - 1, -1, -1):
            W = layers[layer][0]
            w0, b0, end = self._offsets[layer]
            out, inp = W.shape
            X = inputs[layer]
            block = G[:, :, None, None] * dX[layer][:, None, :, :]  # G_l dX_{l-1}^T, (B, out, in, n)
            if dG is not None:
                block = block + dG[:, :, None, :] * X[:, None, :, None]
                a_theta_z[:, b0:end] = dG
            else:
                a_theta_z[:, b0:end] = 0.0
            a_theta_z[:, w0:b0] = block.reshape(B, out * inp, n)
            if layer == 0:
                break
            GX = G @ W
            dGX = None if dG is None else np.swapaxes(W, 0, 1) @ dG
            x = xs[layer]
            d2 = self._d2(x, d1[layer])
            newdG = (GX * d2)[:, :, None] * dU[layer - 1]
            if dGX is not None:
                newdG += d1[layer][:, :, None] * dGX
            G = GX * d1[layer]
            dG = newdG
        W1 = layers[0][0]
        if dG is None:  # a linear field: a^T f_z = a W does not depend on z
            a_zz = np.zeros((B, n, n))
            a_t_z = np.zeros((B, 1, n))
        else:
            a_zz = np.swapaxes(W1[:, :n], 0, 1) @ dG
            a_t_z = (W1[:, n] @ dG)[:, None, :] if self.time_input else np.zeros((B, 1, n))
        fz = self.eval_jac_z(z, t, theta)
        return fz, a_zz, a_theta_z, a_t_z

    def complex_step_safe(self):
        return False

    # ------------------------------------------------------------------ symbolic twin
    def to_ode_system(self, *, name=None):
        """The same network as a symbolic :class:`~odeverify.ODESystem` (small networks only).

        The parameters are the entries of theta in the packing order of this
        field (names ``W1_i_j``, ``b1_i``), so ``system.eval_vjp(a, z, t,
        theta)`` and ``field.eval_vjp(a, z, t, theta)`` compute the same
        quantity, one by SymPy differentiation and one by the hand-derived
        formulas. The time variable is ``t``.
        """
        import sympy as sp

        from .._functions import sigmoid, softplus
        from .._system import ODESystem

        if self.n_params > 2000:
            raise InvalidArgumentError(
                f"this MLPField has {self.n_params} parameters; the symbolic twin is meant for small networks "
                "(at most 2000 parameters), e.g. MLPField((2, 8, 2))"
            )
        act = {"tanh": sp.tanh, "sigmoid": sigmoid, "softplus": softplus}[self.activation]
        zs = sp.symbols(" ".join(self.state_names), real=True, seq=True)
        t = sp.Symbol("t", real=True)
        params = sp.symbols(" ".join(self.param_names), real=True, seq=True)
        X = sp.Matrix(list(zs) + ([t] if self.time_input else []))
        last = len(self.layer_shapes) - 1
        for layer, (shape, (w0, b0, end)) in enumerate(zip(self.layer_shapes, self._offsets)):
            W = sp.Matrix(shape[0], shape[1], params[w0:b0])
            b = sp.Matrix(params[b0:end])
            U = W * X + b
            X = U if layer == last else U.applyfunc(act)
        return ODESystem(list(zs), list(params), list(X), t, name=name or repr(self))


def _check_sizes(sizes):
    if isinstance(sizes, (str, bytes)) or not isinstance(sizes, Sequence):
        raise InvalidTypeError(
            f"sizes must be a sequence of layer widths such as (2, 64, 2), got {type(sizes).__name__} {sizes!r:.60}"
        )
    out = []
    for i, s in enumerate(sizes):
        if isinstance(s, bool) or not isinstance(s, numbers.Integral):
            raise InvalidTypeError(f"sizes[{i}] must be an integer, got {s!r}")
        if s < 1:
            raise InvalidArgumentError(f"sizes[{i}] = {s}; every layer needs at least one unit")
        out.append(int(s))
    if len(out) < 2:
        raise InvalidArgumentError(
            f"sizes={tuple(out)} needs at least an input and an output width, e.g. (2, 64, 2)"
        )
    if out[-1] != out[0]:
        raise InvalidArgumentError(
            f"sizes={tuple(out)}: the output width {out[-1]} must equal the input width {out[0]} "
            f"(f maps a state of {out[0]} entries to its rate of change); use e.g. {(out[0], *out[1:-1], out[0])}"
        )
    return tuple(out)
