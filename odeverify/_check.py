"""check_gradients: a candidate gradient against independent references, quantity by quantity."""

from __future__ import annotations

import inspect
import json
import numbers
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from ._adjoint import AdjointResult, adjoint_gradients
from ._diagnose import diagnose, is_wrong_sign
from ._display import fmt, report_html, some
from ._progress import _Timer, check_progress
from ._validate import _as_float_array
from .tableaux import odeint_fixed
from .references._base import SwitchLayout
from .errors import (
    HypothesisWarning,
    IntegrationError,
    InvalidArgumentError,
    InvalidTypeError,
    LossError,
    OdeverifyWarning,
    TrivialTestWarning,
)
from .references import (
    QUANTITIES,
    Adjoint,
    AutogradRK,
    FiniteDifferences,
    ForwardSensitivity,
    GradientEstimate,
    Reference,
    make_problem,
)

__all__ = ["check_gradients", "compute_references", "GradientReport", "Row", "DEFAULT_RTOL", "DEFAULT_REFERENCES"]

#: default relative tolerance of the comparison
DEFAULT_RTOL = 1e-5
#: the references used when none are given (each is skipped where it cannot apply)
DEFAULT_REFERENCES = ("adjoint", "adjoint-backsolve", "forward", "autograd", "fd")
#: finite differences are skipped by default above this many scalar inputs
FD_MAX_INPUTS = 400

_REFERENCE_NAMES = {
    "adjoint": lambda: Adjoint("interpolated"),
    "adjoint-backsolve": lambda: Adjoint("backsolve"),
    "forward": ForwardSensitivity,
    "autograd": AutogradRK,
    "fd": FiniteDifferences,
}


class ReferenceWarning(OdeverifyWarning):
    """A reference could not be computed, or disagreed with the others."""


@dataclass
class Row:
    """One entry of the comparison."""

    quantity: str  # "z0", "theta", "t"
    index: tuple
    label: str
    candidate: float | None
    reference: float | None
    ref_error: float | None
    diff: float | None
    tolerance: float | None
    status: str  # "ok", "FAIL", "inconclusive", "missing" (from the candidate), "not checked"
    agreeing: int = 0
    available: int = 0
    consensus: list = field(default_factory=list)
    note: str = ""

    @property
    def ratio(self):
        if self.diff is None or not self.tolerance:
            return None
        return self.diff / self.tolerance

    def __repr__(self):
        return (f"<Row {self.label}: {self.status}, candidate {fmt(self.candidate, '.6g')}, "
                f"reference {fmt(self.reference, '.6g')}, {fmt(self.ratio, '.2g')}× tol>")

    def to_dict(self):
        return {
            "quantity": self.quantity,
            "index": list(self.index),
            "label": self.label,
            "candidate": self.candidate,
            "reference": self.reference,
            "reference_error": self.ref_error,
            "difference": self.diff,
            "tolerance": self.tolerance,
            "status": self.status,
            "agreeing_references": self.consensus,
            "available_references": self.available,
            "note": self.note,
        }


@dataclass
class GradientReport:
    """The verdict of :func:`check_gradients`.

    Attributes
    ----------
    passed : bool
        True only if every checked entry agrees with the consensus of the
        references within its tolerance, no entry is inconclusive, and the
        candidate gives every quantity in ``quantities``.
    rows : list of Row
        One per gradient entry: candidate, reference, difference, tolerance, status.
    summary : str
        The worst offender in words (or why the check passed), the diagnoses,
        and what was not checked.
    diagnoses : list of str
        Hypotheses on why the check failed (e.g. "consistent with the loss's
        own term at t0 forgotten"); empty when it passed or nothing fits.
    quantities : tuple of str
        What the verdict covers, of ``"z0"``, ``"theta"``, ``"t"``.
    warnings : list of str
        Trivial-test warnings, reference problems, backsolve drift.
    tolerance_model : str
        How every entry's tolerance was derived.
    candidate_name : str
    references : list of GradientEstimate
    rtol : float
    """

    passed: bool
    rows: list
    summary: str
    warnings: list
    tolerance_model: str
    candidate_name: str
    references: list
    rtol: float
    reference_status: dict = field(default_factory=dict)
    diagnoses: list = field(default_factory=list)
    quantities: tuple = QUANTITIES
    #: which references used the derivatives of the user's code, and what the consensus then needs ("" if none)
    trust_model: str = ""

    def __bool__(self):
        return bool(self.passed)

    def plot(self, *, ax=None):
        """Per entry, |candidate − reference| against its tolerance, log scale, failures marked.

        See :func:`odeverify.plotting.plot_report`; returns the matplotlib Figure.
        """
        from .plotting import plot_report

        return plot_report(self, ax=ax)

    @property
    def failures(self):
        return [r for r in self.rows if r.status == "FAIL"]

    def worst(self):
        """The failing (or, if none, the closest-to-failing) row."""
        rows = [r for r in self.rows if r.ratio is not None]
        fails = [r for r in rows if r.status == "FAIL"]
        pool = fails or rows
        return max(pool, key=lambda r: r.ratio) if pool else None

    def to_dict(self):
        """The report as a dictionary of plain Python values (floats may be nan or inf; see :meth:`to_json`)."""
        return {
            "passed": self.passed,
            "summary": self.summary,
            "diagnoses": list(self.diagnoses),
            "quantities": list(self.quantities),
            "candidate": self.candidate_name,
            "rtol": self.rtol,
            "tolerance_model": self.tolerance_model,
            "trust_model": self.trust_model,
            "warnings": list(self.warnings),
            "rows": [r.to_dict() for r in self.rows],
            "references": [
                {
                    "name": e.name,
                    "error_model": e.error_model,
                    "independent": e.independent,
                    "exact": e.exact,
                    "seconds": e.seconds,
                    "notes": list(e.notes),
                    "status": self.reference_status.get(e.name, ""),
                }
                for e in self.references
            ],
        }

    def to_json(self, **kw):
        """The report as valid JSON (RFC 8259), keyword arguments as for :func:`json.dumps`.

        JSON has no NaN or infinity: a non-finite number (a candidate that is
        nan or inf, an infinite difference) is written as the string
        ``"NaN"``, ``"Infinity"`` or ``"-Infinity"``; ``null`` keeps its
        meaning of "no value" (an entry the candidate or the references did
        not give).
        """
        return json.dumps(_finite_json(self.to_dict()), allow_nan=False, **kw)

    def __repr__(self):
        checked = [r for r in self.rows if r.status in ("ok", "FAIL", "inconclusive", "missing")]
        counts = {s: sum(r.status == s for r in checked) for s in ("FAIL", "inconclusive", "missing")}
        ok = len(checked) - sum(counts.values())
        text = (f"{ok}/{len(checked)} entries within tolerance" if self.passed
                else f"{counts['FAIL']}/{len(checked)} entries outside tolerance")
        text += "".join(f", {k} {s}" for s, k in counts.items() if k and s != "FAIL")
        worst = self.worst()
        if worst is not None:
            text += f", {'worst' if worst.status == 'FAIL' else 'closest'} {worst.label} {fmt(worst.ratio, '.2g')}× tol"
        return f"<GradientReport {'PASSED' if self.passed else 'FAILED'}: {text}>"

    def _repr_html_(self):
        return report_html(self)

    def __str__(self):
        head = f"check_gradients: {'PASSED' if self.passed else 'FAILED'} — {self.summary}"
        lines = [head] + [f"diagnosis:  {d} (a hypothesis)" for d in self.diagnoses]
        lines.append(f"candidate:  {self.candidate_name}")
        refs = []
        for e in self.references:
            tag = "" if e.independent else " [shares the adjoint derivation]"
            refs.append(f"{e.name}{tag}")
        lines.append("references: " + (" · ".join(refs) if refs else "(none)"))
        lines.append(f"tolerance:  {self.tolerance_model}")
        if self.trust_model:
            lines.append(f"trust:      {self.trust_model}")
        lines.append("")
        width = max([len(r.label) for r in self.rows] + [8])
        lines.append(
            f"{'quantity':<{width}}  {'candidate':>14}  {'reference':>14}  {'|diff|':>9}  {'tolerance':>9}  "
            f"{'ratio':>7}  {'refs':>5}  status"
        )

        def fmt(v, spec):
            return f"{v:{spec}}" if v is not None and np.isfinite(v) else ("nan" if v is not None else "—")

        for r in self.rows:
            ratio = fmt(r.ratio, ".2g") if r.ratio is not None else "—"
            lines.append(
                f"{r.label:<{width}}  {fmt(r.candidate, '14.7e'):>14}  {fmt(r.reference, '14.7e'):>14}  "
                f"{fmt(r.diff, '9.2e'):>9}  {fmt(r.tolerance, '9.2e'):>9}  {ratio:>7}  "
                f"{r.agreeing}/{r.available}".ljust(0)
                + f"  {r.status}"
                + (f"  ({r.note})" if r.note else "")
            )
        if self.warnings:
            lines.append("")
            lines.append("warnings:")
            lines += [f"  - {w}" for w in self.warnings]
        lines.append("")
        lines.append("references:")
        for e in self.references:
            status = self.reference_status.get(e.name, "")
            lines.append(f"  - {e.name} ({e.seconds:.2f} s){': ' + status if status else ''}")
            lines.append(f"      error model: {e.error_model}")
            for note in e.notes:
                lines.append(f"      note: {note}")
        return "\n".join(lines)


