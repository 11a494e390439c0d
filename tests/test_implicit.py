"""Implicit layers (notes §3.7): solutions and implicit-function-theorem gradients against closed forms."""

import autograd
import autograd.numpy as anp
import numpy as np
import pytest
import sympy as sp

from odeverify.errors import ConvergenceError, InvalidArgumentError, InvalidTypeError, SingularJacobianError
from odeverify.implicit import ImplicitLayer, check_implicit

CIRCLE = ImplicitLayer.from_strings("x**2 + y**2 - 1", x="x", y="y")


@pytest.mark.parametrize("x", [-0.9, -0.3, 0.0, 0.6, 0.99])
def test_circle_upper_branch(x):
    sol = CIRCLE.solve([x], [0.5])
    y = np.sqrt(1 - x**2)
    assert sol.y[0] == pytest.approx(y, rel=1e-14)
    assert sol.dy_dx[0, 0] == pytest.approx(-x / y, rel=1e-12, abs=1e-15)
    lower = CIRCLE.solve([x], [-0.5])  # the other branch, chosen by the guess
    assert lower.dy_dx[0, 0] == pytest.approx(x / y, rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("x", [-5.0, -0.2, 0.0, 1.0, 30.0])
def test_cubic_against_cardano(x):
    # y^3 + y = x has one real root for every x (Cardano), dy/dx = 1 / (3 y^2 + 1)
    layer = ImplicitLayer.from_strings("y**3 + y - x", x="x", y="y")
    s = np.sqrt(x**2 / 4 + 1 / 27)
    y = np.cbrt(x / 2 + s) + np.cbrt(x / 2 - s)
    sol = layer.solve([x], [0.0])
    assert sol.y[0] == pytest.approx(y, rel=1e-12, abs=1e-14)
    assert sol.dy_dx[0, 0] == pytest.approx(1 / (3 * y**2 + 1), rel=1e-12)


def test_kepler_equation():
    # E - e sin E = M: dE/dM = 1 / (1 - e cos E), dE/de = sin E / (1 - e cos E)
    kepler = ImplicitLayer.from_strings("En - ecc*sin(En) - M", x="M ecc", y="En")
    for M, e in [(0.5, 0.1), (2.0, 0.6), (5.0, 0.9)]:
        sol = kepler.solve([M, e], [M])
        E = sol.y[0]
        assert E - e * np.sin(E) == pytest.approx(M, rel=1e-14)
        d = 1 - e * np.cos(E)
        np.testing.assert_allclose(sol.dy_dx[0], [1 / d, np.sin(E) / d], rtol=1e-12)
        assert check_implicit(kepler, [M, e], [M]).passed


def test_linear_layer_is_a_matrix_inverse():
    rng = np.random.default_rng(0)
    A, B, c = rng.normal(size=(3, 3)) + 3 * np.eye(3), rng.normal(size=(3, 2)), rng.normal(size=3)
    xs, ys = sp.symbols("x0:2", real=True), sp.symbols("y0:3", real=True)
    g = sp.Matrix(A) * sp.Matrix(ys) - sp.Matrix(B) * sp.Matrix(xs) - sp.Matrix(c)
    layer = ImplicitLayer.from_sympy(list(g), list(xs), list(ys))
    x = np.array([0.7, -1.1])
    sol = layer.solve(x, np.zeros(3))
    np.testing.assert_allclose(sol.y, np.linalg.solve(A, B @ x + c), rtol=1e-12)
    np.testing.assert_allclose(sol.dy_dx, np.linalg.solve(A, B), rtol=1e-12)


def test_autograd_callable_matches_the_symbolic_layer_and_finite_differences():
    # a small deep-equilibrium layer y = tanh(W y + U x)
    W = np.array([[0.2, -0.5], [0.4, 0.1]])
    U = np.array([[1.0, 0.5], [-0.3, 0.8]])
    deq = ImplicitLayer(lambda x, y: y - anp.tanh(anp.dot(W, y) + anp.dot(U, x)))
    xs, ys = sp.symbols("x0:2", real=True), sp.symbols("y0:2", real=True)
    g = sp.Matrix(ys) - (sp.Matrix(W) * sp.Matrix(ys) + sp.Matrix(U) * sp.Matrix(xs)).applyfunc(sp.tanh)
    sym = ImplicitLayer.from_sympy(list(g), list(xs), list(ys))
    x = np.array([0.3, -0.2])
    a, b = deq.solve(x, [0.0, 0.0]), sym.solve(x, [0.0, 0.0])
    np.testing.assert_allclose(a.y, b.y, rtol=1e-13)
    np.testing.assert_allclose(a.dy_dx, b.dy_dx, rtol=1e-12)
    check = check_implicit(deq, x, [0.0, 0.0])
    assert check.passed and check.rel_error < 1e-8, str(check)


def test_as_autograd_composes_with_the_chain_rule():
    cube = ImplicitLayer.from_strings("y**3 + y - x", x="x", y="y")
    layer = cube.as_autograd([0.0])

    def loss(x):
        return anp.sum(anp.sin(layer(x)) ** 2)

    x = np.array([1.3])
    y = cube(x, [0.0])[0]
    expected = 2 * np.sin(y) * np.cos(y) / (3 * y**2 + 1)  # d/dx sin(y(x))^2
    assert autograd.grad(loss)(x)[0] == pytest.approx(expected, rel=1e-12)


def test_singular_jacobian_is_a_clear_error():
    with pytest.raises(SingularJacobianError, match="implicit function theorem"):
        CIRCLE.solve([1.0], [0.5])  # the fold of the circle: dg/dy = 2y = 0
    with pytest.raises(SingularJacobianError, match="singular"):
        CIRCLE.gradient([1.0], [0.0])
    line = ImplicitLayer.from_strings(["y1 + y2 - x1", "2*y1 + 2*y2 - 2*x1"], x="x1", y="y1 y2")
    with pytest.raises(SingularJacobianError, match="curve of solutions"):
        line.solve([1.0], [0.0, 0.0])  # a whole line of solutions


def test_no_solution_is_a_convergence_error():
    with pytest.raises(ConvergenceError, match="did not solve"):
        ImplicitLayer.from_strings("x**2 + y**2 + 1", x="x", y="y").solve([0.0], [0.5])


def test_bad_inputs():
    with pytest.raises(InvalidTypeError, match="callable"):
        ImplicitLayer("x - y")
    with pytest.raises(InvalidArgumentError, match="neither in x nor in y"):
        ImplicitLayer.from_sympy([sp.Symbol("y") - sp.Symbol("a")], [sp.Symbol("x")], [sp.Symbol("y")])
    with pytest.raises(InvalidArgumentError, match="2 equations but y has 1"):
        ImplicitLayer.from_strings(["y - x", "y + x"], x="x", y="y")
    with pytest.raises(InvalidArgumentError, match=r"y0 has shape \(2,\)"):
        CIRCLE.solve([0.5], [0.5, 0.1])
    with pytest.raises(InvalidArgumentError, match="one equation per output"):
        ImplicitLayer(lambda x, y: anp.concatenate([y, y])).solve([0.0], [1.0])
    with pytest.raises(InvalidArgumentError, match="not finite"):
        CIRCLE.solve([np.nan], [0.5])
