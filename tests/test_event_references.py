"""The references and the verdicts on right-hand sides that jump on the state (events; issue 15, item 3).

Every expected value is independent of the code under test: closed forms written
down by hand (one formula per side of the crossing, the crossing time
tau = t0 + ln(x0/c)/k solved by hand) and differentiated with SymPy, or, for a
two-state oscillator, the exact piecewise solution by matrix exponentials with
its crossings found by root finding, differentiated by central differences.
Each reference must lie within its own error estimate of it. The check times
are printed (``pytest -s``), not asserted.
"""

import contextlib
import time
import warnings
from unittest import mock

import numpy as np
import pytest
import sympy as sp

import odeverify
from helpers import switched_oscillator_reference
from odeverify._switches import Event
from odeverify.references import Adjoint, AutogradRK, FiniteDifferences, ForwardSensitivity, make_problem

REFERENCES = [ForwardSensitivity, FiniteDifferences, Adjoint]
k, b, c, a, x0, t0, T1, T2 = sp.symbols("k b c a x0 t0 T1 T2", real=True)
TAU = t0 + sp.log(x0 / c) / k  # x0 e^{-k (tau - t0)} = c
SUBS = {k: 0.8, b: 0.3, c: 0.5, x0: 1.2, t0: 0.1, T1: 0.9, T2: 3.0}
THETA = [0.8, 0.3, 0.5]


def before(t):
    return x0 * sp.exp(-k * (t - t0))


def after(t, tau=TAU):
    """dx/dt = -k x + b from x(tau) = c (the forcing on, x below c for good: it tends to b/k < c)."""
    return b / k + (c - b / k) * sp.exp(-k * (t - tau))


def want(expr, subs, order):
    return np.array([float(sp.diff(expr, v).subs(subs)) for v in order])


def exact(L, subs=SUBS, ts=(t0, T1, T2)):
    return {"z0": want(L, subs, [x0]), "theta": want(L, subs, [k, b, c]), "t": want(L, subs, list(ts))}


def assert_within_estimate(est, expected, rel=1e-9):
    for q, value in expected.items():
        got, err = np.asarray(est.values[q], dtype=float), np.asarray(est.errors[q], dtype=float)
        bound = 3 * err + rel * np.abs(value) + 1e-12
        assert np.all(np.abs(got - value) <= bound), (est.name, q, got, value, err)


@contextlib.contextmanager
def quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def timed(what, call):
    start = time.perf_counter()
    out = call()
    print(f"\n{what}: {time.perf_counter() - start:.2f} s")
    return out


RELAX = odeverify.ODESystem.from_strings("x", "k b c", ["-k*x + b*heaviside(c - x)"])


def loss_two(zs):
    return 2 * zs[1, 0] ** 2 + zs[-1, 0] ** 3


# ----------------------------------------------------------------------------- each reference against closed forms
@pytest.mark.parametrize("Ref", REFERENCES)
def test_observations_before_and_after_the_crossing(Ref):
    # x(T1) before tau = 1.194, x(T2) after it: dL/dk, db, dc, dx0, dT1, dT2, dt0
    L = 2 * before(T1) ** 2 + after(T2) ** 3
    problem = make_problem(RELAX, [1.2], [0.1, 0.9, 3.0], THETA, loss_two)
    est = Ref().compute(problem)
    assert_within_estimate(est, exact(L))
    assert est.left_out == {} and est.one_sided == {}
    assert est.values["theta"][2] != 0.0  # dL/dc comes from the crossing alone (x(tau^-) does not depend on c)


@pytest.mark.parametrize("Ref", REFERENCES)
def test_one_observation_after_the_crossing(Ref):
    problem = make_problem(RELAX, [1.2], [0.1, 3.0], THETA, lambda zs: zs[-1, 0] ** 2)
    assert_within_estimate(Ref().compute(problem), exact(after(T2) ** 2, ts=(t0, T2)))


