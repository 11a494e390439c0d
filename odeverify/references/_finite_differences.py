r"""Finite differences of the loss, every perturbation in one batched solve.

See :class:`FiniteDifferences`. The perturbed copies of the problem ("members")
are solved together by :func:`~odeverify.references._members.member_states`,
so they share every accepted step.
"""

from __future__ import annotations

import numpy as np

from .._validate import check_method
from ..errors import IntegrationError
from ._base import GradientEstimate, Reference, SwitchLayout
from ._members import event_structures, flat_inputs, locates_events, member_losses, switch_structures

__all__ = ["FiniteDifferences"]

#: the tolerance factors whose spread estimates the solver's error in a derivative
_LOOSER = (10, 100)


class FiniteDifferences(Reference):
    r"""Finite differences of the loss of tightly solved forward problems.

    For every scalar input x_j (each entry of z0, theta and ts): central
    differences D(h) = (L(x + h e_j) - L(x - h e_j)) / 2h for steps
    h_k = h_0 4^{-k}, combined by Richardson extrapolation R_k = (16 D(h_{k+1})
    - D(h_k)) / 15 (fourth order); the step whose estimate |R_k - R_{k+1}| +
    2 noise / h is smallest is kept. Time steps stay below a quarter of the
    gap to the neighbouring times, so perturbed grids stay monotone.

    All perturbed problems -- every input, sign and step of the ladder, each
    a whole copy of the B-sample batch -- are solved as one batch sharing
    every accepted step (times through a common variable, see
    :mod:`odeverify.references._members`). A difference is then one of the
    same smooth discrete map, so the solver's step selection adds no noise;
    what remains is rounding (``noise``: 16 eps sqrt(steps) times the loss's
    scale |L| + sum |dL/dz||z|) and the difference between the discrete
    map's derivative and the true one, which is not what the step-size
    control watches. That bias is estimated as twice the largest distance to
    the same result from batches at ``10 rtol`` and ``100 rtol`` (a sample
    of the solver's error, not a bound, hence the factor) and added.

    Where the right-hand side is analytic and the loss passes an analyticity
    probe (its complex-step directional derivative matches autograd's),
    z0 and theta use the complex step dL/dx_j = Im L(x + i h e_j) / h with
    h = 1e-30 max(|x_j|, 1), one member per input in one complex batch, exact
    up to the solver's error (estimated the same way from three tolerances).

    Parameters
    ----------
    rtol : float
        Tolerance of the forward solves.
    method : str
        Integrator of the batched solves.
    complex_step : bool or None
        Use the complex step where valid (None: automatically).
    levels : int
        Number of step sizes tried per entry.
    """

    name = "finite differences"

    def __init__(self, *, rtol=1e-12, method="DOP853", complex_step=None, levels=5):
        self.rtol = rtol
        self.method = check_method(method)
        self.complex_step = complex_step
        self.levels = levels

    def __repr__(self):
        return f"FiniteDifferences(rtol={self.rtol:g}, complex_step={self.complex_step})"

    def _compute(self, problem):
        use_cs, why = self._complex_ok(problem)
        notes = [] if use_cs else [f"central differences only: {why}"]
        runs = [self._differences(problem, use_cs, self.rtol * f) for f in (1, *_LOOSER)]
        values, errors, base, split, _ = runs[0]
        left_out = {}
        for r in runs:
            for entry, why in r[4].items():
                left_out.setdefault(entry, why)
        for key in values:
            errors[key] = errors[key] + _spread(values[key], [r[0][key] for r in runs[1:]])
            if use_cs and key != "t":  # exact up to the solver's error: rounding only
                errors[key] = errors[key] + 1e-14 * np.abs(values[key])
        if split:
            notes.append("a batch of perturbed solves failed; each difference was solved as its own batch")
        if len(SwitchLayout(problem.field, problem.theta, problem.ts)):
            notes.append("every perturbed copy stops at its own switch times, mapped onto common nodes")
        if locates_events(problem):
            notes.append("every perturbed copy crosses the state conditions at its own event times (located by its "
                         "own solve, then again on the batch's dense output), mapped onto common nodes")
        for (q, idx), _ in left_out.items():
            values[q][idx] = np.nan
            errors[q][idx] = np.nan
        values = {k: problem.user_z0(v) if k == "z0" else v for k, v in values.items()}
        errors = {k: problem.user_z0(v) if k == "z0" else v for k, v in errors.items()}
        if problem.batched is False:
            left_out = {(q, idx[-1:] if q == "z0" else idx): why for (q, idx), why in left_out.items()}
        return GradientEstimate(
            name=self.name, values=values, errors=errors, loss=base, error_model=_error_model(use_cs), notes=notes,
            left_out=left_out,
        )

    def _differences(self, problem, use_cs, rtol):
        """All differences at one tolerance: z0 and theta in one batch on the problem's times (one solve
        over the whole span), the times in a second (restarted at every observation)."""
        inputs = {"complex": ("z0", "theta")} if use_cs else {"central": ("z0", "theta")}
        values, errors, L, split, out = self._batch(problem, rtol, **inputs)
        v_t, e_t, _, split_t, out_t = self._batch(problem, rtol, central=("t",))
        return {**values, **v_t}, {**errors, **e_t}, L, split or split_t, {**out, **out_t}

    def _batch(self, problem, rtol, central=(), complex=()):
        """Differences for the inputs of the quantities ``central`` and ``complex`` from one batched solve.

        Members: 0 is the problem itself; then, for each input differenced
        centrally and each step h of the ladder, x + h e_j and x - h e_j;
        for the complex step, x + i h e_j for each input (the whole batch
        is then complex).

        Returns
        -------
        values, errors : dict
            Per quantity; ``errors`` without the solver's share (added from
            the spread over tolerances by the caller).
        L : float
            The unperturbed loss.
        split : bool
            Whether the batch failed and was solved in groups.
        left_out : dict
            ``{(quantity, index): reason}`` of the entries no step could difference
            (index as in the (B, n) z0).
        """
        x = flat_inputs(problem)
        layout = SwitchLayout(problem.field, problem.theta, problem.ts)
        events = locates_events(problem)
        event_times = _event_times(problem, rtol, self.method) if events else None
        index, h0 = _inputs(problem, central, self._first_step, layout, event_times)
        steps = h0[:, None] * 4.0 ** -np.arange(self.levels)  # (J, levels)
        X = np.repeat(x[None], 1 + 2 * steps.size, axis=0)
        X[1 + np.arange(2 * steps.size), np.repeat(index, 2 * self.levels)] += np.stack([steps, -steps], -1).ravel()
        groups = [np.array([0, 1 + 2 * m, 2 + 2 * m]) for m in range(steps.size)]
        if complex:
            cs_index, _ = _inputs(problem, complex, self._first_step)
            h_cs = 1e-30 * np.maximum(np.abs(x[cs_index]), 1.0)
            Xc = np.repeat(x[None].astype(np.complex128), len(cs_index), axis=0)
            Xc[np.arange(len(cs_index)), cs_index] += 1j * h_cs
            groups.append(np.concatenate([[0], len(X) + np.arange(len(cs_index))]))
            X = np.concatenate([X, Xc])
        if events:
            keys = event_structures(problem, X, rtol=rtol, method=self.method)[0]
            if keys[0][0] == "failed":
                raise IntegrationError(f"finite differences failed: the unperturbed solve failed: {keys[0][1]}")
        else:
            keys = switch_structures(problem, X)[0] if len(layout) else [()] * len(X)
        kept = np.array([key == keys[0] for key in keys])  # a member across a switch cannot be differenced
        with np.errstate(all="ignore"):
            L = np.full(len(X), np.nan, dtype=X.dtype)
            L[kept], nsteps, split, zs0 = member_losses(problem, X[kept], rtol=rtol, method=self.method,
                                                        groups=_kept_groups(groups, kept))
        if not np.isfinite(L[0]):
            raise IntegrationError("finite differences failed: the unperturbed solve did not succeed")
        values, errors = {}, {}
        if central:
            noise = _rounding_noise(problem, L[0].real, zs0, nsteps)
            Lc = L[1 : 1 + 2 * steps.size].real.reshape(len(index), self.levels, 2)
            dropped = ~kept[1 : 1 + 2 * steps.size].reshape(len(index), self.levels, 2).all(axis=2)
            value, error = _richardson((Lc[..., 0] - Lc[..., 1]) / (2 * steps), steps, noise, dropped)
            values, errors = _by_quantity(problem, central, value), _by_quantity(problem, central, error)
            left_out = _left_out(problem, central, index, value, kept[1 : 1 + 2 * steps.size], layout, event_times)
        if complex:
            d = np.imag(L[1 + 2 * steps.size :]) / h_cs
            values.update(_by_quantity(problem, complex, d))
            errors.update(_by_quantity(problem, complex, np.zeros_like(d)))
        return values, errors, float(L[0].real), split, left_out if central else {}

    @staticmethod
    def _first_step(scale):
        return np.where(scale < 1.0, 0.25 * scale, 0.05 * scale)

    # ------------------------------------------------------------------ complex step
    def _complex_ok(self, problem):
        if self.complex_step is False:
            return False, "complex step not requested"
        fld = problem.field
        if not fld.complex_step_safe():
            return False, "the right-hand side is not analytic (or has no complex kernel)"
        zs, _ = problem.states(rtol=1e-8, atol=1e-8)
        _, g = problem.jumps(zs)
        v = np.random.default_rng(0).normal(size=zs.shape)
        h = 1e-30
        try:
            with np.errstate(all="ignore"):
                val = problem.loss(problem.user_states(zs + 1j * h * v))
            d = float(np.imag(val)) / h
        except Exception as exc:  # noqa: BLE001 - any failure means the loss is not complex-safe
            return False, f"the loss cannot take complex states ({type(exc).__name__})"
        want = float(np.sum(g * v))
        if not np.isfinite(d) or abs(d - want) > 1e-8 * max(abs(want), 1e-300) + 1e-300:
            return False, "the loss is not analytic (complex-step probe disagrees with autograd)"
        return True, ""


