"""torchdiffeq models as odeverify sees them: :class:`TorchField` and :func:`check_odeint`.

Needs the ``torch`` extra (``pip install 'odeverify[torch]'``: PyTorch and torchdiffeq). PyTorch is
imported when one of these is first used, never by ``import odeverify``.

* :class:`TorchField` wraps a torchdiffeq-style ``func(t, y)`` (an ``nn.Module`` or a function) as an
  :class:`~odeverify.AbstractVectorField`: f and its vector-Jacobian products run in torch, in
  float64, on whole batches, so ``adjoint_gradients``, ``check_gradients``, ``taylor_test`` and
  ``fit`` work on the user's own function.
* :func:`check_odeint` runs the user's solve (``torchdiffeq.odeint_adjoint`` by default), takes the
  gradients torch gives for ``y0``, the parameters and ``t``, and checks them against odeverify's
  references at the tolerance the user's solver can deliver (see :mod:`odeverify.adapters._common`).
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import numbers

import numpy as np

from .._field import AbstractVectorField
from ..errors import InvalidArgumentError, InvalidTypeError, LossError
from ._common import PeerSolver, check_peer

__all__ = ["TorchField", "check_odeint"]

#: torchdiffeq's adaptive methods and the odeverify method of the same family (for the calibration)
COMPARABLE_METHODS = {"dopri5": "dopri5", "dopri8": "DOP853", "bosh3": "RK23", "tsit5": "tsit5",
                      "adaptive_heun": "RK23", "fehlberg2": "RK23", "scipy_solver": "RK45"}

_SIGNATURE_HINT = (
    "torchdiffeq calls the vector field as func(t, y); write it as a torch.nn.Module whose forward(self, t, y) "
    "returns dy/dt, or a function of (t, y), e.g. wrap an nn.Sequential net as "
    "class ODEFunc(nn.Module): ... def forward(self, t, y): return self.net(y)"
)


def _torch():
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ModuleNotFoundError(
            "odeverify.adapters.torch needs PyTorch: pip install 'odeverify[torch]' (torch and torchdiffeq)"
        ) from exc
    return torch


def _name(func):
    return type(func).__name__ if not inspect.isfunction(func) else func.__name__


# ---------------------------------------------------------------------------- binding the user's func
def _check_signature(func):
    torch = _torch()
    if isinstance(func, type) or not callable(func):
        raise InvalidTypeError(f"func must be a torch.nn.Module or a function func(t, y), got "
                               f"{type(func).__name__} {func!r:.60}; {_SIGNATURE_HINT}")
    target = func.forward if isinstance(func, torch.nn.Module) else func
    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError):
        return
    try:
        signature.bind(0.0, 0.0)
    except TypeError:
        what = f"{type(func).__name__}.forward" if isinstance(func, torch.nn.Module) else _name(func)
        raise InvalidTypeError(
            f"func cannot be called as func(t, y): {what} has the signature {signature}; {_SIGNATURE_HINT}"
        ) from None


def _float64_module(module):
    """The module itself if it is float64, else a float64 copy (the user's module is never changed)."""
    torch = _torch()
    dtypes = {t.dtype for t in list(module.parameters()) + list(module.buffers()) if t.is_floating_point()}
    if dtypes <= {torch.float64}:
        return module, []
    shown = ", ".join(sorted(str(d).replace("torch.", "") for d in dtypes - {torch.float64}))
    return copy.deepcopy(module).double(), [
        f"the module's {shown} parameters were copied to float64 for the check (odeverify's references need "
        "float64; the user's module is unchanged): the gradient checked is that of the float64 copy"
    ]


def _selected_parameters(func, module, params):
    """``(names, tensors)`` of θ: the module's parameters in named_parameters() order, or those given."""
    torch = _torch()
    what = type(func).__name__
    if params is None:
        if module is None:
            return [], []
        named = list(module.named_parameters())
        if not named:
            raise InvalidArgumentError(
                f"func ({what}) has no parameters (named_parameters() is empty), so there is no θ to check; "
                "give the module its parameters (nn.Parameter), or pass params=() to check only ∂L/∂y0 and ∂L/∂t"
            )
    else:
        if isinstance(params, torch.Tensor) or not isinstance(params, (list, tuple)):
            raise InvalidTypeError(f"params must be a list or tuple of tensors, got {type(params).__name__}; "
                                   "e.g. params=list(func.parameters())")
        for i, p in enumerate(params):
            if not isinstance(p, torch.Tensor):
                raise InvalidTypeError(f"params[{i}] is {type(p).__name__}, not a torch.Tensor")
        if module is not None:
            by_id = {id(p): name for name, p in func.named_parameters()}
            missing = [i for i, p in enumerate(params) if id(p) not in by_id]
            if missing:
                raise InvalidArgumentError(
                    f"params[{missing[0]}] is not a parameter of func ({what}); pass tensors from "
                    "func.parameters(), e.g. params=list(func.net[0].parameters())"
                )
            own = dict(module.named_parameters())
            named = [(by_id[id(p)], own[by_id[id(p)]]) for p in params]
        else:
            named = [(f"params[{i}]", p) for i, p in enumerate(params)]
            for name, p in named:
                if p.dtype != torch.float64:
                    raise InvalidTypeError(
                        f"{name} is a {p.dtype} tensor; a plain function's tensors cannot be converted without "
                        "changing them: create them with dtype=torch.float64 (or make func an nn.Module, which "
                        "odeverify copies to float64)"
                    )
    frozen = [name for name, p in named if not p.requires_grad]
    if frozen:
        raise InvalidArgumentError(
            f"parameter {frozen[0]} of func ({what}) has requires_grad=False, so the user's solve gives it no "
            f"gradient{f' (and {len(frozen) - 1} more)' if len(frozen) > 1 else ''}; check the trainable ones "
            "with params=[p for p in func.parameters() if p.requires_grad], or call .requires_grad_(True) on it"
        )
    return [name for name, _ in named], [p for _, p in named]


def _entry_names(names, tensors):
    """One label per scalar entry, ``net.0.weight[2, 1]``, in the flattening order (row-major per tensor)."""
    out = []
    for name, p in zip(names, tensors):
        if p.dim() == 0:
            out.append(name)
        else:
            out += [f"{name}[{', '.join(map(str, idx))}]" for idx in np.ndindex(*p.shape)]
    return tuple(out)


def _infer_n_states(module):
    """n from the last layer with ``out_features`` (an ODE field maps R^n to R^n), or None."""
    last = None
    for m in module.modules():
        if isinstance(getattr(m, "out_features", None), int):
            last = m.out_features
    return last


# ---------------------------------------------------------------------------- the field
class TorchField(AbstractVectorField):
    """A torchdiffeq-style vector field ``func(t, y)`` as an odeverify vector field.

    Parameters
    ----------
    func : torch.nn.Module or callable
        ``func(t, y) -> dy/dt`` as torchdiffeq calls it: ``t`` a 0-dimensional tensor, ``y`` of shape
        (n,) or (B, n). A function written for one state (n,) is batched with ``torch.func.vmap``; one
        that acts on each row of a (B, n) batch is called on whole batches.
    params : sequence of torch.Tensor, optional
        The parameters θ, in this order. Default: the module's ``named_parameters()``, in that order.
        For a plain function, tensors it closes over (float64, ``requires_grad=True``); odeverify writes
        θ's values into them while it evaluates f and restores them after. A plain function without
        ``params`` has no parameters.
    n_states : int, optional
        n; default the ``out_features`` of the module's last layer (:func:`check_odeint` passes it).

    Attributes
    ----------
    theta0 : ndarray, shape (p,)
        The parameters' current values, flattened (each tensor row-major, in order).
    param_names : tuple of str
        One per entry of θ, e.g. ``net.0.weight[2, 1]``; the reports name entries by them.
    notes : list of str
        E.g. that a float32 module is evaluated in a float64 copy.

    Notes
    -----
    Every derivative (the adjoint's products, the autograd references' Jacobians) comes from torch's
    autograd of the user's code, including any custom ``torch.autograd.Function`` backward, so
    ``derivatives_from_user`` is True: :func:`~odeverify.check_gradients` then requires finite
    differences (f's values only) in every consensus. There is no complex step
    (``complex_step_safe()`` is False) and no analytic Jacobian.
    """

    derivatives_from_user = True

    def __init__(self, func, *, params=None, n_states=None):
        torch = _torch()
        _check_signature(func)
        self._is_module = isinstance(func, torch.nn.Module)
        self.notes = []
        if self._is_module:
            self.module, self.notes = _float64_module(func)
        else:
            self.module = None
        names, self._tensors = _selected_parameters(func, self.module, params)
        self._names = names
        self._shapes = [tuple(p.shape) for p in self._tensors]
        self._sizes = [int(p.numel()) for p in self._tensors]
        self.param_names = _entry_names(names, self._tensors)
        self.n_params = int(sum(self._sizes))
        self.func = self.module if self._is_module else func
        if n_states is None:
            n_states = _infer_n_states(self.module) if self._is_module else None
            if n_states is None:
                raise InvalidArgumentError(
                    f"the number of states of func ({_name(func)}) is not known: pass n_states=, e.g. "
                    "TorchField(func, n_states=2) (check_odeint takes it from y0)"
                )
        if isinstance(n_states, bool) or not isinstance(n_states, numbers.Integral) or n_states < 1:
            raise InvalidArgumentError(f"n_states={n_states!r} must be a positive integer")
        self.n_states = int(n_states)
        self.theta0 = self._flat(self._tensors)
        self._rowwise = None  # "batch" (func acts on each row of (B, n)) or "vmap", found on the first call
        self._vmap_ok = self._is_module  # per-member θ and per-row t by torch.func.vmap until it fails
        self._autograd_f = None

    def describe(self):
        return (f"TorchField {_name(self.func)} with {self.n_states} states and {self.n_params} parameters "
                "(torch float64, products by torch autograd)")

    def __repr__(self):
        return f"TorchField({_name(self.func)}, n_states={self.n_states}, n_params={self.n_params})"

    # ------------------------------------------------------------------ θ <-> tensors
    def _flat(self, tensors):
        if not tensors:
            return np.zeros(0)
        return np.concatenate([p.detach().to("cpu", _torch().float64).reshape(-1).numpy() for p in tensors])

    def _split(self, theta):
        """θ as tensors of the parameters' shapes (views of ``theta``; works on a vmapped row too)."""
        parts = theta.split(self._sizes) if self._sizes else []
        return [part.reshape(shape) for part, shape in zip(parts, self._shapes)]

    def _theta_tensor(self, theta, requires_grad=False):
        torch = _torch()
        th = torch.tensor(np.asarray(theta, dtype=float).reshape(-1), dtype=torch.float64)
        return th.requires_grad_(requires_grad)

    def _current(self, theta):
        """True when ``theta`` is the parameters' own values: func is then called as it is, no substitution."""
        return np.array_equal(np.asarray(theta), self.theta0)

    @contextlib.contextmanager
    def _at(self, theta, requires_grad=False):
        """θ for :meth:`_apply` while the block runs: yields ``(thetas, leaves)``.

        ``thetas`` is None when func runs on its own parameters (θ is their value, or a plain function's
        tensors hold θ for the duration of the block and get their values back after it), else θ's tensors
        for ``functional_call``; ``leaves`` are the tensors whose gradients make up a_θ, in θ's order.
        """
        torch = _torch()
        if self._current(theta):
            yield None, list(self._tensors)
        elif self._is_module:
            th = self._theta_tensor(theta, requires_grad)
            yield self._split(th), [th]
        else:
            saved = [p.detach().clone() for p in self._tensors]
            with torch.no_grad():
                for p, v in zip(self._tensors, self._split(self._theta_tensor(theta))):
                    p.copy_(v)
            try:
                yield None, list(self._tensors)
            finally:
                with torch.no_grad():
                    for p, v in zip(self._tensors, saved):
                        p.copy_(v)

    def _apply(self, t, y, thetas):
        """func(t, y) with θ = ``thetas`` (tensors of the parameters' shapes; None: the parameters themselves)."""
        if thetas is None:
            return self.func(t, y)
        return _torch().func.functional_call(self.module, dict(zip(self._names, thetas)), (t, y))

    # ------------------------------------------------------------------ calling func on a batch
    def _rows(self, t, y, thetas):
        """f on a batch ``y`` (B, n) at one time ``t`` (0-d tensor)."""
        torch = _torch()
        if self._rowwise is None:
            self._rowwise = self._find_batching(t, y, thetas)
        if self._rowwise == "batch":
            return self._checked(self._apply(t, y, thetas), y)
        return torch.func.vmap(lambda row: self._checked(self._apply(t, row, thetas), row))(y)

    def _checked(self, out, y):
        torch = _torch()
        if not isinstance(out, torch.Tensor):
            raise InvalidTypeError(f"func ({_name(self.func)}) returned {type(out).__name__}, not a torch.Tensor")
        if out.shape != y.shape:
            raise InvalidArgumentError(
                f"func ({_name(self.func)}) returned shape {tuple(out.shape)} for y of shape {tuple(y.shape)}; "
                "dy/dt must have the shape of y"
            )
        if out.dtype != torch.float64:
            raise InvalidTypeError(
                f"func ({_name(self.func)}) returned {out.dtype} for float64 y: it must compute in y's dtype "
                "(create its constants with dtype=y.dtype)"
            )
        return out

    def _find_batching(self, t, y, thetas):
        """'batch' when func acts on each row of a (B, n) batch, else 'vmap' when it works on one state (n,)."""
        torch = _torch()
        y = y.detach()
        probe = torch.cat([y[:1], y[:1] * 0.75 + 0.5])  # two distinct rows
        with torch.no_grad():
            try:
                out = self._checked(self._apply(t, probe, thetas), probe)
                swapped = self._apply(t, probe.flip(0), thetas)
                single = self._apply(t, probe[1], thetas)
                if (torch.allclose(swapped.flip(0), out, rtol=1e-12, atol=1e-300)
                        and single.shape == probe[1].shape
                        and torch.allclose(single, out[1], rtol=1e-12, atol=1e-300)):
                    return "batch"
            except (RuntimeError, IndexError, ValueError, TypeError, InvalidArgumentError):
                pass
            except InvalidTypeError:
                raise
            try:
                torch.func.vmap(lambda row: self._checked(self._apply(t, row, thetas), row))(probe)
            except (InvalidTypeError, InvalidArgumentError):  # its output's shape or dtype, said as it is
                raise
            except Exception as exc:  # noqa: BLE001 - user code under vmap; re-raised with the fix
                raise InvalidArgumentError(
                    f"func ({_name(self.func)}) neither acts on each row of a batch y of shape (B, {self.n_states}) "
                    f"nor runs on one state of shape ({self.n_states},) under torch.func.vmap "
                    f"({type(exc).__name__}: {exc}); check that y0 has the {self.n_states} states func expects, and write "
                    "func for y[..., i] (rows of a batch), e.g. with torch.stack([...], dim=-1)"
                ) from exc
        return "vmap"

    def _np(self, x):
        return x.detach().numpy()

    # ------------------------------------------------------------------ the interface
    def eval_f(self, z, t, theta):
        torch = _torch()
        y = torch.from_numpy(np.ascontiguousarray(z, dtype=float))
        with torch.no_grad(), self._at(theta) as (thetas, _):
            return self._np(self._rows(torch.tensor(float(t), dtype=torch.float64), y, thetas))

    def eval_vjp(self, a, z, t, theta, *, with_f=False):
        torch = _torch()
        y = torch.tensor(np.asarray(z, dtype=float), dtype=torch.float64, requires_grad=True)
        tt = torch.tensor(float(t), dtype=torch.float64, requires_grad=True)
        with torch.enable_grad(), self._at(theta, requires_grad=True) as (thetas, leaves):
            out = self._rows(tt, y, thetas)
            g_y, g_t, *g_th = _grads(out, (y, tt, *leaves), np.asarray(a, dtype=float))
        return (self._np(out) if with_f else None), g_y, _flat_grads(g_th), float(g_t)

    def eval_f_at(self, z, t, theta):
        if self._vmap_ok:
            try:
                return self._per_row_time(z, t, theta)[0]
            except Exception:  # noqa: BLE001 - func does not vmap over times: one call per distinct time
                self._vmap_ok = False
        return super().eval_f_at(z, t, theta)

    def eval_vjp_at(self, a, z, t, theta):
        if self._vmap_ok:
            try:
                _, a_z, a_t, a_theta = self._per_row_time(z, t, theta, a=a)
                return a_z, a_theta, float(np.sum(a_t))
            except Exception:  # noqa: BLE001 - as in eval_f_at
                self._vmap_ok = False
        return super().eval_vjp_at(a, z, t, theta)

    def _per_row_time(self, z, t, theta, a=None):
        """f (and, with ``a``, the VJPs with a_t per row) for rows ``z`` (M, n) at times ``t`` (M,), by vmap."""
        torch = _torch()
        z = np.asarray(z, dtype=float)
        y = torch.tensor(z, dtype=torch.float64, requires_grad=a is not None)
        tt = torch.tensor(np.broadcast_to(np.asarray(t, dtype=float), z.shape[:1]).copy(), dtype=torch.float64,
                          requires_grad=a is not None)
        with (torch.enable_grad() if a is not None else torch.no_grad()), \
                self._at(theta, requires_grad=a is not None) as (thetas, leaves):
            if self._rowwise is None:
                self._rowwise = self._find_batching(tt[0].detach(), y[:1].detach(), thetas)
            one = ((lambda row, s: self._apply(s, row[None], thetas)[0]) if self._rowwise == "batch"
                   else (lambda row, s: self._apply(s, row, thetas)))
            out = torch.func.vmap(one)(y, tt)
            if a is None:
                return (self._np(out),)
            g_y, g_t, *g_th = _grads(out, (y, tt, *leaves), np.asarray(a, dtype=float))
        return self._np(out), g_y, g_t, _flat_grads(g_th)

    def eval_f_each(self, z, t, theta):
        """f with a time and θ per member (the finite differences' batch), by ``torch.func.vmap``."""
        z = np.asarray(z)
        if np.iscomplexobj(z):
            return None
        if np.ndim(theta) == 1 and np.ndim(t) == 0:
            return self.eval_f(z.reshape(-1, self.n_states), t, theta).reshape(z.shape)
        if self._vmap_ok:
            try:
                return self._each_by_vmap(z, t, theta)
            except Exception:  # noqa: BLE001 - func does not vmap over parameters: one call per distinct θ
                self._vmap_ok = False
        return super().eval_f_each(z, t, theta)

    def _each_by_vmap(self, z, t, theta):
        torch = _torch()
        M, n = z.shape[0], self.n_states
        Y = torch.from_numpy(np.ascontiguousarray(z, dtype=float).reshape(M, -1, n))
        T = torch.from_numpy(np.broadcast_to(np.asarray(t, dtype=float), (M,)).copy())
        TH = torch.from_numpy(np.array(np.broadcast_to(np.asarray(theta, dtype=float), (M, self.n_params))))
        with torch.no_grad():
            if self._rowwise is None:
                self._rowwise = self._find_batching(T[0], Y[0], self._split(TH[0]))
            out = torch.func.vmap(lambda th, y, s: self._rows(s, y, self._split(th)))(TH, Y, T)
        return self._np(out).reshape(z.shape)

    def f_autograd(self, z, t, theta):
        """f as an autograd primitive whose products come from torch (for the autograd references)."""
        import autograd.numpy as anp

        if self._autograd_f is None:
            self._autograd_f = _autograd_primitive(self)
        if isinstance(theta, (list, tuple)):
            theta = anp.stack(theta) if len(theta) else np.zeros(0)
        shape = anp.shape(z)
        out = self._autograd_f(anp.reshape(z, (-1, self.n_states)), t, theta)
        return anp.reshape(out, shape)

    def complex_step_safe(self):
        return False


def _flat_grads(grads):
    """The gradients of θ's leaves as one vector (p,)."""
    return np.concatenate([g.reshape(-1) for g in grads]) if grads else np.zeros(0)


def _grads(out, inputs, a):
    """torch.autograd.grad of ``sum(a * out)`` for ``inputs``, as NumPy arrays (zeros where unused)."""
    torch = _torch()
    got = torch.autograd.grad(out, inputs, grad_outputs=torch.from_numpy(np.ascontiguousarray(a)).reshape(out.shape),
                              allow_unused=True)
    return tuple(np.zeros(tuple(x.shape)) if g is None else g.detach().numpy() for g, x in zip(got, inputs))


def _autograd_primitive(field):
    """``f(z (M, n), t (float or (M,)), theta (p,))`` for autograd, with VJPs for every argument from torch."""
    from autograd.extend import defvjp_argnums, primitive

    @primitive
    def f(z, t, theta):
        if np.ndim(t):
            return field.eval_f_at(z, t, theta)
        return field.eval_f(z, t, theta)

    def vjpmaker(argnums, ans, args, kwargs):
        z, t, theta = args

        def vjp(g):
            if np.ndim(t):
                _, a_z, a_t, a_theta = field._per_row_time(z, t, theta, a=g)
            else:
                _, a_z, a_theta, a_t = field.eval_vjp(g, z, t, theta)
            by_arg = (a_z, a_t, a_theta)
            return tuple(by_arg[i] for i in argnums)

        return vjp

    defvjp_argnums(f, vjpmaker)
    return f


# ---------------------------------------------------------------------------- the loss
def _autograd_loss(loss):
    """The user's torch ``loss(solution)`` as an autograd primitive on NumPy states, gradient from torch."""
    from autograd.extend import defvjp, primitive

    torch = _torch()

    @primitive
    def value(zs):
        with torch.no_grad():
            out = loss(torch.from_numpy(np.array(zs, dtype=float)))
        return out.detach().numpy().reshape(out.shape) if isinstance(out, torch.Tensor) else out

    def vjp(ans, zs):
        def back(g):
            x = torch.tensor(np.asarray(zs, dtype=float), dtype=torch.float64, requires_grad=True)
            with torch.enable_grad():
                out = loss(x)
                (gx,) = torch.autograd.grad(out.reshape(()), x, allow_unused=True)
            return g * (np.zeros(x.shape) if gx is None else gx.numpy())

        return back

    defvjp(value, vjp)
    return value


def _scalar_loss(value, shape):
    torch = _torch()
    if not isinstance(value, torch.Tensor):
        raise LossError(f"loss returned {type(value).__name__} {value!r:.60}, not a torch tensor; loss(solution) must "
                        "be a torch function of the solution, e.g. ((solution - target) ** 2).sum()")
    if value.numel() != 1:
        raise LossError(
            f"loss returned a tensor of shape {tuple(value.shape)} on the solution of shape {shape}, not a scalar; "
            "reduce it, e.g. with .sum() or .mean()"
        )
    return value.reshape(())


# ---------------------------------------------------------------------------- check_odeint
def _as_float64(x, argname):
    torch = _torch()
    if isinstance(x, torch.Tensor):
        arr = x.detach().to("cpu", torch.float64).numpy().copy()
    else:
        try:
            arr = np.array(x, dtype=float)
        except (TypeError, ValueError):
            raise InvalidTypeError(f"{argname} must be a tensor or an array of numbers, got {type(x).__name__}") from None
    if not np.all(np.isfinite(arr)):
        raise InvalidArgumentError(f"{argname} holds non-finite values; give finite numbers")
    return arr


def _check_times(t, t_np):
    """t as odeint takes it: one dimension, at least two times, strictly increasing or decreasing."""
    steps = np.diff(t_np) if t_np.ndim == 1 else np.zeros(0)
    if t_np.ndim != 1 or t_np.size < 2 or not (np.all(steps > 0) or np.all(steps < 0)):
        raise InvalidArgumentError(
            f"t = {np.array2string(t_np, threshold=8)} (shape {t_np.shape}) must be one dimension of at least two "
            "strictly increasing (or decreasing) times, the first the initial time, e.g. torch.linspace(0.0, 1.0, 5)"
        )


def _tolerance(odeint, kwargs, name):
    """The value of the keyword ``name`` in the user's solve: given, else the solver's default."""
    if kwargs.get(name) is not None:
        return float(kwargs[name])
    try:
        default = inspect.signature(odeint).parameters[name].default
    except (KeyError, TypeError, ValueError):
        return None
    return float(default) if isinstance(default, numbers.Real) and not isinstance(default, bool) else None


def _peer_solver(odeint, kwargs):
    label = f"{getattr(odeint, '__module__', '') or ''}.{getattr(odeint, '__name__', type(odeint).__name__)}".lstrip(".")
    if label.startswith("torchdiffeq."):
        label = "torchdiffeq." + label.rsplit(".", 1)[-1]
    method = kwargs.get("method") or "dopri5"
    rtol, atol = _tolerance(odeint, kwargs, "rtol"), _tolerance(odeint, kwargs, "atol")
    # the adjoint solve of odeint_adjoint has its own tolerances (default: the forward's): the looser counts
    for key, value in (("adjoint_rtol", rtol), ("adjoint_atol", atol)):
        if kwargs.get(key) is not None and value is not None:
            if key == "adjoint_rtol":
                rtol = max(rtol, float(kwargs[key]))
            else:
                atol = max(atol, float(kwargs[key]))
    shown = ", ".join([f"method={method}"] + [f"{k}={kwargs[k]:g}" for k in ("rtol", "atol", "adjoint_rtol",
                                                                            "adjoint_atol") if k in kwargs])
    # odeint_adjoint's ∂L/∂t_i is g_i · func(t_i, z_i); any other solve differentiates its interpolant at t_i
    through_steps = getattr(odeint, "__name__", "") != "odeint_adjoint"
    return PeerSolver(f"{label} ({shown}), gradients by torch autograd", rtol, atol, COMPARABLE_METHODS.get(method),
                      times_by_interpolation=through_steps)


def _user_gradients(field, func, y0, t, loss, odeint, kwargs):
    """Run the user's solve and loss and return torch's gradients as odeverify's candidate."""
    torch = _torch()
    y0_t = torch.tensor(y0, dtype=torch.float64, requires_grad=True)
    t_t = torch.tensor(t, dtype=torch.float64, requires_grad=True)
    shown = ", ".join(f"{k}={v!r:.40}" for k, v in kwargs.items() if k != "adjoint_params")
    try:
        solution = odeint(func, y0_t, t_t, **kwargs)
    except Exception as exc:  # noqa: BLE001 - the user's solve: re-raised with what it was called with
        raise InvalidArgumentError(
            f"the solve odeint(func, y0, t{', ' + shown if shown else ''}) "
            f"({getattr(odeint, '__name__', type(odeint).__name__)}) failed: {type(exc).__name__}: {str(exc)[:300]}; "
            "check that it runs on its own with these arguments (the options are odeint's, e.g. rtol=, atol=, "
            "method='dopri5', options=dict(step_size=0.01))"
        ) from exc
    try:
        value = loss(solution)
    except Exception as exc:  # noqa: BLE001 - the user's loss
        raise LossError(f"loss raised {type(exc).__name__}: {str(exc)[:300]} on the solution of shape "
                        f"{tuple(solution.shape)} (times first); loss(solution) must be a torch function of it") from exc
    value = _scalar_loss(value, tuple(solution.shape))
    leaves = [y0_t, t_t, *field._tensors]
    grads = torch.autograd.grad(value, leaves, allow_unused=True)
    candidate, not_checked = {}, {}
    if grads[0] is not None:
        candidate["z0"] = grads[0].detach().numpy()
    else:
        not_checked["z0"] = "the solve gave no gradient with respect to y0 (it is not part of the loss's graph)"
    if grads[1] is not None:
        candidate["t"] = grads[1].detach().numpy()
    else:
        not_checked["t"] = "the solve gave no gradient with respect to t"
    if field.n_params:
        candidate["theta"] = np.concatenate([np.zeros(p.numel()) if g is None else g.detach().reshape(-1).numpy()
                                             for g, p in zip(grads[2:], field._tensors)])
    return candidate, not_checked


def check_odeint(func, y0, t, loss, *, odeint=None, params=None, check_rtol=None, references=None,
                 **odeint_kwargs):
    """Check the gradients of a torchdiffeq solve, as the user runs it, against odeverify's references.

    Parameters
    ----------
    func : torch.nn.Module or callable
        The vector field ``func(t, y)``, as for :class:`TorchField`.
    y0 : tensor or array_like, shape (n,) or (B, n)
    t : tensor or array_like, shape (T,)
        The output times (strictly monotone), as for ``odeint``.
    loss : callable
        ``loss(solution) -> scalar tensor``, a torch function of the (T, n) or (T, B, n) solution.
    odeint : callable, optional
        The solve to check, called as ``odeint(func, y0, t, **odeint_kwargs)``: default
        ``torchdiffeq.odeint_adjoint``; ``torchdiffeq.odeint`` or any function of the same signature.
    params : sequence of torch.Tensor, optional
        The parameters whose gradients are checked (default all of the module's, see
        :class:`TorchField`); passed to ``odeint_adjoint`` as ``adjoint_params`` when it is the solve.
    check_rtol : float, optional
        The check's own relative tolerance (that of :func:`~odeverify.check_gradients`, default 1e-5).
    references : sequence, optional
        As for :func:`~odeverify.check_gradients`; default the adjoint in both modes, autograd through
        Runge–Kutta and finite differences.
    **odeint_kwargs
        The solve's options, e.g. ``rtol=1e-6, atol=1e-6, method="dopri5"``.

    Returns
    -------
    GradientReport
        The candidate is torch's gradient of the user's solve with respect to ``y0``, θ and ``t``; its
        tolerance model states the allowance for the solver's tolerance (see
        :mod:`odeverify.adapters._common`).

    Notes
    -----
    The solve runs in float64: a float32 module is copied to float64 (the user's module is unchanged)
    and the report says so.
    """
    torch = _torch()
    if odeint is None:
        try:
            import torchdiffeq
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ModuleNotFoundError("check_odeint's default solve is torchdiffeq.odeint_adjoint: pip install "
                                      "torchdiffeq, or pass odeint=") from exc
        odeint = torchdiffeq.odeint_adjoint
    if not callable(odeint):
        raise InvalidTypeError(f"odeint must be a function odeint(func, y0, t, **kwargs), got {type(odeint).__name__}")
    if not callable(loss):
        raise InvalidTypeError(f"loss must be a callable loss(solution) -> scalar tensor, got {type(loss).__name__}")
    y0_np, t_np = _as_float64(y0, "y0"), _as_float64(t, "t")
    if y0_np.ndim not in (1, 2) or y0_np.shape[-1] == 0:
        raise InvalidArgumentError(f"y0 has shape {y0_np.shape}; pass shape (n,) or a batch of shape (B, n)")
    _check_times(t, t_np)
    field = TorchField(func, params=params, n_states=y0_np.shape[-1])
    field.eval_f(y0_np.reshape(-1, y0_np.shape[-1]), t_np[0], field.theta0)  # func's shape and dtype, named
    kwargs = dict(odeint_kwargs)
    if getattr(odeint, "__name__", "") == "odeint_adjoint" and "adjoint_params" not in kwargs and (
            params is not None or not field._is_module):
        kwargs["adjoint_params"] = tuple(field._tensors)
    notes = list(field.notes)
    if isinstance(y0, torch.Tensor) and y0.dtype != torch.float64:
        notes.append(f"y0 was {y0.dtype}; the solve was run with y0 in float64")
    candidate, not_checked = _user_gradients(field, field.func, y0_np, t_np, loss, odeint, kwargs)
    return check_peer(field, y0_np, t_np, field.theta0, _autograd_loss(loss), candidate, _peer_solver(odeint, kwargs),
                      not_checked=not_checked, rtol=check_rtol, references=references, notes=notes)
