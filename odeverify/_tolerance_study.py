"""tolerance_study: how the adjoint's gradient error falls with the solver tolerance, per mode and method."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

from ._adjoint import adjoint_gradients
from ._check import DEFAULT_RTOL
from ._validate import _as_float_array, check_method, check_mode
from .errors import IntegrationError, InvalidArgumentError, InvalidTypeError
from .references import QUANTITIES, AutogradRK, Exact, ForwardSensitivity, make_problem

__all__ = ["tolerance_study", "ToleranceStudy", "DEFAULT_STUDY_RTOLS"]

#: the default ladder of solver tolerances, 1e-3 down to 1e-10
DEFAULT_STUDY_RTOLS = tuple(10.0 ** -np.arange(3, 11))
_WORDS = {"z0": "∂L/∂z0", "theta": "∂L/∂θ", "t": "∂L/∂t"}


@dataclass
class ToleranceStudy:
    """The outcome of :func:`tolerance_study`.

    Attributes
    ----------
    rtols : ndarray, shape (R,)
        The solver tolerances (rtol = atol), loosest first.
    runs : list of (str, str)
        The (mode, method) pairs, in the order given.
    quantities : tuple of str
        The gradient groups studied (``"z0"``, ``"theta"``, ``"t"``; those with entries).
    errors : dict
        ``errors[(mode, method)][q]``, shape (R,): the max-norm absolute error
        of quantity q at each rtol against the reference (NaN where the
        solve failed).
    estimates : dict
        ``estimates[(mode, method)][q]``, shape (R,): the error model that
        odeverify's references use, ``|g(rtol) - g(rtol / 100)|``, where
        the ladder holds rtol / 100 (else NaN).
    reference : dict
        The reference gradients, ``q -> ndarray``.
    reference_errors : dict
        Their own error estimates (max-norm per quantity).
    reference_name : str
    scales : dict
        ``q -> float``: the scale errors are divided by in
        :meth:`relative_error` (the quantity's largest reference entry, at
        least 1e-3 of the largest of any quantity, as in the check).
    check_rtol : float
        The comparison rtol of :func:`~odeverify.check_gradients` whose
        admitted error is shown (its default).
    check_tolerances : dict
        ``q -> float``: the smallest tolerance that check gives an entry of q
        at ``check_rtol``, before adding the references' own error.
    failures : list of str
        Solves that failed, in words.
    """

    rtols: np.ndarray
    runs: list
    quantities: tuple
    errors: dict
    estimates: dict
    reference: dict
    reference_errors: dict
    reference_name: str
    scales: dict
    check_rtol: float
    check_tolerances: dict
    failures: list = field(default_factory=list)

    def relative_error(self, quantity, mode, method):
        """``errors[(mode, method)][quantity] / scales[quantity]``, shape (R,)."""
        return self.errors[(mode, method)][quantity] / self.scales[quantity]

    def relative_estimate(self, quantity, mode, method):
        """``estimates[(mode, method)][quantity] / scales[quantity]``, shape (R,)."""
        return self.estimates[(mode, method)][quantity] / self.scales[quantity]

    def check_threshold(self, quantity):
        """The check's smallest admitted error for ``quantity`` at ``check_rtol``, relative to its scale."""
        return self.check_tolerances[quantity] / self.scales[quantity]

    def reference_floor(self, quantity):
        """The reference's own error for ``quantity``, relative to its scale (errors below it are not measured)."""
        return self.reference_errors[quantity] / self.scales[quantity]

    def loosest_passing(self, mode, method):
        """The loosest rtol from which on every tighter rtol's errors are below the check's thresholds, or None."""
        ok = np.ones(len(self.rtols), dtype=bool)
        for q in self.quantities:
            e = self.errors[(mode, method)][q]
            ok &= np.isfinite(e) & (e <= self.check_tolerances[q])
        for k in range(len(ok)):
            if ok[k:].all():
                return float(self.rtols[k])
        return None

    def table(self):
        """The errors as a text table, one block per (mode, method)."""
        lines = [
            f"tolerance study against {self.reference_name}: max |error| / max |reference| per quantity "
            f"(estimate: |g(rtol) − g(rtol/100)|, the references' error model)"
        ]
        head = f"  {'rtol':>8}" + "".join(f"  {_WORDS[q]:>10}  {'estimate':>9}" for q in self.quantities)
        for mode, method in self.runs:
            passing = self.loosest_passing(mode, method)
            lines.append("")
            lines.append(f"{mode}, {method}: check_gradients (rtol={self.check_rtol:g}) passes from rtol = "
                         + (f"{passing:g}" if passing is not None else "— (never)"))
            lines.append(head)
            for k, rt in enumerate(self.rtols):
                cells = "".join(
                    f"  {_fmt(self.relative_error(q, mode, method)[k]):>10}  "
                    f"{_fmt(self.relative_estimate(q, mode, method)[k]):>9}"
                    for q in self.quantities
                )
                lines.append(f"  {rt:8.0e}{cells}")
        lines.append("")
        lines.append("reference's own error: " + ", ".join(
            f"{_WORDS[q]} {_fmt(self.reference_floor(q))}" for q in self.quantities))
        if self.failures:
            lines.append("failed solves:")
            lines += [f"  - {f}" for f in self.failures]
        return "\n".join(lines)

    __str__ = table

    def __repr__(self):
        modes = sorted({m for m, _ in self.runs})
        methods = sorted({m for _, m in self.runs})
        return (f"<ToleranceStudy: {len(modes)} mode{'s' * (len(modes) != 1)} × {len(methods)} "
                f"method{'s' * (len(methods) != 1)}, {len(self.rtols)} rtols "
                f"{self.rtols[0]:.0e}..{self.rtols[-1]:.0e}, "
                f"against {self.reference_name}>")

    def plot(self, *, ax=None, estimates=False):
        """Relative error against rtol per quantity, with the model and the check's threshold.

        See :func:`odeverify.plotting.plot_tolerance_study` (``estimates=True`` also draws the
        references' error model); returns the matplotlib Figure.
        """
        from .plotting import plot_tolerance_study

        return plot_tolerance_study(self, ax=ax, estimates=estimates)


