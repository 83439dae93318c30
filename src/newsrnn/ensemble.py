"""Stage ``ensemble``: average the class probabilities of several trained architectures.

Recurrent networks trained on 32k texts disagree on many borderline articles; the mean of their
probabilities is right more often than any one of them. The ensemble is one more candidate
(``artifacts/ensemble``), exported like the others (raw text in, 4 probabilities out), evaluated
on the same splits (``metrics/ensemble.json``) and made champion only if it wins on validation.
With no members listed (``ensemble: []``) the stage writes a "skipped" record and register
ignores it.

With tuning on (``tune.n_trials`` > 0, ``tune.ensemble_search``), which models to average is
tuned too: every subset of the trained models reading the members' text is scored on val and
the best replaces the configured ``ensemble`` only if it beats it (``train.json`` records the
search). Test accuracy is never looked at.

Members must share the vectorizer (they do when trained in one pipeline) and read the same text.
"""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path
from typing import Any

from newsrnn.config import Config
from newsrnn.errors import ArtifactError
from newsrnn.fileio import atomic_dir

NAME = "ensemble"


def member_dirs(cfg: Config, models_root: str | Path = "artifacts/models") -> list[Path]:
    """The model directories of ``cfg.ensemble``, each checked to exist."""
    dirs = [Path(models_root) / name for name in cfg.ensemble]
    for d in dirs:
        if not (d / "train.json").exists():
            raise ArtifactError(f"{d}: no trained model; run `newsrnn train {d.name}` first "
                                "(or remove it from `ensemble` in params.yaml)")
    return dirs


def _front_kind(model: Any) -> str:
    """``words`` (the shared TextVectorization), ``chars`` (a CharNgramIds front end),
    ``joined`` (words then char n-grams: a char branch's ``JoinedFront``) or ``word_ngrams``
    (a WordNgramIds front end)."""
    from newsrnn.nn.layers import WordNgramIds
    from newsrnn.nn.networks import JoinedFront, is_char_front

    if JoinedFront.from_model(model) is not None:
        return "joined"
    front = model.get_layer("vectorizer")
    if isinstance(front, WordNgramIds):
        return "word_ngrams"
    return "chars" if is_char_front(front) else "words"


def _word_settings(vec: Any, guard: Any) -> dict[str, Any]:
    return {"vocabulary": vec.get_vocabulary(), "max_length": guard.max_length,
            "standardize": str(vec.get_config().get("standardize"))}


def _char_settings(front: Any) -> dict[str, Any]:
    return {k: v for k, v in front.get_config().items() if k in ("buckets", "min_n", "max_n", "max_chars")}


def _hashed_word_settings(front: Any) -> dict[str, Any]:
    return {k: v for k, v in front.get_config().items() if k in ("buckets", "max_n", "max_words")}


def _front_settings(model: Any) -> dict[str, Any]:
    """What two members of one front kind must agree on to share their front end."""
    from newsrnn.nn.networks import JoinedFront

    kind = _front_kind(model)
    if kind == "joined":
        joined = JoinedFront.from_model(model)
        return {**_word_settings(joined.words, joined.word_guard), **_char_settings(joined.chars)}
    vec, guard = model.get_layer("vectorizer"), model.get_layer("guard_ids")
    if kind == "word_ngrams":
        return _hashed_word_settings(vec)
    return _word_settings(vec, guard) if kind == "words" else _char_settings(vec)


