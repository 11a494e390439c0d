"""ODESystem: the symbolic derivation and its compiled, vectorized kernels."""

import autograd
import autograd.numpy as anp
import numpy as np
import pytest
import sympy as sp

import odeverify as ov
from odeverify.errors import InvalidArgumentError, InvalidTypeError


@pytest.fixture(scope="module")
def lv():
    return ov.ODESystem.from_strings("x y", "a b c d", ["a*x - b*x*y", "c*x*y - d*y"])


@pytest.fixture(scope="module")
def forced():
    # time-dependent, with a constant-in-z entry and non-polynomial functions
    return ov.ODESystem.from_strings(
        "u v", "k w", ["-k*u + sin(w*t)", "tanh(u) * exp(-v) + sigmoid(w) + 0.5"], name="forced"
    )


def test_lotka_volterra_derivation_by_hand(lv):
    x, y = lv.states
    a, b, c, d = lv.params
    ax, ay = lv.adjoint
    assert lv.jac_z == sp.Matrix([[a - b * y, -b * x], [c * y, c * x - d]])
    assert lv.jac_theta == sp.Matrix([[x, -x * y, 0, 0], [0, 0, x * y, -y]])
    assert lv.jac_t == sp.zeros(2, 1)
    assert lv.is_autonomous
    want_adj = -sp.Matrix([[a - b * y, c * y], [-b * x, c * x - d]]) * sp.Matrix([ax, ay])
    assert sp.simplify(lv.adjoint_rhs - want_adj) == sp.zeros(2, 1)
    assert sp.simplify(lv.adjoint_theta_rhs - sp.Matrix([-ax * x, ax * x * y, -ay * x * y, ay * y])) == sp.zeros(4, 1)
    assert lv.adjoint_t_rhs == sp.zeros(1, 1)


def test_augmented_system_structure(forced):
    n, p = forced.n_states, forced.n_params
    assert forced.f_aug.shape == (n + p + 1, 1)
    assert list(forced.f_aug[n:, 0]) == [0] * p + [1]
    J = forced.jac_aug
    assert J.shape == (n + p + 1, n + p + 1)
    # only the first n rows are non-zero: [f_z, f_theta, f_t]
    assert J[:n, :] == sp.Matrix.hstack(forced.jac_z, forced.jac_theta, forced.jac_t)
    assert J[n:, :] == sp.zeros(p + 1, n + p + 1)
    # the augmented adjoint dynamics are -(d f_aug)^T a_aug, as in the notes
    assert forced.augmented_adjoint_rhs == -J.T * forced.augmented_adjoint
    assert forced.augmented_adjoint_rhs[:n, 0] == forced.adjoint_rhs
    assert not forced.is_autonomous


def test_backward_jacobian_is_the_jacobian_of_the_backward_rhs(forced):
    # the structured construction equals SymPy's own jacobian of the stacked rhs
    want = forced.backward_rhs.jacobian(forced.backward_state)
    got = forced.backward_jac
    assert got.shape == want.shape
    assert sp.simplify(got - want) == sp.zeros(*want.shape)


def _sympy_eval(mat, subs):
    return np.array(mat.subs(subs).evalf(30), dtype=float)


@pytest.mark.parametrize("batch", [(), (5,), (2, 3)])
def test_kernels_match_sympy_evaluation(forced, batch):
    rng = np.random.default_rng(0)
    z = rng.normal(size=batch + (2,))
    a = rng.normal(size=batch + (2,))
    t = rng.uniform(0, 2, size=batch)
    th = np.array([0.7, 1.9])
    num = forced.numeric
    f = num.f(z, t, th)
    fz = num.jac_z(z, t, th)
    fth = num.jac_theta(z, t, th)
    ft = num.jac_t(z, t, th)
    az, ath, at = num.vjp(a, z, t, th)
    assert f.shape == batch + (2,)
    assert fz.shape == batch + (2, 2) and fth.shape == batch + (2, 2) and ft.shape == batch + (2,)
    assert az.shape == batch + (2,) and ath.shape == batch + (2,) and at.shape == batch
    for idx in np.ndindex(*batch):
        subs = {
            **dict(zip(forced.states, z[idx])),
            **dict(zip(forced.adjoint, a[idx])),
            forced.time: t[idx],
            **dict(zip(forced.params, th)),
        }
        np.testing.assert_allclose(f[idx], _sympy_eval(forced.f, subs).ravel(), rtol=1e-13)
        np.testing.assert_allclose(fz[idx], _sympy_eval(forced.jac_z, subs), rtol=1e-13, atol=1e-15)
        np.testing.assert_allclose(fth[idx], _sympy_eval(forced.jac_theta, subs), rtol=1e-13, atol=1e-15)
        np.testing.assert_allclose(ft[idx], _sympy_eval(forced.jac_t, subs).ravel(), rtol=1e-13, atol=1e-15)
        np.testing.assert_allclose(-az[idx], _sympy_eval(forced.adjoint_rhs, subs).ravel(), rtol=1e-13, atol=1e-15)
        np.testing.assert_allclose(-ath[idx], _sympy_eval(forced.adjoint_theta_rhs, subs).ravel(), rtol=1e-13, atol=1e-15)
        np.testing.assert_allclose(-at[idx], _sympy_eval(forced.adjoint_t_rhs, subs).item(), rtol=1e-13, atol=1e-15)


