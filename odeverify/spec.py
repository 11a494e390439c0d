"""Problem specifications in TOML, as used by the command line.

A spec names the system, the inputs, a loss and the solver settings::

    name = "Lotka-Volterra"
    states = ["x", "y"]                  # or "x y"
    params = ["a", "b", "c", "d"]        # optional
    time = "t"                           # optional, default "t"
    rhs = ["a*x - b*x*y", "c*x*y - d*y"] # parsed safely, never evaluated
    z0 = [1.0, 1.0]
    theta = [1.5, 1.0, 3.0, 1.0]
    ts = [0.0, 0.5, 1.0]                 # or {start = 0.0, stop = 1.0, num = 3}

    [loss]                               # one of the kinds below
    kind = "squared_error"
    targets = [[1.0, 1.0], [0.9, 1.2], [0.8, 1.5]]   # rows at the times in `at`
    # file = "../data/lotka_volterra.csv"  # instead of `targets`: columns t, x, y
    at = "all"                           # "all", "last", "first" or [indices]
    weight = 1.0                         # optional factor on the loss (either kind)

    [solver]                             # optional
    method = "DOP853"
    mode = "interpolated"                # or "backsolve", "quadrature"
    rtol = 1e-8
    atol = 1e-8

    [check]                              # optional, for `odeverify check`
    references = ["forward", "fd"]       # default: every reference that applies
    rtol = 1e-5                          # comparison tolerances
    atol = 1e-8

    [exact]                              # optional: closed-form gradients, numbers only
    z0 = [2.0]                           # dL/dz(t0), one per state
    theta = [1.0, 0.5, 0.0, 0.0]         # dL/dtheta, one per parameter
    t = [-1.0, 0.0, 1.0]                 # dL/dt_i, one per entry of ts
    loss = 0.5                           # optional: the value of L

Only ``states`` and ``rhs`` (with ``params`` and ``time`` when there are any)
are needed to derive (``odeverify derive``, :func:`load_system`); computing or
checking gradients needs ``z0``, ``ts`` and ``[loss]`` as well.

``[exact]`` gives the gradients where they are known in closed form (give
any of ``z0``, ``theta``, ``t``); ``odeverify check`` uses them as an exact
reference (:class:`odeverify.references.Exact`), the truth for the entries
they give. They are numbers, not formulas: work them out for the spec's own
z0, theta and ts.

Loss kinds:

``squared_error``
    L = 1/2 sum_i sum_k (z_k(t_i) - y_ik)^2 over the observed entries, with
    targets inline (``targets``) or from a CSV file (``file``, a path relative
    to the spec). The CSV has a header row: a column ``t`` (or the time's name)
    and one column per observed state; an empty cell or ``nan`` is a missing
    observation. Its times must equal ``ts`` (or, when ``ts`` is absent, they
    become ``ts``).
``expression``
    L = sum over ``at`` of an expression of the states and time, e.g.
    ``expression = "x**2"`` with ``at = "last"``.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

try:
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python < 3.11
    import tomli as tomllib

from ._system import ODESystem
from .errors import OdeverifyError, SpecError
from .losses import ExpressionLoss, SquaredError, resolve_at

__all__ = ["Problem", "load_spec", "load_system", "parse_spec", "parse_system", "printable"]

_TOP_KEYS = {
    "name", "description", "states", "params", "time", "rhs", "z0", "theta", "ts", "loss", "solver", "check", "exact",
}
_EXACT_KEYS = {"z0", "theta", "t", "loss"}
_LOSS_KEYS = {"kind", "targets", "file", "at", "expression", "weight"}
_SOLVER_KEYS = {"method", "mode", "rtol", "atol", "max_steps"}
#: largest spec file read, in bytes
MAX_SPEC_BYTES = 1_000_000
#: most rows read from a CSV data file
MAX_CSV_ROWS = 100_000


@dataclass
class Problem:
    """Everything a spec describes."""

    name: str
    system: ODESystem
    z0: np.ndarray
    ts: np.ndarray
    theta: np.ndarray
    loss: object
    loss_description: str
    solver: dict = field(default_factory=dict)
    check: dict = field(default_factory=dict)
    source: str = ""
    description: str = ""
    exact: dict = field(default_factory=dict)  # [exact]: "z0", "theta", "t" arrays and "loss" (float)

    def __repr__(self):
        from ._display import count

        return (f"<Problem {self.name}: {count(self.system.n_states, 'state')}, "
                f"{count(self.system.n_params, 'parameter')}, {count(len(self.ts), 'time')}>")

    def adjoint_kwargs(self):
        """Keyword arguments for :func:`odeverify.adjoint_gradients` from ``[solver]``."""
        return dict(self.solver)

    def exact_reference(self):
        """The ``[exact]`` table as an :class:`odeverify.references.Exact` reference, or None."""
        values = {k: v for k, v in self.exact.items() if k != "loss"}
        if not values:
            return None
        from .references import Exact

        return Exact(values, loss=self.exact.get("loss"), name="closed form (spec)")


def _err(source, key, message):
    """A SpecError on one line: paths and values from the spec are escaped (a file name may hold a newline)."""
    return SpecError(printable(f"{source}: {key}: {message}"))


def load_spec(path) -> Problem:
    """Read a TOML spec file (see the module documentation)."""
    text, path = _read_text(path)
    return parse_spec(text, source=str(path), base_dir=path.parent)


def load_system(path) -> ODESystem:
    """The system of a TOML spec file: only ``states``, ``rhs``, ``params``, ``time`` are read."""
    text, path = _read_text(path)
    return parse_system(text, source=str(path))


def parse_system(text: str, *, source="<spec>") -> ODESystem:
    """The system of spec text (see the module documentation); the other keys are not needed."""
    return _system(_toml(text, source), source)


def _read_text(path):
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"{printable(path)}: no such spec file; pass the path of a .toml spec such as examples/lotka_volterra.toml")
    size = path.stat().st_size
    if size > MAX_SPEC_BYTES:
        raise SpecError(f"{printable(path)}: the spec is {size} bytes, over the limit of {MAX_SPEC_BYTES}")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(f"{printable(path)}: not UTF-8 text ({exc})") from None
    return text, path


def _toml(text, source):
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{source}: not valid TOML: {exc}") from None
    except RecursionError:  # tomllib recurses into nested arrays and tables
        raise SpecError(
            f"{source}: nested too deeply for the TOML reader (arrays or tables inside each other); a spec needs "
            "at most 2 levels (e.g. targets = [[...], ...])"
        ) from None
    unknown = set(data) - _TOP_KEYS
    if unknown:
        raise _err(source, sorted(unknown)[0], f"unknown key; known keys are {', '.join(sorted(_TOP_KEYS))}")
    return data


def _system(data, source):
    for key in ("states", "rhs"):
        if key not in data:
            raise _err(source, key, "missing; see examples/lotka_volterra.toml for a complete spec")
    try:
        return ODESystem.from_strings(
            data["states"], data.get("params", ""), data["rhs"], time=data.get("time", "t"), name=data.get("name")
        )
    except OdeverifyError as exc:
        raise SpecError(f"{source}: {exc}") from None


def parse_spec(text: str, *, source="<spec>", base_dir=".") -> Problem:
    """Parse spec text (see the module documentation)."""
    data = _toml(text, source)
    system = _system(data, source)
    if "z0" not in data:
        raise _err(source, "z0", "missing; see examples/lotka_volterra.toml for a complete spec")
    base_dir = Path(base_dir)
    z0 = _number_array(data["z0"], source, "z0")
    theta = _number_array(data.get("theta", []), source, "theta")
    loss_table = data.get("loss")
    if not isinstance(loss_table, dict):
        raise _err(source, "loss", "missing or not a table; add a [loss] table with kind = 'squared_error' or 'expression'")
    csv_times = None
    ts = None
    if "ts" in data:
        ts = _time_grid(data["ts"], source)
    kind = loss_table.get("kind")
    unknown = set(loss_table) - _LOSS_KEYS
    if unknown:
        raise _err(source, f"loss.{sorted(unknown)[0]}", f"unknown key; known keys are {', '.join(sorted(_LOSS_KEYS))}")
    if kind == "squared_error":
        if ("targets" in loss_table) == ("file" in loss_table):
            raise _err(source, "loss", "squared_error needs exactly one of 'targets' (inline rows) or 'file' (a CSV)")
        if "file" in loss_table:
            csv_times, targets = _read_csv(base_dir, loss_table["file"], system, source)
            if ts is None:
                ts = csv_times
            elif len(ts) != len(csv_times) or not np.allclose(ts, csv_times, rtol=1e-12, atol=1e-12):
                raise _err(source, "loss.file", "the CSV times differ from ts; make them equal or drop ts from the spec")
        else:
            targets = _number_array(loss_table["targets"], source, "loss.targets", allow_nan=True)
        if ts is None:
            raise _err(source, "ts", "missing; give the observation times")
        at = loss_table.get("at", "all")
        try:
            idx = resolve_at(at, len(ts), "loss.at")
            if targets.ndim != 2 or targets.shape != (len(idx), system.n_states):
                raise _err(
                    source,
                    "loss.targets",
                    f"has shape {targets.shape}; expected ({len(idx)}, {system.n_states}): one row per time in 'at', "
                    "one column per state (nan for missing)",
                )
            loss = SquaredError(targets, at=at, weight=loss_table.get("weight", 1.0))
        except SpecError:
            raise
        except OdeverifyError as exc:
            raise SpecError(f"{source}: loss: {exc}") from None
        where = f"from {printable(loss_table['file'])}" if "file" in loss_table else "inline"
        description = f"½ Σ (z - y)² over observed entries, targets {where}, at {at}"
    elif kind == "expression":
        if "expression" not in loss_table:
            raise _err(source, "loss.expression", "missing; e.g. expression = 'x**2'")
        if not isinstance(loss_table["expression"], str):
            raise _err(source, "loss.expression", f"{loss_table['expression']!r} is not a string; e.g. expression = 'x**2'")
        if ts is None:
            raise _err(source, "ts", "missing; give the observation times")
        at = loss_table.get("at", "last")
        try:
            loss = ExpressionLoss(system, loss_table["expression"], ts, at=at, weight=loss_table.get("weight", 1.0))
        except OdeverifyError as exc:
            raise SpecError(f"{source}: loss: {exc}") from None
        description = (f"{loss.weight:g} × " if loss.weight != 1.0 else "") + f"Σ {loss_table['expression']} at {at}"
    else:
        raise _err(source, "loss.kind", f"{kind!r} is not a loss kind; use 'squared_error' or 'expression'")
    solver = data.get("solver", {})
    if not isinstance(solver, dict):
        raise _err(source, "solver", "must be a table")
    unknown = set(solver) - _SOLVER_KEYS
    if unknown:
        raise _err(source, f"solver.{sorted(unknown)[0]}", f"unknown key; known keys are {', '.join(sorted(_SOLVER_KEYS))}")
    _check_solver_table(solver, source)
    check = data.get("check", {})
    if not isinstance(check, dict):
        raise _err(source, "check", "must be a table")
    _check_check_table(check, source)
    exact = _exact_table(data.get("exact", {}), source, {"z0": z0.shape, "theta": theta.shape, "t": ts.shape})
    return Problem(
        name=str(data.get("name", Path(source).stem)),
        system=system,
        z0=z0,
        ts=ts,
        theta=theta,
        loss=loss,
        loss_description=description,
        solver=dict(solver),
        check=dict(check),
        source=source,
        description=str(data.get("description", "")),
        exact=exact,
    )


def _exact_table(table, source, shapes):
    """``[exact]``: closed-form gradients, each of the shape of the quantity it is the gradient of."""
    if not isinstance(table, dict):
        raise _err(source, "exact", "must be a table, e.g. [exact] with z0 = [...], theta = [...], t = [...]")
    unknown = set(table) - _EXACT_KEYS
    if unknown:
        raise _err(source, f"exact.{sorted(unknown)[0]}", "unknown key; known keys are loss, t, theta, z0")
    out = {}
    for key, shape in shapes.items():
        if key not in table:
            continue
        arr = _number_array(table[key], source, f"exact.{key}")
        if arr.shape != shape:
            what = {"z0": "state", "theta": "parameter", "t": "entry of ts"}[key]
            raise _err(source, f"exact.{key}", f"has shape {arr.shape}; expected {shape}, one value per {what}")
        out[key] = arr
    if "loss" in table:
        v = table["loss"]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not (abs(v) <= 1e308 and math.isfinite(v)):
            raise _err(source, "exact.loss", f"{v!r:.40} is not a finite number; e.g. loss = 0.5")
        out["loss"] = float(v)
    if table and len(out) == ("loss" in out):
        raise _err(source, "exact", "gives no gradient; give at least one of z0, theta, t")
    return out


def _positive_number(table, key, source, prefix, example):
    if key not in table:
        return
    v = table[key]
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
        raise _err(source, f"{prefix}.{key}", f"{v!r} is not a positive number; e.g. {key} = {example}")


def _check_solver_table(solver, source):
    """Types of [solver]; the values' ranges are checked by the functions that use them."""
    for key, example in (("method", "'DOP853'"), ("mode", "'interpolated'")):
        if key in solver and not isinstance(solver[key], str):
            raise _err(source, f"solver.{key}", f"{solver[key]!r} is not a string; e.g. {key} = {example}")
    _positive_number(solver, "rtol", source, "solver", "1e-8")
    if "atol" in solver and isinstance(solver["atol"], list):
        _number_array(solver["atol"], source, "solver.atol")
    else:
        _positive_number(solver, "atol", source, "solver", "1e-8")
    if "max_steps" in solver and (isinstance(solver["max_steps"], bool) or not isinstance(solver["max_steps"], int)):
        raise _err(source, "solver.max_steps", f"{solver['max_steps']!r} is not an integer; e.g. max_steps = 100000")


