"""Rich display (issue 13): LaTeX of systems and derivations and HTML of reports, through IPython's
display formatter as a notebook calls it, and one-line reprs of every result object."""

import re

import numpy as np
import pytest

import odeverify as ov
from odeverify import catalog, theory
from odeverify.errors import InvalidArgumentError
from odeverify.implicit import ImplicitLayer, check_implicit

formatters = pytest.importorskip("IPython.core.formatters")


def shown(obj):
    """What Jupyter would receive for ``obj``: {mime type: data}."""
    data, _ = formatters.DisplayFormatter().format(obj)
    return data


@pytest.fixture(scope="module")
def lv():
    return ov.ODESystem.from_strings("x y", "a b c d", ["a*x - b*x*y", "c*x*y - d*y"])


@pytest.fixture(scope="module")
def sir():
    return ov.ODESystem.from_strings("S I R", "beta gamma", ["-beta*S*I", "beta*S*I - gamma*I", "gamma*I"])


# ---------------------------------------------------------------------------- the system
def test_a_system_shows_as_its_equations_one_per_line(sir):
    tex = shown(sir)["text/latex"]
    assert tex.startswith("$$") and tex.endswith("$$") and tex.count("$$") == 2  # one display block
    body = tex[2:-2]
    assert body.startswith(r"\begin{aligned}") and body.endswith(r"\end{aligned}")
    lines = body[len(r"\begin{aligned}"): -len(r"\end{aligned}")].split(r" \\ ")
    assert [line.split("&=")[0].strip() for line in lines] == [r"\frac{dS}{dt}", r"\frac{dI}{dt}", r"\frac{dR}{dt}"]
    assert r"\beta" in lines[0] and r"\gamma" in lines[2] and "I" in lines[2]
    assert "f(z, t" not in tex  # not the old one-line f(z, t; θ) = [...]


def test_show_one_matrix_names_it(lv):
    out = lv.show("jac_z")
    tex = shown(out)["text/latex"]
    assert tex == f"$${out.latex}$$"
    assert out.latex.startswith(r"\frac{\partial f}{\partial z} = \begin{pmatrix}")
    assert out.latex.endswith(r"\end{pmatrix}")
    # ∂f/∂z of Lotka–Volterra by hand: [[a − b y, −b x], [c y, c x − d]]
    rows = out.latex.split(r"\begin{pmatrix}")[1].split(r"\end{pmatrix}")[0].split(r"\\")
    assert [[e.strip() for e in row.split("&")] for row in rows] == [["a - b y", "- b x"], ["c y", "c x - d"]]
    text = str(out)
    assert text.startswith("∂f/∂z  [2×2]") and "c⋅x - d" in text
    assert repr(out) == "<Equations jac_z (2×2)>"


@pytest.mark.parametrize("name", ["jac_theta", "jac_t", "adjoint_rhs", "f_aug", "jac_aug", "backward_jac"])
def test_show_every_derived_object(lv, name):
    mat = getattr(lv, name)
    tex = shown(lv.show(name))["text/latex"]
    assert tex.count("$$") == 2 and tex.count(r"\begin{pmatrix}") == 1
    body = tex.split(r"\begin{pmatrix}")[1].split(r"\end{pmatrix}")[0]
    assert body.count(r"\\") == mat.rows - 1  # one LaTeX row per matrix row
    assert all(row.count("&") == mat.cols - 1 for row in body.split(r"\\"))


def test_show_everything_is_one_aligned_equation_per_matrix(lv):
    out = lv.show()
    tex = shown(out)["text/latex"]
    assert tex.count("$$") == 2
    assert out.latex.startswith(r"\begin{aligned}") and out.latex.endswith(r"\end{aligned}")
    equations = out.latex[len(r"\begin{aligned}"): -len(r"\end{aligned}")].split(r" \\[1ex] ")
    assert len(equations) == len(lv.DERIVATION) == 12
    assert all(eq.count("&=") == 1 for eq in equations)  # each aligned at one "="
    assert equations[1].startswith(r"\frac{\partial f}{\partial z} &= ")
    assert equations[4].startswith(r"\frac{d\lambda}{dt} &= -\left(\frac{\partial f}{\partial z}\right)^{T} \lambda")
    assert out.names == lv.DERIVATION and len(repr(out)) < 100
    for title in ("∂f/∂z", "∂f/∂θ", "dλ/dt", "∂f_aug/∂(z, θ, t)"):
        assert title in str(out)


