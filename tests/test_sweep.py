"""Verification sweeps (issue 14): determinism across executors, failure isolation, resume, the CLI."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("hypothesis")

import odeverify
from odeverify import ODESystem
from odeverify.cli import main
from odeverify.errors import InvalidArgumentError
from odeverify.sweep import DETERMINISTIC_COLUMNS, problem_seed, read_rows, sweep

ROOT = Path(__file__).resolve().parents[1]
#: cheap generated problems: one state, two times, one parameter, shallow terms (~0.1 s a cell)
CHEAP = {"n_states": 1, "n_times": 2, "n_params": 1, "functions": ["poly", "sin"], "max_depth": 1}
#: the 200-cell sweep of the issue: 50 generated problems x 2 methods x 2 tolerances
#: (references: forward sensitivities, independent of the adjoint's derivation, and the backsolve adjoint --
#: the cheapest pair that reaches verdicts; examples/sweep.toml uses forward and finite differences)
SWEEP = dict(count=50, seed=0, problem_options=CHEAP, methods=["DOP853", "RK45"], rtols=[1e-6, 1e-8],
             references=["forward", "adjoint-backsolve"])


def _deterministic(rows):
    return {r["cell_id"]: tuple(r[c] for c in DETERMINISTIC_COLUMNS) for r in rows}


@pytest.fixture(scope="module")
def pool_run(tmp_path_factory):
    """The 200-cell sweep on the local pool of 2 processes, one of which is killed (os.kill of its pid)
    after 60 cells have started: shared by the tests that compare with it."""
    directory = tmp_path_factory.mktemp("kill")
    result = sweep(**SWEEP, workers=2, candidate=KillOnce(directory, after=60))
    return result, directory


@pytest.fixture(scope="module")
def pool_rows(pool_run):
    return pool_run[0].rows


# ---------------------------------------------------------------------------- candidates run on workers
class KillOnce:
    """odeverify's adjoint, except that at its ``after``-th call it kills its own worker process (os.kill of
    its pid, as a crash or the OOM killer would) -- once in the whole sweep."""

    def __init__(self, directory, after):
        self.directory, self.after = Path(directory), after

    def __call__(self, system, z0, ts, theta, loss, **kw):
        calls, flag = self.directory / "calls", self.directory / "killed"
        with open(calls, "a") as fh:
            fh.write(".")
        if not flag.exists() and calls.stat().st_size >= self.after:
            flag.write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)
        return odeverify.adjoint_gradients(system, z0, ts, theta, loss, **kw)


class HangOn:
    """Loops for ever (in Python, as a solver stuck in tiny steps does) on the problem whose z0 is ``z0``."""

    def __init__(self, z0):
        self.z0 = z0

    def __call__(self, system, z0, ts, theta, loss, **kw):
        if float(np.ravel(z0)[0]) == self.z0:
            n = 0
            while True:
                n += 1
        return odeverify.adjoint_gradients(system, z0, ts, theta, loss, **kw)


def decay_or_blowup(seed):
    """dz/dt = a z (fine) for even seeds; dz/dt = z^2 from z0 = 2, which blows up at t = 1/2, for odd ones."""
    if seed % 2:
        system = ODESystem.from_strings("x", "a", ["a*x**2"])
        return system, np.array([2.0]), np.array([0.0, 1.0]), np.array([1.0]), lambda zs: zs[-1, 0] ** 2
    system = ODESystem.from_strings("x", "a", ["-a*x"])
    return system, np.array([1.0]), np.array([0.0, 1.0]), np.array([0.5]), lambda zs: zs[-1, 0] ** 2


# ---------------------------------------------------------------------------- the tests
def test_local_pool_and_local_cluster_give_identical_rows(pool_rows):
    # the pool run lost a worker midway (test_a_worker_killed_midway_yields_every_row_once): its rows are
    # still those of an undisturbed LocalCluster run
    pytest.importorskip("distributed")
    cluster_rows = sweep(**SWEEP, dask_local=2).rows
    assert len(pool_rows) == len(cluster_rows) == 200
    assert len({r["cell_id"] for r in pool_rows}) == 200
    assert _deterministic(pool_rows) == _deterministic(cluster_rows)
    # the rows say something: 50 distinct problems, verdicts of both kinds, work counted
    assert len({r["problem"] for r in pool_rows}) == 50
    statuses = {r["status"] for r in pool_rows}
    assert "passed" in statuses and statuses <= {"passed", "failed", "inconclusive"}
    assert all(r["nfe"] > 0 and r["worst_ratio"] >= 0 for r in pool_rows)


def test_a_worker_killed_midway_yields_every_row_once(pool_run):
    result, directory = pool_run
    assert (directory / "killed").exists(), "the candidate killed a worker"
    ids = [r["cell_id"] for r in result.rows]
    assert len(ids) == len(set(ids)) == 200
    # the killed worker's cell ran again and passed or failed on its merits, not as an error
    assert not [r for r in result.rows if r["status"] == "error"]


@pytest.mark.slow
def test_a_dask_worker_killed_midway_yields_every_row_once(tmp_path, pool_rows):
    pytest.importorskip("distributed")
    result = sweep(**dict(SWEEP, count=3), dask_local=2, candidate=KillOnce(tmp_path, after=5))
    assert (tmp_path / "killed").exists()
    ids = [r["cell_id"] for r in result.rows]
    assert len(ids) == len(set(ids)) == 12  # the scheduler ran the lost worker's cell again
    assert _deterministic(result.rows) == {k: v for k, v in _deterministic(pool_rows).items() if k in set(ids)}


def test_an_interrupted_sweep_resumed_runs_only_the_rest(tmp_path, pool_rows):
    out = tmp_path / "rows.csv"
    sub = dict(SWEEP, count=3)  # cells g0..g2 of the 200-cell sweep: 12 cells
    seen = []

    def stop_after_5(row):
        seen.append(row["cell_id"])
        if len(seen) == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        sweep(**sub, workers=2, output=out, on_row=stop_after_5)
    kept = read_rows(out)
    assert [r["cell_id"] for r in kept] == seen
    again = []
    result = sweep(**sub, workers=2, output=out, resume=True, on_row=lambda r: again.append(r["cell_id"]))
    assert result.ran == 7 and sorted(again + seen) == sorted(r["cell_id"] for r in result.rows)
    assert not set(again) & set(seen)
    on_disk = read_rows(out)
    assert len(on_disk) == 12 and len({r["cell_id"] for r in on_disk}) == 12
    expected = {k: v for k, v in _deterministic(pool_rows).items() if k in {r["cell_id"] for r in on_disk}}
    assert _deterministic(on_disk) == expected == _deterministic(result.rows)


@pytest.mark.parametrize("text, key", [
    ("methods = ['DOP853']\n", "problems"),
    ("methods = ['NOPE']\n[problems]\ncount = 3\n", "NOPE"),
    ("methods = 'DOP853'\n[problems]\ncount = 3\n", "methods"),
    ("rtols = [-1.0]\n[problems]\ncount = 3\n", "rtols"),
    ("colour = 'red'\n[problems]\ncount = 3\n", "colour"),
    ("[problems]\ncount = 3\nn_states = 99\n", "n_states"),
    ("[problems]\ncount = 3\nspecs = ['a.toml']\n", "problems"),
    ("[problems]\nspecs = ['missing.toml']\n", "problems.specs[0]"),
    ("[problems\ncount = 3\n", "not valid TOML"),
    ("references = ['oracle']\n[problems]\ncount = 3\n", "oracle"),
    # each of these ran the whole sweep (every cell an error or inconclusive), or exhausted memory, before
    ("references = [1]\n[problems]\ncount = 3\n", "references"),
    ("references = ['fd']\n[problems]\ncount = 3\n", "two references"),
    ("[problems]\nspecs = ['bad.toml']\n", "problems.specs[0]"),  # a spec file that does not load
    ("[problems]\ncount = 100000000000\n", "more than"),
    ("rtols = [1e-3, 1e-4, 1e-5, 1e-6, 1e-7]\n[problems]\ncount = 300000\n", "more than"),
])
def test_a_bad_spec_exits_2_with_one_clear_line(tmp_path, capsys, text, key):
    spec = tmp_path / "bad.toml"
    spec.write_text(text)
    assert main(["sweep", str(spec), "--workers", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("odeverify sweep: error: ") and key in err, err


def test_a_hanging_cell_is_cut_at_its_time_limit_and_recorded():
    hang_z0 = 1.0
    start = time.perf_counter()
    result = sweep(count=4, factory=decay_or_blowup, methods=["DOP853"], rtols=[1e-8], workers=2,
                   candidate=HangOn(hang_z0), cell_timeout=2.0, references=["forward", "fd"])
    elapsed = time.perf_counter() - start
    by_seed = {r["problem_seed"] % 2: r for r in result.rows}
    hung = [r for r in result.rows if r["problem_seed"] % 2 == 0]
    assert hung and all(r["status"] == "error" and r["error_type"] == "CellTimeout" for r in hung)
    assert all(1.9 < r["wall_time"] < 10 for r in hung)
    assert "time limit of 2 s" in hung[0]["error_message"] and hung[0]["problem"].startswith("dx/dt = -a*x")
    assert by_seed[1]["error_type"] == "IntegrationError"  # the blow-up is an error row, not a crash
    assert elapsed < 60


def test_a_problem_that_blows_up_or_raises_is_a_row():
    result = sweep(count=6, seed=1, factory=decay_or_blowup, methods=["DOP853"], rtols=[1e-8], workers=2,
                   references=["forward", "fd"])
    assert len(result.rows) == 6
    for r in result.rows:
        if r["problem_seed"] % 2:
            assert r["status"] == "error" and r["error_type"] == "IntegrationError" and r["error_message"]
        else:
            assert r["status"] == "passed" and r["error_type"] is None


# ---------------------------------------------------------------------------- files, determinism, API
@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_the_file_holds_the_rows_bit_for_bit(tmp_path, suffix):
    if suffix == ".parquet":
        pytest.importorskip("pyarrow")
    out = tmp_path / f"rows{suffix}"
    result = sweep(count=2, seed=3, problem_options=CHEAP, methods=["RK45"], rtols=[1e-6, 1e-9], workers=1,
                   references=["forward", "fd"], output=out)
    on_disk = sorted(read_rows(out), key=lambda r: r["cell_id"])
    assert on_disk == sorted(result.rows, key=lambda r: r["cell_id"])
    assert all(isinstance(r["worst_ratio"], float) and isinstance(r["nfe"], int) for r in on_disk)


def test_a_seed_draws_the_same_problem_in_another_process():
    from odeverify.sweep._generate import generated_problem

    seeds = [problem_seed(0, i) for i in range(3)]
    here = [repr(generated_problem(s)) for s in seeds]
    code = ("from odeverify.sweep._generate import generated_problem\n"
            f"for s in {seeds}: print(repr(generated_problem(s)))")
    there = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={**os.environ, "PYTHONPATH": str(ROOT)}).stdout.splitlines()
    assert there == here and len(set(here)) == 3


def test_import_odeverify_imports_no_executor_or_file_library():
    code = ("import sys, odeverify; odeverify.sweep; "
            "print(sorted(m for m in ('dask', 'distributed', 'pyarrow', 'rich', 'tqdm', 'hypothesis') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}).stdout.strip()
    assert out == "[]"


def test_bad_arguments_raise_the_packages_errors():
    with pytest.raises(InvalidArgumentError, match="count=N"):
        sweep(methods=["DOP853"])
    with pytest.raises(InvalidArgumentError, match="modes"):
        sweep(count=2, modes=["sideways"])
    with pytest.raises(InvalidArgumentError, match="one executor"):
        sweep(count=2, workers=2, dask_local=2)
    with pytest.raises(InvalidArgumentError, match="not a cell"):
        sweep(count=2, cells=["g7:DOP853:1e-08:interpolated"])


def test_the_cli_summarises_and_reproduces_a_failing_cell(tmp_path, capsys):
    spec = tmp_path / "small.toml"
    spec.write_text("methods = ['RK45']\nrtols = [1e-6]\nreferences = ['forward', 'fd']\n"
                    "[problems]\ncount = 4\nseed = 0\nn_states = 1\nn_times = 2\nn_params = 1\n"
                    "functions = ['poly', 'sin']\nmax_depth = 1\n")
    out = tmp_path / "rows.csv"
    status = main(["sweep", str(spec), "--output", str(out), "--workers", "2", "--no-progress"])
    text = capsys.readouterr().out
    rows = read_rows(out)
    failing = [r for r in rows if r["status"] != "passed"]
    assert status == (1 if failing else 0) and len(rows) == 4
    assert "RK45" in text and "pass rate" in text
    for r in failing:
        assert f"odeverify sweep {spec} --cell {r['cell_id']}" in text
    cell = (failing or rows)[0]
    status = main(["sweep", str(spec), "--cell", cell["cell_id"]])
    text = capsys.readouterr().out
    assert status == (0 if cell["status"] == "passed" else 1)
    assert text.startswith(f"cell {cell['cell_id']}: {cell['status']}") and "check_gradients:" in text


# ---------------------------------------------------------------------------- regressions found in QA
def _fake_rows(**kw):
    """Rows of a sweep's cells as its file would hold them, without running a cell (an error row each)."""
    from odeverify.sweep._cells import error_row

    return [error_row(c, "Stub", "not run") for c in odeverify.sweep.plan(**kw)]


