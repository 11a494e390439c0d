# %% [markdown]
# # 1. The Cauchy problem and Euler's method
#
# *Introduction to Neural ODE* (Della Bona & Dumez, 2021), §2.1–2.5: an ODE with an initial condition,
# when it has exactly one solution, and how Euler's method approximates it. Every number below is
# checked (`assert`) against a closed form or an independent computation, so running the notebook is a
# test.

# %%
%matplotlib inline
import numpy as np
import sympy as sp
from IPython.display import Math, display
from matplotlib.figure import Figure

import odeverify as ov
from odeverify import theory
from odeverify.tableaux import odeint_fixed

# %% [markdown]
# ## The notes' example (§2.2)
#
# The ODE $\frac{dx}{dt} = x$. An `ODESystem` is the right-hand side $f(z, t; \theta)$ as SymPy
# expressions; in a notebook it shows as the equations it stands for:

# %%
growth = ov.ODESystem.from_strings("x", "", ["x"])
growth

# %% [markdown]
# Its solutions are $\{a e^t \mid a \in \mathbb{R}\}$, and with the initial condition $x(0) = 1$ (a
# *Cauchy problem*) the only one is $e^t$. SymPy's `dsolve` finds both, independently of odeverify:

# %%
t = sp.Symbol("t")
x = sp.Function("x")
general = sp.dsolve(sp.Eq(x(t).diff(t), x(t)))
cauchy = sp.dsolve(sp.Eq(x(t).diff(t), x(t)), ics={x(0): 1})
display(Math(sp.latex(general)), Math(sp.latex(cauchy)))
assert cauchy.rhs == sp.exp(t)
assert sp.simplify(general.rhs.diff(t) - general.rhs) == 0

# %% [markdown]
# ## Euler's method (§2.4–2.5)
#
# A one-step method computes $u_{i+1}$ from $u_i$, $t_i$ and the step $h$. Euler's is the first-order
# Taylor step
#
# $$u_{i+1} = u_i + h\, f(t_i, u_i).$$
#
# On $\dot x = x$ one step multiplies by $1 + h$, so $N$ steps of $h = 1/N$ give exactly
# $u_N = (1 + 1/N)^N$, the sequence that tends to $e$. odeverify's fixed-step loop (`odeint_fixed`, the
# step every fixed-step solver shares) must reproduce it to rounding:

# %%
for N in [1, 2, 4, 8, 16, 1000]:
    u = odeint_fixed(lambda z, s: z, np.array([1.0]), np.array([0.0, 1.0]), method="euler", steps=N)[-1, 0]
    print(f"N = {N:5d}:  Euler {u:.12f}   (1 + 1/N)^N = {(1 + 1 / N) ** N:.12f}   e - u = {np.e - u:.2e}")
    assert abs(u - (1 + 1 / N) ** N) <= 1e-15 * N * u  # one rounding per step

# %% [markdown]
# The Euler polygons against $e^t$: each one follows the tangent of the solution through its current
# point, and falls further behind as $t$ grows.

# %%
fig = Figure(figsize=(6.4, 3.8), layout="constrained")
ax = fig.subplots()
fine = np.linspace(0, 1, 200)
ax.plot(fine, np.exp(fine), "k", lw=2, label="exact $e^t$")
for N in [2, 4, 8]:
    grid = np.linspace(0, 1, N + 1)
    u = odeint_fixed(lambda z, s: z, np.array([1.0]), grid, method="euler", steps=1)[:, 0]
    np.testing.assert_allclose(u, (1 + 1 / N) ** np.arange(N + 1), rtol=1e-14)
    ax.plot(grid, u, "o-", label=f"Euler, h = 1/{N}")
ax.set_xlabel("t")
ax.set_ylabel("x(t)")
ax.legend()
fig

# %% [markdown]
# ## Its order: the error falls like $h^1$
#
# The global error of Euler's method is $O(h)$: halving the step halves the error. `convergence_order`
# integrates with a ladder of steps, measures $|u_N - e|$, and fits the slope $p$ of $\log e$ against
# $\log h$. Here the reference is the exact value $e$.

# %%
euler = theory.convergence_order(growth, [1.0], [], (0.0, 1.0), "euler", exact=[np.e])
np.testing.assert_allclose(euler.errors, np.abs(np.e - (1 + euler.h) ** euler.steps), rtol=1e-9)
assert euler.rounded == 1
euler.plot()

# %% [markdown]
# Higher-order Runge–Kutta methods are the same loop with another tableau. Their observed orders, on the
# notes' example and on the logistic equation $\dot x = r x (1 - x/K)$ with its closed form
# $x(t) = K / (1 + (K/x_0 - 1) e^{-rt})$, with a longer ladder of steps. Hollow points are below the
# floor that rounding sets (RK4's error reaches it): they are drawn but left out of the fit.

# %%
logistic = ov.ODESystem.from_strings("x", "r K", ["r*x*(1 - x/K)"])
logistic_exact = lambda s: [2.0 / (1 + (2.0 / 0.1 - 1) * np.exp(-1.5 * s))]
fig = Figure(figsize=(11, 3.6), layout="constrained")
axes = fig.subplots(1, 3)
for ax, method in zip(axes, ["euler", "heun", "rk4"]):
    on_growth = theory.convergence_order(growth, [1.0], [], (0.0, 1.0), method, exact=[np.e])
    on_logistic = theory.convergence_order(logistic, [0.1], [1.5, 2.0], (0.0, 3.0), method, exact=logistic_exact,
                                           steps=[8, 16, 32, 64, 128, 256, 512, 1024])
    print(f"{method:6s} expected {on_growth.expected}: observed {on_growth.order:.3f} on e^t, "
          f"{on_logistic.order:.3f} on the logistic")
    assert on_growth.matches and on_logistic.matches
    on_logistic.plot(ax=ax)
    ax.set_title(f"logistic, {method}: slope {on_logistic.order:.2f}", fontsize="medium")
