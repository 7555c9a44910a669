"""The examples' one switch: ``--small`` on the command line or ``MAPRUNER_EXAMPLES_SMALL=1``.

Without it every example is the API reference's text: DeiT-Small with pretrained weights,
ImageNet (``IMAGENET_PATH``), the shipped experiment config, outputs under ``./results``. With
it, only the names and sizes at the top of each script change, to stand-ins that run offline on
two CPU cores: the registry's compact CNN (``compact_cnn``) or timm's tiny ``test_vit`` at random
init, the embedded ``digits`` dataset, the search budget of ``examples/small.yaml`` and a fresh
temporary output directory (under ``$TMPDIR``). Small mode never downloads anything (``HF_HUB_OFFLINE=1``).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path
from typing import TypeVar

__all__ = ["REPO", "SMALL", "SMALL_CONFIG", "pick", "scratch"]

T = TypeVar("T")

SMALL = "--small" in sys.argv[1:] or os.environ.get("MAPRUNER_EXAMPLES_SMALL", "").strip() not in ("", "0")

#: The repository root: small mode reads the shipped configs from there, whatever the working directory.
REPO = Path(__file__).resolve().parent.parent

#: The tiny search budget small mode runs with (2 trials, a few fine-tuning steps).
SMALL_CONFIG = str(Path(__file__).resolve().parent / "small.yaml")

_SCRATCH = Path(tempfile.gettempdir()) / f"mapruner-examples-{os.getpid()}-{time.time_ns()}"

if SMALL:
    os.environ["HF_HUB_OFFLINE"] = "1"


def pick(reference: T, small: T) -> T:
    """``reference`` (the API reference's value), or ``small`` in small mode."""
    return small if SMALL else reference


def scratch(name: str) -> str:
    """A path under this run's own temporary directory (never an earlier run's output)."""
    return str(_SCRATCH / name)
