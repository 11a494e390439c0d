"""odeverify's own property suite: its gradients on generated problems (odeverify.strategies).

Default run: the `ci` hypothesis profile (10 examples a test, derandomized); nightly:
``pytest --hypothesis-profile=thorough``. The references are chosen for speed: forward sensitivities
and finite differences (complex step for z0 and theta) cost about 0.1-0.3 s a problem; autograd
through RK4 (about 1 s a problem) only where the property is about it, on a third of the examples.

Independent references: autograd through fixed-step RK4 with Richardson extrapolation, finite
differences, forward sensitivities (solve_ivp), matrix exponentials and their Fréchet derivatives
(scipy.linalg.expm / expm_frechet, in tests/helpers.py), and autograd applied to the loss alone.
"""


import autograd
import numpy as np
import pytest
import sympy
from hypothesis import find, given, note, settings
from hypothesis import strategies as st

import odeverify as ov
from odeverify import strategies as S
from odeverify.errors import TrivialTestWarning
from odeverify.references import AutogradRK

from helpers import linear_reference

TIGHT = dict(rtol=1e-10, atol=1e-10)


def examples(fraction):
    """A fraction of the active profile's number of examples (at least 2)."""
    return settings(max_examples=max(2, round(settings.default.max_examples * fraction)))


def scale(*arrays):
    return max(float(np.max(np.abs(a), initial=0.0)) for a in arrays)


def assert_close(got, want, rel, what):
    """|got - want| <= rel * (max |want| over the quantity), entry by entry."""
    got, want = np.asarray(got, float), np.asarray(want, float)
    tol = rel * max(scale(want), 1e-300)
    err = np.abs(got - want)
    assert np.all(err <= tol), f"{what}: max |difference| {err.max():.3g} over tolerance {tol:.3g}\n{got}\n{want}"


# ---------------------------------------------------------------------------- agreement with references
@examples(0.3)
@given(S.problems(n_states=(1, 2), n_times=(2, 3), decreasing=None))
def test_adjoint_in_both_modes_agrees_with_autograd_through_rk4_and_finite_differences(problem):
    # explicit tolerances, entry by entry: rtol |reference| + atol * (largest entry of the quantity). Not
    # check_gradients' consensus, which trusts each reference's own error estimate: the thorough profile found
    # RK4's Richardson estimate five times too small (dL/dy0 off by 7.6e-9, estimated 1.6e-9), which makes the
    # check inconclusive although both references are well within these tolerances
    rk4, fd = ov.compute_references(*problem, references=[AutogradRK("rk4", target=1e-6), "fd"])
    tolerances = {rk4.name: (1e-5, 1e-5), fd.name: (1e-7, 1e-7)}
    for mode in ("interpolated", "backsolve"):
        result = ov.adjoint_gradients(*problem, mode=mode, **TIGHT).as_dict()
        for ref in (rk4, fd):
            rtol, atol = tolerances[ref.name]
            for q, want in ref.values.items():
                want, got = np.asarray(want), np.asarray(result[q])
                # plus the reference's own error estimate: differences of a dense output in time can be off
                # by more than 1e-7 relative (see the regression test below), and say so
                tol = rtol * np.abs(want) + atol * scale(want) + 3 * np.asarray(ref.errors[q])
                assert np.all(np.abs(got - want) <= tol), (
                    f"{mode} adjoint vs {ref.name}, dL/d{q}:\n adjoint   {got}\n reference {want}\n"
                    f" |diff|    {np.abs(got - want)}\n tolerance {tol}"
                )


@given(S.problems(decreasing=None, n_times=(2, 5)), st.data())
def test_generated_problems_pass_the_check_and_a_mutated_gradient_fails_it(problem, data):
    # forward sensitivities and finite differences, plus the tight adjoint as a tie-breaker when those two
    # disagree (it cannot stand alone: it shares the candidate's derivation); without it, the thorough
    # profile finds the false inconclusive of test_finite_differences_can_underestimate_their_error
    refs = ov.compute_references(*problem, references=["forward", "fd", "adjoint"])
    result = ov.adjoint_gradients(*problem, **TIGHT)
    report = ov.check_gradients(*problem, candidate=result, references=refs)
    assert report.passed, str(report)
    # one mutation of the right gradient: an entry moved by 1e-3 of its quantity's scale, a sign flipped,
    # or a whole quantity zeroed; the check must fail on exactly the changed entries
    grads = {k: np.array(v, dtype=float) for k, v in result.as_dict().items() if np.size(v)}
    q = data.draw(st.sampled_from(sorted(grads)), label="quantity")
    kind = data.draw(st.sampled_from(["shift", "sign", "zero"]), label="mutation")
    g = grads[q]
    flat = g.reshape(-1)
    if kind == "shift":
        j = data.draw(st.integers(0, flat.size - 1), label="entry")
        flat[j] += data.draw(st.sampled_from([1, -1]), label="direction") * 1e-3 * scale(g)
        changed = {j}
    elif kind == "sign":
        j = int(np.argmax(np.abs(flat)))
        flat[j] = -flat[j]
        changed = {j}
    else:
        changed = set(np.flatnonzero(np.abs(flat) > 1e-3 * scale(g)))
        flat[:] = 0.0
    mutated = ov.check_gradients(*problem, candidate=grads, references=refs)
    note(str(mutated))
    assert not mutated.passed
    failed = {int(np.ravel_multi_index(r.index, g.shape)) for r in mutated.failures if r.quantity == q}
    assert failed >= changed
    assert all(r.quantity == q for r in mutated.failures)


