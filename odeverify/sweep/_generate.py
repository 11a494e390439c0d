"""Problems drawn from :mod:`odeverify.strategies` by a seed, the same in every process.

hypothesis's engine is not used: it searches (it starts from the simplest example, mixes in constants it
finds in the modules loaded, keeps a database), so its draws depend on the process. Here a strategy draws
its choices from a :class:`SeededChoices` provider, a NumPy generator seeded by the problem's seed, through
hypothesis's data layer (``ConjectureData``) alone: the same seed gives the same problem in any process, for
a given version of hypothesis and odeverify.
"""

from __future__ import annotations

import functools
import math

import numpy as np

__all__ = ["problem_seed", "generated_problem", "strategy", "OPTIONS", "MAX_ATTEMPTS"]

#: draws tried for one problem before giving up (the strategies reject some draws, e.g. trivial tests)
MAX_ATTEMPTS = 50


def problem_seed(seed, index):
    """The seed of generated problem ``index`` of a sweep seeded ``seed``: a 32-bit integer."""
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1)[0])


def _provider_class():
    from hypothesis.internal.conjecture.providers import PrimitiveProvider

    class SeededChoices(PrimitiveProvider):
        """Every choice from one seeded NumPy generator: uniform integers, Bernoulli booleans."""

        lifetime = "test_case"

        def __init__(self, conjecturedata, /, *, seed=0):
            super().__init__(conjecturedata)
            self._rng = np.random.default_rng(seed)

        def draw_boolean(self, p=0.5):
            return bool(self._rng.random() < p)

        def draw_integer(self, min_value=None, max_value=None, *, weights=None, shrink_towards=0):
            lo = -(2**31) if min_value is None else min_value
            hi = 2**31 if max_value is None else max_value
            if weights:
                values = list(weights)
                p = np.array([weights[v] for v in values])
                k = int(self._rng.choice(len(values) + 1, p=np.append(p, 1 - p.sum())))
                if k < len(values):
                    return values[k]
            return int(self._rng.integers(lo, hi, endpoint=True))

        def draw_float(self, *, min_value=-math.inf, max_value=math.inf, allow_nan=True, smallest_nonzero_magnitude):
            lo, hi = max(min_value, -1e6), min(max_value, 1e6)
            return float(lo + (hi - lo) * self._rng.random()) if hi > lo else float(lo)

        def draw_string(self, intervals, *, min_size=0, max_size=10):
            size = int(self._rng.integers(min_size, min(max_size, min_size + 10), endpoint=True))
            return "".join(chr(intervals[int(self._rng.integers(len(intervals)))]) for _ in range(size))

        def draw_bytes(self, min_size=0, max_size=10):
            size = int(self._rng.integers(min_size, min(max_size, min_size + 10), endpoint=True))
            return self._rng.bytes(size)

    return SeededChoices


def _draw(strategy, seed):
    """One draw of ``strategy`` with every choice from ``seed``; None when the strategy rejects it."""
    from hypothesis.control import BuildContext
    from hypothesis.errors import StopTest, UnsatisfiedAssumption
    from hypothesis.internal.conjecture.data import ConjectureData

    data = ConjectureData(random=None, provider=_provider_class(), provider_kw={"seed": seed})
    try:
        with BuildContext(data, wrapped_test=_draw):
            return data.draw(strategy)
    except (UnsatisfiedAssumption, StopTest):
        return None


#: what a sweep may say about its generated problems, with the defaults
OPTIONS = {"n_states": (1, 2), "n_times": (2, 3), "n_params": None, "functions": None, "max_depth": None}


def strategy(options):
    """The strategy of generated problems with ``options`` (a mapping of :data:`OPTIONS`; validated here).

    ``n_params``, ``functions`` and ``max_depth`` shape the systems (:func:`odeverify.strategies.ode_systems`);
    left out, the systems are those of :func:`odeverify.strategies.problems`.
    """
    from .. import strategies

    opts = {**OPTIONS, **dict(options)}
    system_opts = {k: opts[k] for k in ("n_params", "functions", "max_depth") if opts[k] is not None}
    systems = None
    if system_opts:
        systems = strategies.ode_systems(n_states=opts["n_states"], **system_opts)
    return strategies.problems(systems=systems, n_states=opts["n_states"], n_times=opts["n_times"])


@functools.lru_cache(maxsize=64)
def generated_problem(seed, options=()):
    """The problem of ``seed``, drawn from :func:`strategy` ``(options)``; ``options`` as (key, value) pairs.

    A rejected draw (a trivial test, a vanishing gradient) is drawn again with the seeds
    ``[seed, 1]``, ``[seed, 2]``, ... up to :data:`MAX_ATTEMPTS`. Cached per process: a worker running
    several cells of one problem derives and compiles its system once.

    Returns
    -------
    odeverify.strategies.Problem
    """
    problems = strategy(options)
    for attempt in range(MAX_ATTEMPTS):
        problem = _draw(problems, [int(seed), attempt])
        if problem is not None:
            return problem
    raise RuntimeError(f"no problem drawn for seed {seed} in {MAX_ATTEMPTS} attempts")
