"""``python -m multi_agent_pruning`` is ``mapruner``."""

import sys

from multi_agent_pruning.cli import main

if __name__ == "__main__":
    sys.exit(main())
