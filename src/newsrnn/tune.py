"""Stage ``tune@arch``: an Optuna study per architecture, shared by any number of workers.

- Search space from ``params.yaml`` (``tune:``): batch size, embedding size, recurrent units,
  learning rate, dropout, widened to hold the architecture's own values.
- Full fidelity by default: a trial trains on the rows and for the epochs ``train`` uses, built by
  the same builder from the same seed, so its validation accuracy is what ``train`` will measure
  for those settings (bit for bit with ``train.deterministic``). A cheaper proxy (fewer rows or
  epochs) ranked settings unlike full training on AG News (benchmarks/README.md).
- Multi-fidelity by pruning: a trial reports validation accuracy ``tune.checks_per_epoch`` times
  per epoch and a median pruner stops it at the first check where it trails the earlier trials,
  so a poor point costs a fraction of a training run.
- Warm start: trial 0 is the architecture's own settings. The tuned file names the best trial
  only if it beats trial 0 on validation by more than ``tune.min_val_gain`` (gains below that are
  within the noise of a 3,588-row validation split); otherwise it says the defaults were kept and
  ``train`` uses them.
- Budget per architecture: ``architectures.<arch>.tune_trials`` (else ``tune.n_trials``) trials,
  trial 0 included, sized by what a training run of that architecture costs.
- Storage: ``--storage`` / ``NEWSRNN_OPTUNA_STORAGE`` / ``tune.storage`` (any RDB URL, e.g.
  PostgreSQL on a cluster), else a local file: SQLite for one worker, Optuna's journal file for
  several (SQLite is not safe for parallel writers). ``load_if_exists`` lets workers join one
  study and a re-run continue it.
- Exactly the budget's trials however many workers: the remaining budget is split into
  per-worker quotas up front, so no two workers race for the last trial.
- A trial that raises or returns NaN is recorded as FAIL and the study goes on. With an RDB
  storage, workers send heartbeats; a worker killed mid-trial has its trial marked FAIL by the
  next worker that starts a trial, and retried once.
"""

from __future__ import annotations

import gc
import hashlib
import json
import math
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from newsrnn.config import Config, Settings, config_to_dict, resolve, tuned_dir
from newsrnn.errors import UsageError, redact
from newsrnn.fileio import write_yaml

ENV_STORAGE = "NEWSRNN_OPTUNA_STORAGE"
HEARTBEAT_S = 5
GRACE_S = 15


def study_name(cfg: Config, arch_name: str, data_sha: str = "") -> str:
    """A name that changes whenever what a trial means changes (space, data, arch)."""
    key = json.dumps({"tune": config_to_dict(cfg.tune), "arch": config_to_dict(cfg.arch(arch_name)),
                      "train": config_to_dict(cfg.train), "vec": config_to_dict(cfg.vectorizer),
                      "data": data_sha, "seed": cfg.seed}, sort_keys=True)
    # storage and n_trials do not change a trial's meaning: same study when only they change.
    key_obj = json.loads(key)
    key_obj["tune"].pop("storage", None)
    key_obj["tune"].pop("n_trials", None)
    key_obj["tune"].pop("timeout_s", None)
    key_obj["tune"].pop("min_val_gain", None)  # what is done with the trials, not the trials
    key_obj["tune"].pop("ensemble_search", None)
    key_obj["arch"].pop("tune_trials", None)
    digest = hashlib.sha256(json.dumps(key_obj, sort_keys=True).encode()).hexdigest()[:10]
    return f"newsrnn-{arch_name}-{digest}"


def resolve_storage(cfg: Config, arch_name: str, storage: str | None, workers: int,
                    local_dir: str | Path = "optuna") -> str:
    """The storage URL to use (see module docstring for the order)."""
    url = storage or os.environ.get(ENV_STORAGE) or cfg.tune.storage
    if url:
        return url
    Path(local_dir).mkdir(parents=True, exist_ok=True)
    if workers > 1:
        return f"journal:{Path(local_dir).resolve() / (arch_name + '.journal')}"
    return f"sqlite:///{Path(local_dir).resolve() / (arch_name + '.db')}"


def open_storage(url: str) -> Any:
    """An Optuna storage object for ``journal:<file>`` or an RDB URL (with heartbeats)."""
    import optuna
    from optuna.storages import RetryHeartbeatStaleTrialCallback

    if url.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend

        return optuna.storages.JournalStorage(JournalFileBackend(url[len("journal:"):]))
    if url.startswith("sqlite"):
        return optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 60}})
    return optuna.storages.RDBStorage(
        url, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S,
        heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=1),
        engine_kwargs={"pool_pre_ping": True},
    )


