"""What ``load`` takes (a mapping, bytes, YAML text, a path, a graph's name) and where a graph named
without a path is looked for (docs/graphs.md, "Finding graphs by name"), with the errors, word for
word."""

from __future__ import annotations

import importlib.metadata
import os
from pathlib import Path

import pytest

from pipeline import GraphConfigError
from pipeline import config as _config
from pipeline.config import (builtin_graph_dirs, builtin_graph_dirs_uncached, find_graph_file, graph_names,
                             graph_search_path, load, not_found_message, parse)

ONE = "inputs: [a]\nnodes:\n  - {calculator: PassThrough, inputs: [a], outputs: [b]}\n"
PLUGIN = "plugins: [vpipe_test_never_loaded]\n" + ONE


def _error(source, *args, **kw) -> list[str]:
    with pytest.raises(GraphConfigError) as ei:
        load(source, *args, **kw)
    return [str(p) for p in ei.value.problems]


@pytest.fixture
def no_env_path(monkeypatch):
    monkeypatch.delenv("VPIPE_GRAPH_PATH", raising=False)


def test_load_takes_a_mapping_bytes_text_and_a_path(tmp_path):
    assert load({"inputs": ["a"], "nodes": [{"calculator": "PassThrough", "inputs": ["a"], "outputs": ["b"]}]}).file \
        == "<dict>"
    assert load(ONE.encode()).file == "<string>" and load(ONE.encode()).nodes[0].line == 3
    assert load(ONE).file == "<string>"
    f = tmp_path / "one.yaml"
    f.write_text(ONE)
    assert load(f).file == str(f) and load(str(f)).file == str(f) and load(str(f)).name == "one"
    g = tmp_path / "two.yml"
    g.write_text(ONE)
    assert load(str(g)).file == str(g)
    # bad bytes and text name "<string>"
    assert _error(b"nodes: [\n")[0].startswith("<string>:2: invalid YAML")
    assert _error("nodes: [\n")[0].startswith("<string>:2: invalid YAML")
    assert _error(b"\xff\xfe\x00") == _error(b"\xff\xfe\x00") and _error(b"\xff\xfe\x00")[0].startswith("<string>")


def test_trust_and_search_paths_reach_every_kind_of_source(tmp_path, no_env_path):
    """``trust`` and ``search_paths`` are passed on whatever the source: a plugin not loaded without
    trust is tried with it; a subgraph is found on the search path."""
    sub = tmp_path / "lib"
    sub.mkdir()
    (sub / "relay_sub.yaml").write_text("inputs: [x]\noutputs: [y]\nnodes:\n"
                                        "  - {calculator: PassThrough, inputs: [x], outputs: [y]}\n")
    outer = "inputs: [a]\nnodes:\n  - subgraph: relay_sub\n    inputs: [a]\n    outputs: [b]\n"
    as_dict = {"inputs": ["a"], "nodes": [{"subgraph": "relay_sub", "inputs": ["a"], "outputs": ["b"]}]}
    for source in (outer, outer.encode(), as_dict):
        assert [n.name for n in load(source, [sub]).nodes] == ["relay_sub/PassThrough"]
        assert "subgraph 'relay_sub' not found" in _error(source)[0]
    plugin_dict = {"plugins": ["vpipe_test_never_loaded"], "inputs": ["a"],
                   "nodes": [{"calculator": "PassThrough", "inputs": ["a"], "outputs": ["b"]}]}
    for source in (PLUGIN, PLUGIN.encode(), plugin_dict):
        assert "is not loaded" in _error(source)[0]
        assert "cannot load plugin 'vpipe_test_never_loaded'" in _error(source, trust=True)[0]
    f = tmp_path / "p.yaml"
    f.write_text(PLUGIN)
    assert "cannot load plugin 'vpipe_test_never_loaded'" in _error(f, trust=True)[0]


