"""Validation shared by the theory checks."""

from __future__ import annotations

import numpy as np

from .._validate import _as_float_array, check_z0
from ..errors import InvalidArgumentError, InvalidTypeError

__all__ = ["check_state", "check_t_span", "check_steps"]


def check_state(z0, n, argname="z0"):
    """Validate one state of shape (n,) (a batch is refused); returns a float array."""
    arr, batched = check_z0(z0, n)
    if batched:
        raise InvalidArgumentError(
            f"{argname} has shape {np.shape(z0)}; this check takes one state of shape ({n},), not a batch"
        )
    return arr[0]


def check_t_span(t_span):
    """Validate ``(t0, t1)``: two finite times with t0 != t1; returns floats."""
    arr = _as_float_array(t_span, "t_span")
    if arr.shape != (2,) or not np.all(np.isfinite(arr)) or arr[0] == arr[1]:
        raise InvalidArgumentError(
            f"t_span = {np.asarray(t_span).tolist()!r} must be two distinct finite times (t0, t1)"
        )
    return float(arr[0]), float(arr[1])


def check_steps(steps, argname):
    """Validate a refined series: at least 3 strictly increasing positive integers; returns an int array."""
    try:
        arr = np.asarray(steps)
    except Exception:  # noqa: BLE001 - reported below
        arr = np.asarray([], dtype=object)
    if arr.dtype.kind not in "iu":
        raise InvalidTypeError(f"{argname} must be a sequence of integers such as (8, 16, 32, 64), got {steps!r}")
    if arr.ndim != 1 or arr.size < 3 or np.any(arr < 1):
        raise InvalidArgumentError(
            f"{argname}={arr.tolist()} must hold at least 3 positive integers, e.g. (8, 16, 32, 64)"
        )
    if np.any(np.diff(arr) <= 0):
        raise InvalidArgumentError(f"{argname}={arr.tolist()} must be strictly increasing")
    return arr.astype(int)

