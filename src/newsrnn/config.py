"""Typed, strict configuration loaded from ``params.yaml``.

Every section is a frozen dataclass. Loading rejects unknown keys, wrong types and impossible
values with the full key path in the message (``train.epochs: expected an integer >= 1, got -3``),
so a typo in ``params.yaml`` never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from newsrnn.errors import ConfigError

# wide is no RNN: a TF-IDF-weighted bag of words and hashed bigrams, the linear model a user would
# otherwise pick instead; it is cheap, and as an ensemble member it errs differently from the RNNs.
# wide_char is the same over hashed character n-grams of the raw text (case and punctuation kept
# apart from the word vocabulary): the member that errs most differently. wide_word is NB-SVM over
# hashed word 1- to 3-grams of the raw text (every word, punctuation as words), solved exactly.
KNOWN_ARCHS = ("rnn_title", "rnn", "lstm", "bilstm", "gru", "cnn", "wide", "wide_char", "wide_word")
CLASS_NAMES = ("World", "Sports", "Business", "Sci/Tech")
# The cells that make a network recurrent (``conv`` is a word CNN, ``none`` a linear model).
RECURRENT_CELLS = ("simple_rnn", "lstm", "gru")


@dataclass(frozen=True)
class DataConfig:
    """Where the corpus comes from and how it is split."""

    sources: tuple[Literal["local", "tfds", "url"], ...] = ("local", "tfds", "url")
    local_dir: str | None = None
    url: str = "https://s3.amazonaws.com/fast-ai-nlp/ag_news_csv.tgz"
    url_sha256: str | None = None
    val_fraction: float = 0.1
    max_train_rows: int | None = None
    max_reject_fraction: float = 0.0
    max_reported_errors: int = 20
    leakage: Literal["error", "drop"] = "drop"


@dataclass(frozen=True)
class VectorizerConfig:
    """TextVectorization settings."""

    max_tokens: int = 20000
    max_length: int | None = 128
    adapt_fields: tuple[Literal["title", "description"], ...] = ("title", "description")
    adapt_rows: int | None = None
    # > 0: also pre-train word vectors of this size on the training text (PPMI + SVD, the
    # word2vec objective solved directly; see embeddings.py). Architectures opt in with
    # pretrained_embeddings: true and take the leading embed_dim components.
    pretrain_dim: int = 0
    pretrain_window: int = 5
    # How text becomes tokens. lower_and_strip_punctuation is Keras' default (the notebook's);
    # lower_split_punctuation keeps every punctuation mark as a token of its own ("(reuters)" ->
    # "( reuters )", "$4.5" -> "$ 4 . 5"): news wires, money and percentages mark topics, and
    # TF-IDF + logistic regression gains from them (measured in benchmarks/README.md).
    standardize: Literal["lower_and_strip_punctuation", "lower_split_punctuation"] = "lower_and_strip_punctuation"


@dataclass(frozen=True)
class ArchConfig:
    """One architecture's network. ``text`` picks the input fields."""

    # none: no embedding or recurrent layer at all; the n-gram branch (ngram_buckets > 0) is the
    # whole network (with ngram_weighting: tfidf, a linear model over TF-IDF features).
    # conv: no recurrence either: one convolution of `units` filters per width in conv_widths
    # over the word vectors, each max-pooled over time (needs mask_zero and pooling: max).
    cell: Literal["simple_rnn", "lstm", "gru", "conv", "none"] = "lstm"
    text: Literal["title", "title_description"] = "title_description"
    embed_dim: int = 64
    units: int = 16
    layers: int = 1
    bidirectional: bool = False
    mask_zero: bool = True
    dropout: float = 0.0
    # Features read from the recurrent outputs: the last state (the notebook's), or max / mean /
    # both (max_mean, concatenated) over the unmasked time steps.
    pooling: Literal["last", "max", "mean", "max_mean"] = "last"
    embed_dropout: float = 0.0          # drops whole embedding channels (SpatialDropout1D)
    conv_widths: tuple[int, ...] = (2, 3, 4)  # cell conv: the window widths, in words
    # > 0: a fastText-style side branch; hashed word bigrams (and the words) are embedded in
    # ngram_dim dimensions, averaged, and concatenated with the recurrent features.
    ngram_buckets: int = 0
    ngram_dim: int = 32
    ngram_max: int = 2                  # the longest word n-gram hashed: 2 = bigrams, 3 = and trigrams
    # How the weights are fitted: adam (the epoch loop) or, for a linear model (cell: none,
    # ngram_dim 4, tfidf or nb weighting), lbfgs: one-vs-rest L2 logistic regression solved
    # exactly (convex.py), l2_c the inverse regularisation strength (scikit-learn's C).
    solver: Literal["adam", "lbfgs"] = "adam"
    l2_c: float = 4.0
    # How the branch averages its n-grams: mean (each counts the same) or tfidf (each weighted by
    # its inverse document frequency in the training split, then L2-normalised, as TF-IDF does),
    # or nb: tfidf, and each of the ngram_dim (= 4, one per class) dimensions also scaled by the
    # n-gram's Naive-Bayes log-count ratio for that class (NB-SVM, Wang & Manning 2012).
    ngram_weighting: Literal["mean", "tfidf", "nb"] = "mean"
    pretrained_embeddings: bool = False  # start from the vectorizer's pre-trained word vectors
    # What the network reads: the shared word vocabulary's token ids, or (with cell: none) hashed
    # character n-grams of the lower-cased raw text, n from char_ngram_min to char_ngram_max, into
    # ngram_buckets ids (only the first max_chars characters count), or hashed word n-grams of the
    # raw text, n from 1 to ngram_max, punctuation marks as words, no vocabulary and so no word
    # left out (only the first max_words words count).
    tokens: Literal["words", "char_ngrams", "word_ngrams"] = "words"
    max_words: int = 256
    char_ngram_min: int = 2
    char_ngram_max: int = 5
    max_chars: int = 1000
    # > 0 (tokens: words): a char branch besides the words. The same hashed char n-grams
    # (char_ngram_min..char_ngram_max of the first max_chars characters, into char_ngram_buckets
    # ids) are embedded in char_ngram_dim dimensions, TF-IDF-weighted like the n-gram branch,
    # and concatenated with the other features: what wide_char adds to an ensemble, in one network.
    char_ngram_dim: int = 0
    char_ngram_buckets: int = 524288
    # null = the train.* value; set to give one architecture its own schedule.
    batch_size: int | None = None
    learning_rate: float | None = None
    epochs: int | None = None
    lr_schedule: Literal["constant", "cosine"] | None = None
    early_stopping_patience: int | None = None
    # Length-sorted batches (bucket) train RNNs fast; a bag-of-n-grams model learns better from
    # mixed batches (measured for wide in benchmarks/README.md).
    batching: Literal["bucket", "padded"] | None = None
    # Trials of this architecture's study: null = tune.n_trials; 0 = not tuned. Sized by what a
    # trial costs (a trial is a full training run). tune.n_trials: 0 turns every study off.
    tune_trials: int | None = None


