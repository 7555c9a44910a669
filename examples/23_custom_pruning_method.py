"""API reference, Advanced Usage / Custom Baseline Method: a ``BasePruningMethod`` of your own.

    python examples/23_custom_pruning_method.py            # DeiT-Small on ImageNet to 2.3 GMACs
    python examples/23_custom_pruning_method.py --small    # the compact CNN on digits to 6.1 MMACs

Overriding ``prune_to_target_macs`` alone is enough; ``load_model``, ``compute_macs`` and
``fine_tune_and_evaluate`` use the model's own input size. ``apply_custom_pruning`` is yours to
write (the reference leaves it out); here it prunes every layer by the same share, ranked by the
L1 or L2 norm (``custom_param``), to the exact MACs with the project's engine. Registered with
``register_method``, the method also runs in ``compare_methods``.
"""

from _small import pick

from multi_agent_pruning.baselines import BasePruningMethod, list_methods, register_method
from multi_agent_pruning.core import Strategy, apply_strategy
from multi_agent_pruning.models import example_inputs

MODEL = pick("deit_small", "compact_cnn")
TARGET_MACS = pick(2.3e9, 6.1e6)
DATASET = pick("imagenet", "digits")
STEPS = pick(100, 10)  # fine_tune_and_evaluate's default in the reference setting


class CustomPruningMethod(BasePruningMethod):
    def __init__(self, custom_param=1.0):
        super().__init__()
        self.custom_param = custom_param

    def prune_to_target_macs(self, model_name: str, target_macs: float,
                           dataset: str) -> dict:
        # Custom pruning implementation
        model = self.load_model(model_name)

        # Apply custom pruning logic
        pruned_model = self.apply_custom_pruning(model, target_macs)

        # Fine-tune and evaluate
        final_accuracy = self.fine_tune_and_evaluate(pruned_model, dataset, steps=STEPS)

        return {
            'final_accuracy': final_accuracy,
            'final_macs': self.compute_macs(pruned_model),
            'method': 'custom_method'
        }

    def apply_custom_pruning(self, model, target_macs):
        """Every layer loses the same share of its channels (no global ranking), ranked by the
        L<custom_param> norm of their weights, at exactly ``target_macs`` (the project's engine)."""
        strategy = Strategy(importance='l1' if self.custom_param == 1.0 else 'l2', global_pruning=False,
                            isomorphic=False, target_kind='macs', target_reduction=None, target_budget=target_macs)
        return apply_strategy(model, strategy, example_inputs(model)).model


method = CustomPruningMethod(custom_param=2.0)
result = method.prune_to_target_macs(model_name=MODEL, target_macs=TARGET_MACS, dataset=DATASET)
print(f"{result['method']}: {result['final_macs'] / 1e6:.2f}M MACs, final accuracy {result['final_accuracy']:.1%}")

# Registered, it is a method name like the built-in ones (compare_methods(methods=[..., "custom_method"])).
register_method("custom_method")(CustomPruningMethod)
print(f"Registered methods: {list_methods()}")
