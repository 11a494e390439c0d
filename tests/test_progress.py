"""The ``progress`` hook of check_gradients and fit (issue 13): what is reported, in which order."""

import pytest

import odeverify as ov
from odeverify import catalog
from odeverify.errors import InvalidTypeError


def test_check_gradients_reports_the_candidate_then_each_reference():
    events = []
    prob = catalog.exponential()
    report = ov.check_gradients(*prob.args(), references=["forward", "fd", "forward"], progress=events.append)
    assert report.passed
    seen = [(e.stage, e.index, e.total, e.status) for e in events]
    assert seen == [
        ("candidate", 0, 1, "start"), ("candidate", 0, 1, "done"),
        ("reference", 0, 3, "start"), ("reference", 0, 3, "done"),
        ("reference", 1, 3, "start"), ("reference", 1, 3, "done"),
        ("reference", 2, 3, "start"), ("reference", 2, 3, "skipped"),  # the same source twice counts once
    ]
    assert [e.name for e in events[2::2]] == ["forward sensitivities", "finite differences", "forward sensitivities"]
    assert events[-1].detail == "given twice"
    done = [e for e in events if e.status == "done"]
    assert all(e.seconds >= 0 for e in done) and sum(e.seconds for e in done) > 0


def test_a_failed_check_reports_its_diagnosis():
    prob = catalog.exponential()
    args = prob.args()

    def wrong(z0, ts, theta):
        g = ov.adjoint_gradients(*args).as_dict()
        return {**g, "theta": -g["theta"]}

    events = []
    report = ov.check_gradients(*args, candidate=wrong, references=["forward", "fd"], progress=events.append)
    assert not report.passed
    assert [(e.stage, e.status) for e in events[-2:]] == [("diagnose", "start"), ("diagnose", "done")]
    assert events[0].name == "wrong"


def test_fit_reports_every_step():
    data = ov.TrajectoryData.from_arrays([0, 0, 0], [0.0, 0.5, 1.0], [[1.0], [0.61], [0.37]])
    events = []
    res = ov.fit(ov.MLPField((1, 1)), data, theta0=[0.0, 0.0], optimizer="gd", steps=5, progress=events.append)
    assert [(e.stage, e.index, e.total, e.status) for e in events] == [("fit", k, 5, "done") for k in range(5)]
    assert events[-1].detail == f"loss {res.loss_history[-1]:.4g}"


def test_progress_must_be_callable():
    prob = catalog.exponential()
    with pytest.raises(InvalidTypeError, match="progress must be None or a callable"):
        ov.check_gradients(*prob.args(), references=["forward"], progress="yes")


def test_check_draws_its_progress_on_a_terminal_that_reports_no_size():
    # a pty never given a size (docker exec, some CI runners) reports 0 × 0; tqdm then drew nothing at all
    # (no column, no row), so "odeverify check" looked silent on such a terminal
    pytest.importorskip("tqdm")
    pty = pytest.importorskip("pty")
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    env["PYTHONPATH"] = str(root) + os.pathsep + env.get("PYTHONPATH", "")
    master, slave = pty.openpty()
    try:
        assert os.get_terminal_size(slave) == (0, 0)
        proc = subprocess.run(
            [sys.executable, "-m", "odeverify", "check", str(root / "examples" / "exponential.toml"),
             "--references", "forward,fd"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=slave, env=env, timeout=120,
        )
        os.set_blocking(master, False)  # nothing drawn must fail the test, not hang it
        try:
            drawn = os.read(master, 65536).decode()
        except BlockingIOError:
            drawn = ""
    finally:
        os.close(master)
        os.close(slave)
    assert proc.returncode == 0
    assert "odeverify check" in drawn and "reference 2/2: finite" in drawn