@dataclass(frozen=True)
class TrainConfig:
    """How every architecture is trained."""

    epochs: int = 5
    batch_size: int = 64
    learning_rate: float = 0.002
    early_stopping_patience: int = 1
    batching: Literal["bucket", "padded"] = "bucket"
    shuffle: bool = True
    max_steps_per_epoch: int | None = None
    deterministic: bool = False
    mixed_precision: bool = False
    xla: bool = False
    # constant, or cosine: decay from the learning rate to 5% of it over all epochs' steps.
    lr_schedule: Literal["constant", "cosine"] = "constant"
    weight_decay: float = 0.0           # > 0: AdamW with this decoupled decay


@dataclass(frozen=True)
class TuneConfig:
    """Optuna search. ``n_trials: 0`` turns tuning off."""

    n_trials: int = 0
    # Fidelity of a trial. null/null = full: the rows and epochs `train` uses, so the best trial
    # is measured exactly as the trained model will be (smaller values make a cheaper proxy).
    epochs_per_trial: int | None = None
    max_train_rows: int | None = None
    # Validation checks per epoch the pruner sees (the rungs of successive halving): a trial
    # that trails the others' median at the same point of training stops there.
    checks_per_epoch: int = 4
    # A tuned result replaces the defaults (and a searched ensemble the configured members) only
    # if it is better on val by more than this: smaller gains are within the split's noise.
    min_val_gain: float = 0.0
    # With tuning on, the ensemble stage also searches (exhaustively, with Optuna) which trained
    # models reading the members' text to average, on val; `ensemble` is kept unless beaten by more than min_val_gain.
    ensemble_search: bool = True
    storage: str | None = None
    timeout_s: int | None = None
    batch_size: tuple[int, ...] = (32, 64, 128)
    embed_dim: tuple[int, ...] = (32, 64, 128)
    units: tuple[int, ...] = (16, 32, 64)
    learning_rate: tuple[float, float] = (0.0005, 0.005)
    dropout: tuple[float, float] = (0.0, 0.4)
    l2_c: tuple[float, float] = (0.5, 16.0)  # solver lbfgs architectures: their only tuned value
    pruning: bool = True


