"""Switches in the state (events): located during the solve, saltation terms in the adjoint (issue 15, item 3).

References are independent of the code under test: closed forms written down
by hand and differentiated with SymPy, and for a two-state system a
piecewise matrix-exponential solution whose crossing times are found by root
finding on the exact solution, differentiated by central differences.
"""

import numpy as np
import pytest
import sympy as sp

import odeverify
from helpers import switched_oscillator_reference
from odeverify._switches import Event, substitute_branch
from odeverify.errors import IntegrationError, InvalidArgumentError

MODES = ["interpolated", "backsolve", "quadrature"]
TOL = dict(rtol=1e-12, atol=1e-12)

k, b, c, x0, T1, T2, t0 = sp.symbols("k b c x0 T1 T2 t0", real=True)

# dx/dt = -k x + b H(c - x), x(t0) = x0 > c > b / k: x decays to c at tau = t0 + ln(x0 / c) / k, where the
# forcing b turns on; afterwards x = b/k + (c - b/k) e^{-k (t - tau)} stays below c (it tends to b/k < c)
RELAX = "-k*x + b*heaviside(c - x)"
TAU = t0 + sp.log(x0 / c) / k


def before(t):
    return x0 * sp.exp(-k * (t - t0))


def after(t):
    return b / k + (c - b / k) * sp.exp(-k * (t - TAU))


SUBS = {k: 0.8, b: 0.3, c: 0.5, x0: 1.2, t0: 0.1, T1: 0.9, T2: 3.0}


def derivatives(L, wrt):
    return float(L.subs(SUBS)), {str(v): float(sp.diff(L, v).subs(SUBS)) for v in wrt}


def close(got, want, rel=1e-8):
    assert abs(got - want) <= rel * max(abs(want), 1e-300), (got, want)


@pytest.fixture(scope="module")
def relax():
    return odeverify.ODESystem.from_strings("x", "k b c", [RELAX])


def test_the_crossing_is_located_and_the_solve_matches_the_closed_form(relax):
    tau = float(TAU.subs(SUBS))
    ts = np.array([0.1, 0.9, tau - 0.01, tau + 0.01, 3.0])
    want = [float((before if t < tau else after)(sp.Float(t)).subs(SUBS)) for t in ts]
    for method in ["DOP853", "tsit5", "RK45", "Radau", "LSODA"]:
        sol = odeverify.solve(relax, [1.2], ts, [0.8, 0.3, 0.5], method=method, dense_output=True, **TOL)
        np.testing.assert_allclose(sol.z[:, 0], want, rtol=1e-9)
        assert abs(sol(tau)[0] - 0.5) < 1e-10  # the state is on the surface at the located time
    res = odeverify.adjoint_gradients(relax, [1.2], [0.1, 3.0], [0.8, 0.3, 0.5], lambda zs: zs[-1, 0] ** 2, **TOL)
    (event,) = res.events
    assert isinstance(event, Event) and abs(event.time - tau) <= 1e-12 * tau
    assert relax.discontinuities[event.condition].function == "Heaviside"
    np.testing.assert_allclose(event.f_before, [-0.8 * 0.5], rtol=1e-9)
    np.testing.assert_allclose(event.f_after, [-0.8 * 0.5 + 0.3], rtol=1e-9)
    # the total d tau / d(k, b, c) of the closed form: through z(tau^-) (dx/dk = -(tau - t0) x on the first
    # branch, at fixed time) and through g's explicit dependence
    dtau = [float(sp.diff(TAU, v).subs(SUBS)) for v in (k, b, c)]
    dz_dtheta = np.array([-(tau - 0.1) * 0.5, 0.0, 0.0])
    np.testing.assert_allclose(event.dtau_dz[0] * dz_dtheta + event.dtau_dtheta, dtau, rtol=1e-9, atol=1e-15)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("method", ["DOP853", "tsit5"])
def test_relaxation_gradients_against_the_closed_form(relax, mode, method):
    loss, d = derivatives(after(T2) ** 2, [k, b, c, x0, T2, t0])
    res = odeverify.adjoint_gradients(relax, [1.2], [0.1, 3.0], [0.8, 0.3, 0.5], lambda zs: zs[-1, 0] ** 2,
                                      mode=mode, method=method, **TOL)
    close(res.loss, loss)
    for got, name in [(res.theta[0], "k"), (res.theta[1], "b"), (res.theta[2], "c"), (res.z0[0], "x0"),
                      (res.t[1], "T2"), (res.t[0], "t0")]:
        close(got, d[name])
    close(res.diagnostics["t0_via_identity"], d["t0"])


