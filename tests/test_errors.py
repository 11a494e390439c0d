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


# ---------------------------------------------------------------- found from outside (third session)
@pytest.mark.parametrize("method", ["RK45", "RK23", "DOP853", "Radau", "BDF", "LSODA", "dopri5", "tsit5"])
@pytest.mark.parametrize(
    "rhs,theta,where",
    [(["log(x - a)"], [2.0], "at the start"), (["-a*sqrt(x)"], [3.0], "later: sqrt of a negative state")],
)
def test_a_vector_field_that_returns_nan_is_an_integration_error(method, rhs, theta, where):
    # the explicit methods used to loop for ever on a NaN step size, Radau/BDF raised SciPy's ValueError
    sys_ = ov.ODESystem.from_strings("x", "a", rhs)
    with pytest.raises(IntegrationError) as info:
        ov.solve(sys_, [1.0], [0.0, 1.0], theta, method=method)
    message = str(info.value)
    assert "NaN or inf" in message and "blow up" not in message, message
    assert "undefined" in message, message


def test_nan_from_the_vector_field_in_the_adjoint_and_the_check():
    sys_ = ov.ODESystem.from_strings("x", "a", ["log(x - a)"])
    for call in (ov.adjoint_gradients, ov.check_gradients, ov.taylor_test):
        with pytest.raises(IntegrationError, match="NaN or inf"):
            call(sys_, [1.0], [0.0, 1.0], [2.0], last_sq)


def test_reused_references_must_belong_to_the_problem():
    vdp = ov.ODESystem.from_strings("x y", "mu", ["y", "mu*(1 - x**2)*y - x"])
    ts = [0.0, 0.5, 1.2]
    refs = ov.compute_references(vdp, [1.0, 0.0], ts, [1.0], last_sq, references=["forward", "fd"])
    good = ov.adjoint_gradients(vdp, [1.0, 0.0], ts, [1.0], last_sq, rtol=1e-11, atol=1e-11)
    assert ov.check_gradients(vdp, [1.0, 0.0], ts, [1.0], last_sq, candidate=good, references=refs).passed
    # the same shapes at other inputs: used to PASS a candidate that is wrong there
    with pytest.raises(InvalidArgumentError, match=r"computed at z0 = \[1., 0.\]"):
        ov.check_gradients(vdp, [2.0, 0.5], ts, [3.0], last_sq, candidate=good, references=refs)
    # other times: used to raise a bare IndexError
    with pytest.raises(InvalidArgumentError, match="computed for another problem"):
        ov.check_gradients(vdp, [1.0, 0.0], ts + [2.0], [1.0], last_sq, references=refs)
    # another system or loss at the same inputs
    other = ov.ODESystem.from_strings("x y", "mu", ["y", "mu*(1 - x**2)*y - 2*x"])
    with pytest.raises(InvalidArgumentError, match="another system or loss"):
        ov.check_gradients(other, [1.0, 0.0], ts, [1.0], last_sq, references=refs)
    with pytest.raises(InvalidArgumentError, match="another system or loss"):
        ov.check_gradients(vdp, [1.0, 0.0], ts, [1.0], lambda zs: anp.sum(zs**3), references=refs)


