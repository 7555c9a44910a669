"""API reference, Metrics and Evaluation: ``compute_macs`` and ``compute_params``.

    python examples/18_metrics.py            # timm DeiT-Small (4.61 GMACs, 22.1 M parameters)
    python examples/18_metrics.py --small    # timm's tiny test_vit at its 160 px input

MACs are counted by torch-pruning's op counter for one input of ``input_shape``.
"""

from _small import pick

import timm

from multi_agent_pruning.utils.metrics import compute_macs, compute_params

TIMM_NAME = pick('deit_small_patch16_224', 'test_vit')
INPUT_SHAPE = pick((1, 3, 224, 224), (1, 3, 160, 160))
model = timm.create_model(TIMM_NAME, pretrained=False)

macs = compute_macs(model, INPUT_SHAPE)
print(f"Model MACs: {macs/1e9:.2f}G")

params = compute_params(model)
print(f"Model parameters: {params/1e6:.1f}M")