def _finite_json(value):
    """``value`` with every non-finite float replaced by "NaN", "Infinity" or "-Infinity"."""
    if isinstance(value, dict):
        return {k: _finite_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_json(v) for v in value]
    if isinstance(value, float) and not np.isfinite(value):
        return "NaN" if np.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    return value


# ---------------------------------------------------------------------------- labels
def _labels(problem):
    fld = problem.field
    snames = list(getattr(fld, "state_names", ()) or [f"z[{i}]" for i in range(problem.n)])
    pnames = list(getattr(fld, "param_names", ()) or [])
    T = len(problem.ts)
    labels = {}
    if problem.batched:
        labels["z0"] = {
            (b, i): f"∂L/∂{snames[i]}(t0)[b={b}]" for b in range(problem.B) for i in range(problem.n)
        }
    else:
        labels["z0"] = {(i,): f"∂L/∂{snames[i]}(t0)" for i in range(problem.n)}
    labels["theta"] = {
        (k,): f"∂L/∂θ[{k}]" + (f" ({pnames[k]})" if k < len(pnames) else "") for k in range(problem.p)
    }
    labels["t"] = {(i,): f"∂L/∂t{i}" + (" (tN)" if i == T - 1 else "") for i in range(T)}
    return labels


_GROUP_WORDS = {"z0": "∂L/∂z0", "theta": "∂L/∂θ", "t": "∂L/∂t"}


# ---------------------------------------------------------------------------- references
def _resolve_references(references, problem):
    if references is None:
        references = DEFAULT_REFERENCES
    if isinstance(references, (str, Reference, GradientEstimate)):
        references = [references]
    if not isinstance(references, (list, tuple)) or not references:
        raise InvalidTypeError(
            f"references must be None or a non-empty list of names ({', '.join(_REFERENCE_NAMES)}), Reference "
            f"objects or GradientEstimate results, got {references!r:.60}; e.g. references=['forward', 'fd']"
        )
    out = []
    for ref in references:
        if isinstance(ref, str):
            if ref not in _REFERENCE_NAMES:
                raise InvalidArgumentError(
                    f"references: unknown reference {ref!r}; use one of {', '.join(_REFERENCE_NAMES)} "
                    "or Reference objects from odeverify.references"
                )
            ref = _REFERENCE_NAMES[ref]()
        if not isinstance(ref, (Reference, GradientEstimate)):
            raise InvalidTypeError(
                f"references must hold names, odeverify.references.Reference objects or GradientEstimate results, "
                f"got {type(ref).__name__}"
            )
        out.append(ref)
    return out


def _check_reused(est, problem):
    """Refuse a precomputed estimate that belongs to another problem (a false PASS otherwise)."""
    shapes = problem.shapes()
    for q, v in est.values.items():
        if q not in shapes or np.shape(v) != shapes[q] or np.shape(est.errors.get(q, v)) != shapes[q]:
            raise InvalidArgumentError(
                f"references: the estimate {est.name!r} has {q!r} of shape {np.shape(v)}, but this problem's "
                f"{q!r} has shape {shapes.get(q)}; it was computed for another problem. Compute the references "
                "with compute_references(...) on the same system, z0, ts, theta and loss"
            )
    if est.inputs is not None:
        here = (problem.user_z0(problem.z0), problem.ts, problem.theta)
        for name, a, b in zip(("z0", "ts", "theta"), est.inputs, here):
            if np.shape(a) != np.shape(b) or not np.array_equal(a, b):
                raise InvalidArgumentError(
                    f"references: the estimate {est.name!r} was computed at {name} = {_short(a)}, but this check "
                    f"is at {name} = {_short(b)}; reused references must come from compute_references(...) on "
                    "the same inputs"
                )
    if est.fingerprint is not None:
        for what, a, b in zip(("the vector field", "the loss"), est.fingerprint, problem.fingerprint):
            if a is None or b is None:
                continue
            if a.shape != b.shape or not np.allclose(a, b, rtol=1e-9, atol=1e-300, equal_nan=True):
                raise InvalidArgumentError(
                    f"references: the estimate {est.name!r} was computed for another system or loss: {what} "
                    "differs from this problem's at the same points. Compute the references with "
                    "compute_references(...) on the same system and loss"
                )


def _short(a, width=60):
    """An array as its values, ``[1., 0.]``, shortened (``_validate._short`` gives its repr)."""
    text = np.array2string(np.asarray(a), precision=6, separator=", ", threshold=8)
    return text if len(text) <= width else text[: width - 3] + "..."


