"""CallableField and plain functions f(z, t, theta) through solve and adjoint_gradients."""

import autograd.numpy as anp
import numpy as np
import pytest
from helpers import rel_err

import odeverify as ov
from odeverify._validate import as_field
from odeverify.errors import InvalidArgumentError, InvalidTypeError


def lotka_volterra(z, t, th):
    x, y = z[:, 0], z[:, 1]
    return anp.stack([th[0] * x - th[1] * x * y, th[2] * x * y - th[3] * y], axis=1)


def forced(z, t, th):
    return -th[0] * z + anp.sin(th[1] * t)


@pytest.fixture(scope="module")
def lv_system():
    return ov.ODESystem.from_strings("x y", "a b c d", ["a*x - b*x*y", "c*x*y - d*y"])


def test_products_match_the_symbolic_system(lv_system):
    # autograd's one reverse pass over the batch against SymPy's derivatives
    field = ov.CallableField(lotka_volterra, 2, 4)
    rng = np.random.default_rng(0)
    z, a = rng.uniform(0.5, 2.0, size=(5, 2)), rng.normal(size=(5, 2))
    th = np.array([1.2, 0.7, 0.9, 1.1])
    got = field.eval_vjp(a, z, 0.3, th, with_f=True)
    want = lv_system.eval_vjp(a, z, 0.3, th, with_f=True)
    for g, w in zip(got[:3], want[:3]):
        assert rel_err(g, w) < 1e-14
    assert got[3] == 0.0 == want[3]
    assert rel_err(field.eval_f(z, 0.3, th), want[0]) < 1e-14


def test_time_product_is_summed_over_the_batch():
    field = ov.CallableField(forced, 1, 2)
    system = ov.ODESystem.from_strings("x", "k w", ["-k*x + sin(w*t)"])
    z, a = np.array([[0.3], [-1.2], [2.0]]), np.array([[1.0], [-0.5], [2.5]])
    th = np.array([0.8, 2.5])
    _, az, ath, at = field.eval_vjp(a, z, 1.1, th)
    _, azs, aths, ats = system.eval_vjp(a, z, 1.1, th)
    assert rel_err(az, azs) < 1e-14 and rel_err(ath, aths) < 1e-14
    assert at == pytest.approx(ats, rel=1e-14)
    assert at == pytest.approx(np.sum(a) * 2.5 * np.cos(2.5 * 1.1), rel=1e-14)


def test_mlp_written_with_autograd_matches_mlpfield():
    # the same network three ways: hand formulas (MLPField), autograd (CallableField), SymPy
    mlp = ov.MLPField((2, 6, 2), time_input=True)
    th = mlp.init_params(1, scale=2.0)
    field = ov.CallableField(mlp.f_autograd, 2, mlp.n_params)
    rng = np.random.default_rng(1)
    z, a = rng.normal(size=(4, 2)), rng.normal(size=(4, 2))
    got = field.eval_vjp(a, z, 0.6, th, with_f=True)
    want = mlp.eval_vjp(a, z, 0.6, th, with_f=True)
    for g, w in zip(got, want):
        assert rel_err(g, w) < 1e-12


@pytest.mark.parametrize("mode", ["interpolated", "backsolve"])
def test_plain_function_everywhere(lv_system, mode):
    # a bare function goes through the same adjoint code as the ODESystem
    z0 = np.array([[1.0, 0.8], [1.5, 0.5]])
    ts = np.array([0.0, 0.4, 1.1])
    th = [1.2, 0.7, 0.9, 1.1]

    def loss(zs):
        return anp.sum(zs[1:] ** 2)

    kw = dict(mode=mode, rtol=1e-11, atol=1e-11)
    got = ov.adjoint_gradients(lotka_volterra, z0, ts, th, loss, **kw)
    want = ov.adjoint_gradients(lv_system, z0, ts, th, loss, **kw)
    assert got.loss == pytest.approx(want.loss, rel=1e-10)
    for key in ("z0", "theta", "t"):
        assert rel_err(getattr(got, key), getattr(want, key)) < 1e-8, key
    sol = ov.solve(lotka_volterra, z0[0], ts, th, rtol=1e-11, atol=1e-11)
    assert rel_err(sol.z, want.zs[:, 0]) < 1e-9


