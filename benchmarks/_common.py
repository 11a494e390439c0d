"""What the benchmark scripts share: one thread per library, the run's header, the result files.

Import this module before NumPy, torch or JAX: the thread settings only take
effect when they are in the environment before those libraries load.
"""

from __future__ import annotations

import os

# one thread everywhere (2-core machine; set before the libraries load)
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")

import datetime  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
PEERS = ("torch", "torchdiffeq", "jax", "diffrax")


def fmt_time(s):
    """Seconds as ``1.23 s``, ``4.56 ms`` or ``789 us`` (``-`` for None)."""
    if s is None:
        return "-"
    if s >= 1.0:
        return f"{s:.2f} s"
    return f"{s * 1e3:.2f} ms" if s >= 1e-3 else f"{s * 1e6:.0f} us"


def versions():
    """Versions of Python, NumPy, SciPy and of every peer that is installed."""
    import numpy
    import scipy

    out = {"python": platform.python_version(), "numpy": numpy.__version__, "scipy": scipy.__version__}
    for mod in PEERS:
        try:
            out[mod] = __import__(mod).__version__
        except (ImportError, AttributeError):
            pass
    return out


def machine_lines(load_start, vers):
    """Header lines: versions, machine, and the load average at the start and now.

    Parameters
    ----------
    load_start : tuple of 3 float
        ``os.getloadavg()`` taken when the run started.
    vers : dict
        As :func:`versions` returns it.
    """
    return [
        "versions: " + ", ".join(f"{k} {v}" for k, v in vers.items()) + f"; {platform.machine()}, {os.cpu_count()} cores",
        "load average (1, 5, 15 min) at the start: %.2f %.2f %.2f, at the end: %.2f %.2f %.2f"
        % (tuple(load_start) + os.getloadavg()),
        "(other processes share this machine: a load above ~1 inflates every time, unevenly; compare min and median)",
    ]


def write_results(kind, label, lines, payload):
    """Write ``benchmarks/results/<kind>-<date>[-label].txt`` and ``.json``; return the stem."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = f"{kind}-{datetime.date.today().isoformat()}" + (f"-{label}" if label else "")
    (RESULTS / f"{stem}.txt").write_text("\n".join(lines) + "\n")
    (RESULTS / f"{stem}.json").write_text(json.dumps(payload, indent=1, default=str))
    return stem
