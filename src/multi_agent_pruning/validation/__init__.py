"""Paper targets, statistics over the results table, and the paper reproduction validator.

    from multi_agent_pruning.validation import PaperReproductionValidator
    validator = PaperReproductionValidator(output_dir="./validation_results")
    validator.validate_all_targets(num_runs=3)     # skips targets whose model or data is missing
    analysis = validator.analyze_results()

See docs/reports.md for how the statistics are computed.
"""

from multi_agent_pruning.stats.comparison import analyze_methods, best_per_run
from multi_agent_pruning.stats.paper_targets import (PAPER_TARGETS, PaperSource, PaperTarget, get_paper_target,
                                                     list_paper_targets, targets_for)
from multi_agent_pruning.stats.reproduction import compare_with_papers
from multi_agent_pruning.validation.validator import PaperReproductionValidator

__all__ = [
    "PaperReproductionValidator",
    "PaperTarget",
    "PaperSource",
    "PAPER_TARGETS",
    "get_paper_target",
    "list_paper_targets",
    "targets_for",
    "compare_with_papers",
    "analyze_methods",
    "best_per_run",
]
