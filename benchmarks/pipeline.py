"""``newsrnn bench --pipeline``: the whole default pipeline against the notebook's recipe, in one run.

On the same machine, data and rows, one after the other:

1. the notebook recipe (``harness.run_notebook``) for its four architectures, one epoch each;
2. ``dvc repro`` of the default ``params.yaml`` in a temporary clone of this repository's HEAD,
   tuning on (the committed settings);
3. the same with ``tune.n_trials: 0`` (tuning off).

Each stage's wall time comes from the moment ``dvc repro`` announces it to the moment it announces
the next one (so DVC's own hashing and lock writes count). The results file holds, per
architecture, the notebook's and both modes' test accuracy (and val for the two modes), the
champion's val and test accuracy in each mode, each stage's wall time, and the ratios the
targets are stated in. Choices inside the pipeline are made on validation only; test is reported.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402 - beside this file, not an installed module

from newsrnn.config import RECURRENT_CELLS  # noqa: E402
from newsrnn.errors import BenchError  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
STAGE_LINE = re.compile(r"^Running stage '([^']+)'")
STAGES = ("fetch", "prepare", "vectorize", "tune", "train", "evaluate", "ensemble", "register", "report")


def clone_project(dest: Path, params: dict[str, Any]) -> Path:
    """A clone of this repository's HEAD at ``dest`` with ``params`` as its params.yaml."""
    r = subprocess.run(["git", "clone", "-q", str(ROOT), str(dest)], capture_output=True, text=True)
    if r.returncode:
        raise BenchError(f"git clone of {ROOT} failed: {r.stderr.strip()[-300:]}")
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return dest


def timed_repro(proj: Path, env: dict[str, str]) -> dict[str, Any]:
    """Run ``dvc repro`` in ``proj``; wall seconds per stage (``tune@lstm`` etc.) and in all."""
    t0 = time.perf_counter()
    starts: list[tuple[str, float]] = []
    tail: list[str] = []
    proc = subprocess.Popen(["dvc", "repro"], cwd=proj, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, bufsize=1)
    assert proc.stdout is not None
    for line in proc.stdout:
        m = STAGE_LINE.match(line)
        if m:
            starts.append((m.group(1), time.perf_counter()))
            print(f"  {m.group(1)}", flush=True)
        tail = (tail + [line.rstrip()])[-30:]
    code = proc.wait()
    end = time.perf_counter()
    if code:
        raise BenchError(f"dvc repro in {proj} failed (exit {code}): {' | '.join(tail[-8:])}")
    per_stage = {name: (starts[i + 1][1] if i + 1 < len(starts) else end) - t
                 for i, (name, t) in enumerate(starts)}
    by_kind = {k: sum(s for n, s in per_stage.items() if n.split("@")[0] == k) for k in STAGES}
    return {"wall_s": end - t0, "stage_s": per_stage, "stage_kind_s": by_kind}


def collect(proj: Path) -> dict[str, Any]:
    """Per-candidate val/test accuracy and the champion, from the clone's metrics and champion.json."""
    archs = {}
    for f in sorted((proj / "metrics").glob("*.json")):
        m = json.loads(f.read_text())
        if "test_accuracy" in m:
            archs[f.stem] = {"val_accuracy": m["val_accuracy"], "test_accuracy": m["test_accuracy"]}
    champion = json.loads((proj / "artifacts" / "champion.json").read_text())
    name = champion.get("arch")
    # Byte digests of the metrics files: two runs of one commit should give the same ones.
    digests = {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in sorted((proj / "metrics").glob("*.json"))}
    decisions = {f.stem: (yaml.safe_load(f.read_text()) or {}).get("note")
                 for f in sorted((proj / "artifacts" / "tuned").glob("*.yaml"))}
    ens = json.loads((proj / "artifacts" / "ensemble" / "train.json").read_text())
    sections = (yaml.safe_load((proj / "params.yaml").read_text()) or {}).get("architectures", {})
    recurrent = sorted(a for a in archs
                       if a in sections and sections[a].get("cell", "lstm") in RECURRENT_CELLS)
    return {"archs": archs, "recurrent": recurrent, "champion": {"arch": name, **archs.get(name, {})},
            "metrics_sha256": digests,
            "tuning": decisions, "ensemble_members": ens.get("members"), "ensemble_selection": ens.get("selection")}


