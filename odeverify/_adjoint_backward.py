"""The backward system of each adjoint mode, its Jacobian, and the jumps of a_t at the observation times.

:func:`_backward_system` gives the right-hand side the backward sweep
integrates, with the layout of its state:

* ``'interpolated'``: y = [a (B n), a_theta (p), a_t (1)], z from the forward dense output;
* ``'quadrature'``: y = a (B n), z from the forward dense output;
* ``'backsolve'``: y = [z (B n), a (B n), a_theta (p), a_t (1)].

Used by :mod:`odeverify._adjoint` and :mod:`odeverify._adjoint_events`;
imports nothing of the adjoint modules.
"""

from __future__ import annotations

import numpy as np

from ._integrate import BlockJacobian
from ._validate import IMPLICIT_METHODS


def _backward_system(mode, fld, kernels, theta, B, method, dense, atol_z, atol_a):
    """The backward system of ``mode``: ``(fun, jac, size, groups, atol)`` for the sweep.

    ``dense`` is the forward dense output z(t) (None in backsolve mode, which
    integrates z alongside a); ``jac`` is None for the explicit methods.
    """
    n, p = fld.n_states, fld.n_params
    Bn = B * n
    implicit = method in IMPLICIT_METHODS
    if mode != "backsolve":  # z from the forward dense output
        z_buf = np.empty(Bn)

        def z_of(t):
            return dense.at(t).reshape(B, n)

    if mode == "interpolated":
        # y = [a (B*n), a_theta (p), a_t (1)]
        def fun_backward(t, y, out):
            kernels.adjoint(t, dense.at(t, z_buf), y, out)

        jac_backward = _interpolated_jacobian(fld, theta, B, n, p, method, z_of) if implicit else None
        size = Bn + p + 1
        groups = (Bn, p, 1)  # the mixed error norm's groups (in-house methods)
        atol_b = atol_a
    elif mode == "quadrature":
        products = np.empty(Bn + p + 1)  # [a_z, a_theta, a_t]: only a_z is integrated

        # y = a (B*n)
        if kernels.adjoint_a is not None:

            def fun_backward(t, y, out):
                kernels.adjoint_a(t, dense.at(t, z_buf), y, out)

        else:  # the fused kernel of all products (generated for ODESystem; the sums are cheap there)

            def fun_backward(t, y, out):
                kernels.adjoint(t, dense.at(t, z_buf), y, products)
                out[:] = products[:Bn]

        jac_backward = _quadrature_jacobian(fld, theta, B, n, method, z_of) if implicit else None
        size = Bn
        groups = None
        atol_b = atol_a
    else:
        # y = [z (B*n), a (B*n), a_theta (p), a_t (1)]
        fun_backward = kernels.backward
        jac_backward = _backsolve_jacobian(fld, theta, B, n, p, method) if implicit else None
        size = 2 * Bn + p + 1
        groups = (Bn, Bn, p, 1)
        atol_b = np.concatenate([np.broadcast_to(atol_z, (Bn,)), np.full(Bn + p + 1, atol_a)])
    return fun_backward, jac_backward, size, groups, atol_b


def _observation_time_gradients(fld, theta, zs, ts, g):
    """dL/dt_i = g_i . f(z(t_i), t_i) for every row: one evaluation of f at all states, shape (T,)."""
    T, B, n = zs.shape
    if T == 0:
        return np.zeros(0)
    f = fld.eval_f_at(zs.reshape(T * B, n), np.repeat(ts, B), theta).reshape(T, B * n)
    return np.einsum("ij,ij->i", g.reshape(T, B * n), f)


def _quadrature_jacobian(fld, theta, B, n, method, z_of):
    """Jacobian of a' = -f_z^T a (block diagonal) with z from the dense output; None without field Jacobians."""
    if not fld.has_jacobians:
        return None
    asm = BlockJacobian(B * n, B, dense=(method == "LSODA"))
    asm.diag(0, 0, n, n)
    asm.finish()

    def jac(t, y):
        return asm.build(-np.swapaxes(fld.eval_jac_z(z_of(t), t, theta), 1, 2))

    return jac


def _interpolated_jacobian(fld, theta, B, n, p, method, z_of):
    """Jacobian of [a, a_theta, a_t]' with z from the dense output; None without field Jacobians."""
    if not fld.has_jacobians:
        return None
    size = B * n + p + 1
    asm = BlockJacobian(size, B, dense=(method == "LSODA"))
    asm.diag(0, 0, n, n)  # d(da)/da = -f_z^T
    asm.row(B * n, 0, p, n)  # d(da_theta)/da = -f_theta^T
    asm.row(B * n + p, 0, 1, n)  # d(da_t)/da = -f_t^T
    asm.finish()

    def jac(t, y):
        fz, fth, ft = fld.eval_jacobians(z_of(t), t, theta)
        return asm.build(
            -np.swapaxes(fz, 1, 2),
            -np.swapaxes(fth, 1, 2),
            -ft[:, None, :],
        )

    return jac


def _backsolve_jacobian(fld, theta, B, n, p, method):
    """Jacobian of [z, a, a_theta, a_t]'; None without field Jacobians."""
    if not fld.has_jacobians:
        return None
    Bn = B * n
    size = 2 * Bn + p + 1
    asm = BlockJacobian(size, B, dense=(method == "LSODA"))
    asm.diag(0, 0, n, n)  # dz'/dz = f_z
    asm.diag(Bn, 0, n, n)  # da'/dz = -a_zz
    asm.diag(Bn, Bn, n, n)  # da'/da = -f_z^T
    asm.row(2 * Bn, 0, p, n)  # da_theta'/dz
    asm.row(2 * Bn, Bn, p, n)  # da_theta'/da = -f_theta^T
    asm.row(2 * Bn + p, 0, 1, n)  # da_t'/dz
    asm.row(2 * Bn + p, Bn, 1, n)  # da_t'/da = -f_t^T
    asm.finish()

    def jac(t, y):
        z = y[:Bn].reshape(B, n)
        a = y[Bn : 2 * Bn].reshape(B, n)
        fz, azz, athz, atz = fld.eval_backward_jac(z, a, t, theta)
        _, fth, ft = fld.eval_jacobians(z, t, theta)
        return asm.build(
            fz,
            -azz,
            -np.swapaxes(fz, 1, 2),
            -athz,
            -np.swapaxes(fth, 1, 2),
            -atz,
            -ft[:, None, :],
        )

    return jac
