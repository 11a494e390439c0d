"""Batched finite differences and the per-member field evaluation they run on.

References are independent of the code under test: closed forms from
``odeverify.catalog``, matrix exponentials and their Fréchet derivatives
(``scipy.linalg.expm_frechet``), and per-row ``eval_f``.
"""

import autograd.numpy as anp
import numpy as np
import pytest
import scipy.linalg

import odeverify as ov
from odeverify import catalog
from odeverify.references import FiniteDifferences, compute_reference

RNG = np.random.default_rng(7)


def per_row(field, z, t, theta, complex_=False):
    """The reference: eval_f (or eval_f_complex) member by member."""
    f = field.eval_f_complex if complex_ else field.eval_f
    M = z.shape[0]
    ts = np.broadcast_to(t, (M,))
    ths = np.broadcast_to(theta, (M, field.n_params))
    return np.stack([np.asarray(f(z[m].reshape(-1, field.n_states), float(ts[m]), ths[m])).reshape(z[m].shape)
                     for m in range(M)])


def lotka_volterra():
    return ov.ODESystem.from_strings(["x", "y"], ["a", "b", "c", "d"], ["a*x - b*x*y", "c*x*y - d*y + t/10"])


def pendulum(z, t, theta):
    return anp.stack([z[:, 1], -theta[0] * anp.sin(z[:, 0]) - theta[1] * z[:, 1] + 0.1 * t], axis=1)


FIELDS = {
    "ODESystem": lambda: lotka_volterra(),
    "MLPField": lambda: ov.MLPField((2, 5, 2), time_input=True),
    "CallableField": lambda: ov.CallableField(pendulum, 2, 2),
}


@pytest.mark.parametrize("kind", list(FIELDS))
@pytest.mark.parametrize("shape", [(6,), (6, 3)])
def test_eval_f_each_equals_per_row_evaluation(kind, shape):
    fld = FIELDS[kind]()
    z = RNG.normal(size=shape + (2,))
    thetas = RNG.normal(size=(6, fld.n_params))
    thetas[3] = thetas[1]  # repeated rows are evaluated once by the default, still correctly
    times = RNG.normal(size=6)
    for t in (0.3, times):
        for th in (thetas[0], thetas):
            got = fld.eval_f_each(z, t, th)
            assert got.shape == z.shape
            np.testing.assert_allclose(got, per_row(fld, z, t, th), rtol=1e-14, atol=1e-14)


def test_eval_f_each_complex_equals_per_row():
    fld = lotka_volterra()
    z = RNG.normal(size=(5, 2, 2)) + 1e-3j * RNG.normal(size=(5, 2, 2))
    th = RNG.normal(size=(5, 4)) + 1e-3j * RNG.normal(size=(5, 4))
    t = RNG.normal(size=5)
    np.testing.assert_allclose(fld.eval_f_each_complex(z, t, th), per_row(fld, z, t, th, True), rtol=1e-14)
    # a field without a complex evaluation says so
    assert ov.MLPField((2, 3, 2)).eval_f_each_complex(z, t, np.zeros((5, 17))) is None


def assert_covers(est, exact, *, loose=1e-7):
    """The estimate's errors cover its actual error and claim a useful accuracy."""
    for key, want in exact.items():
        got, claimed = np.asarray(est.values[key]), np.asarray(est.errors[key])
        scale = np.max(np.abs(want))
        err = np.abs(got - want)
        assert np.all(err <= claimed + 1e-14 * scale), (key, err, claimed)
        assert np.max(claimed) <= loose * scale, (key, np.max(claimed) / scale)


@pytest.mark.parametrize("complex_step", [None, False])
@pytest.mark.parametrize("name", ["exponential", "logistic", "forced_decay", "harmonic_oscillator", "linear_system"])
@pytest.mark.parametrize("decreasing", [False, True])
def test_closed_forms_within_the_estimate(name, complex_step, decreasing):
    prob = catalog.get(name)
    if decreasing:
        prob = prob.with_inputs(ts=prob.ts[::-1])
    est = compute_reference(FiniteDifferences(complex_step=complex_step), *prob.args())
    assert est.loss == pytest.approx(prob.exact_loss(), rel=1e-9)
    assert ("complex step" in est.error_model) == (complex_step is None)
    assert_covers(est, prob.exact_gradients())


