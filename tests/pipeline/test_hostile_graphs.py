"""Hostile graph files: every one ends in a ``GraphConfigError`` with its file and line, quickly and
in bounded memory, and nothing in a graph file runs code.

The corpus is table-driven: (id, what the file holds, the line the problem is reported at, a pattern
of the message). Each file is loaded with a guard on the process's address space (so a limit that
failed shows up as a MemoryError here, not as a machine out of memory), under tracemalloc (its peak
must stay small), and within a time bound far above what it takes (a hang fails, not noise).
"""

from __future__ import annotations

import gc
import re
import resource
import sys
import time
import tracemalloc
from pathlib import Path

import pytest

from pipeline import Graph, GraphConfigError, config, graph_yaml, registry
from pipeline.config import switched_on

for _name in ("Counter", "Collector", "FlowLimiter"):  # before any timing: the built-ins the corpus names
    registry.get(_name)

TIME_BOUND_S = 10.0  # each takes well under a second alone; the machine running the tests is shared
PEAK_BOUND = 64 * 1024 * 1024

CHAIN = """\
nodes:
  - calculator: Counter
    outputs: {OUT: a}
  - calculator: PassThrough
    inputs: {IN: a}
    outputs: {OUT: b}
"""


def _alias_bomb() -> str:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, 10):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    lines.append("nodes: *a9")
    return "\n".join(lines) + "\n"


def _merge_bomb() -> str:
    lines = ["m0: &m0 {k0: 1, k1: 2, k2: 3, k3: 4}"]
    for i in range(1, 12):
        lines.append(f"m{i}: &m{i} {{<<: [" + ", ".join([f"*m{i - 1}"] * 8) + f"], own{i}: 1}}")
    lines.append("nodes: []")
    return "\n".join(lines) + "\n"


def _deep_block(levels: int) -> str:
    return "nodes:\n" + "".join("  " * (i + 1) + "- a:\n" for i in range(levels)) + "  " * (levels + 1) + "  1\n"


