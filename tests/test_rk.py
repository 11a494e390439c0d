"""The in-house adaptive Runge-Kutta solvers (dopri5, tsit5) against closed forms and SciPy."""

import numpy as np
import pytest
import scipy.integrate
import scipy.linalg
from helpers import rel_err

import odeverify as ov
from odeverify._integrate import integrate_span
from odeverify._rk import ErrorNorm, integrate_rk
from odeverify.errors import IntegrationError
from odeverify.tableaux import DOPRI5, TSIT5

METHODS = ["dopri5", "tsit5"]
A_OSC = np.array([[0.0, 1.0], [-4.0, -0.2]])  # damped oscillator, z(t) = expm(A t) z0


def _linear(t, y):
    return A_OSC @ y


@pytest.mark.parametrize("method", METHODS)
def test_observed_order_from_tolerance_sweep(method):
    # global error ~ C N^-5 for a 5th-order method with local extrapolation (Hairer et al. II.4)
    T = 10.0
    exact = scipy.linalg.expm(A_OSC * T) @ [1.0, 0.0]
    errs, steps = [], []
    for tol in 10.0 ** -np.arange(5, 12):
        res = integrate_span(_linear, 0.0, T, np.array([1.0, 0.0]), method=method, rtol=tol, atol=tol)
        errs.append(np.max(np.abs(res.y_end - exact)))
        steps.append(res.nsteps)
    slope = np.polyfit(np.log(steps), np.log(errs), 1)[0]
    assert round(-slope) == 5, slope
    # the error follows the tolerance (within a factor of 100 at every tolerance)
    assert all(e < 100 * tol for e, tol in zip(errs, 10.0 ** -np.arange(5, 12)))


def test_dopri5_reproduces_scipy_rk45():
    # same tableau, controller, starting step and plain RMS norm: SciPy's RK45 is an independent implementation
    fun = lambda t, y: np.array([y[1], (1 - y[0] ** 2) * y[1] - y[0]])  # noqa: E731 - van der Pol, mu = 1
    ts = np.linspace(0.0, 8.0, 9)
    ours = integrate_span(fun, 0.0, 8.0, np.array([2.0, 0.0]), method="dopri5", rtol=1e-7, atol=1e-9, t_out=ts)
    ref = scipy.integrate.solve_ivp(fun, (0.0, 8.0), [2.0, 0.0], method="RK45", rtol=1e-7, atol=1e-9, t_eval=ts)
    assert ours.nfev == ref.nfev
    assert rel_err(ours.y_at, ref.y.T) < 1e-12


@pytest.mark.parametrize("method", METHODS)
def test_dense_output_and_output_times(method):
    # interpolation keeps the error of the solve (4th-order continuous extension)
    ts = np.linspace(0.0, 6.0, 25)
    exact = np.array([scipy.linalg.expm(A_OSC * t) @ [1.0, -0.5] for t in ts])
    res = integrate_span(_linear, 0.0, 6.0, np.array([1.0, -0.5]), method=method, rtol=1e-10, atol=1e-12, t_out=ts, dense=True)
    alone = integrate_span(_linear, 0.0, 6.0, np.array([1.0, -0.5]), method=method, rtol=1e-10, atol=1e-12)
    assert res.nsteps == alone.nsteps  # output times are interpolated, they do not force steps
    assert rel_err(res.y_at, exact) < 1e-8
    tq = np.linspace(0.0, 6.0, 97)
    exact_q = np.array([scipy.linalg.expm(A_OSC * t) @ [1.0, -0.5] for t in tq])
    assert rel_err(res.dense(tq).T, exact_q) < 1e-8
    # monotone queries (the cached segment) and random ones (search) agree
    back = np.array([res.dense.at(t) for t in tq[::-1]])[::-1]
    rng = np.random.default_rng(0)
    order = rng.permutation(len(tq))
    shuffled = np.empty_like(exact_q)
    for i in order:
        shuffled[i] = res.dense.at(tq[i])
    np.testing.assert_array_equal(back, shuffled)


@pytest.mark.parametrize("method", METHODS)
def test_backwards_in_time(method):
    ts = np.array([3.0, 2.0, 0.5, -1.0])
    res = integrate_span(_linear, 3.0, -1.0, np.array([0.3, 1.0]), method=method, rtol=1e-11, atol=1e-12, t_out=ts, dense=True)
    exact = np.array([scipy.linalg.expm(A_OSC * (t - 3.0)) @ [0.3, 1.0] for t in ts])
    assert rel_err(res.y_at, exact) < 1e-9
    np.testing.assert_array_equal(res.y_at[0], [0.3, 1.0])  # t_out == t_start is the initial state
    assert rel_err(res.dense(1.3), scipy.linalg.expm(A_OSC * (1.3 - 3.0)) @ [0.3, 1.0]) < 1e-9


