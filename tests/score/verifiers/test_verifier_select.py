"""Best-of-N selection and its curves against values worked out by hand."""

import numpy as np
import pytest

from score.verifiers.guided import guided_rewards
from score.verifiers.select import best_of_n, curves_table, pick, plot_curves, sizes_up_to, weighted_vote


def _problem(keys, rewards, orm, simpo, cotnpot=None):
    return {"keys": keys, "rewards": rewards, "scores": {"orm": orm, "simpo": simpo}, "cotnpot": cotnpot}


def test_pick_each_method_hand_computed():
    keys = ["7", "5", "5", "7", None, "5"]
    rewards = [1.0, 0.0, 0.0, 1.0, 0.0, 0.0]
    scores = {"orm": [0.9, 0.2, 0.3, 0.8, 0.95, 0.1], "simpo": [-0.1, -0.5, -0.4, -2.0, -3.0, -0.2]}
    assert pick("vote", keys, rewards, scores) == 0.0  # 5 has three votes
    assert pick("orm", keys, rewards, scores) == 0.0  # the empty answer scored 0.95
    assert pick("simpo", keys, rewards, scores) == 1.0  # -0.1 is the best
    # weighted by ORM: 7 -> 1.7, 5 -> 0.6
    assert pick("weighted-vote", keys, rewards, scores, weight_kind="orm") == 1.0
    # weighted by SimPO: 7 -> e^-0.1 + e^-2 = 1.040, 5 -> e^-0.5 + e^-0.4 + e^-0.2 = 2.095
    assert pick("weighted-vote", keys, rewards, scores, weight_kind="simpo") == 0.0
    assert pick("cotnpot", keys, rewards, scores, cotnpot=[False, False, False, True, False, False]) == 1.0
    assert pick("oracle", keys, rewards, scores) == 1.0
    assert weighted_vote(["a", "b"], [1.0, 1.0], [0.0, 1.0]) == 0.0  # a tie goes to the answer seen first
    with pytest.raises(ValueError, match="--select"):
        pick("best", keys, rewards, scores)


def test_best_of_n_curves_average_disjoint_blocks():
    # problem 1, 4 samples: blocks of 2 are (s0, s1) and (s2, s3); problem 2: all wrong
    p1 = _problem(["1", "2", "2", "1"], [1.0, 0.0, 0.0, 1.0], [0.1, 0.9, 0.2, 0.7], [-1.0, -2.0, -3.0, -4.0])
    p2 = _problem(["3", "3", "4", "4"], [0.0] * 4, [0.5] * 4, [-1.0] * 4)
    curves = best_of_n([p1, p2], ["vote", "orm", "simpo", "oracle"], [1, 2, 4], resamples=100)
    # N=1: mean reward; p1 0.5, p2 0 -> 0.25 for every method
    assert [c["acc"][0] for c in curves.values()] == [0.25] * 4
    # N=2, p1: vote picks s0 (1) and s2 (0) -> 0.5; orm picks s1 (0) and s3 (1) -> 0.5; simpo s0 (1), s2 (0) -> 0.5
    # N=4, p1: vote tie 1 vs 2 -> first seen "1" (1.0); orm s1 (0.0); simpo s0 (1.0); oracle 1
    assert curves["vote"]["acc"] == [0.25, 0.25, 0.5]
    assert curves["orm"]["acc"] == [0.25, 0.25, 0.0]
    assert curves["simpo"]["acc"] == [0.25, 0.25, 0.5]
    assert curves["oracle"]["acc"] == [0.25, 0.5, 0.5]
    low, high = curves["vote"]["ci"][2]
    assert 0.0 <= low <= 0.5 <= high <= 1.0
    table = curves_table(curves)
    assert table.splitlines()[0] == "| N | vote | orm | simpo | oracle |" and "| 4 | 50.0 [" in table


def test_sizes_and_plot(tmp_path):
    assert sizes_up_to(16) == [1, 2, 4, 8, 16] and sizes_up_to(3) == [1, 2]
    curves = {"vote": {"n": [1, 2], "acc": [0.5, 0.6], "ci": [[0.4, 0.6], [0.5, 0.7]]}}
    assert plot_curves(curves, tmp_path / "p.png").stat().st_size > 1000


def test_guided_final_answer_is_attempt_2_only_where_doubted():
    r1, r2 = np.array([1.0, 0.0, 1.0, 0.0]), np.array([0.0, 1.0, 0.0, 0.0])
    doubt = np.array([False, True, True, False])
    rewards = guided_rewards(r1, r2, doubt)
    assert rewards.shape == (4, 1, 2)
    assert rewards[:, 0, 0].tolist() == [1.0, 0.0, 1.0, 0.0] and rewards[:, 0, 1].tolist() == [1.0, 1.0, 0.0, 0.0]


def test_request_mode_asks_attempt_2_with_the_conversation_keep_mode_uses(tiny_model_path, scripted):
    """The doubted problems' attempt-2 prompts in request mode are exactly the ones keep mode (score eval's
    two-attempt protocol) sends; problems not doubted get no attempt 2. The verifier here is a scoring rule."""
    from transformers import AutoTokenizer

    from envs.arithmetic import ArithmeticEnv
    from score.evaluate import GREEDY
    from score.rollout import ChatRenderer
    from score.verifiers.guided import guided_correction

    env = ArithmeticEnv(digits=1, ops="+", num_train=10, num_test=6)
    problems = env.load("test")
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_path)
    renderer = ChatRenderer(tokenizer)
    answer = {tuple(renderer.first_turn(env.first_turn_messages(p))): p for p in problems}

    def script(prompt):  # attempt 1: the right answer for even sums, a wrong one for odd; attempt 2: the right one
        p = answer.get(tuple(prompt))
        if p is None:
            return tokenizer.encode(next(q.reference for k, q in answer.items() if list(k) == prompt[:len(k)]),
                                    add_special_tokens=False)
        return tokenizer.encode(p.reference if int(p.reference) % 2 == 0 else "99", add_special_tokens=False)

    class Doubts:  # doubts an attempt that says 99
        def score(self, messages, texts):
            return [0.0 if "99" in t else 1.0 for t in texts]

    runs = {}
    for mode in ("request", "keep"):
        generate = scripted(script)
        runs[mode] = (guided_correction(env, problems, renderer, generate, Doubts(), mode=mode, threshold=0.5,
                                        params=GREEDY, resamples=50), generate.prompts)
    (request, request_prompts), (keep, keep_prompts) = runs["request"], runs["keep"]
    doubted = [r["doubted"] for r in request["records"]]
    assert doubted == [int(p.reference) % 2 == 1 for p in problems]
    assert request_prompts[6:] == [p for p, d in zip(keep_prompts[6:], doubted) if d]
    assert request["guided"]["acc_t2"] == keep["guided"]["acc_t2"] == 1.0
    assert keep["always"]["acc_t2"] == 1.0 and request["requested_frac"] == sum(doubted) / 6
