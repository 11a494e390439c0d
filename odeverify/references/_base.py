"""Common pieces of the independent gradient sources."""

from __future__ import annotations

import abc
import functools
import time
import warnings
from dataclasses import dataclass, field

import numpy as np

from .._integrate import branch_margin, integrate_span, on_branch, switch_segments
from .._loss import loss_and_jumps, loss_value
from .._switches import EVENT_FUNCTIONS

__all__ = ["GradientEstimate", "Reference", "Problem", "QUANTITIES", "SwitchLayout", "event_support", "is_event"]


def is_event(d):
    """Whether the discontinuity ``d`` is a jump of f on the state that the solves can locate as an event."""
    return d.in_state and d.kind == "jump" and d.function in EVENT_FUNCTIONS


def event_support(field, batch, theta, ts):
    """``(has_events, why_not)``: whether f jumps on the state, and why the solves cannot locate it here.

    The event-locating solves (:func:`odeverify._events.integrate_events`) take
    one initial state and no switches in t; ``why_not`` is None when they
    apply (or when there is nothing to locate), else the reason in words.
    ``batch`` None means unknown (then the events count as not located).
    """
    if getattr(field, "state_conditions", None) is None:
        return False, None
    if batch is None:
        return True, "the batch size is not known"
    if batch != 1:
        return True, (f"z0 is a batch of {batch} initial states, and events are located for one initial state "
                      "only (z0 of shape (n,))")
    if len(field.switch_times(theta, ts[0], ts[-1])):
        return True, "f also switches at times in t, and events together with switches in t are not supported"
    return True, None

#: the gradient groups, in report order
QUANTITIES = ("z0", "theta", "t")


@dataclass
class Problem:
    """A validated gradient problem (internal).

    Attributes
    ----------
    field : AbstractVectorField
    z0 : ndarray, shape (B, n)
        Always 2-D; ``batched`` says whether the user passed a batch.
    batched : bool
    ts : ndarray, shape (T,)
    theta : ndarray, shape (p,)
    loss : callable
        The user's loss on ``(T, n)`` or ``(T, B, n)`` states.
    """

    field: object
    z0: np.ndarray
    batched: bool
    ts: np.ndarray
    theta: np.ndarray
    loss: object

    def __repr__(self):
        return (f"<Problem {type(self.field).__name__}: z0 {self.z0.shape}, {len(self.ts)} times, "
                f"{self.theta.size} parameters>")

    @property
    def n(self):
        return self.field.n_states

    @property
    def p(self):
        return self.field.n_params

    @property
    def B(self):
        return self.z0.shape[0]

    def user_z0(self, z0_2d):
        return z0_2d if self.batched else z0_2d[0]

    def user_states(self, zs):  # zs (T, B, n)
        return zs if self.batched else zs[:, 0, :]

    def shapes(self):
        """Shapes of the gradient groups as the user sees them."""
        return {"z0": self.z0.shape if self.batched else (self.n,), "theta": (self.p,), "t": (len(self.ts),)}

    def states(self, z0_2d=None, ts=None, theta=None, *, rtol=1e-12, atol=1e-12, method="DOP853"):
        """Forward states at ``ts``, shape (T, B, n) (a direct solve, no adjoint).

        The solve stops and restarts at every switch time in t of the field
        (``field.switch_times``), f evaluated on each piece's branch; where f
        jumps on the state it locates every crossing (an event) and restarts
        on the new branch (:func:`odeverify._events.integrate_events`).
        """
        z0_2d = self.z0 if z0_2d is None else z0_2d
        ts = self.ts if ts is None else ts
        theta = self.theta if theta is None else theta
        B, n = z0_2d.shape
        fld = self.field
        has_events, why_not = event_support(fld, B, theta, ts)
        if has_events and why_not is None:
            from .._events import integrate_events

            res = integrate_events(fld, theta, float(ts[0]), float(ts[-1]), z0_2d.reshape(-1), t_out=ts,
                                   method=method, rtol=rtol, atol=atol, what="reference forward solve")
            return res.y_at.reshape(len(ts), B, n), res

        def fun(t, y):
            return fld.eval_f(y.reshape(B, n), t, theta).reshape(-1)

        switches = fld.switch_times(theta, ts[0], ts[-1]).times if fld.discontinuities else ()
        y, y_at, nsteps = z0_2d.reshape(-1), np.empty((len(ts), B * n)), 0
        k, direction = 0, 1.0 if ts[-1] >= ts[0] else -1.0
        for a, b, lo, hi in switch_segments(float(ts[0]), float(ts[-1]), switches):
            k_end = k + int(np.searchsorted(direction * ts[k:], direction * b, side="right"))
            res = integrate_span(on_branch(fun, lo, hi) if len(switches) else fun, a, b, y, method=method,
                                 rtol=rtol, atol=atol, t_out=ts[k:k_end])
            y_at[k:k_end], y, k = res.y_at, res.y_end, k_end
            nsteps += res.nsteps
        res.nsteps = nsteps
        return y_at.reshape(len(ts), B, n), res

    def loss_value(self, z0_2d=None, ts=None, theta=None, *, rtol=1e-12, atol=1e-12, method="DOP853"):
        """L at the given inputs, from a forward solve at the given tolerances."""
        zs, _ = self.states(z0_2d, ts, theta, rtol=rtol, atol=atol, method=method)
        return loss_value(self.loss, self.user_states(zs))

    @functools.cached_property
    def fingerprint(self):
        """f and the loss at fixed pseudo-random points near the inputs: what tells two problems apart.

        Identical code (a fresh but equal lambda, a rebuilt system) gives the same values; another
        system, parametrisation or loss almost surely does not. None where f or the loss fails there.
        Computed once per problem (every reference computed for it carries the same one).
        """
        rng = np.random.default_rng(20261128)

        def near(x):
            return x * (1 + 0.01 * rng.standard_normal(x.shape)) + 0.01 * rng.standard_normal(x.shape)

        z, th = near(self.z0), near(self.theta)
        t = float(self.ts[0] + 0.37 * (self.ts[-1] - self.ts[0]))
        zs = near(np.repeat(self.z0[None], len(self.ts), axis=0))
        out = []
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for compute in (lambda: self.field.eval_f(z, t, th), lambda: self.loss(self.user_states(zs))):
                try:
                    value = compute()
                    out.append(np.array(getattr(value, "_value", value), dtype=float).ravel())
                except Exception:  # noqa: BLE001 - no fingerprint where the user's code fails
                    out.append(None)
        return tuple(out)

    def jumps(self, zs):
        """``(L, dL/dzs)`` with ``zs`` of shape (T, B, n); the gradient has the same shape."""
        value, g = loss_and_jumps(self.loss, self.user_states(zs).copy())
        return value, g.reshape(zs.shape)


