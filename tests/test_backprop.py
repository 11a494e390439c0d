"""Backpropagation (notes §3.2–3.3), gradient descent (§3.4) and the vanishing gradient (§3.5)."""

import autograd
import autograd.numpy as anp
import numpy as np
import pytest

from odeverify.errors import InvalidArgumentError, InvalidTypeError
from odeverify.theory import (
    MLP,
    Activation,
    backprop,
    check_backprop,
    gradient_descent,
    gradient_norms_by_depth,
    notes_backprop,
)


def notes_network(seed=0, activation="sigmoid"):
    rng = np.random.default_rng(seed)
    return dict(
        W1=rng.normal(size=(2, 2)), b1=rng.normal(size=2), W2=rng.normal(size=(2, 2)), b2=rng.normal(size=2)
    ), activation


def central_differences(fun, x, eps=1e-6):
    x = np.asarray(x, float)
    out = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        e = np.zeros_like(x)
        e[idx] = eps
        out[idx] = (fun(x + e) - fun(x - e)) / (2 * eps)
    return out


@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "softplus"])
def test_notes_example_formulas_against_autograd_and_finite_differences(activation):
    p, act = notes_network(activation=activation)
    x, y = np.array([0.7, -1.2]), np.array([0.3, 0.9])

    def loss(W1, b1, W2, b2, x):
        sigma = {"sigmoid": lambda z: 1 / (1 + anp.exp(-z)), "tanh": anp.tanh,
                 "softplus": lambda z: anp.log(1 + anp.exp(z))}[activation]
        yhat = anp.dot(W2, sigma(anp.dot(W1, x) + b1)) + b2
        return 0.5 * anp.sum((yhat - y) ** 2)

    g = notes_backprop(x, y, activation=activation, **p)
    args = (p["W1"], p["b1"], p["W2"], p["b2"], x)
    assert g["L"] == pytest.approx(loss(*args), rel=1e-15)
    assert g["dL/dL"] == 1.0
    for key, argnum in [("dL/dW1", 0), ("dL/db1", 1), ("dL/dW2", 2), ("dL/db2", 3)]:
        ref = autograd.grad(loss, argnum)(*args)
        np.testing.assert_allclose(g[key], ref, rtol=1e-13, atol=1e-15, err_msg=key)
        fd = central_differences(lambda v: loss(*[v if k == argnum else a for k, a in enumerate(args)]), args[argnum])
        np.testing.assert_allclose(g[key], fd, rtol=1e-7, atol=1e-9, err_msg=key)
    # the intermediate adjoints: dL/dŷ = ŷ - y, dL/dh = W2^T dL/dŷ, dL/dz by autograd through z
    np.testing.assert_allclose(g["dL/dyhat"], g["yhat"] - y, rtol=0, atol=0)
    h_loss = lambda h: 0.5 * anp.sum((anp.dot(p["W2"], h) + p["b2"] - y) ** 2)  # noqa: E731
    np.testing.assert_allclose(g["dL/dh"], autograd.grad(h_loss)(g["h"]), rtol=1e-14)


def test_notes_formulas_agree_with_the_layer_loop():
    p, act = notes_network(seed=4)
    x, y = np.array([0.2, 0.5]), np.array([-1.0, 1.0])
    g = notes_backprop(x, y, **p)
    loop = backprop(MLP([p["W1"], p["W2"]], [p["b1"], p["b2"]], act), x, y)
    np.testing.assert_allclose(loop.weights[0], g["dL/dW1"], rtol=1e-15)
    np.testing.assert_allclose(loop.weights[1], g["dL/dW2"], rtol=1e-15)
    np.testing.assert_allclose(loop.biases[0], g["dL/db1"], rtol=1e-15)
    np.testing.assert_allclose(loop.biases[1], g["dL/db2"], rtol=1e-15)
    np.testing.assert_allclose(loop.x, p["W1"].T @ g["dL/dz"], rtol=1e-15)


@pytest.mark.parametrize(
    "sizes,activation,residual,step",
    [
        ([2, 2, 2], "sigmoid", False, 1.0),
        ([3, 5, 1], "tanh", False, 1.0),
        ([4, 6, 6, 6, 3], "softplus", True, 1.0),
        ([2, 4, 4, 2], "tanh", True, 0.25),
        ([1, 3, 2, 4], "relu", False, 1.0),
        ([2, 3, 2], "identity", False, 1.0),
    ],
)
@pytest.mark.parametrize("batch", [None, 5])
def test_any_sizes_and_activations(sizes, activation, residual, step, batch):
    net = MLP.random(sizes, activation=activation, residual=residual, step=step, seed=len(sizes))
    rng = np.random.default_rng(7)
    shape = (sizes[0],) if batch is None else (batch, sizes[0])
    x = rng.normal(size=shape)
    y = rng.normal(size=shape[:-1] + (sizes[-1],))
    check = check_backprop(net, x, y)
    assert check.passed, str(check)
    assert check.err_autograd < 1e-12 and check.err_fd < 1e-6