def run_mode(name: str, params: dict[str, Any], data_dir: Path, work: Path) -> dict[str, Any]:
    """One ``dvc repro`` of ``params`` in a fresh clone; its timings and scores."""
    proj = clone_project(work / name, params)
    env = {**os.environ, **harness.CHILD_ENV, "NEWSRNN_DATA_DIR": str(data_dir)}
    env.pop("MLFLOW_TRACKING_URI", None)  # each clone tracks into its own store
    env.pop("NEWSRNN_OPTUNA_STORAGE", None)
    print(f"bench: dvc repro, {name}", flush=True)
    timing = timed_repro(proj, env)
    keep = os.environ.get("NEWSRNN_BENCH_KEEP_MODELS")  # a directory: each mode's models and splits go there
    if keep:
        dest = Path(keep) / name
        shutil.rmtree(dest, ignore_errors=True)
        shutil.copytree(proj / "artifacts" / "models", dest / "models")
        shutil.copytree(proj / "artifacts" / "ensemble", dest / "models" / "ensemble")
        shutil.copytree(proj / "data" / "prepared", dest / "prepared")
    return {**timing, **collect(proj)}


def summarize(notebook: dict[str, dict[str, Any]], modes: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The figures the targets are stated in."""
    nb_total = sum(r["epoch_s"] for r in notebook.values())
    on, off = modes.get("tuning_on"), modes.get("tuning_off")
    out: dict[str, Any] = {"notebook_epochs_s": nb_total}
    for key, mode in modes.items():
        out[f"{key}_wall_over_notebook"] = harness.ratio(mode["wall_s"], nb_total)
        gains = {a: mode["archs"][a]["test_accuracy"] - r["test_accuracy"]
                 for a, r in notebook.items() if a in mode["archs"]}
        out[f"{key}_min_gain_over_notebook"] = min(gains.values()) if gains else None
        # The recurrent networks (not the linear wide models nor the cnn); older results lack the list.
        recurrent = mode.get("recurrent") or [a for a in mode["archs"] if a != "ensemble"]
        singles = {a: mode["archs"][a] for a in recurrent if a in mode["archs"]}
        out[f"{key}_best_single_test"] = max(v["test_accuracy"] for v in singles.values()) if singles else None
        # The one a user would pick (best on val), and its test accuracy.
        by_val = max(singles, key=lambda a: singles[a]["val_accuracy"]) if singles else None
        out[f"{key}_best_val_single"] = by_val
        out[f"{key}_best_val_single_test"] = singles[by_val]["test_accuracy"] if by_val else None
    again = modes.get("tuning_on_again")
    if on and again:
        out["repeat_differing_metrics_files"] = sorted(
            k for k in set(on["metrics_sha256"]) | set(again["metrics_sha256"])
            if on["metrics_sha256"].get(k) != again["metrics_sha256"].get(k))
        out["repeat_identical"] = not out["repeat_differing_metrics_files"]
    if on and off:
        out["champion_val_gain_from_tuning"] = on["champion"].get("val_accuracy", 0) - off["champion"].get(
            "val_accuracy", 0)
        out["archs_tuned_below_untuned_val"] = sorted(
            a for a in on["archs"] if a in off["archs"]
            and on["archs"][a]["val_accuracy"] < off["archs"][a]["val_accuracy"])
    return out


def markdown(results: dict[str, Any]) -> str:
    """The results as markdown tables: accuracy per architecture, then wall time per stage."""
    nb, modes = results["notebook"], results["modes"]
    names = [m for m in ("tuning_on", "tuning_off", "tuning_on_again") if m in modes]
    archs = sorted({a for m in modes.values() for a in m["archs"]} | set(nb),
                   key=lambda a: (a == "ensemble", a not in nb, a))
    f = harness._fmt
    head = "| arch | notebook test (1 epoch) | " + " | ".join(f"{m} val | {m} test" for m in names) + " |"
    lines = [head, "|" + "---|" * (2 + 2 * len(names))]
    for a in archs:
        cells = [f(nb.get(a, {}).get("test_accuracy"), ".4f")]
        for m in names:
            r = modes[m]["archs"].get(a, {})
            cells += [f(r.get("val_accuracy"), ".4f"), f(r.get("test_accuracy"), ".4f")]
        lines.append(f"| {a} | " + " | ".join(cells) + " |")
    for m in names:
        c = modes[m]["champion"]
        cells = ["-"]
        for other in names:
            cells += ([f(c.get("val_accuracy"), ".4f"), f(c.get("test_accuracy"), ".4f")] if other == m
                      else ["", ""])
        lines.append(f"| champion of {m} ({c.get('arch')}) | " + " | ".join(cells) + " |")
    lines += ["", "| stage | " + " | ".join(f"{m} s" for m in names) + " |", "|" + "---|" * (1 + len(names))]
    for k in STAGES:
        lines.append(f"| {k} | " + " | ".join(f(modes[m]["stage_kind_s"][k]) for m in names) + " |")
    lines.append("| **whole pipeline** | " + " | ".join(f(modes[m]["wall_s"]) for m in names) + " |")
    s = results["summary"]
    lines += ["", f"notebook recipe, four one-epoch runs: {s['notebook_epochs_s']:.1f} s"]
    for m in names:
        lines.append(f"{m}: whole pipeline / notebook = {f(s[f'{m}_wall_over_notebook'], '.2f')}x; "
                     f"smallest gain over the notebook {f(100 * s[f'{m}_min_gain_over_notebook'], '+.1f')} pts; "
                     f"best single recurrent network test {f(s[f'{m}_best_single_test'], '.4f')} "
                     f"(best on val: {s.get(f'{m}_best_val_single')}, test "
                     f"{f(s.get(f'{m}_best_val_single_test'), '.4f')})")
    if "repeat_identical" in s:
        lines.append(f"tuning_on run twice: metrics files identical: {s['repeat_identical']}"
                     + (f" (differ: {', '.join(s['repeat_differing_metrics_files'])})"
                        if s["repeat_differing_metrics_files"] else ""))
    if "champion_val_gain_from_tuning" in s:
        lines.append(f"tuning on - off, champion val: {100 * s['champion_val_gain_from_tuning']:+.2f} pts; "
                     f"architectures whose tuned val is below untuned: {s['archs_tuned_below_untuned_val'] or 'none'}")
    return "\n".join(lines)


def run_pipeline_bench(args: Any) -> dict[str, Any]:
    """Run the side-by-side pipeline benchmark; write ``<out>.json`` and ``<out>.md``; return the results."""
    params_path = Path(getattr(args, "params", None) or ROOT / "params.yaml")
    if not params_path.is_file():
        raise BenchError(f"{params_path}: params file not found")
    params = yaml.safe_load(params_path.read_text())
    from newsrnn.config import config_from_dict, config_to_dict

    cfg = config_from_dict(params)  # refuses a bad file before anything runs
    if shutil.which("dvc") is None:  # found out now, not after the notebook's minutes
        raise BenchError("dvc is not on PATH: the pipeline runs `dvc repro`; activate the environment "
                         "newsrnn is installed in (e.g. `source .venv/bin/activate`)")
    data_dir = harness.corpus_dir(args)
    max_rows = getattr(args, "max_train_rows", None)
    if max_rows is not None:
        params.setdefault("data", {})["max_train_rows"] = max_rows
    modes_wanted = [m for m in ("tuning_on", "tuning_off") if m not in (getattr(args, "skip", None) or ())]
    if getattr(args, "repeat", False) and "tuning_on" in modes_wanted:
        modes_wanted.append("tuning_on_again")  # the reproducibility check: same commit, same machine
    out = Path(getattr(args, "out", None) or f"benchmarks/results/pipeline_{time.strftime('%Y-%m-%d')}.json")
    work = Path(tempfile.mkdtemp(prefix="newsrnn-pipeline-bench-"))
    results: dict[str, Any] = {"machine": harness.machine_info(), "params_file": str(params_path),
                               "data_dir": str(data_dir), "max_train_rows": max_rows,
                               "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                                                        capture_output=True, text=True).stdout.strip()}
    try:
        print(f"bench: notebook recipe in {work}", flush=True)
        results["data"] = harness._child("prepare", {"params": config_to_dict(cfg), "data_dir": str(data_dir),
                                                     "max_train_rows": max_rows}, work)
        notebook = {}
        for arch in harness.NOTEBOOK_ARCHS:
            notebook[arch] = harness._child("notebook", {"arch": arch, "seed": cfg.seed, "max_train_rows": max_rows},
                                            work)
            print(f"  {arch}: {notebook[arch]['epoch_s']:.1f} s, test {notebook[arch]['test_accuracy']:.4f}",
                  flush=True)
        results["notebook"] = notebook
        modes = {}
        for name in modes_wanted:
            mode_params = json.loads(json.dumps(params))
            if name == "tuning_on_again":
                print("bench: tuning_on again (reproducibility check; not part of the timing targets)", flush=True)
            if name == "tuning_off":
                mode_params.setdefault("tune", {})["n_trials"] = 0
            modes[name] = run_mode(name, mode_params, data_dir, work)
        results["modes"] = modes
    finally:
        shutil.rmtree(work, ignore_errors=True)
    results["summary"] = summarize(results["notebook"], results["modes"])
    table = markdown(results)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(results, indent=1) + "\n")
    os.replace(tmp, out)
    out.with_suffix(".md").write_text(table + "\n")
    print(table)
    print(f"bench: results -> {out} and {out.with_suffix('.md')}")
    return results
