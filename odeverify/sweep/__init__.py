"""Verification sweeps: :func:`odeverify.check_gradients` over problems x methods x tolerances x modes.

``odeverify.sweep(count=200, methods=["DOP853", "RK45"], rtols=[1e-6, 1e-8], output="sweep.parquet")`` runs
every cell on a local process pool (or on Dask: ``dask_local=2``, ``scheduler="tcp://host:8786"``) and
streams one row per cell to the file; ``odeverify sweep SPEC.toml`` does the same from a sweep spec
(:mod:`odeverify.sweep._spec`). dask, distributed, pyarrow and tqdm are imported only when used.
"""

from ._cells import COLUMNS as COLUMNS
from ._cells import DETERMINISTIC_COLUMNS as DETERMINISTIC_COLUMNS
from ._cells import STATUSES as STATUSES
from ._generate import problem_seed as problem_seed
from ._results import read_rows as read_rows
from ._run import SweepResult as SweepResult
from ._run import plan as plan
from ._run import sweep as sweep

__all__ = ["sweep", "plan", "SweepResult", "read_rows", "problem_seed", "COLUMNS", "DETERMINISTIC_COLUMNS",
           "STATUSES"]
