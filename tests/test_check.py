"""check_gradients catches seeded gradient bugs and passes correct gradients."""

import warnings

import autograd.numpy as anp
import numpy as np
import pytest

import odeverify as ov
from odeverify import catalog
from odeverify.errors import InvalidArgumentError, InvalidTypeError, TrivialTestWarning


def lotka_volterra():
    lv = ov.ODESystem.from_strings("x y", "a b c d", ["a*x - b*x*y", "c*x*y - d*y"])
    ts = np.array([0.0, 0.4, 1.1, 1.6, 2.5])
    target = np.array([[1.0, 1.0], [0.8, 1.4], [1.3, 0.9], [1.2, 1.1], [0.9, 1.0]])

    def loss(zs):
        return 0.5 * anp.sum((zs - target) ** 2)

    return lv, np.array([1.2, 0.8]), ts, np.array([1.1, 0.7, 0.9, 1.2]), loss


PROBLEMS = {p.name: p for p in catalog.problems()}
CASES = [*PROBLEMS, "lotka_volterra"]


@pytest.fixture(scope="module")
def prepared():
    """Arguments, correct gradients and references, computed once per problem."""
    out = {}
    for name in CASES:
        if name == "lotka_volterra":
            args = lotka_volterra()
            extra = []
        else:
            prob = PROBLEMS[name]
            args = prob.args()
            extra = [prob.reference()]
        refs = ov.compute_references(*args, references=["adjoint", "forward", "autograd", "fd", *extra])
        truth = ov.adjoint_gradients(*args, rtol=1e-12, atol=1e-12).as_dict()
        out[name] = (args, truth, refs)
    return out


def check(prepared, name, candidate):
    args, _, refs = prepared[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TrivialTestWarning)
        return ov.check_gradients(*args, candidate=candidate, references=refs)


def with_(truth, **changes):
    g = {k: np.array(v, dtype=float, copy=True) for k, v in truth.items()}
    for k, f in changes.items():
        g[k] = f(g[k])
    return g


@pytest.mark.parametrize("name", CASES)
def test_correct_gradient_with_tiny_noise_passes(prepared, name):
    _, truth, _ = prepared[name]
    rng = np.random.default_rng(0)
    noisy = {k: v * (1 + 1e-10 * rng.standard_normal(np.shape(v))) for k, v in truth.items()}
    report = check(prepared, name, noisy)
    assert report.passed, str(report)
    assert "agree with the references" in report.summary


@pytest.mark.parametrize("name", CASES)
def test_default_candidate_is_the_adjoint_and_passes(prepared, name):
    report = check(prepared, name, None)
    assert report.passed, str(report)
    assert report.candidate_name.startswith("odeverify adjoint")


@pytest.mark.parametrize("name", CASES)
def test_catches_sign_error_in_dt0(prepared, name):
    _, truth, _ = prepared[name]
    report = check(prepared, name, with_(truth, t=lambda t: np.concatenate([-t[:1], t[1:]])))
    assert not report.passed
    assert "∂L/∂t0 has the wrong sign" in report.summary, report.summary


@pytest.mark.parametrize("name", CASES)
def test_catches_parameter_gradient_off_by_a_tenth_of_a_percent(prepared, name):
    _, truth, _ = prepared[name]
    report = check(prepared, name, with_(truth, theta=lambda g: g * 1.001))
    assert not report.passed
    assert "∂L/∂θ" in report.summary and "off by 0.1%" in report.summary, report.summary


@pytest.mark.parametrize("name", CASES)
def test_catches_all_zero_time_gradients(prepared, name):
    _, truth, _ = prepared[name]
    report = check(prepared, name, with_(truth, t=np.zeros_like))
    assert not report.passed
    assert "∂L/∂t are all zero in the candidate" in report.summary, report.summary