@dataclass(frozen=True)
class MlflowConfig:
    """Tracking and registry settings. The URI can be overridden by MLFLOW_TRACKING_URI."""

    tracking_uri: str = "sqlite:///mlflow.db"
    experiment: str = "newsrnn"
    registered_model: str = "agnews-rnn"
    enabled: bool = True


@dataclass(frozen=True)
class GoldenExample:
    """A raw headline the champion must classify as ``label``."""

    text: str
    label: Literal["World", "Sports", "Business", "Sci/Tech"]


@dataclass(frozen=True)
class PromoteConfig:
    """The gate ``register`` applies before moving ``@champion`` (see register.py)."""

    # The candidate's validation accuracy must exceed the current champion's by more than this.
    min_val_gain: float = 0.0
    # p50 of one text per call through the logged pyfunc model, in milliseconds.
    latency_budget_ms: float = 100.0
    golden: tuple[GoldenExample, ...] = ()


@dataclass(frozen=True)
class KfpConfig:
    """Kubeflow settings (image, accelerators, resources)."""

    base_image: str = "ghcr.io/newsrnn/newsrnn:0.1.0"
    experiment: str = "newsrnn"
    run_name: str = "newsrnn"
    accelerator_type: str = "nvidia.com/gpu"
    accelerator_limit: int = 1
    tune_workers: int = 2
    # Pods a fan-out runs at once: architectures side by side, tuning workers per architecture.
    # Bounds how many GPUs one run can hold (arch_parallelism x tune_parallelism at most).
    arch_parallelism: int = 4
    tune_parallelism: int = 4


@dataclass(frozen=True)
class Config:
    """The whole params.yaml."""

    seed: int = 42
    data: DataConfig = field(default_factory=DataConfig)
    vectorizer: VectorizerConfig = field(default_factory=VectorizerConfig)
    models: tuple[str, ...] = KNOWN_ARCHS
    ensemble: tuple[str, ...] = ()
    architectures: dict[str, ArchConfig] = field(default_factory=dict)
    train: TrainConfig = field(default_factory=TrainConfig)
    tune: TuneConfig = field(default_factory=TuneConfig)
    mlflow: MlflowConfig = field(default_factory=MlflowConfig)
    kfp: KfpConfig = field(default_factory=KfpConfig)
    promote: PromoteConfig = field(default_factory=PromoteConfig)

    def arch(self, name: str) -> ArchConfig:
        """The architecture section for ``name`` (error if absent)."""
        if name not in self.architectures:
            raise ConfigError(
                f"architectures.{name}: no section for this architecture; "
                f"known: {', '.join(sorted(self.architectures))}"
            )
        return self.architectures[name]

    def candidate(self, name: str) -> ArchConfig:
        """The section evaluate reads for a candidate model: an architecture's own, or for
        ``ensemble`` one that names the text its members read."""
        if name == "ensemble":
            if not self.ensemble:
                raise ConfigError("ensemble: no members listed, so there is no ensemble to evaluate")
            return ArchConfig(text=self.arch(self.ensemble[0]).text)
        return self.arch(name)

    def trials_for(self, name: str) -> int:
        """The trial budget of ``name``'s study: 0 when tuning is off or the architecture opts out."""
        own = self.arch(name).tune_trials
        return 0 if self.tune.n_trials == 0 else (self.tune.n_trials if own is None else own)

    def tracking_uri(self) -> str:
        """MLflow tracking URI: MLFLOW_TRACKING_URI wins over params."""
        return os.environ.get("MLFLOW_TRACKING_URI") or self.mlflow.tracking_uri