def _fmt(v):
    return f"{v:.2e}" if np.isfinite(v) else "—"


def tolerance_study(system, z0, ts, theta, loss, *, rtols=DEFAULT_STUDY_RTOLS, modes=("interpolated", "backsolve",
                    "quadrature"), methods=("DOP853",), exact=None):
    r"""The adjoint gradients' error against the solver tolerance, for every mode and method.

    For each (mode, method) and each rtol, :func:`~odeverify.adjoint_gradients`
    is solved at ``rtol = atol = rtol`` and each quantity's max-norm error is
    measured against a reference: the closed form when ``exact`` is given,
    else forward sensitivities at rtol 1e-12 (independent of the adjoint
    derivation; autograd through a fixed-step Runge–Kutta solve when the
    field has no Jacobians), whose own error estimate is reported as the
    floor below which nothing is measured. A batch of initial states is one
    batched solve per run; the runs themselves cannot share a solve (each
    tolerance chooses its own steps).

    Parameters
    ----------
    system, z0, ts, theta, loss
        As for :func:`~odeverify.adjoint_gradients`.
    rtols : sequence of float
        Solver tolerances, at least 2, in (0, 1); sorted loosest first.
    modes : sequence of str
        Adjoint modes (``'interpolated'``, ``'backsolve'``, ``'quadrature'``).
    methods : sequence of str
        Solvers, as for :func:`~odeverify.adjoint_gradients`.
    exact : mapping, optional
        The exact gradients ``{"z0": ..., "theta": ..., "t": ...}`` (e.g.
        ``catalog.exponential().exact_gradients()``).

    Returns
    -------
    ToleranceStudy
        ``.errors``, ``.estimates`` (the references' error model, ``|g(rtol)
        - g(rtol / 100)|``), ``.table()``, ``.plot()`` and, per run,
        :meth:`~ToleranceStudy.loosest_passing`, the loosest rtol whose
        gradients pass :func:`~odeverify.check_gradients` at its default
        comparison rtol.

    Examples
    --------
    >>> from odeverify import catalog, tolerance_study
    >>> prob = catalog.exponential()
    >>> study = tolerance_study(*prob.args(), rtols=[1e-4, 1e-6, 1e-8], modes=["interpolated"],
    ...                         exact=prob.exact_gradients())
    >>> e = study.errors[("interpolated", "DOP853")]["theta"]
    >>> bool(e[-1] < e[0])
    True
    """
    problem = make_problem(system, z0, ts, theta, loss)
    rtols = _check_rtols(rtols)
    modes = [check_mode(m) for m in _names(modes, "modes", "modes=['interpolated', 'backsolve']")]
    methods = [check_method(m) for m in _names(methods, "methods", "methods=['DOP853', 'dopri5']")]
    runs = [(mode, method) for mode in modes for method in methods]
    reference, ref_errors, ref_name = _reference(problem, exact)
    quantities = tuple(q for q in QUANTITIES if np.size(reference[q]) > 0)
    scales, check_tol = _scales_and_check_tolerances(reference, quantities)
    errors, estimates, failures = {}, {}, []
    for mode, method in runs:
        grads = [_solve(problem, mode, method, rt, failures) for rt in rtols]
        errors[(mode, method)] = {q: np.array([_max_error(g, reference, q) for g in grads]) for q in quantities}
        estimates[(mode, method)] = {q: _estimates(rtols, grads, q) for q in quantities}
    return ToleranceStudy(
        rtols=rtols, runs=runs, quantities=quantities, errors=errors, estimates=estimates, reference=reference,
        reference_errors=ref_errors, reference_name=ref_name, scales=scales, check_rtol=DEFAULT_RTOL,
        check_tolerances=check_tol, failures=failures,
    )


