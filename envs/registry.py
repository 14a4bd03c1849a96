"""Find an environment by name: built-ins, the `score.envs` entry-point group, or a `module.path:ClassName` string."""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import Any

from envs.base import Environment

ENTRY_POINT_GROUP = "score.envs"

# name -> "module:Class"; imported lazily so that listing names never pulls in heavy optional dependencies.
BUILTIN: dict[str, str] = {
    "arithmetic": "envs.arithmetic:ArithmeticEnv",
    "math": "envs.math_env:MATHEnv",
    "math500": "envs.math_env:MATH500Env",
    "gsm8k": "envs.math_env:GSM8KEnv",
    "math_dataset": "envs.math_env:MathEnv",
    "humaneval": "envs.code_env:HumanEvalEnv",
    "mbpp": "envs.code_env:MBPPEnv",
    "reasoning_gym": "envs.reasoning_gym_env:ReasoningGymEnv",
    "word_problems": "envs.word_problems:WordProblemsEnv",
}


def _load_class(target: str) -> type[Environment]:
    module_name, _, class_name = target.partition(":")
    if not class_name:
        raise ValueError(f"environment {target!r}: expected 'module.path:ClassName'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ValueError(f"environment {target!r}: cannot import module {module_name!r} ({err})") from err
    cls = getattr(module, class_name, None)
    if cls is None:
        raise ValueError(f"environment {target!r}: module {module_name!r} has no attribute {class_name!r}")
    return cls


def available() -> list[str]:
    """Every environment name that `make_env` accepts (built-ins and installed plug-ins)."""
    return sorted(set(BUILTIN) | {ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)})


def make_env(name: str, **kwargs: Any) -> Environment:
    """Build the environment called `name` with keyword arguments from the config's `env.kwargs`.

    Every environment also takes `reward_file` (an OpenRLHF or verl reward function that replaces its reward; see
    `envs.reward_file`) and `reward_timeout` (seconds per call of that function).
    """
    reward_file, reward_timeout = kwargs.pop("reward_file", None), kwargs.pop("reward_timeout", None)
    if reward_timeout is not None and not reward_file:
        raise ValueError("env.kwargs.reward_timeout applies to env.kwargs.reward_file, which is not set")
    if ":" in name:
        cls = _load_class(name)
    elif name in BUILTIN:
        cls = _load_class(BUILTIN[name])
    else:
        plugins = {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}
        if name not in plugins:
            raise ValueError(
                f"env.name: unknown environment {name!r}. Available: {', '.join(available())}; "
                f"or give 'module.path:ClassName'."
            )
        try:
            cls = plugins[name].load()
        except Exception as err:  # a broken plug-in must say which package to fix
            raise ValueError(f"environment {name!r}: cannot load entry point {plugins[name].value!r} ({err})") from err
    if not (isinstance(cls, type) and issubclass(cls, Environment)):
        raise ValueError(f"environment {name!r} is {cls!r}, not a subclass of envs.base.Environment")
    env = cls(**kwargs)
    env.name = name
    if reward_file:
        from envs.reward_file import use_reward_file

        use_reward_file(env, reward_file, timeout=reward_timeout)
    return env
