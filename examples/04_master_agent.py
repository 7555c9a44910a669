"""API reference, MasterAgent: the next pruning strategy from a profile and the history so far.

    python examples/04_master_agent.py            # profile of timm DeiT-Small, pretrained
    python examples/04_master_agent.py --small    # profile of timm's tiny test_vit at random init

Without an LLM client the master uses its built-in policy. ``strategy`` is the dict view of a
``Strategy``: ``pruning_ratio`` is its ``target_reduction`` and ``importance_criterion`` its
``importance`` (both names work).
"""

from _small import pick

import timm

from multi_agent_pruning.agents import MasterAgent, ProfilingAgent

TIMM_NAME, PRETRAINED = pick(('deit_small_patch16_224', True), ('test_vit', False))
MODEL_NAME = pick('deit_small', 'test_vit')

# The profile the reference's example starts from (see 03_profiling_agent.py).
model = timm.create_model(TIMM_NAME, pretrained=PRETRAINED)
profile_result = ProfilingAgent(config={'enable_caching': True}).execute(
    {'model': model, 'model_name': MODEL_NAME, 'dataset': 'imagenet'})

agent = MasterAgent(config={
    'max_iterations': 5,
    'convergence_threshold': 0.005
})

result = agent.execute({
    'profile_results': profile_result['profile'],
    'target_ratio': 0.5,
    'history': [],
    'dataset_info': {
        'num_classes': 1000,
        'safety_limits': {'max_overall_pruning': 0.8}
    },
    'revision_number': 0
})

strategy = result['strategy']
print(f"Recommended ratio: {strategy['pruning_ratio']:.2f}")
print(f"Importance criterion: {strategy['importance_criterion']}")
print(f"Continue: {result['continue_iterations']}")
