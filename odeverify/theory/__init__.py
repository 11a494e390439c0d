"""The notes' theory as checkable code: run it on your own model to see whether the hypotheses hold.

* existence and uniqueness (notes §2.3, §4.2): :func:`lipschitz` (rigorous
  Lipschitz bound, continuity in t, non-smooth functions, Picard–Lindelöf
  interval) and :func:`hypothesis_warnings` (the cheap check used by the
  gradient cross-checks);
* one-step methods (§2.4–2.5): :func:`convergence_order`, the observed
  order of a Runge–Kutta tableau of :mod:`odeverify.tableaux`;
* backpropagation and gradient descent (§3.2–3.5): :class:`MLP`,
  :func:`backprop`, :func:`notes_backprop`, :func:`check_backprop`,
  :func:`gradient_descent`, :func:`gradient_norms_by_depth`;
* ResNet = Euler (§3.6, §4.1): :func:`resnet_equals_euler`,
  :func:`resnet_convergence`, :func:`neural_ode_system`.

Implicit layers (§3.7) are in :mod:`odeverify.implicit`.
"""

from ._lipschitz import LipschitzReport as LipschitzReport
from ._lipschitz import hypothesis_warnings as hypothesis_warnings
from ._lipschitz import lipschitz as lipschitz
from ._order import OrderReport as OrderReport
from ._order import convergence_order as convergence_order
from ._order import fit_order as fit_order
from ._backprop import ACTIVATIONS as ACTIVATIONS
from ._backprop import MLP as MLP
from ._backprop import Activation as Activation
from ._backprop import BackpropCheck as BackpropCheck
from ._backprop import DepthReport as DepthReport
from ._backprop import DescentResult as DescentResult
from ._backprop import Gradients as Gradients
from ._backprop import backprop as backprop
from ._backprop import check_backprop as check_backprop
from ._backprop import gradient_descent as gradient_descent
from ._backprop import gradient_norms_by_depth as gradient_norms_by_depth
from ._backprop import notes_backprop as notes_backprop
from ._resnet import ResNetConvergence as ResNetConvergence
from ._resnet import ResNetEulerCheck as ResNetEulerCheck
from ._resnet import neural_ode_system as neural_ode_system
from ._resnet import pack_mlp_params as pack_mlp_params
from ._resnet import resnet_convergence as resnet_convergence
from ._resnet import resnet_equals_euler as resnet_equals_euler
from ._resnet import resnet_forward as resnet_forward
from ._resnet import unpack_mlp_params as unpack_mlp_params

__all__ = [
    "LipschitzReport",
    "hypothesis_warnings",
    "lipschitz",
    "OrderReport",
    "convergence_order",
    "fit_order",
    "ACTIVATIONS",
    "MLP",
    "Activation",
    "BackpropCheck",
    "DepthReport",
    "DescentResult",
    "Gradients",
    "backprop",
    "check_backprop",
    "gradient_descent",
    "gradient_norms_by_depth",
    "notes_backprop",
    "ResNetConvergence",
    "ResNetEulerCheck",
    "neural_ode_system",
    "pack_mlp_params",
    "resnet_convergence",
    "resnet_equals_euler",
    "resnet_forward",
    "unpack_mlp_params",
]


def __dir__():
    return sorted(__all__)
