"""The pytest plugin (odeverify.pytest_plugin), run in fresh pytest sessions with pytester.

The plugin arrives through its pytest11 entry point when odeverify is installed (CI) and with
``-p odeverify.pytest_plugin`` from a source tree; ``run`` below picks the right one.
"""

import configparser
import os
from pathlib import Path

import pytest

from helpers import plugin_autoloaded

ROOT = Path(__file__).resolve().parents[1]

# a candidate that is right except for dL/dtheta, off by a relative 1e-3
HEADER = '''
import numpy as np
import pytest
import odeverify
from odeverify import catalog

PROBLEM = catalog.exponential()
REFS = ["forward", "fd"]


def off_by(rel):
    def candidate(z0, ts, theta):
        g = odeverify.adjoint_gradients(PROBLEM.system, z0, ts, theta, PROBLEM.loss, rtol=1e-10, atol=1e-10).as_dict()
        g["theta"] = g["theta"] * (1 + rel)
        return g
    return candidate
'''


def run(pytester, *args, subprocess=False):
    plugin = [] if plugin_autoloaded() else ["-p", "odeverify.pytest_plugin"]
    if subprocess:
        return pytester.runpytest_subprocess(*plugin, "-p", "no:cacheprovider", *args)
    return pytester.runpytest_inprocess(*plugin, "-p", "no:cacheprovider", *args)


@pytest.fixture
def source_tree(monkeypatch):
    # subprocesses import odeverify from this checkout (PYTHONPATH=. is relative to the old directory)
    monkeypatch.setenv("PYTHONPATH", str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))


def test_fixture_returns_the_report_when_the_check_passes(pytester):
    pytester.makepyfile(HEADER + '''
def test_passes(gradient_check):
    report = gradient_check(*PROBLEM.args(), candidate=off_by(0.0), references=REFS)
    assert report.passed and "PASSED" in str(report)
''')
    run(pytester).assert_outcomes(passed=1)


def test_the_fixture_passes_quantities_through(pytester):
    pytester.makepyfile(HEADER + '''
def no_t(z0, ts, theta):
    return {**off_by(0.0)(z0, ts, theta), "t": None}

def test_missing_t_fails(gradient_check):
    with pytest.raises(AssertionError, match="gives no ∂L/∂t"):
        gradient_check(*PROBLEM.args(), candidate=no_t, references=REFS)

def test_restricted(gradient_check):
    report = gradient_check(*PROBLEM.args(), candidate=no_t, references=REFS, quantities=("z0", "theta"))
    assert "not checked: ∂L/∂t" in report.summary
''')
    run(pytester).assert_outcomes(passed=2)


def test_a_failed_check_fails_with_the_report_table(pytester):
    pytester.makepyfile(HEADER + '''
def test_fails(gradient_check):
    gradient_check(*PROBLEM.args(), candidate=off_by(1e-3), references=REFS)
''')
    result = run(pytester)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "E*check_gradients: FAILED — ∂L/∂θ[[]0[]] (a) is off by 0.1%*",
        "E*quantity*candidate*reference*|diff|*tolerance*ratio*refs*status",
        "E*∂L/∂x(t0)*ok",
        "E*∂L/∂θ[[]0[]] (a)*FAIL",
        "*AssertionError",
    ])


def test_the_marker_sets_the_tolerances_and_the_call_wins(pytester):
    pytester.makepyfile(HEADER + '''
@pytest.mark.gradient_tolerance(rtol=1e-2)
def test_loose(gradient_check):
    assert gradient_check(*PROBLEM.args(), candidate=off_by(1e-3), references=REFS).rtol == 1e-2

def test_default(gradient_check):
    gradient_check(*PROBLEM.args(), candidate=off_by(1e-3), references=REFS)

@pytest.mark.gradient_tolerance(rtol=1e-2)
def test_call_wins(gradient_check):
    gradient_check(*PROBLEM.args(), candidate=off_by(1e-3), references=REFS, rtol=1e-5)

@pytest.mark.gradient_tolerance(rtol=1e-2)
class TestClass:
    def test_inherits(self, gradient_check):
        gradient_check(*PROBLEM.args(), candidate=off_by(1e-3), references=REFS)

    @pytest.mark.gradient_tolerance(rtol=1e-6)
    def test_closest_wins(self, gradient_check):
        gradient_check(*PROBLEM.args(), candidate=off_by(1e-3), references=REFS)
''')
    result = run(pytester, "-rA")
    result.assert_outcomes(passed=2, failed=3)
    result.stdout.fnmatch_lines_random([
        "PASSED*test_loose", "PASSED*TestClass::test_inherits",
        "FAILED*test_default*", "FAILED*test_call_wins*", "FAILED*TestClass::test_closest_wins*",
    ])