def test_a_graph_named_without_a_path_is_looked_up_in_order(tmp_path, monkeypatch):
    first, second, third = (tmp_path / n for n in ("first", "second", "third"))
    for d in (first, second, third):
        d.mkdir()
    (second / "mine.yaml").write_text("name: from_second\n" + ONE)
    (third / "mine.yaml").write_text("name: from_third\n" + ONE)
    (third / "other.yml").write_text(ONE)
    monkeypatch.setenv("VPIPE_GRAPH_PATH", os.pathsep.join([str(third), "", str(first)]))
    assert graph_search_path([second]) == [second, third, first, *builtin_graph_dirs()]
    assert graph_search_path([third, Path(str(third) + "/")]) == [third, first, *builtin_graph_dirs()]  # once each
    assert load("mine", [second]).name == "from_second" and load(" mine ").name == "from_third"
    assert load("other").name == "other"
    assert find_graph_file("other", None) == third / "other.yml"
    names = graph_names([second])
    assert {"mine", "other", "face_detection"} <= set(names) and names == sorted(set(names))
    (first / "not_a_graph.txt").write_text("x")
    (first / "folder.yaml").mkdir()
    assert "not_a_graph" not in graph_names() and "folder" not in graph_names()


def test_a_name_found_nowhere_says_where_it_looked(tmp_path, no_env_path):
    where = ", ".join(str(d) for d in graph_search_path([tmp_path]))
    (tmp_path / "zzq_my_graph.yaml").write_text(ONE)
    assert _error("zzq_my_grap", [tmp_path]) == [
        f"zzq_my_grap: no graph file of that name (looked in {where}; did you mean 'zzq_my_graph'?)"]
    assert not_found_message("xyz_nothing_like", tmp_path) == f"looked beside {tmp_path} and in " \
        f"{', '.join(str(d) for d in graph_search_path())}"
    assert not_found_message("xyz_nothing_like", None, [tmp_path]) == f"looked in {where}"


def test_nothing_to_look_in_says_so(monkeypatch, no_env_path):
    monkeypatch.setattr(_config, "builtin_graph_dirs", lambda: [])
    assert not_found_message("zz", None) == "looked in no search path"


def test_a_path_that_is_no_graph_file(tmp_path):
    assert _error(tmp_path / "missing.yaml") == [f"{tmp_path / 'missing.yaml'}: graph file not found"]
    assert _error(str(tmp_path / "missing.yml")) == [f"{tmp_path / 'missing.yml'}: graph file not found"]
    folder = tmp_path / "folder.yaml"
    folder.mkdir()
    assert _error(folder) == [f"{folder}: is a folder, not a graph file"]
    unreadable = tmp_path / "locked.yaml"
    unreadable.write_text(ONE)
    unreadable.chmod(0)
    try:
        if os.access(unreadable, os.R_OK):
            pytest.skip("running as a user who reads any file (root)")
        assert _error(unreadable) == [f"{unreadable}: cannot read graph file {unreadable}: Permission denied"]
    finally:
        unreadable.chmod(0o644)


def test_an_unreadable_subgraph_is_named_where_it_is_included(tmp_path, monkeypatch):
    (tmp_path / "sub.yaml").write_text("inputs: [x]\noutputs: [y]\nnodes: []\n")
    outer = tmp_path / "outer.yaml"
    outer.write_text("inputs: [a]\nnodes:\n  - subgraph: sub\n    inputs: [a]\n    outputs: [b]\n")
    real = Path.read_bytes

    def failing(self):
        if self.name == "sub.yaml":
            raise PermissionError(13, "Permission denied")
        return real(self)

    monkeypatch.setattr(Path, "read_bytes", failing)
    assert _error(outer) == [f"{outer}:3: cannot read graph file {tmp_path / 'sub.yaml'}: Permission denied"]

    def failing_plain(self):
        if self.name == "sub.yaml":
            raise OSError("no strerror here")
        return real(self)

    monkeypatch.setattr(Path, "read_bytes", failing_plain)
    assert _error(outer) == [f"{outer}:3: cannot read graph file {tmp_path / 'sub.yaml'}: no strerror here"]


