"""Every option in the calculator reference (docs/reference, generated from the calculators'
``Options`` models by apps/gen_reference.py) is set by at least one test.

"Set" means written down as an option of that calculator in a test's source, where the test
builds a node or an options model:

- a node as a dict, ``{"calculator": "Annotate", ..., "options": {"thickness": 3}}``;
- ``run_calculator("Annotate", ..., options={"thickness": 3})`` (or any call whose first argument
  is the calculator's name and that has an ``options={...}`` keyword);
- the options model itself, ``AnnotateOptions(thickness=3)`` or ``Annotate.Options(thickness=3)``;
- a graph in YAML: a ``.yaml`` file under tests/, or a string in a test file, whose nodes have
  ``calculator: Annotate`` and ``options: {thickness: 3}``;
- in a test module that names the calculator (``"Annotate"``, ``Annotate`` or ``AnnotateOptions``),
  the option as a key of a dict literal or as a keyword argument: the module's own helpers
  (``write(path, gop=10)`` building a VideoWriter node) and parametrized rows
  (``{"max_detections": 2}``) pass options on this way.

A name that is merely mentioned does not count. The check is static, so it cannot tell whether the
test would fail if the option were ignored: that is the review's job (docs/testing.md says how
to write such a test). It runs over whatever calculators are registered, so a calculator or
option added later is checked the same way.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import yaml

import calculators  # noqa: F401  (registers the built-in calculators)
from apps.gen_reference import all_calculators

TESTS = Path(__file__).resolve().parents[1]


def _yaml_nodes(value, found: dict[str, set[str]]) -> None:
    """Walks a loaded YAML/JSON document for nodes: dicts with ``calculator`` and ``options``."""
    if isinstance(value, dict):
        calc, options = value.get("calculator"), value.get("options")
        if isinstance(calc, str) and isinstance(options, dict):
            found[calc].update(str(k) for k in options)
        for v in value.values():
            _yaml_nodes(v, found)
    elif isinstance(value, list):
        for v in value:
            _yaml_nodes(v, found)


def _yaml_text(text: str, found: dict[str, set[str]]) -> None:
    if "calculator" not in text or "options" not in text:
        return
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError:
        return
    _yaml_nodes(doc, found)


def _dict_keys(node: ast.AST) -> set[str]:
    if isinstance(node, ast.Dict):
        return {k.value for k in node.keys if isinstance(k, ast.Constant) and isinstance(k.value, str)}
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict":
        return {k.arg for k in node.keywords if k.arg}
    return set()


def options_set_by_tests() -> dict[str, set[str]]:
    """{calculator name or Options model name: option names some test sets}."""
    found: dict[str, set[str]] = defaultdict(set)
    for path in TESTS.rglob("*.yaml"):
        _yaml_text(path.read_text(), found)
    for path in TESTS.rglob("*.py"):
        tree = ast.parse(path.read_text(), filename=str(path))
        named: set[str] = set()  # calculator (or model) names this module mentions
        keys: set[str] = set()  # dict keys and keyword arguments it writes
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.isidentifier():
                named.add(node.value)
            elif isinstance(node, ast.Name):
                named.add(node.id)
            elif isinstance(node, ast.Dict):
                keys |= _dict_keys(node)
            elif isinstance(node, ast.Call):
                keys.update(k.arg for k in node.keywords if k.arg)
        for name in named:
            found[f"module:{name}"] |= keys
        for node in ast.walk(tree):
            if isinstance(node, ast.Dict):
                entries = {k.value: v for k, v in zip(node.keys, node.values)
                           if isinstance(k, ast.Constant) and isinstance(k.value, str)}
                calc = entries.get("calculator")
                if isinstance(calc, ast.Constant) and isinstance(calc.value, str) and "options" in entries:
                    found[calc.value] |= _dict_keys(entries["options"])
            elif isinstance(node, ast.Call):
                func = node.func
                # AnnotateOptions(thickness=3) / Annotate.Options(thickness=3)
                if isinstance(func, ast.Name):
                    found[func.id].update(k.arg for k in node.keywords if k.arg)
                elif isinstance(func, ast.Attribute) and func.attr == "Options" and isinstance(func.value, ast.Name):
                    found[func.value.id].update(k.arg for k in node.keywords if k.arg)
                # run_calculator("Annotate", options={...}) and helpers shaped like it
                if node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
                    for k in node.keywords:
                        if k.arg == "options":
                            found[node.args[0].value] |= _dict_keys(k.value)
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                _yaml_text(node.value, found)
    return found


def test_every_documented_option_is_set_by_a_test():
    found = options_set_by_tests()
    missing = []
    for d in all_calculators():
        names = [d.name, f"module:{d.name}"] + ([d.options_model, f"module:{d.options_model}"] if d.options_model else [])
        set_here = set().union(*(found.get(n, set()) for n in names))
        for o in d.options:
            if o.name not in set_here:
                missing.append(f"  {d.name}.{o.name}  (docs/reference/{d.family}.md, {d.module})")
    assert not missing, (
        f"{len(missing)} documented option(s) that no test sets:\n" + "\n".join(missing) +
        "\nAdd a test that sets each one and fails when it is ignored (docs/testing.md, "
        "'Options'); a node dict, run_calculator(..., options=...), the Options model or a YAML "
        "graph in a test all count.")


def test_the_scanner_sees_each_way_of_setting_an_option(tmp_path, monkeypatch):
    """The check itself: each form in the module docstring is recognised; a mere mention is not."""
    import sys

    mod = sys.modules[__name__]
    (tmp_path / "t.py").write_text(
        'a = {"calculator": "Calc1", "options": {"o1": 1}}\n'
        'run_calculator("Calc2", inputs={}, options={"o2": 2})\n'
        'Calc3Options(o3=3)\n'
        'Calc4.Options(o4=4)\n'
        'G = """\nnodes:\n  - calculator: Calc5\n    options: {o5: 5}\n"""\n'
        'mention = ["Calc6", "o6"]\n')
    (tmp_path / "g.yaml").write_text("nodes:\n  - {calculator: Calc7, options: {o7: 7}}\n")
    monkeypatch.setattr(mod, "TESTS", tmp_path)
    found = options_set_by_tests()
    assert {k: v for k, v in found.items() if k.startswith("Calc")} == {
        "Calc1": {"o1"}, "Calc2": {"o2"}, "Calc3Options": {"o3"}, "Calc4": {"o4"}, "Calc5": {"o5"},
        "Calc7": {"o7"}}
    assert "o6" not in found["module:Calc6"]  # named in the module, but o6 is never a key
    assert {"o1", "o2", "o3", "o4"} <= found["module:Calc6"]
