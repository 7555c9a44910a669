"""The six agents driven on tiny models, asserting the documented keys and values."""

from __future__ import annotations

import pytest
import torch

from multi_agent_pruning.agents import (
    AgentResponse,
    AnalysisAgent,
    BaseAgent,
    EvaluationAgent,
    FineTuningAgent,
    MasterAgent,
    ProfilingAgent,
    PruningAgent,
)
from multi_agent_pruning.core.strategy import Strategy
from multi_agent_pruning.data import create_loaders, load_dataset
from support.llm_server import reply, reply_json
from multi_agent_pruning.testing.tiny import TinyResNet, calibration_batches, train_briefly
from multi_agent_pruning.utils.metrics import register_metric

X = torch.randn(1, 1, 16, 16)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="module")
def trained(digits):
    torch.manual_seed(0)
    return train_briefly(TinyResNet(), digits, steps=60)


@pytest.fixture(scope="module")
def profile(trained, digits, tmp_path_factory):
    agent = ProfilingAgent({"cache_dir": str(tmp_path_factory.mktemp("cache"))})
    return agent.execute({"model": trained, "model_name": "tiny", "dataset": "digits", "input_size": (1, 16, 16),
                          "calibration": calibration_batches(digits)})["profile"]


def test_profiling_agent_reports_groups_that_add_up(profile, trained):
    from multi_agent_pruning.utils.metrics import compute_macs

    assert profile["architecture_type"] == "cnn"
    layers = profile["prunable_layers"]
    assert len(layers) == 4
    assert sum(g["macs"] for g in layers) == pytest.approx(profile["prunable_macs"])
    # Everything but parameter-free ops (ReLU, pooling) is attributable to some group.
    assert 0.99 * compute_macs(trained, (1, 1, 16, 16)) <= profile["prunable_macs"] <= profile["base_macs"]
    assert sum(g["macs_share"] for g in layers) == pytest.approx(1.0)
    assert all(g["sensitivity"] is not None for g in layers)
    assert max(g["sensitivity"] for g in layers) > 0
    assert profile["safety_limits"]["max_overall_pruning"] == 0.8
    assert set(profile["safety_limits"]["kind_limits"]) == set(profile["kinds"])


def test_profiling_agent_caches_by_weights(trained, digits, tmp_path):
    agent = ProfilingAgent({"cache_dir": str(tmp_path)})
    data = {"model": trained, "model_name": "tiny", "dataset": "digits", "input_size": (1, 16, 16),
            "calibration": calibration_batches(digits)}
    first, second = agent.execute(data), agent.execute(data)
    assert (first["cached"], second["cached"]) == (False, True)
    assert second["profile"]["groups"] == first["profile"]["groups"]
    changed = TinyResNet()
    assert agent.execute({**data, "model": changed})["cached"] is False
    expired = ProfilingAgent({"cache_dir": str(tmp_path), "cache_duration": 0})
    assert expired.execute(data)["cached"] is False


def _history(strategies, scores):
    return [{"strategy": s, "score": sc, "status": "ok" if sc is not None else "failed"}
            for s, sc in zip(strategies, scores)]


def test_master_proposes_distinct_new_strategies_and_stops(profile):
    master = MasterAgent({"max_iterations": 3, "convergence_threshold": 0.0, "batch_size": 4})
    first = master.execute({"profile_results": profile, "target_ratio": 0.5, "history": [], "revision_number": 0})
    assert first["success"] and first["continue_iterations"] and first["source"] == "builtin"
    keys = {Strategy.from_dict({k: v for k, v in s.items() if k not in ("importance_criterion", "pruning_ratio")}).key()
            for s in first["strategies"]}
    assert len(keys) == 4
    assert first["strategy"]["importance_criterion"] == "l1" and first["strategy"]["pruning_ratio"] == 0.5
    history = _history(first["strategies"], [0.6, 0.7, None, 0.5])
    second = master.execute({"profile_results": profile, "target_ratio": 0.5, "history": history,
                             "revision_number": 1})
    new_keys = {Strategy.from_dict({k: v for k, v in s.items() if k not in ("importance_criterion", "pruning_ratio")}).key()
                for s in second["strategies"]}
    assert len(new_keys) == 4 and not new_keys & keys  # never re-proposes an evaluated strategy
    assert second["directives"]["best_score"] == 0.7
    assert 0 < second["confidence"] <= 1
    last = master.execute({"profile_results": profile, "target_ratio": 0.5, "history": history, "revision_number": 3})
    assert last["continue_iterations"] is False and "max_iterations" in last["stop_reason"]


