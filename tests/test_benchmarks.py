"""Smoke run of the Neural ODE benchmark, and the memory claim it prints."""

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_quick_run_prints_both_tables_and_backsolve_memory_is_flat(capsys):
    spec = importlib.util.spec_from_file_location("bench_neural_ode", ROOT / "benchmarks" / "neural_ode.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    peaks, steps = module.main(["--quick"])
    out = capsys.readouterr().out
    assert "1. One gradient" in out and "2. tracemalloc peak" in out
    for T in ("1", "10", "100"):
        for mode in ("backsolve", "interpolated", "quadrature"):
            assert any(line.split()[:2] == [T, mode] for line in out.splitlines()), (T, mode)
    # steps grow tens of times from T = 1 to T = 100; the backsolve peak does not follow, the
    # interpolated one (which keeps every step's interpolant) does
    assert steps[100.0, "backsolve"] > 20 * steps[1.0, "backsolve"]
    assert peaks[100.0, "backsolve"] < 1.5 * peaks[1.0, "backsolve"]
    assert peaks[100.0, "interpolated"] > 5 * peaks[1.0, "interpolated"]
    # quadrature keeps the forward and the backward steps' dense output: O(steps) like interpolated,
    # within a small factor of it (its kernel temporaries are bounded by QUADRATURE_CHUNK)
    assert peaks[100.0, "quadrature"] > 5 * peaks[1.0, "quadrature"]
    assert peaks[100.0, "quadrature"] < 2 * peaks[100.0, "interpolated"]


def _load_benchmark(name):
    """Import ``benchmarks/<name>.py`` as a module (the benchmarks are scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def test_verdicts_quick_run_prints_the_odeverify_rows_and_passes_correct_gradients(capsys):
    module = _load_benchmark("verdicts")
    rows = module.main(["--quick", "--only", "odeverify", "--no-write"])
    out = capsys.readouterr().out
    problems = [line[3:] for line in out.splitlines() if line.startswith("== ")]
    assert len(set(problems)) == 3
    tables = out.split("\n\n")
    for name in set(problems):
        section = next(t for t in tables if t.startswith(f"== {name}\ntool"))
        whats = [line.split()[1] for line in section.splitlines()[3:] if line.startswith("odeverify")]
        assert {"adjoint_gradients", "check_gradients", "taylor_test"} <= set(whats), (name, whats)
        assert f"{name}:" in out and "check_gradients / adjoint_gradients = " in out
    # --only odeverify: no peer row, nothing imported from torch or JAX for it
    assert {r.tool for r in rows} == {"odeverify"}
    # every problem's gradient is correct (the adjoint of a smooth field): both verdicts must pass
    for r in rows:
        if r.what in ("check_gradients", "taylor_test"):
            assert r.passed is True, (r.problem, r.what, r.note)
    # the references' own seconds add up to at most the whole check
    for r in rows:
        if r.what == "check_gradients":
            assert 0 < sum(r.parts.values()) <= r.timing.first
