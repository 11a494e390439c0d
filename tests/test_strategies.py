"""odeverify.strategies: what the strategies draw, how they shrink, and how they refuse bad arguments.

Independent references: solutions are integrated with scipy.integrate.solve_ivp directly (not
odeverify's solvers), spectra come from numpy.linalg.eigvals of A read off f(e_j), function nesting
from walking the SymPy tree, loss gradients from autograd.
"""

import os
import subprocess
import sys
from pathlib import Path

import autograd
import numpy as np
import pytest
import scipy.integrate
import sympy as sp
from hypothesis import find, given, settings
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument, NoSuchExample

import odeverify as ov
from odeverify import strategies as S
from odeverify._functions import sigmoid
from odeverify.errors import InvalidArgumentError, InvalidTypeError

ROOT = Path(__file__).resolve().parents[1]


def solve(system, z0, ts, theta):
    """States at ts, shape (T, n), by solve_ivp on the system's f (raises when the solve fails)."""
    z0 = np.asarray(z0, float).reshape(-1, system.n_states)
    B, n = z0.shape

    def fun(t, y):
        return system.eval_f(y.reshape(B, n), t, theta).ravel()

    sol = scipy.integrate.solve_ivp(fun, (ts[0], ts[-1]), z0.ravel(), t_eval=ts, rtol=1e-8, atol=1e-10)
    assert sol.status == 0, sol.message
    return sol.y.T.reshape(len(ts), B, n)


def matrix(system, theta):
    """A of a linear system, read off f(e_j; theta)."""
    n = system.n_states
    return np.stack([system.eval_f(np.eye(n)[j : j + 1], 0.0, theta)[0] for j in range(n)], axis=1)


def function_depth(expr):
    """Largest number of nested function calls in a SymPy expression."""
    if not expr.args:
        return 0
    inner = max(function_depth(a) for a in expr.args)
    return inner + (1 if isinstance(expr, (sp.sin, sp.cos, sp.tanh, sp.exp, sigmoid)) else 0)