def _check_check_table(check, source):
    unknown = set(check) - {"references", "rtol", "atol"}
    if unknown:
        raise _err(source, f"check.{sorted(unknown)[0]}", "unknown key; known keys are atol, references, rtol")
    _positive_number(check, "rtol", source, "check", "1e-5")
    if "atol" in check:
        v = check["atol"]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
            raise _err(source, "check.atol", f"{v!r} is not a finite non-negative number; e.g. atol = 1e-8")
    if "references" in check:
        refs = check["references"]
        if not isinstance(refs, list) or not refs or not all(isinstance(r, str) for r in refs):
            raise _err(
                source, "check.references",
                f"{refs!r} is not a non-empty list of names; e.g. references = ['forward', 'fd']",
            )


def printable(text) -> str:
    """``text`` for one line of output: as is when printable, else escaped (``repr`` without the quotes)."""
    text = str(text)
    return text if text.isprintable() else repr(text)[1:-1]


def _number_array(value, source, key, allow_nan=False):
    def convert(v):
        if isinstance(v, list):
            return [convert(x) for x in v]
        if isinstance(v, bool) or not isinstance(v, (int, float, str)):
            raise _err(source, key, f"holds {v!r}, not a number")
        if isinstance(v, str):
            if allow_nan and v.strip().lower() in ("nan", ""):
                return math.nan
            raise _err(source, key, f"holds the string {v!r}, not a number")
        try:
            return float(v)
        except OverflowError:  # an integer beyond the double range
            raise _err(source, key, f"holds the integer {str(v)[:12]}... ({len(str(v))} digits), beyond the double "
                       "range (about 1.8e308)") from None

    try:
        converted = convert(value)
    except RecursionError:
        raise _err(source, key, "is nested too deeply; give a list of numbers (or of rows)") from None
    try:
        arr = np.array(converted, dtype=float)
    except ValueError:
        raise _err(source, key, "is ragged; every row must have the same length") from None
    if not allow_nan and not np.all(np.isfinite(arr)):
        raise _err(source, key, "holds a non-finite number")
    return arr


