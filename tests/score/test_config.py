"""Configuration: YAML + command-line overrides, and errors that name the key."""

from pathlib import Path

import pytest

from score.config import ConfigError, load_config


@pytest.fixture
def cfg_file(tmp_path, tiny_model_path):
    path = tmp_path / "cfg.yaml"
    path.write_text(f"stage: 2\nmodel:\n  path: {tiny_model_path}\nalgo:\n  alpha: 3.0\n")
    return path


def test_yaml_then_overrides(cfg_file):
    cfg = load_config(cfg_file, ["algo.alpha=5", "rollout.n=8", "algo.kl_mode=loss"])
    assert cfg.stage == 2 and cfg.algo.alpha == 5.0 and cfg.rollout.n == 8 and cfg.algo.kl_mode == "loss"
    assert load_config(cfg_file).algo.alpha == 3.0


@pytest.mark.parametrize(
    "override,message",
    [
        (["algo.alhpa=5"], "algo.alhpa"),
        (["algo.alpha=abc"], "algo.alpha"),
        (["rollout.n=1"], "rollout.n >= 2"),
        (["algo.kl_mode=k2"], "algo.kl_mode"),
        (["stage=3"], "stage"),
        (["model.path=/no/such/model"], "model.path"),
        (["init_from=/no/such/model"], "init_from"),
        (["algo.alpha"], "key=value"),
        (["learner.num_ranks=0"], "learner.num_ranks"),
        (["learner.placement=pack"], "learner.placement"),
        (["learner.sync_bucket_mb=0"], "learner.sync_bucket_mb"),
        (["train.logprob_chunk_tokens=0"], "train.logprob_chunk_tokens"),
        # sampling the learner does not score: off-policy updates without a word, so refused at start
        (["rollout.temperature=0.7"], "rollout.temperature"),
        (["rollout.temperature=0"], "rollout.temperature"),
        (["rollout.top_p=0.9"], "rollout.top_p"),
    ],
)
def test_bad_config_names_the_key(cfg_file, override, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        load_config(cfg_file, override)


def test_missing_file_and_missing_model(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="model.path"):
        load_config(None, [])


def test_cli_reports_a_bad_key_and_exits_2(cfg_file, capsys):
    from score.cli import main

    assert main(["train", str(cfg_file), "rollout.nn=4"]) == 2
    assert "rollout.nn" in capsys.readouterr().err


def test_gpu_weight_sync_needs_the_vllm_engine(cfg_file):
    assert load_config(cfg_file, ["rollout.weight_sync=nccl", "rollout.engine=vllm"]).rollout.weight_sync == "nccl"
    with pytest.raises(ConfigError, match="rollout.weight_sync"):
        load_config(cfg_file, ["rollout.weight_sync=nccl", "rollout.engine=hf"])
    with pytest.raises(ConfigError, match="rollout.weight_sync"):
        load_config(cfg_file, ["rollout.weight_sync=shm"])


@pytest.mark.parametrize("path", sorted((Path(__file__).resolve().parents[2] / "launch").glob("*.yaml")),
                         ids=lambda p: p.name)
def test_every_launch_config_loads(path, tiny_model_path):
    """The shipped recipes stay in step with the config schema (model paths point at the test model here)."""
    import yaml

    if "method" in yaml.safe_load(path.read_text()):  # `score scpo` / `score iwsi` recipes
        from score.selftrain.config import load_selftrain_config

        cfg = load_selftrain_config(path, [f"model.path={tiny_model_path}", "init_from=null"])
        assert cfg.method in ("scpo", "iwsi")
        return
    if "verifier" in yaml.safe_load(path.read_text()):  # `score verifier data|train` recipes
        from score.verifiers.config import load_verifier_config

        cfg = load_verifier_config(path, [f"model.path={tiny_model_path}"])
        assert cfg.verifier.kind in ("orm", "prm", "simpo")
        return
    cfg = load_config(path, [f"model.path={tiny_model_path}", "init_from=null"])
    assert cfg.stage in (1, 2)


def test_async_needs_truncated_importance_sampling(cfg_file):
    # one update behind the learner without the IS correction would be silently off-policy: refused, naming both
    # fields and the fix
    fix = r"train.async=true needs algo.tis_cap > 0.*algo.tis_cap=2.*train.async=false"
    with pytest.raises(ConfigError, match=fix):
        load_config(cfg_file, ["train.async=true"])
    assert load_config(cfg_file, ["train.async=true", "algo.tis_cap=2"]).train.async_rollouts is True
    assert load_config(cfg_file).train.async_rollouts is False  # off by default


def test_async_key_in_yaml_and_its_field_name_are_one_setting(cfg_file):
    cfg_file.write_text(cfg_file.read_text() + "  tis_cap: 2.0\ntrain:\n  async: true\n")
    assert load_config(cfg_file).train.async_rollouts is True
    assert load_config(cfg_file, ["train.async=false"]).train.async_rollouts is False  # overrides still win
    with pytest.raises(ConfigError, match="train.async and train.async_rollouts are the same setting"):
        load_config(None, [f"model.path={load_config(cfg_file).model.path}", "train.async=true",
                           "train.async_rollouts=true", "algo.tis_cap=2"])