def _real(value, argname, example):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InvalidTypeError(f"{argname} must be a real number, got {value!r:.60}; e.g. {example}")
    try:
        return float(value)
    except OverflowError:  # a Python int beyond the double range
        raise InvalidArgumentError(
            f"{argname}={str(value)[:12]}... ({len(str(value))} digits) is beyond the double range; e.g. {example}"
        ) from None


def _compute_all(refs, problem, explicit, progress=None):
    """Every reference's estimate, and for the ones that gave none, why (``"skipped: ..."``, ``"failed: ..."``).

    ``progress`` (None or a callable) receives a ``"reference"`` :class:`~odeverify.ProgressEvent` as each starts
    and ends.
    """
    estimates, status = [], {}
    n_inputs = problem.z0.size + problem.p + len(problem.ts)
    seen = set()
    for i, ref in enumerate(refs):
        # one source counts once: the same reference twice would make its own agreement a consensus
        name = getattr(ref, "name", repr(ref))
        timer = _Timer(progress, "reference", name, i, len(refs))
        if name in seen:
            status[f"{name} (again)"] = "ignored: the same source was given twice; it counts once"
            timer.end("skipped", "given twice")
            continue
        seen.add(name)
        if isinstance(ref, GradientEstimate):
            _check_reused(ref, problem)
            estimates.append(ref)
            timer.end("done", "precomputed")
            continue
        why = ref.available(problem)
        if why is None and isinstance(ref, FiniteDifferences) and not explicit and n_inputs > FD_MAX_INPUTS:
            why = f"{n_inputs} scalar inputs (over {FD_MAX_INPUTS}); pass references=[..., 'fd'] to force it"
        if why:
            status[name] = f"skipped: {why}"
            timer.end("skipped", why)
            continue
        try:
            estimates.append(ref.compute(problem))
        except (IntegrationError, LossError) as exc:
            status[name] = f"failed: {exc}"
        except (ArithmeticError, ValueError, TypeError) as exc:  # e.g. a loss autograd cannot trace
            status[name] = f"failed: {type(exc).__name__}: {exc}"
        timer.end("failed" if name in status else "done")
    return estimates, status


def _reference_key(name):
    """The short name (as in ``references=[...]``) of a reference's long name, or None."""
    for prefix, key in (("adjoint (backsolve", "adjoint-backsolve"), ("adjoint", "adjoint"),
                        ("forward", "forward"), ("autograd", "autograd"), ("finite", "fd")):
        if name.startswith(prefix):
            return key
    return None


def _what_to_add(problem, refs, ref_status):
    """Advice for a verdict that needs one more reference: which to add, and why the others gave none."""
    tried = {_reference_key(getattr(r, "name", "")) for r in refs}
    # independent sources first: a second adjoint alone cannot make a consensus
    order = ("fd", "forward", "autograd", "adjoint", "adjoint-backsolve")
    addable = [k for k in order if k not in tried and not _REFERENCE_NAMES[k]().available(problem)]
    lost = "; ".join(f"{name} {why}" for name, why in ref_status.items() if not name.endswith("(again)"))
    if addable:
        shown = " or ".join(repr(k) for k in addable[:2])
        advice = f"add another reference, e.g. {shown}"
    else:
        advice = "no other reference applies here: give a closed form (odeverify.references.Exact) if there is one"
    return advice + (f" ({lost})" if lost else "")


def compute_references(system, z0, ts, theta, loss, *, references=None, progress=None):
    """Compute reference gradients once, to reuse across several checks.

    ``progress``, as for :func:`check_gradients`, receives an event as each reference starts and ends.

    Returns
    -------
    list of GradientEstimate
        Pass it as ``references=`` to :func:`check_gradients`.
    """
    problem = make_problem(system, z0, ts, theta, loss)
    progress = check_progress(progress)
    refs = _resolve_references(references, problem)
    estimates, status = _compute_all(refs, problem, explicit=references is not None, progress=progress)
    for name, why in status.items():
        warnings.warn(f"reference {name} {why}", ReferenceWarning, stacklevel=2)
    return estimates


# ---------------------------------------------------------------------------- candidate
@dataclass
class _Candidate:
    """The gradient under test: its values, its name, and what is known of how it was solved."""

    values: dict  # "z0", "theta", "t" arrays; a quantity the candidate does not give is absent
    name: str
    rtol: float | None = None  # the tolerance it was solved at, when known
    rerun: object = None  # rerun(rtol, atol) -> values at other tolerances, when possible


def _candidate_values(candidate, problem):
    z0, ts, theta = problem.user_z0(problem.z0), problem.ts, problem.theta
    if candidate is None:
        res = adjoint_gradients(problem.field, z0, ts, theta, problem.loss)
        return _Candidate(_given(res.as_dict(), problem), f"odeverify adjoint (interpolated, DOP853, rtol={res.rtol:g}, "
                          f"atol={res.atol:g})", res.rtol, _adjoint_rerun(problem, "interpolated", "DOP853"))
    name = getattr(candidate, "__name__", None) or type(candidate).__name__
    if isinstance(candidate, AdjointResult):
        return _Candidate(_given(candidate.as_dict(), problem),
                          f"AdjointResult ({candidate.mode}, {candidate.method}, rtol={candidate.rtol:g})",
                          candidate.rtol, _adjoint_rerun(problem, candidate.mode, candidate.method))
    if isinstance(candidate, Mapping):
        return _Candidate(_given(candidate, problem), "given gradients")
    if not callable(candidate):
        raise InvalidTypeError(
            f"candidate must be a callable candidate(z0, ts, theta) -> {{'z0': ..., 'theta': ..., 't': ...}}, "
            f"a mapping of gradients, or None; got {type(candidate).__name__}"
        )
    try:
        signature = inspect.signature(candidate)
        signature.bind(z0, ts, theta)
    except TypeError:
        raise InvalidTypeError(
            f"candidate {name} cannot be called as candidate(z0, ts, theta): its signature is "
            f"{inspect.signature(candidate)}; wrap it, e.g. lambda z0, ts, theta: ..."
        ) from None
    except ValueError:  # no signature to inspect (some builtins): call it and see
        signature = None

    def call(**tolerances):
        values = candidate(z0.copy(), ts.copy(), theta.copy(), **tolerances)
        if isinstance(values, AdjointResult):
            values = values.as_dict()
        if not isinstance(values, Mapping):
            raise InvalidTypeError(
                f"candidate must return a mapping with keys 'z0', 'theta', 't', got {type(values).__name__}"
            )
        return _given(values, problem)

    rtol, rerun = _tolerance_keywords(signature, call)
    return _Candidate(call(), name if " " in name else f"candidate {name}", rtol, rerun)


def _adjoint_rerun(problem, mode, method):
    def rerun(rtol, atol):
        return adjoint_gradients(problem.field, problem.user_z0(problem.z0), problem.ts, problem.theta,
                                 problem.loss, mode=mode, method=method, rtol=rtol, atol=atol).as_dict()

    return rerun


