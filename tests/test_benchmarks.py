"""Smoke run of the Neural ODE benchmark, and the memory claim it prints."""

import importlib.util
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
