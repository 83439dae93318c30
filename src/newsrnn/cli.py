"""The ``newsrnn`` command: one subcommand per stage, plus predict, bench and kfp.

Heavy libraries (TensorFlow, MLflow, Optuna, kfp) are imported inside the commands that use
them, so ``newsrnn --help`` answers without loading any of them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from newsrnn.errors import UsageError

os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


def _cfg(args: argparse.Namespace) -> Any:
    from newsrnn.config import load_config

    return load_config(args.params)


def cmd_fetch(args: argparse.Namespace) -> None:
    from newsrnn.fetch import fetch

    fetch(_cfg(args).data, out_dir=args.out)


def cmd_prepare(args: argparse.Namespace) -> None:
    from newsrnn.prepare import prepare

    cfg = _cfg(args)
    prepare(cfg.data, cfg.seed, raw_dir=args.raw, out_dir=args.out)


def cmd_vectorize(args: argparse.Namespace) -> None:
    from newsrnn.vectorize import vectorize

    vectorize(_cfg(args).vectorizer, prepared_dir=args.prepared, out_dir=args.out)


def cmd_tune(args: argparse.Namespace) -> None:
    from newsrnn.tune import tune

    result = tune(_cfg(args), args.arch, workers=args.workers, storage=args.storage)
    print(json.dumps(result, indent=2))


def cmd_train(args: argparse.Namespace) -> None:
    from newsrnn.train import train

    train(_cfg(args), args.arch, tuned_path=args.tuned)


def cmd_evaluate(args: argparse.Namespace) -> None:
    from newsrnn.evaluate import evaluate

    evaluate(_cfg(args), args.arch, record_path=f"metrics/runs/{args.arch}.json")


def cmd_ensemble(args: argparse.Namespace) -> None:
    from newsrnn.ensemble import run_stage

    run_stage(_cfg(args), record_path="metrics/runs/ensemble.json")


def cmd_register(args: argparse.Namespace) -> None:
    from newsrnn.register import register

    print(json.dumps(register(_cfg(args), strict=args.strict), indent=2))


def cmd_report(args: argparse.Namespace) -> None:
    from newsrnn.report import report

    report(_cfg(args), out_path=args.out, log_to_mlflow=not args.no_mlflow)


def cmd_lineage(args: argparse.Namespace) -> None:
    from newsrnn.lineage import lineage

    print(lineage(_cfg(args), args.ref, as_json=args.json))


def _read_lines(stream: Any, where: str) -> list[str]:
    """Non-empty lines of a binary stream, decoded as UTF-8; bad bytes name line and offset."""
    lines = []
    for n, raw in enumerate(stream, start=1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise UsageError(f"{where}: line {n}: not valid UTF-8 (byte {exc.start} of the line: "
                             f"{raw[exc.start:exc.start + 1]!r}); save the texts as UTF-8") from None
        line = line.rstrip("\r\n")
        if line.strip():
            lines.append(line)
    return lines


def cmd_predict(args: argparse.Namespace) -> None:
    from newsrnn.predict import load_predictor

    texts = list(args.texts)
    if args.file:
        with open(args.file, "rb") as f:
            texts += _read_lines(f, args.file)
    if not texts and not sys.stdin.isatty():
        texts = _read_lines(sys.stdin.buffer, "stdin")
    if not texts:
        raise UsageError("give texts as arguments, with --file, or on stdin")
    # A model path needs no params.yaml; only registry URIs need the tracking settings.
    registry = args.model is None or args.model.startswith(("models:/", "runs:/"))
    predictor = load_predictor(args.model, _cfg(args) if registry else None)
    for text, res in zip(texts, predictor.predict(texts)):
        if args.json:
            print(json.dumps({"text": text, **res}))
        else:
            probs = "  ".join(f"{k}={v:.3f}" for k, v in res["probabilities"].items())
            print(f"{res['label']:<9} {probs}  | {text[:70]}")


def _benchmark(name: str) -> Any:
    """``benchmarks/<name>.py`` of the source checkout: the benchmark code is not part of the
    installed library, it lives beside the results it writes."""
    import importlib.util
    from pathlib import Path

    import newsrnn
    from newsrnn.errors import BenchError

    candidates = [Path.cwd() / "benchmarks" / f"{name}.py",
                  Path(newsrnn.__file__).resolve().parents[2] / "benchmarks" / f"{name}.py"]
    path = next((c for c in candidates if c.is_file()), None)
    if path is None:
        raise BenchError(f"benchmarks/{name}.py not found: run `newsrnn bench` from a source checkout "
                         "of newsrnn (pip install -e .)")
    spec = importlib.util.spec_from_file_location(f"newsrnn_bench_{name}", path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def _harness() -> Any:
    return _benchmark("harness")


def cmd_bench(args: argparse.Namespace) -> None:
    if args.pipeline:
        _benchmark("pipeline").run_pipeline_bench(args)
    else:
        _harness().run_bench(args)


def cmd_server(args: argparse.Namespace) -> None:
    from newsrnn import server

    code = server.run(args)
    if code:
        raise SystemExit(code)


def cmd_kfp(args: argparse.Namespace) -> None:
    from newsrnn import kfp_cli

    kfp_cli.main(args)


def _add_params(p: argparse.ArgumentParser) -> None:
    p.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every subcommand."""
    parser = argparse.ArgumentParser(
        prog="newsrnn",
        description="Reproducible recurrent text classifiers on AG News: "
                    "fetch -> prepare -> vectorize -> tune -> train -> evaluate -> ensemble -> register.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, fn: Callable[[argparse.Namespace], None], help_: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_)
        _add_params(p)
        p.set_defaults(func=fn)
        return p

    p = add("fetch", cmd_fetch, "Fetch AG News from the first working source into data/raw/.")
    p.add_argument("--out", default="data/raw")
    p = add("prepare", cmd_prepare, "Validate, clean and split into data/prepared/.")
    p.add_argument("--raw", default="data/raw")
    p.add_argument("--out", default="data/prepared")
    p = add("vectorize", cmd_vectorize, "Adapt the vocabulary into artifacts/vectorizer/.")
    p.add_argument("--prepared", default="data/prepared")
    p.add_argument("--out", default="artifacts/vectorizer")
    p = add("tune", cmd_tune, "Optuna search for one architecture -> artifacts/tuned/<arch>.yaml.")
    p.add_argument("arch")
    p.add_argument("--workers", type=int, default=1, help="local worker processes on one study")
    p.add_argument("--storage", default=None, help="Optuna storage URL (default: tune.storage, "
                   "else NEWSRNN_OPTUNA_STORAGE, else a local file)")
    p = add("train", cmd_train, "Train one architecture -> artifacts/models/<arch>/model.keras.")
    p.add_argument("arch")
    p.add_argument("--tuned", default=None, help="tuned params file (default: artifacts/tuned/<arch>.yaml)")
    p = add("evaluate", cmd_evaluate, "Score one architecture -> metrics/<arch>.json, plots/<arch>/.")
    p.add_argument("arch")
    add("ensemble", cmd_ensemble, "Average the `ensemble` members' probabilities -> artifacts/ensemble/, "
        "metrics/ensemble.json.")
    p = add("register", cmd_register, "Register the best architecture (by val accuracy); promote it to "
            "@champion if it passes the gate in params.yaml `promote`.")
    p.add_argument("--strict", action="store_true", help="exit non-zero when the candidate is not promoted")
    p = add("report", cmd_report, "One offline HTML page comparing every candidate -> reports/index.html.")
    p.add_argument("--out", default="reports/index.html")
    p.add_argument("--no-mlflow", action="store_true", help="do not attach the page to the champion's run")
    p = add("lineage", cmd_lineage, "Print data -> code -> params -> run -> version -> alias for a model.")
    p.add_argument("ref", nargs="?", default=None,
                   help="an MLflow run id, models:/NAME@ALIAS, models:/NAME/VERSION or a version number "
                        "(default: models:/<registered_model>@champion)")
    p.add_argument("--json", action="store_true", help="the chain as JSON")
    p = add("predict", cmd_predict, "Classify raw texts with the champion or a given model.")
    p.add_argument("texts", nargs="*", help="texts to classify (or use --file / stdin)")
    p.add_argument("--file", help="a file with one text per line")
    p.add_argument("--model", default=None,
                   help="model dir, .keras file or models:/ URI (default: models:/<name>@champion)")
    p.add_argument("--json", action="store_true", help="one JSON object per text")
    p = add("bench", cmd_bench, "Notebook recipe vs newsrnn, side by side; prints a table.")
    p.add_argument("--archs", default="rnn_title,rnn,lstm,bilstm")
    p.add_argument("--max-train-rows", type=int, default=None)
    p.add_argument("--out", default=None, help="JSON results file (default: benchmarks/results/...)")
    p.add_argument("--data-dir", default=None, help="ag_news_csv directory (default: NEWSRNN_DATA_DIR)")
    p.add_argument("--pipeline", action="store_true",
                   help="the whole default pipeline (dvc repro in a temporary clone, tuning on and off) "
                        "against the notebook recipe's four one-epoch runs; writes JSON and markdown")
    p.add_argument("--repeat", action="store_true",
                   help="with --pipeline: run tuning on a second time and compare the metrics files byte for byte")
    p = add("server", cmd_server, "Start an MLflow tracking server (127.0.0.1 unless basic-auth is on).")
    from newsrnn.server import add_arguments

    add_arguments(p)
    p = add("kfp", cmd_kfp, "Kubeflow: compile, run-local, submit.")
    ksub = p.add_subparsers(dest="kfp_command", required=True, metavar="ACTION")

    def kfp_action(name: str, help_: str) -> argparse.ArgumentParser:
        k = ksub.add_parser(name, help=help_, description=help_)
        # Also accepted after the action; SUPPRESS keeps `kfp --params X ACTION` working too.
        k.add_argument("--params", default=argparse.SUPPRESS, help="params file (default: params.yaml)")
        return k

    k = kfp_action("compile", "write pipelines/newsrnn_pipeline.yaml")
    k.add_argument("--out", default="pipelines/newsrnn_pipeline.yaml")
    k = kfp_action("run-local", "run the whole pipeline with kfp's local SubprocessRunner")
    k.add_argument("--pipeline-root", default="kfp_local")
    k.add_argument("--arg", action="append", default=[], metavar="NAME=VALUE",
                   help="pipeline parameter override (repeatable)")
    k = kfp_action("submit", "submit the compiled pipeline to a Kubeflow endpoint")
    k.add_argument("--host", required=True)
    k.add_argument("--package", default="pipelines/newsrnn_pipeline.yaml")
    k.add_argument("--arg", action="append", default=[], metavar="NAME=VALUE",
                   help="pipeline parameter override (repeatable)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: run a subcommand, turning expected errors into one clear line."""
    args = build_parser().parse_args(argv)
    from newsrnn.errors import OS_ERRORS, NewsrnnError, one_line

    try:
        args.func(args)
    except (NewsrnnError, *OS_ERRORS) as exc:
        print(f"newsrnn {args.command}: error: {one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"newsrnn {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
