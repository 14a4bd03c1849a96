"""Pure reward functions: math answer checking, sandboxed code execution, SCoRe's reward shaping.

Nothing here imports from `envs` or `score`.
"""
