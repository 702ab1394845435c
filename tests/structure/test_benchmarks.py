"""Every benchmark under tests/bench/ writes its JSON through the shared helper (tests/bench/_meta.py),
so each record carries the machine, the library versions and the command line, as
docs/benchmarks.md promises; and the helper itself records them."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench"


def test_every_benchmark_writes_its_json_through_the_shared_helper():
    missing = []
    for path in sorted(BENCH.glob("bench_*.py")):
        tree = ast.parse(path.read_text())
        imports = {a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module == "_meta"
                   for a in n.names}
        calls = {n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
        # a JSON file written by hand: json.dump(obj, f) or path.write_text(json.dumps(...))
        own_json = any(isinstance(n, ast.Call) and (
            (isinstance(n.func, ast.Attribute) and n.func.attr == "dump" and isinstance(n.func.value, ast.Name)
             and n.func.value.id == "json")
            or (isinstance(n.func, ast.Attribute) and n.func.attr == "write_text" and n.args
                and isinstance(n.args[0], ast.Call) and isinstance(n.args[0].func, ast.Attribute)
                and n.args[0].func.attr == "dumps")) for n in ast.walk(tree))
        if "write_json" not in imports or "write_json" not in calls or own_json:
            missing.append(path.name)
    assert not missing, (f"{missing}: write the JSON with `from _meta import write_json` (tests/bench/_meta.py), "
                         "which adds the machine, library versions and command line docs/benchmarks.md promises")


def test_the_helper_records_machine_versions_command_and_interleaves(tmp_path):
    code = (
        "import sys; sys.path.insert(0, %r)\n"
        "from _meta import interleaved, round_ratios, write_json\n"
        "order = []\n"
        "runs = interleaved({'a': lambda: order.append('a'), 'b': lambda: order.append('b')}, 3)\n"
        "assert order == ['a', 'b'] + ['a', 'b'] * 3, order  # one warm-up each, then rounds\n"
        "assert len(runs['a']) == len(runs['b']) == 3\n"
        "r = round_ratios({'a': [2.0, 4.0, 9.0], 'b': [1.0, 2.0, 3.0]}, 'a', 'b')\n"
        "assert r == {'median': 2.0, 'min': 2.0, 'max': 3.0}, r\n"
        "write_json(sys.argv[1], 'selftest', {'x': 1}, libraries=['av'])\n" % str(BENCH))
    out = tmp_path / "r.json"
    subprocess.run([sys.executable, "-c", code, str(out), "--flag"], check=True, timeout=60)
    rec = json.loads(out.read_text())
    assert rec["benchmark"] == "selftest" and rec["x"] == 1
    assert rec["machine"]["cores"] >= 1 and rec["machine"]["cpu"] and rec["machine"]["accelerators"]
    assert rec["versions"]["python"] and "numpy" in rec["versions"] and "av" in rec["versions"]
    assert rec["command"].endswith(f"{out} --flag") and rec["date"]