def test_reusing_a_coarse_reference_is_not_refused():
    # a coarse source's loss is only as accurate as its steps: the reuse check allows for that
    from odeverify.references import AutogradRK

    args = ov.catalog.exponential().args()
    refs = ov.compute_references(*args, references=["forward", AutogradRK("euler", target=3e-2)])
    euler = [e for e in refs if "euler" in e.name][0]
    assert abs(euler.loss - refs[0].loss) > 1e-3 * abs(refs[0].loss)  # the coarse loss really is off
    assert ov.check_gradients(*args, references=refs, rtol=0.1).passed


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        (dict(atol=float("inf")), InvalidArgumentError, "infinite atol passes any gradient"),
        (dict(atol="x"), InvalidTypeError, "atol must be a real number"),
        (dict(atol=[1e-3, 1e-3]), InvalidTypeError, "atol must be a real number"),
        (dict(rtol="x"), InvalidTypeError, "rtol must be a real number"),
        (dict(references=5), InvalidTypeError, "references must be None or a non-empty list"),
        (dict(references=[]), InvalidTypeError, "references must be None or a non-empty list"),
        (dict(candidate={"theta": ["a"]}), InvalidTypeError, r"candidate gradient 'theta' must be numeric"),
        (dict(candidate={"theta": [[1.0], [1.0, 2.0]]}), InvalidTypeError, "candidate gradient 'theta'"),
        (dict(candidate=lambda z0: {}), InvalidTypeError, r"cannot be called as candidate\(z0, ts, theta\)"),
    ],
)
def test_check_gradients_arguments(kwargs, error, match):
    prob = ov.catalog.exponential()
    with pytest.raises(error, match=match):
        ov.check_gradients(*prob.args(), **{"references": ["forward", "fd"], **kwargs})


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        (dict(rtol=float("nan")), InvalidArgumentError, "rtol=nan"),  # used to hang
        (dict(rtol=-1), InvalidArgumentError, "rtol=-1"),
        (dict(rtol=0), InvalidArgumentError, "rtol=0"),
        (dict(rtol=0.5), InvalidArgumentError, "too loose for a Taylor test"),
        (dict(rtol="x"), InvalidTypeError, "rtol must be a positive number"),
        (dict(steps="abc"), InvalidTypeError, "steps must be numeric"),
        (dict(steps=[1e-1, np.nan, 1e-3]), InvalidArgumentError, r"steps\[1\] = nan"),
        (dict(directions=[{"theta": [np.nan]}]), InvalidArgumentError, r"directions\[0\]\['theta'\]\[0\] = nan"),
        (dict(directions=[{"theta": ["a"]}]), InvalidTypeError, r"directions\[0\]\['theta'\]"),
    ],
)
def test_taylor_test_arguments(kwargs, error, match):
    prob = ov.catalog.exponential()
    with pytest.raises(error, match=match):
        ov.taylor_test(*prob.args(), **kwargs)


def test_a_vector_loss_is_a_loss_error_everywhere():
    prob = ov.catalog.exponential()
    system, z0, ts, theta, _ = prob.args()

    def vector(zs):
        return zs**2

    for call in (
        lambda: ov.compute_references(system, z0, ts, theta, vector),
        lambda: ov.taylor_test(system, z0, ts, theta, vector, candidate={"z0": [1.0]}),
        lambda: ov.check_gradients(system, z0, ts, theta, vector),
    ):
        with pytest.raises(LossError, match=r"not a scalar.*np.sum"):
            call()


def test_load_trajectories_needs_a_path():
    with pytest.raises(InvalidTypeError, match="path must be a file name"):
        ov.load_trajectories(3)


def test_a_complex_vector_field_is_refused_not_truncated():
    # found from outside: the imaginary part was dropped (a ComplexWarning) and dL/dθ came out 0
    with pytest.raises(InvalidTypeError, match="returned complex values"):
        ov.adjoint_gradients(lambda z, t, p: -p[0] * z * 1j, [0.0, 1.0], [0.0, 0.5, 1.0], [1.0], last_sq)


def test_nan_vector_field_during_fit_is_the_documented_training_error():
    data = ov.TrajectoryData.from_arrays([0, 0, 0], [0.0, 0.5, 1.0], [[1.0], [0.61], [0.37]])
    model = ov.ODESystem.from_strings(states="x", params="a", rhs=["-sqrt(a)*x"])
    with pytest.raises(IntegrationError, match="training failed at step 1.*NaN or inf"):
        ov.fit(model, data, theta0=[2.0], optimizer="gd", learning_rate=200.0, steps=3)


