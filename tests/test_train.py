"""fit: recovering known parameters, training on the shipped spiral data, the ResNet baseline."""

import importlib.util
from pathlib import Path

import autograd.numpy as anp
import numpy as np
import pytest

import odeverify as ov
from odeverify.errors import IntegrationError, InvalidArgumentError, InvalidTypeError

ROOT = Path(__file__).resolve().parents[1]
RATE = 0.7
TIMES = np.array([0.0, 0.13, 0.5, 0.71, 1.4, 2.0])


@pytest.fixture(scope="module")
def decay():
    """Exact samples of z' = -0.7 z at irregular times: f = w z + b fits them exactly at w = -0.7, b = 0."""
    ts2 = np.array([0.0, 0.3, 0.45, 1.1, 1.9])
    t = np.concatenate([TIMES, ts2])
    y = np.concatenate([1.5 * np.exp(-RATE * TIMES), -0.8 * np.exp(-RATE * ts2)])[:, None]
    return ov.TrajectoryData.from_arrays([0] * len(TIMES) + [1] * len(ts2), t, y)


@pytest.fixture(scope="module")
def spiral():
    data = ov.load_trajectories(ROOT / "data" / "spiral.csv")
    return data.select(range(10)), data.select(range(10, 16))


@pytest.mark.parametrize(
    "optimizer,learning_rate,steps,tol",
    [("gd", 0.5, 40, 1e-4), ("adam", 0.05, 100, 2e-2), ("lbfgs", None, 50, 1e-4)],
)
def test_optimizers_recover_the_decay_rate(decay, optimizer, learning_rate, steps, tol):
    res = ov.fit(
        ov.MLPField((1, 1)), decay, theta0=[0.0, 0.0], optimizer=optimizer, learning_rate=learning_rate,
        steps=steps, rtol=1e-10, atol=1e-10,
    )
    w, b = res.theta
    assert abs(w + RATE) < tol and abs(b) < tol
    assert res.loss_history[0] == res.initial_loss and res.loss_history[-1] == res.final_loss
    assert res.final_loss < 1e-3 * res.initial_loss
    # the initial loss is the mean squared distance of the data from the constant z0 prediction
    sel = decay.mask.copy()
    sel[0] = False
    want0 = np.mean((decay.y[sel] - np.broadcast_to(decay.y[0], decay.y.shape)[sel]) ** 2)
    assert res.initial_loss == pytest.approx(want0, rel=1e-12)


def test_predictions_against_closed_forms(decay):
    # the Neural ODE of f = w z predicts z0 e^{w t}; the ResNet (1 + h w)^round(t/h) z0
    w, h = -0.9, 0.25
    field = ov.MLPField((1, 1))
    ode = ov.fit(field, decay, theta0=[w, 0.0], optimizer="gd", learning_rate=1e-12, steps=1, rtol=1e-11, atol=1e-11)
    res = ov.fit(field, decay, theta0=[w, 0.0], optimizer="gd", learning_rate=1e-12, steps=1, model="resnet", resnet_step=h)
    z0 = decay.y[0, :, 0]
    want_ode = np.exp(w * decay.t)[:, None] * z0
    want_res = (1 + h * w) ** np.rint(decay.t / h)[:, None] * z0
    assert np.max(np.abs(ode.predict(decay)[:, :, 0] - want_ode)) < 1e-9
    assert np.max(np.abs(res.predict(decay)[:, :, 0] - want_res)) < 1e-6  # theta moved by ~1e-12
    sel = decay.mask.copy()
    sel[0] = False
    assert ode.rmse(decay) == pytest.approx(np.sqrt(np.mean((ode.predict(decay)[sel] - decay.y[sel]) ** 2)), rel=1e-12)


def test_resnet_gradient_matches_finite_differences(decay):
    from odeverify._train import _Objective

    field = ov.MLPField((1, 3, 1))
    theta = field.init_params(4)
    obj = _Objective(field, decay, "resnet", 0.2, "RK45", 1e-6, 1e-6, "interpolated")
    _, grad = obj.value_and_grad(theta)
    eps = 1e-6
    fd = np.array([(obj.value(theta + eps * e) - obj.value(theta - eps * e)) / (2 * eps) for e in np.eye(len(theta))])
    assert np.max(np.abs(grad - fd)) < 1e-7 * max(1.0, np.max(np.abs(fd)))


def test_training_on_the_spiral_reduces_the_loss_tenfold(spiral):
    # the test configuration: 10 training trajectories, MLP (2, 16, 2), 40 L-BFGS iterations
    train, _ = spiral
    res = ov.fit(ov.MLPField((2, 16, 2)), train, optimizer="lbfgs", steps=40, seed=0)
    assert res.final_loss <= res.initial_loss / 10, (res.initial_loss, res.final_loss)
    assert np.all(np.diff(res.loss_history) <= 1e-12 * res.initial_loss)  # accepted iterates only descend
    assert len(res.loss_history) == 41 and res.n_gradients >= 41