def test_complex_state():
    # complex-step users integrate complex states: the imaginary part must survive
    lam = -0.7 + 2.0j
    res = integrate_span(lambda t, y: lam * y, 0.0, 2.0, np.array([1.0 + 0.5j]), method="tsit5", rtol=1e-11, atol=1e-12)
    assert abs(res.y_end[0] - (1.0 + 0.5j) * np.exp(2.0 * lam)) < 1e-9


def test_first_step_is_used():
    ev = []

    def fun(t, y, out):
        ev.append(t)
        out[:] = -y

    integrate_rk(fun, 0.0, 1.0, np.ones(1), DOPRI5, rtol=1e-6, atol=1e-9, first_step=0.01)
    assert ev[1] == pytest.approx(0.01 * DOPRI5.c[1])  # no starting-step probe before the first stage


def test_error_norm():
    r = np.array([3.0, 0.0, 0.0, 0.0, 0.5])
    assert ErrorNorm(5)(r) == pytest.approx(np.sqrt((9 + 0.25) / 5))
    assert ErrorNorm(5, groups=[4, 1])(r) == pytest.approx(max(np.sqrt(9 / 4), 0.5))
    assert ErrorNorm(5, groups=[4, 0, 1])(r) == pytest.approx(1.5)  # empty groups are skipped (p = 0)
    with pytest.raises(ValueError, match="add up"):
        ErrorNorm(5, groups=[2, 2])


def test_mixed_norm_protects_a_small_group():
    # 400 components that do nothing and one that moves: a plain RMS divides the
    # moving component's error by sqrt(401); its own group keeps it at the tolerance.
    def fun(t, y, out):
        out[:-1] = 0.0
        out[-1] = np.cos(3.0 * t) * y[-1]

    y0 = np.ones(401)
    exact = np.exp(np.sin(3.0 * 8.0) / 3.0)
    kw = dict(rtol=1e-6, atol=1e-6, inplace=True)
    plain = integrate_span(fun, 0.0, 8.0, y0, method="tsit5", **kw)
    mixed = integrate_span(fun, 0.0, 8.0, y0, method="tsit5", groups=[400, 1], **kw)
    err_plain = abs(plain.y_end[-1] - exact)
    err_mixed = abs(mixed.y_end[-1] - exact)
    assert mixed.nsteps > plain.nsteps
    assert err_mixed < 10 * 1e-6 * exact
    assert err_plain > 10 * err_mixed


def test_failures_become_integration_errors():
    blow_up = ov.ODESystem.from_strings("x", "", ["x**2"])
    with pytest.raises(IntegrationError, match="blow up|too small|infinite") as info:
        ov.solve(blow_up, [1.0], [0.0, 2.0], method="dopri5")
    assert 0.9 < info.value.t_reached <= 1.0 + 1e-6
    with pytest.raises(IntegrationError, match="max_steps=5"):
        integrate_span(_linear, 0.0, 100.0, np.array([1.0, 0.0]), method="tsit5", rtol=1e-10, atol=1e-10, max_steps=5)


def test_tableau_requirements():
    from odeverify.tableaux import RK4

    with pytest.raises(ValueError, match="FSAL"):
        integrate_rk(lambda t, y, out: None, 0.0, 1.0, np.ones(1), RK4, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("tab", [DOPRI5, TSIT5], ids=lambda t: t.name)
def test_continuous_extension_order_conditions(tab):
    # b_j(s) = sum_m P[j, m] s^(m+1) satisfies the order conditions up to 4 for every s in [0, 1]
    A, c = tab.A, tab.c
    for s in np.linspace(0.0, 1.0, 11):
        b = tab.P @ s ** np.arange(1, tab.P.shape[1] + 1)
        assert b.sum() == pytest.approx(s, abs=1e-14)
        assert b @ c == pytest.approx(s**2 / 2, abs=1e-14)
        assert b @ c**2 == pytest.approx(s**3 / 3, abs=1e-14)
        assert b @ A @ c == pytest.approx(s**3 / 6, abs=1e-14)
        assert b @ c**3 == pytest.approx(s**4 / 4, abs=1e-14)
        assert b @ (c * (A @ c)) == pytest.approx(s**4 / 8, abs=1e-14)
        assert b @ A @ c**2 == pytest.approx(s**4 / 12, abs=1e-14)
        assert b @ A @ A @ c == pytest.approx(s**4 / 24, abs=1e-14)
    np.testing.assert_allclose(tab.P.sum(axis=1), tab.b, atol=1e-14)