def linear_batch_problem():
    """dz/dt = A z with theta the entries of A, a batch of B = 3 and a loss that couples the samples."""
    n = 3
    names = [f"a{i}{j}" for i in range(n) for j in range(n)]
    rhs = [" + ".join(f"a{i}{j}*z{j}" for j in range(n)) for i in range(n)]
    system = ov.ODESystem.from_strings([f"z{i}" for i in range(n)], names, rhs)
    A = np.array([[-0.5, 0.8, 0.1], [-0.7, -0.2, 0.3], [0.2, -0.1, -0.4]])
    z0 = np.array([[1.0, -0.5, 0.8], [0.3, 0.9, -0.2], [-0.6, 0.4, 0.5]])
    ts = np.array([0.2, 0.7, 1.3, 2.0])
    W = RNG.normal(size=(len(ts), n, n))

    def loss(zs):  # zs (T, B, n): products of different samples
        return anp.sum(zs[:, 0, :] * anp.einsum("tij,tj->ti", W, zs[:, 1, :])) + anp.sum(zs[:, 2, :] ** 2 * zs[:, 0, :])

    return system, z0, ts, A, W, loss


def linear_batch_exact(z0, ts, A, W):
    """Gradients from matrix exponentials: z_b(t_i) = expm(A (t_i - t0)) z0_b."""
    n, T = A.shape[0], len(ts)
    Es = [scipy.linalg.expm(A * (t - ts[0])) for t in ts]
    zs = np.stack([z0 @ E.T for E in Es])  # (T, B, n)
    g = np.zeros_like(zs)  # dL/dzs
    g[:, 0] = np.einsum("tij,tj->ti", W, zs[:, 1]) + zs[:, 2] ** 2
    g[:, 1] = np.einsum("tij,ti->tj", W, zs[:, 0])
    g[:, 2] = 2 * zs[:, 2] * zs[:, 0]
    gz0 = sum(g[i] @ Es[i] for i in range(T))
    gth = np.zeros((n, n))
    for i in range(1, T):
        tau = ts[i] - ts[0]
        for j in range(n):
            for k in range(n):
                E = np.zeros((n, n))
                E[j, k] = 1.0
                dE = scipy.linalg.expm_frechet(A * tau, E * tau, compute_expm=False)
                gth[j, k] += np.sum(g[i] * (z0 @ dE.T))
    gt = np.array([np.sum(g[i] * (zs[i] @ A.T)) for i in range(T)])
    gt[0] = -sum(np.sum(g[i] * (z0 @ A.T @ Es[i].T)) for i in range(1, T))
    return {"z0": gz0, "theta": gth.ravel(), "t": gt}


@pytest.mark.parametrize("complex_step", [None, False])
def test_batch_with_a_loss_coupling_the_samples(complex_step):
    system, z0, ts, A, W, loss = linear_batch_problem()
    est = compute_reference(FiniteDifferences(complex_step=complex_step), system, z0, ts, A.ravel(), loss)
    assert est.values["z0"].shape == (3, 3)
    assert_covers(est, linear_batch_exact(z0, ts, A, W))


def test_non_analytic_rhs_uses_central_differences():
    # x' = -k |x| - relu(x - 5) with x > 0 stays below 5: x(t) = x0 exp(-k (t - t0))
    system = ov.ODESystem.from_strings("x", "k", ["-k*abs(x) - relu(x - 5)"])
    z0, ts, k = np.array([[1.2], [0.7]]), np.array([0.0, 0.4, 1.1]), np.array([0.9])

    def loss(zs):
        return anp.sum(zs[:, 0] * zs[:, 1]) + anp.sum(zs[-1] ** 2)

    est = compute_reference(FiniteDifferences(), system, z0, ts, k, loss)
    assert "central differences only" in est.notes[0]
    e = np.exp(-k[0] * (ts - ts[0]))  # x_b(t_i) = z0_b e_i
    x = z0[:, 0][None, :] * e[:, None]
    L_of = lambda z0_, k_, ts_: np.sum(  # noqa: E731 - the closed form, differentiated by hand below
        np.prod(z0_[None, :] * np.exp(-k_ * (ts_ - ts_[0]))[:, None], axis=1)) + np.sum((z0_ * np.exp(-k_ * (ts_[-1] - ts_[0]))) ** 2)
    assert est.loss == pytest.approx(L_of(z0[:, 0], k[0], ts), rel=1e-9)
    a, b = z0[:, 0]
    dz0 = np.array([[np.sum(b * e**2) + 2 * a * e[-1] ** 2], [np.sum(a * e**2) + 2 * b * e[-1] ** 2]])
    tau = ts - ts[0]
    dk = np.sum(-2 * tau * a * b * e**2) - 2 * tau[-1] * (a**2 + b**2) * e[-1] ** 2
    dxi = -k[0] * x  # dx/dt
    dt = np.array([np.sum(dxi[i] * x[i][::-1]) for i in range(len(ts))])
    dt[-1] += np.sum(2 * x[-1] * dxi[-1])
    dt[0] = -np.sum(dt[1:])  # autonomous: shifting every time together changes nothing
    assert_covers(est, {"z0": dz0, "theta": np.array([dk]), "t": dt})