def _time_grid(value, source):
    if isinstance(value, dict):
        extra = set(value) - {"start", "stop", "num"}
        if extra or not {"start", "stop", "num"} <= set(value):
            raise _err(source, "ts", "as a table needs exactly start, stop and num")
        num = value["num"]
        if isinstance(num, bool) or not isinstance(num, int) or not 2 <= num <= 1_000_000:
            raise _err(source, "ts.num", f"must be an integer from 2 to 1000000, got {num!r}")
        for key in ("start", "stop"):
            v = value[key]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise _err(source, f"ts.{key}", f"{v!r} is not a finite number; e.g. ts = {{start = 0.0, stop = 1.0, num = 3}}")
        return np.linspace(float(value["start"]), float(value["stop"]), num)
    if not isinstance(value, list):
        raise _err(
            source, "ts", f"{value!r:.60} is not a list of times; e.g. ts = [0.0, 0.5, 1.0] or "
            "ts = {start = 0.0, stop = 1.0, num = 3}"
        )
    ts = _number_array(value, source, "ts")
    if ts.ndim != 1:
        raise _err(source, "ts", f"has shape {ts.shape}; give a flat list of times, e.g. ts = [0.0, 0.5, 1.0]")
    return ts


def _read_csv(base_dir, name, system, source):
    if not isinstance(name, str):
        raise _err(source, "loss.file", "must be a path string")
    path = (base_dir / name).resolve()
    if not path.is_file():
        raise _err(source, "loss.file", f"{path} does not exist")
    tname = system.time.name
    try:
        return _read_csv_rows(path, system, source, tname)
    except UnicodeDecodeError as exc:
        raise _err(source, "loss.file", f"{path} is not UTF-8 text (byte {exc.start}); save it as UTF-8 CSV") from None
    except csv.Error as exc:
        raise _err(source, "loss.file", f"{path} is not readable as CSV: {exc}") from None


