"""The vector-field interface that every solver and adjoint code path uses.

A vector field is f(z, t; theta) with z of n states and theta of p parameters.
``solve``, ``adjoint_gradients`` and the cross-checks accept anything that
implements :class:`AbstractVectorField`; :class:`~odeverify.ODESystem`
(symbolic, generated kernels) is one implementation, and the Neural-ODE fields
are others. The adjoint engine calls only these methods, so there is one code
path for the adjoint whatever the field.

Shapes: ``z`` and ``a`` are ``(B, n)`` (a batch of B states), ``t`` a float,
``theta`` ``(p,)``. Products with the parameters and time are *summed over the
batch*, because theta and t are shared by every sample.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass

import numpy as np

from ._switches import SwitchTimes

__all__ = ["AbstractVectorField", "SolverKernels"]


@dataclass(frozen=True)
class SolverKernels:
    """Right-hand sides of the forward and backward systems on the solvers' flat arrays.

    Built by :meth:`AbstractVectorField.solver_kernels` for one parameter
    vector and batch size B. Every function writes into a preallocated
    ``out`` and keeps no reference to its arguments. Layout: a batch of
    states ``z`` of shape (B, n) is ``z.reshape(-1)`` (sample-major).

    Attributes
    ----------
    f : callable
        ``f(t, y, out)``: ``y`` is z, shape (B*n,); ``out`` receives f.
    backward : callable
        ``backward(t, y, out)`` with ``y = [z, a, a_theta, a_t]`` of shape
        (2*B*n + p + 1,): ``out = [f, -a^T f_z, -sum_b a^T f_theta, -sum_b a^T f_t]``
        (the backsolve system).
    adjoint : callable
        ``adjoint(t, z, y, out)`` with ``z`` (B*n,) given and ``y = [a,
        a_theta, a_t]`` of shape (B*n + p + 1,): ``out = [-a^T f_z, -sum_b
        a^T f_theta, -sum_b a^T f_t]`` (the interpolated-mode system).
    """

    f: object
    backward: object
    adjoint: object
    #: ``adjoint_a(t, z, y, out)`` with ``y = a`` (B*n,): ``out = -a^T f_z`` (the quadrature-mode system);
    #: None: use ``adjoint`` and keep the first B*n entries
    adjoint_a: object = None


def generic_solver_kernels(field, theta, batch):
    """:class:`SolverKernels` from a field's :meth:`~AbstractVectorField.eval_f` and ``eval_vjp``."""
    B, n, p = batch, field.n_states, field.n_params
    Bn = B * n

    def f(t, y, out):
        out[:] = field.eval_f(y.reshape(B, n), t, theta).reshape(-1)

    # y = [z, a, a_theta, a_t]
    def backward(t, y, out):
        fz, az, ath, at = field.eval_vjp(y[Bn : 2 * Bn].reshape(B, n), y[:Bn].reshape(B, n), t, theta, with_f=True)
        out[:Bn] = fz.reshape(-1)
        np.negative(az.reshape(-1), out=out[Bn : 2 * Bn])
        np.negative(ath, out=out[2 * Bn : 2 * Bn + p])
        out[-1] = -at

    # y = [a, a_theta, a_t]
    def adjoint(t, z, y, out):
        _, az, ath, at = field.eval_vjp(y[:Bn].reshape(B, n), z.reshape(B, n), t, theta)
        np.negative(az.reshape(-1), out=out[:Bn])
        np.negative(ath, out=out[Bn : Bn + p])
        out[-1] = -at

    # y = a
    def adjoint_a(t, z, y, out):
        np.negative(field.eval_vjp_z(y.reshape(B, n), z.reshape(B, n), t, theta).reshape(-1), out=out)

    return SolverKernels(f, backward, adjoint, adjoint_a)


