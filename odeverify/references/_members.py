"""Many perturbed copies of one problem, solved as one batch that shares every step.

A *member* is a whole copy of the problem's B-sample batch (the loss may couple
samples) with its own z0, times and theta. All members are stacked into one
state and integrated together, so every member takes the same accepted steps:
the loss of each member is then the same smooth discrete map of its inputs,
and differences between members carry no step-selection noise.

Perturbed times are handled by a common variable tau on the problem's own grid
``ts``: on interval i, member m's time is the affine map of ``[ts_i, ts_i+1]``
onto ``[ts_m,i, ts_m,i+1]``, and dz/dtau = c_m,i f(z, t_m(tau), theta_m) with
c_m,i the map's slope. The map has a kink at every ts_i, so the solve restarts
there; the observations are the states at the ends of the intervals. A batch
whose members all keep the problem's times is one solve over the whole span,
observed on the steps' dense output.
"""

from __future__ import annotations

import numpy as np

from .._integrate import integrate_span
from .._loss import loss_value
from ..errors import IntegrationError

__all__ = ["flat_inputs", "split_inputs", "member_states", "member_losses"]


def flat_inputs(problem):
    """The problem's inputs as one vector ``[z0 (B*n), theta (p), ts (T)]``."""
    return np.concatenate([problem.z0.ravel(), problem.theta, problem.ts])


def split_inputs(problem, X):
    """Members' flat inputs ``X`` (M, B*n + p + T) as ``z0s (M, B, n), thetas (M, p), tss (M, T)``."""
    B, n, p = problem.B, problem.n, problem.p
    Bn = B * n
    return X[:, :Bn].reshape(-1, B, n), X[:, Bn : Bn + p], X[:, Bn + p :].real


def member_states(problem, X, *, rtol, method="DOP853"):
    """States of every member at its observation times, from one batched solve.

    Parameters
    ----------
    problem : Problem
    X : ndarray, shape (M, B*n + p + T), real or complex
        The members' inputs (see :func:`flat_inputs`); complex z0 and theta
        give a complex solve (the complex step). Times are real.
    rtol : float
        Relative and absolute tolerance of the solve.
    method : str

    Returns
    -------
    zs : ndarray, shape (M, T, B, n)
    nsteps : int
        Accepted steps over all intervals.
    """
    z0s, thetas, tss = split_inputs(problem, X)
    M, B, n = z0s.shape
    ts = problem.ts
    is_complex = np.iscomplexobj(X)
    each = problem.field.eval_f_each_complex if is_complex else problem.field.eval_f_each
    theta_arg = thetas[0] if np.all(thetas == thetas[0]) else thetas
    zs = np.empty((M, len(ts), B, n), dtype=X.dtype)
    zs[:, 0] = z0s
    size = M * B * n
    nsteps = 0
    # members on the problem's own times: one solve, observed on the steps' dense output
    spans = [(0, len(ts) - 1)] if np.all(tss == ts) else [(i, i + 1) for i in range(len(ts) - 1)]
    for i, end in spans:
        slope = (tss[:, i + 1] - tss[:, i]) / (ts[i + 1] - ts[i])  # (M,)
        shared_time = bool(np.all(slope == 1.0) and np.all(tss[:, i] == ts[i]))
        offset = tss[:, i] - slope * ts[i]

        def fun(tau, y, slope=slope, offset=offset, shared_time=shared_time):
            t = tau if shared_time else offset + slope * tau
            z = (y[:size] + 1j * y[size:]) if is_complex else y
            dz = each(z.reshape(M, B, n), t, theta_arg)
            if dz is None:
                raise IntegrationError("the vector field has no complex evaluation")
            if not shared_time:
                dz = dz * slope[:, None, None]
            return np.concatenate([dz.real.ravel(), dz.imag.ravel()]) if is_complex else dz.reshape(-1)

        # a complex state is solved as its real and imaginary parts: SciPy's complex arithmetic in the error
        # norm is slow, and the imaginary parts (1e-30 times a sensitivity) do not move the steps either way
        y0 = zs[:, i].reshape(-1)
        y0 = np.concatenate([y0.real, y0.imag]) if is_complex else y0
        span = integrate_span(
            fun, float(ts[i]), float(ts[end]), y0, method=method, rtol=rtol, atol=rtol, t_out=ts[i + 1 : end + 1],
            what=f"batched solve of {M} perturbed copies over [{float(ts[i])!r}, {float(ts[end])!r}]",
        )
        y_at = (span.y_at[:, :size] + 1j * span.y_at[:, size:]) if is_complex else span.y_at
        zs[:, i + 1 : end + 1] = np.swapaxes(y_at.reshape(end - i, M, B, n), 0, 1)
        nsteps += span.nsteps
    return zs, nsteps


def member_losses(problem, X, *, rtol, method="DOP853", groups=None):
    """The loss of every member; on a failed batch, of each group of members alone.

    Parameters
    ----------
    problem : Problem
    X : ndarray, shape (M, B*n + p + T)
    rtol : float
    method : str
    groups : list of index arrays, optional
        Members that must share steps with each other (e.g. the two sides of
        a central difference). When the whole batch fails (a member with a
        large perturbation blows up), each group is solved as its own batch
        and the members of a group that fails too are NaN. Without groups a
        failure is raised.

    Returns
    -------
    L : ndarray, shape (M,)
        Real, or complex for complex ``X`` (the raw loss of complex states).
    nsteps : int
        Steps of the whole batch (the largest over the groups after a failure).
    split : bool
        True when the batch failed and the groups were solved separately.
    zs0 : ndarray, shape (T, B, n)
        The (real part of the) states of member 0.
    """
    try:
        zs, nsteps = member_states(problem, X, rtol=rtol, method=method)
        return _losses(problem, zs), nsteps, False, zs[0].real
    except IntegrationError:
        if groups is None:
            raise
    L = np.full(len(X), np.nan, dtype=complex if np.iscomplexobj(X) else float)
    nsteps, zs0 = 0, None
    for g in groups:
        try:
            zs, k = member_states(problem, X[g], rtol=rtol, method=method)
        except IntegrationError:
            continue
        L[g] = _losses(problem, zs)
        nsteps = max(nsteps, k)
        if g[0] == 0:
            zs0 = zs[0].real
    if zs0 is None:
        raise IntegrationError("every group of the batched solve failed, the unperturbed problem too")
    return L, nsteps, True, zs0


def _losses(problem, zs):
    if np.iscomplexobj(zs):
        return np.array([complex(np.asarray(problem.loss(problem.user_states(z)))) for z in zs])
    return np.array([loss_value(problem.loss, problem.user_states(z)) for z in zs])
