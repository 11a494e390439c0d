"""What :func:`odeverify.adjoint_gradients` returns: the result, the kept adjoint trajectory, solver statistics.

:class:`AdjointResult` holds the loss, the gradients and the diagnostics;
:class:`AdjointTrajectory` (``keep_adjoint=True``) evaluates a(t) and z(t)
anywhere in the span from the dense outputs of both solves. Re-exported by
:mod:`odeverify._adjoint`; imports nothing of the adjoint modules.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ._display import fmt
from .errors import OdeverifyWarning

__all__ = ["AdjointResult", "AdjointTrajectory", "SolverStats", "BacksolveDriftWarning"]


class BacksolveDriftWarning(OdeverifyWarning):
    """The backward reconstruction of z in backsolve mode drifted from the forward solution."""


@dataclass
class SolverStats:
    """Work done by the forward and backward solves."""

    nfev_forward: int = 0
    nfev_backward: int = 0
    njev_forward: int = 0
    njev_backward: int = 0
    nlu: int = 0
    nsteps_forward: int = 0
    nsteps_backward: int = 0
    #: components of the backward state: 2 B n + p + 1 (backsolve), B n + p + 1 (interpolated), B n (quadrature)
    backward_state_size: int = 0
    #: quadrature nodes at which a^T df/dtheta and a^T df/dt were evaluated (quadrature mode), per sample
    nquadrature: int = 0

    def __repr__(self):
        return f"<SolverStats {self}>"

    def __str__(self):
        return (
            f"forward: {self.nsteps_forward} steps, {self.nfev_forward} f-evaluations; "
            f"backward: {self.nsteps_backward} steps, {self.nfev_backward} evaluations"
            + (f"; {self.njev_forward + self.njev_backward} Jacobians, {self.nlu} LU" if self.nlu else "")
        )


@dataclass
class AdjointResult:
    """Loss and gradients from :func:`adjoint_gradients`.

    Attributes
    ----------
    loss : float
        L(z(t_0), ..., z(t_N)).
    z0 : ndarray, shape (n,) or (B, n)
        dL/dz(t_0).
    theta : ndarray, shape (p,)
        dL/dtheta.
    t : ndarray, shape (T,)
        dL/dt_i for every entry of ``ts``; ``t[0]`` is dL/dt_0.
    zs : ndarray, shape (T, n) or (T, B, n)
        The forward states at ``ts``.
    ts : ndarray, shape (T,)
    mode, method : str
    rtol : float
    atol : float or ndarray
    stats : SolverStats
    z0_reconstruction_error : float or None
        Backsolve mode: max-norm distance between the backwards-reconstructed
        z(t_0) and the given z0. None in interpolated mode.
    backsolve_drift : ndarray, shape (T - 1,) or None
        Backsolve mode: for each interval [t_{i-1}, t_i], the max-norm
        distance between z(t_{i-1}) reconstructed backwards from z(t_i) and
        the forward solution (each interval restarts from the forward state).
    diagnostics : dict
        ``t0_via_a_t`` (the integrated a_t, reported as ``t[0]``),
        ``t0_via_identity`` (``-a(t_0^+) . f(z_0, t_0)``, equal in exact
        arithmetic) and ``t0_discrepancy``, their distance.
    switches : SwitchTimes or None
        The switch times in t the solves stopped at (None without any).
    events : tuple of Event
        The crossings of state conditions (``heaviside(c - x)``) the forward
        solve located, in integration order, with their saltation data
        (:class:`odeverify._switches.Event`: time, state, f on both sides,
        dg/dz, dg/dt, dg/dtheta, ``saltation``, ``dtau_dtheta``,
        ``propagate`` for forward sensitivities); () without any.
    one_sided : dict
        Where a jump of f falls on an observation time the loss is not
        differentiable in the switch's parameters and in that time: those
        entries are NaN and this maps their names (``"theta[1]"``, ``"t[2]"``)
        to ``(left, right)``, the one-sided derivatives as the entry
        decreases and increases.
    trajectory : AdjointTrajectory or None
        With ``keep_adjoint=True``: a(t) and z(t) anywhere in the span
        (:meth:`adjoint`, :meth:`state`).
    """

    loss: float
    z0: np.ndarray
    theta: np.ndarray
    t: np.ndarray
    zs: np.ndarray
    ts: np.ndarray
    mode: str
    method: str
    rtol: float
    atol: object
    stats: SolverStats
    z0_reconstruction_error: float | None = None
    backsolve_drift: np.ndarray | None = None
    diagnostics: dict = field(default_factory=dict)
    switches: object = None
    events: tuple = ()
    one_sided: dict = field(default_factory=dict)
    trajectory: AdjointTrajectory | None = field(default=None, repr=False)

    def adjoint(self, t, *, include_jump=True):
        """The adjoint a(t) = dL/dz(t) at time(s) ``t`` (needs ``keep_adjoint=True``).

        Parameters
        ----------
        t : float or array_like
            Times between the first and the last of ``ts``.
        include_jump : bool
            At an observation time t_i: True (default) gives a *with* the
            jump g_i = dL/dz(t_i) added, the total derivative of L with
            respect to z(t_i) (so ``adjoint(ts[0])`` equals ``.z0``); for
            increasing ``ts`` a is then left-continuous. False gives the value
            before the jump (the limit from the later times' side). Elsewhere
            it makes no difference.

        Returns
        -------
        ndarray, shape ``np.shape(t) + (n,)``, or ``np.shape(t) + (B, n)`` for a batch
        """
        return self._kept("adjoint").adjoint(t, include_jump)

    def state(self, t):
        """The forward state z(t) at time(s) ``t`` (needs ``keep_adjoint=True``); shapes as :meth:`adjoint`."""
        return self._kept("state").state(t)

    def plot(self, *, ax=None, names=None):
        """States over time and the adjoint a(t) with its jumps (needs ``keep_adjoint=True``).

        See :func:`odeverify.plotting.plot_adjoint`; returns the matplotlib Figure.
        """
        from .plotting import plot_adjoint

        return plot_adjoint(self, ax=ax, names=names)

    def _kept(self, what):
        if self.trajectory is None:
            from .errors import InvalidArgumentError

            raise InvalidArgumentError(
                f"this AdjointResult kept no trajectory, so {what}(t) is not available; compute it with "
                "adjoint_gradients(..., keep_adjoint=True)"
            )
        return self.trajectory

    def __repr__(self):
        shapes = ", ".join(f"{k} {np.shape(v)}" for k, v in self.as_dict().items())
        return (f"<AdjointResult loss {fmt(self.loss, '.6g')}: gradients {shapes}; {self.mode}, {self.method}, "
                f"rtol {self.rtol:g}>")

    def as_dict(self):
        """The gradients as a mapping with keys ``"z0"``, ``"theta"``, ``"t"``."""
        return {"z0": self.z0, "theta": self.theta, "t": self.t}

    def to_dict(self):
        """A JSON-serialisable dictionary."""
        return {
            "loss": self.loss,
            "z0": np.asarray(self.z0).tolist(),
            "theta": np.asarray(self.theta).tolist(),
            "t": np.asarray(self.t).tolist(),
            "ts": np.asarray(self.ts).tolist(),
            "mode": self.mode,
            "method": self.method,
            "rtol": self.rtol,
            "atol": np.asarray(self.atol).tolist(),
            "stats": dict(self.stats.__dict__),
            "z0_reconstruction_error": self.z0_reconstruction_error,
            "diagnostics": dict(self.diagnostics),
        }


class AdjointTrajectory:
    """The adjoint a(t) and the state z(t) of one adjoint solve (``adjoint_gradients(..., keep_adjoint=True)``).

    a(t) = dL/dz(t) jumps by g_i = dL/dz(t_i) (the loss's direct partial
    derivative) at every observation time. At an observation time t_i the
    value *includes* the jump (``include_jump=True``): a(t_i) is the total
    derivative of L with respect to the state at t_i, its own term counted,
    so that ``a(ts[0])`` is ``dL/dz0``. For increasing ``ts`` that makes a
    left-continuous (a(t_i) = lim a(s) as s -> t_i from below, the side of
    t_0); ``include_jump=False`` gives the other limit, the value the
    backward solve arrives with (right-continuous for increasing ``ts``).
    Between observation times a is the backward solve's dense output.

    Attributes
    ----------
    ts : ndarray, shape (T,)
    batched : bool
    """

    def __init__(self, ts, backward_dense, a_off, a_before, g, forward_dense, batched):
        self.ts = np.asarray(ts, dtype=float)
        self.batched = batched
        self._backward = backward_dense  # over ts[-1] -> ts[0], state [..., a (B n) at a_off, ...]
        self._forward = forward_dense
        self._a_off = a_off
        self._a_before = a_before  # (T, B, n)
        self._a_with = a_before + g  # (T, B, n)
        self._B, self._n = a_before.shape[1:]

    def at_observations(self, include_jump=True):
        """a at every observation time, shape (T, B, n) (a batch axis even for one sample)."""
        return (self._a_with if include_jump else self._a_before).copy()

    def adjoint_2d(self, t, include_jump=True):
        """a at the times ``t`` (1-D), shape (len(t), B, n)."""
        t = self._times(t)
        Bn = self._B * self._n
        a = self._backward.at_many(t)[:, self._a_off : self._a_off + Bn].reshape(t.size, self._B, self._n)
        # on an observation time the dense output may hold either side of the jump: use the exact value
        hit = np.searchsorted(np.sort(self.ts), t)
        hit = np.clip(hit, 0, len(self.ts) - 1)
        order = np.argsort(self.ts)
        on = np.sort(self.ts)[hit] == t
        values = self._a_with if include_jump else self._a_before
        a[on] = values[order[hit[on]]]
        return a

    def adjoint(self, t, include_jump=True):
        """a(t), shape ``np.shape(t) + (B, n)`` for a batch, else ``np.shape(t) + (n,)``."""
        shape = np.shape(t)
        a = self.adjoint_2d(np.reshape(t, -1), include_jump)
        return a.reshape(shape + ((self._B, self._n) if self.batched else (self._n,)))

    def state(self, t):
        """z(t) from the forward dense output, shape ``np.shape(t) + (B, n)`` or ``np.shape(t) + (n,)``."""
        shape = np.shape(t)
        t = self._times(np.reshape(t, -1))
        z = self._forward.at_many(t).reshape(t.size, self._B, self._n)
        return z.reshape(shape + ((self._B, self._n) if self.batched else (self._n,)))

    def _times(self, t):
        from ._validate import _as_float_array
        from .errors import InvalidArgumentError

        t = _as_float_array(t, "t").reshape(-1)
        lo, hi = float(np.min(self.ts)), float(np.max(self.ts))
        bad = ~((t >= lo) & (t <= hi))
        if np.any(bad):
            raise InvalidArgumentError(
                f"t = {float(t[bad][0])!r} is outside the span [{lo!r}, {hi!r}] of ts; the adjoint is only "
                "defined between the first and the last observation time"
            )
        return t
