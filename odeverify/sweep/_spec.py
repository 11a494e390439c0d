"""Sweep specs in TOML, for ``odeverify sweep SPEC.toml``::

    methods = ["DOP853", "RK45"]          # solver methods of the candidate
    rtols = [1e-6, 1e-8]                  # its tolerances (atol = rtol unless `atol` is given)
    modes = ["interpolated"]              # adjoint modes: interpolated, backsolve, quadrature
    references = ["forward", "fd"]        # optional: check_gradients' references (default all that apply)
    check_rtol = 1e-5                     # optional: the comparison's tolerance
    taylor = false                        # optional: run the Taylor test too
    cell_timeout = 60                     # optional: seconds a cell may take
    output = "sweep-results.parquet"      # optional: .parquet or .csv, relative to the current directory

    [problems]                            # either generated problems ...
    count = 50
    seed = 0
    n_states = 1                          # optional: an int or [min, max]; also n_times, n_params,
    n_times = [2, 3]                      #   functions, max_depth (odeverify.strategies.ode_systems)
    # specs = ["lotka_volterra.toml"]     # ... or spec files, relative to this file

Every error is a :class:`~odeverify.errors.SpecError` on one line naming the file and the key.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import OdeverifyError, SpecError
from ..spec import _read_text, load_spec, printable, tomllib

__all__ = ["load_sweep_spec", "SWEEP_KEYS", "PROBLEM_KEYS"]

#: top-level keys of a sweep spec and the types they take
SWEEP_KEYS = {
    "name": str, "description": str, "methods": list, "rtols": list, "modes": list, "atol": float,
    "references": list, "check_rtol": float, "taylor": bool, "cell_timeout": float, "output": str,
    "problems": dict,
}
#: keys of [problems]
PROBLEM_KEYS = {"count": int, "seed": int, "specs": list, "n_states": (int, list), "n_times": (int, list),
                "n_params": (int, list), "functions": list, "max_depth": int}
_TYPE_WORDS = {str: "a string", list: "a list", float: "a number", bool: "true or false", dict: "a table",
               int: "an integer", (int, list): "an integer or a [min, max] list"}


def _err(source, key, message):
    return SpecError(printable(f"{source}: {key}: {message}"))


def _typed(table, allowed, source, prefix=""):
    for key, value in table.items():
        name = prefix + key
        if key not in allowed:
            raise _err(source, name, f"unknown key; a sweep spec has {', '.join(prefix + k for k in allowed)}")
        kind = allowed[key]
        ok = isinstance(value, kind) and not (isinstance(value, bool) and kind is not bool)
        if kind is float:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not ok:
            raise _err(source, name, f"must be {_TYPE_WORDS[kind]}, got {value!r:.60}")


def load_sweep_spec(path):
    """Read a sweep spec; returns the keyword arguments of :func:`odeverify.sweep` (``output`` included).

    Raises
    ------
    SpecError
        On one line, naming the file, the key and the fix.
    """
    text, path = _read_text(path)
    source = str(path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(printable(f"{source}: not valid TOML: {' '.join(str(exc).split())}")) from None
    except RecursionError:
        raise SpecError(f"{source}: nested too deeply for the TOML reader") from None
    _typed(data, SWEEP_KEYS, source)
    problems = data.get("problems")
    if problems is None:
        raise _err(source, "problems", "missing; add a [problems] table with count = N (generated) or specs = [...]")
    _typed(problems, PROBLEM_KEYS, source, prefix="problems.")
    if ("count" in problems) == ("specs" in problems):
        raise _err(source, "problems", "give either count = N (generated problems) or specs = [files], not "
                   + ("both" if "count" in problems else "neither"))
    kwargs = {k: data[k] for k in ("methods", "rtols", "modes", "atol", "references", "check_rtol", "taylor",
                                   "cell_timeout", "output") if k in data}
    if "specs" in problems:
        files = []
        for i, name in enumerate(problems["specs"]):
            if not isinstance(name, str):
                raise _err(source, f"problems.specs[{i}]", f"must be a path (a string), got {name!r:.60}")
            file = path.parent / name
            if not file.is_file():
                raise _err(source, f"problems.specs[{i}]", f"no such spec file {str(file)!r} (paths are relative "
                           "to the sweep spec)")
            try:  # a spec file that does not load is a bad sweep spec (exit 2), not an error row in every cell
                load_spec(file)
            except OdeverifyError as exc:
                raise _err(source, f"problems.specs[{i}]", " ".join(str(exc).split())) from None
            files.append(str(file))
        kwargs["specs"] = files
    else:
        kwargs["count"] = problems["count"]
        kwargs["seed"] = problems.get("seed", 0)
        kwargs["problem_options"] = {k: v for k, v in problems.items() if k not in ("count", "seed")}
    _check_plan(kwargs, source)
    return kwargs


def _check_plan(kwargs, source):
    """Every remaining error (a method, a mode, a tolerance, a strategy option) as a one-line SpecError."""
    from ._run import plan

    keys = {"count", "seed", "problem_options", "specs", "methods", "rtols", "modes", "atol", "references",
            "check_rtol", "taylor", "cell_timeout"}
    try:
        plan(**{k: v for k, v in kwargs.items() if k in keys})
    except OdeverifyError as exc:
        raise SpecError(printable(f"{source}: {' '.join(str(exc).split())}")) from None
    except ImportError as exc:
        raise SpecError(printable(f"{source}: problems: generated problems need hypothesis ({exc})")) from None


def default_output(spec_path):
    """Where a sweep's rows go when its spec names no output: ``<spec stem>-results.csv`` here."""
    return f"{Path(spec_path).stem}-results.csv"
