"""The references and the verdicts on right-hand sides that switch in t (issue 15).

Every expected value is a closed-form solution written down by hand (one
formula per side of each switch) and differentiated with SymPy; none comes
from the code under test. Each reference must lie within its own error
estimate of it.
"""

import contextlib
import warnings

import numpy as np
import pytest
import sympy as sp

import odeverify
from odeverify.references import AutogradRK, FiniteDifferences, ForwardSensitivity, make_problem
from odeverify.references._members import flat_inputs, member_states

REFERENCES = [ForwardSensitivity, FiniteDifferences, AutogradRK]
k, k1, k2, s, x0, t0, T1, T2 = sp.symbols("k k1 k2 s x0 t0 T1 T2", real=True)


def decay(t, start, value, rate):
    return value * sp.exp(-rate * (t - start))


def forced(t, start, value):
    """dx/dt = -k x + 1 from x(start) = value."""
    return (value - 1 / k) * sp.exp(-k * (t - start)) + 1 / k


def want(expr, subs, order):
    return np.array([np.nan if v is None else float(sp.diff(expr, v).subs(subs)) for v in order])


def assert_within_estimate(est, exact):
    for q, value in exact.items():
        got, err = np.asarray(est.values[q], dtype=float), np.asarray(est.errors[q], dtype=float)
        ok = np.isnan(value)
        assert np.all(np.isnan(got[ok])), (est.name, q, got)
        bound = 3 * err[~ok] + 1e-9 * np.abs(value[~ok]) + 1e-12
        assert np.all(np.abs(got[~ok] - value[~ok]) <= bound), (est.name, q, got, value, err)


@contextlib.contextmanager
def quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


FORCING = odeverify.ODESystem.from_strings("x", "k s", ["-k*x + heaviside(t - s)"])


# ----------------------------------------------------------------------------- heaviside forcing
@pytest.mark.parametrize("Ref", REFERENCES)
def test_heaviside_forcing_observed_before_and_after_the_switch(Ref):
    # x(T1) before s (T1 < s), x(T2) after it; L = x(T1)^3 + x(T2)^2
    x_s = decay(s, t0, x0, k)
    L = decay(T1, t0, x0, k) ** 3 + forced(T2, s, x_s) ** 2
    subs = {k: 0.7, s: 0.9, x0: 1.0, t0: 0.0, T1: 0.5, T2: 2.0}
    problem = make_problem(FORCING, [1.0], [0.0, 0.5, 2.0], [0.7, 0.9], lambda zs: zs[1, 0] ** 3 + zs[-1, 0] ** 2)
    est = Ref().compute(problem)
    assert_within_estimate(est, {"z0": want(L, subs, [x0]), "theta": want(L, subs, [k, s]),
                                 "t": want(L, subs, [t0, T1, T2])})
    assert est.left_out == {} and est.one_sided == {}


def test_the_issues_numbers():
    x_s = decay(s, t0, x0, k)
    L = forced(T2, s, x_s) ** 2
    d_s = float(sp.diff(L, s).subs({k: 0.7, s: 0.9, x0: 1.0, t0: 0.0, T2: 2.0}))
    assert abs(d_s - (-0.93873228206)) < 1e-10
    problem = make_problem(FORCING, [1.0], [0.0, 2.0], [0.7, 0.9], lambda zs: zs[-1, 0] ** 2)
    for Ref in REFERENCES:
        est = Ref().compute(problem)
        assert abs(est.values["theta"][1] - d_s) <= 3 * est.errors["theta"][1] + 1e-9, est.name


# ----------------------------------------------------------------------------- a rate that switches
@pytest.mark.parametrize("Ref", REFERENCES)
def test_a_rate_that_switches_from_k1_to_k2(Ref):
    system = odeverify.ODESystem.from_strings("x", "k1 k2 s", ["-(k1 + (k2 - k1)*heaviside(t - s))*x"])
    L = decay(T2, s, decay(s, t0, x0, k1), k2) ** 2
    subs = {k1: 0.3, k2: 1.1, s: 0.8, x0: 1.5, t0: 0.0, T2: 2.0}
    problem = make_problem(system, [1.5], [0.0, 2.0], [0.3, 1.1, 0.8], lambda zs: zs[-1, 0] ** 2)
    est = Ref().compute(problem)
    assert_within_estimate(est, {"z0": want(L, subs, [x0]), "theta": want(L, subs, [k1, k2, s]),
                                 "t": want(L, subs, [t0, T2])})


# ----------------------------------------------------------------------------- a decreasing grid
@pytest.mark.parametrize("Ref", REFERENCES)
def test_a_decreasing_grid_crosses_the_switch_backwards(Ref):
    # x given at t0 = 2 > s, solved down to T2 = 0: the forced branch first, then pure decay below s
    L = decay(T2, s, forced(s, t0, x0), k) ** 2
    subs = {k: 0.7, s: 0.9, x0: 1.2, t0: 2.0, T2: 0.0}
    problem = make_problem(FORCING, [1.2], [2.0, 0.0], [0.7, 0.9], lambda zs: zs[-1, 0] ** 2)
    est = Ref().compute(problem)
    assert_within_estimate(est, {"z0": want(L, subs, [x0]), "theta": want(L, subs, [k, s]),
                                 "t": want(L, subs, [t0, T2])})


