"""Plots (odeverify.plotting), the adjoint trajectory a(t) they draw, and tolerance_study.

Every plot renders headless to a non-empty PNG, and the data it draws are the result's own: lines
are found by their gid (see odeverify.plotting).
"""

import io
import sys
from pathlib import Path

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")

from matplotlib.figure import Figure  # noqa: E402

import odeverify  # noqa: E402
from odeverify import catalog  # noqa: E402
from odeverify.cli import main  # noqa: E402
from odeverify.errors import InvalidArgumentError, InvalidTypeError, MissingDependencyError  # noqa: E402
from odeverify.theory import convergence_order  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def assert_png(fig, path):
    fig.savefig(path, dpi=60)
    data = Path(path).read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert len(data) > 5000  # a blank 60-dpi canvas is far smaller than one with axes, lines and text


def lines_by_gid(fig):
    return {line.get_gid(): line for ax in fig.axes for line in ax.get_lines() if line.get_gid()}


def close(a, b, **kw):
    return np.allclose(np.asarray(a, dtype=float), np.asarray(b, dtype=float), equal_nan=True, **kw)


# ---------------------------------------------------------------------------- Taylor test
@pytest.fixture(scope="module")
def taylor_results():
    prob = catalog.exponential()
    right = odeverify.taylor_test(*prob.args(), seed=0)
    g = prob.exact_gradients()
    wrong = odeverify.taylor_test(*prob.args(), candidate={**g, "theta": g["theta"] * 1.01}, seed=0)
    return right, wrong


def test_taylor_plot_draws_the_residuals_of_every_direction(taylor_results, tmp_path):
    right, wrong = taylor_results
    assert right.passed and not wrong.passed
    for k, result in enumerate((right, wrong)):
        fig = result.plot()
        assert isinstance(fig, Figure)
        lines = lines_by_gid(fig)
        for i, name in enumerate(result.directions):
            line = lines[f"residuals:{i}"]
            assert close(line.get_xdata(), result.steps[i]) and close(line.get_ydata(), result.residuals[i])
            rate = result.rates[i]
            expected = f"{name}: rate {rate:.2f}" if np.isfinite(rate) else f"{name}: rate inconclusive"
            assert line.get_label() == expected
        for slope in (1, 2):  # the reference lines have the slopes they are named by
            x, y = lines[f"slope:{slope}"].get_xdata(), lines[f"slope:{slope}"].get_ydata()
            assert np.log(y[1] / y[0]) / np.log(x[1] / x[0]) == pytest.approx(slope)
        assert_png(fig, tmp_path / f"taylor{k}.png")
    # the wrong gradient's legend shows a rate near 1
    assert "rate 1.0" in lines_by_gid(wrong.plot())["residuals:3"].get_label()


def test_plots_draw_on_a_given_axes(taylor_results):
    fig = Figure()
    ax_left, ax_right = fig.subplots(1, 2)
    out = taylor_results[0].plot(ax=ax_right)
    assert out is fig
    assert len(ax_right.get_lines()) > 0 and len(ax_left.get_lines()) == 0
    with pytest.raises(InvalidArgumentError, match="matplotlib Axes"):
        taylor_results[0].plot(ax="not an axes")


# ---------------------------------------------------------------------------- gradient report
def test_report_plot_shows_each_entry_against_its_tolerance(tmp_path):
    prob = catalog.harmonic_oscillator()
    g = prob.exact_gradients()
    planted = {**g, "theta": -g["theta"]}  # a sign bug in dL/dtheta
    report = odeverify.check_gradients(*prob.args(), candidate=planted, references=["forward", prob.reference()])
    assert not report.passed
    fig = report.plot()
    lines = lines_by_gid(fig)
    rows = [r for r in report.rows if r.diff is not None and r.tolerance is not None]
    assert close(lines["difference"].get_ydata(), [r.diff for r in rows])
    assert close(lines["tolerance"].get_ydata(), [r.tolerance for r in rows])
    fails = [i for i, r in enumerate(rows) if r.status == "FAIL"]
    assert fails and close(lines["failures"].get_xdata(), fails)
    assert close(lines["failures"].get_ydata(), [rows[i].diff for i in fails])
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == [r.label for r in rows]
    assert fig.axes[0].get_yscale() == "log"
    assert_png(fig, tmp_path / "report.png")

    fig = Figure()
    ax = fig.subplots()
    assert report.plot(ax=ax) is fig and ax.get_lines()


