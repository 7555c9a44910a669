"""API reference, Error Handling / ConfigurationError: everything wrong with a config, at once.

    python examples/20_configuration_error.py    # the same in both modes (--small changes nothing)

Writes an invalid config (a misspelt section, an out-of-range value, a missing environment
variable) and loads it: one ``ConfigurationError`` lists every problem with its key path, rule
and value (``e.issues``).
"""

import os
import tempfile
from pathlib import Path

from multi_agent_pruning.config import load_config
from multi_agent_pruning.exceptions import ConfigurationError

os.chdir(tempfile.mkdtemp())
os.environ.pop("DATA_ROOT", None)
Path("invalid_config.yaml").write_text("""\
search:
  trials: 0
serach:
  max_iterations: 3
dataset:
  path: ${DATA_ROOT}/digits
""")

try:
    config = load_config("invalid_config.yaml")
except ConfigurationError as e:
    print(f"Configuration error: {e}")
