"""odeverify on diffrax models: a jax vector field as an odeverify field, and a check of ``diffeqsolve``'s gradient.

* :class:`JaxField` -- a diffrax-style ``vector_field(t, y, args)`` as an
  :class:`~odeverify.AbstractVectorField`: θ is the flattened floating-point
  leaves of ``args``, f and its products run in jax (jitted once per shape,
  batched by ``jax.vmap``), so every odeverify function (``adjoint_gradients``,
  the references, ``check_gradients``, ``taylor_test``, ``fit``) works on the
  user's own function.
* :func:`check_diffeqsolve` -- the user's ``diffrax.diffeqsolve``,
  differentiated by ``jax.grad``, checked against odeverify's references of
  the same problem.

jax and diffrax are imported when these are first used, never by
``import odeverify``. Both turn on jax's double precision,
``jax.config.update("jax_enable_x64", True)``, for the whole process:
odeverify's tolerances assume float64. Arrays made before that are float32;
they are checked in a float64 copy and the report says so (the user's solve
in float32 is not what is checked): enable double precision yourself before
building the model.
"""

from __future__ import annotations

import inspect
import numbers

import numpy as np

from .._field import AbstractVectorField
from ..errors import IntegrationError, InvalidArgumentError, InvalidTypeError, LossError

__all__ = ["JaxField", "check_diffeqsolve"]

_X64_FIX = 'call jax.config.update("jax_enable_x64", True) before creating the model and its arrays'


def _jax():
    """jax with double precision on (imported here, at call time)."""
    try:
        import jax
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError("odeverify.adapters.jax needs jax and diffrax: pip install 'odeverify[jax]'") from None
    jax.config.update("jax_enable_x64", True)
    return jax


def _diffrax():
    try:
        import diffrax
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError("check_diffeqsolve needs diffrax: pip install 'odeverify[jax]'") from None
    return diffrax


# ---------------------------------------------------------------------------- the args pytree as theta
def _is_parameter(leaf):
    """A floating-point leaf of ``args`` (a jax or NumPy array or a Python float): an entry of θ."""
    if isinstance(leaf, bool):
        return False
    if isinstance(leaf, float):
        return True
    dtype = getattr(leaf, "dtype", None)
    return dtype is not None and hasattr(leaf, "shape") and np.issubdtype(np.dtype(dtype), np.inexact)


def _entry_names(prefix, shape):
    """``prefix[i, j]`` for every entry of an array of ``shape`` in C order (just ``prefix`` for a scalar)."""
    if not shape:
        return [prefix]
    return [f"{prefix}[{', '.join(map(str, idx))}]" for idx in np.ndindex(*shape)]


class _Packing:
    """The floating-point leaves of a pytree as one flat θ, and back.

    Leaves that are not floating point (integers, functions, strings) stay as
    they are: they are constants of the vector field, not parameters.
    """

    def __init__(self, jax, args, argname):
        flat, self.treedef = jax.tree_util.tree_flatten_with_path(args)
        self.leaves = [leaf for _, leaf in flat]
        self.converted = []  # float leaves that were not float64 (θ holds them in float64)
        self.positions, self.shapes, names, values = [], [], [], []
        for pos, (path, leaf) in enumerate(flat):
            if not _is_parameter(leaf):
                continue
            where = f"{argname}{jax.tree_util.keystr(path)}"
            dtype = np.dtype(getattr(leaf, "dtype", np.float64))
            if np.issubdtype(dtype, np.complexfloating):
                raise InvalidTypeError(
                    f"{where} is complex ({dtype}); odeverify checks real gradients: split it into real and "
                    "imaginary parts as separate parameters"
                )
            if dtype != np.float64:
                self.converted.append(f"{where} ({dtype})")
            value = np.asarray(leaf, dtype=np.float64)
            self.positions.append(pos)
            self.shapes.append(value.shape)
            names += _entry_names(where, value.shape)
            values.append(value.ravel())
        self.names = tuple(names)
        self.theta = np.concatenate(values) if values else np.zeros(0)
        sizes = [int(np.prod(s, dtype=int)) for s in self.shapes]
        self.offsets = np.concatenate([[0], np.cumsum(sizes, dtype=int)]).astype(int).tolist()

    def unflatten(self, jax, theta):
        """The pytree with θ's entries (a jax array, possibly traced) in place of its float leaves."""
        leaves = list(self.leaves)  # the float leaves are all replaced, so they enter as float64
        for k, (pos, shape) in enumerate(zip(self.positions, self.shapes)):
            leaves[pos] = theta[self.offsets[k] : self.offsets[k + 1]].reshape(shape)
        return jax.tree_util.tree_unflatten(self.treedef, leaves)