def _event_times(problem, rtol, method):
    """The unperturbed problem's event times (its own event-locating solve, cached)."""
    keys, nodes, kinds, _ = event_structures(problem, flat_inputs(problem)[None], rtol=rtol, method=method)
    if keys[0][0] == "failed":
        raise IntegrationError(f"finite differences failed: the unperturbed solve failed: {keys[0][1]}")
    on = [problem.ts[i] for _, (where, i) in keys[0][2] if where == "on"]
    return np.concatenate([nodes[0][kinds[0] < 0], np.asarray(on, dtype=float)])


def _inputs(problem, quantities, first_step, layout=None, event_times=None):
    """Columns of the flat inputs that ``quantities`` cover and each one's first step.

    z0 and theta move relative to their size (at least 1); a time by at most a
    quarter of its smaller neighbouring gap. Where f switches in t, a time
    also moves by at most a quarter of its distance to the nearest switch
    time, and a parameter moves each switch time by at most a quarter of its
    distance to the nearest observation time (the ladder keeps the switch
    structure; see :func:`_switch_limits`). Where f jumps on the state, a
    time moves by at most a quarter of its distance to the nearest event time
    of the unperturbed solve (``event_times``).
    """
    x = flat_inputs(problem)
    if not quantities:
        return np.zeros(0, dtype=int), np.zeros(0)
    Bn, p, T = problem.z0.size, problem.p, len(problem.ts)
    gaps = np.abs(np.diff(problem.ts))
    near = np.array([min(gaps[max(i - 1, 0)], gaps[min(i, len(gaps) - 1)]) for i in range(T)])
    blocks = {"z0": np.arange(Bn), "theta": Bn + np.arange(p), "t": Bn + p + np.arange(T)}
    index = np.concatenate([blocks[q] for q in quantities]).astype(int)
    scale = np.maximum(np.abs(x), 1.0)
    scale[Bn + p :] = near
    h0 = first_step(scale[index])
    if layout is not None and len(layout):
        h0 = np.minimum(h0, _switch_limits(problem, layout)[index])
    if event_times is not None and event_times.size:
        limit = np.full(x.size, np.inf)
        dist = np.min(np.abs(problem.ts[:, None] - event_times[None, :]), axis=1)
        limit[Bn + p :] = np.where(dist > 0, 0.25 * dist, np.inf)  # (an event on t_i: left out, not limited)
        h0 = np.minimum(h0, limit[index])
    return index, h0


