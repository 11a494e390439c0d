"""MLPField: hand-derived products against autograd, SymPy and direct formulas."""

import autograd
import autograd.numpy as anp
import numpy as np
import pytest
from helpers import rel_err

import odeverify as ov
from odeverify.errors import InvalidArgumentError, InvalidTypeError
from odeverify.tableaux import odeint_fixed

# autograd warns when a product is identically zero (f without t, a linear field); that is expected here
pytestmark = pytest.mark.filterwarnings("ignore:Output seems independent of input")

CONFIGS = [
    ((2, 5, 2), "tanh", False),
    ((2, 5, 2), "tanh", True),
    ((3, 4, 3, 3), "sigmoid", True),
    ((2, 6, 3, 2), "softplus", False),
    ((2, 2), "tanh", True),  # a linear field f = W [z, t] + b
]
IDS = [f"{'-'.join(map(str, s))}-{a}{'-t' if ti else ''}" for s, a, ti in CONFIGS]


def _field_and_point(sizes, activation, time_input, seed=0, B=4):
    field = ov.MLPField(sizes, activation=activation, time_input=time_input)
    rng = np.random.default_rng(seed)
    theta = field.init_params(rng, scale=2.0)  # scale 2 so activations leave their linear range
    z = rng.normal(size=(B, sizes[0]))
    a = rng.normal(size=(B, sizes[0]))
    return field, theta, z, a, 0.37


def _per_sample(J, B):
    """Diagonal blocks J[b, :, b, ...] of an autograd Jacobian over a batch."""
    return np.stack([J[b, :, b] for b in range(B)])


@pytest.mark.parametrize("sizes,activation,time_input", CONFIGS, ids=IDS)
def test_products_match_autograd(sizes, activation, time_input):
    field, theta, z, a, t = _field_and_point(sizes, activation, time_input)
    f, a_z, a_theta, a_t = field.eval_vjp(a, z, t, theta, with_f=True)

    def summed(args):
        return anp.sum(a * field.f_autograd(*args))

    gz, gt, gth = autograd.grad(summed)((z, t, theta))
    assert rel_err(f, field.f_autograd(z, t, theta)) < 1e-14
    assert rel_err(f, field.eval_f(z, t, theta)) == 0.0
    assert rel_err(a_z, gz) < 1e-12
    assert rel_err(a_theta, gth) < 1e-12
    if time_input:
        assert a_t == pytest.approx(gt, rel=1e-12)
    else:
        assert a_t == 0.0 and gt == 0.0


@pytest.mark.parametrize("sizes,activation,time_input", CONFIGS, ids=IDS)
def test_jacobians_match_autograd(sizes, activation, time_input):
    field, theta, z, a, t = _field_and_point(sizes, activation, time_input)
    B = z.shape[0]
    fz, fth, ft = field.eval_jacobians(z, t, theta)
    assert rel_err(fz, _per_sample(autograd.jacobian(lambda q: field.f_autograd(q, t, theta))(z), B)) < 1e-12
    assert rel_err(field.eval_jac_z(z, t, theta), fz) == 0.0
    assert rel_err(fth, autograd.jacobian(lambda q: field.f_autograd(z, t, q))(theta)) < 1e-12
    want_ft = autograd.jacobian(lambda q: field.f_autograd(z, q, theta))(t)
    assert rel_err(ft, want_ft) < 1e-12 if time_input else np.all(ft == 0) and np.all(want_ft == 0)


@pytest.mark.parametrize("sizes,activation,time_input", CONFIGS, ids=IDS)
def test_backward_jacobian_blocks_match_autograd(sizes, activation, time_input):
    # d(a^T f_z)/dz, d(a^T f_theta)/dz, d(a^T f_t)/dz per sample: forward-over-reverse by hand
    # against reverse-over-reverse by autograd
    field, theta, z, a, t = _field_and_point(sizes, activation, time_input)
    B = z.shape[0]
    fz, a_zz, a_th_z, a_t_z = field.eval_backward_jac(z, a, t, theta)

    def a_z_of(q):
        return autograd.grad(lambda zz: anp.sum(a * field.f_autograd(zz, t, theta)))(q)

    want_zz = _per_sample(autograd.jacobian(a_z_of)(z), B)
    want_thz = []
    want_tz = []
    for b in range(B):
        def a_th(q, b=b):
            return autograd.grad(lambda th: anp.sum(a[b] * field.f_autograd(q, t, th)))(theta)

        def a_t(q, b=b):
            return autograd.grad(lambda s: anp.sum(a[b] * field.f_autograd(q, s, theta)))(t)

        want_thz.append(autograd.jacobian(a_th)(z[b]))
        want_tz.append(autograd.jacobian(a_t)(z[b])[None, :] if time_input else np.zeros((1, z.shape[1])))
    assert rel_err(fz, field.eval_jac_z(z, t, theta)) == 0.0
    if len(sizes) == 2:  # linear: no second derivatives
        assert np.all(a_zz == 0) and np.allclose(want_zz, 0)
    else:
        assert rel_err(a_zz, want_zz) < 1e-12
    assert rel_err(a_th_z, np.stack(want_thz)) < 1e-12
    if time_input and len(sizes) > 2:
        assert rel_err(a_t_z, np.stack(want_tz)) < 1e-12
    else:
        assert np.all(a_t_z == 0) and np.allclose(want_tz, 0)


