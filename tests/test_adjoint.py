"""adjoint_gradients against closed forms and independent references."""

import autograd.numpy as anp
import numpy as np
import pytest
from helpers import entry_rel_err, forced_decay_reference, linear_reference, rel_err

import odeverify as ov

MODES = ["interpolated", "backsolve", "quadrature"]


@pytest.fixture(scope="module")
def growth():
    return ov.ODESystem.from_strings("x", "a", ["a*x"])


def test_notes_example_exp(growth):
    # dx/dt = x, x(0) = 1 gives e^t (notes 2.2)
    sol = ov.solve(growth, [1.0], np.linspace(0, 2, 5), [1.0], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(sol.z[:, 0], np.exp(np.linspace(0, 2, 5)), rtol=1e-10)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("x0,a,t0,T", [(1.0, 1.0, 0.0, 1.0), (1.3, 0.7, 0.2, 1.1), (-0.4, -1.5, 1.0, 3.0), (2.0, 0.3, 2.0, -1.0)])
def test_growth_all_four_gradients(growth, mode, x0, a, t0, T):
    # L = x(T)^2 = x0^2 exp(2 a (T - t0))
    res = ov.adjoint_gradients(
        growth, [x0], [t0, T], [a], lambda zs: zs[-1, 0] ** 2, mode=mode, rtol=1e-10, atol=1e-10
    )
    L = x0**2 * np.exp(2 * a * (T - t0))
    assert res.loss == pytest.approx(L, rel=1e-9)
    want = {
        "x0": 2 * x0 * np.exp(2 * a * (T - t0)),
        "a": 2 * (T - t0) * L,
        "t0": -2 * a * L,
        "T": 2 * a * L,
    }
    got = {"x0": res.z0[0], "a": res.theta[0], "t0": res.t[0], "T": res.t[1]}
    for key in want:
        assert got[key] == pytest.approx(want[key], rel=1e-8), key


METHODS = ["DOP853", "dopri5", "tsit5"]  # SciPy's default and the in-house explicit pairs


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("decreasing", [False, True])
def test_linear_system_intermediate_times(method, mode, decreasing):
    rng = np.random.default_rng(3)
    A = np.array([[-0.3, 1.1, 0.2], [-0.9, -0.2, 0.4], [0.1, -0.5, -0.6]])
    z0 = np.array([1.0, -0.5, 0.8])
    ts = np.array([0.0, 0.3, 0.9, 1.4, 2.0])
    if decreasing:
        ts = ts[::-1] - 1.0
    c = rng.normal(size=(len(ts), 3))
    names = [f"a{i}{j}" for i in range(3) for j in range(3)]
    rhs = [" + ".join(f"a{i}{j}*z{j}" for j in range(3)) for i in range(3)]
    sys_ = ov.ODESystem.from_strings("z0 z1 z2", names, rhs)

    def loss(zs):
        return anp.sum(c * zs) + 0.5 * anp.sum(zs**2)

    res = ov.adjoint_gradients(sys_, z0, ts, A.ravel(), loss, mode=mode, method=method, rtol=1e-11, atol=1e-11)
    assert res.method == method
    L, dz0, dA, dts = linear_reference(A, z0, ts, c)
    assert res.loss == pytest.approx(L, rel=1e-9)
    assert entry_rel_err(res.z0, dz0) < 1e-8
    assert entry_rel_err(res.theta, dA) < 1e-8
    assert entry_rel_err(res.t, dts) < 1e-8


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("mode", MODES)
def test_time_dependent_rhs(method, mode):
    # exercises the df/dt path: dL/dt0 needs the integral of a * df/dt
    sys_ = ov.ODESystem.from_strings("x", "k w", ["-k*x + sin(w*t)"])
    k, w, x0 = 0.8, 2.5, 1.2
    ts = np.array([0.3, 1.0, 1.7, 2.9])
    weights = np.array([0.5, 1.0, -0.7, 2.0])
    L, dx0, dth, dts = forced_decay_reference(k, w, x0, ts, weights)

    def loss(zs):
        return anp.sum(weights * zs[:, 0] ** 2)

    res = ov.adjoint_gradients(sys_, [x0], ts, [k, w], loss, mode=mode, method=method, rtol=1e-11, atol=1e-11)
    assert res.loss == pytest.approx(L, rel=1e-9)
    assert res.z0[0] == pytest.approx(dx0, rel=1e-8)
    assert entry_rel_err(res.theta, dth) < 1e-8
    assert entry_rel_err(res.t, dts) < 1e-8
    # the integrated a_t and the identity -a(t0+) f(z0, t0) agree
    assert res.diagnostics["t0_discrepancy"] < 1e-8 * abs(dts[0])


def _fd_gradient(fun, x, rel_step=1e-5):
    """Central differences with a 4th-order Richardson step: fun(x) -> float."""
    x = np.asarray(x, float)
    g = np.zeros_like(x)
    for i in range(x.size):
        h = rel_step * max(1.0, abs(x[i]))
        e = np.zeros_like(x)
        e[i] = h
        d1 = (fun(x + e) - fun(x - e)) / (2 * h)
        d2 = (fun(x + 2 * e) - fun(x - 2 * e)) / (4 * h)
        g[i] = (4 * d1 - d2) / 3
    return g


@pytest.mark.parametrize("method", ["Radau", "BDF"])
def test_stiff_van_der_pol(method):
    vdp = ov.ODESystem.from_strings("x y", "mu", ["y", "mu*(1 - x**2)*y - x"])
    mu = 60.0
    z0 = np.array([2.0, 0.0])
    ts = np.array([0.0, 0.4, 1.0])

    def loss(zs):
        return anp.sum(zs[:, 0] ** 2) + 0.01 * anp.sum(zs[:, 1])

    res = ov.adjoint_gradients(vdp, z0, ts, [mu], loss, mode="interpolated", method=method, rtol=1e-9, atol=1e-9)

    def L_of(z0_, mu_, ts_):
        sol = ov.solve(vdp, z0_, ts_, [mu_], method="Radau", rtol=1e-13, atol=1e-13)
        return float(np.sum(sol.z[:, 0] ** 2) + 0.01 * np.sum(sol.z[:, 1]))

    ref_z0 = _fd_gradient(lambda v: L_of(v, mu, ts), z0)
    ref_mu = _fd_gradient(lambda v: L_of(z0, v[0], ts), [mu])
    ref_t = _fd_gradient(lambda v: L_of(z0, mu, v), ts, rel_step=1e-4)
    # the stiff solve and the difference quotients both carry ~1e-7 errors
    assert rel_err(res.z0, ref_z0) < 1e-5
    assert rel_err(res.theta, ref_mu) < 1e-5
    assert rel_err(res.t, ref_t) < 1e-5
    assert res.stats.njev_backward > 0  # the analytic Jacobian was used


def _lv_batch_problem():
    lv = ov.ODESystem.from_strings("x y", "a b c d", ["a*x - b*x*y", "c*x*y - d*y"])
    theta = np.array([1.2, 0.7, 0.9, 1.1])
    rng = np.random.default_rng(7)
    Z0 = rng.uniform(0.5, 2.0, size=(6, 2))
    ts = np.array([0.0, 0.5, 1.3, 2.0])
    target = rng.normal(size=(len(ts), 2))
    return lv, theta, Z0, ts, target


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("mode", MODES)
def test_batch_equals_samples(method, mode):
    lv, theta, Z0, ts, target = _lv_batch_problem()

    def loss_batch(zs):  # (T, B, n)
        return anp.sum((zs - target[:, None, :]) ** 2 * np.arange(1, 3))

    def loss_one(zs):  # (T, n)
        return anp.sum((zs - target) ** 2 * np.arange(1, 3))

    kw = dict(mode=mode, method=method, rtol=1e-11, atol=1e-11)
    batch = ov.adjoint_gradients(lv, Z0, ts, theta, loss_batch, **kw)
    singles = [ov.adjoint_gradients(lv, z, ts, theta, loss_one, **kw) for z in Z0]
    assert batch.z0.shape == Z0.shape
    assert batch.zs.shape == (len(ts), 6, 2)
    assert batch.loss == pytest.approx(sum(s.loss for s in singles), rel=1e-10)
    assert rel_err(batch.z0, [s.z0 for s in singles]) < 1e-8
    assert rel_err(batch.theta, sum(s.theta for s in singles)) < 1e-8
    assert rel_err(batch.t, sum(s.t for s in singles)) < 1e-8


def test_loss_at_initial_time_is_not_skipped(growth):
    # L = x(t0)^2 + x(T): the t0 term enters dL/dz0 directly
    res = ov.adjoint_gradients(
        growth, [1.5], [0.0, 1.0], [0.4], lambda zs: zs[0, 0] ** 2 + zs[1, 0], rtol=1e-11, atol=1e-11
    )
    assert res.z0[0] == pytest.approx(2 * 1.5 + np.exp(0.4), rel=1e-9)
    # the t0 term does not move with t0: dL/dt0 = -a x(T)
    assert res.t[0] == pytest.approx(-0.4 * 1.5 * np.exp(0.4), rel=1e-9)


def test_backsolve_reports_reconstruction(growth):
    res = ov.adjoint_gradients(growth, [1.0], [0.0, 1.0], [1.0], lambda zs: zs[-1, 0], mode="backsolve")
    assert res.z0_reconstruction_error is not None
    assert 0 <= res.z0_reconstruction_error < 1e-6
    assert res.backsolve_drift.shape == (1,)
    interp = ov.adjoint_gradients(growth, [1.0], [0.0, 1.0], [1.0], lambda zs: zs[-1, 0])
    assert interp.z0_reconstruction_error is None


def test_backsolve_drift_warns_when_unstable():
    # dx/dt = k x with large k: backwards, errors grow like exp(k T)
    fast = ov.ODESystem.from_strings("x", "k", ["-k*x"])
    with pytest.warns(ov.BacksolveDriftWarning, match="interpolated"):
        res = ov.adjoint_gradients(fast, [1.0], [0.0, 8.0], [5.0], lambda zs: zs[-1, 0], mode="backsolve", rtol=1e-6, atol=1e-12)
    assert res.z0_reconstruction_error > 1e-3


def test_statistics(growth):
    res = ov.adjoint_gradients(growth, [1.0], [0.0, 0.5, 1.0], [1.0], lambda zs: anp.sum(zs))
    s = res.stats
    assert s.nfev_forward > 0 and s.nfev_backward > 0
    assert s.nsteps_forward > 0 and s.nsteps_backward >= 2  # at least one step per interval
    d = res.to_dict()
    assert set(d) >= {"loss", "z0", "theta", "t", "stats"}


def test_no_parameters():
    sys_ = ov.ODESystem.from_strings("x", "", ["-x + t"])
    res = ov.adjoint_gradients(sys_, [1.0], [0.0, 1.0], None, lambda zs: zs[-1, 0], rtol=1e-11, atol=1e-11)
    # x(T) = T - 1 + (x0 + 1 - t0) e^{-(T - t0)}
    assert res.theta.shape == (0,)
    assert res.z0[0] == pytest.approx(np.exp(-1.0), rel=1e-9)
    # d/dt0 of x(T) = -e^{-(T-t0)} + (x0 + 1 - t0) e^{-(T-t0)} at t0 = 0, x0 = 1
    assert res.t[0] == pytest.approx(np.exp(-1.0), rel=1e-8)
    assert res.t[1] == pytest.approx(1 - 2 * np.exp(-1.0), rel=1e-8)


# ---------------------------------------------------------------------------- in-house solvers (dopri5, tsit5)
from odeverify._field import AbstractVectorField  # noqa: E402

FAST = ["dopri5", "tsit5"]


@pytest.mark.parametrize("mode", MODES)
def test_mixed_norm_keeps_the_parameter_gradient_accurate_in_a_batch(mode, monkeypatch):
    # dx/dt = k sin(w t) with L = sum_i c_i x(t_i): a is constant between the
    # observation times, so all the backward error is in the quadrature of
    # a_theta (and a_t). A batch of B equal samples has B*n error-free components
    # of a: a plain RMS over the backward state would divide the a_theta error
    # by sqrt(B n) and let it grow; the mixed norm (max over the groups z, a,
    # a_theta, a_t) keeps it where one sample has it.
    import odeverify._rk as rk

    osc = ov.ODESystem.from_strings("x", "k w", ["k*sin(w*t)"])
    k, w, x0 = 1.3, 6.0, 0.5
    ts = np.array([0.0, 2.0, 4.0])
    c = np.array([0.0, 1.0, -2.0])
    g = (1 - np.cos(w * ts)) / w  # x(t) = x0 + k g(t)
    exact = np.array([np.sum(c * g), np.sum(c * k * (ts * np.sin(w * ts) / w - g / w))])
    B = 256

    def errors():
        kw = dict(mode=mode, method="tsit5", rtol=1e-6, atol=1e-9)
        one = ov.adjoint_gradients(osc, [x0], ts, [k, w], lambda zs: anp.sum(c[:, None] * zs), **kw)
        many = ov.adjoint_gradients(osc, np.full((B, 1), x0), ts, [k, w], lambda zs: anp.sum(c[:, None, None] * zs), **kw)
        return rel_err(one.theta, exact), rel_err(many.theta / B, exact)

    err_one, err_many = errors()
    assert err_one < 1e-6 and err_many < 1e-6
    assert err_many < 5 * err_one
    if mode == "quadrature":  # a_theta is not in the backward state: no norm can dilute its error
        return
    # the same solve with a plain RMS norm: the batch dilutes the a_theta error
    bounds = rk._group_bounds
    monkeypatch.setattr(rk, "_group_bounds", lambda size, groups: bounds(size, None))
    _, err_many_plain = errors()
    assert err_many_plain > 3 * err_many


class _HandWrittenLV(AbstractVectorField):
    """Lotka-Volterra with hand-written VJPs: a field that is not an ODESystem."""

    n_states, n_params = 2, 4

    def eval_f(self, z, t, theta):
        a, b, c, d = theta
        x, y = z[:, 0], z[:, 1]
        return np.stack([a * x - b * x * y, c * x * y - d * y], axis=1)

    def eval_vjp(self, a_, z, t, theta, *, with_f=False):
        a, b, c, d = theta
        x, y = z[:, 0], z[:, 1]
        p, q = a_[:, 0], a_[:, 1]
        az = np.stack([p * (a - b * y) + q * c * y, -p * b * x + q * (c * x - d)], axis=1)
        ath = np.array([np.sum(p * x), -np.sum(p * x * y), np.sum(q * x * y), -np.sum(q * y)])
        return (self.eval_f(z, t, theta) if with_f else None), az, ath, 0.0

    def f_autograd(self, z, t, theta):
        a, b, c, d = theta
        x, y = z[..., 0], z[..., 1]
        return anp.stack([a * x - b * x * y, c * x * y - d * y], axis=-1)


@pytest.mark.parametrize("method", FAST)
@pytest.mark.parametrize("mode", MODES)
def test_in_house_methods_with_a_field_that_is_not_an_odesystem(method, mode):
    field = _HandWrittenLV()
    lv, theta, Z0, ts, target = _lv_batch_problem()
    loss = lambda zs: anp.sum((zs - target[:, None, :]) ** 2)  # noqa: E731
    kw = dict(mode=mode, method=method, rtol=1e-10, atol=1e-10)
    got = ov.adjoint_gradients(field, Z0, ts, theta, loss, **kw)
    want = ov.adjoint_gradients(lv, Z0, ts, theta, loss, **kw)
    assert rel_err(got.z0, want.z0) < 1e-8
    assert rel_err(got.theta, want.theta) < 1e-8




# ---------------------------------------------------------------------------- quadrature mode
QUAD_METHODS = ["DOP853", "dopri5", "tsit5", "Radau"]


def _linear_problem(decreasing):
    A = np.array([[-0.3, 1.1, 0.2], [-0.9, -0.2, 0.4], [0.1, -0.5, -0.6]])
    ts = np.array([0.0, 0.3, 0.9, 1.4, 2.0])
    if decreasing:
        ts = ts[::-1] - 1.0
    names = [f"a{i}{j}" for i in range(3) for j in range(3)]
    rhs = [" + ".join(f"a{i}{j}*z{j}" for j in range(3)) for i in range(3)]
    return ov.ODESystem.from_strings("z0 z1 z2", names, rhs), A, ts


@pytest.mark.parametrize("method", QUAD_METHODS)
@pytest.mark.parametrize("decreasing", [False, True])
def test_quadrature_linear_system_against_expm_frechet(method, decreasing):
    sys_, A, ts = _linear_problem(decreasing)
    z0 = np.array([1.0, -0.5, 0.8])
    c = np.random.default_rng(3).normal(size=(len(ts), 3))
    res = ov.adjoint_gradients(
        sys_, z0, ts, A.ravel(), lambda zs: anp.sum(c * zs) + 0.5 * anp.sum(zs**2),
        mode="quadrature", method=method, rtol=1e-11, atol=1e-11,
    )
    L, dz0, dA, dts = linear_reference(A, z0, ts, c)
    assert res.loss == pytest.approx(L, rel=1e-9)
    assert entry_rel_err(res.z0, dz0) < 1e-8
    assert entry_rel_err(res.theta, dA) < 1e-8
    assert entry_rel_err(res.t, dts) < 1e-8
    # the backward system is a alone: n states (not 2n + p + 1 or n + p + 1)
    assert res.stats.backward_state_size == 3
    assert res.stats.nquadrature >= res.stats.nsteps_backward


@pytest.mark.parametrize("method", QUAD_METHODS)
@pytest.mark.parametrize("decreasing", [False, True])
def test_quadrature_forced_decay_every_time_gradient(method, decreasing):
    # non-autonomous: dL/dt0 needs the quadrature of a df/dt plus the jumps
    sys_ = ov.ODESystem.from_strings("x", "k w", ["-k*x + sin(w*t)"])
    k, w, x0 = 0.8, 2.5, 1.2
    ts = np.array([0.3, 1.0, 1.7, 2.9])
    if decreasing:
        ts = ts[::-1]
    weights = np.array([0.5, 1.0, -0.7, 2.0])
    L, dx0, dth, dts = forced_decay_reference(k, w, x0, ts, weights)
    res = ov.adjoint_gradients(sys_, [x0], ts, [k, w], lambda zs: anp.sum(weights * zs[:, 0] ** 2),
                               mode="quadrature", method=method, rtol=1e-11, atol=1e-11)
    assert res.loss == pytest.approx(L, rel=1e-9)
    assert res.z0[0] == pytest.approx(dx0, rel=1e-8)
    assert entry_rel_err(res.theta, dth) < 1e-8
    assert entry_rel_err(res.t, dts) < 1e-8
    assert res.diagnostics["t0_discrepancy"] < 1e-8 * abs(dts[0])


@pytest.mark.parametrize("method", QUAD_METHODS)
def test_quadrature_batch_of_three_against_expm_frechet(method):
    sys_, A, ts = _linear_problem(False)
    Z0 = np.array([[1.0, -0.5, 0.8], [0.2, 0.4, -1.1], [-0.7, 0.9, 0.3]])
    c = np.random.default_rng(5).normal(size=(len(ts), 3, 3))  # (T, B, n)
    res = ov.adjoint_gradients(sys_, Z0, ts, A.ravel(), lambda zs: anp.sum(c * zs) + 0.5 * anp.sum(zs**2),
                               mode="quadrature", method=method, rtol=1e-11, atol=1e-11)
    refs = [linear_reference(A, Z0[b], ts, c[:, b, :]) for b in range(3)]
    assert res.loss == pytest.approx(sum(r[0] for r in refs), rel=1e-9)
    assert entry_rel_err(res.z0, [r[1] for r in refs]) < 1e-8
    assert entry_rel_err(res.theta, sum(r[2] for r in refs)) < 1e-8
    assert entry_rel_err(res.t, sum(r[3] for r in refs)) < 1e-8
    assert res.stats.backward_state_size == 9  # B n


@pytest.mark.parametrize("method", QUAD_METHODS)
def test_quadrature_loss_at_t0_only(method):
    # L = x(t0)^2 on dx/dt = a x: a(t) = 0 after t0, so dL/da = 0 and dL/dt0 = 0
    sys_ = ov.ODESystem.from_strings("x", "a", ["a*x"])
    res = ov.adjoint_gradients(sys_, [1.5], [0.0, 0.7, 1.0], [0.4], lambda zs: zs[0, 0] ** 2,
                               mode="quadrature", method=method, rtol=1e-11, atol=1e-11)
    assert res.z0[0] == pytest.approx(3.0, rel=1e-12)
    assert res.theta[0] == 0.0
    assert np.all(res.t == 0.0)


@pytest.mark.parametrize("method", ["DOP853", "tsit5", "Radau"])
@pytest.mark.parametrize("time_input", [False, True])
def test_quadrature_mlp_field_matches_interpolated(method, time_input):
    field = ov.MLPField((2, 8, 2), time_input=time_input)
    theta = field.init_params(np.random.default_rng(0))
    Z0 = np.random.default_rng(1).normal(size=(3, 2))
    ts = np.array([0.0, 0.4, 1.1, 1.5])
    loss = lambda zs: anp.sum(zs**2) + anp.sum(zs[1] * zs[2])  # noqa: E731
    kw = dict(method=method, rtol=1e-11, atol=1e-11)
    quad = ov.adjoint_gradients(field, Z0, ts, theta, loss, mode="quadrature", **kw)
    interp = ov.adjoint_gradients(field, Z0, ts, theta, loss, mode="interpolated", **kw)
    assert rel_err(quad.z0, interp.z0) < 1e-8
    assert rel_err(quad.theta, interp.theta) < 1e-8
    assert rel_err(quad.t, interp.t) < 1e-8
    assert quad.stats.backward_state_size == 6
    assert interp.stats.backward_state_size == 6 + field.n_params + 1


def test_quadrature_resolves_f_theta_where_a_is_constant():
    # dx/dt = k sin(w t), L = sum c_i x(t_i): a is constant between the observation times, so the
    # backward steps are long; the quadrature also splits at the forward steps, which resolve sin(w t)
    osc = ov.ODESystem.from_strings("x", "k w", ["k*sin(w*t)"])
    k, w = 1.3, 6.0
    ts = np.array([0.0, 2.0, 4.0])
    c = np.array([0.0, 1.0, -2.0])
    g = (1 - np.cos(w * ts)) / w  # x(t) = x0 + k g(t)
    exact = np.array([np.sum(c * g), np.sum(c * k * (ts * np.sin(w * ts) / w - g / w))])
    res = ov.adjoint_gradients(osc, [0.5], ts, [k, w], lambda zs: anp.sum(c[:, None] * zs),
                               mode="quadrature", method="DOP853", rtol=1e-11, atol=1e-11)
    assert entry_rel_err(res.theta, exact) < 1e-8


def test_gauss_nodes_follow_the_method_order():
    from odeverify._adjoint import gauss_legendre_nodes

    for method, G in [("RK23", 3), ("dopri5", 4), ("DOP853", 5), ("LSODA", 7)]:
        x, w = gauss_legendre_nodes(method)
        assert x.shape == w.shape == (G,)
        # exact for degree 2G - 1 on [0, 1]: the integral of s^k is 1 / (k + 1)
        for deg in range(2 * G):
            assert np.dot(w, x**deg) == pytest.approx(1.0 / (deg + 1), rel=1e-13)


def test_quadrature_mode_is_validated(growth):
    with pytest.raises(ov.errors.InvalidArgumentError, match="quadrature"):
        ov.adjoint_gradients(growth, [1.0], [0.0, 1.0], [1.0], lambda zs: zs[-1, 0], mode="quadratur")


@pytest.mark.parametrize("time_input", [False, True])
def test_per_sample_time_products_equal_one_call_per_sample(time_input):
    # eval_f_at / eval_vjp_at (the quadrature's and dL/dt_i's one-call evaluations) against eval_f / eval_vjp
    field = ov.MLPField((3, 7, 5, 3), time_input=time_input)
    theta = field.init_params(np.random.default_rng(0))
    rng = np.random.default_rng(1)
    a, z, t = rng.normal(size=(6, 3)), rng.normal(size=(6, 3)), rng.uniform(0, 2, size=6)
    sym = ov.ODESystem.from_strings("x y", "k w", ["-k*x + sin(w*t)*y", "x*y - t"])
    th2 = np.array([0.8, 2.5])
    for fld, th, n in [(field, theta, 3), (sym, th2, 2)]:
        aa, zz = a[:, :n], z[:, :n]
        singles = [fld.eval_vjp(aa[i : i + 1], zz[i : i + 1], t[i], th) for i in range(6)]
        az, ath, at = fld.eval_vjp_at(aa, zz, t, th)
        assert rel_err(az, np.vstack([s[1] for s in singles])) < 1e-14
        assert rel_err(ath, sum(s[2] for s in singles)) < 1e-14
        assert at == pytest.approx(sum(s[3] for s in singles), rel=1e-13, abs=1e-15)
        f_one = np.vstack([fld.eval_f(zz[i : i + 1], t[i], th) for i in range(6)])
        assert rel_err(fld.eval_f_at(zz, t, th), f_one) < 1e-14
        assert rel_err(fld.eval_vjp_z(aa, zz, 0.7, th), fld.eval_vjp(aa, zz, 0.7, th)[1]) < 1e-14
