"""taylor_test: rate 2 for correct gradients, 1 for wrong ones, for every seed."""

import warnings

import autograd.numpy as anp
import numpy as np
import pytest
from test_check import lotka_volterra

import odeverify as ov
from odeverify import catalog
from odeverify.errors import InvalidArgumentError, TrivialTestWarning

CASES = {p.name: p.args() for p in catalog.problems()}
CASES["lotka_volterra"] = lotka_volterra()


@pytest.fixture(scope="module")
def truths():
    return {name: ov.adjoint_gradients(*args, rtol=1e-11, atol=1e-11).as_dict() for name, args in CASES.items()}


def run(name, candidate, seed):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TrivialTestWarning)
        return ov.taylor_test(*CASES[name], candidate=candidate, seed=seed)


def five_percent_wrong(truth):
    return {k: v * 1.05 for k, v in truth.items()}


def theta_error_in_a_random_direction(truth, seed):
    # a 5% error in the parameter gradient pointing in a random direction, not along it
    rng = np.random.default_rng(1000 + seed)
    g = {k: v.copy() for k, v in truth.items()}
    e = rng.standard_normal(g["theta"].shape)
    g["theta"] = g["theta"] + 0.05 * np.linalg.norm(g["theta"]) * e / np.linalg.norm(e)
    return g


@pytest.mark.parametrize("name", list(CASES))
def test_correct_passes_wrong_fails(truths, name):
    for seed in range(2):
        ok = run(name, truths[name], seed)
        assert ok.passed, str(ok)
        assert abs(ok.rate - 2) < 0.2
        bad = run(name, five_percent_wrong(truths[name]), seed)
        assert not bad.passed
        assert abs(bad.rate - 1) < 0.2, str(bad)


def test_default_candidate_and_reproducibility():
    prob = catalog.logistic()
    a = ov.taylor_test(*prob.args(), seed=3)
    b = ov.taylor_test(*prob.args(), seed=3)
    assert a.passed and a.rates == b.rates
    assert len(a.directions) == 5  # two over all inputs, one per quantity
    text = str(a)
    assert "direction theta" in text and "residual" in text


def test_a_2_parameter_gradient_with_5_percent_error_is_caught(truths):
    # a single random direction can be nearly orthogonal to the error; several cannot all be
    for seed in range(5):
        bad = run("logistic", theta_error_in_a_random_direction(truths["logistic"], seed), seed)
        assert not bad.passed, str(bad)


def test_direction_orthogonal_to_the_error_alone_misses_it(truths):
    # why several directions are needed: along a direction orthogonal to the error the rate is 2
    truth = truths["logistic"]
    g = {k: v.copy() for k, v in truth.items()}
    err = np.array([1.0, -1.0])
    g["theta"] = truth["theta"] + 0.05 * np.abs(truth["theta"]).max() * err
    ortho = {"theta": np.array([1.0, 1.0])}  # err . ortho == 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TrivialTestWarning)
        single = ov.taylor_test(*CASES["logistic"], candidate=g, directions=[ortho])
        several = ov.taylor_test(*CASES["logistic"], candidate=g, seed=0)
    assert single.passed  # fooled, as expected of one direction
    assert not several.passed


def test_flat_direction_is_inconclusive_not_passed():
    # L = x(T) for dx/dt = a: linear in every input, so the remainder is pure noise
    s = ov.ODESystem.from_strings("x", "a", ["a"])
    with pytest.warns(TrivialTestWarning, match="inconclusive"):
        res = ov.taylor_test(s, [1.0], [0.0, 1.0], [0.5], lambda zs: zs[-1, 0], seed=0)
    assert not res.passed
    assert "inconclusive" in res.summary


def test_explicit_directions_and_steps(truths):
    res = ov.taylor_test(
        *CASES["exponential"], candidate=truths["exponential"], directions=[{"theta": [1.0]}],
        steps=[1e-2, 5e-3, 2.5e-3, 1.25e-3],
    )
    assert res.passed and res.directions == ["given #1"]
    with pytest.raises(InvalidArgumentError, match="steps"):
        ov.taylor_test(*CASES["exponential"], steps=[1e-3, 1e-2, 1e-4])
    with pytest.raises(InvalidArgumentError, match="shape"):
        ov.taylor_test(*CASES["exponential"], directions=[{"theta": [1.0, 2.0]}])


def test_time_directions_keep_the_grid_monotone():
    # a dense grid: a time step that crossed a neighbour would raise inside the solve
    s = ov.ODESystem.from_strings("x", "a", ["-a*x"])
    ts = np.linspace(0, 1, 30)
    res = ov.taylor_test(s, [1.0], ts, [0.7], lambda zs: anp.sum(zs**2), seed=1)
    assert res.passed


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CASES))
def test_thirty_seeds(truths, name):
    for seed in range(30):
        ok = run(name, truths[name], seed)
        assert ok.passed, f"seed {seed}\n{ok}"
        bad = run(name, five_percent_wrong(truths[name]), seed)
        assert not bad.passed and bad.rate < 1.2, f"seed {seed}\n{bad}"
        if name != "exponential" and truths[name]["theta"].size >= 1:
            bad2 = run(name, theta_error_in_a_random_direction(truths[name], seed), seed)
            assert not bad2.passed, f"seed {seed}\n{bad2}"


def test_decreasing_grid_times_batched():
    # every direction and step is one batched solve, times through a common variable: a decreasing grid works
    # and a wrong time gradient is caught
    prob = catalog.forced_decay()
    prob = prob.with_inputs(ts=prob.ts[::-1])
    truth = prob.exact_gradients()
    ok = ov.taylor_test(*prob.args(), candidate=truth, seed=1)
    assert ok.passed, str(ok)
    bad = ov.taylor_test(*prob.args(), candidate={**truth, "t": truth["t"] * 1.05}, seed=1)
    assert not bad.passed and abs(bad.rate - 1) < 0.2, str(bad)
