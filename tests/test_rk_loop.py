"""The in-house step loop against a plain-Python reference stepper of the same embedded pair.

The reference below is written from the tableau alone (A, b, b_err, c, P of odeverify.tableaux) and
the textbook controller (Hairer, Norsett & Wanner I, II.4): lists of Python numbers, no NumPy, no
code shared with odeverify._rk. The loop must take the very same steps (nsteps, nfev, rejections)
and give the same numbers to rounding, on both of its error-norm paths (Python floats for small
real states, NumPy otherwise), with output times, mixed norms, backwards in time and complex states.
"""

import cmath
import math

import numpy as np
import pytest

import odeverify as ov
from odeverify._rk import SMALL_SIZE, integrate_rk
from odeverify.tableaux import DOPRI5, TSIT5

EPS = 2.220446049250313e-16


def reference_solve(f, t0, t1, y0, tab, rtol, atol, t_out=(), groups=None):
    """Adaptive embedded RK with FSAL, Hairer's starting step and the standard controller."""
    A, b, be, c, P = (np.asarray(x).tolist() for x in (tab.A, tab.b, tab.b_err, tab.c, tab.P))
    s, q = len(b), tab.order
    n = len(y0)
    groups = groups or [n]
    bounds, lo = [], 0
    for g in groups:
        if g:
            bounds.append((lo, lo + g))
        lo += g

    def norm(r):  # max over groups of the group's RMS
        return max(math.sqrt(sum(abs(x) ** 2 for x in r[a:z]) / (z - a)) for a, z in bounds)

    def comb(y, h, w, K):
        return [y[m] + h * sum(w[j] * K[j][m] for j in range(len(w)) if w[j]) for m in range(n)]

    direction = 1.0 if t1 > t0 else -1.0
    t, y = t0, list(y0)
    fy = f(t, y)
    nfev = 1
    # starting step size (Hairer I, II.4)
    sc = [abs(v) * rtol + atol for v in y]
    d0 = norm([abs(v) / w for v, w in zip(y, sc)])
    d1 = norm([abs(v) / w for v, w in zip(fy, sc)])
    h0 = 1e-6 if (d0 < 1e-5 or d1 < 1e-5) else 0.01 * d0 / d1
    h0 = min(h0, abs(t1 - t0))
    f1 = f(t + direction * h0, [v + direction * h0 * w for v, w in zip(y, fy)])
    nfev += 1
    d2 = norm([abs(u - v) / w for u, v, w in zip(f1, fy, sc)]) / h0
    h1 = max(1e-6, h0 * 1e-3) if (d1 <= 1e-15 and d2 <= 1e-15) else (0.01 / max(d1, d2)) ** (1.0 / q)
    h_abs = min(100 * h0, h1, abs(t1 - t0))

    out, k_out = [], 0
    t_out = list(t_out)
    while k_out < len(t_out) and t_out[k_out] == t:
        out.append(list(y))
        k_out += 1
    nsteps = nrejected = 0
    while direction * (t1 - t) > 0:
        rejected = False
        while True:
            assert h_abs >= 10 * EPS * abs(t), "step size collapsed in the reference"
            h = direction * h_abs
            t_new = t + h
            if direction * (t_new - t1) >= 0:
                t_new = t1
                h = t_new - t
                h_abs = abs(h)
            K = [fy]
            for i in range(1, s):
                K.append(f(t + c[i] * h, comb(y, h, A[i][:i], K)))
            nfev += s - 1
            y_new = comb(y, h, b, K)
            err = [h * sum((b[j] - be[j]) * K[j][m] for j in range(s)) for m in range(n)]
            sc = [max(abs(u), abs(v)) * rtol + atol for u, v in zip(y, y_new)]
            e = norm([x / w for x, w in zip(err, sc)])
            if e < 1.0:
                factor = 10.0 if e == 0.0 else min(10.0, 0.9 * e ** (-1.0 / q))
                if rejected:
                    factor = min(1.0, factor)
                break
            h_abs *= max(0.2, 0.9 * e ** (-1.0 / q))
            rejected = True
            nrejected += 1
        nsteps += 1
        while k_out < len(t_out) and direction * (t_out[k_out] - t_new) <= 0:
            th = (t_out[k_out] - t) / h
            bt = [sum(P[j][m] * th ** (m + 1) for m in range(len(P[j]))) for j in range(s)]
            out.append(list(y_new) if t_out[k_out] == t_new else comb(y, h, bt, K))
            k_out += 1
        t, y, fy = t_new, y_new, K[-1]
        h_abs *= factor
    return {"y_end": y, "y_at": out, "nsteps": nsteps, "nfev": nfev, "nrejected": nrejected}