@pytest.mark.parametrize("name", CASES)
def test_catches_missing_jump_at_tN(prepared, name):
    # an adjoint that starts from a(tN) = 0: the loss's dependence on z(tN) is lost
    (system, z0, ts, theta, loss), _, _ = prepared[name]
    frozen_last = ov.solve(system, z0, ts, theta, rtol=1e-12, atol=1e-12).z[-1:]

    def loss_without_last(zs):
        return loss(anp.concatenate([zs[:-1], frozen_last]))

    def buggy(z0_, ts_, theta_):
        return ov.adjoint_gradients(system, z0_, ts_, theta_, loss_without_last, rtol=1e-10, atol=1e-10).as_dict()

    report = check(prepared, name, buggy)
    assert not report.passed
    bad = {r.label for r in report.failures}
    assert any("(tN)" in label for label in bad), str(report)


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("quantity", ["z0", "theta", "t"])
def test_catches_one_component_off_by_1e_4_of_the_largest(prepared, name, quantity):
    _, truth, _ = prepared[name]
    g = truth[quantity]
    if g.size == 0:
        pytest.skip("no entries")
    k = int(np.argmin(np.abs(g)))  # the hardest place: the smallest entry

    def bump(v):
        v = v.copy()
        v.flat[k] += 1e-4 * np.max(np.abs(v))
        return v

    report = check(prepared, name, with_(truth, **{quantity: bump}))
    assert not report.passed, str(report)
    assert len(report.failures) == 1


def test_report_table_and_dict(prepared):
    report = check(prepared, "logistic", None)
    text = str(report)
    for word in ("quantity", "candidate", "reference", "tolerance", "∂L/∂θ[1] (K)", "error model"):
        assert word in text
    d = report.to_dict()
    assert d["passed"] is True and len(d["rows"]) == 1 + 2 + 4
    assert d["rows"][0]["status"] == "ok"
    report.to_json()


def test_assert_gradients_close_message_is_the_table(prepared):
    args, truth, refs = prepared["exponential"]
    wrong = with_(truth, theta=lambda g: g * 1.01)
    with pytest.raises(AssertionError) as info:
        ov.testing.assert_gradients_close(*args, candidate=wrong, references=refs)
    msg = str(info.value)
    assert "FAILED" in msg and "quantity" in msg and "off by 1%" in msg
    assert ov.testing.assert_gradients_close(*args, candidate=truth, references=refs).passed


def test_candidate_with_missing_keys_checks_the_rest(prepared):
    args, truth, refs = prepared["exponential"]
    report = ov.check_gradients(*args, candidate={"theta": truth["theta"]}, references=refs)
    assert report.passed
    assert {r.status for r in report.rows if r.quantity != "theta"} == {"not checked"}


def test_inconclusive_when_references_disagree():
    prob = catalog.exponential()
    a = ov.references.GradientEstimate("a", {"theta": np.array([1.0])}, {"theta": np.array([1e-12])})
    b = ov.references.GradientEstimate("b", {"theta": np.array([2.0])}, {"theta": np.array([1e-12])})
    report = ov.check_gradients(*prob.args(), candidate={"theta": [1.0]}, references=[a, b])
    assert not report.passed
    assert report.rows[1].status == "inconclusive" or any(r.status == "inconclusive" for r in report.rows)
    assert "inconclusive" in report.summary


def test_one_reference_alone_is_inconclusive_and_says_what_to_add():
    # one source cannot be cross-checked: even a right candidate gets no verdict, and the note says why
    prob = catalog.logistic()
    exact = prob.exact_gradients()
    report = ov.check_gradients(*prob.args(), candidate={"theta": exact["theta"]}, references=["forward"])
    assert not report.passed
    theta_rows = [r for r in report.rows if r.quantity == "theta"]
    assert {r.status for r in theta_rows} == {"inconclusive"}
    assert all("only one reference (forward sensitivities) computed it" in r.note for r in theta_rows)
    assert "add another reference" in report.summary
    # a closed form is the truth on its own
    assert ov.check_gradients(*prob.args(), candidate={"theta": exact["theta"]}, references=[prob.reference()]).passed


def test_only_adjoint_references_are_not_enough():
    prob = catalog.exponential()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TrivialTestWarning)
        report = ov.check_gradients(*prob.args(), references=["adjoint", "adjoint-backsolve"])
    assert not report.passed
    assert "only sources sharing the adjoint derivation agree" in str(report)


def test_warns_when_loss_ignores_an_input():
    s = ov.ODESystem.from_strings("x", "a", ["-x"])  # f does not depend on a
    with pytest.warns(TrivialTestWarning, match="identically zero"):
        report = ov.check_gradients(s, [1.0], [0.0, 1.0], [0.5], lambda zs: zs[-1, 0] ** 2, references=["forward", "fd"])
    assert any("∂L/∂θ is identically zero" in w for w in report.warnings)


