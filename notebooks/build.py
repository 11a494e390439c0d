"""Write every notebook in notebooks/ from its source, execute it, and write the README picture.

Run from the repository root::

    python notebooks/build.py            # all notebooks
    python notebooks/build.py 03 05      # only those whose name starts with 03 or 05

Each notebook ``notebooks/NN_name.ipynb`` is made from ``notebooks/src/NN_name.py``, a Python file in the
"percent" format: ``# %%`` starts a code cell, ``# %% [markdown]`` a markdown cell whose lines are
comments (``# `` stripped). The notebook is executed with nbclient in a fresh kernel whose working
directory is ``notebooks/`` and whose ``PYTHONPATH`` starts with this repository, and written **with
its outputs**, so that it reads on GitHub. ``tests/test_notebooks.py`` checks that the committed notebooks
are what this script makes from the current sources and that they still execute to the same structure.

A source that needs packages beyond odeverify's own dependencies says so in a comment line of its
first code cell, ``# requires: torch, torchdiffeq``; where one of them is not installed, this script
skips that notebook (the committed one is kept) and ``tests/test_notebooks.py`` skips executing it.

The README picture ``docs/taylor_wrong_vs_right.png`` is the PNG output of the cell tagged
``readme-figure`` in ``03_checking_a_gradient``: the picture in the README is the one in the notebook.
"""

from __future__ import annotations

import base64
import importlib.util
import os
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
SOURCES = NOTEBOOKS / "src"
README_FIGURE = ROOT / "docs" / "taylor_wrong_vs_right.png"
README_FIGURE_SOURCE = "03_checking_a_gradient"
README_FIGURE_TAG = "readme-figure"

KERNELSPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}
_CELL = re.compile(r"^# %%(?P<kind> \[markdown\])?(?P<tags>\s+tags=\[[^\]]*\])?[ \t]*$", re.M)
_REQUIRES = re.compile(r"^# requires:(?P<names>.*)$", re.M)


def sources():
    """The notebook sources, sorted by name: ``[Path('notebooks/src/01_....py'), ...]``."""
    return sorted(SOURCES.glob("[0-9][0-9]_*.py"))


def requirements(source: Path):
    """The modules a source needs beyond odeverify's dependencies, from its ``# requires: a, b`` line: ``["a", "b"]``."""
    found = _REQUIRES.search(source.read_text(encoding="utf-8"))
    return [name.strip() for name in found.group("names").split(",") if name.strip()] if found else []


def missing_requirements(source: Path):
    """Those of :func:`requirements` that are not installed."""
    return [name for name in requirements(source) if importlib.util.find_spec(name) is None]


def parse_cells(text):
    """``[(kind, source, tags), ...]`` from a percent-format source; ``kind`` is ``"code"`` or ``"markdown"``."""
    marks = list(_CELL.finditer(text))
    if not marks or text[: marks[0].start()].strip():
        raise ValueError("a notebook source must start with a '# %%' or '# %% [markdown]' line")
    cells = []
    for mark, nxt in zip(marks, marks[1:] + [None]):
        body = text[mark.end() : nxt.start() if nxt else len(text)].strip("\n")
        tags = re.findall(r'"([^"]+)"', mark.group("tags") or "")
        if mark.group("kind"):
            lines = body.splitlines()
            bad = [ln for ln in lines if ln and not ln.startswith("#")]
            if bad:
                raise ValueError(f"a markdown cell's lines must be comments, got {bad[0]!r}")
            body = "\n".join(ln[2:] if ln.startswith("# ") else ln[1:] for ln in lines)
            cells.append(("markdown", body, tags))
        else:
            cells.append(("code", body, tags))
    return cells


def make_notebook(source: Path):
    """The notebook of one source, without outputs (nbformat v4)."""
    import nbformat.v4 as v4

    nb = v4.new_notebook()
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    nb.metadata["language_info"] = {"name": "python"}
    for kind, body, tags in parse_cells(source.read_text(encoding="utf-8")):
        cell = v4.new_markdown_cell(body) if kind == "markdown" else v4.new_code_cell(body)
        if tags:
            cell.metadata["tags"] = tags
        nb.cells.append(cell)
    return nb


def kernel_env():
    """os.environ with this repository first on PYTHONPATH (the kernel runs in notebooks/)."""
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path}


def execute(nb, directory: Path, timeout=300):
    """Execute ``nb`` in place in a fresh kernel whose working directory is ``directory``."""
    import nbclient

    old = dict(os.environ)
    os.environ.update(kernel_env())
    try:
        client = nbclient.NotebookClient(
            nb, timeout=timeout, kernel_name=KERNELSPEC["name"], record_timing=False,
            resources={"metadata": {"path": str(directory)}},
        )
        client.execute()
    finally:
        os.environ.clear()
        os.environ.update(old)
    return nb


def coalesce_streams(nb):
    """Join consecutive stream outputs of the same name (stdout arrives in chunks that depend on timing)."""
    for cell in nb.cells:
        merged = []
        for out in cell.get("outputs", []):
            if (out.get("output_type") == "stream" and merged and merged[-1].get("output_type") == "stream"
                    and merged[-1]["name"] == out["name"]):
                merged[-1]["text"] += out["text"]
            else:
                merged.append(out)
        if "outputs" in cell:
            cell["outputs"] = merged
    return nb


def normalise_ids(nb, stem):
    """Cell ids from the notebook's number and the cell's position (new cells get random ones), so that a
    rebuild of an unchanged source changes nothing but outputs."""
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"{stem[:2]}-{i:02d}"
    return nb


def tagged_png(nb, tag):
    """The bytes of the first PNG output of the cell tagged ``tag``."""
    for cell in nb.cells:
        if tag in cell.get("metadata", {}).get("tags", []):
            for out in cell.get("outputs", []):
                if "image/png" in out.get("data", {}):
                    return base64.b64decode(out["data"]["image/png"])
    raise LookupError(f"no PNG output in a cell tagged {tag!r}")


def build(stem_prefixes=()):
    import nbformat

    done = []
    for source in sources():
        stem = source.stem
        if stem_prefixes and not stem.startswith(tuple(stem_prefixes)):
            continue
        missing = missing_requirements(source)
        if missing:
            print(f"{stem + '.ipynb':45s} skipped: needs {', '.join(missing)} (the committed notebook is kept)")
            continue
        start = time.perf_counter()
        nb = normalise_ids(coalesce_streams(execute(make_notebook(source), NOTEBOOKS)), stem)
        nbformat.write(nb, NOTEBOOKS / f"{stem}.ipynb")
        seconds = time.perf_counter() - start
        done.append((stem, seconds))
        print(f"{stem + '.ipynb':45s} {seconds:5.1f} s", flush=True)
        if stem == README_FIGURE_SOURCE:
            README_FIGURE.parent.mkdir(exist_ok=True)
            README_FIGURE.write_bytes(tagged_png(nb, README_FIGURE_TAG))
            print(f"{README_FIGURE.relative_to(ROOT)} written from the cell tagged {README_FIGURE_TAG!r}")
    print(f"{len(done)} notebooks in {sum(s for _, s in done):.1f} s")


if __name__ == "__main__":
    build(sys.argv[1:])
