"""Switches in t (``heaviside(t - s)``, ...) in an adjoint solve: where both sweeps stop, and the jump terms.

:class:`_SwitchPlan` places the switch times among the observation times,
runs the backward sweep stopped at every switch, and adds the terms a jump
of f at a moving switch time contributes to dL/dtheta and dL/dt_0 (or both
one-sided values where a jump falls on an observation time). Used by
:mod:`odeverify._adjoint`; imports nothing of the adjoint modules.
"""

from __future__ import annotations

import numpy as np

from ._integrate import branch_margin, integrate_intervals, integrate_span, join_dense, on_branch, switch_segments


def _switch_plan(fld, theta, ts):
    """The :class:`_SwitchPlan` of the switch times in t between ``ts[0]`` and ``ts[-1]``; None without any."""
    switches = fld.switch_times(theta, ts[0], ts[-1]) if fld.discontinuities else None
    return _SwitchPlan(ts, switches) if switches is not None and len(switches) else None


class _SwitchPlan:
    """The switch times of one adjoint solve among its observation times, and the jump terms there.

    The nodes of both sweeps are the observation times ``ts`` and the switch
    times between them (a switch within a few rounding errors of an
    observation time is that time). With f_b and f_a the values of f just
    before and just after a switch time tau *in the order of integration* and
    a(tau) the adjoint there (after the jumps of later observations), moving
    tau by d tau changes the state after it by (f_b - f_a) d tau (in both
    directions of time: for t1 < t0, f_b is f(tau^+)), so

    * dL/dtheta gains a(tau)^T (f_b - f_a) d tau / d theta;
    * a_t (dL/dt_0) gains a(tau)^T (f_a - f_b): the integral of a^T df/dt
      across tau, whose DiracDelta the kernels evaluate as 0.

    A jump on an observation time t_i is not differentiable in tau: moving tau
    later (in integration order) acts after t_i, through a(t_i^+) (the adjoint
    before g_i is added), moving it earlier also changes z(t_i), through
    a(t_i^+) + g_i (at t_0: through a(t_0^+) and 0). Those entries get both
    one-sided values. There a_t jumps by -g_i . f_b, consistently with
    a(t_i^+) in its switch term (the sum telescopes to -a(t_0^+) . f(z_0, t_0)).
    """

    def __init__(self, ts, switches):
        self.ts = ts
        self.switches = switches
        T = len(ts)
        self.direction = 1.0 if ts[-1] >= ts[0] else -1.0
        snap = 8 * np.finfo(float).eps * max(float(np.max(np.abs(ts))), abs(float(ts[-1] - ts[0])))
        tau = switches.times.astype(float).copy()
        self.obs_of = np.full(tau.size, -1)  # the observation time each switch falls on, or -1
        for j, t in enumerate(tau):
            near = np.flatnonzero(np.abs(ts - t) <= snap)
            if near.size:
                self.obs_of[j] = near[0]
                tau[j] = ts[near[0]]
        self.tau = tau
        extra = tau[self.obs_of < 0]
        nodes = np.concatenate([ts, extra])
        order = np.argsort(self.direction * nodes, kind="stable")
        self.nodes = nodes[order]
        position = np.empty(nodes.size, dtype=int)
        position[order] = np.arange(nodes.size)
        self.obs = position[:T]  # node index of each observation time
        self.sw_node = np.where(self.obs_of >= 0, self.obs[np.maximum(self.obs_of, 0)], 0)
        self.sw_node[self.obs_of < 0] = position[T:]
        self.inner = tau  # integrate_segments splits at those strictly inside
        self.delta = branch_margin(ts[0], ts[-1])
        first = switch_segments(float(ts[0]), float(ts[-1]), tau)[0]
        self.first_time = first[2] if self.direction > 0 else first[3]

    def __bool__(self):
        return True

    def one_sided_f(self, f, z_nodes, Bn):
        """f just before and just after each switch time (integration order) at z there, each (k, Bn)."""
        k = self.tau.size
        before, after = np.empty((k, Bn)), np.empty((k, Bn))
        for j in range(k):
            z = z_nodes[self.sw_node[j]]
            f(self.tau[j] - self.direction * self.delta, z, before[j])
            f(self.tau[j] + self.direction * self.delta, z, after[j])
        return before, after

    def observation_jumps(self, t_grad, g, f_before):
        """The jumps of a_t at the observation times, ``g_i . f_b`` where a jump falls on t_i, shape (T,)."""
        t_jump = t_grad.copy()
        for j, i in enumerate(self.obs_of):
            if i >= 1 and self.switches.jump[j]:
                t_jump[i] = float(np.dot(g[i], f_before[j]))
        return t_jump

    def backward_sweep(self, fun, keep, add, z_nodes, *, method, rtol, atol, jac, max_steps, groups, dense):
        """:func:`integrate_intervals` over the observation intervals, stopped at every switch time.

        ``add`` holds the observation jumps as for the sweep without switches;
        ``z_nodes`` (backsolve mode) restarts z from the forward state at every
        node. Each piece between switch times is one call, with f evaluated
        on its branch.

        Returns
        -------
        Y_end : ndarray, shape (T - 1, size)
            At the ends of the observation intervals, as :func:`integrate_intervals`.
        stats : dict
        dense_output : StepwiseDenseOutput or None
        Y_nodes : ndarray, shape (nodes - 1, size)
            At the end of every interval between consecutive nodes (backward order).
        """
        T, M = len(self.ts), self.nodes.size
        nodes_b = self.nodes[::-1]
        size = add.shape[1]
        add_full = np.zeros((M - 1, size))
        for i in range(1, T):  # the interval starting at observation i
            add_full[M - 1 - self.obs[i]] = add[T - 1 - i]
        if z_nodes is not None:
            Bn = z_nodes.shape[1]
            add_full[:, :Bn] = z_nodes[::-1][: M - 1]
        cuts = sorted({0, M - 1, *(M - 1 - int(m) for m in self.sw_node)})
        Y_nodes = np.empty((M - 1, size))
        stats = {"nfev": 0, "njev": 0, "nlu": 0, "nsteps": 0}
        parts = []
        for k0, k1 in zip(cuts[:-1], cuts[1:]):
            times = nodes_b[k0 : k1 + 1]
            start = add_full[k0:k1].copy()
            if k0 > 0:
                start[0] += keep * Y_nodes[k0 - 1]
            lo, hi = _clamp_range(float(times[0]), float(times[-1]), self.delta)
            out = integrate_intervals(
                on_branch(fun, lo, hi), times, keep, start, method=method, rtol=rtol, atol=atol,
                jac=None if jac is None else on_branch(jac, lo, hi), max_steps=max_steps, groups=groups, dense=dense,
                what=lambda k, times=times: f"backward (adjoint) solve over [{float(times[k + 1])!r}, {float(times[k])!r}]",
            )
            Y_nodes[k0:k1] = out[0]
            for key in stats:
                stats[key] += out[1][key]
            if dense:
                parts.append(out[2])
        Y_end = Y_nodes[M - 1 - self.obs[T - 2 :: -1] - 1] if T >= 2 else np.zeros((0, size))
        return Y_end, stats, (join_dense(parts) if dense else None), Y_nodes

    def add_jump_terms(self, a_theta, a_t, t_grad, Y_nodes, a_off, Bn, g, a_plus, f_before, f_after):
        """dL/dtheta and a_t with the jump terms; ``{name: (left, right)}`` where a jump is on an observation time."""
        M = self.nodes.size
        a_theta = np.array(a_theta, dtype=float)
        st = self.switches
        pending = {}  # theta entry -> [left, right] terms of jumps on observation times
        one_sided = {}
        for j in range(self.tau.size):
            J = f_before[j] - f_after[j]
            if not st.jump[j] or not np.any(J):
                continue
            pb = M - 1 - int(self.sw_node[j])  # node position in backward order
            a_sw = np.zeros(Bn) if pb == 0 else Y_nodes[pb - 1, a_off : a_off + Bn]
            i = int(self.obs_of[j])
            dtau = st.dtheta[j]
            if i != 0:
                a_t -= float(np.dot(a_sw, J))  # a_t gains a^T (f_a - f_b)
            if i < 0:
                a_theta += float(np.dot(a_sw, J)) * dtau
                continue
            later = float(np.dot(a_plus if i == 0 else a_sw, J))
            earlier = 0.0 if i == 0 else float(np.dot(a_sw + g[i], J))
            for q in np.flatnonzero(dtau != 0):
                up_is_later = self.direction * dtau[q] > 0
                terms = pending.setdefault(int(q), [0.0, 0.0])
                terms[0] += (earlier if up_is_later else later) * dtau[q]
                terms[1] += (later if up_is_later else earlier) * dtau[q]
            f_lo, f_hi = (f_before[j], f_after[j]) if self.direction > 0 else (f_after[j], f_before[j])
            w = -a_plus if i == 0 else g[i]
            one_sided[f"t[{i}]"] = (float(np.dot(w, f_lo)), float(np.dot(w, f_hi)))
        for q, (left, right) in sorted(pending.items()):
            one_sided[f"theta[{q}]"] = (float(a_theta[q] + left), float(a_theta[q] + right))
        return a_theta, a_t, one_sided


def _clamp_range(a, b, delta):
    """[lo, hi]: the piece a -> b shrunk by delta at each end (to its midpoint when shorter)."""
    lo, hi, mid = min(a, b), max(a, b), 0.5 * (a + b)
    return min(lo + delta, mid), max(hi - delta, mid)


def _span(fun, t_start, t_end, y0, switch_times, **kwargs):
    """:func:`integrate_span` with the signature of :func:`integrate_segments` (no switch times)."""
    return integrate_span(fun, t_start, t_end, y0, **kwargs)
