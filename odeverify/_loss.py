"""Evaluating a user loss and its gradient with respect to the observed states.

Private: any loss callable goes through here. The ready-made losses a user picks from are the public
:mod:`odeverify.losses`.
"""

from __future__ import annotations

import warnings

import autograd
import numpy as np

from .errors import InvalidTypeError, LossError

__all__ = ["loss_and_jumps"]


def loss_and_jumps(loss, zs):
    """Value of ``loss(zs)`` and its gradient ``dL/dzs`` (the adjoint's jumps).

    Parameters
    ----------
    loss : callable
        ``loss(zs) -> scalar`` written with ``autograd.numpy``.
    zs : ndarray, shape (T, n) or (T, B, n)

    Returns
    -------
    value : float
    grad : ndarray, same shape as ``zs``

    Raises
    ------
    LossError
        When the loss does not return a finite real scalar, or cannot be
        differentiated by autograd, or its gradient is not finite.
    """
    if not callable(loss):
        raise InvalidTypeError(
            f"loss must be a callable loss(zs) -> float written with autograd.numpy, got {type(loss).__name__}"
        )
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Output seems independent of input")
            vjp, value = autograd.make_vjp(loss)(zs)
    except LossError:
        raise
    except Exception as exc:  # noqa: BLE001 - user code; reported with a fix
        raise LossError(
            f"loss raised {type(exc).__name__}: {exc} while being differentiated with autograd on states of shape "
            f"{zs.shape}; write the loss with autograd.numpy (import autograd.numpy as np), take the states array "
            "as its only argument and return a scalar"
        ) from exc
    val = _scalar(value)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.filterwarnings("ignore", message="Output seems independent of input")
        grad = np.asarray(vjp(1.0), dtype=float)
    if grad.shape != zs.shape:  # pragma: no cover - autograd guarantees this
        raise LossError(f"the loss gradient has shape {grad.shape}, expected {zs.shape}")
    if not np.all(np.isfinite(grad)):
        idx = tuple(int(i) for i in np.argwhere(~np.isfinite(grad))[0])
        raise LossError(
            f"the gradient of the loss with respect to the states is not finite at index {idx} "
            "(e.g. sqrt or log at 0); the loss is not differentiable at these states"
        )
    return val, grad


def loss_value(loss, zs):
    """``loss(zs)`` as a float, with the same checks as :func:`loss_and_jumps` (no gradient).

    Raises
    ------
    LossError
        When the loss raises, or does not return a finite real scalar.
    """
    if not callable(loss):
        raise InvalidTypeError(
            f"loss must be a callable loss(zs) -> float written with autograd.numpy, got {type(loss).__name__}"
        )
    try:
        value = loss(zs)
    except LossError:
        raise
    except Exception as exc:  # noqa: BLE001 - user code; reported with a fix
        raise LossError(
            f"loss raised {type(exc).__name__}: {exc} on states of shape {zs.shape}; take the states array as "
            "its only argument and return a scalar"
        ) from exc
    return _scalar(value)


def _scalar(value):
    """The loss's return value as a finite real float, or a LossError saying what it is instead."""
    raw = getattr(value, "_value", value)
    if np.ndim(raw) != 0:
        raise LossError(
            f"loss returned an array of shape {np.shape(raw)}, not a scalar; reduce it, e.g. with np.sum(...)"
        )
    try:
        val = complex(raw) if np.iscomplexobj(raw) else float(raw)
    except (TypeError, ValueError):
        raise LossError(f"loss returned {type(raw).__name__} {raw!r:.60}, not a real number") from None
    except OverflowError:
        raise LossError(
            f"loss returned the {type(raw).__name__} {str(raw)[:20]}..., beyond the double range (about 1.8e308); "
            "return a float, e.g. rescale the loss"
        ) from None
    if isinstance(val, complex):
        raise LossError(f"loss returned the complex number {val!r}; it must be real")
    if not np.isfinite(val):
        raise LossError(f"loss returned {val!r} at the solved states; it must be finite")
    return val
