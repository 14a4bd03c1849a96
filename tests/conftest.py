"""Shared fixtures: a tiny Llama model with a locally trained tokenizer, built once per test session."""

from pathlib import Path

import pytest


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
'''


@pytest.fixture(scope="session")
def ray_cluster(tmp_path_factory):
    """A real local Ray cluster for the session; a plug-in environment module is importable in every worker."""
    import os
    import sys

    import ray

    plugins = tmp_path_factory.mktemp("plugins")
    (plugins / "score_test_plugins.py").write_text(PLUGIN_MODULE)
    sys.path.insert(0, str(plugins))
    pythonpath = os.pathsep.join([str(plugins), os.getcwd()])
    ray.init(num_cpus=4, include_dashboard=False, runtime_env={"env_vars": {"PYTHONPATH": pythonpath}})
    yield ray
    ray.shutdown()
