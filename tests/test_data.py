"""The trajectory loader: the shipped spiral data set and every validation error."""

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import odeverify as ov
from odeverify.errors import DataError, InvalidArgumentError

ROOT = Path(__file__).resolve().parents[1]
SPIRAL = ROOT / "data" / "spiral.csv"


def test_shipped_spiral_matches_the_file():
    data = ov.load_trajectories(SPIRAL)
    raw = np.loadtxt(SPIRAL, delimiter=",", comments="#", skiprows=2)  # traj, t, x, y
    assert data.n_trajectories == 16 and data.state_names == ("x", "y")
    assert data.n_observations == len(raw)
    assert data.ids == tuple(range(16))
    assert np.all(data.mask[0]) and data.t[0] == 0.0  # every trajectory starts at t = 0
    for b in range(16):
        rows = raw[raw[:, 0] == b]
        t, y = data.trajectory(b)
        assert np.array_equal(t, rows[:, 1]) and np.array_equal(y, rows[:, 2:])
        assert 7 <= len(t) <= 11
    assert np.all(np.diff(data.t) > 0)
    assert np.all(np.isnan(data.y[~data.mask])) and not np.any(np.isnan(data.y[data.mask]))


def test_generator_script_reproduces_the_shipped_file(tmp_path):
    script = tmp_path / "make_spiral.py"
    shutil.copy(ROOT / "data" / "make_spiral.py", script)
    subprocess.run([sys.executable, str(script)], check=True, capture_output=True)
    assert (tmp_path / "spiral.csv").read_text() == SPIRAL.read_text()


def test_select_recomputes_the_time_grid():
    data = ov.load_trajectories(SPIRAL)
    sub = data.select([3, 1])
    assert sub.ids == (3, 1)
    t3, y3 = data.trajectory(3)
    t1, _ = data.trajectory(1)
    assert np.array_equal(sub.t, np.union1d(t3, t1))
    assert np.array_equal(sub.trajectory(0)[1], y3)
    assert data.select(slice(0, 4)).ids == (0, 1, 2, 3)
    with pytest.raises(InvalidArgumentError, match="outside the 16 trajectories"):
        data.select([16])
    with pytest.raises(InvalidArgumentError, match="non-empty list"):
        data.select([])


def _write(tmp_path, text):
    path = tmp_path / "d.csv"
    path.write_text(text)
    return path


GOOD = "traj,t,x,y\n0,0.0,1,2\n0,0.5,1.1,2.1\n1,0.0,3,4\n"


@pytest.mark.parametrize(
    "text,line,match",
    [
        (GOOD + "0,0.4,1,1\n", 5, r"line 5: trajectory 0 goes back to t = 0.4 after t = 0.5 \(d.csv line 3\).*sort"),
        (GOOD + "1,0.0,1,1\n", 5, r"line 5: trajectory 1 repeats t = 0.0"),
        (GOOD + "1,0.7,,1\n", 5, r"line 5: column 'x' is missing \(empty\)"),
        (GOOD + "1,0.7,NaN,1\n", 5, r"line 5: column 'x' is missing \(NaN\)"),
        (GOOD + "1,,0.2,1\n", 5, r"line 5: column 't' is missing"),
        (GOOD + "1,0.7,1\n", 5, r"line 5 has 3 fields but the header has 4.*ragged"),
        (GOOD + "1,0.7,1,2,3\n", 5, r"line 5 has 5 fields"),
        (GOOD + "1,0.7,abc,2\n", 5, r"line 5: column 'x' = 'abc' is not a number"),
        (GOOD + "1,0.7,inf,2\n", 5, r"line 5: column 'x' = 'inf' is not finite"),
        ("# a comment\ntime,x\n0,1\n", 2, r"line 2: the header time,x has no column 'traj'"),
        ("traj,t,x,x\n0,0,1,1\n", 1, r"column 'x' appears twice"),
    ],
)
def test_loader_errors_name_the_line(tmp_path, text, line, match):
    with pytest.raises(DataError, match=match) as info:
        ov.load_trajectories(_write(tmp_path, text))
    assert info.value.row == line


def test_loader_other_errors(tmp_path):
    with pytest.raises(DataError, match="is empty"):
        ov.load_trajectories(_write(tmp_path, "# nothing\n"))
    with pytest.raises(DataError, match="has a header but no rows"):
        ov.load_trajectories(_write(tmp_path, "traj,t,x\n"))
    with pytest.raises(DataError, match="no state columns"):
        ov.load_trajectories(_write(tmp_path, "traj,t\n0,1\n"))
    with pytest.raises(InvalidArgumentError, match="is not a file"):
        ov.load_trajectories(tmp_path / "missing.csv")
    with pytest.raises(DataError, match="state column 'z' is not in the header"):
        ov.load_trajectories(_write(tmp_path, GOOD), state_columns=["z"])


def test_loader_options_and_string_ids(tmp_path):
    path = _write(tmp_path, "run,time,a,b\nA,0,1,2\nB,0,3,4\nA,1,5,6\n")
    data = ov.load_trajectories(path, id_column="run", time_column="time", state_columns=["b"])
    assert data.ids == ("A", "B") and data.state_names == ("b",)
    assert np.array_equal(data.t, [0.0, 1.0])
    assert np.array_equal(data.y[:, :, 0], [[2.0, 4.0], [6.0, np.nan]], equal_nan=True)


def test_from_arrays_errors_name_the_row():
    with pytest.raises(DataError, match=r"row 2: trajectory 0 goes back") as info:
        ov.TrajectoryData.from_arrays([0, 0, 0], [0.0, 1.0, 0.5], np.ones((3, 2)))
    assert info.value.row == 2
    with pytest.raises(DataError, match=r"row 1: state 'z1' = nan is missing"):
        ov.TrajectoryData.from_arrays([0, 0], [0.0, 1.0], [[1.0, 1.0], [1.0, np.nan]])
    with pytest.raises(InvalidArgumentError, match="one row per observation"):
        ov.TrajectoryData.from_arrays([0, 0], [0.0, 1.0, 2.0], np.ones((3, 2)))