def test_backward_kernels_match_sympy(forced):
    rng = np.random.default_rng(1)
    y = rng.normal(size=(4, forced.backward_state.rows))
    th = np.array([0.3, 1.1])
    rhs = forced.numeric.backward_rhs(y, 0.4, th)
    jac = forced.numeric.backward_jac(y, 0.4, th)
    for b in range(4):
        subs = {**dict(zip(forced.backward_state, y[b])), forced.time: 0.4, **dict(zip(forced.params, th))}
        np.testing.assert_allclose(rhs[b], _sympy_eval(forced.backward_rhs, subs).ravel(), rtol=1e-13, atol=1e-15)
        np.testing.assert_allclose(jac[b], _sympy_eval(forced.backward_jac, subs), rtol=1e-13, atol=1e-15)


def test_constant_entries_broadcast():
    s = ov.ODESystem.from_strings("x y", "k", ["2.5", "k"])
    out = s.numeric.f(np.zeros((4, 3, 2)), 0.0, [7.0])
    assert out.shape == (4, 3, 2)
    assert np.all(out[..., 0] == 2.5) and np.all(out[..., 1] == 7.0)
    # parameters may carry the batch too
    out = s.numeric.f(np.zeros(2), 0.0, np.array([[1.0], [2.0], [3.0]]))
    np.testing.assert_array_equal(out, [[2.5, 1.0], [2.5, 2.0], [2.5, 3.0]])


def test_batch_is_one_vectorized_call(lv, monkeypatch):
    # a batch of 1000 evaluates with a single call of the generated function
    kernel = lv.numeric._kernel("f")
    calls = []
    inner = kernel._fun
    monkeypatch.setattr(kernel, "_fun", lambda *args: calls.append(1) or inner(*args))
    out = lv.numeric.f(np.ones((1000, 2)), 0.0, [1.0, 2.0, 3.0, 4.0])
    assert out.shape == (1000, 2) and len(calls) == 1


def test_kernel_argument_errors(lv):
    with pytest.raises(InvalidArgumentError, match=r"z must have last axis of length 2 \(x, y\), got shape \(3,\)"):
        lv.numeric.f(np.ones(3), 0.0, np.ones(4))
    with pytest.raises(InvalidArgumentError, match="do not broadcast"):
        lv.numeric.f(np.ones((3, 2)), np.ones(4), np.ones(4))
    with pytest.raises(InvalidTypeError, match="numeric"):
        lv.numeric.f(np.array(["a", "b"]), 0.0, np.ones(4))


def test_autograd_backend_matches_and_differentiates(forced):
    rng = np.random.default_rng(2)
    z = rng.normal(size=(3, 2))
    th = np.array([0.4, 1.3])
    np.testing.assert_allclose(forced.f_autograd(z, 0.2, th), forced.numeric.f(z, 0.2, th), rtol=1e-15)
    # autograd's gradient of sum(a * f) w.r.t. z, theta, t equals the vjp kernel
    a = rng.normal(size=(3, 2))
    gz = autograd.grad(lambda zz: anp.sum(a * forced.f_autograd(zz, 0.2, th)))(z)
    gth = autograd.grad(lambda tt: anp.sum(a * forced.f_autograd(z, 0.2, tt)))(th)
    gt = autograd.grad(lambda tt: anp.sum(a * forced.f_autograd(z, tt, th)))(0.2)
    _, vz, vth, vt = forced.eval_vjp(a, z, 0.2, th, with_f=True)
    np.testing.assert_allclose(gz, vz, rtol=1e-12)
    np.testing.assert_allclose(gth, vth, rtol=1e-12)
    assert gt == pytest.approx(vt, rel=1e-12)


