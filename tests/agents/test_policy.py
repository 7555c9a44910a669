"""The built-in policy's proposals: the first batch's templates, novelty and the refinement moves."""

from __future__ import annotations

import math

import pytest

from multi_agent_pruning.agents.policy import BuiltinPolicy, Observation, gene_success, sensitivity_multipliers
from multi_agent_pruning.core.strategy import Strategy

KINDS = {
    "stage1": {"sensitivity": 0.4, "macs_share": 0.5},
    "stage2": {"sensitivity": 0.1, "macs_share": 0.3},
    "stage3": {"sensitivity": 0.9, "macs_share": 0.2},
}
BASE = Strategy(learning_rate=1e-3, target_reduction=0.8)


def test_sensitivity_multipliers_prune_insensitive_kinds_more_and_keep_the_macs_weighted_mean():
    mult = sensitivity_multipliers(KINDS)
    assert mult["stage2"] > mult["stage1"] > mult["stage3"]
    mean = sum(KINDS[k]["macs_share"] * mult[k] for k in KINDS)
    assert mean == pytest.approx(1.0, abs=1e-3)
    assert sensitivity_multipliers({"a": {"sensitivity": None, "macs_share": 1.0}}) == {}


def test_first_batch_walks_the_templates_in_order():
    batch = BuiltinPolicy(seed=0).propose(KINDS, BASE, [], batch_size=4, iteration=0)
    described = [(s.importance, s.global_pruning, s.isomorphic, s.learning_rate, s.kd_weight, s.round_to)
                 for s in batch]
    assert described == [
        ("l1", True, False, 5e-3, 0.5, None),
        ("l1", False, False, 5e-3, 0.5, 8),  # per layer: channel counts in multiples of 8
        ("l2", False, False, 4e-3, 0.0, None),
        ("taylor", False, False, 6e-3, 0.0, None),
    ]
    # A template without its own round_to keeps the configured one.
    configured = BuiltinPolicy(seed=0).propose(KINDS, BASE.replace(round_to=4), [], batch_size=2, iteration=0)
    assert [s.round_to for s in configured] == [4, 8]
    assert batch[0].group_multipliers == {"stage1": 1.0, "stage2": 1.0, "stage3": 1.0}
    # The target and the recovery budget are the base's.
    assert {(s.target_reduction, s.finetune_steps) for s in batch} == {(0.8, None)}


def test_first_batch_respects_the_allowed_criteria_and_attention():
    policy = BuiltinPolicy(seed=0, criteria=("taylor", "l2"))
    batch = policy.propose(KINDS, BASE.replace(prune_num_heads=True), [], batch_size=5, iteration=0)
    assert {s.importance for s in batch} <= {"taylor", "l2"} and len(batch) == 5
    assert [s.importance for s in batch[:3]] == ["l2", "taylor", "taylor"]
    assert not any(s.prune_num_heads for s in batch)  # no attention in the profile
    with_heads = policy.propose(KINDS, BASE.replace(prune_num_heads=True), [], batch_size=2, iteration=0,
                                has_attention=True)
    assert all(s.prune_num_heads for s in with_heads)


def test_models_with_attention_start_with_the_isomorphic_pruning_recipe():
    batch = BuiltinPolicy(seed=0).propose(KINDS, BASE, [], batch_size=4, iteration=0, has_attention=True)
    described = [(s.importance, s.global_pruning, s.isomorphic, s.learning_rate, s.kd_weight) for s in batch]
    assert described == [
        ("taylor", True, True, 3e-3, 0.5),  # Taylor, global, isomorphic: the recipe for DeiT
        ("lamp", True, True, 2e-3, 0.5),  # then the other global isomorphic ones, lower rates first
        ("hessian", True, True, 1.5e-3, 0.0),
        ("l2", True, True, 1e-2, 0.0),
    ]
    assert all(s.group_multipliers == sensitivity_multipliers(KINDS) for s in batch)
    # The whole list is the CNN order with those four moved to the front, nothing lost.
    cnn = BuiltinPolicy(seed=0).propose(KINDS, BASE, [], batch_size=10, iteration=0)
    vit = BuiltinPolicy(seed=0).propose(KINDS, BASE, [], batch_size=10, iteration=0, has_attention=True)
    assert [s.key() for s in vit] == [s.key() for s in [cnn[4], cnn[5], cnn[8], cnn[6], *cnn[:4], cnn[7], cnn[9]]]


