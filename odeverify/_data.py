"""Irregularly sampled trajectories: a validated loader and their container.

File format (CSV, one observation per row, "long" format)::

    # comment lines start with '#'
    traj,t,x,y
    0,0.000000,1.102,0.331
    0,0.415220,0.874,0.905
    1,0.000000,-0.420,1.017
    ...

* one column holds the trajectory id (``traj`` by default), one the time
  (``t``), and every other column is a state, in the order of the header;
* within a trajectory the times are strictly increasing from row to row;
  trajectories may have different numbers of rows and different times;
* every cell holds a finite number (missing values are refused, naming the
  line: drop the row or fill the value before loading).

The trajectories are placed on the union of their times, ``data.t`` of
shape (T,), with ``data.y`` of shape (T, B, n) holding NaN where a trajectory
was not observed and ``data.mask`` (T, B) marking the observations, so that
one batched solve over ``data.t`` predicts every trajectory at once.
"""

from __future__ import annotations

import csv
import math
import numbers
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import DataError, InvalidArgumentError, InvalidTypeError

__all__ = ["TrajectoryData", "load_trajectories"]


@dataclass(frozen=True, eq=False)
class TrajectoryData:
    """B trajectories of n states, sampled at irregular times.

    Build with :func:`load_trajectories` or :meth:`from_arrays`.

    Attributes
    ----------
    ids : tuple
        Trajectory identifiers, in order of first appearance.
    t : ndarray, shape (T,)
        The sorted union of every trajectory's observation times.
    y : ndarray, shape (T, B, n)
        ``y[i, b]`` is trajectory b observed at ``t[i]``, NaN where it was not.
    mask : ndarray of bool, shape (T, B)
        True where trajectory b was observed at ``t[i]``.
    state_names : tuple of str
    """

    ids: tuple
    t: np.ndarray
    y: np.ndarray
    mask: np.ndarray
    state_names: tuple

    @property
    def n_trajectories(self) -> int:
        return len(self.ids)

    @property
    def n_states(self) -> int:
        return self.y.shape[2]

    @property
    def n_observations(self) -> int:
        """Number of (time, trajectory) observations."""
        return int(self.mask.sum())

    def __len__(self):
        return self.n_trajectories

    def __repr__(self):
        return (
            f"TrajectoryData({self.n_trajectories} trajectories of states ({', '.join(self.state_names)}), "
            f"{self.n_observations} observations at {len(self.t)} distinct times in [{self.t[0]:g}, {self.t[-1]:g}])"
        )

    def trajectory(self, b):
        """``(times (k,), states (k, n))`` of trajectory index ``b``."""
        B = self.n_trajectories
        if isinstance(b, bool) or not isinstance(b, numbers.Integral) or not -B <= b < B:
            raise InvalidArgumentError(f"b={b!r} is not a trajectory index; the data hold {B} (0 to {B - 1})")
        rows = self.mask[:, b]
        return self.t[rows], self.y[rows, b]

    def select(self, which):
        """A new data set with the trajectories at the given indices (in that order).

        Parameters
        ----------
        which : sequence of int or slice
        """
        idx = np.arange(self.n_trajectories)[which] if isinstance(which, slice) else np.asarray(which)
        if idx.ndim != 1 or idx.size == 0 or idx.dtype.kind not in "iu":
            raise InvalidArgumentError(f"which must be a non-empty list of trajectory indices, got {which!r:.60}")
        if np.any(idx < -self.n_trajectories) or np.any(idx >= self.n_trajectories):
            raise InvalidArgumentError(f"which holds an index outside the {self.n_trajectories} trajectories: {which!r:.60}")
        mask = self.mask[:, idx]
        keep = mask.any(axis=1)
        return TrajectoryData(
            ids=tuple(self.ids[i] for i in idx),
            t=self.t[keep],
            y=self.y[keep][:, idx],
            mask=mask[keep],
            state_names=self.state_names,
        )

    @classmethod
    def from_arrays(cls, ids, t, y, *, state_names=None):
        """Build from long-format arrays: one row per observation.

        Parameters
        ----------
        ids : array_like, shape (N,)
            Trajectory id of each row.
        t : array_like, shape (N,)
            Time of each row, strictly increasing within each trajectory.
        y : array_like, shape (N, n)
            States of each row.
        state_names : sequence of str, optional
            Default ``z0, z1, ...``.

        Examples
        --------
        >>> import odeverify as ov
        >>> data = ov.TrajectoryData.from_arrays([0, 0, 1, 1, 1], [0.0, 0.5, 0.0, 0.2, 0.9],
        ...                                      [[1, 0], [0.8, 0.4], [0, 1], [-0.1, 0.9], [-0.5, 0.6]])
        >>> data.t
        array([0. , 0.2, 0.5, 0.9])
        >>> data.mask[:, 0]
        array([ True, False,  True, False])
        """
        ids_arr = np.asarray(ids)
        if ids_arr.ndim != 1:
            raise InvalidArgumentError(
                f"ids must be a 1-D sequence with one trajectory id per observation, got shape {ids_arr.shape}"
            )
        if ids_arr.dtype.kind == "f" and not np.all(np.isfinite(ids_arr)):
            raise InvalidArgumentError("ids hold NaN or inf; every observation needs a trajectory id")
        if ids_arr.dtype.kind not in "biufUS":
            raise InvalidTypeError(f"ids must be integers or strings, got dtype {ids_arr.dtype}")
        ids = list(ids_arr.tolist())
        n_rows = len(ids)
        try:
            t = np.asarray(t, dtype=float)
            y = np.asarray(y, dtype=float)
        except (TypeError, ValueError) as exc:
            raise InvalidTypeError(f"t and y must be numeric arrays of one shape ({exc})") from None
        if y.ndim == 1:
            y = y[:, None]
        if t.shape != (n_rows,) or y.ndim != 2 or y.shape[0] != n_rows:
            raise InvalidArgumentError(
                f"ids, t and y must have one row per observation: got {n_rows} ids, t of shape {t.shape}, "
                f"y of shape {y.shape}; pass ids (N,), t (N,) and y (N, n)"
            )
        if y.shape[1] == 0:
            raise InvalidArgumentError("y has no state columns; pass y of shape (N, n) with n >= 1")
        names = tuple(state_names) if state_names is not None else tuple(f"z{i}" for i in range(y.shape[1]))
        if len(names) != y.shape[1]:
            raise InvalidArgumentError(f"state_names has {len(names)} names but y has {y.shape[1]} columns")
        if not all(isinstance(nm, str) and nm for nm in names) or len(set(names)) != len(names):
            raise InvalidArgumentError(f"state_names must be distinct non-empty strings, got {list(names)!r}")
        rows = [f"row {i}" for i in range(n_rows)]
        for i in range(n_rows):
            if not math.isfinite(t[i]):
                raise DataError(f"{rows[i]}: t = {float(t[i])!r} is missing or not finite", row=i)
            bad = np.flatnonzero(~np.isfinite(y[i]))
            if bad.size:
                raise DataError(
                    f"{rows[i]}: state {names[bad[0]]!r} = {float(y[i, bad[0]])!r} is missing or not finite; "
                    "every state must be observed in every row (drop the row or fill the value)",
                    row=i,
                )
        return _assemble(ids, t, y, names, rows, list(range(n_rows)))


