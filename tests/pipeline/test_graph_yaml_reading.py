"""Reading a graph file's YAML (pipeline/graph_yaml.py) through its entry points ``decode``,
``load_yaml`` and ``load_scalar``: YAML 1.2 core scalars as a user reads them, lines of keys and
items, and each refusal as one problem with its line and exact words."""

from __future__ import annotations

import codecs
import math

import pytest

from pipeline import GraphConfigError
from pipeline import graph_yaml as gy


def _problem(fn, *args) -> tuple[int | None, str]:
    with pytest.raises(GraphConfigError) as e:
        fn(*args)
    (p,) = e.value.problems
    return p.line, p.message


@pytest.mark.parametrize("text, value", [
    ("true", True), ("True", True), ("TRUE", True), ("false", False), ("False", False), ("FALSE", False),
    ("yes", "yes"), ("no", "no"), ("on", "on"), ("off", "off"), ("tRue", "tRue"),
    ("~", None), ("null", None), ("Null", None), ("NULL", None), ("", None), ("nULL", "nULL"),
    ("010", 10), ("-7", -7), ("+3", 3), ("0o17", 15), ("0x1F", 31), ("0xff", 255), ("0b11", "0b11"),
    ("1e3", 1000.0), ("1.5", 1.5), (".5", 0.5), ("-2.", -2.0), ("1E-2", 0.01), ("+1.0e+1", 10.0),
    (".inf", math.inf), ("-.Inf", -math.inf), ("+.INF", math.inf),
    ("1:30", "1:30"), ("2024-01-01", "2024-01-01"), ("'5'", "5"), ("!!str 5", "5"), ("!!int '7'", 7),
    ("!!float '2'", 2.0), ("!!bool 'true'", True), ("!!null ''", None), ("text", "text"),
])
def test_scalars_follow_the_yaml_1_2_core_schema(text, value):
    got = gy.load_scalar(text)
    assert got == value and type(got) is type(value)


def test_nan_is_a_float():
    assert math.isnan(gy.load_scalar(".nan")) and math.isnan(gy.load_scalar(".NaN"))


@pytest.mark.parametrize("text, message", [
    ("!!int 'x'", "'x' is not an integer"),
    ("!!float 'x'", "'x' is not a number"),
    ("!!bool 'yes'", "'yes' is not a boolean (write true or false)"),
    ("!!null 'x'", "'x' is not null (write null or ~)"),
    ("1" * 65, "a number of 65 digits (at most 64)"),
    ("1." + "0" * 63, "a number of 65 characters (at most 64)"),
    ("!!binary aGk=", "tag '!!binary' is not allowed on a scalar: a graph file holds plain data (text, numbers, "
                      "true/false, null, lists and mappings)"),
    ("!!set {a: null}", "tag '!!set' is not allowed on a mapping: a graph file holds plain data (text, numbers, "
                        "true/false, null, lists and mappings)"),
    ("!!omap [a]", "tag '!!omap' is not allowed on a list: a graph file holds plain data (text, numbers, "
                   "true/false, null, lists and mappings)"),
    ("!mine x", "tag '!mine' is not allowed on a scalar: a graph file holds plain data (text, numbers, "
                "true/false, null, lists and mappings)"),
    ("!!map [a]", "tag '!!map' is not allowed on a list: a graph file holds plain data (text, numbers, "
                  "true/false, null, lists and mappings)"),
])
def test_wrong_scalars_and_tags_are_refused(text, message):
    assert _problem(gy.load_scalar, text) == (1, message)


def test_numbers_of_the_longest_length_are_fine():
    assert gy.load_scalar("1" * 64) == int("1" * 64)
    assert gy.load_scalar("1." + "0" * 62) == 1.0


def test_keys_and_items_remember_their_lines():
    data = gy.load_yaml("name: g\n\nnodes:\n  - a\n  -\n    b: 1\n    c: [1,\n      2]\n", "f.yaml")
    assert isinstance(data, gy.LDict) and data.line == 1
    assert (data.line_of("name"), data.line_of("nodes"), data.line_of("missing")) == (1, 3, 1)
    nodes = data["nodes"]
    assert isinstance(nodes, gy.LList) and nodes.line == 4 and nodes.item_lines == [4, 6]
    assert (nodes.line_of(0), nodes.line_of(1), nodes.line_of(2), nodes.line_of(-1)) == (4, 6, 4, 4)
    assert nodes[1].line == 6 and nodes[1].line_of("c") == 7 and nodes[1]["c"].item_lines == [7, 8]
    bare_dict, bare_list = gy.LDict(), gy.LList()
    assert bare_dict.line_of("x") is None and bare_list.line_of(0) is None


