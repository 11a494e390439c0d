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
  evaluations at monotone times find their step without a search;
* the step loop :func:`_rk_loop` is plain Python on NumPy arrays (no JIT):
  its cost per step is the stage kernels plus a fixed number of array
  operations, whatever the batch size.

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

import functools
import math

import numpy as np

from .tableaux import DOP853_ADAPTIVE, DOPRI5, TSIT5

__all__ = [
    "ADAPTIVE_TABLEAUX",
    "ErrorNorm",
    "RKDenseOutput",
    "StepwiseDenseOutput",
    "integrate_rk",
    "integrate_rk_intervals",
]

#: the adaptive methods by name; "DOP853" is odeverify's own stepping of Hairer's DOP853, with SciPy's
#: steps and numbers (to rounding; tests/test_rk_loop.py), without SciPy's per-step Python overhead
ADAPTIVE_TABLEAUX = {"dopri5": DOPRI5, "tsit5": TSIT5, "DOP853": DOP853_ADAPTIVE}

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
        self.ends = np.cumsum(sizes, dtype=np.int64)
        self.starts = self.ends - np.array(sizes, dtype=np.int64)

    def __call__(self, r):
        """The norm of ``r``, a real vector of scaled errors (error / scale)."""
        return _norm(r, self.starts, self.ends)


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

    @property
    def step_times(self):
        """The step boundaries in integration order, shape (N + 1,)."""
        return self._asc_arr[::-1] if self._reverse else self._asc_arr

    def steps_of(self, ts):
        """The step (in integration order) holding each time of ``ts`` (clamped to the span), shape (M,).

        A time on a boundary between two steps gets one of them; both give the same
        value where the solution is continuous.
        """
        j = np.searchsorted(self._asc_arr, ts, side="right") - 1
        np.clip(j, 0, self._nseg - 1, out=j)
        return self._nseg - 1 - j if self._reverse else j

    def at_many(self, ts):
        """The state at every time of ``ts``, shape (len(ts), size).

        One array operation per step that holds some of the times (the
        subclasses make it one operation in all where they can).
        """
        ts = np.ascontiguousarray(ts, dtype=float).reshape(-1)
        steps = self.steps_of(ts)
        order = np.argsort(steps, kind="stable")
        uniq, first = np.unique(steps[order], return_index=True)
        bounds = np.append(first, ts.size)
        out = None
        for i, lo, hi in zip(uniq, bounds[:-1], bounds[1:]):
            rows = order[lo:hi]
            y = self._eval_step(int(i), ts[rows])  # (size, k)
            if out is None:
                out = np.empty((ts.size, y.shape[0]), dtype=y.dtype)
            out[rows] = y.T
        return out if out is not None else np.empty((0, 0))

    def _eval_step(self, i, ts):
        """Step ``i``'s interpolant at the times ``ts`` (inside it), shape (size, len(ts))."""
        raise NotImplementedError

    def at(self, t, out=None):
        """The state at one time ``t``, shape (size,), written into ``out`` when given."""
        raise NotImplementedError

    def __call__(self, t):
        """The state at ``t``: shape (size,) for a scalar, (size, k) for k times (like OdeSolution)."""
        t = np.asarray(t, dtype=float)
        if t.ndim == 0:
            return self.at(float(t))
        return self.at_many(t.ravel()).T.reshape((-1,) + t.shape)


