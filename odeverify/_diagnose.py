"""Why a gradient check failed: the common bug patterns, recognised in the failing entries.

Every diagnosis is a hypothesis ("consistent with ..."), never a proof: it says which
term of the adjoint method (notes section 4.3) would produce the differences seen.
The patterns, with g_i = ∂L/∂z(t_i), the loss's direct derivative at t_i:

* a wrong sign: an entry equals minus the references' value;
* only ∂L/∂t0 wrong: the ∂f/∂t term or the a_t integral (∂L/∂t0 = a_t(t0));
* every ∂L/∂t_i after t0 wrong by one pattern: the jump terms ∂L/∂t_i = g_i·f(z(t_i), t_i);
* ∂L/∂z(t0) off by exactly g_0: the loss's own term at t0 forgotten (or counted twice);
* differences that shrink with the candidate's solver tolerance: a candidate solved too loosely.

Rows are read by attribute (``quantity``, ``index``, ``label``, ``candidate``,
``reference``, ``diff``, ``tolerance``, ``status``), as :mod:`odeverify._check` makes them.
"""

from __future__ import annotations

import math

import numpy as np

from .errors import IntegrationError, LossError

__all__ = ["diagnose", "is_wrong_sign", "PROBE_RTOL", "SOLVER_LIKE_MAX", "STRUCTURAL_MIN"]

#: the tolerance a candidate that can be re-run is re-run at, to test the tolerance hypothesis
PROBE_RTOL = 1e-11
#: relative differences above this are not attributed to a solver tolerance
SOLVER_LIKE_MAX = 1e-2
#: without a probe, where the errors are names a term only when they exceed this, relative to the entry
STRUCTURAL_MIN = 1e-3


def diagnose(rows, problem, *, rtol, candidate_rtol=None, rerun=None):
    """Hypotheses, in words, for the failing rows of a check; ``[]`` when none fails or none fits.

    Parameters
    ----------
    rows : list of Row
        The check's rows (failing ones have status ``"FAIL"``).
    problem : references.Problem
        For the loss's direct term g_0 and whether f depends on t.
    rtol : float
        The check's relative tolerance (for the suggested ``rtol=``).
    candidate_rtol : float or None
        The tolerance the candidate was solved at, when known.
    rerun : callable or None
        ``rerun(rtol, atol) -> {"z0": ..., "theta": ..., "t": ...}``: the candidate
        solved again at other tolerances, when that is possible.

    Returns
    -------
    list of str
    """
    fails = [r for r in rows if r.status == "FAIL" and r.candidate is not None and np.isfinite(r.candidate)]
    if not fails:
        return []
    # patterns a solver's error does not produce: exact ones, and where the errors are when they are large
    found = [h for h in (_wrong_sign(rows, fails), _direct_term(rows, fails, problem)) if h]
    if _clearly_structural(fails):
        found += [h for h in (_only_t0(rows, fails, problem), _jumps(rows, fails)) if h]
    if found:
        return found
    if rerun is not None:
        probe = _probe(fails, rtol, candidate_rtol, rerun)
        if probe is not None:
            shrinks, text = probe
            if shrinks:
                return [text]
            return [h for h in (_only_t0(rows, fails, problem), _jumps(rows, fails)) if h] + [text]
    return [h for h in [_inferred_tolerance(rows, fails, rtol, candidate_rtol)] if h]


# ---------------------------------------------------------------------------- helpers
def _checked(rows, quantity=None):
    return [r for r in rows if r.status in ("ok", "FAIL") and (quantity is None or r.quantity == quantity)]


def _ok_elsewhere(rows, quantities):
    """True when every checked row of ``quantities`` passes and at least one was checked."""
    others = [r for r in _checked(rows) if r.quantity in quantities]
    return bool(others) and all(r.status == "ok" for r in others)


def is_wrong_sign(row):
    """The candidate is minus the reference, up to 1% of it (or the row's tolerance)."""
    c, r = row.candidate, row.reference
    return r != 0 and np.sign(c) == -np.sign(r) and abs(c + r) <= 0.01 * abs(r) + row.tolerance


def _common_factor(rows):
    """The factor c/r shared by every row (to 1e-3), or None."""
    ratios = [r.candidate / r.reference for r in rows if r.reference != 0]
    if len(ratios) != len(rows) or not ratios:
        return None
    k = float(np.median(ratios))
    if all(abs(q - k) <= 1e-3 * max(1.0, abs(k)) for q in ratios):
        return k
    return None


def _factor_words(k):
    if abs(k) <= 1e-3:
        return "all zero"
    if abs(k + 1) <= 1e-3:
        return "all with the wrong sign"
    return f"all {k:.4g} times the references' values"


def _t_index(row):
    return row.index[0]