# ---------------------------------------------------------------------------- the field
class JaxField(AbstractVectorField):
    r"""A diffrax-style vector field ``vector_field(t, y, args)`` as an odeverify field.

    Parameters
    ----------
    vector_field : callable
        ``vector_field(t, y, args) -> dy/dt`` written with ``jax.numpy``, for
        one state ``y`` of shape ``(n,)`` (as ``diffrax.ODETerm`` takes it).
        odeverify batches it with ``jax.vmap``.
    args : pytree
        The ``args`` of ``diffeqsolve``: a dict, tuple, ``equinox.Module`` ...
        Its floating-point leaves (jax or NumPy arrays, Python floats) are the
        parameters θ; other leaves (integers, functions) are kept as constants.
    n_states : int
        n, the length of ``y``.

    Attributes
    ----------
    n_states, n_params : int
    theta : ndarray, shape (p,)
        θ of the given ``args``: the leaves in ``jax.tree_util`` order, each
        flattened in C order.
    param_names : tuple of str
        The tree path of every entry, e.g. ``args['mlp'].layers[0].weight[2, 1]``.
    notes : list of str
        Conversions made (float32 leaves checked in float64).

    Notes
    -----
    f, ``a^T f_z``, ``a^T f_θ``, ``a^T f_t`` (one ``jax.vjp``), per-row times,
    per-member θ (the finite differences' batches: a ``vmap`` over members)
    and the Jacobians (``jax.jacrev``; the backward system's blocks by
    ``jax.jacfwd`` of the VJP) are each ``jax.jit``-compiled, once per input
    shape. ``f_autograd`` is an autograd primitive whose derivative is jax's
    VJP, so the autograd-through-Runge–Kutta reference runs on the user's
    derivatives too; only the finite differences use f's values alone.

    Turns on ``jax_enable_x64``. Float leaves that are not float64 (a model
    built before that: float32) enter θ in float64; :attr:`notes` says which.

    Examples
    --------
    >>> import jax, jax.numpy as jnp, numpy as np
    >>> jax.config.update("jax_enable_x64", True)
    >>> from odeverify.adapters.jax import JaxField
    >>> def pendulum(t, y, args):
    ...     return jnp.stack([y[1], -args["g"] * jnp.sin(y[0])])
    >>> field = JaxField(pendulum, {"g": jnp.array(9.81)}, n_states=2)
    >>> field.param_names
    ("args['g']",)
    >>> field.eval_f(np.array([[0.0, 1.0]]), 0.0, field.theta)
    array([[ 1., -0.]])
    """

    has_jacobians = True
    derivatives_from_user = True  # jax's VJPs run any jax.custom_vjp the user wrote

    def __init__(self, vector_field, args, *, n_states):
        jax = _jax()
        if not callable(vector_field) or isinstance(vector_field, type):
            raise InvalidTypeError(
                f"vector_field must be a function vector_field(t, y, args), got {type(vector_field).__name__} "
                f"{vector_field!r:.60}"
            )
        _check_signature(vector_field)
        if isinstance(n_states, bool) or not isinstance(n_states, numbers.Integral) or n_states < 1:
            raise InvalidArgumentError(f"n_states must be a positive integer (the length of y), got {n_states!r}")
        self.vector_field = vector_field
        self.name = getattr(vector_field, "__name__", type(vector_field).__name__)
        self.n_states = int(n_states)
        self._packing = _Packing(jax, args, "args")
        self.theta = self._packing.theta
        self.notes = [f"{', '.join(self._packing.converted)} {'was' if len(self._packing.converted) == 1 else 'were'} "
                      f"not float64: checked in float64 ({_X64_FIX} to check the model as it runs)"
                      ] if self._packing.converted else []
        self.n_params = self.theta.size
        self.param_names = self._packing.names
        self.state_names = tuple(f"y[{i}]" for i in range(self.n_states))
        self._jax = jax
        self._compile(jax)
        self._check_output()

    def args_of(self, theta):
        """``args`` with the entries of ``theta`` (shape (p,), NumPy or jax) in place of its float leaves."""
        return self._packing.unflatten(self._jax, self._jax.numpy.asarray(theta))

    def describe(self):
        return f"JaxField {self.name} with {self.n_states} states and {self.n_params} parameters (jax products)"

    def __repr__(self):
        return f"JaxField({self.name}, n_states={self.n_states}, n_params={self.n_params})"

    # ------------------------------------------------------------------ jax functions
    def _compile(self, jax):
        """The jitted functions; jax compiles each once per input shape."""
        vmap, jit = jax.vmap, jax.jit
        jnp = jax.numpy
        vf, packing = self.vector_field, self._packing

        def one(t, y, theta):  # one state (n,), a scalar t, theta (p,)
            return vf(t, y, packing.unflatten(jax, theta))

        batch = vmap(one, in_axes=(None, 0, None))  # z (B, n), one t
        rows = vmap(one, in_axes=(0, 0, None))  # z (M, n), t (M,)

        def vjp(fun):
            def products(a, t, z, theta):  # a_t has the shape of t: a scalar, or one per row
                f, pull = jax.vjp(fun, t, z, theta)
                a_t, a_z, a_theta = pull(a)
                return f, a_z, a_theta, a_t

            return products

        def jacobians(z, t, theta):
            fz, fth, ft = vmap(jax.jacrev(one, argnums=(1, 2, 0)), in_axes=(None, 0, None))(t, z, theta)
            return fz, fth, ft

        def backward_jac(z, a, t, theta):
            def products(y, a_b):  # one sample's a^T f_z, a^T f_theta, a^T f_t
                _, pull = jax.vjp(one, t, y, theta)
                a_t, a_z, a_theta = pull(a_b)
                return a_z, a_theta, jnp.reshape(a_t, (1,))

            a_zz, a_th_z, a_t_z = vmap(jax.jacfwd(products))(z, a)
            return a_zz, a_th_z, a_t_z

        self._f = jit(batch)
        self._f_rows = jit(rows)
        self._f_each = jit(vmap(batch, in_axes=(0, 0, 0)))  # t (M,), z (M, B, n), theta (M, p)
        self._vjp = jit(vjp(batch))
        self._vjp_rows = jit(vjp(rows))
        self._jacobians = jit(jacobians)
        self._backward_jac = jit(backward_jac)

    def _check_output(self):
        """f of the right shape and dtype at a probe state, or an error naming what it returned."""
        jax = self._jax
        probe = jax.ShapeDtypeStruct((self.n_states,), np.float64)
        try:
            out = jax.eval_shape(lambda y: self.vector_field(0.0, y, self._packing.unflatten(jax, self.theta)), probe)
        except Exception as exc:  # noqa: BLE001 - user code, re-raised with what it was given
            raise InvalidArgumentError(
                f"the vector field {self.name} raised {type(exc).__name__}: {str(exc)[:300]} when called as "
                f"vector_field(t, y, args) with a float t and y of shape ({self.n_states},); write it for one "
                "state y, as diffrax.ODETerm calls it"
            ) from exc
        shape, dtype = getattr(out, "shape", None), getattr(out, "dtype", None)
        if shape != (self.n_states,):
            raise InvalidArgumentError(
                f"the vector field {self.name} returned an array of shape {shape} for y of shape "
                f"({self.n_states},); it must return dy/dt as one array of the same shape as y"
            )
        if np.dtype(dtype) != np.float64:
            raise InvalidTypeError(
                f"the vector field {self.name} returned {dtype} for float64 y and args (it casts inside, e.g. "
                "with an explicit dtype=jnp.float32); odeverify needs float64 throughout: remove the cast"
            )

    def _call(self, fn, *arrays):
        return tuple(np.asarray(x) for x in fn(*arrays))

    # ------------------------------------------------------------------ the interface
    def eval_f(self, z, t, theta):
        z = self._z(z)
        return np.asarray(self._f(np.float64(t), z, self._theta(theta)))

    def eval_vjp(self, a, z, t, theta, *, with_f=False):
        f, a_z, a_theta, a_t = self._call(self._vjp, self._z(a), np.float64(t), self._z(z), self._theta(theta))
        return (f if with_f else None), a_z, a_theta, float(a_t)

    def eval_f_at(self, z, t, theta):
        z = self._z(z)
        return np.asarray(self._f_rows(self._times(t, z.shape[0]), z, self._theta(theta)))

    def eval_vjp_at(self, a, z, t, theta):
        z = self._z(z)
        _, a_z, a_theta, a_t = self._call(self._vjp_rows, self._z(a), self._times(t, z.shape[0]), z,
                                          self._theta(theta))
        return a_z, a_theta, float(np.sum(a_t))

    def eval_f_each(self, z, t, theta):
        z = np.asarray(z, dtype=np.float64)
        M, n = z.shape[0], self.n_states
        ts = self._times(t, M)
        thetas = np.ascontiguousarray(np.broadcast_to(np.asarray(theta, dtype=np.float64), (M, self.n_params)))
        return np.asarray(self._f_each(ts, z.reshape(M, -1, n), thetas)).reshape(z.shape)

    def eval_jac_z(self, z, t, theta):
        return self.eval_jacobians(z, t, theta)[0]

    def eval_jacobians(self, z, t, theta):
        return self._call(self._jacobians, self._z(z), np.float64(t), self._theta(theta))

    def eval_backward_jac(self, z, a, t, theta):
        z, a, theta = self._z(z), self._z(a), self._theta(theta)
        try:
            a_zz, a_theta_z, a_t_z = self._call(self._backward_jac, z, a, np.float64(t), theta)
        except TypeError as exc:  # jax has no forward mode through a jax.custom_vjp
            raise InvalidTypeError(
                f"the second derivatives of the vector field {self.name} (for an implicit backsolve) need "
                f"jax.jacfwd of its VJP, which jax refuses here ({exc}); with a jax.custom_vjp in the field, "
                "use an explicit method or mode='interpolated'"
            ) from exc
        return self.eval_jac_z(z, t, theta), a_zz, a_theta_z, a_t_z

    def f_autograd(self, z, t, theta):
        """f as an autograd primitive: values from jax, derivatives from jax's VJP (the user's derivatives)."""
        import autograd.numpy as anp

        if isinstance(theta, (list, tuple)):  # p scalars, as the autograd references pass them
            theta = anp.stack(theta) if len(theta) else np.zeros(0)
        return _autograd_f(self, z, t, theta)

    # ------------------------------------------------------------------ conversions
    def _z(self, z):
        z = np.asarray(z, dtype=np.float64)
        if z.ndim != 2 or z.shape[1] != self.n_states:
            raise InvalidArgumentError(f"z has shape {z.shape}; the field takes a batch of shape (B, {self.n_states})")
        return z

    def _theta(self, theta):
        theta = np.asarray(theta, dtype=np.float64)
        if theta.shape != (self.n_params,):
            raise InvalidArgumentError(f"theta has shape {theta.shape}; expected ({self.n_params},)")
        return theta

    @staticmethod
    def _times(t, M):
        return np.ascontiguousarray(np.broadcast_to(np.asarray(t, dtype=np.float64).reshape(-1), (M,)))