def forced(t, y):
    """A non-autonomous, nonlinear, forced pair of equations per sample (bounded both ways in time)."""
    out = []
    for i in range(0, len(y), 2):
        u, v = y[i], y[i + 1]
        out += [-0.5 * u + math.sin(3.0 * t) * v, math.cos(t) * u - 0.1 * v + 0.3 * math.sin(v) + 0.1 * t]
    return out


def as_inplace(f):
    def fun(t, y, out):
        out[:] = f(t, y.tolist())

    return fun


def close(ours, ref):
    ours, ref = np.asarray(ours), np.asarray(ref)
    return np.max(np.abs(ours - ref)) <= 1e-11 * max(1.0, np.max(np.abs(ref)))


CASES = [
    # (samples, groups): 2 and 6 real components take the Python-float norm, 2*SMALL_SIZE the NumPy one
    (1, None),
    (3, [2, 4]),
    (SMALL_SIZE, None),
    (SMALL_SIZE, [SMALL_SIZE, SMALL_SIZE - 1, 0, 1]),
]


@pytest.mark.parametrize("tab", [TSIT5, DOPRI5], ids=lambda t: t.name)
@pytest.mark.parametrize("samples, groups", CASES)
@pytest.mark.parametrize("t0, t1", [(0.0, 6.0), (2.0, -3.0)])
def test_same_steps_and_numbers_as_a_reference_stepper(tab, samples, groups, t0, t1):
    y0 = [0.3 + 0.05 * i for i in range(2 * samples)]
    t_out = list(np.linspace(t0, t1, 13)) + [t1]  # the start, interior times, the end twice
    rtol, atol = 1e-7, 1e-9
    ref = reference_solve(forced, t0, t1, y0, tab, rtol, atol, t_out, groups)
    ours = integrate_rk(as_inplace(forced), t0, t1, np.array(y0), tab, rtol=rtol, atol=atol, t_out=t_out, groups=groups)
    assert ref["nrejected"] > 0  # the controller's rejection branch is exercised
    assert (ours["nsteps"], ours["nfev"], ours["nrejected"]) == (ref["nsteps"], ref["nfev"], ref["nrejected"])
    assert close(ours["y_end"], ref["y_end"])
    assert close(ours["y_at"], ref["y_at"])
    np.testing.assert_array_equal(ours["y_at"][0], y0)  # t_out == t_start is the initial state


@pytest.mark.parametrize("tab", [TSIT5, DOPRI5], ids=lambda t: t.name)
def test_complex_state_takes_the_reference_steps(tab):
    lam = [-0.3 + 2.0j, -1.0 - 0.5j]

    def f(t, y):
        return [lam[0] * y[0] + cmath.exp(1j * t) * y[1], lam[1] * y[1] + 0.1 * t]

    y0 = [1.0 + 0.5j, -0.2 + 0.1j]
    t_out = [0.0, 0.7, 2.5, 4.0]
    ref = reference_solve(f, 0.0, 4.0, y0, tab, 1e-8, 1e-10, t_out)
    ours = integrate_rk(as_inplace(f), 0.0, 4.0, np.array(y0), tab, rtol=1e-8, atol=1e-10, t_out=t_out)
    assert (ours["nsteps"], ours["nfev"], ours["nrejected"]) == (ref["nsteps"], ref["nfev"], ref["nrejected"])
    assert close(ours["y_at"], ref["y_at"])


def test_dense_output_matches_output_times():
    # the stored steps interpolate to the values the loop reported at its output times
    t_out = np.linspace(0.0, 6.0, 17)
    ours = integrate_rk(as_inplace(forced), 0.0, 6.0, np.array([0.3, 0.35]), TSIT5, rtol=1e-7, atol=1e-9,
                        t_out=t_out, dense=True)
    ref = reference_solve(forced, 0.0, 6.0, [0.3, 0.35], TSIT5, 1e-7, 1e-9, t_out)
    assert close(ours["dense"](t_out).T, ref["y_at"])


