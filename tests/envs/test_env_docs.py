"""The README's "Add your own environment" example is copied out of the Markdown and run as a user would run it."""

import json
import re
import subprocess
import sys

from envs import Environment, available, make_env

HEADING = "## Add your own environment"


def test_the_example_is_about_thirty_lines_and_runs_as_a_script(tmp_path, readme_blocks):
    example = readme_blocks(HEADING, "python")[0]
    assert 20 <= len(example.strip().splitlines()) <= 40
    (tmp_path / "my_envs.py").write_text(example)
    result = subprocess.run([sys.executable, "my_envs.py"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "1.0 0.0"


def test_the_example_is_found_by_its_module_class_name(tmp_path, monkeypatch, readme_blocks):
    (tmp_path / "my_envs.py").write_text(readme_blocks(HEADING, "python")[0])
    monkeypatch.syspath_prepend(str(tmp_path))
    target = re.search(r"name: (\S+:\S+)", readme_blocks(HEADING, "yaml")[0]).group(1)
    env = make_env(target, num_problems=50, seed=1)
    train, test = env.load("train"), env.load("test")
    assert len(train) == len(test) == 50
    for problem in test[:5]:
        right = f"The string has them.\nFinal Answer: The final answer is ${problem.reference}$. I hope it is correct."
        wrong = f"Final Answer: The final answer is ${int(problem.reference) + 1}$. I hope it is correct."
        assert env.rewards([right, wrong], [problem, problem]) == [1.0, 0.0]
    assert env.messages(test[0], ["0"])[-1] == {"role": "user", "content": env.correction_instruction}
    sys.modules.pop("my_envs", None)


def test_the_dataset_example_loads_a_local_file_with_its_field_mapping(tmp_path, readme_blocks):
    namespace = {"Environment": Environment}
    exec(readme_blocks(HEADING, "python")[1], namespace)
    rows = [{"question": "2+3?", "final_answer": "5", "uid": "q1"}]
    (tmp_path / "qa.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    env = namespace["MyQAEnv"](path=str(tmp_path / "qa.jsonl"))
    (problem,) = env.load("test")
    assert (problem.id, problem.prompt, problem.reference) == ("q1", "Question: 2+3?", "5")
    assert [m["role"] for m in env.first_turn_messages(problem)] == ["user", "assistant", "user"]


def test_the_packaged_example_is_found_by_its_entry_point_name(tmp_path, monkeypatch, pip_install, readme_blocks):
    # Build and install the example with the section's own pyproject snippet, as its reader would.
    source = tmp_path / "letter-count"
    source.mkdir()
    (source / "my_envs.py").write_text(readme_blocks(HEADING, "python")[0])
    header = '[build-system]\nrequires = ["setuptools>=68"]\nbuild-backend = "setuptools.build_meta"\n\n'
    project = '[project]\nname = "letter-count"\nversion = "0.1.0"\n\n'
    (source / "pyproject.toml").write_text(header + project + readme_blocks(HEADING, "toml")[0])
    site = pip_install(source, tmp_path / "site")
    monkeypatch.syspath_prepend(str(site))
    name = re.search(r'^(\w+) = "my_envs:', readme_blocks(HEADING, "toml")[0], flags=re.MULTILINE).group(1)
    assert name in available()
    env = make_env(name, num_problems=3)
    assert type(env).__name__ == "LetterCountEnv" and len(env.load("train")) == 3
    sys.modules.pop("my_envs", None)