# Value checks beyond types: (predicate, human description of what is right).
_CHECKS: dict[str, tuple[typing.Callable[[Any], bool], str]] = {
    "seed": (lambda v: v >= 0, "an integer >= 0"),
    "data.val_fraction": (lambda v: 0 < v < 1, "a number between 0 and 1 (exclusive)"),
    "data.max_train_rows": (lambda v: v is None or v >= 8, "null or an integer >= 8"),
    "data.max_reject_fraction": (lambda v: 0 <= v < 1, "a number in [0, 1)"),
    "data.max_reported_errors": (lambda v: v >= 1, "an integer >= 1"),
    "vectorizer.max_tokens": (lambda v: v >= 3, "an integer >= 3"),
    "vectorizer.max_length": (lambda v: v is None or v >= 1, "null or an integer >= 1"),
    "vectorizer.adapt_rows": (lambda v: v is None or v >= 1, "null or an integer >= 1"),
    "vectorizer.pretrain_dim": (lambda v: v >= 0, "an integer >= 0 (0 = no pre-trained vectors)"),
    "vectorizer.pretrain_window": (lambda v: v >= 1, "an integer >= 1"),
    "train.epochs": (lambda v: v >= 1, "an integer >= 1"),
    "train.batch_size": (lambda v: v >= 1, "an integer >= 1"),
    "train.learning_rate": (lambda v: v > 0, "a number > 0"),
    "train.early_stopping_patience": (lambda v: v >= 0, "an integer >= 0"),
    "train.weight_decay": (lambda v: 0 <= v < 1, "a number in [0, 1)"),
    "tune.n_trials": (lambda v: v >= 0, "an integer >= 0"),
    "tune.min_val_gain": (lambda v: 0 <= v < 1, "a number >= 0 and < 1 (a fraction of val accuracy)"),
    "tune.epochs_per_trial": (lambda v: v is None or v >= 1, "null or an integer >= 1"),
    "tune.max_train_rows": (lambda v: v is None or v >= 8, "null or an integer >= 8"),
    "tune.checks_per_epoch": (lambda v: 1 <= v <= 20, "an integer from 1 to 20"),
    "kfp.tune_workers": (lambda v: v >= 1, "an integer >= 1"),
    "kfp.accelerator_limit": (lambda v: v >= 0, "an integer >= 0"),
    "kfp.arch_parallelism": (lambda v: v >= 1, "an integer >= 1"),
    "kfp.tune_parallelism": (lambda v: v >= 1, "an integer >= 1"),
    "promote.min_val_gain": (lambda v: -1 < v < 1, "a number between -1 and 1 (accuracy points as a fraction)"),
    "promote.latency_budget_ms": (lambda v: v > 0, "a number > 0 (milliseconds)"),
}
_ARCH_CHECKS: dict[str, tuple[typing.Callable[[Any], bool], str]] = {
    "embed_dim": (lambda v: v >= 1, "an integer >= 1"),
    "units": (lambda v: v >= 1, "an integer >= 1"),
    "layers": (lambda v: v >= 1, "an integer >= 1"),
    "dropout": (lambda v: 0 <= v < 1, "a number in [0, 1)"),
    "embed_dropout": (lambda v: 0 <= v < 1, "a number in [0, 1)"),
    "ngram_buckets": (lambda v: v >= 0, "an integer >= 0 (0 = no n-gram branch)"),
    "ngram_dim": (lambda v: v >= 1, "an integer >= 1"),
    "ngram_max": (lambda v: v in (2, 3), "2 (bigrams) or 3 (bigrams and trigrams)"),
    "l2_c": (lambda v: v > 0, "a number > 0"),
    "char_ngram_min": (lambda v: v >= 1, "an integer >= 1"),
    "char_ngram_max": (lambda v: 1 <= v <= 8, "an integer from 1 to 8"),
    "max_chars": (lambda v: v >= 1, "an integer >= 1"),
    "max_words": (lambda v: v >= 1, "an integer >= 1"),
    "char_ngram_dim": (lambda v: v >= 0, "an integer >= 0 (0 = no char branch)"),
    "char_ngram_buckets": (lambda v: v >= 1, "an integer >= 1"),
    "batch_size": (lambda v: v is None or v >= 1, "null or an integer >= 1"),
    "learning_rate": (lambda v: v is None or v > 0, "null or a number > 0"),
    "epochs": (lambda v: v is None or v >= 1, "null or an integer >= 1"),
    "tune_trials": (lambda v: v is None or v >= 0, "null or an integer >= 0"),
    "early_stopping_patience": (lambda v: v is None or v >= 0, "null or an integer >= 0"),
}


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is tuple:
        args = typing.get_args(tp)
        return f"a list of {_type_name(args[0])}"
    if tp is type(None):
        return "null"
    return {int: "an integer", float: "a number", str: "a string", bool: "true/false"}.get(
        tp, getattr(tp, "__name__", str(tp))
    )


