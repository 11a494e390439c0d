"""One-step methods (notes §2.4–2.5): the observed order of convergence of a Runge–Kutta tableau."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._integrate import solve
from .._validate import _as_float_array, as_field, check_theta
from .._display import fmt
from ..errors import InvalidArgumentError
from ..tableaux import get_tableau, odeint_fixed
from ._checks import check_state, check_steps, check_t_span
from ._table import table_lines

__all__ = ["OrderReport", "convergence_order", "fit_order"]

#: default numbers of steps of the refined series; with ``steps=None`` coarser series (halved, down to
#: one step) are tried until three errors are measurable, as high-order methods need on smooth problems
DEFAULT_STEPS = (8, 16, 32, 64, 128)
#: a point enters the fit only if its error exceeds this many times the reference's error bound
FLOOR_FACTOR = 100.0


def fit_order(h, errors):
    """Least-squares slope of log(error) against log(h), the observed order.

    Parameters
    ----------
    h, errors : array_like, shape (m,)
        Step sizes and errors, m >= 2, all positive.

    Returns
    -------
    float

    Examples
    --------
    >>> float(round(fit_order([0.1, 0.05, 0.025], [1e-2, 2.5e-3, 6.25e-4]), 12))
    2.0
    """
    h = _as_float_array(h, "h")
    errors = _as_float_array(errors, "errors")
    if h.ndim != 1 or h.shape != errors.shape:
        raise InvalidArgumentError(
            f"h and errors must be 1-D arrays of one length, got shapes {h.shape} and {errors.shape}"
        )
    if h.size < 2 or np.unique(h).size < 2:
        raise InvalidArgumentError(f"fit_order needs at least two distinct step sizes, got h = {h.tolist()}")
    for name, v in (("h", h), ("errors", errors)):
        if not np.all(np.isfinite(v)) or np.any(v <= 0):
            raise InvalidArgumentError(
                f"every entry of {name} must be positive and finite (the fit is in log-log), got {v.tolist()}; "
                "an error of exactly 0 carries no order: leave such points out"
            )
    slope, _ = np.polyfit(np.log(h), np.log(errors), 1)
    return float(slope)


@dataclass
class OrderReport:
    """The observed order of a one-step method on one problem.

    Attributes
    ----------
    method : str
    expected : int
        The tableau's classical order.
    order : float
        Fitted slope of log(error) against log(h) over the points used.
    steps : ndarray of int, shape (m,)
    h : ndarray, shape (m,)
        Step sizes ``(t1 - t0) / steps``.
    errors : ndarray, shape (m,)
        Max-norm error of z(t1) against the reference.
    used : ndarray of bool, shape (m,)
        Points in the fit: those whose error is over ``FLOOR_FACTOR`` times
        the reference's error bound (below it, rounding and the reference's
        own error would bend the line).
    reference : str
        ``"exact"`` or a description of the high-accuracy solve.
    reference_error : float
        The bound on the reference's error that set the floor.
    """

    method: str
    expected: int
    order: float
    steps: np.ndarray
    h: np.ndarray
    errors: np.ndarray
    used: np.ndarray
    reference: str
    reference_error: float

    def __repr__(self):
        return f"<OrderReport {self.method}: observed order {fmt(self.order, '.3f')} (expected {self.expected})>"

    @property
    def rounded(self) -> int:
        """The observed order rounded to the nearest integer."""
        return int(round(self.order))

    @property
    def matches(self) -> bool:
        """The rounded observed order equals the tableau's order."""
        return self.rounded == self.expected

    def plot(self, *, ax=None):
        """Error against step h, log–log, with the fitted slope (:func:`odeverify.plotting.plot_order`).

        Returns the matplotlib Figure.
        """
        from ..plotting import plot_order

        return plot_order(self, ax=ax)

    def __str__(self):
        lines = [
            f"{self.method}: observed order {self.order:.3f} (expected {self.expected}) "
            f"against {self.reference}",
        ]
        used = ["yes" if u else "no (below floor)" for u in self.used]
        cols = [("steps", 7, "d"), ("h", 12, ".4e"), ("error", 12, ".4e"), ("used", 5, "")]
        lines += table_lines(cols, zip(self.steps, self.h, self.errors, used))
        return "\n".join(lines)


