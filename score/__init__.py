"""score: train language models to correct their own mistakes with multi-turn RL (SCoRe)."""

__version__ = "0.1.0"
