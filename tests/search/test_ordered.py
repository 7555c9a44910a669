"""InOrderSearcher around Ray Tune's real OptunaSearch (TPE): what the study learns, and so what
it samples, depends on the issue order of the trials, not on which finished first."""

from __future__ import annotations

import pytest

optuna = pytest.importorskip("optuna")

from ray.tune.search import Searcher  # noqa: E402
from ray.tune.search.optuna import OptunaSearch  # noqa: E402

from multi_agent_pruning.search.ordered import InOrderSearcher, IssueOrder  # noqa: E402


def _space(trial):
    trial.suggest_float("x", -4.0, 4.0)
    trial.suggest_float("y", -4.0, 4.0)


def _score(config):
    return -((config["x"] - 1.0) ** 2) - (config["y"] + 2.0) ** 2


def _run(finish, *, ordered, budget=10):
    """Two slots; ``finish(running)`` picks which running trial finishes next. Returns the configs
    in issue order, the values the study holds in its trial order, and how often a slot waited."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    inner = OptunaSearch(space=_space, metric="score", mode="max",
                         sampler=optuna.samplers.TPESampler(seed=3, n_startup_trials=2))
    searcher = InOrderSearcher(inner, lag=1, budget=budget) if ordered else inner
    configs, running, waits = [], [], 0
    while len(configs) < budget or running:
        while len(running) < 2 and len(configs) < budget:
            config = searcher.suggest(f"t{len(configs)}")
            if config is None:
                waits += 1
                break
            configs.append(config)
            running.append(len(configs) - 1)
        index = finish(running)
        running.remove(index)
        searcher.on_trial_complete(f"t{index}", {"score": _score(configs[index])})
    study = inner._ot_study
    values = [t.value for t in sorted(study.trials, key=lambda t: t.number)]
    return configs, values, waits


def test_the_study_samples_the_same_points_whichever_trial_finishes_first():
    oldest_first = _run(lambda running: running[0], ordered=True)
    newest_first = _run(lambda running: running[-1], ordered=True)
    assert oldest_first[0] == newest_first[0]
    # Every trial was told to the study, with its own score, including the last ones.
    assert oldest_first[1] == newest_first[1] == [_score(c) for c in oldest_first[0]]
    assert oldest_first[2] == 0 and newest_first[2] > 0


def test_without_the_wrapper_the_order_results_arrive_in_changes_the_search():
    # The reason the wrapper exists: TPE samples from whatever it has been told so far.
    oldest_first = _run(lambda running: running[0], ordered=False)
    newest_first = _run(lambda running: running[-1], ordered=False)
    assert oldest_first[0][:3] == newest_first[0][:3]  # before any result matters
    assert oldest_first[0] != newest_first[0]


def test_a_slot_waits_for_the_earlier_trial_and_the_later_result_is_held_back():
    told = []

    class Recording(Searcher):
        def __init__(self):
            super().__init__(metric="score", mode="max")

        def suggest(self, trial_id):
            return {"n": len(told), "trial": trial_id}

        def on_trial_complete(self, trial_id, result=None, error=False):
            told.append((trial_id, error))

    searcher = InOrderSearcher(Recording(), lag=1, budget=4)
    assert searcher.suggest("a")["n"] == 0 and searcher.suggest("b")["n"] == 0
    searcher.on_trial_complete("b", {"score": 1.0})
    assert searcher.suggest("c") is None and told == []  # "a" still runs
    searcher.on_trial_complete("a", error=True)  # a failed trial counts as finished
    assert searcher.suggest("c")["n"] == 1 and told == [("a", True)]  # "b" is the one of lag
    # "c" runs and "b" had finished: the next one sees "a" and "b".
    assert searcher.suggest("d")["n"] == 2 and told == [("a", True), ("b", False)]
    # All issued: results are handed over as they finish, still in issue order.
    searcher.on_trial_complete("d", {"score": 0.5})
    assert told == [("a", True), ("b", False)]
    searcher.on_trial_complete("c", {"score": 0.0})
    assert told == [("a", True), ("b", False), ("c", False), ("d", False)]


def test_issue_order_refuses_to_reveal_past_a_running_trial():
    order = IssueOrder(1)
    order.issue("a"), order.issue("b")
    order.finish("b", 1)
    assert not order.ready(1) and order.ready(0)
    with pytest.raises(RuntimeError, match="#1"):
        order.reveal(1)
    with pytest.raises(ValueError, match="lag"):
        IssueOrder(-1)


def test_tune_checkpoints_the_wrapper_state_without_the_wrapped_searcher():
    inner = OptunaSearch(space=_space, metric="score", mode="max", sampler=optuna.samplers.TPESampler(seed=0))
    searcher = InOrderSearcher(inner, lag=1, budget=3)
    searcher.suggest("a"), searcher.suggest("b")
    searcher.on_trial_complete("b", {"score": 1.0})
    state = searcher.get_state()
    assert "searcher" not in state and state["order"].order == ["a", "b"]
    copy = InOrderSearcher(OptunaSearch(space=_space, metric="score", mode="max"), lag=1, budget=3)
    copy.set_state(state)
    assert copy.order.finished == {"b": ({"score": 1.0}, False)} and copy.suggest("c") is None
