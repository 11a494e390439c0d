# %% [markdown]
# # 2. Deriving the adjoint
#
# §4.3 of the notes derives, for $\dot z = f(z, t, \theta)$ and a loss $L$ of the states at observation
# times, the adjoint $a(t) = \partial L / \partial z(t)$ and its dynamics
#
# $$\frac{da}{dt} = -a(t)\,\frac{\partial f}{\partial z}, \qquad
# \frac{\partial L}{\partial \theta} = -\int_{t_N}^{t_0} a(t)\, \frac{\partial f}{\partial \theta}\, dt, \qquad
# \frac{\partial L}{\partial t_N} = a(t_N)\, f(z(t_N), t_N, \theta),$$
#
# and packs them into one backward solve of the augmented system $f_{aug}$. Here SymPy does each step of
# that derivation for a concrete system, every intermediate object is shown, and the resulting gradients
# are compared with a closed-form solution differentiated by hand (well, by SymPy, but from the
# closed form: a route that shares nothing with the adjoint). At the end, a right-hand side that jumps
# in time adds a term the smooth derivation does not have.
#
# odeverify writes the adjoint $\lambda$ (the notes' $a$), so that it cannot be taken for a parameter
# called `a`.

# %%
%matplotlib inline
import numpy as np
import scipy.linalg
import sympy as sp
from IPython.display import Math, display

import odeverify as ov

# %% [markdown]
# ## The system: a decay chain
#
# A substance $x$ decays at rate $k$ into $y$, which decays at rate $c$; the parameters are
# $\theta = (k, c)$:

# %%
chain = ov.ODESystem.from_strings("x y", "k c", ["-k*x", "k*x - c*y"])
chain

# %% [markdown]
# ## Step 1: the three partial derivatives of $f$
#
# $\partial f/\partial z$ drives the adjoint, $\partial f/\partial \theta$ gives the parameter gradient,
# $\partial f / \partial t$ the gradient with respect to the initial time (zero here: the chain is
# autonomous).

# %%
display(chain.show("jac_z"), chain.show("jac_theta"), chain.show("jac_t"))

# %% [markdown]
# ## Step 2: the adjoint dynamics
#
# Equation (5) of the notes, $\dot a = -a\, \partial f / \partial z$ (a row vector; as a column,
# $-(\partial f / \partial z)^T a$), and the integrands of the two gradient integrals:

# %%
display(chain.show("adjoint_rhs"), chain.show("adjoint_theta_rhs"), chain.show("adjoint_t_rhs"))

# %% [markdown]
# ## Step 3: the augmented system
#
# The notes stack $[z, \theta, t]$ into one state with $f_{aug} = [f, 0, 1]$; its Jacobian has
# $\partial f / \partial z$, $\partial f / \partial \theta$, $\partial f / \partial t$ in its first rows
# and zeros below, and one backward solve of $\dot a_{aug} = -a_{aug}\, \partial f_{aug} / \partial[z, \theta, t]$
# gives all three gradients:

# %%
display(chain.show("f_aug"), chain.show("jac_aug"), chain.show("augmented_adjoint_rhs"))

# %% [markdown]
# The structure the notes state, checked on the symbolic matrices: the first rows of the Jacobian are the
# three blocks, the rest is zero, and the augmented adjoint is the three adjoint equations stacked.

# %%
n, p = len(chain.states), len(chain.params)
J = chain.jac_aug
assert J[:n, :] == sp.Matrix.hstack(chain.jac_z, chain.jac_theta, chain.jac_t)
assert J[n:, :] == sp.zeros(p + 1, n + p + 1)
a_aug = chain.augmented_adjoint
assert sp.simplify(chain.augmented_adjoint_rhs + J.T * a_aug) == sp.zeros(n + p + 1, 1)
assert chain.augmented_adjoint_rhs[:n, :] == chain.adjoint_rhs

# %% [markdown]
# ## Step 4: numbers, against a closed form
#
# The chain has a closed-form solution from $z(t_0) = (x_0, y_0)$:
#
# $$x(t) = x_0 e^{-k (t - t_0)}, \qquad
# y(t) = y_0 e^{-c (t - t_0)} + \frac{k x_0}{c - k}\left(e^{-k(t - t_0)} - e^{-c(t - t_0)}\right).$$
#
# SymPy checks that it solves the ODE; then the loss
# $L = \frac12 \sum_i \|z(t_i) - d_i\|^2$ over four observation times is differentiated *from the closed
# form* with respect to $z_0$, $\theta$ and every $t_i$.

# %%
k, c, x0, y0, tt = sp.symbols("k c x0 y0 t", real=True)
T = sp.symbols("t0:4", real=True)
x_of = lambda s: x0 * sp.exp(-k * (s - T[0]))
y_of = lambda s: y0 * sp.exp(-c * (s - T[0])) + k * x0 / (c - k) * (sp.exp(-k * (s - T[0])) - sp.exp(-c * (s - T[0])))
assert sp.simplify(sp.diff(x_of(tt), tt) + k * x_of(tt)) == 0
assert sp.simplify(sp.diff(y_of(tt), tt) - (k * x_of(tt) - c * y_of(tt))) == 0