@dataclass
class GradientEstimate:
    """Gradients from one source, with that source's own error estimate.

    Attributes
    ----------
    name : str
        The source, e.g. ``"finite differences"``.
    values : dict
        ``"z0"``, ``"theta"``, ``"t"`` arrays (a key is absent when the source
        cannot give that quantity).
    errors : dict
        Estimated absolute error of every entry, same keys and shapes.
    loss : float or None
    error_model : str
        How the error estimate was obtained, in words.
    independent : bool
        False for sources that share the candidate adjoint's derivation
        (the adjoint itself at tighter tolerances).
    notes : list of str
        Anything the report should mention (a skipped quantity, a fallback).
    seconds : float
        Wall time of the computation.
    inputs : tuple or None
        ``(z0, ts, theta)`` the estimate was computed at (set by
        :meth:`Reference.compute`); :func:`odeverify.check_gradients` refuses
        to reuse an estimate for other inputs.
    differentiates_f : bool
        True for sources built on derivatives of f (the adjoint, forward
        sensitivities, autograd through Runge–Kutta): they assume f is smooth
        and do not see a jump of f; finite differences and closed forms do.
    fingerprint : tuple or None
        f and the loss at fixed points near the inputs
        (:attr:`Problem.fingerprint`): reuse for another system or loss is
        refused.
    left_out : dict
        ``{(quantity, index): reason}``: entries this source could not compute
        (their values are NaN); the check leaves them out of its consensus
        and states the reason.
    one_sided : dict
        ``{(quantity, index): (left, right)}``: entries where the loss is not
        differentiable (a jump of f on an observation time), with the
        one-sided derivatives as the input decreases and increases.
    """

    name: str
    values: dict
    errors: dict
    loss: float | None = None
    error_model: str = ""
    independent: bool = True
    notes: list = field(default_factory=list)
    seconds: float = 0.0
    exact: bool = False
    differentiates_f: bool = False
    inputs: tuple | None = None
    fingerprint: tuple | None = None
    left_out: dict = field(default_factory=dict)
    one_sided: dict = field(default_factory=dict)

    def __repr__(self):
        shapes = ", ".join(f"{k} {np.shape(v)}" for k, v in self.values.items())
        return f"<GradientEstimate {self.name}: {shapes or 'no values'}; {self.seconds:.2f} s>"