SYMBOLIC = [((2, 5, 2), "tanh", False), ((2, 4, 2), "tanh", True), ((2, 3, 3, 2), "sigmoid", True), ((2, 4, 3, 2), "softplus", False)]


@pytest.mark.parametrize("sizes,activation,time_input", SYMBOLIC)
def test_matches_symbolic_system_of_the_same_network(sizes, activation, time_input):
    # the same weights as the parameters of an ODESystem: SymPy differentiates, codegen evaluates
    field, theta, z, a, t = _field_and_point(sizes, activation, time_input, seed=5)
    system = field.to_ode_system()
    assert system.n_params == field.n_params and system.is_autonomous == (not time_input)
    f, a_z, a_th, a_t = field.eval_vjp(a, z, t, theta, with_f=True)
    fs, a_zs, a_ths, a_ts = system.eval_vjp(a, z, t, theta, with_f=True)
    assert rel_err(f, fs) < 1e-12
    assert rel_err(a_z, a_zs) < 1e-12
    assert rel_err(a_th, a_ths) < 1e-12
    assert a_t == pytest.approx(a_ts, rel=1e-12, abs=1e-300)
    for got, want in zip(field.eval_jacobians(z, t, theta), system.eval_jacobians(z, t, theta)):
        assert rel_err(got, want) < 1e-12 or np.all(got == want)
    for got, want in zip(field.eval_backward_jac(z, a, t, theta), system.eval_backward_jac(z, a, t, theta)):
        assert rel_err(got, want) < 1e-12 or np.all(got == want)


def test_packing_is_the_documented_layout():
    # f = W2 tanh(W1 [z, t] + b1) + b2 written out directly
    field = ov.MLPField((2, 3, 2), time_input=True)
    rng = np.random.default_rng(1)
    W1, b1, W2, b2 = rng.normal(size=(3, 3)), rng.normal(size=3), rng.normal(size=(2, 3)), rng.normal(size=2)
    theta = np.concatenate([W1.ravel(), b1, W2.ravel(), b2])
    assert np.array_equal(field.pack([(W1, b1), (W2, b2)]), theta)
    z = rng.normal(size=(5, 2))
    t = 0.8
    want = np.array([W2 @ np.tanh(W1 @ np.append(zb, t) + b1) + b2 for zb in z])
    assert rel_err(field.eval_f(z, t, theta), want) < 1e-14
    layers = field.unpack(theta)
    assert all(np.shares_memory(W, theta) and np.shares_memory(b, theta) for W, b in layers)
    assert np.array_equal(layers[0][0], W1) and np.array_equal(layers[1][1], b2)
    assert field.param_names[:4] == ("W1_0_0", "W1_0_1", "W1_0_2", "W1_1_0")
    assert field.param_names[9:12] == ("b1_0", "b1_1", "b1_2")
    assert len(field.param_names) == field.n_params == 3 * 3 + 3 + 2 * 3 + 2


def test_init_params_bounds_and_seed():
    field = ov.MLPField((2, 64, 2))
    th = field.init_params(3)
    assert np.array_equal(th, field.init_params(np.random.default_rng(3)))
    (W1, b1), (W2, b2) = field.unpack(th)
    assert np.max(np.abs(W1)) <= 1 / np.sqrt(2) and np.max(np.abs(W2)) <= 1 / 8
    assert np.max(np.abs(W1)) > 0.6 and np.max(np.abs(W2)) > 0.1  # the whole range is used


def test_validation_errors():
    with pytest.raises(InvalidArgumentError, match=r"output width 3 must equal the input width 2"):
        ov.MLPField((2, 8, 3))
    with pytest.raises(InvalidArgumentError, match="at least an input and an output"):
        ov.MLPField((2,))
    with pytest.raises(InvalidTypeError, match=r"sizes\[1\] must be an integer"):
        ov.MLPField((2, 8.5, 2))
    with pytest.raises(InvalidArgumentError, match=r"sizes\[1\] = 0"):
        ov.MLPField((2, 0, 2))
    with pytest.raises(InvalidTypeError, match="sequence of layer widths"):
        ov.MLPField(2)
    with pytest.raises(InvalidArgumentError, match="activation='relu' is not supported"):
        ov.MLPField((2, 4, 2), activation="relu")
    field = ov.MLPField((2, 4, 2))
    with pytest.raises(InvalidArgumentError, match=r"theta has shape \(3,\) but this MLPField\(2, 4, 2\) has 22"):
        field.unpack(np.zeros(3))
    with pytest.raises(InvalidTypeError, match="rng must be"):
        field.init_params("seed")
    with pytest.raises(InvalidArgumentError, match="layer 2 has W of shape"):
        field.pack([(np.zeros((4, 2)), np.zeros(4)), (np.zeros((2, 3)), np.zeros(2))])
    with pytest.raises(InvalidArgumentError, match=r"theta has shape \(3,\) but the system has 22 parameters"):
        ov.solve(field, [1.0, 0.0], [0.0, 1.0], np.zeros(3))


