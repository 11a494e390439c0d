"""The README's Quick start and .ci/run stay the same two commands."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def quick_start_commands():
    text = (ROOT / "README.md").read_text()
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return [block.strip() for block in re.findall(r"```sh\n(.*?)```", section, flags=re.S)]


def test_quick_start_has_exactly_two_commands():
    cmds = quick_start_commands()
    assert len(cmds) == 2
    assert all("\n" not in c for c in cmds)
    assert "pip install" in cmds[0] and "odeverify" in cmds[0]
    assert "pytest" in cmds[1]


def test_ci_runs_the_same_commands():
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    for cmd in quick_start_commands():
        assert cmd in ci


# ---------------------------------------------------------------- every block runs as written (issue 11)
import shutil
import subprocess

import numpy as np
import pytest

from odeverify.cli import _parser
from odeverify.spec import parse_spec

README = (ROOT / "README.md").read_text()
PYTHON_BLOCKS = re.findall(r"```python\n(.*?)```", README, flags=re.S)
#: the hypothesis example is run, and its counterexample checked, by tests/test_readme_example.py
RUN_ELSEWHERE = "def test_my_gradient"
#: blocks that train a network: seconds of work, run with -m slow
SLOW = ("ov.fit(",)
#: frameworks of the optional extras (torch, jax): a block importing one runs only where it is installed
OPTIONAL = {"torch": "torch", "torchdiffeq": "torch", "jax": "jax", "diffrax": "jax"}


def _missing_extra(code):
    """The extra a block needs and this environment lacks (None when it can run)."""
    import importlib.util

    for module, extra in OPTIONAL.items():
        if re.search(rf"^\s*(import|from)\s+{module}\b", code, flags=re.M) and importlib.util.find_spec(module) is None:
            return module, extra
    return None


def _block_params():
    params = []
    for i, code in enumerate(PYTHON_BLOCKS):
        if RUN_ELSEWHERE in code:
            continue
        first = code.strip().splitlines()[-1][:40]
        marks = [pytest.mark.slow] if any(s in code for s in SLOW) else []
        missing = _missing_extra(code)
        if missing:
            marks.append(pytest.mark.skip(reason=f"needs {missing[0]}: pip install 'odeverify[{missing[1]}]'"))
        params.append(pytest.param(code, id=f"block{i}:{first}", marks=marks))
    return params


def test_every_python_block_is_run_by_a_test():
    assert len(_block_params()) + 1 == len(PYTHON_BLOCKS) >= 5
    assert any(RUN_ELSEWHERE in code for code in PYTHON_BLOCKS)


@pytest.mark.parametrize("code", _block_params())
def test_python_block_runs_as_written(code, monkeypatch):
    # each block is complete: it runs alone, in a fresh namespace, from the repository's root
    monkeypatch.chdir(ROOT)
    exec(compile(code, "<README block>", "exec"), {"__name__": "readme_block"})


def test_the_toml_block_is_a_valid_spec_whose_paths_resolve():
    (block,) = re.findall(r"```toml\n(.*?)```", README, flags=re.S)
    where = re.match(r"# (\S+\.toml)\n", block)
    assert where, "the block says where it lives, so its relative paths mean something"
    base = (ROOT / where.group(1)).parent
    problem = parse_spec(block, source=where.group(1), base_dir=base)
    assert problem.system.state_names == ("x", "y") and problem.solver["method"] == "DOP853"
    # the loss's file holds the observation times; ts is what it says
    times = np.loadtxt(ROOT / "data" / "lotka_volterra.csv", delimiter=",", skiprows=1, usecols=0)
    np.testing.assert_array_equal(problem.ts, times)


def _shell_blocks():
    return [b.strip() for b in re.findall(r"```sh\n(.*?)```", README, flags=re.S)]


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_shell_blocks_are_valid_shell_naming_existing_files():
    for block in _shell_blocks():
        subprocess.run(["bash", "-n", "-c", block], check=True)
        for path in re.findall(r"\b(?:examples|data)/[\w./-]+", block):
            assert (ROOT / path).exists(), path


def test_the_command_line_synopsis_uses_real_commands_and_options():
    section = README.split("## Command line", 1)[1].split("\n## ", 1)[0]
    (synopsis,) = re.findall(r"```\n(.*?)```", section, flags=re.S)[:1]
    parser = _parser()
    for line in synopsis.strip().splitlines():
        words = line.replace("[", " ").replace("]", " ").replace("...", " ").split()
        if words[:3] == ["python", "-m", "odeverify"]:
            continue
        assert words[0] == "odeverify", line
        argv = ["spec.toml" if w == "SPEC" else w for w in words[1:]]
        args, unknown = parser.parse_known_args(argv)
        assert not unknown, (line, unknown)