# ---------------------------------------------------------------------------- the patterns
def _wrong_sign(rows, fails):
    signs = [r for r in fails if is_wrong_sign(r)]
    if not signs or len(signs) != len(fails):
        return None
    hints = {"z0": "the adjoint a started from −g_N or ∂L/∂z0 negated",
             "theta": "a_θ accumulated with the wrong sign (da_θ/dt = −a·∂f/∂θ, integrated from t_N back to t0)",
             "t": "∂L/∂t negated"}
    for q, word in (("z0", "∂L/∂z0"), ("theta", "∂L/∂θ"), ("t", "∂L/∂t")):
        group = [r for r in _checked(rows, q) if r.reference != 0]
        if len(group) > 1 and all(any(r is s for s in signs) for r in group):
            return (f"every entry of {word} has the wrong sign (candidate = −references): consistent with one sign "
                    f"error common to them, e.g. {hints[q]}")
    shown = ", ".join(r.label for r in signs[:4]) + (f" and {len(signs) - 4} more" if len(signs) > 4 else "")
    return f"{shown} {'has' if len(signs) == 1 else 'have'} the wrong sign (candidate = −references)"


def _only_t0(rows, fails, problem):
    if len(fails) != 1 or fails[0].quantity != "t" or _t_index(fails[0]) != 0:
        return None
    others = [r for r in _checked(rows) if r is not fails[0]]
    if not others or any(r.status != "ok" for r in others) or any(r.status == "inconclusive" for r in rows):
        return None
    text = ("only ∂L/∂t0 is wrong while every other entry agrees: consistent with an error in the ∂f/∂t term or "
            "in the a_t integral (∂L/∂t0 = a_t(t0), da_t/dt = −a·∂f/∂t, a_t jumping by −∂L/∂t_i at every later "
            "t_i), which no other entry depends on")
    if getattr(problem.field, "is_autonomous", None):
        return text + "; f does not depend on t here, so look at the a_t integral and its jumps"
    later = [r for r in _checked(rows, "t") if _t_index(r) >= 1]
    row = fails[0]
    if len(later) == len(problem.ts) - 1:
        jumps_only = -sum(r.reference for r in later)
        if abs(row.candidate - jumps_only) <= row.tolerance and abs(row.reference - jumps_only) > row.tolerance:
            return text + ("; here ∂L/∂t0 equals −Σ_{i≥1} ∂L/∂t_i, the a_t integral without its ∂f/∂t part: "
                           "consistent with the term −a·∂f/∂t left out")
    return text


def _jumps(rows, fails):
    if any(r.quantity != "t" for r in fails) or not _ok_elsewhere(rows, ("z0", "theta")):
        return None
    later = [r for r in _checked(rows, "t") if _t_index(r) >= 1]
    later_fail = [r for r in later if r.status == "FAIL"]
    if not later_fail:
        return None
    t0_fails = any(_t_index(r) == 0 for r in fails)
    tail = (", and ∂L/∂t0, which gathers the jumps through a_t, is wrong too" if t0_fails else "")
    if len(later_fail) == len(later):
        k = _common_factor(later_fail)
        pattern = f", {_factor_words(k)}" if k is not None else ""
        return (f"every ∂L/∂t_i after t0 is wrong{pattern}, while ∂L/∂z0 and ∂L/∂θ agree{tail}: consistent "
                "with an error in the jump terms ∂L/∂t_i = g_i·f(z(t_i), t_i), g_i = ∂L/∂z(t_i)")
    shown = ", ".join(r.label for r in later_fail[:4])
    return (f"{shown} {'is' if len(later_fail) == 1 else 'are'} wrong while ∂L/∂z0 and ∂L/∂θ agree{tail}: "
            "consistent with an error in the jump term g_i·f(z(t_i), t_i) at "
            f"{'that time' if len(later_fail) == 1 else 'those times'}")


def _direct_term(rows, fails, problem):
    if any(r.quantity != "z0" for r in fails) or not _ok_elsewhere(rows, ("theta", "t")):
        return None
    g0 = _loss_direct_term(problem)
    if g0 is None or not np.any(g0):
        return None
    z0_rows = _checked(rows, "z0")
    shown = np.array2string(g0, precision=4, threshold=6)
    for sign, word, words in ((-1.0, "minus", "the loss's own term at t0 forgotten"),
                              (1.0, "plus", "the loss's own term at t0 counted twice")):
        if all(abs(r.candidate - (r.reference + sign * g0[r.index])) <= r.tolerance for r in z0_rows):
            return (f"∂L/∂z(t0) is the references' value {word} g_0 = {shown}, the loss's direct term ∂L/∂z(t0), "
                    f"exactly: consistent with {words} (∂L/∂z0 = a(t0⁺) + g_0)")
    return None