def _read_csv_rows(path, system, source, tname):
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        try:
            header = [h.strip() for h in next(reader)]
        except StopIteration:
            raise _err(source, "loss.file", f"{path} is empty") from None
        tcol = next((i for i, h in enumerate(header) if h in ("t", tname)), None)
        if tcol is None:
            raise _err(source, "loss.file", f"{path} has no time column ('t' or {tname!r}); header is {header}")
        cols = {}
        for i, h in enumerate(header):
            if i == tcol:
                continue
            if h not in system.state_names:
                raise _err(source, "loss.file", f"{path}: column {h!r} is not a state ({', '.join(system.state_names)})")
            cols[h] = i
        rows = []
        for lineno, row in enumerate(reader, start=2):
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) != len(header):
                raise _err(source, "loss.file", f"{path}:{lineno}: {len(row)} fields, expected {len(header)} (ragged row)")
            rows.append(row)
            if len(rows) > MAX_CSV_ROWS:
                raise _err(source, "loss.file", f"{path} has more than {MAX_CSV_ROWS} rows")
    if len(rows) < 2:
        raise _err(source, "loss.file", f"{path} needs at least 2 data rows")

    def num(text, lineno, col):
        text = text.strip()
        if text == "" or text.lower() == "nan":
            return math.nan
        try:
            return float(text)
        except ValueError:
            raise _err(source, "loss.file", f"{path}:{lineno}: {text!r} in column {col!r} is not a number") from None

    times = np.array([num(r[tcol], i + 2, "t") for i, r in enumerate(rows)])
    if not np.all(np.isfinite(times)):
        raise _err(source, "loss.file", f"{path}: every row needs a finite time")
    targets = np.full((len(rows), system.n_states), np.nan)
    for k, sname in enumerate(system.state_names):
        if sname in cols:
            targets[:, k] = [num(r[cols[sname]], i + 2, sname) for i, r in enumerate(rows)]
    return times, targets


def __dir__():
    # tab completion shows the public names, not the modules imported here
    return sorted(__all__)
