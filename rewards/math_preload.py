"""Imported once by the worker zygote (`rewards.math_worker`, see `rewards.math_pool`), never by user code.

It warms the checker (importing `rewards.math_sympy` runs its warm-up) and then freezes the garbage collector's view
of everything loaded so far: forked workers share those memory pages copy-on-write, and a collector walking them
would copy every page into every worker (slower first checks, more memory).
"""

import gc

import rewards.math
import rewards.math_sympy  # noqa: F401

gc.freeze()