# ---------------------------------------------------------------------------- bad arguments
BAD_ARGUMENTS = [
    (S.time_grids, (), dict(min_size=1), InvalidArgumentError, "Invalid argument min_size=1 < 2"),
    (S.time_grids, (), dict(min_size="2"), InvalidTypeError, "Expected int but got min_size='2' (type=str)"),
    (S.time_grids, (), dict(max_size=True), InvalidTypeError, "Expected int but got max_size=True (type=bool)"),
    (S.time_grids, (), dict(min_size=4, max_size=3), InvalidArgumentError, "Cannot have max_size=3 < min_size=4"),
    (S.time_grids, (), dict(span=0.0), InvalidArgumentError, "Invalid argument span=0.0; it must be positive"),
    (S.time_grids, (), dict(span=(2.0, 1.0)), InvalidArgumentError, "Cannot have span[1]=1.0 < span[0]=2.0"),
    (S.time_grids, (), dict(span="long"), InvalidTypeError, "Expected a float or a (min, max) pair of floats but got span='long'"),
    (S.time_grids, (), dict(start=float("nan")), InvalidArgumentError, "Invalid argument start=nan; it must be finite"),
    (S.time_grids, (), dict(min_gap=0.0), InvalidArgumentError, "Invalid argument min_gap=0.0; it must be positive"),
    (S.time_grids, (), dict(max_size=5, span=1.0, min_gap=0.5), InvalidArgumentError,
     "Cannot fit max_size - 1 = 4 gaps of min_gap=0.5 in span=1.0"),
    (S.time_grids, (), dict(irregular="yes"), InvalidTypeError, "Expected bool but got irregular='yes' (type=str)"),
    (S.time_grids, (), dict(decreasing=1), InvalidTypeError, "Expected bool but got decreasing=1 (type=int)"),
    (S.ode_systems, (), dict(n_states=0), InvalidArgumentError, "Invalid argument n_states=0 < 1"),
    (S.ode_systems, (), dict(n_states=(3, 1)), InvalidArgumentError, "Cannot have n_states[1]=1 < n_states[0]=3"),
    (S.ode_systems, (), dict(n_states=2.5), InvalidTypeError,
     "Expected an int or a (min, max) pair of ints but got n_states=2.5 (type=float)"),
    (S.ode_systems, (), dict(n_states=(1, 2, 3)), InvalidTypeError, "Expected an int or a (min, max) pair of ints"),
    (S.ode_systems, (), dict(n_params=100), InvalidArgumentError, "Invalid argument n_params=100 > 24"),
    (S.ode_systems, (), dict(functions=("sin", "sinh")), InvalidArgumentError,
     "functions=('sin', 'sinh') contains 'sinh', which is not one of"),
    (S.ode_systems, (), dict(functions="sin"), InvalidTypeError, "Expected a sequence of function names but got functions='sin'"),
    (S.ode_systems, (), dict(functions=()), InvalidArgumentError, "functions=() is empty"),
    (S.ode_systems, (), dict(functions=("sin", "sin")), InvalidArgumentError, "names a function twice"),
    (S.ode_systems, (), dict(max_depth=0), InvalidArgumentError, "Invalid argument max_depth=0 < 1"),
    (S.ode_systems, (), dict(time_dependent=None), InvalidTypeError, "Expected bool but got time_dependent=None"),
    (S.linear_systems, (), dict(real_parts=(-1.0, -1.0)), InvalidArgumentError, "the range must be an interval"),
    (S.linear_systems, (), dict(real_parts=(0.0, -1.0)), InvalidArgumentError, "Cannot have real_parts[1]=-1.0 < real_parts[0]=0.0"),
    (S.linear_systems, (), dict(real_parts=-1.0), InvalidTypeError, "Expected a (min, max) pair of floats but got real_parts=-1.0"),
    (S.linear_systems, (), dict(max_imag=-1.0), InvalidArgumentError, "Invalid argument max_imag=-1.0 < 0"),
    (S.losses, (1, 2), {}, InvalidArgumentError, "Invalid argument n_times=1 < 2"),
    (S.losses, (3, "2"), {}, InvalidTypeError, "Expected int but got n_states='2' (type=str)"),
    (S.losses, (3, 2), dict(kinds=("cube",)), InvalidArgumentError, "kinds=('cube',) contains 'cube', which is not one of"),
    (S.losses, (3, 2), dict(kinds=()), InvalidTypeError, "Expected a non-empty sequence of loss kinds"),
    (S.losses, (3, 2), dict(names=("x",)), InvalidArgumentError, "names=('x',) has 1 entries but n_states=2"),
    (S.losses, (3, 2), dict(t0_alone="no"), InvalidTypeError, "Expected bool but got t0_alone='no'"),
    (S.problems, (), dict(batch_size=0), InvalidArgumentError, "Invalid argument batch_size=0 < 1"),
    (S.problems, (), dict(n_times=(2, 99)), InvalidArgumentError, "Invalid argument n_times[1]=99 > 50"),
    (S.problems, (), dict(systems="x"), InvalidTypeError, "Expected a hypothesis strategy but got systems='x' (type=str)"),
    (S.problems, (), dict(grids=[0.0, 1.0]), InvalidTypeError, "Expected a hypothesis strategy but got grids=[0.0, 1.0]"),
    (S.problems, (), dict(decreasing="up"), InvalidTypeError, "Expected bool but got decreasing='up'"),
    (S.from_system, ("x' = -x",), {}, InvalidTypeError, "Expected an ODESystem or another odeverify vector field"),
    (S.from_system, (ov.catalog.exponential().system,), dict(theta="1.0"), InvalidTypeError,
     "Expected a hypothesis strategy or an array of 1 numbers but got theta='1.0'"),
    (S.from_system, (ov.catalog.exponential().system,), dict(z0=[1.0, 2.0]), InvalidArgumentError,
     "Invalid argument z0=[1.0, 2.0]: expected 1 finite numbers"),
]