def test_the_adjoint_cannot_be_read_as_a_parameter_a(lv):
    tex = lv.show("adjoint_rhs").latex
    # the system's own adjoint symbols are a_x, a_y (and a_a for the parameter a)
    assert [s.name for s in lv.adjoint] == ["a_x", "a_y"]
    assert r"\lambda_{x}" in tex and r"\lambda_{y}" in tex
    assert not re.search(r"\ba_\{", tex)  # no a_{x}: the parameter a appears only as itself
    assert r"\lambda_{x} \left(a - b y\right)" in tex  # -(∂f/∂z)ᵀλ, first row: -λ_x (a - b y) - λ_y c y
    text = str(lv.show("adjoint_rhs"))
    assert "λ" in text and "a_x" not in text


def test_a_parameter_called_lambda_moves_the_adjoint_to_mu():
    s = ov.ODESystem.from_strings("x", "lambda_1 a", ["-lambda_1*x + a"])
    tex = s.show("adjoint_theta_rhs").latex
    assert r"\mu_{x}" in tex and r"\frac{d\mu_{\theta}}{dt}" in tex
    assert r"\lambda_{x}" not in tex


def test_show_a_bad_name_lists_the_valid_ones(lv):
    with pytest.raises(InvalidArgumentError, match=r"'jacz' is not a derived object.*jac_z, jac_theta.*backward_jac"):
        lv.show("jacz")
    with pytest.raises(InvalidArgumentError, match="not a derived object"):
        lv.show(["jac_z", 3])
    for bad in (3, {"jac_z"}):  # neither a name nor a list of names (a set has no order to show them in)
        with pytest.raises(InvalidArgumentError, match=r"name must be a str, a list of str or None.*jac_z"):
            lv.show(bad)


def test_show_an_empty_matrix():
    s = ov.ODESystem.from_strings("x", "", ["-x"])
    assert "empty" in s.show("jac_theta").latex and r"1 \times 0" in s.show("jac_theta").latex


# ---------------------------------------------------------------------------- reports as HTML
@pytest.fixture(scope="module")
def exponential():
    return catalog.exponential()


@pytest.fixture(scope="module")
def failed(exponential):
    args = exponential.args()

    def wrong(z0, ts, theta):  # a planted bug: dL/dθ 1% too large
        g = ov.adjoint_gradients(*args).as_dict()
        return {**g, "theta": g["theta"] * 1.01}

    return ov.check_gradients(*args, candidate=wrong, references=["forward", "fd"])


def _rows(page):
    return re.findall(r"<tr class=\"odeverify-([\w-]+)\" style=\"([^\"]*)\">(.*?)</tr>", page, re.S)


def test_report_html_puts_the_verdict_on_top_and_highlights_the_failure(failed):
    page = shown(failed)["text/html"]
    assert not failed.passed
    assert page.index("FAILED") < page.index(failed.summary.split(" ")[0]) < page.index("<table")
    rows = _rows(page)
    assert len(rows) == len(failed.rows)
    for (status, style, cells), row in zip(rows, failed.rows):
        assert status == row.status.replace(" ", "-")
        assert row.label in cells
        assert ("background-color" in style) == (row.status == "FAIL")
    fails = [cells for status, _, cells in rows if status == "FAIL"]
    assert len(fails) == 1 and "∂L/∂θ[0]" in fails[0]
    assert f"{failed.failures[0].candidate:.7e}" in fails[0]


def test_report_html_escapes_text(exponential):
    report = ov.check_gradients(*exponential.args(), references=["forward", "fd"])
    report.candidate_name = "<script>alert('x')</script> & co"
    page = shown(report)["text/html"]
    assert "<script>" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; co" in page
    assert "PASSED" in page.split("<table")[0]


def test_taylor_html_shows_each_direction_and_marks_a_wrong_gradient(exponential):
    args = exponential.args()

    def wrong(z0, ts, theta):
        g = ov.adjoint_gradients(*args).as_dict()
        return {**g, "theta": g["theta"] * 1.3}

    right, bad = ov.taylor_test(*args), ov.taylor_test(*args, candidate=wrong)
    for result in (right, bad):
        page = shown(result)["text/html"]
        assert page.index("PASSED" if result.passed else "FAILED") < page.index("<table")
        table = page.split('<table class="odeverify-directions">')[1].split("</table>")[0]
        body = re.findall(r"<tr style=\"([^\"]*)\">(.*?)</tr>", table, re.S)
        assert len(body) == len(result.directions)
        for (style, cells), name, rate in zip(body, result.directions, result.rates):
            assert name in cells
            assert (f"{rate:.3f}" if np.isfinite(rate) else "inconclusive") in cells
            assert ("background-color" in style) == (not np.isfinite(rate) or rate < 1.8)
        assert page.count("<details>") == len(result.directions)
    assert right.passed and not bad.passed
    assert "background-color" in shown(bad)["text/html"]