def _tolerance_keywords(signature, call):
    """A callable candidate that takes ``rtol`` (and ``atol``) keywords can be re-run tighter.

    Returns (its default rtol if a number, else None; rerun or None).
    """
    params = signature.parameters if signature is not None else {}
    keyword = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    if "rtol" not in params or params["rtol"].kind not in keyword:
        return None, None
    default = params["rtol"].default
    rtol = float(default) if isinstance(default, numbers.Real) and not isinstance(default, bool) else None
    with_atol = "atol" in params and params["atol"].kind in keyword

    def rerun(rtol, atol):
        return call(rtol=rtol, **({"atol": atol} if with_atol else {}))

    return rtol, rerun


def _given(values, problem):
    """The candidate's mapping validated: float arrays of the problem's shapes; None entries dropped."""
    unknown = set(values) - set(QUANTITIES)
    if unknown:
        raise InvalidArgumentError(f"candidate returned unknown keys {sorted(unknown)}; use 'z0', 'theta', 't'")
    shapes = problem.shapes()
    out = {}
    for key, val in values.items():
        if val is None:
            continue
        arr = _as_float_array(val, f"candidate gradient {key!r}")
        if arr.shape != shapes[key]:
            raise InvalidArgumentError(f"candidate gradient {key!r} has shape {arr.shape}, expected {shapes[key]}")
        out[key] = arr
    if not out:
        raise InvalidArgumentError("candidate returned no gradient; give at least one of 'z0', 'theta', 't'")
    return out


def _check_quantities(quantities):
    """``quantities=`` as a tuple in report order; None means all of z0, theta and t."""
    if quantities is None:
        return QUANTITIES
    if isinstance(quantities, str):
        quantities = (quantities,)
    if not isinstance(quantities, (list, tuple, set, frozenset)):
        raise InvalidTypeError(
            f"quantities must be None or a sequence of 'z0', 'theta', 't', got {quantities!r:.60}; "
            "e.g. quantities=('z0', 'theta')"
        )
    for q in quantities:
        if not isinstance(q, str) or q not in QUANTITIES:
            raise InvalidArgumentError(
                f"quantities: {q!r:.40} is not one of 'z0', 'theta', 't'; e.g. quantities=('z0', 'theta')"
            )
    if not quantities:
        raise InvalidArgumentError(
            "quantities=() checks nothing; leave it None to check z0, theta and t, or name some, "
            "e.g. quantities=('theta',)"
        )
    return tuple(q for q in QUANTITIES if q in quantities)


# ---------------------------------------------------------------------------- consensus
def _agree(v1, e1, v2, e2, floor):
    return abs(v1 - v2) <= 3.0 * (e1 + e2) + 1e-9 * max(abs(v1), abs(v2)) + floor


def _consensus(entries, floor):
    """Largest set of mutually agreeing references for one entry.

    ``entries`` is a list of (estimate, value, error). An exact reference is
    the truth when present. Returns (members, best_value, best_error).
    """
    exact = [e for e in entries if e[0].exact]
    if exact:
        ex = exact[0]
        members = [e for e in entries if e is ex or _agree(e[1], e[2], ex[1], ex[2], floor)]
        return members, ex[1], ex[2]
    best = []
    m = len(entries)
    # small m: try every subset, largest first, preferring more independent members
    for size in range(m, 1, -1):
        candidates = []
        for mask in range(1 << m):
            if bin(mask).count("1") != size:
                continue
            subset = [entries[i] for i in range(m) if mask >> i & 1]
            if all(_agree(a[1], a[2], b[1], b[2], floor) for i, a in enumerate(subset) for b in subset[i + 1 :]):
                candidates.append(subset)
        if candidates:
            best = max(candidates, key=lambda s: sum(e[0].independent for e in s))
            break
    if not best or not any(e[0].independent for e in best):
        return best, None, None
    anchor = min(best, key=lambda e: e[2])
    return best, anchor[1], anchor[2]


