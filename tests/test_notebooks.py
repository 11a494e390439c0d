"""The notebooks in notebooks/ execute, and the committed ones are current.

Each notebook is written by ``notebooks/build.py`` from its source in
``notebooks/src/`` and committed with its outputs. Stale notebooks are caught
in two ways:

* the committed cells (kind, source, tags) are what the build script makes
  from the current source;
* executing the source now (nbclient, a fresh kernel whose working directory
  is notebooks/) succeeds — the notebooks hold their own assertions against
  closed forms — and gives the committed output structure: per code cell, the
  same output types with the same MIME types (a PNG where a PNG was committed,
  LaTeX where LaTeX was). Numbers may differ in their last digits, so values
  are not compared.

The README picture is the committed PNG of the cell tagged ``readme-figure``.

A notebook whose source has a ``# requires: torch, torchdiffeq`` line is not executed where one of those
packages is missing (skipped, not failed); its committed cells and outputs are still checked.
"""

import base64
import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"


def _load_build():
    spec = importlib.util.spec_from_file_location("notebook_build", NOTEBOOKS / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


build = _load_build()
SOURCES = build.sources()
STEMS = [s.stem for s in SOURCES]


def _committed(stem):
    nbformat = pytest.importorskip("nbformat")
    return nbformat.read(NOTEBOOKS / f"{stem}.ipynb", as_version=4)


def _cells(nb):
    return [(c.cell_type, c.source, list(c.get("metadata", {}).get("tags", []))) for c in nb.cells]


def _structure(nb):
    """Per code cell: the stream names written to, and the other outputs' (type, MIME types) in order."""
    out = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        streams = sorted({o["name"] for o in cell.outputs if o["output_type"] == "stream"})
        rich = [(o["output_type"], sorted(o.get("data", {}))) for o in cell.outputs if o["output_type"] != "stream"]
        out.append((streams, rich))
    return out


def _mime_count(nb, mime):
    return sum(mime in o.get("data", {}) for c in nb.cells if c.cell_type == "code" for o in c.outputs)


def test_every_notebook_has_a_source_and_every_source_a_notebook():
    committed = sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb"))
    assert committed == STEMS
    assert [s[:2] for s in STEMS] == [f"{i:02d}" for i in range(1, len(STEMS) + 1)]


def test_parse_cells_reads_the_percent_format():
    text = '# %% [markdown]\n# # Title\n#\n# $x$\n\n# %%\nx = 1\n\n# %% tags=["readme-figure"]\nx\n'
    assert build.parse_cells(text) == [
        ("markdown", "# Title\n\n$x$", []), ("code", "x = 1", []), ("code", "x", ["readme-figure"])]
    with pytest.raises(ValueError, match="must be comments"):
        build.parse_cells("# %% [markdown]\nnot a comment\n")


def test_requirements_are_read_from_the_marker_line(tmp_path):
    assert build.requirements(NOTEBOOKS / "src" / "07_checking_a_torchdiffeq_model.py") == ["torch", "torchdiffeq"]
    assert build.requirements(NOTEBOOKS / "src" / "03_checking_a_gradient.py") == []
    source = tmp_path / "99_needs.py"
    source.write_text("# %%\n# requires: numpy, odeverify_no_such_package\nimport numpy\n", encoding="utf-8")
    assert build.requirements(source) == ["numpy", "odeverify_no_such_package"]
    assert build.missing_requirements(source) == ["odeverify_no_such_package"]


@pytest.mark.parametrize("stem", STEMS)
def test_committed_cells_are_the_current_source(stem):
    made = build.make_notebook(NOTEBOOKS / "src" / f"{stem}.py")
    assert _cells(_committed(stem)) == _cells(made), (
        f"notebooks/{stem}.ipynb is stale: run `python notebooks/build.py {stem[:2]}` from the repository root")


@pytest.mark.parametrize("stem", STEMS)
def test_committed_notebook_has_outputs_for_every_code_cell_that_makes_one(stem):
    nb = _committed(stem)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.get("execution_count") for c in code), "committed without executing: run notebooks/build.py"
    assert _mime_count(nb, "image/png") >= 1  # every notebook has at least one plot


def test_committed_notebooks_contain_rendered_latex_and_png():
    nbs = [_committed(stem) for stem in STEMS]
    assert sum(_mime_count(nb, "text/latex") for nb in nbs) >= 10
    assert sum(_mime_count(nb, "image/png") for nb in nbs) >= 12
    assert _mime_count(_committed("02_deriving_the_adjoint"), "text/latex") >= 10
    for nb in nbs:
        for cell in nb.cells:
            for out in cell.get("outputs", []):
                assert out["output_type"] != "error"
                if "image/png" in out.get("data", {}):
                    assert base64.b64decode(out["data"]["image/png"]).startswith(b"\x89PNG")


def test_readme_picture_is_the_notebooks_figure():
    committed = build.tagged_png(_committed(build.README_FIGURE_SOURCE), build.README_FIGURE_TAG)
    assert build.README_FIGURE.read_bytes() == committed
    assert build.README_FIGURE.relative_to(ROOT).as_posix() in (ROOT / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("stem", STEMS)
def test_notebook_executes_to_the_committed_structure(stem):
    pytest.importorskip("nbclient")
    missing = build.missing_requirements(NOTEBOOKS / "src" / f"{stem}.py")
    if missing:
        pytest.skip(f"{stem} needs {', '.join(missing)}, which is not installed")
    nb = build.coalesce_streams(build.execute(build.make_notebook(NOTEBOOKS / "src" / f"{stem}.py"), NOTEBOOKS))
    now, committed = _structure(nb), _structure(_committed(stem))
    assert len(now) == len(committed)
    for i, (a, b) in enumerate(zip(now, committed)):
        assert a == b, f"code cell {i} of {stem}: outputs now {a}, committed {b}; run notebooks/build.py"
