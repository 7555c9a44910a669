"""API reference, ProfilingAgent: architecture, pruning groups and safety limits of a model.

    python examples/03_profiling_agent.py            # timm DeiT-Small, pretrained (downloads once)
    python examples/03_profiling_agent.py --small    # timm's tiny test_vit at random init

``profile`` is a plain dict (the ``Profile`` dataclass as JSON-ready data).
"""

from _small import pick

from multi_agent_pruning.agents import ProfilingAgent

TIMM_NAME, PRETRAINED = pick(('deit_small_patch16_224', True), ('test_vit', False))
MODEL_NAME = pick('deit_small', 'test_vit')

agent = ProfilingAgent(config={'enable_caching': True})

import timm

model = timm.create_model(TIMM_NAME, pretrained=PRETRAINED)
result = agent.execute({
    'model': model,
    'model_name': MODEL_NAME,
    'dataset': 'imagenet'
})

profile = result['profile']
print(f"Architecture: {profile['architecture_type']}")
print(f"Prunable layers: {len(profile['prunable_layers'])}")
print(f"Safety limits: {profile['safety_limits']}")