CORPUS = [
    # --- bytes and characters
    ("non_utf8", "name: caf\xe9\nnodes: []\n".encode("latin-1"), 1, r"not UTF-8 text: byte 0xe9 at column 10 "
                                                                    r"cannot be decoded; save the file as UTF-8"),
    ("non_utf8_line_3", b"nodes:\n  - calculator: Counter\n    name: \xff\xfe\n", 3, r"not UTF-8 text: byte 0xff"),
    ("utf16_bom", CHAIN.encode("utf-16"), 1, r"the file is UTF-16 text .*save it as UTF-8"),
    ("utf16_be_bom", CHAIN.encode("utf-16-be").join([b"\xfe\xff", b""]), 1, r"the file is UTF-16 text"),
    ("utf16_no_bom", CHAIN.encode("utf-16-le"), 1, r"character U\+0000 is not allowed in YAML \(a binary file, or UTF-16\?\)"),
    ("utf32_bom", CHAIN.encode("utf-32"), 1, r"the file is UTF-32 text"),
    ("nul_byte", b"nodes:\n  - calculator: Counter\n    name: a\x00b\n", 3, r"character U\+0000 is not allowed"),
    ("control_char", "nodes:\n  - calculator: Co\x07unter\n", 2, r"character U\+0007 is not allowed in YAML"),
    ("binary_garbage", bytes(range(256)) * 4, 2, r"(not UTF-8 text|character U\+0000)"),
    # --- YAML structure
    ("empty", b"", 1, r"a graph file must be a mapping with a 'nodes' list; this one is empty"),
    ("only_comments", b"# nothing here\n# at all\n", 1, r"this one is empty"),
    ("top_level_list", b"- calculator: Counter\n", 1, r"this one is a list"),
    ("top_level_scalar", b"hello\n", 1, r"this one is the text 'hello'"),
    ("two_documents", b"nodes: []\n---\nnodes: []\n", 2, r"invalid YAML: expected a single document in the stream; but found another document"),
    ("unclosed_bracket", b"nodes: [\n  {calculator: Counter\n", 3, r"invalid YAML"),
    ("tab_indent", b"nodes:\n\t- calculator: Counter\n", 2, r"invalid YAML"),
    ("undefined_alias", b"nodes: *nowhere\n", 1, r"invalid YAML: found undefined alias 'nowhere'"),
    ("list_as_key", b"nodes: []\n? [a, b]\n: 1\n", 2, r"a mapping key must be a name or a number, not a list"),
    ("flow_list_as_key", b"nodes:\n  - {[IN]: a, calculator: Counter}\n", 2, r"a mapping key must be .* not a list"),
    ("mapping_as_key", b"nodes: []\n? {a: 1}\n: 2\n", 2, r"a mapping key must be a name or a number, not a mapping"),
    ("alias_as_key", b"x: &x [1]\n*x : 2\nnodes: []\n", 2, r"a mapping key must be a name or a number, not a list"),
    ("duplicate_nodes_key", (CHAIN + "nodes: []\n").encode(), 7, r"key 'nodes' appears twice in this mapping \(first "
                                                                 r"at line 1\)"),
    ("duplicate_node_key", b"nodes:\n  - calculator: Counter\n    outputs: [a]\n    calculator: Ticker\n", 4,
     r"key 'calculator' appears twice .*first at line 2"),
    ("duplicate_option_key", b"nodes:\n  - calculator: Counter\n    outputs: [a]\n    options: {count: 3, count: 4}\n",
     4, r"key 'count' appears twice"),
    # --- limits: expansion, nesting, sizes
    ("alias_bomb", _alias_bomb(), 7, r"this value holds more than 2,000,000 values once its aliases are expanded"),
    ("merge_bomb", _merge_bomb(), 7, r"more than 2,000,000 values once its aliases are expanded"),
    ("recursive_anchor", b"nodes: &n [*n]\n", 1, r"alias \*n is used inside its own anchor"),
    ("recursive_merge", b"a: &a {<<: *a}\nnodes: []\n", 1, r"alias \*a is used inside its own anchor"),
    ("nested_brackets_20000", "nodes: " + "[" * 20000 + "]" * 20000 + "\n", 1, r"values nest more than 64 levels deep"),
    ("nested_braces_20000", "nodes: " + "{a: " * 20000 + "1" + "}" * 20000 + "\n", 1,
     r"values nest more than 64 levels deep"),
    ("nested_blocks_200", _deep_block(200), 33, r"values nest more than 64 levels deep"),
    ("number_100000_digits", "nodes:\n  - calculator: Counter\n    outputs: [a]\n    options: {count: "
                             + "9" * 100000 + "}\n", 4, r"a number of 100000 digits \(at most 64\)"),
    # --- tags
    ("python_object_tag", b"nodes:\n  - calculator: !!python/object/apply:os.system [echo pwned]\n", 2,
     r"tag '!!python/object/apply:os.system' is not allowed on a list: a graph file holds plain data"),
    ("python_name_tag", b"nodes: !!python/name:os.system\n", 1, r"tag '!!python/name:os.system' is not allowed"),
    ("binary_tag", b"nodes: []\nname: !!binary aGVsbG8=\n", 2, r"tag '!!binary' is not allowed on a scalar"),
    ("set_tag", b"nodes: []\nname: !!set {a, b}\n", 2, r"tag '!!set' is not allowed on a mapping"),
    ("timestamp_tag", b"nodes: []\nname: !!timestamp 2024-01-01\n", 2, r"tag '!!timestamp' is not allowed"),
    ("local_tag", b"nodes: !mine [1]\n", 1, r"tag '!mine' is not allowed on a list"),
    ("int_tag_on_text", b"nodes: []\nname: !!int abc\n", 2, r"'abc' is not an integer"),
    ("bool_tag_on_yes", b"nodes: []\nname: !!bool yes\n", 2, r"'yes' is not a boolean \(write true or false\)"),
    ("seq_tag_on_scalar", b"nodes: !!seq abc\n", 1, r"tag '!!seq' is not allowed on a scalar"),
    # --- the graph's own keys
    ("no_nodes", b"name: x\n", 1, r"the graph has no 'nodes' list"),
    ("nodes_a_mapping", b"nodes: {a: 1}\n", 1, r"'nodes' must be a list, got a mapping"),
    ("node_a_list", b"nodes:\n  - [Counter]\n", 2, r"node #1 must be a mapping with a 'calculator', got a list"),
    ("calculator_a_list", b"nodes:\n  - calculator: [Counter]\n", 2, r"node #1 has no 'calculator' .*got a list"),
    ("name_a_mapping", b"nodes: []\nname: {a: 1}\n", 2, r"'name' must be a text, got a mapping"),
    ("node_name_a_list", b"nodes:\n  - calculator: Counter\n    name: [x]\n    outputs: [a]\n", 3,
     r"node #1: 'name' must be a text, got a list"),
    ("graph_inputs_nested", b"inputs: [[a]]\nnodes: []\n", 1, r"'inputs' must list names; item 1 is a list"),
    ("side_packets_a_number", b"side_packets: 5\nnodes: []\n", 1, r"'side_packets' must be a mapping name: default, "
                                                                r"got the number 5"),
    ("plugins_a_mapping", b"plugins: {a: 1}\nnodes: []\n", 1, r"'plugins' must be a list of names, got a mapping"),
    ("plugins_nested", b"plugins:\n  - [os]\nnodes: []\n", 2, r"'plugins' must list names; item 1 is a list"),
    ("unknown_key_null", b"nodes: []\nnull: 1\n", 2, r"unknown graph key None"),
    ("inputs_a_number", b"nodes:\n  - calculator: PassThrough\n    inputs: 5\n    outputs: [b]\n", 3,
     r"node 'PassThrough': 'inputs' must be a list of names or a mapping TAG: name, got the number 5"),
    ("input_stream_a_list", (CHAIN + "  - calculator: PassThrough\n    inputs: {IN: [b]}\n    outputs: {OUT: c}\n").encode(),
     8, r"input 'IN:0' must be a stream name or a mapping with 'stream', got a list"),
    ("input_stream_key_a_list", (CHAIN + "  - calculator: PassThrough\n    inputs:\n      IN: {stream: [b]}\n"
                                 "    outputs: {OUT: c}\n").encode(), 9, r"input 'IN:0' needs 'stream: NAME', got a list"),
    ("overflow_a_list", (CHAIN + "  - calculator: PassThrough\n    inputs:\n      IN: {stream: b, overflow: [x]}\n"
                         "    outputs: {OUT: c}\n").encode(), 9, r"unknown overflow policy \['x'\]"),
    ("back_edge_maybe", (CHAIN + "  - calculator: PassThrough\n    inputs:\n      IN: {stream: b, back_edge: maybe}\n"
                         "    outputs: {OUT: c}\n").encode(), 9, r"back_edge must be true or false, got 'maybe'"),
    ("policy_a_list", b"nodes:\n  - calculator: Counter\n    outputs: [a]\n    policy: [sync]\n", 4,
     r"unknown policy \['sync'\]"),
    ("latest_text", b"nodes:\n  - calculator: Counter\n    outputs: [a]\n    policy: {latest: many}\n", 4,
     r"policy \{latest: N\} keeps N timestamps, an integer from 1 to 1,000,000; got 'many'"),
    ("latest_1e29", b"nodes:\n  - calculator: Counter\n    outputs: [a]\n    policy:\n      latest: 100000000000000000000000000000\n",
     5, r"an integer from 1 to 1,000,000; got 100000000000000000000000000000"),
    ("capacity_1e29", (CHAIN + "  - calculator: PassThrough\n    inputs:\n"
                       "      IN: {stream: b, capacity: 100000000000000000000000000000}\n    outputs: {OUT: c}\n").encode(),
     9, r"capacity must be an integer from 1 to 1,000,000, got 100000000000000000000000000000"),
    ("capacity_float", (CHAIN + "  - calculator: PassThrough\n    inputs:\n      IN: {stream: b, capacity: 1e29}\n"
                        "    outputs: {OUT: c}\n").encode(), 9, r"capacity must be an integer .*got 1e\+29"),
    ("threads_1e9", b"executors:\n  gpu: {threads: 1000000000}\nnodes: []\n", 2,
     r"executor 'gpu': threads must be an integer from 1 to 1024, got 1000000000"),
    ("threads_text", b"executors:\n  gpu:\n    threads: '4'\nnodes: []\n", 3, r"threads must be an integer .*got '4'"),
    ("executor_unknown_key", b"executors:\n  gpu: {threads: 2, thread: 3}\nnodes: []\n", 2,
     r"executor 'gpu': unknown key 'thread' \(allowed: threads\)"),
    # found by the fuzz test: an executor's name is shown quoted, so a newline in it stays one line
    ("executor_name_a_newline", b"executors:\n  \"\\n\": null\nnodes: []\n", 2,
     r"executor '\\n': threads must be an integer from 1 to 1024, got None"),
    ("executors_a_list", b"executors: [1]\nnodes: []\n", 1, r"'executors' must be a mapping name: \{threads: N\}, got a list"),
    ("max_in_flight_1e29", b"nodes:\n  - calculator: Counter\n    outputs: [a]\n    max_in_flight: 100000000000000000000000000000\n",
     4, r"max_in_flight must be an integer from 1 to 1024"),
    ("executor_a_list", b"nodes:\n  - calculator: Counter\n    outputs: [a]\n    executor: [x]\n", 4,
     r"'executor' must name an executor, got a list"),
    ("options_a_list", b"nodes:\n  - calculator: Counter\n    outputs: [a]\n    options: [1, 2]\n", 4,
     r"'options' must be a mapping, got a list"),
    ("option_key_a_number", b"nodes:\n  - calculator: Counter\n    outputs: [a]\n    options: {1: 2}\n", 4,
     r"node 'Counter': option names are text, got the number 1"),
    ("when_a_number", b"nodes:\n  - calculator: Counter\n    outputs: [a]\n    when: 5\n", 4,
     r"'when' must name a side packet as \$name, got 5"),
    ("port_index_5000_digits", "nodes:\n  - calculator: Counter\n    outputs:\n      ? OUT:" + "1" * 5000 + "\n      : a\n", 4,
     r"node 'Counter': 'OUT:" + "1" * 46 + r"\.\.\.111111111111' \(5,004 characters\) is not a port tag \(TAG or TAG:N\)"),
]


