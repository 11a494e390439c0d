"""odeverify: derive, compute and verify adjoint gradients of ODEs and Neural ODEs.

Public modules and what they hold (the names starting with ``_`` are private implementations):
:mod:`odeverify.losses` ready-made losses (``_loss`` evaluates any loss); :mod:`odeverify.tableaux`
Runge–Kutta methods as data (``_rk`` is the adaptive stepping loop that runs them);
:class:`odeverify.MLPField` the Neural-ODE vector field, :class:`odeverify.theory.MLP` the plain network
of the notes' §3.3 backpropagation; :mod:`odeverify.catalog`, :mod:`odeverify.references`,
:mod:`odeverify.testing`, :mod:`odeverify.theory`, :mod:`odeverify.implicit`, :mod:`odeverify.errors`.

The public names are loaded on first use (SciPy's lazy-loading style): ``import odeverify`` is cheap, so
``odeverify --help`` answers without importing SymPy or SciPy.
"""

import importlib as _importlib

#: public name -> the private module that defines it
_EXPORTS = {
    "AdjointResult": "_adjoint", "BacksolveDriftWarning": "_adjoint", "SolverStats": "_adjoint",
    "adjoint_gradients": "_adjoint",
    "GradientReport": "_check", "check_gradients": "_check", "compute_references": "_check",
    "TrajectoryData": "_data", "load_trajectories": "_data",
    "AbstractVectorField": "_field",
    "TaylorResult": "_taylor", "taylor_test": "_taylor",
    "CallableField": "fields", "MLPField": "fields",
    "Solution": "_integrate", "solve": "_integrate",
    "parse_expression": "_parse",
    "ODESystem": "_system",
    "FitProgress": "_train", "FitResult": "_train", "fit": "_train",
    "ProgressEvent": "_progress",
    "ToleranceStudy": "_tolerance_study", "tolerance_study": "_tolerance_study",
}
#: public submodules, also loaded on first use
_SUBMODULES = ("catalog", "errors", "implicit", "references", "testing", "theory")

__all__ = [
    "AbstractVectorField", "AdjointResult", "BacksolveDriftWarning", "CallableField", "FitProgress", "FitResult",
    "GradientReport", "MLPField", "ODESystem", "ProgressEvent", "Solution", "SolverStats", "TaylorResult", "ToleranceStudy",
    "TrajectoryData", "adjoint_gradients", "check_gradients", "compute_references", "fit", "load_trajectories",
    "parse_expression", "solve", "taylor_test", "tolerance_study",
    "catalog", "errors", "implicit", "references", "testing", "theory",
]


#: other modules reachable as attributes, loaded on first use (tab completion shows them once loaded)
_LAZY_MODULES = ("cli", "fields", "losses", "spec", "tableaux")


def _package_version():
    from importlib.metadata import PackageNotFoundError, version  # importlib.metadata takes ~0.05 s to import

    try:
        return version("odeverify")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0+unknown"


def __getattr__(name):
    if name == "__version__":
        value = globals()["__version__"] = _package_version()
        return value
    if name in _SUBMODULES or name in _LAZY_MODULES:
        return _importlib.import_module(f"{__name__}.{name}")  # the import sets the attribute too
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(_importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__():
    # what tab completion shows: the public API and the public submodules imported so far
    import sys

    loaded = [n for n in ("cli", "fields", "losses", "plotting", "spec", "strategies", "tableaux", "pytest_plugin")
              if f"{__name__}.{n}" in sys.modules]
    return sorted(set(__all__) | set(loaded) | {"__version__"})
