"""Adaptive explicit Runge–Kutta: embedded 5(4) pairs with FSAL and dense output.

The methods ``"dopri5"`` (Dormand–Prince) and ``"tsit5"`` (Tsitouras) of
:func:`odeverify.solve` and :func:`odeverify.adjoint_gradients` run here. The
tableaux are data in :mod:`odeverify.tableaux`; :func:`integrate_rk` is the one
stepping code path for all of them. It differs from SciPy's ``RK45`` in what
costs time on small and batched problems, not in the mathematics:

* the right-hand side writes into preallocated stage rows (``fun(t, y, out)``),
  and each stage's input is one ``dot`` of the tableau row with the stages;
* the error norm can be *mixed*: the maximum over groups of components of
  each group's root-mean-square scaled error. The backward state of the
  adjoint, ``[z, a, a_theta, a_t]``, is four groups, so the error of the B*p
  summed parameter gradient is not diluted by the B*n components of a batch
  (a plain RMS over all of them would let a_theta's error grow like sqrt(B n));
* dense output is the method's own continuous extension (quartic, so
  interpolation keeps the 4th order of the error estimate), and repeated
  evaluations at monotone times find their step without a search.

The step-size controller is the standard one (Hairer, Nørsett & Wanner,
§II.4): ``h_new = h * min(10, max(0.2, 0.9 * err^(-1/5)))``, no growth right
after a rejection, and Hairer's starting step-size algorithm.

References
----------
E. Hairer, S. P. Nørsett, G. Wanner, *Solving Ordinary Differential Equations I*,
2nd ed., Springer 1993, §II.4 (step-size control, starting step size), §II.6
(dense output).
R. T. Q. Chen et al., torchdiffeq (the mixed norm of the adjoint state).
"""

from __future__ import annotations

import math

import numpy as np

from .tableaux import DOPRI5, TSIT5

__all__ = ["ADAPTIVE_TABLEAUX", "ErrorNorm", "RKDenseOutput", "StepwiseDenseOutput", "integrate_rk"]

#: the adaptive methods by name
ADAPTIVE_TABLEAUX = {"dopri5": DOPRI5, "tsit5": TSIT5}

SAFETY = 0.9
MIN_FACTOR = 0.2
MAX_FACTOR = 10.0


class ErrorNorm:
    """The scaled error norm of a step: plain or mixed RMS.

    Parameters
    ----------
    size : int
        Length of the state vector.
    groups : sequence of int, optional
        Sizes of consecutive groups of components (summing to ``size``).
        The norm is the maximum over groups of each group's RMS; one group
        (the default) is the plain RMS that SciPy uses.

    Examples
    --------
    >>> import numpy as np
    >>> r = np.array([1.0, 1.0, 1.0, 0.0, 2.0])
    >>> float(ErrorNorm(5)(r))  # sqrt(7 / 5)
    1.1832159566199232
    >>> float(ErrorNorm(5, groups=[3, 2])(r))  # max(1, sqrt(4 / 2))
    1.4142135623730951
    """

    def __init__(self, size, groups=None):
        sizes = [int(g) for g in (groups if groups is not None else [size]) if g > 0]
        if sum(sizes) != size:
            raise ValueError(f"the groups {list(groups)} do not add up to the state size {size}")
        self.size = size
        self.mixed = len(sizes) > 1
        self._starts = np.cumsum([0] + sizes[:-1])
        self._sizes = np.array(sizes, dtype=float)

    def __call__(self, r):
        """The norm of ``r``, a real vector of scaled errors (error / scale)."""
        if self.size == 0:
            return 0.0
        if not self.mixed:
            return math.sqrt(float(np.dot(r, r)) / self.size)
        sq = np.add.reduceat(r * r, self._starts) / self._sizes
        return math.sqrt(float(np.max(sq)))


