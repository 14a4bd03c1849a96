"""Self-training without labels on the SCoRe trainer's engines, environments, Ray actors and learner.

- `score scpo CONFIG.yaml`: self-consistency preference optimisation (`score.selftrain.scpo`);
- `score iwsi CONFIG.yaml`: importance-weighted self-improvement and its baselines (`score.selftrain.iwsi`).

Both run `score.selftrain.loop.run`: rounds of sampling, voting on final answers, selecting data and training.
"""
