"""Independent gradient sources, each with its own error estimate.

* :class:`Adjoint` -- odeverify's adjoint at tight tolerances (both modes);
* :class:`ForwardSensitivity` -- the direct method, dS/dt = f_z S + f_theta, via solve_ivp;
* :class:`AutogradRK` -- the gradient of a fixed-step Runge–Kutta solve (its discrete adjoint, with
  autograd's derivatives of f), with Richardson extrapolation;
* :class:`FiniteDifferences` -- central differences with step selection and Richardson
  extrapolation, and the complex step where the right-hand side and the loss are analytic;
* :class:`Exact` -- closed-form values, e.g. from :mod:`odeverify.catalog`.

Each ``compute(problem)`` returns a :class:`GradientEstimate` with ``values`` and
``errors`` per quantity (``"z0"``, ``"theta"``, ``"t"``); :func:`compute_reference`
does the validation for a direct call.
"""

from ._autograd_rk import AutogradRK as AutogradRK
from ._base import QUANTITIES as QUANTITIES
from ._base import GradientEstimate as GradientEstimate
from ._base import Problem as Problem
from ._base import Reference as Reference
from ._finite_differences import FiniteDifferences as FiniteDifferences
from ._sources import Adjoint as Adjoint
from ._sources import Exact as Exact
from ._sources import ForwardSensitivity as ForwardSensitivity


def make_problem(system, z0, ts, theta, loss):
    """Validate inputs into a :class:`Problem` (as the public entry points do)."""
    from .._validate import check_problem
    from ..errors import InvalidTypeError

    fld, z0_2d, batched, ts, theta = check_problem(system, z0, ts, theta)
    if not callable(loss):
        raise InvalidTypeError(f"loss must be a callable loss(zs) -> float, got {type(loss).__name__}")
    problem = Problem(fld, z0_2d, batched, ts, theta, loss)
    _check_loss_is_scalar(problem)
    return problem


def _check_loss_is_scalar(problem):
    """A loss returning an array fails here, by name, not deep inside autograd or a reference.

    The loss is called once on states of the right shape (z0 repeated at every time); only a
    non-scalar result is an error here: values are judged on the solved states, where it is used.
    """
    import warnings

    import numpy as np

    from ..errors import LossError

    zs = np.repeat(problem.z0[None], len(problem.ts), axis=0)
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            raw = problem.loss(problem.user_states(zs))
    except Exception:  # noqa: BLE001 - reported where the loss is used on the solved states
        return
    raw = getattr(raw, "_value", raw)
    if np.ndim(raw) != 0:
        raise LossError(
            f"loss returned an array of shape {np.shape(raw)} on states of shape {problem.user_states(zs).shape}, "
            "not a scalar; reduce it, e.g. with np.sum(...)"
        )


def compute_reference(reference, system, z0, ts, theta, loss):
    """Gradients of ``loss`` from one reference source.

    Parameters
    ----------
    reference : Reference
        E.g. ``FiniteDifferences()``.
    system, z0, ts, theta, loss
        As for :func:`odeverify.adjoint_gradients`.

    Returns
    -------
    GradientEstimate
    """
    problem = make_problem(system, z0, ts, theta, loss)
    why = reference.available(problem)
    if why:
        from ..errors import InvalidArgumentError

        raise InvalidArgumentError(f"{reference!r} cannot handle this problem: {why}")
    return reference.compute(problem)
