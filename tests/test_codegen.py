"""Code generation: exact literals, long expressions, CSE on and off."""

import numpy as np
import pytest
import sympy as sp

from odeverify._codegen import CHUNK, ArrayKernel, Group, generate_source


def test_float_literals_round_trip():
    x = sp.Symbol("x", real=True)
    vals = [0.1, 1 / 3, 2.0**-40, 123456789.123456789, sp.Rational(1, 3), sp.Integer(2**60)]
    exprs = [sp.Float(v) * x if not isinstance(v, sp.Basic) else v * x for v in vals]
    k = ArrayKernel([Group("z", (x,))], [("out", sp.Matrix(exprs))])
    out = k(np.array([1.0]))[0]
    want = [0.1, 1 / 3, 2.0**-40, 123456789.123456789, 1 / 3, float(2**60)]
    assert out.tolist() == want  # bit for bit


def test_long_sum_is_split_and_correct():
    xs = sp.symbols("x0:10", real=True)
    e = sp.Add(*[(i + 2 * j + k) * xs[i] ** k * xs[j] for i in range(10) for j in range(10) for k in range(1, 5)])
    assert len(e.args) > 4 * CHUNK
    src = generate_source([Group("z", xs)], [e], cse=False)
    assert "_p" in src  # partial sums were introduced
    k = ArrayKernel([Group("z", xs)], [("e", sp.Matrix([e]))], cse=False)
    z = np.linspace(-0.9, 0.9, 10)
    assert k(z)[0][0] == pytest.approx(float(e.subs(dict(zip(xs, z)))), rel=1e-12)


def test_cse_on_and_off_agree():
    x, y = sp.symbols("x y", real=True)
    e = sp.Matrix([sp.sin(x * y) ** 2 + sp.cos(x * y), sp.exp(sp.sin(x * y)) * y])
    k1 = ArrayKernel([Group("z", (x, y))], [("e", e)], cse=True)
    k2 = ArrayKernel([Group("z", (x, y))], [("e", e)], cse=False)
    z = np.random.default_rng(0).normal(size=(10, 2))
    np.testing.assert_allclose(k1(z)[0], k2(z)[0], rtol=1e-15)
    assert "_c0" in k1.source and "_c0" not in k2.source


def test_user_names_never_reach_generated_source():
    # even a symbol named like a module or builtin is renamed before printing
    s = [sp.Symbol(n, real=True) for n in ("numpy", "os", "exec")]
    k = ArrayKernel([Group("z", tuple(s))], [("e", sp.Matrix([s[0] * s[1] + s[2]]))])
    assert "os" not in k.source.replace("_s", "")
    assert k(np.array([2.0, 3.0, 4.0]))[0][0] == 10.0


# ---------------------------------------------------------------------------- fused solver kernels
import warnings  # noqa: E402

import autograd  # noqa: E402

import odeverify as ov  # noqa: E402
from odeverify._field import generic_solver_kernels  # noqa: E402

_SYSTEMS = {
    "lotka-volterra": ("x y", "a b c d", ["a*x - b*x*y", "c*x*y - d*y"]),
    "time-dependent": ("x y", "k w", ["-k*x + sin(w*t)*y", "x*cos(t) - k*w*y/(1 + t**2)"]),
    "no parameters": ("x", "", ["-x + t**2"]),
    "parameter-only entries": ("x y", "a b", ["a*b + 1", "-a*x/b + exp(-b*t)"]),
    "non-smooth": ("x y", "a", ["abs(x) - a*relu(y)", "heaviside(x - a)*y + sigmoid(a*x) + max(x, y)"]),
    "unused state": ("x y z", "a", ["a*y", "-x", "2.5"]),
}


