"""Start-up: how soon the first result of a whole process is out, and the CPU it spent until then.

Each case is the user's command as one process, started cold (a fresh interpreter) in interleaved
rounds:

- ``vpipe``: ``python -m apps.cli run face_detection --set detections=OUT -q`` (the sample clip,
  carphone), the command of docs/benchmarks.md;
- ``tasks``: MediaPipe Tasks' ``FaceDetector`` fed by PyAV in a plain loop on the same clip
  (``face_loops.py tasks``: what a MediaPipe user writes);
- ``vpipe-cold``: the same vpipe command with OpenVINO's model cache empty (a first run: the
  model is compiled, not imported from its blob); the catalog cache is the same files, linked into
  a temporary ``$VPIPE_CACHE`` whose ``openvino/`` folder is removed before each run;
- ``ref`` (with ``--ref REV``): the same vpipe command run from a copy of the repository at another
  git revision (e.g. the commit before a change).

And the commands that run no graph, each a whole process (``vpipe --help``, ``vpipe models list``,
``vpipe validate face_detection``): wall and CPU (user + system) to their end, vpipe beside ``ref``.

Time to first frame: from the process's spawn to the first JSON line in OUT (both write and flush one
line per frame), polled every millisecond. CPU before it: the child's user + system time read from
/proc at that moment (clock ticks, 10 ms). Ratios are the median of per-round ratios.

    python tests/bench/bench_startup.py [--rounds 7] [--ref REV] [--json out/bench/startup.json]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from _meta import interleaved, median, round_ratios, whole_process as whole, write_json  # noqa: E402

TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")


def cpu_of(pid: int) -> float:
    """User + system seconds of process ``pid`` (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * TICK_S


def first_frame(argv: list[str], out: Path, cwd: Path, env: dict | None = None) -> tuple[float, float]:
    """(seconds from spawn to the first line in ``out``, CPU seconds of the child by then); the
    process then runs to its end and must succeed."""
    out.unlink(missing_ok=True)
    t0 = time.perf_counter()
    p = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    try:
        while True:
            try:
                with open(out, "rb") as f:
                    if b"\n" in f.read(1 << 16):
                        break
            except FileNotFoundError:
                pass
            if p.poll() is not None:
                raise SystemExit(f"{' '.join(argv)} ended ({p.returncode}) before its first frame:\n"
                                 f"{p.stderr.read().decode()[-3000:]}")
            time.sleep(0.001)
        wall, cpu = time.perf_counter() - t0, cpu_of(p.pid)
        _, err = p.communicate(timeout=600)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({p.returncode}):\n{err.decode()[-3000:]}")
    return wall, cpu


COMMANDS = {"help": ["--help"], "models list": ["models", "list"], "validate": ["validate", "face_detection"]}


def export_ref(ref: str, into: Path) -> str:
    """The repository's code and graphs at git revision ``ref``, under ``into`` (runnable there)."""
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", ref], capture_output=True, text=True,
                            check=True).stdout.strip()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", commit, "pipeline", "calculators", "apps",
                              "models", "graphs"], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return commit


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=7, help="interleaved rounds (after one warm-up of each)")
    ap.add_argument("--ref", default=None, help="git revision of vpipe to compare with")
    ap.add_argument("--json", default=str(ROOT / "out" / "bench" / "startup.json"))
    a = ap.parse_args()

    from models.catalog import resolve

    video = Path(resolve("sample:carphone"))
    resolve("zoo:blazeface-short")
    tmp = Path(tempfile.mkdtemp(prefix="vpipe_bench_startup_"))
    py = sys.executable
    vpipe = [py, "-m", "apps.cli", "run", "face_detection", "--set", "detections={out}", "-q"]
    cases = {"vpipe": (vpipe, ROOT), "vpipe-cold": (vpipe, ROOT),
             "tasks": ([py, str(ROOT / "tests" / "bench" / "face_loops.py"), "tasks", str(video), "{out}"], ROOT)}
    from models.catalog import cache_dir

    cold = tmp / "cold_cache"  # the catalog's files, linked; no OpenVINO blobs
    cold.mkdir()
    for item in cache_dir().iterdir():
        if item.name != "openvino":
            (cold / item.name).symlink_to(item)
    envs = {"vpipe-cold": {**os.environ, "VPIPE_CACHE": str(cold)}}
    ref_commit = None
    if a.ref:
        ref_root = tmp / "ref"
        ref_root.mkdir()
        ref_commit = export_ref(a.ref, ref_root)
        cases["ref"] = (vpipe, ref_root)

    cpu: dict[str, list[float]] = {k: [] for k in cases}
    runs_cpu: dict[str, list[float]] = {k: [] for k in cases}

    def case(key: str):
        argv, cwd = cases[key]
        out = tmp / f"{key}.jsonl"

        def fn():
            if key == "vpipe-cold":
                shutil.rmtree(cold / "openvino", ignore_errors=True)
            wall, c = first_frame([x.format(out=out) for x in argv], out, cwd, envs.get(key))
            cpu[key].append(c)
            return wall

        return fn

    fns = {k: case(k) for k in cases}

    def measure(fn):
        return fn()

    wall = interleaved(fns, a.rounds, warmup=1, measure=measure)
    for k in cases:
        runs_cpu[k] = cpu[k][1:]  # the warm-up's figure left out, as interleaved leaves out its wall

    res = {
        "clip": str(video), "rounds": a.rounds, "ref": ref_commit,
        "first_frame_s": wall, "cpu_before_first_frame_s": runs_cpu,
        "median": {k: {"first_frame_s": median(wall[k]), "cpu_s": median(runs_cpu[k])} for k in cases},
        "round_ratios": {},
        "commands": {k: " ".join(x.format(out="OUT") for x in cases[k][0]) + {"ref": f"  (in git {a.ref})", "vpipe-cold": "  (no compiled model cached)"}.get(k, "")
                     for k in cases},
    }
    for other in [k for k in cases if k != "vpipe"]:
        res["round_ratios"][f"first_frame_vpipe_vs_{other}"] = round_ratios(wall, "vpipe", other)
        res["round_ratios"][f"cpu_vpipe_vs_{other}"] = round_ratios(runs_cpu, "vpipe", other)

    # The commands that run no graph: CPU to their end, vpipe (and ref) interleaved.
    roots = {"vpipe": ROOT, **({"ref": cases["ref"][1]} if a.ref else {})}
    cmd_cpu: dict[str, dict[str, list[float]]] = {c: {k: [] for k in roots} for c in COMMANDS}
    cmd_fns = {}
    for c, args in COMMANDS.items():
        for k, root in roots.items():
            def fn(c=c, k=k, args=args, root=root):
                w, cp = whole([py, "-m", "apps.cli", *args], root)
                cmd_cpu[c][k].append(cp)
                return w
            cmd_fns[f"{c}|{k}"] = fn
    cmd_wall = interleaved(cmd_fns, a.rounds, warmup=1)
    res["commands_no_graph"] = {c: {k: {"wall_s": median(cmd_wall[f"{c}|{k}"]), "cpu_s": median(cmd_cpu[c][k][1:])}
                                    for k in roots} for c in COMMANDS}

    print(f"\nstart-up, whole process, {a.rounds} interleaved rounds (median; load {os.getloadavg()[0]:.1f})")
    print(f"{'case':10s} {'first frame s':>14s} {'CPU before s':>13s}  command")
    for k in cases:
        m = res["median"][k]
        print(f"{k:10s} {m['first_frame_s']:14.3f} {m['cpu_s']:13.3f}  {res['commands'][k]}")
    for name, r in res["round_ratios"].items():
        print(f"{name}: {r['median']:.2f}x (rounds {r['min']:.2f}-{r['max']:.2f})")
    print(f"\ncommands without a graph, whole process (median CPU s / wall s)")
    print(f"{'command':22s} " + " ".join(f"{k:>16s}" for k in roots))
    for c in COMMANDS:
        row = res["commands_no_graph"][c]
        print(f"{'vpipe ' + ' '.join(COMMANDS[c]):22s} " + " ".join(
            f"{row[k]['cpu_s']:7.3f} / {row[k]['wall_s']:6.3f}" for k in roots))
    path = write_json(a.json, "startup", res, libraries=["av", "openvino", "mediapipe", "opencv-contrib-python"])
    print(f"written {path}")


if __name__ == "__main__":
    main()
