"""Verification sweeps: :func:`odeverify.check_gradients` over problems x methods x tolerances x modes.

``odeverify.sweep(count=200, methods=["DOP853", "RK45"], rtols=[1e-6, 1e-8], output="sweep.parquet")`` runs
every cell on a local process pool (or on Dask: ``dask_local=2``, ``scheduler="tcp://host:8786"``) and
streams one row per cell to the file; ``odeverify sweep SPEC.toml`` does the same from a sweep spec
(:mod:`odeverify.sweep._spec`). dask, distributed, pyarrow and tqdm are imported only when used.
"""

from ._cells import COLUMNS as COLUMNS
from ._cells import DETERMINISTIC_COLUMNS as DETERMINISTIC_COLUMNS
from ._cells import STATUSES as STATUSES
from ._results import read_rows as read_rows
from ._run import SweepResult as SweepResult
from ._run import plan as plan
from ._run import sweep as sweep

import sys as _sys
import types as _types

__all__ = ["sweep", "plan", "SweepResult", "read_rows", "problem_seed", "COLUMNS", "DETERMINISTIC_COLUMNS",
           "STATUSES"]


def problem_seed(seed, index):
    """The seed of generated problem ``index`` of a sweep seeded ``seed``: a 32-bit integer."""
    from ._generate import problem_seed as seed_of  # NumPy on first use: `odeverify --help` stays light

    return seed_of(seed, index)


class _CallableModule(_types.ModuleType):
    """``odeverify.sweep`` is this subpackage and, called, its function: ``odeverify.sweep(count=...)``."""

    def __call__(self, *args, **kwargs):
        return sweep(*args, **kwargs)


_sys.modules[__name__].__class__ = _CallableModule
