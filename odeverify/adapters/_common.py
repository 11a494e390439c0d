"""The framework-neutral half of the adapters: a peer's gradient checked at its own solver tolerance.

An adapter (torch, jax) runs the user's solve, differentiates it with the user's framework, and hands
the result here as a candidate, with the field (its ``AbstractVectorField`` view of the user's vector
field), a loss odeverify can evaluate and differentiate, and what it knows of the peer's solver. This
module then

1. restricts the check to the quantities the peer differentiated (the others are reported by name, as
   not checked, with the reason the adapter gives);
2. runs :func:`~odeverify.check_gradients` with finite differences always among the references (the
   trust model: the other references use the derivatives of the user's code);
3. calibrates the tolerance: odeverify's own adjoint (interpolated mode, so without backsolve's drift)
   is solved with a comparable method at the peer's rtol and atol; its largest deviation from the
   references' consensus in each quantity (z0, θ, t), but at least rtol times the quantity's largest
   entry (what an adaptive solve at rtol nominally promises, when odeverify's own solve happens to do
   better), is what that tolerance delivers; every entry of the quantity is allowed
   ``max(check tolerance, C × that error)``;
4. re-judges the entries against that allowance and states the model in the report.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._adjoint import adjoint_gradients
from .._check import _summary, check_gradients
from ..errors import IntegrationError, InvalidArgumentError, LossError
from ..references import QUANTITIES

__all__ = ["PeerSolver", "check_peer", "CALIBRATION_FACTOR"]

#: C: a peer's gradient may be off by C times odeverify's own error at the peer's tolerance. Measured on
#: this machine (2026-12-01): correct solves (torchdiffeq odeint on Van der Pol at 1e-6, Neural ODEs at 1e-5,
#: diffrax RecursiveCheckpointAdjoint) stayed within 2.1 times odeverify's own error; the backsolve drift of
#: odeint_adjoint / BacksolveAdjoint on Van der Pol (T = 30, 1e-6) is 8.6 to 45 times it. C = 4 separates
#: the two with a margin of about 2 on each side (C = 10 let the 8.6-times drift pass).
CALIBRATION_FACTOR = 4.0
#: beyond this share of its quantity's largest value, the allowance cannot support a verdict
MAX_ALLOWANCE = 0.1

_WORDS = {"z0": "∂L/∂z0", "theta": "∂L/∂θ", "t": "∂L/∂t"}


@dataclass(frozen=True)
class PeerSolver:
    """What is known of the peer's solve, for the tolerance model.

    Attributes
    ----------
    description : str
        The candidate's name in the report, e.g. ``"torchdiffeq.odeint_adjoint (dopri5, rtol=1e-06)"``.
    rtol, atol : float or None
        The tolerances of the peer's adaptive solve; None for a fixed-step solve (then the check's own
        tolerance is used, and the report says so).
    method : str or None
        An odeverify method (``odeverify._validate.METHODS``) comparable to the peer's, for the
        calibration; None when there is none.
    times_by_interpolation : bool
        True when the peer's ∂L/∂t is differentiated through its steps (torchdiffeq's ``odeint``,
        diffrax's ``RecursiveCheckpointAdjoint``): ∂L/∂t_i is then g_i · the derivative of its
        interpolant at t_i (of a linear interpolation between grid points for torchdiffeq's fixed
        steps), an approximation of lower order than the solution that the tolerance model does not
        bound. An adjoint that uses f(z(t_i)) itself (``odeint_adjoint``) is False.
    """

    description: str
    rtol: float | None = None
    atol: float | None = None
    method: str | None = None
    times_by_interpolation: bool = False


def check_peer(field, z0, ts, theta, loss, candidate, solver, *, not_checked=None, rtol=None,
               references=None, notes=()):
    """Check a peer framework's gradient of one problem at the peer's solver tolerance.

    Parameters
    ----------
    field : AbstractVectorField
        The user's vector field as odeverify sees it.
    z0 : ndarray, shape (n,) or (B, n)
    ts : ndarray, shape (T,)
    theta : ndarray, shape (p,)
    loss : callable
        ``loss(zs) -> float`` on states (T, n) or (T, B, n), differentiable by autograd (an adapter
        wraps the user's loss as an autograd primitive).
    candidate : dict
        The peer's gradients, ``"z0"``, ``"theta"``, ``"t"`` arrays of odeverify's shapes; a quantity
        the peer did not differentiate is absent.
    solver : PeerSolver
    not_checked : dict, optional
        For an absent quantity, why the peer gave none (said in the report).
    rtol : float, optional
        The check's own relative tolerance (default that of :func:`~odeverify.check_gradients`).
    references : sequence, optional
        As for :func:`~odeverify.check_gradients`; default every applicable reference and finite
        differences always.
    notes : sequence of str
        Added to the report's warnings (e.g. a float32 model checked in a float64 copy).

    Returns
    -------
    GradientReport
    """
    not_checked = dict(not_checked or {})
    quantities = tuple(q for q in QUANTITIES if candidate.get(q) is not None)
    if not quantities:
        raise InvalidArgumentError(
            "the peer's solve gave no gradient at all (" + "; ".join(f"{q}: {why}" for q, why in not_checked.items())
            + "); make the loss depend on the solution and the inputs require gradients"
        )
    if references is None:
        references = ["adjoint", "adjoint-backsolve", "autograd", "fd"]
        if getattr(field, "has_jacobians", False):
            references.insert(2, "forward")
    report = check_gradients(field, z0, ts, theta, loss, candidate={q: candidate[q] for q in quantities},
                             references=references, rtol=rtol, quantities=quantities)
    report.candidate_name = solver.description
    allowance, model = _calibrate(field, z0, ts, theta, loss, report, solver)
    _rejudge(report, allowance, solver)
    report.tolerance_model = model + "; check tolerance: " + report.tolerance_model
    why = {q: not_checked[q] for q in QUANTITIES if q not in quantities and q in not_checked}
    for r in report.rows:
        if r.quantity in why:
            r.note = why[r.quantity]
    report.summary = _summary(report.rows, report.passed, report.quantities, report.diagnoses, why)
    report.warnings += list(notes)
    report.warnings += [f"not checked: {_WORDS[q]}: {why}" for q, why in not_checked.items() if q not in quantities]
    return report


# ---------------------------------------------------------------------------- calibration
def _calibrate(field, z0, ts, theta, loss, report, solver):
    """Per-row allowance (C × odeverify's own error at the peer's tolerance, or None) and the model in words."""
    if solver.rtol is None or solver.method is None:
        return {}, (f"{solver.description} has no adaptive tolerance odeverify can reproduce: the candidate is "
                    "judged at the check's own tolerance")
    atol = solver.atol if solver.atol is not None else solver.rtol
    head = (f"candidate judged at solver tolerance rtol={solver.rtol:g}, atol={atol:g}: allowed error = "
            f"max(check tol, {CALIBRATION_FACTOR:g} × odeverify's own error at that tolerance)")
    try:
        own = adjoint_gradients(field, z0, ts, theta, loss, mode="interpolated", method=solver.method,
                                rtol=solver.rtol, atol=atol).as_dict()
    except (IntegrationError, LossError, ArithmeticError) as exc:
        return {}, head + f" — not applied: odeverify's own solve at that tolerance failed ({exc})"
    rows = [r for r in report.rows if r.reference is not None and r.quantity in own]
    measured, nominal = {}, {}
    for q in report.quantities:
        qrows = [r for r in rows if r.quantity == q]
        measured[q] = max((abs(float(np.asarray(own[q])[r.index]) - r.reference) for r in qrows), default=0.0)
        nominal[q] = solver.rtol * max((abs(r.reference) for r in qrows), default=0.0)
    allowance = {id(r): CALIBRATION_FACTOR * max(measured[r.quantity], nominal[r.quantity])
                 for r in rows if r.quantity in measured}
    shown = ", ".join(f"{_WORDS[q]} {max(measured[q], nominal[q]):.2g} (measured {measured[q]:.2g})"
                      for q in report.quantities)
    model = (f"{head}; odeverify's own error in a quantity = the largest |its interpolated adjoint "
             f"({solver.method}, rtol={solver.rtol:g}, atol={atol:g}) − the references' consensus| over the "
             f"quantity's entries, at least rtol × its largest entry: {shown}")
    return allowance, model


def _rejudge(report, allowance, solver):
    """Widen each decided entry's tolerance to its allowance and recompute the verdict and the summary."""
    scale = {q: max((abs(r.reference) for r in report.rows if r.quantity == q and r.reference is not None),
                    default=0.0) for q in QUANTITIES}
    if not allowance:
        if _times_by_interpolation(report, solver, scale):
            _reverdict(report, allowance, solver, interpolated_times=True)
        return
    for r in report.rows:
        extra = allowance.get(id(r))
        if extra is None or r.quantity not in report.quantities or r.candidate is None:
            continue
        if extra > MAX_ALLOWANCE * scale[r.quantity]:
            r.status = "inconclusive"
            r.note = (f"the solver tolerance cannot deliver this quantity to better than {extra:.2g} "
                      f"(over {MAX_ALLOWANCE:.0%} of its largest entry): tighten the solve's rtol and atol")
            continue
        decidable = r.status in ("ok", "FAIL") or r.note.startswith("the references are not accurate enough")
        if not decidable or not np.isfinite(r.candidate):
            continue
        widened = extra + 3.0 * (r.ref_error or 0.0)
        if widened > (r.tolerance or 0.0):
            r.tolerance = widened
            r.status = "ok" if r.diff <= widened else "FAIL"
            if r.note.startswith("the references are not accurate enough"):
                r.note = ""
    _reverdict(report, allowance, solver, interpolated_times=_times_by_interpolation(report, solver, scale))


def _reverdict(report, allowance, solver, interpolated_times=False):
    """The verdict, diagnoses and summary of the rows as they now stand.

    With ``interpolated_times`` (∂L/∂t failures made inconclusive) and no failure left, the diagnoses
    (which explained those failures, e.g. as an error in the jump term) are dropped: the rows' notes say why.
    """
    checked = [r for r in report.rows if r.status in ("ok", "FAIL", "inconclusive", "missing")]
    report.passed = bool(checked) and all(r.status == "ok" for r in checked)
    if report.passed or (interpolated_times and not any(r.status == "FAIL" for r in checked)):
        report.diagnoses = []
    elif allowance:
        report.diagnoses = _beyond_tolerance(report, allowance, solver)
    report.summary = _summary(report.rows, report.passed, report.quantities, report.diagnoses)


def _times_by_interpolation(report, solver, scale):
    """∂L/∂t entries of a peer that differentiates its interpolant, failing by less than MAX_ALLOWANCE of the
    quantity's largest entry: inconclusive (the tolerance model does not bound them), not FAILED.

    Returns True when an entry was changed. Measured (torchdiffeq odeint, dopri5, an MLP field): ∂L/∂t_N off
    by 9.6e-5, 2.9e-5, 4e-6 of its scale at rtol = atol = 1e-6, 1e-7, 1e-8, while ∂L/∂z0 and ∂L/∂θ are
    within rtol; a fixed-step rk4 solve (step 0.01) is off by 0.24% through torchdiffeq's linear interpolation.
    """
    if not solver.times_by_interpolation:
        return False
    changed = False
    for r in report.rows:
        if r.quantity == "t" and r.status == "FAIL" and r.diff <= MAX_ALLOWANCE * scale["t"]:
            r.status = "inconclusive"
            r.note = ("∂L/∂t differentiated through the solver's steps is g_i · the derivative of its interpolant "
                      "at t_i, of lower order than the solution, which the solver tolerance does not bound: tighten "
                      "the solve (or put the output times on a fixed-step grid), or check ∂L/∂t with odeint_adjoint"
                      " / an adjoint that evaluates f at t_i")
            changed = True
    return changed


def _beyond_tolerance(report, allowance, solver):
    """The diagnoses of a report still failing after the widening: "solved too loosely" no longer explains it."""
    kept = [d for d in report.diagnoses if "solved too loosely" not in d]
    beyond = [r for r in report.rows if r.status == "FAIL" and id(r) in allowance]
    if not beyond:
        return kept
    worst = max(beyond, key=lambda r: r.diff / r.tolerance if r.tolerance else float("inf"))
    ratio = worst.diff / worst.tolerance if worst.tolerance else float("inf")
    return [f"{worst.label} is {ratio:.2g} times the error its solver tolerance (rtol={solver.rtol:g}) allows, "
            f"so the tolerance does not explain it: a bug, or an adjoint that reconstructs z backwards "
            "(torchdiffeq's odeint_adjoint, diffrax's BacksolveAdjoint) drifting on a long horizon — "
            "a solve differentiated through its steps (odeint, RecursiveCheckpointAdjoint) avoids the drift"] + kept