@pytest.mark.parametrize(
    "rhs, z, expected",
    [
        ("1/x", 0.0, np.inf),  # a Python-float division by zero raises: NumPy's inf instead
        ("x**3", 1e200, np.inf),  # an overflowing Python power raises: NumPy's inf instead
        ("x**1.5", -1.0, np.nan),  # a fractional power of a negative number: NumPy's NaN, not complex
        ("sqrt(x)", -4.0, np.nan),
        ("x**2 - 3*x", 2.0, -2.0),
    ],
)
def test_scalar_kernels_keep_numpy_semantics(rhs, z, expected):
    system = ov.ODESystem.from_strings("x", "", [rhs])
    one = system.solver_kernels(np.zeros(0), 1)  # B = 1: Python floats where safe
    two = system.solver_kernels(np.zeros(0), 2)  # the batch kernels: NumPy arrays
    out1, out2 = np.empty(1), np.empty(2)
    with np.errstate(all="ignore"):
        one.f(0.0, np.array([z]), out1)
        two.f(0.0, np.array([z, z]), out2)
    np.testing.assert_array_equal(out1, [expected])
    np.testing.assert_array_equal(out2, [expected, expected])
    # the complex step through the B = 1 kernel stays complex
    if np.isfinite(expected):
        outc = np.empty(1, dtype=complex)
        one.f(0.0, np.array([z + 1e-30j]), outc)
        assert outc[0].real == expected and outc[0].imag != 0.0


def test_a_failure_keeps_its_state_after_later_solves():
    # the loop's buffers are pooled between solves: what a failure reports must not be one of them
    from odeverify._rk import RKFailure

    def overflow(t, y, out):  # a finite rate whose step overflows the state: an accepted, infinite step
        out[:] = 1e307

    with pytest.raises(RKFailure, match="infinite") as info, np.errstate(over="ignore", invalid="ignore"):
        integrate_rk(overflow, 0.0, 100.0, np.array([1.0, 2.0]), TSIT5, rtol=1e-6, atol=1e-6, first_step=100.0)
    y_failed = np.array(info.value.y, copy=True)
    integrate_rk(as_inplace(forced), 0.0, 1.0, np.array([0.3, 0.4]), TSIT5, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(info.value.y, y_failed)


@pytest.mark.parametrize("rtol", [1e-4, 1e-8, 1e-12])
def test_dop853_takes_scipys_steps_and_gives_its_numbers(rtol):
    # odeverify's own stepping of DOP853 (two error estimators, order-7 dense output with three extra
    # stages) against SciPy's DOP853 on a forced Van der Pol oscillator: the same accepted steps, the
    # same states at output times and the same dense output. The error estimate is a difference of
    # O(1) terms (about 1e-10 of them here), so summation order moves it by ~1e-7 relative, and the
    # step sizes by ~1e-8: "the same steps" to that, not to the last bit. At rtol 1e-12 the estimate
    # itself is at the level of rounding in both codes: there the step counts agree within 2 %
    import scipy.integrate

    from odeverify._rk import integrate_rk
    from odeverify.tableaux import DOP853_ADAPTIVE

    def f(t, y):
        return np.array([y[1], (1 - y[0] ** 2) * y[1] - y[0] + 0.3 * np.sin(t)])

    def f_into(t, y, out):
        out[:] = f(t, y)

    y0, t_out = np.array([1.0, 0.5]), np.linspace(0.0, 7.0, 15)
    ref = scipy.integrate.solve_ivp(f, (0.0, 7.0), y0, method="DOP853", rtol=rtol, atol=rtol, dense_output=True)
    res = integrate_rk(f_into, 0.0, 7.0, y0, DOP853_ADAPTIVE, rtol=rtol, atol=rtol, t_out=t_out, dense=True)
    if rtol >= 1e-8:
        assert res["nsteps"] == len(ref.t) - 1
        np.testing.assert_allclose(res["dense"].step_times, ref.t, rtol=1e-6, atol=1e-12)
    else:
        assert abs(res["nsteps"] - (len(ref.t) - 1)) <= 0.02 * len(ref.t)
    scale = np.max(np.abs(ref.y))
    agree = max(100 * rtol, 1e-9) * scale  # both within their tolerance of the solution
    assert np.max(np.abs(res["y_at"] - ref.sol(t_out).T)) < agree
    fine = np.linspace(0.0, 7.0, 201)
    assert np.max(np.abs(res["dense"](fine) - ref.sol(fine))) < agree


def test_dop853_mixed_norm_and_backwards():
    # groups of the mixed norm: DOP853's norm per group, the largest counts; backwards in time too
    from odeverify._rk import integrate_rk
    from odeverify.tableaux import DOP853_ADAPTIVE

    def decay(t, y, out):
        out[:] = -np.array([1.0, 3.0]) * y

    res = integrate_rk(decay, 2.0, 0.0, np.array([1.0, 1.0]), DOP853_ADAPTIVE, rtol=1e-11, atol=1e-13,
                       groups=[1, 1], t_out=[1.0, 0.0])
    np.testing.assert_allclose(res["y_at"], [[np.e, np.e**3], [np.e**2, np.e**6]], rtol=1e-9)
