"""Interoperability with OpenRLHF and verl, without depending on either.

- `score export openrlhf`: a score environment as an OpenRLHF agent (`--train.agent_func_path`, K attempts with the
  correction instruction between them) or reward function (`--reward.remote_url reward_func.py`), plus its prompts.
- `score export verl`: a score environment as a verl `compute_score` file (`custom_reward_function.path`), plus its
  prompts as verl's Parquet rows.
- The reverse direction, their reward files as the reward of a score environment, is `env.kwargs.reward_file`
  (`envs.reward_file`).

The exported files import OpenRLHF (the agent) or nothing of either framework (the reward files), and this package
imports neither: it runs inside their processes and needs only score's own dependencies there.
"""