def _switch_limits(problem, layout):
    """The largest first step of every flat input that keeps each switch time on its side of every time.

    A quarter of the distance, through d tau / d theta for a parameter; inf
    where no switch constrains it (or where a switch sits on an observation
    time: those entries are not differentiable and left out).
    """
    Bn, p, ts = problem.z0.size, problem.p, problem.ts
    limit = np.full(Bn + p + len(ts), np.inf)
    for j, tau in enumerate(layout.times):
        dist = np.abs(ts - tau)
        gap = float(np.min(dist))
        if gap == 0.0:
            continue
        rate = np.abs(layout.dtheta[j])
        with np.errstate(divide="ignore", invalid="ignore"):
            th = np.where(rate > 0, 0.25 * gap / rate, np.inf)
        limit[Bn : Bn + p] = np.minimum(limit[Bn : Bn + p], np.nan_to_num(th, nan=np.inf))
        limit[Bn + p :] = np.minimum(limit[Bn + p :], 0.25 * dist)
    return limit


def _kept_groups(groups, kept):
    """``groups`` (indices into all members) as indices into the kept members, dropping the others."""
    new = np.cumsum(kept) - 1
    return [new[g[kept[g]]] for g in groups if kept[g].all()]


def _left_out(problem, quantities, index, value, kept, layout, event_times=None):
    """``{(quantity, index): reason}`` for the entries whose every difference crossed a switch (NaN values).

    ``event_times``: the unperturbed solve's event times, where f jumps on the state (None otherwise).
    """
    out = {}
    if event_times is not None:
        ts = problem.ts
        near = [f"the crossing at t = {tau:.6g} is {np.min(np.abs(ts - tau)):.2g} from the observation time "
                f"t{int(np.argmin(np.abs(ts - tau)))}" for tau in event_times]
        flat_entries = [(q, idx) for q in quantities for idx in np.ndindex(*_shape(problem, q))]
        for j, entry in enumerate(flat_entries):
            if not np.isfinite(value[j]):
                out[entry] = ("the perturbed copies' events differ from the unperturbed solve's at too many steps of "
                              "the finite-difference ladder (an event crosses an observation time, or appears or "
                              f"disappears; {'; '.join(near) or 'no crossing in the unperturbed solve'}), so no "
                              "difference is of one smooth map")
        return out
    if not len(layout):
        return out
    nondiff = layout.nondifferentiable(problem.ts)
    flat_entries = [(q, idx) for q in quantities for idx in np.ndindex(*_shape(problem, q))]
    levels = kept.size // (2 * max(len(index), 1))
    kept = kept.reshape(len(index), levels, 2)
    for j, entry in enumerate(flat_entries):
        if np.isfinite(value[j]) and kept[j].all():
            continue
        if entry in nondiff:
            out[entry] = nondiff[entry]
        elif not np.isfinite(value[j]):
            where = ", ".join(layout.describe(k) for k in range(len(layout)))
            out[entry] = (f"every step of the finite-difference ladder moves a switch time across an observation "
                          f"time ({where}), so no difference is of one smooth map")
    return out