@pytest.mark.parametrize(
    "step,match",
    [(5.0, "falls on layer 0"), (1e-300, "Euler layers over the data's time span")],
)
def test_fit_resnet_step_must_make_sense_for_the_data(step, match):
    data = ov.TrajectoryData.from_arrays([0, 0, 0], [0.0, 0.5, 1.0], [[1.0], [0.61], [0.37]])
    with pytest.raises(InvalidArgumentError, match=match):
        ov.fit(ov.MLPField((1, 4, 1)), data, model="resnet", resnet_step=step, steps=2)


def test_an_implicit_layer_written_with_plain_numpy_is_named():
    from odeverify.implicit import ImplicitLayer

    # np.array of autograd boxes gives zero Jacobians: it was reported as a singular dg/dy
    with pytest.raises(InvalidTypeError, match="np.array or np.asarray broke autograd's trace"):
        ImplicitLayer(lambda x, y: np.array([y[0] ** 2 - x[0]])).solve([2.0], [1.0])
    sol = ImplicitLayer(lambda x, y: y**2 - x).solve([2.0], [1.0])
    assert sol.dy_dx[0, 0] == pytest.approx(1 / (2 * np.sqrt(2.0)), rel=1e-10)  # y = sqrt(x)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(tol=-1.0), "tol=-1.0 must be a positive"),
        (dict(tol=np.nan), "tol=nan"),
        (dict(method="newton"), "not a method of scipy.optimize.root"),
        (dict(singular_rtol=-1.0), "singular_rtol=-1.0"),
    ],
)
def test_implicit_solve_arguments(kwargs, match):
    from odeverify.implicit import ImplicitLayer

    with pytest.raises(InvalidArgumentError, match=match):
        ImplicitLayer(lambda x, y: y**2 - x).solve([2.0], [1.0], **kwargs)


def test_theory_functions_take_plain_functions_and_refuse_exact_euler():
    # found from outside: a plain f was refused with "z0 was not given" although z0 was given
    rep = ov.theory.convergence_order(lambda z, t, p: -p[0] * z, [1.0], [0.5], (0.0, 1.0), "rk4")
    assert rep.rounded == 4
    conv = ov.theory.resnet_convergence(lambda z, t, p: -p[0] * z, [1.0], [0.5], (0.0, 1.0), lambda zs: zs[-1, 0] ** 2)
    assert conv.output_order == pytest.approx(1.0, abs=0.1)
    # Euler is exact for a constant f: order 0 was reported as if the theory failed
    const = ov.ODESystem.from_strings(states="x", params="a", rhs=["a"])
    with pytest.raises(InvalidArgumentError, match="no order to measure"):
        ov.theory.resnet_convergence(const, [1.0], [2.0], (0.0, 1.0), lambda zs: zs[-1, 0] ** 2)


@pytest.mark.parametrize(
    "h,errors,match",
    [
        ([0.1, 0.05], [0.0, 1e-3], "an error of exactly 0 carries no order"),
        ([-0.1, 0.05], [1.0, 2.0], "every entry of h must be positive"),
        ([0.1, 0.05], [1.0], "one length"),
        ([0.1], [1.0], "two distinct step sizes"),
    ],
)
def test_fit_order_arguments(h, errors, match):
    with pytest.raises(InvalidArgumentError, match=match):
        ov.theory.fit_order(h, errors)


