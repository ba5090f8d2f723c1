"""Reading files: formats by extension, and errors that name the file (and line)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mosnpy.config import ConfigError, MosnConfig, load_config, read_document

SMALL = {"cluster_manager": {"clusters": [{"name": "c", "hosts": [{"address": "h:1"}]}]}}
SMALL_YAML = "cluster_manager:\n  clusters:\n    - name: c\n      hosts: [{address: 'h:1'}]\n"


def error_of(path: Path) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return info.value


def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.json"
    assert str(error_of(missing)) == f"{missing}: no such file"


def test_directory(tmp_path: Path) -> None:
    assert error_of(tmp_path).problem == "is a directory, not a config file"


def test_not_utf8(tmp_path: Path) -> None:
    file = tmp_path / "bad.json"
    file.write_bytes(b'{"a": "\xff"}')
    assert str(error_of(file)) == f"{file}: not UTF-8 text (bad byte at offset 7)"


def test_json_syntax_error_names_line_and_column(tmp_path: Path) -> None:
    file = tmp_path / "config.json"
    file.write_text('{\n  "servers": [,]\n}\n')
    assert str(error_of(file)) == f"{file}:2:15: invalid JSON: Expecting value"


def test_yaml_syntax_error_names_line_and_column(tmp_path: Path) -> None:
    file = tmp_path / "config.yaml"
    file.write_text("servers:\n  - name: [unclosed\n")
    error = error_of(file)
    assert error.path == f"{file}:3:1"
    assert error.problem.startswith("invalid YAML: ")


def test_json_extension_is_strict_json(tmp_path: Path) -> None:
    file = tmp_path / "config.json"
    file.write_text(SMALL_YAML)
    assert error_of(file).problem.startswith("invalid JSON")


@pytest.mark.parametrize("suffix", [".json", ".yaml", ".yml", ".conf", ""])
def test_formats(tmp_path: Path, suffix: str) -> None:
    file = tmp_path / f"config{suffix}"
    file.write_text(SMALL_YAML if suffix in (".yaml", ".yml") else json.dumps(SMALL))
    assert load_config(file) == load_config(str(file))
    assert load_config(file).cluster_manager.clusters[0].name == "c"


def test_unknown_extension_falls_back_to_yaml(tmp_path: Path) -> None:
    file = tmp_path / "config.conf"
    file.write_text(SMALL_YAML)
    assert load_config(file).cluster_manager.clusters[0].hosts[0].address == "h:1"


def test_unknown_extension_reports_json_error_for_json_looking_text(tmp_path: Path) -> None:
    file = tmp_path / "config.conf"
    file.write_text('{"servers": [}')
    assert str(error_of(file)) == f"{file}:1:14: invalid JSON: Expecting value"


def test_unknown_extension_reports_yaml_error_otherwise(tmp_path: Path) -> None:
    file = tmp_path / "config.conf"
    file.write_text("servers: [\n")
    assert error_of(file).problem.startswith("invalid YAML")


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    file = tmp_path / "config.yaml"
    file.write_text("- 1\n- 2\n")
    assert str(error_of(file)) == f"{file}: expected a mapping at the top level, got a list"


def test_empty_yaml_file(tmp_path: Path) -> None:
    file = tmp_path / "config.yaml"
    file.write_text("")
    assert str(error_of(file)) == f"{file}: expected a mapping at the top level, got null"


def test_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    file = tmp_path / "config.json"
    file.write_bytes(b"\xef\xbb\xbf{}")
    assert load_config(file) == MosnConfig()


def test_config_errors_point_into_the_document(tmp_path: Path) -> None:
    file = tmp_path / "config.yaml"
    file.write_text("servers:\n  - listeners:\n      - {name: l, address: 'x:1', bind_port: maybe}\n")
    assert str(error_of(file)) == (
        "servers[0].listeners[0].bind_port: expected true or false, got the string 'maybe'"
    )


def test_read_document(tmp_path: Path) -> None:
    file = tmp_path / "config.yml"
    file.write_text("a: [1, 2]\n")
    assert read_document(file) == {"a": [1, 2]}


@pytest.mark.parametrize(
    ("suffix", "text", "problem"),
    [
        (".json", "1" * 5000, "invalid JSON: Exceeds the limit"),
        (".yaml", "a: " + "1" * 5000, "invalid YAML: Exceeds the limit"),
        (".yaml", "a: !!timestamp 2020-13-45", "invalid YAML: month must be in 1..12"),
        (".yaml", "a: !!python/object:os.system x", "invalid YAML: could not determine a constructor"),
        (".yaml", "a: !!binary xx", "invalid YAML: failed to decode base64 data"),
    ],
)
def test_values_the_parser_cannot_build(tmp_path: Path, suffix: str, text: str, problem: str) -> None:
    file = tmp_path / f"config{suffix}"
    file.write_text(text)
    assert error_of(file).problem.startswith(problem)