def _check_signature(vector_field):
    """``vector_field`` must take ``(t, y, args)``, as ``diffrax.ODETerm`` calls it."""
    try:
        inspect.signature(vector_field).bind(0.0, None, None)
    except TypeError:
        raise InvalidTypeError(
            f"vector_field must take three arguments (t, y, args), as diffrax.ODETerm calls it; "
            f"{getattr(vector_field, '__name__', vector_field)!r} has the signature "
            f"{inspect.signature(vector_field)}; wrap it, e.g. lambda t, y, args: f(y, t, args)"
        ) from None
    except ValueError:  # no signature to inspect: the probe call will tell
        pass


def _make_autograd_f():
    """An autograd primitive ``f(field, z, t, theta)`` whose VJP is jax's (built on first use)."""
    from autograd.extend import defvjp_argnums, primitive

    @primitive
    def f(field, z, t, theta):
        z = np.asarray(z, dtype=np.float64)
        rows = z.reshape(-1, field.n_states)
        if np.ndim(t) == 0:
            out = field.eval_f(rows, t, theta)
        else:
            out = field.eval_f_at(rows, np.asarray(t, dtype=np.float64).reshape(-1), theta)
        return out.reshape(z.shape)

    def vjp_maker(argnums, ans, args, kwargs):
        field, z, t, theta = args
        z = np.asarray(z, dtype=np.float64)
        n = field.n_states
        rows = z.reshape(-1, n)

        def vjp(g):
            g = np.asarray(g, dtype=np.float64).reshape(-1, n)
            if np.ndim(t) == 0:
                _, a_z, a_theta, a_t = field.eval_vjp(g, rows, t, theta)
            else:  # one time per row: its cotangent per row too
                tt = np.asarray(t, dtype=np.float64).reshape(-1)
                _, a_z, a_theta, a_t = field._call(field._vjp_rows, g, tt, rows, field._theta(theta))
                a_t = a_t.reshape(np.shape(t))
            grads = {1: a_z.reshape(z.shape), 2: a_t, 3: a_theta}
            return tuple(grads[k] for k in argnums)

        return vjp

    defvjp_argnums(f, vjp_maker)
    return f