# ---------------------------------------------------------------------------- through the adjoint
def _spiral_setup(B=5, seed=2):
    field = ov.MLPField((2, 8, 2), time_input=True)
    rng = np.random.default_rng(seed)
    theta = field.init_params(rng)
    Z0 = rng.normal(size=(B, 2))
    ts = np.array([0.0, 0.4, 0.9, 1.5])
    target = rng.normal(size=(len(ts), 2))
    return field, theta, Z0, ts, target


@pytest.mark.parametrize("mode", ["interpolated", "backsolve"])
def test_adjoint_matches_autograd_through_rk4(mode):
    # discretise-then-differentiate reference: autograd through 100 RK4 steps per interval
    field, theta, Z0, ts, target = _spiral_setup()

    def loss(zs):
        return anp.sum((zs - target[:, None, :]) ** 2)

    res = ov.adjoint_gradients(field, Z0, ts, theta, loss, mode=mode, rtol=1e-11, atol=1e-11)

    def L(z0, th, tt):
        return loss(odeint_fixed(lambda z, s: field.f_autograd(z, s, th), z0, tt, method="rk4", steps=100, xp=anp))

    gz, gth, gt = autograd.grad(L, argnum=(0, 1, 2))(Z0, theta, ts)
    assert res.loss == pytest.approx(L(Z0, theta, ts), rel=1e-9)
    assert rel_err(res.z0, gz) < 1e-8
    assert rel_err(res.theta, gth) < 1e-8
    assert rel_err(res.t, gt) < 1e-8


@pytest.mark.parametrize("mode", ["interpolated", "backsolve"])
def test_batched_gradients_equal_per_sample_gradients(mode):
    field, theta, Z0, ts, target = _spiral_setup(B=6, seed=4)
    weights = np.array([1.0, 2.0])

    def loss_batch(zs):  # (T, B, n)
        return anp.sum(weights * (zs - target[:, None, :]) ** 2)

    def loss_one(zs):  # (T, n)
        return anp.sum(weights * (zs - target) ** 2)

    kw = dict(mode=mode, rtol=1e-11, atol=1e-11)
    batch = ov.adjoint_gradients(field, Z0, ts, theta, loss_batch, **kw)
    singles = [ov.adjoint_gradients(field, z, ts, theta, loss_one, **kw) for z in Z0]
    assert batch.z0.shape == Z0.shape and batch.zs.shape == (len(ts), 6, 2)
    assert batch.loss == pytest.approx(sum(s.loss for s in singles), rel=1e-10)
    assert rel_err(batch.z0, [s.z0 for s in singles]) < 1e-8
    assert rel_err(batch.theta, sum(s.theta for s in singles)) < 1e-8
    assert rel_err(batch.t, sum(s.t for s in singles)) < 1e-8


@pytest.mark.parametrize("mode", ["interpolated", "backsolve"])
def test_implicit_solver_uses_the_analytic_jacobians(mode):
    field, theta, Z0, ts, target = _spiral_setup(B=3)

    def loss(zs):
        return anp.sum((zs - target[:, None, :]) ** 2)

    ref = ov.adjoint_gradients(field, Z0, ts, theta, loss, mode=mode, rtol=1e-11, atol=1e-11)
    res = ov.adjoint_gradients(field, Z0, ts, theta, loss, mode=mode, method="Radau", rtol=1e-10, atol=1e-10)
    assert res.stats.njev_backward > 0
    assert rel_err(res.theta, ref.theta) < 1e-7
    assert rel_err(res.z0, ref.z0) < 1e-7
    assert rel_err(res.t, ref.t) < 1e-7


def test_check_gradients_passes_on_an_mlp_neural_ode():
    # the acceptance check of the Neural ODE issue: a batched MLPField against every reference
    import autograd.numpy as anp

    import odeverify as ov

    field = ov.MLPField((2, 4, 2), time_input=True)
    theta = field.init_params(np.random.default_rng(5))
    Z0 = np.array([[0.5, -0.3], [-0.2, 0.8]])
    ts = np.array([0.0, 0.4, 1.0])

    def loss(zs):
        return anp.sum(zs**2) + anp.sum(zs[:, :, 0])

    report = ov.check_gradients(field, Z0, ts, theta, loss, references=["adjoint", "forward", "autograd", "fd"])
    assert report.passed, str(report)
    assert len(report.rows) == Z0.size + theta.size + len(ts)
    names = {e.name for e in report.references}
    assert {"forward sensitivities", "autograd through dop853", "finite differences"} <= names
    # and a wrong parameter gradient is caught
    good = ov.adjoint_gradients(field, Z0, ts, theta, loss, rtol=1e-11, atol=1e-11).as_dict()
    bad = dict(good, theta=good["theta"] * 1.001)
    assert not ov.check_gradients(field, Z0, ts, theta, loss, candidate=bad, references=report.references).passed
