"""Stage ``tune@arch``: an Optuna study per architecture, shared by any number of workers.

- Search space from ``params.yaml`` (``tune:``): batch size, embedding size, recurrent units,
  learning rate, dropout. Objective: validation accuracy after at most ``tune.epochs_per_trial``
  epochs; a seeded TPE sampler; a median pruner fed with per-epoch validation accuracy.
- Storage: ``--storage`` / ``NEWSRNN_OPTUNA_STORAGE`` / ``tune.storage`` (any RDB URL, e.g.
  PostgreSQL on a cluster), else a local file: SQLite for one worker, Optuna's journal file for
  several (SQLite is not safe for parallel writers). ``load_if_exists`` lets workers join one
  study and a re-run continue it.
- Exactly ``tune.n_trials`` trials however many workers: the remaining budget is split into
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
from collections.abc import Callable
from pathlib import Path
from typing import Any

from newsrnn.config import ArchConfig, Config, Settings, config_to_dict, resolve
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
    """Create or load the study (seeded TPE, median pruner)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    pruner = (optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0)
              if cfg.tune.pruning else optuna.pruners.NopPruner())
    return optuna.create_study(
        study_name=name, storage=open_storage(storage_url), direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=cfg.seed), pruner=pruner, load_if_exists=True,
    )


def suggest(trial: Any, cfg: Config, arch: ArchConfig | None = None) -> dict[str, Any]:
    """Sample one point of the search space from params.yaml (only what ``arch`` has)."""
    t = cfg.tune
    out = {"batch_size": trial.suggest_categorical("batch_size", list(t.batch_size))}
    if arch is None or arch.cell != "none":  # a network without RNN has no embed_dim or units
        out["embed_dim"] = trial.suggest_categorical("embed_dim", list(t.embed_dim))
        out["units"] = trial.suggest_categorical("units", list(t.units))
    out["learning_rate"] = trial.suggest_float("learning_rate", *t.learning_rate, log=True)
    out["dropout"] = trial.suggest_float("dropout", *t.dropout)
    return out


def seed_study(study: Any, cfg: Config, arch_name: str) -> None:
    """Make the architecture's own params the first trial of a new study.

    Tuning then never picks something its own measure rates below the defaults. Values outside
    the search space are left for the sampler to choose.
    """
    if study.get_trials(deepcopy=False):
        return
    own_settings, t = resolve(cfg, arch_name), cfg.tune
    arch = own_settings.arch
    own = {"batch_size": own_settings.batch_size, "embed_dim": arch.embed_dim, "units": arch.units,
           "learning_rate": own_settings.learning_rate, "dropout": arch.dropout}
    fixed = {k: v for k, v in own.items()
             if (k in ("batch_size", "embed_dim", "units") and v in getattr(t, k))
             or (k in ("learning_rate", "dropout") and getattr(t, k)[0] <= v <= getattr(t, k)[1])}
    if arch.cell == "none":
        fixed = {k: v for k, v in fixed.items() if k not in ("embed_dim", "units")}
    study.enqueue_trial(fixed, user_attrs={"defaults": True})


def finished_count(study: Any) -> int:
    """Trials that count against the budget (all but WAITING/RUNNING ones)."""
    import optuna

    done = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED,
            optuna.trial.TrialState.FAIL)
    return len(study.get_trials(deepcopy=False, states=done))


def trial_settings(cfg: Config, arch_name: str, params: dict[str, Any]) -> Settings:
    """The effective settings a trial trains with: ``train``'s own resolution of the
    architecture with the trial's point laid over it, for ``tune.epochs_per_trial`` epochs."""
    return resolve(cfg, arch_name, overrides=params, epochs=cfg.tune.epochs_per_trial)