def convergence_order(system, z0, theta, t_span, method, *, steps=None, exact=None):
    r"""Measure the order of a one-step method: the slope of log error against log h.

    Integrates dz/dt = f(z, t; theta) from ``t_span[0]`` to ``t_span[1]``
    with the fixed-step method ``method`` (:func:`odeverify.tableaux.odeint_fixed`,
    the step shared by every fixed-step solver) for each number of steps in
    ``steps``, measures the max-norm error of z(t1), and fits
    :math:`\log e = p \log h + c`. A method of order p has
    :math:`e = C h^p + O(h^{p+1})`, so the slope tends to p (Euler 1, Heun
    and midpoint 2, RK4 4; notes §2.4–2.5).

    Parameters
    ----------
    system : ODESystem or vector field
    z0 : array_like, shape (n,)
    theta : array_like, shape (p,)
    t_span : (float, float)
    method : str or Tableau
        A name in :data:`odeverify.tableaux.TABLEAUX` or a Tableau.
    steps : sequence of int, optional
        The refined series (at least 3 values). Default :data:`DEFAULT_STEPS`, halved (down to one
        step) until at least three errors lie above the floor of rounding and the reference's error.
    exact : array_like of shape (n,), or callable, optional
        z(t1) exactly, or ``exact(t) -> z(t)``. Without it the reference is
        DOP853 at ``rtol = 1e-13``, whose error is bounded by its distance to
        a solve at ``rtol = 1e-11`` (over-estimating it).

    Returns
    -------
    OrderReport
        ``.order`` (fitted), ``.expected``, ``.matches`` and the table.

    Raises
    ------
    InvalidArgumentError
        When fewer than 3 points lie above the reference's error floor
        (choose fewer steps).

    References
    ----------
    E. Hairer, S. P. Nørsett, G. Wanner, *Solving Ordinary Differential
    Equations I*, 2nd ed., Springer 1993, §II.3 (convergence of one-step methods).

    Examples
    --------
    >>> import numpy as np, odeverify
    >>> from odeverify.theory import convergence_order
    >>> growth = odeverify.ODESystem.from_strings("x", "", ["x"])   # notes §2.2: x(t) = e^t
    >>> rep = convergence_order(growth, [1.0], [], (0.0, 1.0), "heun", exact=[np.e])
    >>> rep.rounded, rep.matches
    (2, True)
    """
    fld = as_field(system, z0, theta)
    n = fld.n_states
    z0 = check_state(z0, n)
    theta = check_theta(theta, fld.n_params)
    t0, t1 = check_t_span(t_span)
    tab = get_tableau(method)
    series = [check_steps(steps, "steps")] if steps is not None else _default_series()

    def f(z, t):
        return fld.eval_f(z[None, :], t, theta)[0]

    for steps_arr in series:
        report = _measure(fld, f, z0, theta, t0, t1, tab, steps_arr, exact, n, last=steps_arr is series[-1])
        if report is not None:
            return report
    raise AssertionError("unreachable: the last series raises")  # pragma: no cover


def _default_series():
    """DEFAULT_STEPS, then halved series down to one step: (8..128), (4..64), (2..32), (1..16)."""
    base = np.asarray(DEFAULT_STEPS, dtype=int)
    out = []
    while base[0] >= 1:
        out.append(base)
        base = base // 2
    return out


def _measure(fld, f, z0, theta, t0, t1, tab, steps_arr, exact, n, *, last):
    """The OrderReport of one refined series, or None when too few errors are measurable (unless ``last``)."""
    finals = np.array([odeint_fixed(f, z0, [t0, t1], method=tab, steps=int(m))[-1] for m in steps_arr])
    scale = max(1.0, float(np.max(np.abs(finals))))
    if exact is not None:
        ref = exact(t1) if callable(exact) else exact
        ref = _as_float_array(ref, "exact").reshape(-1)
        if ref.shape != (n,) or not np.all(np.isfinite(ref)):
            raise InvalidArgumentError(f"exact must give z(t1) as {n} finite numbers, got {ref.tolist()!r}")
        reference = "the exact solution"
        ref_err = 0.0
    else:
        fine = solve(fld, z0, [t0, t1], theta, method="DOP853", rtol=1e-13, atol=1e-13 * scale).z[-1]
        coarse = solve(fld, z0, [t0, t1], theta, method="DOP853", rtol=1e-11, atol=1e-11 * scale).z[-1]
        ref = fine
        ref_err = float(np.max(np.abs(fine - coarse)))
        reference = "DOP853 at rtol=1e-13"
    # rounding in the fixed-step solve grows like (number of steps) * eps * |z|
    floor = np.maximum(ref_err, steps_arr * np.finfo(float).eps * scale)
    errors = np.max(np.abs(finals - ref), axis=1)
    used = errors > FLOOR_FACTOR * floor
    h = abs(t1 - t0) / steps_arr
    if used.sum() < 3 and not last:
        return None
    if used.sum() < 3 and not np.any(errors > 0):
        raise InvalidArgumentError(
            f"{tab.name} integrates this problem exactly with {steps_arr.tolist()} steps (every error is 0: "
            "e.g. z0 is an equilibrium, or the solution is a low-degree polynomial); no order can be measured, "
            "choose another z0 or theta"
        )
    if used.sum() < 3:
        raise InvalidArgumentError(
            f"only {int(used.sum())} of the errors {errors.tolist()} lie above the floor "
            f"{FLOOR_FACTOR:g} x {floor.max():.1e} set by rounding and the reference's accuracy; pass fewer "
            f"steps (e.g. steps=(4, 8, 16, 32)) so that the errors are measurable"
        )
    order = fit_order(h[used], errors[used])
    return OrderReport(
        method=tab.name,
        expected=tab.order,
        order=order,
        steps=steps_arr,
        h=h,
        errors=errors,
        used=used,
        reference=reference,
        reference_error=ref_err,
    )
