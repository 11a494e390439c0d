"""Existence and uniqueness (notes §2.3, §4.2): Lipschitz bounds and the Picard–Lindelöf interval."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import numpy as np

from .._system import ODESystem
from .._validate import _as_float_array, as_field, check_positive_float, check_rng, check_theta, check_ts, check_z0
from .._display import fmt
from ..errors import EnclosureError, InvalidArgumentError, InvalidTypeError
from ._checks import check_state
from ._interval import Encloser, hi, interval, is_finite, lo, point

__all__ = ["LipschitzReport", "lipschitz", "hypothesis_warnings", "check_box"]

#: largest number of sub-boxes ``splits ** n`` that :func:`lipschitz` evaluates
MAX_SUBBOXES = 4096


def _fmt(x):
    if x is None:
        return "-"
    if isinstance(x, float) and math.isinf(x):
        return "∞" if x > 0 else "-∞"
    return f"{x:.6g}"


@dataclass
class LipschitzReport:
    r"""What :func:`lipschitz` established about f on a box.

    Norm: every quantity uses the max norm :math:`\|z\|_\infty = \max_i |z_i|`
    on states (a box is a ball of this norm) and its induced matrix norm, the
    largest absolute row sum.

    Attributes
    ----------
    upper : float
        A rigorous upper bound on the Lipschitz constant of f in z over the
        box, uniformly in t over ``t_span``: for all z, w in the box,
        :math:`\|f(z, t) - f(w, t)\|_\infty \le` ``upper`` :math:`\|z - w\|_\infty`.
        ``inf`` when no finite bound was established (see ``problems``).
    lower : float
        A sampled lower bound: the largest difference quotient and Jacobian
        norm observed at random points (a true lower bound up to rounding).
    sup_f : float
        A rigorous bound on :math:`\sup \|f\|_\infty` over the box and ``t_span``.
    f_range : ndarray, shape (n, 2)
        Rigorous enclosure ``[min f_i, max f_i]`` of each component.
    continuous_in_t : bool or None
        True: f is continuous in t on ``t_span`` (proved: finite enclosure and
        no step function of t switching there). False: a step function of t
        (Heaviside, sign, Piecewise) may switch inside ``t_span``. None: not
        established (f's enclosure is unbounded).
    differentiable : bool or None
        True when no non-smooth function of z can switch inside the box (f is
        then C^1 in z there); False when one may (a kink or jump, listed in
        ``switches``); None when ``upper`` is infinite for another reason.
    nonsmooth : list of str
        Names of the non-smooth functions anywhere in f (Abs, Max, Min,
        Heaviside, sign, Piecewise, relu).
    switches : list of str
        The non-smooth sub-expressions whose switching point may lie in the
        box, e.g. ``"kink relu(w*x + b)"``.
    picard_lindelof_interval : tuple of float or None
        ``(t0, t0 + T)`` on which Picard–Lindelöf guarantees a unique
        solution from ``z0`` that stays in the box; None when the hypotheses
        were not established.
    z0 : ndarray, shape (n,)
    box : ndarray, shape (n, 2)
    t_span : tuple of float or None
    problems : list of str
        Every hypothesis that failed or could not be established, in words.
    samples : int
        Points sampled for ``lower``.
    splits : int
        Sub-intervals per state used for ``upper``.
    """

    upper: float
    lower: float
    sup_f: float
    f_range: np.ndarray
    continuous_in_t: bool | None
    differentiable: bool | None
    nonsmooth: list
    switches: list
    picard_lindelof_interval: tuple | None
    z0: np.ndarray
    box: np.ndarray
    t_span: tuple | None
    problems: list = field(default_factory=list)
    samples: int = 0
    splits: int = 1
    norm: str = "max"
    state_names: tuple = ()

    def __repr__(self):
        pl = self.picard_lindelof_interval
        interval = f"[{fmt(pl[0], '.4g')}, {fmt(pl[1], '.4g')}]" if pl is not None else "not established"
        return (f"<LipschitzReport L ≤ {fmt(self.upper, '.4g')} (≥ {fmt(self.lower, '.4g')} observed), "
                f"sup|f| ≤ {fmt(self.sup_f, '.4g')}; Picard–Lindelöf interval {interval}>")

    @property
    def picard_lindelof_holds(self) -> bool:
        """f is Lipschitz in z (finite ``upper``) and continuous in t: the theorem applies on the box."""
        return math.isfinite(self.upper) and self.continuous_in_t is True and math.isfinite(self.sup_f)

    @property
    def hypotheses_hold(self) -> bool:
        """Picard–Lindelöf holds and f is C^1 in z on the box (what the adjoint method needs, notes §4.2-4.3)."""
        return self.picard_lindelof_holds and self.differentiable is True

    def __str__(self):
        names = self.state_names or tuple(f"z{i}" for i in range(len(self.box)))
        box = ", ".join(f"{nm} ∈ [{_fmt(a)}, {_fmt(b)}]" for nm, (a, b) in zip(names, self.box))
        span = "" if self.t_span is None else f", t ∈ [{_fmt(self.t_span[0])}, {_fmt(self.t_span[1])}]"
        lines = [
            f"Lipschitz constant of f in z (max norm) on {box}{span}:",
            f"  {_fmt(self.lower)} ≤ L ≤ {_fmt(self.upper)}"
            f"   (upper: interval arithmetic on {self.splits ** len(self.box)} sub-box(es); "
            f"lower: {self.samples} samples)",
            f"  sup ‖f‖∞ ≤ {_fmt(self.sup_f)}",
            f"  continuous in t: {_yes(self.continuous_in_t)};  differentiable in z: {_yes(self.differentiable)}",
            f"  non-smooth functions in f: {', '.join(self.nonsmooth) or 'none'}",
        ]
        if self.picard_lindelof_interval is not None:
            a, b = self.picard_lindelof_interval
            z0 = ", ".join(_fmt(float(v)) for v in self.z0)
            lines.append(f"  Picard–Lindelöf: a unique solution from z0 = ({z0}) exists on [{_fmt(a)}, {_fmt(b)}]")
        else:
            lines.append("  Picard–Lindelöf: not established on this box")
        lines.append(f"  hypotheses hold: {_yes(self.hypotheses_hold)}")
        lines.extend(f"  problem: {p}" for p in self.problems)
        return "\n".join(lines)


def _yes(v):
    return {True: "yes", False: "no", None: "not established"}[v]


def check_box(box, n, names=()):
    """Validate a box of states: ``n`` finite ``(lo, hi)`` pairs with ``lo <= hi``; returns an (n, 2) array."""
    arr = _as_float_array(box, "box")
    if arr.ndim == 1 and arr.shape == (2,) and n == 1:
        arr = arr.reshape(1, 2)
    if arr.shape != (n, 2):
        raise InvalidArgumentError(
            f"box has shape {arr.shape}; pass one (lo, hi) pair per state, shape ({n}, 2)"
            + (f" for ({', '.join(names)})" if names else "")
        )
    if not np.all(np.isfinite(arr)):
        i = int(np.argwhere(~np.isfinite(arr))[0, 0])
        raise InvalidArgumentError(f"box[{i}] = {arr[i].tolist()} is not finite; give finite bounds for every state")
    bad = np.flatnonzero(arr[:, 0] > arr[:, 1])
    if bad.size:
        i = int(bad[0])
        raise InvalidArgumentError(
            f"box[{i}] = {arr[i].tolist()} has lo > hi; give each state's bounds as (lo, hi) with lo <= hi"
        )
    return arr


def _check_t_span(t_span, system):
    if t_span is None:
        if not system.is_autonomous:
            raise InvalidArgumentError(
                f"{system.describe()} depends on {system.time}; pass t_span=(t0, t1), the time interval "
                "on which to bound f"
            )
        return None
    arr = _as_float_array(t_span, "t_span")
    if arr.shape != (2,) or not np.all(np.isfinite(arr)) or arr[0] > arr[1]:
        raise InvalidArgumentError(
            f"t_span = {np.asarray(t_span).tolist()!r} must be two finite times (t0, t1) with t0 <= t1"
        )
    return float(arr[0]), float(arr[1])


def _sub_boxes(box, splits):
    edges = [np.linspace(a, b, splits + 1) for a, b in box]
    for idx in itertools.product(range(splits), repeat=len(box)):
        yield [(edges[j][k], edges[j][k + 1]) for j, k in enumerate(idx)]


def _enclose(system, theta, box, t_span, splits):
    """Rigorous enclosures of f (n intervals) and of the Jacobian's row sums over the box."""
    n = system.n_states
    params = {s: point(float(v)) for s, v in zip(system.params, theta)}
    t_iv = interval(*t_span) if t_span is not None else point(0.0)
    f_range = None
    upper = 0.0
    switches = {}
    for sub in _sub_boxes(box, splits):
        env = {system.time: t_iv, **params}
        env.update({s: interval(a, b) for s, (a, b) in zip(system.states, sub)})
        enc = Encloser(env, record=True)
        fs = [enc(e) for e in system.f]
        for sw in enc.switches:
            switches.setdefault((sw.kind, str(sw.expr)), sw)
        f_range = fs if f_range is None else [
            interval(min(lo(a), lo(b)), max(hi(a), hi(b))) for a, b in zip(f_range, fs)
        ]
        enc.record = False
        J = system.jac_z
        for i in range(n):
            row = point(0.0)
            for j in range(n):
                if J[i, j] != 0:
                    row = row + abs(enc(J[i, j]))
            upper = max(upper, hi(row)) if is_finite(row) else math.inf
    return f_range, upper, list(switches.values())


def _sampled_lower(system, theta, box, t_span, samples, seed):
    """Largest difference quotient and Jacobian norm at random points (vectorized)."""
    if samples <= 0:
        return 0.0
    rng = check_rng(seed)
    n = system.n_states
    lo_, hi_ = box[:, 0], box[:, 1]
    z = lo_ + (hi_ - lo_) * rng.random((samples, n))
    w = lo_ + (hi_ - lo_) * rng.random((samples, n))
    t = np.zeros(samples) if t_span is None else t_span[0] + (t_span[1] - t_span[0]) * rng.random(samples)
    with np.errstate(all="ignore"):
        J = system.numeric.jac_z(z, t, theta)
        jnorm = np.abs(J).sum(axis=-1).max(axis=-1)
        df = np.abs(system.numeric.f(z, t, theta) - system.numeric.f(w, t, theta)).max(axis=-1)
        dz = np.abs(z - w).max(axis=-1)
        quot = np.where(dz > 0, df / np.where(dz > 0, dz, 1.0), 0.0)
    vals = np.concatenate([jnorm, quot])
    vals = vals[np.isfinite(vals)]
    return float(vals.max()) if vals.size else 0.0


def _picard_lindelof(f_range, box, z0, t_span):
    """T such that the solution from z0 provably stays in the box on [t0, t0 + T] (lower ends, outward rounded)."""
    t0 = 0.0 if t_span is None else t_span[0]
    T = math.inf if t_span is None else lo(interval(t_span[1]) - interval(t0))
    for (a, b), z, fr in zip(box, z0, f_range):
        if hi(fr) > 0:  # z_i grows at most at rate max f_i until it reaches hi
            T = min(T, lo((point(b) - point(z)) / point(hi(fr))))
        if lo(fr) < 0:  # and falls at most at rate -min f_i until it reaches lo
            T = min(T, lo((point(z) - point(a)) / point(-lo(fr))))
    return t0, max(T, 0.0)


def lipschitz(system, theta, box, *, t_span=None, z0=None, samples=1000, seed=0, splits=1):
    r"""Bound the Lipschitz constant of f in z over a box, and the Picard–Lindelöf interval.

    Checks the hypotheses of the Picard–Lindelöf theorem (notes §2.3): f is
    Lipschitz in z, uniformly in t, and continuous in t; and whether f is
    differentiable in z, which the adjoint method needs (§4.2 warns that a
    ReLU network is not).

    Parameters
    ----------
    system : ODESystem
        A symbolic system (the bound is computed from its symbolic Jacobian).
    theta : array_like, shape (p,)
    box : array_like, shape (n, 2)
        One ``(lo, hi)`` pair per state, finite, ``lo <= hi``.
    t_span : (float, float), optional
        The time interval ``[t0, t1]``; required when f depends on t. For an
        autonomous f it only caps the Picard–Lindelöf interval.
    z0 : array_like, shape (n,), optional
        Initial state for the Picard–Lindelöf interval (inside the box);
        default the box's centre.
    samples : int
        Random points for the sampled lower bound (0 to skip).
    seed : int
        Seed of those samples.
    splits : int
        Split every state's range into this many equal parts and take the
        worst sub-box: a tighter (still rigorous) upper bound at
        ``splits ** n`` times the cost.

    Returns
    -------
    LipschitzReport
        ``.upper``, ``.lower``, ``.continuous_in_t``, ``.nonsmooth``,
        ``.picard_lindelof_interval``, ``.hypotheses_hold`` and ``.problems``.

    Raises
    ------
    EnclosureError
        When f uses a function without a rigorous interval extension (e.g.
        ``erf``) or leaves its domain in the box: no bound is returned rather
        than one that is not guaranteed.

    Notes
    -----
    *Norm.* The max norm :math:`\|z\|_\infty` is used throughout because a box
    is a ball of that norm, so the box itself is the cylinder of the
    theorem; its induced matrix norm is the largest absolute row sum.

    *Why the upper bound is rigorous.* Every entry of the symbolic Jacobian
    :math:`J = \partial f/\partial z` is enclosed over the box by interval
    arithmetic with outward rounding (``mpmath.iv``; see
    :mod:`odeverify.theory._interval` for the functions ``mpmath.iv`` lacks),
    and the bound is :math:`\max_i \sum_j \max |J_{ij}|` summed in interval
    arithmetic. As the box is convex, the mean value theorem gives
    :math:`|f_i(z) - f_i(w)| \le \sum_j \sup|J_{ij}|\,|z_j - w_j|`. For f with
    kinks (abs, max, min, relu) the enclosure of the a.e. derivative (with
    ``Heaviside``/``sign`` enclosed by their whole range at 0) contains
    Clarke's generalized Jacobian, and Lebourg's mean value theorem gives the
    same inequality. A step function of z (Heaviside, sign, Piecewise) that
    may switch inside the box makes the bound infinite: f may jump there.

    *The interval.* With :math:`[m_i, M_i]` enclosing :math:`f_i` over the
    box and ``t_span``, a solution stays in the box while
    :math:`t - t_0 \le T = \min_i \min\big((hi_i - z_{0,i})/M_i,\ (z_{0,i} -
    lo_i)/(-m_i)\big)` (terms with :math:`M_i \le 0` or :math:`m_i \ge 0`
    omitted), capped by :math:`t_1 - t_0`. The Picard iteration maps the
    closed convex set of such paths into itself and f is Lipschitz there,
    so a unique solution exists on :math:`[t_0, t_0 + T]` (Teschl, Theorem
    2.2, with a componentwise cylinder; for a box centred at :math:`z_0`
    with radius b this is the classical :math:`T = \min(a, b/M)`).

    References
    ----------
    G. Teschl, *Ordinary Differential Equations and Dynamical Systems*, AMS
    2012, Theorem 2.2 (Picard–Lindelöf). F. H. Clarke, *Optimization and
    Nonsmooth Analysis*, Wiley 1983, Theorem 2.3.7 (Lebourg's mean value
    theorem). R. E. Moore, R. B. Kearfott, M. J. Cloud, *Introduction to
    Interval Analysis*, SIAM 2009.

    Examples
    --------
    >>> import odeverify
    >>> from odeverify.theory import lipschitz
    >>> sq = odeverify.ODESystem.from_strings("x", "", ["x**2"])
    >>> rep = lipschitz(sq, [], [(0.0, 2.0)], z0=[1.0])
    >>> float(rep.upper), rep.picard_lindelof_interval   # |2x| <= 4; (2 - 1) / max x^2 = 1/4
    (4.0, (0.0, 0.25))
    """
    fld = system if isinstance(system, ODESystem) else None
    if fld is None:
        raise InvalidTypeError(
            f"lipschitz needs a symbolic odeverify.ODESystem (it bounds the symbolic Jacobian), got "
            f"{type(system).__name__}; build the field with ODESystem.from_strings(...)"
        )
    n = system.n_states
    theta = check_theta(theta, system.n_params)
    box = check_box(box, n, system.state_names)
    t_span = _check_t_span(t_span, system)
    if z0 is None:
        z0 = box.mean(axis=1)
    else:
        z0 = check_state(z0, n)
        outside = np.flatnonzero((z0 < box[:, 0]) | (z0 > box[:, 1]))
        if outside.size:
            i = int(outside[0])
            raise InvalidArgumentError(
                f"z0[{i}] = {z0[i]!r} lies outside box[{i}] = {box[i].tolist()}; the box must contain z0"
            )
    for name, value in (("samples", samples), ("seed", seed), ("splits", splits)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise InvalidTypeError(f"{name} must be an integer, got {value!r}")
    if samples < 0:
        raise InvalidArgumentError(f"samples={samples} must be >= 0")
    if splits < 1 or splits**n > MAX_SUBBOXES:
        raise InvalidArgumentError(
            f"splits={splits} must be >= 1 with splits**n <= {MAX_SUBBOXES} (n = {n} states)"
        )

    f_range, upper, switches = _enclose(system, theta, box, t_span, int(splits))
    lower = _sampled_lower(system, theta, box, t_span, int(samples), seed)
    states = set(system.states)
    in_z = [s for s in switches if s.symbols & states]
    jumps_z = [s for s in in_z if s.kind == "jump"]
    jumps_t = [s for s in switches if s.kind == "jump" and system.time in s.symbols]
    f_finite = all(is_finite(r) for r in f_range)
    sup_f = max(max(abs(lo(r)), abs(hi(r))) for r in f_range) if f_finite else math.inf

    problems = []
    if jumps_z:
        upper = math.inf
        problems.append(
            "f may be discontinuous in z inside the box (step function switching there: "
            + "; ".join(s.describe() for s in jumps_z)
            + "), so it is not Lipschitz there and Picard–Lindelöf does not apply"
        )
    elif not math.isfinite(upper):
        problems.append(
            "no finite Lipschitz bound was established: an entry of df/dz is unbounded on the box (f may not be "
            "Lipschitz there, e.g. sqrt or 1/z near 0), or the interval enclosure is too coarse "
            "(try splits=4)"
        )
    if system.is_autonomous:
        continuous_in_t = True
    elif jumps_t:
        continuous_in_t = False
        problems.append(
            "f may be discontinuous in t on t_span (step function of t switching there: "
            + "; ".join(s.describe() for s in jumps_t)
            + ")"
        )
    else:
        continuous_in_t = True if f_finite else None
    if not f_finite:
        problems.append("f is unbounded on the box (or its enclosure is too coarse): sup |f| is not finite")
    if jumps_z or in_z:
        differentiable = False
        kinks = [s for s in in_z if s.kind == "kink"]
        if kinks:
            problems.append(
                "f is not differentiable in z where "
                + "; ".join(s.describe() for s in kinks)
                + " switches, which may happen inside the box: f is still Lipschitz (Picard–Lindelöf holds), "
                "but df/dz, which the adjoint equation uses, does not exist there, so adjoint gradients may "
                "disagree with finite differences (notes §4.2)"
            )
    else:
        differentiable = True if math.isfinite(upper) else None

    report = LipschitzReport(
        upper=float(upper),
        lower=lower,
        sup_f=float(sup_f),
        f_range=np.array([[lo(r), hi(r)] for r in f_range]),
        continuous_in_t=continuous_in_t,
        differentiable=differentiable,
        nonsmooth=system.nonsmooth_functions(),
        switches=[f"{s.kind} {s.describe()}" for s in switches],
        picard_lindelof_interval=None,
        z0=np.asarray(z0, dtype=float),
        box=box,
        t_span=t_span,
        problems=problems,
        samples=int(samples),
        splits=int(splits),
        state_names=system.state_names,
    )
    if report.picard_lindelof_holds:
        t0, T = _picard_lindelof(f_range, box, z0, t_span)
        if T > 0:
            report.picard_lindelof_interval = (t0, t0 + T) if math.isfinite(T) else (t0, math.inf)
        elif t_span is not None and t_span[1] == t_span[0]:
            problems.append(
                f"t_span = ({t_span[0]!r}, {t_span[1]!r}) has zero length, so the theorem gives no interval; "
                "pass t_span=(t0, t1) with t1 > t0"
            )
        else:
            problems.append(
                "z0 lies on the boundary of the box where f points outwards, so the theorem gives no interval; "
                "enlarge the box around z0"
            )
    return report


def hypothesis_warnings(system, theta, z0, ts, *, radius=None) -> list:
    """Cheap warnings that the hypotheses of the theory fail, for ``check_gradients``.

    Inspects f symbolically for non-smooth functions, then bounds f on a
    box around the initial state(s) with :func:`lipschitz` (interval
    arithmetic, a few sampled points, no ODE solve).

    Parameters
    ----------
    system : vector field
        An ODESystem is inspected; other fields give ``[]`` (nothing known).
    theta : array_like, shape (p,)
    z0 : array_like, shape (n,) or (B, n)
    ts : array_like, shape (T,)
        The observation times; their range is the time interval.
    radius : float, optional
        Half-width of the box around ``z0`` (around the hull of a batch);
        default ``0.1 * max(1, max |z0|)``.

    Returns
    -------
    list of str
        One sentence per problem; empty when nothing was found. A problem
        near z0 is certain to be flagged (the enclosure is rigorous); its
        absence does not prove the hypotheses along the whole trajectory.

    Examples
    --------
    >>> import odeverify
    >>> from odeverify.theory import hypothesis_warnings
    >>> net = odeverify.ODESystem.from_strings("x", "w b", ["relu(w*x + b)"])
    >>> [w.split(":")[0] for w in hypothesis_warnings(net, [1.0, 0.0], [0.05], [0.0, 1.0])]
    ['f uses relu, which is not differentiable everywhere', 'near z0 (box x ∈ [-0.05, 0.15], t ∈ [0, 1])']
    """
    fld = as_field(system, z0, theta)
    if not isinstance(fld, ODESystem):
        return []
    n = system.n_states
    z0_2d, _ = check_z0(z0, n)
    theta = check_theta(theta, system.n_params)
    ts = check_ts(ts)
    out = []
    names = system.nonsmooth_functions()
    if names:
        out.append(
            f"f uses {', '.join(names)}, which is not differentiable everywhere: where the trajectory crosses a "
            "switching point df/dz does not exist and the adjoint equation da/dt = -(df/dz)^T a is not defined "
            f"there (notes §4.2); {_handled(system, theta, z0_2d.shape[0], ts)}"
        )
    if radius is None:
        radius = 0.1 * max(1.0, float(np.max(np.abs(z0_2d))))
    else:
        radius = check_positive_float(radius, "radius")
    box = np.stack([z0_2d.min(axis=0) - radius, z0_2d.max(axis=0) + radius], axis=1)
    t_span = (float(ts.min()), float(ts.max()))
    where = (
        "near z0 (box "
        + ", ".join(f"{nm} ∈ [{a:.3g}, {b:.3g}]" for nm, (a, b) in zip(system.state_names, box))
        + f", t ∈ [{t_span[0]:.3g}, {t_span[1]:.3g}])"
    )
    try:
        rep = lipschitz(system, theta, box, t_span=t_span, samples=32)
    except EnclosureError as exc:
        out.append(f"{where}: the Lipschitz constant of f could not be bounded rigorously: {exc}")
        return out
    out.extend(f"{where}: {p}" for p in rep.problems)
    return out


def _handled(system, theta, batch, ts):
    """Which of the system's discontinuities the solves and the gradients handle here, and which not, in words."""
    from .._switches import EVENT_FUNCTIONS

    found = system.discontinuities
    switches = system.switch_times(theta, ts[0], ts[-1]) if found else None
    unsolved = set(switches.unsolved) if switches is not None else set()
    events_ok = batch == 1 and not (switches is not None and len(switches))
    handled, not_handled = [], []
    for i, d in enumerate(found):
        if d.kind == "impulse":
            not_handled.append(f"{d.expression} (a point mass)")
        elif not d.in_state:
            if d.in_time and i in unsolved:
                not_handled.append(f"{d.expression} (SymPy cannot solve {d.condition} = 0 for {d.time})")
            elif d.in_time:
                handled.append(f"{d.expression} (a switch in {d.time}: the solves stop there, jump terms added)")
            else:
                handled.append(f"{d.expression} (on the parameters only: constant during a solve)")
        elif d.kind == "kink":
            handled.append(f"{d.expression} (a kink: f is continuous, so the gradients need no correction)")
        elif d.function in EVENT_FUNCTIONS and events_ok:
            handled.append(f"{d.expression} (an event: crossings located by root finding, saltation term in the "
                           "adjoint and forward sensitivities; autograd through RK is left out)")
        elif d.function in EVENT_FUNCTIONS:
            why = "a batch of initial states" if batch != 1 else "together with switches in t"
            not_handled.append(f"{d.expression} (an event, but not located with {why})")
        else:
            not_handled.append(f"{d.expression} ({d.function} of the state: its crossings are not located)")
    parts = []
    if handled:
        parts.append("handled: " + "; ".join(handled))
    if not_handled:
        parts.append("not handled, where adjoint, autograd and finite-difference gradients may disagree: "
                     + "; ".join(not_handled))
    return ". ".join(parts) if parts else "adjoint, autograd and finite-difference gradients may disagree"