class RKDenseOutput(StepwiseDenseOutput):
    """Piecewise-polynomial dense output: per step ``y(t0 + s h) = [1, s, ..., s^d] . R``.

    ``R`` stacks the state at the step's start and ``h`` times the dense
    output's coefficient vectors, shape (d + 1, size). :func:`integrate_rk`
    returns one; the interpolants of SciPy's explicit Runge–Kutta methods and
    Radau are converted to one (:func:`odeverify._integrate.integrate_span`).
    """

    #: times evaluated together by :meth:`at_many` (bounds its temporaries)
    CHUNK = 4096

    def __init__(self, t_steps, R):
        super().__init__(t_steps)
        t_steps = np.asarray(t_steps, dtype=float)
        self._t0_arr = t_steps[:-1]
        self._h_arr = np.diff(t_steps)
        self._t0 = self._t0_arr.tolist()
        self._h = self._h_arr.tolist()
        self._R = R  # (N, d + 1, size)
        self._pw = np.ones(R.shape[1])  # scratch powers of the step fraction

    def at_many(self, ts):
        """The state at every time of ``ts``, shape (len(ts), size): searchsorted and one polynomial evaluation."""
        ts = np.ascontiguousarray(ts, dtype=float).reshape(-1)
        out = np.empty((ts.size, self._R.shape[2]), dtype=self._R.dtype)
        for lo in range(0, ts.size, self.CHUNK):
            t = ts[lo : lo + self.CHUNK]
            i = self.steps_of(t)
            s = ((t - self._t0_arr[i]) / self._h_arr[i])[:, None]
            y = out[lo : lo + self.CHUNK]
            y[...] = self._R[i, -1]
            for d in range(self._R.shape[1] - 2, -1, -1):  # Horner over the coefficient rows
                y *= s
                y += self._R[i, d]
        return out

    def at(self, t, out=None):
        j = self._j  # the cached segment, tested inline: the adjoint's monotone queries mostly hit it
        if not self._asc[j] <= t <= self._asc[j + 1]:
            j = self._segment(t)
        i = self._nseg - 1 - j if self._reverse else j
        R = self._R[i]
        if out is None:
            out = np.empty(R.shape[1], dtype=R.dtype)
        return _interpolate(R, (t - self._t0[i]) / self._h[i], out, self._pw)


class ScipyDenseOutput(StepwiseDenseOutput):
    """The step interpolants of a SciPy solver, looked up with the segment cache."""

    def __init__(self, t_steps, interpolants):
        super().__init__(t_steps)
        self._interpolants = interpolants

    def _eval_step(self, i, ts):
        return np.asarray(self._interpolants[i](ts)).reshape(-1, ts.size)

    def at(self, t, out=None):
        y = self._interpolants[self._step_index(self._segment(t))](t)
        if out is None:
            return y
        out[...] = y
        return out


def _norm(r, starts, ends):
    """Mixed RMS norm: max over groups ``r[starts[g]:ends[g]]`` of the group's RMS (NaN propagates)."""
    m = 0.0
    for g in range(starts.shape[0]):
        seg = r[starts[g] : ends[g]]
        v = np.dot(seg, seg) / (ends[g] - starts[g])
        if not v <= m:
            m = v
    return math.sqrt(m)


def _interpolate(R, s, out, pw=None):
    """``out = [1, s, s^2, ..., s^d] . R`` for one step's stacked coefficients ``R``; returns ``out``.

    ``pw``, a scratch vector of length ``R.shape[0]`` whose first entry is 1, saves an allocation.
    """
    d = R.shape[0]
    if pw is None:
        pw = np.ones(d)
    p = 1.0
    for k in range(1, d):
        p *= s
        pw[k] = p
    pw.dot(R, out)  # the method skips np.dot's dispatch
    return out


# status codes of _rk_loop
OK, STEP_TOO_SMALL, NOT_FINITE, BUDGET, F_NOT_FINITE = 0, 1, 2, 3, 4

#: state sizes up to which the error norm of a step runs on Python floats (cheaper than NumPy calls there)
SMALL_SIZE = 32

_LAYOUTS = {}


def _step_layout(W1, W0, Wd0):
    """``(H, C)``: one matrix ``M = h * H + C`` of every linear combination of a step (cached).

    Rows of ``M``: ``0..s-1`` the stage inputs, ``s`` the error estimate, ``s+1..`` the dense output's
    stacked coefficients (``Wd0``'s rows, with ``W1``'s dense rows times h). ``C`` only has a first
    column (the weight of ``y``) and ``H`` none, so ``h * H + C`` gives the same numbers as
    ``W1 * h + W0`` (two calls on contiguous arrays: cheaper than one on the strided ``M[:, 1:]``).
    """
    key = (id(W1), id(W0), id(Wd0))
    hit = _LAYOUTS.get(key)
    if hit is not None and hit[0] is W1 and hit[1] is W0 and hit[2] is Wd0:
        return hit[3], hit[4]
    s = W1.shape[1] - 1
    H = np.zeros((s + 1 + Wd0.shape[0], s + 1))
    C = np.zeros_like(H)
    H[: s + 1] = W1[: s + 1]
    C[: s + 1] = W0[: s + 1]
    H[s + 2 :] = W1[s + 1 :]
    C[s + 1 :] = Wd0
    C[s + 2 :] += W0[s + 1 :]
    if H[:, 0].any() or C[:, 1:].any():
        raise ValueError("the step matrices mix h into the weight of y; expected those of _step_matrices")
    _LAYOUTS[key] = (W1, W0, Wd0, H, C)
    return H, C


