"""Write notebooks/theory.ipynb (without outputs): the notes' theory, checked cell by cell.

Run from the repository root: ``python notebooks/make_theory_notebook.py``.
"""

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

CELLS = [
    (
        "md",
        """# The notes' theory, checked

Each section takes one piece of theory from *Introduction to Neural ODE* (Della Bona & Dumez, 2021),
runs the `odeverify` function that checks it, and asserts the result against an **independent**
reference: a closed form, SymPy, autograd, finite differences or a direct SciPy solve.

| notes | claim | checked with |
|---|---|---|
| §2.3, §4.2 | Picard–Lindelöf needs f Lipschitz in z and continuous in t | `theory.lipschitz` |
| §2.4–2.5 | one-step methods converge; Euler's order is 1 | `theory.convergence_order` |
| §3.2–3.3 | backpropagation = the chain rule, formula by formula | `theory.notes_backprop`, `check_backprop` |
| §3.4–3.5 | gradient descent decreases the loss; deep tanh nets lose their gradient | `gradient_descent`, `gradient_norms_by_depth` |
| §3.6, §4.1 | a ResNet is Euler's method with h = 1 | `resnet_equals_euler`, `resnet_convergence` |
| §3.7 | implicit layers g(x, y) = 0 | `odeverify.implicit` |""",
    ),
    (
        "code",
        """try:
    import odeverify
except ImportError:  # a source tree that is not installed: the package is one folder up
    import pathlib
    import sys

    sys.path.insert(0, str(pathlib.Path.cwd().resolve().parent))
    import odeverify

import autograd
import autograd.numpy as anp
import numpy as np
import scipy.integrate
import sympy as sp

from odeverify import ODESystem, theory
from odeverify.implicit import ImplicitLayer, check_implicit""",
    ),
    (
        "md",
        r"""## 1. Existence and uniqueness (§2.3, §4.2)

Picard–Lindelöf: if f is Lipschitz in z (uniformly in t) and continuous in t on a box around
$(t_0, z_0)$, a unique solution exists on $[t_0, t_0 + T]$. `lipschitz` bounds the Lipschitz constant
**rigorously** (interval arithmetic on the symbolic Jacobian, outward rounding, max norm) and gives $T$.

For $f(x) = x^2$ on $[-R, R]$ the constant is $\sup |2x| = 2R$:""",
    ),
    (
        "code",
        """square = ODESystem.from_strings("x", "", ["x**2"])
for R in [0.5, 1.0, 3.0]:
    rep = theory.lipschitz(square, [], [(-R, R)])
    print(f"R = {R}: {rep.lower:.6f} <= L <= {rep.upper}")
    assert rep.upper == 2 * R and rep.lower <= 2 * R""",
    ),
    (
        "md",
        r"""**Blow-up.** $\dot x = x^2$, $x(0) = 1$ has the solution $x(t) = 1/(1 - t)$, which blows up at $t = 1$.
On the box $[0, b]$ the solution stays inside while $t \le T(b) = (b - 1)/\max x^2 = (b - 1)/b^2$. SymPy
finds the best box independently; the theorem's interval must lie inside the true existence interval
$[0, 1)$:""",
    ),
    (
        "code",
        """b = sp.Symbol("b", positive=True)
T = (b - 1) / b**2
b_best = sp.solve(sp.diff(T, b), b)[0]
print("best box [0, b]: b =", b_best, " T =", T.subs(b, b_best))

rep = theory.lipschitz(square, [], [(0.0, float(b_best))], z0=[1.0])
print(rep)
t0, t1 = rep.picard_lindelof_interval
assert t1 == float(T.subs(b, b_best)) and t1 < 1.0
assert 1 / (1 - t1) <= float(b_best)  # the exact solution is still in the box at the end""",
    ),
    (
        "md",
        r"""**ReLU (§4.2).** The notes say the theorem cannot be applied to a ReLU network because ReLU is not
differentiable at 0. More precisely: ReLU *is* Lipschitz, so Picard–Lindelöf holds; what fails is
differentiability, which the adjoint equation $\dot a = -(\partial f/\partial z)^T a$ needs. The report
says both, and `hypothesis_warnings` (used by the gradient cross-checks) flags it:""",
    ),
    (
        "code",
        """W = np.array([[1.0, -0.5], [0.3, 0.8]])
relu_net = ODESystem.from_strings("x y", "w1 w2 w3 w4 b1 b2", ["relu(w1*x + w2*y + b1)", "relu(w3*x + w4*y + b2)"])
rep = theory.lipschitz(relu_net, [*W.ravel(), 0.1, -0.2], [(-1, 1), (-1, 1)])
print(rep)
assert rep.picard_lindelof_holds and not rep.hypotheses_hold and rep.nonsmooth == ["relu"]
assert rep.upper == np.abs(W).sum(axis=1).max()  # the max-norm of W: the Clarke bound is attained
for w in theory.hypothesis_warnings(relu_net, [*W.ravel(), 0.1, -0.2], [0.0, 0.1], [0.0, 1.0]):
    print("warning:", w[:110], "...")""",
    ),
    (
        "md",
        r"""## 2. One-step methods (§2.4–2.5)

Euler's method $u_{i+1} = u_i + h f(t_i, u_i)$ is the one-stage Runge–Kutta tableau. On the notes'
example $\dot x = x$, $x(0) = 1$ (solution $e^t$) the error at $t = 1$ falls like $h^p$; the slope of
$\log e$ against $\log h$ is the order $p$. The fixed steps are `odeverify.tableaux.rk_step`, shared by
every fixed-step solver.""",
    ),
    (
        "code",
        """growth = ODESystem.from_strings("x", "", ["x"])
for method in ["euler", "heun", "midpoint", "kutta3", "rk4"]:
    rep = theory.convergence_order(growth, [1.0], [], (0.0, 1.0), method, exact=[np.e])
    print(f"{method:9s} observed order {rep.order:.3f}   expected {rep.expected}")
    assert rep.rounded == rep.expected
print()
print(rep)""",
    ),
    (
        "md",
        r"""The same on a nonlinear equation, the logistic $\dot x = r x (1 - x/K)$ with closed form
$x(t) = K / (1 + (K/x_0 - 1) e^{-rt})$:""",
    ),
    (
        "code",
        """logistic = ODESystem.from_strings("x", "r K", ["r*x*(1 - x/K)"])
exact = lambda t: [2.0 / (1 + (2.0 / 0.1 - 1) * np.exp(-1.5 * t))]
for method in ["euler", "heun", "rk4"]:
    rep = theory.convergence_order(logistic, [0.1], [1.5, 2.0], (0.0, 3.0), method, exact=exact)
    print(f"{method:6s} {rep.order:.3f}")
    assert rep.matches""",
    ),
    (
        "md",
        r"""## 3. Backpropagation (§3.2–3.3)

The notes' network: $z = W^{(1)}x + b^{(1)}$, $h = \sigma(z)$, $\hat y = W^{(2)}h + b^{(2)}$,
$\mathcal L = \frac12\|\hat y - y\|^2$. `notes_backprop` writes the eight formulas of §3.3 literally.
Independent reference: SymPy differentiates $\mathcal L$ symbolically, entry by entry.""",
    ),
    (
        "code",
        """rng = np.random.default_rng(0)
W1, b1, W2, b2 = rng.normal(size=(2, 2)), rng.normal(size=2), rng.normal(size=(2, 2)), rng.normal(size=2)
x, y = np.array([0.7, -1.2]), np.array([0.3, 0.9])
g = theory.notes_backprop(x, y, W1, b1, W2, b2, activation="sigmoid")

def matrix(name, rows, cols):
    return sp.Matrix(rows, cols, lambda i, j: sp.Symbol(f"{name}_{i}{j}", real=True))

sW1, sb1, sW2, sb2 = matrix("W1", 2, 2), matrix("b1", 2, 1), matrix("W2", 2, 2), matrix("b2", 2, 1)
h = (sW1 * sp.Matrix(x) + sb1).applyfunc(lambda v: 1 / (1 + sp.exp(-v)))
L = sum((sW2 * h + sb2 - sp.Matrix(y)).applyfunc(lambda v: v**2)) / 2
values = {**dict(zip(sW1, W1.ravel())), **dict(zip(sW2, W2.ravel())), **dict(zip(sb1, b1)), **dict(zip(sb2, b2))}
for name, mat in [("dL/dW1", sW1), ("dL/db1", sb1), ("dL/dW2", sW2), ("dL/db2", sb2)]:
    symbolic = np.array([[float(sp.diff(L, s).subs(values)) for s in row] for row in mat.tolist()])
    print(name, np.round(g[name], 6).tolist())
    np.testing.assert_allclose(np.reshape(g[name], symbolic.shape), symbolic, rtol=1e-12)""",
    ),
    (
        "md",
        """The same formulas layer by layer (`backprop`) for any sizes, activations, batches and residual layers,
against autograd and central finite differences:""",
    ),
    (
        "code",
        """for sizes, act, residual in [([2, 2, 2], "sigmoid", False), ([3, 8, 8, 8, 2], "tanh", True), ([4, 5, 1], "softplus", False)]:
    net = theory.MLP.random(sizes, activation=act, residual=residual, seed=1)
    xb, yb = rng.normal(size=(6, sizes[0])), rng.normal(size=(6, sizes[-1]))
    check = theory.check_backprop(net, xb, yb)
    print(sizes, act, "residual" if residual else "plain", check.err_autograd, check.err_fd)
    assert check.passed""",
    ),
    (
        "md",
        r"""## 4. Gradient descent and the vanishing gradient (§3.4–3.5)

For a small enough step $\gamma$, $\mathcal L(\theta_{n+1}) \le \mathcal L(\theta_n)$; too large a step
breaks it.""",
    ),
    (
        "code",
        """xd, yd = rng.normal(size=(8, 2)), rng.normal(size=(8, 2))
net = theory.MLP.random([2, 2, 2], activation="sigmoid", seed=0)
small = theory.gradient_descent(net, xd, yd, lr=0.05, steps=200)
large = theory.gradient_descent(net, xd, yd, lr=0.3, steps=5)
print(small)
print(large)
assert small.monotone and not large.monotone""",
    ),
    (
        "md",
        r"""With tanh, $\sigma' \in (0, 1]$: backpropagation multiplies one factor per layer and the gradient
at the first layer decays exponentially with depth. A residual network with the *same* weights keeps it
(its identity path); with branch scale 1 it may even grow (the exploding gradient), with scale $1/D$ it is
Euler's method on $[0, 1]$ and stays of the same size. The numbers are measured, and the deepest plain one
is recomputed by autograd:""",
    ),
    (
        "code",
        """rep = theory.gradient_norms_by_depth([1, 5, 10, 20, 40], gain=0.5, seed=0)
print(rep)
assert rep.plain[-1] / rep.plain[0] < 1e-10 and rep.residual[-1] / rep.residual[0] > 1 and rep.euler[-1] / rep.euler[0] > 0.1

rng0 = np.random.default_rng(0)
xa, ya = rng0.normal(size=(32, 2)), rng0.normal(size=(32, 2))
deep = theory.MLP.random([2] + [16] * 40 + [2], activation="tanh", gain=0.5, seed=1)
gW1 = autograd.grad(lambda W: deep.loss(xa, ya, [W] + deep.params()[1:], anp))(deep.weights[0])
assert np.isclose(np.linalg.norm(gW1), rep.plain[-1], rtol=1e-10)""",
    ),
    (
        "md",
        r"""## 5. ResNet = Euler (§3.6, §4.1)

A residual network $x_{k+1} = x_k + f_k(x_k)$ is Euler's method with $h = 1$ on the ODE whose field at
$t = k$ is layer $k$. `resnet_equals_euler` compares them with `==`: they agree to the last bit, with
shared or with per-layer weights.""",
    ),
    (
        "code",
        """n, m = 2, 6
W1, b1 = rng.normal(size=(m, n)), rng.normal(0, 0.1, size=m)
W2, b2 = rng.normal(size=(n, m)) / np.sqrt(m), rng.normal(0, 0.1, size=n)
block = lambda W1, b1, W2, b2: (lambda x: np.tanh(x @ W1.T + b1) @ W2.T + b2)

shared = theory.resnet_equals_euler([block(W1, b1, W2, b2)] * 25, np.array([0.3, -0.8]))
per_layer = theory.resnet_equals_euler(
    [block(rng.normal(size=(m, n)), rng.normal(size=m), 0.3 * rng.normal(size=(n, m)), rng.normal(size=n)) for _ in range(30)],
    np.array([0.1, 0.2]),
)
print(shared)
print(per_layer)
assert shared.identical and per_layer.identical""",
    ),
    (
        "md",
        r"""With $N$ layers of one field scaled by $h = T/N$, the ResNet's output converges to the Neural ODE's
$z(T)$ at order 1, and its backpropagated gradient to the **adjoint** gradient (§4.3). The Neural ODE
$f(z) = W_2 \tanh(W_1 z + b_1) + b_2$ is an `ODESystem`, so `adjoint_gradients` differentiates it; $z(T)$ is
also checked against a direct `scipy.integrate.solve_ivp`.""",
    ),
    (
        "code",
        """node = theory.neural_ode_system(n, m)
theta = theory.pack_mlp_params(W1, b1, W2, b2)
z0 = np.array([0.4, -0.3])
conv = theory.resnet_convergence(node, z0, theta, (0.0, 2.0), lambda zs: anp.sum(zs[-1] ** 2), layers=(8, 16, 32, 64))
print(conv)
direct = scipy.integrate.solve_ivp(lambda t, z: block(W1, b1, W2, b2)(z), (0.0, 2.0), z0, method="DOP853", rtol=1e-12, atol=1e-12).y[:, -1]
assert np.allclose(conv.z_T, direct, rtol=1e-9)
assert round(conv.output_order) == 1 and round(conv.gradient_order) == 1""",
    ),
    (
        "md",
        r"""## 6. Implicit layers (§3.7)

A layer defined by $g(x, y) = 0$; its gradient by the implicit function theorem
$dy/dx = -(\partial g/\partial y)^{-1}\partial g/\partial x$. On the circle $x^2 + y^2 = 1$:
$y = \sqrt{1 - x^2}$ and $dy/dx = -x/y$; on Kepler's equation $E - e\sin E = M$:
$\partial E/\partial M = 1/(1 - e\cos E)$, $\partial E/\partial e = \sin E/(1 - e\cos E)$.""",
    ),
    (
        "code",
        """circle = ImplicitLayer.from_strings("x**2 + y**2 - 1", x="x", y="y")
sol = circle.solve([0.6], [1.0])
print("circle: y =", sol.y, " dy/dx =", sol.dy_dx)
assert np.isclose(sol.y[0], 0.8, rtol=1e-14) and np.isclose(sol.dy_dx[0, 0], -0.75, rtol=1e-12)

kepler = ImplicitLayer.from_strings("En - ecc*sin(En) - M", x="M ecc", y="En")
sol = kepler.solve([2.0, 0.6], [2.0])
E = sol.y[0]
assert np.allclose(sol.dy_dx[0], [1 / (1 - 0.6 * np.cos(E)), np.sin(E) / (1 - 0.6 * np.cos(E))], rtol=1e-12)
print(check_implicit(kepler, [2.0, 0.6], [2.0]))""",
    ),
    (
        "md",
        """Where $\\partial g/\\partial y$ is singular the theorem does not apply; at the fold $x = 1$ of the circle
the two branches meet and y is not a differentiable function of x. That is an error, not a number:""",
    ),
    (
        "code",
        """try:
    circle.solve([1.0], [0.5])
except odeverify.errors.SingularJacobianError as exc:
    print(str(exc)[:200], "...")
else:
    raise AssertionError("the fold was not detected")""",
    ),
]


def build():
    nb = new_notebook()
    nb.cells = [new_markdown_cell(src) if kind == "md" else new_code_cell(src) for kind, src in CELLS]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


if __name__ == "__main__":
    path = Path(__file__).resolve().parent / "theory.ipynb"
    nbformat.write(build(), path)
    print(f"wrote {path}")