def _loss_direct_term(problem):
    """g_0 = ∂L/∂z(t0) by autograd of the loss on the reference states; shape of ∂L/∂z0, or None."""
    try:
        zs, _ = problem.states()
        _, g = problem.jumps(zs)
    except (IntegrationError, LossError):
        return None
    return g[0] if problem.batched else g[0][0]


# ---------------------------------------------------------------------------- solver tolerance
def _relative_sizes(rows, among=None):
    """Per quantity, the largest |candidate − reference| (of the rows ``among``, default all) over
    that quantity's largest |reference| (at least 1e-3 of the largest of any quantity)."""
    scale_all = max((abs(r.reference) for r in _checked(rows)), default=0.0)
    among = _checked(rows) if among is None else among
    out = {}
    for q in ("z0", "theta", "t"):
        qrows, diffs = _checked(rows, q), [r.diff for r in among if r.quantity == q]
        if not qrows or not diffs:
            continue
        scale = max(max(abs(r.reference) for r in qrows), 1e-3 * scale_all)
        if scale > 0:
            out[q] = max(diffs) / scale
    return out


def _nice_up(x):
    """x rounded up to 1, 2 or 5 times a power of ten."""
    e = math.floor(math.log10(x))
    for m in (1, 2, 5, 10):
        if m * 10.0**e >= x * (1 - 1e-12):
            return m * 10.0**e
    return 10.0 ** (e + 1)  # pragma: no cover


def _check_rtol_that_passes(fails, rtol):
    """A check rtol under which the failing rows pass (the tolerance scales with rtol)."""
    return _nice_up(rtol * max(r.diff / r.tolerance for r in fails) * 1.2)


def _clearly_structural(fails):
    """The failing differences are larger than a solver's error: over :data:`STRUCTURAL_MIN` of each
    failing entry's own value (a check at rtol=1e-5 fails a solver's error when it is a few times 1e-5)."""
    return all(r.reference != 0 and r.diff > STRUCTURAL_MIN * abs(r.reference) for r in fails)


def _probe(fails, rtol, candidate_rtol, rerun):
    """Solve the candidate again at :data:`PROBE_RTOL`: do the differences shrink tenfold?

    Returns (shrinks, text), or None when the probe cannot run.
    """
    try:
        values = rerun(PROBE_RTOL, PROBE_RTOL)
        after = max(abs(float(np.asarray(values[r.quantity])[r.index]) - r.reference) for r in fails)
    except Exception:  # noqa: BLE001 - a probe that cannot run decides nothing
        return None
    before = max(r.diff for r in fails)
    if after <= 0.1 * before:
        solved = f" solved at rtol={candidate_rtol:g}" if candidate_rtol else ""
        return True, (f"consistent with a candidate{solved} not solved tightly enough: solved again at "
                      f"rtol={PROBE_RTOL:g}, its largest difference shrinks from {before:.2g} to {after:.2g}; "
                      f"solve tighter or pass check rtol={_check_rtol_that_passes(fails, rtol):g}")
    return False, (f"not a solver-tolerance effect: solved again at rtol={PROBE_RTOL:g}, the candidate's largest "
                   f"difference stays {after:.2g} (was {before:.2g})")


def _inferred_tolerance(rows, fails, rtol, candidate_rtol):
    """Without a probe: do the differences look like a solver's error?

    They must be small (relative size at most :data:`SOLVER_LIKE_MAX` of their
    quantity's scale) and spread over every checked quantity (each at least 1% of the
    largest), as a solver's error is; a bug in one term leaves the other quantities
    exact. The rtol quoted is the candidate's own when known and consistent (differences
    at most 1000 rtol), else the power of ten below the largest relative size (a
    solver's global error is usually a few times its rtol). It is an estimate: a
    problem the solver finds easy shows less.
    """
    sizes = _relative_sizes(rows)
    if not sizes:
        return None
    largest = max(sizes.values())
    if not 0 < largest <= SOLVER_LIKE_MAX or min(sizes.values()) < 0.01 * largest:
        return None
    spread = ", ".join(f"{q}: {s:.1g}" for q, s in sizes.items())
    if candidate_rtol and largest <= 1e3 * candidate_rtol:
        how = f"solved at rtol={candidate_rtol:g}"
    else:  # the differences' size, not the rtol used: a solver's error is often far below its rtol
        how = f"solved too loosely (errors of relative size about {10.0 ** math.floor(math.log10(largest)):.0e})"
    return (f"consistent with a candidate {how}: differences of relative size up to "
            f"{largest:.1g} spread over every quantity ({spread}), as a solver's error is; solve tighter or pass "
            f"check rtol={_check_rtol_that_passes(fails, rtol):g}")