class _Workspace:
    """The buffers, weight matrix and views of :func:`_rk_loop` for one tableau, state size and dtype.

    Building them costs more than a short solve's steps (the backward sweep
    of the adjoint runs one loop per observation interval), so finished
    loops hand theirs back to a pool for the next loop of the same shape.
    """

    def __init__(self, W1, W0, Wd0, c, size, dtype, extra=None):
        self.key = (W1, W0, Wd0)
        s = c.shape[0]
        d1 = Wd0.shape[0] if extra is None else extra.D1.shape[0]
        self.H, self.C = _step_layout(W1, W0, Wd0)
        self.M = M = np.empty_like(self.H)  # h * H + C, formed per attempt
        n_extra = 0 if extra is None else extra.count
        self.Y_all = np.empty((s + 1 + n_extra, size), dtype=dtype)  # y, k_1, ..., k_s, extra stages
        self.Y = Y = self.Y_all[: s + 1]  # y, k_1, ..., k_s
        self.y_new = y_new = np.empty(size, dtype=dtype)
        self.y_stage = y_stage = np.empty(size, dtype=dtype)
        self.err = np.empty(size, dtype=dtype)
        self.scale = np.empty(size)
        self.abs_a = np.empty(size)
        self.abs_b = np.empty(size)
        self.E = E = np.empty((1 + d1, size), dtype=dtype)  # the error estimate, then the dense output's rows
        self.err_fused, self.R_new = E[0], E[1:]
        c_l = c.tolist()
        # (weights.dot, stages, input, output, node) of stages 2..s; the last input is y_new (FSAL). Bound
        # ndarray.dot methods skip np.dot's dispatch, a third of its cost on short vectors.
        self.stages = [
            (M[i, : i + 1].dot, Y[: i + 1], y_new if i == s - 1 else y_stage, Y[i + 1], c_l[i]) for i in range(1, s)
        ]
        self.err_dot, self.tail_dot = M[s].dot, M[s:].dot
        self.y_row, self.f_row, self.k_last = Y[0], Y[1], Y[s]
        self.extra = extra
        if extra is not None:  # DOP853: the second estimator, extra stages and dense rows, formed per step
            self.e3 = np.empty(s + 1)
            self.X = np.empty_like(extra.X)
            self.D = np.empty_like(extra.D1)
            self.err3 = np.empty(size, dtype=dtype)
            self.R_extra = np.empty((extra.D1.shape[0], size), dtype=dtype)
            self.extra_stages = [
                (self.X[j, : s + 1 + j].dot, self.Y_all[: s + 1 + j], self.Y_all[s + 1 + j], float(extra.c[j]))
                for j in range(extra.count)
            ]


_WORKSPACES = {}
_POOL_SIZE = 32


def _rk_loop(fun, t, t_end, y0, W1, W0, Wd0, c, exponent, rtol, atol, starts, ends, t_out, dense, max_steps, h_abs, order_err, cplx,
             extra=None):
    """The adaptive step loop.

    ``fun(t, y, out)`` writes dy/dt into ``out``. Every linear
    combination of a step is one dot with ``Y = [y, k_1, ..., k_s]``: with
    ``W = h * W1 + W0``, rows ``0..s-1`` of ``W`` give the stage inputs, row
    ``s`` the error estimate, rows ``s+1..`` (with ``Wd0``) the dense output's
    stacked coefficients. ``h_abs <= 0`` asks for Hairer's starting step.
    ``extra`` (an :class:`_Extra`, DOP853) adds the second error estimator,
    with DOP853's norm, and the extra stages of its dense output.

    The loop's own cost per attempt is a fixed handful of NumPy calls on
    preallocated buffers and views (a :class:`_Workspace`): two form all
    the weights, one dot per stage, one for the error (together with the
    dense output when the step needs it); for states of at most
    :data:`SMALL_SIZE` real components the scaled error norm runs on
    Python floats, which costs less than NumPy calls on such short vectors.

    Returns ``(status, t, y, f, y_at, nfev, nsteps, nrejected, h_abs, t_steps, R_all, n_dense)``.
    """
    key = (id(W1), id(W0), id(Wd0), y0.shape[0], y0.dtype.char)
    ws = _WORKSPACES.pop(key, None)  # popped: a nested solve (fun solving) builds its own
    if ws is None or ws.key[0] is not W1 or ws.key[1] is not W0 or ws.key[2] is not Wd0:
        ws = _Workspace(W1, W0, Wd0, c, y0.shape[0], y0.dtype, extra)
    try:
        return _rk_steps(ws, fun, t, t_end, y0, c, exponent, rtol, atol, starts, ends, t_out, dense, max_steps,
                         h_abs, order_err, cplx)
    finally:
        if len(_WORKSPACES) >= _POOL_SIZE:  # many shapes seen: keep the pool small
            _WORKSPACES.clear()
        _WORKSPACES[key] = ws


