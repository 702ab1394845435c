"""Outputs on inputs, and two outputs on one file, are refused before anything runs (pipeline/paths.py),
seen through ``Graph.start``: which option values count as files, how a read option's folder or glob
is expanded, how a write pattern is matched, and what the one-line problem says."""

from __future__ import annotations

import os
import textwrap

import pytest
from pydantic import BaseModel, ConfigDict, Field

from pipeline import STOP, Any, Calculator, Graph, GraphConfigError, Input, Output, register


class _ReadOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str | None = Field(None, json_schema_extra={"file": "read"})
    # a schema extra that is not a file role, and one that is not a dict: neither is a file option
    note: str = Field("", json_schema_extra={"file": "maybe"})
    label: str = Field("", json_schema_extra=lambda schema: None)


class _WriteOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str | None = Field(None, json_schema_extra={"file": "write"})
    title: str = ""  # not a file


@register
class TestPathReader(Calculator):
    """A source whose ``path`` option is a file it reads (emits nothing)."""

    outputs = {"OUT": Output(Any)}
    Options = _ReadOptions

    def process(self, ctx):
        return STOP


@register
class TestPathWriter(Calculator):
    """A sink whose ``path`` option is a file it writes (writes nothing)."""

    inputs = {"IN": Input(Any)}
    Options = _WriteOptions

    def process(self, ctx):
        pass


class _TwoWritesOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    log: str | None = Field(None, json_schema_extra={"file": "write"})  # first, and often unset
    path: str | None = Field(None, json_schema_extra={"file": "write"})


@register
class TestTwoWriter(Calculator):
    """A sink with two file options, ``log`` and ``path``."""

    inputs = {"IN": Input(Any)}
    Options = _TwoWritesOptions

    def process(self, ctx):
        pass


def _graph(readers: dict[str, dict], writers: dict[str, dict]) -> Graph:
    """A YAML graph file text: each reader feeds every writer."""
    nodes = []
    for name, options in readers.items():
        nodes.append({"name": name, "calculator": "TestPathReader", "outputs": {"OUT": f"s_{name}"},
                      "options": options})
    first = next(iter(readers))
    for name, options in writers.items():
        nodes.append({"name": name, "calculator": "TestPathWriter", "inputs": {"IN": f"s_{first}"},
                      "options": options})
    return Graph.from_dict({"name": "paths", "nodes": nodes})


def _problems(readers, writers) -> list[str]:
    """The problems ``start`` refuses the graph with ([] when it runs)."""
    g = _graph(readers, writers)
    try:
        g.start()
    except GraphConfigError as e:
        return [p.message for p in e.problems]
    g.wait(10)
    return []


def _overwrite(path, writer="w", reader="r") -> str:
    return (f"node '{writer}' (TestPathWriter) would overwrite {path!r} (option path), which node "
            f"'{reader}' (TestPathReader) reads (option path): an output must not be an input; give it "
            "another path")


def _twice(path, writer, first) -> str:
    return (f"node '{writer}' (TestPathWriter) would write {path!r} (option path), which node "
            f"'{first}' (TestPathWriter) writes too (option path): give each output its own path")


def test_writing_the_file_read_is_refused_with_one_line_naming_both(tmp_path):
    video = tmp_path / "in.mp4"
    video.write_bytes(b"x")
    assert _problems({"r": {"path": str(video)}}, {"w": {"path": str(video)}}) == [_overwrite(str(video))]
    assert _problems({"r": {"path": str(video)}}, {"w": {"path": str(tmp_path / "out.mp4")}}) == []