def create_study(cfg: Config, name: str, storage_url: str) -> Any:
    """Create or load the study (seeded TPE; a median pruner over the per-check accuracies,
    measured against every earlier trial, trial 0 = the defaults included)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    pruner = (optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=0)
              if cfg.tune.pruning else optuna.pruners.NopPruner())
    return optuna.create_study(
        study_name=name, storage=open_storage(storage_url), direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=cfg.seed), pruner=pruner, load_if_exists=True,
    )


def own_point(cfg: Config, arch_name: str) -> dict[str, Any]:
    """The architecture's own values of the tunable parameters (what ``train`` uses untuned)."""
    own = resolve(cfg, arch_name)
    if own.arch.solver == "lbfgs":  # a convex fit: no batches, rate or dropout, only its strength
        return {"l2_c": own.arch.l2_c}
    point = {"batch_size": own.batch_size, "embed_dim": own.arch.embed_dim, "units": own.arch.units,
             "learning_rate": own.learning_rate, "dropout": own.arch.dropout}
    if own.arch.cell == "none":  # a network without RNN has no embed_dim or units
        point = {k: v for k, v in point.items() if k not in ("embed_dim", "units")}
    return point


def space(cfg: Config, arch_name: str) -> dict[str, tuple[str, Any]]:
    """The search space for ``arch_name``: params.yaml's, widened to hold its own values.

    ``("choice", values)`` or ``("log"|"linear", (low, high))`` per parameter.
    """
    t, own = cfg.tune, own_point(cfg, arch_name)
    out: dict[str, tuple[str, Any]] = {}
    for key in ("batch_size", "embed_dim", "units"):
        if key in own:
            out[key] = ("choice", tuple(sorted(set(getattr(t, key)) | {own[key]})))
    for key, kind in (("learning_rate", "log"), ("dropout", "linear"), ("l2_c", "log")):
        if key not in own:
            continue
        low, high = getattr(t, key)
        out[key] = (kind, (min(low, own[key]), max(high, own[key])))
    return out


def suggest(trial: Any, cfg: Config, arch_name: str) -> dict[str, Any]:
    """Sample one point of ``space(cfg, arch_name)``."""
    out: dict[str, Any] = {}
    for key, (kind, values) in space(cfg, arch_name).items():
        if kind == "choice":
            out[key] = trial.suggest_categorical(key, list(values))
        else:
            out[key] = trial.suggest_float(key, *values, log=kind == "log")
    return out


def seed_study(study: Any, cfg: Config, arch_name: str) -> None:
    """Make the architecture's own settings trial 0 of a new study (the warm start, and the
    measure a tuned result must beat)."""
    if study.get_trials(deepcopy=False):
        return
    study.enqueue_trial(own_point(cfg, arch_name), user_attrs={"defaults": True})


def finished_count(study: Any) -> int:
    """Trials that count against the budget (all but WAITING/RUNNING ones)."""
    import optuna

    done = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED,
            optuna.trial.TrialState.FAIL)
    return len(study.get_trials(deepcopy=False, states=done))


def trial_settings(cfg: Config, arch_name: str, params: dict[str, Any]) -> Settings:
    """The effective settings a trial trains with: ``train``'s own resolution of the
    architecture with the trial's point laid over it (``tune.epochs_per_trial`` epochs if set)."""
    return resolve(cfg, arch_name, overrides=params, epochs=cfg.tune.epochs_per_trial)


