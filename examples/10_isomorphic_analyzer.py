"""API reference, IsomorphicAnalyzer: structurally identical pruning groups, ranked together.

    python examples/10_isomorphic_analyzer.py            # timm DeiT-Small, pretrained
    python examples/10_isomorphic_analyzer.py --small    # timm's tiny test_vit at random init

``group_ratios`` gives a kind (``mlp``) or an isomorphic group (``mlp:1``) its own pruning ratio.
"""

from _small import pick

import timm

from multi_agent_pruning.core import IsomorphicAnalyzer

TIMM_NAME, PRETRAINED = pick(('deit_small_patch16_224', True), ('test_vit', False))
model = timm.create_model(TIMM_NAME, pretrained=PRETRAINED)

analyzer = IsomorphicAnalyzer(model)
groups = analyzer.create_isomorphic_groups(target_ratio=0.5)

for name, group in groups.items():
    print(f"{name}: {len(group.members)} members, {group.macs_share:.1%} of prunable MACs, ratio {group.ratio:.2f}")

# Beyond the reference: a custom ratio for one kind of group.
custom = analyzer.create_isomorphic_groups(target_ratio=0.5, group_ratios={'attention': 0.2})
print(f"Ratios with group_ratios: {({name: round(g.ratio, 2) for name, g in custom.items()})}")