@pytest.mark.parametrize(
    "strategy, args, kwargs, error, message",
    BAD_ARGUMENTS,
    ids=[f"{s.__name__}-{'-'.join(map(str, kw)) or 'args'}" for s, _, kw, _, _ in BAD_ARGUMENTS],
)
def test_bad_arguments_are_refused_when_the_strategy_is_called(strategy, args, kwargs, error, message):
    # eagerly: calling the strategy raises, nothing needs to be drawn
    with pytest.raises(error) as info:
        strategy(*args, **kwargs)
    assert message in str(info.value)
    # both odeverify's error (a ValueError or TypeError) and hypothesis's InvalidArgument
    assert isinstance(info.value, InvalidArgument)
    assert isinstance(info.value, (ValueError, TypeError))


def test_import_without_hypothesis_gives_a_clear_error():
    code = "import sys; sys.modules['hypothesis'] = None\nimport odeverify.strategies"
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT)
    assert run.returncode == 1
    assert "ImportError: odeverify.strategies needs hypothesis" in run.stderr
    assert "pip install 'odeverify[hypothesis]'" in run.stderr


# ---------------------------------------------------------------------------- time grids
@given(st.data())
def test_time_grids_are_monotone_with_a_minimum_gap(data):
    lo = data.draw(st.integers(2, 6), label="min_size")
    hi = data.draw(st.integers(lo, 8), label="max_size")
    decreasing = data.draw(st.sampled_from([False, True, None]), label="decreasing")
    ts = data.draw(S.time_grids(min_size=lo, max_size=hi, span=(0.5, 3.0), start=(-1.0, 1.0), min_gap=0.05,
                                decreasing=decreasing))
    assert lo <= len(ts) <= hi
    d = np.diff(ts)
    assert np.all(d > 0) or np.all(d < 0)
    if decreasing is not None:
        assert np.all(d < 0) == decreasing
    assert np.min(np.abs(d)) >= 0.05 - 1e-12
    assert 0.5 - 1e-12 <= abs(ts[-1] - ts[0]) <= 3.0 + 1e-12
    assert -1.0 <= ts[0] <= 1.0


def test_time_grids_shrink_to_two_uniform_times_from_zero():
    assert find(S.time_grids(), lambda ts: True).tolist() == [0.0, 0.5]
    ts = find(S.time_grids(max_size=6), lambda ts: len(ts) >= 4)
    np.testing.assert_allclose(np.diff(ts), np.diff(ts)[0])  # uniform
    assert ts[0] == 0.0
    assert find(S.time_grids(decreasing=True), lambda ts: True).tolist() == [0.0, -0.5]


@given(S.time_grids(irregular=False, min_size=3, max_size=6))
def test_regular_grids_are_uniform(ts):
    np.testing.assert_allclose(np.diff(ts), np.diff(ts)[0], atol=1e-11)  # times are rounded to 12 decimals


# ---------------------------------------------------------------------------- systems
@given(st.data())
def test_ode_systems_respect_their_options(data):
    functions = tuple(data.draw(st.lists(st.sampled_from(S.FUNCTIONS), min_size=1, max_size=6, unique=True)))
    max_depth = data.draw(st.integers(1, 3))
    time_dependent = data.draw(st.booleans())
    system = data.draw(S.ode_systems(n_states=(1, 3), n_params=(0, 4), functions=functions, max_depth=max_depth,
                                     time_dependent=time_dependent))
    assert 1 <= system.n_states <= 3 and 0 <= system.n_params <= 4
    assert system.is_autonomous or time_dependent
    used = {name for name, cls in [("sin", sp.sin), ("cos", sp.cos), ("tanh", sp.tanh), ("exp", sp.exp),
                                   ("sigmoid", sigmoid)] if any(e.has(cls) for e in system.f)}
    assert used <= set(functions)
    assert max(function_depth(e) for e in system.f) <= max_depth
    # every parameter is used, and no expression vanished
    for k, th in enumerate(system.params):
        assert any(e.has(th) for e in system.f), (k, system)
    assert system.nonsmooth_functions() == []