# ---------------------------------------------------------------------------- check
def check_gradients(
    system, z0, ts, theta, loss, *, candidate=None, references=None, rtol=None, atol=None, quantities=None,
    progress=None,
):
    r"""Check a gradient against independent references, quantity by quantity.

    Parameters
    ----------
    system, z0, ts, theta, loss
        The problem, as for :func:`odeverify.adjoint_gradients`.
    candidate : callable, mapping or None
        The gradient under test: ``candidate(z0, ts, theta)`` returning a
        mapping with keys ``"z0"``, ``"theta"``, ``"t"`` (shapes as
        :func:`odeverify.adjoint_gradients` returns them), or such a mapping,
        or an :class:`~odeverify.AdjointResult`. Without one, odeverify's own
        adjoint (interpolated mode, default tolerances) is the candidate. A
        callable that also takes an ``rtol`` keyword (and ``atol``) may be
        called once more at ``rtol=1e-11`` when the check fails, to tell a
        solver-tolerance effect from a bug.
    references : sequence, optional
        Names (``"adjoint"``, ``"adjoint-backsolve"``, ``"forward"``,
        ``"autograd"``, ``"fd"``), :mod:`odeverify.references` objects, or
        estimates already computed by :func:`compute_references`. By default
        all five; each is skipped where it cannot apply (forward
        sensitivities need Jacobians; finite differences are skipped above
        400 scalar inputs unless asked for by name).
    rtol : float, optional
        Relative tolerance of the comparison; default 1e-5.
    atol : float, optional
        Absolute tolerance; default ``0.1 * rtol * max|reference|`` within each
        quantity (z0, theta, t), but not below ``1e-4 * rtol`` times the
        largest reference of any quantity.
    quantities : sequence of {"z0", "theta", "t"}, optional
        What the verdict covers; default all three. A quantity it covers that
        the candidate leaves out (no key, or ``None``) fails the check; one
        left out here is not checked, and the summary says so.
    progress : callable, optional
        ``progress(event)`` with an :class:`~odeverify.ProgressEvent` as the candidate, each reference
        and the diagnosis of a failure start and end (the command line draws a one-line display from
        them on a terminal). Default: nothing is reported.

    Returns
    -------
    GradientReport
        ``.passed``, a per-entry table (``str(report)``), ``.summary`` naming the
        worst offender in words and, when it recognises the pattern, why
        (``.diagnoses``), ``.warnings`` and ``.to_dict()``.

    Notes
    -----
    Tolerance model. Entry j passes when

        |candidate_j - r_j| <= rtol |r_j| + atol_q + 3 e_j,

    where r_j is the value of the references that agree with each other
    (the largest mutually agreeing set, which must contain at least one
    source independent of the adjoint derivation, or a closed form when one
    is given) and e_j the error that reference estimates for itself.
    References agree when they differ by at most three times the sum of
    their error estimates (plus 1e-9 relative). An entry without such a
    consensus is *inconclusive*, and an inconclusive entry fails the check:
    odeverify does not claim what it could not establish. So is an entry
    whose references' own uncertainty (3 e_j) exceeds the rest of its
    tolerance: a wrong candidate could hide inside it.

    The default rtol = 1e-5 catches relative errors of 1e-4 and above (a
    parameter gradient off by 0.1%, a component off by 1e-4 of the largest)
    while admitting an adjoint solved at rtol around 1e-8. A candidate solved
    at looser tolerances needs a larger ``rtol``.

    Diagnoses. A failed check names the bug patterns it recognises, each as
    a hypothesis (:mod:`odeverify._diagnose`): a wrong sign; only dL/dt0
    wrong (the df/dt term or the a_t integral); the dL/dt_i after t0 wrong
    (the jump terms g_i . f(z(t_i))); dL/dz0 off by exactly the loss's
    direct term g_0 = dL/dz(t0) (computed by autograd of the loss on the
    references' states); and, when none of these fits, a solver tolerance.
    The last is tested by solving the candidate again at rtol = 1e-11 where
    that is possible (odeverify's adjoint, an AdjointResult, a callable
    taking ``rtol``): the differences must shrink tenfold. Otherwise it is
    inferred: the differences must be at most 1e-2 of their quantity's scale
    and spread over every quantity (each within a factor 100 of the
    largest), as a solver's error is and a bug in one term is not; and
    without that probe, "only dL/dt0" and "the dL/dt_i" are said only when
    every failing difference is over 1e-3 of its entry's value, far more
    than the solver errors a check at rtol near 1e-5 fails.

    Examples
    --------
    >>> import odeverify
    >>> from odeverify import catalog
    >>> prob = catalog.exponential()
    >>> report = odeverify.check_gradients(*prob.args(), references=["forward", "fd"])
    >>> report.passed
    True
    """
    problem = make_problem(system, z0, ts, theta, loss)
    rtol_c, atol = _check_tolerances(rtol, atol)
    quantities = _check_quantities(quantities)
    progress = check_progress(progress)
    shown = "odeverify adjoint" if candidate is None else getattr(candidate, "__name__", "the given gradient")
    timer = _Timer(progress, "candidate", shown, 0, 1)
    cand = _candidate_values(candidate, problem)
    timer.end()
    refs = _resolve_references(references, problem)
    estimates, ref_status = _compute_all(refs, problem, explicit=references is not None, progress=progress)
    rows, disagreements = _compare(problem, cand.values, estimates, quantities, rtol_c, atol,
                                   _what_to_add(problem, refs, ref_status))
    report_warnings = _warnings(problem, rows, estimates, ref_status, disagreements)
    checked = [r for r in rows if r.status in ("ok", "FAIL", "inconclusive", "missing")]
    passed = bool(checked) and all(r.status == "ok" for r in checked)
    if not checked:
        report_warnings.append("nothing was checked: the candidate gave no value that a reference could confirm")
    diagnoses = []
    layout = SwitchLayout(problem.field, problem.theta, problem.ts, batch=problem.B)
    crossings = _crossings(problem, layout)
    if not passed:
        timer = _Timer(progress, "diagnose", "the failed entries", 0, 1)
        diagnoses = diagnose(rows, problem, rtol=rtol_c, candidate_rtol=cand.rtol, rerun=cand.rerun)
        diagnoses += _switch_diagnoses(rows, layout)
        diagnoses += _event_diagnoses(rows, problem.field, crossings)
        timer.end()
    summary = _summary(rows, passed, quantities, diagnoses)
    summary, report_warnings = _name_discontinuities(problem.field, layout, rows, disagreements, passed, summary,
                                                     report_warnings, crossings)
    report = GradientReport(
        passed=passed,
        rows=rows,
        summary=summary,
        warnings=report_warnings,
        tolerance_model=_tolerance_text(rtol_c, atol),
        candidate_name=cand.name,
        references=estimates,
        rtol=rtol_c,
        reference_status={**ref_status, **{e.name: ("exact" if e.exact else "") for e in estimates if e.exact}},
        diagnoses=diagnoses,
        quantities=quantities,
        trust_model=_trust_text(problem, estimates),
    )
    for w in report_warnings:
        if w.startswith("trivial"):
            warnings.warn(w, TrivialTestWarning, stacklevel=2)
        elif w.startswith("hypotheses:"):
            warnings.warn(w, HypothesisWarning, stacklevel=2)
    return report


def _switch_diagnoses(rows, layout):
    """A failing entry whose input moves a switch time: the jump term there named as the likely culprit."""
    out = []
    for r in rows:
        if r.status != "FAIL" or r.quantity != "theta":
            continue
        q = r.index[0]
        moved = [j for j in range(len(layout)) if layout.jump[j] and layout.dtheta[j, q] != 0]
        if moved:
            by_source = {}  # one discontinuity, named once, with (some of) its times
            for j in moved:
                by_source.setdefault(layout.names[j], []).append(
                    f"{layout.times[j]:.6g} (dτ/dθ[{q}] = {layout.dtheta[j, q]:.6g})")
            where = "; ".join(f"{name}, at {layout.time_name} = {some(times, 3)}" for name, times in by_source.items())
            out.append(f"consistent with the jump term a(τ)ᵀ(f(τ⁻) − f(τ⁺))·∂τ/∂θ left out or wrong in {r.label}, "
                       f"whose switch time moves with it: {where}")
    return out


def _crossings(problem, layout):
    """The events of the unperturbed solve (a tuple of Event) where the solves locate them, else ()."""
    if not layout.events_located:
        return ()
    try:
        _, res = problem.states(rtol=1e-10, atol=1e-10)
    except IntegrationError:  # the candidate and the references report the failure themselves
        return ()
    return tuple(res.events)


def _describe_crossings(field, crossings, limit=3):
    """``"Heaviside(c - x) crossed at t = 1.18"``, for up to ``limit`` events."""
    found = field.discontinuities
    shown = [f"{found[e.condition].expression} crossed at {found[e.condition].time} = {e.time:.6g}"
             for e in crossings[:limit]]
    more = f" and {len(crossings) - limit} more" if len(crossings) > limit else ""
    return "; ".join(shown) + more


def _event_diagnoses(rows, field, crossings):
    """A failing entry that can move a crossing: the event correction (the saltation term) named as the culprit."""
    if not crossings:
        return []
    fails = [r for r in rows if r.status == "FAIL" and (r.quantity != "t" or r.index == (0,))]
    if not fails:
        return []
    shown = ", ".join(r.label for r in fails[:4]) + (f" and {len(fails) - 4} more" if len(fails) > 4 else "")
    return [f"consistent with the event correction (the saltation term: δz⁺ = S δz⁻ + (f_a − f_b)(g_θ·δθ)/D with "
            f"S = I + (f_a − f_b) n_zᵀ/D, D = n_z·f_b + g_t) left out or wrong in {shown}, which move the crossing "
            f"time: {_describe_crossings(field, crossings)}"]


