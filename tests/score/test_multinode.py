"""Two simulated Ray nodes (ray.cluster_utils.Cluster): rollout engines and FSDP learner ranks spread over both, the
engines kept in sync with the sharded learner."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from ray.cluster_utils import Cluster

LAUNCH = Path(__file__).resolve().parents[2] / "launch"


@pytest.fixture
def two_node_cluster():
    cluster = Cluster(initialize_head=True, connect=False, head_node_args={"num_cpus": 3})
    cluster.add_node(num_cpus=3)
    cluster.wait_for_nodes()
    yield cluster
    cluster.shutdown()


def test_two_engines_and_two_learner_ranks_on_two_nodes(two_node_cluster, tiny_model_path, tmp_path):
    out = tmp_path / "run"
    # The driver is its own process, as `score train` is against a real cluster address.
    args = [
        str(LAUNCH / "tiny_stage1.yaml"), f"ray.address={two_node_cluster.address}", f"output_dir={out}",
        f"model.path={tiny_model_path}",
        "env.kwargs={digits: 1, ops: '+', num_train: 50, num_test: 10}", "rollout.engine=hf", "rollout.num_engines=2",
        "rollout.n=2", "rollout.max_new_tokens=4", "train.steps=2", "train.prompts_per_step=3", "train.lr=0.01",
        "log.tensorboard=false", "learner.num_ranks=2", "learner.placement=STRICT_SPREAD", "learner.sync_bucket_mb=0.1",
    ]
    result = subprocess.run([sys.executable, "-m", "score.cli", "train", *args], capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    nodes = [w["node_id"] for w in summary["rollout_workers"]]
    assert len(nodes) == 2 and len(set(nodes)) == 2  # one engine per node
    ranks = summary["learner_ranks"]
    assert [r["rank"] for r in ranks] == [0, 1] and len({r["node_id"] for r in ranks}) == 2  # one rank per node
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["n_samples"] for m in metrics] == [6, 6]  # 3 prompts x 2 samples, sharded over the two engines
    assert all(m["sync_logprob_diff"] < 1e-4 for m in metrics)  # both engines hold the learner's weights
