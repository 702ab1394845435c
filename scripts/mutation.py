"""Mutation testing of the core and the post-processing and flow calculators (mutmut).

    .venv/bin/python scripts/mutation.py flow          # calculators/flow against its tests
    .venv/bin/python scripts/mutation.py postprocess   # calculators/postprocess
    .venv/bin/python scripts/mutation.py pipeline      # pipeline/
    .venv/bin/python scripts/mutation.py config        # pipeline/config.py, against its own tests
    .venv/bin/python scripts/mutation.py flow --max-children 1 --only 'calculators.flow.flow_limiter*'
    .venv/bin/python scripts/mutation.py pipeline --keep --survivors   # the last run's survivors again
    .venv/bin/python scripts/mutation.py pipeline --keep --unchecked   # what a stopped run did not reach
    .venv/bin/python scripts/mutation.py pipeline --copy core --keep --recheck tests/pipeline/test_scheduling.py
    .venv/bin/python scripts/mutation.py postprocess --keep            # the same, and functions edited since
    .venv/bin/python scripts/mutation.py postprocess --keep --timeouts # the timeouts again

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
import fnmatch
import os
import re
import shutil
import signal
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
    # pipeline/config.py alone, against the tests of graph files (loading, checking, messages,
    # subgraphs, look-up) and the core's runs of them, not all of tests/pipeline: every graph load
    # reaches _parse, _parse_node and _validate, so each of their ~1,800 mutants is run against
    # every test that loads a graph (260 tests, ~17 s for a survivor). The files left out
    # (the helpers of pipeline.testing, the policies, fast path, property, fuzz, concurrent
    # opens, payloads) test the run, not the file; on the mutants of a run with all of
    # tests/pipeline this set kills what that one killed (docs/testing.md, "config").
    # the run's four files (pipeline/node.py, streams.py, policies.py, scheduler.py: pass them with
    # --only), against the test files of runs, not all of tests/pipeline: every test that runs a
    # graph reaches NodeRuntime.step, Stream.send and Executor._work, so under the "pipeline"
    # target each of their mutants runs the whole folder (60-100 s for a survivor on the shared VM);
    # these 33 files take ~45 s in all (test_shutdown_length 13 of them), and a survivor of them is
    # run again against the rest with --recheck (docs/testing.md, "core")
    "core": ("pipeline", [f"tests/pipeline/test_{name}.py" for name in (
        "closed_nodes", "core", "direct_hop", "direct_hop_sends", "executor_order", "executor_wake",
        "fast_path", "in_flight", "in_flight_bounds", "policies", "policy_objects", "run_states",
        "scheduling", "shutdown_length", "streams", "trace_events", "timestamps", "graph_api",
        "stuck_calls", "open_order", "context_contract", "stop_signals",
        # written against the survivors of the runs of 2026-12-02
        "errors", "queue_edges", "node_close_edges", "direct_hop_failures", "in_flight_bound_calls",
        "sink_at_halt", "start_activation", "throttled_stops", "worker_handoff", "release_window",
        "activation_count")], 0.90),
    "config": ("pipeline/config.py", [
        "tests/pipeline/test_config_messages.py", "tests/pipeline/test_validation.py",
        "tests/pipeline/test_subgraphs.py", "tests/pipeline/test_graph_lookup.py",
        "tests/pipeline/test_hostile_graphs.py", "tests/pipeline/test_errors.py",
        "tests/pipeline/test_error_messages.py", "tests/pipeline/test_unused_nodes.py",
        "tests/pipeline/test_output_paths.py", "tests/pipeline/test_function_calculators.py",
        "tests/pipeline/test_core.py", "tests/pipeline/test_topological_order.py",
        "tests/pipeline/test_graph_yaml_reading.py", "tests/pipeline/test_plugin_loading.py",
    ], 0.90),
}

# tests left out of a target's run: each takes seconds, and a mutant that survives runs every test
# that reaches its function, so these would cost their seconds again for each survivor; what they
# pin is pinned as well by faster tests of the same files (the limits, the single-line messages)
DESELECT = {
    "pipeline": [
        "tests/pipeline/test_hostile_graphs.py::test_load_and_start_take_time_linear_in_nodes",  # ~20 s, timing
        "tests/pipeline/test_hostile_graphs.py::test_subgraph_fan_out_is_bounded",  # ~11 s
        "tests/pipeline/test_fuzz_graph_files.py::test_documents_shaped_like_graphs",  # ~15 s, 80 examples
        "tests/pipeline/test_fuzz_graph_files.py::test_a_ready_graph_mutated",  # ~3 s
        "tests/pipeline/test_property.py::test_random_dags_deliver_exactly_once_in_order",  # ~3 s
    ],
    "config": [
        "tests/pipeline/test_hostile_graphs.py::test_load_and_start_take_time_linear_in_nodes",  # ~20 s, timing
        "tests/pipeline/test_hostile_graphs.py::test_subgraph_fan_out_is_bounded",  # ~11 s
        # ~6 s, 150 random graphs: the order is pinned as well by the ready graphs' and the named cases
        "tests/pipeline/test_topological_order.py::test_the_order_is_networkx_topological_sort",
    ],
}

# tests left out when a file is mutated: they expect a stuck call to be named (NodeStuckError),
# which graph.py finds by reading function names off the thread's stack (node.py's ``_call``,
# ``step``, ...); in a mutated file mutmut renames every function (xǁNodeRuntimeǁ_call__mutmut_orig),
# so under any mutant of that file the call is not named and these tests fail
DESELECT_WHEN_MUTATED = {
    "pipeline/node.py": [
        "tests/pipeline/test_scheduling.py::test_a_sink_in_a_call_when_the_stop_bound_passes_may_finish_it",
        "tests/pipeline/test_scheduling.py::test_a_sink_stuck_past_both_bounds_is_named_and_left",
        "tests/pipeline/test_stuck_calls.py::test_a_call_stuck_in_process_is_named_and_never_closed",
        "tests/pipeline/test_stuck_calls.py::test_a_stuck_call_is_named_behind_a_thread_slow_to_end",
        "tests/pipeline/test_stuck_calls.py::test_a_drain_past_drain_timeout_is_cut_short_and_logged",
        "tests/pipeline/test_stuck_calls.py::test_a_close_stuck_at_shutdown_is_named_and_the_closes_after_it_still_run",
        "tests/pipeline/test_shutdown_length.py::test_a_stuck_call_with_no_sink_in_a_call_ends_the_shutdown_after_one_bound",
        # checks where node.py's code is (its pause points), not what a run does
        "tests/pipeline/test_release_window.py::test_every_pause_point_is_reached",
        "tests/pipeline/test_release_window.py::test_every_bound_case_holds_n_where_it_says",
    ],
}

# a target's --timeout-multiplier when none is given (nor kept from the run before): mutmut stops a
# mutant after 2 x X x (its tests' time in the stats run + 1 s) of CPU, and the stats run is slow
# (every call of the mutated file goes through mutmut's recording trampoline). Measured 2026-12-01
# on config.py's `_parse`, reached by 198 tests: 36 s summed in the stats run, 3.3 s of CPU (6.3 s
# of wall time at a load of 3-4) for all 198 in a child forked as mutmut forks one. Under
# mutmut's default X of 15 a mutant that loops for ever (`_unique_name`'s `while name not in
# used`) is stopped after 1,104 s of CPU: two of them held both workers of the config run for
# minutes while it did nothing else; under 2, after 148 s, still 45 times what a surviving mutant
# takes, so no survivor is stopped and counted as killed.
TIMEOUT_MULTIPLIER = {"config": 2.0}

# functions mutmut must leave alone, by file: a regex for the line of each ``def``; the run's copy
# of that line gets mutmut's ``# pragma: no mutate block`` (the work tree is left as it is). A
# function called in its class's body while the class is made (the property factory of context.py's
# _LocalContext) breaks mutmut's trampoline, whose table of mutants is filled only after the class:
# KeyError '_mutmut_orig' at import, so no test runs at all.
LEAVE_ALONE = {
    "pipeline/context.py": [r"def _get\(name\):  # noqa: N805 - property factory"],
}

# copied into the run's tree: what the tests import and read
COPY = ["pipeline", "calculators", "models", "apps", "graphs", "tests", "docs", "pyproject.toml"]


def equivalent_mutants() -> set[str]:
    """Mutant names listed in docs/testing.md's "Equivalent mutants" section (each in backquotes)."""
    doc = ROOT / "docs" / "testing.md"
    text = doc.read_text() if doc.exists() else ""
    m = re.search(r"^## Equivalent mutants\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    return set(re.findall(r"`([\w.]+__mutmut_\d+)`", m.group(1))) if m else set()


def files_to_mutate(package: str, only: list[str]) -> list[str]:
    """The source files the ``--only`` mutant names can be in, as globs (``pipeline.paths.*`` ->
    ``pipeline/paths.py``); the whole package when a name does not lead to a file.

    Why: mutmut generates the mutants of every file it may mutate before running any, and that
    is slow on a big file (libcst: pipeline/config.py alone, 2,538 mutants, takes ~37 s of CPU,
    all of pipeline/ ~65 s; at nice 19 on a loaded machine, many minutes). A run of part of a
    target mutates only the files that part is in. A target that is one file mutates that file."""
    if package.endswith(".py"):
        return [package]
    globs = []
    for pattern in only:
        parts = []
        for part in pattern.split("."):
            if part.startswith(("x_", "xǁ")) or "__mutmut_" in part:
                break
            parts.append(part)
            if any(c in part for c in "*?[") or (ROOT / "/".join(parts)).with_suffix(".py").is_file():
                break
        glob = "/".join(parts)
        glob = glob if glob.endswith("*") else glob + ".py"
        if not glob.startswith(package + "/") or not any(ROOT.glob(glob)):
            return [f"{package}/*"]
        globs.append(glob)
    return sorted(set(globs)) or [f"{package}/*"]


def deselected(target: str, mutate: list[str]) -> list[str]:
    """The tests left out of a run that mutates the files ``mutate`` (globs)."""
    out = list(DESELECT.get(target, []))
    for path, tests in DESELECT_WHEN_MUTATED.items():
        if any(Path(path).match(g) or fnmatch.fnmatch(path, g) for g in mutate):
            out += tests
    return out


def prepare(target: str, tree: Path, only: list[str], keep: bool, timeout_multiplier: float | None = None) -> None:
    """Copies the repository into ``tree`` (unless ``keep``) and writes mutmut's setup.cfg there.
    With ``keep``, the files mutated before stay mutated (their results are kept), and so does a
    ``timeout_multiplier`` given before (a change makes mutmut run its timed-out mutants again)."""
    package, tests, _ = TARGETS[target]
    mutate = files_to_mutate(package, only)
    cfg = tree / "setup.cfg"
    if keep and cfg.exists():
        text = cfg.read_text()
        m = re.search(r"^only_mutate =\n((?:    .+\n)+)", text, re.M)
        before = [line.strip() for line in m.group(1).splitlines()] if m else []
        whole = files_to_mutate(package, [])[0]
        mutate = [whole] if whole in before + mutate else sorted(set(before + mutate))
        m = re.search(r"^timeout_multiplier = (.+)$", text, re.M)
        if timeout_multiplier is None and m:
            timeout_multiplier = float(m.group(1))
    elif tree.exists():
        shutil.rmtree(tree)
    if timeout_multiplier is None:
        timeout_multiplier = TIMEOUT_MULTIPLIER.get(target)
    pytest_args = ["-p", "no:cacheprovider"] + [f"--deselect={t}" for t in deselected(target, mutate)]
    tree.mkdir(parents=True, exist_ok=True)
    # with keep, the copy is brought up to date (new tests, edited sources: mutmut mutates an edited
    # file again and runs new tests for their stats) and mutmut's state in mutants/ stays
    for name in COPY:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, tree / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
                            dirs_exist_ok=True)
        else:
            shutil.copy2(src, tree / name)
    for name, patterns in LEAVE_ALONE.items():
        copied = tree / name
        if copied.is_file():
            lines = copied.read_text().splitlines(keepends=True)
            for i, line in enumerate(lines):
                if any(re.search(p, line) for p in patterns) and "no mutate" not in line:
                    lines[i] = line.rstrip("\n") + "  # pragma: no mutate block\n"
            copied.write_text("".join(lines))
    top = package.split("/")[0]
    also = [c for c in COPY if c != top and (ROOT / c).is_dir()]
    cfg.write_text(
        "[mutmut]\n"
        f"source_paths = {top}\n"
        "only_mutate =\n" + "".join(f"    {g}\n" for g in mutate)
        + "also_copy =\n" + "".join(f"    {a}\n" for a in also)
        + "pytest_add_cli_args =\n" + "".join(f"    {a}\n" for a in pytest_args)
        + "pytest_add_cli_args_test_selection =\n" + "".join(f"    {t}\n" for t in tests if (ROOT / t).exists())
        + "use_git_change_detection = False\n"
        + (f"timeout_multiplier = {timeout_multiplier}\n" if timeout_multiplier is not None else "")
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


def recheck(tree: Path, names: list[str], tests: list[str], deselect: list[str]) -> None:
    """Runs ``tests`` (only those) against each mutant in ``names``, as mutmut runs a mutant (in
    ``mutants/``, ``MUTANT_UNDER_TEST`` set, ``pytest -x``, at the lowest priority), and records
    those the tests kill as killed in mutmut's results; the others keep their result.

    Why: mutmut runs every test that reaches a mutant's function, and a survivor runs all of
    them. Every test in tests/pipeline reaches pipeline/node.py, streams.py, scheduler.py and
    policies.py (each runs a graph), so each survivor of those files costs the whole folder again
    (60-100 s on the shared VM at a load of 15-20, 2026-12-01), where the test files written
    against the survivors take 6-12 s. A mutant they kill is killed; one they do not kill stays a
    survivor (the full set had already let it through)."""
    import json

    (tree / "mutants" / "tests").mkdir(exist_ok=True)
    for t in tests:  # the tests as they are now
        shutil.copy2(ROOT / t, tree / "mutants" / t)
    # one process loads pytest and the tests once, then forks a child per mutant (as mutmut does):
    # a fresh interpreter per mutant spends more on imports than on these tests
    driver = (
        "import os, sys, json, signal, pytest\n"
        "signal.signal(signal.SIGINT, signal.SIG_DFL)\n"
        "args = json.loads(sys.argv[1]); names, tests = args['names'], args['tests']\n"
        "pytest.main(['-q', '--collect-only', '-p', 'no:cacheprovider', *tests])\n"
        "for name in names:\n"
        "    pid = os.fork()\n"
        "    if pid == 0:\n"
        "        os.environ['MUTANT_UNDER_TEST'] = name\n"
        "        signal.alarm(300)\n"  # a mutant that hangs is killed by the alarm, and counts as killed (a timeout)
        "        fd = os.open(os.devnull, os.O_WRONLY); os.dup2(fd, 1); os.dup2(fd, 2)\n"
        "        os._exit(int(pytest.main(['-x', '-q', '-p', 'no:cacheprovider', '-p', 'no:randomly', *tests])))\n"
        "    _, status = os.waitpid(pid, 0)\n"
        "    print(name, 'killed' if status else 'survived', flush=True)\n"
    )
    selected = [*[f"--deselect={t}" for t in deselect], *tests]
    env = {**os.environ, "PYTHONPATH": str(tree / "mutants"), "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("MUTANT_UNDER_TEST", None)
    proc = subprocess.Popen(["nice", "-n", "19", sys.executable, "-c", driver,
                             json.dumps({"names": names, "tests": selected})],
                            cwd=tree / "mutants", env=env, stdout=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    for line in proc.stdout:
        name, _, outcome = line.strip().rpartition(" ")
        if outcome not in ("killed", "survived") or name not in names:
            continue
        print(f"  {name}: {outcome}", flush=True)
        if outcome == "killed":  # recorded at once: a recheck stopped early keeps what it found
            module = re.match(r"(.*?)\.x[_ǁ]", name).group(1)  # pipeline.policies.xǁSyncPolicyǁtake__mutmut_2
            meta = tree / "mutants" / (module.replace(".", "/") + ".py.meta")
            data = json.loads(meta.read_text())
            data["exit_code_by_key"][name] = 1
            meta.write_text(json.dumps(data, indent=4))
    proc.wait()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("target", choices=sorted(TARGETS))
    ap.add_argument("--max-children", type=int, default=1, help="mutants tested at once (default 1)")
    ap.add_argument("--only", action="append", default=[],
                    help="mutant names to run (glob, e.g. 'calculators.flow.basic*'; repeatable)")
    ap.add_argument("--keep", action="store_true", help="reuse out/mutation/<target> (results of a previous run)")
    ap.add_argument("--survivors", action="store_true",
                    help="with --keep: run again only the survivors of the last run (after adding tests)")
    ap.add_argument("--unchecked", action="store_true",
                    help="with --keep: run the mutants a stopped run did not reach (its 'not checked' ones)")
    ap.add_argument("--timeout-multiplier", type=float, default=None, metavar="X",
                    help="a mutant is stopped after 2 x X x (the time its tests took in the clean run + 1 s) of "
                         "CPU; mutmut's default X is 15, so each mutant that loops burns minutes of CPU "
                         "(kept by --keep; changing it makes mutmut run the timed-out mutants again; "
                         "default: TIMEOUT_MULTIPLIER, 2 for config, else mutmut's)")
    ap.add_argument("--recheck", nargs="+", metavar="TEST", default=None,
                    help="with --keep: run only these test files against the last run's survivors "
                         "(see recheck()); kills are recorded in the results")
    ap.add_argument("--timeouts", action="store_true",
                    help="with --keep: run again the mutants that timed out (counted as killed; at a high load "
                         "a slow survivor times out)")
    ap.add_argument("--no-run", action="store_true", help="only report the results of the last run (with --keep)")
    ap.add_argument("--copy", default="", metavar="NAME",
                    help="run in a copy of its own, out/mutation/<target>-NAME, so that two parts of one "
                         "target can run side by side (each keeps its own results)")
    args = ap.parse_args()

    package, _, threshold = TARGETS[args.target]
    if args.copy and not re.fullmatch(r"[\w-]+", args.copy):
        ap.error(f"--copy {args.copy!r}: letters, digits, '_' and '-' only")
    tree = ROOT / "out" / "mutation" / (f"{args.target}-{args.copy}" if args.copy else args.target)
    if args.survivors or args.unchecked or args.timeouts:
        listed = tree / "survivors.txt"
        if not (args.keep and listed.exists()):
            ap.error("--survivors, --unchecked and --timeouts need --keep and a previous run (its survivors.txt)")
        if args.survivors:
            args.only += [line.split(":")[0] for line in listed.read_text().splitlines() if line.strip()]
        if args.unchecked:
            args.only += [k for k, v in results(tree).items() if v == "not checked"]
        if args.timeouts:
            args.only += [k for k, v in results(tree).items() if v == "timeout"]
        if not args.only:
            print("nothing to run again")
            args.no_run = True
    if args.recheck is not None:
        listed = tree / "survivors.txt"
        if not (args.keep and listed.exists()):
            ap.error("--recheck needs --keep and a previous run (its survivors.txt)")
        names = args.only or [line.split(":")[0] for line in listed.read_text().splitlines() if line.strip()]
        cfg = (tree / "setup.cfg").read_text()
        m = re.search(r"^only_mutate =\n((?:    .+\n)+)", cfg, re.M)
        mutated = [line.strip() for line in m.group(1).splitlines()] if m else [f"{package}/*"]
        recheck(tree, names, args.recheck, deselected(args.target, mutated))
        args.no_run = True
    if not args.no_run:
        prepare(args.target, tree, args.only, args.keep and tree.exists(), args.timeout_multiplier)
    # made before mutmut starts: a PYTHONPATH folder missing at start-up is never looked in again
    (tree / "mutants").mkdir(exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(tree / "mutants"), "PYTHONDONTWRITEBYTECODE": "1"}
    cmd = ["nice", "-n", "19", sys.executable, "-m", "mutmut", "run", "--max-children", str(args.max_children)]
    cmd += args.only
    if not args.no_run:
        print(f"{package}: {' '.join(cmd)} (in {tree})", flush=True)
        # SIGINT back to its default for mutmut and the tests: a job started in the background by a
        # shell without job control inherits SIGINT ignored, and then Python installs no handler
        # (the tests that send Ctrl-C hang, and the stats run fails on them)
        subprocess.run(cmd, cwd=tree, env=env, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))

    status = results(tree)
    equivalent = equivalent_mutants()
    # "not checked": not run yet (a run of part of the target, or one stopped early)
    unchecked = [k for k, v in status.items() if v == "not checked"]
    counted = {k: v for k, v in status.items()
               if k not in equivalent and v not in ("skipped", "not checked")}
    killed = [k for k, v in counted.items() if v in ("killed", "timeout", "segfault")]
    survivors = sorted(k for k, v in counted.items() if k not in killed)
    (tree / "survivors.txt").write_text("".join(f"{name}: {counted[name]}\n" for name in survivors))
    rate = len(killed) / len(counted) if counted else 0.0
    print(f"\n{package}: {len(status)} mutants, {len(equivalent & set(status))} listed as equivalent in "
          f"docs/testing.md, {len(unchecked)} not run, {len(killed)} of {len(counted)} killed: {rate:.1%} "
          f"(target {threshold:.0%})")
    for name in survivors:
        print(f"  survived ({counted[name]}): {name}")
    print(f"survivors listed in {tree / 'survivors.txt'}; see one with: cd {tree} && mutmut show NAME")
    return 0 if counted and rate >= threshold else 1


if __name__ == "__main__":
    sys.exit(main())
