"""Each reference source against closed forms, with honest error estimates."""

import autograd.numpy as anp
import numpy as np
import pytest

import odeverify as ov
from odeverify import catalog
from odeverify.errors import InvalidArgumentError
from odeverify.references import (
    Adjoint,
    AutogradRK,
    Exact,
    FiniteDifferences,
    ForwardSensitivity,
    compute_reference,
)

SOURCES = {
    "adjoint": lambda: Adjoint("interpolated"),
    "adjoint-backsolve": lambda: Adjoint("backsolve"),
    "adjoint-quadrature": lambda: Adjoint("quadrature"),
    "forward": ForwardSensitivity,
    "autograd": AutogradRK,
    "fd": FiniteDifferences,
    "fd-central": lambda: FiniteDifferences(complex_step=False),
}
PROBLEMS = {p.name: p for p in [catalog.logistic(), catalog.forced_decay(), catalog.linear_system()]}


@pytest.fixture(scope="module")
def exact():
    return {name: p.exact_gradients() for name, p in PROBLEMS.items()}


@pytest.mark.parametrize("source", list(SOURCES))
@pytest.mark.parametrize("name", list(PROBLEMS))
def test_source_matches_closed_form_within_its_error_estimate(exact, source, name):
    prob = PROBLEMS[name]
    est = compute_reference(SOURCES[source](), *prob.args())
    assert est.loss == pytest.approx(prob.exact_loss(), rel=1e-9)
    for key, want in exact[name].items():
        got = np.asarray(est.values[key])
        err = np.abs(got - want)
        scale = np.max(np.abs(want))
        # accurate ...
        assert np.all(err <= 1e-7 * scale), (key, err.max() / scale)
        # ... and the source's own error estimate covers its actual error (with the check's factor 3)
        assert np.all(err <= 3 * np.asarray(est.errors[key]) + 1e-9 * np.abs(want) + 1e-12 * scale), (
            key, err, est.errors[key],
        )
    assert est.error_model and est.seconds >= 0


def test_adjoint_reference_validates_its_mode():
    with pytest.raises(InvalidArgumentError, match="quadrature"):
        Adjoint("gauss")


def test_complex_step_is_used_only_when_valid():
    prob = catalog.logistic()
    est = compute_reference(FiniteDifferences(), *prob.args())
    assert "complex step" in est.error_model and not est.notes
    # a non-analytic loss: the probe refuses the complex step, central differences take over
    sys_, z0, ts, th, _ = prob.args()
    est = compute_reference(FiniteDifferences(), sys_, z0, ts, th, lambda zs: anp.sum(anp.abs(zs - 1.0)))
    assert est.notes and "not analytic" in est.notes[0]
    # a non-analytic right-hand side
    s = ov.ODESystem.from_strings("x", "a", ["-a*abs(x)"])
    est = compute_reference(FiniteDifferences(), s, [1.0], [0.0, 1.0], [0.5], lambda zs: zs[-1, 0] ** 2)
    assert "not analytic" in est.notes[0]
    # x(T) = exp(-a T) for x > 0
    assert est.values["theta"][0] == pytest.approx(-2 * np.exp(-1.0), rel=1e-7)


def test_decreasing_grid_and_batch():
    lin = catalog.linear_system(ts=(2.0, 1.4, 0.9, 0.3, 0.0))
    want = lin.exact_gradients()
    for ref in (ForwardSensitivity(), AutogradRK(), FiniteDifferences()):
        est = compute_reference(ref, *lin.args())
        for key in want:
            np.testing.assert_allclose(est.values[key], want[key], rtol=1e-7, atol=1e-9)
    # a batch: gradients per sample for z0, summed over the batch for theta and t
    s, z0, ts, th, _ = catalog.logistic().args()
    Z0 = np.array([[0.3], [0.5], [0.9]])

    def loss(zs):
        return anp.sum(zs**2)

    singles = [compute_reference(ForwardSensitivity(), s, z, ts, th, lambda zs: anp.sum(zs**2)) for z in Z0]
    for ref in (ForwardSensitivity(), AutogradRK(), FiniteDifferences()):
        est = compute_reference(ref, s, Z0, ts, th, loss)
        np.testing.assert_allclose(est.values["z0"], np.array([e.values["z0"] for e in singles]), rtol=1e-7)
        np.testing.assert_allclose(est.values["theta"], sum(e.values["theta"] for e in singles), rtol=1e-7)
        np.testing.assert_allclose(est.values["t"], sum(e.values["t"] for e in singles), rtol=1e-7, atol=1e-10)


def test_autograd_refines_until_its_target():
    prob = catalog.harmonic_oscillator()
    est = compute_reference(AutogradRK("rk4", target=1e-6), *prob.args())
    want = prob.exact_gradients()
    assert not est.notes  # the target was reached
    np.testing.assert_allclose(est.values["theta"], want["theta"], rtol=1e-6)
    assert np.all(np.abs(est.values["theta"] - want["theta"]) <= 3 * est.errors["theta"])


def test_exact_reference_and_errors():
    with pytest.raises(InvalidArgumentError, match="unknown keys"):
        Exact({"params": [1.0]})
    prob = catalog.exponential()
    est = compute_reference(prob.reference(), *prob.args())
    assert est.exact and est.values["theta"][0] == prob.exact_gradients()["theta"][0]


def test_forward_sensitivity_needs_jacobians():
    class NoJac(ov.ODESystem):
        has_jacobians = False

    s = NoJac.from_strings("x", "a", ["a*x"])
    with pytest.raises(InvalidArgumentError, match="no Jacobians"):
        compute_reference(ForwardSensitivity(), s, [1.0], [0.0, 1.0], [1.0], lambda zs: zs[-1, 0])