def _coerce(value: Any, tp: Any, path: str) -> Any:
    """Check ``value`` against type ``tp``; return it in canonical form or raise ConfigError."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        errors = []
        for option in typing.get_args(tp):
            try:
                return _coerce(value, option, path)
            except ConfigError as exc:
                errors.append(exc)
        raise ConfigError(f"{path}: expected {_type_name(tp)}, got {value!r}")
    if tp is type(None):
        if value is None:
            return None
        raise ConfigError(f"{path}: expected null, got {value!r}")
    if origin is Literal:
        if value in typing.get_args(tp):
            return value
        raise ConfigError(f"{path}: expected {_type_name(tp)}, got {value!r}")
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{path}: expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{path}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"{path}: expected a list of {len(args)} values, got {value!r}")
        return tuple(_coerce(v, a, f"{path}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{path}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{path}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{path}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{path}: expected a string, got {value!r}")
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, path)
    raise ConfigError(f"{path}: unsupported type {tp}")  # pragma: no cover - programming error


def _build(cls: Any, raw: Any, path: str) -> Any:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path or 'params'}: expected a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(raw) - set(names))
    if unknown:
        where = f"{path}." if path else ""
        raise ConfigError(
            f"{where}{unknown[0]}: unknown key; allowed keys here: {', '.join(names)}"
        )
    kwargs = {}
    for name in names:
        if name not in raw:
            continue
        key = f"{path}.{name}" if path else name
        tp = hints[name]
        if name == "architectures" and cls is Config:
            kwargs[name] = _build_archs(raw[name], key)
            continue
        value = _coerce(raw[name], tp, key)
        check = (_ARCH_CHECKS.get(name) if cls is ArchConfig else _CHECKS.get(key))
        if check is not None and not check[0](value):
            raise ConfigError(f"{key}: expected {check[1]}, got {raw[name]!r}")
        kwargs[name] = value
    return cls(**kwargs)


def _build_archs(raw: Any, path: str) -> dict[str, ArchConfig]:
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of architecture name to settings")
    out = {}
    for name, section in raw.items():
        if name not in KNOWN_ARCHS:
            raise ConfigError(
                f"{path}.{name}: unknown architecture; known: {', '.join(KNOWN_ARCHS)}"
            )
        arch = out[name] = _build(ArchConfig, section, f"{path}.{name}")
        if arch.tokens != "words":
            if arch.cell != "none" or arch.ngram_buckets == 0 or arch.pretrained_embeddings:
                raise ConfigError(f"{path}.{name}.tokens: {arch.tokens} needs cell: none, ngram_buckets > 0 "
                                  "and no pretrained_embeddings (the n-gram bag is the whole network)")
            if arch.char_ngram_dim > 0:
                raise ConfigError(f"{path}.{name}.char_ngram_dim: a char branch is for tokens: words "
                                  f"(tokens {arch.tokens} reads its own n-grams); set it to 0")
        if arch.cell == "conv":
            if not arch.conv_widths or min(arch.conv_widths) < 1:
                raise ConfigError(f"{path}.{name}.conv_widths: list one or more window widths of at least 1 "
                                  f"word, got {list(arch.conv_widths)}")
            for key, ok, want in (("mask_zero", arch.mask_zero, "true (padding must not count in the max)"),
                                  ("pooling", arch.pooling == "max", "max (the convolutions are max-pooled over time)"),
                                  ("layers", arch.layers == 1, "1 (one bank of convolutions)"),
                                  ("bidirectional", not arch.bidirectional, "false (a convolution reads both ways)")):
                if not ok:
                    raise ConfigError(f"{path}.{name}.{key}: cell conv needs {key} {want}")
        if (arch.tokens == "char_ngrams" or arch.char_ngram_dim > 0) and arch.char_ngram_min > arch.char_ngram_max:
            raise ConfigError(f"{path}.{name}.char_ngram_min: {arch.char_ngram_min} is above "
                              f"char_ngram_max {arch.char_ngram_max}")
    return out


def config_from_dict(raw: Any) -> Config:
    """Build and validate a Config from a parsed params mapping."""
    cfg = _build(Config, raw, "")
    for i, name in enumerate(cfg.models):
        if name not in KNOWN_ARCHS:
            raise ConfigError(
                f"models[{i}]: unknown architecture {name!r}; known: {', '.join(KNOWN_ARCHS)}"
            )
        if name not in cfg.architectures:
            raise ConfigError(f"models[{i}]: {name!r} has no section under architectures")
    if len(set(cfg.models)) != len(cfg.models):
        raise ConfigError("models: an architecture is listed twice")
    if not cfg.models:
        raise ConfigError("models: list at least one architecture")
    sha = cfg.data.url_sha256
    if sha is not None and (len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha.lower())):
        raise ConfigError(f"data.url_sha256: expected 64 hex characters, got {sha!r}")
    if not cfg.data.sources:
        raise ConfigError("data.sources: list at least one of local, tfds, url")
    for i, name in enumerate(cfg.ensemble):
        if name not in cfg.models:
            raise ConfigError(f"ensemble[{i}]: {name!r} is not in models, so it is never trained")
    if len(set(cfg.ensemble)) != len(cfg.ensemble):
        raise ConfigError("ensemble: a member is listed twice")
    if len(cfg.ensemble) == 1:
        raise ConfigError("ensemble: list at least two members (or none, to turn it off)")
    texts = {cfg.architectures[n].text for n in cfg.ensemble}
    if len(texts) > 1:
        raise ConfigError(f"ensemble: members read different text fields ({', '.join(sorted(texts))}); "
                          "an ensemble takes one text, so pick members with the same `text`")
    for name in cfg.models:
        arch = cfg.architectures[name]
        if arch.cell == "none" and arch.ngram_buckets == 0:
            raise ConfigError(f"architectures.{name}.ngram_buckets: cell none has no recurrent layer, "
                              "so the n-gram branch is the whole network; set ngram_buckets > 0")
        if arch.cell == "none" and arch.pretrained_embeddings:
            raise ConfigError(f"architectures.{name}.pretrained_embeddings: cell none has no word "
                              "embedding to start from the pre-trained vectors; set it to false")
        if arch.solver == "lbfgs" and (arch.cell != "none" or arch.ngram_dim != 4 or arch.dropout > 0
                                       or arch.ngram_weighting == "mean"):
            raise ConfigError(f"architectures.{name}.solver: lbfgs fits a linear model: it needs cell none, "
                              "ngram_dim 4, dropout 0 and ngram_weighting tfidf or nb")
        if arch.ngram_weighting == "nb" and arch.ngram_buckets > 0 and arch.ngram_dim != 4:
            raise ConfigError(f"architectures.{name}.ngram_dim: ngram_weighting nb scales one dimension "
                              f"per class, so it needs ngram_dim 4 (the 4 classes), not {arch.ngram_dim}")
        if arch.char_ngram_dim > 0 and cfg.vectorizer.max_length is None:
            raise ConfigError(f"architectures.{name}.char_ngram_dim: a char branch needs a word cap "
                              "(the words fill a fixed number of columns before the char n-grams); "
                              "set vectorizer.max_length")
    dim = cfg.vectorizer.pretrain_dim
    if dim and dim >= cfg.vectorizer.max_tokens - 2:
        raise ConfigError(f"vectorizer.pretrain_dim: {dim} must be below vectorizer.max_tokens - 2 "
                          f"({cfg.vectorizer.max_tokens - 2})")
    for name in cfg.models:
        arch = cfg.architectures[name]
        if not arch.pretrained_embeddings:
            continue
        if arch.embed_dim > dim:
            raise ConfigError(f"architectures.{name}.embed_dim: {arch.embed_dim} is larger than "
                              f"vectorizer.pretrain_dim ({dim}), which pretrained_embeddings needs; "
                              "raise pretrain_dim or lower embed_dim")
        if cfg.tune.n_trials > 0 and max(cfg.tune.embed_dim) > dim:
            raise ConfigError(f"tune.embed_dim: {max(cfg.tune.embed_dim)} is larger than "
                              f"vectorizer.pretrain_dim ({dim}), which architectures.{name} "
                              "(pretrained_embeddings) needs")
    return cfg


def load_config(path: str | os.PathLike[str] = "params.yaml") -> Config:
    """Load ``params.yaml`` into a validated Config, or raise ConfigError naming the problem."""
    import yaml

    p = Path(path)
    if not p.exists():
        raise ConfigError(f"{p}: params file not found (run from the project root or pass --params)")
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{p}: not a text file (byte {exc.start} is not UTF-8); pass a params YAML file") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML: {' '.join(str(exc).split())}") from None
    try:
        return config_from_dict(raw)
    except ConfigError as exc:
        raise ConfigError(f"{p}: {exc}") from None


def config_to_dict(cfg: Any) -> Any:
    """Plain-dict form (lists instead of tuples) for YAML/JSON output and MLflow params."""
    if dataclasses.is_dataclass(cfg):
        return {f.name: config_to_dict(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}
    if isinstance(cfg, dict):
        return {k: config_to_dict(v) for k, v in cfg.items()}
    if isinstance(cfg, tuple):
        return [config_to_dict(v) for v in cfg]
    return cfg


# --------------------------------------------------------------------------- effective settings

# What a tuned file (artifacts/tuned/<arch>.yaml) may set: the search space of ``tune``.
TUNABLE = ("batch_size", "embed_dim", "units", "learning_rate", "dropout", "l2_c")


@dataclass(frozen=True)
class Settings:
    """Everything one architecture trains with: its section, the tuned values laid over it, and
    ``train`` with the architecture's own epochs / schedule / batching / patience.

    ``train``, ``tune`` and the benchmark all get these from :func:`resolve`, and build the
    network from them with ``nn.trainable.build_trainable``, so the three cannot drift apart.
    """

    name: str
    arch: ArchConfig
    train: TrainConfig
    batch_size: int
    learning_rate: float
    seed: int
    tuned: bool = False


def tuned_dir(tuned_file: str | os.PathLike[str]) -> Path:
    """The directory beside a tuned file (``artifacts/tuned/lstm.yaml`` -> ``artifacts/tuned/lstm``)
    that holds its plots and the chosen trial's network."""
    return Path(tuned_file).with_suffix("")


