#!/usr/bin/env bash
# Start a Ray cluster for the GPU recipes (launch/qwen_math_stage*.yaml, launch/code_stage*.yaml, ray.address: auto).
#
#   launch/ray_cluster.sh head                 # on the head node (runs the driver: `score train ...`)
#   launch/ray_cluster.sh worker HEAD_IP       # on every other node
#   launch/ray_cluster.sh status | stop
#
# Every node needs the same Python environment (pip install -e '.[gpu]') and the model folder at the same path.
# Ray schedules the learner (ray.learner_num_gpus) and the rollout engines (rollout.num_engines x rollout.num_gpus)
# on whichever nodes have free GPUs; reward workers take CPUs only.
set -euo pipefail

PORT="${RAY_PORT:-6379}"
case "${1:-}" in
  head)
    ray start --head --port="$PORT" --dashboard-host=0.0.0.0
    echo "now run: score train launch/qwen_math_stage1.yaml   (ray.address: auto joins this cluster)"
    ;;
  worker)
    [ -n "${2:-}" ] || { echo "usage: $0 worker HEAD_IP" >&2; exit 2; }
    ray start --address="$2:$PORT"
    ;;
  status) ray status ;;
  stop) ray stop ;;
  *) echo "usage: $0 head | worker HEAD_IP | status | stop" >&2; exit 2 ;;
esac