@settings(max_examples=max(20, settings.default.max_examples))
@given(S.problems(n_states=(1, 4), n_times=(2, 6), decreasing=None, batch_size=(1, 3)))
def test_generated_solutions_stay_bounded(problem):
    # solve_ivp directly (not odeverify's solvers); the problem's own direction of time
    system, z0, ts, theta, _ = problem
    zs = solve(system, z0, ts, theta)
    assert np.all(np.isfinite(zs))
    assert np.max(np.abs(zs)) < 100


def test_a_system_damped_forwards_blows_up_backwards_so_decreasing_grids_get_their_own():
    x, a = sp.symbols("x a", real=True)
    forwards = ov.ODESystem([x], [a], [a * x - x**3 - x])
    with pytest.raises(AssertionError):
        solve(forwards, [1.0], np.array([0.0, -1.0]), np.array([0.0]))
    backwards = find(S.ode_systems(n_states=1, n_params=1, decreasing=True), lambda s: True)
    assert list(backwards.f) == [a * x + x**3 + x]
    assert np.all(np.isfinite(solve(backwards, [1.0], np.array([0.0, -1.0]), np.array([0.0]))))


@settings(max_examples=max(20, settings.default.max_examples))
@given(S.problems(n_states=(1, 3), grids=S.time_grids(min_size=3, max_size=5, span=(2.0, 3.0), decreasing=True)))
def test_default_systems_follow_the_direction_of_a_grid_the_user_gives(problem):
    # found from outside: problems(grids=time_grids(decreasing=True)) drew systems damped forwards, which
    # blow up backwards. At theta = 0 every term vanishes and f = +-(k z + z^3): the damping must point
    # towards decreasing t, so df/dz at z = 0 is +k > 0 on the diagonal.
    system, z0, ts, theta, _ = problem
    assert ts[-1] < ts[0]
    at_zero = {s: 0 for s in [*system.states, *system.params]}
    at_zero[system.time] = ts[0]
    assert all(float(system.jac_z.subs(at_zero)[i, i]) > 0 for i in range(system.n_states))
    zs = solve(system, z0, ts, theta)
    assert np.all(np.isfinite(zs)) and np.max(np.abs(zs)) < 100


def test_ode_systems_shrink_to_one_damped_state():
    x, a = sp.symbols("x a", real=True)
    system = find(S.ode_systems(), lambda s: True)
    assert list(system.f) == [a * x - x**3 - x]
    system = find(S.ode_systems(functions=("tanh", "sin")), lambda s: True)
    assert list(system.f) == [a * sp.tanh(x) - x]


def test_the_same_system_is_built_once():
    # the shrinker redraws systems; the derivation and kernels are reused
    s1 = find(S.ode_systems(functions=("sin",)), lambda s: True)
    s2 = find(S.ode_systems(functions=("sin",)), lambda s: True)
    assert s1 is s2


@given(st.data())
def test_linear_systems_have_the_requested_spectrum(data):
    lo = data.draw(st.sampled_from([-2.0, -1.0, -0.5]))
    hi = data.draw(st.sampled_from([-0.25, 0.0, 0.5]))
    max_imag = data.draw(st.sampled_from([0.0, 1.0, 3.0]))
    system = data.draw(S.linear_systems(n_states=(1, 4), real_parts=(lo, hi), max_imag=max_imag))
    theta = np.array(data.draw(st.lists(st.floats(-1, 1), min_size=system.n_params, max_size=system.n_params)))
    A = matrix(system, theta)
    # linear in z: f(z) = A z at a random point
    z = np.array(data.draw(st.lists(st.floats(-2, 2), min_size=system.n_states, max_size=system.n_states)))
    np.testing.assert_allclose(system.eval_f(z[None], 0.3, theta)[0], A @ z, atol=1e-12)
    lam = np.linalg.eigvals(A)
    assert np.all(lam.real >= lo - 1e-9) and np.all(lam.real <= hi + 1e-9), (lam, lo, hi)
    assert np.all(np.abs(lam.imag) <= max_imag + 1e-9)
    np.testing.assert_allclose(A @ A.T, A.T @ A, atol=1e-12)  # normal: V orthogonal


