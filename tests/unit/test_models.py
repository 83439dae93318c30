"""Architectures, the vectorizer, the GuardIds invariants and the exported raw-text model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf  # a hard dependency: a broken install must fail, not skip
import yaml
from support import ROOT, small_params

from newsrnn.config import load_config
from newsrnn.errors import ArtifactError


@pytest.mark.parametrize(
    ("arch", "params"),
    [("rnn_title", 1_281_364), ("rnn", 1_281_364), ("lstm", 1_282_372), ("bilstm", 2_758_148)],
)
def test_notebook_sizes_parameter_counts(arch: str, params: int) -> None:
    """The notebook's recipe (presets/notebook.yaml) builds the notebook's networks."""
    from newsrnn.nn.networks import build_network

    cfg = load_config(ROOT / "presets" / "notebook.yaml")
    net = build_network(cfg.arch(arch), cfg.vectorizer.max_tokens)
    assert net.count_params() == params
    out = net(np.array([[5, 6, 7, 0], [8, 1, 0, 0]]))
    assert out.shape == (2, 4)
    np.testing.assert_allclose(out.numpy().sum(axis=1), 1.0, rtol=1e-5)


def test_recurrent_layers_stay_cudnn_eligible() -> None:
    """Default activations and no recurrent dropout: what Keras needs to pick cuDNN kernels."""
    import keras

    from newsrnn.nn.networks import build_network

    cfg = load_config(ROOT / "params.yaml")
    tuned = load_config(ROOT / "benchmarks" / "params_tuned.yaml")  # pooling, bigram branch, dropouts
    for name, arch in [(n, c.arch(n)) for c in (cfg, tuned) for n in ("lstm", "bilstm", "gru")]:
        vectors = np.zeros((100, 128), np.float32) if arch.pretrained_embeddings else None
        idf = np.ones(100 + arch.ngram_buckets, np.float32) if arch.ngram_weighting == "tfidf" else None
        chars = np.ones(arch.char_ngram_buckets + 1, np.float32) if arch.char_ngram_dim else None
        net = build_network(arch, 100, embeddings=vectors, idf=idf, char_idf=chars, word_length=16)
        cells = [lay.forward_layer if isinstance(lay, keras.layers.Bidirectional) else lay for lay in net.layers]
        rnns = [c for c in cells if isinstance(c, (keras.layers.LSTM, keras.layers.GRU))]
        assert rnns, name
        for r in rnns:
            assert r.activation.__name__ == "tanh" and r.recurrent_activation.__name__ == "sigmoid"
            assert r.recurrent_dropout == 0 and not r.unroll and r.use_bias
            if isinstance(r, keras.layers.GRU):
                assert r.reset_after


def test_guard_ids_truncates_and_never_all_padding() -> None:
    from newsrnn.nn.layers import guard_ids

    ids = tf.constant([[0, 0, 0], [4, 5, 0], [7, 8, 9]], dtype=tf.int64)
    out = guard_ids(ids, 2).numpy()
    assert out.tolist() == [[1, 0], [4, 5], [7, 8]]
    empty = guard_ids(tf.zeros((2, 0), tf.int64), 5).numpy()
    assert empty.tolist() == [[1], [1]]
    # Masks stay right-padded: no zero before a non-zero in any row.
    for row in out:
        nz = np.flatnonzero(row)
        assert (row[: nz.max() + 1] != 0).all()


def _vectorizer_dir(tmp_path: Path, titles: list[str] | None = None) -> Path:
    from newsrnn.config import VectorizerConfig
    from newsrnn.vectorize import vectorize

    prep = tmp_path / "prepared"
    prep.mkdir()
    pd.DataFrame({"label": [0, 1], "title": titles or ["Oil prices up", "Cup final"],
                  "description": ["oil oil market", "team wins cup"], "line": [1, 2]}).to_parquet(
        prep / "train.parquet")
    vectorize(VectorizerConfig(max_tokens=50, max_length=4), prep, tmp_path / "vec")
    return tmp_path / "vec"


def test_vectorizer_saved_as_text_and_verified(tmp_path: Path) -> None:
    from newsrnn.vectorize import build_vectorizer, load_vectorizer_spec

    vec = _vectorizer_dir(tmp_path)
    tokens, config = load_vectorizer_spec(vec)
    assert tokens[0] == "oil"  # most frequent first
    assert config["vocab_size"] == len(tokens) + 2 and config["max_length"] == 4
    layer, _ = build_vectorizer(vec)
    assert layer(tf.constant(["oil cup zzz"])).numpy().tolist()[0][0] == 2
    (vec / "vocab.txt").write_text("\n".join(tokens[:3]) + "\n")
    with pytest.raises(ArtifactError, match="does not match"):
        load_vectorizer_spec(vec)


def test_notebook_vectorizer_setting_is_expressible(tmp_path: Path) -> None:
    from newsrnn.config import VectorizerConfig
    from newsrnn.vectorize import load_vectorizer_spec, vectorize

    prep = tmp_path / "prepared"
    prep.mkdir()
    pd.DataFrame({"label": [0, 1, 2], "title": ["alpha", "beta", "gamma"],
                  "description": ["x", "y", "z"], "line": [1, 2, 3]}).to_parquet(prep / "train.parquet")
    vectorize(VectorizerConfig(adapt_fields=("title",), adapt_rows=2), prep, tmp_path / "vec")
    tokens, _ = load_vectorizer_spec(tmp_path / "vec")
    assert sorted(tokens) == ["alpha", "beta"]


def test_split_punctuation_vectorizer_keeps_marks_as_tokens_and_loads_safely(tmp_path: Path) -> None:
    from newsrnn.config import ArchConfig, VectorizerConfig
    from newsrnn.fileio import atomic_dir
    from newsrnn.modelio import load_text_model, save_text_model
    from newsrnn.nn.networks import build_network, build_text_model
    from newsrnn.vectorize import build_vectorizer, load_vectorizer_spec, vectorize

    prep = tmp_path / "prepared"
    prep.mkdir()
    pd.DataFrame({"label": [0, 2, 3], "title": ["Oil up 5% (Reuters)", "U.S. company's $4.5 billion", "Café!"],
                  "description": ["x", "y", "z"], "line": [1, 2, 3]}).to_parquet(prep / "train.parquet")
    vectorize(VectorizerConfig(standardize="lower_split_punctuation"), prep, tmp_path / "vec")
    tokens, config = load_vectorizer_spec(tmp_path / "vec")
    assert config["standardize"] == "lower_split_punctuation"
    assert {"(", ")", "%", "$", ".", "!", "company's", "café", "reuters"} <= set(tokens)
    vec, config = build_vectorizer(tmp_path / "vec")
    ids = vec(tf.constant(["(Reuters) oil!"])).numpy()[0].tolist()
    assert [tokens[i - 2] for i in ids] == ["(", "reuters", ")", "oil", "!"]
    # The registered standardize function survives a safe-mode save and load.
    model = build_text_model(vec, build_network(ArchConfig(cell="gru", embed_dim=4, units=3), config["vocab_size"]),
                             config["max_length"])
    with atomic_dir(tmp_path / "model") as d:
        save_text_model(model, d)
    loaded = load_text_model(tmp_path / "model")
    np.testing.assert_array_equal(loaded.get_layer("vectorizer")(tf.constant(["(Reuters) oil!"])).numpy()[0], ids)
    # The default stays Keras' own (the notebook's): punctuation is dropped.
    vectorize(VectorizerConfig(), prep, tmp_path / "vec_default")
    assert "(" not in load_vectorizer_spec(tmp_path / "vec_default")[0]
    # An unknown mode in a saved config is named, not a Keras traceback.
    cfg_path = tmp_path / "vec" / "config.json"
    cfg_path.write_text(json.dumps({**json.loads(cfg_path.read_text()), "standardize": "shout"}))
    with pytest.raises(ArtifactError, match="config.json: vectorizer.standardize: unknown mode 'shout'"):
        build_vectorizer(tmp_path / "vec")


def test_exported_model_takes_raw_text(tmp_path: Path) -> None:
    from newsrnn.config import ArchConfig
    from newsrnn.fileio import atomic_dir
    from newsrnn.modelio import save_text_model
    from newsrnn.nn.networks import build_network, build_text_model
    from newsrnn.predictor import Predictor
    from newsrnn.vectorize import build_vectorizer

    vec, config = build_vectorizer(_vectorizer_dir(tmp_path))
    net = build_network(ArchConfig(cell="gru", embed_dim=4, units=3), config["vocab_size"])
    model = build_text_model(vec, net, config["max_length"])
    with atomic_dir(tmp_path / "model") as d:
        save_text_model(model, d)
    pred = Predictor.from_path(tmp_path / "model", max_batch=10)
    probs = pred.predict_proba(["oil market up", "", "x " * 500_000])
    assert probs.shape == (3, 4)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    out = pred.predict(["cup final"])
    assert set(out[0]["probabilities"]) == {"World", "Sports", "Business", "Sci/Tech"}
    assert out[0]["label"] in out[0]["probabilities"]
    with pytest.raises(ValueError, match="the limit is 10"):
        pred.predict_proba(["a"] * 11)
    with pytest.raises(TypeError, match="text 1 is int"):
        pred.predict_proba(["a", 3])  # type: ignore[list-item]
    # A truncated file is refused before Keras reads it.
    data = (tmp_path / "model" / "model.keras").read_bytes()
    (tmp_path / "model" / "model.keras").write_bytes(data[: len(data) // 2])
    with pytest.raises(ArtifactError, match="truncated or altered"):
        Predictor.from_path(tmp_path / "model")
    assert json.loads(json.dumps(out))  # plain JSON-serialisable


def test_gpu_only_options_stay_off_on_cpu() -> None:
    """mixed_float16 and XLA are GPU options: on a CPU-only machine the policy stays float32."""
    import keras

    from newsrnn.runtime import setup_runtime
    from newsrnn.train import gpu_count

    if gpu_count():
        pytest.skip("this check is for CPU-only machines")
    strategy = setup_runtime(1, mixed_precision=True)
    assert keras.mixed_precision.global_policy().name == "float32"
    assert strategy.num_replicas_in_sync == 1


@pytest.mark.parametrize(
    "arch",
    [
        {"cell": "lstm", "layers": 2, "bidirectional": True, "pooling": "max"},
        {"cell": "lstm", "layers": 2, "bidirectional": True, "pooling": "max_mean", "ngram_buckets": 97},
        {"cell": "gru", "pooling": "mean", "ngram_buckets": 13, "embed_dropout": 0.3},
        {"cell": "simple_rnn", "pooling": "last", "ngram_buckets": 13},
        {"cell": "conv", "pooling": "max", "conv_widths": (1, 3, 4), "embed_dropout": 0.3},
        {"cell": "conv", "pooling": "max", "conv_widths": (2,), "ngram_buckets": 13},
    ],
)
def test_masked_networks_ignore_right_padding(arch: dict) -> None:
    """Batches and the predictor pad texts to a common length: with a mask, that changes nothing.

    (Keras' GlobalMaxPooling1D would fail this for a bidirectional RNN: its backward half emits
    zeros at padded steps.)
    """
    from newsrnn.config import ArchConfig
    from newsrnn.nn.networks import build_network

    net = build_network(ArchConfig(embed_dim=6, units=5, mask_zero=True, **arch), 40)
    ids = np.array([[3, 17, 5, 29, 8, 0, 0, 0, 0]], dtype=np.int64)
    short = net(ids[:, :5], training=False).numpy()
    padded = net(ids, training=False).numpy()
    np.testing.assert_allclose(short, padded, rtol=1e-6, atol=1e-7)


def test_ngram_ids_hash_bigrams_and_skip_padding() -> None:
    from newsrnn.nn import layers

    layer = layers.NgramIds(vocab_size=10, buckets=7)
    out = layer(tf.constant([[2, 3, 4, 0], [5, 0, 0, 0]], tf.int64)).numpy()
    assert out.shape == (2, 7)
    np.testing.assert_array_equal(out[:, :4], [[2, 3, 4, 0], [5, 0, 0, 0]])  # the words themselves
    assert out[0, 4] == 10 + (2 * 1000003 + 3) % 7 and out[0, 5] == 10 + (3 * 1000003 + 4) % 7
    assert out[0, 6] == 0 and (out[1, 4:] == 0).all()  # a bigram touching padding is "none"
    assert out.max() < 10 + 7


def test_ngram_branch_adds_its_table_and_survives_save_load(tmp_path: Path) -> None:
    import keras

    from newsrnn.config import ArchConfig
    from newsrnn.nn.networks import build_network

    base = build_network(ArchConfig(cell="gru", embed_dim=4, units=3), 50)
    net = build_network(ArchConfig(cell="gru", embed_dim=4, units=3, ngram_buckets=100, ngram_dim=5), 50)
    # (50 + 100) x 5 table, and the output layer reads 5 more features.
    assert net.count_params() - base.count_params() == 150 * 5 + 5 * 4
    ids = np.array([[4, 9, 2, 0]], dtype=np.int64)
    net.save(tmp_path / "n.keras")
    again = keras.saving.load_model(tmp_path / "n.keras", safe_mode=True)
    np.testing.assert_allclose(again(ids).numpy(), net(ids).numpy(), rtol=1e-6)


def test_ngram_idf_counts_documents_of_the_layers_ids() -> None:
    from newsrnn.data import ngram_idf, ngram_ids_np
    from newsrnn.nn import layers

    rows = [np.array([2, 3, 4]), np.array([2, 3]), np.array([5, 5])]
    layer_ids = layers.NgramIds(vocab_size=10, buckets=7)(tf.constant([[2, 3, 4]], tf.int64)).numpy()[0]
    np.testing.assert_array_equal(ngram_ids_np(rows[0], 10, 7), layer_ids)  # same hashing as the layer
    idf = ngram_idf(rows, 10, 7)
    assert idf.shape == (17,) and idf[0] == 0
    df = {2: 2, 3: 2, 4: 1, 5: 1, 6: 0}
    for word, n in df.items():
        assert idf[word] == pytest.approx(np.log(4 / (1 + n)) + 1)
    bigram_23, bigram_55 = 10 + (2 * 1000003 + 3) % 7, 10 + (5 * 1000003 + 5) % 7
    assert bigram_23 == bigram_55 == 14  # a hash collision: the bucket is in all three documents
    assert idf[14] == pytest.approx(1.0)
    assert idf[10 + (3 * 1000003 + 4) % 7] == pytest.approx(np.log(4 / 2) + 1)
    # "5 5" counts once for its document although the word occurs twice.
    assert idf[5] == pytest.approx(np.log(4 / 2) + 1)


def test_ngram_ids_with_trigrams_match_their_numpy_twin_and_ignore_padding() -> None:
    from newsrnn.data import ngram_ids_np
    from newsrnn.nn import layers

    layer = layers.NgramIds(vocab_size=10, buckets=7, longest=3)
    ids = layer(tf.constant([[2, 3, 4, 5, 0, 0], [6, 0, 0, 0, 0, 0]], tf.int64)).numpy()
    assert ids.shape == (2, 6 + 5 + 4) == (2, layer.compute_output_shape((2, 6))[1])
    got = ids[0][ids[0] != 0]
    want = ngram_ids_np(np.array([2, 3, 4, 5]), 10, 7, longest=3)
    assert sorted(got) == sorted(want) and len(want) == 4 + 3 + 2  # no n-gram touches padding
    np.testing.assert_array_equal(want[-2:], 10 + ((np.array([2, 3]) * 1000003 + [3, 4]) * 1000003 + [4, 5]) % 7)
    assert list(ids[1][ids[1] != 0]) == [6]  # one word: no bigram, no trigram
    bigrams_only = layers.NgramIds(vocab_size=10, buckets=7)(tf.constant([[2, 3, 4]], tf.int64)).numpy()[0]
    np.testing.assert_array_equal(bigrams_only, ngram_ids_np(np.array([2, 3, 4]), 10, 7))


def test_wide_network_is_logistic_regression_on_tfidf(tmp_path: Path) -> None:
    """cell none + tfidf: softmax(W . tfidf(words and bigrams) + b), padding-invariant, saved with its idf."""
    import keras

    from newsrnn.config import ArchConfig
    from newsrnn.data import ngram_idf, ngram_ids_np
    from newsrnn.nn.networks import build_network
    from newsrnn.predictor import masks_padding

    arch = ArchConfig(cell="none", ngram_buckets=11, ngram_dim=4, ngram_weighting="tfidf")
    rows = [np.array([2, 3, 4]), np.array([2, 3]), np.array([5, 6, 7, 2])]
    idf = ngram_idf(rows, 9, 11)
    net = build_network(arch, 9, idf=idf)
    assert [w.name for w in net.trainable_weights] == ["embeddings", "kernel", "bias"]
    assert net.count_params() == (9 + 11) * 4 + 4 * 4 + 4 + (9 + 11)  # table, dense, idf (frozen)
    assert masks_padding(net)
    table = net.get_layer("ngram_embedding").get_weights()[0]
    kernel, bias = net.get_layer("probs").get_weights()
    text = np.array([3, 2, 3, 6])
    ids = ngram_ids_np(text, 9, 11)
    tfidf = np.zeros(20)
    np.add.at(tfidf, ids, idf[ids])
    logits = (tfidf / np.sqrt((idf[ids] ** 2).sum())) @ table @ kernel + bias
    expected = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    padded = np.array([[3, 2, 3, 6, 0, 0, 0]])
    np.testing.assert_allclose(net(padded[:, :4]).numpy()[0], expected, rtol=1e-5)
    np.testing.assert_allclose(net(padded).numpy()[0], expected, rtol=1e-5)
    net.save(tmp_path / "w.keras")
    again = keras.saving.load_model(tmp_path / "w.keras", safe_mode=True)
    np.testing.assert_allclose(again.get_layer("ngram_tfidf").get_weights()[0], idf)
    np.testing.assert_allclose(again(padded).numpy(), net(padded).numpy(), rtol=1e-6)
    with pytest.raises(ValueError, match=r"a table of shape \(20,\)"):
        build_network(arch, 9)
    with pytest.raises(ValueError, match="ngram_buckets > 0"):
        build_network(ArchConfig(cell="none"), 9)


def test_nb_ratios_are_the_log_count_ratios_of_each_class() -> None:
    from newsrnn.data import nb_ratios

    rows = [np.array([1, 2, 2]), np.array([2]), np.array([3]), np.array([1, 3])]
    labels = np.array([0, 0, 1, 3])
    r = nb_ratios(rows, labels, size=5, n_classes=4, alpha=1.0)
    assert r.shape == (5, 4) and r.dtype == np.float32 and not r[0].any()  # padding: no weight
    # Class 0 holds id 1 once, id 2 twice (in two texts), id 3 never; the others hold 1 once, 3 twice.
    p = 1.0 + np.array([0, 1, 2, 0, 0])
    q = 1.0 + np.array([0, 1, 0, 2, 0])
    np.testing.assert_allclose(r[1:, 0], np.log((p / p.sum()) / (q / q.sum()))[1:], rtol=1e-6)
    assert r[2, 0] > 0 > r[3, 0]  # id 2 speaks for class 0, id 3 against it
    assert r[2, 2] < 0 and r[4, 2] == pytest.approx(np.log((1 / 5) / (1 / 11)))  # class 2 has no rows


def test_nb_weighting_scales_each_class_dimension_by_its_ratio(tmp_path: Path) -> None:
    """ngram_weighting nb: the tfidf bag, with dimension k of each n-gram's vector also scaled by
    its class-k ratio; the ratios are saved with the model and padding changes nothing."""
    import keras

    from newsrnn.config import ArchConfig
    from newsrnn.data import id_idf, nb_ratios, ngram_ids_np
    from newsrnn.nn.networks import build_network

    arch = ArchConfig(cell="none", ngram_buckets=11, ngram_dim=4, ngram_weighting="nb")
    rows = [ngram_ids_np(r, 9, 11) for r in ([2, 3, 4], [2, 3], [5, 6, 7, 2], [8, 8])]
    idf = id_idf(rows, 20)
    ratio = nb_ratios(rows, [0, 1, 2, 3], 20)
    table5 = np.concatenate([idf[:, None], ratio], axis=1)
    net = build_network(arch, 9, idf=table5)
    assert [w.name for w in net.trainable_weights] == ["embeddings", "kernel", "bias"]
    assert net.count_params() == 20 * 4 + 4 * 4 + 4 + 20 * 5  # table, dense, idf + ratios (frozen)
    table = net.get_layer("ngram_embedding").get_weights()[0]
    kernel, bias = net.get_layer("probs").get_weights()
    ids = ngram_ids_np(np.array([3, 2, 3, 6]), 9, 11)
    bag = (idf[ids, None] * ratio[ids] * table[ids]).sum(0) / np.sqrt((idf[ids] ** 2).sum())
    logits = bag @ kernel + bias
    expected = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    padded = np.array([[3, 2, 3, 6, 0, 0]])
    np.testing.assert_allclose(net(padded[:, :4]).numpy()[0], expected, rtol=1e-5)
    np.testing.assert_allclose(net(padded).numpy()[0], expected, rtol=1e-5)
    net.save(tmp_path / "nb.keras")
    again = keras.saving.load_model(tmp_path / "nb.keras", safe_mode=True)
    np.testing.assert_allclose(again.get_layer("ngram_tfidf").get_weights()[1], ratio)
    np.testing.assert_allclose(again(padded).numpy(), net(padded).numpy(), rtol=1e-6)
    with pytest.raises(ValueError, match=r"a table of shape \(20, 5\)"):
        build_network(arch, 9, idf=idf)


def test_cosine_schedule_and_weight_decay_reach_the_optimizer() -> None:
    import keras

    from newsrnn.config import config_from_dict, resolve
    from newsrnn.errors import ConfigError
    from newsrnn.nn.trainable import build_trainable, make_optimizer

    cfg = config_from_dict(small_params(**{"train.weight_decay": 0.01, "architectures.gru.lr_schedule": "cosine",
                                           "architectures.gru.learning_rate": 0.01, "train.epochs": 2,
                                           "architectures.gru.pretrained_embeddings": False,
                                           "architectures.gru.ngram_buckets": 0}))
    settings = resolve(cfg, "gru")
    net = build_trainable(settings, 20, steps_per_epoch=5)
    opt = net.optimizer
    assert isinstance(opt, keras.optimizers.AdamW) and opt.weight_decay == pytest.approx(0.01)
    assert float(opt.learning_rate) == pytest.approx(0.01)
    opt.iterations.assign(5)  # half of 2 epochs x 5 steps
    assert float(opt.learning_rate) == pytest.approx(0.01 * (0.05 + 0.95 * 0.5), rel=1e-4)
    opt.iterations.assign(10)
    assert float(opt.learning_rate) == pytest.approx(0.0005, rel=1e-4)
    with pytest.raises(ConfigError, match="architectures.gru: lr_schedule cosine needs at least one"):
        make_optimizer(settings, 0)
    plain = resolve(config_from_dict(small_params()), "gru")
    assert type(make_optimizer(plain, 10)) is keras.optimizers.Adam


@pytest.mark.parametrize("mask_zero", [True, False])

def test_predictor_xla_path_gives_the_graph_path_answer(tmp_path: Path, mask_zero: bool) -> None:
    from newsrnn.config import ArchConfig
    from newsrnn.nn.networks import build_network, build_text_model
    from newsrnn.predictor import Predictor
    from newsrnn.vectorize import build_vectorizer

    vec, config = build_vectorizer(_vectorizer_dir(tmp_path))  # max_length 4
    arch = ArchConfig(cell="lstm", embed_dim=4, units=3, bidirectional=True, pooling="max", mask_zero=mask_zero)
    model = build_text_model(vec, build_network(arch, config["vocab_size"]), config["max_length"])
    plain, fast = Predictor(model), Predictor(model, xla=True)
    assert fast.xla is mask_zero  # an unmasked network cannot be padded, so it keeps the graph path
    assert [fast.xla_length(n) for n in (1, 3, 4)] == [4, 4, 4]  # capped at max_length
    assert fast.warmup() >= 0
    for text in ["oil", "oil market", "cup final oil market team", ""]:
        np.testing.assert_allclose(fast.predict_proba([text]), plain.predict_proba([text]), rtol=1e-5, atol=1e-6)
    # Batches: large ones go through padded (XLA_BATCH, length) XLA blocks, on several threads;
    # small ones do not.
    many = ["oil market", "cup", "team wins cup final", "zzz oil"] * 100
    fast.threads = 3
    np.testing.assert_allclose(fast.predict_proba(many), plain.predict_proba(many), rtol=1e-5, atol=1e-6)
    assert fast._pool is not None  # several blocks: they ran on the thread pool
    one_thread = Predictor(model, xla=True, threads=1)
    np.testing.assert_array_equal(one_thread.predict_proba(many), fast.predict_proba(many))
    assert one_thread._pool is None
    np.testing.assert_allclose(fast.predict_proba(many[:5]), plain.predict_proba(many[:5]), rtol=1e-5, atol=1e-6)
    long = Predictor(model, xla=True)
    long.parts[0].max_length = None
    assert [long.xla_length(n) for n in (1, 17, 33, 64, 100, 129, 300)] == [16, 24, 40, 64, 128, 256, 384]


def test_ensemble_is_the_mean_of_its_members_and_refuses_another_vocabulary(tmp_path: Path) -> None:
    from newsrnn.config import ArchConfig
    from newsrnn.ensemble import build_ensemble
    from newsrnn.nn.networks import build_network, build_text_model
    from newsrnn.predictor import Predictor
    from newsrnn.vectorize import build_vectorizer

    vec_dir = _vectorizer_dir(tmp_path)
    members = []
    for i, arch in enumerate([ArchConfig(cell="gru", embed_dim=4, units=3),
                              ArchConfig(cell="lstm", embed_dim=5, units=2, bidirectional=True, pooling="max")]):
        vec, config = build_vectorizer(vec_dir)
        members.append(build_text_model(vec, build_network(arch, config["vocab_size"], name=f"m{i}_network"),
                                        config["max_length"]))
    model = build_ensemble(members)
    texts = ["oil market", "cup final team wins", ""]
    expected = np.mean([Predictor(m).predict_proba(texts) for m in members], axis=0)
    pred = Predictor(model)
    np.testing.assert_allclose(pred.predict_proba(texts), expected, rtol=1e-5, atol=1e-6)
    assert pred.masked  # every member masks padding, so the ensemble may batch by padding too

    other = tf.keras.layers.TextVectorization(vocabulary=["zzz", "yyy"], name="vectorizer")
    odd = build_text_model(other, build_network(ArchConfig(embed_dim=3, units=2), 4, name="odd_network"), 4)
    with pytest.raises(ArtifactError, match="another vocabulary"):
        build_ensemble([members[0], odd])


def _assert_right_padded(ids: np.ndarray) -> None:
    """Every row's ids come first, then only zeros."""
    for row in ids:
        n = int((row != 0).sum())
        assert (row[:n] != 0).all() and (row[n:] == 0).all()