class Objective:
    """Trains one trial's network; returns its best validation accuracy.

    A trial's settings are ``config.resolve`` of the architecture with the trial's point as
    overrides, built by ``build_trainable`` and trained by ``fit_epochs`` with ``train``'s early
    stopping: the run ``train`` would make with those values. The vectorized datasets are built
    once per worker and reused by every trial.
    """

    def __init__(self, cfg: Config, arch_name: str, prepared_dir: Path, vec_dir: Path,
                 runs_dir: Path | None = None, data_sha: str = "") -> None:
        from newsrnn.runtime import setup_runtime

        setup_runtime(cfg.seed, cfg.train.deterministic)
        from newsrnn.data import Datasets, build_front, char_idf_of, idf_of, load_splits
        from newsrnn.vectorize import build_vectorizer, initial_embeddings

        self.cfg = cfg
        self.arch_name = arch_name
        own = trial_settings(cfg, arch_name, {})
        train_df, val_df, _ = load_splits(prepared_dir)
        if cfg.tune.max_train_rows and len(train_df) > cfg.tune.max_train_rows:
            train_df = train_df.sample(n=cfg.tune.max_train_rows, random_state=cfg.seed)
        words, vec_config = build_vectorizer(vec_dir)
        self.vectorizer, max_length, self.vocab_size = build_front(own.arch, words, vec_config)
        # Where a trial that leads the study leaves its network for `train` to reuse (None: nowhere,
        # e.g. a Kubeflow worker whose disk is gone when the pod ends).
        self.runs_dir, self.data_sha, self.vocab_sha = runs_dir, data_sha, vec_config["vocab_sha256"]
        self.rows = len(train_df)
        self.embeddings = initial_embeddings(own.arch, vec_dir)
        self.data = Datasets(self.vectorizer, max_length, train_df, val_df, own)
        self.idf = idf_of(own.arch, self.vocab_size, self.data)
        self.char_idf = char_idf_of(own.arch, self.data)

    def __call__(self, trial: Any) -> float:
        import keras

        from newsrnn.fit import fit_epochs
        from newsrnn.nn.trainable import build_trainable

        settings = trial_settings(self.cfg, self.arch_name, suggest(trial, self.cfg, self.arch_name))
        keras.backend.clear_session()
        gc.collect()
        self.data.batch_size = settings.batch_size
        steps = self.data.steps_per_epoch()
        network = build_trainable(settings, self.vocab_size, steps,
                                  embeddings=self.embeddings, idf=self.idf, char_idf=self.char_idf,
                                  word_length=self.data.word_length)
        checks = Checks(trial, self.data, steps, self.cfg.tune.checks_per_epoch)
        _, history, best = fit_epochs(network, self.data, settings.train.epochs,
                                      patience=settings.train.early_stopping_patience, seed=self.cfg.seed,
                                      on_epoch_end=checks.epoch_end, callbacks=[checks])
        trial.set_user_attr("epochs_run", len(history))
        value = float(history[best]["val_accuracy"])
        if self.runs_dir is not None and _leads(trial, value):
            from newsrnn.fit import run_fingerprint, save_run

            save_run(self.runs_dir / str(trial.number), network, history, best, trial=trial.number,
                     fingerprint=run_fingerprint(settings, self.vocab_sha, self.data_sha, self.rows))
        del network
        return value


def _leads(trial: Any, value: float) -> bool:
    """Trial 0 (the defaults), or a trial better than every trial completed so far."""
    if trial.user_attrs.get("defaults"):
        return True
    try:
        return value > trial.study.best_value
    except ValueError:  # no completed trial yet
        return True


def _checks_class() -> type:
    import keras

    class _Checks(keras.callbacks.Callback):
        """Reports validation accuracy to the trial ``per_epoch`` times an epoch (the last at the
        epoch's end, from ``fit_epochs``' own evaluation) and prunes when the pruner says so.

        Step ``epoch * per_epoch + j`` is the j-th check of an epoch, whatever the batch size, so
        trials are compared at the same fraction of training. The checks only read the network:
        training is the same with or without them.
        """

        def __init__(self, trial: Any, data: Any, steps: int, per_epoch: int) -> None:
            super().__init__()
            self.trial, self.data, self.per_epoch = trial, data, per_epoch
            self.at = {max(1, round(steps * j / per_epoch)): j - 1 for j in range(1, per_epoch)}
            self.epoch = 0
            self.predict: Any = None

        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            j = self.at.get(batch + 1)
            if j is not None:
                self._report(self._val_accuracy(), self.epoch * self.per_epoch + j)

        def epoch_end(self, epoch: int, row: dict[str, float]) -> None:
            self._report(row["val_accuracy"], epoch * self.per_epoch + self.per_epoch - 1)
            self.epoch = epoch + 1

        def _val_accuracy(self) -> float:
            import numpy as np
            import tensorflow as tf

            if self.predict is None:
                self.predict = tf.function(lambda x: self.model(x, training=False), reduce_retracing=True)
            right = total = 0
            for ids, labels in self.data.val():
                right += int(np.sum(np.argmax(self.predict(ids).numpy(), 1) == labels.numpy()))
                total += len(labels)
            return right / max(total, 1)

        def _report(self, value: float, step: int) -> None:
            import optuna

            self.trial.report(value, step)
            if self.trial.should_prune():
                self.trial.set_user_attr("pruned_at", (step + 1) / self.per_epoch)
                raise optuna.TrialPruned(f"pruned at epoch {(step + 1) / self.per_epoch:.2f}")

    return _Checks


