"""The README's hypothesis example, run as written: hypothesis finds the planted bug and shrinks it.

The code block is read from README.md (so the two cannot drift), imported as a module, and its test
run directly. Every call of assert_gradients_close is recorded: hypothesis replays the shrunk example
last, so the last call is the counterexample it reports.
"""

import importlib.util
import re
import sys
from pathlib import Path

import autograd
import numpy as np
import pytest

import odeverify
import odeverify.testing
from odeverify.strategies import Problem

ROOT = Path(__file__).resolve().parents[1]
SECTION = "## Property-based tests with hypothesis"


def readme_section():
    return (ROOT / "README.md").read_text().split(SECTION, 1)[1].split("\n## ", 1)[0]


def load_example(tmp_path, monkeypatch):
    """Import the README's python block as a module whose assert_gradients_close records its calls."""
    code = re.findall(r"```python\n(.*?)```", readme_section(), flags=re.S)[0]
    calls = []
    original = odeverify.testing.assert_gradients_close

    def recording(*args, **kwargs):
        calls.append((Problem(*args[:5]), kwargs))
        return original(*args, **kwargs)

    monkeypatch.setattr(odeverify.testing, "assert_gradients_close", recording)
    path = tmp_path / "readme_example.py"
    path.write_text(code)
    spec = importlib.util.spec_from_file_location("readme_example", path)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "readme_example", module)
    spec.loader.exec_module(module)
    return module, calls


def test_the_example_is_ten_lines_or_so():
    code = re.findall(r"```python\n(.*?)```", readme_section(), flags=re.S)[0]
    lines = [line for line in code.splitlines() if line.strip()]
    assert len(lines) <= 14
    assert "odeverify.strategies import problems" in code and "assert_gradients_close" in code


def test_hypothesis_finds_the_planted_bug_and_shrinks_it_to_a_small_problem(tmp_path, monkeypatch):
    module, calls = load_example(tmp_path, monkeypatch)
    with pytest.raises(AssertionError) as info:
        module.test_my_gradient()
    message = str(info.value)
    notes = "\n".join(getattr(info.value, "__notes__", []))
    assert "check_gradients: FAILED" in message
    # hypothesis's wording: "Falsifying example:" before 6.1xx, "Failing test case:" since
    assert re.search(r"(Falsifying example|Failing test case): test_my_gradient\(", notes), notes

    shrunk, _ = calls[-1]
    assert f"p={shrunk!r}" in notes
    # small: one state, one parameter, two times, and the loss uses t0 (where the bug is)
    assert shrunk.system.n_states == 1 and shrunk.system.n_params == 1 and len(shrunk.ts) == 2
    assert 0 in shrunk.loss.times
    # the README shows exactly this counterexample
    assert f"p={shrunk!r}," in readme_section()
    # and it fails for the planted reason only: dL/dz0 lacks dL/dz(t0) (autograd on the loss alone)
    report = odeverify.check_gradients(*shrunk, references=["forward", "fd"],
                                       candidate=lambda z0, ts, theta: module.my_gradient(shrunk.system, z0, ts,
                                                                                        theta, shrunk.loss))
    assert {r.quantity for r in report.failures} == {"z0"}
    right = odeverify.adjoint_gradients(*shrunk, rtol=1e-10, atol=1e-10)
    buggy = module.my_gradient(*shrunk)
    direct = autograd.grad(shrunk.loss)(right.zs)[0]
    np.testing.assert_allclose(right.z0 - buggy["z0"], direct, rtol=1e-12)
    assert np.all(direct != 0)


def test_without_the_bug_the_same_test_passes(tmp_path, monkeypatch):
    module, calls = load_example(tmp_path, monkeypatch)

    def fixed(system, z0, ts, theta, loss):
        return odeverify.adjoint_gradients(system, z0, ts, theta, loss, rtol=1e-10, atol=1e-10).as_dict()

    monkeypatch.setattr(module, "my_gradient", fixed)
    module.test_my_gradient()
    assert len(calls) >= 2
