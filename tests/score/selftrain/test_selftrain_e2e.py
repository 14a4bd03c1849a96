"""SCPO and IWSI end to end through real Ray with a tiny model: 2 rounds x 2 steps each.

The environment (`VoteEnv`, tests/conftest.py) makes a random model's answers agree often, and lets a test change
every gold label of the train split and nothing else.
"""

import json
import shutil

import pytest
import safetensors.torch
import torch
from transformers import AutoModelForCausalLM

from score.selftrain.config import load_selftrain_config
from score.selftrain.loop import run

ROUND_KEYS = {"problems", "kept", "kept_frac", "vote_share", "sample_acc", "majority_acc", "pseudo_label_acc",
              "time_rollout"}
DIAGNOSTICS = {"sample_acc", "majority_acc", "pseudo_label_acc"}  # the only numbers that read gold labels


def _config(method, model, out, extra=()):
    return load_selftrain_config(None, [
        f"output_dir={out}", f"model.path={model}", "env.name=score_test_plugins:VoteEnv", "rollout.engine=hf",
        "rollout.n=4", "rollout.max_new_tokens=6", "rounds=2", "problems_per_round=6", "train.steps=2",
        "train.batch_size=3", "train.lr=0.01", "train.micro_batch_size=4", "train.save_every=1",
        "iwsi.valid_size=3", "iwsi.valid_split=valid", "eval.every=2", "eval.limit=4", "log.tensorboard=false",
        *extra], method=method)


