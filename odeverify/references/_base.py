"""Common pieces of the independent gradient sources."""

from __future__ import annotations

import abc
import functools
import time
import warnings
from dataclasses import dataclass, field

import numpy as np

from .._integrate import integrate_span
from .._loss import loss_and_jumps, loss_value

__all__ = ["GradientEstimate", "Reference", "Problem", "QUANTITIES"]

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
        """Forward states at ``ts``, shape (T, B, n) (a direct solve, no adjoint)."""
        z0_2d = self.z0 if z0_2d is None else z0_2d
        ts = self.ts if ts is None else ts
        theta = self.theta if theta is None else theta
        B, n = z0_2d.shape
        fld = self.field

        def fun(t, y):
            return fld.eval_f(y.reshape(B, n), t, theta).reshape(-1)

        res = integrate_span(
            fun, float(ts[0]), float(ts[-1]), z0_2d.reshape(-1), method=method, rtol=rtol, atol=atol, t_out=ts
        )
        return res.y_at.reshape(len(ts), B, n), res

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