def test_resume_refuses_the_file_of_a_different_sweep(tmp_path):
    from odeverify.sweep._results import open_writer

    out = tmp_path / "rows.csv"
    writer = open_writer(out, _fake_rows(count=2, seed=0, methods=["DOP853"]))
    writer.close()
    for other in (dict(count=2, seed=1, methods=["DOP853"]),  # the same cell ids, other problems
                  dict(count=2, seed=0, methods=["RK45"])):  # other cells: they were silently dropped
        with pytest.raises(InvalidArgumentError, match="different sweep"):
            sweep(**other, output=out, resume=True, workers=1)
    assert len(read_rows(out)) == 2  # untouched


def test_resume_of_some_cells_keeps_the_rows_of_the_others(tmp_path):
    from odeverify.sweep._results import open_writer

    out = tmp_path / "rows.csv"
    kw = dict(count=2, seed=0, methods=["DOP853"])
    open_writer(out, _fake_rows(**kw)).close()
    result = sweep(**kw, output=out, resume=True, cells=["g0:DOP853:1e-08:interpolated"], workers=1)
    assert result.ran == 0 and len(read_rows(out)) == 2


def test_an_unwritable_output_or_an_absent_scheduler_is_one_line_exit_2(tmp_path, capsys):
    spec = tmp_path / "s.toml"
    spec.write_text("[problems]\ncount = 1\nn_states = 1\nn_times = 2\n")
    for extra, key in ((["--output", str(tmp_path / "no" / "such" / "dir.csv")], "cannot write"),
                       (["--output", str(tmp_path / "no" / "dir.parquet")], "cannot write"),
                       (["--scheduler", "no-port-here", "--output", str(tmp_path / "r.csv")], "no Dask scheduler")):
        assert main(["sweep", str(spec), "--no-progress", *extra]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and key in err, err


def test_sigterm_stops_the_workers_and_keeps_the_rows(tmp_path):
    spec = tmp_path / "s.toml"
    spec.write_text("references = ['forward', 'adjoint-backsolve']\n[problems]\ncount = 300\nn_states = 1\n"
                    "n_times = 2\nn_params = 1\nfunctions = ['poly']\nmax_depth = 1\n")
    out = tmp_path / "rows.csv"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "odeverify.cli", "sweep", str(spec), "--output", str(out),
                             "--workers", "2", "--no-progress"], env=env, cwd=tmp_path, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not read_rows(out) and time.monotonic() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    err = proc.communicate(timeout=30)[1]  # hung before: the orphaned workers held stderr open
    for _ in range(50):  # the forkserver and the resource tracker exit once their pipes close
        left = subprocess.run(["pgrep", "-s", str(proc.pid)], capture_output=True, text=True).stdout.split()
        if not left:
            break
        time.sleep(0.1)
    for pid in left:  # do not leak them into the rest of the test run
        os.kill(int(pid), signal.SIGKILL)
    assert proc.returncode == 143 and "--resume" in err, err
    assert not left, "the pool's processes outlived the sweep"
    assert 0 < len(read_rows(out)) < 300


