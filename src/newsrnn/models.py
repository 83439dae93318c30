"""The architectures: the notebook's four recurrent networks plus GRU, sized from params.

``build_network`` makes the trained network, which takes right-padded token ids (so batches can
be grouped by length). ``build_text_model`` puts the vectorizer in front, giving the exported
model that takes raw strings and returns the 4 class probabilities.

GPU note: recurrent layers keep their default activations and no recurrent dropout, and masks
are right-padded with never an all-padding row (see ``GuardIds``), so Keras can use cuDNN kernels.
"""

from __future__ import annotations

import functools
import types
from typing import Any

from newsrnn.config import ArchConfig

N_CLASSES = 4
OOV_ID = 1


@functools.cache
def _layers() -> Any:
    """The custom layers (defined once TensorFlow is imported; registered for safe loading)."""
    import keras
    import tensorflow as tf

    @keras.saving.register_keras_serializable(package="newsrnn")
    class GuardIds(keras.layers.Layer):
        """Truncate ids to ``max_length`` and give empty rows one OOV token.

        An all-padding row would make a masked RNN see no steps at all (and breaks cuDNN);
        an empty text is therefore read as a single unknown word.
        """

        def __init__(self, max_length: int | None = None, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.max_length = max_length

        def call(self, ids: Any) -> Any:
            return guard_ids(ids, self.max_length)

        def get_config(self) -> dict[str, Any]:
            return {**super().get_config(), "max_length": self.max_length}

    def guard_ids(ids: Any, max_length: int | None) -> Any:
        ids = tf.cast(ids, tf.int64)
        if max_length is not None:
            ids = ids[..., :max_length]
        # At least one column, and position 0 never padding (right padding => row was empty).
        pad = tf.maximum(0, 1 - tf.shape(ids)[-1])
        paddings = [[0, 0]] * (len(ids.shape) - 1) + [[0, pad]]
        ids = tf.pad(ids, paddings)
        first = ids[..., :1]
        first = tf.where(first == 0, tf.constant(OOV_ID, tf.int64), first)
        return tf.concat([first, ids[..., 1:]], axis=-1)

    @keras.saving.register_keras_serializable(package="newsrnn")
    class NgramIds(keras.layers.Layer):
        """Token ids (batch, T) -> word and hashed word-bigram ids (batch, 2T - 1), 0 = none.

        Words keep their ids (< vocab_size); the bigram of ids (a, b) becomes
        ``vocab_size + (a * 1000003 + b) mod buckets``. A bigram touching padding is 0, so with a
        masked average on top, right padding changes nothing.
        """

        def __init__(self, vocab_size: int = 1, buckets: int = 1, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.vocab_size = vocab_size
            self.buckets = buckets

        def call(self, ids: Any) -> Any:
            ids = tf.cast(ids, tf.int64)
            left, right = ids[:, :-1], ids[:, 1:]
            hashed = self.vocab_size + tf.math.floormod(left * 1000003 + right, self.buckets)
            bigrams = tf.where((left > 0) & (right > 0), hashed, tf.zeros_like(hashed))
            return tf.concat([ids, bigrams], axis=1)

        def compute_output_shape(self, input_shape: Any) -> Any:
            t = input_shape[1]
            return (input_shape[0], None if t is None else max(1, 2 * t - 1))

        def get_config(self) -> dict[str, Any]:
            return {**super().get_config(), "vocab_size": self.vocab_size, "buckets": self.buckets}

    @keras.saving.register_keras_serializable(package="newsrnn")
    class MaskedMax(keras.layers.Layer):
        """Max over time of the unmasked steps only.

        GlobalMaxPooling1D ignores the mask: a backward RNN emits zeros at right-padded steps,
        so padding would change the max. Here padded steps never count.
        """

        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.supports_masking = True

        def call(self, x: Any, mask: Any = None) -> Any:
            if mask is not None:
                x = tf.where(tf.cast(mask, tf.bool)[:, :, None], x, tf.cast(-1e9, x.dtype))
            return tf.reduce_max(x, axis=1)

        def compute_mask(self, x: Any, mask: Any = None) -> Any:
            return None

        def compute_output_shape(self, input_shape: Any) -> Any:
            return (input_shape[0], input_shape[2])

    @keras.saving.register_keras_serializable(package="newsrnn")
    class IdfBag(keras.layers.Layer):
        """(n-gram ids, their vectors) -> the idf-weighted sum of the vectors, L2-normalised.

        Each occurrence weighs its id's inverse document frequency (a non-trainable table, set
        from the training split and saved with the model); the sum is divided by the root of the
        summed squared weights. With vectors of size 4 and a softmax on top this is logistic
        regression on TF-IDF features. Padding (id 0) has idf 0, so it changes nothing.
        """

        def __init__(self, size: int = 1, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.size = size
            self.idf = self.add_weight(name="idf", shape=(size,), initializer="zeros", trainable=False)

        def call(self, inputs: Any, mask: Any = None) -> Any:
            ids, vectors = inputs
            weights = tf.cast(tf.gather(self.idf, tf.cast(ids, tf.int64)), vectors.dtype)
            norm = tf.sqrt(tf.reduce_sum(tf.square(weights), axis=1, keepdims=True)) + 1e-6
            return tf.reduce_sum(vectors * (weights / norm)[:, :, None], axis=1)

        def compute_mask(self, inputs: Any, mask: Any = None) -> Any:
            return None

        def compute_output_shape(self, input_shape: Any) -> Any:
            return (input_shape[1][0], input_shape[1][2])

        def get_config(self) -> dict[str, Any]:
            return {**super().get_config(), "size": self.size}

    @keras.saving.register_keras_serializable(package="newsrnn", name="split_punctuation")
    def split_punctuation(text: Any) -> Any:
        """Lower-case, and set every punctuation mark apart as a token of its own (apostrophes
        stay inside words: "company's"). Registered, so safe-mode loading finds it by name."""
        return tf.strings.regex_replace(tf.strings.lower(text), r"([^\pL\pN\s'])", r" \1 ")

    @keras.saving.register_keras_serializable(package="newsrnn")
    class CharNgramIds(keras.layers.Layer):
        """Raw strings (batch,) -> hashed character n-gram ids (batch, L), right-padded with 0.

        The front end of ``tokens: char_ngrams`` networks, in place of the word vectorizer. The
        text is lower-cased (case-insensitive, like the words) but keeps its punctuation, digits
        and every word beyond the vocabulary. Each run of ``min_n`` to ``max_n`` characters of the
        first ``max_chars`` is hashed with integer arithmetic (fast: no per-n-gram strings) into
        ids 1..buckets; its length salts the hash. A text's ids come by start position, right-padded.
        """

        def __init__(self, buckets: int = 1, min_n: int = 2, max_n: int = 5, max_chars: int = 1000,
                     **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.buckets, self.min_n, self.max_n, self.max_chars = buckets, min_n, max_n, max_chars

        def call(self, text: Any) -> Any:
            text = tf.strings.lower(tf.convert_to_tensor(text, tf.string), encoding="utf-8")
            chars = tf.strings.unicode_decode(text, "UTF-8", errors="replace")[:, : self.max_chars]
            # On the flat characters of all texts, row after row: no work on padding, whatever
            # the longest text in the batch. An n-gram starting at a character is valid if it
            # ends inside the same text.
            codes = tf.cast(chars.values, tf.int64)
            rows = chars.value_rowids()
            ends = tf.gather(chars.row_splits[1:], rows)
            count = tf.size(codes, out_type=tf.int64)
            starts = tf.range(count)
            tail = tf.concat([codes, tf.zeros([self.max_n], tf.int64)], axis=0)
            ids, valid = [], []
            for n in range(self.min_n, self.max_n + 1):
                h = tf.zeros_like(codes)
                for k in range(n):
                    h = (h * 1000003 + tail[k:k + count]) % 2147483647
                ids.append((h + 7919 * n) % self.buckets + 1)
                valid.append(starts + n <= ends)
            ids, valid = tf.stack(ids, axis=1), tf.stack(valid, axis=1)
            owner = tf.broadcast_to(rows[:, None], tf.shape(ids, out_type=tf.int64))
            ragged = tf.RaggedTensor.from_value_rowids(tf.boolean_mask(ids, valid), tf.boolean_mask(owner, valid),
                                                       nrows=tf.shape(text, out_type=tf.int64)[0])
            return ragged.to_tensor(0)

        def get_config(self) -> dict[str, Any]:
            return {**super().get_config(), "buckets": self.buckets, "min_n": self.min_n,
                    "max_n": self.max_n, "max_chars": self.max_chars}

    @keras.saving.register_keras_serializable(package="newsrnn")
    class PartsMean(keras.layers.Layer):
        """The mean over all ensemble members when they come in parts (one per front end):
        each part's mean probabilities weigh by its number of members."""

        def __init__(self, counts: tuple[int, ...] = (1,), **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.counts = tuple(int(c) for c in counts)

        def call(self, parts: Any) -> Any:
            total = float(sum(self.counts))
            return tf.add_n([p * (c / total) for p, c in zip(parts, self.counts)])

        def compute_output_shape(self, input_shape: Any) -> Any:
            return input_shape[0]

        def get_config(self) -> dict[str, Any]:
            return {**super().get_config(), "counts": list(self.counts)}

    return types.SimpleNamespace(GuardIds=GuardIds, guard_ids=guard_ids, NgramIds=NgramIds, MaskedMax=MaskedMax,
                                 IdfBag=IdfBag, split_punctuation=split_punctuation, CharNgramIds=CharNgramIds,
                                 PartsMean=PartsMean)


def guard_ids(ids: Any, max_length: int | None) -> Any:
    """Functional form of GuardIds, used in the tf.data pipeline."""
    return _layers().guard_ids(ids, max_length)


def standardizer(name: str) -> Any:
    """What TextVectorization's ``standardize`` gets for ``vectorizer.standardize``: Keras' own
    string for its built-in mode, the registered ``split_punctuation`` function otherwise."""
    if name == "lower_and_strip_punctuation":
        return name
    if name == "lower_split_punctuation":
        return _layers().split_punctuation
    raise ValueError(f"vectorizer.standardize: unknown mode {name!r}")


def guard_layer(max_length: int | None, name: str = "guard_ids") -> Any:
    """A GuardIds layer."""
    return _layers().GuardIds(max_length=max_length, name=name)


def char_front(arch: ArchConfig, name: str = "vectorizer") -> Any:
    """The ``tokens: char_ngrams`` front end (in the exported model where the word vectorizer
    would be, under the same name)."""
    return _layers().CharNgramIds(arch.ngram_buckets, arch.char_ngram_min, arch.char_ngram_max,
                                  arch.max_chars, name=name)


def is_char_front(layer: Any) -> bool:
    """Whether a text model's ``vectorizer`` layer is a char n-gram front end (else the words')."""
    return isinstance(layer, _layers().CharNgramIds)


def char_front_max_length(arch: ArchConfig) -> int:
    """The most n-gram ids a text can give: the guard's cap for a char front."""
    return sum(max(0, arch.max_chars - n + 1) for n in range(arch.char_ngram_min, arch.char_ngram_max + 1))


def parts_mean(counts: tuple[int, ...]) -> Any:
    """A PartsMean layer (the ensemble's combiner when members read different front ends)."""
    return _layers().PartsMean(counts=counts, name="mean_probs")


def ngram_table_size(arch: ArchConfig, vocab_size: int) -> int:
    """Rows of the n-gram embedding (and idf) table: words + bigram buckets, or 1 + char buckets."""
    if arch.tokens == "char_ngrams":
        return arch.ngram_buckets + 1
    return vocab_size + arch.ngram_buckets


def id_idf(rows: Any, size: int) -> Any:
    """Smoothed idf, ``ln((1 + n) / (1 + df)) + 1``, of every id in ``range(size)`` over ``rows``
    (unpadded id arrays: a char front's ids, or ``ngram_idf``'s words and bigrams); id 0 gets 0."""
    import numpy as np

    df = np.zeros(size, dtype=np.int64)
    for start in range(0, len(rows), 4096):
        chunk = [np.unique(r) for r in rows[start:start + 4096]]
        df += np.bincount(np.concatenate(chunk), minlength=size)
    idf = (np.log((1.0 + len(rows)) / (1.0 + df)) + 1.0).astype(np.float32)
    idf[0] = 0.0
    return idf


def ngram_ids_np(row: Any, vocab_size: int, buckets: int) -> Any:
    """NumPy twin of ``NgramIds`` for one unpadded row of token ids: its words and hashed bigrams."""
    import numpy as np

    row = np.asarray(row, dtype=np.int64)
    bigrams = vocab_size + (row[:-1] * 1000003 + row[1:]) % buckets
    return np.concatenate([row, bigrams])


def ngram_idf(rows: Any, vocab_size: int, buckets: int) -> Any:
    """``id_idf`` of every word and hashed-bigram id over ``rows`` (unpadded token-id arrays of
    the training split): the table ``IdfBag`` weighs with."""
    return id_idf([ngram_ids_np(r, vocab_size, buckets) for r in rows], vocab_size + buckets)


def build_network(arch: ArchConfig, vocab_size: int, name: str = "network", embeddings: Any = None,
                  idf: Any = None) -> Any:
    """The trainable network: token ids (batch, time) -> class probabilities (batch, 4).

    ``embeddings`` (vocab, >= embed_dim), required when ``arch.pretrained_embeddings``: the
    embedding table starts from its leading ``embed_dim`` columns and keeps training.
    ``idf`` (``ngram_idf`` of the training rows), required when ``arch.ngram_weighting`` is tfidf.
    """
    import keras

    if arch.pretrained_embeddings:
        if embeddings is None:
            raise ValueError("pretrained_embeddings is set but no pre-trained vectors were given")
        if embeddings.shape[0] != vocab_size or embeddings.shape[1] < arch.embed_dim:
            raise ValueError(f"pre-trained vectors of shape {tuple(embeddings.shape)} do not fit a "
                             f"vocabulary of {vocab_size} and embed_dim {arch.embed_dim}")
    tfidf = arch.ngram_buckets > 0 and arch.ngram_weighting == "tfidf"
    table = ngram_table_size(arch, vocab_size)
    if tfidf and (idf is None or len(idf) != table):
        raise ValueError(f"ngram_weighting tfidf needs an idf table of {table} "
                         f"entries (idf of the training rows); got {None if idf is None else len(idf)}")
    if arch.cell == "none" and arch.ngram_buckets == 0:
        raise ValueError("cell none needs ngram_buckets > 0: the n-gram branch is the whole network")
    if arch.tokens == "char_ngrams" and arch.cell != "none":
        raise ValueError("tokens char_ngrams needs cell none: a char n-gram bag has no word sequence to recur over")

    inputs = keras.Input(shape=(None,), dtype="int64", name="token_ids")
    features = []
    if arch.cell != "none":
        features.append(_recurrent_features(arch, vocab_size, inputs, embeddings))
    if arch.ngram_buckets > 0:
        # Char fronts hand over n-gram ids already; word ids get their hashed bigrams here.
        ngram_ids = (inputs if arch.tokens == "char_ngrams" else
                     _layers().NgramIds(vocab_size, arch.ngram_buckets, name="ngram_ids")(inputs))
        bag = keras.layers.Embedding(table, arch.ngram_dim, mask_zero=True,
                                     name="ngram_embedding")(ngram_ids)
        if tfidf:
            weigher = _layers().IdfBag(table, name="ngram_tfidf")
            bag = weigher([ngram_ids, bag])
            weigher.set_weights([idf])
        else:
            bag = keras.layers.GlobalAveragePooling1D(name="ngram_mean")(bag)
        features.append(bag)
    x = features[0] if len(features) == 1 else keras.layers.Concatenate(name="features")(features)
    if arch.dropout > 0:
        x = keras.layers.Dropout(arch.dropout, name="dropout")(x)
    # float32 output keeps softmax stable under a mixed_float16 policy.
    outputs = keras.layers.Dense(N_CLASSES, activation="softmax", dtype="float32", name="probs")(x)
    return keras.Model(inputs, outputs, name=name)


def _recurrent_features(arch: ArchConfig, vocab_size: int, inputs: Any, embeddings: Any) -> Any:
    """Embedding, the recurrent layers and the pooling over time: (batch, features)."""
    import keras

    cell_cls = {"simple_rnn": keras.layers.SimpleRNN, "lstm": keras.layers.LSTM,
                "gru": keras.layers.GRU}[arch.cell]
    embedding = keras.layers.Embedding(vocab_size, arch.embed_dim, mask_zero=arch.mask_zero, name="embedding")
    x = embedding(inputs)
    if arch.pretrained_embeddings:
        # Set after building: a Constant initializer would copy the table into the model config.
        embedding.set_weights([embeddings[:, : arch.embed_dim]])
    if arch.embed_dropout > 0:
        x = keras.layers.SpatialDropout1D(arch.embed_dropout, name="embed_dropout")(x)
    for i in range(arch.layers):
        last = i == arch.layers - 1
        layer = cell_cls(arch.units, return_sequences=not last or arch.pooling != "last",
                         name=f"{arch.cell}_{i}")
        if arch.bidirectional:
            layer = keras.layers.Bidirectional(layer, name=f"bi_{arch.cell}_{i}")
        x = layer(x)
    if arch.pooling in ("max", "max_mean"):
        pooled = [_layers().MaskedMax(name="max_pool")(x)]
        if arch.pooling == "max_mean":
            pooled.append(keras.layers.GlobalAveragePooling1D(name="mean_pool")(x))
        x = pooled[0] if len(pooled) == 1 else keras.layers.Concatenate(name="pooled")(pooled)
    elif arch.pooling == "mean":
        x = keras.layers.GlobalAveragePooling1D(name="mean_pool")(x)
    return x


def build_text_model(vectorizer: Any, network: Any, max_length: int | None) -> Any:
    """Raw strings (batch,) -> probabilities: vectorizer, GuardIds, then the network."""
    import keras

    text = keras.Input(shape=(), dtype="string", name="text")
    ids = vectorizer(text)
    ids = guard_layer(max_length)(ids)
    probs = network(ids)
    return keras.Model(text, probs, name="newsrnn_text_classifier")
