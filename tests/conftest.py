"""Shared fixtures: a tiny Llama model with a locally trained tokenizer, built once per test session."""

from pathlib import Path

import pytest

from score.terminal import quiet_interpreter_teardown

quiet_interpreter_teardown()  # no native extension's leak report after the test summary


def pip_install_target(source: Path, target: Path) -> Path:
    """pip-install the package at `source` into the private directory `target` (the venv stays untouched).

    pip writes the same *.dist-info/entry_points.txt it would write into site-packages, so with `target` on the path
    importlib.metadata finds the package's entry points exactly as for an ordinary install."""
    import subprocess
    import sys

    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
         "--no-compile", "--target", str(target), str(source)],
        check=True, capture_output=True, timeout=300,
    )
    return target


@pytest.fixture
def pip_install():
    return pip_install_target


def readme_code_blocks(heading: str, language: str) -> list[str]:
    """The ```language blocks of README.md's section `heading` (a whole heading line, e.g. "## Interop: ..."), which
    ends at the next heading of the same or a higher level."""
    import re

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert heading in text, f"no {heading!r} section in README.md"
    level = len(heading) - len(heading.lstrip("#"))
    section = re.split(rf"^#{{1,{level}}} ", text.split(heading, 1)[1], flags=re.MULTILINE)[0]
    return re.findall(rf"```{language}\n(.*?)```", section, flags=re.DOTALL)


@pytest.fixture
def readme_blocks():
    """`readme_blocks(heading, language)`: the README examples a test runs as written."""
    return readme_code_blocks


@pytest.fixture(scope="session")
def vllm_eager() -> list[str]:
    """`score train` overrides that start vLLM without torch.compile, with a small KV cache and in the rollout actor's
    own process: the compile costs a tiny model ~30 s per engine start on 2 cores and the child processes ~30 s more,
    while these runs generate a few hundred tokens. The compiled engine and the child processes have their own tests
    (test_vllm_engine.py)."""
    return ["rollout.engine_kwargs.enforce_eager=true", "rollout.engine_kwargs.kv_cache_memory_bytes=67108864",
            "rollout.engine_kwargs.in_process=true"]


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory) -> Path:
    from score.tiny import build_tiny_model, default_corpus

    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny", default_corpus(), seed=0)


PLUGIN_MODULE = '''
from envs.base import Environment, Problem


class AnyDigitEnv(Environment):
    """Reward 1 when the attempt contains a digit: random tiny models hit it often enough to give a gradient."""

    correction_instruction = "Try again."

    def load(self, split):
        return [Problem(id=str(i), prompt=f"{i}+0=", reference=str(i)) for i in range(10)]

    def reward(self, attempt, problem):
        return float(any(ch.isdigit() for ch in attempt))


class FeedbackDigitEnv(AnyDigitEnv):
    """AnyDigitEnv that tells the model, before attempt 2, what it wrote and whether it had a digit: feedback that
    quotes model output, as test or tool output does."""

    feedback_mode = "echo"

    def feedback(self, problem, attempt):
        return f"You wrote {attempt[:40]!r}: {'a digit' if self.reward(attempt, problem) else 'no digit'}."


class VoteEnv(Environment):
    """Self-training without labels on a random tiny model: an answer votes for the sum of its character codes mod 3,
    so samples agree often. Problem i's gold label is (i + label_shift) mod 3 in the train split (unshifted in the
    'valid' and 'test' splits), so a test can change every train label and nothing else."""

    correction_instruction = "Try again."

    def __init__(self, label_shift=0, **overrides):
        super().__init__(**overrides)
        self.label_shift = label_shift

    def load(self, split):
        shift = self.label_shift if split == "train" else 0
        return [Problem(id=f"{split}-{i}", prompt=f"{i}+0=", reference=str((i + shift) % 3)) for i in range(12)]

    def answer_key(self, attempt, problem):
        return str(sum(map(ord, attempt)) % 3) if attempt.strip() else None

    def reward(self, attempt, problem):
        return float(self.answer_key(attempt, problem) == problem.reference)
'''


PLUGIN_PYPROJECT = '''
[build-system]
requires = ["setuptools"]
build-backend = "setuptools.build_meta"

[project]
name = "score-test-plugins"
version = "0.0.1"

[tool.setuptools]
py-modules = ["score_test_plugins"]

[project.entry-points."score.envs"]
any_digit = "score_test_plugins:AnyDigitEnv"
'''


@pytest.fixture(scope="session")
def ray_cluster(tmp_path_factory):
    """A real local Ray cluster for the session; a plug-in environment module is importable in every worker."""
    import os
    import sys

    import ray

    # A real plug-in package: pip installs it (with its score.envs entry point) into a private directory that every
    # Ray worker has on its PYTHONPATH, so both `any_digit` and `score_test_plugins:AnyDigitEnv` resolve everywhere.
    source = tmp_path_factory.mktemp("plugin_src")
    (source / "score_test_plugins.py").write_text(PLUGIN_MODULE)
    (source / "pyproject.toml").write_text(PLUGIN_PYPROJECT)
    plugins = tmp_path_factory.mktemp("plugins")
    pip_install_target(source, plugins)
    sys.path.insert(0, str(plugins))
    pythonpath = os.pathsep.join([str(plugins), os.getcwd()])
    env_vars = {"PYTHONPATH": pythonpath, "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
    ray.init(num_cpus=4, include_dashboard=False, runtime_env={"env_vars": env_vars})
    yield ray
    ray.shutdown()
