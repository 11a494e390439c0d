"""Plots of odeverify's results (matplotlib, the optional extra ``plot``).

Every function takes the result it draws and an optional ``ax=`` (a
matplotlib Axes to draw on), and returns the :class:`matplotlib.figure.Figure`
it drew on; none calls ``show()``. Without ``ax`` a new Figure is made
directly (``matplotlib.figure.Figure``, not through ``pyplot``), so drawing
works headless whatever the backend, figures are not kept alive by pyplot,
and a figure returned as a notebook cell's value is shown once, as PNG.
matplotlib is imported only when a plot is drawn; without it the functions
raise :class:`~odeverify.errors.MissingDependencyError` naming
``pip install 'odeverify[plot]'``.

The result classes call these functions from their ``plot()`` methods:
:meth:`TaylorResult.plot <odeverify.TaylorResult.plot>` (:func:`plot_taylor`),
:meth:`GradientReport.plot <odeverify.GradientReport.plot>` (:func:`plot_report`),
:meth:`Solution.plot <odeverify.Solution.plot>` (:func:`plot_solution`),
:meth:`AdjointResult.plot <odeverify.AdjointResult.plot>` (:func:`plot_adjoint`),
:meth:`OrderReport.plot <odeverify.theory.OrderReport.plot>` (:func:`plot_order`) and
:meth:`ToleranceStudy.plot <odeverify.ToleranceStudy.plot>` (:func:`plot_tolerance_study`).

Every drawn data line carries a ``gid`` (``line.get_gid()``), e.g.
``"residuals:0"`` for the Taylor residuals of direction 0, so that tests and
users can find the data a plot shows.
"""

from __future__ import annotations

import sys

import numpy as np

from .errors import InvalidArgumentError, MissingDependencyError

__all__ = [
    "require_matplotlib",
    "plot_taylor",
    "plot_report",
    "plot_solution",
    "plot_adjoint",
    "plot_order",
    "plot_tolerance_study",
]

#: what to install for plots
INSTALL_HINT = "pip install 'odeverify[plot]'"

_QUANTITY_WORDS = {"z0": "∂L/∂z0", "theta": "∂L/∂θ", "t": "∂L/∂t"}


# ---------------------------------------------------------------------------- matplotlib, lazily
def _figure_class():
    """``matplotlib.figure.Figure``, imported on first use; a clear error when matplotlib is missing."""
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise MissingDependencyError(
            f"plotting needs matplotlib, which is not installed ({exc}); install it with {INSTALL_HINT}"
        ) from None
    _register_notebook_display(Figure)
    return Figure


def require_matplotlib():
    """Raise :class:`~odeverify.errors.MissingDependencyError` (naming the extra) unless matplotlib imports."""
    _figure_class()


def _register_notebook_display(Figure):
    """In IPython, show a Figure made here as PNG (what ``%matplotlib inline`` does for pyplot figures).

    Only registers a formatter when IPython runs and none is registered for Figure yet; a no-op elsewhere.
    """
    if "IPython" not in sys.modules:
        return
    try:
        from IPython import get_ipython
        from IPython.core.pylabtools import print_figure
    except ImportError:  # pragma: no cover - a broken IPython
        return
    shell = get_ipython()
    if shell is None:
        return
    png = shell.display_formatter.formatters["image/png"]
    try:
        png.lookup_by_type(Figure)
        return  # already shown (the inline backend registered it, or an earlier call)
    except KeyError:
        png.for_type(Figure, lambda fig: print_figure(fig, "png", bbox_inches="tight"))


def _axes(ax, *, nrows=1, ncols=1, figsize=None):
    """``(figure, axes)``: the given ``ax`` (an Axes or a sequence of them) and its figure, or a new figure."""
    if ax is None:
        Figure = _figure_class()
        fig = Figure(figsize=figsize or (6.4 * ncols, 4.2 * nrows), layout="constrained")
        axes = fig.subplots(nrows, ncols, squeeze=False).ravel().tolist()
        return fig, axes
    axes = list(np.ravel(ax)) if isinstance(ax, (list, tuple, np.ndarray)) else [ax]
    for a in axes:
        if not hasattr(a, "get_figure") or not hasattr(a, "plot"):
            raise InvalidArgumentError(
                f"ax must be a matplotlib Axes (or a sequence of them), got {type(a).__name__}; "
                "e.g. fig, ax = matplotlib.pyplot.subplots(); result.plot(ax=ax)"
            )
    return axes[0].get_figure(), axes