def _name_discontinuities(field, layout, rows, disagreements, passed, summary, report_warnings, crossings=()):
    """Where f is not smooth, the summary (unless it passed) and the warnings name every discontinuity."""
    found = getattr(field, "discontinuities", ())
    if not found:
        return summary, report_warnings
    unhandled = set(map(str, layout.unhandled))
    text = "; ".join(str(d) + ("" if str(d) not in unhandled else " [not handled: no solve locates it]")
                     for d in found)
    stops = (f"; the solves stop at the switch times in t ({some(f'{t:.6g}' for t in layout.times)}) and "
             "the derivative-based references add their jump terms") if len(layout) else ""
    if layout.events_located and layout.events:
        where = f" ({_describe_crossings(field, crossings)})" if crossings else " (none in this interval)"
        stops += (f"; the solves locate every crossing of the state conditions by root finding{where} and restart on "
                  "the new branch. The adjoint's assumption is the event correction: at each crossing it adds the "
                  "saltation term (a⁻ = Sᵀa⁺, and g_θ·w, g_t·w to dL/dθ, dL/dt0), as forward sensitivities do "
                  "(S carried across by the saltation matrix); finite differences solve every perturbed copy "
                  "through its own crossings (values of f only); autograd through fixed Runge–Kutta steps cannot "
                  "stop at a moving crossing and is left out")
    blind = [d for d in layout.unhandled if d.in_state]
    why = layout.event_reason or "no solve locates the crossings of floor, ceiling or a point mass"
    assumption = (f" Where f jumps on the state and no solve locates the crossing ({why}), forward sensitivities "
                  "and autograd through RK differentiate the branch the trajectory is on and miss the change of the "
                  "crossing time (the saltation term), and finite differences integrate through it") if blind else ""
    trouble = bool(disagreements) or any(r.status in ("inconclusive", NOT_DIFFERENTIABLE) or "left it out" in r.note
                                          for r in rows)
    if trouble or blind or layout.events or not passed:
        report_warnings = report_warnings + [f"f is not smooth: {text}{stops}.{assumption}"]
    if not passed and not all(str(d) in summary for d in found):
        summary += f"; f is not smooth: {text}"
    return summary, report_warnings


def _check_tolerances(rtol, atol):
    rtol_c = DEFAULT_RTOL if rtol is None else _real(rtol, "rtol", "rtol=1e-5")
    if not (0 < rtol_c < 1):
        raise InvalidArgumentError(f"rtol={rtol!r} must be in (0, 1), e.g. rtol=1e-5")
    if atol is not None:
        atol = _real(atol, "atol", "atol=1e-8")
        if not (0 <= atol < np.inf):
            raise InvalidArgumentError(
                f"atol={atol!r} must be a finite non-negative number (an infinite atol passes any gradient); "
                "leave it None for the default derived from the references' scale"
            )
    return rtol_c, atol


def _tolerance_text(rtol_c, atol):
    return (
        f"|candidate − reference| ≤ rtol·|reference| + atol + 3·(reference's error estimate); rtol = {rtol_c:g}"
        + (
            f", atol = {float(atol):g}"
            if atol is not None
            else ", atol = 0.1·rtol·max|reference| within each quantity (z0, θ, t), at least 1e-3 of the largest quantity's"
        )
        + "; the reference is the most accurate of the references that agree with each other"
    )


def _compare(problem, cand, estimates, quantities, rtol_c, atol, what_to_add):
    """One Row per gradient entry, and for each reference the entries where it left the consensus."""
    labels = _labels(problem)
    # scale of each quantity from the references (for the absolute floor)
    scales = {}
    for q in QUANTITIES:
        vals = [np.nanmax(np.abs(np.asarray(e.values[q])), initial=0.0) for e in estimates if q in e.values]
        scales[q] = max(vals, default=0.0)
    scale_all = max(scales.values(), default=0.0)
    rows = []
    disagreements = {}  # reference name -> [(label, names of the consensus there)]
    layout = SwitchLayout(problem.field, problem.theta, problem.ts, batch=problem.B)
    nonsmooth = _nonsmooth(problem.field, layout)
    nondiff = layout.nondifferentiable(problem.ts) if len(layout) else {}
    user_derivatives = bool(getattr(problem.field, "derivatives_from_user", False))
    for q in QUANTITIES:
        have = [e for e in estimates if q in e.values]
        floor_agree = 1e-12 * max(scales[q], 1e-3 * scale_all) + 1e-300
        # a quantity far smaller than the others (e.g. dL/dt ~ 1e-16 beside dL/dz0 ~ 1)
        # is measured against a thousandth of the largest quantity
        atol_q = float(atol) if atol is not None else 0.1 * rtol_c * max(scales[q], 1e-3 * scale_all)
        for idx in np.ndindex(*problem.shapes()[q]):
            cval = float(cand[q][idx]) if q in cand else None
            if (q, idx) in nondiff:
                row = _not_differentiable(q, idx, labels[q][idx], cval, nondiff[(q, idx)], have, len(have))
            else:
                entries, why = _entries(q, idx, have)
                row = _row(q, idx, labels[q][idx], cval, entries, floor_agree, rtol_c, atol_q,
                           what_to_add, disagreements, nonsmooth, user_derivatives)
                if why:
                    row.note = "; ".join([row.note] * bool(row.note) + why)
            if q not in quantities:
                row.status, row.note = "not checked", "left out by quantities=..."
            elif cval is None:
                row.status, row.note = "missing", "the candidate gave no value"
            rows.append(row)
    return rows, disagreements


_NOT_SMOOTH = "the right-hand side is not smooth"
#: the status of an entry at which the loss is not differentiable (neither passed nor failed)
NOT_DIFFERENTIABLE = "not differentiable"


_USER_DERIVATIVES = "only references that use the derivatives of the user's code agree"


def _untrusted_note(names, outside):
    if outside:
        return (f"{_USER_DERIVATIVES} ({', '.join(names)}); {', '.join(outside)}, which use f's values only, "
                "disagree: consistent with a bug in the user's derivatives (e.g. a custom backward)")
    return (f"{_USER_DERIVATIVES} ({', '.join(names)}): a bug in a custom backward would be shared by all of them; "
            "a verdict needs finite differences (f's values only) in the consensus: references=[..., 'fd']")


def _trust_text(problem, estimates):
    """Which references ran on the user's derivatives, and the rule that follows; "" for odeverify's own."""
    if not getattr(problem.field, "derivatives_from_user", False):
        return ""
    used = [e.name for e in estimates if e.differentiates_f]
    values = [e.name for e in estimates if not e.differentiates_f]
    return (f"the derivatives of {problem.field.describe()} come from the user's code (any custom backward "
            f"included); {', '.join(used) if used else 'no reference'} used them, "
            f"{', '.join(values) if values else 'no reference'} used f's values only; an entry is decided only "
            "when its consensus contains a reference that uses f's values only")


def _nonsmooth(field, layout):
    """What no reference handles exactly: the discontinuities no solve stops at, as text (empty when none).

    Switches in t whose times SymPy solved are handled (every solve stops there
    and the derivative-based references add their jump terms), and so are
    jumps on the state that the solves locate as events (B = 1, no switches in
    t: the adjoint and forward sensitivities add the saltation term) and kinks
    on the state (f is continuous); jumps on the state that no solve locates,
    unsolved conditions and point masses are not (``layout.unhandled``). A field that names no discontinuities but
    non-smooth functions keeps the rule for those functions.
    """
    if getattr(field, "discontinuities", ()):
        return [str(d) for d in layout.unhandled]
    find = getattr(field, "nonsmooth_functions", None)
    try:
        return list(find()) if callable(find) else []
    except Exception:  # noqa: BLE001 - a diagnostic: no names rather than a failed check
        return []


