"""What the user's terminal shows when a score process exits.

libtriton (imported by torch and vLLM) is a nanobind extension, and nanobind prints a list of every object it counts as
leaked when the interpreter tears down ("nanobind: leaked 4 instances! ... leaked 514 functions!"). Those reports are
for the extension's developers; nanobind lets only the extension turn them off (`set_leak_warnings`), and Triton
itself silences the teardown of its own worker processes the same way as below.

The teardown comes after every Python exit handler has run. So an exit handler registered first, which therefore
runs last, points stderr at /dev/null just before it: a traceback, an error in another exit handler, a warning
printed on the way out have all been printed by then. Child processes keep their own stderr.
"""

from __future__ import annotations

import atexit
import functools
import os
import sys


def _stderr_to_devnull() -> None:
    sys.stderr.flush()
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)


@functools.cache  # once per process
def quiet_interpreter_teardown() -> None:
    """Call as early as possible (before torch, Ray or vLLM register their own exit handlers)."""
    atexit.register(_stderr_to_devnull)