class Objective:
    """Trains one trial's network on the (capped) training rows; returns best val accuracy.

    A trial's settings are ``config.resolve`` of the architecture with the trial's point as
    overrides and ``tune.epochs_per_trial`` epochs, built by ``build_trainable``: the same
    network, optimizer and schedule ``train`` would build for those values. The vectorized
    datasets are built once per worker and reused by every trial.
    """

    def __init__(self, cfg: Config, arch_name: str, prepared_dir: Path, vec_dir: Path) -> None:
        from newsrnn.runtime import setup_runtime

        setup_runtime(cfg.seed)
        from newsrnn.data import Datasets, build_front, idf_of, load_splits
        from newsrnn.vectorize import build_vectorizer, initial_embeddings

        self.cfg = cfg
        self.arch_name = arch_name
        own = trial_settings(cfg, arch_name, {})
        train_df, val_df, _ = load_splits(prepared_dir)
        if cfg.tune.max_train_rows and len(train_df) > cfg.tune.max_train_rows:
            train_df = train_df.sample(n=cfg.tune.max_train_rows, random_state=cfg.seed)
        self.vectorizer, max_length, self.vocab_size = build_front(own.arch, *build_vectorizer(vec_dir))
        self.embeddings = initial_embeddings(own.arch, vec_dir)
        self.data = Datasets(self.vectorizer, max_length, train_df, val_df, own)
        self.idf = idf_of(own.arch, self.vocab_size, self.data)


    def __call__(self, trial: Any) -> float:
        import keras
        import optuna

        from newsrnn.fit import fit_epochs
        from newsrnn.nn.trainable import build_trainable

        settings = trial_settings(self.cfg, self.arch_name, suggest(trial, self.cfg, self.cfg.arch(self.arch_name)))
        keras.backend.clear_session()
        gc.collect()
        self.data.batch_size = settings.batch_size
        network = build_trainable(settings, self.vocab_size, self.data.steps_per_epoch(),
                                  embeddings=self.embeddings, idf=self.idf)
        epochs_run = []

        def report(epoch: int, row: dict[str, float]) -> None:
            epochs_run.append(epoch)
            trial.report(row["val_accuracy"], epoch)
            if trial.should_prune():
                trial.set_user_attr("epochs_run", len(epochs_run))
                raise optuna.TrialPruned(f"pruned after epoch {epoch + 1}")

        # No early stopping inside a trial: the pruner decides when a trial stops.
        _, history, best = fit_epochs(network, self.data, settings.train.epochs,
                                      patience=settings.train.epochs, seed=self.cfg.seed,
                                      on_epoch_end=report)
        trial.set_user_attr("epochs_run", len(history))
        del network
        return float(history[best]["val_accuracy"])


def run_worker(cfg: Config, arch_name: str, storage_url: str, name: str, quota: int,
               prepared_dir: str | Path = "data/prepared",
               vec_dir: str | Path = "artifacts/vectorizer",
               objective: Callable[[Any], float] | None = None) -> int:
    """Run up to ``quota`` trials of study ``name``; returns how many this worker ran.

    ``objective`` defaults to training the architecture (``Objective``); any exception in a
    trial marks that trial FAIL and the worker goes on with the next one.
    """
    if quota <= 0:
        return 0
    study = create_study(cfg, name, storage_url)
    # A restarted worker (a retried pod, a re-run) must not push the study past its budget.
    quota = min(quota, max(0, cfg.tune.n_trials - finished_count(study)))
    if quota <= 0:
        return 0
    if objective is None:
        objective = Objective(cfg, arch_name, Path(prepared_dir), Path(vec_dir))
    before = len(study.get_trials(deepcopy=False))
    from newsrnn.progress import TrialBar

    study.optimize(objective, n_trials=quota, timeout=cfg.tune.timeout_s, catch=(Exception,),
                   gc_after_trial=True, callbacks=[TrialBar(arch_name, quota)])
    return len(study.get_trials(deepcopy=False)) - before


def _worker_entry(cfg_dict: dict[str, Any], arch_name: str, storage_url: str, name: str, quota: int,
                  prepared_dir: str, vec_dir: str) -> int:
    from newsrnn.config import config_from_dict

    return run_worker(config_from_dict(cfg_dict), arch_name, storage_url, name, quota, prepared_dir,
                      vec_dir)


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