def _metrics(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def _weights(folder):
    return safetensors.torch.load_file(str(folder / "model.safetensors"))


def _masked_sums(model_folder, data):
    """Each data row's answer log-probability under a saved model, computed here with plain transformers."""
    model = AutoModelForCausalLM.from_pretrained(model_folder).eval()
    sums = []
    with torch.no_grad():
        for ids, mask in zip(data["input_ids"], data["loss_mask"]):
            x = torch.tensor([ids])
            lp = model(input_ids=x).logits[0, :-1].log_softmax(-1).gather(-1, x[0, 1:, None])[:, 0]
            sums.append(float((lp * torch.tensor(mask[1:], dtype=torch.float32)).sum()))
    return sums


@pytest.fixture(scope="module")
def runs(ray_cluster, tiny_model_path, tmp_path_factory):
    """One run of each method (label_shift 0) shared by the tests below."""
    root = tmp_path_factory.mktemp("selftrain")
    for method in ("scpo", "iwsi"):
        run(_config(method, tiny_model_path, root / method))
    return root


@pytest.mark.parametrize("method", ["scpo", "iwsi"])
def test_two_rounds_each_sampling_from_the_previous_round(runs, tiny_model_path, method):
    out = runs / method
    metrics = _metrics(out)
    assert [(m["step"], m["round"]) for m in metrics] == [(1, 1), (2, 1), (3, 2), (4, 2)]
    assert ROUND_KEYS <= metrics[0].keys() and ROUND_KEYS <= metrics[2].keys() and "kept" not in metrics[1]
    assert all(0 < m["kept"] <= 6 and 0 <= m["pseudo_label_acc"] <= 1 for m in (metrics[0], metrics[2]))
    if method == "iwsi":
        assert {"ds_weight_p10", "ds_weight_p50", "ds_weight_p90", "valid_nll", "samples_kept"} <= metrics[0].keys()
        assert 1.0 <= metrics[0]["ds_weight_p10"] <= metrics[0]["ds_weight_p90"]
    else:
        assert metrics[0]["margin_weight_mean"] > 0
        # each round's first step has the policy equal to its reference (the round's own starting model)
        assert metrics[0]["logratio_margin"] == 0.0 and metrics[2]["logratio_margin"] == 0.0
        assert metrics[1]["logratio_margin"] != 0.0
    # after each round the engines hold the learner's weights, and the held-out split is evaluated (eval.every=2)
    assert metrics[1]["sync_logprob_diff"] < 1e-3 and metrics[3]["sync_logprob_diff"] < 1e-3
    assert [m.get("eval_n") for m in metrics] == [None, 4, None, 4] and "eval_acc_t1" in metrics[3]

    # round 2 sampled from round 1's model, not from the base model
    data = json.loads((out / "rounds/round_1/data.json").read_text())
    round1 = _masked_sums(out / "rounds/round_0/model", data)
    assert data["values"]["sample_logprob"] == pytest.approx(round1, abs=1e-3)
    assert _masked_sums(tiny_model_path, data) != pytest.approx(round1, abs=1e-3)

    # final/ is the last round's model, it moved, and plain transformers loads it (what `score eval` needs)
    base, final = _weights(tiny_model_path), _weights(out / "final")
    assert all(torch.equal(final[k], v) for k, v in _weights(out / "rounds/round_1/model").items())
    assert any(not torch.equal(base[k], final[k]) for k in base)
    AutoModelForCausalLM.from_pretrained(out / "final")
    summary = json.loads((out / "summary.json").read_text())
    assert [r["kept"] for r in summary["rounds"]] == [metrics[0]["kept"], metrics[2]["kept"]]


@pytest.mark.parametrize("method", ["scpo", "iwsi"])
def test_gold_labels_never_reach_training(runs, tiny_model_path, tmp_path, method):
    """Every train-split label changed: the trained weights are bit for bit the same, and only the logged
    diagnostics move. (The loop also only ever holds problems whose reference raises on any use.)"""
    out = tmp_path / "shifted"
    run(_config(method, tiny_model_path, out, ["env.kwargs.label_shift=1"]))
    original, shifted = _weights(runs / method / "final"), _weights(out / "final")
    assert all(torch.equal(original[k], shifted[k]) for k in original)
    a, b = _metrics(runs / method), _metrics(out)
    for ma, mb in zip(a, b, strict=True):
        for key in ma.keys() - DIAGNOSTICS - {k for k in ma if k.startswith("time_")}:
            assert ma[key] == mb[key], key
    assert any(ma.get(k) != mb.get(k) for ma, mb in zip(a, b) for k in DIAGNOSTICS)


def test_resume_after_a_crash_in_the_middle_of_round_two(runs, tiny_model_path, tmp_path):
    """The SCPO run as if it had died after step 3 (round 2's first step): resuming reproduces it."""
    full, cut = runs / "scpo", tmp_path / "cut"
    shutil.copytree(full, cut)
    for lost in ("rounds/round_1/model", "rounds/round_1/done.json", "final", "summary.json"):
        path = cut / lost
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    assert {p.name for p in (cut / "checkpoints").iterdir()} == {"step_1", "step_3"}
    run(_config("scpo", tiny_model_path, cut, ["resume=true"]))
    a, b = _metrics(full), _metrics(cut)
    assert [m["step"] for m in b] == [1, 2, 3, 4]
    for key in ("loss", "pref_accuracy", "logratio_margin", "grad_norm", "kept", "pseudo_label_acc"):
        # A step that kept no pair logs None for its pair metrics: None must meet None, numbers must agree.
        full_values, resumed_values = [m.get(key) for m in a], [m.get(key) for m in b]
        assert [v is None for v in full_values] == [v is None for v in resumed_values], key
        pairs = [(x, y) for x, y in zip(full_values, resumed_values) if x is not None]
        assert [x for x, _ in pairs] == pytest.approx([y for _, y in pairs], rel=1e-5), key
    original, resumed = _weights(full / "final"), _weights(cut / "final")
    assert all(torch.allclose(original[k], resumed[k], atol=1e-6) for k in original)


def test_score_stage1_starts_from_an_scpo_model(runs, tiny_model_path, tmp_path):
    """SCoRe composes after SCPO: a Stage I config takes final/ as init_from, and its learner starts from those
    weights with the base model as the KL reference. (`score train`'s init_from path is tested end to end in
    tests/score/test_train_e2e.py.)"""
    from score.config import load_config
    from score.learner import Learner

    scpo_final = runs / "scpo" / "final"
    cfg = load_config(None, [f"model.path={tiny_model_path}", f"init_from={scpo_final}"])
    learner = Learner(cfg.model.path, init_from=cfg.init_from)
    final, base = _weights(scpo_final), _weights(tiny_model_path)
    assert all(torch.equal(p.detach(), final[k]) for k, p in learner.policy.state_dict().items())
    assert all(torch.equal(p.detach(), base[k]) for k, p in learner.reference.state_dict().items())
