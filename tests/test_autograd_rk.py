"""The autograd-through-Runge–Kutta reference: its discrete adjoint against autograd through
``odeint_fixed`` (the straightforward implementation, independent of the reverse sweep), and its
Richardson estimate against closed forms."""

import warnings

import autograd
import autograd.numpy as anp
import numpy as np
import pytest

import odeverify as ov
from odeverify import catalog
from odeverify.errors import InvalidArgumentError
from odeverify.references import AutogradRK, make_problem
from odeverify.references import _autograd_rk
from odeverify.references._autograd_rk import MAX_AUTOGRAD_STEPS, _Linearisation, discrete_adjoint
from odeverify.tableaux import get_tableau, odeint_fixed


def autograd_through_odeint_fixed(problem, tableau, steps):
    """Loss and gradients by autograd through every primitive of a fixed-step solve."""
    fld = problem.field

    def L(z0, ts, theta):
        zs = odeint_fixed(lambda z, t: fld.f_autograd(z, t, theta), z0, ts, method=tableau, steps=steps, xp=anp)
        return problem.loss(problem.user_states(zs))

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Output seems independent of input")
        value, (gz, gt, gth) = autograd.value_and_grad(L, argnum=(0, 1, 2))(
            problem.z0, problem.ts.copy(), problem.theta.copy()
        )
    grads = {"z0": problem.user_z0(np.asarray(gz)), "theta": np.asarray(gth, dtype=float), "t": np.asarray(gt)}
    return float(getattr(value, "_value", value)), grads


def assert_same_gradients(got, want, rtol=1e-12):
    for key in want:
        scale = np.max(np.abs(want[key]), initial=0.0)
        assert scale > 0, key  # every group is really exercised
        np.testing.assert_allclose(got[key], want[key], rtol=0, atol=rtol * scale, err_msg=key)


def _mlp(time_input):
    field = ov.MLPField((2, 8, 2), time_input=time_input)
    return field, field.init_params(3)


def _scalar_t_only(z, t, theta):
    # a user function written for a float t: one time per row makes it fail
    if np.ndim(getattr(t, "_value", t)) != 0:
        raise TypeError("t must be a float")
    return anp.stack([z[:, 1], -theta[0] * anp.sin(z[:, 0]) + theta[1] * anp.cos(t)], axis=1)


def _vector_t(z, t, theta):
    return anp.stack([z[:, 1], -theta[0] * anp.sin(z[:, 0]) + theta[1] * anp.cos(t)], axis=1)


def _cases():
    forced = ov.ODESystem.from_strings("x y", "a b", ["y", "-a*sin(x) + b*cos(2*t)*x"])
    coupled = ov.ODESystem.from_strings("x y", "a b c d", ["a*x - b*x*y", "c*x*y - d*y*exp(-t)"])
    batch = np.array([[0.3, 0.1], [0.5, -0.2], [1.0, 0.4]])

    def couples_samples(zs):  # (T, B, n): products across samples and times
        return anp.sum(zs[-1, 0] * zs[-1, 1]) + anp.sum(zs[1:, :, 0] ** 2) * zs[-1, 2, 1]

    yield "non-autonomous ODESystem", (forced, [0.4, -0.1], [0.0, 0.5, 1.3, 2.0], [1.2, 0.7],
                                       lambda zs: anp.sum(zs**2)), [3, 2, 4]
    yield "batch B=3, loss coupling samples", (coupled, batch + 1.0, [0.0, 0.4, 1.0], [1.0, 0.5, 0.7, 0.3],
                                               couples_samples), [2, 3]
    yield "decreasing times", (forced, [0.4, -0.1], [2.0, 1.1, 0.6, 0.0], [1.2, 0.7],
                               lambda zs: anp.sum(zs[:, 0] * zs[:, 1])), [3, 1, 2]
    yield "loss at t0 only", (forced, [0.4, -0.1], [0.0, 0.5, 1.0], [1.2, 0.7],
                              lambda zs: zs[0, 0] ** 2 + zs[0, 1]), [2, 2]
    mlp, th = _mlp(False)
    yield "MLPField", (mlp, batch, [0.0, 0.3, 1.0], th, lambda zs: anp.sum(zs**2)), [2, 3]
    mlp_t, th_t = _mlp(True)
    yield "MLPField with time input", (mlp_t, batch, [0.0, 0.3, 1.0], th_t, couples_samples), [2, 3]
    for name, f in (("CallableField, vector t", _vector_t), ("CallableField, float t only", _scalar_t_only)):
        yield name, (ov.CallableField(f, 2, 2), batch, [1.0, 0.6, 0.0], [1.3, 0.4],
                     lambda zs: anp.sum(zs[0] ** 2) + anp.prod(zs[-1, :, 0])), [2, 3]


