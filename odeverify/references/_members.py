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

Switches in the state (events: ``heaviside(c - x)``) are located per member:
each member's own event-locating solve gives its crossings (its *event
structure*), which become nodes of its time map like switch times; in the
batched solve the members of one structure then cross together, within the
solver's error, at each common event node. There each member's crossing is
found again by root finding on the batch's own dense output (so the crossing
time is a smooth function of the member's inputs, not of its separate solve's
steps) and the member restarts from it on its next branch. Only values of f and
of the conditions are used, never a derivative or a saltation term.
"""

from __future__ import annotations

import numpy as np

from .._integrate import branch_margin, integrate_span
from .._loss import loss_value
from ..errors import IntegrationError
from ._base import SwitchLayout, event_support, snap_to

__all__ = ["flat_inputs", "split_inputs", "member_states", "member_losses", "switch_structures", "event_structures",
           "locates_events"]

#: how far (relative to the span) a batch solve runs on past a common event node, for the members that cross later
_EVENT_OVERSHOOT = 1e-6


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


def locates_events(problem):
    """Whether the members' solves locate events (f jumps on the state, B = 1, no switches in t)."""
    has_events, why_not = event_support(problem.field, problem.B, problem.theta, problem.ts)
    return has_events and why_not is None


def event_structures(problem, X, *, rtol, method="DOP853"):
    """Every member's events among its observation times, from its own event-locating solve.

    Parameters
    ----------
    problem : Problem
        With B = 1 and state events (:func:`locates_events`).
    X : ndarray, shape (M, n + p + T)
    rtol : float
    method : str

    Returns
    -------
    keys : list of tuple, length M
        Member m's *event structure*: its first branch and, for each crossing
        in integration order, the branch after it and where the crossing lies
        (``("on", i)`` within rounding of observation time i, ``("in", i)``
        between observations i and i + 1); ``("failed", why)`` when its solve
        failed (grazing, chattering). Members with equal keys can share one
        common time variable.
    nodes, kinds : list of ndarray, length M
        As for :func:`switch_structures`; crossings off the observation times are nodes of kind -1.
    signs : list of list of tuple, length M
        The branch of each piece between consecutive nodes.

    Each member's structure is cached on ``problem`` (the tolerance studies
    and the step ladders ask again for the same members).
    """
    cache = problem.__dict__.setdefault("_event_structures", {})
    z0s, thetas, tss = split_inputs(problem, X)
    out = ([], [], [], [])
    for m in range(X.shape[0]):
        tag = (np.asarray(X[m].real).tobytes(), float(rtol), method)
        if tag not in cache:
            cache[tag] = _event_structure(problem.field, z0s[m, 0].real, thetas[m].real, tss[m], rtol, method)
        for lst, item in zip(out, cache[tag]):
            lst.append(item)
    return out


def _event_structure(fld, z0, theta, ts, rtol, method):
    """One member's (key, nodes, kinds, signs) from :func:`~odeverify._events.integrate_events`."""
    from .._events import integrate_events

    T = len(ts)
    try:
        sol = integrate_events(fld, theta, float(ts[0]), float(ts[-1]), z0, method=method, rtol=rtol, atol=rtol,
                               what="event-locating solve of a perturbed copy")
    except IntegrationError as exc:
        return ("failed", str(exc)), ts, np.arange(T), None
    direction = 1.0 if ts[-1] >= ts[0] else -1.0
    times = np.array([e.time for e in sol.events], dtype=float)
    on_obs = snap_to(times, ts)  # (snaps times onto those observation times)
    crossings = []
    for j, tau in enumerate(times):
        where = ("on", int(on_obs[j])) if on_obs[j] >= 0 else \
            ("in", int(np.searchsorted(direction * ts, direction * tau)) - 1)
        crossings.append((sol.segments[j + 1].signs, where))
    off = times[on_obs < 0]
    all_nodes = np.concatenate([ts, off])
    kind = np.concatenate([np.arange(T), np.full(off.size, -1)])
    order = np.argsort(direction * all_nodes, kind="stable")
    all_nodes, kind = all_nodes[order], kind[order]
    # the branch of the piece after node j: the segment after every crossing at or before it
    passed = [int(np.sum(direction * (times - node) <= 0)) for node in all_nodes[:-1]]
    signs = [sol.segments[k].signs for k in passed]
    return ("events", sol.segments[0].signs, tuple(crossings)), all_nodes, kind, signs


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
    events = locates_events(problem)
    if events and np.iscomplexobj(X):
        raise IntegrationError("the complex step is not available where f jumps on the state (events)")
    if events:
        keys, nodes, kinds, signs = event_structures(problem, X, rtol=rtol, method=method)
    else:
        (keys, nodes, kinds), signs = switch_structures(problem, X), [None] * X.shape[0]
    M = X.shape[0]
    zs = np.empty((M, len(problem.ts), problem.B, problem.n), dtype=X.dtype)
    nsteps = 0
    groups = {}
    for m, key in enumerate(keys):
        groups.setdefault(key, []).append(m)
    for key, members in groups.items():
        members = np.asarray(members)
        if key and key[0] == "failed":
            zs[members] = np.nan
            continue
        zs[members], k = _group_states(problem, X[members], [nodes[m] for m in members], kinds[members[0]],
                                       rtol=rtol, method=method, signs=signs[members[0]])
        nsteps += k
    return zs, nsteps