def test_a_duplicate_key_is_refused_and_a_merged_key_may_be_overridden():
    assert _problem(gy.load_yaml, "a: 1\nb: 2\na: 3\n", "f") == (
        3, "key 'a' appears twice in this mapping (first at line 1); YAML keeps only one, so merge them")
    data = gy.load_yaml("base: &b {x: 1, y: 2}\nnode:\n  <<: *b\n  y: 3\n", "f")
    assert data["node"] == {"x": 1, "y": 3} and data["node"].line_of("y") == 4


@pytest.mark.parametrize("text, line, message", [
    ("? [a, b]\n: 1\n", 1, "a mapping key must be a name or a number, not a list"),
    ("? {a: 1}\n: 1\n", 1, "a mapping key must be a name or a number, not a mapping"),
    ("l: &l [1]\nm:\n  ? *l\n  : 2\n", 3, "a mapping key must be a name or a number, not a list"),
    ("l: &l {a: 1}\nm:\n  ? *l\n  : 2\n", 3, "a mapping key must be a name or a number, not a mapping"),
    ("a: &x [1, *x]\n", 1, "alias *x is used inside its own anchor (a value that contains itself)"),
])
def test_keys_must_be_scalars_and_values_cannot_contain_themselves(text, line, message):
    assert _problem(gy.load_yaml, text, "f") == (line, message)


def test_a_scalar_alias_may_be_a_key_and_be_reused():
    assert gy.load_yaml("k: &k name\nm: {*k : 1}\nn: [*k, *k]\n", "f") == {"k": "name", "m": {"name": 1},
                                                                         "n": ["name", "name"]}


def test_nesting_is_bounded(monkeypatch):
    deep = "[" * gy.MAX_DEPTH + "]" * gy.MAX_DEPTH
    assert gy.load_yaml(deep, "f") is not None
    line, message = _problem(gy.load_yaml, "\n" + "[" * (gy.MAX_DEPTH + 1) + "]" * (gy.MAX_DEPTH + 1), "f")
    assert (line, message) == (2, f"values nest more than {gy.MAX_DEPTH} levels deep")
    block = "".join("  " * i + "k:\n" for i in range(gy.MAX_DEPTH + 1)) + "  " * (gy.MAX_DEPTH + 1) + "v\n"
    assert _problem(gy.load_yaml, block, "f")[1] == f"values nest more than {gy.MAX_DEPTH} levels deep"


def test_expanded_size_is_bounded(monkeypatch):
    monkeypatch.setattr(gy, "MAX_ITEMS", 10)
    # a list of 3 values is 4; it, an alias of it and one more value: 1 + 4 + 4 + 1 = 10, at the limit
    assert gy.load_yaml("[&a [1, 2, 3], *a, 4]", "f") == [[1, 2, 3], [1, 2, 3], 4]
    line, message = _problem(gy.load_yaml, "\n[&a [1, 2, 3], *a, 4, 5]", "f")
    assert (line, message) == (2, "this value holds more than 10 values once its aliases are expanded "
                                  "(an alias bomb?)")
    monkeypatch.setattr(gy, "MAX_ITEMS", 5)
    # a mapping counts its keys and values
    assert gy.load_yaml("{a: 1, b: 2}", "f") == {"a": 1, "b": 2}
    assert _problem(gy.load_yaml, "{a: 1, b: 2, c: 3}", "f")[0] == 1


def test_characters_yaml_does_not_allow_are_named_with_their_line():
    assert _problem(gy.load_yaml, "a: 1\nb: \x00\n", "f") == (
        2, "character U+0000 is not allowed in YAML (a binary file, or UTF-16?)")
    assert _problem(gy.load_yaml, "a: \x07\n", "f") == (1, "character U+0007 is not allowed in YAML")
    assert gy.load_yaml("a: \tb\u00e9\U0001F600\r\n", "f") == {"a": "b\u00e9\U0001F600"}


def test_invalid_yaml_names_its_line():
    line, message = _problem(gy.load_yaml, "a: 1\nb: [1, 2\n", "f")
    assert line == 3 and message.startswith("invalid YAML: ")
    assert _problem(gy.load_yaml, "a: b: c\n", "f") == (1, "invalid YAML: mapping values are not allowed in this context")


