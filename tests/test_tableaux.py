"""Runge–Kutta tableaux and the pure step function."""

import autograd
import autograd.numpy as anp
import numpy as np
import pytest

from odeverify.errors import InvalidArgumentError
from odeverify.tableaux import TABLEAUX, get_tableau, odeint_fixed, order_conditions, rk_step


@pytest.mark.parametrize("name", list(TABLEAUX))
def test_consistency_and_order_conditions(name):
    tab = TABLEAUX[name]
    assert tab.check()
    if tab.b_err is not None:
        # the embedded weights are consistent and of lower order
        assert tab.b_err.sum() == pytest.approx(1.0, abs=1e-14)


@pytest.mark.parametrize("name", list(TABLEAUX))
def test_observed_order_on_exponential(name):
    # dz/dt = z on [0, 1]: the error falls as h^order (notes 2.2, 2.4-2.5)
    tab = TABLEAUX[name]
    f = lambda z, t: z  # noqa: E731
    m = 16 if tab.order < 5 else 32 if tab.order < 7 else 4  # tsit5 reaches its asymptotic regime only below h = 1/16
    e1 = abs(odeint_fixed(f, np.array([1.0]), [0.0, 1.0], method=name, steps=m)[-1, 0] - np.e)
    e2 = abs(odeint_fixed(f, np.array([1.0]), [0.0, 1.0], method=name, steps=2 * m)[-1, 0] - np.e)
    assert round(np.log2(e1 / e2)) == tab.order


def test_euler_step_is_the_notes_formula():
    f = lambda z, t: np.sin(t) * z  # noqa: E731
    z, t, h = np.array([0.7]), 0.3, 0.1
    assert rk_step(f, t, z, h, get_tableau("euler")) == pytest.approx(z + h * f(z, t))


def test_differentiable_with_autograd():
    # d/dz0 and d/dT of RK4 on dz/dt = a z equal those of (1 + ah + (ah)^2/2 + ...)^m exactly
    def final(z0, T, a):
        return odeint_fixed(lambda z, t: a * z, z0, [0.0, T], method="rk4", steps=5, xp=anp)[-1, 0]

    a, T = 0.8, 1.3
    h = T / 5
    R = 1 + a * h + (a * h) ** 2 / 2 + (a * h) ** 3 / 6 + (a * h) ** 4 / 24
    dR_dh = a + a**2 * h + a**3 * h**2 / 2 + a**4 * h**3 / 6
    assert autograd.grad(final, 0)(np.array([1.0]), T, a)[0] == pytest.approx(R**5, rel=1e-13)
    assert autograd.grad(final, 1)(np.array([1.0]), T, a) == pytest.approx(5 * R**4 * dR_dh / 5, rel=1e-12)


def test_order_conditions_detect_a_wrong_tableau():
    tab = TABLEAUX["rk4"]
    bad = type(tab)("bad", tab.A, tab.b + np.array([0.01, -0.01, 0, 0]), tab.c, 4)
    assert any(abs(v) > 1e-6 for v in order_conditions(bad, 4).values())
    with pytest.raises(InvalidArgumentError, match="order conditions"):
        bad.check()


def test_bad_arguments():
    with pytest.raises(InvalidArgumentError, match="not a known tableau"):
        get_tableau("rk99")
    with pytest.raises(InvalidArgumentError, match="exactly one"):
        odeint_fixed(lambda z, t: z, np.ones(1), [0, 1])
    with pytest.raises(InvalidArgumentError, match="positive integer"):
        odeint_fixed(lambda z, t: z, np.ones(1), [0, 1], steps=0)


def test_dop853_coefficients_are_scipys_doubles():
    # odeverify writes DOP853's coefficients out (no SciPy import for its own DOP853); they must be the
    # same doubles as SciPy's dop853_coefficients, which come from Hairer's dop853.f
    from scipy.integrate._ivp import dop853_coefficients as d

    from odeverify.tableaux import DOP853, DOP853_ADAPTIVE, _DOP853_D

    np.testing.assert_array_equal(DOP853.A, d.A[:12, :12])
    np.testing.assert_array_equal(DOP853.b, d.B)
    np.testing.assert_array_equal(DOP853.c, d.C[:12])
    np.testing.assert_array_equal(DOP853_ADAPTIVE.E, np.vstack([d.E5, d.E3]))
    np.testing.assert_array_equal(DOP853_ADAPTIVE.A_extra, d.A[13:])
    np.testing.assert_array_equal(DOP853_ADAPTIVE.c_extra, d.C[13:])
    np.testing.assert_array_equal(_DOP853_D, d.D)
    assert DOP853_ADAPTIVE.fsal and DOP853_ADAPTIVE.stages == 13


def test_dop853_dense_rows_reproduce_scipys_interpolant():
    # the power-basis rows P of the adaptive DOP853 give the same polynomial as SciPy's Dop853DenseOutput
    from scipy.integrate._ivp import dop853_coefficients as d
    from scipy.integrate._ivp.rk import Dop853DenseOutput

    from odeverify.tableaux import DOP853_ADAPTIVE

    rng = np.random.default_rng(3)
    K = rng.normal(size=(16, 3))  # k_1..k_12, f(y_new), extra_1..extra_3
    y0, h = rng.normal(size=3), 0.37
    dy = h * d.B @ K[:12]
    F = np.empty((7, 3))
    F[0] = dy
    F[1] = h * K[0] - dy
    F[2] = 2 * dy - h * (K[12] + K[0])
    F[3:] = h * d.D @ K
    want = Dop853DenseOutput(0.0, h, y0, F)
    for theta in (0.0, 0.21, 0.5, 0.93, 1.0):
        powers = theta ** np.arange(1, 8)
        got = y0 + h * (powers @ DOP853_ADAPTIVE.P.T) @ K
        np.testing.assert_allclose(got, want(theta * h), rtol=0, atol=1e-13)
