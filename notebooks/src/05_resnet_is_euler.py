# %% [markdown]
# # 5. A ResNet is Euler's method
#
# §3.5–3.6 and §4.1 of the notes: deep plain networks lose their gradient; a residual network
# $x_{k+1} = x_k + f_k(x_k)$ keeps it, and is exactly Euler's method with $h = 1$ on the ODE whose field
# at $t = k$ is layer $k$. Shrinking the step, $x_{k+1} = x_k + h f(x_k)$ with $h = T/N$, the ResNet
# converges to the Neural ODE $\dot z = f(z)$ — its output *and* its backpropagated gradient, which tends
# to the adjoint gradient of §4.3. Each claim is measured and checked against an independent computation.

# %%
%matplotlib inline
import autograd
import autograd.numpy as anp
import numpy as np
import scipy.integrate
from matplotlib.figure import Figure

import odeverify as ov
from odeverify import theory

# %% [markdown]
# ## The vanishing gradient (§3.5)
#
# With tanh, $\sigma' \in (0, 1]$: backpropagation multiplies one factor per layer and the gradient at the
# first layer decays exponentially with depth. A residual network with the *same* weights keeps it (its
# identity path); with branch scale 1 it may even grow (the exploding gradient), with scale $1/D$ it is
# Euler's method on $[0, 1]$ and stays of the same size.

# %%
depth = theory.gradient_norms_by_depth([1, 2, 5, 10, 20, 40], gain=0.5, seed=0)
print(depth)
assert depth.plain[-1] / depth.plain[0] < 1e-10
assert depth.residual[-1] / depth.residual[0] > 1 and depth.euler[-1] / depth.euler[0] > 0.1

fig = Figure(figsize=(6.4, 3.8), layout="constrained")
ax = fig.subplots()
ax.semilogy(depth.depths, depth.plain, "o-", label="plain")
ax.semilogy(depth.depths, depth.residual, "s-", label="residual, branch scale 1")
ax.semilogy(depth.depths, depth.euler, "^-", label="residual, branch scale 1/D (Euler, h = 1/D)")
ax.set_xlabel("hidden layers D")
ax.set_ylabel(r"$\|\partial L / \partial W_1\|$")
ax.set_title("tanh, width 16, gain 0.5", fontsize="medium")
ax.legend(fontsize="small")
fig

# %% [markdown]
# The deepest plain gradient, recomputed independently by autograd through the same 40-layer network:

# %%
rng0 = np.random.default_rng(0)
xa, ya = rng0.normal(size=(32, 2)), rng0.normal(size=(32, 2))
deep = theory.MLP.random([2] + [16] * 40 + [2], activation="tanh", gain=0.5, seed=1)
gW1 = autograd.grad(lambda W: deep.loss(xa, ya, [W] + deep.params()[1:], anp))(deep.weights[0])
print(f"autograd {np.linalg.norm(gW1):.6e}   backprop {depth.plain[-1]:.6e}")
assert np.isclose(np.linalg.norm(gW1), depth.plain[-1], rtol=1e-10)

# %% [markdown]
# ## ResNet = Euler, to the last bit (§3.6, §4.1)
#
# `resnet_equals_euler` runs the residual network and Euler's method with $h = 1$ on the piecewise field
# and compares them with `==`: they agree bit for bit, with shared or with per-layer weights.

# %%
rng = np.random.default_rng(0)
n, m = 2, 6
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
assert shared.identical and per_layer.identical

# %% [markdown]
# ## More layers, smaller steps: the Neural ODE
#
# With $N$ layers of one field scaled by $h = T/N$, the ResNet's output converges to the Neural ODE's
# $z(T)$ at order 1 (Euler's order, notebook 1), and its backpropagated gradient to the **adjoint**
# gradient. The Neural ODE $f(z) = W_2 \tanh(W_1 z + b_1) + b_2$ is an `ODESystem`, so SymPy derives its
# adjoint and `adjoint_gradients` differentiates it; $z(T)$ is also checked against a direct
# `scipy.integrate.solve_ivp`.

# %%
node = theory.neural_ode_system(n, m)
theta = theory.pack_mlp_params(W1, b1, W2, b2)
z0 = np.array([0.4, -0.3])
conv = theory.resnet_convergence(node, z0, theta, (0.0, 2.0), lambda zs: anp.sum(zs[-1] ** 2), layers=(8, 16, 32, 64, 128))
print(conv)
direct = scipy.integrate.solve_ivp(lambda t, z: block(W1, b1, W2, b2)(z), (0.0, 2.0), z0, method="DOP853",
                                   rtol=1e-12, atol=1e-12).y[:, -1]
assert np.allclose(conv.z_T, direct, rtol=1e-9)
assert round(conv.output_order) == 1 and round(conv.gradient_order) == 1

# %%
fig = Figure(figsize=(6.4, 3.8), layout="constrained")
ax = fig.subplots()
ax.loglog(conv.h, conv.output_errors, "o-", label=f"output: $|x_N - z(T)|$, slope {conv.output_order:.2f}")
ax.loglog(conv.h, conv.gradient_errors, "s-", label=f"gradient vs adjoint (relative), slope {conv.gradient_order:.2f}")
ax.loglog(conv.h, conv.output_errors[0] * conv.h / conv.h[0], "k:", label="slope 1")
ax.set_xlabel("step h = T / N")
ax.set_ylabel("max-norm error")
ax.set_title("ResNet with N layers against the Neural ODE", fontsize="medium")
ax.legend(fontsize="small")
fig