def test_finite_differences_error_estimate_covers_their_error():
    # regression, found by the thorough profile when the complex-step error estimate used two tolerances:
    # forward sensitivities gave dL/da = -1.570560511e-4 (autograd through DOP853 and the adjoint agree to
    # 2e-13), finite differences -1.570560546e-4, off by 3.5e-12 while estimating their own error at
    # 3.5e-13, so two right references disagreed and the check was inconclusive
    x, a, b, c = sympy.symbols("x a b c", real=True)
    system = ov.ODESystem([x], [a, b, c], [a * sympy.tanh(2 * x) + b * x**2 + c * sympy.cos(2 * x) + x**3 + x])
    loss = S.GeneratedLoss((1,), ((0, "square", 1.0),), 3, 1)
    problem = (system, [-0.7], [0.0, -0.9625, -1.925], [0.5, -0.875, -0.6875], loss)
    report = ov.check_gradients(*problem, candidate=ov.adjoint_gradients(*problem, **TIGHT),
                                references=["forward", "fd"])
    assert report.passed, str(report)


def test_finite_differences_in_time_state_the_dense_outputs_bias():
    # regression, found by the thorough profile: differences of the dense output at tN gave dL/dtN off by
    # 2.9e-8 (the solver's error at rtol 1e-12 varies from step to step) while Richardson claimed 8.8e-10.
    # The truth here: forward sensitivities and autograd through DOP853 agree to 1e-12.
    x, a, b, c, t = sympy.symbols("x a b c t", real=True)
    from odeverify._functions import sigmoid as sig
    rhs = (a * sympy.exp(-(b * sig(c * t) + t * sig(c * t * x + t)) ** 2) + b * t * x
           + c * sympy.cos(t * sig(c * t * x) / 2) + x**3 + 2 * x)
    system = ov.ODESystem([x], [a, b, c], [rhs], t)
    problem = (system, [-1.5], [0.25, -0.4875, -1.225], [-0.1875, -0.625, -0.375],
               lambda zs: -autograd.numpy.sum(zs**2) / 2)
    fd, forward = ov.compute_references(*problem, references=["fd", "forward"])
    truth = np.asarray(forward.values["t"])
    assert np.all(np.abs(np.asarray(fd.values["t"]) - truth) <= np.asarray(fd.errors["t"]))


def test_losses_at_t0_alone_are_flagged_trivial_yet_their_z0_gradient_is_checked():
    # a loss at t0 alone depends on z0 only: dL/dz0 is the loss's own gradient at t0 (autograd, no ODE)
    p = find(S.problems(n_states=2, n_times=3, t0_alone=True), lambda p: p.loss.times == (0,))
    with pytest.warns(TrivialTestWarning) as caught:
        report = ov.check_gradients(*p, references=["forward", "fd"])
    assert report.passed, str(report)
    messages = " ".join(str(w.message) for w in caught)
    assert "∂L/∂θ is identically zero" in messages and "∂L/∂t is identically zero" in messages
    zs = np.repeat(p.z0[None], len(p.ts), axis=0)
    np.testing.assert_allclose(ov.adjoint_gradients(*p, **TIGHT).z0, autograd.grad(p.loss)(zs)[0], rtol=1e-12)


@examples(0.5)
@given(S.problems(systems=S.linear_systems(n_states=(1, 3), real_parts=(-1.0, 0.5), max_imag=2.0)), st.data())
def test_adjoint_agrees_with_the_matrix_exponential_on_linear_systems(problem, data):
    # L = sum_i c_i . z_i + 1/2 |z_i|^2 at every time, exact by expm and expm_frechet (tests/helpers.py)
    system, z0, ts, theta, _ = problem
    n = system.n_states
    c = np.array(data.draw(st.lists(st.sampled_from([-1.0, 0.5, 1.0]), min_size=len(ts) * n,
                                    max_size=len(ts) * n))).reshape(len(ts), n)

    def loss(zs):
        return autograd.numpy.sum(c * zs + 0.5 * zs * zs)

    def A_of(th):  # A column by column: f(e_j)
        return np.stack([system.eval_f(np.eye(n)[j : j + 1], 0.0, th)[0] for j in range(n)], axis=1)

    L, dz0, dA, dts = linear_reference(A_of(theta), z0, ts, c)
    # A is linear in theta: dL/dtheta_k = sum_ij dL/dA_ij dA_ij/dtheta_k
    basis = np.eye(len(theta))
    dA_dtheta = np.stack([(A_of(basis[k]) - A_of(0 * theta)).ravel() for k in range(len(theta))], axis=1)
    res = ov.adjoint_gradients(system, z0, ts, theta, loss, **TIGHT)
    assert res.loss == pytest.approx(L, rel=1e-8)
    assert_close(res.z0, dz0, 1e-7, "dL/dz0")
    assert_close(res.theta, dA @ dA_dtheta, 1e-7, "dL/dtheta")
    assert_close(res.t, dts, 1e-7, "dL/dt")


