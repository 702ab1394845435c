"""Reading a graph file's YAML: plain data only, YAML 1.2 scalars, line numbers, bounded work.

A graph file may come from anywhere, so reading it must never run code, never take unbounded
memory or time, and end in one ``GraphConfigError`` with the file and line for whatever is wrong:

- bytes: UTF-8 only (a UTF-8 BOM is fine); UTF-16/32 and undecodable bytes are named with their line;
  characters YAML does not allow (NUL, control characters: a binary file) likewise;
- at most ``MAX_FILE_BYTES`` of text, ``MAX_DEPTH`` levels of nesting, and ``MAX_ITEMS`` values once
  aliases are expanded (an alias bomb fails as soon as its expansion passes the limit, without
  building it); an alias inside its own anchor is refused;
- no tags other than the core ones (``!!str``, ``!!int``, ``!!float``, ``!!bool``, ``!!null``,
  ``!!seq``, ``!!map``): nothing constructs objects, sets, dates or bytes;
- scalars follow YAML 1.2's core schema, as a user reads them: only ``true``/``false`` are booleans
  (``yes``, ``no``, ``on``, ``off`` are text), ``010`` is ten, ``1e3`` is a float, ``1:30`` and
  ``2024-01-01`` are text; numbers longer than ``MAX_NUMBER_DIGITS`` digits are refused;
- mapping keys are scalars and appear once: a duplicate key is an error (YAML says so; PyYAML alone
  keeps the last one and silently drops the first ``nodes:``); keys merged in with ``<<: *anchor``
  may be overridden.

Parsing uses libyaml's event parser when PyYAML has it (linear and several times faster) and
PyYAML's own otherwise; the composing, where the limits are kept, is PyYAML's composer.
"""

from __future__ import annotations

import codecs
import re
from typing import Any

import yaml
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.events import AliasEvent, ScalarEvent, SequenceStartEvent
from yaml.nodes import MappingNode, ScalarNode, SequenceNode
from yaml.resolver import BaseResolver

from .errors import GraphConfigError, Problem

MAX_FILE_BYTES = 16 * 1024 * 1024
MAX_DEPTH = 64
MAX_ITEMS = 2_000_000
MAX_NUMBER_DIGITS = 64

_T = "tag:yaml.org,2002:"
STR, INT, FLOAT, BOOL, NULL, SEQ, MAP, MERGE = (_T + t for t in ("str", "int", "float", "bool", "null",
                                                                 "seq", "map", "merge"))
_SCALAR_TAGS = {STR, INT, FLOAT, BOOL, NULL, MERGE}

