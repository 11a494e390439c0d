"""odeverify.adapters.torch: TorchField's products, check_odeint's verdicts, the trust and tolerance models."""

import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torchdiffeq = pytest.importorskip("torchdiffeq")

import autograd  # noqa: E402
import autograd.numpy as anp  # noqa: E402

from odeverify.adapters.torch import TorchField, check_odeint  # noqa: E402
from odeverify.errors import InvalidArgumentError, InvalidTypeError, LossError  # noqa: E402

nn = torch.nn
F64 = torch.float64


class TimeMLP(nn.Module):
    """A model a user writes: its own forward(t, y), time-dependent, parameters in a fixed order."""

    def __init__(self, hidden=4, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.W1 = nn.Parameter(0.7 * torch.randn(hidden, 2, generator=g, dtype=F64))
        self.b1 = nn.Parameter(0.3 * torch.randn(hidden, generator=g, dtype=F64))
        self.c = nn.Parameter(0.5 * torch.randn(hidden, generator=g, dtype=F64))
        self.W2 = nn.Parameter(0.7 * torch.randn(2, hidden, generator=g, dtype=F64))
        self.b2 = nn.Parameter(0.1 * torch.randn(2, generator=g, dtype=F64))

    def forward(self, t, y):
        return torch.tanh(y @ self.W1.T + self.b1 + t * self.c) @ self.W2.T + self.b2


def time_mlp_autograd(z, t, theta, hidden=4):
    """The same function in autograd.numpy, θ in named_parameters() order."""
    sizes = [2 * hidden, hidden, hidden, 2 * hidden, 2]
    W1, b1, c, W2, b2 = np.split(np.arange(sum(sizes)), np.cumsum(sizes)[:-1])
    W1, W2 = anp.reshape(theta[W1], (hidden, 2)), anp.reshape(theta[W2], (2, hidden))
    return anp.dot(anp.tanh(anp.dot(z, W1.T) + theta[b1] + t * theta[c]), W2.T) + theta[b2]


class ODEFunc(nn.Module):
    """The usual torchdiffeq Neural ODE: an nn.Sequential MLP wrapped to take (t, y)."""

    def __init__(self, hidden=8, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.net = nn.Sequential(nn.Linear(2, hidden), nn.Tanh(), nn.Linear(hidden, 2)).double()

    def forward(self, t, y):
        return self.net(y)


def squared(target):
    return lambda solution: ((solution - target) ** 2).sum()


# ---------------------------------------------------------------------------- TorchField products
@pytest.mark.parametrize("B", [1, 3])
def test_products_match_autograd_of_the_same_function(B):
    func = TimeMLP()
    field = TorchField(func, n_states=2)
    rng = np.random.default_rng(B)
    z, a, t = rng.normal(size=(B, 2)), rng.normal(size=(B, 2)), 0.37
    theta = field.theta0
    np.testing.assert_allclose(field.eval_f(z, t, theta), time_mlp_autograd(z, t, theta), rtol=1e-13)

    def inner(z, t, theta):
        return anp.sum(a * time_mlp_autograd(z, t, theta))

    want = [autograd.grad(inner, k)(z, t, theta) for k in (0, 1, 2)]
    f, a_z, a_theta, a_t = field.eval_vjp(a, z, t, theta, with_f=True)
    np.testing.assert_allclose(a_z, want[0], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(a_t, want[1], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(a_theta, want[2], rtol=1e-12, atol=1e-14)
    # another θ (substituted, the module untouched) and one θ per member (the finite differences' batch)
    other = theta + 0.1 * rng.normal(size=theta.shape)
    np.testing.assert_allclose(field.eval_f(z, t, other), time_mlp_autograd(z, t, other), rtol=1e-13)
    np.testing.assert_array_equal(field.theta0, theta)
    thetas = np.stack([theta, other])
    each = field.eval_f_each(np.stack([z, z]), np.array([t, 2 * t]), thetas)
    np.testing.assert_allclose(each[1], time_mlp_autograd(z, 2 * t, other), rtol=1e-13)
    # a time per row
    ts = np.linspace(0, 1, B)
    a_z_rows, a_theta_rows, a_t_rows = field.eval_vjp_at(a, z, ts, theta)
    rows = [field.eval_vjp(a[b : b + 1], z[b : b + 1], ts[b], theta) for b in range(B)]
    np.testing.assert_allclose(a_z_rows, np.concatenate([r[1] for r in rows]), rtol=1e-12)
    np.testing.assert_allclose(a_theta_rows, sum(r[2] for r in rows), rtol=1e-12)
    np.testing.assert_allclose(a_t_rows, sum(r[3] for r in rows), rtol=1e-12)


def test_a_function_written_for_one_state_is_batched_by_vmap():
    k = torch.tensor(2.5, dtype=F64, requires_grad=True)

    def oscillator(t, y):  # one state (n,), as many torchdiffeq users write it
        return torch.stack([y[1], -k * y[0]])

    field = TorchField(oscillator, params=[k], n_states=2)
    z = np.array([[1.0, 0.0], [0.5, 2.0], [-1.0, 3.0]])
    np.testing.assert_allclose(field.eval_f(z, 0.0, np.array([4.0])), np.stack([z[:, 1], -4.0 * z[:, 0]], 1))
    _, a_z, a_theta, _ = field.eval_vjp(np.ones_like(z), z, 0.0, np.array([4.0]))
    np.testing.assert_allclose(a_z, np.stack([-4.0 * np.ones(3), np.ones(3)], 1))
    np.testing.assert_allclose(a_theta, [-z[:, 0].sum()])
    assert k.detach().item() == 2.5  # the closure's tensor holds its own value again


def test_theta_order_and_names_follow_named_parameters():
    func = ODEFunc(hidden=3)
    field = TorchField(func)
    assert field.n_states == 2 and field.n_params == 3 * 2 + 3 + 2 * 3 + 2
    assert field.param_names[:3] == ("net.0.weight[0, 0]", "net.0.weight[0, 1]", "net.0.weight[1, 0]")
    assert field.param_names[6] == "net.0.bias[0]" and field.param_names[-1] == "net.2.bias[1]"
    want = np.concatenate([p.detach().numpy().ravel() for p in func.parameters()])
    np.testing.assert_array_equal(field.theta0, want)
    only = TorchField(func, params=[func.net[2].bias])
    assert only.param_names == ("net.2.bias[0]", "net.2.bias[1]")


# ---------------------------------------------------------------------------- verdicts
@pytest.mark.parametrize("solve", ["odeint", "odeint_adjoint"])
def test_a_correct_neural_ode_passes_at_tight_tolerances_including_t(solve):
    func = ODEFunc()
    y0 = torch.tensor([1.0, -0.5], dtype=F64)
    t = torch.linspace(0.0, 1.0, 4, dtype=F64)
    report = check_odeint(func, y0, t, squared(torch.tensor([0.5, 0.2], dtype=F64)),
                          odeint=getattr(torchdiffeq, solve), rtol=1e-10, atol=1e-10)
    assert report.passed, str(report)
    assert report.quantities == ("z0", "theta", "t")
    assert {r.quantity for r in report.rows if r.status == "ok"} == {"z0", "theta", "t"}
    assert any("(net.0.weight[2, 1])" in r.label for r in report.rows)
    assert "finite differences used f's values only" in report.trust_model
    assert report.tolerance_model.startswith("candidate judged at solver tolerance rtol=1e-10")


def test_a_batch_and_a_user_module_with_time_pass_at_the_default_rtol_1e_5_of_the_peer():
    # the case: a correct odeint_adjoint model solved at rtol 1e-5 is judged at what 1e-5 delivers
    func = TimeMLP()
    y0 = torch.tensor([[1.0, -0.5], [0.2, 0.8]], dtype=F64)
    t = torch.linspace(0.0, 2.0, 5, dtype=F64)
    report = check_odeint(func, y0, t, squared(torch.zeros(2, dtype=F64)), rtol=1e-5, atol=1e-5)
    assert report.passed, str(report)
    assert "allowed error = max(check tol, 4 × odeverify's own error at that tolerance)" in report.tolerance_model


def test_a_planted_bug_in_a_custom_backward_is_never_passed():
    class BadTanh(torch.autograd.Function):
        generate_vmap_rule = True

        @staticmethod
        def forward(x):
            return torch.tanh(x)

        @staticmethod
        def setup_context(ctx, inputs, output):
            ctx.save_for_backward(output)

        @staticmethod
        def backward(ctx, g):
            (y,) = ctx.saved_tensors
            return g * (1 - y * y) * 1.05  # the planted error: 5% too large

    class Model(ODEFunc):
        def forward(self, t, y):
            lin1, _, lin2 = self.net
            return lin2(BadTanh.apply(lin1(y)))

    y0 = torch.tensor([1.0, -0.5], dtype=F64)
    t = torch.linspace(0.0, 1.0, 3, dtype=F64)
    report = check_odeint(Model(hidden=3), y0, t, squared(torch.zeros(2, dtype=F64)), odeint=torchdiffeq.odeint,
                          rtol=1e-10, atol=1e-10)
    assert not report.passed
    # every reference but finite differences runs the same wrong backward: they agree with the candidate
    untrusted = [r for r in report.rows if "derivatives of the user's code" in r.note]
    assert untrusted and all(r.status == "inconclusive" for r in untrusted)
    assert any("finite differences, which use f's values only, disagree" in r.note for r in untrusted)


def test_long_horizon_backsolve_drift_fails_with_the_worst_entry_named():
    class VanDerPol(nn.Module):
        def __init__(self):
            super().__init__()
            self.mu = nn.Parameter(torch.tensor(1.0, dtype=F64))

        def forward(self, t, y):
            x, v = y[..., 0], y[..., 1]
            return torch.stack([v, self.mu * (1 - x**2) * v - x], dim=-1)

    y0 = torch.tensor([1.0, 1.0], dtype=F64)
    t = torch.linspace(0.0, 30.0, 5, dtype=F64)
    report = check_odeint(VanDerPol(), y0, t, lambda s: 0.5 * (s**2).sum(), rtol=1e-6, atol=1e-6,
                          references=["adjoint", "fd"])
    assert not report.passed
    worst = report.worst()
    assert worst.status == "FAIL" and worst.label in report.summary
    assert worst.diff > 2 * worst.tolerance  # beyond what rtol=1e-6 delivers, not at its edge


# ---------------------------------------------------------------------------- bad input
def test_bad_inputs_raise_clear_errors():
    y0, t = torch.tensor([1.0, 0.0], dtype=F64), torch.linspace(0, 1, 3, dtype=F64)
    with pytest.raises(InvalidTypeError, match=r"func\(t, y\).*forward\(self, t, y\)"):
        TorchField(nn.Sequential(nn.Linear(2, 2)))
    with pytest.raises(LossError, match=r"shape \(3, 2\).*not a scalar.*\.sum\(\)"):
        check_odeint(ODEFunc(), y0, t, lambda s: s ** 2, odeint=torchdiffeq.odeint)

    class NoParams(nn.Module):
        def forward(self, t, y):
            return -y

    with pytest.raises(InvalidArgumentError, match=r"no parameters.*params=\(\)"):
        TorchField(NoParams(), n_states=2)
    frozen = ODEFunc()
    frozen.net[0].bias.requires_grad_(False)
    with pytest.raises(InvalidArgumentError, match=r"net\.0\.bias .*requires_grad=False.*p\.requires_grad"):
        TorchField(frozen)
    with pytest.raises(InvalidTypeError, match=r"params\[0\] is a torch.float32 tensor.*float64"):
        TorchField(lambda t, y: y, params=[torch.ones(1, requires_grad=True)], n_states=2)


def test_a_float32_module_is_checked_in_a_float64_copy_and_left_unchanged():
    func = ODEFunc().float()
    before = [p.detach().clone() for p in func.parameters()]
    y0, t = torch.tensor([1.0, -0.5]), torch.linspace(0, 0.5, 3)
    report = check_odeint(func, y0, t, squared(torch.zeros(2)), odeint=torchdiffeq.odeint, rtol=1e-10, atol=1e-10)
    assert report.passed, str(report)
    assert any("float32 parameters were copied to float64" in w for w in report.warnings)
    assert all(p.dtype == torch.float32 and torch.equal(p, b) for p, b in zip(func.parameters(), before))


def test_importing_odeverify_does_not_import_torch():
    code = ("import sys, odeverify, odeverify.adapters, odeverify.cli\n"
            "try:\n    odeverify.cli.main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "False"


# ---------------------------------------------------------------------------- found in QA (issue 12)
def test_bad_solve_arguments_get_odeverify_errors_not_torchdiffeq_tracebacks():
    func, y0, t = ODEFunc(), torch.tensor([1.0, 0.0], dtype=F64), torch.linspace(0, 1, 3, dtype=F64)
    loss = squared(torch.zeros(2))
    for bad in (torch.tensor([0.0, 1.0, 0.5]), torch.tensor(1.0), torch.tensor([0.0])):
        with pytest.raises(InvalidArgumentError, match=r"t = .*strictly increasing \(or decreasing\)"):
            check_odeint(func, y0, bad, loss)
    with pytest.raises(InvalidArgumentError, match=r"y0 has the 3 states"):
        check_odeint(func, torch.ones(3, dtype=F64), t, loss)
    with pytest.raises(InvalidArgumentError, match=r"returned shape \(1,\) for y of shape \(2,\)"):
        check_odeint(lambda s, y: y[..., :1], y0, t, loss)
    with pytest.raises(InvalidTypeError, match=r"returned torch.float32 for float64 y"):
        check_odeint(lambda s, y: y.float(), y0, t, loss)
    with pytest.raises(InvalidArgumentError, match=r"method='nope'.*failed: ValueError: Invalid method"):
        check_odeint(func, y0, t, loss, method="nope")
    with pytest.raises(InvalidArgumentError, match=r"rtoll=1e-05.*unexpected keyword argument"):
        check_odeint(func, y0, t, loss, rtoll=1e-5)
    with pytest.raises(LossError, match=r"loss raised IndexError.*shape \(3, 2\)"):
        check_odeint(func, y0, t, lambda s: s[10].sum())


class _ScaledTimeGradient(torch.autograd.Function):
    """Identity on t whose backward multiplies the gradient by 1.5: a planted 50% error in ∂L/∂t."""

    @staticmethod
    def forward(ctx, t):
        return t.clone()

    @staticmethod
    def backward(ctx, g):
        return 1.5 * g


def test_time_gradient_through_fixed_steps_is_inconclusive_but_a_wrong_one_still_fails():
    # torchdiffeq's fixed-step rk4 interpolates linearly between grid points (step 0.01) at t = 0.2505: ∂L/∂t_1
    # is then g_i times a secant's slope, not g_i f(z(t_i)); the values and ∂L/∂z0, ∂L/∂θ are fine
    func, y0 = ODEFunc(hidden=4, seed=1), torch.tensor([1.0, -0.5], dtype=F64)
    t = torch.tensor([0.0, 0.2505, 0.5], dtype=F64)
    loss, options = squared(torch.zeros(2)), {"method": "rk4", "options": {"step_size": 0.01}}
    report = check_odeint(func, y0, t, loss, odeint=torchdiffeq.odeint, references=["adjoint", "fd"], **options)
    assert not report.passed
    times = [r for r in report.rows if r.quantity == "t"]
    off = [r for r in times if r.diff > r.tolerance]  # judged by the check's own tolerance: really off
    assert off and all(r.status == "inconclusive" and "interpolant" in r.note for r in off), str(report)
    assert all(r.status == "ok" for r in report.rows if r.quantity in ("z0", "theta")), str(report)
    assert "jump term" not in report.summary

    def planted(f, y0, t, **kwargs):
        return torchdiffeq.odeint(f, y0, _ScaledTimeGradient.apply(t), **kwargs)

    report = check_odeint(func, y0, t, loss, odeint=planted, references=["adjoint", "fd"], **options)
    assert not report.passed and report.worst().quantity == "t" and report.worst().status == "FAIL", str(report)
