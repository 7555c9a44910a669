"""API reference, AnalysisAgent: checks proposed strategies against a profile's safety limits.

    python examples/05_analysis_agent.py            # profile of DeiT-Small, pretrained
    python examples/05_analysis_agent.py --small    # profile of the compact CNN at random init

The reference only constructs the agent; the lines after it show one check: a strategy within
the limits is approved, one that removes 95 % of the MACs (above ``max_overall_pruning``) is
rejected with its reason (``safety_enforcement: warn`` would clamp it instead).
"""

from _small import pick

from multi_agent_pruning.agents import AnalysisAgent, ProfilingAgent
from multi_agent_pruning.core import Strategy
from multi_agent_pruning.models import create_model

MODEL, PRETRAINED = pick(("deit_small", True), ("compact_cnn", False))

agent = AnalysisAgent(config={'safety_enforcement': 'strict'})

# Beyond the reference: check two strategies against the model's profile.
model = create_model(MODEL, pretrained=PRETRAINED)
profile = ProfilingAgent(config={'enable_caching': True}).execute({'model': model, 'model_name': MODEL})['profile']
result = agent.execute({
    'profile_results': profile,
    'strategies': [Strategy(target_reduction=0.5), Strategy(target_reduction=0.95)],
})
print(f"Approved: {len(result['approved'])}, rejected: {len(result['rejected'])}")
for item in result['rejected']:
    print(f"Rejected: {'; '.join(item['reasons'])}")
