"""Quadrature mode's parameter integrals: dL/dtheta and the a^T df/dt integral by Gauss–Legendre quadrature.

In ``mode='quadrature'`` the backward sweep integrates a alone; afterwards
dL/dtheta = -int a^T f_theta dt and the integral part of dL/dt_0 come from
quadrature on the pieces between the steps of both solves (SciMLSensitivity's
QuadratureAdjoint / GaussAdjoint). Used by :mod:`odeverify._adjoint` and
:mod:`odeverify._adjoint_events`; imports nothing of the adjoint modules.
"""

from __future__ import annotations

import numpy as np

__all__ = ["METHOD_ORDERS", "QUADRATURE_CHUNK", "gauss_legendre_nodes"]


#: the order of each method's steps (the highest for the variable-order BDF and LSODA)
METHOD_ORDERS = {"RK23": 3, "RK45": 5, "dopri5": 5, "tsit5": 5, "DOP853": 8, "Radau": 5, "BDF": 5, "LSODA": 12}

#: samples (nodes times B) of one quadrature kernel call: bounds the temporaries of the field (an MLP
#: keeps a few (samples, width) arrays), so that they do not grow with the number of steps
QUADRATURE_CHUNK = 512


def gauss_legendre_nodes(method):
    """Gauss–Legendre nodes and weights on [0, 1] for the accepted steps of ``method``.

    A G-point rule integrates polynomials of degree 2G - 1 exactly, so on a
    step of length h its error is O(h^(2G + 1)). With G = ceil(q / 2) + 1
    for a method of order q that is O(h^(q + 3)): two orders below the step's
    own local error O(h^(q + 1)), so the quadrature never dominates (3 nodes
    for RK23, 4 for the 5th-order methods, 5 for DOP853, 7 for LSODA).

    Returns
    -------
    x, w : ndarray, shape (G,)
        Nodes in (0, 1) and weights summing to 1.
    """
    G = -(-METHOD_ORDERS[method] // 2) + 1
    x, w = np.polynomial.legendre.leggauss(G)
    return (x + 1.0) / 2.0, w / 2.0


def _parameter_and_time_integrals(fld, theta, z_dense, a_dense, method, B, n):
    r"""Quadrature mode: ``a_theta(t_0) = -\int a^T f_theta dt`` and the integral part of ``a_t(t_0)``.

    The integrals run along the backward solve, from ``ts[-1]`` to ``ts[0]``,
    by Gauss–Legendre quadrature on every piece between consecutive step
    boundaries of the backward *and* the forward solve: on a piece both a
    (backward dense output) and z (forward dense output) are one polynomial,
    and the pieces are as fine as either solve needed. (The backward steps
    alone are not enough: where a is constant, as between observation times
    of a linear loss on dx/dt = k sin(w t), they span many periods of f.) On
    a piece of signed length h the contribution is ``-h sum_g w_g a(t_g)^T
    f_theta(z(t_g), t_g)``; as the products are linear in a, a is weighted by
    ``-h w_g`` and every node of every piece (and sample) goes into one
    kernel call (in chunks of :data:`QUADRATURE_CHUNK` samples).

    Returns
    -------
    a_theta : ndarray, shape (p,)
    a_t : float
        Without the jumps at the observation times.
    nodes : int
        Quadrature nodes evaluated (per sample).
    """
    x, w = gauss_legendre_nodes(method)
    tb = a_dense.step_times  # backward order
    tf = z_dense.step_times
    lo_t, hi_t = min(tb[0], tb[-1]), max(tb[0], tb[-1])
    grid = np.unique(np.concatenate([tb, tf[(tf > lo_t) & (tf < hi_t)]]))  # ascending
    if tb[-1] < tb[0]:
        grid = grid[::-1]
    h = np.diff(grid)
    nodes = (grid[:-1, None] + h[:, None] * x).reshape(-1)  # (N G,): piece-major
    weights = (-h[:, None] * w).reshape(-1)
    a_theta = np.zeros(fld.n_params)
    a_t = 0.0
    per_call = max(1, QUADRATURE_CHUNK // B)  # nodes per kernel call
    for lo in range(0, nodes.size, per_call):
        t = nodes[lo : lo + per_call]
        a = a_dense.at_many(t) * weights[lo : lo + per_call, None]  # (k, B n)
        z = z_dense.at_many(t)
        _, ath, at = fld.eval_vjp_at(a.reshape(-1, n), z.reshape(-1, n), np.repeat(t, B), theta)
        a_theta += ath
        a_t += at
    return a_theta, float(a_t), int(nodes.size)