def test_markers_at_several_levels_combine_key_by_key(pytester):
    # found from outside: the closest marker replaced the others whole, dropping their other keys
    pytester.makepyfile(HEADER + """
pytestmark = pytest.mark.gradient_tolerance(rtol=1e-2)

@pytest.mark.gradient_tolerance(atol=1e-9)
def test_both(gradient_check):
    report = gradient_check(*PROBLEM.args(), candidate=off_by(1e-3), references=REFS)
    assert report.rtol == 1e-2
    for r in report.rows:  # tolerance = rtol |reference| + atol + 3 (reference error)
        atol = r.tolerance - 1e-2 * abs(r.reference) - 3 * r.ref_error
        assert abs(atol - 1e-9) <= 1e-12 * max(1.0, abs(r.reference))

@pytest.mark.gradient_tolerance(rtol=1e-6)
def test_closest_rtol_wins(gradient_check):
    gradient_check(*PROBLEM.args(), candidate=off_by(1e-3), references=REFS)
""")
    result = run(pytester, "-rA")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines_random(["PASSED*test_both", "FAILED*test_closest_rtol_wins*"])


@pytest.mark.parametrize("marker, message", [
    ("gradient_tolerance(1e-3)", "takes keyword arguments only"),
    ("gradient_tolerance(rtol=1e-3, references=['fd'])", "unknown arguments ?'references'?; it takes rtol and atol"),
    ("gradient_tolerance(rtol='tight')", "rtol must be a number"),
])
def test_a_misused_marker_is_an_error_naming_the_fix(pytester, marker, message):
    pytester.makepyfile(HEADER + f'''
@pytest.mark.{marker}
def test_misused(gradient_check):
    pass
''')
    result = run(pytester)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([f"*{message}*"])


def test_the_marker_is_registered(pytester):
    pytester.makepyfile(HEADER + '''
@pytest.mark.gradient_tolerance(atol=1e-12)
def test_marked():
    pass
''')
    run(pytester, "--strict-markers").assert_outcomes(passed=1)
    run(pytester, "--markers").stdout.fnmatch_lines(["@pytest.mark.gradient_tolerance(rtol=None, atol=None)*"])


def test_the_hypothesis_profiles_are_selected_on_the_command_line(pytester, source_tree):
    # in a subprocess: loading a profile changes hypothesis's global settings
    pytester.makepyfile('''
from hypothesis import given, settings, strategies as st

def test_profile():
    assert settings.default.max_examples == 10
    assert settings.default.deadline is None
    assert settings.default.derandomize is True
    assert settings.default.database is None

calls = []

@given(st.integers())
def test_runs_the_profiles_examples(i):
    calls.append(i)

def test_count():
    assert len(calls) == 10
''')
    run(pytester, "--hypothesis-profile=odeverify-ci", subprocess=True).assert_outcomes(passed=3)


def test_the_thorough_profile():
    from hypothesis import HealthCheck, Phase, settings

    thorough = settings.get_profile("odeverify-thorough")
    assert thorough.max_examples == 300 and thorough.deadline is None and not thorough.derandomize
    assert HealthCheck.too_slow in thorough.suppress_health_check
    assert Phase.shrink in thorough.phases
    assert Phase.explain not in settings.get_profile("odeverify-ci").phases