_AUTOGRAD_F = None


def _autograd_f(field, z, t, theta):
    global _AUTOGRAD_F
    if _AUTOGRAD_F is None:
        _AUTOGRAD_F = _make_autograd_f()
    return _AUTOGRAD_F(field, z, t, theta)


# ---------------------------------------------------------------------------- check_diffeqsolve
#: arguments of diffeqsolve that check_diffeqsolve sets itself
_SET_HERE = {"terms": "vector_field", "t0": "ts[0]", "t1": "ts[-1]", "y0": "y0", "args": "args",
             "saveat": "SaveAt(ts=ts)"}


def check_diffeqsolve(vector_field, y0, ts, args, loss, *, solver, adjoint=None, stepsize_controller=None,
                      check_rtol=None, references=None, **diffeqsolve_kwargs):
    r"""Check the gradient that ``jax.grad`` takes through your ``diffrax.diffeqsolve``.

    The solve is ``diffeqsolve(ODETerm(vector_field), solver, t0=ts[0],
    t1=ts[-1], dt0, y0, args, saveat=SaveAt(ts=ts), stepsize_controller=...,
    adjoint=..., **diffeqsolve_kwargs)``; the loss is ``loss(sol.ys)``. Its
    gradient with respect to ``y0``, every floating-point leaf of ``args``
    and (where the adjoint supports it) ``ts`` is the candidate, checked
    against odeverify's references of the same problem (the same
    ``vector_field`` and ``loss``, run through jax by :class:`JaxField`), at
    the accuracy the solver's tolerance can deliver
    (:func:`odeverify.adapters._common.check_peer`).

    Parameters
    ----------
    vector_field : callable
        ``vector_field(t, y, args)`` for one state ``y`` of shape (n,), as
        ``diffrax.ODETerm`` takes it.
    y0 : array, shape (n,)
    ts : array, shape (T,)
        Increasing save times, T >= 2; the solve runs from ``ts[0]`` to ``ts[-1]``.
    args : pytree
        The parameters θ are its floating-point leaves (see :class:`JaxField`).
    loss : callable
        ``loss(ys) -> scalar`` written with ``jax.numpy``, ``ys`` of shape (T, n).
    solver : diffrax.AbstractSolver
        E.g. ``diffrax.Dopri5()``.
    adjoint : diffrax.AbstractAdjoint, optional
        diffrax's default (``RecursiveCheckpointAdjoint()``) when None.
        With ``ForwardMode()`` the gradient is taken by ``jax.jacfwd``.
    stepsize_controller : diffrax.AbstractStepSizeController, optional
        E.g. ``diffrax.PIDController(rtol=1e-8, atol=1e-8)``; diffrax's default
        (a constant step, which needs ``dt0=``) when None.
    check_rtol : float, optional
        The check's own relative tolerance (that of :func:`~odeverify.check_gradients`, default 1e-5).
    references : sequence, optional
        As for :func:`~odeverify.check_gradients` (names, or estimates from
        :func:`~odeverify.compute_references` on ``JaxField(vector_field,
        args, n_states=n)`` to reuse for several solves of one model).
    **diffeqsolve_kwargs
        Passed on to ``diffeqsolve``: ``dt0``, ``max_steps``, ...

    Returns
    -------
    GradientReport
        Its rows name θ's entries by their path in ``args``. What diffrax
        cannot differentiate (``BacksolveAdjoint`` and ``ts``) is reported as
        not checked, with the reason.

    Notes
    -----
    What diffrax 0.7 differentiates: ``RecursiveCheckpointAdjoint`` and
    ``DirectAdjoint`` give y0, args and ts (through t0, t1 and the save
    times); ``BacksolveAdjoint`` gives y0 and args only (JAX refuses a
    gradient with respect to the times: "`*args` and `**kwargs` to
    `filter_custom_vjp` cannot be autodifferentiated"). Any other adjoint
    that fails with respect to ts is retried without, and the error is
    quoted in the report.

    The references other than finite differences run on jax's derivatives of
    ``vector_field`` (a ``jax.custom_vjp`` included), so every verdict needs
    finite differences, which use f's values only, in its consensus.

    Turns on ``jax_enable_x64``; float32 inputs are checked in a float64
    copy, and the report says so.
    """
    jax, diffrax = _jax(), _diffrax()
    notes = []
    y0, ts = _check_array(y0, "y0", 1, notes), _check_array(ts, "ts", 1, notes)
    _check_times(ts)
    field = JaxField(vector_field, args, n_states=y0.shape[0])
    jax_loss = _check_loss(jax, loss, (ts.shape[0], y0.shape[0]))
    solve = _Solve(jax, diffrax, field, jax_loss, solver, adjoint, stepsize_controller, diffeqsolve_kwargs)
    candidate, not_checked = solve.gradients(y0, ts)
    from ._common import check_peer

    report = check_peer(field, y0, ts, field.theta, _autograd_loss(jax, jax_loss), candidate, solve.peer(),
                        not_checked=not_checked, rtol=check_rtol, references=references,
                        notes=notes + field.notes)
    for row in report.rows:
        if row.quantity in not_checked and row.status == "not checked":
            row.note = "the candidate's solver does not differentiate with respect to it"
    return report