def build_ensemble(models: list[Any]) -> Any:
    """One raw-text model from exported text models: the mean of their class probabilities.

    Members that read words share the first one's vectorizer; their networks are wrapped in an
    inner ``ensemble_network`` (ids -> probabilities), so an all-word ensemble has the shape of a
    single architecture: vectorizer, guard, network. Members with a char branch (``joined``)
    form the next part, members that read only character n-grams the next, members that hash
    their own word n-grams (``word_ngrams``) the last; a part after the
    first gets renamed copies of its front layers (``guard_ids_1``, ``char_vectorizer_1``,
    ``join_ids_1``, ``vectorizer_2`` ...; the word vectorizer, with its vocabulary, is shared)
    and its own ``ensemble_network_K``. A ``mean_probs`` layer weighs each part's mean by its
    number of members: the plain mean over all members.
    """
    import keras

    from newsrnn.nn import layers
    from newsrnn.nn.networks import JoinedFront, guard_layer, parts_mean

    groups: dict[str, list[Any]] = {}
    for m in models:
        groups.setdefault(_front_kind(m), []).append(m)
    for kind, members in groups.items():
        ref = _front_settings(members[0])
        for m in members[1:]:
            got = _front_settings(m)
            for key in ref:
                if got[key] != ref[key]:
                    what = "another vocabulary" if key == "vocabulary" else f"another {key}"
                    raise ArtifactError(f"{m.layers[-1].name}: trained with {what} than {members[0].layers[-1].name}; "
                                        f"ensemble members reading {kind} must share the vectorizer "
                                        "(re-train them in one pipeline run)")
    if "words" in groups and "joined" in groups:
        words, joined = _front_settings(groups["words"][0]), _front_settings(groups["joined"][0])
        for key in ("vocabulary", "max_length", "standardize"):
            if words[key] != joined[key]:
                raise ArtifactError(f"{groups['joined'][0].layers[-1].name}: trained with another {key} than "
                                    f"{groups['words'][0].layers[-1].name}; ensemble members must share the "
                                    "word vectorizer (re-train them in one pipeline run)")
    text = keras.Input(shape=(), dtype="string", name="text")
    parts, counts = [], []
    word_vec = None  # the word vectorizer once a part has it: shared, not copied
    for i, kind in enumerate(k for k in ("words", "joined", "chars", "word_ngrams") if k in groups):
        members, sfx = groups[kind], "" if i == 0 else f"_{i}"
        ids = keras.Input(shape=(None,), dtype="int64", name=f"token_ids{sfx}")
        outputs = [m.layers[-1](ids) for m in members]
        mean = outputs[0] if len(outputs) == 1 else keras.layers.Average(name=f"mean_probs{sfx}")(outputs)
        network = keras.Model(ids, mean, name=f"ensemble_network{sfx}")
        first = members[0]
        if kind == "joined":
            own = JoinedFront.from_model(first)
            if i == 0:
                front = own
            else:  # fresh, renamed layers (names are unique in one model); the vocabulary is shared
                chars = type(own.chars).from_config({**own.chars.get_config(), "name": f"char_vectorizer{sfx}"})
                front = JoinedFront(word_vec or own.words, guard_layer(own.word_length, name=f"guard_ids{sfx}"),
                                    chars, guard_layer(None, name=f"char_guard_ids{sfx}"),
                                    layers.JoinIds(own.word_length, name=f"join_ids{sfx}"))
            word_vec = word_vec or front.words
            parts.append(network(front(text)))
        else:
            if i == 0:
                vec, guard = first.get_layer("vectorizer"), first.get_layer("guard_ids")
                word_vec = vec if kind == "words" else None
            else:  # fresh, renamed copies: layer names must be unique in one model (char fronts hold no weights)
                front = first.get_layer("vectorizer")
                vec = type(front).from_config({**front.get_config(), "name": f"vectorizer{sfx}"})
                guard = guard_layer(first.get_layer("guard_ids").max_length, name=f"guard_ids{sfx}")
            parts.append(network(guard(vec(text))))
        counts.append(len(members))
    out = parts[0] if len(parts) == 1 else parts_mean(tuple(counts))(parts)
    return keras.Model(text, out, name="newsrnn_ensemble")


def pool_dirs(cfg: Config, models_root: str | Path = "artifacts/models") -> dict[str, Path]:
    """Every trained model of ``models``: what a search may pick from (``ensemble`` keeps those
    reading the members' text)."""
    return {name: Path(models_root) / name for name in cfg.models
            if (Path(models_root) / name / "train.json").exists()}


def search_members(cfg: Config, pool: dict[str, Path], prepared_dir: str | Path) -> dict[str, Any]:
    """The subset of ``pool`` (two or more) whose mean probability is most accurate on val.

    Every subset is tried (Optuna's brute-force sampler: one include/leave-out choice per model);
    the configured ``ensemble`` is replaced only by a subset that beats it by more than
    ``tune.min_val_gain`` (gains below that are within the noise of the validation split).
    """
    import numpy as np
    import optuna

    from newsrnn.data import load_splits, texts_of
    from newsrnn.predictor import Predictor

    _, val_df, _ = load_splits(prepared_dir)
    names = sorted(pool)
    texts = list(texts_of(val_df, cfg.arch(cfg.ensemble[0])))
    probs = {n: Predictor.from_path(pool[n], max_batch=len(texts)).predict_proba(texts) for n in names}
    labels = val_df["label"].to_numpy()

    def accuracy(members: list[str]) -> float:
        return float(np.mean(np.mean([probs[m] for m in members], axis=0).argmax(1) == labels))

    def objective(trial: Any) -> float:
        members = [n for n in names if trial.suggest_categorical(n, [0, 1])]
        if len(members) < 2:
            raise optuna.TrialPruned("an ensemble needs two members")
        return accuracy(members)

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with warnings.catch_warnings():  # BruteForceSampler is marked experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        sampler = optuna.samplers.BruteForceSampler(seed=cfg.seed)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.optimize(objective, n_trials=2 ** len(names))
    configured = [m for m in cfg.ensemble if m in pool]
    base = accuracy(configured) if len(configured) >= 2 else -1.0
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    best = max(done, key=lambda t: (t.value, -sum(t.params.values()))) if done else None
    if best is None or best.value - base <= cfg.tune.min_val_gain:
        return {"members": configured, "val_accuracy": base, "configured_val_accuracy": base,
                "searched": len(done), "kept_configured": True}
    return {"members": [n for n in names if best.params[n]], "val_accuracy": float(best.value),
            "configured_val_accuracy": base, "searched": len(done), "kept_configured": False}