# ---------------------------------------------------------------------------- solutions
def test_solution_plot_draws_the_states_and_marks_the_times(tmp_path):
    prob = catalog.harmonic_oscillator()
    sol = odeverify.solve(prob.system, prob.z0, prob.ts, prob.theta, dense_output=True, rtol=1e-10, atol=1e-10)
    fig = sol.plot(names=prob.system.state_names)
    lines = lines_by_gid(fig)
    for i in range(2):
        t, z = lines[f"state:{i}"].get_xdata(), lines[f"state:{i}"].get_ydata()
        assert close(z, prob.solution(t)[:, i], atol=1e-8)  # against the closed form
        assert close(lines[f"observed:{i}"].get_xdata(), prob.ts)
        assert close(lines[f"observed:{i}"].get_ydata(), sol.z[:, i])
    assert fig.axes[0].get_legend_handles_labels()[1] == list(prob.system.state_names)
    assert_png(fig, tmp_path / "solution.png")
    # no dense output: only the values at ts; a batch: one line per sample
    plain = odeverify.solve(prob.system, np.stack([prob.z0, 2 * prob.z0]), prob.ts, prob.theta)
    lines = lines_by_gid(plain.plot())
    assert set(lines) == {"observed:0:0", "observed:0:1", "observed:1:0", "observed:1:1"}
    assert close(lines["observed:1:1"].get_ydata(), plain.z[:, 1, 1])


# ---------------------------------------------------------------------------- the adjoint a(t)
GROWTH = odeverify.ODESystem.from_strings("x", "a", ["a*x"])
A_RATE, TS = 0.7, np.array([0.0, 0.4, 1.0])


def growth_loss(zs):
    return np.sum(zs[1] ** 2) + np.sum(zs[-1] ** 2)


def growth_adjoint(t, x0, include_jump=True):
    """dx/dt = a x, L = x(t1)^2 + x(T)^2: a(t) = 2 x(T) e^{a(T - t)} + [t <= t1] 2 x(t1) e^{a(t1 - t)}."""
    x1, xT = x0 * np.exp(A_RATE * TS[1]), x0 * np.exp(A_RATE * TS[2])
    t = np.asarray(t, dtype=float)
    later = (t < TS[2]) | include_jump
    middle = (t < TS[1]) | ((t == TS[1]) & include_jump)
    return np.where(later, 2 * xT * np.exp(A_RATE * (TS[2] - t)), 0.0) + np.where(
        middle, 2 * x1 * np.exp(A_RATE * (TS[1] - t)), 0.0)


@pytest.mark.parametrize("mode", ["interpolated", "backsolve", "quadrature"])
@pytest.mark.parametrize("method", ["DOP853", "dopri5", "tsit5", "RK45", "Radau", "LSODA"])
def test_adjoint_trajectory_matches_the_closed_form(mode, method):
    x0 = 1.3
    res = odeverify.adjoint_gradients(GROWTH, [x0], TS, [A_RATE], growth_loss, mode=mode, method=method,
                                      rtol=1e-10, atol=1e-10, keep_adjoint=True)
    tol = 1e-7 if method == "LSODA" else 1e-9
    t = np.linspace(0.0, 1.0, 57)
    a = res.adjoint(t)
    assert a.shape == (57, 1)
    assert close(a[:, 0], growth_adjoint(t, x0), rtol=tol)
    # at the observation times: with the jump (the default) and before it
    assert close(res.adjoint(TS)[:, 0], growth_adjoint(TS, x0), rtol=tol)
    assert close(res.adjoint(TS, include_jump=False)[:, 0], growth_adjoint(TS, x0, include_jump=False), rtol=tol)
    assert res.adjoint(TS[-1], include_jump=False)[0] == 0.0
    assert close(res.adjoint(0.0), res.z0, rtol=1e-12)  # a(t0) is dL/dz0
    assert close(res.state(t)[:, 0], x0 * np.exp(A_RATE * t), rtol=1e-8)


def test_adjoint_trajectory_of_a_batch_and_bad_requests():
    x0 = np.array([[1.3], [0.6]])
    res = odeverify.adjoint_gradients(GROWTH, x0, TS, [A_RATE], growth_loss, rtol=1e-10, atol=1e-10,
                                      keep_adjoint=True)
    t = np.array([[0.1, 0.4], [0.7, 1.0]])
    a = res.adjoint(t)
    assert a.shape == (2, 2, 2, 1)
    for b in range(2):
        assert close(a[..., b, 0], growth_adjoint(t, x0[b, 0]), rtol=1e-9)
    with pytest.raises(InvalidArgumentError, match="outside the span"):
        res.adjoint(1.5)
    plain = odeverify.adjoint_gradients(GROWTH, [1.3], TS, [A_RATE], growth_loss)
    assert plain.trajectory is None
    with pytest.raises(InvalidArgumentError, match="keep_adjoint=True"):
        plain.adjoint(0.5)
    with pytest.raises(InvalidArgumentError, match="keep_adjoint=True"):
        plain.plot()