def _entries(q, idx, have):
    """``(estimate, value, error)`` of the references that computed entry ``idx`` of ``q``, and why others did not."""
    entries, why = [], []
    for e in have:
        if (q, idx) in e.left_out:
            why.append(f"{e.name} left it out: {e.left_out[(q, idx)]}")
            continue
        value, error = float(np.asarray(e.values[q])[idx]), float(np.asarray(e.errors[q])[idx])
        if np.isnan(value):
            why.append(f"{e.name} gave no value")
            continue
        entries.append((e, value, error))
    return entries, why


def _not_differentiable(q, idx, label, cval, reason, have, available):
    """The row of an entry where the loss has a kink (a jump of f on an observation time): neither ok nor FAIL.

    The one-sided derivatives come from the references that give them (forward
    sensitivities, the adjoint), an independent one first.
    """
    sided = sorted((e for e in have if (q, idx) in e.one_sided), key=lambda e: not e.independent)
    note = reason
    if sided:
        left, right = sided[0].one_sided[(q, idx)]
        note += (f"; one-sided derivatives {left:.10g} as it decreases and {right:.10g} as it increases "
                 f"({sided[0].name})")
    return Row(q, idx, label, cval, None, None, None, None, NOT_DIFFERENTIABLE, 0, available,
               [e.name for e in sided], note)


def _row(q, idx, label, cval, entries, floor_agree, rtol_c, atol_q, what_to_add, disagreements, nonsmooth=(),
         user_derivatives=False):
    """The comparison of one entry: the references' consensus, the tolerance and the status."""
    if not entries:
        return Row(q, idx, label, cval, None, None, None, None,
                   "inconclusive" if cval is not None else "not checked", 0, 0, [], "no reference computed it")
    members, rval, rerr = _consensus(entries, floor_agree)
    names = [m[0].name for m in members]
    for e in entries:
        if not any(e is m for m in members) and names:
            disagreements.setdefault(e[0].name, []).append((label, tuple(names)))
    if rval is None:
        if len(entries) == 1:
            note = (f"only one reference ({entries[0][0].name}) computed it; a verdict needs two that agree: "
                    f"{what_to_add}")
        elif len(members) < 2:
            note = " and ".join(e[0].name for e in entries) + " disagree with each other"
        else:
            note = "only sources sharing the adjoint derivation agree"
        return Row(q, idx, label, cval, None, None, None, None, "inconclusive" if cval is not None else "not checked",
                   len(members), len(entries), names, note)
    outside = [e[0].name for e in entries if not any(e is m for m in members) and not e[0].differentiates_f]
    if user_derivatives and all(m[0].differentiates_f for m in members):
        # they all run the user's derivatives: a bug in a custom backward is shared, not outvoted
        return Row(q, idx, label, cval, None, None, None, None, "inconclusive" if cval is not None else "not checked",
                   len(members), len(entries), names, _untrusted_note(names, outside))
    if nonsmooth and all(m[0].differentiates_f for m in members):
        # a switch no solve stops at (an event in the state) is invisible to every source built on the
        # derivatives of f: their agreement is one blind spot shared, never evidence on its own
        seen = (f"{', '.join(outside)} disagree{'s' if len(outside) == 1 else ''} with them" if outside
                else "no source that does not differentiate f (finite differences, a closed form) confirms them")
        return Row(q, idx, label, cval, None, None, None, None, "inconclusive" if cval is not None else "not checked",
                   len(members), len(entries), names,
                   f"{_NOT_SMOOTH} ({'; '.join(nonsmooth)}): {', '.join(names)} differentiate f on the branch "
                   f"they are on and do not see the switch move, {seen}")
    if cval is None:
        return Row(q, idx, label, None, rval, rerr, None, None, "not checked", len(members), len(entries), names,
                   "the candidate gave no value")
    tol = rtol_c * abs(rval) + atol_q + 3.0 * rerr
    if 3.0 * rerr > rtol_c * abs(rval) + atol_q:
        # the references' own uncertainty would dominate the tolerance:
        # a wrong candidate could pass inside it, so nothing is decided
        return Row(q, idx, label, cval, rval, rerr, abs(cval - rval) if np.isfinite(cval) else float("inf"), tol,
                   "inconclusive", len(members), len(entries), names,
                   f"the references are not accurate enough for rtol={rtol_c:g} (their error estimate {rerr:.2g})")
    if not np.isfinite(cval):
        return Row(q, idx, label, cval, rval, rerr, float("inf"), tol, "FAIL", len(members), len(entries), names,
                   "the candidate is not finite")
    diff = abs(cval - rval)
    return Row(q, idx, label, cval, rval, rerr, diff, tol, "ok" if diff <= tol else "FAIL", len(members),
               len(entries), names, "")


def _warnings(problem, rows, estimates, ref_status, disagreements):
    """Reference problems, trivial tests, backsolve drift and the hypotheses of the theory."""
    out = [f"reference {name} {why}" for name, why in ref_status.items()]
    for name, where in disagreements.items():
        shown = ", ".join(label for label, _ in where[:4]) + (f" and {len(where) - 4} more" if len(where) > 4 else "")
        others = sorted({n for _, names in where for n in names})
        out.append(f"reference {name} disagrees with {' and '.join(others)} at {shown}; it was left out there")
    scale_all = max((float(np.nanmax(np.abs(np.asarray(v)), initial=0.0)) for e in estimates for v in e.values.values()),
                    default=0.0)
    for q in QUANTITIES:
        qrows = [r for r in rows if r.quantity == q and r.reference is not None]
        if qrows and all(abs(r.reference) <= 1e-12 * scale_all for r in qrows):
            out.append(
                f"trivial: {_GROUP_WORDS[q]} is identically zero in every reference — the loss does not depend on "
                f"{ {'z0': 'z0', 'theta': 'θ', 't': 'the times'}[q]}, so this check cannot detect errors in it"
            )
    for e in estimates:
        for note in e.notes:
            if "backsolve" in note and "drift" in note.lower() or "unstable" in note:
                out.append(f"{e.name}: {note}")
    exact_warning = _integrated_exactly(problem)
    if exact_warning:
        out.append(exact_warning)
    from .theory import hypothesis_warnings

    try:
        hypotheses = list(hypothesis_warnings(problem.field, problem.theta, problem.z0, problem.ts))
    except Exception as exc:  # noqa: BLE001 - a diagnostic must not break the check; it is reported
        hypotheses = []
        out.append(f"the smoothness/Lipschitz diagnostics could not run: {type(exc).__name__}: {exc}")
    out += [f"hypotheses: {h}" for h in hypotheses]
    return out