def _figure_of(axes):
    """The top-level Figure of the axes (for an Axes of a SubFigure, the Figure that holds it)."""
    fig = axes[0].figure
    while getattr(fig, "figure", fig) is not fig:  # a SubFigure's .figure is its parent
        fig = fig.figure
    return fig


def _positive(values):
    """``values`` as floats with non-positive or non-finite entries NaN (a log axis cannot show them)."""
    v = np.asarray(values, dtype=float).copy()
    v[~np.isfinite(v) | (v <= 0)] = np.nan
    return v


# ---------------------------------------------------------------------------- Taylor test
def plot_taylor(result, *, ax=None):
    """The Taylor test: remainders against the step h on log–log axes, with slopes 1 and 2.

    One line per direction, ``|L(x + h d) - L(x) - h <g, d>|`` against h,
    labelled with its measured rate; the points the rate was measured from
    are filled, the others hollow. Two dashed reference lines of slope 1 (a
    wrong gradient) and 2 (a right one) start at the largest residual of the
    largest step.

    Parameters
    ----------
    result : TaylorResult
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib.figure.Figure
        Line gids: ``"residuals:<k>"`` for direction k (y-data are
        ``result.residuals[k]``, x-data ``result.steps[k]``), ``"slope:1"``,
        ``"slope:2"``.
    """
    fig, (ax,) = _axes(ax)
    colors = _colors(len(result.directions))
    anchors = []
    for k, (name, h, r, rate) in enumerate(zip(result.directions, result.steps, result.residuals, result.rates)):
        h, r = np.asarray(h, dtype=float), np.asarray(r, dtype=float)
        rate_s = f"{rate:.2f}" if np.isfinite(rate) else "inconclusive"
        (line,) = ax.plot(h, r, "-", color=colors[k], marker="o", markerfacecolor="none",
                          label=f"{name}: rate {rate_s}")
        line.set_gid(f"residuals:{k}")
        used = list(result.windows[k]) if k < len(result.windows) else []
        if used:
            ax.plot(h[used], r[used], "o", color=colors[k], linestyle="none")
        good = np.isfinite(r) & (r > 0)
        if np.any(good):
            i = int(np.argmax(np.where(good, h, -np.inf)))
            anchors.append((h[i], r[i]))
    if anchors:
        h0, r0 = max(anchors, key=lambda hr: (hr[0], hr[1]))
        hs = np.concatenate([np.asarray(h, dtype=float) for h in result.steps])
        hline = np.array([np.nanmin(hs), h0])
        for slope, style, words in ((1, "--", "slope 1 (wrong gradient)"), (2, ":", "slope 2 (right gradient)")):
            (line,) = ax.plot(hline, r0 * (hline / h0) ** slope, style, color="0.4", label=words)
            line.set_gid(f"slope:{slope}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    from matplotlib.ticker import NullFormatter

    ax.xaxis.set_minor_formatter(NullFormatter())  # a ladder spanning about a decade: minor labels collide
    ax.set_xlabel("step h")
    ax.set_ylabel("|L(x + h d) − L(x) − h ⟨g, d⟩|")
    if result.summary.startswith("the loss is not differentiable"):  # no rate is expected: say so, not FAILED
        ax.set_title("Taylor test: the loss is not differentiable here (no rate expected)")
    else:
        ax.set_title(f"Taylor test: {'PASSED' if result.passed else 'FAILED'}"
                     + (f" (rate {result.rate:.2f})" if np.isfinite(result.rate) else ""))
    ax.legend(fontsize="small")
    ax.grid(True, which="major", alpha=0.3)
    return _figure_of([ax])


# ---------------------------------------------------------------------------- gradient report
def plot_report(report, *, ax=None):
    """A check's entries: |candidate − reference| against each entry's tolerance, on a log scale.

    One column per entry that has both numbers (rows of status ``"ok"``,
    ``"FAIL"`` and the inconclusive rows whose references were not accurate
    enough): the difference as a dot, the tolerance as a bar, failures as
    red crosses. A difference of exactly 0 cannot be drawn on a log axis: it
    is drawn as a triangle on the lower edge (gid ``"zero"``). Entries with
    no difference (no reference, missing from the candidate) are left out
    and counted in the title.

    Parameters
    ----------
    report : GradientReport
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib.figure.Figure
        Line gids ``"difference"`` (x: the column, y: ``row.diff``),
        ``"tolerance"`` (y: ``row.tolerance``) and ``"failures"`` (the FAIL
        rows' differences); the x tick labels are the rows' labels.
    """
    rows = [r for r in report.rows if r.diff is not None and r.tolerance is not None]
    fig, (ax,) = _axes(ax, figsize=(max(6.4, 0.35 * len(rows) + 2.0), 4.6))
    x = np.arange(len(rows))
    diff = np.array([r.diff for r in rows], dtype=float)
    tol = np.array([r.tolerance for r in rows], dtype=float)
    (line,) = ax.plot(x, tol, "_", color="0.3", markersize=14, markeredgewidth=2, linestyle="none", label="tolerance")
    line.set_gid("tolerance")
    (line,) = ax.plot(x, diff, "o", color="tab:blue", linestyle="none", label="|candidate − reference|")
    line.set_gid("difference")
    fail = np.array([r.status == "FAIL" for r in rows], dtype=bool)
    if np.any(fail):
        (line,) = ax.plot(x[fail], diff[fail], "x", color="tab:red", markersize=10, markeredgewidth=2,
                          linestyle="none", label="FAIL")
        line.set_gid("failures")
    inconclusive = np.array([r.status == "inconclusive" for r in rows], dtype=bool)
    if np.any(inconclusive):
        ax.plot(x[inconclusive], diff[inconclusive], "s", color="tab:orange", markerfacecolor="none",
                linestyle="none", label="inconclusive")
    shown = np.concatenate([_positive(diff), _positive(tol)])
    if np.any(np.isfinite(shown)):
        lo, hi = np.nanmin(shown), np.nanmax(shown)
        ax.set_ylim(lo / 10, hi * 10)
        zero = diff == 0
        if np.any(zero):
            (line,) = ax.plot(x[zero], np.full(zero.sum(), lo / 10), "v", color="tab:blue", linestyle="none",
                              clip_on=False, label="exactly 0")
            line.set_gid("zero")
    # quantity groups: a separator between z0, theta and t
    for k in range(1, len(rows)):
        if rows[k].quantity != rows[k - 1].quantity:
            ax.axvline(k - 0.5, color="0.8", linewidth=1)
    ax.set_yscale("log")
    ax.set_xticks(x)
    ax.set_xticklabels([r.label for r in rows], rotation=90, fontsize="small")
    ax.set_xlim(-0.7, len(rows) - 0.3)
    ax.set_ylabel("absolute difference")
    left_out = len(report.rows) - len(rows)
    ax.set_title(f"check_gradients: {'PASSED' if report.passed else 'FAILED'}"
                 + (f" ({len(report.failures)} of {len(rows)} entries fail)" if report.failures else "")
                 + (f"; {left_out} entries without a difference not shown" if left_out else ""), fontsize="medium")
    ax.legend(fontsize="small")
    ax.grid(True, axis="y", which="major", alpha=0.3)
    return _figure_of([ax])


# ---------------------------------------------------------------------------- solutions and the adjoint
def plot_solution(solution, *, ax=None, names=None, samples=400):
    """The states of a :class:`~odeverify.Solution` over time, the observation times marked.

    With dense output (``solve(..., dense_output=True)``) each state is drawn
    as a curve through ``samples`` times; the values at ``solution.t`` are
    dots, and every observation time is a faint vertical line. Without dense
    output only the dots (joined by straight segments) are drawn.

    Parameters
    ----------
    solution : Solution
    ax : matplotlib Axes, optional
    names : sequence of str, optional
        The states' names (default ``z[0]``, ``z[1]``, ...).
    samples : int

    Returns
    -------
    matplotlib.figure.Figure
        Line gids ``"state:<i>"`` (the curve of state i; sample b of a batch
        ``"state:<i>:<b>"``) and ``"observed:<i>"`` (the values at ``t``).
    """
    fig, (ax,) = _axes(ax)
    t = np.asarray(solution.t, dtype=float)
    z = np.asarray(solution.z, dtype=float)
    z3 = z[:, None, :] if z.ndim == 2 else z  # (T, B, n)
    dense = None
    if solution.sol is not None:
        tt = np.linspace(t[0], t[-1], int(samples))
        zz = np.asarray(solution(tt), dtype=float)
        dense = (tt, zz[:, None, :] if zz.ndim == 2 else zz)
    _draw_states(ax, t, z3, dense, names, batched=z.ndim == 3)
    ax.set_title(f"solution ({solution.method}, rtol={solution.rtol:g})")
    return _figure_of([ax])


def plot_adjoint(result, *, ax=None, names=None, samples=400):
    """An :class:`~odeverify.AdjointResult` kept with ``keep_adjoint=True``: states and the adjoint a(t).

    Two panels: the forward states over time, observation times marked, and
    the adjoint a(t) = ∂L/∂z(t), integrated backwards from the last time,
    each interval between observation times as its own curve and the jump
    ``g_i = ∂L/∂z(t_i)`` at every observation time as a dotted vertical
    segment from ``a`` before the jump to ``a`` after it (in the direction of
    the backward solve). Given one Axes, only the adjoint is drawn on it;
    given two, the states go on the first.

    Parameters
    ----------
    result : AdjointResult
        From ``adjoint_gradients(..., keep_adjoint=True)``.
    ax : matplotlib Axes or pair of Axes, optional
    names : sequence of str, optional
        The states' names (default ``z[0]``, ...).
    samples : int
        Points per curve, spread over the span.

    Returns
    -------
    matplotlib.figure.Figure
        Line gids ``"state:<i>"``, ``"observed:<i>"`` on the states panel;
        ``"adjoint:<i>:<k>"`` (component i on interval k, from ``ts[k]`` to
        ``ts[k + 1]``; a batch adds ``:<b>``) and ``"jump:<i>:<j>"`` (at
        ``ts[j]``) on the adjoint panel.
    """
    if getattr(result, "trajectory", None) is None:
        raise InvalidArgumentError(
            "this AdjointResult has no adjoint trajectory to plot; compute it with "
            "adjoint_gradients(..., keep_adjoint=True)"
        )
    if ax is None:
        fig, axes = _axes(None, nrows=2, figsize=(6.4, 7.0))
        ax_z, ax_a = axes
    else:
        fig, axes = _axes(ax)
        ax_z, ax_a = (axes[0], axes[1]) if len(axes) >= 2 else (None, axes[0])
    ts = np.asarray(result.ts, dtype=float)
    traj = result.trajectory
    batched = np.ndim(result.zs) == 3
    if ax_z is not None:
        tt = np.linspace(ts[0], ts[-1], int(samples))
        zz = traj.state(tt)
        z3 = np.asarray(result.zs)[:, None, :] if not batched else np.asarray(result.zs)
        _draw_states(ax_z, ts, z3, (tt, zz if batched else zz[:, None, :]), names, batched=batched)
        ax_z.set_title(f"forward states ({result.method}, rtol={result.rtol:g})")
    _draw_adjoint(ax_a, result, names, samples, batched)
    return _figure_of(axes if ax is not None else [ax_z, ax_a])


def _draw_states(ax, t, z3, dense, names, *, batched):
    """States (T, B, n) at ``t`` as dots, the dense curves (tt, (M, B, n)) through them, the times marked."""
    T, B, n = z3.shape
    names = _state_names(names, n)
    colors = _colors(n)
    for ti in t:
        ax.axvline(ti, color="0.85", linewidth=0.8, zorder=0)
    for i in range(n):
        for b in range(B):
            suffix = f":{b}" if batched else ""
            label = names[i] if b == 0 else None
            if dense is not None:
                (line,) = ax.plot(dense[0], dense[1][:, b, i], "-", color=colors[i], label=label,
                                  alpha=1.0 if B == 1 else 0.6)
                line.set_gid(f"state:{i}{suffix}")
                label = None
            (line,) = ax.plot(t, z3[:, b, i], "o" if dense is not None else "o-", color=colors[i], label=label,
                              markersize=5)
            line.set_gid(f"observed:{i}{suffix}")
    ax.set_xlabel("t")
    ax.set_ylabel("z(t)")
    ax.legend(fontsize="small")
    ax.grid(True, alpha=0.3)


def _draw_adjoint(ax, result, names, samples, batched):
    ts = np.asarray(result.ts, dtype=float)
    traj = result.trajectory
    T = len(ts)
    a_inc = traj.at_observations(include_jump=True)  # (T, B, n): a at t_i with the jump g_i
    a_exc = traj.at_observations(include_jump=False)  # before the jump (the side of the later times)
    B, n = a_inc.shape[1:]
    names = _state_names(names, n)
    colors = _colors(n)
    span = abs(ts[-1] - ts[0])
    for ti in ts:
        ax.axvline(ti, color="0.85", linewidth=0.8, zorder=0)
    for k in range(T - 1):
        m = max(2, int(np.ceil(samples * abs(ts[k + 1] - ts[k]) / span)))
        inner = np.linspace(ts[k], ts[k + 1], m)[1:-1]
        a_in = traj.adjoint_2d(inner)  # (m - 2, B, n)
        # the interval's own ends: at ts[k] before the jump there, at ts[k + 1] after the jump there
        curve = np.concatenate([a_exc[k][None], a_in, a_inc[k + 1][None]])
        tk = np.concatenate([[ts[k]], inner, [ts[k + 1]]])
        for i in range(n):
            for b in range(B):
                suffix = f":{b}" if batched else ""
                (line,) = ax.plot(tk, curve[:, b, i], "-", color=colors[i], alpha=1.0 if B == 1 else 0.6,
                                  label=f"λ[{names[i]}]" if k == 0 and b == 0 else None)
                line.set_gid(f"adjoint:{i}:{k}{suffix}")
    for j in range(T):
        for i in range(n):
            for b in range(B):
                suffix = f":{b}" if batched else ""
                (line,) = ax.plot([ts[j], ts[j]], [a_exc[j, b, i], a_inc[j, b, i]], ":", color=colors[i],
                                  marker="_", markersize=8,
                                  label="jump ∂L/∂z(tᵢ)" if j == T - 1 and i == 0 and b == 0 else None)
                line.set_gid(f"jump:{i}:{j}{suffix}")
    ax.set_xlabel("t")
    ax.set_ylabel("a(t) = ∂L/∂z(t)")
    ax.set_title(f"adjoint, integrated backwards from t = {ts[-1]:g} ({result.mode})")
    ax.legend(fontsize="small")
    ax.grid(True, alpha=0.3)


# ---------------------------------------------------------------------------- theory: convergence order
def plot_order(report, *, ax=None):
    """A :class:`~odeverify.theory.OrderReport`: error against step h, log–log, with the fitted slope.

    Points in the fit are filled, those below the floor hollow; the fitted
    line ``e = C h^p`` (p = ``report.order``, C by least squares on the
    points used) is dashed, and a dotted line of the expected slope runs
    through the smallest used point.

    Returns
    -------
    matplotlib.figure.Figure
        Line gids ``"errors"`` (x ``report.h``, y ``report.errors``),
        ``"fit"`` and ``"expected"``.
    """
    fig, (ax,) = _axes(ax)
    h = np.asarray(report.h, dtype=float)
    e = np.asarray(report.errors, dtype=float)
    used = np.asarray(report.used, dtype=bool)
    (line,) = ax.plot(h, e, "o-", color="tab:blue", markerfacecolor="none", label=f"{report.method}: error")
    line.set_gid("errors")
    ax.plot(h[used], e[used], "o", color="tab:blue", linestyle="none")
    if np.any(used):
        hu, eu = h[used], e[used]
        logc = float(np.mean(np.log(eu) - report.order * np.log(hu)))
        hl = np.array([hu.min(), hu.max()])
        (line,) = ax.plot(hl, np.exp(logc) * hl ** report.order, "--", color="tab:red",
                          label=f"fit: slope {report.order:.3f}")
        line.set_gid("fit")
        i = int(np.argmin(hu))
        (line,) = ax.plot(hl, eu[i] * (hl / hu[i]) ** report.expected, ":", color="0.4",
                          label=f"expected slope {report.expected}")
        line.set_gid("expected")
    ax.set_xscale("log")
    ax.set_yscale("log")
    from matplotlib.ticker import NullFormatter

    ax.xaxis.set_minor_formatter(NullFormatter())  # a ladder spanning about a decade: minor labels collide
    ax.set_xlabel("step h")
    ax.set_ylabel("max-norm error of z(t₁)")
    ax.set_title(f"{report.method}: observed order {report.order:.2f} (expected {report.expected}) "
                 f"against {report.reference}", fontsize="medium")
    ax.legend(fontsize="small")
    ax.grid(True, which="major", alpha=0.3)
    return _figure_of([ax])


# ---------------------------------------------------------------------------- tolerance study
def plot_tolerance_study(study, *, ax=None, estimates=False):
    """A :class:`~odeverify.ToleranceStudy`: relative error of each quantity against the solver's rtol.

    One panel per quantity (∂L/∂z0, ∂L/∂θ, ∂L/∂t), one line per
    (mode, method), log–log. The dashed grey line is the tolerance model's
    prediction, error = rtol (relative to the quantity's largest entry: a
    solver's global error proportional to its tolerance, the model behind
    the references' ``rtol`` vs ``rtol / 100`` error estimates); the dotted
    horizontal line is the smallest error :func:`~odeverify.check_gradients`
    admits at its default rtol; a grey band marks the reference's own error
    when it is within a hundredfold of the errors shown (nothing below it is
    measurable).

    Parameters
    ----------
    study : ToleranceStudy
    ax : matplotlib Axes or sequence of Axes (one per quantity), optional
    estimates : bool
        Also draw, thin and dotted in each run's colour, the error estimate
        ``|g(rtol) - g(rtol / 100)|`` that odeverify's references use
        (gid ``"estimate:<quantity>:<mode>:<method>"``).

    Returns
    -------
    matplotlib.figure.Figure
        Line gids ``"error:<quantity>:<mode>:<method>"`` (x ``study.rtols``,
        y ``study.relative_error(quantity, mode, method)``),
        ``"model:<quantity>"`` and ``"check:<quantity>"``.
    """
    qs = list(study.quantities)
    if ax is None:
        fig, axes = _axes(None, ncols=len(qs), figsize=(4.6 * len(qs), 4.4))
    else:
        fig, axes = _axes(ax)
        if len(axes) not in (1, len(qs)):
            raise InvalidArgumentError(
                f"ax: give one Axes or one per quantity ({len(qs)}: {', '.join(qs)}), got {len(axes)}"
            )
    rt = np.asarray(study.rtols, dtype=float)
    runs = list(study.runs)
    colors = _colors(len(runs))
    for j, q in enumerate(qs):
        a = axes[j] if len(axes) == len(qs) else axes[0]
        prefix = f"{_QUANTITY_WORDS[q]} " if len(axes) == 1 else ""
        shown = []
        for c, (mode, method) in zip(colors, runs):
            err = study.relative_error(q, mode, method)
            shown.append(err)
            (line,) = a.plot(rt, err, "o-", color=c, label=f"{prefix}{mode}, {method}")
            line.set_gid(f"error:{q}:{mode}:{method}")
            if estimates:
                (line,) = a.plot(rt, study.relative_estimate(q, mode, method), ":", color=c, linewidth=1,
                                 label=f"{prefix}{mode}, {method}: estimate")
                line.set_gid(f"estimate:{q}:{mode}:{method}")
        (line,) = a.plot(rt, rt, "--", color="0.5", label=f"{prefix}model: error = rtol")
        line.set_gid(f"model:{q}")
        (line,) = a.plot(rt, np.full(rt.shape, study.check_threshold(q)), ":", color="0.2", linewidth=2,
                         label=f"{prefix}check_gradients admits (rtol={study.check_rtol:g})")
        line.set_gid(f"check:{q}")
        floor = study.reference_floor(q)
        positive = _positive(np.concatenate(shown))
        smallest = np.nanmin(positive) if np.any(np.isfinite(positive)) else np.nan
        if floor > 0 and np.isfinite(smallest) and floor > 1e-2 * smallest:
            a.axhspan(floor / 100, floor, color="0.9", zorder=0, label=f"{prefix}reference's error")
        a.set_xscale("log")
        a.set_yscale("log")
        a.set_xlabel("solver rtol (= atol)")
        a.set_ylabel("max |error| / max |reference|")
        if len(axes) == len(qs):
            a.set_title(_QUANTITY_WORDS[q])
        a.grid(True, which="major", alpha=0.3)
        if j == 0 or len(axes) == 1:
            a.legend(fontsize="x-small")
    return _figure_of(axes)


# ---------------------------------------------------------------------------- shared pieces
def _colors(k):
    """``k`` colours of matplotlib's default cycle (repeating)."""
    base = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:gray",
            "tab:olive", "tab:cyan"]
    return [base[i % len(base)] for i in range(k)]


def _state_names(names, n):
    if names is None:
        return [f"z[{i}]" for i in range(n)]
    names = [str(s) for s in names]
    if len(names) != n:
        raise InvalidArgumentError(f"names has {len(names)} entries, expected one per state ({n})")
    return names


def __dir__():
    return sorted(__all__)
