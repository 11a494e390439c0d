"""odeverify: derive, compute and verify adjoint gradients of ODEs and Neural ODEs."""

from importlib.metadata import PackageNotFoundError, version

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
from . import catalog as catalog
from . import errors as errors
from . import implicit as implicit
from . import references as references
from . import testing as testing
from . import theory as theory

try:
    __version__ = version("odeverify")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0+unknown"