def test_the_summary_says_why_a_cell_did_not_pass():
    from odeverify.sweep import SweepResult

    base = dict.fromkeys(odeverify.sweep.COLUMNS)
    taylor = dict(base, cell_id="a", method="RK45", rtol=1e-6, mode="interpolated", status="failed",
                  worst_entry="x", worst_ratio=0.05, taylor_rate=1.78)
    inconclusive = dict(taylor, cell_id="b", status="inconclusive", worst_entry=None, worst_ratio=None,
                        taylor_rate=None)
    text = SweepResult(rows=[taylor, inconclusive]).summary()
    assert "Taylor test: rate 1.78" in text and "0.05 x tolerance" not in text
    assert "b  inconclusive  some entries have no verdict" in text


def test_the_progress_bar_draws_on_a_terminal_of_size_zero(monkeypatch):
    from odeverify.sweep._run import _progress_bar

    pytest.importorskip("tqdm")
    master, slave = os.openpty()  # a fresh pty reports 0 x 0, as some CI and container ptys do
    with os.fdopen(slave, "w") as stream:
        monkeypatch.setattr(sys, "stderr", stream)
        update = _progress_bar(2, None)
        update({"status": "passed"})
        update(None)
    monkeypatch.undo()
    import select

    chunks = []  # every write tqdm made: one os.read returns only what the pty holds at that moment
    while select.select([master], [], [], 0.2)[0]:
        try:
            data = os.read(master, 10000)
        except OSError:  # the writing end is closed and drained
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    text = b"".join(chunks).decode()
    assert "1/2" in text and "cell" in text, text