def test_the_problem_carries_the_graph_files_name_and_the_writers_line(tmp_path):
    video = tmp_path / "in.mp4"
    video.write_bytes(b"x")
    text = textwrap.dedent(f"""\
        name: paths
        nodes:
          - calculator: TestPathReader
            name: r
            outputs: {{OUT: s}}
            options: {{path: "{video}"}}
          - calculator: TestPathWriter
            name: w
            inputs: {{IN: s}}
            options: {{path: "{video}"}}
        """)
    f = tmp_path / "g.yaml"
    f.write_text(text)
    with pytest.raises(GraphConfigError) as e:
        Graph.from_yaml(f).start()
    (p,) = e.value.problems
    assert (p.file, p.line) == (str(f), 7)
    assert str(e.value) == f"{f}:7: {_overwrite(str(video))}"


def test_a_link_to_the_input_is_the_input(tmp_path):
    video = tmp_path / "in.mp4"
    video.write_bytes(b"x")
    (tmp_path / "soft.mp4").symlink_to(video)
    os.link(video, tmp_path / "hard.mp4")
    for name in ("soft.mp4", "hard.mp4"):
        out = str(tmp_path / name)
        assert _problems({"r": {"path": str(video)}}, {"w": {"path": out}}) == [_overwrite(out)]


def test_file_urls_are_files_and_other_urls_and_catalog_names_are_not(tmp_path):
    video = tmp_path / "in.mp4"
    video.write_bytes(b"x")
    url = f"file://{video}"
    assert _problems({"r": {"path": url}}, {"w": {"path": str(video)}}) == [_overwrite(str(video))]
    assert _problems({"r": {"path": str(video)}}, {"w": {"path": url}}) == [_overwrite(url)]
    for same in ("rtsp://camera/stream", "sample:bigbuckbunny", "Sample:bigbuckbunny", "http://host/a.mp4", ""):
        assert _problems({"r": {"path": same}}, {"w": {"path": same}}) == [], same
    assert _problems({"r": {}}, {"w": {}}) == []  # None: no file


def test_a_drive_letter_path_is_a_local_file(tmp_path, monkeypatch):
    """``C:/x`` and ``C:\\x`` are paths (a drive), not a scheme like ``sample:``."""
    monkeypatch.chdir(tmp_path)
    for path in ("C:/videos/a.mp4", "C:\\videos\\a.mp4"):
        assert _problems({"r": {"path": path}}, {"w": {"path": path}}) == [_overwrite(path)]


def test_only_read_and_write_roles_are_file_options(tmp_path):
    video = tmp_path / "in.mp4"
    video.write_bytes(b"x")
    # the reader's `note` and `label` name the written file: neither is a read option
    assert _problems({"r": {"note": str(video), "label": str(video)}}, {"w": {"path": str(video)}}) == []
    # a write option is compared with another writer's, a plain option is not
    assert _problems({"r": {}}, {"w": {"path": str(video)}, "w2": {"title": str(video)}}) == []