def _check_rtols(rtols):
    arr = _as_float_array(rtols, "rtols").reshape(-1)
    if arr.size < 2 or not np.all(np.isfinite(arr)) or np.any(arr <= 0) or np.any(arr >= 1):
        raise InvalidArgumentError(
            f"rtols must be at least 2 tolerances in (0, 1), got {arr.tolist()!r:.80}; e.g. rtols=[1e-4, 1e-6, 1e-8]"
        )
    return np.sort(arr)[::-1].copy()


def _names(values, argname, example):
    if isinstance(values, str):
        values = [values]
    if not isinstance(values, (list, tuple)) or not values or not all(isinstance(v, str) for v in values):
        raise InvalidTypeError(f"{argname} must be a non-empty list of names, got {values!r:.60}; e.g. {example}")
    return list(dict.fromkeys(values))


def _reference(problem, exact):
    """The reference gradients, their max-norm error per quantity, and their name."""
    if exact is not None:
        if not isinstance(exact, dict):
            raise InvalidTypeError(
                f"exact must be a mapping {{'z0': ..., 'theta': ..., 't': ...}}, got {type(exact).__name__}; "
                "e.g. exact=catalog.exponential().exact_gradients()"
            )
        shapes = problem.shapes()
        missing = [q for q in QUANTITIES if q not in exact or exact[q] is None]
        if missing:
            raise InvalidArgumentError(f"exact gives no {', '.join(missing)}; give all of 'z0', 'theta', 't'")
        for q in QUANTITIES:
            if np.shape(exact[q]) != shapes[q]:
                raise InvalidArgumentError(f"exact[{q!r}] has shape {np.shape(exact[q])}, expected {shapes[q]}")
        source = Exact(exact)
    elif problem.field.has_jacobians:
        source = ForwardSensitivity(rtol=1e-12, atol=1e-12)
    else:
        source = AutogradRK()
    est = source.compute(problem)
    values = {q: np.asarray(est.values[q], dtype=float) for q in QUANTITIES}
    errs = {q: float(np.max(np.asarray(est.errors[q]), initial=0.0)) for q in QUANTITIES}
    return values, errs, est.name if exact is None else "the closed form"


def _scales_and_check_tolerances(reference, quantities):
    """Per quantity: the scale errors are divided by, and the check's smallest tolerance (its default rtol)."""
    raw = {q: float(np.max(np.abs(reference[q]), initial=0.0)) for q in quantities}
    largest = max(raw.values(), default=0.0)
    scales, tol = {}, {}
    for q in quantities:
        scales[q] = max(raw[q], 1e-3 * largest) or 1.0
        # the check's tolerance: rtol |r_j| + atol_q, atol_q = 0.1 rtol max(scale_q, 1e-3 largest) (odeverify._check)
        atol_q = 0.1 * DEFAULT_RTOL * max(raw[q], 1e-3 * largest)
        tol[q] = float(np.min(DEFAULT_RTOL * np.abs(reference[q]) + atol_q))
    return scales, tol


def _solve(problem, mode, method, rtol, failures):
    """The gradients at one tolerance, or None (recorded in ``failures``) when the solve fails."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # backsolve drift at loose tolerances is what the study shows
            res = adjoint_gradients(problem.field, problem.user_z0(problem.z0), problem.ts, problem.theta,
                                    problem.loss, mode=mode, method=method, rtol=rtol, atol=rtol)
    except IntegrationError as exc:
        failures.append(f"{mode}, {method} at rtol={rtol:g}: {exc}")
        return None
    return res.as_dict()


def _max_error(grads, reference, q):
    if grads is None:
        return np.nan
    return float(np.max(np.abs(np.asarray(grads[q]) - reference[q]), initial=0.0))


def _estimates(rtols, grads, q):
    """``|g(rtol) - g(rtol / 100)|`` (max-norm) where the ladder holds rtol / 100, else NaN."""
    out = np.full(len(rtols), np.nan)
    for k, rt in enumerate(rtols):
        j = np.flatnonzero(np.isclose(rtols, rt / 100, rtol=1e-9, atol=0.0))
        if j.size and grads[k] is not None and grads[j[0]] is not None:
            out[k] = float(np.max(np.abs(np.asarray(grads[k][q]) - np.asarray(grads[j[0]][q])), initial=0.0))
    return out


def __dir__():
    return sorted(__all__)