def test_closed_form_growth_without_theta_name():
    # x' = a x: L = x(T)^2, dL/da = 2 T x0^2 e^{2aT}
    res = ov.adjoint_gradients(
        lambda z, t, th: th[0] * z, [1.3], [0.0, 0.9], [0.5], lambda zs: zs[-1, 0] ** 2, rtol=1e-11, atol=1e-11
    )
    assert res.theta[0] == pytest.approx(2 * 0.9 * 1.3**2 * np.exp(0.9), rel=1e-9)
    assert res.z0[0] == pytest.approx(2 * 1.3 * np.exp(0.9), rel=1e-9)


def test_function_without_parameters():
    sol = ov.solve(lambda z, t, th: -z, [2.0], [0.0, 1.0], rtol=1e-12, atol=1e-12)
    assert sol.z[-1, 0] == pytest.approx(2 * np.exp(-1), rel=1e-10)


def test_as_field_signature():
    lv = ov.ODESystem.from_strings("x", "a", ["a*x"])
    assert as_field(lv) is lv
    fld = as_field(lotka_volterra, np.ones((3, 2)), np.ones(4))
    assert isinstance(fld, ov.CallableField) and (fld.n_states, fld.n_params) == (2, 4)
    assert as_field(forced, 1.0, None).n_states == 1 and as_field(forced, [1.0], None).n_params == 0
    with pytest.raises(InvalidArgumentError, match="comes from z0, which was not given"):
        as_field(lotka_volterra)
    with pytest.raises(InvalidTypeError, match="got the class ODESystem"):
        as_field(ov.ODESystem)  # the class, not an instance
    with pytest.raises(InvalidTypeError, match="or a function f\\(z, t, theta\\)"):
        ov.solve("x' = -x", [1.0], [0.0, 1.0])


def test_function_written_for_one_state_is_refused():
    def per_sample(z, t, th):  # indexes the batch axis: mixes samples
        return anp.stack([z[1], -z[0]])

    with pytest.raises(InvalidArgumentError, match="does not act on each row of z separately"):
        ov.solve(per_sample, np.array([[1.0, 0.0], [0.0, 2.0]]), [0.0, 1.0])
    with pytest.raises(InvalidArgumentError, match=r"raised IndexError.*z\[:, i\]"):
        ov.solve(per_sample, [1.0, 0.0], [0.0, 1.0])


def test_wrong_shape_and_non_autograd_functions():
    with pytest.raises(InvalidArgumentError, match=r"returned shape \(2,\) for z of shape \(1, 2\)"):
        ov.solve(lambda z, t, th: anp.sum(z, axis=0), [1.0, 0.0], [0.0, 1.0])

    def plain_numpy(z, t, th):
        return np.asarray(-th[0] * z)  # np.asarray breaks autograd's trace

    with pytest.raises(InvalidTypeError, match="could not be differentiated by autograd"):
        ov.adjoint_gradients(plain_numpy, [1.0], [0.0, 1.0], [0.3], lambda zs: zs[-1, 0])
    with pytest.raises(InvalidTypeError, match="f must be a function"):
        ov.CallableField(3, 1, 0)
    with pytest.raises(InvalidArgumentError, match="n_states=0 must be at least 1"):
        ov.CallableField(forced, 0, 0)


def test_check_gradients_and_taylor_test_accept_a_plain_function():
    z0, ts, th = np.array([[0.4], [-1.1]]), np.array([0.2, 0.9, 1.6]), np.array([0.8, 2.5])

    def loss(zs):
        return anp.sum(zs[1:] ** 2)

    report = ov.check_gradients(forced, z0, ts, th, loss, references=["autograd", "fd"])
    assert report.passed, str(report)
    assert ov.taylor_test(forced, z0, ts, th, loss, seed=0).passed


def test_f_autograd_takes_theta_as_a_list_of_scalars():
    # the autograd references split theta into scalars once per solve
    mlp = ov.MLPField((2, 3, 2), time_input=True)
    th = mlp.init_params(2)
    z = np.random.default_rng(3).normal(size=(4, 2))
    assert np.array_equal(mlp.f_autograd(z, 0.3, list(th)), mlp.f_autograd(z, 0.3, th))
    field = ov.CallableField(lotka_volterra, 2, 4)
    assert np.array_equal(field.f_autograd(z, 0.3, [1.0, 2.0, 3.0, 4.0]), lotka_volterra(z, 0.3, np.arange(1.0, 5.0)))
