"""The built-in policy's proposals: the first batch's templates, novelty and the refinement moves."""

from __future__ import annotations

import pytest

from multi_agent_pruning.agents.policy import BuiltinPolicy, Observation, sensitivity_multipliers
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
    described = [(s.importance, s.global_pruning, s.isomorphic, s.learning_rate, s.kd_weight) for s in batch]
    assert described == [
        ("l1", True, False, 5e-3, 0.5),
        ("l1", False, False, 8e-3, 0.5),
        ("taylor", True, True, 3e-3, 0.5),
        ("l2", False, False, 4e-3, 0.0),
    ]
    assert batch[0].group_multipliers == {"stage1": 1.0, "stage2": 1.0, "stage3": 1.0}
    assert batch[2].group_multipliers == sensitivity_multipliers(KINDS)
    # The target and the recovery budget are the base's.
    assert {(s.target_reduction, s.finetune_steps) for s in batch} == {(0.8, None)}


def test_first_batch_respects_the_allowed_criteria_and_attention():
    policy = BuiltinPolicy(seed=0, criteria=("taylor", "l2"))
    batch = policy.propose(KINDS, BASE.replace(prune_num_heads=True), [], batch_size=5, iteration=0)
    assert {s.importance for s in batch} <= {"taylor", "l2"} and len(batch) == 5
    assert [s.importance for s in batch[:3]] == ["taylor", "l2", "taylor"]
    assert not any(s.prune_num_heads for s in batch)  # no attention in the profile
    with_heads = policy.propose(KINDS, BASE.replace(prune_num_heads=True), [], batch_size=2, iteration=0,
                                has_attention=True)
    assert all(s.prune_num_heads for s in with_heads)


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
