"""The master over a sweep of targets: where the batch is spent, recipes shared across targets,
convergence per target, and the LLM asked per target with every target's results."""

from __future__ import annotations

import json

import pytest

from multi_agent_pruning.agents.frontier import FrontierPolicy, retarget, same_target
from multi_agent_pruning.agents.master import MasterAgent
from multi_agent_pruning.agents.policy import BuiltinPolicy, Observation
from multi_agent_pruning.core.strategy import Strategy
from multi_agent_pruning.testing.tiny import tiny_profile
from support.llm_server import reply_json

KINDS = {
    "stage1": {"sensitivity": 0.4, "macs_share": 0.5},
    "stage2": {"sensitivity": 0.1, "macs_share": 0.3},
    "stage3": {"sensitivity": 0.9, "macs_share": 0.2},
}
#: Keep 70 %, 50 %, 30 %, 20 % of the MACs: widths 0.3, 0.2, 0.2, 0.1 of the frontier's area.
BASES = [Strategy(learning_rate=1e-3, target_reduction=r) for r in (0.3, 0.5, 0.7, 0.8)]
DENSE = {"macs": 1e6, "params": 1e5}


def _at(base: Strategy, score: float | None, **changes) -> Observation:
    return Observation(base.replace(**changes), score)


def test_widths_are_the_share_of_the_area_each_target_controls():
    assert FrontierPolicy.widths(BASES, DENSE) == pytest.approx([0.3, 0.2, 0.2, 0.1])
    budgets = [Strategy(target_budget=b, target_reduction=None) for b in (5e5, 2e5)]
    assert FrontierPolicy.widths(budgets, DENSE) == pytest.approx([0.5, 0.3])


def test_every_target_gets_two_trials_first_then_the_uncertain_ones_get_more():
    policy = FrontierPolicy(BuiltinPolicy(seed=0))
    # Nothing tried: one slot each, widest first when the batch is short.
    assert policy.allocate(BASES, [], [], 4, DENSE) == [1, 1, 1, 1]
    assert policy.allocate(BASES, [], [], 2, DENSE) == [1, 1, 0, 0]
    # A running trial counts: the target with one pending gets no "new target" slot.
    assert policy.allocate(BASES, [], [BASES[0]], 3, DENSE) == [0, 1, 1, 1]
    # Two scores each; the easy target is saturated (every strategy ~0.99), the hard one spreads
    # widely: the hard targets get the batch although the easiest controls the widest strip.
    history = [_at(BASES[0], 0.990, learning_rate=1e-3), _at(BASES[0], 0.991, learning_rate=2e-3),
               _at(BASES[1], 0.985, learning_rate=1e-3), _at(BASES[1], 0.984, learning_rate=2e-3),
               _at(BASES[2], 0.70, learning_rate=1e-3), _at(BASES[2], 0.90, learning_rate=2e-3),
               _at(BASES[3], 0.40, learning_rate=1e-3), _at(BASES[3], 0.80, learning_rate=2e-3)]
    slots = policy.allocate(BASES, history, [], 6, DENSE)
    assert sum(slots) == 6 and slots[0] == 0 and slots[1] == 0
    # gains: 0.2 * 0.1414 * (e(3) - e(2)) = 0.1 * 0.2828 * (e(3) - e(2)): equal, so the two alternate,
    # the easier first on a tie, each falling as its trials add up.
    assert slots == [0, 0, 3, 3]
    # Every target gets two trials before the spreads decide.
    one_each = [_at(b, 0.9, learning_rate=1e-3) for b in BASES]
    assert policy.allocate(BASES, one_each, [], 4, DENSE) == [1, 1, 1, 1]
    # Failed trials count as trials: a target where everything failed is not retried for ever.
    failed = [_at(BASES[3], None, learning_rate=lr) for lr in (1e-3, 2e-3, 3e-3, 4e-3, 5e-3, 6e-3, 7e-3, 8e-3)]
    assert policy.allocate(BASES, history[:6] + failed, [], 4, DENSE)[3] == 0


