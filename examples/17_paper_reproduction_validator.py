"""API reference, PaperReproductionValidator: run the published pruning targets, then compare.

    IMAGENET_PATH=/data/imagenet python examples/17_paper_reproduction_validator.py   # GPUs, days
    python examples/17_paper_reproduction_validator.py --small

The paper targets (Isomorphic Pruning's DeiT and ConvNeXt models, DepGraph's ResNet-56) need
ImageNet or CIFAR-10 and models we cannot train here; a target whose model or data is missing is
skipped with the reason. Small mode therefore first stores a tiny comparison on digits (two
methods, two trials each) in the output directory, which the analysis and the report then read.
"""

from pathlib import Path

from _small import SMALL, SMALL_CONFIG, pick, scratch

from multi_agent_pruning import MultiAgentPruner
from multi_agent_pruning.validation import PaperReproductionValidator

CONFIG = pick("configs/experiments/enhanced_multi_agent.yaml", SMALL_CONFIG)
OUTPUT_DIR = pick("./validation_results", scratch("validation_results"))

if SMALL:  # stand-in results: the paper targets cannot run offline
    MultiAgentPruner(config_path=CONFIG).compare_methods(
        model_name="compact_cnn", dataset="digits", target_ratio=0.5, methods=["multi_agent", "magnitude_l1"],
        output_dir=Path(OUTPUT_DIR) / "runs" / "digits")

validator = PaperReproductionValidator(
    config_path=CONFIG,
    output_dir=OUTPUT_DIR
)

outcome = validator.validate_all_targets(num_runs=3)
for target, status in outcome.items():
    print(f"{target}: {status['status']}" + (f" ({status['reason']})" if status['reason'] else ""))

analysis = validator.analyze_results()
print(f"Analysed {analysis['summary']['rows']} trials of {analysis['summary']['methods']}")
for experiment, methods in analysis['method_comparison'].items():
    for method, row in methods.items():
        print(f"{experiment} {method}: best top-1 {row['max_best_top1']:.1%} over {row['n_runs']} run(s)")

for path in validator.generate_visualizations():
    print(f"Wrote {path}")
