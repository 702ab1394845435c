"""``vpipe calculators`` and the generated reference in docs/reference/."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from apps import gen_reference
from apps.gen_reference import split_docstring
from tests.apps.conftest import run_vpipe


@pytest.fixture(scope="module")
def builtin_names() -> list[str]:
    return [d.name for d in gen_reference.all_calculators()]


def test_listing_names_every_builtin_calculator(builtin_names):
    r = run_vpipe("calculators")
    assert r.rc == 0, r.err
    listed = {cells[0] for line in r.out.splitlines()
              if len(cells := [c.strip() for c in line.split("│")[1:-1]]) == 4 and cells[0]}
    assert set(builtin_names) <= listed, f"not listed: {set(builtin_names) - listed}"
    assert f"{len(builtin_names)} calculators" in r.out
    assert "Ticker" not in listed


def test_plugin_calculators_are_listed_with_the_plugin():
    r = run_vpipe("calculators", "--plugin", "vpipe_test_plugin")
    assert r.rc == 0, r.err
    assert re.search(r"│ Ticker +│ plugins +│ — → OUT", r.out), r.out


def test_one_calculator_in_full():
    r = run_vpipe("calculators", "Counter")
    assert r.rc == 0, r.err
    text = r.out
    for expected in ("A sequence source", "calculators.flow.basic", "OUT", "int",
                     "Options (CounterOptions)", "count", "number of packets", "realtime", "False",
                     "Example node", "- calculator: Counter", "options: {count: 100, step: 33333}"):
        assert expected in text, f"{expected!r} missing from:\n{text}"


def test_unknown_calculator_offers_closest():
    r = run_vpipe("calculators", "Countr")
    assert r.rc == 1
    assert r.first_err_line.startswith("error: unknown calculator 'Countr'; did you mean 'Counter'")


def test_markdown_option_writes_the_reference(tmp_path: Path):
    r = run_vpipe("calculators", "--markdown", str(tmp_path / "ref"))
    assert r.rc == 0, r.err
    assert gen_reference.stale_pages(tmp_path / "ref") == []
    index = (tmp_path / "ref" / "index.md").read_text()
    assert "[Counter](flow.md#counter)" in index


def test_docs_reference_is_up_to_date():
    stale = gen_reference.stale_pages(gen_reference.DEFAULT_OUT)
    assert not stale, (f"docs/reference is stale ({', '.join(stale)}): "
                       "regenerate it with `python -m apps.gen_reference`")


def test_check_mode_detects_a_stale_page(tmp_path: Path):
    out = tmp_path / "ref"
    gen_reference.write(out)
    (out / "flow.md").write_text((out / "flow.md").read_text().replace("number of packets", "packets"))
    (out / "old_family.md").write_text("gone\n")
    assert gen_reference.main(["--out", str(out), "--check"]) == 1
    assert gen_reference.stale_pages(out) == ["flow.md (differs)", "old_family.md (no longer generated)"]
    gen_reference.main(["--out", str(out)])
    assert gen_reference.stale_pages(out) == [] and not (out / "old_family.md").exists()


def test_every_example_node_is_a_node_of_that_calculator():
    for d in gen_reference.all_calculators():
        if d.example is None:
            continue
        nodes = yaml.safe_load(d.example)
        assert isinstance(nodes, list) and nodes and isinstance(nodes[0], dict), \
            f"{d.name}: example is not a list of nodes:\n{d.example}"
        assert nodes[0].get("calculator") == d.name, f"{d.name}: example names {nodes[0].get('calculator')!r}"


@pytest.mark.parametrize("doc, summary, description, example", [
    ("One line.", "One line.", "", None),
    ("""Sums.

    Ports: A, B -> SUM.
    Example node:
        - calculator: Sum
          inputs: [a, b]

    Trailing note.
    """, "Sums.", "Ports: A, B -> SUM.\n\nTrailing note.", "- calculator: Sum\n  inputs: [a, b]"),
    ("""Title
    spread over two lines.

    Example:
        - calculator: X
    """, "Title spread over two lines.", "", "- calculator: X"),
])
def test_split_docstring(doc, summary, description, example):
    assert split_docstring(doc) == (summary, description, example)