CASES = {name: (args, steps) for name, args, steps in _cases()}


@pytest.mark.parametrize("name", list(CASES))
def test_discrete_adjoint_equals_autograd_through_odeint_fixed(name):
    args, steps = CASES[name]
    problem = make_problem(*args)
    tab = get_tableau("dop853")
    want_loss, want = autograd_through_odeint_fixed(problem, tab, steps)
    loss, got = discrete_adjoint(problem, tab, steps)
    assert loss == pytest.approx(want_loss, rel=1e-13)
    if name == "loss at t0 only":  # L does not depend on the solve: autograd's zeros exactly
        np.testing.assert_array_equal(got["theta"], 0.0)
        np.testing.assert_array_equal(got["t"], 0.0)
        np.testing.assert_allclose(got["z0"], want["z0"], rtol=1e-15)
        return
    assert_same_gradients(got, want)


@pytest.mark.parametrize("method", ["euler", "midpoint", "heun", "kutta3", "rk4", "rk38", "dopri5", "tsit5"])
def test_every_tableau(method):
    args, steps = CASES["non-autonomous ODESystem"]
    problem = make_problem(*args)
    tab = get_tableau(method)
    want_loss, want = autograd_through_odeint_fixed(problem, tab, steps)
    loss, got = discrete_adjoint(problem, tab, steps)
    assert loss == pytest.approx(want_loss, rel=1e-13)
    assert_same_gradients(got, want)


def test_blocks_of_stage_points_give_the_same_gradients(monkeypatch):
    args, steps = CASES["batch B=3, loss coupling samples"]
    problem = make_problem(*args)
    tab = get_tableau("dop853")
    _, whole = discrete_adjoint(problem, tab, steps)
    # 12 stages * 3 samples = 36 points per step: blocks of one step, and of two
    for points in (36, 72):
        monkeypatch.setattr(_autograd_rk, "_BLOCK_POINTS", points)
        _, blocked = discrete_adjoint(problem, tab, steps)
        assert_same_gradients(blocked, whole, rtol=1e-14)


def test_per_row_times_are_used_where_f_autograd_takes_them():
    rng = np.random.default_rng(0)
    Y = rng.normal(size=(2, 3, 4))
    tau = np.array([[0.0, 0.5, 1.0], [1.0, 1.5, 2.0]])
    for f, stacked in ((_vector_t, True), (_scalar_t_only, False)):
        field = ov.CallableField(f, 2, 2)
        theta = np.array([1.3, 0.4])
        K = np.stack([np.stack([field.eval_f(Y[i, j].reshape(2, 2), tau[i, j], theta).reshape(-1)
                                for j in range(3)]) for i in range(2)])
        lin = _Linearisation(field, theta, 2)
        J, products = lin.at(Y, tau, K)
        assert lin.stacked is stacked
        # row 1 of f is (-a sin x + b cos t, ...): J[1, 0] = -a cos x
        np.testing.assert_allclose(J[..., 1, 0], -1.3 * np.cos(Y.reshape(2, 3, 2, 2)[..., 0]), rtol=1e-14)
        kbar = rng.normal(size=K.shape)
        th_bar, t_bar = products(kbar)
        kb = kbar.reshape(2, 3, 2, 2)
        np.testing.assert_allclose(t_bar, np.sum(kb[..., 1] * -0.4 * np.sin(tau)[..., None], axis=-1), rtol=1e-13)
        sinx = np.sin(Y.reshape(2, 3, 2, 2)[..., 0])
        np.testing.assert_allclose(th_bar, [np.sum(-kb[..., 1] * sinx), np.sum(kb[..., 1] * np.cos(tau)[..., None])],
                                   rtol=1e-13)