def _write(tmp_path: Path, content) -> Path:
    path = tmp_path / "hostile.yaml"
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def _vm_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    return 0


def load_guarded(path: Path, **kwargs):
    """``config.load`` with the address space capped 2 GiB above what the process holds now, under
    tracemalloc; returns (the exception or spec, CPU seconds of this thread, traced peak bytes).
    CPU time, not wall time: the bound is about the loader's work, which other processes on a busy
    machine do not change."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = _vm_bytes() + 2 * 1024 ** 3
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    tracemalloc.start()
    t0 = time.thread_time()
    try:
        try:
            result = config.load(path, **kwargs)
        except GraphConfigError as e:
            result = e
        elapsed = time.thread_time() - t0
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    return result, elapsed, peak


@pytest.mark.parametrize("content,line,pattern", [c[1:] for c in CORPUS], ids=[c[0] for c in CORPUS])
def test_hostile_graph_file_gives_one_clean_error(tmp_path, content, line, pattern):
    path = _write(tmp_path, content)
    result, elapsed, peak = load_guarded(path)
    assert isinstance(result, GraphConfigError), f"loaded without an error: {result!r}"
    first = result.problems[0]
    assert first.file == str(path)
    assert re.search(pattern, first.message), f"problem: {first}"
    assert first.line == line, f"reported at line {first.line}, expected {line}: {first}"
    assert str(first).startswith(f"{path}:{line}: ")
    assert elapsed < TIME_BOUND_S, f"took {elapsed:.1f} s"
    assert peak < PEAK_BOUND, f"traced peak {peak / 1e6:.0f} MB"


def test_each_problem_is_a_single_line(tmp_path):
    for name, content, _line, _pattern in CORPUS:
        e = config_error(tmp_path, content)
        for p in e.problems:
            assert "\n" not in p.message, f"{name}: {p.message!r}"
            assert len(p.message) < 400, f"{name}: {len(p.message)} characters: {p.message[:120]}..."


def config_error(tmp_path, content) -> GraphConfigError:
    with pytest.raises(GraphConfigError) as info:
        config.load(_write(tmp_path, content))
    return info.value


def test_file_over_the_size_limit(tmp_path):
    path = tmp_path / "big.yaml"
    with path.open("wb") as f:
        f.write(b"nodes: []\n")
        line = b"# " + b"x" * 1021 + b"\n"
        for _ in range(graph_yaml.MAX_FILE_BYTES // len(line) + 1):
            f.write(line)
    result, elapsed, _peak = load_guarded(path)
    assert isinstance(result, GraphConfigError)
    assert re.fullmatch(rf"{re.escape(str(path))}: the file is [\d,]+ bytes; a graph file may have at most "
                        r"16,777,216", str(result.problems[0]))


def test_yaml_scalars_read_as_yaml_1_2():
    data = graph_yaml.load_yaml("a: off\nb: yes\nc: 'no'\nd: 010\ne: 1e3\nf: 1:30\ng: 2024-01-01\nh: True\n"
                                "i: ~\nj: 0x1F\nk: 0o17\nl: .inf\nm: n\n", "<t>")
    assert dict(data) == {"a": "off", "b": "yes", "c": "no", "d": 10, "e": 1000.0, "f": "1:30", "g": "2024-01-01",
                          "h": True, "i": None, "j": 31, "k": 15, "l": float("inf"), "m": "n"}


def test_switches_read_off_as_off():
    assert [switched_on(v) for v in (None, False, 0, "", "off", "No", "FALSE", " off ")] == [False] * 8
    assert [switched_on(v) for v in (True, 1, "on", "yes", "out.mp4", "0.5")] == [True] * 6


def test_when_side_packet_off_switches_the_node_off():
    g = Graph.from_yaml("""