# YAML 1.2 core schema (https://yaml.org/spec/1.2.2/#1032-tag-resolution).
_NULL = re.compile(r"^(?:~|null|Null|NULL|)$")
_BOOL = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
_INT = re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$")
_FLOAT = re.compile(r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
                    r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$")
# Characters YAML allows in a stream (https://yaml.org/spec/1.2.2/#51-character-set).
_NOT_PRINTABLE = re.compile("[^\x09\x0A\x0D\x20-\x7E\x85\xA0-\uD7FF\uE000-\uFFFD\U00010000-\U0010FFFF]")

try:  # libyaml's parser (a C extension bundled with PyYAML's wheels)
    from yaml._yaml import CParser as _EventParser

    def _init_parser(loader, text):
        _EventParser.__init__(loader, text)

except ImportError:  # pragma: no cover - PyYAML built without libyaml
    from yaml.parser import Parser
    from yaml.reader import Reader
    from yaml.scanner import Scanner

    class _EventParser(Reader, Scanner, Parser):
        pass

    def _init_parser(loader, text):
        Reader.__init__(loader, text)
        Scanner.__init__(loader)
        Parser.__init__(loader)


class _LimitError(yaml.MarkedYAMLError):
    """A limit of this module, reported like a YAML error (with the line it was reached at)."""

    def __init__(self, message: str, mark):
        super().__init__(problem=message, problem_mark=mark)
        self.limit = True


# ---------------------------------------------------------------------------------------------
# Line-numbered containers


class LDict(dict):
    """A mapping that remembers the line of each key (1-based)."""

    line: int | None = None
    key_lines: dict

    def line_of(self, key) -> int | None:
        return getattr(self, "key_lines", {}).get(key, self.line)


class LList(list):
    """A list that remembers the line of each item (1-based)."""

    line: int | None = None
    item_lines: list

    def line_of(self, index: int) -> int | None:
        lines = getattr(self, "item_lines", [])
        return lines[index] if 0 <= index < len(lines) else self.line


# ---------------------------------------------------------------------------------------------
# The loader


class _CoreResolver(BaseResolver):
    """YAML 1.2 core schema scalars, plus ``<<`` merge keys."""

    yaml_implicit_resolvers: dict = {}


for _tag, _regexp, _first in (
    (BOOL, _BOOL, "tTfF"),
    (INT, _INT, "-+0123456789"),
    (FLOAT, _FLOAT, "-+0123456789."),
    (NULL, _NULL, ["~", "n", "N", ""]),
    (MERGE, re.compile(r"^<<$"), "<"),
):
    _CoreResolver.add_implicit_resolver(_tag, _regexp, list(_first))


class _LimitedComposer(Composer):
    """PyYAML's composer, counting nesting depth and the size of every value with aliases expanded."""

    def __init__(self):
        super().__init__()
        self._depth = 0
        self._sizes: dict[int, int] = {}  # id(collection node) -> values inside it, aliases expanded

    def compose_node(self, parent, index):
        if isinstance(parent, MappingNode) and index is None and not self.check_event(ScalarEvent):
            # A key (PyYAML composes keys with index None) that is a list, a mapping or an alias.
            event = self.peek_event()
            if isinstance(event, AliasEvent):
                target = self.anchors.get(event.anchor)
                kind = "a list" if isinstance(target, SequenceNode) else "a mapping" if isinstance(
                    target, MappingNode) else None
            else:
                kind = "a list" if isinstance(event, SequenceStartEvent) else "a mapping"
            if kind is not None:
                raise _LimitError(f"a mapping key must be a name or a number, not {kind}", event.start_mark)
        if self.check_event(AliasEvent):
            mark = self.peek_event().start_mark
            node = super().compose_node(parent, index)
            if not isinstance(node, ScalarNode) and id(node) not in self._sizes:
                raise _LimitError(f"alias *{node_anchor(self, node)} is used inside its own anchor "
                                  "(a value that contains itself)", mark)
            return node
        mark = self.peek_event().start_mark
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise _LimitError(f"values nest more than {MAX_DEPTH} levels deep", mark)
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        _check_tag(node)
        if not isinstance(node, ScalarNode):
            children = node.value if isinstance(node, SequenceNode) else [c for kv in node.value for c in kv]
            size = 1 + sum(1 if isinstance(c, ScalarNode) else self._sizes[id(c)] for c in children)
            if size > MAX_ITEMS:
                raise _LimitError(f"this value holds more than {MAX_ITEMS:,} values once its aliases are "
                                  "expanded (an alias bomb?)", node.start_mark)
            self._sizes[id(node)] = size
        return node


def node_anchor(composer: Composer, node) -> str:
    return next((a for a, n in composer.anchors.items() if n is node), "?")


def _check_tag(node) -> None:
    tag = node.tag
    if isinstance(node, ScalarNode):
        ok = tag in _SCALAR_TAGS
    else:
        ok = tag == (SEQ if isinstance(node, SequenceNode) else MAP)
    if not ok:
        shown = "!!" + tag[len(_T):] if tag.startswith(_T) else tag
        kind = "a scalar" if isinstance(node, ScalarNode) else "a list" if isinstance(node, SequenceNode) else "a mapping"
        raise _LimitError(f"tag '{shown}' is not allowed on {kind}: a graph file holds plain data "
                          "(text, numbers, true/false, null, lists and mappings)", node.start_mark)


class _GraphConstructor(SafeConstructor):
    yaml_constructors: dict = {}  # only the core tags below: nothing else can be constructed


def _construct_str(loader, node):
    return loader.construct_scalar(node)


def _construct_null(loader, node):
    value = loader.construct_scalar(node)
    if not _NULL.match(value):
        raise _LimitError(f"{value!r} is not null (write null or ~)", node.start_mark)
    return None


def _construct_bool(loader, node):
    value = loader.construct_scalar(node)
    if not _BOOL.match(value):
        raise _LimitError(f"{value!r} is not a boolean (write true or false)", node.start_mark)
    return value.lower() == "true"


def _construct_int(loader, node):
    value = loader.construct_scalar(node)
    if not _INT.match(value):
        raise _LimitError(f"{value!r} is not an integer", node.start_mark)
    if len(value) > MAX_NUMBER_DIGITS:
        raise _LimitError(f"a number of {len(value)} digits (at most {MAX_NUMBER_DIGITS})", node.start_mark)
    if value.startswith("0o"):
        return int(value[2:], 8)
    if value.startswith("0x"):
        return int(value[2:], 16)
    return int(value, 10)


def _construct_float(loader, node):
    value = loader.construct_scalar(node)
    if not _FLOAT.match(value):
        raise _LimitError(f"{value!r} is not a number", node.start_mark)
    if len(value) > MAX_NUMBER_DIGITS:
        raise _LimitError(f"a number of {len(value)} characters (at most {MAX_NUMBER_DIGITS})", node.start_mark)
    low = value.lower()
    if low.endswith(".inf"):
        return float("-inf") if low.startswith("-") else float("inf")
    if low == ".nan":
        return float("nan")
    return float(value)


def _construct_mapping(loader, node):
    # Keys written in this mapping must be unique; keys merged in (<<: *defaults) may be overridden.
    d = LDict()
    d.line = node.start_mark.line + 1
    d.key_lines = {}
    # Every key is a scalar here: _LimitedComposer.compose_node refuses the others (a list, a
    # mapping, an alias of one) as it reads them, merged mappings' keys included.
    explicit = [key_node for key_node, _ in node.value if key_node.tag != MERGE]
    seen: dict = {}
    for key_node in explicit:
        key = loader.construct_object(key_node)
        if key in seen:
            raise _LimitError(f"key {key!r} appears twice in this mapping (first at line {seen[key]}); "
                              "YAML keeps only one, so merge them", key_node.start_mark)
        seen[key] = key_node.start_mark.line + 1
    loader.flatten_mapping(node)  # PyYAML's handling of `<<`; merged pairs come first
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node)
        d[key] = loader.construct_object(value_node, deep=True)
        d.key_lines[key] = key_node.start_mark.line + 1
    return d