def _char_arch(**kw: object) -> object:
    from newsrnn.config import ArchConfig

    base = dict(cell="none", tokens="char_ngrams", ngram_buckets=97, ngram_dim=4, ngram_weighting="tfidf",
                char_ngram_min=2, char_ngram_max=4, max_chars=12)
    return ArchConfig(**{**base, **kw})


def test_char_ngram_ids_hash_lowercased_raw_text_and_cap_characters() -> None:
    from newsrnn.nn.networks import char_front, char_front_max_length

    front = char_front(_char_arch())
    ids = front(tf.constant(["Oil!", "oil!", "", "abcdefghijklmnopqrstuvwxyz", "é"])).numpy()
    # "oil!" has 3 bigrams, 2 trigrams and 1 four-gram; case does not matter, punctuation does.
    assert (ids[0] != 0).sum() == 6 and ids[0].tolist() == ids[1].tolist()
    assert ids[0][:6].min() >= 1 and ids.max() <= 97
    assert set(ids[0][:6].tolist()) != set(front(tf.constant(["oil"])).numpy()[0].tolist())
    assert (ids[2] == 0).all() and (ids[4] == 0).all()  # no n-gram in an empty or 1-character text
    # Only the first max_chars=12 characters count: 11 + 10 + 9 n-grams, the guard's cap.
    assert (ids[3] != 0).sum() == 30 == char_front_max_length(_char_arch())
    _assert_right_padded(ids)