# ---------------------------------------------------------------------------- one-line reprs
def test_report_repr_is_one_line_and_str_is_the_table(failed):
    text = repr(failed)
    assert "\n" not in text and len(text) < 150
    worst = failed.worst()
    assert text == (f"<GradientReport FAILED: 1/{len(failed.rows)} entries outside tolerance, worst {worst.label} "
                    f"{worst.ratio:.2g}× tol>")
    assert str(failed).startswith("check_gradients: FAILED — ") and "quantity" in str(failed)
    assert shown(failed)["text/plain"] == text
    assert len(repr(failed.rows[0])) < 150


def _results():
    prob = catalog.exponential()
    args = prob.args()
    data = ov.TrajectoryData.from_arrays([0, 0, 0], [0.0, 0.5, 1.0], [[1.0], [0.61], [0.37]])
    steps = []
    fit = ov.fit(ov.MLPField((1, 1)), data, theta0=[0.0, 0.0], optimizer="gd", steps=60, callback=steps.append)
    adjoint = ov.adjoint_gradients(*args)
    net = theory.MLP.random([2, 3, 2], seed=0)
    layer = ImplicitLayer(lambda x, y: y**2 - x)
    lv = ov.ODESystem.from_strings("x y", "a b c d", ["a*x - b*x*y", "c*x*y - d*y"])
    return {
        "AdjointResult": adjoint,
        "SolverStats": adjoint.stats,
        "Solution": ov.solve(prob.system, prob.z0, prob.ts, prob.theta, dense_output=True),
        "TaylorResult": ov.taylor_test(*args),
        "GradientReport": ov.check_gradients(*args, references=["forward", "fd"]),
        "GradientEstimate": ov.compute_references(*args, references=["fd"])[0],
        "FitResult": fit,
        "FitProgress": steps[-1],
        "CatalogProblem": prob,
        "LipschitzReport": theory.lipschitz(ov.ODESystem.from_strings("x", "a", ["a*x"]), [2.0], [(-1.0, 4.0)]),
        "OrderReport": theory.convergence_order(lambda z, t, p: -p[0] * z, [1.0], [0.5], (0.0, 1.0), "rk4"),
        "ResNetConvergence": theory.resnet_convergence(lambda z, t, p: -p[0] * z, [1.0], [0.5], (0.0, 1.0),
                                                       lambda zs: zs[-1, 0] ** 2),
        "ResNetEulerCheck": theory.resnet_equals_euler([lambda x: 0.1 * np.tanh(x)] * 5, np.array([0.3, -0.8])),
        "MLP": net,
        "Gradients": theory.backprop(net, [0.4, -0.3], [1.0, 0.0]),
        "BackpropCheck": theory.check_backprop(net, [0.4, -0.3], [1.0, 0.0]),
        "DescentResult": theory.gradient_descent(net, [0.4, -0.3], [1.0, 0.0], lr=0.05, steps=50),
        "DepthReport": theory.gradient_norms_by_depth([2, 4], seed=0),
        "ImplicitSolution": layer.solve([2.0], [1.0]),
        "ImplicitCheck": check_implicit(layer, [2.0], [1.0]),
        "Equations": lv.show(),
        "ODESystem": lv,
    }


@pytest.fixture(scope="module")
def results():
    from pathlib import Path

    from odeverify.spec import load_spec

    out = _results()
    out["Problem"] = load_spec(Path(__file__).resolve().parents[1] / "examples" / "exponential.toml")
    return out


def test_every_result_object_has_a_one_line_repr(results):
    for name, obj in results.items():
        text = repr(obj)
        assert type(obj).__name__ == name
        assert "\n" not in text and len(text) <= 200, (name, len(text), text[:300])
        if name != "ODESystem":  # the system keeps its constructor-like repr
            assert text.startswith(f"<{name} ") and text.endswith(">"), text
    fit = results["FitResult"]
    assert len(fit.loss_history) == 61 and f"{fit.final_loss:.4g}" in repr(fit) and "60 steps" in repr(fit)


def test_str_stays_the_terminal_text(results):
    assert str(results["TaylorResult"]).startswith("taylor_test: PASSED — ")
    assert str(results["SolverStats"]).startswith("forward: ")
    assert str(results["OrderReport"]).startswith("rk4: observed order")
    assert "\n" in str(results["GradientReport"]) and "\n" in str(results["LipschitzReport"])


def test_step_function_is_not_rendered_as_theta():
    # SymPy's default LaTeX for Heaviside is \theta(...), which reads as the parameter vector
    system = ov.ODESystem.from_strings("x", "k s", ["-k*x + heaviside(t - s)"])
    tex = system._repr_latex_()
    assert r"H\left(- s + t\right)" in tex
    assert r"\theta" not in tex
    assert r"\theta\left(" not in system.latex("f")