def test_text_over_the_size_limit(monkeypatch):
    monkeypatch.setattr(gy, "MAX_FILE_BYTES", 10)
    assert gy.load_yaml("a: 1234567", "f") == {"a": 1234567}  # 10 characters
    assert _problem(gy.load_yaml, "a: 12345678", "f") == (
        None, "the text has 11 characters; a graph file may have at most 10")
    assert gy.decode(b"a: 1234567", "f") == "a: 1234567"
    assert _problem(gy.decode, b"a: 12345678", "f") == (None, "the file is 11 bytes; a graph file may have at most 10")
    for fn, data in ((gy.load_yaml, "a: 12345678"), (gy.decode, b"a: 12345678")):  # each names the file
        with pytest.raises(GraphConfigError) as e:
            fn(data, "big.yaml")
        assert [p.file for p in e.value.problems] == ["big.yaml"]


def test_decode_takes_utf8_with_or_without_bom():
    assert gy.decode("a: \u00e9\n".encode(), "f") == "a: \u00e9\n"
    assert gy.decode(codecs.BOM_UTF8 + b"a: 1\n", "f") == "a: 1\n"


@pytest.mark.parametrize("bom, name", [
    (codecs.BOM_UTF32_LE, "UTF-32"), (codecs.BOM_UTF32_BE, "UTF-32"),
    (codecs.BOM_UTF16_LE, "UTF-16"), (codecs.BOM_UTF16_BE, "UTF-16"),
])
def test_utf16_and_utf32_are_named(bom, name):
    assert _problem(gy.decode, bom + "a: 1\n".encode("utf-16-le"), "f") == (
        1, f"the file is {name} text (PowerShell's '>' writes UTF-16); save it as UTF-8")


def test_undecodable_bytes_name_their_line_and_column():
    assert _problem(gy.decode, b"a: 1\nbc: \xff\n", "f") == (
        2, "not UTF-8 text: byte 0xff at column 5 cannot be decoded; save the file as UTF-8")
    assert _problem(gy.decode, b"\xfe", "f") == (
        1, "not UTF-8 text: byte 0xfe at column 1 cannot be decoded; save the file as UTF-8")
    utf16 = "name: graph\n".encode("utf-16-le")[:-1] + b"\xd8"  # no BOM, 8 NULs in the first 64 bytes
    assert utf16[:64].count(0) >= 8
    line, message = _problem(gy.decode, utf16, "f")
    assert message.endswith("cannot be decoded (it looks like UTF-16); save the file as UTF-8")
    seven = "abcdefg".encode("utf-16-le")[:14] + b"\xff\xfe"  # 7 NULs: no hint
    assert not _problem(gy.decode, seven, "f")[1].endswith("(it looks like UTF-16); save the file as UTF-8")


def test_lines_and_columns_count_from_the_first_byte():
    # a newline as the very first byte, and a bad byte after several lines: the line counts every
    # newline before it, the column starts after the last one (checked against counting from the
    # second byte, and against the first newline for the last)
    assert _problem(gy.decode, b"\n\xff", "f") == (
        2, "not UTF-8 text: byte 0xff at column 1 cannot be decoded; save the file as UTF-8")
    assert _problem(gy.decode, b"a: 1\nb: 2\ncd: \xff\n", "f") == (
        3, "not UTF-8 text: byte 0xff at column 5 cannot be decoded; save the file as UTF-8")
    assert _problem(gy.load_yaml, "\na: \x07\n", "f") == (2, "character U+0007 is not allowed in YAML")


def test_the_utf16_hint_takes_8_nuls_among_the_first_64_bytes():
    eight = b"a\x00" * 8 + b"\xff"  # exactly 8
    assert _problem(gy.decode, eight, "f")[1].endswith("(it looks like UTF-16); save the file as UTF-8")
    late = b"\x00" * 7 + b"a" * 57 + b"\x00\xff"  # 7 in the first 64 bytes, the 8th at byte 64
    assert _problem(gy.decode, late, "f")[1] == (
        "not UTF-8 text: byte 0xff at column 66 cannot be decoded; save the file as UTF-8")


def test_a_command_line_value_is_named_value_in_its_problem():
    with pytest.raises(GraphConfigError) as e:
        gy.load_scalar("!!int 'x'")
    assert str(e.value) == "<value>:1: 'x' is not an integer"


def test_the_first_item_has_its_own_line():
    data = gy.load_yaml("d: [\n  5,\n  6]\n", "f")
    assert data["d"].line == 1 and data["d"].item_lines == [2, 3]
    assert (data["d"].line_of(0), data["d"].line_of(1), data["d"].line_of(2)) == (2, 3, 1)
