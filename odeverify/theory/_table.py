"""Plain-text tables for the reports' ``__str__``."""

from __future__ import annotations

__all__ = ["table_lines"]


def table_lines(columns, rows):
    """Lines of a right-aligned table, indented by two spaces.

    Parameters
    ----------
    columns : sequence of (header, width, format)
        E.g. ``("h", 12, ".4e")``; ``format`` is a format spec applied to each value.
    rows : iterable of sequences
        One value per column.

    Examples
    --------
    >>> table_lines([("N", 3, "d"), ("err", 9, ".2e")], [(8, 0.5), (16, 0.25)])
    ['    N       err', '    8  5.00e-01', '   16  2.50e-01']
    """
    lines = ["  " + " ".join(f"{h:>{w}}" for h, w, _ in columns)]
    for row in rows:
        lines.append("  " + " ".join(f"{v:>{w}{fmt}}" for v, (_, w, fmt) in zip(row, columns)))
    return lines