fig

# %% [markdown]
# ## When is there a solution at all? Picard–Lindelöf (§2.3)
#
# **Theorem.** If $f$ is Lipschitz continuous in $u$, uniformly in $t$, and continuous in $t$, the
# Cauchy problem $\dot u = f(t, u)$, $u(t_0) = u_0$ has a unique solution on some $[t_0, t_0 + T]$.
#
# The constructive proof gives $T$: on a box $|u - u_0| \le r$ where $\|f\| \le M$, the solution cannot
# leave the box before $T = r / M$. `theory.lipschitz` bounds the Lipschitz constant *rigorously*
# (interval arithmetic on the symbolic Jacobian, outward rounding) and returns that interval.
#
# The interval is not decoration: $\dot x = x^2$, $x(0) = 1$ is smooth, yet its solution
# $x(t) = 1/(1 - t)$ blows up at $t = 1$. SymPy confirms the solution:

# %%
square = ov.ODESystem.from_strings("x", "", ["x**2"])
blowup = sp.dsolve(sp.Eq(x(t).diff(t), x(t) ** 2), ics={x(0): 1})
display(square, Math(sp.latex(blowup)))
assert sp.simplify(blowup.rhs - 1 / (1 - t)) == 0

# %% [markdown]
# $f(x) = x^2$ is Lipschitz on every bounded box — with constant $\sup|2x| = 2R$ on $[-R, R]$ — but not on
# all of $\mathbb{R}$, which is why the theorem only promises *some* $T$. On the box $[0, b]$ (so
# $r = b - 1$ and $M = b^2$) it guarantees $T(b) = (b - 1)/b^2$. SymPy picks the best box:

# %%
for R in [0.5, 1.0, 3.0]:
    assert theory.lipschitz(square, [], [(-R, R)]).upper == 2 * R

b = sp.Symbol("b", positive=True)
T_of_b = (b - 1) / b**2
b_best = sp.solve(sp.diff(T_of_b, b), b)[0]
display(Math(rf"T(b) = {sp.latex(T_of_b)},\qquad b^* = {sp.latex(b_best)},\qquad T(b^*) = {sp.latex(T_of_b.subs(b, b_best))}"))

report = theory.lipschitz(square, [], [(0.0, float(b_best))], z0=[1.0])
print(report)
t0, t1 = report.picard_lindelof_interval
assert t1 == float(T_of_b.subs(b, b_best)) and t1 < 1.0
assert 1 / (1 - t1) <= float(b_best)  # the exact solution is still inside the box at the end

# %% [markdown]
# The guaranteed interval $[0, 1/4]$ is well inside the true existence interval $[0, 1)$; the theorem is
# safe, not sharp. Each box $[0, b]$ guarantees its own $T(b)$ (the dots, where the solution would have to
# leave the box at the earliest); the solution really leaves it at $1 - 1/b$:

# %%
fig = Figure(figsize=(6.4, 3.8), layout="constrained")
ax = fig.subplots()
ts = np.linspace(0, 0.92, 300)
ax.plot(ts, 1 / (1 - ts), "k", lw=2, label="$x(t) = 1/(1-t)$")
ax.axvline(1.0, color="k", ls=":", label="blow-up, t = 1")
ax.axvspan(t0, t1, color="tab:green", alpha=0.2, label=f"guaranteed: [0, {t1:g}]")
for bb in [1.5, 2.0, 4.0, 8.0]:
    T_bb = theory.lipschitz(square, [], [(0.0, bb)], z0=[1.0]).picard_lindelof_interval[1]
    assert np.isclose(T_bb, (bb - 1) / bb**2, rtol=1e-12) and T_bb <= 1 - 1 / bb
    ax.plot([T_bb], [bb], "o", color="tab:green")
    ax.plot([0, 1 - 1 / bb], [bb, bb], color="tab:green", lw=0.8)
ax.set_ylim(0, 10)
ax.set_xlabel("t")
ax.set_ylabel("x")
ax.legend(loc="upper left")
fig

# %% [markdown]
# **Where the hypotheses fail.** A ReLU network $f(z) = \mathrm{relu}(Wz + b)$ *is* Lipschitz (constant
# $\|W\|_\infty$), so Picard–Lindelöf applies; what fails is differentiability, which the adjoint
# equation of §4.3 needs (notebook 2). The report says both:

# %%
W = np.array([[1.0, -0.5], [0.3, 0.8]])
relu_net = ov.ODESystem.from_strings("x y", "w1 w2 w3 w4 b1 b2", ["relu(w1*x + w2*y + b1)", "relu(w3*x + w4*y + b2)"])
display(relu_net)
rep = theory.lipschitz(relu_net, [*W.ravel(), 0.1, -0.2], [(-1, 1), (-1, 1)])
print(rep)
assert rep.picard_lindelof_holds and not rep.hypotheses_hold and rep.nonsmooth == ["relu"]
assert rep.upper == np.abs(W).sum(axis=1).max()  # the max-norm of W: the bound is attained
