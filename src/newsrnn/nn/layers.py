"""The custom Keras layers, registered under the package name ``newsrnn`` for safe-mode loading.

Importing this module imports TensorFlow and registers every layer; ``modelio.load_text_model``
imports it before deserialising, so a saved model finds its classes by name (no Lambda layers,
no pickled code).
"""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

# Id 1 is TextVectorization's out-of-vocabulary token (0 is padding).
OOV_ID = 1


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
    """Token ids (batch, T) -> word and hashed word-bigram ids (batch, 2T - 1), 0 = none; with
    ``longest`` 3 the hashed trigrams follow (batch, 3T - 3).

    Words keep their ids (< vocab_size); the bigram of ids (a, b) becomes
    ``vocab_size + (a * 1000003 + b) mod buckets``, the trigram (a, b, c)
    ``vocab_size + ((a * 1000003 + b) * 1000003 + c) mod buckets``. An n-gram touching padding
    is 0, so with a masked average on top, right padding changes nothing.
    """

    def __init__(self, vocab_size: int = 1, buckets: int = 1, longest: int = 2, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.vocab_size = vocab_size
        self.buckets = buckets
        self.longest = int(longest)

    def call(self, ids: Any) -> Any:
        ids = tf.cast(ids, tf.int64)
        left, right = ids[:, :-1], ids[:, 1:]
        hashed = self.vocab_size + tf.math.floormod(left * 1000003 + right, self.buckets)
        parts = [ids, tf.where((left > 0) & (right > 0), hashed, tf.zeros_like(hashed))]
        if self.longest >= 3:
            a, b, c = ids[:, :-2], ids[:, 1:-1], ids[:, 2:]
            hashed = self.vocab_size + tf.math.floormod((a * 1000003 + b) * 1000003 + c, self.buckets)
            parts.append(tf.where((a > 0) & (b > 0) & (c > 0), hashed, tf.zeros_like(hashed)))
        return tf.concat(parts, axis=1)

    def compute_output_shape(self, input_shape: Any) -> Any:
        t = input_shape[1]
        if t is None:
            return (input_shape[0], None)
        return (input_shape[0], max(1, t + max(0, t - 1) + (max(0, t - 2) if self.longest >= 3 else 0)))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "vocab_size": self.vocab_size, "buckets": self.buckets,
                "longest": self.longest}


def masked_max(x: Any, keep: Any = None) -> Any:
    """Max over time (axis 1) of (batch, time, dim) values; where ``keep`` (batch, time, 1) is
    False the step never counts."""
    if keep is not None:
        x = tf.where(keep, x, tf.cast(-1e9, x.dtype))
    return tf.reduce_max(x, axis=1)


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
        return masked_max(x, None if mask is None else tf.cast(mask, tf.bool)[:, :, None])

    def compute_mask(self, x: Any, mask: Any = None) -> Any:
        return None

    def compute_output_shape(self, input_shape: Any) -> Any:
        return (input_shape[0], input_shape[2])

@keras.saving.register_keras_serializable(package="newsrnn")
class ConvMax(keras.layers.Layer):
    """Word vectors (batch, time, dim) -> (batch, filters * len(widths)): one ReLU convolution
    per window width over the sequence, each max-pooled over the unmasked steps (a Kim-style
    text CNN, ``cell: conv``).

    Masked (padded) steps are zeroed before the convolutions, which pad with zeros themselves
    ("same" padding), and never count in the max: a text's features do not depend on how much
    padding its batch has.
    """

    def __init__(self, filters: int = 128, widths: tuple[int, ...] = (2, 3, 4), **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.supports_masking = True
        self.filters, self.widths = int(filters), tuple(int(w) for w in widths)
        self.convs = [keras.layers.Conv1D(self.filters, w, padding="same", activation="relu", name=f"conv_{w}")
                      for w in self.widths]

    def build(self, input_shape: Any) -> None:
        for conv in self.convs:
            conv.build(input_shape)

    def call(self, x: Any, mask: Any = None) -> Any:
        keep = None
        if mask is not None:
            keep = tf.cast(mask, tf.bool)[:, :, None]
            x = tf.where(keep, x, tf.zeros_like(x))
        pooled = [masked_max(conv(x), keep) for conv in self.convs]
        return pooled[0] if len(pooled) == 1 else tf.concat(pooled, axis=-1)

    def compute_mask(self, x: Any, mask: Any = None) -> Any:
        return None

    def compute_output_shape(self, input_shape: Any) -> Any:
        return (input_shape[0], self.filters * len(self.widths))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "filters": self.filters, "widths": list(self.widths)}