def read_tuned(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``params`` of a tuned file (``{}`` when tuning chose none), checked against TUNABLE."""
    import yaml

    p = Path(path)
    try:
        doc = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: not valid YAML ({type(exc).__name__}); delete it and re-run "
                          "`newsrnn tune`") from None
    params = doc.get("params") if isinstance(doc, dict) else None
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise ConfigError(f"{p}: params: expected a mapping of tuned values, got {type(params).__name__}")
    unknown = sorted(set(params) - set(TUNABLE))
    if unknown:
        raise ConfigError(f"{p}: params: unknown tuned parameter(s) {unknown}; tunable: {', '.join(TUNABLE)}")
    return params


def resolve(cfg: Config, arch_name: str, tuned: str | os.PathLike[str] | None = None,
            overrides: dict[str, Any] | None = None, epochs: int | None = None) -> Settings:
    """The effective settings of ``arch_name``: params, then the tuned file (if it exists), then
    ``overrides`` (a tuning trial's point, a benchmark's variant), checked like params.yaml.

    ``epochs`` replaces the epoch count (a tuning trial trains ``tune.epochs_per_trial``); the
    learning-rate schedule then spans those epochs.
    """
    arch = cfg.arch(arch_name)
    tuned_values = read_tuned(tuned) if tuned is not None and Path(tuned).exists() else {}
    layered = {**tuned_values, **(overrides or {})}
    if layered:
        merged = {**config_to_dict(arch), **layered}
        arch = _build_archs({arch_name: merged}, "architectures")[arch_name]
    t = cfg.train
    train = dataclasses.replace(
        t,
        epochs=epochs or arch.epochs or t.epochs,
        lr_schedule=arch.lr_schedule or t.lr_schedule,
        batching=arch.batching or t.batching,
        early_stopping_patience=(t.early_stopping_patience if arch.early_stopping_patience is None
                                 else arch.early_stopping_patience),
    )
    return Settings(name=arch_name, arch=arch, train=train, batch_size=arch.batch_size or t.batch_size,
                    learning_rate=arch.learning_rate or t.learning_rate, seed=cfg.seed,
                    tuned=bool(tuned_values))


# What each pipeline stage reads, as dvc.yaml lists it for the DVC stage (plus what the code reads
# beyond that: the study name hashes the vectorizer settings, and tracking stages need `mlflow`).
# A Kubeflow task gets only its slice, so its cache key changes only when something it reads does.
_STAGE_KEYS: dict[str, tuple[str, ...]] = {
    "fetch": ("data.sources", "data.local_dir", "data.url", "data.url_sha256", "data.max_reject_fraction",
              "data.max_reported_errors"),
    "prepare": ("seed", "data.val_fraction", "data.max_train_rows", "data.leakage"),
    "vectorize": ("vectorizer",),
    "tune": ("seed", "tune", "train", "vectorizer", "architectures.{arch}", "mlflow"),
    "train": ("seed", "train", "vectorizer.pretrain_dim", "architectures.{arch}", "mlflow"),
    "evaluate": ("architectures.{arch}.text", "mlflow"),
    "ensemble": ("ensemble", "models", "tune.n_trials", "tune.ensemble_search", "tune.min_val_gain",
                 "architectures.{models}.text", "mlflow"),
    "register": ("models", "ensemble", "architectures.{models}.text", "mlflow"),
    "tracking": ("mlflow",),
}
STAGES = tuple(_STAGE_KEYS)


def _is_local_store(uri: str | None) -> bool:
    """A store only this process's disk holds (SQLite, a file, a bare path, an Optuna journal)."""
    if not uri:
        return False
    return uri.startswith(("sqlite:", "file:", "journal:", "/", "./", "../", "~")) or "://" not in uri


def stage_params(cfg: Config, stage: str, arch: str | None = None) -> dict[str, Any]:
    """The part of ``cfg`` that ``stage`` reads, as a params mapping ``config_from_dict`` accepts.

    Keys a stage does not read are left out (their defaults apply and nothing reads them).
    ``models`` is narrowed to what the stage handles so the slice validates on its own. A local
    tracking URI (``sqlite:///mlflow.db``) is dropped: a cluster task must get its server from
    the run's parameters or secrets, never a file inside its pod.
    """
    if stage not in _STAGE_KEYS:
        raise ConfigError(f"stage {stage!r}: unknown; known: {', '.join(STAGES)}")
    if "{arch}" in " ".join(_STAGE_KEYS[stage]) and arch is None:
        raise ConfigError(f"stage {stage!r} is per architecture: pass arch")
    full = config_to_dict(cfg)
    out: dict[str, Any] = {}

    def put(path: list[str]) -> None:
        src, dst = full, out
        for key in path[:-1]:
            src = src[key]
            dst = dst.setdefault(key, {})
        dst[path[-1]] = src[path[-1]]

    for key in _STAGE_KEYS[stage]:
        if "{members}" in key or "{models}" in key:
            names = cfg.ensemble if "{members}" in key else cfg.models
            for name in names:
                put(key.replace("{members}", name).replace("{models}", name).split("."))
        else:
            put(key.replace("{arch}", arch or "").split("."))
    # A fixed stand-in where the stage reads no architecture, so editing `models` changes nothing.
    placeholder = KNOWN_ARCHS[0]
    if arch is not None:
        out["models"] = [arch]
    elif stage == "ensemble":  # every trained model may join the searched ensemble
        out["models"] = list(cfg.models)
    elif stage != "register":
        out["models"] = [placeholder]
        out["architectures"] = {placeholder: {}}
    out.setdefault("ensemble", [])
    if "mlflow" in out and _is_local_store(out["mlflow"]["tracking_uri"]):
        out["mlflow"]["tracking_uri"] = ""
    config_from_dict(out)  # a slice that does not validate would fail in every task instead
    return out