def test_find_graph_file_by_path_beside_the_including_file_first(tmp_path, monkeypatch):
    base, cwd = tmp_path / "base", tmp_path / "cwd"
    base.mkdir()
    cwd.mkdir()
    (base / "g.yaml").write_text(ONE)
    (cwd / "g.yaml").write_text(ONE)
    (cwd / "only_here.yml").write_text(ONE)
    monkeypatch.chdir(cwd)
    assert find_graph_file("g.yaml", base) == base / "g.yaml"
    assert find_graph_file("g.yaml", None) == Path("g.yaml")
    assert find_graph_file("only_here.yml", base) == Path("only_here.yml")
    assert find_graph_file(str(base / "g.yaml"), cwd) == base / "g.yaml"  # absolute: itself
    assert find_graph_file(str(tmp_path / "none.yaml"), cwd) is None
    assert find_graph_file("g", base) == base / "g.yaml" and find_graph_file("g", cwd) == cwd / "g.yaml"
    assert find_graph_file("x" * 5000, base) is None  # a name too long for the file system
    # a candidate the file system refuses (beside a folder whose path is too long) is passed over
    assert find_graph_file("g.yaml", Path("/" + "d" * 5000)) == Path("g.yaml")


class _EntryPoint:
    def __init__(self, value):
        self.value = value


def test_the_built_in_graph_folders_come_from_the_entry_points(monkeypatch, tmp_path):
    import graphs

    assert builtin_graph_dirs_uncached() == [Path(p) for p in graphs.__path__]
    (tmp_path / "my_graph_pkg").mkdir()
    (tmp_path / "my_graph_pkg" / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    asked = []

    def entry_points(group):
        asked.append(group)
        return [_EntryPoint("no_such_graph_pkg_8.sub"), _EntryPoint("my_graph_pkg:x"), _EntryPoint("no_such_graph_pkg_9"),
                _EntryPoint("os")]  # a package that is not there (find_spec raises for its submodule), a plain module

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)
    assert builtin_graph_dirs_uncached() == [tmp_path / "my_graph_pkg"]  # a plain module has no folder
    assert asked == ["vpipe.graphs"]
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group: [])
    assert builtin_graph_dirs_uncached() == [Path(p) for p in graphs.__path__]  # a source tree: graphs/


def test_repeated_calculators_are_numbered_around_names_taken(tmp_path):
    spec = load("""inputs: [a]
nodes:
  - {calculator: PassThrough, inputs: [a], outputs: [b]}
  - {calculator: PassThrough, name: PassThrough_2, inputs: [a], outputs: [c]}
  - {calculator: PassThrough, inputs: [a], outputs: [d]}
  - {calculator: PassThrough, inputs: [a], outputs: [e]}
  - {calculator: PassThrough, name: PassThrough_5, inputs: [a], outputs: [f]}
  - {calculator: PassThrough, inputs: [a], outputs: [g]}
""")
    assert [n.name for n in spec.nodes] == ["PassThrough", "PassThrough_2", "PassThrough_3", "PassThrough_4",
                                           "PassThrough_5", "PassThrough_6"]


def test_subgraph_labels_are_numbered_like_names(tmp_path):
    (tmp_path / "relay.yaml").write_text("inputs: [x]\noutputs: [y]\nnodes:\n"
                                         "  - {calculator: PassThrough, inputs: [x], outputs: [y]}\n")
    f = tmp_path / "outer.yaml"
    f.write_text("inputs: [a]\nnodes:\n" + "".join(
        f"  - {{subgraph: relay, name: {label}, inputs: [a], outputs: [b{i}]}}\n"
        for i, label in enumerate(["s", "s", "s_2", "s_2"])))
    assert [n.name for n in load(f).nodes] == ["s/PassThrough", "s_2/PassThrough", "s_2_2/PassThrough",
                                               "s_2_3/PassThrough"]


