"""Bad input and failed solves give the package's own, clear errors."""

from pathlib import Path

import autograd.numpy as anp
import numpy as np
import pytest

import odeverify as ov
from odeverify.errors import IntegrationError, InvalidArgumentError, InvalidTypeError, LossError, OdeverifyError


@pytest.fixture(scope="module")
def lv():
    return ov.ODESystem.from_strings("x y", "a b c d", ["a*x - b*x*y", "c*x*y - d*y"])


THETA = [1.0, 0.5, 0.5, 1.0]


def last_sq(zs):
    return anp.sum(zs[-1] ** 2)


@pytest.mark.parametrize(
    "ts,match",
    [
        ([0.0, 1.0, 0.5], r"not monotonic.*ts\[1\] = 1.0"),
        ([0.0, 1.0, 1.0, 2.0], r"ts\[1\] = ts\[2\] = 1.0.*repeated"),
        ([0.0], "at least 2"),
        ([[0.0, 1.0]], "1-dimensional"),
        ([0.0, np.nan], r"ts\[1\] = nan is not finite"),
        ([0.0, np.inf], "not finite"),
        ([1.0, 0.5, 0.7], "not monotonic"),
    ],
)
def test_bad_times(lv, ts, match):
    with pytest.raises(InvalidArgumentError, match=match):
        ov.adjoint_gradients(lv, [1.0, 1.0], ts, THETA, last_sq)
    with pytest.raises(InvalidArgumentError, match=match):
        ov.solve(lv, [1.0, 1.0], ts, THETA)


@pytest.mark.parametrize(
    "z0,match",
    [
        ([1.0], r"z0 has length 1 but the system has 2 states"),
        ([1.0, 2.0, 3.0], "length 3"),
        (np.ones((2, 3)), r"shape \(2, 3\)"),
        (np.ones((2, 2, 2)), "shape"),
        ([1.0, np.nan], r"z0\[1\] = nan is not finite"),
        ([[1.0, 1.0], [np.inf, 1.0]], r"z0\[1, 0\] = inf"),
    ],
)
def test_bad_z0(lv, z0, match):
    with pytest.raises(InvalidArgumentError, match=match):
        ov.adjoint_gradients(lv, z0, [0, 1], THETA, last_sq)


@pytest.mark.parametrize(
    "theta,match",
    [
        ([1.0, 2.0], r"theta has shape \(2,\) but the system has 4 parameters"),
        (None, "theta is None"),
        ([1.0, 2.0, np.nan, 1.0], r"theta\[2\] = nan"),
        (np.ones((4, 1)), "shape"),
    ],
)
def test_bad_theta(lv, theta, match):
    with pytest.raises(InvalidArgumentError, match=match):
        ov.adjoint_gradients(lv, [1.0, 1.0], [0, 1], theta, last_sq)


def test_non_numeric_inputs(lv):
    with pytest.raises(InvalidTypeError, match="z0 must be numeric"):
        ov.solve(lv, "1 2", [0, 1], THETA)
    with pytest.raises(InvalidTypeError, match="z0 must be an array of numbers"):
        ov.solve(lv, [[1.0, 2.0], [1.0]], [0, 1], THETA)
    with pytest.raises(InvalidTypeError, match="system must be an odeverify.ODESystem"):
        ov.solve(42, [1.0], [0, 1])


def test_unknown_method_and_mode(lv):
    with pytest.raises(InvalidArgumentError, match=r"method='Euler' is not a known solver; use one of RK45"):
        ov.solve(lv, [1.0, 1.0], [0, 1], THETA, method="Euler")
    with pytest.raises(InvalidArgumentError, match="mode='checkpoint'"):
        ov.adjoint_gradients(lv, [1.0, 1.0], [0, 1], THETA, last_sq, mode="checkpoint")
    # method names are case-insensitive
    assert ov.solve(lv, [1.0, 1.0], [0, 1], THETA, method="radau").method == "Radau"


@pytest.mark.parametrize(
    "kw,match",
    [
        (dict(rtol=0.0), "rtol=0.0 must be a positive"),
        (dict(rtol=1e-17), "below 100 machine epsilons"),
        (dict(rtol=-1e-3), "positive"),
        (dict(atol=-1.0), "atol=-1.0 must be a positive"),
        (dict(atol=[1e-8, 1e-8, 1e-8]), r"atol has shape \(3,\)"),
        (dict(max_steps=0), "max_steps=0 must be at least 1"),
    ],
)
def test_bad_tolerances(lv, kw, match):
    with pytest.raises(InvalidArgumentError, match=match):
        ov.solve(lv, [1.0, 1.0], [0, 1], THETA, **kw)


@pytest.mark.parametrize(
    "loss,match",
    [
        (lambda zs: zs[-1], r"array of shape \(2,\), not a scalar"),
        (lambda zs: "x", "not a real number"),
        (lambda zs: anp.sum(zs) * np.nan, "must be finite"),
        (lambda zs: float(np.asarray(zs).sum()), "autograd.numpy"),
        (lambda zs: anp.sum(anp.abs(zs)) ** 0.5 - anp.sqrt(anp.abs(zs[0, 0] - 1.0)), "not finite"),
        (lambda zs: 1j * anp.sum(zs), "complex"),
    ],
)
def test_bad_loss(lv, loss, match):
    with pytest.raises(LossError, match=match):
        ov.adjoint_gradients(lv, [1.0, 1.0], [0, 1], THETA, loss)


