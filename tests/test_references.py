"""Every file the project points its readers to (README, launch configs, docstrings) is in the repository."""

import itertools
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ["README.md", "pyproject.toml", "launch/*", "score/**/*.py", "envs/*.py", "rewards/*.py", "benchmarks/*.py"]
# a repository path (`launch/code_stage{1,2}.yaml` counts as both files) or a capitalised Markdown file (DESIGN.md)
REPO_PATH = re.compile(r"(?<![\w/.~-])((?:launch|score|envs|rewards|benchmarks|tests)/[\w./{},*-]*[\w}*])")
MARKDOWN = re.compile(r"(?<![\w/.-])([A-Z][\w-]*\.md)\b")


def _expand(path: str) -> list[str]:
    """launch/a_{1,2}.yaml -> [launch/a_1.yaml, launch/a_2.yaml]; a code template (rewards/{name}) -> nothing."""
    if re.search(r"\{[^},]*\}|\{[^}]*$", path):
        return []
    parts = re.split(r"\{([^}]*)\}", path)
    choices = [[p] if i % 2 == 0 else p.split(",") for i, p in enumerate(parts)]
    return ["".join(c) for c in itertools.product(*choices)]


def test_every_reference_resolves_inside_the_repository():
    missing = []
    for pattern in SOURCES:
        for file in sorted(ROOT.glob(pattern)):
            text = file.read_text()
            found = [p for m in REPO_PATH.finditer(text) for p in _expand(m.group(1).rstrip("."))]
            found += [m.group(1) for m in MARKDOWN.finditer(text)]
            missing += [f"{file.relative_to(ROOT)}: {p}" for p in found if not any(ROOT.glob(p))]
    assert not missing, missing
