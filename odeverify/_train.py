"""fit: train a vector field on irregularly sampled trajectories.

Two models share one vector field f(z, t; theta):

* ``model="ode"`` (a Neural ODE, notes §4): every trajectory starts at its
  observation at the common initial time t_0 and is predicted at its own
  observation times by one batched adaptive solve; gradients come from
  :func:`~odeverify.adjoint_gradients` (notes §4.3).
* ``model="resnet"`` (notes §3.6): the discrete residual network
  ``z_{k+1} = z_k + h f(z_k, t_0 + k h)``, i.e. Euler's method with the fixed
  step ``h = resnet_step``. A discrete network has states only at its layers,
  so an observation at time t is compared with the layer nearest to t
  (``k = round((t - t_0)/h)``). Gradients by backpropagation (autograd through
  the layers).

The loss is the mean squared error over every observed state after t_0::

    L(theta) = 1 / (n N) * sum_{(i, b) observed, t_i > t_0} |z_b(t_i) - y_b(t_i)|^2
"""

from __future__ import annotations

import math
import time as _time
from dataclasses import dataclass, field

import numpy as np

from ._adjoint import adjoint_gradients
from ._data import TrajectoryData
from ._integrate import solve
from ._progress import ProgressEvent
from ._validate import (
    as_field, check_method, check_mode, check_positive_float, check_positive_int, check_rng, check_theta,
    check_tolerances,
)
from ._display import fmt
from .errors import IntegrationError, InvalidArgumentError, InvalidTypeError

__all__ = ["fit", "FitResult", "FitProgress", "OPTIMIZERS"]

#: optimizer names accepted by :func:`fit`
OPTIMIZERS = ("gd", "adam", "lbfgs")
_DEFAULT_LR = {"gd": 0.05, "adam": 0.01}


@dataclass
class FitProgress:
    """What :func:`fit` passes to ``callback`` after every step."""

    step: int
    loss: float
    grad_norm: float
    theta: np.ndarray

    def __repr__(self):
        return f"<FitProgress step {self.step}: loss {fmt(self.loss, '.4g')}, |grad| {fmt(self.grad_norm, '.3g')}>"


@dataclass
class FitResult:
    """The outcome of :func:`fit`.

    Attributes
    ----------
    theta : ndarray, shape (p,)
        The trained parameters (for L-BFGS, the best iterate).
    loss_history : ndarray, shape (k + 1,)
        ``loss_history[0]`` is the loss at the initial parameters, then one
        entry per step (for L-BFGS, per accepted iterate).
    initial_loss, final_loss : float
        First and last entries of ``loss_history``.
    n_gradients : int
        Loss-and-gradient evaluations (for L-BFGS, including line searches).
    optimizer, model : str
    stopped_early : bool
        True when the callback asked to stop (or L-BFGS converged) before
        ``steps``.
    message : str
    seconds : float
        Wall-clock time of the training.
    """

    theta: np.ndarray
    loss_history: np.ndarray
    initial_loss: float
    final_loss: float
    n_gradients: int
    optimizer: str
    model: str
    stopped_early: bool
    message: str
    seconds: float
    _objective: object = field(default=None, repr=False)

    def __repr__(self):
        return (f"<FitResult {self.model}/{self.optimizer}: loss {fmt(self.initial_loss, '.4g')} → "
                f"{fmt(self.final_loss, '.4g')} in {len(self.loss_history) - 1} steps ({self.n_gradients} gradients, "
                f"{self.seconds:.1f} s){', stopped early' if self.stopped_early else ''}>")

    def predict(self, data):
        """Predictions at ``data.t`` from each trajectory's state at its first time, shape (T, B, n)."""
        return self._objective.predict(self.theta, _check_data(data, self._objective.fld.n_states))

    def rmse(self, data):
        """Root mean squared error over the observations of ``data`` after the initial time."""
        data = _check_data(data, self._objective.fld.n_states)
        pred = self._objective.predict(self.theta, data)
        sel = data.mask.copy()
        sel[0] = False
        return float(np.sqrt(np.mean((pred[sel] - data.y[sel]) ** 2)))


