"""Ready-made losses on the states at the observation times.

Each is a callable ``loss(zs) -> float`` written with ``autograd.numpy``, for
``zs`` of shape ``(T, n)`` or, for a batch, ``(T, B, n)`` (summed over the
batch), as :func:`odeverify.adjoint_gradients` expects. (The private ``odeverify._loss`` evaluates
any loss, these or yours, and its gradient.)
"""

from __future__ import annotations

import numbers

import autograd.numpy as anp
import numpy as np
import sympy as sp

from ._codegen import ArrayKernel, Group
from ._parse import parse_expression
from .errors import InvalidArgumentError, InvalidTypeError

__all__ = ["SquaredError", "ExpressionLoss", "resolve_at"]


def resolve_at(at, T: int, argname="at") -> np.ndarray:
    """Indices of the observation times a loss uses.

    Parameters
    ----------
    at : {'all', 'last', 'first'}, int or sequence of int
        Which of the ``T`` observation times (negative indices count from
        the end).
    T : int
        Number of observation times.

    Returns
    -------
    ndarray of int, sorted, without repeats
    """
    if isinstance(at, str):
        if at == "all":
            return np.arange(T)
        if at == "last":
            return np.array([T - 1])
        if at == "first":
            return np.array([0])
        raise InvalidArgumentError(f"{argname}={at!r} is not one of 'all', 'last', 'first' or a list of indices")
    if isinstance(at, numbers.Integral) and not isinstance(at, bool):
        at = [at]
    try:
        entries = list(at)
    except TypeError:
        raise InvalidTypeError(f"{argname} must be 'all', 'last', 'first' or a list of integers, got {at!r}") from None
    for i in entries:  # 1.9 or True silently meaning index 1 would be a surprise
        if isinstance(i, bool) or not isinstance(i, numbers.Integral):
            raise InvalidTypeError(
                f"{argname} must be 'all', 'last', 'first' or a list of integer indices, got {at!r} "
                f"(holding {i!r}); e.g. {argname}=[0, -1]"
            )
    idx = [int(i) for i in entries]
    if not idx:
        raise InvalidArgumentError(f"{argname} is empty; name at least one observation time")
    out = []
    for i in idx:
        if not -T <= i < T:
            raise InvalidArgumentError(f"{argname} holds index {i}, outside the {T} observation times")
        out.append(i % T)
    if len(set(out)) != len(out):
        raise InvalidArgumentError(f"{argname} = {idx} names the same time twice")
    return np.array(sorted(out))


def _weight(weight):
    if isinstance(weight, bool) or not isinstance(weight, numbers.Real) or not np.isfinite(weight):
        raise InvalidTypeError(f"weight must be a finite real number, got {weight!r:.60}; e.g. weight=1.0")
    return float(weight)


class SquaredError:
    r"""Half the squared distance to targets: L = 1/2 sum_i sum_k (z_k(t_i) - y_ik)^2.

    Parameters
    ----------
    targets : array_like, shape (len(at), n)
        Target states; NaN marks a missing observation, left out of the sum.
    at : {'all', 'last', 'first'} or sequence of int, optional
        The observation times the rows of ``targets`` belong to; default
        ``'all'`` (then ``targets`` has one row per time in ``ts``).
    weight : float, optional
        A factor on the whole sum (default 1).

    Examples
    --------
    >>> import numpy as np
    >>> from odeverify.losses import SquaredError
    >>> loss = SquaredError([[1.0, np.nan], [2.0, 3.0]])
    >>> float(loss(np.array([[1.5, 0.0], [2.0, 1.0]])))
    2.125
    """

    def __init__(self, targets, *, at="all", weight=1.0):
        y = np.asarray(targets, dtype=float)
        if y.ndim != 2:
            raise InvalidArgumentError(f"targets must be a 2-D array (times, states), got shape {y.shape}")
        if np.any(np.isinf(y)):
            raise InvalidArgumentError("targets contain an infinity; use NaN for a missing observation")
        self.mask = ~np.isnan(y)
        if not self.mask.any():
            raise InvalidArgumentError("targets are all missing (NaN); give at least one observation")
        self.targets = np.where(self.mask, y, 0.0)
        self.at = at
        self.weight = _weight(weight)

    def __call__(self, zs):
        T = anp.shape(zs)[0]
        idx = resolve_at(self.at, T)
        if len(idx) != self.targets.shape[0]:
            raise InvalidArgumentError(
                f"targets have {self.targets.shape[0]} rows but the loss uses {len(idx)} observation times"
            )
        sel = zs[idx]
        y, m = self.targets, self.mask
        if anp.ndim(zs) == 3:  # a batch: the same targets for every sample
            y, m = y[:, None, :], m[:, None, :]
        if anp.shape(sel)[-1] != y.shape[-1]:
            raise InvalidArgumentError(f"targets have {y.shape[-1]} columns but the states have {anp.shape(sel)[-1]}")
        diff = (sel - y) * m
        return 0.5 * self.weight * anp.sum(diff * diff)

    def __repr__(self):
        return f"SquaredError(targets of shape {self.targets.shape}, at={self.at!r})"


class ExpressionLoss:
    """A loss written as an expression of the states (and time), summed over times.

    L = weight * sum over i in ``at`` of expr(z(t_i), t_i), and over the batch.

    Parameters
    ----------
    system : ODESystem
        Gives the state and time names the expression may use.
    expression : str
        Parsed safely (see :func:`odeverify.parse_expression`), e.g. ``"x**2"``.
    ts : array_like, shape (T,)
        The observation times (the expression may use the time).
    at : {'all', 'last', 'first'} or sequence of int
        Default ``'last'``.
    weight : float, optional
        A factor on the whole sum (default 1).

    Examples
    --------
    >>> import odeverify
    >>> from odeverify.losses import ExpressionLoss
    >>> sys = odeverify.ODESystem.from_strings("x", "a", ["a*x"])
    >>> loss = ExpressionLoss(sys, "x**2", [0.0, 1.0])
    >>> float(loss(np.array([[1.0], [3.0]])))
    9.0
    """

    def __init__(self, system, expression, ts, *, at="last", weight=1.0):
        if not hasattr(system, "states") or not hasattr(system, "time"):
            raise InvalidTypeError("ExpressionLoss needs an ODESystem (for the state names)")
        symbols = {s.name: s for s in system.states}
        symbols[system.time.name] = system.time
        self.expr = parse_expression(expression, symbols, argname="loss expression")
        extra = self.expr.free_symbols - set(symbols.values())
        if extra:  # pragma: no cover - the parser only knows these symbols
            raise InvalidArgumentError(f"loss expression uses {extra}; only states and time are allowed")
        self.text = expression
        self.ts = np.asarray(ts, dtype=float)
        self.at = at
        self.idx = resolve_at(at, len(self.ts))
        self.weight = _weight(weight)
        self._kernel = ArrayKernel(
            [Group("z", system.states), Group("t", (system.time,), scalar=True)],
            [("value", sp.Matrix([self.expr]))],
            name="loss",
        )

    def __call__(self, zs):
        sel = zs[self.idx]
        t = self.ts[self.idx]
        if anp.ndim(zs) == 3:
            t = t[:, None]
        value = anp.sum(self._kernel.autograd(sel, t)[0])
        return value if self.weight == 1.0 else self.weight * value

    def __repr__(self):
        return f"ExpressionLoss({self.text!r}, at={self.at!r}" + (f", weight={self.weight!r})" if self.weight != 1.0 else ")")


def __dir__():
    # tab completion shows the public names, not the modules imported here (np, sp, ...)
    return sorted(__all__)
