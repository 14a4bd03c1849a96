"""Verifiers: models that judge solutions, trained on samples from the SCoRe engines and used to pick among them.

- `score verifier data CONFIG.yaml`: N samples per problem from one or more models, labelled by the environment's
  reward, de-duplicated, with Math-Shepherd step labels for a PRM (`score.verifiers.data`, `score.verifiers.steps`);
- `score verifier train CONFIG.yaml`: an outcome reward model (scalar head, BCE), a SimPO verifier (length-normalised
  log-probability, no reference) or a process reward model (per-step head), through Ray and SCoRe's learner
  (`score.verifiers.train`, losses in `score.verifiers.losses`);
- `score eval --select vote|orm|prm|simpo|weighted-vote|cotnpot`: best-of-N selection, verifier-guided
  self-correction (`score.verifiers.select`, `score.verifiers.guided`), CoTnPoT (`score.verifiers.cotnpot`);
- `score verifier w2s CONFIG.yaml`: weak-to-strong generalisation and PGR (`score.verifiers.w2s`).
"""