def _construct_sequence(loader, node):
    lst = LList(loader.construct_object(child, deep=True) for child in node.value)
    lst.line = node.start_mark.line + 1
    lst.item_lines = [child.start_mark.line + 1 for child in node.value]
    return lst


for _tag, _fn in ((STR, _construct_str), (NULL, _construct_null), (BOOL, _construct_bool), (INT, _construct_int),
                  (FLOAT, _construct_float), (MAP, _construct_mapping), (SEQ, _construct_sequence)):
    _GraphConstructor.add_constructor(_tag, _fn)


class _GraphLoader(_LimitedComposer, _EventParser, _GraphConstructor, _CoreResolver):
    def __init__(self, text: str):
        _init_parser(self, text)
        _LimitedComposer.__init__(self)
        _GraphConstructor.__init__(self)
        _CoreResolver.__init__(self)


# ---------------------------------------------------------------------------------------------
# Entry points


def decode(data: bytes, file: str) -> str:
    """Graph file bytes → text; anything but UTF-8 is an error naming the line."""
    if len(data) > MAX_FILE_BYTES:
        raise GraphConfigError([Problem(file, None, f"the file is {len(data):,} bytes; a graph file may have at "
                                                    f"most {MAX_FILE_BYTES:,}")])
    for bom, name in ((codecs.BOM_UTF32_LE, "UTF-32"), (codecs.BOM_UTF32_BE, "UTF-32"),
                      (codecs.BOM_UTF16_LE, "UTF-16"), (codecs.BOM_UTF16_BE, "UTF-16")):
        if data.startswith(bom):
            raise GraphConfigError([Problem(file, 1, f"the file is {name} text (PowerShell's '>' writes UTF-16); "
                                                     "save it as UTF-8")])
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8):]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        column = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        nuls = data[:64].count(0)
        hint = " (it looks like UTF-16)" if nuls >= 8 else ""
        raise GraphConfigError([Problem(file, line, f"not UTF-8 text: byte 0x{data[e.start]:02x} at column {column} "
                                                    f"cannot be decoded{hint}; save the file as UTF-8")]) from None


def load_yaml(text: str, file: str) -> Any:
    """Parses a graph file's text into plain data (``LDict``, ``LList``, scalars) under the limits."""
    if len(text) > MAX_FILE_BYTES:
        raise GraphConfigError([Problem(file, None, f"the text has {len(text):,} characters; a graph file may "
                                                    f"have at most {MAX_FILE_BYTES:,}")])
    bad = _NOT_PRINTABLE.search(text)
    if bad:
        line = text.count("\n", 0, bad.start()) + 1
        hint = " (a binary file, or UTF-16?)" if bad.group() == "\x00" else ""
        raise GraphConfigError([Problem(file, line, f"character U+{ord(bad.group()):04X} is not allowed in YAML{hint}")])
    loader = _GraphLoader(text)
    try:
        return loader.get_single_data()
    except _LimitError as e:
        raise GraphConfigError([Problem(file, e.problem_mark.line + 1, e.problem)]) from None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark else None
        if "nesting depth" in (e.problem or ""):  # libyaml's own limit on flow collections
            raise GraphConfigError([Problem(file, line, f"values nest more than {MAX_DEPTH} levels deep")]) from None
        what = "; ".join(p for p in (e.context, e.problem) if p) or "cannot be parsed"
        raise GraphConfigError([Problem(file, line, f"invalid YAML: {what}")]) from None
    except yaml.YAMLError as e:
        raise GraphConfigError([Problem(file, None, f"invalid YAML: {e}")]) from None
    finally:
        loader.dispose()


def load_scalar(text: str) -> Any:
    """One YAML 1.2 value as written on a command line (``--set key=VALUE``); raises ``GraphConfigError``."""
    return load_yaml(text, "<value>")
