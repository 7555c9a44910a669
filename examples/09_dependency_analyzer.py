"""API reference, DependencyAnalyzer: layer dependencies and coupling constraints (DepGraph).

    python examples/09_dependency_analyzer.py            # timm DeiT-Small, pretrained
    python examples/09_dependency_analyzer.py --small    # timm's tiny test_vit at random init

The example input is inferred from the model (timm's config, or what the registry built it for).
"""

from _small import pick

import timm

from multi_agent_pruning.core import DependencyAnalyzer

TIMM_NAME, PRETRAINED = pick(('deit_small_patch16_224', True), ('test_vit', False))
model = timm.create_model(TIMM_NAME, pretrained=PRETRAINED)

analyzer = DependencyAnalyzer(model)
dependencies = analyzer.get_dependency_graph()
constraints = analyzer.get_coupling_constraints()

print(f"Prunable layers: {len(dependencies)}")
print(f"Coupling constraints: {len(constraints)}")
print(f"First constraint: {constraints[0]['description']}")
print(f"Coupled with blocks.0.mlp.fc1: {analyzer.get_coupled_layers('blocks.0.mlp.fc1')}")