def test_trajectory_data_arguments(tmp_path):
    D = ov.TrajectoryData
    for call, match in [
        (lambda: D.from_arrays([0, 0], [0.0, 1.0], np.zeros((2, 0))), "no state columns"),
        (lambda: D.from_arrays([0, 0], [0.0, 1.0], [[1, 1], [2, 2]], state_names=["x", "x"]), "distinct"),
        (lambda: D.from_arrays([np.nan, np.nan], [0.0, 1.0], [[1.0], [2.0]]), "ids hold NaN"),
        (lambda: D.from_arrays([[0], [0]], [0.0, 1.0], [[1.0], [2.0]]), "1-D sequence"),
        (lambda: ov.load_trajectories(ROOT_DATA, state_columns=["x", "t"]), "'t', the time column"),
        (lambda: ov.load_trajectories(ROOT_DATA, state_columns=["x", "x"]), "names a column twice"),
        (lambda: ov.load_trajectories(ROOT_DATA, id_column="t"), "both 't'"),
        (lambda: ov.load_trajectories(ROOT_DATA).trajectory(100), "b=100 is not a trajectory index"),
    ]:
        with pytest.raises(InvalidArgumentError, match=match):
            call()
    bom = tmp_path / "bom.csv"
    bom.write_text("traj,t,x\n0,0,1\n0,1,2\n", encoding="utf-8-sig")  # as Excel saves CSV
    assert ov.load_trajectories(bom).n_trajectories == 1
    typo = tmp_path / "typo.csv"
    typo.write_text("traj,t,x\n0,0,1\n0,1_0,2\n")
    with pytest.raises(ov.errors.DataError, match="'1_0' is not a number"):
        ov.load_trajectories(typo)


ROOT_DATA = Path(__file__).resolve().parents[1] / "data" / "spiral.csv"


def test_strategy_grids_resolve_their_gaps():
    pytest.importorskip("hypothesis")
    from odeverify.strategies import StrategyArgumentError, time_grids

    with pytest.raises(StrategyArgumentError, match="cannot resolve gaps"):
        time_grids(start=1e17)


# ---------------------------------------------------------------- second outside round (third session)
def test_a_constant_loss_gives_a_report_and_warnings_not_a_crash():
    sys_ = ov.ODESystem.from_strings(states="x", params="a", rhs=["-a*x"])
    with pytest.warns(ov.errors.TrivialTestWarning):
        report = ov.check_gradients(sys_, [1.0], [0.0, 1.0], [1.0], lambda zs: 0.0 * zs[-1, 0],
                                    references=["forward", "fd"])
    assert "exactly zero" in report.summary and "shows nothing" in report.summary
    assert any("identically zero" in w for w in report.warnings)


@pytest.mark.filterwarnings("ignore::odeverify.errors.TrivialTestWarning")  # a zero quantity, on purpose
def test_a_quantity_that_is_identically_zero_does_not_stall_the_autograd_reference():
    # a conserved loss: dL/dt = 0; the Richardson refinement aimed at target * 0 and took minutes
    from odeverify.references import AutogradRK

    osc = ov.ODESystem.from_strings(states="x v", params="w", rhs=["v", "-w**2*x"])
    args = (osc, [1.0, 0.5], [0.0, 1.0], [1.0], lambda zs: zs[-1, 0] ** 2 + zs[-1, 1] ** 2)
    est = ov.references.compute_reference(AutogradRK(), *args)
    assert np.all(np.abs(est.values["t"]) < 1e-8)  # the conserved energy
    assert not est.notes  # converged, not stopped by the cap
    assert ov.check_gradients(*args, references=["forward", est]).passed