@pytest.mark.parametrize("mode", MODES)
def test_observations_before_and_after_the_crossing(relax, mode):
    L = 2 * before(T1) ** 2 + after(T2) ** 3
    loss, d = derivatives(L, [k, b, c, x0, T1, T2, t0])
    res = odeverify.adjoint_gradients(relax, [1.2], [0.1, 0.9, 3.0], [0.8, 0.3, 0.5],
                                      lambda zs: 2 * zs[1, 0] ** 2 + zs[2, 0] ** 3, mode=mode, **TOL)
    close(res.loss, loss)
    for got, name in [(res.theta[0], "k"), (res.theta[1], "b"), (res.theta[2], "c"), (res.z0[0], "x0"),
                      (res.t[1], "T1"), (res.t[2], "T2"), (res.t[0], "t0")]:
        close(got, d[name])


@pytest.mark.parametrize("mode", MODES)
def test_decreasing_time_grid(relax, mode):
    # integrate from t0 = 3 (x = X < c, forcing on) backwards: x = b/k + (X - b/k) e^{-k (t - t0)} grows to c at
    # sigma = t0 - ln((c - b/k) / (X - b/k)) / k, then x = c e^{-k (t - sigma)} (forcing off) above c
    X, S0, S1 = sp.symbols("X S0 S1", real=True)
    sigma = S0 - sp.log((c - b / k) / (X - b / k)) / k
    xT = c * sp.exp(-k * (S1 - sigma))
    subs = {k: 0.8, b: 0.3, c: 0.5, X: 0.45, S0: 3.0, S1: 0.0}
    d = {str(v): float(sp.diff(xT**2, v).subs(subs)) for v in [k, b, c, X, S0, S1]}
    res = odeverify.adjoint_gradients(relax, [0.45], [3.0, 0.0], [0.8, 0.3, 0.5], lambda zs: zs[-1, 0] ** 2,
                                      mode=mode, **TOL)
    assert len(res.events) == 1 and abs(res.events[0].time - float(sigma.subs(subs))) < 1e-11
    close(res.loss, float((xT**2).subs(subs)))
    for got, name in [(res.theta[0], "k"), (res.theta[1], "b"), (res.theta[2], "c"), (res.z0[0], "X"),
                      (res.t[0], "S0"), (res.t[1], "S1")]:
        close(got, d[name])


def test_forward_sensitivity_through_the_saltation_matrix(relax):
    # dx(T)/dx0 = e^{-k (T - tau)} S e^{-k (tau - t0)}: the pieces between the crossing are the branches' own
    res = odeverify.adjoint_gradients(relax, [1.2], [0.1, 3.0], [0.8, 0.3, 0.5], lambda zs: zs[-1, 0], **TOL)
    (ev,) = res.events
    kk, tau, tT = 0.8, ev.time, 3.0
    dx = np.exp(-kk * (tT - tau)) * ev.propagate(np.array([np.exp(-kk * (tau - 0.1))]), np.zeros(3))
    close(float(dx[0]), float(sp.diff(after(T2), x0).subs(SUBS)), rel=1e-10)
    # and d x(tau^+)/dc through the crossing: only the shift of tau (x(tau^-) does not depend on c)
    dc = ev.propagate(np.zeros(1), np.array([0.0, 0.0, 1.0]))
    close(float(dc[0]), float((ev.f_before[0] - ev.f_after[0]) * sp.diff(TAU, c).subs(SUBS)), rel=1e-12)


# ----------------------------------------------------------------------------- two states
OSC = ["v", "-w**2*x - d*heaviside(x - c)*v"]  # damping switches on while x > c


OSC_P = np.array([1.3, 0.7, 0.4, 0.0, 1.0])  # w, d, c, x0, v0
OSC_SPAN = (0.2, 4.0)


@pytest.fixture(scope="module")
def oscillator_reference():
    """The loss and its central differences (h = 1e-6) in w, d, c, x0, v0, t0, T from the exact solution."""
    return switched_oscillator_reference(OSC_P, OSC_SPAN)


@pytest.mark.parametrize("mode", MODES)
def test_switched_oscillator_against_matrix_exponentials(mode, oscillator_reference):
    osc = odeverify.ODESystem.from_strings("x v", "w d c", OSC)
    loss, fd = oscillator_reference
    res = odeverify.adjoint_gradients(osc, OSC_P[3:], list(OSC_SPAN), OSC_P[:3],
                                      lambda zs: zs[-1, 0] ** 2 + zs[-1, 1] ** 2, mode=mode, **TOL)
    assert len(res.events) == 2  # x rises through c (damping on), then falls back through it (off)
    close(res.loss, loss, rel=1e-10)
    got = np.concatenate([res.theta, res.z0, res.t[[0, 1]]])
    for q in range(7):
        close(got[q], fd[q], rel=1e-6)