class SwitchLayout:
    """The switch times in t of one problem among its observation times (internal).

    Parameters
    ----------
    field : AbstractVectorField
    theta : ndarray, shape (p,)
    ts : ndarray, shape (T,)

    Attributes
    ----------
    times : ndarray, shape (k,)
        The switch times in [t_0, t_N] in integration order; one within a few
        rounding errors of an observation time is that time.
    dtheta : ndarray, shape (k, p)
        d tau / d theta.
    jump : ndarray of bool, shape (k,)
        Whether f jumps there (False: a kink).
    on_obs : ndarray of int, shape (k,)
        The observation time each switch falls on, or -1.
    names : list of str, length k
        ``str(Discontinuity)`` of the condition behind each time.
    unhandled : list of Discontinuity
        Discontinuities no solve handles: jumps on the state where the solves
        do not locate events (a batch, or events with switches in t; floor
        and ceiling), conditions in t that SymPy could not solve, point
        masses. A kink on the state (Abs, Max, Min, relu) is handled: f is
        continuous there, so the flow stays differentiable (its saltation
        matrix is the identity) and the derivative-based references are right.
    events : list of Discontinuity
        The jumps on the state that the solves can locate (Heaviside, sign, Piecewise).
    events_located : bool
        Whether the solves of this problem locate them (see :func:`event_support`).
    event_reason : str or None
        Why not, when there are events the solves do not locate.

    Parameters
    ----------
    batch : int, optional
        B, the number of initial states; events are located only for B = 1
        (None: unknown, the events count as not located).
    """

    def __init__(self, field, theta, ts, batch=None):
        found = tuple(getattr(field, "discontinuities", ()) or ())
        sw = field.switch_times(theta, ts[0], ts[-1]) if found else None
        self.discontinuities = found
        self.direction = 1.0 if ts[-1] >= ts[0] else -1.0
        self.delta = branch_margin(ts[0], ts[-1])
        if sw is None or not len(sw):
            self.times, self.dtheta = np.zeros(0), np.zeros((0, len(theta)))
            self.jump, self.source, self.on_obs = np.zeros(0, bool), np.zeros(0, int), np.zeros(0, int)
        else:
            self.times, self.dtheta = sw.times.astype(float).copy(), np.asarray(sw.dtheta, dtype=float)
            self.jump, self.source = np.asarray(sw.jump, bool), np.asarray(sw.source, int)
            self.on_obs = snap_to(self.times, ts)
        unsolved = set(sw.unsolved) if sw is not None else set()
        self.events = [d for d in found if is_event(d)]
        has_events, why_not = event_support(field, batch, theta, ts) if self.events else (False, None)
        self.events_located = has_events and why_not is None
        self.event_reason = why_not if has_events else None
        self.unhandled = [d for i, d in enumerate(found)
                          if (d.in_state and d.kind != "kink" and not (self.events_located and is_event(d)))
                          or d.kind == "impulse" or i in unsolved]
        self.names = [str(found[i]) for i in self.source]
        self.time_name = found[0].time if found else "t"

    def __len__(self):
        return int(self.times.size)

    def describe(self, j):
        """Switch ``j`` in words: the discontinuity and its time."""
        return f"{self.names[j]}, at {self.time_name} = {self.times[j]:.6g}"

    def nondifferentiable(self, ts):
        """``{(quantity, index): reason}``: the entries a jump on an observation time makes non-differentiable.

        The observation time itself and every parameter its switch time depends on.
        """
        out = {}
        for j in np.flatnonzero((self.on_obs >= 0) & self.jump):
            i = int(self.on_obs[j])
            why = f"not differentiable: {self.describe(j)}, on the observation time t{i}"
            out.setdefault(("t", (i,)), why)
            for q in np.flatnonzero(self.dtheta[j] != 0):
                out.setdefault(("theta", (int(q),)), why)
        return out


def snap_to(times, ts):
    """For each of ``times``, the index of the observation time within a few rounding errors of it, or -1.

    The times found are set to that observation time in place.
    """
    snap = 8 * np.finfo(float).eps * max(float(np.max(np.abs(ts))), abs(float(ts[-1] - ts[0])))
    out = np.full(times.size, -1)
    for j, t in enumerate(times):
        near = np.flatnonzero(np.abs(ts - t) <= snap)
        if near.size:
            out[j], times[j] = near[0], ts[near[0]]
    return out

    def __repr__(self):
        shapes = ", ".join(f"{k} {np.shape(v)}" for k, v in self.values.items())
        return f"<GradientEstimate {self.name}: {shapes or 'no values'}; {self.seconds:.2f} s>"


class Reference(abc.ABC):
    """A source of reference gradients; ``compute(problem)`` returns a :class:`GradientEstimate`."""

    name = "reference"

    @abc.abstractmethod
    def _compute(self, problem: Problem) -> GradientEstimate: ...

    def available(self, problem: Problem) -> str | None:
        """None when this source can handle ``problem``, else the reason it cannot."""
        return None

    def compute(self, problem: Problem) -> GradientEstimate:
        start = time.perf_counter()
        est = self._compute(problem)
        est.seconds = time.perf_counter() - start
        est.inputs = (problem.user_z0(problem.z0).copy(), problem.ts.copy(), problem.theta.copy())
        est.fingerprint = problem.fingerprint
        return est

    def __repr__(self):
        return f"{type(self).__name__}()"