def test_a_custom_activation():
    cube = Activation("cube", lambda z, xp=np: z**3 / 3 + z, lambda z: z**2 + 1)
    check = check_backprop(MLP.random([2, 3, 2], activation=cube, seed=2), [0.4, -0.3], [1.0, 0.0])
    assert check.passed, str(check)


def test_check_backprop_detects_a_wrong_derivative():
    wrong = Activation("tanh with wrong derivative", lambda z, xp=np: xp.tanh(z), lambda z: 1 - np.tanh(z))
    check = check_backprop(MLP.random([2, 3, 2], activation=wrong, seed=1), [0.4, -0.3], [1.0, 0.0])
    assert not check.passed
    assert check.err_autograd > 1e-3 and "FAILED" in str(check)


def test_gradient_descent_decreases_the_loss_for_a_small_step():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(8, 2)), rng.normal(size=(8, 2))
    net = MLP.random([2, 2, 2], activation="sigmoid", seed=0)
    small = gradient_descent(net, x, y, lr=0.05, steps=200)
    assert small.monotone and small.first_increase is None
    assert small.losses[-1] < 0.75 * small.losses[0]
    # the first step agrees with the first-order prediction L - lr |grad L|^2 (notes §3.4)
    g = backprop(net, x, y).flat()
    lr = 1e-4
    one = gradient_descent(net, x, y, lr=lr, steps=1).losses
    assert one[1] - one[0] == pytest.approx(-lr * g @ g, rel=1e-3)
    # "small enough" matters: a large step makes the loss grow
    big = gradient_descent(net, x, y, lr=0.3, steps=5)
    assert not big.monotone and big.first_increase == 0
    assert "increased" in str(big)


def test_vanishing_gradient_with_depth():
    depths = [1, 5, 10, 20, 40]
    rep = gradient_norms_by_depth(depths, gain=0.5, seed=0)
    # plain tanh: the first layer's gradient decays exponentially with depth
    assert np.all(np.diff(np.log(rep.plain[1:])) < 0)
    slope = np.polyfit(depths[1:], np.log(rep.plain[1:]), 1)[0]
    assert slope < -0.5  # each extra layer divides it by more than e^0.5 here
    assert rep.plain[-1] / rep.plain[0] < 1e-10
    # the residual network with the same weights keeps it
    assert rep.residual[-1] / rep.residual[0] > 1.0
    assert rep.euler[-1] / rep.euler[0] > 0.1
    assert rep.residual[-1] / rep.plain[-1] > 1e10
    # the measurement is backpropagation's: cross-check the deepest plain network with autograd
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(32, 2)), rng.normal(size=(32, 2))
    net = MLP.random([2] + [16] * 40 + [2], activation="tanh", gain=0.5, seed=1)
    W1_grad = autograd.grad(lambda W: net.loss(x, y, [W] + net.params()[1:], anp))(net.weights[0])
    assert np.linalg.norm(W1_grad) == pytest.approx(rep.plain[-1], rel=1e-10)
    assert "residual" in str(rep)


def test_unit_gain_residual_gradient_grows_and_scaled_branch_bounds_it():
    # with branch scale 1 the residual factors can exceed 1 in norm (exploding);
    # with 1/depth (Euler's step on [0, 1]) the gradient stays of the same size
    rep = gradient_norms_by_depth([2, 20, 80], gain=1.0, seed=0)
    assert rep.residual[-1] > 100 * rep.residual[0]
    assert 0.1 < rep.euler[-1] / rep.euler[0] < 10


def test_errors():
    with pytest.raises(InvalidArgumentError, match="takes 3 inputs"):
        MLP([np.ones((2, 2)), np.ones((2, 3))], [np.zeros(2), np.zeros(2)])
    with pytest.raises(InvalidArgumentError, match="activation"):
        MLP.random([2, 2], activation="swish")
    with pytest.raises(InvalidArgumentError, match="y has shape"):
        backprop(MLP.random([2, 2, 2]), [1.0, 2.0], [1.0])
    with pytest.raises(InvalidTypeError, match="MLP"):
        backprop("net", [1.0], [1.0])
    with pytest.raises(InvalidArgumentError, match="lr"):
        gradient_descent(MLP.random([2, 2, 2]), [1.0, 2.0], [0.0, 0.0], lr=-1)
    with pytest.raises(InvalidArgumentError, match="depths"):
        gradient_norms_by_depth([0, 3])