def test_a_good_recipe_is_tried_at_the_other_targets_nearest_first():
    policy = FrontierPolicy(BuiltinPolicy(seed=0))
    good = BASES[1].replace(importance="l2", learning_rate=4e-3)
    history = [Observation(good, 0.95), _at(BASES[1], 0.90, importance="taylor"),
               _at(BASES[2], 0.80, importance="fpgm")]
    seen = {o.strategy.key() for o in history}
    at_70 = policy.transfers(2, BASES, history, seen)
    assert at_70[0].key() == retarget(good, BASES[2]).key()  # 50 %'s best, first
    assert at_70[0].target_reduction == 0.7 and at_70[0].importance == "l2" and at_70[0].learning_rate == 4e-3
    # A harder target's recipe that beats this target's best goes first (the frontier must fall).
    beaten = history + [_at(BASES[0], 0.96, importance="lamp"), _at(BASES[2], 0.99, importance="hessian")]
    at_30 = policy.transfers(0, BASES, beaten, {o.strategy.key() for o in beaten})
    assert (at_30[0].importance, at_30[0].target_reduction) == ("hessian", 0.3)
    # Already tried here: not proposed again.
    tried = history + [Observation(retarget(good, BASES[2]), 0.7)]
    assert all(s.importance != "l2" or s.learning_rate != 4e-3
               for s in policy.transfers(2, BASES, tried, {o.strategy.key() for o in tried}))


def test_a_frontier_batch_is_new_spread_over_the_targets_and_reproducible():
    history = [_at(b, 0.9 - 0.1 * i, importance="l1", global_pruning=True, kd_weight=0.5, learning_rate=5e-3)
               for i, b in enumerate(BASES)]
    first = FrontierPolicy(BuiltinPolicy(seed=3)).propose(KINDS, BASES, [], [], 4, dense=DENSE)
    assert [s.target_reduction for s in first] == [0.3, 0.5, 0.7, 0.8]
    assert len({s.key() for s in first}) == 4
    # The first batch starts each target at the policy's first template.
    assert {(s.importance, s.global_pruning, s.learning_rate) for s in first} == {("l1", True, 5e-3)}
    batch = FrontierPolicy(BuiltinPolicy(seed=3)).propose(KINDS, BASES, history, [], 8, dense=DENSE)
    again = FrontierPolicy(BuiltinPolicy(seed=3)).propose(KINDS, BASES, history, [], 8, dense=DENSE)
    assert [s.key() for s in batch] == [s.key() for s in again]
    assert len(batch) == 8 and len({s.key() for s in batch}) == 8
    assert not {s.key() for s in batch} & {o.strategy.key() for o in history}
    assert all(any(same_target(s, b) for b in BASES) for s in batch)


@pytest.fixture(scope="module")
def profile(tmp_path_factory):
    return tiny_profile(str(tmp_path_factory.mktemp("cache")), steps=20)


def test_master_proposes_over_the_targets_and_reports_where_it_spends(profile):
    master = MasterAgent({"seed": 0, "batch_size": 6, "max_iterations": 3})
    proposal = master.propose(profile, BASES, [], iteration=0)
    assert len(proposal.strategies) == 6 and proposal.continue_iterations
    frontier = proposal.directives["frontier"]
    assert [f["target"]["reduction"] for f in frontier] == [0.3, 0.5, 0.7, 0.8]
    assert [f["proposed"] for f in frontier] == [sum(s.target_reduction == r for s in proposal.strategies)
                                                 for r in (0.3, 0.5, 0.7, 0.8)]
    assert all(f["proposed"] >= 1 for f in frontier)
    # The same call with one base is the single-target search, unchanged.
    single = MasterAgent({"seed": 0, "batch_size": 4}).propose(profile, BASES[1], [], iteration=0)
    listed = MasterAgent({"seed": 0, "batch_size": 4}).propose(profile, [BASES[1]], [], iteration=0)
    assert [s.key() for s in single.strategies] == [s.key() for s in listed.strategies]
    assert "frontier" not in single.directives