side_packets: {save: off}
nodes:
  - calculator: Counter
    outputs: {OUT: a}
    options: {count: 3}
  - calculator: Collector
    inputs: {IN: a}
    side_outputs: {ITEMS: items}
    when: $save
""")
    g.run()
    assert g.stats().keys() == {"Counter"}


def test_back_edge_no_reads_as_false():
    # `back_edge: "no"` was true (bool("no")): the loop below passed without a back edge.
    with pytest.raises(GraphConfigError, match=r"cycle without a back edge"):
        Graph.from_yaml("""
nodes:
  - calculator: Counter
    outputs: {OUT: frames}
  - calculator: FlowLimiter
    inputs: {IN: frames, FINISHED: {stream: done, back_edge: "no"}}
    outputs: {OUT: admitted}
  - calculator: PassThrough
    inputs: {IN: admitted}
    outputs: {OUT: done}
""")
    for word in ("yes", "on", "true"):
        Graph.from_yaml(f"""
nodes:
  - calculator: Counter
    outputs: {{OUT: frames}}
  - calculator: FlowLimiter
    inputs: {{IN: frames, FINISHED: {{stream: done, back_edge: {word}}}}}
    outputs: {{OUT: admitted}}
  - calculator: PassThrough
    inputs: {{IN: admitted}}
    outputs: {{OUT: done}}