@pytest.mark.parametrize("Ref", REFERENCES)
def test_a_decreasing_grid_crosses_upwards(Ref):
    # from S0 = 3 (x = X < c, forcing on) backwards: x grows to c at sigma, then x = c e^{-k (t - sigma)}
    X, S0, S1 = sp.symbols("X S0 S1", real=True)
    sigma = S0 - sp.log((c - b / k) / (X - b / k)) / k
    L = (c * sp.exp(-k * (S1 - sigma))) ** 2
    subs = {k: 0.8, b: 0.3, c: 0.5, X: 0.45, S0: 3.0, S1: 0.0}
    problem = make_problem(RELAX, [0.45], [3.0, 0.0], THETA, lambda zs: zs[-1, 0] ** 2)
    est = Ref().compute(problem)
    assert_within_estimate(est, {"z0": want(L, subs, [X]), "theta": want(L, subs, [k, b, c]),
                                 "t": want(L, subs, [S0, S1])})


def test_autograd_through_fixed_steps_is_left_out_with_the_reason():
    problem = make_problem(RELAX, [1.2], [0.1, 3.0], THETA, lambda zs: zs[-1, 0] ** 2)
    why = AutogradRK().available(problem)
    assert why and "event correction" in why and "Heaviside(c - x)" in why
    with quiet():
        report = odeverify.check_gradients(RELAX, [1.2], [0.1, 3.0], THETA, lambda zs: zs[-1, 0] ** 2)
    assert any(name.startswith("autograd") and status.startswith("skipped") and "saltation" in status
               for name, status in report.reference_status.items())


def test_a_copy_whose_event_crosses_an_observation_time_is_left_out_with_the_reason():
    # an observation 1e-4 after the crossing: a step of k, c, x0 or t0 large enough to difference moves tau over it
    tau = float(TAU.subs(SUBS))
    problem = make_problem(RELAX, [1.2], [0.1, tau + 1e-4, 3.0], THETA, loss_two)
    subs = {**SUBS, T1: tau + 1e-4}
    expected = exact(2 * after(T1) ** 2 + after(T2) ** 3, subs)
    fd = FiniteDifferences().compute(problem)
    assert fd.left_out, "the ladder should not difference across the observation time"
    for (q, idx), why in fd.left_out.items():
        assert np.isnan(fd.values[q][idx]) and "events differ" in why
        expected[q][idx] = np.nan
    assert ("theta", (1,)) not in fd.left_out  # b does not move the crossing
    for q, value in expected.items():
        ok = ~np.isnan(value)
        assert np.all(np.abs(fd.values[q][ok] - value[ok]) <= 3 * fd.errors[q][ok] + 1e-9 * np.abs(value[ok]))
    # forward sensitivities are not affected, and the check still has two agreeing sources there
    assert_within_estimate(ForwardSensitivity().compute(problem), exact(2 * after(T1) ** 2 + after(T2) ** 3, subs))
    with quiet():
        report = odeverify.check_gradients(RELAX, [1.2], [0.1, tau + 1e-4, 3.0], THETA, loss_two)
    assert report.passed, str(report)
    assert any("finite differences left it out" in r.note for r in report.rows)


# ----------------------------------------------------------------------------- two states, two crossings
OSC = odeverify.ODESystem.from_strings("x v", "w d c", ["v", "-w**2*x - d*heaviside(x - c)*v"])
OSC_P = np.array([1.3, 0.7, 0.4, 0.0, 1.0])  # w, d, c, x0, v0
OSC_SPAN = (0.2, 4.0)


@pytest.fixture(scope="module")
def oscillator_exact():
    """dL/d(w, d, c, x0, v0, t0, T) by central differences (h = 1e-6) of the exact solution."""
    return switched_oscillator_reference(OSC_P, OSC_SPAN)[1]