def test_master_stops_when_converged(profile):
    master = MasterAgent({"max_iterations": 10, "convergence_threshold": 0.01, "batch_size": 2})
    s1 = master.execute({"profile_results": profile, "target_ratio": 0.5, "history": [], "revision_number": 0})
    h = _history(s1["strategies"], [0.70, 0.60])
    s2 = master.execute({"profile_results": profile, "target_ratio": 0.5, "history": h, "revision_number": 1})
    assert s2["continue_iterations"]
    h += _history(s2["strategies"], [0.705, 0.1])
    s3 = master.execute({"profile_results": profile, "target_ratio": 0.5, "history": h, "revision_number": 2})
    assert s3["continue_iterations"] is False and "converged" in s3["stop_reason"]


def test_analysis_agent_strict_rejects_with_reasons_and_warn_clamps(profile):
    base = Strategy(target_reduction=0.5)
    over = base.replace(max_layer_pruning=0.99, group_multipliers={"attention": 1.5})
    ok = base.replace(importance="l2")
    strict = AnalysisAgent({"safety_enforcement": "strict"}).execute(
        {"profile_results": profile, "strategies": [over.to_dict(), ok], "target": {"kind": "macs", "reduction": 0.5,
                                                                                   "budget": None}})
    assert len(strict["approved"]) == 1 and len(strict["rejected"]) == 1
    reasons = " ".join(strict["rejected"][0]["reasons"])
    assert "max_layer_pruning=0.99" in reasons and "'attention'" in reasons
    approved = strict["approved"][0]
    assert approved["min_channels"] == 4  # the safety minimum is installed
    assert set(approved["kind_max_pruning"]) == set(profile["kinds"])
    assert all(v <= 0.9 for v in approved["kind_max_pruning"].values())
    warn = AnalysisAgent({"safety_enforcement": "warn"}).execute({"profile_results": profile, "strategies": [over]})
    assert not warn["rejected"] and warn["approved"][0]["max_layer_pruning"] == 0.9
    assert "attention" not in warn["approved"][0]["group_multipliers"]
    assert any("max_layer_pruning 0.99 -> 0.9" in c for c in warn["changes"][0]["changes"])


def test_analysis_agent_rejects_targets_beyond_the_overall_limit(profile):
    too_far = Strategy(target_reduction=0.95)
    out = AnalysisAgent({}).execute({"profile_results": profile, "strategies": [too_far]})
    assert out["approved"] == [] and "max_overall_pruning=0.8" in out["rejected"][0]["reasons"][0]
    changed_target = AnalysisAgent({}).execute({"profile_results": profile, "strategies": [Strategy(target_reduction=0.7)],
                                                "target": {"kind": "macs", "reduction": 0.5, "budget": None}})
    assert "differs from the experiment's target" in changed_target["rejected"][0]["reasons"][0]


@register_metric("test_agents_kilo_params")
def _kilo_params(model, dataset_info):
    return sum(p.numel() for p in model.parameters()) / 1e3


def test_execution_agents_prune_finetune_evaluate(trained, digits):
    strategy = Strategy(importance="l2", target_reduction=0.5, finetune_steps=5, learning_rate=1e-3)
    pruned = PruningAgent({"tolerance": 0.02}).execute({"model": trained, "strategy": strategy.to_dict(),
                                                        "example_inputs": X})
    assert pruned["success"] and abs(pruned["prune"]["error"]) <= 0.02
    train_loader, val_loader = create_loaders(digits, batch_size=64)
    tuned = FineTuningAgent({}).execute({"model": pruned["model"], "train_loader": train_loader, "strategy": strategy})
    assert tuned["finetune"]["steps"] == 5
    metrics = EvaluationAgent({"custom_metrics": ["test_agents_kilo_params"], "latency_repeats": 2}).execute(
        {"model": tuned["model"], "val_loader": val_loader, "input_shape": (1, 1, 16, 16)})["metrics"]
    assert 0 <= metrics["top1"] <= 1 and metrics["top5"] >= metrics["top1"]
    assert metrics["macs"] == pytest.approx(pruned["prune"]["macs"])
    assert metrics["custom"]["test_agents_kilo_params"] == pytest.approx(metrics["params"] / 1e3)
    assert metrics["latency_ms"] > 0