def test_adjoint_plot_draws_a_backwards_with_its_jumps(tmp_path):
    x0 = 1.3
    res = odeverify.adjoint_gradients(GROWTH, [x0], TS, [A_RATE], growth_loss, rtol=1e-10, atol=1e-10,
                                      keep_adjoint=True)
    fig = res.plot(names=["x"])
    assert len(fig.axes) == 2
    lines = lines_by_gid(fig)
    for k in range(len(TS) - 1):  # each interval: a(t_k) before the jump there ... a(t_{k+1}) with its jump
        t, y = lines[f"adjoint:0:{k}"].get_xdata(), lines[f"adjoint:0:{k}"].get_ydata()
        assert t[0] == TS[k] and t[-1] == TS[k + 1]
        assert close(y[1:-1], growth_adjoint(t[1:-1], x0), rtol=1e-9)
        assert y[0] == pytest.approx(growth_adjoint(TS[k], x0, include_jump=False), rel=1e-9)
        assert y[-1] == pytest.approx(growth_adjoint(TS[k + 1], x0), rel=1e-9)
    for j, jump in enumerate([0.0, 2 * x0 * np.exp(A_RATE * TS[1]), 2 * x0 * np.exp(A_RATE * TS[2])]):
        y = lines[f"jump:0:{j}"].get_ydata()
        assert y[1] - y[0] == pytest.approx(jump, rel=1e-9)  # the jump is g_j = dL/dx(t_j)
    assert close(lines["state:0"].get_ydata(), x0 * np.exp(A_RATE * lines["state:0"].get_xdata()), rtol=1e-8)
    assert_png(fig, tmp_path / "adjoint.png")
    # one Axes: only the adjoint
    single = Figure()
    ax = single.subplots()
    assert res.plot(ax=ax) is single and "state:0" not in lines_by_gid(single)


# ---------------------------------------------------------------------------- theory: convergence order
def test_order_plot_draws_the_errors_and_the_fitted_slope(tmp_path):
    growth = odeverify.ODESystem.from_strings("x", "", ["x"])
    rep = convergence_order(growth, [1.0], [], (0.0, 1.0), "heun", exact=[np.e])
    fig = rep.plot()
    lines = lines_by_gid(fig)
    assert close(lines["errors"].get_xdata(), rep.h) and close(lines["errors"].get_ydata(), rep.errors)
    # the errors of Heun's method against e, computed here by its own recurrence: (1 + h + h^2/2)^N
    assert close(rep.errors, np.abs((1 + rep.h + rep.h ** 2 / 2) ** rep.steps - np.e), rtol=1e-9)
    x, y = lines["fit"].get_xdata(), lines["fit"].get_ydata()
    assert np.log(y[1] / y[0]) / np.log(x[1] / x[0]) == pytest.approx(rep.order)
    x, y = lines["expected"].get_xdata(), lines["expected"].get_ydata()
    assert np.log(y[1] / y[0]) / np.log(x[1] / x[0]) == pytest.approx(2)
    assert_png(fig, tmp_path / "order.png")


# ---------------------------------------------------------------------------- tolerance study
def test_tolerance_study_errors_fall_with_rtol_against_the_closed_form(tmp_path):
    prob = catalog.harmonic_oscillator()
    exact = prob.exact_gradients()
    rtols = [1e-4, 1e-5, 1e-6, 1e-7, 1e-8]
    study = odeverify.tolerance_study(*prob.args(), rtols=rtols, modes=["interpolated", "quadrature"],
                                      methods=["dopri5"], exact=exact)
    assert study.runs == [("interpolated", "dopri5"), ("quadrature", "dopri5")]
    for q in ("z0", "theta", "t"):
        assert close(study.reference[q], exact[q])
        for run in study.runs:
            e = study.errors[run][q]
            assert np.all(np.diff(np.log10(e)) < -0.3), (run, q, e)  # at least twice smaller per decade
    # an entry of the table, recomputed from a direct solve against the closed form
    g = odeverify.adjoint_gradients(*prob.args(), mode="quadrature", method="dopri5", rtol=1e-6, atol=1e-6)
    assert study.errors[("quadrature", "dopri5")]["theta"][2] == pytest.approx(np.max(np.abs(g.theta - exact["theta"])))
    # the estimate |g(rtol) - g(rtol/100)| exists where rtol/100 is in the ladder
    est = study.estimates[("interpolated", "dopri5")]["z0"]
    assert np.all(np.isfinite(est[:3])) and np.all(np.isnan(est[3:]))
    text = str(study)
    assert "interpolated, dopri5" in text and "check_gradients" in text
    assert len(repr(study)) < 120
    fig = study.plot()
    lines = lines_by_gid(fig)
    drawn = lines["error:theta:quadrature:dopri5"].get_ydata()
    assert close(drawn, study.errors[("quadrature", "dopri5")]["theta"] / np.max(np.abs(exact["theta"])))
    assert close(lines["error:theta:quadrature:dopri5"].get_xdata(), rtols)
    assert close(lines["model:t"].get_ydata(), rtols)
    assert close(lines["check:z0"].get_ydata(), np.full(5, study.check_threshold("z0")))
    assert_png(fig, tmp_path / "study.png")
    fig = Figure()
    ax = fig.subplots()
    assert study.plot(ax=ax, estimates=True) is fig
    assert "estimate:z0:interpolated:dopri5" in lines_by_gid(fig)