# ----------------------------------------------------------------------------- a switch on an observation time
def test_a_switch_on_an_observation_time_is_not_differentiable_and_has_both_one_sided_values():
    # s = T1 = 0.9: as s decreases, the switch acts before T1 (x(T1) is on the forced branch); as s increases,
    # after it (x(T1) is the pure decay). L = x(T1)^3 + x(T2)^2.
    subs = {k: 0.7, s: 0.9, x0: 1.0, t0: 0.0, T1: 0.9, T2: 2.0}
    x_s = decay(s, t0, x0, k)
    L_end = forced(T2, s, x_s) ** 2
    left = float(sp.diff(forced(T1, s, x_s) ** 3 + L_end, s).subs(subs))
    right = float(sp.diff(decay(T1, t0, x0, k) ** 3 + L_end, s).subs(subs))
    # t1 as it decreases sees the decay branch's rate, as it increases the forced one's
    x1 = float(decay(T1, t0, x0, k).subs(subs))
    t_left, t_right = 3 * x1**2 * (-0.7 * x1), 3 * x1**2 * (1 - 0.7 * x1)
    L = decay(T1, t0, x0, k) ** 3 + L_end
    loss = lambda zs: zs[1, 0] ** 3 + zs[-1, 0] ** 2  # noqa: E731
    problem = make_problem(FORCING, [1.0], [0.0, 0.9, 2.0], [0.7, 0.9], loss)
    fwd = ForwardSensitivity().compute(problem)
    np.testing.assert_allclose(fwd.one_sided[("theta", (1,))], [left, right], rtol=1e-8)
    np.testing.assert_allclose(fwd.one_sided[("t", (1,))], [t_left, t_right], rtol=1e-8)
    exact = {"z0": want(L, subs, [x0]), "theta": want(L, subs, [k, None]), "t": want(L, subs, [t0, None, T2])}
    for Ref in REFERENCES:
        est = Ref().compute(problem)
        assert_within_estimate(est, exact)
        if Ref is not ForwardSensitivity:
            assert set(est.left_out) == {("theta", (1,)), ("t", (1,))}
            assert "Heaviside(-s + t) jumps" in est.left_out[("t", (1,))]
    with quiet():
        report = odeverify.check_gradients(FORCING, [1.0], [0.0, 0.9, 2.0], [0.7, 0.9], loss)
    rows = {r.label: r for r in report.rows}
    for label in ("∂L/∂θ[1] (s)", "∂L/∂t1"):
        assert rows[label].status == "not differentiable"
        assert "on the observation time t1" in rows[label].note and "one-sided derivatives" in rows[label].note
    assert f"{left:.10g} as it decreases and {right:.10g} as it increases" in rows["∂L/∂θ[1] (s)"].note
    assert all(r.status == "ok" for r in report.rows if r.status != "not differentiable")
    assert "not differentiable" in report.summary


# ----------------------------------------------------------------------------- the verdicts
def test_a_candidate_with_dL_ds_zero_fails_naming_the_discontinuity():
    loss = lambda zs: zs[-1, 0] ** 2  # noqa: E731

    def blind(z0, ts, theta):
        out = odeverify.adjoint_gradients(FORCING, z0, ts, theta, loss).as_dict()
        out["theta"][1] = 0.0
        return out

    with quiet():
        report = odeverify.check_gradients(FORCING, [1.0], [0.0, 2.0], [0.7, 0.9], loss, candidate=blind)
        good = odeverify.check_gradients(FORCING, [1.0], [0.0, 2.0], [0.7, 0.9], loss)
    assert not report.passed and str(report).startswith("check_gradients: FAILED")
    row = next(r for r in report.rows if r.label == "∂L/∂θ[1] (s)")
    assert row.status == "FAIL" and abs(row.reference + 0.93873228206) < 1e-8
    assert str(FORCING.discontinuities[0]) in report.summary
    assert any("jump term" in d and "at t = 0.9" in d for d in report.diagnoses)
    # every reference confirms the true gradient: the adjoint passes, on a five-way consensus
    assert good.passed and all(r.agreeing == 5 for r in good.rows)


def test_the_batched_perturbed_solves_do_not_chase_the_jump():
    # 41 members with their own switch times s +- h: restarted there, the batch takes few steps
    problem = make_problem(FORCING, [1.0], [0.0, 2.0], [0.7, 0.9], lambda zs: zs[-1, 0] ** 2)
    X = np.repeat(flat_inputs(problem)[None], 41, axis=0)
    X[:, 2] += np.linspace(-0.05, 0.05, 41)  # s
    zs, nsteps = member_states(problem, X, rtol=1e-12)
    assert nsteps <= 120, nsteps
    # each member is its own closed form
    kk, ss = 0.7, X[:, 2]
    x2 = np.exp(-2 * kk) + (1 - np.exp(-kk * (2 - ss))) / kk
    np.testing.assert_allclose(zs[:, -1, 0, 0], x2, rtol=1e-10)


