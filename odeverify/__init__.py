"""odeverify: derive, compute and verify adjoint gradients of ODEs and Neural ODEs.

Public modules and what they hold (the names starting with ``_`` are private implementations):
:mod:`odeverify.losses` ready-made losses (``_loss`` evaluates any loss); :mod:`odeverify.tableaux`
Runge–Kutta methods as data (``_rk`` is the adaptive stepping loop that runs them);
:class:`odeverify.MLPField` the Neural-ODE vector field, :class:`odeverify.theory.MLP` the plain network
of the notes' §3.3 backpropagation; :mod:`odeverify.catalog`, :mod:`odeverify.references`,
:mod:`odeverify.testing`, :mod:`odeverify.theory`, :mod:`odeverify.implicit`, :mod:`odeverify.errors`.
"""

from importlib.metadata import PackageNotFoundError as _PackageNotFoundError
from importlib.metadata import version as _version

from ._adjoint import AdjointResult as AdjointResult
from ._adjoint import BacksolveDriftWarning as BacksolveDriftWarning
from ._adjoint import SolverStats as SolverStats
from ._adjoint import adjoint_gradients as adjoint_gradients
from ._check import GradientReport as GradientReport
from ._check import check_gradients as check_gradients
from ._check import compute_references as compute_references
from ._data import TrajectoryData as TrajectoryData
from ._data import load_trajectories as load_trajectories
from ._field import AbstractVectorField as AbstractVectorField
from ._taylor import TaylorResult as TaylorResult
from ._taylor import taylor_test as taylor_test
from .fields import CallableField as CallableField
from .fields import MLPField as MLPField
from ._integrate import Solution as Solution
from ._integrate import solve as solve
from ._parse import parse_expression as parse_expression
from ._system import ODESystem as ODESystem
from ._train import FitProgress as FitProgress
from ._train import FitResult as FitResult
from ._train import fit as fit
from .sweep import sweep as sweep  # the function; its module is odeverify.sweep in sys.modules
from . import catalog as catalog
from . import errors as errors
from . import implicit as implicit
from . import references as references
from . import testing as testing
from . import theory as theory

try:
    __version__ = _version("odeverify")
except _PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0+unknown"

__all__ = [
    "AbstractVectorField", "AdjointResult", "BacksolveDriftWarning", "CallableField", "FitProgress", "FitResult",
    "GradientReport", "MLPField", "ODESystem", "Solution", "SolverStats", "TaylorResult", "TrajectoryData",
    "adjoint_gradients", "check_gradients", "compute_references", "fit", "load_trajectories", "parse_expression",
    "solve", "sweep", "taylor_test",
    "catalog", "errors", "implicit", "references", "testing", "theory",
]


def __dir__():
    # what tab completion shows: the public API and the public submodules imported so far
    import sys

    loaded = [n for n in ("cli", "fields", "losses", "spec", "strategies", "tableaux", "pytest_plugin")
              if f"{__name__}.{n}" in sys.modules]
    return sorted(set(__all__) | set(loaded) | {"__version__"})