def test_mlp_f_autograd_takes_one_time_per_row():
    field, theta = _mlp(True)
    z = np.random.default_rng(1).normal(size=(4, 2))
    t = np.array([0.0, 0.3, -1.0, 2.5])
    rows = np.stack([field.eval_f(z[i:i + 1], t[i], theta)[0] for i in range(4)])
    np.testing.assert_allclose(field.f_autograd(z, t, theta), rows, rtol=1e-14)


# ---------------------------------------------------------------------------------------------- estimates


# The estimate is that of G(h/2)'s error, reported for the extrapolated value, which is one order
# better: how loose it is depends on the problem's higher-order terms (on the harmonic oscillator,
# DOPRI5's extrapolation gains more than three digits).
@pytest.mark.parametrize(
    "method,target,looseness", [("dop853", 1e-8, 1e3), ("dop853", 1e-6, 1e3), ("rk4", 1e-6, 1e3), ("dopri5", 1e-7, 1e4)]
)
@pytest.mark.parametrize("prob", catalog.problems(), ids=[p.name for p in catalog.problems()])
def test_extrapolation_is_within_its_estimate_and_the_estimate_is_not_loose(prob, method, target, looseness):
    want = prob.exact_gradients()
    est = AutogradRK(method, target=target).compute(make_problem(*prob.args()))
    assert not est.notes
    assert est.loss == pytest.approx(prob.exact_loss(), rel=10 * target)
    scale_all = max(np.max(np.abs(w)) for w in want.values())
    for key, exact in want.items():
        actual = np.abs(est.values[key] - exact)
        errors = np.asarray(est.errors[key])
        scale = np.max(np.abs(exact))
        # within the stated estimate, entry by entry
        assert np.all(actual <= errors), (key, actual, errors)
        # the target is met, and the estimate says so
        assert np.max(errors) <= 1.01 * target * max(scale, 1e-3 * scale_all), (key, np.max(errors), scale)
        # not absurdly loose where the error is above rounding
        if np.max(actual) > 1e-12 * scale:
            assert np.max(errors) <= looseness * np.max(actual), (key, np.max(errors), np.max(actual))


def test_the_first_steps_usually_meet_the_target(monkeypatch):
    calls = []
    original = _autograd_rk.discrete_adjoint

    def counted(problem, tableau, steps):
        calls.append(steps)
        return original(problem, tableau, steps)

    monkeypatch.setattr(_autograd_rk, "discrete_adjoint", counted)
    for prob in catalog.problems():
        calls.clear()
        AutogradRK().compute(make_problem(*prob.args()))
        assert len(calls) == 2, prob.name  # one pair: h and h/2


def test_a_target_beyond_the_cap_says_so():
    args = catalog.exponential().args()
    est = AutogradRK("euler", target=1e-9).compute(make_problem(*args))
    assert est.notes and f"the cap is {MAX_AUTOGRAD_STEPS}" in est.notes[0]
    est = AutogradRK("rk4", target=1e-13, max_refinements=0).compute(make_problem(*args))
    assert est.notes and "after 0 refinements" in est.notes[0]


def test_constructor_and_name_are_unchanged():
    ref = AutogradRK()
    assert ref.name == "autograd through dop853" and ref.tableau.order == 8
    assert repr(AutogradRK("rk4", target=1e-6)) == "AutogradRK(method='rk4', target=1e-06)"
    with pytest.raises(InvalidArgumentError, match="not a known tableau"):
        AutogradRK("nope")