@pytest.mark.filterwarnings("ignore::odeverify.errors.TrivialTestWarning")  # a zero quantity, on purpose
def test_reuse_is_refused_for_another_loss_or_parametrisation_with_the_same_inputs():
    sys_ = ov.ODESystem.from_strings(states="x y", params="a", rhs=["-a*x", "-y"])
    c = float(np.exp(-1.0))

    def loss(zs):
        return (zs[-1, 0] - c) ** 2 + zs[-1, 1] ** 2

    refs = ov.compute_references(sys_, [1.0, 1.0], [0.0, 1.0], [1.0], loss, references=["adjoint", "forward"])
    good = ov.adjoint_gradients(sys_, [1.0, 1.0], [0.0, 1.0], [1.0], loss, rtol=1e-12, atol=1e-12)
    # dL/da = 0 at this optimum: the old loss-value test let a loss 3x larger through (a false PASS)
    with pytest.raises(InvalidArgumentError, match="the loss differs"):
        ov.check_gradients(sys_, [1.0, 1.0], [0.0, 1.0], [1.0], lambda zs: 3 * loss(zs), candidate=good,
                           references=refs)
    # same loss value, another parametrisation (a**2 at a = 1)
    squared = ov.ODESystem.from_strings(states="x y", params="a", rhs=["-a**2*x", "-y"])
    with pytest.raises(InvalidArgumentError, match="the vector field differs"):
        ov.check_gradients(squared, [1.0, 1.0], [0.0, 1.0], [1.0], loss, candidate=good, references=refs)
    # the same problem rebuilt, with a fresh but equal loss and inputs as lists of ints: accepted
    again = ov.ODESystem.from_strings(states="x y", params="a", rhs=["-a*x", "-y"])
    assert ov.check_gradients(again, [1, 1], [0, 1], [1], lambda zs: (zs[-1, 0] - c) ** 2 + zs[-1, 1] ** 2,
                              candidate=good, references=refs).passed


def test_a_source_given_twice_counts_once():
    sys_ = ov.ODESystem.from_strings(states="x", params="a", rhs=["-a*x"])
    args = (sys_, [1.0], [0.0, 1.0], [1.0], last_sq)
    first = ov.compute_references(*args, references=["adjoint", "forward"])
    second = ov.compute_references(*args, references=["forward", "fd"])
    assert ov.check_gradients(*args, references=first + second).passed  # used to raise numpy's ValueError
    report = ov.check_gradients(*args, references=["forward", "forward", "fd"])
    assert report.passed and any("given twice" in w for w in report.warnings)
    forward = [e for e in first if e.name == "forward sensitivities"]
    # one source twice is one source: no verdict (it used to PASS as "2/2")
    assert not ov.check_gradients(*args, references=forward + forward).passed


def test_bdf_singular_newton_matrix_is_an_integration_error():
    sys_ = ov.ODESystem.from_strings(states="x", params="a", rhs=["-a + 0.001*sqrt(x)"])
    with pytest.raises(IntegrationError, match="Newton iteration matrix is singular"):
        ov.solve(sys_, [[5.0], [1.0]], [0.0, 3.0], [1.0], method="BDF")
    grows = ov.ODESystem.from_strings(states="x", params="a", rhs=["sqrt(a)*x"])
    with pytest.raises(IntegrationError):
        ov.adjoint_gradients(grows, [1.0], [0.0, 1.0], [0.0], last_sq, method="BDF")


# ---------------------------------------------------------------- fuzz findings (issue 11)
import hypothesis.strategies as _st
import sympy as sp
from hypothesis import given as _given
from hypothesis import settings as _settings

import odeverify as _ov
from odeverify.errors import InvalidArgumentError as _IAE
from odeverify.errors import InvalidTypeError as _ITE
from odeverify.errors import LossError as _LossError
from odeverify.errors import OdeverifyError as _OdeverifyError
from odeverify.errors import ParseError as _ParseError


@pytest.mark.parametrize("rhs, shown", [
    ("x*1e308*10", "1.0000e+309"),
    ("x*10**300*10**300", "(601 digits)"),
    ("x*" + "9" * 400, "not a finite double"),
    ("x**(exp(exp(exp(exp(10)))))", "exp(exp(10))"),
    ("exp(1000)*x", "exp(1000)"),
    ("exp(700)*exp(700)*x", "exp(1400)"),
    ("x/1e-320", "beyond the double range"),
    ("-1e308 - 1e308 + x", "beyond the double range"),
])
def test_a_constant_beyond_the_double_range_is_refused_at_build_time(rhs, shown):
    with pytest.raises(_ParseError, match="double range") as info:
        _ov.ODESystem.from_strings("x", "", [rhs])
    assert shown in str(info.value) and "rhs[0]" in str(info.value)