def _autograd_reference(system, Z, A, t, theta):
    """f, a^T f_z per sample, and the batch sums of a^T f_theta and a^T f_t, by autograd of f_autograd."""
    f = np.asarray(system.f_autograd(Z, t, theta))

    def scalar(z_, t_, th_):
        return autograd.numpy.sum(A * system.f_autograd(z_, t_, th_))

    az = autograd.grad(scalar, 0)(Z, t, theta)
    with warnings.catch_warnings():  # autograd warns when f does not depend on t or theta
        warnings.simplefilter("ignore", UserWarning)
        ath = autograd.grad(scalar, 2)(Z, t, theta) if len(theta) else np.zeros(0)
        at = autograd.grad(scalar, 1)(Z, t, theta)
    return f, az, ath, at


@pytest.mark.parametrize("name", list(_SYSTEMS))
@pytest.mark.parametrize("B", [1, 5])
def test_solver_kernels_match_autograd(name, B):
    system = ov.ODESystem.from_strings(*_SYSTEMS[name])
    _check_kernels(system, B, 0.7, seed=B, generic=True)


def _check_kernels(system, B, t, *, seed, generic=False):
    """system.solver_kernels (and the generic ones) against autograd, in the three layouts."""
    n, p = system.n_states, system.n_params
    rng = np.random.default_rng(seed)
    Z = rng.uniform(0.3, 1.5, size=(B, n)) * rng.choice([-1.0, 1.0], size=(B, n))
    A = rng.normal(size=(B, n))
    theta = rng.uniform(0.5, 2.0, size=p)
    f, az, ath, at = _autograd_reference(system, Z, A, t, theta)
    candidates = [system.solver_kernels(theta, B)]
    if generic:
        candidates.append(generic_solver_kernels(system, theta, B))
    for kernels in candidates:
        out = np.full(B * n, np.nan)
        kernels.f(t, Z.ravel(), out)
        np.testing.assert_allclose(out, f.ravel(), rtol=1e-13, atol=1e-14)
        # backsolve layout: y = [z, a, a_theta, a_t]
        y = np.concatenate([Z.ravel(), A.ravel(), rng.normal(size=p + 1)])
        out = np.full_like(y, np.nan)
        kernels.backward(t, y, out)
        want = np.concatenate([f.ravel(), -az.ravel(), -np.atleast_1d(ath), [-at]])
        np.testing.assert_allclose(out, want, rtol=1e-12, atol=1e-13)
        # interpolated layout: z given, y = [a, a_theta, a_t]
        y = np.concatenate([A.ravel(), rng.normal(size=p + 1)])
        out = np.full_like(y, np.nan)
        kernels.adjoint(t, Z.ravel(), y, out)
        np.testing.assert_allclose(out, want[B * n :], rtol=1e-12, atol=1e-13)


def test_solver_kernels_hoist_parameter_products():
    lv = ov.ODESystem.from_strings("x y", "a b c d", ["a*x - b*x*y", "c*x*y - d*y"])
    src = lv.numeric.source("solver")
    # -b and -d are computed once per solve, in make(), not once per sample per call
    setup = src.split("def f(")[0]
    assert "_q0 = -" in setup
    assert ".sum()" not in src  # batch sums are dots




# ---------------------------------------------------------------------------- a 20-state, 40-parameter system
from helpers import long_expression, polynomial_system  # noqa: E402


@pytest.fixture(scope="module")
def poly20():
    states, params, rhs = polynomial_system(20, 40, seed=3)
    return ov.ODESystem.from_strings(" ".join(states), " ".join(params), rhs)


def _poly_point(system, B, seed):
    rng = np.random.default_rng(seed)
    Z = rng.uniform(-1.0, 1.0, size=(B, system.n_states))
    theta = rng.uniform(0.5, 1.5, size=system.n_params)
    return Z, theta