#: diffrax's adaptive solvers and the odeverify method of the same family (for the tolerance calibration)
COMPARABLE_METHODS = {"Dopri5": "dopri5", "Tsit5": "tsit5", "Dopri8": "DOP853", "Bosh3": "RK23"}


class _Solve:
    """The user's diffeqsolve as a function of (y0, θ, ts), and its gradient by jax."""

    def __init__(self, jax, diffrax, field, loss, solver, adjoint, stepsize_controller, kwargs):
        for key in kwargs:
            if key in _SET_HERE:
                raise InvalidArgumentError(
                    f"check_diffeqsolve sets {key}={_SET_HERE[key]} itself; remove {key}= from its arguments"
                )
        if not isinstance(solver, diffrax.AbstractSolver):
            raise InvalidTypeError(f"solver must be a diffrax solver such as diffrax.Dopri5(), got {solver!r:.60}")
        if adjoint is not None and not isinstance(adjoint, diffrax.AbstractAdjoint):
            raise InvalidTypeError(f"adjoint must be a diffrax adjoint such as diffrax.BacksolveAdjoint() or "
                                   f"diffrax.RecursiveCheckpointAdjoint(), got {type(adjoint).__name__} {adjoint!r:.60}")
        if stepsize_controller is not None and not isinstance(stepsize_controller,
                                                              diffrax.AbstractStepSizeController):
            raise InvalidTypeError(
                f"stepsize_controller must be a diffrax step-size controller such as "
                f"diffrax.PIDController(rtol=1e-8, atol=1e-8), got {type(stepsize_controller).__name__} "
                f"{stepsize_controller!r:.60}"
            )
        self.jax, self.diffrax, self.field, self.loss = jax, diffrax, field, loss
        self.solver, self.adjoint = solver, adjoint if adjoint is not None else diffrax.RecursiveCheckpointAdjoint()
        self.controller = stepsize_controller
        self.kwargs = dict(kwargs)
        self.dt0 = self.kwargs.pop("dt0", None)

    def peer(self):
        """The :class:`~odeverify.adapters._common.PeerSolver` of this solve (its tolerances, a comparable method)."""
        from ._common import PeerSolver

        ctrl, rtol, atol = self.controller, None, None
        if ctrl is None:
            how = f"constant steps dt0={self.dt0}"
        elif hasattr(ctrl, "rtol") and hasattr(ctrl, "atol"):
            rtol, atol = float(ctrl.rtol), float(ctrl.atol)
            how = f"{type(ctrl).__name__}(rtol={rtol:g}, atol={atol:g})"
        else:
            how = type(ctrl).__name__
        how_grad = "jax.jacfwd" if self._forward_mode() else "jax.grad"
        name = type(self.solver).__name__
        # every adjoint but BacksolveAdjoint (which gives no ∂L/∂t) differentiates the interpolant at ts
        return PeerSolver(f"diffrax.diffeqsolve ({name}, {how}, adjoint={type(self.adjoint).__name__}), "
                          f"gradients by {how_grad}", rtol, atol, COMPARABLE_METHODS.get(name),
                          times_by_interpolation=True)

    def _forward_mode(self):
        return isinstance(self.adjoint, self.diffrax.ForwardMode)

    def solution(self, y0, theta, ts, **override):
        """The user's diffeqsolve of (y0, θ, ts)."""
        dfx = self.diffrax
        extra = {} if self.controller is None else {"stepsize_controller": self.controller}
        return dfx.diffeqsolve(dfx.ODETerm(self.field.vector_field), self.solver, ts[0], ts[-1], self.dt0, y0,
                               args=self.field.args_of(theta), saveat=dfx.SaveAt(ts=ts), adjoint=self.adjoint,
                               **extra, **{**self.kwargs, **override})

    def total(self, y0, theta, ts):
        """L(y0, θ, ts): the user's solve and loss."""
        return self.loss(self.solution(y0, theta, ts).ys)

    def check_solved(self, y0, ts):
        """The solve must reach ts[-1]: under jax.grad a failed one (max_steps reached) can return finite garbage."""
        try:
            result = self.jax.jit(lambda y, th, s: self.solution(y, th, s, throw=False).result)(
                y0, self.field.theta, ts)
        except Exception as exc:  # noqa: BLE001 - the user's arguments to diffeqsolve
            raise InvalidArgumentError(
                f"diffrax.diffeqsolve with these arguments failed ({type(exc).__name__}: {_first_words(exc)}); "
                "check that the solve runs on its own with them"
            ) from exc
        if not bool(result == self.diffrax.RESULTS.successful):
            message = str(result).split("<", 1)[-1].rstrip(">")
            raise IntegrationError(
                f"the user's diffrax.diffeqsolve did not succeed from ts[0] = {ts[0]:g} to ts[-1] = {ts[-1]:g}: "
                f"{message} (its gradient would be that of a failed solve); fix the solve first, e.g. max_steps="
            )

    def gradients(self, y0, ts):
        """``({"z0", "theta"[, "t"]}: arrays, {"t": why it is not given} or {})``."""
        jax = self.jax
        derivative = jax.jacfwd if self._forward_mode() else jax.grad
        inputs = (y0, self.field.theta, ts)
        self.check_solved(y0, ts)
        why_not = None
        if isinstance(self.adjoint, self.diffrax.BacksolveAdjoint):
            why_not = ("diffrax's BacksolveAdjoint differentiates with respect to y0 and args only, not t0, t1 or "
                       "the save times (use RecursiveCheckpointAdjoint() to check dL/dt as well)")
        else:
            try:
                grads = jax.jit(derivative(self.total, argnums=(0, 1, 2)))(*inputs)
            except Exception as exc:  # noqa: BLE001 - the peer's limitation, reported by name
                why_not = (f"jax could not differentiate diffrax.diffeqsolve with {type(self.adjoint).__name__} "
                           f"with respect to ts ({type(exc).__name__}: {_first_words(exc, 200)})")
            else:
                return _as_values(grads, ("z0", "theta", "t")), {}
        try:
            grads = jax.jit(derivative(self.total, argnums=(0, 1)))(*inputs)
        except Exception as exc:  # noqa: BLE001 - user code or the peer: re-raised with what was asked
            raise InvalidArgumentError(
                f"jax.{derivative.__name__} of diffrax.diffeqsolve with "
                f"{type(self.adjoint).__name__} failed ({type(exc).__name__}: {_first_words(exc)}); "
                "check that the solve runs on its own with these arguments"
            ) from exc
        return _as_values(grads, ("z0", "theta")), {"t": why_not}


