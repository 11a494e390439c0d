"""ResNet = Euler (notes §3.6, §4.1): bitwise equality at h = 1, order-1 convergence as h = T/N shrinks."""

import autograd.numpy as anp
import numpy as np
import pytest

import odeverify as ov
from odeverify.errors import InvalidArgumentError, InvalidTypeError
from odeverify.tableaux import odeint_fixed
from odeverify.theory import (
    neural_ode_system,
    pack_mlp_params,
    resnet_convergence,
    resnet_equals_euler,
    resnet_forward,
    unpack_mlp_params,
)

N_STATES, HIDDEN = 2, 6


@pytest.fixture(scope="module")
def weights():
    rng = np.random.default_rng(0)
    return (
        rng.normal(size=(HIDDEN, N_STATES)),
        rng.normal(0, 0.1, size=HIDDEN),
        rng.normal(size=(N_STATES, HIDDEN)) / np.sqrt(HIDDEN),
        rng.normal(0, 0.1, size=N_STATES),
    )


@pytest.fixture(scope="module")
def node():
    return neural_ode_system(N_STATES, HIDDEN)


def block(W1, b1, W2, b2):
    return lambda x: np.tanh(x @ W1.T + b1) @ W2.T + b2


def test_the_system_is_the_network(node, weights):
    # the ODESystem's generated kernel evaluates W2 tanh(W1 z + b1) + b2
    z = np.random.default_rng(1).normal(size=(10, N_STATES))
    np.testing.assert_allclose(node.eval_f(z, 0.0, pack_mlp_params(*weights)), block(*weights)(z), rtol=1e-14)


def test_pack_unpack_roundtrip(weights):
    for a, b in zip(unpack_mlp_params(pack_mlp_params(*weights), N_STATES, HIDDEN), weights):
        assert np.array_equal(a, b)
    with pytest.raises(InvalidArgumentError, match="expected"):
        unpack_mlp_params(np.zeros(3), N_STATES, HIDDEN)


@pytest.mark.parametrize("x", [np.array([0.3, -0.8]), np.random.default_rng(2).normal(size=(5, N_STATES))])
def test_resnet_equals_euler_to_the_last_bit_shared_weights(weights, x):
    check = resnet_equals_euler([block(*weights)] * 25, x)
    assert check.identical and check.max_abs_diff == 0.0
    assert np.all(check.resnet == check.euler)
    assert "last bit" in str(check)


def test_resnet_equals_euler_to_the_last_bit_per_layer_weights():
    rng = np.random.default_rng(3)
    layers = [
        block(rng.normal(size=(HIDDEN, N_STATES)), rng.normal(size=HIDDEN), 0.3 * rng.normal(size=(N_STATES, HIDDEN)),
              rng.normal(size=N_STATES))
        for _ in range(30)
    ]
    check = resnet_equals_euler(layers, np.array([0.1, 0.2]))
    assert check.identical
    # the comparison is sharp: the same layers in another order give another network
    swapped = resnet_equals_euler(layers[1:] + layers[:1], np.array([0.1, 0.2]))
    assert np.array_equal(swapped.euler, resnet_equals_euler(layers[1:] + layers[:1], [0.1, 0.2]).resnet)
    assert not np.array_equal(swapped.resnet, check.resnet)


def test_euler_on_the_symbolic_system_is_the_scaled_resnet(node, weights):
    # h = T/N on the ODESystem's own kernel: rk_step's Euler computes z + (h * 1) * f(z), the layer x + h f(x)
    theta = pack_mlp_params(*weights)
    T, N = 2.0, 16
    h = T / N
    f = lambda z, t: node.eval_f(z[None], t, theta)[0]  # noqa: E731
    net = resnet_forward(np.array([0.5, -0.5]), [lambda x: h * f(x, 0.0)] * N)
    euler = odeint_fixed(f, np.array([0.5, -0.5]), np.linspace(0.0, T, N + 1), method="euler", steps=1)
    np.testing.assert_array_equal(net, euler)


def test_resnet_converges_to_the_neural_ode_at_order_one(node, weights):
    theta = pack_mlp_params(*weights)
    z0 = np.array([0.4, -0.3])
    rep = resnet_convergence(node, z0, theta, (0.0, 2.0), lambda zs: anp.sum(zs[-1] ** 2), layers=(8, 16, 32, 64))
    assert round(rep.output_order) == 1 and abs(rep.output_order - 1) < 0.1, str(rep)
    assert round(rep.gradient_order) == 1 and abs(rep.gradient_order - 1) < 0.1, str(rep)
    assert np.all(np.diff(rep.output_errors) < 0) and np.all(np.diff(rep.gradient_errors) < 0)
    # the reference z(T) is independent of the adjoint code: a direct SciPy solve
    import scipy.integrate

    direct = scipy.integrate.solve_ivp(
        lambda t, z: block(*weights)(z), (0.0, 2.0), z0, method="DOP853", rtol=1e-12, atol=1e-12
    ).y[:, -1]
    np.testing.assert_allclose(rep.z_T, direct, rtol=1e-9)
    # the error halves with h, as Euler's global error C h does
    ratios = rep.output_errors[:-1] / rep.output_errors[1:]
    assert np.all((ratios > 1.7) & (ratios < 2.2)) and abs(ratios[-1] - 2) < abs(ratios[0] - 2)


def test_resnet_gradient_reference_matches_finite_differences(node, weights):
    # the adjoint reference itself, against central differences of a tight solve
    theta = pack_mlp_params(*weights)
    z0 = np.array([0.4, -0.3])

    def loss_of(z0_, theta_):
        return float(np.sum(ov.solve(node, z0_, [0.0, 1.0], theta_, rtol=1e-12, atol=1e-12).z[-1] ** 2))

    rep = resnet_convergence(node, z0, theta, (0.0, 1.0), lambda zs: anp.sum(zs[-1] ** 2), layers=(4, 8, 16))
    eps = 1e-6
    fd = [(loss_of(z0 + eps * e, theta) - loss_of(z0 - eps * e, theta)) / (2 * eps) for e in np.eye(2)]
    np.testing.assert_allclose(rep.adjoint_gradient[:2], fd, rtol=1e-6)


def test_errors(node):
    with pytest.raises(InvalidTypeError, match="callables"):
        resnet_equals_euler([], [0.0])
    with pytest.raises(InvalidArgumentError, match="layers"):
        resnet_convergence(node, [0.0, 0.0], np.zeros(node.n_params), (0.0, 1.0), lambda zs: anp.sum(zs), layers=(4, 8))
    with pytest.raises(InvalidArgumentError, match="activation"):
        neural_ode_system(2, 3, activation="swish")
    with pytest.raises(InvalidArgumentError, match="hidden"):
        neural_ode_system(2, 0)