def test_taylor_test_passes_on_a_switch_in_t_and_names_it():
    with quiet():
        result = odeverify.taylor_test(FORCING, [1.0], [0.0, 2.0], [0.7, 0.9], lambda zs: zs[-1, 0] ** 2, seed=0)
    assert result.passed, str(result)
    assert any(str(FORCING.discontinuities[0]) in w for w in result.warnings)


# ----------------------------------------------------------------------------- a switch in the state
def test_a_switch_in_the_state_is_located_and_the_references_agree_with_the_closed_form():
    # dx/dt = -x + c H(x - 1/2), x(0) = 1: x = c + (1 - c) e^{-t} until x = 1/2, then pure decay. The event time
    # moves with c; the solves locate it and the derivative-based references add the saltation term
    # (tests/test_event_references.py has the full set of entries)
    system = odeverify.ODESystem.from_strings("x", "c", ["-x + c*heaviside(x - 0.5)"])
    loss = lambda zs: zs[-1, 0] ** 2  # noqa: E731
    with quiet():
        report = odeverify.check_gradients(system, [1.0], [0.0, 2.0], [0.2], loss,
                                           references=["adjoint", "forward"])
        with_fd = odeverify.check_gradients(system, [1.0], [0.0, 2.0], [0.2], loss)
    # closed form: the crossing at tau = ln((1 - c)/(1/2 - c)), then x(2) = e^{-(2 - tau)} / 2
    c = sp.Symbol("c")
    tau = sp.log((1 - c) / (sp.Rational(1, 2) - c))
    d_c = float(sp.diff((sp.exp(-(2 - tau)) / 2) ** 2, c).subs(c, 0.2))
    c_row = next(r for r in report.rows if r.label.startswith("∂L/∂θ[0]"))
    assert report.passed and c_row.status == "ok" and abs(c_row.reference - d_c) <= 1e-8 * abs(d_c)
    assert any("The adjoint's assumption is the event correction" in w for w in report.warnings)
    fd = next(e for e in with_fd.references if e.name == "finite differences")
    assert abs(fd.values["theta"][0] - d_c) <= 3 * fd.errors["theta"][0] + 1e-9 * abs(d_c)
    assert with_fd.passed, str(with_fd)


def test_coinciding_switches_leave_the_check_inconclusive_not_passed():
    # heaviside(t - s1) + heaviside(t - s2) at s1 = s2: every reference shares the merged switch time, so
    # before the fix they all agreed on dL/ds1 = 0 (closed form: -2.359) and the check PASSED
    system = odeverify.ODESystem.from_strings("x", "k s1 s2", ["-k*x + heaviside(t - s1) + 2*heaviside(t - s2)"])
    with quiet():
        report = odeverify.check_gradients(system, [1.0], [0.0, 2.0], [0.7, 0.9, 0.9], lambda zs: zs[-1, 0] ** 2)
        fwd = ForwardSensitivity().compute(make_problem(system, [1.0], [0.0, 2.0], [0.7, 0.9, 0.9],
                                                        lambda zs: zs[-1, 0] ** 2))
    assert not report.passed and "inconclusive" in str(report)
    # forward sensitivities still give dL/dk (the NaN stays in its own columns)
    s_ = sp.Symbol("s", real=True)
    xT = x0 * sp.exp(-k * T2) + 3 * (1 - sp.exp(-k * (T2 - s_))) / k
    dk = float(sp.diff(xT**2, k).subs({k: 0.7, s_: 0.9, x0: 1.0, T2: 2.0}))
    assert np.isnan(fwd.values["theta"][1]) and np.isnan(fwd.values["theta"][2])
    assert abs(fwd.values["theta"][0] - dk) <= 1e-7 * abs(dk)


def test_a_verdict_on_many_switch_times_names_a_few_and_counts_the_rest():
    # heaviside(sin(w t)) switches 60 times on [0.1, 2] at w = 100: the summary names the discontinuity once
    system = odeverify.ODESystem.from_strings("x", "k w", ["-k*x + heaviside(sin(w*t))"])
    loss = lambda zs: zs[-1, 0] ** 2  # noqa: E731

    def blind(z0, ts, theta):
        g = odeverify.adjoint_gradients(system, z0, ts, theta, loss, rtol=1e-10, atol=1e-10).as_dict()
        g["theta"] = g["theta"].copy()
        g["theta"][1] = 0.0
        return g

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = odeverify.check_gradients(system, [1.0], [0.1, 2.0], [0.7, 100.0], loss, candidate=blind)
    assert not report.passed
    assert "and 57 more" in report.summary and report.summary.count("Heaviside(sin(t*w)) jumps") == 1
    assert len(report.summary) < 800 and all(len(w) < 800 for w in report.warnings)