def test_models_without_attention_try_the_per_layer_templates_before_the_isomorphic_recipe():
    batch = BuiltinPolicy(seed=0).propose(KINDS, BASE, [], batch_size=5, iteration=0)
    recipe = batch[4]  # the Isomorphic Pruning recipe: fifth on CNNs
    assert (recipe.importance, recipe.global_pruning, recipe.isomorphic, recipe.learning_rate) == ("taylor", True, True, 3e-3)
    assert recipe.group_multipliers == sensitivity_multipliers(KINDS)
    # With batches of two, the later rounds explore the first four templates, one per round:
    # the recipe is not among them on a CNN.
    policy = BuiltinPolicy(seed=0)
    first = policy.propose(KINDS, BASE, [], batch_size=2, iteration=0)
    history = [Observation(s, 0.5) for s in first]
    explored = []
    for iteration in (1, 2):
        batch = policy.propose(KINDS, BASE, history, batch_size=2, iteration=iteration)
        explored.append((batch[0].importance, batch[0].global_pruning))
        history += [Observation(s, 0.4) for s in batch]
    assert explored == [("l2", False), ("taylor", False)]


def test_later_batches_are_new_and_refine_the_best():
    policy = BuiltinPolicy(seed=3)
    first = policy.propose(KINDS, BASE, [], batch_size=4, iteration=0)
    history = [Observation(s, score) for s, score in zip(first, (0.9, 0.5, None, 0.6))]
    seen = {s.key() for s in first}
    proposals = []
    for iteration in range(1, 6):
        batch = policy.propose(KINDS, BASE, history, batch_size=4, iteration=iteration)
        assert len(batch) == 4 and not {s.key() for s in batch} & seen
        seen |= {s.key() for s in batch}
        proposals += batch
        history += [Observation(s, 0.1) for s in batch]
    # The first four templates were all tried: everything later is a mutation, mostly of the best
    # parent (L1 global with distillation).
    assert sum(s.importance == "l1" and s.global_pruning for s in proposals) >= 8
    # Mutations move the learning rate most often, then the multipliers, and sometimes distillation,
    # round_to and the ranking mode.
    assert len({s.learning_rate for s in proposals}) >= 6
    assert len({tuple(sorted(s.group_multipliers.items())) for s in proposals}) >= 4
    assert {s.kd_weight for s in proposals} == {0.0, 0.5}
    assert len({s.round_to for s in proposals}) >= 2
    assert all(0.25 <= m <= 2.5 for s in proposals for m in s.group_multipliers.values())

    # Each child changes one or two genes of a strategy evaluated before it.
    def genes(s):
        return (s.learning_rate, tuple(sorted(s.group_multipliers.items())), s.kd_weight, s.round_to,
                (s.global_pruning, s.isomorphic), s.importance)

    earlier = list(first)
    for child in proposals:
        assert min(sum(a != b for a, b in zip(genes(child), genes(p))) for p in earlier) <= 2
        earlier.append(child)


def test_proposals_are_reproducible_from_the_seed():
    def run(seed):
        policy = BuiltinPolicy(seed=seed)
        first = policy.propose(KINDS, BASE, [], batch_size=2, iteration=0)
        history = [Observation(s, 0.7) for s in first]
        return [s.key() for s in policy.propose(KINDS, BASE, history, batch_size=6, iteration=1)]

    assert run(1) == run(1)
    assert run(1) != run(2)


