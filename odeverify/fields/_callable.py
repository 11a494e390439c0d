"""CallableField: a user function f(z, t, theta) written with autograd.numpy."""

from __future__ import annotations

import numbers
import warnings

import numpy as np

from .._field import AbstractVectorField
from ..errors import InvalidArgumentError, InvalidTypeError

__all__ = ["CallableField"]

_HINT = (
    "write f with autograd.numpy (import autograd.numpy as np) so that it takes z of shape (B, n), "
    "a float t and theta of shape (p,), acts on each row of z (index states as z[:, i] or z[..., i]) "
    "and returns an array of shape (B, n)"
)


class CallableField(AbstractVectorField):
    """A vector field given as a Python function, its products from autograd.

    Parameters
    ----------
    f : callable
        ``f(z, t, theta) -> dz/dt`` with ``z`` of shape ``(B, n)`` (a batch of
        states, one per row), ``t`` a float and ``theta`` of shape ``(p,)``,
        returning shape ``(B, n)``. Written with ``autograd.numpy`` so that it
        can be differentiated; it must act on each row separately (use
        ``z[:, i]``, never ``z[i]``, for state i).
    n_states : int
        n.
    n_params : int
        p (0 when f ignores theta).
    name : str, optional
        A label for reports.

    Notes
    -----
    The three products of :meth:`eval_vjp` come from one reverse-mode pass of
    autograd through ``sum(a * f(z, t, theta))`` over the whole batch, so
    ``a^T f_theta`` and ``a^T f_t`` are summed over the batch as the
    interface requires. There are no analytic Jacobians (``has_jacobians``
    is False): implicit solvers approximate them by finite differences.

    The first evaluation checks that f returns the right shape and acts row
    by row (permuting the batch must permute the output), because a function
    written for one state, e.g. ``np.array([z[1], -z[0]])``, silently mixes
    samples when given a batch.

    Examples
    --------
    >>> import autograd.numpy as anp, numpy as np, odeverify as ov
    >>> def pendulum(z, t, theta):
    ...     return anp.stack([z[:, 1], -theta[0] * anp.sin(z[:, 0])], axis=1)
    >>> field = ov.CallableField(pendulum, 2, 1)
    >>> field.eval_f(np.array([[0.0, 1.0]]), 0.0, np.array([9.81]))
    array([[ 1., -0.]])
    >>> _, a_z, a_theta, a_t = field.eval_vjp(np.array([[0.0, 1.0]]), np.array([[0.0, 1.0]]), 0.0, np.array([9.81]))
    >>> a_z  # a^T f_z with a = (0, 1): (-theta cos z0, 0)
    array([[-9.81,  0.  ]])
    """

    def __init__(self, f, n_states, n_params, *, name=None):
        if not callable(f) or isinstance(f, type):
            raise InvalidTypeError(f"f must be a function f(z, t, theta), got {type(f).__name__} {f!r:.60}")
        for argname, value, minimum in (("n_states", n_states, 1), ("n_params", n_params, 0)):
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise InvalidTypeError(f"{argname} must be an integer, got {value!r}")
            if value < minimum:
                raise InvalidArgumentError(f"{argname}={value} must be at least {minimum}")
        self.f = f
        self.n_states = int(n_states)
        self.n_params = int(n_params)
        self.name = name or getattr(f, "__name__", "f")
        self._checked = False

    def describe(self):
        return f"CallableField {self.name} with {self.n_states} states and {self.n_params} parameters (autograd products)"

    def __repr__(self):
        return f"CallableField({self.name}, n_states={self.n_states}, n_params={self.n_params})"

    # ------------------------------------------------------------------ evaluation
    def _call(self, z, t, theta):
        try:
            out = self.f(z, t, theta)
        except Exception as exc:  # noqa: BLE001 - user code, re-raised with the shapes it was given
            raise InvalidArgumentError(
                f"the vector field {self.name} raised {type(exc).__name__}: {exc} when called with z of shape "
                f"{np.shape(z)}, t = {_value(t)!r} and theta of shape {np.shape(theta)}; {_HINT}"
            ) from exc
        raw = _value(out)
        if np.iscomplexobj(raw) and not (np.iscomplexobj(_value(z)) or np.iscomplexobj(_value(t))
                                         or np.iscomplexobj(_value(theta))):
            # converting to float would drop the imaginary part: a wrong gradient with only a ComplexWarning
            raise InvalidTypeError(
                f"the vector field {self.name} returned complex values for real z, t and theta; f must be real "
                "(split a complex system into real and imaginary parts as separate states)"
            )
        shape = np.shape(raw)
        if shape != np.shape(z):
            raise InvalidArgumentError(
                f"the vector field {self.name} returned shape {shape} for z of shape {np.shape(z)}; {_HINT}"
            )
        return out

    def _check_rowwise(self, z, t, theta, fz):
        """Once: permuting the batch must permute f (catches functions written for one state)."""
        self._checked = True
        z = np.asarray(z, dtype=float)
        if z.shape[0] > 1:
            probe, want = z[::-1], np.asarray(fz)[::-1]
        else:
            probe, want = np.concatenate([z, z]), np.concatenate([fz, fz])
        got = np.asarray(self._call(probe, t, theta), dtype=float)
        scale = np.max(np.abs(want)) if want.size else 0.0
        if not np.allclose(got, want, rtol=1e-10, atol=1e-12 * max(scale, 1.0), equal_nan=True):
            raise InvalidArgumentError(
                f"the vector field {self.name} does not act on each row of z separately: reordering a batch of "
                f"{probe.shape[0]} states changed the values, not just their order; {_HINT}"
            )

    def eval_f(self, z, t, theta):
        out = np.asarray(self._call(z, t, theta), dtype=float)
        if not self._checked:
            self._check_rowwise(z, t, theta, out)
        return out

    def eval_vjp(self, a, z, t, theta, *, with_f=False):
        import autograd

        def packed(args):
            return self._call(*args)

        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="Output seems independent of input")
                vjp, f = autograd.make_vjp(packed)((z, float(t), theta))
                a_z, a_t, a_theta = vjp(a)
        except InvalidArgumentError:
            raise
        except Exception as exc:  # noqa: BLE001 - user code under autograd
            raise InvalidTypeError(
                f"the vector field {self.name} could not be differentiated by autograd ({type(exc).__name__}: {exc}); "
                f"{_HINT}"
            ) from exc
        if isinstance(f, np.ndarray) and f.dtype == object:
            raise InvalidTypeError(
                f"the vector field {self.name} could not be differentiated by autograd: it returned an object array "
                f"(a NumPy function such as np.asarray or np.array broke autograd's trace); {_HINT}"
            )
        f = np.asarray(f, dtype=float)
        if not self._checked:
            self._check_rowwise(z, t, theta, f)
        return (f if with_f else None), np.asarray(a_z, dtype=float), np.asarray(a_theta, dtype=float), float(a_t)

    def f_autograd(self, z, t, theta):
        """f with a leading batch axis added or flattened as needed; ``z`` of shape (..., n)."""
        import autograd.numpy as anp

        shape = np.shape(z)
        z2 = anp.reshape(z, (-1, self.n_states))
        if isinstance(theta, (list, tuple)):  # p scalars, as the autograd references pass them
            theta = anp.stack(theta) if len(theta) else np.zeros(0)
        return anp.reshape(self._call(z2, t, theta), shape)


def _value(x):
    while hasattr(x, "_value"):
        x = x._value
    return x