@keras.saving.register_keras_serializable(package="newsrnn")
class IdfBag(keras.layers.Layer):
    """(n-gram ids, their vectors) -> the idf-weighted sum of the vectors, L2-normalised.

    Each occurrence weighs its id's inverse document frequency (a non-trainable table, set
    from the training split and saved with the model); the sum is divided by the root of the
    summed squared weights. With vectors of size 4 and a softmax on top this is logistic
    regression on TF-IDF features. Padding (id 0) has idf 0, so it changes nothing.

    ``classes`` > 0 (``ngram_weighting: nb``): a second non-trainable table, (size, classes),
    holds each id's Naive-Bayes log-count ratio per class, and dimension k of an id's vector is
    also scaled by its ratio for class k before the sum (NB-SVM: the features a class's logit
    reads are scaled by how much each n-gram speaks for that class).
    """

    def __init__(self, size: int = 1, classes: int = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.size, self.classes = size, int(classes)
        self.idf = self.add_weight(name="idf", shape=(size,), initializer="zeros", trainable=False)
        self.ratio = None
        if self.classes:
            self.ratio = self.add_weight(name="nb_ratio", shape=(size, self.classes), initializer="zeros",
                                         trainable=False)

    def call(self, inputs: Any, mask: Any = None) -> Any:
        ids, vectors = inputs
        ids = tf.cast(ids, tf.int64)
        weights = tf.cast(tf.gather(self.idf, ids), vectors.dtype)
        norm = tf.sqrt(tf.reduce_sum(tf.square(weights), axis=1, keepdims=True)) + 1e-6
        if self.ratio is not None:
            vectors = vectors * tf.cast(tf.gather(self.ratio, ids), vectors.dtype)
        return tf.reduce_sum(vectors * (weights / norm)[:, :, None], axis=1)

    def compute_mask(self, inputs: Any, mask: Any = None) -> Any:
        return None

    def compute_output_shape(self, input_shape: Any) -> Any:
        return (input_shape[1][0], input_shape[1][2])

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "size": self.size, "classes": self.classes}


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
class WordNgramIds(keras.layers.Layer):
    """Raw strings (batch,) -> hashed word 1- to ``max_n``-gram ids (batch, L), right-padded with 0.

    The front end of ``tokens: word_ngrams`` networks, in place of the word vectorizer: the text
    is lower-cased, every punctuation mark set apart as a token of its own (as
    ``split_punctuation``), split on whitespace, and each n-gram of up to ``max_n`` tokens of the
    first ``max_words`` is hashed (``tf.strings.to_hash_bucket_fast``) into ids 1..buckets. Unlike
    the vocabulary it keeps every word, however rare, and the punctuation.
    """

    def __init__(self, buckets: int = 1, max_n: int = 2, max_words: int = 256, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.buckets, self.max_n, self.max_words = int(buckets), int(max_n), int(max_words)

    def call(self, text: Any) -> Any:
        text = split_punctuation(tf.convert_to_tensor(text, tf.string))
        tokens = tf.strings.split(text)[:, : self.max_words]
        grams = tf.strings.ngrams(tokens, ngram_width=tuple(range(1, self.max_n + 1)), separator=" ")
        ids = tf.strings.to_hash_bucket_fast(grams, self.buckets) + 1
        return ids.to_tensor(0)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "buckets": self.buckets, "max_n": self.max_n,
                "max_words": self.max_words}


@keras.saving.register_keras_serializable(package="newsrnn")
class JoinIds(keras.layers.Layer):
    """[word ids, char n-gram ids] -> one id row per text: the words right-padded (or cut) to
    ``word_length`` columns, then the char n-gram ids.

    The front of an architecture with a char branch (``char_ngram_dim`` > 0): the network keeps
    one input, and ``SplitIds`` takes the two apart again at column ``word_length``. Padding
    after the char ids (batches pad rows to their longest) is id 0 on both sides: no change.
    """

    def __init__(self, word_length: int = 1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.word_length = int(word_length)

    def call(self, inputs: Any) -> Any:
        words, chars = (tf.cast(x, tf.int64) for x in inputs)
        words = words[:, : self.word_length]
        words = tf.pad(words, [[0, 0], [0, self.word_length - tf.shape(words)[1]]])
        return tf.concat([words, chars], axis=1)

    def compute_output_shape(self, input_shape: Any) -> Any:
        return (input_shape[0][0], None)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "word_length": self.word_length}


@keras.saving.register_keras_serializable(package="newsrnn")
class SplitIds(keras.layers.Layer):
    """``JoinIds``' row -> (word ids cut to the batch's longest text, char n-gram ids).

    Cutting the all-padding word columns keeps a recurrent layer stepping only as far as the
    longest text of the batch, as length-grouped batches of word ids alone would.
    """

    def __init__(self, word_length: int = 1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.word_length = int(word_length)

    def call(self, ids: Any) -> Any:
        ids = tf.cast(ids, tf.int64)
        words, chars = ids[:, : self.word_length], ids[:, self.word_length:]
        longest = tf.reduce_max(tf.reduce_sum(tf.cast(words != 0, tf.int32), axis=1))
        # At least one column either side (GuardIds makes every text's first word id non-zero).
        chars = tf.pad(chars, [[0, 0], [0, tf.maximum(0, 1 - tf.shape(chars)[1])]])
        return words[:, : tf.maximum(longest, 1)], chars

    def compute_output_shape(self, input_shape: Any) -> Any:
        return [(input_shape[0], None), (input_shape[0], None)]

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "word_length": self.word_length}


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