def test_loss_required_and_callable(lv):
    with pytest.raises(InvalidTypeError, match="loss is required"):
        ov.adjoint_gradients(lv, [1.0, 1.0], [0, 1], THETA)
    with pytest.raises(InvalidTypeError, match="loss must be a callable"):
        ov.adjoint_gradients(lv, [1.0, 1.0], [0, 1], THETA, 3.0)


def test_errors_subclass_builtin_types():
    assert issubclass(InvalidArgumentError, ValueError)
    assert issubclass(InvalidTypeError, TypeError)
    assert issubclass(LossError, ValueError)
    assert issubclass(IntegrationError, OdeverifyError)


@pytest.mark.parametrize("method", ["RK45", "DOP853", "Radau", "LSODA"])
def test_finite_time_blow_up(method):
    # dx/dt = x^2, x(0) = 1 blows up at t = 1
    blow = ov.ODESystem.from_strings("x", "", ["x**2"])
    # LSODA creeps towards the singularity; a smaller step budget keeps the test fast
    budget = 2000 if method == "LSODA" else 100_000
    with pytest.raises(IntegrationError) as info:
        ov.solve(blow, [1.0], [0.0, 2.0], method=method, max_steps=budget)
    err = info.value
    assert 0.9 < err.t_reached <= 1.0 + 1e-6
    assert err.t_target == 2.0
    assert "blow up in finite time" in str(err)
    assert err.solver_message
    with pytest.raises(IntegrationError, match="forward solve"):
        ov.adjoint_gradients(blow, [1.0], [0.0, 2.0], None, lambda zs: zs[-1, 0], method=method, max_steps=budget)


def test_step_budget_exhausted():
    vdp = ov.ODESystem.from_strings("x y", "mu", ["y", "mu*(1 - x**2)*y - x"])
    with pytest.raises(IntegrationError, match=r"max_steps=200.*stiff.*Radau"):
        ov.solve(vdp, [2.0, 0.0], [0.0, 100.0], [1000.0], method="RK45", max_steps=200)


def test_step_size_collapse_message():
    # x(t) = -log(1 - t): x stays small but its rate of change explodes near t = 1
    blow = ov.ODESystem.from_strings("x", "", ["exp(x)"])
    with pytest.raises(IntegrationError, match=r"failed at t = (0.99|1.0).*step size.*blow up in finite time") as info:
        ov.solve(blow, [0.0], [0.0, 5.0], rtol=1e-10, atol=1e-10)
    assert info.value.t_reached == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("seed, error, message", [
    ("x", InvalidTypeError, "seed must be None, a non-negative integer or a numpy.random.Generator, got 'x'"),
    (1.5, InvalidTypeError, "got 1.5"),
    (True, InvalidTypeError, "got True"),
    (-3, InvalidArgumentError, "seed=-3 is negative"),
])
def test_every_seed_is_validated_with_the_packages_errors(seed, error, message):
    # found from outside: taylor_test(seed="x") raised numpy's own TypeError from SeedSequence
    from odeverify import catalog, theory

    prob = catalog.exponential()
    calls = [
        lambda: ov.taylor_test(*prob.args(), seed=seed),
        lambda: catalog.exponential(seed=seed),
        lambda: theory.MLP.random([2, 2, 2], seed=seed),
        lambda: theory.gradient_norms_by_depth([1, 2], seed=seed),
    ]
    for call in calls:
        with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)")):
            call()
    with pytest.raises(error, match=message.replace("seed", "rng")):
        ov.MLPField((2, 3, 2)).init_params(seed)


def test_a_generator_is_accepted_as_seed():
    from odeverify import catalog

    prob = catalog.exponential()
    r1 = ov.taylor_test(*prob.args(), seed=np.random.default_rng(5))
    r2 = ov.taylor_test(*prob.args(), seed=5)
    np.testing.assert_array_equal(r1.rates, r2.rates)


def test_more_bad_inputs_found_from_outside(tmp_path):
    from odeverify import theory
    from odeverify.errors import DataError

    binary = tmp_path / "traj.csv"
    binary.write_bytes(b"\xff\xfe\x00 not text")
    with pytest.raises(DataError, match="traj.csv is not a UTF-8 text file"):
        ov.load_trajectories(binary)
    prob = ov.catalog.exponential()
    with pytest.raises(InvalidTypeError, match="directions must be None or a non-empty list of mappings.*got 0"):
        ov.taylor_test(*prob.args(), directions=0)
    with pytest.raises(InvalidTypeError, match=r"sizes must be a sequence of integer layer widths.*\[2\.5, 2\]"):
        theory.MLP.random([2.5, 2])  # was truncated to [2, 2] without a word
    data = ov.load_trajectories(Path(__file__).resolve().parents[1] / "data" / "spiral.csv")
    with pytest.raises(InvalidTypeError, match="seed must be None, a non-negative integer"):
        ov.fit(ov.MLPField((2, 4, 2)), data, seed="a", steps=1)


def test_the_summary_counts_other_failures_in_good_english():
    prob = ov.catalog.exponential()
    exact = prob.exact_gradients()
    one_more = ov.check_gradients(*prob.args(), candidate={"theta": -exact["theta"], "z0": 2 * exact["z0"]},
                                  references=[prob.reference()])
    assert "(1 other entry fails too)" in one_more.summary