def finalize(cfg: Config, arch_name: str, storage_url: str, name: str,
             out_path: str | Path, plots_dir: str | Path) -> dict[str, Any]:
    """Write the best params (``artifacts/tuned/<arch>.yaml``), plots and the MLflow runs."""
    import optuna

    from newsrnn.tracking import Tracker

    study = create_study(cfg, name, storage_url)
    trials = study.get_trials(deepcopy=False)
    states = {s.name: sum(1 for t in trials if t.state == s) for s in optuna.trial.TrialState}
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE
                and t.value is not None and math.isfinite(t.value)]
    saved_epochs = sum(cfg.tune.epochs_per_trial - int(t.user_attrs.get("epochs_run", 0))
                       for t in trials if t.state == optuna.trial.TrialState.PRUNED)
    result: dict[str, Any] = {
        "arch": arch_name, "study": name, "storage": redact(storage_url),
        "n_trials": len(trials), "states": {k: v for k, v in states.items() if v},
        "pruned_epochs_saved": saved_epochs,
    }
    if complete:
        best = max(complete, key=lambda t: t.value)
        result.update(params=dict(best.params), best_value=float(best.value), best_trial=best.number)
    else:
        result.update(params={}, best_value=None, best_trial=None,
                      note="no completed trial: the architecture's own params are used")
    plots = _plots(study, Path(plots_dir)) if len(trials) else []
    write_yaml(out_path, result)

    tracker = Tracker(cfg.tracking_uri(), cfg.mlflow.experiment, cfg.mlflow.enabled)
    parent = tracker.start(run_name=f"tune-{arch_name}", tags={"arch": arch_name, "stage": "tune",
                                                              "study": name})
    if parent:
        tracker.log_params({"arch": arch_name, "n_trials_budget": cfg.tune.n_trials,
                            "epochs_per_trial": cfg.tune.epochs_per_trial, "study": name})
        if result["best_value"] is not None:
            tracker.log_metrics({"best_val_accuracy": result["best_value"]})
            tracker.log_params({f"best.{k}": v for k, v in result["params"].items()})
        tracker.log_metrics({"pruned_epochs_saved": saved_epochs, "n_trials": len(trials)})
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
    """Run the study for ``arch_name`` with ``workers`` local processes, then finalize it."""
    out_path = Path(out_path or f"artifacts/tuned/{arch_name}.yaml")
    plots_dir = Path(plots_dir or f"artifacts/tuned/{arch_name}_plots")
    cfg.arch(arch_name)
    if workers < 1:
        raise UsageError(f"--workers: expected an integer >= 1, got {workers}")
    if cfg.tune.n_trials == 0:
        plots_dir.mkdir(parents=True, exist_ok=True)
        result = {"arch": arch_name, "params": {}, "best_value": None, "n_trials": 0,
                  "note": "tuning off (tune.n_trials: 0): the architecture's own params are used"}
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
    remaining = max(0, cfg.tune.n_trials - finished_count(study))
    quotas = [q for q in split_quota(remaining, workers) if q > 0]
    print(f"tune: {arch_name}: study {name} at {redact(url)}; {remaining} trial(s) to run "
          f"on {len(quotas)} worker(s)")
    if len(quotas) == 1:
        run_worker(cfg, arch_name, url, name, quotas[0], prepared_dir, vec_dir)
    elif quotas:
        import concurrent.futures
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(len(quotas), mp_context=ctx) as pool:
            futures = [pool.submit(_worker_entry, config_to_dict(cfg), arch_name, url, name, q,
                                   str(prepared_dir), str(vec_dir)) for q in quotas]
            for i, f in enumerate(futures):
                try:
                    f.result()
                except Exception as exc:  # a dead worker must not lose the others' trials
                    print(f"tune: worker {i} failed ({type(exc).__name__}: {exc}); the study stays usable")
    result = finalize(cfg, arch_name, url, name, out_path, plots_dir)
    print(f"tune: {arch_name}: best {result.get('best_value')} with {result.get('params')}")
    return result