d = np.array([[1.0, 0.0], [0.5, 0.45], [0.2, 0.5], [0.1, 0.4]])
L = sum(((x_of(T[i]) - d[i, 0]) ** 2 + (y_of(T[i]) - d[i, 1]) ** 2) / 2 for i in range(4))
values = {k: 1.3, c: 0.6, x0: 1.0, y0: 0.0, T[0]: 0.0, T[1]: 0.5, T[2]: 1.2, T[3]: 2.0}
closed = {
    "z0": np.array([float(sp.diff(L, v).subs(values)) for v in (x0, y0)]),
    "theta": np.array([float(sp.diff(L, v).subs(values)) for v in (k, c)]),
    "t": np.array([float(sp.diff(L, v).subs(values)) for v in T]),
}
for q, v in closed.items():
    print(f"closed form dL/d{q:5s} = {np.array2string(v, precision=10)}")

# %% [markdown]
# The adjoint method: one forward solve, one backward solve of the augmented adjoint (the loss is an
# ordinary Python function of the states at the observation times; autograd differentiates it for the
# jumps $\partial L/\partial z(t_i)$). `keep_adjoint=True` keeps $a(t)$ for the plot below.

# %%
ts = np.array([0.0, 0.5, 1.2, 2.0])
loss = lambda zs: 0.5 * ((zs - d) ** 2).sum()
res = ov.adjoint_gradients(chain, [1.0, 0.0], ts, [1.3, 0.6], loss, rtol=1e-11, atol=1e-12, keep_adjoint=True)
for q in ("z0", "theta", "t"):
    print(f"dL/d{q:5s} adjoint {np.array2string(getattr(res, q), precision=10)}   "
          f"max |adjoint - closed form| = {np.max(np.abs(getattr(res, q) - closed[q])):.1e}")
    np.testing.assert_allclose(getattr(res, q), closed[q], rtol=1e-8, atol=1e-10)

# %% [markdown]
# The notes' two formulas for the end time and the start, read off the adjoint:
# $\partial L / \partial t_N = a(t_N) \cdot f(z(t_N))$, and $\partial L / \partial z(t_0) = a(t_0)$.

# %%
f_end = np.array([float(e) for e in chain.f.subs({**dict(zip(chain.states, res.zs[-1])), **dict(zip(chain.params, [1.3, 0.6]))})])
assert np.isclose(res.adjoint(ts[-1]) @ f_end, closed["t"][-1], rtol=1e-9)
np.testing.assert_allclose(res.adjoint(ts[0]), closed["z0"], rtol=1e-9)

# %% [markdown]
# ## The adjoint $a(t)$, backwards, with its jumps
#
# $a$ starts at $a(t_N) = \partial L/\partial z(t_N)$ and is integrated backwards; at every earlier
# observation time the loss's own term adds a jump $\partial L / \partial z(t_i)$ (the notes' "repeat the
# adjoint step for each interval and sum up"). For a linear system the whole curve has a closed form,
# $a(t) = \sum_{t_i \ge t} e^{A^T (t_i - t)}\, \partial L / \partial z(t_i)$ with $A = \partial f / \partial z$,
# here evaluated with `scipy.linalg.expm` on a grid and compared with the backward solve's dense output:

# %%
A = np.array([[-1.3, 0.0], [1.3, -0.6]])
jumps = res.zs - d  # dL/dz(t_i) for this loss
grid = np.linspace(0.0, 2.0, 81)
a_exact = np.array([sum(scipy.linalg.expm(A.T * (ti - s)) @ g for ti, g in zip(ts, jumps) if ti >= s) for s in grid])
a_solved = res.adjoint(grid)
print(f"max |a(t) - closed form| on {grid.size} times: {np.max(np.abs(a_solved - a_exact)):.1e}")
np.testing.assert_allclose(a_solved, a_exact, rtol=1e-7, atol=1e-9)

fig = res.plot(names=["x", "y"])
fig.axes[1].plot(grid[::4], a_exact[::4, 0], "k.", ms=3, label="closed form")
fig.axes[1].plot(grid[::4], a_exact[::4, 1], "k.", ms=3)
fig.axes[1].legend(fontsize="small")
fig

# %% [markdown]
# ## A right-hand side that jumps in time
#
# The derivation above assumed $f$ differentiable. Take a switch at $t = s$:
#
# $$\frac{dx}{dt} = -k x + H(t - s), \qquad \theta = (k, s),$$
#
# with $H$ the Heaviside step. odeverify names the discontinuity when the system is built, and finds the
# switch time $\tau(\theta)$ with SymPy:

# %%
switch = ov.ODESystem.from_strings("x", "k s", ["-k*x + heaviside(t - s)"])
display(switch)
print(switch.describe())
theta = np.array([0.7, 0.9])
print(switch.switch_times(theta, 0.0, 2.0))

# %% [markdown]
# $\partial f / \partial s = -\delta(t - s)$ is not a function: the integral $-\int a\, \partial f/\partial s\, dt$
# of the smooth derivation has no ordinary integrand. What happens instead is that moving the switch time
# $\tau$ moves the instant where the slope of $x$ jumps. Splitting the integration at $\tau$ and
# differentiating the pieces gives one extra term per switch,
#
# $$\frac{\partial L}{\partial \theta} \mathrel{+}= a(\tau)^T \big(f(\tau^-) - f(\tau^+)\big)\, \frac{\partial \tau}{\partial \theta}.$$
#
# Each factor for this system, by SymPy (one-sided limits of $f$ at the switch, and $\tau$ from $t - s = 0$):

# %%
x, t, s_, k_ = switch.states[0], switch.time, switch.params[1], switch.params[0]
f = switch.f[0]
f_minus, f_plus = sp.limit(f, t, s_, "-"), sp.limit(f, t, s_, "+")
tau = sp.solve(sp.Eq(t - s_, 0), t)[0]
dtau = sp.Matrix([[sp.diff(tau, k_), sp.diff(tau, s_)]])
a_tau = sp.Symbol(r"a(\tau)")
jump_term = a_tau * (f_minus - f_plus) * dtau
display(Math(rf"f(\tau^-) = {sp.latex(f_minus)},\quad f(\tau^+) = {sp.latex(f_plus)},\quad \tau = {sp.latex(tau)},\quad"
             rf"\frac{{\partial \tau}}{{\partial (k, s)}} = {sp.latex(dtau)}"))
display(Math(rf"a(\tau)^T \big(f(\tau^-) - f(\tau^+)\big) \frac{{\partial \tau}}{{\partial (k, s)}} = {sp.latex(jump_term)}"))
np.testing.assert_allclose(switch.switch_times(theta, 0.0, 2.0).dtheta, [[0.0, 1.0]])

# %% [markdown]
# So $\partial L / \partial s = -a(s)$ exactly: nothing else in $f$ depends on $s$. For $L = x(T)^2$ with
# $T = 2$, $x_0 = 1$ the closed form after the switch is
# $x(t) = x_0 e^{-kt} + \left(1 - e^{-k(t - s)}\right)/k$, and
#
# $$\frac{\partial L}{\partial s} = -2\, x(T)\, e^{-k(T - s)}.$$
#
# The adjoint's answer, the jump term built from its own $a(\tau)$, and the closed form:

# %%
K, S, X0, TT = sp.symbols("K S X0 TT", real=True)
x_after = X0 * sp.exp(-K * TT) + (1 - sp.exp(-K * (TT - S))) / K
L_switch = x_after**2
at = {K: 0.7, S: 0.9, X0: 1.0, TT: 2.0}
dL_ds, dL_dk = float(sp.diff(L_switch, S).subs(at)), float(sp.diff(L_switch, K).subs(at))
assert np.isclose(dL_ds, float((-2 * x_after * sp.exp(-K * (TT - S))).subs(at)), rtol=1e-14)

res_sw = ov.adjoint_gradients(switch, [1.0], [0.0, 2.0], theta, lambda zs: zs[-1, 0] ** 2,
                              rtol=1e-12, atol=1e-12, keep_adjoint=True)
a_at_tau = res_sw.adjoint(theta[1])
jump_value = float(jump_term.subs(a_tau, a_at_tau[0])[1])
print(f"dL/ds: adjoint {res_sw.theta[1]:.12f}   jump term -a(tau) {jump_value:.12f}   closed form {dL_ds:.12f}")
print(f"dL/dk: adjoint {res_sw.theta[0]:.12f}   closed form {dL_dk:.12f}")
assert np.isclose(res_sw.theta[1], dL_ds, rtol=1e-9) and np.isclose(jump_value, dL_ds, rtol=1e-9)
assert np.isclose(res_sw.theta[0], dL_dk, rtol=1e-9)

# %% [markdown]
# The state has a kink at $\tau = s$ (its slope jumps by $f(\tau^+) - f(\tau^-) = 1$); the adjoint
# $\dot a = k a$ does not see the switch at all — the switch enters the gradient only through the jump
# term, evaluated with $a(\tau)$:

# %%
fig = res_sw.plot(names=["x"])
for ax in fig.axes:
    ax.axvline(theta[1], color="tab:red", ls="--", lw=1, label=r"switch $\tau = s$")
    ax.legend(fontsize="small")
fig.axes[1].plot([theta[1]], a_at_tau, "o", color="tab:red")
fig