class _Objective:
    """Loss and gradient of one model on one data set (internal)."""

    def __init__(self, fld, data, model, resnet_step, method, rtol, atol, mode):
        self.fld, self.data, self.model, self.h = fld, data, model, resnet_step
        self.solver = dict(method=method, rtol=rtol, atol=atol)
        self.mode = mode

    @staticmethod
    def _loss_for(data):
        import autograd.numpy as anp

        sel = data.mask[1:, :, None] * np.ones(data.n_states)  # (T-1, B, n) weights 0/1
        target = np.where(sel > 0, data.y[1:], 0.0)
        scale = 1.0 / sel.sum()

        def loss(zs):  # zs: (T, B, n), the states at data.t
            return scale * anp.sum(sel * (zs[1:] - target) ** 2)

        return loss

    def _resnet_states(self, theta, data, xp):
        from .tableaux import odeint_fixed

        t0 = float(data.t[0])
        K = max(1, math.ceil((float(data.t[-1]) - t0) / self.h - 1e-9))
        grid = t0 + self.h * np.arange(K + 1)
        layers = odeint_fixed(
            lambda z, s: self.fld.f_autograd(z, s, theta), data.y[0], grid, method="euler", steps=1, xp=xp
        )
        idx = np.clip(np.rint((data.t - t0) / self.h).astype(int), 0, K)
        return layers[idx]

    def value_and_grad(self, theta):
        if self.model == "resnet":
            import autograd
            import autograd.numpy as anp

            loss = self._loss_for(self.data)
            with np.errstate(over="ignore", invalid="ignore"):  # non-finite results are reported by fit
                value, grad = autograd.value_and_grad(lambda th: loss(self._resnet_states(th, self.data, anp)))(theta)
            return float(value), np.asarray(grad, dtype=float)
        res = adjoint_gradients(
            self.fld, self.data.y[0], self.data.t, theta, self._loss_for(self.data), mode=self.mode, **self.solver
        )
        return res.loss, res.theta

    def value(self, theta):
        return float(self._loss_for(self.data)(self.predict(theta, self.data)))

    def predict(self, theta, data):
        if self.model == "resnet":
            return np.asarray(self._resnet_states(theta, data, np))
        return solve(self.fld, data.y[0], data.t, theta, **self.solver).z


#: most Euler layers a model='resnet' fit builds
MAX_RESNET_LAYERS = 100_000


def _check_resnet_step(h, data):
    """The layers that resnet_step implies must exist in number and reach past the initial time."""
    t0, span = float(data.t[0]), float(data.t[-1] - data.t[0])
    layers = span / h
    if layers > MAX_RESNET_LAYERS:
        raise InvalidArgumentError(
            f"resnet_step={h!r} implies {layers:.3g} Euler layers over the data's time span {span:g}; at most "
            f"{MAX_RESNET_LAYERS} are built: use resnet_step >= {span / MAX_RESNET_LAYERS:.3g}"
        )
    later = data.t[1:][np.any(data.mask[1:], axis=1)]  # observed times after t0
    if later.size and np.all(np.rint((later - t0) / h) == 0):
        raise InvalidArgumentError(
            f"resnet_step={h!r} is so large that every observation after t0 = {t0:g} (the last at "
            f"{float(later[-1]):g}) falls on layer 0, the initial state: the loss would not depend on theta. "
            f"Use resnet_step <= {float(later[-1] - t0):.3g} (the data's span), e.g. a tenth of it"
        )


class _Stop(Exception):
    pass


