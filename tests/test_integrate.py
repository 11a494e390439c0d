"""solve(): forward solves, dense output, batches and analytic Jacobians."""

import numpy as np
import pytest
import scipy.linalg
from helpers import rel_err

import odeverify as ov
from odeverify._adjoint import _backsolve_jacobian, _interpolated_jacobian
from odeverify._integrate import forward_jacobian


@pytest.fixture(scope="module")
def linear():
    return ov.ODESystem.from_strings("p q", "w g", ["q", "-w**2*p - 2*g*q"], name="damped oscillator")


def _exact(w, g, z0, t):
    A = np.array([[0.0, 1.0], [-(w**2), -2 * g]])
    return np.array([scipy.linalg.expm(A * ti) @ z0 for ti in t])


@pytest.mark.parametrize("method", ["RK45", "RK23", "DOP853", "Radau", "BDF", "LSODA", "dopri5", "tsit5"])
def test_all_methods_match_matrix_exponential(linear, method):
    ts = np.linspace(0, 3, 7)
    z0 = np.array([1.0, -0.3])
    sol = ov.solve(linear, z0, ts, [2.0, 0.1], method=method, rtol=1e-10, atol=1e-12)
    assert sol.z.shape == (7, 2)
    assert rel_err(sol.z, _exact(2.0, 0.1, z0, ts)) < 1e-7
    assert sol.nsteps > 0 and sol.nfev > 0
    if method in ("Radau", "BDF"):
        assert sol.njev > 0


def test_decreasing_times(linear):
    ts = np.array([1.0, 0.2, -0.5])
    sol = ov.solve(linear, [1.0, 0.0], ts, [1.5, 0.2], rtol=1e-12, atol=1e-12)
    z_exact = _exact(1.5, 0.2, np.array([1.0, 0.0]), ts - 1.0)
    assert rel_err(sol.z, z_exact) < 1e-10


@pytest.mark.parametrize("method", ["DOP853", "Radau", "LSODA", "tsit5"])
def test_batch(linear, method):
    rng = np.random.default_rng(0)
    Z0 = rng.normal(size=(5, 2))
    ts = np.array([0.0, 0.7, 1.5])
    sol = ov.solve(linear, Z0, ts, [1.2, 0.3], method=method, rtol=1e-10, atol=1e-12)
    assert sol.z.shape == (3, 5, 2)
    for b in range(5):
        assert rel_err(sol.z[:, b], _exact(1.2, 0.3, Z0[b], ts)) < 1e-7


@pytest.mark.parametrize("method", ["DOP853", "dopri5", "tsit5"])
def test_dense_output(linear, method):
    ts = np.array([0.0, 2.0])
    sol = ov.solve(linear, [1.0, 0.0], ts, [2.0, 0.1], method=method, dense_output=True, rtol=1e-11, atol=1e-12)
    tq = np.linspace(0, 2, 11)
    assert rel_err(sol(tq), _exact(2.0, 0.1, np.array([1.0, 0.0]), tq)) < 1e-8
    assert sol(0.5).shape == (2,)
    with pytest.raises(ValueError, match="dense_output=True"):
        ov.solve(linear, [1.0, 0.0], ts, [2.0, 0.1])(0.5)


def _fd_jacobian(fun, y, h=1e-7):
    J = np.zeros((y.size, y.size))
    for j in range(y.size):
        e = np.zeros_like(y)
        e[j] = h * max(1.0, abs(y[j]))
        J[:, j] = (fun(y + e) - fun(y - e)) / (2 * e[j])
    return J