def test_a_folder_read_is_each_file_in_it(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    (folder / "b.png").write_bytes(b"b")
    (folder / "a.png").write_bytes(b"a")
    inside = str(folder / "b.png")
    assert _problems({"r": {"path": str(folder)}}, {"w": {"path": inside}}) == [_overwrite(inside)]
    # a new file in the folder is not one it reads now
    assert _problems({"r": {"path": str(folder)}}, {"w": {"path": str(folder / "c.png")}}) == []


def test_a_glob_read_is_each_file_it_matches(tmp_path):
    (tmp_path / "a.png").write_bytes(b"a")
    (tmp_path / "b.jpg").write_bytes(b"b")
    pattern = str(tmp_path / "*.png")
    assert _problems({"r": {"path": pattern}}, {"w": {"path": str(tmp_path / "a.png")}}) == [
        _overwrite(str(tmp_path / "a.png"))]
    assert _problems({"r": {"path": pattern}}, {"w": {"path": str(tmp_path / "b.jpg")}}) == []


def test_a_write_pattern_stands_for_every_file_it_can_make(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    (folder / "f_00003.png").write_bytes(b"x")
    pattern = str(folder / "f_{index:05d}.png")
    assert _problems({"r": {"path": str(folder)}}, {"w": {"path": pattern}}) == [_overwrite(pattern)]
    assert _problems({"r": {"path": str(folder / "f_00003.png")}}, {"w": {"path": pattern}}) == [
        _overwrite(pattern)]
    assert _problems({"r": {"path": str(folder)}}, {"w": {"path": str(tmp_path / "g_{index}.png")}}) == []
    # a read file that does not exist yet cannot be overwritten by a pattern
    assert _problems({"r": {"path": str(folder / "f_00009.png")}}, {"w": {"path": pattern}}) == []


def test_the_first_reader_overwritten_is_named_once(tmp_path):
    video = tmp_path / "in.mp4"
    video.write_bytes(b"x")
    problems = _problems({"r": {"path": str(video)}, "r2": {"path": str(video)}},
                         {"w": {"path": str(video)}, "w2": {"path": str(video)}})
    # one problem per writer, the first reader only; an overwrite is not reported again as two writes
    assert problems == [_overwrite(str(video)), _overwrite(str(video), writer="w2")]


def test_two_writers_on_one_file_are_refused(tmp_path):
    out = str(tmp_path / "out.mp4")
    assert _problems({"r": {}}, {"w": {"path": out}, "w2": {"path": out}}) == [_twice(out, "w2", "w")]
    assert _problems({"r": {}}, {"w": {"path": out}, "w2": {"path": str(tmp_path / "o2.mp4")}}) == []
    three = _problems({"r": {}}, {"w": {"path": out}, "w2": {"path": out}, "w3": {"path": out}})
    assert three == [_twice(out, "w2", "w"), _twice(out, "w3", "w")]  # each names the first


def test_two_writers_with_patterns_that_meet_are_refused(tmp_path):
    pattern = str(tmp_path / "f_{index:05d}.png")
    one = str(tmp_path / "f_00001.png")
    assert _problems({"r": {}}, {"w": {"path": pattern}, "w2": {"path": pattern}}) == [
        _twice(pattern, "w2", "w")]
    # a plain file the pattern can make, before or after it
    assert _problems({"r": {}}, {"w": {"path": pattern}, "w2": {"path": one}}) == [_twice(one, "w2", "w")]
    assert _problems({"r": {}}, {"w": {"path": one}, "w2": {"path": pattern}}) == [_twice(pattern, "w2", "w")]
    other = str(tmp_path / "g_{index:05d}.png")
    assert _problems({"r": {}}, {"w": {"path": pattern}, "w2": {"path": other}}) == []
    assert _problems({"r": {}}, {"w": {"path": str(tmp_path / "x.png")}, "w2": {"path": pattern}}) == []


def test_every_file_option_of_a_node_is_checked_even_after_an_unset_one(tmp_path):
    video = tmp_path / "in.mp4"
    video.write_bytes(b"x")
    g = Graph.from_dict({"name": "paths", "nodes": [
        {"name": "r", "calculator": "TestPathReader", "outputs": {"OUT": "s"}, "options": {"path": str(video)}},
        {"name": "w", "calculator": "TestTwoWriter", "inputs": {"IN": "s"}, "options": {"path": str(video)}},
    ]})
    with pytest.raises(GraphConfigError, match=r"node 'w' \(TestTwoWriter\) would overwrite .* \(option path\)"):
        g.start()


def test_two_writers_problem_carries_the_file_and_the_second_writers_line(tmp_path):
    out = tmp_path / "out.mp4"
    f = tmp_path / "g.yaml"
    f.write_text(textwrap.dedent(f"""\
        name: paths
        nodes:
          - {{calculator: TestPathReader, name: r, outputs: {{OUT: s}}}}
          - {{calculator: TestPathWriter, name: w, inputs: {{IN: s}}, options: {{path: "{out}"}}}}
          - {{calculator: TestPathWriter, name: w2, inputs: {{IN: s}}, options: {{path: "{out}"}}}}
        """))
    with pytest.raises(GraphConfigError) as e:
        Graph.from_yaml(f).start()
    assert str(e.value) == f"{f}:5: {_twice(str(out), 'w2', 'w')}"