def test_complex_step_kernel(forced):
    z = np.array([0.3, -0.2])
    h = 1e-30
    fc = forced.numeric._kernel("f").evaluate_complex(z + 1j * h * np.array([1.0, 0.0]), 0.5, np.array([0.4, 1.3]))[0]
    np.testing.assert_allclose(fc.imag / h, forced.numeric.jac_z(z, 0.5, [0.4, 1.3])[:, 0], rtol=1e-13)
    assert forced.complex_step_safe()
    assert not ov.ODESystem.from_strings("x", "", ["abs(x)"]).complex_step_safe()


def test_from_sympy_objects_and_real_assumption():
    x, k = sp.symbols("x k")  # no assumptions
    s = ov.ODESystem([x], [k], [-k * sp.Abs(x)])
    assert all(sym.is_real for sym in s.states + s.params)
    # the real derivative of |x| is sign(x), not an expression in re/im
    assert s.jac_z[0, 0] == -s.params[0] * sp.sign(s.states[0])
    assert s.nonsmooth_functions() == ["Abs"]


@pytest.mark.parametrize(
    "kwargs,err,match",
    [
        (dict(states="x", params="", rhs=["x", "x"]), InvalidArgumentError, "rhs has 2 components but there are 1 states"),
        (dict(states="x", params="x", rhs=["x"]), InvalidArgumentError, "already declared"),
        (dict(states="t", params="", rhs=["t"]), InvalidArgumentError, "already declared"),
        (dict(states="", params="", rhs=[]), InvalidArgumentError, "states is empty"),
        (dict(states="x", params="", rhs=["y"]), ov.errors.ParseError, "unknown name 'y'"),
        (dict(states="x", params="", rhs=[None]), InvalidTypeError, "must be a string"),
    ],
)
def test_from_strings_errors(kwargs, err, match):
    with pytest.raises(err, match=match):
        ov.ODESystem.from_strings(**kwargs)


def test_constructor_errors():
    x, y = sp.symbols("x y")
    with pytest.raises(InvalidArgumentError, match="undeclared symbol 'y'"):
        ov.ODESystem([x], [], [x * y])
    with pytest.raises(InvalidTypeError, match="never passed to sympify"):
        ov.ODESystem([x], [], ["x"])
    with pytest.raises(InvalidArgumentError, match="cannot compile"):
        ov.ODESystem([x], [], [sp.Function("g")(x)])
    with pytest.raises(InvalidArgumentError, match="infinity"):
        ov.ODESystem([x], [], [sp.oo * x])
    with pytest.raises(InvalidArgumentError, match="complex"):
        ov.ODESystem([x], [], [sp.I * x])
    with pytest.raises(InvalidArgumentError, match="unevaluated Integral"):
        ov.ODESystem([x], [], [sp.Integral(x, x)])


def test_latex_and_pretty(lv):
    tex = lv.latex("jac_z")
    assert tex.startswith(r"\frac{\partial f}{\partial z} = ")
    assert r"\left[\begin{matrix}" in tex
    assert set(lv.derivation()) == set(lv.DERIVATION)
    text = lv.pretty()
    for title in ("∂f/∂z", "∂f/∂θ", "da/dt", "∂f_aug/∂[z, θ, t]", "Jacobian of the backward system"):
        assert title in text
    with pytest.raises(InvalidArgumentError, match="not one of"):
        lv.latex("nope")


def test_name_collision_of_adjoint_symbols():
    s = ov.ODESystem.from_strings("x a_x", "", ["a_x", "-x"])
    names = [str(v) for v in s.adjoint]
    assert len(set(names) | {"x", "a_x"}) == 4


def test_piecewise_and_minmax_kernels():
    x = sp.Symbol("x")
    s = ov.ODESystem([x], [], [sp.Piecewise((x**2, x > 0), (-x, True)) + sp.Min(x, 1) + sp.Max(x, 0, -1)])
    zs = np.array([[-2.0], [0.5], [3.0]])
    want = [2 - 2 + 0, 0.25 + 0.5 + 0.5, 9 + 1 + 3]
    np.testing.assert_allclose(s.numeric.f(zs, 0.0, np.zeros(0))[:, 0], want)
    np.testing.assert_allclose(s.f_autograd(zs, 0.0, np.zeros(0))[:, 0], want)