def test_a_sympy_system_with_a_huge_constant_is_refused_and_a_derivative_that_overflows_too():
    x = sp.Symbol("x")
    for e in (x * sp.Float("1e308") * 10, x * sp.Integer(10) ** 400, x + sp.exp(1000)):
        with pytest.raises(_IAE, match=r"rhs\[0\] holds the constant .* beyond the double range"):
            _ov.ODESystem([x], [], [e])
    # 1e306*x**1000 is a fine double expression; its derivative's coefficient 1e309 is not
    s = _ov.ODESystem.from_strings("x", "", ["1e306*x**1000"])
    with pytest.raises(_IAE, match="generated code would hold the constant"):
        s.numeric.jac_z(np.full((1, 1), 0.5), 0.0, np.zeros(0))


def test_small_constants_still_work():
    s = _ov.ODESystem.from_strings("x", "", ["x*1e-400 + 1e300*x - 1e300*x + sin(exp(700))*0"])
    np.testing.assert_allclose(s.numeric.f(np.ones((1, 1)), 0.0, np.zeros(0)), [[0.0]])


_BIG = 10**400
_DECAY = None


def _decay():
    global _DECAY
    if _DECAY is None:
        _DECAY = _ov.ODESystem.from_strings("x", "a", ["-a*x"])
    return _DECAY


def _sq(zs):
    return (zs[-1] ** 2).sum()


@pytest.mark.parametrize("where", ["z0", "ts", "theta", "atol", "rtol", "loss", "candidate"])
def test_python_ints_beyond_the_double_range_are_the_packages_errors(where):
    args = dict(z0=[1.0], ts=[0.0, 1.0], theta=[1.0])
    kw = {}
    loss = _sq
    if where in ("z0", "theta"):
        args[where] = [_BIG]
    elif where == "ts":
        args["ts"] = [0, _BIG]
    elif where in ("atol", "rtol"):
        kw[where] = _BIG
    elif where == "loss":
        loss = lambda zs: _BIG  # noqa: E731
    if where == "candidate":
        call = lambda: _ov.check_gradients(_decay(), *args.values(), loss,  # noqa: E731
                                           candidate={"z0": [_BIG], "theta": [1.0], "t": [1.0, 1.0]})
    else:
        call = lambda: _ov.adjoint_gradients(_decay(), *args.values(), loss, **kw)  # noqa: E731
    with pytest.raises((_IAE, _LossError)) as info:
        call()
    assert "double range" in str(info.value)


def test_bytes_are_refused_as_expressions_and_names():
    with pytest.raises(_ITE, match="decode it first"):
        _ov.ODESystem.from_strings("x", "", b"x")
    with pytest.raises(_ITE):
        _ov.ODESystem.from_strings(b"x", "", ["x"])
    with pytest.raises(_ITE):
        _ov.ODESystem.from_strings("x", "", [b"x"])


def test_a_solution_without_dense_output_raises_the_packages_error():
    sol = _ov.solve(_decay(), [1.0], [0.0, 1.0], [1.0])
    with pytest.raises(_IAE, match="dense_output=True"):
        sol(0.5)
    dense = _ov.solve(_decay(), [1.0], [0.0, 1.0], [1.0], dense_output=True, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dense(0.5), [np.exp(-0.5)], rtol=1e-8)
    with pytest.raises(_IAE, match="double range"):
        dense([_BIG])


_ATOMS = ["x", "1e308", "1e300", "10", "10**300", "exp(700)", "exp(10)", "1e-320", "2", "9" * 320, "0.5", "e", "pi"]


@_st.composite
def _expressions(draw, depth=0):
    if depth > 3 or draw(_st.booleans()):
        return draw(_st.sampled_from(_ATOMS))
    kind = draw(_st.sampled_from(["+", "-", "*", "/", "**", "exp", "sin", "log", "sqrt"]))
    a = draw(_expressions(depth + 1))
    if kind in ("exp", "sin", "log", "sqrt"):
        return f"{kind}({a})"
    return f"({a}){kind}({draw(_expressions(depth + 1))})"