def _assemble(ids, t, y, names, rows, row_numbers):
    """Check the time order within each trajectory and place the rows on the union grid."""
    if not ids:
        raise DataError("the data hold no observations")
    order = {}
    last = {}
    for i, key in enumerate(ids):
        if key in last:
            j = last[key]
            if not t[i] > t[j]:
                what = "repeats" if t[i] == t[j] else "goes back to"
                raise DataError(
                    f"{rows[i]}: trajectory {key!r} {what} t = {float(t[i])!r} after t = {float(t[j])!r} ({rows[j]}); times must "
                    "be strictly increasing within each trajectory (sort the rows by trajectory, then time)",
                    row=row_numbers[i],
                )
        else:
            order[key] = len(order)
        last[key] = i
    grid, inverse = np.unique(t, return_inverse=True)
    B, n = len(order), y.shape[1]
    Y = np.full((len(grid), B, n), np.nan)
    mask = np.zeros((len(grid), B), dtype=bool)
    cols = np.array([order[k] for k in ids])
    Y[inverse, cols] = y
    mask[inverse, cols] = True
    return TrajectoryData(ids=tuple(order), t=grid, y=Y, mask=mask, state_names=names)


def load_trajectories(path, *, id_column="traj", time_column="t", state_columns=None):
    """Load irregularly sampled trajectories from a CSV file (format in the module docstring).

    Parameters
    ----------
    path : str or Path
    id_column, time_column : str
        Header names of the trajectory id and time columns.
    state_columns : sequence of str, optional
        The state columns, in order; default every other column.

    Returns
    -------
    TrajectoryData

    Raises
    ------
    DataError
        Naming the line (1-based, as an editor shows it) for: a missing
        header or column, a row with a different number of fields than the
        header (ragged), an empty or non-numeric or non-finite cell (missing
        value), times not strictly increasing within a trajectory.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise InvalidTypeError(
            f"path must be a file name (str or pathlib.Path), got {type(path).__name__} {path!r:.60}; "
            "e.g. load_trajectories('data/spiral.csv')"
        )
    path = Path(path)
    if not path.is_file():
        raise InvalidArgumentError(f"path={str(path)!r} is not a file")
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:  # -sig: a BOM (as Excel writes) is not a name
            lines = [(k, row) for k, row in enumerate(csv.reader(fh), start=1) if row and not row[0].lstrip().startswith("#")]
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{path.name} is not a UTF-8 text file (byte {exc.start}: {exc.object[exc.start:exc.start + 1]!r}); "
            "save it as CSV text in UTF-8"
        ) from None
    except csv.Error as exc:
        raise DataError(f"{path.name} is not readable as CSV: {exc}") from None
    if not lines:
        raise DataError(f"{path.name} is empty; expected a header such as {id_column},{time_column},x,y")
    if id_column == time_column:
        raise InvalidArgumentError(f"id_column and time_column are both {id_column!r}; they must name two columns")
    header_line, header = lines[0]
    header = [h.strip() for h in header]
    for name in (id_column, time_column):
        if name not in header:
            raise DataError(
                f"{path.name} line {header_line}: the header {','.join(header)} has no column {name!r}; "
                f"name the columns {id_column},{time_column},<states...> or pass id_column=/time_column=",
                row=header_line,
            )
    if len(set(header)) != len(header):
        dup = next(h for h in header if header.count(h) > 1)
        raise DataError(f"{path.name} line {header_line}: column {dup!r} appears twice in the header", row=header_line)
    if state_columns is None:
        state_columns = [h for h in header if h not in (id_column, time_column)]
    else:
        if isinstance(state_columns, str):
            state_columns = [state_columns]
        state_columns = list(state_columns)
        if not state_columns:
            raise InvalidArgumentError("state_columns is empty; name at least one state column, or leave it None")
        clash = [c for c in state_columns if c in (id_column, time_column)]
        if clash:
            raise InvalidArgumentError(
                f"state_columns holds {clash[0]!r}, the {'id' if clash[0] == id_column else 'time'} column; "
                "a state column must be another column"
            )
        if len(set(state_columns)) != len(state_columns):
            raise InvalidArgumentError(f"state_columns = {state_columns!r} names a column twice")
        missing = [c for c in state_columns if c not in header]
        if missing:
            raise DataError(f"{path.name}: state column {missing[0]!r} is not in the header {','.join(header)}")
    if not state_columns:
        raise DataError(f"{path.name}: the header {','.join(header)} has no state columns")
    i_id, i_t = header.index(id_column), header.index(time_column)
    i_states = [header.index(c) for c in state_columns]
    ids, ts, ys, rows, numbers = [], [], [], [], []
    for k, row in lines[1:]:
        where = f"{path.name} line {k}"
        if len(row) != len(header):
            raise DataError(
                f"{where} has {len(row)} fields but the header has {len(header)} ({','.join(header)}); "
                "every row needs one value per column (ragged row)",
                row=k,
            )
        key = row[i_id].strip()
        if not key:
            raise DataError(f"{where}: the trajectory id ({id_column}) is empty", row=k)
        values = []
        for col, idx in [(time_column, i_t)] + list(zip(state_columns, i_states)):
            text = row[idx].strip()
            if text == "" or text.lower() in ("nan", "na", "null", "none"):
                raise DataError(
                    f"{where}: column {col!r} is missing ({text or 'empty'}); every state and time must be given "
                    "in every row (drop the row or fill the value)",
                    row=k,
                )
            try:
                if "_" in text:  # float() reads "1_0" as 10: a typo, not a number in a data file
                    raise ValueError
                v = float(text)
            except ValueError:
                raise DataError(f"{where}: column {col!r} = {text!r} is not a number", row=k) from None
            if not math.isfinite(v):
                raise DataError(f"{where}: column {col!r} = {text!r} is not finite", row=k)
            values.append(v)
        ids.append(key)
        ts.append(values[0])
        ys.append(values[1:])
        rows.append(where)
        numbers.append(k)
    if not ids:
        raise DataError(f"{path.name} has a header but no rows")
    if all(_is_int(key) for key in ids):
        ids = [int(key) for key in ids]
    return _assemble(ids, np.array(ts), np.array(ys), tuple(state_columns), rows, numbers)


def _is_int(text):
    try:
        int(text)
    except ValueError:
        return False
    return True