@pytest.mark.parametrize("Ref", REFERENCES)
def test_switched_oscillator_against_matrix_exponentials(Ref, oscillator_exact):
    problem = make_problem(OSC, OSC_P[3:], list(OSC_SPAN), OSC_P[:3], lambda zs: zs[-1, 0] ** 2 + zs[-1, 1] ** 2)
    est = Ref().compute(problem)
    got = np.concatenate([est.values["theta"], est.values["z0"], est.values["t"]])
    err = np.concatenate([est.errors["theta"], est.errors["z0"], est.errors["t"]])
    # the central differences of the exact solution are good to about 1e-9 (h^2 and rounding / h)
    assert np.all(np.abs(got - oscillator_exact) <= 3 * err + 1e-7 * np.abs(oscillator_exact) + 1e-9), \
        (est.name, got - oscillator_exact, err)


def test_check_and_taylor_on_the_oscillator():
    args = (OSC, OSC_P[3:], list(OSC_SPAN), OSC_P[:3], lambda zs: zs[-1, 0] ** 2 + zs[-1, 1] ** 2)
    with quiet():
        report = timed("check_gradients, oscillator (2 events)", lambda: odeverify.check_gradients(*args))
        taylor = timed("taylor_test, oscillator", lambda: odeverify.taylor_test(*args, seed=1))
    assert report.passed, str(report)
    assert all(r.agreeing == 4 for r in report.rows)  # both adjoints, forward sensitivities, finite differences
    assert any("Heaviside(-c + x) crossed at t = 0.620655" in w and "t = 2.0801" in w for w in report.warnings)
    assert taylor.passed, str(taylor)


# ----------------------------------------------------------------------------- the verdicts
def test_the_adjoint_passes_and_states_the_event_correction_as_its_assumption():
    args = (RELAX, [1.2], [0.1, 0.9, 3.0], THETA, loss_two)
    with quiet():
        report = timed("check_gradients, relaxation (adjoint)", lambda: odeverify.check_gradients(*args))
    assert report.passed, str(report)
    assert all(r.agreeing == 4 and r.status == "ok" for r in report.rows)
    text = next(w for w in report.warnings if w.startswith("f is not smooth"))
    assert "The adjoint's assumption is the event correction" in text and "crossed at t = 1.19434" in text
    assert "no event correction" not in " ".join(report.warnings)
    hypotheses = next(w for w in report.warnings if w.startswith("hypotheses"))
    assert "handled: Heaviside(c - x) (an event" in hypotheses and "may disagree" not in hypotheses


def _blind_candidates():
    def adjoint_without_the_jump(z0, ts, theta):
        # odeverify's adjoint with the saltation jump switched off: a^- = a^+, no g_theta w, g_t w
        with mock.patch.object(Event, "pull_back", lambda self, a_plus: (a_plus, 0.0)):
            return odeverify.adjoint_gradients(RELAX, z0, ts, theta, loss_two).as_dict()

    # by hand: the closed form differentiated with the crossing time held fixed (blind to the event moving)
    frozen = sp.Symbol("tau_frozen")
    L = 2 * before(T1) ** 2 + after(T2, frozen) ** 3
    subs = {**SUBS, frozen: float(TAU.subs(SUBS))}
    d = exact(L, subs)
    return [adjoint_without_the_jump, {"z0": d["z0"], "theta": d["theta"], "t": d["t"]}]


@pytest.mark.parametrize("candidate", _blind_candidates(), ids=["adjoint-without-saltation", "by-hand-frozen-tau"])
def test_a_candidate_blind_to_the_event_fails_with_the_event_named(candidate):
    args = (RELAX, [1.2], [0.1, 0.9, 3.0], THETA, loss_two)
    with quiet():
        report = timed("check_gradients, relaxation (blind candidate)",
                       lambda: odeverify.check_gradients(*args, candidate=candidate))
    assert not report.passed and str(report).startswith("check_gradients: FAILED")
    failed = {r.label for r in report.rows if r.status == "FAIL"}
    assert "∂L/∂θ[2] (c)" in failed and "∂L/∂θ[1] (b)" not in failed  # b does not move the crossing
    c_row = next(r for r in report.rows if r.label == "∂L/∂θ[2] (c)")
    assert abs(c_row.reference - float(sp.diff(2 * before(T1) ** 2 + after(T2) ** 3, c).subs(SUBS))) < 1e-8
    assert str(RELAX.discontinuities[0]) in report.summary
    assert any("event correction" in d and "Heaviside(c - x) crossed at t = 1.19434" in d for d in report.diagnoses)


