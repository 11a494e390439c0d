"""The catalog's closed forms are right: checked without any ODE solver."""

import numpy as np
import pytest

from odeverify import catalog
from odeverify.errors import InvalidArgumentError

PROBLEMS = catalog.problems()


@pytest.mark.parametrize("prob", PROBLEMS, ids=[p.name for p in PROBLEMS])
def test_solution_satisfies_the_ode(prob):
    # the exact solution's time derivative (central differences of the closed form) equals f
    t = np.linspace(prob.ts[0], prob.ts[-1], 7)[1:-1]
    h = 1e-5
    dz = (prob.solution(t + h) - prob.solution(t - h)) / (2 * h)
    f = np.array([prob.system.numeric.f(z, ti, prob.theta) for z, ti in zip(prob.solution(t), t)])
    np.testing.assert_allclose(dz, f, rtol=1e-8, atol=1e-9)
    np.testing.assert_allclose(prob.solution(np.array([prob.ts[0]]))[0], prob.z0, rtol=1e-14)


@pytest.mark.parametrize("prob", PROBLEMS, ids=[p.name for p in PROBLEMS])
def test_exact_loss_is_the_loss_of_the_exact_states(prob):
    assert prob.exact_loss() == pytest.approx(float(prob.loss(prob.solution(prob.ts))), rel=1e-13)


@pytest.mark.parametrize("prob", PROBLEMS, ids=[p.name for p in PROBLEMS])
def test_exact_gradients_match_differences_of_the_closed_form(prob):
    # perturb each input of the closed-form loss: no ODE solver involved
    g = prob.exact_gradients()
    base = {"z0": prob.z0, "theta": prob.theta, "t": prob.ts}
    for key, x in base.items():
        for j in range(len(x)):
            h = 1e-4 * max(1.0, abs(x[j]))

            def L(s):
                y = np.array(x, dtype=float)
                y[j] += s
                kw = {"z0": None, "theta": None, "ts": None}
                kw["ts" if key == "t" else key] = y
                return prob.with_inputs(**kw).exact_loss()

            d1 = (L(h) - L(-h)) / (2 * h)
            d2 = (L(h / 2) - L(-h / 2)) / h
            fd = (4 * d2 - d1) / 3
            assert g[key][j] == pytest.approx(fd, rel=1e-7, abs=1e-9), (key, j)


def test_get_and_errors():
    assert catalog.get("logistic", r=0.5).theta[0] == 0.5
    with pytest.raises(InvalidArgumentError, match="no catalog problem"):
        catalog.get("nope")
    with pytest.raises(InvalidArgumentError, match="square"):
        catalog.linear_system(A=np.ones((2, 3)))


def test_check_against_the_closed_form_passes():
    report = catalog.harmonic_oscillator().check(references=["forward"])
    assert report.passed, str(report)
    assert any(e.exact for e in report.references)
