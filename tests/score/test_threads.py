"""Torch threads per phase: the helper itself, and the transformers engine's rollout worker under Ray."""

import pytest
import torch

from score.threads import node_cores, phase_threads, use_cores


def test_use_cores_sets_the_count_for_the_block_and_restores_it():
    before = torch.get_num_threads()
    other = 1 if before != 1 else 2
    with use_cores(other) as threads:
        assert threads == other and torch.get_num_threads() == other
    assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError), use_cores(other):  # restored on the way out of an error too
        raise RuntimeError("boom")
    assert torch.get_num_threads() == before


def test_phase_threads_auto_shares_the_nodes_cores():
    cores = node_cores()
    assert phase_threads(0) == cores
    assert phase_threads(0, sharing=2) == max(1, cores // 2)
    assert phase_threads(0, sharing=cores + 5) == 1  # never 0
    assert phase_threads(3, sharing=2) == 3  # an explicit count is taken as it is


@pytest.mark.parametrize("bad", [{"requested": -1}, {"requested": 0, "sharing": 0}])
def test_phase_threads_rejects_bad_counts(bad):
    with pytest.raises(ValueError, match="threads"):
        phase_threads(**bad)
    with pytest.raises(ValueError, match="threads must be >= 1"):
        with use_cores(0):
            pass


def test_config_rejects_negative_thread_counts(tiny_model_path):
    from score.config import ConfigError, load_config

    with pytest.raises(ConfigError, match="ray.learner_threads: must be >= 0"):
        load_config(None, [f"model.path={tiny_model_path}", "ray.learner_threads=-1"])
    with pytest.raises(ConfigError, match="rollout.threads: must be >= 0"):
        load_config(None, [f"model.path={tiny_model_path}", "rollout.threads=-2"])


def test_hf_rollout_worker_generates_with_the_nodes_cores(ray_cluster, tiny_model_path):
    from score.actors import RolloutGroup

    engines = RolloutGroup("hf", str(tiny_model_path), {}, num_engines=2, num_cpus=1, num_gpus=0, timeout_s=300)
    try:
        # two engines on the one node share its cores; Ray alone would give each one thread (num_cpus=1)
        assert [w["threads"] for w in engines.placement()] == [max(1, node_cores() // 2)] * 2
    finally:
        engines.shutdown()
    engines = RolloutGroup("hf", str(tiny_model_path), {}, num_engines=1, num_cpus=1, num_gpus=0, timeout_s=300,
                           threads=3)
    try:
        assert [w["threads"] for w in engines.placement()] == [3]
    finally:
        engines.shutdown()
    # under train.async the learner updates while the engine generates: auto gives the engine half the cores
    engines = RolloutGroup("hf", str(tiny_model_path), {}, num_engines=1, num_cpus=1, num_gpus=0, timeout_s=300,
                           concurrent_phases=2)
    try:
        assert [w["threads"] for w in engines.placement()] == [max(1, node_cores() // 2)]
    finally:
        engines.shutdown()


def test_async_runs_share_the_cores_between_rollout_and_update(tiny_model_path):
    from score.actors import concurrent_phases
    from score.config import load_config

    base = [f"model.path={tiny_model_path}"]
    assert concurrent_phases(load_config(None, base)) == 1
    assert concurrent_phases(load_config(None, [*base, "train.async=true", "algo.tis_cap=2"])) == 2
