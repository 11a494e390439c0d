# %% [markdown]
# # 6. Backpropagation, gradient descent and implicit layers
#
# §3.2–3.4 and §3.7 of the notes: the chain rule for a small network written out formula by formula,
# gradient descent on it, and layers defined implicitly by an equation $g(x, y) = 0$, differentiated by
# the implicit function theorem. Every gradient is checked against SymPy, autograd or finite
# differences.

# %%
%matplotlib inline
import numpy as np
import sympy as sp
from IPython.display import Math, display
from matplotlib.figure import Figure

import odeverify
from odeverify import theory
from odeverify.implicit import ImplicitLayer, check_implicit

# %% [markdown]
# ## Backpropagation, formula by formula (§3.2–3.3)
#
# The notes' network: $z = W^{(1)}x + b^{(1)}$, $h = \sigma(z)$, $\hat y = W^{(2)}h + b^{(2)}$,
# $\mathcal L = \frac12\|\hat y - y\|^2$. `notes_backprop` writes the eight formulas of §3.3 literally.
# Independent reference: SymPy differentiates $\mathcal L$ symbolically, entry by entry.

# %%
rng = np.random.default_rng(0)
W1, b1, W2, b2 = rng.normal(size=(2, 2)), rng.normal(size=2), rng.normal(size=(2, 2)), rng.normal(size=2)
x, y = np.array([0.7, -1.2]), np.array([0.3, 0.9])
g = theory.notes_backprop(x, y, W1, b1, W2, b2, activation="sigmoid")

def matrix(name, rows, cols):
    return sp.Matrix(rows, cols, lambda i, j: sp.Symbol(f"{name}_{{{i}{j}}}", real=True))

sW1, sb1, sW2, sb2 = matrix("W1", 2, 2), matrix("b1", 2, 1), matrix("W2", 2, 2), matrix("b2", 2, 1)
h = (sW1 * sp.Matrix(x) + sb1).applyfunc(lambda v: 1 / (1 + sp.exp(-v)))
L = sum((sW2 * h + sb2 - sp.Matrix(y)).applyfunc(lambda v: v**2)) / 2
display(Math(r"\frac{\partial \mathcal L}{\partial b^{(2)}_0} = " + sp.latex(sp.diff(L, sb2[0]))))
values = {**dict(zip(sW1, W1.ravel())), **dict(zip(sW2, W2.ravel())), **dict(zip(sb1, b1)), **dict(zip(sb2, b2))}
for name, mat in [("dL/dW1", sW1), ("dL/db1", sb1), ("dL/dW2", sW2), ("dL/db2", sb2)]:
    symbolic = np.array([[float(sp.diff(L, s).subs(values)) for s in row] for row in mat.tolist()])
    print(name, np.round(g[name], 6).tolist())
    np.testing.assert_allclose(np.reshape(g[name], symbolic.shape), symbolic, rtol=1e-12)

# %% [markdown]
# The same formulas layer by layer (`backprop`) for any sizes, activations, batches and residual layers,
# against autograd and central finite differences:

# %%
for sizes, act, residual in [([2, 2, 2], "sigmoid", False), ([3, 8, 8, 8, 2], "tanh", True), ([4, 5, 1], "softplus", False)]:
    net = theory.MLP.random(sizes, activation=act, residual=residual, seed=1)
    xb, yb = rng.normal(size=(6, sizes[0])), rng.normal(size=(6, sizes[-1]))
    check = theory.check_backprop(net, xb, yb)
    print(f"{str(sizes):16s} {act:8s} {'residual' if residual else 'plain':8s}  "
          f"vs autograd {check.err_autograd:.1e}  vs finite differences {check.err_fd:.1e}")
    assert check.passed

# %% [markdown]
# ## Gradient descent (§3.4)
#
# $\theta_{n+1} = \theta_n - \gamma \nabla \mathcal L(\theta_n)$. For a small enough step $\gamma$ the loss
# decreases at every step; too large a step overshoots, and here the loss grows geometrically.