def _rk_steps(ws, fun, t, t_end, y0, c, exponent, rtol, atol, starts, ends, t_out, dense, max_steps, h_abs, order_err, cplx):
    """The body of :func:`_rk_loop`, on the buffers of the workspace ``ws``."""
    s = c.shape[0]
    Y, y_new, y_stage, err, scale = ws.Y, ws.y_new, ws.y_stage, ws.err, ws.scale
    H, C, M, E, err_fused, R_new = ws.H, ws.C, ws.M, ws.E, ws.err_fused, ws.R_new
    stages, err_dot, tail_dot = ws.stages, ws.err_dot, ws.tail_dot
    y_row, f_row, k_last = ws.y_row, ws.f_row, ws.k_last
    extra = ws.extra
    d1 = E.shape[0] - 1 if extra is None else ws.R_extra.shape[0]
    size = y0.shape[0]
    direction = 1.0 if t_end > t else -1.0
    interval = abs(t_end - t)
    y_row[...] = y0
    n_out = t_out.shape[0]
    y_at = np.empty((n_out, size), dtype=y0.dtype)
    cap = max(4, min(256, 1_000_000 // (d1 * size + 1))) if dense else 1  # steps stored before growing
    t_steps = np.empty(cap + 1)
    R_all = np.empty((cap, d1, size), dtype=y0.dtype)
    n_dense = 0
    t_steps[0] = t
    k = 0
    t_out_l = t_out.tolist()
    while k < n_out and t_out_l[k] == t:
        y_at[k] = y_row
        k += 1
    small = size <= SMALL_SIZE and not cplx
    fun(t, y_row, f_row)
    nfev = 1
    if not math.isfinite(sum(f_row.tolist()) if small else abs(np.add.reduce(f_row))):
        # f undefined at the start: no step size can help
        return F_NOT_FINITE, t, Y[0].copy(), Y[1].copy(), y_at, nfev, 0, 0, h_abs, t_steps, R_all, n_dense
    if h_abs <= 0.0:  # Hairer's starting step size (Solving ODEs I, II.4), one more evaluation
        scale[:] = np.abs(Y[0]) * rtol + atol
        dd0 = _norm(np.abs(Y[0]) / scale, starts, ends)
        dd1 = _norm(np.abs(Y[1]) / scale, starts, ends)
        h0 = 1e-6 if (dd0 < 1e-5 or dd1 < 1e-5) else 0.01 * dd0 / dd1
        h0 = min(h0, interval)
        if h0 > 0.0:
            y_stage[:] = Y[0] + (h0 * direction) * Y[1]
            fun(t + h0 * direction, y_stage, err)
            nfev += 1
            dd2 = _norm(np.abs(err - Y[1]) / scale, starts, ends) / h0
            if dd1 <= 1e-15 and dd2 <= 1e-15:
                h1 = max(1e-6, h0 * 1e-3)
            else:
                h1 = (0.01 / max(dd1, dd2)) ** (1.0 / (order_err + 1))
            h_abs = min(100 * h0, h1, interval)
        else:  # dz/dt so large against z that no step is representable: a collapsed step size, reported as such
            h_abs = 0.0
    else:
        h_abs = min(h_abs, interval)

    groups = [(a, b, b - a) for a, b in zip(starts.tolist(), ends.tolist())]  # (start, end, count)
    if small:
        atol_l = atol.tolist() if np.ndim(atol) else [float(atol)] * size
        abs_y_l = [abs(v) for v in y_row.tolist()]
    else:
        abs_y, abs_new = ws.abs_a, ws.abs_b
        np.abs(y_row, abs_y)
        one_group = len(groups) == 1
    nsteps = 0
    nrejected = 0
    factor = 1.0
    h_formed = None  # the h that M holds
    while direction * (t_end - t) > 0:
        min_step = 10.0 * 2.220446049250313e-16 * max(abs(t), 1e-300)
        rejected = False
        err_finite = True
        while True:  # attempts of one step
            if not h_abs >= min_step:  # (also a NaN step size)
                status = STEP_TOO_SMALL if err_finite else F_NOT_FINITE
                return status, t, Y[0].copy(), Y[1].copy(), y_at, nfev, nsteps, nrejected, h_abs, t_steps, R_all, n_dense
            h = h_abs * direction
            t_new = t + h
            if direction * (t_new - t_end) >= 0:
                t_new = t_end
                h = t_new - t
                h_abs = abs(h)
            if h != h_formed:
                np.multiply(H, h, M)
                np.add(M, C, M)
                if extra is not None:
                    _form_extra(ws, extra, h)
                h_formed = h
            for w_dot, Ys, target, k_out, ci in stages:
                w_dot(Ys, target)  # y + h sum_j a_ij k_j
                fun(t + ci * h, target, k_out)
            nfev += s - 1
            need_out = k < n_out and direction * (t_out_l[k] - t_new) <= 0
            if extra is not None:  # DOP853: two estimators and its own norm; dense output after acceptance
                err_dot(Y, err)
                ws.e3.dot(Y, ws.err3)
                err_norm = _dop853_norm(err, ws.err3, y_row, y_new, rtol, atol, groups, cplx)
            elif dense or need_out:  # error and dense output in one product
                tail_dot(Y, E)
                e = err_fused
            else:
                err_dot(Y, err)  # h sum_j (b_j - b_err_j) k_j
                e = err
            if extra is not None:
                if small:
                    y_new_l = y_new.tolist()
                    abs_new_l = None
            elif small:
                y_new_l = y_new.tolist()
                abs_new_l = [abs(v) for v in y_new_l]
                q = [
                    x / ((a if a > b else b) * rtol + at)
                    for x, a, b, at in zip(e.tolist(), abs_y_l, abs_new_l, atol_l)
                ]
                m = 0.0
                for lo, hi, count in groups:
                    v = 0.0
                    for x in q[lo:hi]:
                        v += x * x
                    v /= count
                    if not v <= m:
                        m = v
                err_norm = math.sqrt(m)
            else:
                np.abs(y_new, abs_new)
                np.maximum(abs_y, abs_new, out=scale)
                np.multiply(scale, rtol, scale)
                np.add(scale, atol, scale)
                if cplx:
                    r = np.abs(e)
                    np.divide(r, scale, r)
                else:
                    r = np.divide(e, scale, scale)
                if one_group:
                    err_norm = math.sqrt(float(r.dot(r)) / size)
                else:
                    m = 0.0
                    for lo, hi, count in groups:
                        seg = r[lo:hi]
                        v = seg.dot(seg) / count
                        if not v <= m:
                            m = v
                    err_norm = math.sqrt(m)
            if err_norm < 1.0:
                factor = MAX_FACTOR if err_norm == 0.0 else min(MAX_FACTOR, SAFETY * err_norm**exponent)
                if rejected:
                    factor = min(1.0, factor)
                break
            err_finite = math.isfinite(err_norm)
            if err_finite:
                factor = max(MIN_FACTOR, SAFETY * err_norm**exponent)
            else:  # a NaN/inf stage: too large a step, or f undefined there (found out at the minimum step)
                factor = MIN_FACTOR
            h_abs *= factor
            rejected = True
            nrejected += 1
        if not math.isfinite(sum(y_new_l) if small else abs(np.add.reduce(y_new))):
            return NOT_FINITE, t_new, y_new.copy(), Y[s].copy(), y_at, nfev, nsteps, nrejected, h_abs, t_steps, R_all, n_dense
        nsteps += 1
        if dense or need_out:
            if extra is not None:  # the extra stages of DOP853's interpolant, then its coefficients
                for w_dot, Ys, k_out, cj in ws.extra_stages:
                    w_dot(Ys, y_stage)
                    fun(t + cj * h, y_stage, k_out)
                nfev += extra.count
                ws.D.dot(ws.Y_all, ws.R_extra)
                R_new = ws.R_extra
            if dense:
                if n_dense == cap:  # grow the dense storage
                    grown = np.empty((2 * cap, d1, size), dtype=y0.dtype)
                    grown[:cap] = R_all
                    R_all = grown
                    t_grown = np.empty(2 * cap + 1)
                    t_grown[: cap + 1] = t_steps
                    t_steps = t_grown
                    cap *= 2
                R_all[n_dense] = R_new
                n_dense += 1
                t_steps[n_dense] = t_new
            while k < n_out and direction * (t_out_l[k] - t_new) <= 0:
                if t_out_l[k] == t_new:
                    y_at[k] = y_new
                else:
                    _interpolate(R_new, (t_out_l[k] - t) / h, y_at[k])
                k += 1
        # accept: y <- y_new, k_1 <- f(t_new, y_new)
        y_row[...] = y_new
        f_row[...] = k_last
        if extra is not None:
            pass  # DOP853's norm scales by the states themselves
        elif small:
            abs_y_l = abs_new_l
        else:
            abs_y, abs_new = abs_new, abs_y
        t = t_new
        h_abs *= factor
        if nsteps >= max_steps and direction * (t_end - t) > 0:
            return BUDGET, t, Y[0].copy(), Y[1].copy(), y_at, nfev, nsteps, nrejected, h_abs, t_steps, R_all, n_dense
    return OK, t, Y[0].copy(), Y[1].copy(), y_at, nfev, nsteps, nrejected, h_abs, t_steps, R_all, n_dense


def _form_extra(ws, extra, h):
    """DOP853's per-step weights (see :class:`_Extra`) for the step size ``h``."""
    np.multiply(extra.e3, h, ws.e3)
    np.multiply(extra.X, h, ws.X)
    ws.X[:, 0] = 1.0
    np.multiply(extra.D1, h, ws.D)
    np.add(ws.D, extra.D0, ws.D)


def _dop853_norm(err5, err3, y, y_new, rtol, atol, groups, cplx):
    """DOP853's error norm (Hairer's dop853.f, as SciPy computes it), the largest over the groups.

    With ``e5 = err5 / scale`` and ``e3 = err3 / scale`` (both already times h) and the squared sums
    over a group of ``count`` components: ``|e5|^2 / sqrt((|e5|^2 + 0.01 |e3|^2) count)``.
    """
    scale = np.maximum(np.abs(y), np.abs(y_new))
    scale *= rtol
    scale += atol
    r5 = np.abs(err5) / scale if cplx else err5 / scale
    r3 = np.abs(err3) / scale if cplx else err3 / scale
    m = 0.0
    for lo, hi, count in groups:
        a5, a3 = r5[lo:hi], r3[lo:hi]
        n5, n3 = float(a5.dot(a5)), float(a3.dot(a3))
        v = 0.0 if (n5 == 0.0 and n3 == 0.0) else n5 / math.sqrt((n5 + 0.01 * n3) * count)
        if not v <= m:
            m = v
    return m


def _rk_intervals(fun, times, keep, add, W1, W0, Wd0, c, exponent, rtol, atol, starts, ends, max_steps, h_abs, order_err,
                  dense_steps=None, extra=None):
    """:func:`_rk_loop` over consecutive intervals ``times[k] -> times[k+1]``, restarting each from
    ``keep * y_end(previous) + add[k]`` (``y_end(-1) = 0``): the backward adjoint sweep in one call.

    ``keep`` (size,) and ``add`` (K, size) express the jumps of the adjoint at the observation times
    and the restart of a reconstructed state from the forward one. Each interval has its own step
    budget; the step size proposed at the end of one starts the next (``h_abs <= 0``: Hairer's).
    With a list ``dense_steps``, every interval appends its ``(t_steps, R)`` (the dense output's step
    boundaries and stacked coefficients, as :class:`RKDenseOutput` takes them).

    Returns ``(status, k, t, y, f, Y_end, nfev, nsteps, h_abs)``: ``Y_end[k]`` the state at the end of
    interval k; on a failure ``k`` is the failed interval and ``t, y, f`` where it stopped.
    """
    K = times.shape[0] - 1
    size = add.shape[1]
    Y_end = np.zeros((K, size))
    no_out = np.empty(0)
    dense = dense_steps is not None
    y = np.zeros(size)
    nfev = 0
    nsteps = 0
    for k in range(K):
        if k == 0:
            y[:] = add[0]
        else:
            y[:] = keep * Y_end[k - 1] + add[k]
        status, t, y_end, f, y_at, nf, ns, nr, h_abs, t_steps, R_all, n_dense = _rk_loop(
            fun, times[k], times[k + 1], y, W1, W0, Wd0, c, exponent, rtol, atol, starts, ends,
            no_out, dense, max_steps, h_abs, order_err, False, extra,
        )
        nfev += nf
        nsteps += ns
        if status != OK:
            return status, k, t, y_end, f, Y_end, nfev, nsteps, h_abs
        Y_end[k] = y_end
        if dense:
            dense_steps.append((t_steps[: n_dense + 1].copy(), R_all[:n_dense].copy()))  # not the grown buffers
    return OK, K, times[K], y, y, Y_end, nfev, nsteps, h_abs


class RKFailure(Exception):
    """Raised by :func:`integrate_rk`; the caller turns it into an IntegrationError."""

    def __init__(self, status, t, y, f):
        super().__init__(_MESSAGES[status])
        self.status = status  # one of the status codes of _rk_loop
        self.t, self.y, self.f = float(t), y, f


_MESSAGES = {
    STEP_TOO_SMALL: "the step size became too small (the problem may be stiff or singular)",
    NOT_FINITE: "the state became infinite or NaN",
    F_NOT_FINITE: "the vector field returned NaN or inf",
    BUDGET: "step budget exhausted",
}


_MATRICES = {}


@functools.lru_cache(maxsize=256)
def _group_bounds(size, groups):
    norm = ErrorNorm(size, groups)
    return norm.starts, norm.ends


def _step_matrices(tableau):
    """``W1, W0, Wd0, c, extra`` of :func:`_rk_loop` for a tableau (cached).

    ``extra`` is None for a pair with one error estimator (``b_err``) and a
    dense output on the stages; for DOP853's form (``E``, ``A_extra``) it is a
    :class:`_Extra`: the second error estimator, the extra stages and the
    dense output over them, which the loop evaluates only on accepted steps
    that need dense output (as Hairer's dop853.f and SciPy do).
    """
    if tableau.name not in _MATRICES or _MATRICES[tableau.name][0] is not tableau:
        two_err = tableau.E is not None
        if not tableau.fsal or tableau.P is None or (tableau.b_err is None and not two_err):
            raise ValueError(f"{tableau.name}: integrate_rk needs an FSAL tableau with b_err (or E) and a dense output P")
        s = tableau.stages
        d = 0 if two_err else tableau.P.shape[1]
        W1 = np.zeros((s + 1 + d, s + 1))
        W1[:s, 1:] = tableau.A
        W1[s, 1:] = tableau.E[0] if two_err else tableau.b - tableau.b_err
        W0 = np.zeros_like(W1)
        W0[:s, 0] = 1.0
        Wd0 = np.zeros((d + 1, s + 1))  # the dense output's rows: y, then h * P^T K
        Wd0[0, 0] = 1.0
        extra = None
        if two_err:
            extra = _Extra(tableau)
        else:
            W1[s + 1 :, 1:] = tableau.P.T
        _MATRICES[tableau.name] = (tableau, (W1, W0, Wd0, np.array(tableau.c, dtype=float), extra))
    return _MATRICES[tableau.name][1]


class _Extra:
    """DOP853's second error estimator, extra stages and dense output, as weight matrices.

    With ``Y = [y, k_1, ..., k_s, x_1, ..., x_e]`` (``k_s = f(y_new)``): ``E3 = h * e3 . Y`` is the
    second estimator, extra stage j's input ``h * X[j] . Y + y``, the dense output's stacked
    coefficients ``R = h * D1 . Y + D0 . Y`` (``R[0] = y``).
    """

    def __init__(self, tableau):
        s, e = tableau.stages, tableau.A_extra.shape[0]
        d = tableau.P.shape[1]
        self.stages, self.count = s, e
        self.c = np.array(tableau.c_extra, dtype=float)
        self.e3 = np.zeros(s + 1)
        self.e3[1:] = tableau.E[1]
        self.X = np.zeros((e, s + 1 + e))
        self.X[:, 1:] = tableau.A_extra[:, : s + e]
        self.D1 = np.zeros((d + 1, s + 1 + e))
        self.D1[1:, 1:] = tableau.P.T
        self.D0 = np.zeros_like(self.D1)
        self.D0[0, 0] = 1.0


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
    W1, W0, Wd0, c, extra = _step_matrices(tableau)
    y0 = np.asarray(y0)
    dtype = np.result_type(y0.dtype, np.float64)
    y0 = np.ascontiguousarray(y0, dtype=dtype)
    size = y0.size
    starts, ends = _group_bounds(size, None if groups is None else tuple(groups))
    atol = np.full(size, atol) if np.ndim(atol) == 0 else np.ascontiguousarray(atol, dtype=float)
    t_out = np.ascontiguousarray(t_out, dtype=float).reshape(-1)
    cplx = dtype.kind == "c"
    out = _rk_loop(
        fun, float(t_start), float(t_end), y0, W1, W0, Wd0, c, -1.0 / tableau.order,
        float(rtol), atol, starts, ends, t_out, bool(dense), int(max_steps),
        -1.0 if first_step is None else abs(float(first_step)), tableau.order - 1, cplx, extra,
    )
    status, t, y, f, y_at, nfev, nsteps, nrejected, h_abs, t_steps, R_all, n_dense = out
    if status != OK:
        raise RKFailure(status, t, y, f)
    return {
        "y_at": y_at,
        "y_end": y,
        "nfev": int(nfev),
        "nsteps": int(nsteps),
        "nrejected": int(nrejected),
        "h_next": float(h_abs),
        "dense": RKDenseOutput(t_steps[: n_dense + 1], R_all[:n_dense]) if dense else None,
    }


def integrate_rk_intervals(fun, times, keep, add, tableau, *, rtol, atol, max_steps=100_000, groups=None, dense=False):
    """Integrate over consecutive intervals with jumps between them (see :func:`_rk_intervals`).

    Parameters
    ----------
    fun : callable
        As for :func:`integrate_rk` (real states only).
    times : ndarray, shape (K + 1,)
        Monotone; interval k is ``times[k] -> times[k + 1]``.
    keep : ndarray, shape (size,)
        Factor of the previous interval's end state in the next start.
    add : ndarray, shape (K, size)
        Added to the start of interval k (interval 0 starts at ``add[0]``).
    tableau, rtol, atol, max_steps, groups
        As for :func:`integrate_rk`; ``max_steps`` is each interval's budget.
    dense : bool
        Keep every step: ``"dense"`` of the result is one :class:`RKDenseOutput`
        over all intervals (discontinuous at the interval boundaries, where the
        jumps are; a boundary time gets one of its two steps).

    Returns
    -------
    dict
        ``Y_end`` (K, size), the states at the intervals' ends; ``nfev``, ``nsteps``;
        ``dense`` (an :class:`RKDenseOutput` or None).

    Raises
    ------
    RKFailure
        With ``.interval``, the index of the interval that failed.
    """
    W1, W0, Wd0, c, extra = _step_matrices(tableau)
    times = np.ascontiguousarray(times, dtype=float)
    keep = np.ascontiguousarray(keep, dtype=float)
    add = np.ascontiguousarray(add, dtype=float)
    size = add.shape[1]
    starts, ends = _group_bounds(size, None if groups is None else tuple(groups))
    atol = np.full(size, atol) if np.ndim(atol) == 0 else np.ascontiguousarray(atol, dtype=float)
    dense_steps = [] if dense else None
    status, k, t, y, f, Y_end, nfev, nsteps, h_abs = _rk_intervals(
        fun, times, keep, add, W1, W0, Wd0, c, -1.0 / tableau.order, float(rtol), atol, starts, ends,
        int(max_steps), -1.0, tableau.order - 1, dense_steps, extra,
    )
    if status != OK:
        exc = RKFailure(status, t, y, f)
        exc.interval = int(k)
        raise exc
    out = {"Y_end": Y_end, "nfev": int(nfev), "nsteps": int(nsteps), "dense": None}
    if dense:
        out["dense"] = joined_dense_output(dense_steps)
    return out


def joined_dense_output(pieces):
    """One :class:`RKDenseOutput` from consecutive pieces ``(t_steps, R)``, each starting where the last ended."""
    t_steps = np.concatenate([pieces[0][0][:1]] + [ts[1:] for ts, _ in pieces])
    return RKDenseOutput(t_steps, np.concatenate([R for _, R in pieces]))
