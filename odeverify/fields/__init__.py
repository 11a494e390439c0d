"""Vector-field families beyond the symbolic :class:`~odeverify.ODESystem`.

* :class:`MLPField` -- a multilayer perceptron with hand-derived, batched
  vector-Jacobian products and Jacobians (a Neural ODE's vector field);
* :class:`CallableField` -- any ``f(z, t, theta)`` written with
  ``autograd.numpy``, its products from autograd.

Both implement :class:`~odeverify.AbstractVectorField`, so ``solve`` and
``adjoint_gradients`` treat them exactly like an ``ODESystem``.
"""

from ._callable import CallableField as CallableField
from ._mlp import ACTIVATIONS as ACTIVATIONS
from ._mlp import MLPField as MLPField

__all__ = [
    "CallableField",
    "ACTIVATIONS",
    "MLPField",
]


def __dir__():
    return sorted(__all__)