# %%
xd, yd = rng.normal(size=(8, 2)), rng.normal(size=(8, 2))
net = theory.MLP.random([2, 2, 2], activation="sigmoid", seed=0)
small = theory.gradient_descent(net, xd, yd, lr=0.05, steps=200)
large = theory.gradient_descent(net, xd, yd, lr=0.3, steps=8)
print(small)
print(large)
assert small.monotone and not large.monotone

fig = Figure(figsize=(6.4, 3.4), layout="constrained")
ax = fig.subplots()
ax.semilogy(small.losses, label=f"γ = {small.lr}: decreasing")
ax.semilogy(large.losses, ".-", label=f"γ = {large.lr}: not monotone")
ax.set_xlabel("step n")
ax.set_ylabel(r"$\mathcal{L}(\theta_n)$")
ax.legend()
fig

# %% [markdown]
# ## Implicit layers (§3.7)
#
# A layer defined by $g(x, y) = 0$; its gradient by the implicit function theorem
# $dy/dx = -(\partial g/\partial y)^{-1}\partial g/\partial x$. On the circle $x^2 + y^2 = 1$:
# $y = \sqrt{1 - x^2}$ and $dy/dx = -x/y$; on Kepler's equation $E - e\sin E = M$:
# $\partial E/\partial M = 1/(1 - e\cos E)$, $\partial E/\partial e = \sin E/(1 - e\cos E)$.

# %%
circle = ImplicitLayer.from_strings("x**2 + y**2 - 1", x="x", y="y")
sol = circle.solve([0.6], [1.0])
print("circle: y =", sol.y, " dy/dx =", sol.dy_dx)
assert np.isclose(sol.y[0], 0.8, rtol=1e-14) and np.isclose(sol.dy_dx[0, 0], -0.75, rtol=1e-12)

kepler = ImplicitLayer.from_strings("En - ecc*sin(En) - M", x="M ecc", y="En")
sol = kepler.solve([2.0, 0.6], [2.0])
E = sol.y[0]
assert np.allclose(sol.dy_dx[0], [1 / (1 - 0.6 * np.cos(E)), np.sin(E) / (1 - 0.6 * np.cos(E))], rtol=1e-12)
print(check_implicit(kepler, [2.0, 0.6], [2.0]))

# %% [markdown]
# Kepler's layer $E(M)$ for three eccentricities, with its derivative from the theorem against the closed
# form along the curve:

# %%
Ms = np.linspace(0.05, 2 * np.pi - 0.05, 60)
fig = Figure(figsize=(11, 3.6), layout="constrained")
ax_E, ax_d = fig.subplots(1, 2)
for ecc in [0.0, 0.5, 0.9]:
    Es, dE = [], []
    guess = Ms[0]
    for M in Ms:  # each solve starts from the previous solution (continuation along the curve)
        s = kepler.solve([M, ecc], [guess])
        guess = s.y[0]
        Es.append(s.y[0])
        dE.append(s.dy_dx[0, 0])
    Es, dE = np.array(Es), np.array(dE)
    np.testing.assert_allclose(Es - ecc * np.sin(Es), Ms, atol=1e-12)
    np.testing.assert_allclose(dE, 1 / (1 - ecc * np.cos(Es)), rtol=1e-10)
    ax_E.plot(Ms, Es, label=f"e = {ecc}")
    ax_d.plot(Ms, dE, label=f"e = {ecc}")
ax_E.set_xlabel("M")
ax_E.set_ylabel("E(M)")
ax_d.set_xlabel("M")
ax_d.set_ylabel(r"$\partial E / \partial M$")
ax_E.legend()
fig

# %% [markdown]
# Where $\partial g/\partial y$ is singular the theorem does not apply; at the fold $x = 1$ of the circle
# the two branches meet and y is not a differentiable function of x. That is an error, not a number:

# %%
try:
    circle.solve([1.0], [0.5])
except odeverify.errors.SingularJacobianError as exc:
    print(str(exc)[:200], "...")
else:
    raise AssertionError("the fold was not detected")
