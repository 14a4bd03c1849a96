"""`score verifier train` end to end through real Ray with the tiny model: ORM, SimPO and PRM, checkpoints, resume,
and the trained verifier's scores against an independent forward pass."""

import json
import shutil

import pytest
import safetensors.torch
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from score.rollout import ChatRenderer
from score.verifiers.config import load_verifier_config
from score.verifiers.data import read_data, run_data
from score.verifiers.learner import load_head_model
from score.verifiers.scoring import Verifier, encode_row
from score.verifiers.train import run_train, simpo_pairs, training_batch


def _config(model, out, data, extra=()):
    return load_verifier_config(None, [
        f"output_dir={out}", f"model.path={model}", "env.name=score_test_plugins:VoteEnv", "rollout.engine=hf",
        "rollout.n=4", "rollout.max_new_tokens=4", "rollout.temperature=1.5", "data.problems=8",
        f"data.path={data}", "data.prm_labels=true", "data.prm_completions=2", "data.steps.split=chars",
        "train.steps=4", "train.batch_size=4", "train.lr=1e-3", "train.micro_batch_size=4", *extra])


@pytest.fixture(scope="module")
def data(ray_cluster, tiny_model_path, tmp_path_factory):
    folder = tmp_path_factory.mktemp("verifier") / "data"
    run_data(_config(tiny_model_path, folder.parent, folder))
    return folder