def Checks(trial: Any, data: Any, steps: int, per_epoch: int) -> Any:  # noqa: N802 - a class made on first use
    """A Keras callback (defined lazily: importing this module must not import Keras)."""
    return _checks_class()(trial, data, steps, per_epoch)


def run_worker(cfg: Config, arch_name: str, storage_url: str, name: str, quota: int,
               prepared_dir: str | Path = "data/prepared",
               vec_dir: str | Path = "artifacts/vectorizer",
               objective: Callable[[Any], float] | None = None,
               runs_dir: str | Path | None = None, data_sha: str = "") -> int:
    """Run up to ``quota`` trials of study ``name``; returns how many this worker ran.

    ``objective`` defaults to training the architecture (``Objective``); any exception in a
    trial marks that trial FAIL and the worker goes on with the next one. With ``runs_dir``,
    each trial that leads the study when it ends saves its network there (``<trial number>/``).
    """
    if quota <= 0:
        return 0
    study = create_study(cfg, name, storage_url)
    # A restarted worker (a retried pod, a re-run) must not push the study past its budget.
    quota = min(quota, max(0, cfg.trials_for(arch_name) - finished_count(study)))
    if quota <= 0:
        return 0
    if objective is None:
        objective = Objective(cfg, arch_name, Path(prepared_dir), Path(vec_dir),
                              Path(runs_dir) if runs_dir else None, data_sha)
    before = len(study.get_trials(deepcopy=False))
    from newsrnn.progress import TrialBar

    study.optimize(objective, n_trials=quota, timeout=cfg.tune.timeout_s, catch=(Exception,),
                   gc_after_trial=True, callbacks=[TrialBar(arch_name, quota)])
    return len(study.get_trials(deepcopy=False)) - before


def _worker_entry(cfg_dict: dict[str, Any], arch_name: str, storage_url: str, name: str, quota: int,
                  prepared_dir: str, vec_dir: str, runs_dir: str | None, data_sha: str) -> int:
    from newsrnn.config import config_from_dict

    return run_worker(config_from_dict(cfg_dict), arch_name, storage_url, name, quota, prepared_dir,
                      vec_dir, runs_dir=runs_dir, data_sha=data_sha)