@pytest.mark.parametrize("steps", [40, pytest.param(150, marks=pytest.mark.slow)])
def test_neural_ode_versus_resnet_on_held_out_trajectories(spiral, steps, capsys):
    # same data, same MLP, same optimizer and initialisation; which wins is reported, not asserted
    train, test = spiral
    field = ov.MLPField((2, 16, 2))
    ode = ov.fit(field, train, optimizer="lbfgs", steps=steps, seed=1)
    resnet = ov.fit(field, train, optimizer="lbfgs", steps=steps, seed=1, model="resnet", resnet_step=0.2)
    for res in (ode, resnet):
        assert res.final_loss < res.initial_loss / 5
        err = res.rmse(test)
        assert np.isfinite(err) and err > 0
    with capsys.disabled():
        print(
            f"\n[{steps} L-BFGS iterations] test RMSE: Neural ODE {ode.rmse(test):.4f}, ResNet (h=0.2) "
            f"{resnet.rmse(test):.4f}; train RMSE: {ode.rmse(train):.4f}, {resnet.rmse(train):.4f}"
        )


def test_callback_print_and_progress(decay, capsys):
    seen = []

    def callback(info):
        seen.append((info.step, info.loss, info.grad_norm))
        return info.step == 3

    field = ov.MLPField((1, 1))
    res = ov.fit(field, decay, theta0=[0.0, 0.0], optimizer="gd", learning_rate=0.5, steps=10, callback=callback)
    assert res.stopped_early and [s for s, _, _ in seen] == [0, 1, 2, 3]
    assert np.allclose([loss for _, loss, _ in seen], res.loss_history)
    ov.fit(field, decay, theta0=[0.0, 0.0], optimizer="adam", steps=4, print_every=2)
    out = capsys.readouterr().out
    assert [line.split()[1] for line in out.splitlines()] == ["0", "2", "4"]
    ov.fit(field, decay, theta0=[0.0, 0.0], optimizer="adam", steps=20, progress=True)
    out = capsys.readouterr()
    if importlib.util.find_spec("tqdm") is None:  # falls back to printing every steps // 10
        assert "step    20" in out.out
    else:
        assert "fit ode/adam" in out.err
    res = ov.fit(field, decay, theta0=[0.0, 0.0], optimizer="lbfgs", steps=10, callback=lambda info: info.step == 2)
    assert res.stopped_early and len(res.loss_history) == 3


def test_plain_function_field(decay):
    res = ov.fit(lambda z, t, th: th[0] * z, decay, theta0=[0.0], optimizer="lbfgs", steps=30, rtol=1e-10, atol=1e-10)
    assert abs(res.theta[0] + RATE) < 1e-4


def test_training_failure_names_the_step(decay):
    # z' = a z^2 blows up at t = 1/(a z0) < 2 once gradient descent makes a large
    with pytest.raises(IntegrationError, match="training failed at step 1:.*smaller learning_rate"):
        ov.fit(lambda z, t, th: th[0] * z * z, decay, theta0=[0.1], optimizer="gd", learning_rate=1e3, steps=5)


def test_fit_validation(decay, spiral):
    field = ov.MLPField((1, 1))
    kw = dict(theta0=[0.0, 0.0])
    with pytest.raises(InvalidTypeError, match="data must be an odeverify.TrajectoryData"):
        ov.fit(field, np.ones((3, 1)))
    with pytest.raises(InvalidArgumentError, match="optimizer='sgd' is not one of"):
        ov.fit(field, decay, optimizer="sgd", **kw)
    with pytest.raises(InvalidArgumentError, match="model='resnet' needs resnet_step"):
        ov.fit(field, decay, model="resnet", **kw)
    with pytest.raises(InvalidArgumentError, match="resnet_step is only used with model='resnet'"):
        ov.fit(field, decay, resnet_step=0.1, **kw)
    with pytest.raises(InvalidArgumentError, match="learning_rate is not used by optimizer='lbfgs'"):
        ov.fit(field, decay, optimizer="lbfgs", learning_rate=0.1, **kw)
    with pytest.raises(InvalidArgumentError, match="learning_rate=-0.1 must be a positive"):
        ov.fit(field, decay, learning_rate=-0.1, **kw)
    with pytest.raises(InvalidArgumentError, match="steps=0 must be at least 1"):
        ov.fit(field, decay, steps=0, **kw)
    with pytest.raises(InvalidArgumentError, match="theta0 is required for a function"):
        ov.fit(lambda z, t, th: -z, decay)
    with pytest.raises(InvalidArgumentError, match="data has 2 states .* but the field has 1"):
        ov.fit(field, spiral[0], **kw)
    late = ov.TrajectoryData.from_arrays([0, 0, 1, 1], [0.0, 1.0, 0.5, 1.0], [[1.0], [0.5], [1.0], [0.7]])
    with pytest.raises(InvalidArgumentError, match=r"trajectories \[1\] start later"):
        ov.fit(field, late, **kw)
    with pytest.raises(InvalidArgumentError, match=r"theta has shape \(3,\)"):
        ov.fit(field, decay, theta0=[0.0, 0.0, 0.0])
    with pytest.raises(InvalidTypeError, match="callback must be callable"):
        ov.fit(field, decay, callback=3, **kw)


def test_autograd_loss_of_fit_matches_numpy(decay):
    # the masked loss written for autograd equals the plain NumPy mean squared error
    from odeverify._train import _Objective

    pred = np.random.default_rng(0).normal(size=decay.y.shape)
    sel = decay.mask.copy()
    sel[0] = False
    want = np.mean((pred[sel] - decay.y[sel]) ** 2)
    assert float(_Objective._loss_for(decay)(anp.array(pred))) == pytest.approx(want, rel=1e-14)
