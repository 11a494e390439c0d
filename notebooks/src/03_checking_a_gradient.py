# %% [markdown]
# # 3. Checking a gradient
#
# A gradient written by hand — or produced by a new solver, a new adjoint, a new framework — is easy to
# get almost right. This notebook plants a bug in a hand-derived gradient and lets odeverify find it:
# `check_gradients` compares each entry with independent references (forward sensitivities, autograd
# through a Runge–Kutta solve, finite differences) within error bounds, and `taylor_test` checks the
# first-order Taylor expansion $L(\theta + hv) = L(\theta) + h\langle g, v\rangle + O(h^2)$, which only
# the right gradient satisfies.

# %%
%matplotlib inline
import numpy as np
from IPython.display import display
from matplotlib.figure import Figure

import odeverify as ov

# %% [markdown]
# ## The problem
#
# Relaxation to a level: $\dot x = -k x + b$, $\theta = (k, b)$, observed at four times, with the loss
# $L = \sum_i (x(t_i) - y_i)^2$. Its solution is $x(t) = b/k + (x_0 - b/k)\, e^{-k(t - t_0)}$.

# %%
relax = ov.ODESystem.from_strings("x", "k b", ["-k*x + b"])
z0, ts, theta = np.array([2.0]), np.array([0.0, 0.4, 1.1, 2.0]), np.array([1.5, 0.6])
y = np.array([2.0, 1.3, 0.8, 0.5])
loss = lambda zs: ((zs[:, 0] - y) ** 2).sum()
relax

# %% [markdown]
# ## A hand-written gradient, with a planted bug
#
# With $\tau_i = t_i - t_0$ and $r_i = 2(x(t_i) - y_i)$, the chain rule gives $\partial L/\partial\cdot =
# \sum_i r_i\, \partial x(t_i)/\partial\cdot$ and
#
# $$\frac{\partial x}{\partial x_0} = e^{-k\tau},\quad
# \frac{\partial x}{\partial b} = \frac{1 - e^{-k\tau}}{k},\quad
# \frac{\partial x}{\partial k} = -\frac{b}{k^2}\left(1 - e^{-k\tau}\right) - \left(x_0 - \frac bk\right)\tau e^{-k\tau},$$
#
# $$\frac{\partial x(t_i)}{\partial t_i} = -k x(t_i) + b \;(i \ge 1), \qquad
# \frac{\partial x(t_i)}{\partial t_0} = -(b - k x_0)\, e^{-k\tau_i}.$$
#
# The buggy version forgets that $b/k$ depends on $k$: it drops the first term of $\partial x/\partial k$
# — the kind of slip that survives a glance.

# %%
def hand_gradient(z0, ts, theta, *, bug=False):
    (x0,), (k, b) = z0, theta
    tau = ts - ts[0]
    e = np.exp(-k * tau)
    x = b / k + (x0 - b / k) * e
    r = 2 * (x - y)
    dx_dk = -(x0 - b / k) * tau * e + (0.0 if bug else -b / k**2 * (1 - e))
    dt = r * (-k * x + b)
    dt[0] = np.sum(r * -(b - k * x0) * e)
    return {"z0": np.array([np.sum(r * e)]), "theta": np.array([np.sum(r * dx_dk), np.sum(r * (1 - e) / k)]), "t": dt}

def right(z0, ts, theta):
    return hand_gradient(z0, ts, theta)

def wrong(z0, ts, theta):
    return hand_gradient(z0, ts, theta, bug=True)

# %% [markdown]
# ## The check finds it
#
# `check_gradients` computes its references (here forward sensitivities, autograd through RK4 and
# central finite differences, each with an error estimate) and compares entry by entry. In a notebook
# the report is a table with the failures highlighted and the verdict on top:

# %%
report = ov.check_gradients(relax, z0, ts, theta, loss, candidate=wrong)
assert not report.passed
report

# %% [markdown]
# Each entry's distance to the reference against its tolerance, on a log scale: one bar is far over the
# line.

# %%
assert [(r.quantity, r.index) for r in report.failures] == [("theta", (0,))]
report.plot()

# %% [markdown]
# The corrected gradient passes, and agrees with the closed form to many digits:

# %%
fixed = ov.check_gradients(relax, z0, ts, theta, loss, candidate=right)
assert fixed.passed
fixed

# %% [markdown]
# ## The Taylor test tells a right gradient from a wrong one
#
# For a direction $v$ and steps $h \to 0$, the remainder $|L(\theta + hv) - L(\theta) - h\langle g, v\rangle|$
# falls like $h^2$ when $g$ is the gradient, and only like $h$ when it is not (the error
# $h\langle \nabla L - g, v\rangle$ dominates). No reference gradient is needed — only values of $L$.

# %%
taylor_wrong = ov.taylor_test(relax, z0, ts, theta, loss, candidate=wrong, seed=0)
taylor_right = ov.taylor_test(relax, z0, ts, theta, loss, candidate=right, seed=0)
assert not taylor_wrong.passed and taylor_right.passed
display(taylor_wrong, taylor_right)

# %% tags=["readme-figure"]
fig = Figure(figsize=(11, 4.2), layout="constrained")
ax_wrong, ax_right = fig.subplots(1, 2, sharey=True)
taylor_wrong.plot(ax=ax_wrong)
taylor_right.plot(ax=ax_right)
ax_wrong.set_title("wrong gradient (∂L/∂k misses a term): slope 1", fontsize="medium")
ax_right.set_title("right gradient: slope 2", fontsize="medium")
fig

# %% [markdown]
# On the left, every direction that moves $k$ (the two random directions over all inputs, and the one
# in $\theta$) falls at slope 1, while the directions in $z_0$ and in the times alone fall at slope 2: the
# Taylor test not only says *that* the gradient is wrong, it says in which inputs. (Hollow points are
# where the remainder reaches the noise of evaluating $L$ and are not fitted.) The lines drawn are the
# test's own remainders:

# %%
for result, ax in [(taylor_wrong, ax_wrong), (taylor_right, ax_right)]:
    drawn = {line.get_gid(): line.get_ydata() for line in ax.get_lines() if line.get_gid()}
    for i, residuals in enumerate(result.residuals):
        np.testing.assert_array_equal(drawn[f"residuals:{i}"], residuals)
print([round(r, 2) for r in taylor_wrong.rates], [round(r, 2) for r in taylor_right.rates])

# %% [markdown]
# ## How accurate is the adjoint gradient at a given solver tolerance?
#
# Any numerical gradient is only as accurate as the solves behind it. `tolerance_study` runs the adjoint
# in each mode at a ladder of tolerances and measures each quantity's error against the exact gradient
# (the right hand-written one, which the check above confirmed); the dashed line is the check's
# threshold, so the loosest tolerance that still passes can be read off.

# %%
study = ov.tolerance_study(relax, z0, ts, theta, loss, rtols=[1e-3, 1e-5, 1e-7, 1e-9, 1e-11],
                           exact=right(z0, ts, theta))
for run in study.runs:
    print(f"{run[0]:13s} {run[1]}: loosest rtol that passes the check: {study.loosest_passing(*run):g}")
e = study.errors[("interpolated", "DOP853")]["theta"]
assert e[-1] < e[0] * 1e-5  # the error falls with the tolerance
study.plot()