def test_a_relative_yaml_path_is_a_path_and_a_text_is_a_text_whatever_it_ends_with(tmp_path, monkeypatch,
                                                                                   no_env_path):
    """``name.yaml`` is a file in the working folder (not a graph name to look up); YAML text whose
    last line ends in ``.yaml`` is text."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "relay.yaml").write_text("inputs: [x]\noutputs: [y]\nnodes:\n"
                                         "  - {calculator: PassThrough, inputs: [x], outputs: [y]}\n")
    assert load("relay.yaml").file == "relay.yaml" and load("relay.yaml").name == "relay"
    assert _error("missing.yaml") == ["missing.yaml: graph file not found"]
    assert _error("missing.yml") == ["missing.yml: graph file not found"]
    text = "inputs: [a]\nnodes:\n  - inputs: [a]\n    outputs: [b]\n    subgraph: relay.yaml\n"
    spec = load(text)
    assert spec.file == "<string>" and [n.name for n in spec.nodes] == ["relay/PassThrough"]


def test_an_unreadable_graph_file_is_named(tmp_path, monkeypatch):
    """The same words as for an unreadable subgraph, even as root (who reads any file)."""
    f = tmp_path / "locked.yaml"
    f.write_text(ONE)
    real = Path.read_bytes

    def failing(self):
        if self.name == "locked.yaml":
            raise PermissionError(13, "Permission denied")
        return real(self)

    monkeypatch.setattr(Path, "read_bytes", failing)
    assert _error(f) == [f"{f}: cannot read graph file {f}: Permission denied"]
    assert _error(str(f)) == [f"{f}: cannot read graph file {f}: Permission denied"]


def test_a_graph_file_finds_its_subgraphs_on_the_search_path_given(tmp_path, no_env_path):
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "relay_lib.yaml").write_text("inputs: [x]\noutputs: [y]\nnodes:\n"
                                        "  - {calculator: PassThrough, inputs: [x], outputs: [y]}\n")
    f = tmp_path / "outer.yaml"
    f.write_text("inputs: [a]\nnodes:\n  - subgraph: relay_lib\n    inputs: [a]\n    outputs: [b]\n")
    assert [n.name for n in load(f, [lib]).nodes] == ["relay_lib/PassThrough"]
    assert [n.name for n in load(str(f), [lib]).nodes] == ["relay_lib/PassThrough"]
    assert _error(f)[0].startswith(f"{f}:3: subgraph 'relay_lib' not found")


def test_parse_by_default_trusts_no_plugin_and_starts_at_the_top_level(tmp_path):
    """``parse`` (what ``Graph.from_dict`` calls): no plugin imported without ``trust``, and a
    mapping may include subgraphs eight levels deep, as a file may."""
    with pytest.raises(GraphConfigError, match="is not loaded"):
        parse({"plugins": ["vpipe_test_never_loaded"], "inputs": ["a"], "nodes": []}, "<dict>")
    for i in range(8):
        (tmp_path / f"d{i}.yaml").write_text(f"inputs: [x]\noutputs: [y]\nnodes:\n  - subgraph: d{i + 1}\n"
                                             "    inputs: [x]\n    outputs: [y]\n")
    (tmp_path / "d8.yaml").write_text("inputs: [x]\noutputs: [y]\nnodes:\n"
                                      "  - {calculator: PassThrough, inputs: [x], outputs: [y]}\n")
    data = {"inputs": ["a"], "nodes": [{"subgraph": "d1", "inputs": ["a"], "outputs": ["b"]}]}
    assert [n.name for n in parse(data, "<dict>", [tmp_path]).nodes] == ["d1/d2/d3/d4/d5/d6/d7/d8/PassThrough"]
    data["nodes"][0]["subgraph"] = "d0"
    with pytest.raises(GraphConfigError, match="subgraph 'd8' nests more than 8 levels deep"):
        parse(data, "<dict>", [tmp_path])


def test_nx_graph_has_one_edge_per_input_with_its_stream_and_back_edges_by_default():
    spec = load("""inputs: [a]
nodes:
  - {calculator: TestJoin, name: join, inputs: {A: a, B: {stream: loop, back_edge: true}}, outputs: [joined]}
  - {calculator: PassThrough, name: relay, inputs: [joined, joined], outputs: [loop, other]}
""")
    edges = sorted(spec.nx_graph().edges(data=True))
    assert edges == [("join", "relay", {"stream": "joined", "back_edge": False}),
                     ("join", "relay", {"stream": "joined", "back_edge": False}),
                     ("relay", "join", {"stream": "loop", "back_edge": True})]
    assert sorted(spec.nx_graph(include_back_edges=False).edges(data=True)) == edges[:2]
    assert sorted(spec.nx_graph().nodes) == ["join", "relay"]