def test_master_converges_only_when_no_target_improves(profile):
    master = MasterAgent({"seed": 0, "batch_size": 4, "max_iterations": 9, "convergence_threshold": 0.01})
    rows = [{"strategy": b.replace(importance="l2").to_dict(), "score": 0.9, "status": "ok"} for b in BASES[:2]]
    assert master.propose(profile, BASES, rows, iteration=1).continue_iterations
    # Iteration 2: 0.3 gained nothing, but 0.5 gained 0.05: go on.
    more = rows + [{"strategy": BASES[1].replace(importance="fpgm").to_dict(), "score": 0.95, "status": "ok"}]
    assert master.propose(profile, BASES, more, iteration=2).continue_iterations
    # Iteration 3: a first result at 0.7 counts as progress.
    first = more + [{"strategy": BASES[2].replace(importance="l2").to_dict(), "score": 0.5, "status": "ok"}]
    assert master.propose(profile, BASES, first, iteration=3).continue_iterations
    # Iteration 4: nothing moved by 0.01 or more anywhere: converged.
    flat = first + [{"strategy": BASES[2].replace(importance="fpgm").to_dict(), "score": 0.505, "status": "ok"}]
    stopped = master.propose(profile, BASES, flat, iteration=4)
    assert not stopped.continue_iterations and "no target's best accuracy improved" in stopped.stop_reason


def test_master_execute_takes_a_list_of_target_ratios(profile):
    out = MasterAgent({"seed": 1, "batch_size": 3}).execute(
        {"profile_results": profile, "target_ratio": [0.7, 0.3, 0.5]})
    assert sorted(s["pruning_ratio"] for s in out["strategies"]) == [0.3, 0.5, 0.7]
    assert [f["target"]["reduction"] for f in out["directives"]["frontier"]] == [0.3, 0.5, 0.7]


def test_llm_is_asked_once_per_target_with_every_targets_results(profile, llm_server, make_llm_client):
    llm_server.script(*[reply_json({"strategies": [{"importance": "l2", "learning_rate": 0.002 * (i + 1),
                                                    "target_reduction": 0.99}],
                                    "reasoning": f"target {i}"}) for i in range(2)])
    master = MasterAgent({"seed": 0, "batch_size": 2, "llm_client": make_llm_client()})
    bases = BASES[1:3]
    history = [{"strategy": bases[0].replace(importance="taylor").to_dict(), "score": 0.8, "status": "ok"}]
    proposal = master.propose(profile, bases, history, iteration=1)
    assert len(llm_server.chat_requests) == 2  # one per target that got a slot
    contexts = [r.messages_text() for r in llm_server.chat_requests]
    assert all('"frontier"' in text and '"best_top1": 0.8' in text for text in contexts)
    # Each target's strategies are at that target whatever the reply said (the target is fixed).
    assert sorted(s.target_reduction for s in proposal.strategies) == [0.5, 0.7]
    assert {s.importance for s in proposal.strategies} == {"l2"} and proposal.source == "llm"
    assert proposal.llm["targets"] == 2 and "target 0" in proposal.llm["reasoning"]
    assert json.loads(json.dumps(proposal.directives["frontier"]))[0]["best_top1"] == 0.8


def test_analysis_accepts_any_target_of_the_sweep_and_rejects_others(profile):
    from multi_agent_pruning.agents.analysis import AnalysisAgent

    targets = [{"kind": "macs", "reduction": r, "budget": None} for r in (0.3, 0.5)]
    verdict = AnalysisAgent().check([BASES[0], BASES[1], BASES[2]], profile, target=targets)
    assert [s.target_reduction for s in verdict.approved] == [0.3, 0.5]
    assert len(verdict.rejected) == 1 and "differs from the experiment's targets" in verdict.rejected[0]["reasons"][0]
    single = AnalysisAgent().check([BASES[0], BASES[1]], profile, target=targets[1])
    assert [s.target_reduction for s in single.approved] == [0.5]
    assert "differs from the experiment's target {" in single.rejected[0]["reasons"][0]