def fit(
    field,
    data,
    *,
    theta0=None,
    optimizer="adam",
    steps=200,
    learning_rate=None,
    model="ode",
    resnet_step=None,
    method="RK45",
    rtol=1e-6,
    atol=1e-6,
    mode="interpolated",
    callback=None,
    print_every=None,
    progress=False,
    seed=0,
):
    r"""Train a vector field on irregularly sampled trajectories.

    Parameters
    ----------
    field : MLPField, ODESystem, vector field or callable
        f(z, t; theta). A plain function ``f(z, t, theta)`` (autograd.numpy)
        needs ``theta0``.
    data : TrajectoryData
        The trajectories; all must be observed at the first time ``data.t[0]``
        (their initial states), and the loss uses every later observation.
    theta0 : array_like, shape (p,), optional
        Initial parameters; default ``field.init_params(seed)``.
    optimizer : {'adam', 'gd', 'lbfgs'}
        ``'gd'`` is plain gradient descent ``theta <- theta - lr * grad``
        (notes §3.4); ``'adam'`` is Adam (Kingma & Ba) with betas (0.9,
        0.999); ``'lbfgs'`` is SciPy's L-BFGS-B with the exact gradient.
    steps : int
        Iterations (for L-BFGS the maximum number of iterations).
    learning_rate : float, optional
        Step size of 'gd' (default 0.05) and 'adam' (default 0.01); not used by
        L-BFGS, which searches its own step.
    model : {'ode', 'resnet'}
        A Neural ODE (adjoint gradients) or the discrete ResNet with fixed
        step ``resnet_step`` (backpropagation); see the module notes.
    resnet_step : float
        The ResNet's step h (required for, and only used by, ``model='resnet'``).
    method, rtol, atol, mode
        Solver settings of the Neural ODE, passed to
        :func:`~odeverify.adjoint_gradients`.
    callback : callable, optional
        ``callback(FitProgress)`` after every step; return True to stop.
    print_every : int, optional
        Print the loss every that many steps.
    progress : bool or callable
        True: show a progress bar when ``tqdm`` is installed (otherwise the loss is
        printed every ``max(1, steps // 10)`` steps). A callable receives a
        ``"fit"`` :class:`~odeverify.ProgressEvent` after every step (its
        ``detail`` the loss), as the command line's display does.
    seed : int
        Seed of the default initialisation.

    Returns
    -------
    FitResult
        With ``.theta``, ``.loss_history``, ``.predict(data)``, ``.rmse(data)``.

    Raises
    ------
    InvalidArgumentError, InvalidTypeError
        For bad inputs.
    IntegrationError
        When a solve fails during training (the message names the step; a
        smaller learning rate usually helps).

    References
    ----------
    D. P. Kingma, J. Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015.
    R. T. Q. Chen et al., "Neural Ordinary Differential Equations", NeurIPS 2018.

    Examples
    --------
    >>> import odeverify as ov
    >>> data = ov.TrajectoryData.from_arrays([0, 0, 0], [0.0, 0.5, 1.0], [[1.0], [0.61], [0.37]])
    >>> field = ov.MLPField((1, 1))  # f = w z + b
    >>> res = ov.fit(field, data, theta0=[0.0, 0.0], optimizer="lbfgs", steps=50)
    >>> bool(res.final_loss < 1e-3 * res.initial_loss)
    True
    """
    # ------------------------------------------------------------------ validation
    if not isinstance(data, TrajectoryData):
        raise InvalidTypeError(
            f"data must be an odeverify.TrajectoryData, got {type(data).__name__}; "
            "load one with odeverify.load_trajectories(path) or TrajectoryData.from_arrays(ids, t, y)"
        )
    if not isinstance(optimizer, str) or optimizer.lower() not in OPTIMIZERS:
        raise InvalidArgumentError(f"optimizer={optimizer!r} is not one of {', '.join(map(repr, OPTIMIZERS))}")
    optimizer = optimizer.lower()
    if model not in ("ode", "resnet"):
        raise InvalidArgumentError(f"model={model!r} must be 'ode' (a Neural ODE) or 'resnet' (Euler with a fixed step)")
    if model == "resnet":
        if resnet_step is None:
            raise InvalidArgumentError("model='resnet' needs resnet_step, the fixed step h of its Euler layers, e.g. 0.2")
        resnet_step = check_positive_float(resnet_step, "resnet_step")
    elif resnet_step is not None:
        raise InvalidArgumentError("resnet_step is only used with model='resnet'; remove it or set model='resnet'")
    steps = check_positive_int(steps, "steps")
    if optimizer == "lbfgs":
        if learning_rate is not None:
            raise InvalidArgumentError("learning_rate is not used by optimizer='lbfgs' (it searches its own step)")
    else:
        learning_rate = _DEFAULT_LR[optimizer] if learning_rate is None else check_positive_float(learning_rate, "learning_rate")
    if callback is not None and not callable(callback):
        raise InvalidTypeError(f"callback must be callable, got {type(callback).__name__}")
    if print_every is not None:
        print_every = check_positive_int(print_every, "print_every")
    if theta0 is None:
        init = getattr(field, "init_params", None)
        if init is None:
            raise InvalidArgumentError(
                f"theta0 is required for a {type(field).__name__} (only an MLPField has init_params); pass theta0 of "
                "shape (p,)"
            )
        theta0 = init(check_rng(seed, "seed"))
    fld = as_field(field, data.y[0], theta0)
    theta0 = check_theta(theta0, fld.n_params).copy()
    _check_data(data, fld.n_states, for_training=True)
    if model == "resnet":
        _check_resnet_step(resnet_step, data)
    method = check_method(method)
    mode = check_mode(mode)
    rtol, atol = check_tolerances(rtol, atol, fld.n_states)
    objective = _Objective(fld, data, model, resnet_step, method, rtol, atol, mode)

    # ------------------------------------------------------------------ progress
    bar = None
    listener = progress if callable(progress) else None
    if progress and listener is None:
        try:
            from tqdm.auto import tqdm
        except ImportError:  # tqdm is optional
            print_every = print_every or max(1, steps // 10)
        else:
            bar = tqdm(total=steps, desc=f"fit {model}/{optimizer}")

    def report(step, loss, grad, theta):
        if bar is not None and step > 0:
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4g}")
        if print_every and (step % print_every == 0 or step == steps):
            line = f"step {step:5d}  loss {loss:.6g}  |grad| {np.linalg.norm(grad):.3g}"
            (bar.write if bar is not None else print)(line)
        if listener is not None and step > 0:
            listener(ProgressEvent("fit", f"{model}/{optimizer}", step - 1, steps, "done", f"loss {loss:.4g}"))
        if callback is not None:
            return bool(callback(FitProgress(step, loss, float(np.linalg.norm(grad)), theta.copy())))
        return False

    def evaluate(theta, step):
        hint = "a smaller learning_rate (or a smaller initialisation, e.g. init_params(seed, scale=0.5)) usually helps"
        try:
            loss, grad = objective.value_and_grad(theta)
        except IntegrationError as exc:
            raise IntegrationError(
                f"training failed at step {step}: {exc}; {hint}",
                t_reached=exc.t_reached,
                t_target=exc.t_target,
                solver_message=exc.solver_message,
            ) from exc
        if not (np.isfinite(loss) and np.all(np.isfinite(grad))):
            raise IntegrationError(f"training failed at step {step}: the loss or its gradient is not finite; {hint}")
        return loss, grad

    # ------------------------------------------------------------------ optimisation
    start = _time.perf_counter()
    history = []
    stopped = False
    try:
        if optimizer == "lbfgs":
            theta, n_grad, stopped, message = _lbfgs(evaluate, theta0, steps, history, report)
        else:
            theta, n_grad, stopped, message = _first_order(
                evaluate, objective, theta0, steps, optimizer, learning_rate, history, report
            )
    finally:
        if bar is not None:
            bar.close()
    return FitResult(
        theta=theta,
        loss_history=np.array(history),
        initial_loss=history[0],
        final_loss=history[-1],
        n_gradients=n_grad,
        optimizer=optimizer,
        model=model,
        stopped_early=stopped,
        message=message,
        seconds=_time.perf_counter() - start,
        _objective=objective,
    )