def ensemble(cfg: Config, models_root: str | Path = "artifacts/models",
             out_dir: str | Path = "artifacts/ensemble", dirs: list[Path] | None = None,
             pool: dict[str, Path] | None = None, prepared_dir: str | Path = "data/prepared") -> dict[str, Any]:
    """Build and save the ensemble model (model.keras, train.json, empty history.json).

    ``dirs`` overrides where the members are (Kubeflow hands them over as artifacts). With tuning
    on (``tune.n_trials`` > 0 and ``tune.ensemble_search``), the members are searched among
    those of ``pool`` (default: every trained model) that read the members' text, on val.
    """
    from newsrnn.modelio import load_text_model, save_text_model
    from newsrnn.tracking import Tracker, git_commit

    out_dir = Path(out_dir)
    if not cfg.ensemble:
        with atomic_dir(out_dir) as tmp:
            (tmp / "train.json").write_text(json.dumps({"arch": NAME, "skipped": True}) + "\n")
        print("ensemble: no members listed in params.yaml; skipped")
        return {"arch": NAME, "skipped": True}
    t0 = time.perf_counter()
    selection: dict[str, Any] | None = None
    if cfg.tune.n_trials > 0 and cfg.tune.ensemble_search:
        text = cfg.arch(cfg.ensemble[0]).text  # one text input feeds every member
        pool = {a: d for a, d in (pool if pool is not None else pool_dirs(cfg, models_root)).items()
                if cfg.arch(a).text == text}
        selection = search_members(cfg, pool, prepared_dir)
        dirs = [pool[m] for m in selection["members"]]
        verdict = ("kept the configured members" if selection["kept_configured"] else
                   f"beats the configured members ({selection['configured_val_accuracy']:.4f})")
        print(f"ensemble: searched {selection['searched']} subsets of {', '.join(sorted(pool))} on val: "
              f"{', '.join(selection['members'])} ({selection['val_accuracy']:.4f}) {verdict}")
    dirs = dirs if dirs is not None else member_dirs(cfg, models_root)
    summaries = [json.loads((d / "train.json").read_text()) for d in dirs]
    model = build_ensemble([load_text_model(d) for d in dirs])
    tracker = Tracker(cfg.tracking_uri(), cfg.mlflow.experiment, cfg.mlflow.enabled)
    tracker.start(run_name=NAME, tags={"arch": NAME, "git_commit": git_commit(), "stage": "ensemble",
                                       "data_sha256": summaries[0].get("data_sha256", "unknown")})
    members = [s["arch"] for s in summaries]
    if selection is not None:
        tracker.log_params({"members_searched": True, "kept_configured": selection["kept_configured"]})
    tracker.log_params({"members": ",".join(members),
                        **{f"member.{s['arch']}.run_id": s.get("run_id") or "" for s in summaries},
                        **{f"member.{s['arch']}.model_sha256": s["model_sha256"] for s in summaries}})
    summary = {
        "arch": NAME, "members": members, "epochs": 0, "best_epoch": 0,
        "train_seconds": sum(s["train_seconds"] for s in summaries),
        "samples_per_second": 0.0, "n_parameters": int(model.layers[-1].count_params()),
        "train_rows": summaries[0].get("train_rows"), "run_id": tracker.run_id,
        "data_sha256": summaries[0].get("data_sha256"), "selection": selection,
    }
    with atomic_dir(out_dir) as tmp:
        summary["model_sha256"] = save_text_model(model, tmp)
        (tmp / "history.json").write_text("[]\n")
        (tmp / "train.json").write_text(json.dumps(summary, indent=2) + "\n")
    tracker.end()
    print(f"ensemble: mean of {', '.join(members)} ({time.perf_counter() - t0:.1f}s) -> {out_dir}")
    return summary


def run_stage(cfg: Config, models_root: str | Path = "artifacts/models", out_dir: str | Path = "artifacts/ensemble",
              prepared_dir: str | Path = "data/prepared", metrics_path: str | Path = f"metrics/{NAME}.json",
              plots_dir: str | Path = f"plots/{NAME}", dirs: list[Path] | None = None,
              pool: dict[str, Path] | None = None, record_path: str | Path | None = None) -> dict[str, Any]:
    """``newsrnn ensemble``: build, then evaluate like any architecture (or record the skip)."""
    from newsrnn.evaluate import evaluate
    from newsrnn.fileio import write_json

    built = ensemble(cfg, models_root, out_dir, dirs, pool, prepared_dir)
    if built.get("skipped"):
        write_json(metrics_path, {"arch": NAME, "skipped": True})
        if record_path is not None:
            write_json(record_path, {"skipped": True})
        return built
    return evaluate(cfg, NAME, prepared_dir, model_dir=out_dir, metrics_path=metrics_path, plots_dir=plots_dir,
                    record_path=record_path)