def test_linear_systems_shrink_to_a_diagonal_real_spectrum():
    system = find(S.linear_systems(n_states=2), lambda s: True)
    A = matrix(system, np.array([1.0, -1.0]))
    np.testing.assert_allclose(A, np.diag([-0.1, -1.5]), atol=1e-15)


def test_linear_systems_reach_complex_pairs():
    # theta = (0, 1) puts a complex pair at c ± i max_imag, c the middle of real_parts
    def has_pair(s):
        return np.abs(np.linalg.eigvals(matrix(s, np.array([0.0, 1.0]))).imag).max() > 0

    system = find(S.linear_systems(n_states=2, real_parts=(-1.0, 0.0), max_imag=2.0), has_pair)
    lam = np.linalg.eigvals(matrix(system, np.array([0.0, 1.0])))
    np.testing.assert_allclose(sorted(lam.imag), [-2.0, 2.0], atol=1e-12)
    np.testing.assert_allclose(lam.real, [-0.5, -0.5], atol=1e-12)


@given(st.data())
def test_mlp_fields_respect_their_options(data):
    field = data.draw(S.mlp_fields(n_states=(1, 3), hidden_layers=(0, 2), width=(2, 5), activations=("tanh",)))
    assert 1 <= field.n_states <= 3
    assert field.activation == "tanh"
    hidden = field.sizes[1:-1]
    assert len(hidden) <= 2 and all(2 <= w <= 5 for w in hidden)
    assert field.sizes[0] == field.sizes[-1] == field.n_states


def test_mlp_fields_refuse_an_activation_mlpfield_lacks():
    with pytest.raises(S.StrategyArgumentError, match=r"activations=\('tanh', 'relu'\) contains 'relu'"):
        S.mlp_fields(activations=("tanh", "relu"))


@given(S.problems(systems=S.mlp_fields(width=(2, 4))))
def test_mlp_problems_use_init_params_and_pass_the_check(problem):
    assert problem.theta.shape == (problem.system.n_params,)
    report = ov.check_gradients(*problem, references=["forward", "fd"])
    assert report.passed, str(report)


# ---------------------------------------------------------------------------- losses
@given(st.data())
def test_losses_use_the_drawn_times_and_every_state(data):
    T = data.draw(st.integers(2, 5))
    n = data.draw(st.integers(1, 3))
    loss = data.draw(S.losses(T, n))
    zs = np.array(data.draw(st.lists(st.floats(-1.5, 1.5), min_size=T * n, max_size=T * n))).reshape(T, n)
    zs[np.abs(zs) < 0.1] = 0.1
    g = autograd.grad(loss)(zs)
    used = np.zeros(T, bool)
    used[list(loss.times)] = True
    assert np.all(g[~used] == 0)
    assert np.all(g[used] != 0)  # every state at every used time: no term's derivative vanishes there
    # a batch is the sum of its samples
    batch = np.stack([zs, 0.5 * zs], axis=1)
    assert float(loss(batch)) == pytest.approx(float(loss(zs)) + float(loss(0.5 * zs)), rel=1e-13)


