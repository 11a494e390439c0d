"""Validation of user inputs at the public entry points.

Every check raises the package's own error naming the argument, the value
received and a fix.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from ._field import AbstractVectorField
from .errors import InvalidArgumentError, InvalidTypeError

__all__ = [
    "check_problem",
    "METHODS",
    "MODES",
    "as_field",
    "check_z0",
    "check_theta",
    "check_ts",
    "check_method",
    "check_tolerances",
    "check_mode",
    "check_positive_int",
]

#: solver names accepted: those of scipy.integrate.solve_ivp, then the in-house ones (odeverify._rk)
METHODS = ("RK45", "RK23", "DOP853", "Radau", "BDF", "LSODA", "dopri5", "tsit5")
#: implicit solvers, which use the analytic Jacobian
IMPLICIT_METHODS = ("Radau", "BDF", "LSODA")
#: adjoint modes
MODES = ("interpolated", "backsolve", "quadrature")


def _short(value, width=80):
    text = repr(value)
    return text if len(text) <= width else text[: width - 3] + "..."


def as_field(system, z0=None, theta=None) -> AbstractVectorField:
    """Return ``system`` as a vector field, or raise a clear TypeError.

    Parameters
    ----------
    system : AbstractVectorField or callable
        An :class:`~odeverify.ODESystem`, an :class:`~odeverify.MLPField`, any
        other vector field (returned unchanged), or a plain function
        ``f(z, t, theta)`` written with ``autograd.numpy``, which is wrapped in
        a :class:`~odeverify.CallableField`.
    z0 : array_like, shape (n,) or (B, n), optional
        Needed for a plain function only: its last axis gives n.
    theta : array_like, shape (p,), optional
        For a plain function only: its length gives p (None means p = 0).
    """
    if isinstance(system, AbstractVectorField):
        return system
    if callable(system) and not isinstance(system, type):
        from .fields._callable import CallableField

        if z0 is None:
            raise InvalidArgumentError(
                f"system is the plain function {getattr(system, '__name__', system)!r}; its number of states comes "
                "from z0, which was not given"
            )
        z = _as_float_array(z0, "z0")
        n = 1 if z.ndim == 0 else int(z.shape[-1])
        if theta is None:
            p = 0
        else:
            th = _as_float_array(theta, "theta")
            p = 1 if th.ndim == 0 else int(th.shape[0])
        return CallableField(system, n, p)
    got = f"the class {system.__name__} (pass an instance)" if isinstance(system, type) else type(system).__name__
    raise InvalidTypeError(
        f"system must be an odeverify.ODESystem, an odeverify.MLPField, another vector field, or a function "
        f"f(z, t, theta) written with autograd.numpy; got {got}. Build a symbolic one with "
        "odeverify.ODESystem.from_strings(states=..., params=..., rhs=[...])"
    )


def _as_float_array(value, argname):
    if isinstance(value, (str, bytes)):
        raise InvalidTypeError(f"{argname} must be numeric, got the string {_short(value)}")
    try:
        arr = np.asarray(value)
    except Exception as exc:  # noqa: BLE001 - re-raised with the argument's name
        raise InvalidTypeError(
            f"{argname} must be an array of numbers of one shape, got {_short(value)} ({exc}); "
            "pass a list or NumPy array of numbers, not ragged lists"
        ) from None
    if arr.dtype == object:
        try:
            arr = arr.astype(float)
        except OverflowError:  # a Python int such as 10**400
            raise InvalidArgumentError(
                f"{argname} holds a number beyond the double range (about 1.8e308): {_short(value)}; "
                "pass finite floats"
            ) from None
        except (TypeError, ValueError):
            raise InvalidTypeError(
                f"{argname} must be an array of numbers, got {_short(value)}; ragged lists or non-numbers cannot be used"
            ) from None
    if arr.dtype.kind == "c":
        raise InvalidTypeError(f"{argname} must be real, got a complex array")
    if arr.dtype.kind == "b":  # True/False read as 1/0 would hide a mix-up (a mask passed for a state?)
        raise InvalidTypeError(f"{argname} must hold numbers, got booleans {_short(value)}; pass floats")
    if arr.dtype.kind not in "iuf":
        raise InvalidTypeError(f"{argname} must be numeric, got dtype {arr.dtype} from {_short(value)}")
    return arr.astype(np.float64)


def _real_float(value, argname) -> float:
    """``float(value)`` for a real number; a Python int beyond the double range is an error, not OverflowError."""
    try:
        return float(value)
    except OverflowError:
        raise InvalidArgumentError(
            f"{argname}={_short(value)} is beyond the double range (about 1.8e308); pass a finite float"
        ) from None


def _check_finite(arr, argname):
    if not np.all(np.isfinite(arr)):
        bad = np.argwhere(~np.isfinite(arr))[0]
        idx = tuple(int(i) for i in bad)
        where = f"[{', '.join(map(str, idx))}]" if idx else ""
        raise InvalidArgumentError(
            f"{argname}{where} = {float(arr[tuple(bad)])} is not finite; every entry of {argname} must be a finite number"
        )


def check_problem(system, z0, ts, theta):
    """Validate the mathematical arguments shared by every entry point.

    Returns
    -------
    field : AbstractVectorField
    z0 : ndarray, shape (B, n)
    batched : bool
        Whether ``z0`` was given as a batch.
    ts : ndarray, shape (T,)
    theta : ndarray, shape (p,)
    """
    fld = as_field(system, z0, theta)
    z0_2d, batched = check_z0(z0, fld.n_states)
    return fld, z0_2d, batched, check_ts(ts), check_theta(theta, fld.n_params)


def check_z0(z0, n: int):
    """Validate ``z0``; returns ``(z0 as (B, n) array, batched)``."""
    arr = _as_float_array(z0, "z0")
    if arr.ndim == 0 and n == 1:
        arr = arr.reshape(1)
    if arr.ndim == 1:
        if arr.shape[0] != n:
            raise InvalidArgumentError(
                f"z0 has length {arr.shape[0]} but the system has {n} states; pass z0 of shape ({n},) "
                f"or a batch of shape (B, {n})"
            )
        _check_finite(arr, "z0")
        return arr.reshape(1, n), False
    if arr.ndim == 2:
        if arr.shape[1] != n or arr.shape[0] == 0:
            raise InvalidArgumentError(
                f"z0 has shape {arr.shape} but the system has {n} states; pass z0 of shape ({n},) "
                f"or a non-empty batch of shape (B, {n})"
            )
        _check_finite(arr, "z0")
        return arr, True
    raise InvalidArgumentError(f"z0 has shape {arr.shape}; pass shape ({n},) or a batch of shape (B, {n})")


def check_theta(theta, p: int):
    """Validate ``theta``; returns a (p,) float array."""
    if theta is None:
        if p == 0:
            return np.zeros(0)
        raise InvalidArgumentError(f"theta is None but the system has {p} parameters; pass theta of shape ({p},)")
    arr = _as_float_array(theta, "theta")
    if arr.ndim == 0 and p == 1:
        arr = arr.reshape(1)
    if arr.shape != (p,):
        raise InvalidArgumentError(
            f"theta has shape {arr.shape} but the system has {p} parameters; pass theta of shape ({p},)"
        )
    _check_finite(arr, "theta")
    return arr


def check_ts(ts):
    """Validate an observation grid: 1-D, at least 2 finite, strictly monotone times."""
    arr = _as_float_array(ts, "ts")
    if arr.ndim != 1:
        raise InvalidArgumentError(f"ts must be 1-dimensional, got shape {arr.shape}")
    if arr.shape[0] < 2:
        raise InvalidArgumentError(
            f"ts must hold at least 2 times (t0 and a final time), got {arr.shape[0]}: {_short(arr.tolist())}"
        )
    _check_finite(arr, "ts")
    d = np.diff(arr)
    if np.any(d == 0):
        i = int(np.flatnonzero(d == 0)[0])
        raise InvalidArgumentError(
            f"ts[{i}] = ts[{i + 1}] = {float(arr[i])!r}: times are repeated; ts must be strictly increasing or strictly decreasing"
        )
    if not (np.all(d > 0) or np.all(d < 0)):
        sign = np.sign(d[0])
        i = int(np.flatnonzero(np.sign(d) != sign)[0])
        direction = "increasing" if sign > 0 else "decreasing"
        raise InvalidArgumentError(
            f"ts is not monotonic: it starts {direction} but ts[{i}] = {float(arr[i])!r} is followed by ts[{i + 1}] = {float(arr[i + 1])!r}; "
            "sort the times (ts[0] is the initial time t0)"
        )
    span = abs(arr[-1] - arr[0])
    scale = max(abs(arr[0]), abs(arr[-1]), 1.0)
    if span < 1e3 * np.finfo(float).eps * scale:
        raise InvalidArgumentError(f"ts spans only {float(span)!r}, which is below the resolution of the times; widen the interval")
    return arr


def check_method(method) -> str:
    """Normalise a solver name (case-insensitive) to its spelling in :data:`METHODS`."""
    if not isinstance(method, str):
        raise InvalidTypeError(f"method must be a string, one of {', '.join(METHODS)}; got {type(method).__name__}")
    for m in METHODS:
        if m.lower() == method.lower():
            return m
    raise InvalidArgumentError(f"method={method!r} is not a known solver; use one of {', '.join(METHODS)}")


def check_mode(mode) -> str:
    if not isinstance(mode, str) or mode not in MODES:
        raise InvalidArgumentError(f"mode={mode!r} is not an adjoint mode; use one of {', '.join(repr(m) for m in MODES)}")
    return mode


def check_tolerances(rtol, atol, n: int):
    """Validate rtol (positive scalar) and atol (positive scalar or (n,) array)."""
    if isinstance(rtol, bool) or not isinstance(rtol, numbers.Real):
        raise InvalidTypeError(f"rtol must be a positive number, got {_short(rtol)}")
    rtol = _real_float(rtol, "rtol")
    min_rtol = 100 * np.finfo(float).eps
    if not np.isfinite(rtol) or rtol <= 0:
        raise InvalidArgumentError(f"rtol={rtol!r} must be a positive finite number such as 1e-8")
    if rtol < min_rtol:
        raise InvalidArgumentError(
            f"rtol={rtol!r} is below 100 machine epsilons ({min_rtol:.1e}), which the solvers cannot honour; use rtol >= {min_rtol:.1e}"
        )
    if rtol >= 1:
        raise InvalidArgumentError(f"rtol={rtol!r} must be below 1; typical values are 1e-3 to 1e-12")
    if isinstance(atol, bool):
        raise InvalidTypeError(f"atol must be a positive number or an array of shape ({n},), got {atol!r}")
    arr = _as_float_array(atol, "atol")
    if arr.ndim == 0:
        if not np.isfinite(arr) or arr <= 0:
            raise InvalidArgumentError(f"atol={float(arr)!r} must be a positive finite number such as 1e-8")
        return rtol, float(arr)
    if arr.shape != (n,):
        raise InvalidArgumentError(f"atol has shape {arr.shape}; pass a number or an array of shape ({n},)")
    if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise InvalidArgumentError(f"every entry of atol must be positive and finite, got {_short(arr.tolist())}")
    return rtol, arr


def check_positive_int(value, argname, *, minimum=1):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InvalidTypeError(f"{argname} must be an integer, got {_short(value)}")
    if value < minimum:
        raise InvalidArgumentError(f"{argname}={value} must be at least {minimum}")
    return int(value)


def check_positive_float(value, argname, *, example=None, below_one=False):
    """A positive finite float (below 1 with ``below_one``), or an error naming ``argname`` and ``value``."""
    hint = f", e.g. {argname}={example}" if example is not None else ""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InvalidTypeError(f"{argname} must be a positive number, got {value!r}{hint}")
    value = _real_float(value, argname)
    if not (math.isfinite(value) and value > 0):
        raise InvalidArgumentError(f"{argname}={value!r} must be a positive finite number{hint}")
    if below_one and value >= 1:
        raise InvalidArgumentError(f"{argname}={value!r} must be below 1{hint}")
    return value


def check_rng(seed, argname="seed"):
    """A ``numpy.random.Generator`` from ``seed``: None, a non-negative integer, or a Generator.

    Raises
    ------
    InvalidTypeError, InvalidArgumentError
        Naming ``argname`` and the value received.
    """
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral)):
        raise InvalidTypeError(
            f"{argname} must be None, a non-negative integer or a numpy.random.Generator, got {_short(seed)}; "
            f"e.g. {argname}=0"
        )
    if seed is not None and seed < 0:
        raise InvalidArgumentError(f"{argname}={seed} is negative; pass a non-negative integer, e.g. {argname}=0")
    return np.random.default_rng(seed)