def test_wide_char_network_is_padding_invariant_and_survives_save_load(tmp_path: Path) -> None:
    from newsrnn.data import id_idf
    from newsrnn.fileio import atomic_dir
    from newsrnn.modelio import save_text_model
    from newsrnn.nn.networks import build_network, build_text_model, char_front, char_front_max_length
    from newsrnn.predictor import Predictor

    arch = _char_arch()
    front = char_front(arch)
    rows = [r[r != 0] for r in front(tf.constant(["oil prices up", "cup final", "oil market"])).numpy()]
    idf = id_idf(rows, arch.ngram_buckets + 1)
    assert idf[0] == 0 and idf.max() > idf[rows[0][0]] - 1e-6
    net = build_network(arch, arch.ngram_buckets + 1, idf=idf)
    ids = front(tf.constant(["oil prices"])).numpy()
    padded = np.concatenate([ids, np.zeros((1, 7), dtype=ids.dtype)], axis=1)
    np.testing.assert_allclose(net(ids).numpy(), net(padded).numpy(), rtol=1e-6)
    model = build_text_model(front, net, char_front_max_length(arch))
    with atomic_dir(tmp_path / "model") as d:
        save_text_model(model, d)
    pred = Predictor.from_path(tmp_path / "model", xla=True)
    assert not pred.xla  # a bag of n-grams keeps the plain graph path
    texts = ["Oil prices up", "", "cup final " * 50]
    np.testing.assert_allclose(pred.predict_proba(texts), model(tf.constant(texts)).numpy(), rtol=1e-5, atol=1e-6)