def test_assembled_jacobians_match_finite_differences():
    # the sparse block Jacobians handed to implicit solvers, forward and backward
    s = ov.ODESystem.from_strings("x y", "a b", ["a*x*y + sin(t)", "-b*y**2 + x"])
    th = np.array([0.7, 1.3])
    B, n, p = 3, 2, 2
    rng = np.random.default_rng(4)
    z = rng.normal(size=(B, n))
    a = rng.normal(size=(B, n))
    t = 0.4
    jac = forward_jacobian(s, th, B, n, "Radau")
    J = jac(t, z.ravel()).toarray()
    Jfd = _fd_jacobian(lambda y: s.eval_f(y.reshape(B, n), t, th).ravel(), z.ravel())
    np.testing.assert_allclose(J, Jfd, rtol=1e-6, atol=1e-8)
    # backsolve: y = [z, a, a_theta, a_t]
    def back(y):
        f, az, ath, at = s.eval_vjp(y[n * B : 2 * n * B].reshape(B, n), y[: n * B].reshape(B, n), t, th, with_f=True)
        return np.concatenate([f.ravel(), -az.ravel(), -ath, [-at]])

    y = np.concatenate([z.ravel(), a.ravel(), rng.normal(size=p + 1)])
    for dense in ("Radau", "LSODA"):
        Jb = _backsolve_jacobian(s, th, B, n, p, dense)(t, y)
        Jb = Jb.toarray() if hasattr(Jb, "toarray") else Jb
        np.testing.assert_allclose(Jb, _fd_jacobian(back, y), rtol=1e-6, atol=1e-8)
    # interpolated: y = [a, a_theta, a_t], z given
    def interp(yy):
        _, az, ath, at = s.eval_vjp(yy[: n * B].reshape(B, n), z, t, th)
        return np.concatenate([-az.ravel(), -ath, [-at]])

    yi = np.concatenate([a.ravel(), rng.normal(size=p + 1)])
    Ji = _interpolated_jacobian(s, th, B, n, p, "BDF", lambda tt: z)(t, yi).toarray()
    np.testing.assert_allclose(Ji, _fd_jacobian(interp, yi), rtol=1e-6, atol=1e-8)


def test_atol_per_state(linear):
    sol = ov.solve(linear, [1.0, 0.0], [0.0, 1.0], [1.0, 0.1], atol=[1e-12, 1e-10], rtol=1e-10)
    assert rel_err(sol.z, _exact(1.0, 0.1, np.array([1.0, 0.0]), [0.0, 1.0])) < 1e-8


def _decay_into(t, y, out):
    out[:] = -y


def _square_into(t, y, out):
    out[:] = y * y


@pytest.mark.parametrize("method", ["tsit5", "dopri5", "DOP853", "Radau"])
def test_intervals_restart_with_jumps_as_in_closed_form(method):
    # dy/dt = -y over 3 -> 2 -> 0.5 -> 0: y_end(k) = (keep * y_end(k-1) + add[k]) e^{-(interval length)}
    from odeverify._integrate import integrate_intervals
    fun = _decay_into
    times = np.array([3.0, 2.0, 0.5, 0.0])
    keep = np.array([1.0, 0.0])
    add = np.array([[1.0, 2.0], [0.5, -1.0], [-0.25, 4.0]])
    Y_end, stats = integrate_intervals(fun, times, keep, add, method=method, rtol=1e-11, atol=1e-13)
    growth = np.exp(np.abs(np.diff(times)))  # backwards in time dy/dt = -y grows: y(t - s) = y(t) e^s
    expected = np.empty_like(add)
    y = add[0]
    for k in range(3):
        if k:
            y = keep * expected[k - 1] + add[k]
        expected[k] = y * growth[k]
    np.testing.assert_allclose(Y_end, expected, rtol=1e-9)
    assert stats["nsteps"] > 3 and stats["nfev"] > stats["nsteps"]


def test_intervals_name_the_interval_that_fails():
    # dy/dt = y^2 from y = 1 at t = 0 blows up at t = 1, inside the second interval [0.5, 2]
    from odeverify._integrate import integrate_intervals
    from odeverify.errors import IntegrationError

    fun = _square_into
    times = np.array([0.0, 0.5, 2.0])
    with pytest.raises(IntegrationError, match=r"the interval 1 solve failed at t = 1\.0.*from 0\.5 to 2\.0") as info:
        integrate_intervals(fun, times, np.ones(1), np.array([[1.0], [0.0]]), method="tsit5", rtol=1e-8, atol=1e-8,
                            what=lambda k: f"interval {k} solve")
    assert 0.99 < info.value.t_reached < 1.01
    assert info.value.t_target == 2.0
