"""Starting vLLM so that a model it cannot run costs one line, not pages of stack traces.

vLLM starts its engine in child processes (on GPUs; on CPU `VLLMEngine` keeps it in this process). When one of them
fails (a head size its CPU attention lacks, an unsupported architecture, too little memory), the parent only sees
`EngineDeadError: ... see stack trace above`, and the reason is buried in the children's logs. So:

1. Before starting, ask vLLM what it supports: on CPU, the head sizes of its attention backend. A model outside
   them is refused at once instead of after a minute of start-up.
2. While the engine starts, this process's stdout and stderr (file descriptors 1 and 2, which the children inherit)
   point into a pipe; a thread copies what arrives to a log file. One request then runs the model once, since some
   failures only show at the first forward pass.
3. On success the pipe's later output (the children's warnings and errors) goes to the terminal again. On failure
   the reason is the children's root error, in one line, with the path of the full log.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from score.engines.base import SamplingParams


class EngineRefused(ValueError):
    """The engine cannot run this model; the message is one line."""


def cpu_refusal(model_path: str) -> str | None:
    """Why vLLM's CPU build cannot run the model at `model_path`, from what vLLM declares; None if nothing is known.

    Only checks what vLLM states about itself (the CPU attention backend's head sizes); anything else is found by
    starting the engine.
    """
    from vllm.platforms import current_platform

    if not current_platform.is_cpu():
        return None
    from transformers import AutoConfig
    from vllm.v1.attention.backends.cpu_attn import CPUAttentionBackend

    config = AutoConfig.from_pretrained(model_path).get_text_config()
    try:
        head_size = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    except (AttributeError, TypeError):
        return None
    supported = CPUAttentionBackend.get_supported_head_sizes()
    if head_size in supported:
        return None
    return (f"its CPU attention supports head sizes {', '.join(map(str, supported))}; this model's is {head_size} "
            "(hidden_size / num_attention_heads)")


_ERROR = re.compile(r"\b([A-Z]\w*(?:Error|Exception)): (.+)")
# Messages that only point elsewhere ("see the stack trace above") rather than say what went wrong.
_POINTERS = ("EngineDeadError", "root cause", "stack trace", "Worker failed with error", "initialization failed")


def one_line(text: str, limit: int = 300) -> str:
    """Whitespace collapsed, cut at `limit` characters.

    >>> one_line("1 validation error for ModelConfig\\n  Value error, bad  model")
    '1 validation error for ModelConfig Value error, bad model'
    """
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def failure_reason(error: BaseException, log: str) -> str:
    """The root cause of a failed start: the error itself when it says something, else the last error line of the
    children's log that is not a pointer to another one.

    >>> failure_reason(RuntimeError("EngineCore encountered an issue. See stack trace (above) for the root cause."),
    ...                "(Worker pid=7) ERROR [x.py:1] RuntimeError: Unsupported CPU attention configuration: "
    ...                "head_dim=16\\n(EngineCore pid=6) ERROR RuntimeError: Worker failed with error 'Unsupported'")
    'RuntimeError: Unsupported CPU attention configuration: head_dim=16'
    """
    message = str(error).strip()
    if message and not any(pointer in message for pointer in _POINTERS) and type(error).__name__ != "EngineDeadError":
        return one_line(f"{type(error).__name__}: {message}")
    for line in reversed(log.splitlines()):
        match = _ERROR.search(line)
        if match and not any(pointer in line for pointer in _POINTERS):
            return one_line(f"{match.group(1)}: {match.group(2)}")
    return one_line(f"{type(error).__name__}: {message}")


@dataclass
class _Capture:
    passthrough: threading.Event
    """Once set, output still arriving from the children goes to the original stderr instead of the log."""
    pump: threading.Thread
    """Copies the pipe; ends when the last process holding the pipe has exited."""
    terminal: int
    """The original stderr, for the lines meant for the user while the block runs."""

    def say(self, line: str) -> None:
        os.write(self.terminal, (line + "\n").encode())


@contextmanager
def output_to_log(log_path: Path) -> Iterator[_Capture]:
    """Send fds 1 and 2 (and so the output of every child started inside) through a pipe into `log_path`.

    The descriptors are restored when the block ends; the children keep the pipe.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    read_end, write_end = os.pipe()
    saved_stdout, saved_stderr = os.dup(1), os.dup(2)
    passthrough = threading.Event()

    def pump() -> None:
        with open(read_end, "rb", buffering=0) as pipe, open(log_path, "ab") as log:
            for chunk in iter(lambda: pipe.read(1 << 16), b""):
                if passthrough.is_set():
                    os.write(saved_stderr, chunk)
                else:
                    log.write(chunk)
                    log.flush()
        os.close(saved_stderr)

    capture = _Capture(passthrough, threading.Thread(target=pump, name="vllm-output", daemon=True), saved_stderr)
    capture.pump.start()
    os.dup2(write_end, 1)
    os.dup2(write_end, 2)
    os.close(write_end)
    try:
        yield capture
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved_stdout, 1)
        os.dup2(saved_stderr, 2)
        os.close(saved_stdout)


def start_vllm(model_path: str, **kwargs: Any):
    """A started `VLLMEngine` that has run the model once, or `EngineRefused` saying in one line why not."""
    log_path = Path(tempfile.gettempdir()) / f"score-vllm-{os.getpid()}-{time.strftime('%Y%m%d-%H%M%S')}.log"
    started, engine, failure, declared = time.monotonic(), None, None, None
    with output_to_log(log_path) as capture:  # from here, even `import vllm`'s notices go to the log
        declared = cpu_refusal(model_path)
        if declared is None:
            capture.say(f"starting vLLM for {model_path} (its start-up log: {log_path})")
            try:
                from score.engines.vllm_engine import VLLMEngine

                engine = VLLMEngine(model_path, **kwargs)
                # Some refusals (e.g. an attention kernel) only happen at the first forward pass.
                engine.generate([[0]], SamplingParams(temperature=0.0, max_new_tokens=1))
            except Exception as error:  # noqa: BLE001 - any failure to start becomes the one-line refusal below
                failure = error
                if engine is not None:
                    try:
                        engine.shutdown()
                    except Exception:  # noqa: BLE001 - the engine is already dead; vLLM reaps its processes
                        pass
    if declared:
        log_path.unlink(missing_ok=True)  # nothing was started: only import notices
        raise EngineRefused(f"vLLM cannot run {model_path}: {declared}")
    if failure is not None:
        capture.pump.join(timeout=5)  # the dead engine's last lines; a helper process may hold the pipe longer
        reason = failure_reason(failure, log_path.read_text(errors="replace") if log_path.exists() else "")
        with log_path.open("a") as log:  # after the reason is read: an engine in this process leaves its traceback
            log.write("".join(traceback.format_exception(failure)))  # nowhere else, and it is not the children's
        raise EngineRefused(f"vLLM cannot run {model_path}: {reason} (full log: {log_path})") from failure
    capture.passthrough.set()
    print(f"vLLM ready in {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)
    shutdown, start_capture = engine.shutdown, capture

    def quiet_shutdown() -> None:
        """vLLM narrates its shutdown line by line, in this process and in its children; that goes to the log too."""
        start_capture.passthrough.clear()
        with output_to_log(log_path) as capture:
            shutdown()
        capture.passthrough.set()
        start_capture.passthrough.set()

    engine.shutdown = quiet_shutdown
    return engine