def test_custom_agent_subclass():
    class EchoAgent(BaseAgent):
        def get_agent_role(self):
            return "echo"

        def execute(self, input_data):
            return self.result(echo=input_data["x"])

    agent = EchoAgent(agent_name="echo")
    assert agent.execute({"x": 3}) == {"success": True, "agent_name": "echo", "timing": {}, "echo": 3}
    parsed = agent.parse_llm_response('{"reasoning": "r", "confidence": 2}', {})
    assert isinstance(parsed, AgentResponse) and parsed.success and parsed.confidence == 1.0
    assert agent.parse_llm_response("not json", {}).success is False


def test_master_uses_the_llm_and_falls_back(profile, llm_server, make_llm_client):
    good = {"strategies": [{"importance": "l2", "group_multipliers": {"stage1_hidden": 0.5}},
                           {"importance": "lamp"}], "reasoning": "prune the less sensitive stage"}
    llm_server.script(reply_json(good))
    master = MasterAgent({"llm_client": make_llm_client(), "batch_size": 3})
    out = master.execute({"profile_results": profile, "target_ratio": 0.5, "history": [], "revision_number": 0})
    assert out["source"] == "llm" and out["llm"]["outcome"] == "ok"
    assert [s["importance"] for s in out["strategies"][:2]] == ["l2", "lamp"]
    assert len(out["strategies"]) == 3  # the built-in policy fills the batch
    llm_server.script(reply("not json"), reply("still { not json"))
    fallback = master.execute({"profile_results": profile, "target_ratio": 0.5, "history": [], "revision_number": 1})
    assert fallback["source"] == "builtin (llm fallback)" and fallback["llm"]["outcome"] == "fallback"
    assert len(fallback["strategies"]) == 3


def test_replayed_llm_run_proposes_the_same_strategies(profile, llm_server, make_llm_client, tmp_path):
    llm_server.script(reply_json({"strategies": [{"importance": "fpgm"}], "reasoning": "x"}))
    live = MasterAgent({"llm_client": make_llm_client(cache_dir=str(tmp_path)), "batch_size": 3, "seed": 7})
    first = live.execute({"profile_results": profile, "target_ratio": 0.5, "history": [], "revision_number": 0})
    replay = MasterAgent({"llm_client": make_llm_client(cache_dir=str(tmp_path), replay=True, base_url="http://127.0.0.1:9"),
                          "batch_size": 3, "seed": 7})
    second = replay.execute({"profile_results": profile, "target_ratio": 0.5, "history": [], "revision_number": 0})
    assert second["strategies"] == first["strategies"]
    assert len(llm_server.chat_requests) == 1


def test_master_never_reproposes_pending_strategies(profile):
    master = MasterAgent({"max_iterations": 5, "convergence_threshold": 0.0, "batch_size": 4})
    first = master.execute({"profile_results": profile, "target_ratio": 0.5, "history": [], "revision_number": 0})

    def key(s):
        return Strategy.from_dict({k: v for k, v in s.items() if k not in ("importance_criterion", "pruning_ratio")}).key()

    done, running = first["strategies"][:2], first["strategies"][2:]
    second = master.execute({"profile_results": profile, "target_ratio": 0.5, "revision_number": 1,
                             "history": _history(done, [0.6, 0.7]),
                             "pending": [{k: v for k, v in s.items() if k not in ("importance_criterion", "pruning_ratio")}
                                         for s in running]})
    assert len(second["strategies"]) == 4
    assert not {key(s) for s in second["strategies"]} & {key(s) for s in first["strategies"]}
    # Pending strategies are not failures: the confidence counts the two scored trials only.
    assert second["directives"]["best_score"] == 0.7 and second["confidence"] > 0