def _first_order(evaluate, objective, theta, steps, optimizer, lr, history, report):
    """Gradient descent or Adam; history gets L(theta_k) for k = 0..steps."""
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    m = np.zeros_like(theta)
    v = np.zeros_like(theta)
    for k in range(steps):
        loss, grad = evaluate(theta, k)
        history.append(loss)
        if report(k, loss, grad, theta):
            return theta, k + 1, True, f"stopped by the callback after {k} steps"
        if optimizer == "gd":
            theta = theta - lr * grad
        else:
            m = beta1 * m + (1 - beta1) * grad
            v = beta2 * v + (1 - beta2) * grad * grad
            mhat = m / (1 - beta1 ** (k + 1))
            vhat = v / (1 - beta2 ** (k + 1))
            theta = theta - lr * mhat / (np.sqrt(vhat) + eps)
    loss, grad = evaluate(theta, steps)
    history.append(loss)
    report(steps, loss, grad, theta)
    return theta, steps + 1, False, f"{steps} {optimizer} steps"


def _lbfgs(evaluate, theta0, steps, history, report):
    """SciPy's L-BFGS-B with the exact gradient; history gets the loss of every iterate."""
    import scipy.optimize

    state = {"x": None, "f": None, "g": None, "n": 0, "k": 0, "best": (np.inf, theta0), "failed": 0}

    def fun(x):
        if state["n"] == 0:
            f, g = evaluate(x, 0)
        else:
            try:
                f, g = evaluate(x, state["k"])
            except IntegrationError:
                # a trial point of the line search where the solve fails: reported as +inf, so the line
                # search backtracks; such a point is never accepted as an iterate
                state["failed"] += 1
                f, g = np.inf, np.zeros_like(x)
        state.update(x=x.copy(), f=f, g=g, n=state["n"] + 1)
        if f < state["best"][0]:
            state["best"] = (f, x.copy())
        return f, g

    f0, g0 = fun(theta0)
    history.append(f0)
    if report(0, f0, g0, theta0):
        return np.array(theta0, dtype=float), 1, True, "stopped by the callback at the initial parameters"

    def cb(xk):
        state["k"] += 1
        if state["x"] is not None and np.array_equal(xk, state["x"]):
            f, g = state["f"], state["g"]
        else:  # pragma: no cover - L-BFGS-B reports the last evaluated point
            f, g = fun(xk)
        history.append(f)
        if report(state["k"], f, g, xk):
            raise _Stop

    stopped = False
    try:
        res = scipy.optimize.minimize(fun, theta0, jac=True, method="L-BFGS-B", callback=cb, options={"maxiter": steps})
        message = str(res.message)
        if state["failed"]:
            message += f" ({state['failed']} line-search trial points failed to solve and were rejected)"
        stopped = bool(res.nit < steps)
        theta = res.x if res.fun <= state["best"][0] else state["best"][1]
    except _Stop:
        stopped = True
        message = f"stopped by the callback after {state['k']} iterations"
        theta = state["best"][1]
    return np.array(theta, dtype=float), state["n"], stopped, message


def _check_data(data, n, *, for_training=False):
    if not isinstance(data, TrajectoryData):
        raise InvalidTypeError(f"data must be an odeverify.TrajectoryData, got {type(data).__name__}")
    if data.n_states != n:
        raise InvalidArgumentError(
            f"data has {data.n_states} states ({', '.join(data.state_names)}) but the field has {n}; "
            "use a field with as many states as the data"
        )
    late = [data.ids[b] for b in np.flatnonzero(~data.mask[0])]
    if late:
        raise InvalidArgumentError(
            f"every trajectory must be observed at the initial time t0 = {data.t[0]!r} (its initial state); "
            f"trajectories {late[:5]}{' ...' if len(late) > 5 else ''} start later. Shift their times or select "
            "trajectories that share t0 (data.select([...]))"
        )
    if for_training and len(data.t) < 2:
        raise InvalidArgumentError("data has no observations after the initial time; there is nothing to fit")
    return data