class StepwiseDenseOutput:
    """Piecewise dense output over steps, with a cached segment lookup.

    Subclasses evaluate one step's interpolant. Successive calls at times
    that move monotonically (as the backward pass of the adjoint does) hit
    the cached step or its neighbour, so no search runs.

    Parameters
    ----------
    t_steps : sequence of float, shape (N + 1,)
        Step boundaries in integration order (increasing or decreasing).
    """

    def __init__(self, t_steps):
        t_steps = [float(x) for x in t_steps]
        self.t_min = min(t_steps[0], t_steps[-1])
        self.t_max = max(t_steps[0], t_steps[-1])
        self._reverse = t_steps[-1] < t_steps[0]
        # ascending boundaries; segment j spans [asc[j], asc[j + 1]]
        self._asc = t_steps[::-1] if self._reverse else t_steps
        self._asc_arr = np.asarray(self._asc)
        self._nseg = len(t_steps) - 1
        self._j = 0

    def _segment(self, t):
        """Index of the ascending segment holding ``t`` (clamped to the span)."""
        asc, j = self._asc, self._j
        if asc[j] <= t <= asc[j + 1]:
            return j
        if j > 0 and asc[j - 1] <= t <= asc[j]:
            j -= 1
        elif j + 1 < self._nseg and asc[j + 1] <= t <= asc[j + 2]:
            j += 1
        else:
            j = int(np.searchsorted(self._asc_arr, t, side="right")) - 1
            j = min(max(j, 0), self._nseg - 1)
        self._j = j
        return j

    def _step_index(self, j):
        """The step (in integration order) of ascending segment ``j``."""
        return self._nseg - 1 - j if self._reverse else j

    def at(self, t, out=None):
        """The state at one time ``t``, shape (size,), written into ``out`` when given."""
        raise NotImplementedError

    def __call__(self, t):
        """The state at ``t``: shape (size,) for a scalar, (size, k) for k times (like OdeSolution)."""
        t = np.asarray(t, dtype=float)
        if t.ndim == 0:
            return self.at(float(t))
        return np.stack([self.at(float(x)) for x in t.ravel()], axis=-1).reshape((-1,) + t.shape)


class RKDenseOutput(StepwiseDenseOutput):
    """Dense output of :func:`integrate_rk`: per step ``y(t0 + s h) = [1, s, ..., s^d] . R``.

    ``R`` stacks the state at the step's start and ``h`` times the dense
    output's coefficient vectors, shape (d + 1, size).
    """

    def __init__(self, t_steps, R):
        super().__init__(t_steps)
        self._t0 = [float(x) for x in t_steps[:-1]]
        self._h = [float(b - a) for a, b in zip(t_steps[:-1], t_steps[1:])]
        self._R = R  # N arrays of shape (d + 1, size)

    def at(self, t, out=None):
        i = self._step_index(self._segment(t))
        return _interpolate(self._R[i], (t - self._t0[i]) / self._h[i], out)


class ScipyDenseOutput(StepwiseDenseOutput):
    """The step interpolants of a SciPy solver, looked up with the segment cache."""

    def __init__(self, t_steps, interpolants):
        super().__init__(t_steps)
        self._interpolants = interpolants

    def at(self, t, out=None):
        y = self._interpolants[self._step_index(self._segment(t))](t)
        if out is None:
            return y
        out[...] = y
        return out


def _interpolate(R, s, out=None):
    """``[1, s, s^2, ..., s^d] . R`` for one step's stacked coefficients ``R``."""
    pw = [1.0, s]
    for _ in range(R.shape[0] - 2):
        pw.append(pw[-1] * s)
    return np.dot(pw, R) if out is None else np.dot(pw, R, out=out)


