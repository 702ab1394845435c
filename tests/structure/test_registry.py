"""The lazy calculator registry: the families' ``CALCULATORS`` tables say which module registers each
built-in calculator, so loading a graph imports only the modules of the calculators it names. These
tests keep the tables true (they cannot go stale silently) and check what a lookup imports."""

import subprocess
import sys
import types
from pathlib import Path

import pytest

from pipeline import Calculator, registry

ROOT = Path(__file__).resolve().parents[2]


def run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=180)


def test_the_tables_name_every_registered_calculator_and_its_module():
    # Every module of the library imported, in a fresh process: what registered must be the table, exactly.
    r = run("import importlib, json, pkgutil, calculators\n"
            "from pipeline import registry\n"
            "for m in pkgutil.walk_packages(calculators.__path__, 'calculators.'):\n"
            "    importlib.import_module(m.name)\n"
            "print(json.dumps({'registered': {n: c.__module__ for n, c in registry._REGISTRY.items()},\n"
            "                  'table': calculators.CALCULATORS}))")
    assert r.returncode == 0, r.stderr
    import json

    got = json.loads(r.stdout)
    registered, table = got["registered"], got["table"]
    missing = {n: m for n, m in registered.items() if table.get(n) != m}
    stale = {n: m for n, m in table.items() if registered.get(n) != m}
    assert not missing, f"registered but not in (or elsewhere in) the families' CALCULATORS tables: {missing}"
    assert not stale, f"in the CALCULATORS tables but not registered by that module: {stale}"
    assert len(table) >= 40


def test_a_lookup_imports_only_that_calculators_module():
    r = run("import sys\n"
            "from pipeline import registry\n"
            "names = registry.names()\n"
            "before = {m for m in sys.modules if m.startswith('calculators.')}\n"
            "cls = registry.get('PassThrough')\n"
            "after = {m for m in sys.modules if m.startswith('calculators.')}\n"
            "print(len(names), 'TensorsToLandmarks' in names, cls.__module__, sorted(after - before))\n"
            "print(sorted(m for m in ('cv2', 'av', 'numpy', 'openvino', 'onnxruntime') if m in sys.modules))")
    assert r.returncode == 0, r.stderr
    first, second = r.stdout.strip().splitlines()
    count, has_landmarks, module, imported = first.split(" ", 3)
    assert int(count) >= 40 and has_landmarks == "True", "names() must list every built-in without importing them"
    assert module == "calculators.flow.basic"
    assert imported == "['calculators.flow.basic']", f"get('PassThrough') imported {imported}"
    assert second == "[]", f"looking up PassThrough imported {second}"


def test_an_unknown_name_offers_a_calculator_whose_family_is_not_imported():
    r = run("import sys\n"
            "from pipeline import Graph, GraphConfigError\n"
            "try:\n"
            "    Graph.from_dict({'nodes': [{'calculator': 'TensorsToLandmark', 'inputs': {'TENSORS': 't'}}],\n"
            "                     'inputs': ['t']})\n"
            "except GraphConfigError as e:\n"
            "    print(e)\n"
            "print('calculators.landmarks.landmarks' in sys.modules)")
    assert r.returncode == 0, r.stderr
    assert "unknown calculator 'TensorsToLandmark'" in r.stdout and "'TensorsToLandmarks'" in r.stdout, r.stdout
    assert r.stdout.strip().splitlines()[-1] == "False", "an unknown name imported the family it was offered from"


def _calculator_in(module: str, name: str) -> type:
    return types.new_class(name, (Calculator,), exec_body=lambda ns: ns.update({"__module__": module}))


def test_a_library_module_registering_a_name_its_table_lacks_is_refused():
    cls = _calculator_in("calculators.flow.basic", "UntabledPassThrough")
    with pytest.raises(ValueError, match=r"calculator 'UntabledPassThrough' of calculators.flow.basic is missing "
                                         r"from the table of calculators .*add 'UntabledPassThrough': 'basic' there"):
        registry.register(cls)
    assert registry.find("UntabledPassThrough") is None


def test_a_user_calculator_cannot_take_a_built_in_name_before_the_built_in_is_imported():
    r = run("import sys, types\n"
            "from pipeline import Calculator, registry\n"
            "cls = types.new_class('Annotate', (Calculator,), exec_body=lambda ns: ns.update({'__module__': 'my_calcs'}))\n"
            "try:\n"
            "    registry.register(cls)\n"
            "except ValueError as e:\n"
            "    print(e)\n"
            "print('calculators.annotate.annotate' in sys.modules)")
    assert r.returncode == 0, r.stderr
    first, second = r.stdout.strip().splitlines()
    assert first == "calculator name 'Annotate' is already taken by the calculator calculators.annotate.annotate registers"
    assert second == "False"


def test_a_stale_table_entry_is_an_error_naming_the_table(monkeypatch):
    monkeypatch.setitem(registry._INDEX, "NoSuchCalculatorHere", "calculators.flow.basic")
    with pytest.raises(RuntimeError, match=r"calculator 'NoSuchCalculatorHere': its table names module "
                                           r"calculators.flow.basic, which registered no calculator of that name"):
        registry.find("NoSuchCalculatorHere")


def test_load_builtins_imports_every_family():
    r = run("import sys\n"
            "from pipeline import registry\n"
            "registry.load_builtins()\n"
            "import calculators\n"
            "print(sorted({m for m in calculators.CALCULATORS.values()} - set(sys.modules)))")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"
