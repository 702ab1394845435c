"""Loading a plugin and the consent it needs (pipeline/plugins.py): by module name or file path, once,
with a message that says what was tried; the user's config file and its allowlist."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from pipeline import GraphConfigError
from pipeline import plugins
from pipeline.plugins import PluginError


@pytest.fixture
def config(tmp_path, monkeypatch):
    """The user config file, at a path of its own (written by the test)."""
    path = tmp_path / "conf" / "config.yaml"
    path.parent.mkdir()
    monkeypatch.setenv("VPIPE_CONFIG", str(path))
    return path


@pytest.fixture
def clean_modules():
    """Forgets the modules a test imported (sys.modules and the plugin file table)."""
    before = set(sys.modules)
    files = dict(plugins._files)
    yield
    for name in set(sys.modules) - before:
        del sys.modules[name]
    plugins._files.clear()
    plugins._files.update(files)


def test_what_names_a_file():
    assert [plugins.is_path(r) for r in ("face_blur.py", "./face_blur", "a/b", "my_pkg.calcs", "plain")] == [
        True, True, True, False, False]


def test_a_file_is_imported_once_as_a_module_named_after_it(tmp_path, clean_modules):
    log = tmp_path / "imports.txt"
    (tmp_path / "calcs_once.py").write_text(f"open({str(log)!r}, 'a').write('x')\nVALUE = 41\n")
    assert not plugins.is_loaded("calcs_once.py", tmp_path)
    m = plugins.load("calcs_once.py", tmp_path)
    assert m.VALUE == 41 and m.__name__ == "calcs_once" and sys.modules["calcs_once"] is m
    assert plugins.is_loaded("calcs_once.py", tmp_path) and plugins.is_loaded(str(tmp_path / "calcs_once.py"))
    assert plugins.load(str(tmp_path / "calcs_once.py")) is m  # by another spelling of the same file
    assert log.read_text() == "x"  # its code ran once


def test_a_relative_file_is_found_from_the_current_folder_without_a_base(tmp_path, monkeypatch, clean_modules):
    (tmp_path / "calcs_here.py").write_text("HERE = True\n")
    monkeypatch.chdir(tmp_path)
    assert plugins.load("./calcs_here.py").HERE is True
    assert plugins.is_loaded("calcs_here.py")


def test_a_file_whose_name_is_no_identifier_gets_a_module_name(tmp_path, clean_modules):
    (tmp_path / "my-calcs 2.py").write_text("X = 1\n")
    m = plugins.load("my-calcs 2.py", tmp_path)
    assert m.__name__ == "vpipe_plugin_my_calcs_2" and sys.modules["vpipe_plugin_my_calcs_2"] is m


def test_a_file_already_imported_under_its_name_is_that_module(tmp_path, monkeypatch, clean_modules):
    (tmp_path / "calcs_pre.py").write_text("N = 3\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import calcs_pre  # noqa: F401 - the user imported it first

    assert plugins.load("calcs_pre.py", tmp_path) is sys.modules["calcs_pre"]
    assert plugins.load("calcs_pre.py", tmp_path) is sys.modules["calcs_pre"]  # and stays that module
    assert plugins.is_loaded("calcs_pre.py", tmp_path)


def test_a_failing_file_that_removed_itself_is_still_a_plugin_error(tmp_path, clean_modules):
    (tmp_path / "calcs_gone.py").write_text("import sys\ndel sys.modules[__name__]\nraise ValueError('gone')\n")
    with pytest.raises(PluginError, match="importing it failed: ValueError: gone"):
        plugins.load("calcs_gone.py", tmp_path)


def test_a_file_whose_module_name_is_taken_is_refused(tmp_path, clean_modules):
    (tmp_path / "json.py").write_text("")
    with pytest.raises(PluginError) as e:
        plugins.load("json.py", tmp_path)
    assert str(e.value) == (f"cannot load plugin 'json.py': its module name 'json' is already taken by "
                            f"{sys.modules['json'].__file__}; rename the file")
    (tmp_path / "sys.py").write_text("")
    with pytest.raises(PluginError, match=r"'sys' is already taken by a built-in module; rename the file$"):
        plugins.load("sys.py", tmp_path)


def test_a_missing_file_or_a_folder_says_what_was_tried(tmp_path):
    with pytest.raises(PluginError) as e:
        plugins.load("nope.py", tmp_path)
    assert str(e.value) == (f"cannot load plugin 'nope.py': tried it as a file path (it ends in .py), and "
                            f"{tmp_path / 'nope.py'} does not exist")
    (tmp_path / "sub").mkdir()
    with pytest.raises(PluginError) as e:
        plugins.load("./sub", tmp_path)
    assert str(e.value) == (f"cannot load plugin './sub': tried it as a file path (it holds a '/'), and "
                            f"{tmp_path / 'sub'} is a folder, not a Python file")
    (tmp_path / "data.txt").write_text("x")
    with pytest.raises(PluginError) as e:
        plugins.load("./data.txt", tmp_path)
    assert str(e.value) == f"cannot load plugin './data.txt': {tmp_path / 'data.txt'} is not a Python module file"


def test_a_file_that_fails_to_import_is_not_kept(tmp_path, clean_modules):
    bad = tmp_path / "calcs_bad.py"
    bad.write_text("raise ValueError('no model here')\n")
    with pytest.raises(PluginError) as e:
        plugins.load("calcs_bad.py", tmp_path)
    assert str(e.value) == (f"cannot load plugin 'calcs_bad.py' ({bad}): importing it failed: "
                            "ValueError: no model here")
    assert isinstance(e.value.__cause__, ValueError)
    assert "calcs_bad" not in sys.modules and not plugins.is_loaded("calcs_bad.py", tmp_path)
    bad.write_text("OK = 1\n")  # fixed: the next load imports it again
    assert plugins.load("calcs_bad.py", tmp_path).OK == 1


def test_an_exit_inside_a_plugin_file_is_not_turned_into_an_error(tmp_path, clean_modules):
    (tmp_path / "calcs_exit.py").write_text("raise SystemExit(3)\n")
    with pytest.raises(SystemExit):
        plugins.load("calcs_exit.py", tmp_path)
    assert "calcs_exit" not in sys.modules


def test_a_module_name_not_found_says_how_to_name_a_file(tmp_path):
    with pytest.raises(PluginError) as e:
        plugins.load("no_such_plugin_q", tmp_path)
    assert str(e.value) == ("cannot load plugin 'no_such_plugin_q': tried it as a module name, and no module named "
                            "'no_such_plugin_q' is on the import path; a plugin file is named by its path, "
                            "e.g. ./my_calcs.py")
    (tmp_path / "pkg_q").mkdir()
    (tmp_path / "pkg_q" / "calcs.py").write_text("")
    with pytest.raises(PluginError) as e:
        plugins.load("pkg_q.calcs", tmp_path)
    assert str(e.value) == ("cannot load plugin 'pkg_q.calcs': tried it as a module name, and no module named "
                            f"'pkg_q' is on the import path; the file {tmp_path / 'pkg_q' / 'calcs.py'} is not on "
                            "the import path: name it by its path, ./pkg_q.calcs.py")


def test_a_module_found_but_failing_names_its_own_error(tmp_path, monkeypatch, clean_modules):
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "calcs_dep.py").write_text("import missing_dependency_q\n")
    (tmp_path / "calcs_raise.py").write_text("raise RuntimeError('bad weights')\n")
    with pytest.raises(PluginError) as e:
        plugins.load("calcs_dep")
    assert str(e.value) == ("cannot load plugin 'calcs_dep': importing it failed: ModuleNotFoundError: "
                            "No module named 'missing_dependency_q'")
    with pytest.raises(PluginError) as e:
        plugins.load("calcs_raise")
    assert str(e.value) == "cannot load plugin 'calcs_raise': importing it failed: RuntimeError: bad weights"
    (tmp_path / "calcs_ok.py").write_text("A = 2\n")
    assert not plugins.is_loaded("calcs_ok")
    assert plugins.load("calcs_ok").A == 2 and plugins.is_loaded("calcs_ok")


def test_the_user_config_path(tmp_path, monkeypatch):
    monkeypatch.setenv("VPIPE_CONFIG", "~/my.yaml")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert plugins.user_config_path() == tmp_path / "home" / "my.yaml"
    monkeypatch.delenv("VPIPE_CONFIG")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert plugins.user_config_path() == tmp_path / "xdg" / "vpipe" / "config.yaml"
    monkeypatch.setenv("XDG_CONFIG_HOME", "")
    assert plugins.user_config_path() == tmp_path / "home" / ".config" / "vpipe" / "config.yaml"
    monkeypatch.setenv("VPIPE_CONFIG", "")
    assert plugins.user_config_path() == tmp_path / "home" / ".config" / "vpipe" / "config.yaml"


def test_the_allowlist_is_read_from_the_user_config(config):
    assert plugins.allowlist() == []  # no file
    config.write_text("")
    assert plugins.allowlist() == []
    config.write_text("plugins: my_pkg\n")
    assert plugins.allowlist() == ["my_pkg"]
    config.write_text("plugins: [a.b, ./c.py]\n")
    assert plugins.allowlist() == ["a.b", "./c.py"]
    config.write_text("plugins:\n")
    assert plugins.allowlist() == []


@pytest.mark.parametrize("text, line, message", [
    ("- my_pkg\n", 1, "the vpipe config file must be a mapping, e.g. 'plugins: [my_package.calculators]'"),
    ("plugins: [a]\nplugin: b\n", 2, "unknown key 'plugin' in the vpipe config file (known: plugins)"),
    ("\nplugins: 3\n", 2, "'plugins' must be a list of module names or file paths"),
    ("plugins: [a, 3]\n", 1, "'plugins' must be a list of module names or file paths"),
])
def test_a_wrong_user_config_is_one_line_with_its_line(config, text, line, message):
    config.write_text(text)
    with pytest.raises(GraphConfigError) as e:
        plugins.allowlist()
    assert str(e.value) == f"{config}:{line}: {message}"


def test_a_user_config_that_is_no_yaml_names_the_file(config):
    config.write_text("plugins: [a\n")
    with pytest.raises(GraphConfigError) as e:
        plugins.allowlist()
    assert e.value.problems[0].file == str(config) and "invalid YAML" in str(e.value)
    config.write_bytes("plugins: [a]\n".encode("utf-16"))
    with pytest.raises(GraphConfigError) as e:
        plugins.allowlist()
    assert str(e.value) == f"{config}:1: the file is UTF-16 text (PowerShell's '>' writes UTF-16); save it as UTF-8"


def test_a_wrong_plugins_entry_names_its_own_line(config):
    config.write_text("<<: {}\nplugins: 3\n")  # the mapping starts a line above the key
    with pytest.raises(GraphConfigError) as e:
        plugins.allowlist()
    assert e.value.problems[0].line == 2


def test_an_unreadable_user_config_names_why(config):
    config.mkdir()
    with pytest.raises(GraphConfigError) as e:
        plugins.allowlist()
    assert str(e.value) == f"{config}: cannot read the vpipe config file: Is a directory"
    assert e.value.__suppress_context__


def test_what_the_allowlist_allows(config, tmp_path):
    allowed = ["my_pkg", "./local.py"]
    assert plugins.is_allowed("my_pkg", None, allowed)
    assert plugins.is_allowed("my_pkg.calcs", None, allowed)  # a submodule
    assert not plugins.is_allowed("my_pkg2", None, allowed)
    assert not plugins.is_allowed("other", None, allowed)
    # a file entry is relative to the config file's folder; a graph's reference to its own folder
    assert plugins.is_allowed("local.py", config.parent, allowed)
    assert plugins.is_allowed(str(config.parent / "local.py"), None, allowed)
    assert not plugins.is_allowed("local.py", tmp_path, allowed)
    assert not plugins.is_allowed("local.py", config.parent, ["local"])  # a module entry is no file
    assert not plugins.is_allowed("local", config.parent, ["./local.py"])  # nor the other way round


def test_the_consent_hint_names_every_way(config):
    assert plugins.consent_hint("face_blur") == (
        "plugins are code, so vpipe imports one only with your consent: --plugin face_blur (in Python: import "
        f"it first, or trust=True), --trust for this graph file, or list it under 'plugins:' in {config}")


# -- a graph file's 'plugins:' list (pipeline/config.py's _load_plugins) --------------------------

_RELAY = "inputs: [a]\nnodes:\n  - {calculator: PassThrough, inputs: [a], outputs: [b]}\n"


def _graph(folder: Path, plugins_text: str, name: str = "graph.yaml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(plugins_text + _RELAY)
    return path


def _problems(path, **kw):
    from pipeline.config import load
    with pytest.raises(GraphConfigError) as ei:
        load(path, **kw)
    return ei.value.problems


def test_a_graph_files_relative_plugin_is_found_beside_it_and_loaded_once(tmp_path, monkeypatch, config,
                                                                          clean_modules):
    """A relative plugin path is read from the graph file's folder, not the current one; naming it
    again (a second load, without trust) runs no code and asks no consent."""
    from pipeline.config import load
    log = tmp_path / "imports.txt"
    g = tmp_path / "graphs"
    g.mkdir()
    (g / "beside_a.py").write_text(f"open({str(log)!r}, 'a').write('a')\n")
    (g / "beside_b.py").write_text(f"open({str(log)!r}, 'a').write('b')\n")
    path = _graph(g, "plugins:\n  - ./beside_a.py\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    load(path, trust=True)
    assert log.read_text() == "a"
    load(path)  # already imported: no consent needed, not run again
    assert log.read_text() == "a"
    # the first one loaded, the second refused: the refusal is still reported (the loop goes on)
    two = _graph(g, "plugins:\n  - ./beside_a.py\n  - ./beside_b.py\n", "two.yaml")
    (p,) = _problems(two)
    assert (p.line, p.message.split(":")[0]) == (3, "plugin './beside_b.py' is not loaded")
    assert log.read_text() == "a"


def test_every_refused_plugin_is_named_at_its_own_line_with_its_hint(tmp_path, config):
    path = _graph(tmp_path, "# plugins named below\nplugins:\n  - ./refused_one.py\n  - refused_two_pkg\n")
    ps = _problems(path)
    assert [(p.file, p.line) for p in ps] == [(str(path), 3), (str(path), 4)]
    assert ps[0].message.startswith("plugin './refused_one.py' is not loaded: ")
    assert "--plugin ./refused_one.py" in ps[0].message and "--plugin refused_two_pkg" in ps[1].message


def test_a_single_refused_plugin_written_as_text_is_named_at_the_key(tmp_path, config):
    # not on the mapping's first line, which a lost key would report instead
    path = _graph(tmp_path, "description: one plugin\n\nplugins: ./refused_scalar.py\n")
    (p,) = _problems(path)
    assert (p.line, p.message.split(":")[0]) == (3, "plugin './refused_scalar.py' is not loaded")


def test_an_allowlisted_file_is_matched_from_the_graph_files_folder(tmp_path, monkeypatch, config, clean_modules):
    from pipeline.config import load
    g = tmp_path / "graphs"
    g.mkdir()
    (g / "allowed_here.py").write_text("VALUE = 1\n")
    config.write_text(f"plugins: [{g / 'allowed_here.py'}]\n")
    path = _graph(g, "plugins: [./allowed_here.py]\n")
    monkeypatch.chdir(config.parent)
    load(path)
    assert plugins.is_loaded(str(g / "allowed_here.py"))


def test_a_broken_user_config_is_reported_once_for_every_plugin_it_was_asked_about(tmp_path, config):
    config.write_text("plugins: 3\n")
    path = _graph(tmp_path, "plugins:\n  - ./refused_x.py\n  - ./refused_y.py\n")
    ps = _problems(path)
    assert [p.file for p in ps].count(str(config)) == 1, ps
    assert [p.line for p in ps if p.file == str(path)] == [2, 3]


def test_a_plugin_that_fails_to_load_is_named_by_the_unknown_calculator_message(tmp_path, config):
    path = tmp_path / "graph.yaml"
    path.write_text("plugins: [./not_there_at_all.py]\ninputs: [a]\n"
                    "nodes:\n  - {calculator: NoSuchCalculatorAnywhere, inputs: [a], outputs: [b]}\n")
    ps = _problems(path, trust=True)
    assert any("'./not_there_at_all.py', which was not loaded" in p.message for p in ps), ps


def test_the_spec_keeps_the_plugins_the_graph_names(tmp_path, config, clean_modules):
    from pipeline.config import load
    (tmp_path / "kept_in_spec.py").write_text("VALUE = 1\n")
    assert load(_graph(tmp_path, "plugins: [./kept_in_spec.py]\n"), trust=True).plugins == ["./kept_in_spec.py"]
    assert load(_graph(tmp_path, "", "none.yaml")).plugins == []
