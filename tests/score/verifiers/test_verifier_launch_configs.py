"""The verifier recipes in launch/ measure on the tasks the README compares them with."""

from pathlib import Path

from score.config import load_config
from score.pretrain import PretrainSettings
from score.verifiers.config import load_verifier_config

LAUNCH = Path(__file__).resolve().parents[3] / "launch"


def test_smollm2_verifiers_use_the_task_smollm2_is_measured_on(tiny_model_path):
    # the README's SmolLM2 accuracies (23-25% greedy) are on smollm_stage1.yaml's task: same problems, same prompt
    verifier = load_verifier_config(LAUNCH / "smollm2_verifier.yaml", [f"model.path={tiny_model_path}"])
    stage1 = load_config(LAUNCH / "smollm_stage1.yaml", [f"model.path={tiny_model_path}", "init_from=null"])
    assert verifier.env.name == stage1.env.name == "arithmetic"
    assert dict(verifier.env.kwargs) == dict(stage1.env.kwargs)
    assert 0 < verifier.rollout.temperature < 1  # at T = 1 SmolLM2 is right 5% of the time: too few right samples


def test_demo_verifiers_use_the_demo_base_models_task(tiny_model_path):
    # the base model's SFT problems avoid exactly this env's train and test splits, so the verifiers' data and the
    # selection problems are problems the base model never saw
    cfg = load_verifier_config(LAUNCH / "demo_verifier.yaml", [f"model.path={tiny_model_path}"])
    assert cfg.env.name == "arithmetic"
    assert dict(cfg.env.kwargs) == PretrainSettings().env_kwargs()
