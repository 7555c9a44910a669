"""Reader for the idx format of MNIST and Fashion-MNIST (plain or gzip-compressed).

Layout (big-endian): two zero bytes, a type byte (0x08 = unsigned byte), a byte with the number
of dimensions, one uint32 per dimension, then the data. Images (3 dimensions) therefore have
magic number 2051 and labels (1 dimension) magic number 2049.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

from multi_agent_pruning.exceptions import DatasetNotFoundError

__all__ = ["IMAGES_MAGIC", "LABELS_MAGIC", "read_idx"]

IMAGES_MAGIC = 2051
LABELS_MAGIC = 2049


def read_idx(path: Path, expected_magic: int) -> np.ndarray:
    """Reads one idx file of unsigned bytes into an array of its declared shape.

    Raises:
        DatasetNotFoundError: Wrong magic number, truncated or unreadable file (names the file).
    """
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as handle:
            raw = bytearray(handle.read())  # writable, so torch.from_numpy needs no copy
    except (OSError, EOFError) as error:
        raise DatasetNotFoundError(f"Cannot read idx file {path}: {error}") from error
    if len(raw) < 4:
        raise DatasetNotFoundError(f"{path} is not an idx file: only {len(raw)} bytes")
    (magic,) = struct.unpack_from(">i", raw)
    if magic != expected_magic:
        raise DatasetNotFoundError(
            f"{path} has idx magic number {magic}, expected {expected_magic}; "
            "the file is corrupt or is not the file its name says"
        )
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DatasetNotFoundError(f"{path} is truncated: its idx header needs {header} bytes")
    shape = struct.unpack_from(f">{ndim}i", raw, 4)
    expected_bytes = int(np.prod(shape))
    if len(raw) - header != expected_bytes:
        raise DatasetNotFoundError(
            f"{path} declares shape {shape} ({expected_bytes} bytes of data) but holds {len(raw) - header}"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)