def test_warns_when_solver_is_exact():
    s = ov.ODESystem.from_strings("x", "a", ["a"])  # x = x0 + a t: every RK method is exact
    with pytest.warns(TrivialTestWarning, match="integrates this problem exactly"):
        ov.check_gradients(s, [1.0], [0.0, 1.0, 2.0], [0.5], lambda zs: anp.sum(zs**2), references=["forward", "fd"])


def test_bad_arguments():
    prob = catalog.exponential()
    with pytest.raises(InvalidArgumentError, match="unknown reference 'magic'"):
        ov.check_gradients(*prob.args(), references=["magic"])
    with pytest.raises(InvalidArgumentError, match=r"has shape \(2,\), expected \(1,\)"):
        ov.check_gradients(*prob.args(), candidate={"theta": [1.0, 2.0]}, references=["forward"])
    with pytest.raises(InvalidArgumentError, match="unknown keys"):
        ov.check_gradients(*prob.args(), candidate={"params": [1.0]}, references=["forward"])
    with pytest.raises(InvalidTypeError, match="candidate must"):
        ov.check_gradients(*prob.args(), candidate=3.0, references=["forward"])
    with pytest.raises(InvalidArgumentError, match="rtol"):
        ov.check_gradients(*prob.args(), rtol=0.0, references=["forward"])


def test_warns_when_the_adjoint_hypotheses_fail():
    # a ReLU field (notes §4.2): not differentiable where the trajectory crosses 0
    s = ov.ODESystem.from_strings("x", "w", ["relu(w*x) - 0.5*x"])
    with pytest.warns(ov.errors.HypothesisWarning, match="relu"):
        report = ov.check_gradients(s, [0.5], [0.0, 1.0], [1.0], lambda zs: zs[-1, 0] ** 2, references=["forward", "fd"])
    assert any(w.startswith("hypotheses:") and "relu" in w for w in report.warnings)


def test_reports_backsolve_drift_and_leaves_that_reference_out():
    # x decays fast, y integrates it: reconstructing x backwards amplifies errors like exp(k T)
    s = ov.ODESystem.from_strings("x y", "k", ["-k*x", "x"])
    args = (s, [1.0, 0.0], [0.0, 8.0], [5.0], lambda zs: zs[-1, 1] ** 2)
    # dL/dt is ~exp(-40): rightly reported as a quantity this check cannot test
    with pytest.warns(TrivialTestWarning, match="∂L/∂t is identically zero"):
        report = ov.check_gradients(*args, references=["adjoint-backsolve", "forward", "fd"])
    assert any("backsolve" in w and "interpolated" in w for w in report.warnings), report.warnings
    assert report.passed, str(report)  # the candidate agrees with the references that agree


def test_references_too_inaccurate_to_decide_are_inconclusive():
    # two references that agree only within a 1% uncertainty cannot check an entry at rtol = 1e-5
    prob = catalog.exponential()
    truth = prob.exact_gradients()
    est = [
        ov.references.GradientEstimate(n, {"theta": truth["theta"] * (1 + d)}, {"theta": 0.01 * np.abs(truth["theta"])})
        for n, d in (("a", 0.0), ("b", 0.004))
    ]
    report = ov.check_gradients(*prob.args(), candidate={"theta": truth["theta"] * 1.003}, references=est)
    assert not report.passed
    assert "not accurate enough" in str(report)


def test_batched_and_decreasing_problem():
    lin = catalog.linear_system(ts=(2.0, 1.2, 0.0))
    s, z0, ts, th, _ = lin.args()
    Z0 = np.stack([z0, -0.5 * z0, z0 + 0.3])

    def loss(zs):
        return anp.sum(zs**2) + anp.sum(zs[0])

    report = ov.check_gradients(s, Z0, ts, th, loss, references=["forward", "autograd"])
    assert report.passed, str(report)
    assert any("[b=2]" in r.label for r in report.rows)
    bad = {k: v.copy() for k, v in ov.adjoint_gradients(s, Z0, ts, th, loss, rtol=1e-11, atol=1e-11).as_dict().items()}
    bad["z0"][1, 2] *= 1.001
    report = ov.check_gradients(s, Z0, ts, th, loss, candidate=bad, references=report.references)
    assert not report.passed and "(t0)[b=1]" in report.summary