# ---------------------------------------------------------------------------- structural properties
@given(S.problems(decreasing=None, n_times=(2, 5)), st.data())
def test_gradients_are_linear_in_the_loss(problem, data):
    system, z0, ts, theta, loss1 = problem
    loss2 = data.draw(S.losses(len(ts), system.n_states, t0_alone=True), label="second loss")
    alpha, beta = data.draw(st.tuples(*[st.sampled_from([1.0, -2.0, 0.5, 3.0])] * 2), label="alpha, beta")

    def combined(zs):
        return alpha * loss1(zs) + beta * loss2(zs)

    g1 = ov.adjoint_gradients(system, z0, ts, theta, loss1, **TIGHT)
    g2 = ov.adjoint_gradients(system, z0, ts, theta, loss2, **TIGHT)
    g = ov.adjoint_gradients(system, z0, ts, theta, combined, **TIGHT)
    assert g.loss == pytest.approx(alpha * g1.loss + beta * g2.loss, rel=1e-12, abs=1e-12)
    for q in ("z0", "theta", "t"):
        want = alpha * getattr(g1, q) + beta * getattr(g2, q)
        # the backward solves take different steps: compare at 1e-6 of the terms' scale
        err = np.abs(getattr(g, q) - want)
        tol = 1e-6 * max(scale(alpha * getattr(g1, q), beta * getattr(g2, q)), 1e-12)
        assert np.all(err <= tol), (q, err.max(), tol)


@given(S.problems(decreasing=None, n_times=(2, 5), grids=None))
def test_reversing_the_time_grid_is_consistent(problem):
    r"""Run the same trajectory backwards: start from z(tN) on the reversed grid.

    L(z0, t0..tN, θ) = L_rev(Φ(z0; t0 → tN, θ), tN..t0, θ), so with w = dL_rev/dz(tN) and the auxiliary
    loss A = w · z(tN) of the forward problem:
        dL/dz0 = dA/dz0,   dL/dθ = dL_rev/dθ + dA/dθ,   dL/dt_i = dL_rev/dt_i + dA/dt_i,
    (the reversed problem's time gradients listed in reverse).
    """
    system, z0, ts, theta, loss = problem
    fwd = ov.adjoint_gradients(system, z0, ts, theta, loss, **TIGHT)
    zN = fwd.zs[-1]

    def reversed_loss(zs):
        return loss(zs[::-1])

    rev = ov.adjoint_gradients(system, zN, ts[::-1], theta, reversed_loss, **TIGHT)
    w = rev.z0

    def aux_loss(zs):
        return autograd.numpy.sum(w * zs[-1])

    aux = ov.adjoint_gradients(system, z0, ts, theta, aux_loss, **TIGHT)
    assert rev.loss == pytest.approx(fwd.loss, rel=1e-6, abs=1e-9)
    np.testing.assert_allclose(rev.zs[::-1], fwd.zs, rtol=1e-5, atol=1e-7)
    pairs = {"z0": (fwd.z0, aux.z0), "theta": (fwd.theta, rev.theta + aux.theta), "t": (fwd.t, rev.t[::-1] + aux.t)}
    for q, (got, want) in pairs.items():
        # backward integration amplifies the solver's errors; compare at 1e-5 of the terms' scale
        terms = {"z0": (aux.z0,), "theta": (rev.theta, aux.theta), "t": (rev.t, aux.t)}[q]
        tol = 1e-5 * max(scale(*terms), scale(got), 1e-12)
        err = np.abs(np.asarray(got) - np.asarray(want))
        assert np.all(err <= tol), (q, err.max(), tol, got, want)


@given(S.problems(batch_size=(2, 4), decreasing=None, n_times=(2, 4)))
def test_a_batch_equals_its_samples(problem):
    system, z0, ts, theta, loss = problem
    batch = ov.adjoint_gradients(system, z0, ts, theta, loss, **TIGHT)
    samples = [ov.adjoint_gradients(system, z, ts, theta, loss, **TIGHT) for z in z0]
    assert batch.loss == pytest.approx(sum(s.loss for s in samples), rel=1e-7)
    assert_close(batch.z0, np.stack([s.z0 for s in samples]), 1e-6, "dL/dz0 per sample")
    assert_close(batch.theta, sum(s.theta for s in samples), 1e-6, "dL/dtheta, summed")
    assert_close(batch.t, sum(s.t for s in samples), 1e-6, "dL/dt, summed")
    np.testing.assert_allclose(batch.zs, np.stack([s.zs for s in samples], axis=1), rtol=1e-6, atol=1e-9)
