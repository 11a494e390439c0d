"""Rows of a sweep on disk (CSV or Parquet, written as cells finish) and the summary of a finished sweep."""

from __future__ import annotations

import csv
import os
import time
from pathlib import Path

from ._cells import COLUMNS, STATUSES

__all__ = ["open_writer", "read_rows", "summary_table", "FORMATS"]

#: output formats by file suffix
FORMATS = {".csv": "csv", ".parquet": "parquet"}
#: a Parquet file is rewritten (atomically) at most this often while cells finish, and at the end
PARQUET_FLUSH_SECONDS = 1.0


def output_format(path):
    fmt = FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        from ..errors import InvalidArgumentError

        raise InvalidArgumentError(
            f"output={str(path)!r}: unknown format; name a .csv or a .parquet file, e.g. output='sweep.parquet'"
        )
    return fmt


# ---------------------------------------------------------------------------- reading
def read_rows(path):
    """The rows of a results file (CSV or Parquet) as dicts of typed values; [] when there is no file.

    A CSV line cut short by an interruption (a partial last line) is left out.
    """
    path = Path(path)
    if not path.exists():
        return []
    if output_format(path) == "parquet":
        import pyarrow.parquet as pq

        return [{c: row.get(c) for c in COLUMNS} for row in pq.read_table(path).to_pylist()]
    rows = []
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        for values in reader:
            if header is None or len(values) != len(header):
                continue
            raw = dict(zip(header, values))
            try:
                rows.append({c: _parse(raw.get(c, ""), t) for c, t in COLUMNS.items()})
            except ValueError:
                continue
    return [r for r in rows if r["cell_id"] and r["status"] in STATUSES]


def _parse(text, kind):
    if text == "":
        return None
    return kind(text)


def _text(value):
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)  # exact: read back bit for bit
    return str(value)


# ---------------------------------------------------------------------------- writing
class _CSVWriter:
    """Appends one line per row and flushes it: an interrupted sweep keeps every finished row."""

    def __init__(self, path, existing):
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "w", newline="", encoding="utf-8") as fh:  # rewrite what is kept, then append
            writer = csv.writer(fh)
            writer.writerow(COLUMNS)
            writer.writerows([_text(r[c]) for c in COLUMNS] for r in existing)
        os.replace(tmp, path)
        self._fh = open(path, "a", newline="", encoding="utf-8")
        self._writer = csv.writer(self._fh)

    def write(self, row):
        self._writer.writerow([_text(row[c]) for c in COLUMNS])
        self._fh.flush()

    def close(self):
        self._fh.close()


def _schema():
    import pyarrow as pa

    types = {str: pa.string(), int: pa.int64(), float: pa.float64()}
    return pa.schema([(c, types[t]) for c, t in COLUMNS.items()])


class _ParquetWriter:
    """Holds the rows and rewrites the whole file atomically (write, then rename) at most every
    :data:`PARQUET_FLUSH_SECONDS`: the file on disk is always a complete Parquet file."""

    def __init__(self, path, existing):
        import pyarrow  # noqa: F401 - fail now, with the extra to install, not after the first cell

        self.path, self.rows, self._last = path, list(existing), 0.0
        self._flush()

    def write(self, row):
        self.rows.append(row)
        if time.monotonic() - self._last >= PARQUET_FLUSH_SECONDS:
            self._flush()

    def _flush(self):
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pylist(self.rows, schema=_schema())
        tmp = self.path.with_name(self.path.name + ".tmp")
        pq.write_table(table, tmp)
        os.replace(tmp, self.path)
        self._last = time.monotonic()

    def close(self):
        self._flush()


def open_writer(path, existing=()):
    """A writer of rows to ``path`` (``.csv`` or ``.parquet``) holding ``existing`` rows first."""
    path = Path(path)
    if output_format(path) == "parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise ImportError(
                "writing a .parquet file needs pyarrow: pip install 'odeverify[dask]' (or pip install pyarrow), "
                "or write a .csv file"
            ) from None
    kind = _ParquetWriter if output_format(path) == "parquet" else _CSVWriter
    try:
        return kind(path, existing)
    except OSError as exc:  # before any cell runs: a bad path is a bad argument, not a crash after an hour
        from ..errors import InvalidArgumentError

        raise InvalidArgumentError(
            f"output={str(path)!r}: cannot write it ({exc.strerror or ' '.join(str(exc).split())}); name a file "
            "in a directory that exists and is writable"
        ) from None


# ---------------------------------------------------------------------------- summary
def summary_table(rows):
    """Pass rate by method x tolerance x mode, as text lines."""
    groups = {}
    for r in rows:
        groups.setdefault((r["method"], r["rtol"], r["mode"]), []).append(r["status"])
    header = f"{'method':<8} {'rtol':>8} {'mode':<13} {'cells':>6} " + " ".join(f"{s:>12}" for s in STATUSES)
    lines = [header + "   pass rate"]
    for (method, rtol, mode), statuses in sorted(groups.items()):
        counts = [statuses.count(s) for s in STATUSES]
        lines.append(f"{method:<8} {rtol:>8g} {mode:<13} {len(statuses):>6} "
                     + " ".join(f"{n:>12}" for n in counts) + f"   {counts[0] / len(statuses):>8.1%}")
    return lines
