"""The package's exception and warning classes.

Every error raised for bad input subclasses :class:`ValueError` or
:class:`TypeError`, so ``except ValueError`` keeps working for callers that do
not know odeverify; every message names the argument, the value received and a
fix.
"""

from __future__ import annotations

__all__ = [
    "OdeverifyError",
    "InvalidArgumentError",
    "InvalidTypeError",
    "ParseError",
    "SpecError",
    "LossError",
    "DataError",
    "IntegrationError",
    "EnclosureError",
    "SingularJacobianError",
    "ConvergenceError",
    "MissingDependencyError",
    "OdeverifyWarning",
    "TrivialTestWarning",
    "HypothesisWarning",
    "NonDifferentiableWarning",
]


class OdeverifyError(Exception):
    """Base class of every error raised by odeverify."""


class InvalidArgumentError(OdeverifyError, ValueError):
    """An argument has the right type but a wrong value, shape or length."""


class InvalidTypeError(OdeverifyError, TypeError):
    """An argument has a type odeverify cannot use."""


class ParseError(InvalidArgumentError):
    """An expression string is not in the accepted syntax.

    Attributes
    ----------
    expression : str
        The text that was parsed.
    token : str
        The offending piece of text.
    position : int
        Zero-based character offset of ``token`` in ``expression``.
    """

    def __init__(self, message, *, expression="", token="", position=0):
        self.expression = expression
        self.token = token
        self.position = position
        where = ""
        if expression and len(expression) <= 200:
            where = f"\n    {expression}\n    {' ' * position}^"
        super().__init__(f"{message}{where}")


class SpecError(InvalidArgumentError):
    """A problem specification file (TOML) is malformed."""


class LossError(InvalidArgumentError):
    """The loss callable does not return a finite real scalar or is not differentiable."""


class DataError(InvalidArgumentError):
    """A data file or array of observations is malformed.

    Attributes
    ----------
    row : int or None
        The offending line of the file (1-based) or row of the array (0-based).
    """

    def __init__(self, message, *, row=None):
        self.row = row
        super().__init__(message)


class IntegrationError(OdeverifyError, RuntimeError):
    """An ODE solve failed (finite-time blow-up, step size collapse, non-finite values).

    Attributes
    ----------
    t_reached : float
        The last time the solver reached.
    t_target : float
        The time it was asked to reach.
    solver_message : str
        The message of the underlying solver.
    """

    def __init__(self, message, *, t_reached=float("nan"), t_target=float("nan"), solver_message=""):
        self.t_reached = t_reached
        self.t_target = t_target
        self.solver_message = solver_message
        super().__init__(message)


class EnclosureError(InvalidArgumentError):
    """An expression cannot be enclosed rigorously by interval arithmetic.

    Raised instead of returning a bound that is not guaranteed: a function
    without a rigorous interval extension, or an argument outside a
    function's domain somewhere in the box.
    """


class SingularJacobianError(InvalidArgumentError):
    """A Jacobian that must be inverted is singular (or numerically so) at the point given."""


class ConvergenceError(OdeverifyError, RuntimeError):
    """An iterative solve (e.g. of an implicit layer g(x, y) = 0) did not converge."""


class MissingDependencyError(OdeverifyError, ImportError):
    """An optional dependency (e.g. matplotlib for plots) is not installed; the message names the extra."""


class OdeverifyWarning(UserWarning):
    """Base class of odeverify's warnings."""


class TrivialTestWarning(OdeverifyWarning):
    """A check that cannot tell a right gradient from a wrong one."""


class HypothesisWarning(OdeverifyWarning):
    """The hypotheses behind the adjoint method (smoothness, Lipschitz continuity) may fail."""


class NonDifferentiableWarning(OdeverifyWarning):
    """A requested derivative does not exist at the given point (its one-sided derivatives differ).

    Raised, for instance, when a switch time of the right-hand side falls on
    an observation time: the gradient entries are then NaN and the result
    carries both one-sided values.
    """


def __dir__():
    # tab completion shows the public names, not the modules imported here (np, sp, ...)
    return sorted(__all__)