# ----------------------------------------------------------------------------- no crossing, refusals
@pytest.mark.parametrize("mode", MODES)
def test_no_crossing_is_the_smooth_problem(relax, mode):
    # x0 = 1.2 decays to 1.2 e^{-0.8 * 0.5} = 0.80 > c = 0.5 by t = 0.6: the forcing never turns on
    xT = x0 * sp.exp(-k * (T2 - t0))
    subs = {k: 0.8, x0: 1.2, t0: 0.1, T2: 0.6}
    res = odeverify.adjoint_gradients(relax, [1.2], [0.1, 0.6], [0.8, 0.3, 0.5], lambda zs: zs[-1, 0] ** 2,
                                      mode=mode, **TOL)
    assert res.events == ()
    close(res.theta[0], float(sp.diff(xT**2, k).subs(subs)))
    assert res.theta[1] == 0.0 and res.theta[2] == 0.0
    close(res.z0[0], float(sp.diff(xT**2, x0).subs(subs)))
    close(res.t[0], float(sp.diff(xT**2, t0).subs(subs)))


def test_chattering_is_refused_naming_the_condition_and_time(relax):
    # b = 0.6 > k c = 0.4: below c the forcing pushes x straight back up through c (sliding at x = c)
    tau = np.log(1.2 / 0.5) / 0.8
    for call in (
        lambda: odeverify.solve(relax, [1.2], [0.0, 3.0], [0.8, 0.6, 0.5]),
        lambda: odeverify.adjoint_gradients(relax, [1.2], [0.0, 3.0], [0.8, 0.6, 0.5], lambda zs: zs[-1, 0]),
    ):
        with pytest.raises(IntegrationError, match=r"chattering at t = 1\.09.*Heaviside\(c - x\).*not supported"):
            call()
    with pytest.raises(IntegrationError) as info:
        odeverify.solve(relax, [1.2], [0.0, 3.0], [0.8, 0.6, 0.5])
    assert abs(info.value.t_reached - tau) < 1e-6  # at the default tolerances


def test_batches_and_switches_in_t_with_events_are_refused(relax):
    with pytest.raises(InvalidArgumentError, match=r"batch of 2.*Heaviside\(c - x\).*separately"):
        odeverify.solve(relax, [[1.2], [1.1]], [0.0, 3.0], [0.8, 0.3, 0.5])
    mixed = odeverify.ODESystem.from_strings("x", "k s", ["-k*x + heaviside(0.5 - x) + heaviside(t - s)"])
    with pytest.raises(InvalidArgumentError, match="not supported yet"):
        odeverify.adjoint_gradients(mixed, [1.2], [0.0, 3.0], [0.8, 1.0], lambda zs: zs[-1, 0])


def test_smooth_and_time_only_fields_have_no_state_conditions():
    assert odeverify.ODESystem.from_strings("x", "k", ["-k*x"]).state_conditions is None
    assert odeverify.ODESystem.from_strings("x", "k s", ["-k*x + heaviside(t - s)"]).state_conditions is None
    # a kink in the state needs no event (f is continuous): integrated through as before
    assert odeverify.ODESystem.from_strings("x", "k", ["-k*abs(x - 1)"]).state_conditions is None


def test_substitute_branch_picks_each_piece():
    x, y, q = sp.symbols("x y q", real=True)
    e = sp.Heaviside(x - q) * 2 + sp.sign(y) + sp.Abs(x - q) + sp.Max(x, y) + sp.Piecewise((1, x < q), (3, True))
    up = substitute_branch(e, {x - q: 1, y: -1, y - x: -1})
    assert sp.simplify(up - (2 - 1 + (x - q) + x + 3)) == 0
    down = substitute_branch(e, {q - x: 1, y: 1})  # a condition given by its negative
    assert sp.simplify(down - (0 + 1 + (q - x) + sp.Max(x, y) + 1)) == 0


def test_keep_adjoint_with_events_is_refused_by_name():
    from odeverify.errors import InvalidArgumentError

    system = odeverify.ODESystem.from_strings("x", "k b c", ["-k*x + b*heaviside(c - x)"])
    with pytest.raises(InvalidArgumentError, match="keep_adjoint.*Heaviside"):
        odeverify.adjoint_gradients(system, [2.0], [0.0, 3.0], [1.0, 0.2, 1.0], lambda zs: zs[-1, 0] ** 2, keep_adjoint=True)
