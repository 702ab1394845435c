"""Plugins: a graph file names them, the user consents to importing them; by module name or file path.

Each test writes a plugin that leaves a marker file when it is imported, so "nothing was imported"
is checked, not assumed.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.apps.conftest import GRAPHS, REPO, run_vpipe

PLUGIN = '''
import os
from pathlib import Path

from pipeline import calculator

Path(os.environ["MARKER"]).write_text("imported")


@calculator(name="{name}")
def triple(value: int) -> int:
    return 3 * value
'''

GRAPH = """\
plugins: [{ref}]
nodes:
  - calculator: Counter
    outputs: {{OUT: numbers}}
    options: {{count: 3}}
  - calculator: {name}
    inputs: {{VALUE: numbers}}
    outputs: {{OUT: tripled}}
"""


@pytest.fixture
def setup(tmp_path):
    """A plugin module ``blur_{n}.py`` in ``tmp_path/plugins``, a graph naming it, an empty user config."""
    plugins = tmp_path / "plugins"
    plugins.mkdir()

    class Setup:
        marker = tmp_path / "marker"
        config = tmp_path / "config.yaml"
        root = tmp_path

        def plugin(self, name: str, folder: Path = plugins) -> Path:
            path = folder / f"{name.lower()}.py"
            path.write_text(PLUGIN.format(name=name))
            return path

        def graph(self, ref: str, name: str, folder: Path = tmp_path) -> Path:
            path = folder / "graph.yaml"
            path.write_text(GRAPH.format(ref=ref, name=name))
            return path

        def env(self, **more) -> dict[str, str]:
            return {"MARKER": str(self.marker), "VPIPE_CONFIG": str(self.config), **more}

    s = Setup()
    s.config.write_text("# no plugins allowed\n")
    s.plugins = plugins
    return s


def test_validate_imports_nothing_without_consent(setup):
    setup.plugin("Evil")
    graph = setup.graph("evil", "Evil")
    r = run_vpipe("validate", str(graph), env=setup.env(), cwd=setup.plugins)
    assert r.rc == 1
    assert not setup.marker.exists(), "validate imported a plugin it was not allowed to"
    assert r.out.splitlines()[0] == (
        f"{graph}:1: plugin 'evil' is not loaded: plugins are code, so vpipe imports one only with your consent: "
        f"--plugin evil (in Python: import it first, or trust=True), --trust for this graph file, or list it under "
        f"'plugins:' in {setup.config}")
    assert r.out.splitlines()[1] == (f"{graph}:6: unknown calculator 'Evil'; it may come from the graph's plugin "
                                     "'evil', which was not loaded (see above)")


def test_a_graph_file_cannot_import_an_installed_module(setup, tmp_path):
    # `plugins: [this]` printed the Zen of Python at validate time.
    graph = tmp_path / "zen.yaml"
    graph.write_text("plugins: [this]\nnodes:\n  - calculator: Counter\n    outputs: [a]\n")
    for command in ("validate", "run"):
        r = run_vpipe(command, str(graph), env=setup.env())
        assert r.rc == 1, r
        assert "Beautiful is better than ugly" not in r.out + r.err
        assert "plugin 'this' is not loaded" in r.out + r.err


def test_trust_imports_the_graph_files_plugins(setup):
    plugin = setup.plugin("TrustedTriple")
    graph = setup.graph("./plugins/trustedtriple.py", "TrustedTriple")
    r = run_vpipe("run", str(graph), "--trust", "-q", env=setup.env())
    assert r.rc == 0, r.err
    assert setup.marker.read_text() == "imported"
    assert plugin.exists()
    assert "TrustedTriple" in r.out  # the summary table lists the node


def test_allowlist_in_the_user_config(setup):
    setup.plugin("Allowed")
    graph = setup.graph("allowed", "Allowed")
    env = setup.env(PYTHONPATH=os.pathsep.join([str(REPO), str(setup.plugins)]))
    setup.config.write_text("plugins:\n  - allowed\n")
    r = run_vpipe("validate", str(graph), env=env)
    assert r.rc == 0, r.out + r.err
    assert setup.marker.exists()


def test_allowlist_entry_allows_submodules_only_of_that_package(setup):
    from pipeline import plugins

    assert plugins.is_allowed("my_pkg.calcs", None, ["my_pkg"])
    assert plugins.is_allowed("my_pkg", None, ["my_pkg"])
    assert not plugins.is_allowed("my_pkg_evil", None, ["my_pkg"])
    assert not plugins.is_allowed("./my_pkg.py", None, ["my_pkg"])


def test_user_config_errors_name_the_config_file(setup):
    setup.config.write_text("plugin: [x]\n")
    graph = setup.graph("x", "X")
    r = run_vpipe("validate", str(graph), env=setup.env())
    assert r.rc == 1
    assert r.out.splitlines()[0] == f"{setup.config}:1: unknown key 'plugin' in the vpipe config file (known: plugins)"


def test_user_config_is_found_under_xdg_config_home(setup, tmp_path, monkeypatch):
    from pipeline import plugins

    monkeypatch.delenv("VPIPE_CONFIG", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert plugins.user_config_path() == tmp_path / "xdg" / "vpipe" / "config.yaml"
    monkeypatch.delenv("XDG_CONFIG_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert plugins.user_config_path() == tmp_path / "home" / ".config" / "vpipe" / "config.yaml"


def test_plugin_by_relative_and_absolute_file_path(setup):
    plugin = setup.plugin("PathTriple")
    graph = setup.graph("pathtriple", "PathTriple")
    for ref in ("./pathtriple.py", str(plugin)):
        setup.marker.unlink(missing_ok=True)
        r = run_vpipe("run", str(graph), "--plugin", ref, "-q", env=setup.env(), cwd=setup.plugins)
        assert r.rc == 0, r.err
        assert setup.marker.exists()


def test_current_folder_is_not_on_the_import_path(setup):
    setup.plugin("Beside")
    graph = setup.graph("beside", "Beside")
    r = run_vpipe("run", str(graph), "--plugin", "beside", env=setup.env(), cwd=setup.plugins)
    assert r.rc == 2
    assert r.first_err_line == (f"error: cannot load plugin 'beside': tried it as a module name, and no module named "
                                f"'beside' is on the import path; the file {setup.plugins / 'beside.py'} is not on the "
                                f"import path: name it by its path, ./beside.py")
    assert not setup.marker.exists()


def test_missing_plugin_file_says_it_was_tried_as_a_path(setup):
    r = run_vpipe("run", str(GRAPHS / "limited.yaml"), "--plugin", "./nowhere/face_blur.py", env=setup.env(),
                  cwd=setup.root)
    assert r.rc == 2
    assert r.first_err_line == (f"error: cannot load plugin './nowhere/face_blur.py': tried it as a file path (it ends "
                                f"in .py), and {setup.root / 'nowhere' / 'face_blur.py'} does not exist")


def test_plugin_that_fails_to_import_names_its_error(setup):
    bad = setup.plugins / "broken.py"
    bad.write_text("raise RuntimeError('needs a GPU')\n")
    r = run_vpipe("calculators", "--plugin", str(bad), env=setup.env())
    assert r.rc == 2
    assert r.first_err_line == (f"error: cannot load plugin '{bad}' ({bad}): importing it failed: "
                                "RuntimeError: needs a GPU")


def test_graph_file_plugin_path_is_relative_to_the_graph(setup, tmp_path):
    sub = tmp_path / "project"
    sub.mkdir()
    setup.plugin("Local", folder=sub)
    graph = setup.graph("./local.py", "Local", folder=sub)
    # --plugin relative to the current folder and the graph's own relative path name the same file.
    r = run_vpipe("validate", str(graph), "--plugin", "project/local.py", env=setup.env(), cwd=tmp_path)
    assert r.rc == 0, r.out + r.err
