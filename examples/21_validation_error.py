"""API reference, Error Handling / ValidationError: an invalid validation request.

    python examples/21_validation_error.py            # the shipped experiment config
    python examples/21_validation_error.py --small    # the small config

A misspelt method name is refused before anything runs, with suggestions; so are an unknown
target, a bad ``num_runs`` and an analysis with no results to analyse.
"""

from _small import SMALL_CONFIG, pick, scratch

from multi_agent_pruning.exceptions import ValidationError
from multi_agent_pruning.validation import PaperReproductionValidator

CONFIG = pick("configs/experiments/enhanced_multi_agent.yaml", SMALL_CONFIG)
OUTPUT_DIR = pick("./validation_results", scratch("validation_results"))

validator = PaperReproductionValidator(config_path=CONFIG, output_dir=OUTPUT_DIR)

try:
    validator.validate_all_targets(methods=["magnitude_l3"])
except ValidationError as e:
    print(f"Validation failed: {e}")