def _integrated_exactly(problem):
    """A warning when a third-order method's discretisation error on this problem is exactly zero.

    Kutta's third-order method (Simpson's rule in each step) with 4 and with 8 steps per interval: the
    same states to rounding mean no discretisation error at all (a solution that is at most a cubic in
    t), where any other smooth solution changes by about 7/8 of the coarse solve's error.
    """
    fld, th = problem.field, problem.theta

    def states(steps):
        return odeint_fixed(lambda z, t: fld.eval_f(z, t, th), problem.z0, problem.ts, method="kutta3", steps=steps)

    with np.errstate(all="ignore"):
        coarse, fine = states(4), states(8)
    if not (np.all(np.isfinite(coarse)) and np.all(np.isfinite(fine))):
        return None
    scale = max(float(np.max(np.abs(fine))), 1e-300)
    if float(np.max(np.abs(coarse - fine))) <= 64 * np.finfo(float).eps * scale:
        return (
            "trivial: the solver integrates this problem exactly (Kutta's third-order method gives the same "
            "states with 4 and 8 steps per interval, to rounding: e.g. a solution polynomial in t), so gradient "
            "errors that come from the discretisation cannot show; use a problem whose solution is not a "
            "low-degree polynomial"
        )
    return None


def _pct(x):
    return f"{100 * x:.2g}%"


_QUANTITY_ARG = {"z0": "'z0'", "theta": "'theta'", "t": "'t'"}


def _summary(rows, passed, quantities, diagnoses, left_out_why=None):
    """The verdict in words: what is missing, the worst offender, why (as hypotheses), what was left out.

    ``left_out_why`` maps a left-out quantity to the reason (e.g. the peer cannot differentiate it); without
    one, it was left out by ``quantities=``.
    """
    missing = [q for q in QUANTITIES if any(r.quantity == q and r.status == "missing" for r in rows)]
    parts = []
    if missing:
        words = " and ".join(_GROUP_WORDS[q] for q in missing)
        count = sum(r.status == "missing" for r in rows)
        rest = tuple(q for q in quantities if q not in missing)
        restrict = (f"pass quantities=({', '.join(_QUANTITY_ARG[q] for q in rest)}{',' if len(rest) == 1 else ''}) "
                    "to check only the others") if rest else "give them"
        parts.append(f"the candidate gives no {words} ({count} {'entry' if count == 1 else 'entries'}), and the "
                     f"verdict covers {', '.join(_GROUP_WORDS[q] for q in quantities)}: {restrict}")
    if not missing or any(r.status in ("FAIL", "inconclusive") for r in rows):
        parts.append(_verdict(rows, passed))
    blind = [r for r in rows if r.status == "inconclusive" and r.note.startswith(_NOT_SMOOTH)]
    if blind and any(r.status == "FAIL" for r in rows):  # (without a failure the verdict names them already)
        shown = ", ".join(r.label for r in blind[:4]) + (f" and {len(blind) - 4} more" if len(blind) > 4 else "")
        parts.append(f"{shown} {'is' if len(blind) == 1 else 'are'} inconclusive: {blind[0].note}")
    kinks = [r for r in rows if r.status == NOT_DIFFERENTIABLE]
    if kinks:  # neither passed nor failed: named, with the reason (the one-sided values are in the table)
        shown = ", ".join(r.label for r in kinks)
        parts.append(f"{shown} {'is' if len(kinks) == 1 else 'are'} not checked, the loss is "
                     f"{kinks[0].note} (one-sided derivatives in the table)")
    text = "; ".join(parts)
    # a diagnosis the verdict already states ("X has the wrong sign") is not said twice
    diagnoses = [d for d in diagnoses if d.split(" (candidate")[0] not in text]
    if diagnoses:
        text += " — " + "; ".join(diagnoses)
    left_out = [q for q in QUANTITIES if q not in quantities]
    why = {q: left_out_why[q] for q in left_out if left_out_why and q in left_out_why}
    for q in why:
        text += f"; not checked: {_GROUP_WORDS[q]} ({why[q]})"
    left_out = [q for q in left_out if q not in why]
    if left_out:
        text += (f"; not checked: {' and '.join(_GROUP_WORDS[q] for q in left_out)} (left out by "
                 f"quantities=({', '.join(_QUANTITY_ARG[q] for q in quantities)}{',' if len(quantities) == 1 else ''}))")
    return text


def _verdict(rows, passed):
    checked = [r for r in rows if r.status in ("ok", "FAIL")]
    inconclusive = [r for r in rows if r.status == "inconclusive"]
    fails = [r for r in checked if r.status == "FAIL"]
    if passed:
        if all(r.reference == 0.0 and r.candidate == 0.0 for r in checked):
            return (
                f"all {len(checked)} checked entries are exactly zero in the candidate and in the references: "
                "the check cannot fail this way and shows nothing (see the warnings)"
            )
        worst = max(checked, key=lambda r: r.ratio or 0.0)
        used = {n for r in checked for n in r.consensus}
        whom = "the references" if len(used) != 1 else next(iter(used))
        return (
            f"all {len(checked)} checked entries agree with {whom}; the closest to its tolerance is "
            f"{worst.label} at {(worst.ratio or 0.0):.2g} of it"
        )
    if not fails and inconclusive:
        r = inconclusive[0]
        if len(inconclusive) == 1:
            return f"1 entry is inconclusive, {r.label}: {r.note}"
        return f"{len(inconclusive)} entries are inconclusive, e.g. {r.label}: {r.note}"
    if not fails:
        return "nothing could be checked"
    # whole quantity zero while the references are not
    for q in QUANTITIES:
        qrows = [r for r in checked if r.quantity == q]
        if len(qrows) > 1 and all(r.candidate == 0.0 for r in qrows) and any(r.status == "FAIL" for r in qrows):
            big = max(qrows, key=lambda r: abs(r.reference))
            return (
                f"{_GROUP_WORDS[q]} are all zero in the candidate, but the references are not "
                f"(e.g. {big.label} = {big.reference:.6g})"
            )
    worst = max(fails, key=lambda r: r.ratio)
    c, r = worst.candidate, worst.reference
    others = len(fails) - 1
    more = f" ({others} other {'entry fails' if others == 1 else 'entries fail'} too)" if others else ""
    if not np.isfinite(c):
        return f"{worst.label} is {c} in the candidate{more}"
    if c == 0.0 and r != 0.0:
        return f"{worst.label} is zero in the candidate but the references give {r:.6g}{more}"
    if is_wrong_sign(worst):
        return f"{worst.label} has the wrong sign (candidate {c:.6g}, references {r:.6g}){more}"
    if r != 0 and abs(c - r) / abs(r) < 10:
        return (
            f"{worst.label} is off by {_pct(abs(c - r) / abs(r))} (candidate {c:.10g}, references {r:.10g}, "
            f"tolerance {worst.tolerance:.2g}){more}"
        )
    return f"{worst.label} is {c:.6g} but the references give {r:.6g} (difference {abs(c - r):.3g}){more}"