def test_each_target_runs_its_own_round_however_its_slots_arrive():
    """The sweep's round count runs ahead of each target's: a target's templates and learning-rate
    probe still come before mutations, as in a search of that target alone (BENCHMARKS.md, run 2),
    and one slot at a time gives the round a search of it alone runs, probe first (run 4: with one
    template per slot the joint search never ran the probe)."""
    assert [FrontierPolicy.local_round(n, 2, 4) for n in (0, 1, 2, 3, 4, 6)] == [0, 0, 1, 1, 2, 3]
    assert FrontierPolicy.local_round(8, 16, 4) == 2  # four a round when the batch allows
    templates = BuiltinPolicy(seed=0).propose(KINDS, BASES[0], [], 4, 0)
    history = [Observation(t.replace(target_reduction=b.target_reduction), 0.9 - 0.01 * i)
               for b in BASES for i, t in enumerate(templates[:2])]
    batch = FrontierPolicy(BuiltinPolicy(seed=0)).propose(KINDS, BASES, history, [], 4, dense=DENSE,
                                                          slots=[1, 1, 1, 1])
    first = templates[0]  # the best of the two at every target: half its rate, towards the configured one
    assert [(s.importance, s.global_pruning, s.kd_weight, s.learning_rate) for s in batch] == \
        [(first.importance, first.global_pruning, first.kd_weight, first.learning_rate / 2)] * 4
    assert [s.target_reduction for s in batch] == [0.3, 0.5, 0.7, 0.8]
    # The next slot of the round is the third template (per-layer L2, not yet tried anywhere) ...
    third = templates[2]
    later = FrontierPolicy(BuiltinPolicy(seed=0)).propose(KINDS, BASES, history, batch, 4, dense=DENSE,
                                                          slots=[1, 1, 1, 1])
    assert all((s.importance, s.global_pruning, s.learning_rate) == (third.importance, third.global_pruning,
                                                                     third.learning_rate) for s in later)
    # ... with the probe's score known or not: the round is planned from the trials before it.
    scored = history + [Observation(s, 0.95) for s in batch]
    assert [s.key() for s in FrontierPolicy(BuiltinPolicy(seed=0)).propose(
        KINDS, BASES, scored, [], 4, dense=DENSE, slots=[1, 1, 1, 1])] == [s.key() for s in later]
    # Both slots of the round at once: the same two strategies per target as one at a time.
    both = FrontierPolicy(BuiltinPolicy(seed=0)).propose(KINDS, BASES, history, [], 8, dense=DENSE,
                                                         slots=[2, 2, 2, 2])
    assert {s.key() for s in both} == {s.key() for s in [*batch, *later]}
    # A target alone (single-target search, round 1, two a round) runs the same two.
    alone = BuiltinPolicy(seed=0).propose(KINDS, BASES[1], [o for o in history if same_target(o.strategy, BASES[1])],
                                          2, 1)
    assert {s.key() for s in alone} == {s.key() for s in [*batch, *later] if same_target(s, BASES[1])}


def test_a_harder_targets_better_recipe_comes_before_the_round():
    policy = FrontierPolicy(BuiltinPolicy(seed=0))
    templates = BuiltinPolicy(seed=0).propose(KINDS, BASES[0], [], 2, 0)
    history = [Observation(t.replace(target_reduction=b.target_reduction), 0.8) for b in BASES[:2] for t in templates]
    history.append(_at(BASES[1], 0.9, importance="hessian"))
    batch = policy.propose(KINDS, BASES[:2], history, [], 1, dense=DENSE, slots=[1, 0])
    assert [(s.importance, s.target_reduction) for s in batch] == [("hessian", 0.3)]
    # Once tried, the target's own round goes on.
    tried = history + [Observation(batch[0], 0.85)]
    again = policy.propose(KINDS, BASES[:2], tried, [], 1, dense=DENSE, slots=[1, 0])
    assert again[0].importance == templates[0].importance and again[0].learning_rate != templates[0].learning_rate