def test_tolerance_study_default_reference_agrees_with_the_closed_form():
    prob = catalog.exponential()
    study = odeverify.tolerance_study(*prob.args(), rtols=[1e-5, 1e-7], modes=["backsolve"])
    assert study.reference_name == "forward sensitivities"
    exact = prob.exact_gradients()
    for q in ("z0", "theta", "t"):
        assert close(study.reference[q], exact[q], rtol=1e-10, atol=1e-12)


def test_tolerance_study_rejects_bad_arguments():
    prob = catalog.exponential()
    with pytest.raises(InvalidArgumentError, match="rtols"):
        odeverify.tolerance_study(*prob.args(), rtols=[1e-5])
    with pytest.raises(InvalidArgumentError, match="rtols"):
        odeverify.tolerance_study(*prob.args(), rtols=[1e-5, 2.0])
    with pytest.raises(InvalidTypeError, match="modes"):
        odeverify.tolerance_study(*prob.args(), modes=[1])
    with pytest.raises(InvalidArgumentError, match="exact"):
        odeverify.tolerance_study(*prob.args(), exact={"z0": [1.0]})


# ---------------------------------------------------------------------------- without matplotlib; notebooks
def test_a_missing_matplotlib_names_the_extra(monkeypatch, taylor_results, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # import matplotlib.figure now raises ImportError
    with pytest.raises(MissingDependencyError, match=r"pip install 'odeverify\[plot\]'"):
        taylor_results[0].plot()
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    target = tmp_path / "t.png"
    code = main(["taylor", str(EXAMPLES / "exponential.toml"), "--plot", str(target)], out=io.StringIO())
    assert code == 2 and "odeverify[plot]" in err.getvalue() and not target.exists()


def test_a_figure_shows_as_png_in_ipython(taylor_results):
    pytest.importorskip("IPython")
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    fig = taylor_results[0].plot()
    data, _ = shell.display_formatter.format(fig)
    assert data["image/png"][:8] == PNG_SIGNATURE


# ---------------------------------------------------------------------------- CLI --plot
@pytest.mark.parametrize("command", ["taylor", "check"])
def test_cli_plot_writes_a_png(command, tmp_path):
    target = tmp_path / f"{command}.png"
    argv = [command, str(EXAMPLES / "exponential.toml"), "--plot", str(target)]
    if command == "check":
        argv += ["--references", "forward,fd"]
    code = main(argv, out=io.StringIO())
    assert code == 0
    data = target.read_bytes()
    assert data[:8] == PNG_SIGNATURE and len(data) > 5000


def test_cli_plot_to_an_unwritable_path_is_bad_input(tmp_path, monkeypatch):
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    code = main(["taylor", str(EXAMPLES / "exponential.toml"), "--plot", str(tmp_path / "no" / "dir.png")],
                out=io.StringIO())
    assert code == 2 and "--plot" in err.getvalue()


@pytest.mark.parametrize("name, words", [
    ("", "is empty"),
    (".", "is a directory"),
    ("noext", "names no format"),
    ("-", "names no format"),
    ("x.xyz", "names no format"),
    ("no/such/dir/x.png", "does not exist"),
])
def test_cli_plot_path_is_checked_before_any_work(name, words, tmp_path, monkeypatch):
    # a bad --plot path is bad input at once (the spec is not even read), and never renamed: matplotlib
    # would write "DIR.png" for a directory and "noext.png" for a name without a suffix
    monkeypatch.chdir(tmp_path)
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    code = main(["check", str(tmp_path / "no_such_spec.toml"), "--plot", name], out=io.StringIO())
    assert code == 2 and "--plot" in err.getvalue() and words in err.getvalue()
    assert list(tmp_path.iterdir()) == []


def test_taylor_plot_of_a_non_differentiable_loss_says_so_instead_of_failed():
    # heaviside(t - s) jumps on the observation time t1 = s: no rate is expected, and the title must not say FAILED
    import warnings

    system = odeverify.ODESystem.from_strings("x", "k s", ["-k*x + heaviside(t - s)"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = odeverify.taylor_test(system, [1.0], [0.0, 0.9, 2.0], [0.7, 0.9],
                                       lambda zs: zs[1, 0] ** 2 + zs[-1, 0] ** 2, seed=0)
    assert result.summary.startswith("the loss is not differentiable")
    title = result.plot().axes[0].get_title()
    assert "not differentiable" in title and "FAILED" not in title
