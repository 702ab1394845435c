"""Mutation testing of the core and the post-processing and flow calculators (mutmut).

    .venv/bin/python scripts/mutation.py flow          # calculators/flow against its tests
    .venv/bin/python scripts/mutation.py postprocess   # calculators/postprocess
    .venv/bin/python scripts/mutation.py pipeline      # pipeline/
    .venv/bin/python scripts/mutation.py flow --max-children 1 --only 'calculators.flow.flow_limiter*'

Each target is run in its own copy of the repository under ``out/mutation/<target>/`` (mutmut
writes its mutated tree, ``mutants/``, there, never in the work tree), against the test files
that exercise it (``TARGETS`` below: a subset, so that a run fits a shared 2-core machine), at the
lowest CPU priority. mutmut first runs those tests once to learn which test reaches which
function, then runs only those tests against each mutant.

Afterwards it prints the kill rate and writes ``out/mutation/<target>/survivors.txt``: every
mutant that no test killed (``mutmut show NAME`` in that folder prints its diff), less the ones
docs/testing.md lists as equivalent
(a mutant named there, in the "Equivalent mutants" section, changes no behaviour a caller can
see). The exit status is 0 when the kill rate meets the target's threshold, 1 otherwise.
Needs the ``mutation`` extra (``pip install -e .[mutation]``). Not part of the default test run.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# target: (the package mutated, the tests that exercise it, the kill rate asked for)
TARGETS = {
    "flow": ("calculators/flow", [
        "tests/media/test_flow_options.py", "tests/pipeline/test_policies.py",
        "tests/media/test_flow_behaviour.py",
    ], 0.85),
    "postprocess": ("calculators/postprocess", [
        "tests/vision/test_postprocess.py", "tests/vision/test_calculators.py", "tests/vision/test_i420.py",
        "tests/vision/test_calculator_options.py", "tests/vision/test_postprocess_contracts.py",
    ], 0.85),
    "pipeline": ("pipeline", [
        "tests/pipeline",
    ], 0.90),
}

# copied into the run's tree: what the tests import and read
COPY = ["pipeline", "calculators", "models", "apps", "graphs", "tests", "docs", "pyproject.toml"]


def equivalent_mutants() -> set[str]:
    """Mutant names listed in docs/testing.md's "Equivalent mutants" section (each in backquotes)."""
    doc = ROOT / "docs" / "testing.md"
    text = doc.read_text() if doc.exists() else ""
    m = re.search(r"^## Equivalent mutants\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    return set(re.findall(r"`([\w.]+__mutmut_\d+)`", m.group(1))) if m else set()


def prepare(target: str, tree: Path) -> None:
    package, tests, _ = TARGETS[target]
    if tree.exists():
        shutil.rmtree(tree)
    tree.mkdir(parents=True)
    for name in COPY:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, tree / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(src, tree / name)
    top = package.split("/")[0]
    also = [c for c in COPY if c != top and (ROOT / c).is_dir()]
    (tree / "setup.cfg").write_text(
        "[mutmut]\n"
        f"source_paths = {top}\n"
        f"only_mutate = {package}/*\n"
        "also_copy =\n" + "".join(f"    {a}\n" for a in also)
        + "pytest_add_cli_args =\n" + "".join(f"    {a}\n" for a in ("-p", "no:cacheprovider"))
        + "pytest_add_cli_args_test_selection =\n" + "".join(f"    {t}\n" for t in tests if (ROOT / t).exists())
        + "use_git_change_detection = False\n"
    )


def results(tree: Path) -> dict[str, str]:
    out = subprocess.run([sys.executable, "-m", "mutmut", "results", "--all", "true"], cwd=tree,
                         capture_output=True, text=True)
    if out.returncode != 0:  # older mutmut: no --all
        out = subprocess.run([sys.executable, "-m", "mutmut", "results"], cwd=tree, capture_output=True, text=True)
    status = {}
    for line in out.stdout.splitlines():
        m = re.match(r"\s*([\w.]+__mutmut_\d+): (.+)$", line)
        if m:
            status[m.group(1)] = m.group(2).strip()
    return status


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("target", choices=sorted(TARGETS))
    ap.add_argument("--max-children", type=int, default=1, help="mutants tested at once (default 1)")
    ap.add_argument("--only", action="append", default=[],
                    help="mutant names to run (glob, e.g. 'calculators.flow.basic*'; repeatable)")
    ap.add_argument("--keep", action="store_true", help="reuse out/mutation/<target> (results of a previous run)")
    ap.add_argument("--no-run", action="store_true", help="only report the results of the last run (with --keep)")
    args = ap.parse_args()

    package, _, threshold = TARGETS[args.target]
    tree = ROOT / "out" / "mutation" / args.target
    if not (args.keep and tree.exists()):
        prepare(args.target, tree)
    # made before mutmut starts: a PYTHONPATH folder missing at start-up is never looked in again
    (tree / "mutants").mkdir(exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(tree / "mutants"), "PYTHONDONTWRITEBYTECODE": "1"}
    cmd = ["nice", "-n", "19", sys.executable, "-m", "mutmut", "run", "--max-children", str(args.max_children)]
    cmd += args.only
    if not args.no_run:
        print(f"{package}: {' '.join(cmd)} (in {tree})", flush=True)
        subprocess.run(cmd, cwd=tree, env=env)

    status = results(tree)
    equivalent = equivalent_mutants()
    counted = {k: v for k, v in status.items() if k not in equivalent and v not in ("skipped",)}
    killed = [k for k, v in counted.items() if v in ("killed", "timeout", "segfault")]
    survivors = sorted(k for k, v in counted.items() if k not in killed)
    (tree / "survivors.txt").write_text("".join(f"{name}: {counted[name]}\n" for name in survivors))
    rate = len(killed) / len(counted) if counted else 0.0
    print(f"\n{package}: {len(status)} mutants, {len(equivalent & set(status))} listed as equivalent in "
          f"docs/testing.md, {len(killed)} of {len(counted)} killed: {rate:.1%} (target {threshold:.0%})")
    for name in survivors:
        print(f"  survived ({counted[name]}): {name}")
    print(f"survivors listed in {tree / 'survivors.txt'}; see one with: cd {tree} && mutmut show NAME")
    return 0 if counted and rate >= threshold else 1


if __name__ == "__main__":
    sys.exit(main())
