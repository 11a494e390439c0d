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

Switch times in t (``heaviside(t - s)``; each member has its own, from its
theta) are nodes of the same map: the solve restarts there too and evaluates f
on each member's branch, so no step chases a jump and the members still share
every step (see :func:`member_states`).
"""

from __future__ import annotations

import numpy as np

from .._integrate import branch_margin, integrate_span
from .._loss import loss_value
from ..errors import IntegrationError
from ._base import SwitchLayout

__all__ = ["flat_inputs", "split_inputs", "member_states", "member_losses", "switch_structures"]


def flat_inputs(problem):
    """The problem's inputs as one vector ``[z0 (B*n), theta (p), ts (T)]``."""
    return np.concatenate([problem.z0.ravel(), problem.theta, problem.ts])


def split_inputs(problem, X):
    """Members' flat inputs ``X`` (M, B*n + p + T) as ``z0s (M, B, n), thetas (M, p), tss (M, T)``."""
    B, n, p = problem.B, problem.n, problem.p
    Bn = B * n
    return X[:, :Bn].reshape(-1, B, n), X[:, Bn : Bn + p], X[:, Bn + p :].real


def switch_structures(problem, X):
    """Every member's switch times among its observation times, and its nodes.

    Parameters
    ----------
    problem : Problem
    X : ndarray, shape (M, B*n + p + T)

    Returns
    -------
    keys : list of tuple, length M
        Member m's *switch structure*: for each of its switch times in t (in
        integration order) the condition it comes from, whether f jumps there,
        and where it lies: ``("on", i)`` on observation time i (within a few
        rounding errors), ``("in", i)`` strictly between observations i and
        i + 1. Members with equal keys can share one common time variable.
    nodes : list of ndarray, length M
        Member m's observation times and its switch times off them, in
        integration order.
    kinds : list of ndarray of int, length M
        Per node: the observation index (>= 0), or -1 for a switch time.
    """
    _, thetas, tss = split_inputs(problem, X)
    fld = problem.field
    keys, nodes, kinds = [], [], []
    for theta, ts in zip(thetas.real, tss):
        layout = SwitchLayout(fld, theta, ts) if fld.discontinuities else None
        if layout is None or not len(layout):
            keys.append(())
            nodes.append(ts)
            kinds.append(np.arange(len(ts)))
            continue
        direction = layout.direction
        key = []
        for j, tau in enumerate(layout.times):
            i = int(layout.on_obs[j])
            where = ("on", i) if i >= 0 else ("in", int(np.searchsorted(direction * ts, direction * tau)) - 1)
            key.append((int(layout.source[j]), bool(layout.jump[j]), where))
        off = layout.times[layout.on_obs < 0]
        all_nodes = np.concatenate([ts, off])
        kind = np.concatenate([np.arange(len(ts)), np.full(off.size, -1)])
        order = np.argsort(direction * all_nodes, kind="stable")
        keys.append(tuple(key))
        nodes.append(all_nodes[order])
        kinds.append(kind[order])
    return keys, nodes, kinds


def member_states(problem, X, *, rtol, method="DOP853"):
    """States of every member at its observation times, from one batched solve per switch structure.

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
        Accepted steps over all intervals (summed over the batches).

    Notes
    -----
    Where f switches in t (heaviside(t - s)), each member's switch times are
    nodes of its time map, like its observation times: the common variable
    runs over the nodes of the group's first member, every member's time is
    the affine map of each common piece onto its own, and the solve restarts
    at every node, f evaluated on each member's branch (its time clamped into
    its own piece). The members keep sharing every step and no step lands
    near a jump. Members whose switch structure differs (a switch time on the
    other side of an observation time; see :func:`switch_structures`) cannot
    share the map and are solved as separate batches.
    """
    keys, nodes, kinds = switch_structures(problem, X)
    M = X.shape[0]
    zs = np.empty((M, len(problem.ts), problem.B, problem.n), dtype=X.dtype)
    nsteps = 0
    groups = {}
    for m, key in enumerate(keys):
        groups.setdefault(key, []).append(m)
    for members in groups.values():
        members = np.asarray(members)
        zs[members], k = _group_states(problem, X[members], [nodes[m] for m in members], kinds[members[0]],
                                       rtol=rtol, method=method)
        nsteps += k
    return zs, nsteps


def _group_states(problem, X, nodes, kind, *, rtol, method):
    """:func:`member_states` for members of one switch structure (``nodes`` of equal length, common ``kind``)."""
    z0s, thetas, _ = split_inputs(problem, X)
    M, B, n = z0s.shape
    common = nodes[0]
    N = np.stack(nodes)  # (M, nodes)
    is_complex = np.iscomplexobj(X)
    each = problem.field.eval_f_each_complex if is_complex else problem.field.eval_f_each
    theta_arg = thetas[0] if np.all(thetas == thetas[0]) else thetas
    obs = kind >= 0
    zs = np.empty((M, len(problem.ts), B, n), dtype=X.dtype)
    zs[:, 0] = z0s
    size = M * B * n
    nsteps = 0
    switch_at = kind < 0
    delta = np.array([branch_margin(nd[0], nd[-1]) for nd in nodes])
    # members on the group's own times: one solve per piece between switch times, observed on the dense output
    shared = bool(np.all(N == common))
    cuts = [0, *np.flatnonzero(switch_at), len(common) - 1] if shared else range(len(common))
    cuts = sorted(set(cuts))
    y = np.concatenate([z0s.reshape(-1).real, z0s.reshape(-1).imag]) if is_complex else z0s.reshape(-1)
    for i, end in zip(cuts[:-1], cuts[1:]):
        slope = (N[:, end] - N[:, i]) / (common[end] - common[i]) if not shared else np.ones(M)
        offset = N[:, i] - slope * common[i]
        lo, hi = np.minimum(N[:, i], N[:, end]), np.maximum(N[:, i], N[:, end])
        clamp = bool(switch_at[i] or switch_at[end])
        if clamp:  # off a switch time at either end, into the piece (its branch)
            mid = 0.5 * (lo + hi)
            lo, hi = np.minimum(lo + delta, mid), np.maximum(hi - delta, mid)

        def fun(tau, y, slope=slope, offset=offset, lo=lo, hi=hi, clamp=clamp):
            t = tau if shared else offset + slope * tau
            if clamp:
                t = np.clip(t, lo, hi)
                t = float(t[0]) if shared else t
            z = (y[:size] + 1j * y[size:]) if is_complex else y
            dz = each(z.reshape(M, B, n), t, theta_arg)
            if dz is None:
                raise IntegrationError("the vector field has no complex evaluation")
            if not shared:
                dz = dz * slope[:, None, None]
            return np.concatenate([dz.real.ravel(), dz.imag.ravel()]) if is_complex else dz.reshape(-1)

        # a complex state is solved as its real and imaginary parts: SciPy's complex arithmetic in the error
        # norm is slow, and the imaginary parts (1e-30 times a sensitivity) do not move the steps either way
        inside = [k for k in range(i + 1, end + 1) if obs[k]]
        span = integrate_span(
            fun, float(common[i]), float(common[end]), y, method=method, rtol=rtol, atol=rtol,
            t_out=common[inside],
            what=f"batched solve of {M} perturbed copies over [{float(common[i])!r}, {float(common[end])!r}]",
        )
        y = span.y_end
        y_at = (span.y_at[:, :size] + 1j * span.y_at[:, size:]) if is_complex else span.y_at
        if inside:
            zs[:, kind[inside]] = np.swapaxes(y_at.reshape(len(inside), M, B, n), 0, 1)
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