@_settings(max_examples=200, deadline=None, database=None)
@_given(_expressions())
def test_fuzz_constants_either_build_to_finite_code_or_raise_the_packages_error(text):
    # the class, not only the examples: large constants, folded products, nested exp, huge integers
    try:
        s = _ov.ODESystem.from_strings("x", "", [f"x + {text}"])
        with np.errstate(all="ignore"):
            s.numeric.f(np.full((1, 1), 0.5), 0.0, np.zeros(0))
            s.numeric.jac_z(np.full((1, 1), 0.5), 0.0, np.zeros(0))
    except _OdeverifyError:
        pass


@_settings(max_examples=300, deadline=None, database=None)
@_given(_st.integers(min_value=2**1024, max_value=10**500).flatmap(lambda v: _st.sampled_from([v, -v])),
        _st.sampled_from(["z0", "ts", "theta", "atol", "rtol"]))
def test_fuzz_huge_python_ints_raise_only_the_packages_errors(value, where):
    # every int beyond the double range, in every numeric argument (the solve never starts)
    args = {"z0": [1.0], "ts": [0.0, 1.0], "theta": [1.0]}
    kw = {}
    if where in ("atol", "rtol"):
        kw[where] = value
    elif where == "ts":
        args["ts"] = [0.0, value]
    else:
        args[where] = [value]
    with pytest.raises(_IAE, match="double range"):
        _ov.solve(_decay(), args["z0"], args["ts"], args["theta"], **kw)


# ---------------------------------------------------------------- found from outside (fourth session)
def test_a_huge_integer_in_a_spec_file_is_a_spec_error(tmp_path):
    from odeverify.cli import main

    digits = "1" + "0" * 400
    spec = tmp_path / "big.toml"
    spec.write_text(f'states=["x"]\nparams=["a"]\nrhs=["-a*x"]\nz0=[{digits}]\ntheta=[1.0]\nts=[0.0, 1.0]\n'
                    '[loss]\nkind="expression"\nexpression="x"\n')
    with pytest.raises(ov.errors.SpecError, match=r"z0: holds the integer .*401 digits.*beyond the double range"):
        ov.spec.load_spec(spec)
    assert main(["gradients", str(spec)]) == 2


@pytest.mark.parametrize("arg", ["rtol", "atol"])
def test_check_tolerances_beyond_the_double_range_are_refused(arg):
    s = ov.ODESystem.from_strings("x", "a", ["-a*x"])
    with pytest.raises(InvalidArgumentError, match=rf"{arg}=.*digits.*beyond the double range"):
        ov.check_gradients(s, [1.0], [0.0, 1.0], [1.0], last_sq, references=["forward"], **{arg: 10**400})


@pytest.mark.parametrize("method", ["DOP853", "tsit5", "dopri5"])
@pytest.mark.parametrize("rate", [1e200, 1e300])
def test_a_rate_so_large_that_no_first_step_is_representable_is_an_integration_error(method, rate):
    # Hairer's starting step 0.01 |z| / |dz/dt| underflows to 0: that used to divide by zero
    s = ov.ODESystem.from_strings("x", "a b", ["-a*x + b"])
    with pytest.raises(IntegrationError, match="step size became too small"):
        ov.solve(s, [1.0], [0.0, 1.0], [rate, 1.0], method=method)


def test_booleans_are_not_numbers_for_states_and_parameters():
    s = ov.ODESystem.from_strings("x y", "a", ["-a*x", "-a*y"])
    with pytest.raises(ov.errors.InvalidTypeError, match="z0 must hold numbers, got booleans"):
        ov.solve(s, [True, False], [0.0, 1.0], [1.0])
    with pytest.raises(ov.errors.InvalidTypeError, match="booleans"):
        ov.solve(s, [1.0, 0.5], [0.0, 1.0], [True])