def test_losses_reach_t0_alone_tN_alone_and_every_time():
    assert find(S.losses(4, 1), lambda l: True).times == (3,)
    assert find(S.losses(4, 1), lambda l: l.times == (0,)).times == (0,)
    assert find(S.losses(4, 1), lambda l: l.times == (0, 1, 2, 3)).times == (0, 1, 2, 3)
    assert find(S.losses(4, 1), lambda l: l.times == (1, 3)).times == (1, 3)
    with pytest.raises(NoSuchExample):
        find(S.losses(4, 2, t0_alone=False), lambda l: l.times == (0,), settings=settings(max_examples=300))


def test_loss_formula_is_readable():
    loss = find(S.losses(3, 2, names=("x", "y")), lambda l: l.times == (0, 2) and l.terms[1][1] == "sin")
    assert repr(loss) == "<loss: L = sum over i in {0, 2} of x(t_i)**2/2 + sin(y(t_i))>"
    assert float(loss(np.array([[1.0, 0.5], [9.0, 9.0], [2.0, -0.5]]))) == pytest.approx(0.5 + 2.0 + 0.0)


# ---------------------------------------------------------------------------- problems
def test_problems_shrink_to_the_smallest_problem():
    problem = find(S.problems(), lambda p: True)
    assert repr(problem) == (
        "Problem(dx/dt = a*x - x**3 - x, z0=[1.0], ts=[0.0, 0.5], theta=[0.0], "
        "loss: L = sum over i = 1 (tN) of x(t_i)**2/2)"
    )
    system, z0, ts, theta, loss = problem  # unpacks
    assert ov.check_gradients(*problem, references=["forward", "fd"]).passed


@given(S.problems(batch_size=(2, 3), decreasing=True))
def test_batches_and_decreasing_grids(problem):
    B = problem.z0.shape[0]
    assert problem.z0.shape == (B, problem.system.n_states) and 2 <= B <= 3
    assert np.all(np.diff(problem.ts) < 0)
    assert np.all((np.abs(problem.z0) >= 0.1) & (np.abs(problem.z0) <= 1.5))


def test_problems_at_an_equilibrium_are_rejected():
    # dx/dt = a*x + b*x - x**3 - x has the equilibrium x = 1 when a = b = 1: a constant solution, which the
    # solvers integrate exactly, so check_gradients would call the test trivial; such problems are not drawn
    x, a, b = sp.symbols("x a b", real=True)
    system = ov.ODESystem([x], [a, b], [a * x + b * x - x**3 - x])
    strategy = S.from_system(system, theta=st.just([1.0, 1.0]), z0=st.sampled_from([[1.0], [0.5]]))
    with pytest.raises(NoSuchExample):
        find(strategy, lambda p: p.z0.tolist() == [1.0], settings=settings(max_examples=50, database=None))
    assert find(strategy, lambda p: True).z0.tolist() == [0.5]


def test_problems_whose_parameter_gradient_vanishes_are_rejected():
    # dx/dt = a*sin(a*t) - x at a = 0: df/da = sin(a t) + a t cos(a t) = 0 for every t, so dL/da = 0 exactly
    x, a, t = sp.symbols("x a t", real=True)
    system = ov.ODESystem([x], [a], [a * sp.sin(a * t) - x], t)
    strategy = S.from_system(system, theta=st.sampled_from([[0.0], [0.5]]))
    with pytest.raises(NoSuchExample):
        find(strategy, lambda p: p.theta.tolist() == [0.0], settings=settings(max_examples=50, database=None))
    # unless the loss is at t0 alone, where every parameter gradient vanishes by design
    at_t0 = S.from_system(system, theta=st.just([0.0]), t0_alone=True)
    assert find(at_t0, lambda p: True).loss.times == (0,)