def _shape(problem, q):
    return {"z0": problem.z0.shape, "theta": (problem.p,), "t": (len(problem.ts),)}[q]


def _richardson(D, steps, noise, dropped=None):
    """Per row of ``D`` (J, levels): the Richardson value with the smallest estimate, and that estimate.

    ``dropped`` (J, levels): the differences left out (a switch or event
    structure changed); a row without three usable levels in a row is NaN
    (left out) rather than a failure.
    """
    R = (16 * D[:, 1:] - D[:, :-1]) / 15  # (J, levels - 1)
    with np.errstate(invalid="ignore"):
        err = np.abs(R[:, 1:] - R[:, :-1]) + 2 * noise / steps[:, 2:]  # (J, levels - 2)
    err = np.where(np.isfinite(err), err, np.inf)
    best = np.argmin(err, axis=1)
    rows = np.arange(len(D))
    ok = np.isfinite(err[rows, best])
    crossed = np.all(np.isnan(D), axis=1)  # every member of the entry left out: a switch crossed (see _left_out)
    if dropped is not None:
        crossed |= np.any(dropped, axis=1)
    if not np.all(ok | crossed):
        raise IntegrationError("finite differences failed: the perturbed solves did not succeed")
    return np.where(ok, R[rows, best + 1], np.nan), np.where(ok, err[rows, best], np.nan)


def _rounding_noise(problem, L, zs, nsteps):
    """Rounding in the loss of one member: 16 eps sqrt(steps) (|L| + sum |dL/dz| |z|).

    Members share every step, so their differences carry no step-selection
    noise; the rounding of the states (a random walk over the steps) and of
    the loss remains. ``zs`` (T, B, n) are the unperturbed states.
    """
    _, g = problem.jumps(zs)
    scale = abs(L) + float(np.sum(np.abs(g) * np.abs(zs)))
    return 16 * np.finfo(float).eps * np.sqrt(max(nsteps, 1)) * scale + 1e-300


def _by_quantity(problem, quantities, flat):
    out, start = {}, 0
    for q in quantities:
        size = {"z0": problem.z0.size, "theta": problem.p, "t": len(problem.ts)}[q]
        out[q] = flat[start : start + size].reshape(problem.z0.shape) if q == "z0" else flat[start : start + size]
        start += size
    return out


def _spread(value, runs):
    """Twice the largest distance from ``value`` to the same quantity computed in ``runs`` (at looser
    tolerances): a sample of the solver's error in ``value``, not a bound, hence the factor."""
    return 2 * np.max([np.abs(value - r) for r in runs], axis=0)


def _error_model(use_cs):
    shared = (
        "all perturbations in one batched solve sharing every step; solver error of the discrete map's "
        f"derivative: twice the largest distance to the batches at {_LOOSER[0]} and {_LOOSER[1]} rtol"
    )
    central = "central differences with Richardson extrapolation; error = |R_k - R_k+1| + 2 noise/h (rounding)"
    if use_cs:
        return f"complex step for z0 and theta; {central} for times; {shared}"
    return f"{central}; {shared}"