def _first_words(exc, limit=300):
    """The line of an error that says what went wrong: equinox's runtime errors (``max_steps`` reached, ...)
    arrive wrapped in a callback traceback whose first line says nothing."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    for line in lines:
        if "EquinoxRuntimeError:" in line:
            return line.split("EquinoxRuntimeError:", 1)[1].strip()[:limit]
    return (lines[0] if lines else "")[:limit]


def _as_values(grads, keys):
    out = {}
    for key, g in zip(keys, grads):
        arr = np.asarray(g, dtype=np.float64)
        out[key] = arr
    return out


def _check_array(value, argname, ndim, notes):
    """A float64 NumPy copy of a jax or NumPy array of ``ndim`` dimensions (a float32 one noted in ``notes``)."""
    dtype = getattr(value, "dtype", None)
    if dtype is not None and np.issubdtype(np.dtype(dtype), np.floating) and np.dtype(dtype) != np.float64:
        notes.append(f"{argname} was {np.dtype(dtype)}: checked in float64 ({_X64_FIX} to check the model as it runs)")
    if dtype is not None and np.issubdtype(np.dtype(dtype), np.complexfloating):
        raise InvalidTypeError(f"{argname} is complex ({np.dtype(dtype)}); odeverify checks real ODEs")
    try:
        arr = np.array(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidTypeError(f"{argname} must be an array of floats, got {type(value).__name__}: {exc}") from None
    if arr.ndim != ndim:
        raise InvalidArgumentError(
            f"{argname} has shape {arr.shape}; check_diffeqsolve takes {argname} of {ndim} dimension"
            f"{'s' if ndim != 1 else ''}" + (" (one state; a batch is not supported)" if argname == "y0" else "")
        )
    if not np.all(np.isfinite(arr)):
        raise InvalidArgumentError(f"{argname} has entries that are not finite: {arr}")
    return arr


def _check_times(ts):
    if ts.shape[0] < 2 or np.any(np.diff(ts) <= 0):
        raise InvalidArgumentError(
            f"ts = {ts} must be at least two strictly increasing times; the solve runs from ts[0] to ts[-1]"
        )


def _check_loss(jax, loss, shape):
    """The loss, once traced on states of ``shape``: it must return a real scalar."""
    if not callable(loss):
        raise InvalidTypeError(f"loss must be a function loss(ys) -> scalar written with jax.numpy, got {loss!r:.60}")
    try:
        out = jax.eval_shape(loss, jax.ShapeDtypeStruct(shape, np.float64))
    except Exception as exc:  # noqa: BLE001 - user code
        raise LossError(
            f"loss raised {type(exc).__name__}: {str(exc)[:300]} when traced by jax on ys of shape {shape}; write "
            "it with jax.numpy (not numpy), taking the (T, n) solution and returning a scalar"
        ) from exc
    if getattr(out, "shape", None) != ():
        raise LossError(
            f"loss returned an array of shape {getattr(out, 'shape', None)} on ys of shape {shape}, not a scalar; "
            "reduce it, e.g. with jnp.sum(...)"
        )
    if not np.issubdtype(np.dtype(out.dtype), np.floating):
        raise LossError(f"loss returned {out.dtype}; it must return a real float scalar")
    return loss


def _autograd_loss(jax, loss):
    """``loss`` as an autograd primitive on NumPy states: value and gradient by jax (jitted)."""
    from autograd.extend import defvjp, primitive

    value, gradient = jax.jit(loss), jax.jit(jax.grad(loss))

    @primitive
    def autograd_loss(zs):
        return float(value(np.asarray(zs, dtype=np.float64)))

    defvjp(autograd_loss, lambda ans, zs: lambda g: g * np.asarray(gradient(np.asarray(zs, dtype=np.float64))))
    autograd_loss.__name__ = getattr(loss, "__name__", "loss")
    return autograd_loss
