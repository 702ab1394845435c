"""The calculator registry in process (pipeline/registry.py): what registering refuses, word for word,
what a lookup finds and imports, and the index read from the ``vpipe.calculators`` entry points.
(tests/structure/test_registry.py checks the built-in tables and what a lookup imports, in fresh
processes.)"""

from __future__ import annotations

import sys
import types

import pytest

from pipeline import Calculator, Input, Output, registry


def _calc(name: str, module: str = __name__) -> type:
    return types.new_class(name, (Calculator,), exec_body=lambda ns: ns.update(
        {"__module__": module, "inputs": {"IN": Input(int)}, "outputs": {"OUT": Output(int)}}))


@pytest.fixture
def fresh_index(monkeypatch):
    """The registry as in a new process: no index read yet (what registered so far stays)."""
    monkeypatch.setattr(registry, "_INDEX", {})
    monkeypatch.setattr(registry, "_TABLED", [])
    monkeypatch.setattr(registry, "_index_state", "none")
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))


@pytest.fixture
def module_dir(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    made = []

    def write(name: str, text: str) -> None:
        (tmp_path / f"{name}.py").write_text(text)
        made.append(name)

    yield write
    for name in made:
        sys.modules.pop(name, None)


def test_register_refuses_what_is_not_a_calculator_class():
    for thing, shown in ((5, "5"), (int, "<class 'int'>")):
        with pytest.raises(TypeError) as ei:
            registry.register(thing)
        assert str(ei.value) == f"register() expects a Calculator subclass, got {shown}"


def test_a_name_registered_twice_by_different_classes_is_refused_and_the_same_class_is_not(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    first = registry.register(_calc("TestTwiceNamed"))
    assert registry.register(first) is first and registry.get("TestTwiceNamed") is first
    again = _calc("TestTwiceNamed")  # the same module and name: a module imported again, say
    assert registry.register(again) is again and registry.get("TestTwiceNamed") is again
    other = _calc("TestTwiceNamed", module="someone_else")
    with pytest.raises(ValueError) as ei:
        registry.register(other)
    assert str(ei.value) == f"calculator name 'TestTwiceNamed' is already registered by {__name__}.TestTwiceNamed"
    assert registry.get("TestTwiceNamed") is again
    named = registry.register(name="TestGivenName")(_calc("Whatever"))
    assert named.name == "TestGivenName" and registry.find("TestGivenName") is named
    assert registry.find("Whatever") is None


def test_names_lists_the_registered_and_the_tabled(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    registry.register(_calc("TestOnlyRegistered"))
    import calculators

    names = registry.names()
    assert "TestOnlyRegistered" in names and set(calculators.CALCULATORS) <= set(names)
    assert names == sorted(names)


def test_a_tabled_name_is_refused_to_another_module_and_an_untabled_one_in_a_tabled_package(fresh_index, monkeypatch):
    registry.names()  # reads the index
    assert registry._TABLED == ["calculators."]
    registry._REGISTRY.pop("PassThrough", None)  # as before its family is imported
    with pytest.raises(ValueError) as ei:
        registry.register(_calc("PassThrough", module="my_calcs"))
    assert str(ei.value) == "calculator name 'PassThrough' is already taken by the calculator calculators.flow.basic registers"
    with pytest.raises(ValueError) as ei:
        registry.register(_calc("TestUntabled", module="calculators.flow.basic"))
    assert str(ei.value) == ("calculator 'TestUntabled' of calculators.flow.basic is missing from the table of "
                             "calculators (CALCULATORS in its family's __init__.py): add 'TestUntabled': 'basic' there")
    assert registry.find("TestUntabled") is None
    # a tabled name from its own module, and any name from a module outside the tabled packages
    ok = registry.register(_calc("TestFromOutside", module="calculatorsish.mine"))
    assert registry.find("TestFromOutside") is ok


def test_find_imports_the_module_its_table_names(fresh_index, module_dir, monkeypatch):
    module_dir("vpipe_test_lazy_family", "from pipeline import Calculator, Output, register\n"
               "@register\nclass TestLazyOne(Calculator):\n    outputs = {'OUT': Output(int)}\n")
    registry.names()
    monkeypatch.setitem(registry._INDEX, "TestLazyOne", "vpipe_test_lazy_family")
    assert "vpipe_test_lazy_family" not in sys.modules
    assert "TestLazyOne" in registry.names() and "vpipe_test_lazy_family" not in sys.modules
    cls = registry.get("TestLazyOne")
    assert cls.__module__ == "vpipe_test_lazy_family" and registry.find("TestLazyOne") is cls
    assert registry.find("TestNoSuchCalculator") is None
    with pytest.raises(KeyError) as ei:
        registry.get("TestLazyOn")
    assert ei.value.args[0] == registry.unknown_message("TestLazyOn")
    assert ei.value.args[0].startswith("unknown calculator 'TestLazyOn'; did you mean 'TestLazyOne'? (a user ")
    monkeypatch.setitem(registry._INDEX, "TestStale", "vpipe_test_lazy_family")
    with pytest.raises(RuntimeError) as ei:
        registry.find("TestStale")
    assert str(ei.value) == ("calculator 'TestStale': its table names module vpipe_test_lazy_family, which registered "
                             "no calculator of that name (a stale CALCULATORS table; tests/structure/test_registry.py "
                             "checks them)")


def test_load_builtins_imports_every_tabled_module(fresh_index, module_dir, monkeypatch):
    module_dir("vpipe_test_family_a", "from pipeline import Calculator, Output, register\n"
               "@register\nclass TestFamilyA(Calculator):\n    outputs = {'OUT': Output(int)}\n")
    registry.names()
    monkeypatch.setattr(registry, "_INDEX", {"TestFamilyA": "vpipe_test_family_a"})
    registry.load_builtins()
    assert "vpipe_test_family_a" in sys.modules and registry.find("TestFamilyA").__module__ == "vpipe_test_family_a"


def test_the_unknown_message_names_the_plugins_not_loaded():
    assert registry.unknown_message("Nothing9", ["a.py", "mod"]) == (
        "unknown calculator 'Nothing9'; it may come from the graph's plugin 'a.py', 'mod', which was not loaded "
        "(see above)")
    assert registry.unknown_message("Nothing9") == (
        "unknown calculator 'Nothing9' (a user calculator is known once its plugin is loaded: "
        "--plugin MODULE_OR_FILE.py, or the graph's 'plugins:' list)")


class _EntryPoint:
    def __init__(self, value):
        self.value = value


def test_the_index_comes_from_the_entry_points(fresh_index, module_dir, monkeypatch):
    """A module with a table is indexed (not imported for it); one without is imported at once and
    registers what it defines; an entry point's ``:attr`` is not part of the module name."""
    import importlib.metadata

    module_dir("vpipe_test_tabledX", "CALCULATORS = {'TestTabledX': 'vpipe_test_tabled_x', 'PassThrough': 'elsewhere'}\n")
    module_dir("vpipe_test_untabled", "from pipeline import Calculator, Output, register\n"
               "@register\nclass TestUntabledY(Calculator):\n    outputs = {'OUT': Output(int)}\n")
    asked = []

    def entry_points(group):
        asked.append(group)
        return [_EntryPoint("vpipe_test_tabledX:CALCULATORS"), _EntryPoint("vpipe_test_untabled"),
                _EntryPoint("calculators")]

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)
    # the first lookup reads the index: the untabled module registers its calculator meanwhile
    assert registry.find("TestUntabledY").__module__ == "vpipe_test_untabled"
    names = registry.names()
    assert asked == ["vpipe.calculators"]
    assert "TestTabledX" in names and "TestUntabledY" in names and "Annotate" in names
    assert registry._INDEX["TestTabledX"] == "vpipe_test_tabled_x"
    assert registry._INDEX["PassThrough"] == "elsewhere"  # the first table to name it wins
    assert registry._TABLED == ["vpipe_test_tabledX.", "calculators."]
    with pytest.raises(ValueError) as ei:
        registry.register(_calc("TestNotInTable", module="vpipe_test_tabledX.family.mod"))
    assert str(ei.value) == ("calculator 'TestNotInTable' of vpipe_test_tabledX.family.mod is missing from the table "
                             "of vpipe_test_tabledX (CALCULATORS in its family's __init__.py): add 'TestNotInTable': "
                             "'mod' there")
    assert registry.find("TestUntabledY").__module__ == "vpipe_test_untabled"
    registry.names()
    assert asked == ["vpipe.calculators"]  # read once


def test_without_entry_points_the_source_trees_calculators_package_is_the_index(fresh_index, monkeypatch):
    import importlib.metadata

    import calculators

    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group: [])
    assert set(calculators.CALCULATORS) <= set(registry.names())
    assert registry._TABLED == ["calculators."]


def test_without_entry_points_nor_a_calculators_package_only_the_registered_are_known(fresh_index, monkeypatch):
    import importlib.metadata
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group: [])
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "calculators" else real(name, *a))
    monkeypatch.setattr(registry, "_REGISTRY", {})
    registry.register(_calc("TestAlone"))
    assert registry.names() == ["TestAlone"] and registry._TABLED == []