class AbstractVectorField(abc.ABC):
    """Interface of a vector field f(z, t; theta).

    Subclasses set :attr:`n_states` and :attr:`n_params` and implement
    :meth:`eval_f`, :meth:`eval_vjp` and :meth:`f_autograd`. The Jacobian
    methods are optional: without them implicit solvers fall back to finite
    differences.
    """

    #: number of states n
    n_states: int
    #: number of parameters p
    n_params: int
    #: True when f does not depend on t; None when unknown
    is_autonomous: bool | None = None
    #: names of the states, for reports
    state_names: tuple = ()
    #: names of the parameters, for reports
    param_names: tuple = ()
    #: True when eval_jac_z, eval_jacobians and eval_backward_jac return arrays
    has_jacobians: bool = False
    #: the non-smooth subexpressions of f (:class:`~odeverify._switches.Discontinuity`); () when none are known
    discontinuities: tuple = ()

    def switch_times(self, theta, t0, t1):
        """The times in [t0, t1] where f switches (see :class:`~odeverify._switches.SwitchTimes`).

        The default knows of none; :class:`~odeverify.ODESystem` solves its
        conditions in t symbolically.
        """
        return SwitchTimes.none(self.n_params)

    @abc.abstractmethod
    def eval_f(self, z, t, theta):
        """f(z, t; theta).

        Parameters
        ----------
        z : ndarray, shape (B, n)
        t : float
        theta : ndarray, shape (p,)

        Returns
        -------
        ndarray, shape (B, n)
        """

    @abc.abstractmethod
    def eval_vjp(self, a, z, t, theta, *, with_f=False):
        """Vector-Jacobian products of ``a`` with f.

        Parameters
        ----------
        a, z : ndarray, shape (B, n)
        t : float
        theta : ndarray, shape (p,)
        with_f : bool
            Also return f(z, t; theta) (computed with shared subexpressions).

        Returns
        -------
        f : ndarray, shape (B, n), or None
            Only when ``with_f``.
        a_z : ndarray, shape (B, n)
            ``a^T df/dz`` for each sample.
        a_theta : ndarray, shape (p,)
            ``sum_b a_b^T df/dtheta(z_b)``.
        a_t : float
            ``sum_b a_b^T df/dt(z_b)``.
        """

    @abc.abstractmethod
    def f_autograd(self, z, t, theta):
        """f written with ``autograd.numpy``, differentiable in every argument.

        ``z`` has shape ``(..., n)``; the result has the same shape. ``theta``
        is an array of shape ``(p,)`` or a list of p scalars (the autograd
        references pass it split, which is cheaper for generated code).
        """

    def eval_vjp_z(self, a, z, t, theta):
        """``a^T df/dz`` alone, shape (B, n) (``a``, ``z`` of shape (B, n)); fields may skip the other products."""
        return self.eval_vjp(a, z, t, theta)[1]

    def eval_f_at(self, z, t, theta):
        """f with a time per sample.

        Parameters
        ----------
        z : ndarray, shape (M, n)
        t : ndarray, shape (M,)
        theta : ndarray, shape (p,)

        Returns
        -------
        ndarray, shape (M, n)
            Row m is f(z[m], t[m]; theta). The default is :meth:`eval_f_each`
            with every row a member (one :meth:`eval_f` call per distinct
            time, one in all when the field is autonomous); fields that take a
            time per sample override it.
        """
        return self.eval_f_each(np.asarray(z, dtype=float), t, theta)

    def eval_vjp_at(self, a, z, t, theta):
        """Vector-Jacobian products with a time per sample.

        Parameters
        ----------
        a, z : ndarray, shape (M, n)
        t : ndarray, shape (M,)
        theta : ndarray, shape (p,)

        Returns
        -------
        a_z : ndarray, shape (M, n)
            ``a[m]^T df/dz(z[m], t[m])``.
        a_theta : ndarray, shape (p,)
            ``sum_m a[m]^T df/dtheta(z[m], t[m])``.
        a_t : float
            ``sum_m a[m]^T df/dt(z[m], t[m])``.

        Notes
        -----
        The default makes one :meth:`eval_vjp` call per distinct time (one in
        all when the field is autonomous).
        """
        a = np.asarray(a, dtype=float)
        a_z = np.empty_like(a)
        a_theta = np.zeros(self.n_params)
        a_t = 0.0
        for tk, rows in _rows_per_time(self, t):
            _, az, ath, at = self.eval_vjp(a[rows], np.asarray(z)[rows], tk, theta)
            a_z[rows] = az
            a_theta += ath
            a_t += at
        return a_z, a_theta, a_t

    def eval_jac_z(self, z, t, theta):
        """df/dz for each sample, shape (B, n, n); None when not available."""
        return None

    def eval_backward_jac(self, z, a, t, theta):
        """Blocks of the Jacobian of the backward system, or None.

        Returns
        -------
        tuple of ndarray or None
            ``(f_z, a_zz, a_theta_z, a_t_z)`` with shapes ``(B, n, n)``,
            ``(B, n, n)``, ``(B, p, n)``, ``(B, 1, n)``, where ``a_zz[b, i, j] =
            d(a^T f_z)_i / dz_j``, and ``a_theta_z``, ``a_t_z`` the same for the
            parameter and time products. The blocks with respect to ``a`` are
            ``f_z^T``, ``f_theta^T``, ``f_t^T`` and come from ``eval_jacobians``.
        """
        return None

    def eval_jacobians(self, z, t, theta):
        """``(f_z (B, n, n), f_theta (B, n, p), f_t (B, n))`` or None."""
        return None

    def solver_kernels(self, theta, batch):
        """The right-hand sides the solvers step, for one theta and batch size.

        The default wraps :meth:`eval_f` and :meth:`eval_vjp`; a field can
        return faster, fused kernels with the same results.

        Parameters
        ----------
        theta : ndarray, shape (p,)
        batch : int
            B, the number of samples.

        Returns
        -------
        SolverKernels
        """
        return generic_solver_kernels(self, theta, batch)

    def complex_step_safe(self):
        """True when f is analytic and :meth:`eval_f_complex` works, so complex-step differentiation is exact."""
        return False

    def eval_f_complex(self, z, t, theta):
        """f on complex ``z`` and ``theta`` (for complex-step differentiation); None when not supported."""
        return None

    def eval_f_each(self, z, t, theta):
        """f with its own time and parameter vector for every member of a stack of batches.

        The finite-difference and Taylor references solve many perturbed copies
        of one problem as one array; this evaluates all of them at once. The
        default calls :meth:`eval_f` once per distinct ``(t, theta)`` row; fields
        whose arithmetic broadcasts override it with one array operation.

        Parameters
        ----------
        z : ndarray, shape (M, n) or (M, B, n)
            Member m's state (or batch of B states).
        t : float or ndarray, shape (M,)
        theta : ndarray, shape (p,) or (M, p)

        Returns
        -------
        ndarray, same shape as ``z``
        """
        return _each_row(self.eval_f, z, _one_time_if_autonomous(self, t), theta, self.n_params)

    def eval_f_each_complex(self, z, t, theta):
        """:meth:`eval_f_each` on complex ``z`` and ``theta`` (for the complex step); None when not supported."""
        return _each_row(self.eval_f_complex, z, _one_time_if_autonomous(self, t), theta, self.n_params)

    def describe(self):
        """A one-line description for reports."""
        return f"{type(self).__name__} with {self.n_states} states and {self.n_params} parameters"

    def _check_theta_length(self, theta):
        return np.shape(theta) == (self.n_params,)


