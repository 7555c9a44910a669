"""Reading a config file's bytes as text: bounded, decoded by its byte-order mark, binary refused."""

from __future__ import annotations

import codecs
from pathlib import Path

from ..exceptions import ConfigurationError

__all__ = ["read_config_text", "decode_config_bytes", "MAX_FILE_BYTES"]

#: Largest config file read; more is a wrong path (a dataset, a device) rather than a config.
MAX_FILE_BYTES = 2**20
#: Byte-order marks and the codec each names; UTF-32 first, its LE mark starts with UTF-16's.
_BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF8, "utf-8-sig"),
         (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))
_LABELS = {"utf-8": "UTF-8", "utf-8-sig": "UTF-8", "utf-16": "UTF-16", "utf-32": "UTF-32"}
#: Files passed as a config by mistake, recognised by their first bytes.
_MAGIC = ((b"\x89PNG", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"),
          (b"PK\x03\x04", "a zip archive, such as a torch checkpoint"),
          *((bytes([0x80, protocol]), "a Python pickle, such as a torch checkpoint")
            for protocol in range(2, 6)),
          (b"\x1f\x8b", "gzip data"), (b"PAR1", "a Parquet file"))
_NUL_BYTES = "it contains NUL bytes: binary data, or UTF-16/UTF-32 text without a byte-order mark"


def read_config_text(path: Path) -> str:
    """The text of a config file; every way it cannot be read is one :class:`ConfigurationError`."""
    return decode_config_bytes(_read_bounded(path), path)


def _read_bounded(path: Path) -> bytes:
    """The file's bytes, refusing directories and anything over MAX_FILE_BYTES (/dev/zero too)."""
    if path.is_dir():
        raise ConfigurationError(f"Config file {path} is a directory, not a YAML file")
    try:
        with path.open("rb") as stream:
            data = stream.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise ConfigurationError(f"Config file not found: {path}") from None
    except OSError as err:
        raise ConfigurationError(f"Cannot read config file {path}: {err.strerror}") from None
    if len(data) > MAX_FILE_BYTES:
        raise ConfigurationError(f"Config file {path} is larger than 1 MiB; a configuration is a few KB")
    return data


def decode_config_bytes(data: bytes, path: Path | str) -> str:
    """Text of a config file: UTF-8, or what its byte-order mark says; binary data is refused."""
    encoding = next((name for bom, name in _BOMS if data.startswith(bom)), "utf-8")
    text, problem = "", None
    if encoding == "utf-8" and b"\x00" in data:  # before decoding: UTF-16 without a BOM fails that too
        problem = _NUL_BYTES
    else:
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError as err:
            problem = f"byte {err.start} is not valid {_LABELS[encoding]}"
        if "\x00" in text:
            problem = _NUL_BYTES
    if problem is not None:
        what = next((name for magic, name in _MAGIC if data.startswith(magic)), None)
        reason = f"it looks like {what}" if what else problem
        raise ConfigurationError(
            f"{path} is not a text YAML file ({reason}); save the configuration as UTF-8 text")
    return text.removeprefix("\ufeff")
