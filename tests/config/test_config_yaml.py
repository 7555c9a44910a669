"""Files: ``extends`` chains, deep merging, cycles and YAML errors with file and line."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from multi_agent_pruning.config import load_config, load_config_dict
from multi_agent_pruning.exceptions import ConfigurationError


def test_extends_deep_merges_with_the_child_winning(write_yaml) -> None:
    write_yaml("base.yaml", """
        experiment: {name: base, seed: 1}
        search: {trials: 10, max_iterations: 3}
        evaluation: {custom_metrics: [a, b]}
    """)
    child = write_yaml("child.yaml", """
        extends: base.yaml
        experiment: {name: child}
        search: {trials: 4}
        evaluation: {custom_metrics: [c]}
    """)
    cfg = load_config(child)
    assert (cfg.experiment.name, cfg.experiment.seed) == ("child", 1)
    assert (cfg.search.trials, cfg.search.max_iterations) == (4, 3)
    assert cfg.evaluation.custom_metrics == ("c",)  # lists are replaced, not concatenated


def test_extends_list_and_relative_paths(write_yaml) -> None:
    write_yaml("common/a.yaml", "search: {trials: 5, max_iterations: 5}\n")
    write_yaml("common/b.yaml", "search: {trials: 6}\n")
    child = write_yaml("exp/run.yaml", "extends: [../common/a.yaml, ../common/b.yaml]\n")
    cfg = load_config(child)
    assert (cfg.search.trials, cfg.search.max_iterations) == (6, 5)  # later parents win


def test_three_level_chain(write_yaml) -> None:
    write_yaml("a.yaml", "finetune: {lr: 0.1, epochs: 2}\n")
    write_yaml("b.yaml", "extends: a.yaml\nfinetune: {lr: 0.2}\n")
    c = write_yaml("c.yaml", "extends: b.yaml\nfinetune: {epochs: 3}\n")
    cfg = load_config(c)
    assert (cfg.finetune.lr, cfg.finetune.epochs) == (0.2, 3.0)


def test_cycle_is_detected(write_yaml) -> None:
    write_yaml("a.yaml", "extends: b.yaml\n")
    b = write_yaml("b.yaml", "extends: a.yaml\n")
    with pytest.raises(ConfigurationError, match="Circular 'extends'") as info:
        load_config(b)
    message = str(info.value)
    assert "a.yaml" in message and message.count("b.yaml") == 2


def test_self_extension_is_a_cycle(write_yaml) -> None:
    path = write_yaml("self.yaml", "extends: self.yaml\n")
    with pytest.raises(ConfigurationError, match="Circular"):
        load_config(path)


def test_missing_parent_names_both_files(write_yaml) -> None:
    path = write_yaml("child.yaml", "extends: nowhere.yaml\n")
    with pytest.raises(ConfigurationError) as info:
        load_config(path)
    assert "child.yaml" in str(info.value) and "nowhere.yaml" in str(info.value)


def test_missing_file() -> None:
    with pytest.raises(ConfigurationError, match="not found: /no/such/config.yaml"):
        load_config("/no/such/config.yaml")


def test_yaml_syntax_error_names_file_and_line(write_yaml) -> None:
    path = write_yaml("broken.yaml", """
        search:
          trials: 3
          max_iterations: [1, 2
        finetune: {}
    """)
    with pytest.raises(ConfigurationError) as info:
        load_config(path)
    message = str(info.value)
    assert str(path) in message
    assert "line 4" in message


def test_syntax_error_in_a_parent_names_the_parent(write_yaml) -> None:
    parent = write_yaml("parent.yaml", "search:\n  trials: 3\n bad: indent\n")
    child = write_yaml("child.yaml", "extends: parent.yaml\n")
    with pytest.raises(ConfigurationError) as info:
        load_config(child)
    assert str(parent) in str(info.value) and "line 3" in str(info.value)


def test_duplicate_keys_are_rejected_with_line(write_yaml) -> None:
    path = write_yaml("dup.yaml", "search:\n  trials: 3\n  trials: 4\n")
    with pytest.raises(ConfigurationError, match=r"line 3.*duplicate key 'trials'"):
        load_config(path)


def test_top_level_must_be_a_mapping(write_yaml) -> None:
    path = write_yaml("list.yaml", "- a\n- b\n")
    with pytest.raises(ConfigurationError, match="must be a mapping of sections, got list"):
        load_config(path)


def test_empty_file_gives_defaults(write_yaml) -> None:
    cfg = load_config(write_yaml("empty.yaml", ""))
    assert cfg.search.trials == 16 and cfg.target.reduction == 0.5


def test_child_budget_replaces_parent_reduction(write_yaml) -> None:
    write_yaml("base.yaml", "target: {kind: macs, reduction: 0.5}\n")
    child = write_yaml("child.yaml", "extends: base.yaml\ntarget: {budget: 2.61e9}\n")
    cfg = load_config(child)
    assert (cfg.target.kind, cfg.target.reduction, cfg.target.budget) == ("macs", None, 2.61e9)


def test_dict_extends_resolves_from_the_working_directory(write_yaml, monkeypatch, tmp_path) -> None:
    write_yaml("base.yaml", "search: {trials: 7}\n")
    monkeypatch.chdir(tmp_path)
    cfg = load_config_dict({"extends": "base.yaml", "search": {"max_iterations": 2}})
    assert (cfg.search.trials, cfg.search.max_iterations) == (7, 2)


# -- hostile and careless files: alias bombs, binary content, encodings, not-a-file --------------

#: The "billion laughs" of YAML: nine levels of nine aliases expand to 9**9 (387 million) strings.
ALIAS_BOMB = "".join(
    [f"a: &a [{','.join('x' * 9)}]\n"]
    + [f"{name}: &{name} [{','.join([f'*{prev}'] * 9)}]\n" for prev, name in zip("abcdefgh", "bcdefghi")]
)


def test_alias_bomb_is_refused_before_anything_expands_it(write_yaml) -> None:
    import time
    import tracemalloc

    path = write_yaml("bomb.yaml", ALIAS_BOMB)
    assert path.stat().st_size < 400
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(ConfigurationError) as info:
            load_config(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    elapsed = time.perf_counter() - start
    message = str(info.value)
    # The aliases of lines 2-4 add 8,289 values; the first *d on line 5 adds 7,381 more.
    assert message.startswith(f"Invalid YAML in {path} at line 5, column "), message
    assert "aliases expand to more than 10000 values" in message
    assert peak < 20 * 2**20, peak  # the expanded tree would need tens of GB
    assert elapsed < 10, elapsed  # expanding it would take hours; this is a hang guard, not a bound


def test_aliases_of_a_reasonable_size_still_work(write_yaml) -> None:
    path = write_yaml("anchors.yaml", """
        safety_limits: &limits {max_conv_pruning: 0.5, min_channels: 8}
        datasets:
          cifar10: {batch_size: 64, safety_limits: *limits}
          imagenet:
            batch_size: 32
            safety_limits:
              <<: *limits
              min_channels: 16
    """)
    cfg = load_config(path)
    assert (cfg.safety_limits.max_conv_pruning, cfg.safety_limits.min_channels) == (0.5, 8)
    assert cfg.datasets["cifar10"].safety_limits.min_channels == 8
    imagenet = cfg.datasets["imagenet"].safety_limits
    assert (imagenet.max_conv_pruning, imagenet.min_channels) == (0.5, 16)


def test_recursive_alias_is_refused_with_its_line(write_yaml) -> None:
    path = write_yaml("loop.yaml", "evaluation:\n  custom_metrics: &m [a, *m]\n")
    with pytest.raises(ConfigurationError) as info:
        load_config(path)
    assert str(info.value) == (
        f"Invalid YAML in {path} at line 2, column 26: alias *m refers to a value that contains it")


def test_deep_nesting_is_refused_with_its_line(write_yaml) -> None:
    path = write_yaml("deep.yaml", "search:\n  trials: " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(ConfigurationError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(f"Invalid YAML in {path} at line 2, column "), message
    assert message.endswith("values nested deeper than 100 levels")


def test_alias_bomb_in_an_override_stays_a_string() -> None:
    bomb = "[" + ", ".join(line.split(": ", 1)[1].strip() for line in ALIAS_BOMB.splitlines()) + "]"
    with pytest.raises(ConfigurationError) as info:
        load_config_dict({}, overrides=[f"evaluation.custom_metrics={bomb}"])
    assert [issue.path for issue in info.value.issues] == ["evaluation.custom_metrics"]
    assert info.value.issues[0].rule == "must be a list (from an override)"


def _png_bytes() -> bytes:
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00\x00"))
            + chunk(b"IEND", b""))


def _checkpoint_bytes(tmp_path) -> bytes:
    import torch

    torch.save({"weight": torch.zeros(3)}, tmp_path / "weights.pt")
    return (tmp_path / "weights.pt").read_bytes()


def _random_bytes(_tmp_path) -> bytes:
    import random

    return bytes(byte or 1 for byte in random.Random(0).randbytes(512))  # no NUL: the decoder must find it


@pytest.mark.parametrize(("content", "reason"), [
    (lambda tmp: _png_bytes(), "it looks like a PNG image"),
    (_checkpoint_bytes, "it looks like a zip archive, such as a torch checkpoint"),
    (lambda tmp: b"\x80\x04\x95" + bytes(20), "it looks like a Python pickle, such as a torch checkpoint"),
    (_random_bytes, "byte 0 is not valid UTF-8"),
    (lambda tmp: b"search:\n  trials: 3\x00\x00\x00\n", "it contains NUL bytes"),
    (lambda tmp: "search: {trials: 3}\ndescription: caf\u00e9\n".encode("cp1252"),
     "byte 36 is not valid UTF-8"),
])
def test_binary_file_is_not_a_text_yaml_file(content, reason, tmp_path) -> None:
    path = tmp_path / "config.yaml"
    path.write_bytes(content(tmp_path))
    with pytest.raises(ConfigurationError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(f"{path} is not a text YAML file ({reason}"), message
    assert message.endswith("; save the configuration as UTF-8 text"), message
    assert "\n" not in message


TEXT = "experiment: {description: r\u00e9sum\u00e9}\nsearch:\n  trials: 3\n"


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16", "utf-16-be", "utf-32"])
def test_a_byte_order_mark_says_how_to_decode(encoding, tmp_path) -> None:
    path = tmp_path / "config.yaml"
    data = TEXT.encode(encoding)
    if encoding == "utf-16-be":
        data = b"\xfe\xff" + data
    path.write_bytes(data)
    cfg = load_config(path)
    assert (cfg.experiment.description, cfg.search.trials) == ("r\u00e9sum\u00e9", 3)


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be"])
def test_utf16_without_a_byte_order_mark_is_refused(encoding, tmp_path) -> None:
    path = tmp_path / "config.yaml"
    path.write_bytes(TEXT.encode(encoding))
    with pytest.raises(ConfigurationError) as info:
        load_config(path)
    assert str(info.value) == (
        f"{path} is not a text YAML file (it contains NUL bytes: binary data, or UTF-16/UTF-32 text "
        "without a byte-order mark); save the configuration as UTF-8 text")


def test_directory_is_not_a_config_file(tmp_path) -> None:
    with pytest.raises(ConfigurationError) as info:
        load_config(tmp_path)
    assert str(info.value) == f"Config file {tmp_path} is a directory, not a YAML file"


def test_a_parent_that_is_a_directory_names_it(write_yaml, tmp_path) -> None:
    (tmp_path / "base").mkdir()
    child = write_yaml("child.yaml", "extends: base\n")
    with pytest.raises(ConfigurationError) as info:
        load_config(child)
    assert str(info.value) == f"{child}: extends 'base', but {tmp_path / 'base'} is a directory"


def test_path_through_a_file_is_unreadable(write_yaml) -> None:
    path = write_yaml("a.yaml", "") / "b.yaml"
    with pytest.raises(ConfigurationError) as info:
        load_config(path)
    assert str(info.value) == f"Cannot read config file {path}: Not a directory"


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root reads any file")
def test_file_without_read_permission(write_yaml) -> None:
    path = write_yaml("secret.yaml", "search: {trials: 3}\n")
    path.chmod(0)
    with pytest.raises(ConfigurationError) as info:
        load_config(path)
    assert str(info.value) == f"Cannot read config file {path}: Permission denied"


def test_oversized_file_is_refused_without_reading_it_all(tmp_path) -> None:
    path = tmp_path / "huge.yaml"
    path.write_text("# padding\n" * (2**20 // 10) + "search: {trials: 3}\n", encoding="utf-8")
    with pytest.raises(ConfigurationError) as info:
        load_config(path)
    assert str(info.value) == f"Config file {path} is larger than 1 MiB; a configuration is a few KB"


def test_device_file_is_read_with_a_bound(tmp_path) -> None:
    if not Path("/dev/zero").exists():
        pytest.skip("no /dev/zero")
    with pytest.raises(ConfigurationError) as info:
        load_config("/dev/zero")
    assert str(info.value) == "Config file /dev/zero is larger than 1 MiB; a configuration is a few KB"