def test_ensemble_of_word_and_char_members_is_the_mean_of_all(tmp_path: Path) -> None:
    from newsrnn.config import ArchConfig
    from newsrnn.ensemble import build_ensemble
    from newsrnn.fileio import atomic_dir
    from newsrnn.modelio import load_text_model, save_text_model
    from newsrnn.nn.networks import build_network, build_text_model, char_front, char_front_max_length
    from newsrnn.predictor import Predictor, model_parts
    from newsrnn.vectorize import build_vectorizer

    vec_dir = _vectorizer_dir(tmp_path)
    members = []
    for i, arch in enumerate([ArchConfig(cell="gru", embed_dim=4, units=3),
                              ArchConfig(cell="lstm", embed_dim=5, units=2, pooling="max")]):
        vec, config = build_vectorizer(vec_dir)
        members.append(build_text_model(vec, build_network(arch, config["vocab_size"], name=f"m{i}_network"),
                                        config["max_length"]))
    chars = _char_arch(ngram_weighting="mean")
    members.append(build_text_model(char_front(chars), build_network(chars, 98, name="c_network"),
                                    char_front_max_length(chars)))
    model = build_ensemble(members)
    with atomic_dir(tmp_path / "ens") as d:
        save_text_model(model, d)
    loaded = load_text_model(tmp_path / "ens")
    assert [p[3] for p in model_parts(loaded)] == [2, 1]  # the word part holds 2 members, the char part 1
    texts = ["Oil market!", "cup final team wins", "", "oil " * 40]
    expected = np.mean([m(tf.constant(texts)).numpy() for m in members], axis=0)
    np.testing.assert_allclose(loaded(tf.constant(texts)).numpy(), expected, rtol=1e-5, atol=1e-6)
    many = [f"{t or '_'} {i}" for i in range(80) for t in texts]  # several blocks per part, 2 threads
    expected_many = np.mean([m(tf.constant(many)).numpy() for m in members], axis=0)
    for kwargs in ({}, {"xla": True, "threads": 2}):
        pred = Predictor(loaded, **kwargs)
        np.testing.assert_allclose(pred.predict_proba(texts), expected, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(pred.predict_proba(texts[:1]), expected[:1], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(pred.predict_proba(many), expected_many, rtol=1e-5, atol=1e-6)
    other = _char_arch(ngram_buckets=50, ngram_weighting="mean")
    odd = build_text_model(char_front(other), build_network(other, 51, name="odd_network"), 30)
    with pytest.raises(ArtifactError, match="another buckets"):
        build_ensemble([members[0], members[2], odd])


def _word_ngram_arch(**kw: object) -> object:
    from newsrnn.config import ArchConfig

    base = dict(cell="none", tokens="word_ngrams", ngram_buckets=89, ngram_dim=4, ngram_weighting="tfidf",
                ngram_max=3, max_words=6)
    return ArchConfig(**{**base, **kw})


def test_word_ngram_ids_hash_every_word_and_punctuation_of_the_raw_text() -> None:
    from newsrnn.nn.networks import word_ngram_front, word_ngram_front_max_length

    front = word_ngram_front(_word_ngram_arch())
    ids = front(tf.constant(["Oil, up", "oil , UP", "", "a b c d e f g h", "zyzzyva"])).numpy()
    # "oil , up": 3 words (the comma is one), 2 bigrams, 1 trigram; case and spacing do not matter.
    assert (ids[0] != 0).sum() == 6 and ids[0].tolist() == ids[1].tolist()
    assert ids[0][:6].min() >= 1 and ids.max() <= 89
    assert (ids[2] == 0).all()  # an empty text gives no n-gram (the guard makes it one unknown id)
    # Only the first max_words=6 words count: 6 + 5 + 4 n-grams, the guard's cap.
    assert (ids[3] != 0).sum() == 15 == word_ngram_front_max_length(_word_ngram_arch())
    assert (ids[4] != 0).sum() == 1  # a word no vocabulary holds still has its own id
    _assert_right_padded(ids)


def test_ensemble_with_a_word_ngram_member_is_the_mean_of_all(tmp_path: Path) -> None:
    from newsrnn.config import ArchConfig
    from newsrnn.data import id_idf
    from newsrnn.ensemble import build_ensemble
    from newsrnn.fileio import atomic_dir
    from newsrnn.modelio import load_text_model, save_text_model
    from newsrnn.nn.networks import (
        build_network,
        build_text_model,
        char_front,
        char_front_max_length,
        word_ngram_front,
        word_ngram_front_max_length,
    )
    from newsrnn.predictor import Predictor, model_parts
    from newsrnn.vectorize import build_vectorizer

    vec, config = build_vectorizer(_vectorizer_dir(tmp_path))
    words = build_text_model(vec, build_network(ArchConfig(cell="gru", embed_dim=4, units=3), config["vocab_size"],
                                                name="w_network"), config["max_length"])
    chars = _char_arch(ngram_weighting="mean")
    char_model = build_text_model(char_front(chars), build_network(chars, 98, name="c_network"),
                                  char_front_max_length(chars))
    hashed = _word_ngram_arch()
    front = word_ngram_front(hashed)
    rows = [r[r != 0] for r in front(tf.constant(["oil prices up", "cup final"])).numpy()]
    net = build_network(hashed, 90, idf=id_idf(rows, 90), name="h_network")
    hashed_model = build_text_model(front, net, word_ngram_front_max_length(hashed))
    members = [words, char_model, hashed_model]
    with atomic_dir(tmp_path / "ens") as d:
        save_text_model(build_ensemble(members), d)
    loaded = load_text_model(tmp_path / "ens")
    assert [p[3] for p in model_parts(loaded)] == [1, 1, 1]  # words, chars, word n-grams: three parts
    texts = ["Oil market!", "cup final team wins", "", "oil " * 40]
    expected = np.mean([m(tf.constant(texts)).numpy() for m in members], axis=0)
    np.testing.assert_allclose(loaded(tf.constant(texts)).numpy(), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(Predictor(loaded).predict_proba(texts), expected, rtol=1e-5, atol=1e-6)
    other = _word_ngram_arch(ngram_buckets=50)
    odd = build_text_model(word_ngram_front(other), build_network(other, 51, idf=np.ones(51, np.float32),
                                                                  name="odd_network"), 15)
    with pytest.raises(ArtifactError, match="another buckets"):
        build_ensemble([hashed_model, odd])


def test_char_tokens_need_a_bag_network() -> None:
    from newsrnn.config import config_from_dict
    from newsrnn.errors import ConfigError

    params = load_config(ROOT / "params.yaml")
    from newsrnn.config import config_to_dict

    raw = config_to_dict(params)
    raw["architectures"]["wide"]["tokens"] = "char_ngrams"
    raw["architectures"]["wide"]["cell"] = "gru"
    with pytest.raises(ConfigError, match="architectures.wide.tokens: char_ngrams needs cell: none"):
        config_from_dict(raw)
    raw["architectures"]["wide"]["tokens"] = "word_ngrams"
    with pytest.raises(ConfigError, match="architectures.wide.tokens: word_ngrams needs cell: none"):
        config_from_dict(raw)
    raw["architectures"]["wide"]["tokens"] = "char_ngrams"
    raw["architectures"]["wide"].update(cell="none", char_ngram_min=4, char_ngram_max=3)
    with pytest.raises(ConfigError, match="char_ngram_min: 4 is above char_ngram_max 3"):
        config_from_dict(raw)


def _char_branch_arch(**kw: object) -> object:
    from newsrnn.config import ArchConfig

    base = dict(cell="lstm", embed_dim=4, units=3, bidirectional=True, pooling="max", ngram_buckets=11,
                ngram_dim=3, ngram_weighting="tfidf", char_ngram_dim=5, char_ngram_buckets=97,
                char_ngram_min=2, char_ngram_max=4, max_chars=12)
    return ArchConfig(**{**base, **kw})


def test_char_branch_rows_put_words_first_then_char_ngrams(tmp_path: Path) -> None:
    """A JoinedFront row: the guarded word ids in max_length columns, then the char n-gram ids;
    Datasets groups batches by word count and its idf tables see each part alone."""
    from newsrnn.config import ArchConfig, Settings, TrainConfig
    from newsrnn.data import Datasets, build_front, char_idf_of, idf_of
    from newsrnn.nn.networks import JoinedFront, char_front
    from newsrnn.vectorize import build_vectorizer

    vec, config = build_vectorizer(_vectorizer_dir(tmp_path))  # max_length 4
    arch = _char_branch_arch()
    front, guard_length, vocab = build_front(arch, vec, config)
    assert isinstance(front, JoinedFront) and front.word_length == 4 and guard_length is None
    texts = ["oil market up oil cup final", "", "Cup"]
    rows = front(tf.constant(texts)).numpy()
    words = vec(tf.constant(texts)).numpy()[:, :4]
    chars = char_front(arch)(tf.constant(texts)).numpy()
    np.testing.assert_array_equal(rows[0, :4], words[0])  # cut to 4 words
    assert rows[1, :4].tolist() == [1, 0, 0, 0]  # an empty text reads as one unknown word ...
    assert rows[1, 4] == 1 and (rows[1, 5:] == 0).all()  # ... and one unknown char n-gram
    np.testing.assert_array_equal(rows[2, 4:4 + int((chars[2] != 0).sum())], chars[2][chars[2] != 0])
    frame = pd.DataFrame({"label": [0, 1, 2], "title": texts, "description": ["", "", ""]})
    settings = Settings("bilstm", ArchConfig(**{**arch.__dict__, "text": "title"}), TrainConfig(), 2, 0.01, 0)
    data = Datasets(front, guard_length, frame, frame, settings)
    assert data.word_length == 4
    assert [len(r) for r in data.train_rows] == [4, 1, 1]  # the words alone, padding cut
    assert [len(r) for r in data.train_char_rows] == [int((c != 0).sum()) or 1 for c in chars]
    assert len(idf_of(arch, vocab, data)) == vocab + arch.ngram_buckets
    assert len(char_idf_of(arch, data)) == arch.char_ngram_buckets + 1
    assert char_idf_of(_char_branch_arch(char_ngram_dim=0), data) is None
    # Batches group by word count (what the recurrent layer steps through), pad to the whole row.
    assert data._train[3].tolist() == [4, 1, 1]
    assert data._train[1].tolist() == [4 + (int((c != 0).sum()) or 1) for c in chars]


def test_char_branch_network_is_padding_invariant_survives_save_load_and_serves(tmp_path: Path) -> None:
    from newsrnn.config import ArchConfig
    from newsrnn.data import encode_texts, id_idf, ngram_idf
    from newsrnn.ensemble import build_ensemble
    from newsrnn.fileio import atomic_dir
    from newsrnn.modelio import load_text_model, save_text_model
    from newsrnn.nn.networks import JoinedFront, build_network, build_text_model, char_front, char_front_max_length
    from newsrnn.predictor import Predictor
    from newsrnn.vectorize import build_vectorizer

    vec, config = build_vectorizer(_vectorizer_dir(tmp_path))
    arch = _char_branch_arch()
    front = JoinedFront.build(arch, vec, config["max_length"])
    rows = encode_texts(front, None, np.array(["oil prices up", "cup final", "oil market"]))
    vocab = config["vocab_size"]
    net = build_network(arch, vocab, idf=ngram_idf([r[:4][r[:4] != 0] for r in rows], vocab, arch.ngram_buckets),
                        char_idf=id_idf([r[4:] for r in rows], arch.char_ngram_buckets + 1), word_length=4)
    names = {la.name for la in net.layers}
    assert {"split_ids", "char_embedding", "char_tfidf", "embedding", "ngram_embedding"} <= names
    ids = front(tf.constant(["oil prices"])).numpy()
    padded = np.concatenate([ids, np.zeros((1, 9), dtype=ids.dtype)], axis=1)
    np.testing.assert_allclose(net(ids).numpy(), net(padded).numpy(), rtol=1e-6)
    # The char branch counts: other char n-grams behind the same words change the answer.
    other = ids.copy()
    other[0, 4:] = (other[0, 4:] % 96) + 1
    assert not np.allclose(net(ids).numpy(), net(other).numpy())
    model = build_text_model(front, net, config["max_length"])
    with atomic_dir(tmp_path / "model") as d:
        save_text_model(model, d)
    loaded = load_text_model(tmp_path / "model")
    texts = ["Oil prices up!", "", "cup final " * 50, "oil"]
    expected = model(tf.constant(texts)).numpy()
    np.testing.assert_allclose(loaded(tf.constant(texts)).numpy(), expected, rtol=1e-5, atol=1e-6)
    many = [f"{t or '_'} {i}" for i in range(70) for t in texts]  # several blocks, 2 threads
    for kwargs in ({}, {"xla": True, "threads": 2}):
        pred = Predictor(loaded, **kwargs)
        assert not pred.xla  # long char rows: the plain graph path
        np.testing.assert_allclose(pred.predict_proba(texts), expected, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(pred.predict_proba(texts[:1]), expected[:1], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(pred.predict_proba(many), model(tf.constant(many)).numpy(), rtol=1e-5, atol=1e-6)
    # In an ensemble: a word member, this one (its part shares the word vectorizer) and a char
    # member give the mean of the three, through the model and through the Predictor.
    word = build_text_model(vec, build_network(ArchConfig(cell="gru", embed_dim=4, units=3), vocab,
                                               name="w_network"), config["max_length"])
    char_arch = _char_arch(ngram_weighting="mean")
    char = build_text_model(char_front(char_arch), build_network(char_arch, 98, name="c_network"),
                            char_front_max_length(char_arch))
    for combo in ([loaded, word, char], [loaded, char], [loaded, loaded]):
        with atomic_dir(tmp_path / "ens") as d:
            save_text_model(build_ensemble(combo), d)
        ens = load_text_model(tmp_path / "ens")
        want = np.mean([m(tf.constant(many)).numpy() for m in combo], axis=0)
        np.testing.assert_allclose(ens(tf.constant(many)).numpy(), want, rtol=1e-5, atol=1e-6)
        pred = Predictor(ens, threads=2)
        np.testing.assert_allclose(pred.predict_proba(many), want, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(pred.predict_proba(many[:1]), want[:1], rtol=1e-5, atol=1e-6)
    # A joined member with another vocabulary than the word members is refused by name.
    other_dir = tmp_path / "other"
    other_dir.mkdir()
    vec2, config2 = build_vectorizer(_vectorizer_dir(other_dir, ["Stocks fall", "Rain today"]))
    odd = build_text_model(vec2, build_network(ArchConfig(cell="gru", embed_dim=4, units=3), config2["vocab_size"],
                                               name="o_network"), config2["max_length"])
    with pytest.raises(ArtifactError, match="another vocabulary"):
        build_ensemble([odd, loaded])
    with pytest.raises(ValueError, match="a char branch needs word_length"):
        build_network(arch, vocab, idf=np.ones(vocab + arch.ngram_buckets, np.float32))


def test_char_branch_config_errors_name_the_key() -> None:
    from newsrnn.config import config_from_dict, config_to_dict
    from newsrnn.errors import ConfigError

    raw = config_to_dict(load_config(ROOT / "params.yaml"))
    for section in raw["architectures"].values():
        section["char_ngram_dim"] = 0
    raw["architectures"]["lstm"]["char_ngram_dim"] = 8
    bad = json.loads(json.dumps(raw))
    bad["vectorizer"]["max_length"] = None
    with pytest.raises(ConfigError, match=r"architectures.lstm.char_ngram_dim: a char branch needs a word cap"):
        config_from_dict(bad)
    assert config_from_dict(raw).arch("lstm").char_ngram_dim == 8
    raw["architectures"]["wide_char"]["char_ngram_dim"] = 8
    with pytest.raises(ConfigError, match="wide_char.char_ngram_dim: a char branch is for tokens: words"):
        config_from_dict(raw)
    raw["architectures"]["wide_char"]["char_ngram_dim"] = -1
    with pytest.raises(ConfigError, match="wide_char.char_ngram_dim"):
        config_from_dict(raw)


def test_conv_network_counts_its_filters_survives_save_load_and_serves(tmp_path: Path) -> None:
    """cell conv: one ReLU convolution per width over the word vectors, max over the real words
    only; the exported model loads in safe mode and every predictor path gives its answer."""
    from newsrnn.config import ArchConfig
    from newsrnn.fileio import atomic_dir
    from newsrnn.modelio import save_text_model
    from newsrnn.nn.networks import build_network, build_text_model
    from newsrnn.predictor import Predictor
    from newsrnn.vectorize import build_vectorizer

    vec, config = build_vectorizer(_vectorizer_dir(tmp_path))  # max_length 4
    vocab = config["vocab_size"]
    arch = ArchConfig(cell="conv", embed_dim=4, units=3, conv_widths=(2, 3), pooling="max")
    net = build_network(arch, vocab)
    # embedding + (2*4*3 + 3) + (3*4*3 + 3) conv weights + a dense layer on 2 x 3 features
    assert net.count_params() == vocab * 4 + 27 + 39 + (6 * 4 + 4)
    conv = net.get_layer("conv_max")
    assert [c.kernel_size for c in conv.convs] == [(2,), (3,)]
    # One real word: the max runs over that step only (a padded step would add ReLU(bias) >= 0).
    ids = np.array([[5, 0, 0]], dtype=np.int64)
    emb = net.get_layer("embedding")(ids[:, :1])
    by_hand = np.concatenate([c(emb).numpy()[:, 0] for c in conv.convs], axis=-1)
    np.testing.assert_allclose(conv(net.get_layer("embedding")(ids)).numpy(), by_hand, rtol=1e-6)
    model = build_text_model(vec, net, config["max_length"])
    with atomic_dir(tmp_path / "model") as d:
        save_text_model(model, d)
    texts = ["oil", "oil market", "cup final oil market team", ""]
    expected = model(tf.constant(texts)).numpy()
    for xla in (False, True):
        pred = Predictor.from_path(tmp_path / "model", xla=xla)
        assert not pred.xla  # no recurrence: the plain graph path serves it
        np.testing.assert_allclose(pred.predict_proba(texts), expected, rtol=1e-5, atol=1e-6)
    # Beside a recurrent member the part takes the XLA path, whose padded blocks change nothing.
    from newsrnn.ensemble import build_ensemble
    from newsrnn.modelio import load_text_model

    lstm = build_text_model(vec, build_network(ArchConfig(cell="lstm", embed_dim=4, units=3, pooling="max"), vocab,
                                               name="lstm_network"), config["max_length"])
    both = build_ensemble([load_text_model(tmp_path / "model"), lstm])
    fast = Predictor(both, xla=True)
    assert fast.xla
    np.testing.assert_allclose(fast.predict_proba(texts), both(tf.constant(texts)).numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"pooling": "last"}, "architectures.cnn.pooling: cell conv needs pooling max"),
        ({"mask_zero": False}, "architectures.cnn.mask_zero: cell conv needs mask_zero true"),
        ({"layers": 2}, "architectures.cnn.layers: cell conv needs layers 1"),
        ({"bidirectional": True}, "architectures.cnn.bidirectional: cell conv needs bidirectional false"),
        ({"conv_widths": []}, "architectures.cnn.conv_widths: list one or more window widths"),
        ({"conv_widths": [2, 0]}, "architectures.cnn.conv_widths: list one or more window widths"),
        ({"conv_widths": "3"}, "architectures.cnn.conv_widths"),
    ],
)
def test_conv_config_errors_name_the_key(section: dict, message: str) -> None:
    from newsrnn.config import config_from_dict
    from newsrnn.errors import ConfigError

    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["architectures"]["cnn"].update(section)
    with pytest.raises(ConfigError) as err:
        config_from_dict(raw)
    assert message in str(err.value) and "\n" not in str(err.value)