def test_taylor_test_passes_on_the_relaxation_and_names_the_event():
    with quiet():
        result = timed("taylor_test, relaxation", lambda: odeverify.taylor_test(
            RELAX, [1.2], [0.1, 0.9, 3.0], THETA, loss_two, seed=0))
    assert result.passed, str(result)
    assert any("locates the crossings" in w for w in result.warnings)


# ----------------------------------------------------------------------------- what stays under the conservative rule
def test_a_kink_on_the_state_needs_no_correction_and_derivative_agreement_counts():
    # dx/dt = -k x + a relu(c - x): f is continuous at x = c, so the flow is differentiable without a saltation
    # term. x = x0 e^{-k (t - t0)} down to c at TAU, then x = xi + (c - xi) e^{-(k + a)(t - TAU)}, xi = a c / (k + a)
    system = odeverify.ODESystem.from_strings("x", "k a c", ["-k*x + a*relu(c - x)"])
    xi = a * c / (k + a)
    L = (xi + (c - xi) * sp.exp(-(k + a) * (T2 - TAU))) ** 2
    subs = {k: 0.8, a: 0.6, c: 0.5, x0: 1.2, t0: 0.1, T2: 3.0}
    expected = {"z0": want(L, subs, [x0]), "theta": want(L, subs, [k, a, c]), "t": want(L, subs, [t0, T2])}
    args = (system, [1.2], [0.1, 3.0], [0.8, 0.6, 0.5], lambda zs: zs[-1, 0] ** 2)
    problem = make_problem(*args)
    for Ref in (ForwardSensitivity, FiniteDifferences):
        assert_within_estimate(Ref().compute(problem), expected, rel=1e-7)
    with quiet():
        report = odeverify.check_gradients(*args, references=["adjoint", "forward"])
    assert report.passed, str(report)


def test_events_with_a_batch_are_not_located_and_never_pass_on_derivative_agreement():
    # two initial states: the solves locate events for one only, so forward sensitivities integrate through the
    # crossing blind; their agreement is inconclusive, with the reason
    z0 = [[1.2], [1.1]]
    loss = lambda zs: np.sum(zs[-1] ** 2)  # noqa: E731
    fwd = ForwardSensitivity().compute(make_problem(RELAX, z0, [0.1, 3.0], THETA, loss))
    with quiet():
        report = odeverify.check_gradients(RELAX, z0, [0.1, 3.0], THETA, loss, candidate=fwd.values,
                                           references=[fwd, "fd"])
    assert not report.passed
    c_row = next(r for r in report.rows if r.label.startswith("∂L/∂θ[2]"))
    assert c_row.status == "inconclusive"
    assert any("no solve locates the crossing (z0 is a batch of 2" in w for w in report.warnings)


def test_taylor_test_on_a_state_event_crossed_twice_passes_the_right_gradient_and_fails_a_wrong_one():
    # x' = p - t + a H(x - c) from x(0) = 1 crosses x = c = 1.2 twice; near h -> 0 the losses along a direction are
    # only as smooth as the solver tolerance (the steps after each located crossing jump with the perturbation)
    system = odeverify.ODESystem.from_strings("x", "p a c", ["p - t + a*heaviside(x - c)"])
    loss = lambda zs: zs[-1, 0] ** 2  # noqa: E731
    args = ([1.0], [0.0, 3.0], [1.0, 0.5, 1.2], loss)
    assert odeverify.taylor_test(system, *args, seed=0).passed

    def wrong(z0, ts, theta):
        g = odeverify.adjoint_gradients(system, z0, ts, theta, loss, rtol=1e-11, atol=1e-11).as_dict()
        g["theta"] = g["theta"] * 1.001
        return g

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert not odeverify.taylor_test(system, *args, seed=0, candidate=wrong).passed
