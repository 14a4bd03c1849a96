"""`score scpo` / `score iwsi` configs: the command sets the method, and bad values name their key."""

import pytest

from score.config import ConfigError
from score.selftrain.config import load_selftrain_config


@pytest.fixture
def cfg_file(tmp_path, tiny_model_path):
    path = tmp_path / "cfg.yaml"
    path.write_text(f"model:\n  path: {tiny_model_path}\nrounds: 3\nscpo:\n  beta: 0.2\n")
    return path


def test_command_sets_the_method(cfg_file):
    cfg = load_selftrain_config(cfg_file, ["iwsi.filter=entropy"], method="iwsi")
    assert cfg.method == "iwsi" and cfg.rounds == 3 and cfg.iwsi.filter == "entropy" and cfg.scpo.beta == 0.2
    assert load_selftrain_config(cfg_file, [], method="scpo").method == "scpo"
    with pytest.raises(ConfigError, match="method"):
        load_selftrain_config(cfg_file, ["method=iwsi"], method="scpo")


@pytest.mark.parametrize("override,message", [
    (["scpo.betta=1"], "scpo.betta"),
    (["iwsi.filter=loss"], "iwsi.filter"),
    (["scpo.reference=init"], "scpo.reference"),
    (["scpo.vote_threshold=1.5"], "scpo.vote_threshold"),
    (["iwsi.keep_percentile=80"], "iwsi.keep_percentile"),
    (["rollout.n=1"], "rollout.n"),
    (["rollout.temperature=0"], "rollout.temperature"),
    (["rollout.weight_sync=nccl", "rollout.engine=vllm"], "rollout.weight_sync"),
    (["train.batch_size=0"], "train.batch_size"),
    (["rounds=0"], "rounds"),
    (["init_from=/no/such/model"], "init_from"),
])
def test_bad_values_name_the_key(cfg_file, override, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        load_selftrain_config(cfg_file, override, method="scpo")


def test_cli_reports_a_bad_key_and_exits_2(cfg_file, capsys):
    from score.cli import main

    assert main(["iwsi", str(cfg_file), "iwsi.keep=0.5"]) == 2
    assert "iwsi.keep" in capsys.readouterr().err