def test_after_the_first_batch_the_best_strategy_is_probed_at_half_its_rate():
    policy = BuiltinPolicy(seed=0)
    first = policy.propose(KINDS, BASE, [], batch_size=2, iteration=0)
    history = [Observation(first[0], 0.8), Observation(first[1], 0.6)]  # L1 global at 5x wins
    batch = policy.propose(KINDS, BASE, history, batch_size=2, iteration=1)
    assert batch[0].importance == "l2" and not batch[0].global_pruning  # the next template
    assert batch[1] == first[0].replace(learning_rate=2.5e-3)  # the best, at half its rate
    # A best strategy already below the configured rate is probed at twice its rate.
    low = first[0].replace(learning_rate=5e-4)
    again = BuiltinPolicy(seed=0).propose(KINDS, BASE, [Observation(low, 0.9)], batch_size=2, iteration=1)
    assert low.replace(learning_rate=1e-3) in again


@pytest.mark.parametrize("scores, expected", [
    ({1e-3: 0.5, 2e-3: 0.7}, (2e-3 * 1.5, 2e-3 * 4.1)),   # up is better: on past 2e-3, by about the gap
    ({1e-3: 0.7, 2e-3: 0.5}, (1e-3 / 4.1, 1e-3 / 1.5)),   # down is better
    ({1e-3: 0.5, 2e-3: 0.7, 4e-3: 0.6}, (1.3e-3, 3.8e-3)),  # near the parabola's maximum, 2.24e-3
    ({1e-3: 0.4, 2e-3: 0.5, 4e-3: 0.7}, (4e-3 * 1.5, 4e-3 * 2.7)),  # no maximum inside: past the best edge
])
def test_learning_rate_line_search(scores, expected):
    parent = BASE.replace(learning_rate=2e-3)
    for seed in range(20):
        lr = BuiltinPolicy(seed=seed)._next_lr(parent, scores, sigma=0.3)
        assert expected[0] <= lr <= expected[1], (seed, lr)


def test_learning_rate_without_siblings_takes_a_log_normal_step():
    parent = BASE.replace(learning_rate=2e-3)
    steps = [math.log(BuiltinPolicy(seed=s)._next_lr(parent, {2e-3: 0.6}, sigma=0.3) / 2e-3) for s in range(200)]
    assert abs(sum(steps) / len(steps)) < 0.06 and 0.25 < (sum(x * x for x in steps) / len(steps)) ** 0.5 < 0.35


def test_gene_success_credits_the_changed_gene_against_the_parent_it_came_from():
    parent = BASE.replace(importance="l1", group_multipliers={"stage1": 1.0, "stage2": 1.0, "stage3": 1.0})
    lr_child = parent.replace(learning_rate=2e-3)
    mult_child = parent.replace(group_multipliers={"stage1": 1.2, "stage2": 0.9, "stage3": 1.0})
    two_genes = mult_child.replace(kd_weight=0.5, round_to=4)  # 2 genes from mult_child, 3 from parent
    other = parent.replace(importance="taylor", learning_rate=9e-3, kd_weight=0.5)  # 3 genes: a template
    pending = parent.replace(learning_rate=7e-3)
    history = [Observation(parent, 0.6), Observation(lr_child, 0.7), Observation(mult_child, 0.5),
               Observation(two_genes, 0.55), Observation(other, 0.9), Observation(pending, None)]
    success = gene_success(history)
    assert success["lr"] == (1, 1) and success["multipliers"] == (0, 1)
    assert success["kd"] == (1, 1) and success["round_to"] == (1, 1)  # beat mult_child (0.5)
    assert success["criterion"] == (0, 0) and success["ranking"] == (0, 0)
    # The odds follow: lr 3 * (2/4) / (1/3) = 4.5, multipliers 2 * (1/4) / (1/3) = 1.5.
    from multi_agent_pruning.agents.policy import _HistoryIndex

    weights = _HistoryIndex(history).gene_weights()
    assert weights["lr"] == pytest.approx(4.5) and weights["multipliers"] == pytest.approx(1.5)
    assert weights["criterion"] == pytest.approx(0.7)