def test_polynomial_system_f_matches_lambdify(poly20):
    # sympy.lambdify prints and evaluates f by its own code path
    Z, theta = _poly_point(poly20, 7, seed=0)
    ref = sp.lambdify([poly20.states, poly20.time, poly20.params], list(poly20.f), modules="numpy")
    want = np.array([ref(z, 0.3, theta) for z in Z])
    np.testing.assert_allclose(poly20.numeric.f(Z, 0.3, theta), want, rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize("B", [1, 6])
def test_polynomial_system_vjp_and_solver_kernels_match_autograd(poly20, B):
    Z, theta = _poly_point(poly20, B, seed=B)
    A = np.random.default_rng(B + 10).normal(size=Z.shape)
    f, az, ath, at = _autograd_reference(poly20, Z, A, 0.3, theta)
    got_az, got_ath, got_at = poly20.numeric.vjp(A, Z, 0.3, theta)
    np.testing.assert_allclose(got_az, az, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(got_ath.sum(axis=0), ath, rtol=1e-13, atol=1e-13)
    assert np.all(got_at == 0) and at == 0  # autonomous
    _check_kernels(poly20, B, 0.3, seed=B)


def test_polynomial_system_jacobians_match_central_differences(poly20):
    # f is a polynomial of degree <= 3: the central difference's error is h^2/6 f''' (about 1e-11 here)
    # plus rounding, eps |f| / h (about 1e-10)
    Z, theta = _poly_point(poly20, 1, seed=5)
    z, h = Z[0], 1e-5
    fz, fth, ft = poly20.numeric._kernel("jacobians")(z, 0.3, theta)
    f = poly20.numeric.f
    fd_z = np.stack([(f(z + h * e, 0.3, theta) - f(z - h * e, 0.3, theta)) / (2 * h) for e in np.eye(20)], axis=-1)
    fd_th = np.stack([(f(z, 0.3, theta + h * e) - f(z, 0.3, theta - h * e)) / (2 * h) for e in np.eye(40)], axis=-1)
    np.testing.assert_allclose(fz, fd_z, rtol=0, atol=1e-8)
    np.testing.assert_allclose(fth, fd_th, rtol=0, atol=1e-8)
    np.testing.assert_array_equal(ft, 0.0)
    # the second-derivative blocks of implicit methods: d(a^T f_z)/dz and d(a^T f_theta)/dz by central
    # differences of the Jacobian kernel
    a = np.random.default_rng(6).normal(size=20)
    _, a_zz, a_thz, a_tz = poly20.eval_backward_jac(z, a, 0.3, theta)
    jac = poly20.numeric._kernel("jacobians")
    cols_z, cols_th = [], []
    for e in np.eye(20):
        plus, minus = jac(z + h * e, 0.3, theta), jac(z - h * e, 0.3, theta)
        cols_z.append(a @ (plus[0] - minus[0]) / (2 * h))
        cols_th.append(a @ (plus[1] - minus[1]) / (2 * h))
    np.testing.assert_allclose(a_zz, np.stack(cols_z, axis=-1), rtol=0, atol=1e-8)
    np.testing.assert_allclose(a_thz, np.stack(cols_th, axis=-1), rtol=0, atol=1e-8)
    np.testing.assert_array_equal(a_tz, 0.0)


def test_long_expression_kernels_match_autograd():
    # a 5 KB right-hand side (CSE over about 150 terms, partial sums of CHUNK terms)
    text = long_expression(5000, seed=1)
    system = ov.ODESystem.from_strings("x y", "a b", ["-a*x + " + text, "-b*y + 0.5*x"])
    assert len(system.f[0].args) > 2 * CHUNK
    _check_kernels(system, 3, 0.4, seed=2)
    Z = np.array([[0.8, -0.3], [0.1, 0.4]])
    ref = sp.lambdify([system.states, system.time, system.params], list(system.f), modules="numpy")
    want = np.array([ref(z, 0.4, [0.9, 0.6]) for z in Z])
    np.testing.assert_allclose(system.numeric.f(Z, 0.4, [0.9, 0.6]), want, rtol=1e-13, atol=1e-15)