def _one_time_if_autonomous(field, t):
    """``t``, or one of its times when f does not depend on t (so that rows differing only in t share a call)."""
    return float(np.ravel(t)[0]) if field.is_autonomous and np.size(t) else t


def _each_row(eval_f, z, t, theta, p):
    """``eval_f`` once per distinct ``(t, theta)`` row of a member stack (see ``eval_f_each``)."""
    z = np.asarray(z)
    M, n = z.shape[0], z.shape[-1]
    if np.ndim(t) == 0 and np.ndim(theta) == 1:
        out = eval_f(z.reshape(-1, n), t, theta)
        return None if out is None else np.asarray(out).reshape(z.shape)
    ts = np.broadcast_to(np.asarray(t, dtype=float), (M,))
    thetas = np.broadcast_to(np.asarray(theta), (M, p))
    keys = np.ascontiguousarray(np.column_stack([ts.astype(thetas.dtype), thetas]))
    rows = keys.view(np.dtype((np.void, keys.dtype.itemsize * keys.shape[1]))).ravel()
    _, first, group = np.unique(rows, return_index=True, return_inverse=True)
    out = None
    for g, m in enumerate(first):
        members = np.flatnonzero(group.ravel() == g)
        value = eval_f(z[members].reshape(-1, n), float(ts[m]), thetas[m])
        if value is None:
            return None
        if out is None:
            out = np.empty(z.shape, dtype=np.result_type(np.asarray(value), z))
        out[members] = np.asarray(value).reshape((len(members),) + z.shape[1:])
    return out


def _rows_per_time(field, t):
    """``(t_k, rows)`` pairs that split per-sample times ``t`` (M,) by distinct value (one pair if autonomous)."""
    t = np.asarray(t, dtype=float).reshape(-1)
    if field.is_autonomous or t.size == 0 or np.all(t == t[0]):
        return [(float(t[0]) if t.size else 0.0, slice(None))]
    values, inverse = np.unique(t, return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    bounds = np.searchsorted(inverse[order], np.arange(values.size + 1))
    return [(float(v), order[lo:hi]) for v, lo, hi in zip(values, bounds[:-1], bounds[1:])]