@pytest.mark.parametrize("kind", ["MLPField", "CallableField"])
def test_neural_and_callable_fields_agree_with_matrix_exponentials(kind):
    # linear fields, so matrix exponentials give the exact gradients: an MLP (2, 2) is f = W z + b
    A = np.array([[-0.3, 0.9], [-0.8, -0.1]])
    if kind == "MLPField":
        field, theta = ov.MLPField((2, 2)), np.concatenate([A.ravel(), np.zeros(2)])
    else:
        field, theta = ov.CallableField(lambda z, t, th: anp.dot(z, anp.reshape(th, (2, 2)).T), 2, 4), A.ravel()
    z0 = np.array([[1.0, 0.2], [-0.4, 0.7]])
    ts = np.array([0.0, 0.5, 1.2])
    est = compute_reference(FiniteDifferences(), field, z0, ts, theta, lambda zs: anp.sum(zs**3))
    Es = [scipy.linalg.expm(A * t) for t in ts]
    zs = np.stack([z0 @ E.T for E in Es])
    g = 3 * zs**2
    want_z0 = sum(g[i] @ Es[i] for i in range(3))
    want_A = np.zeros((2, 2))
    for i in (1, 2):
        for j in range(2):
            for k in range(2):
                E = np.zeros((2, 2))
                E[j, k] = ts[i]
                want_A[j, k] += np.sum(g[i] * (z0 @ scipy.linalg.expm_frechet(A * ts[i], E, compute_expm=False).T))
    want_t = np.array([np.sum(g[i] * (zs[i] @ A.T)) for i in range(3)])
    want_t[0] = -want_t[1:].sum()
    want = {"z0": want_z0, "theta": want_A.ravel(), "t": want_t}
    if kind == "MLPField":  # df/db = I
        want["theta"] = np.concatenate([want_A.ravel(), sum(g[i] @ scipy.linalg.solve(A, Es[i] - np.eye(2)) for i in (1, 2)).sum(0)])
    assert_covers(est, want)


def test_mlp_with_322_parameters_is_checked_by_default():
    # FD_MAX_INPUTS lets an MLPField((2, 64, 2)) (322 parameters) through the default references
    from odeverify._check import FD_MAX_INPUTS

    assert ov.MLPField((2, 64, 2)).n_params + 2 * 4 + 5 <= FD_MAX_INPUTS


@pytest.mark.slow
def test_a_member_that_blows_up_splits_the_batch():
    # x' = a x^2: x(t) = x0 / (1 - a x0 t) blows up at t = 1 / (a x0); the largest steps (x0 or a + 0.05)
    # blow up before tN = 0.96, so the batch is solved again one difference at a time
    system = ov.ODESystem.from_strings("x", "a", ["a*x**2"])
    ts, x0, a = np.array([0.0, 0.96]), 1.0, 1.0
    est = compute_reference(FiniteDifferences(complex_step=False), system, [x0], ts, [a], lambda zs: zs[-1, 0] ** 2)
    assert any("each difference was solved as its own batch" in note for note in est.notes)
    T = ts[-1]
    x = x0 / (1 - a * x0 * T)
    want = {"z0": np.array([2 * x / (1 - a * x0 * T) ** 2]), "theta": np.array([2 * x * x0**2 * T / (1 - a * x0 * T) ** 2])}
    assert_covers(est, want, loose=1e-5)
    # near the blow-up the time differences are much less accurate, and say so
    assert_covers(est, {"t": np.array([-1.0, 1.0]) * 2 * x * a * x**2}, loose=1e-2)  # dx(T)/dT = a x^2