def _group_states(problem, X, nodes, kind, *, rtol, method, signs=None):
    """:func:`member_states` for members of one switch structure (``nodes`` of equal length, common ``kind``).

    ``signs`` (events): the branch of each piece between nodes; a node of kind
    -1 is then a crossing, found again for each member on the batch's dense
    output (:func:`_recross`). Members whose crossing is not found there are NaN.
    """
    z0s, thetas, _ = split_inputs(problem, X)
    M, B, n = z0s.shape
    common = nodes[0]
    N = np.stack(nodes).astype(float)  # (M, nodes); event nodes are moved to the crossings found
    events = signs is not None
    lost = np.zeros(M, dtype=bool)
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
    shared = bool(np.all(N == common)) and not events
    cuts = [0, *np.flatnonzero(switch_at), len(common) - 1] if shared else range(len(common))
    cuts = sorted(set(cuts))
    y = np.concatenate([z0s.reshape(-1).real, z0s.reshape(-1).imag]) if is_complex else z0s.reshape(-1)
    for i, end in zip(cuts[:-1], cuts[1:]):
        slope = (N[:, end] - N[:, i]) / (common[end] - common[i]) if not shared else np.ones(M)
        offset = N[:, i] - slope * common[i]
        lo, hi = np.minimum(N[:, i], N[:, end]), np.maximum(N[:, i], N[:, end])
        clamp = bool(switch_at[i] or switch_at[end]) and not events
        if events:
            each = problem.field.branch(signs[i]).eval_f_each
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
        crossing = events and switch_at[end]
        stop = float(common[end])
        if crossing:  # on past the node for the members that cross a little later (the old branch is smooth)
            stop += np.sign(common[end] - common[i]) * _EVENT_OVERSHOOT * abs(float(common[-1] - common[0]))
        span = integrate_span(
            fun, float(common[i]), stop, y, method=method, rtol=rtol, atol=rtol, t_out=common[inside],
            dense=bool(crossing),
            what=f"batched solve of {M} perturbed copies over [{float(common[i])!r}, {float(common[end])!r}]",
        )
        y = span.y_end
        if crossing:
            s_cross, found = _recross(problem.field.state_conditions, span.dense, offset, slope, thetas,
                                      signs[i], signs[end], n)
            lost |= ~found
            s_cross = np.where(found, s_cross, float(common[end]))
            y = np.concatenate([span.dense.at(sc).reshape(M, n)[m] for m, sc in enumerate(s_cross)])
            N[:, end] = offset + slope * s_cross
        y_at = (span.y_at[:, :size] + 1j * span.y_at[:, size:]) if is_complex else span.y_at
        if inside:
            zs[:, kind[inside]] = np.swapaxes(y_at.reshape(len(inside), M, B, n), 0, 1)
        nsteps += span.nsteps
    zs[lost] = np.nan
    return zs, nsteps


def _recross(cond, dense, offset, slope, thetas, before, after, n):
    """Each member's crossing on the batch's dense output: the common time ``s`` where it leaves ``before``.

    Member m's state is its block of the dense output and its time
    ``offset[m] + slope[m] s``; the first sign change of a condition against
    ``before`` is located by Brent's method in the step that holds it. A
    member is *found* when the conditions that change there are the ones
    ``before -> after`` flips.

    Returns
    -------
    s : ndarray, shape (M,)
    found : ndarray of bool, shape (M,)
    """
    from scipy.optimize import brentq

    st = np.asarray(dense.step_times, dtype=float)
    M = offset.size
    Z = dense.at_many(st).reshape(st.size, M, n)
    sgn = np.asarray(before, dtype=float)
    flips = {i for i, (a, b) in enumerate(zip(before, after)) if a != b}
    s_out, found = np.full(M, np.nan), np.zeros(M, dtype=bool)
    eps = np.finfo(float).eps
    for m in range(M):
        def g(s, i, m=m):
            z = dense.at(s).reshape(M, n)[m]
            return float(cond.values(z[None], np.array([offset[m] + slope[m] * s]), thetas[m])[0, i]) * sgn[i]

        G = cond.values(Z[:, m], offset[m] + slope[m] * st, thetas[m]) * sgn  # (k, conditions), > 0 before
        wrong = np.flatnonzero(np.any(G[1:] < 0, axis=1))
        if not wrong.size:
            continue
        j = int(wrong[0]) + 1
        lo, hi = float(st[j - 1]), float(st[j])
        xtol = 4 * eps * max(abs(lo), abs(hi), 1e-300)
        roots = {int(i): (lo if G[j - 1, i] <= 0 else brentq(g, lo, hi, args=(int(i),), xtol=xtol, rtol=4 * eps))
                 for i in np.flatnonzero(G[j] < 0)}
        direction = 1.0 if st[-1] >= st[0] else -1.0
        s_m = min(roots.values(), key=lambda r: direction * r)
        crossed = {i for i, r in roots.items() if abs(r - s_m) <= 64 * xtol}
        s_out[m], found[m] = s_m, crossed == flips
    return s_out, found


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