def test_the_profiles_do_not_inherit_the_environments_profile():
    # found by CI: with CI=true hypothesis loads its own derandomized "ci" profile on import, and a
    # profile registered without a parent inherited it, so the nightly "thorough" run drew the same
    # 300 examples every night
    import subprocess
    import sys

    code = (
        "from hypothesis import settings\n"
        "assert settings.default.derandomize, 'the environment profile should be derandomized here'\n"
        "import odeverify.pytest_plugin as p\n"
        "p.register_profiles()\n"
        "t = settings.get_profile('odeverify-thorough')\n"
        "c = settings.get_profile('odeverify-ci')\n"
        "print(t.derandomize, t.max_examples, c.derandomize, c.max_examples)\n"
    )
    env = dict(os.environ, CI="true", PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "300", "True", "10"]


def test_the_entry_point_is_declared():
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    entries = [line.strip() for line in cfg["options.entry_points"]["pytest11"].strip().splitlines()]
    assert entries == ["odeverify = odeverify.pytest_plugin"]
    assert "hypothesis" in cfg["options.extras_require"]["hypothesis"]


def test_the_fixture_works_inside_given_tests_and_reads_their_marker(pytester):
    # found from outside: a function-scoped fixture fails hypothesis's health check inside @given
    pytester.makepyfile(HEADER + '''
from hypothesis import given, settings, strategies as st


@settings(max_examples=3, deadline=None, database=None)
@given(k=st.sampled_from([0.5, 1.0, 1.5]))
def test_given_passes(gradient_check, k):
    gradient_check(*catalog.exponential(a=k).args(), references=["forward", "fd"])


def check_one_percent_off(gradient_check, k):
    problem = catalog.exponential(a=k)
    exact = problem.exact_gradients()
    gradient_check(*problem.args(), candidate=lambda z0, ts, th: {**exact, "theta": 1.01 * exact["theta"]},
                  references=REFS)


@pytest.mark.gradient_tolerance(rtol=0.5)
@settings(max_examples=3, deadline=None, database=None)
@given(k=st.sampled_from([0.5, 1.0, 1.5]))
def test_given_marker_loose(gradient_check, k):
    check_one_percent_off(gradient_check, k)


@settings(max_examples=3, deadline=None, database=None)
@given(k=st.sampled_from([0.5, 1.0, 1.5]))
def test_given_default_tolerance_fails(gradient_check, k):
    check_one_percent_off(gradient_check, k)
''')
    result = run(pytester)
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*FAILED*test_given_default_tolerance_fails*"])


def test_given_tests_with_the_fixture_run_without_the_default_deadline(pytester, source_tree, monkeypatch):
    # a gradient check takes longer than hypothesis's default 200 ms deadline: a @given test that asks for
    # gradient_check must not fail for that; one that sets its own deadline keeps it, and a test without
    # the fixture keeps hypothesis's default. In a subprocess outside CI: this suite's own profile (and
    # hypothesis's "ci" profile under CI=true) have no deadline at all
    monkeypatch.delenv("CI", raising=False)
    pytester.makepyfile('''
import time
from datetime import timedelta
from hypothesis import given, settings, strategies as st

@settings(max_examples=2, database=None)
@given(st.integers(0, 3))
def test_slow_gradient_test(gradient_check, k):
    time.sleep(0.3)

@settings(max_examples=2, database=None, deadline=timedelta(milliseconds=50))
@given(st.integers(0, 3))
def test_own_deadline_is_kept(gradient_check, k):
    time.sleep(0.3)

@settings(max_examples=2, database=None)
@given(st.integers(0, 3))
def test_without_the_fixture(k):
    time.sleep(0.3)
''')
    result = run(pytester, "-v", subprocess=True)
    result.assert_outcomes(passed=1, failed=2)
    out = result.stdout.str()
    assert "test_slow_gradient_test PASSED" in out
    assert "test_own_deadline_is_kept FAILED" in out and "test_without_the_fixture FAILED" in out
    assert "DeadlineExceeded" in out