def split_quota(remaining: int, workers: int) -> list[int]:
    """Split ``remaining`` trials over ``workers`` as evenly as possible."""
    return [remaining // workers + (1 if i < remaining % workers else 0) for i in range(workers)]


def _plots(study: Any, out_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna.visualization.matplotlib as ovm

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for fname, fn in (("optimization_history.png", ovm.plot_optimization_history),
                      ("param_importances.png", ovm.plot_param_importances)):
        try:
            ax = fn(study)
            ax.figure.set_size_inches(8, 5)
            ax.figure.tight_layout()
            ax.figure.savefig(out_dir / fname, dpi=90)
            plt.close(ax.figure)
            written.append(out_dir / fname)
        except Exception as exc:  # e.g. importances need >= 2 completed trials
            print(f"tune: skipped {fname}: {str(exc)[:120]}")
    return written


def choose(complete: list[Any], min_gain: float = 0.0) -> dict[str, Any]:
    """The tuned file's decision from the completed trials: the best trial's params if it beats
    trial 0 (the architecture's own settings) on validation by more than ``min_gain``, else none
    (the defaults are kept). ``best_trial`` / ``best_value`` name the top trial either way;
    ``chosen_trial`` is the one whose network ``train`` reuses."""
    defaults = next((t for t in complete if t.user_attrs.get("defaults")), None)
    out: dict[str, Any] = {"defaults_value": float(defaults.value) if defaults else None,
                           "min_val_gain": min_gain}
    if not complete:
        return {**out, "params": {}, "best_value": None, "best_trial": None, "chosen_trial": None,
                "kept_defaults": True}
    best = max(complete, key=lambda t: (t.value, t is defaults))  # a tie keeps the defaults
    out.update(best_value=float(best.value), best_trial=best.number)
    if best is defaults or (defaults is not None and best.value - defaults.value <= min_gain):
        return {**out, "params": {}, "chosen_trial": defaults.number, "kept_defaults": True}
    return {**out, "params": dict(best.params), "chosen_trial": best.number, "kept_defaults": False}


def decision_note(result: dict[str, Any]) -> str:
    """One sentence a person reads in the tuned file: what ``train`` will use and why."""
    best, own = result.get("best_value"), result.get("defaults_value")
    margin = result.get("min_val_gain") or 0.0
    if best is None:
        return "no completed trial: the architecture's own params are used"
    if result["kept_defaults"] and best > own:
        return (f"defaults kept: the best trial ({result['best_trial']}, val {best:.4f}) beats the "
                f"architecture's own settings (val {own:.4f}) by {100 * (best - own):.2f} pts, not more than "
                f"tune.min_val_gain ({100 * margin:.2f} pts, within validation noise); train uses them")
    if result["kept_defaults"]:
        return (f"defaults kept: no trial beat the architecture's own settings (val {own:.4f}); "
                "train uses them")
    if own is None:
        return f"trial {result['best_trial']} (val {best:.4f}) is used; trial 0 (the defaults) did not complete"
    return (f"trial {result['best_trial']} beats the defaults on val ({best:.4f} vs {own:.4f}, "
            f"+{100 * (best - own):.2f} pts); train uses its params")


def trials_dir(model_dir: Path) -> Path:
    """Where the workers of a study leave leading trials' networks, beside ``model_dir``."""
    return model_dir.with_name(model_dir.name + "-trials")


def keep_chosen(model_dir: Path, trial_number: int | None) -> bool:
    """Move the chosen trial's saved network to ``model_dir`` (for ``train`` to reuse) and drop
    the other trials'. False when that trial's network is not here (it ran elsewhere)."""
    runs = trials_dir(model_dir)
    src = runs / str(trial_number) if trial_number is not None else None
    shutil.rmtree(model_dir, ignore_errors=True)
    kept = bool(src and (src / "run.json").is_file())
    if kept:
        model_dir.parent.mkdir(parents=True, exist_ok=True)
        os.replace(src, model_dir)
    shutil.rmtree(runs, ignore_errors=True)
    return kept


def finalize(cfg: Config, arch_name: str, storage_url: str, name: str,
             out_path: str | Path, plots_dir: str | Path, model_dir: str | Path | None = None) -> dict[str, Any]:
    """Write the decision (``artifacts/tuned/<arch>.yaml``), plots and the MLflow runs; with
    ``model_dir``, keep the chosen trial's network there."""
    import optuna

    from newsrnn.tracking import Tracker

    study = create_study(cfg, name, storage_url)
    trials = study.get_trials(deepcopy=False)
    states = {s.name: sum(1 for t in trials if t.state == s) for s in optuna.trial.TrialState}
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE
                and t.value is not None and math.isfinite(t.value)]
    pruned = [t for t in trials if t.state == optuna.trial.TrialState.PRUNED]
    result: dict[str, Any] = {
        "arch": arch_name, "study": name, "storage": redact(storage_url),
        "n_trials": len(trials), "states": {k: v for k, v in states.items() if v},
        # How far into training (in epochs) each pruned trial got: the work pruning saved.
        "pruned_at_epochs": [t.user_attrs.get("pruned_at") for t in pruned],
    }
    result.update(choose(complete, cfg.tune.min_val_gain))
    result["note"] = decision_note(result)
    if model_dir is not None:
        # train reuses this network instead of repeating the trial (same settings, data, seed).
        result["trained_model"] = (str(model_dir) if keep_chosen(Path(model_dir), result["chosen_trial"])
                                   else None)
    plots = _plots(study, Path(plots_dir)) if len(trials) else []
    write_yaml(out_path, result)

    tracker = Tracker(cfg.tracking_uri(), cfg.mlflow.experiment, cfg.mlflow.enabled)
    parent = tracker.start(run_name=f"tune-{arch_name}", tags={"arch": arch_name, "stage": "tune",
                                                              "study": name})
    if parent:
        tracker.log_params({"arch": arch_name, "n_trials_budget": cfg.trials_for(arch_name),
                            "epochs_per_trial": cfg.tune.epochs_per_trial or "full",
                            "max_train_rows": cfg.tune.max_train_rows or "all", "study": name,
                            "kept_defaults": result["kept_defaults"]})
        if result["best_value"] is not None:
            tracker.log_metrics({"best_val_accuracy": result["best_value"]})
            tracker.log_params({f"best.{k}": v for k, v in result["params"].items()})
        tracker.log_metrics({"n_pruned": len(pruned), "n_trials": len(trials)})
        if result["defaults_value"] is not None:
            tracker.log_metrics({"defaults_val_accuracy": result["defaults_value"]})
        for p in plots:
            tracker.log_artifact(p, "tuning")
        import mlflow

        for t in trials:
            def child(t: Any = t) -> None:
                with mlflow.start_run(run_name=f"trial-{t.number}", nested=True,
                                      tags={"arch": arch_name, "trial_state": t.state.name,
                                            "trial_number": str(t.number)}):
                    mlflow.log_params(t.params)
                    if t.value is not None and math.isfinite(t.value):
                        mlflow.log_metric("val_accuracy", t.value)
                    for step, v in sorted(t.intermediate_values.items()):
                        mlflow.log_metric("val_accuracy_epoch", v, step=step + 1)
            tracker.call("log child run", child)
        tracker.end()
    return result


def tune(cfg: Config, arch_name: str, workers: int = 1, storage: str | None = None,
         prepared_dir: str | Path = "data/prepared", vec_dir: str | Path = "artifacts/vectorizer",
         out_path: str | Path | None = None, plots_dir: str | Path | None = None,
         data_sha: str | None = None) -> dict[str, Any]:
    """Run the study for ``arch_name`` with ``workers`` local processes, then finalize it.

    Writes ``out_path`` (default ``artifacts/tuned/<arch>.yaml``) and, in the directory of the
    same name, ``plots/`` and ``model/`` (the chosen trial's network, which ``train`` reuses).
    """
    out_path = Path(out_path or f"artifacts/tuned/{arch_name}.yaml")
    plots_dir = Path(plots_dir or tuned_dir(out_path) / "plots")
    model_dir = tuned_dir(out_path) / "model"
    cfg.arch(arch_name)
    if workers < 1:
        raise UsageError(f"--workers: expected an integer >= 1, got {workers}")
    if cfg.trials_for(arch_name) == 0:
        plots_dir.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(model_dir, ignore_errors=True)
        why = ("tune.n_trials: 0" if cfg.tune.n_trials == 0
               else f"architectures.{arch_name}.tune_trials: 0")
        result = {"arch": arch_name, "params": {}, "best_value": None, "n_trials": 0, "kept_defaults": True,
                  "note": f"tuning off ({why}): the architecture's own params are used"}
        write_yaml(out_path, result)
        print(f"tune: {arch_name}: tuning off, wrote {out_path}")
        return result
    if data_sha is None:
        from newsrnn.data import prepared_data_sha

        data_sha = prepared_data_sha(prepared_dir)
    url = resolve_storage(cfg, arch_name, storage, workers)
    name = study_name(cfg, arch_name, data_sha)
    study = create_study(cfg, name, url)
    seed_study(study, cfg, arch_name)
    remaining = max(0, cfg.trials_for(arch_name) - finished_count(study))
    quotas = [q for q in split_quota(remaining, workers) if q > 0]
    print(f"tune: {arch_name}: study {name} at {redact(url)}; {remaining} trial(s) to run "
          f"on {len(quotas)} worker(s)")
    runs = trials_dir(model_dir)
    if len(quotas) == 1:
        run_worker(cfg, arch_name, url, name, quotas[0], prepared_dir, vec_dir, runs_dir=runs, data_sha=data_sha)
    elif quotas:
        import concurrent.futures
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(len(quotas), mp_context=ctx) as pool:
            futures = [pool.submit(_worker_entry, config_to_dict(cfg), arch_name, url, name, q,
                                   str(prepared_dir), str(vec_dir), str(runs), data_sha) for q in quotas]
            for i, f in enumerate(futures):
                try:
                    f.result()
                except Exception as exc:  # a dead worker must not lose the others' trials
                    print(f"tune: worker {i} failed ({type(exc).__name__}: {exc}); the study stays usable")
    result = finalize(cfg, arch_name, url, name, out_path, plots_dir, model_dir)
    print(f"tune: {arch_name}: {result['note']}")
    return result