def test_problems_with_a_symmetric_cancellation_are_rejected():
    # x and y follow the same equation from the same start, so x(tN) = y(tN) and dL/dtN = x f(x) - y f(y) = 0
    # for L = x(tN)**2/2 - y(tN)**2/2; dL/dt0 = -dL/dtN too: the check could not see an error in the times
    x, y, a = sp.symbols("x y a", real=True)
    system = ov.ODESystem([x, y], [a], [a * sp.sin(x) - x, -y])
    loss = S.GeneratedLoss((1,), ((0, "square", 1.0), (1, "square", -1.0)), 2, 2)
    assert S._gradient_vanishes(S.Problem(system, np.array([1.0, 1.0]), np.array([0.0, 0.5]), np.zeros(1), loss))
    assert not S._gradient_vanishes(S.Problem(system, np.array([1.0, 0.5]), np.array([0.0, 0.5]), np.zeros(1), loss))


def test_from_system_with_your_own_strategies():
    logistic = ov.catalog.logistic().system  # dx/dt = r x (1 - x/K): positive rates keep it well-posed
    assert logistic.n_params == 2
    problem = find(
        S.from_system(logistic, theta=st.lists(st.floats(0.5, 2.0), min_size=2, max_size=2),
                      z0=st.just([0.3]), grids=S.time_grids(min_size=3, max_size=3)),
        lambda p: True,
    )
    assert problem.z0.tolist() == [0.3] and problem.theta.shape == (2,) and len(problem.ts) == 3
    assert np.all((0.5 <= problem.theta) & (problem.theta <= 2.0))
    assert ov.check_gradients(*problem, references=["forward", "fd"]).passed


# ---------------------------------------------------------------- a user's own model (issue 11)
LV = ov.ODESystem.from_strings(states="x y", params="a b c d", rhs=["a*x - b*x*y", "c*x*y - d*y"])


@settings(max_examples=25, deadline=None, database=None)
@given(S.from_system(LV))
def test_from_system_defaults_give_well_posed_problems_on_lotka_volterra(problem):
    # found from outside: the old defaults (theta in [-1, 1], z0 of either sign) drew problems that blow up,
    # and a user's test failed with an ExceptionGroup of IntegrationErrors
    assert np.all((0.5 <= problem.theta) & (problem.theta <= 1.5))
    assert np.all((0.5 <= problem.z0) & (problem.z0 <= 1.5))
    # the solve succeeds at the tolerances the references use
    res = ov.adjoint_gradients(*problem, rtol=1e-10, atol=1e-10)
    assert np.all(np.isfinite(res.z0)) and np.all(np.isfinite(res.theta))


def test_from_system_checks_a_user_model_end_to_end():
    @settings(max_examples=4, deadline=None, database=None)
    @given(S.from_system(LV))
    def test(problem):
        ov.testing.assert_gradients_close(*problem, references=["forward", "fd"])

    test()


GIVEN_THETA = np.array([1.5, 1.0, 3.0, 1.0])


@settings(max_examples=10, deadline=None, database=None)
@given(S.from_system(LV, theta=GIVEN_THETA, z0=[10.0, 5.0]))
def test_from_system_draws_near_the_values_given(problem):
    factors = problem.theta / GIVEN_THETA
    assert np.all((0.5 <= factors) & (factors <= 1.5))
    assert 5.0 <= problem.z0[0] <= 15.0 and 2.5 <= problem.z0[1] <= 7.5


def test_from_system_shrinks_to_the_values_given():
    problem = find(S.from_system(LV, theta=GIVEN_THETA, z0=[10.0, 5.0]), lambda p: True,
                   settings=settings(database=None))
    assert problem.theta.tolist() == GIVEN_THETA.tolist() and problem.z0.tolist() == [10.0, 5.0]


def test_from_system_on_a_model_that_always_blows_up_says_how_to_bound_the_draws():
    blows_up = ov.ODESystem.from_strings(states="x", params="a", rhs=["a*x**2 + 100"])  # x = 10 tan(10 t + c)

    @settings(max_examples=50, deadline=None, database=None)
    @given(S.from_system(blows_up))
    def test(problem):
        pass

    with pytest.raises(S.StrategyArgumentError, match=r"could not be solved.*theta=\[\.\.\.\].*st\.lists"):
        test()