def _initial_step(fun, t0, y0, f0, direction, order, rtol, atol, norm, interval, buf):
    """Hairer's starting step size (Solving ODEs I, §II.4); one evaluation of ``fun``."""
    scale = atol + np.abs(y0) * rtol
    d0 = norm(np.abs(y0) / scale)
    d1 = norm(np.abs(f0) / scale)
    h0 = 1e-6 if (d0 < 1e-5 or d1 < 1e-5) else 0.01 * d0 / d1
    h0 = min(h0, interval)
    y1 = y0 + (h0 * direction) * f0
    fun(t0 + h0 * direction, y1, buf)
    d2 = norm(np.abs(buf - f0) / scale) / h0
    if d1 <= 1e-15 and d2 <= 1e-15:
        h1 = max(1e-6, h0 * 1e-3)
    else:
        h1 = (0.01 / max(d1, d2)) ** (1.0 / (order + 1))
    return min(100 * h0, h1, interval)


class RKFailure(Exception):
    """Raised by :func:`integrate_rk`; the caller turns it into an IntegrationError."""

    def __init__(self, message, t, y, f, *, budget=False):
        super().__init__(message)
        self.t, self.y, self.f = float(t), y, f
        self.budget = budget  # the step budget ran out


def integrate_rk(
    fun,
    t_start,
    t_end,
    y0,
    tableau,
    *,
    rtol,
    atol,
    t_out=(),
    dense=False,
    max_steps=100_000,
    groups=None,
    first_step=None,
):
    """Integrate ``dy/dt = fun(t, y)`` adaptively with an embedded, FSAL Runge–Kutta pair.

    Parameters
    ----------
    fun : callable
        ``fun(t, y, out)`` writes dy/dt into ``out`` (shape of ``y``); it
        must not keep references to ``y`` or ``out``.
    t_start, t_end : float
    y0 : ndarray, shape (size,)
        Real or complex.
    tableau : Tableau
        Explicit, first-same-as-last, with ``b_err`` and a dense output ``P``.
    rtol : float
    atol : float or ndarray of shape (size,)
    t_out : sequence of float
        Times in ``[t_start, t_end]`` (in integration order) at which to
        report the state, from the dense output.
    dense : bool
        Keep every step for an :class:`RKDenseOutput`.
    max_steps : int
        Budget of accepted steps.
    groups : sequence of int, optional
        Group sizes of the mixed error norm (see :class:`ErrorNorm`).
    first_step : float, optional
        Size of the first step attempt; chosen automatically when None.

    Returns
    -------
    dict
        ``y_at`` (len(t_out), size), ``y_end``, ``nfev``, ``nsteps``,
        ``nrejected``, ``h_next`` (the step size the controller proposes
        next), ``dense`` (an :class:`RKDenseOutput` or None).

    Raises
    ------
    RKFailure
        When the step size collapses, the state becomes non-finite, or the
        step budget runs out (``str(exc)`` says which).
    """
    if not tableau.fsal or tableau.b_err is None or tableau.P is None:
        raise ValueError(f"{tableau.name}: integrate_rk needs an FSAL tableau with b_err and a dense output P")
    s = tableau.stages
    d = tableau.P.shape[1]
    c_list = [float(x) for x in tableau.c]
    # Every linear combination of a step is one dot with Y = [y, k_1, ..., k_s]:
    # stage inputs (rows 0..s-1 of W), the error estimate (row s) and the dense
    # output's coefficients (rows s+1..s+1+d). W = h * W1 + W0 for the step h.
    W1 = np.zeros((s + 1 + d, s + 1))
    W1[:s, 1:] = tableau.A
    W1[s, 1:] = tableau.b - tableau.b_err
    W1[s + 1 :, 1:] = tableau.P.T
    W0 = np.zeros_like(W1)
    W0[:s, 0] = 1.0
    exponent = -1.0 / tableau.order  # error estimator of order p - 1: err ~ h^p
    t_out = np.asarray(t_out, dtype=float)
    y0 = np.asarray(y0)
    size = y0.size
    dtype = np.result_type(y0.dtype, np.float64)
    norm = ErrorNorm(size, groups)
    atol = atol if np.ndim(atol) == 0 else np.asarray(atol, dtype=float)

    t = float(t_start)
    t_end = float(t_end)
    direction = 1.0 if t_end > t else -1.0
    interval = abs(t_end - t)
    Y = np.empty((s + 1, size), dtype=dtype)  # y, k_1, ..., k_s
    y, K = Y[0], Y[1:]
    y[...] = y0
    y_new = np.empty_like(y)
    y_stage = np.empty_like(y)
    err = np.empty(size, dtype=dtype)
    scale = np.empty(size)
    W = np.empty_like(W1)
    Wd = np.zeros((d + 1, s + 1))  # the dense output's rows: y, then h * P^T K
    Wd[0, 0] = 1.0
    y_at = np.empty((len(t_out), size), dtype=dtype)
    k = 0
    while k < len(t_out) and t_out[k] == t:
        y_at[k] = y
        k += 1

    fun(t, y, K[0])
    nfev = 1
    if first_step is None:
        h_abs = _initial_step(fun, t, y, K[0], direction, tableau.order - 1, rtol, atol, norm, interval, y_stage)
        nfev += 1
    else:
        h_abs = min(abs(float(first_step)), interval)
    abs_y = np.abs(y)
    t_steps, Rs = ([t], []) if dense else (None, None)
    nsteps = nrejected = 0

    while direction * (t_end - t) > 0:
        min_step = 10.0 * abs(math.nextafter(t, direction * math.inf) - t)
        rejected = False
        while True:  # attempts of one step
            if h_abs < min_step:
                raise RKFailure("the step size became too small (the problem may be stiff or singular)", t, y, K[0])
            h = h_abs * direction
            t_new = t + h
            if direction * (t_new - t_end) >= 0:
                t_new = t_end
                h = t_new - t
                h_abs = abs(h)
            np.multiply(W1, h, out=W)
            W += W0
            for i in range(1, s):
                target = y_new if i == s - 1 else y_stage  # the last stage is taken at y_new (FSAL)
                np.dot(W[i, : i + 1], Y[: i + 1], out=target)  # y + h sum_j a_ij k_j
                fun(t + c_list[i] * h, target, K[i])
            nfev += s - 1
            np.dot(W[s], Y, out=err)
            abs_new = np.abs(y_new)
            np.maximum(abs_y, abs_new, out=scale)
            scale *= rtol
            scale += atol
            if dtype.kind == "c":
                err_norm = norm(np.abs(err) / scale)
            else:
                err /= scale
                err_norm = norm(err)
            if err_norm < 1.0:
                factor = MAX_FACTOR if err_norm == 0.0 else min(MAX_FACTOR, SAFETY * err_norm**exponent)
                if rejected:
                    factor = min(1.0, factor)
                break
            if not math.isfinite(err_norm):
                factor = MIN_FACTOR
            else:
                factor = max(MIN_FACTOR, SAFETY * err_norm**exponent)
            h_abs *= factor
            rejected = True
            nrejected += 1
        if not math.isfinite(abs(y_new.sum())):
            raise RKFailure("the state became infinite or NaN", t_new, y_new, K[-1])
        nsteps += 1
        need_out = k < len(t_out) and direction * (t_out[k] - t_new) <= 0
        if dense or need_out:
            Wd[1:] = W[s + 1 :]
            R = np.dot(Wd, Y)
            if dense:
                t_steps.append(t_new)
                Rs.append(R)
            while k < len(t_out) and direction * (t_out[k] - t_new) <= 0:
                y_at[k] = y_new if t_out[k] == t_new else _interpolate(R, (t_out[k] - t) / h)
                k += 1
        # accept: y <- y_new, k_1 <- f(t_new, y_new)
        y[...] = y_new
        K[0] = K[-1]
        abs_y = abs_new
        t = t_new
        h_abs *= factor
        if nsteps >= max_steps and direction * (t_end - t) > 0:
            raise RKFailure("step budget exhausted", t, y, K[0], budget=True)
    dense_out = RKDenseOutput(t_steps, Rs) if dense else None
    return {
        "y_at": y_at,
        "y_end": y.copy(),
        "nfev": nfev,
        "nsteps": nsteps,
        "nrejected": nrejected,
        "h_next": h_abs,
        "dense": dense_out,
    }