""")


def test_merge_keys_may_be_overridden():
    data = graph_yaml.load_yaml("base: &b {count: 3, step: 2}\nnode: {<<: *b, count: 5}\n", "<t>")
    assert dict(data["node"]) == {"count": 5, "step": 2}


def test_duplicate_keys_are_listed_not_dropped(tmp_path):
    # PyYAML alone keeps the second `nodes:` and drops the first without a word.
    e = config_error(tmp_path, CHAIN + "nodes:\n  - calculator: Counter\n    outputs: {OUT: z}\n")
    assert str(e) == f"{tmp_path / 'hostile.yaml'}:7: key 'nodes' appears twice in this mapping (first at line 1); " \
                     "YAML keeps only one, so merge them"


# ---------------------------------------------------------------------------------------------
# Subgraphs


def test_subgraph_including_itself_ten_times(tmp_path):
    sub = tmp_path / "loop.yaml"
    sub.write_text("inputs: [x]\noutputs: [y]\nnodes:\n" + "".join(
        f"  - subgraph: loop\n    name: s{i}\n    inputs: [x]\n    outputs: [y{i}]\n" for i in range(10)))
    result, elapsed, _ = load_guarded(sub)
    assert isinstance(result, GraphConfigError)
    assert str(result.problems[0]) == f"{sub}:4: subgraph 'loop' includes itself (loop.yaml -> loop.yaml)"
    assert elapsed < TIME_BOUND_S


def test_subgraphs_including_each_other(tmp_path):
    (tmp_path / "a.yaml").write_text("nodes:\n  - subgraph: b\n")
    (tmp_path / "b.yaml").write_text("nodes:\n  - subgraph: a\n")
    e = config_error_at(tmp_path / "a.yaml")
    assert str(e.problems[0]) == f"{tmp_path / 'b.yaml'}:2: subgraph 'a' includes itself (a.yaml -> b.yaml -> a.yaml)"


def config_error_at(path: Path) -> GraphConfigError:
    with pytest.raises(GraphConfigError) as info:
        config.load(path)
    return info.value


def test_subgraph_fan_out_is_bounded(tmp_path):
    # level i includes level i+1 ten times: 10^7 inclusions if nothing stopped it.
    for i in range(7):
        body = "".join(f"  - subgraph: level{i + 1}\n    name: n{j}\n" for j in range(10))
        (tmp_path / f"level{i}.yaml").write_text("nodes:\n" + body)
    (tmp_path / "level7.yaml").write_text("nodes:\n  - calculator: Counter\n    outputs: [a]\n")
    result, elapsed, peak = load_guarded(tmp_path / "level0.yaml")
    assert isinstance(result, GraphConfigError)
    assert any("the graph includes more than 1,000 subgraphs" in p.message for p in result.problems), result
    assert len(result.problems) < 20, f"{len(result.problems)} problems"
    assert elapsed < TIME_BOUND_S and peak < PEAK_BOUND


def test_subgraph_depth_is_bounded(tmp_path):
    for i in range(12):
        (tmp_path / f"d{i}.yaml").write_text(f"nodes:\n  - subgraph: d{i + 1}\n")
    (tmp_path / "d12.yaml").write_text("nodes:\n  - calculator: Counter\n    outputs: [a]\n")
    e = config_error_at(tmp_path / "d0.yaml")
    assert str(e.problems[0]) == f"{tmp_path / 'd8.yaml'}:2: subgraph 'd9' nests more than 8 levels deep"


def test_subgraph_side_inputs_as_a_list(tmp_path):
    (tmp_path / "sub.yaml").write_text("side_packets: {n: 3}\nnodes:\n  - calculator: Counter\n    outputs: [a]\n"
                                       "    options: {count: $n}\n")
    main = tmp_path / "main.yaml"
    main.write_text("nodes:\n  - subgraph: sub\n    side_inputs: [n]\n")
    e = config_error_at(main)
    assert str(e) == (f"{main}:3: subgraph 'sub': 'side_inputs' must be a mapping INNER: outer (side packet names), "
                      "got a list")


def test_subgraph_wiring_values_must_be_stream_names(tmp_path):
    (tmp_path / "sub.yaml").write_text("inputs: [x]\noutputs: [y]\nnodes:\n  - calculator: PassThrough\n"
                                       "    inputs: [x]\n    outputs: [y]\n")
    main = tmp_path / "main.yaml"
    main.write_text(CHAIN + "  - subgraph: sub\n    inputs: {X: {back_edge: true}}\n    outputs: {Y: [c]}\n")
    e = config_error_at(main)
    assert [str(p) for p in e.problems[:2]] == [
        f"{main}:8: subgraph 'sub': input 'x' must be wired to a stream name, got a mapping",
        f"{main}:9: subgraph 'sub': output 'y' must be wired to a stream name, got a list"]


@pytest.mark.parametrize("ref", ["a\\0b", "x" * 5000, "../" * 300 + "nowhere"], ids=["nul", "long", "dotdot"])
def test_subgraph_names_that_cannot_be_files(tmp_path, ref):
    main = tmp_path / "main.yaml"
    main.write_text(f'nodes:\n  - subgraph: "{ref}"\n')
    e = config_error_at(main)
    assert re.match(rf"{re.escape(str(main))}:2: subgraph '[^']*'( \([\d,]+ characters\))? not found", str(e.problems[0])), e


def test_node_count_is_bounded(tmp_path, monkeypatch):
    monkeypatch.setattr(config, "MAX_NODES", 50)
    (tmp_path / "sub.yaml").write_text("nodes:\n" + "  - calculator: Counter\n" * 20)
    main = tmp_path / "main.yaml"
    main.write_text("nodes:\n" + "  - subgraph: sub\n" * 5)
    e = config_error_at(main)
    assert [str(p) for p in e.problems] == [f"{tmp_path / 'sub.yaml'}:12: the graph has more than 50 nodes "
                                            "(subgraphs included)"]


# ---------------------------------------------------------------------------------------------
# Size: time linear in the number of nodes, from load to the end of the run


def _chain_graph(n: int) -> str:
    lines = ["side_packets: {extra: null}", "nodes:", "  - calculator: Counter", "    outputs: {OUT: s0}",
             "    options: {count: 2}"]
    for i in range(1, n):
        lines += ["  - calculator: PassThrough", f"    inputs: {{IN: s{i - 1}}}", f"    outputs: {{OUT: s{i}}}"]
    # One node switched off by `when:` (start() rebuilt the producers per input: quadratic).
    lines += ["  - calculator: PassThrough", f"    inputs: {{IN: s{n - 1}}}", "    outputs: {OUT: extra}",
              "    when: $extra"]
    return "\n".join(lines) + "\n"


def _load_and_run(path: Path) -> float:
    """CPU seconds (every thread of this process) to load and run the graph: less disturbed by
    the machine's load than wall time."""
    t0 = time.process_time()
    g = Graph.from_yaml(path, threads=1)
    g.run()
    return time.process_time() - t0


def test_load_and_start_take_time_linear_in_nodes(tmp_path):
    small, large = tmp_path / "small.yaml", tmp_path / "large.yaml"
    small.write_text(_chain_graph(1000))
    large.write_text(_chain_graph(4000))
    _load_and_run(small)  # warm: imports, registry
    # What the rest of a test session left in the heap is frozen out of the collector's passes
    # (in the whole suite they scanned it on every full collection: 4x the nodes then cost 11x).
    gc.collect()
    gc.freeze()
    try:
        rounds = [(_load_and_run(small), _load_and_run(large)) for _ in range(3)]  # interleaved: load hits both
    finally:
        gc.unfreeze()
    t_small, t_large = min(r[0] for r in rounds), min(r[1] for r in rounds)
    # 4x the nodes: ~4x the time when linear (up to ~6x seen on a loaded machine: the garbage
    # collector's passes grow with the heap), ~16x when quadratic.
    assert t_large / t_small < 10, f"1,000 nodes: {t_small:.2f} s, 4,000 nodes: {t_large:.2f} s"
    print(f"1,000 nodes {t_small:.2f} s; 4,000 nodes {t_large:.2f} s; ratio {t_large / t_small:.1f}",
          file=sys.stderr)
