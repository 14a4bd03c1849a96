"""Environments: problem sources, prompts and per-attempt rewards. Depends on `rewards`, never on `score`."""

from envs.base import Environment, Problem
from envs.registry import available, make_env

__all__ = ["Environment", "Problem", "available", "make_env"]