def _metrics(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_training_rows_follow_the_kind(data, tiny_model_path):
    records = read_data(data)
    renderer = ChatRenderer(AutoTokenizer.from_pretrained(tiny_model_path))
    orm = training_batch(records, renderer, _config(tiny_model_path, data.parent, data))
    assert len(orm) == sum(1 for r in records if r["solution"].strip()) and orm.values["label"] == [
        float(r["correct"]) for r in records if r["solution"].strip()]
    simpo = training_batch(records, renderer, _config(tiny_model_path, data.parent, data, ["verifier.kind=simpo"]))
    pairs = simpo_pairs(records, 4, 0)
    assert simpo.group_size == 2 and len(simpo) == len(pairs) > 0
    assert all(p["correct"] == 1 and n["correct"] == 0 and p["problem_id"] == n["problem_id"] for p, n in pairs)
    prm = training_batch(records, renderer, _config(tiny_model_path, data.parent, data, ["verifier.kind=prm"]))
    # the mask holds 1 + label at each step's last token, in the order of the records' labels
    first = next(r for r in records if r["step_labels"])
    row = encode_row(renderer, first["messages"], first["solution"], kind="prm", ends=first["step_ends"],
                     labels=first["step_labels"])
    marks = [m for m in row.loss_mask if m]
    assert row.loss_mask in prm.loss_mask and len(marks) <= len(first["step_labels"])
    assert marks[-1] == 1 + int(first["step_labels"][-1])


@pytest.fixture(scope="module")
def trained(data, tiny_model_path):
    """One verifier of each kind, 4 steps each (the selection tests in this module use them too)."""
    return {kind: run_train(_config(tiny_model_path, data.parent / kind, data, [f"verifier.kind={kind}"]))
            for kind in ("orm", "simpo", "prm")}


@pytest.mark.parametrize("kind", ["orm", "simpo", "prm"])
def test_train_each_kind_and_score_with_the_saved_verifier(data, trained, kind):
    final = trained[kind]
    out = final.parent
    metrics = _metrics(out)
    assert [m["step"] for m in metrics] == [1, 2, 3, 4] and all(m["grad_norm"] > 0 for m in metrics)
    spec = json.loads((final / "verifier.json").read_text())
    assert spec["kind"] == kind and spec["steps"]["split"] == "chars"

    records = read_data(data)[:5]
    verifier = Verifier(final)
    details = verifier.step_scores([r["messages"] for r in records], [r["solution"] for r in records])
    renderer = ChatRenderer(AutoTokenizer.from_pretrained(final))
    model = (AutoModelForCausalLM.from_pretrained(final) if kind == "simpo" else load_head_model(str(final))).eval()
    for r, got in zip(records, details):  # one unpadded row at a time, here
        row = encode_row(renderer, r["messages"], r["solution"], kind=kind, ends=r["step_ends"])
        x = torch.tensor([row.input_ids])
        mask = torch.tensor(row.loss_mask[1:])
        with torch.no_grad():
            if kind == "simpo":
                lp = model(input_ids=x).logits[0, :-1].log_softmax(-1).gather(-1, x[0, 1:, None])[:, 0]
                want = float((lp * mask).sum() / mask.sum()) if mask.sum() else float("-inf")
            else:
                p = torch.sigmoid(model(input_ids=x).logits[0, 1:, 0])
                steps = p[mask > 0].tolist()
                want = (steps[-1] if steps else 0.0) if kind == "orm" else (min(steps) if steps else 0.0)
        assert got["score"] == pytest.approx(want, abs=1e-5)
        if kind == "prm":
            assert len(got["steps"]) == row.step_count
    if kind == "prm":
        prod = Verifier(final, aggregate_how="prod").score([records[0]["messages"]], [records[0]["solution"]])[0]
        steps = details[0]["steps"]
        assert prod == pytest.approx(float(torch.tensor(steps).prod()) if steps else 0.0, abs=1e-6)


def test_resume_from_a_checkpoint_gives_the_uninterrupted_weights(data, tiny_model_path, tmp_path):
    full = run_train(_config(tiny_model_path, tmp_path / "full", data, ["train.save_every=2"]))
    assert (tmp_path / "full/checkpoints/step_2/trainer_state.json").is_file()
    resumed_dir = tmp_path / "resumed"
    shutil.copytree(tmp_path / "full/checkpoints", resumed_dir / "checkpoints")
    resumed = run_train(_config(tiny_model_path, resumed_dir, data, ["train.save_every=2", "resume=true"]))
    assert [m["step"] for m in _metrics(resumed_dir)] == [3, 4]
    a = safetensors.torch.load_file(str(full / "model.safetensors"))
    b = safetensors.torch.load_file(str(resumed / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_kind_without_training_rows_says_what_it_needs(data, tiny_model_path, tmp_path):
    records = [r for r in read_data(data) if not r["correct"]]
    with pytest.raises(ValueError, match="both a correct and an incorrect"):
        run_train(_config(tiny_model_path, tmp_path / "x", data, ["verifier.kind=simpo"]), records=records)


def test_score_eval_select_and_guided_correction_end_to_end(data, trained, tiny_model_path, tmp_path):
    """`score eval --select` on the test split (the verifiers trained on the train split), every method, with the
    curves, the plot and the per-sample scores; then --guide in both modes."""
    from score.cli import main

    out = tmp_path / "select"
    argv = ["eval", "--model", str(tiny_model_path), "--env", "score_test_plugins:VoteEnv", "--split", "test",
            "--limit", "5", "--samples", "4", "--temperature", "1.5", "--max-new-tokens", "4", "--engine", "hf",
            "--select", "vote,orm,prm,simpo,weighted-vote,cotnpot", "--resamples", "200", "--out", str(out)]
    for kind, path in trained.items():
        argv += ["--verifier", f"{kind}={path}"]
    assert main(argv) == 0
    summary = json.loads((out / "select.json").read_text())
    curves = summary["best_of_n"]
    assert set(curves) == {"vote", "orm", "prm", "simpo", "weighted-vote", "cotnpot", "oracle"}
    assert all(c["n"] == [1, 2, 4] for c in curves.values())
    samples = [json.loads(line) for line in (out / "select_samples.jsonl").read_text().splitlines()]
    assert len(samples) == 20 and all(set(s["scores"]) == {"orm", "prm", "simpo"} for s in samples)
    # N = 1 is the mean reward of all samples for every method; N = 4 is each method's own pick, recomputed here
    mean_reward = sum(s["reward"] for s in samples) / 20
    assert all(c["acc"][0] == pytest.approx(mean_reward) for c in curves.values())
    for kind in ("orm", "prm", "simpo"):
        picks = []
        for p in range(5):
            block = samples[4 * p: 4 * p + 4]
            picks.append(max(block, key=lambda s: (s["scores"][kind], -s["sample"]))["reward"])
        assert curves[kind]["acc"][2] == pytest.approx(sum(picks) / 5)
    oracle = [max(s["reward"] for s in samples[4 * p: 4 * p + 4]) for p in range(5)]
    assert curves["oracle"]["acc"][2] == pytest.approx(sum(oracle) / 5)
    # the random tiny model writes no working program: no sample is kept, and CoTnPoT falls back to the vote
    assert summary["cotnpot_agree_frac"] == 0.0 and not any(s["cotnpot_agree"] for s in samples)
    assert curves["cotnpot"]["acc"] == curves["vote"]["acc"]
    assert (out / "plots/best_of_n.png").stat().st_size > 0 and "Best-of-N" in (out / "report.md").read_text()

    for mode in ("request", "keep"):
        g_out = tmp_path / f"guided-{mode}"
        argv = ["eval", "--model", str(tiny_model_path), "--env", "score_test_plugins:VoteEnv", "--split", "test",
                "--limit", "6", "--max-new-tokens", "4", "--engine", "hf", "--guide", "orm", "--guide-mode", mode,
                "--guide-threshold", "0.5", "--verifier", f"orm={trained['orm']}", "--resamples", "200",
                "--out", str(g_out)]
        assert main(argv) == 0
        g = json.loads((g_out / "select.json").read_text())["guided_correction"]
        records = [json.loads(line) for line in (g_out / "guided_samples.jsonl").read_text().splitlines()]
        assert len(records) == 6
        for r in records:
            assert r["doubted"] == (r["score_t1"] < 0.5)
            if mode == "request":  # attempt 2 exists exactly where attempt 1 was doubted
                assert len(r["texts"]) == (2 if r["doubted"] else 1)
        final = [r["rewards"][1] if r["doubted"] else r["rewards"][0] for r in records]
        assert g["guided"]["acc_t2"] == pytest.approx(sum(final) / 6)
        assert g["guided"]["acc_t1"] == pytest.approx(sum(r["rewards"][0] for r in records) / 6)
        assert g["requested_frac"] == pytest.approx(sum(r["doubted"] for r in records) / 6)
        assert ("always" in g) == (mode == "keep")


def test_select_flags_fail_early_naming_the_fix(trained, tiny_model_path, tmp_path):
    from score.engines.base import SamplingParams
    from score.verifiers.inference import run_select

    hot = SamplingParams(temperature=1.0)
    with pytest.raises(ValueError, match="--verifier orm=PATH"):
        run_select(str(tiny_model_path), "arithmetic", tmp_path, methods=["orm"], samples=4, params=hot)
    with pytest.raises(ValueError, match="--samples"):
        run_select(str(tiny_model_path), "arithmetic", tmp_path, methods=["vote"], samples=1, params=hot)
    with pytest.raises(ValueError, match="--temperature"):
        run_select(str(tiny_model_path), "arithmetic", tmp_path, methods=["vote"], samples=4)
    with pytest.raises(ValueError, match="is a orm verifier"):
        run_select(str(tiny_model_path), "arithmetic", tmp_path, methods=["simpo"], samples=4, params=hot,
                   verifiers={"simpo": str(trained["orm"])})
