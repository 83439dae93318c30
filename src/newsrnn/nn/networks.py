"""The architectures: the notebook's four recurrent networks plus GRU, sized from params.

``build_network`` makes the trained network, which takes right-padded token ids (so batches can
be grouped by length). ``build_text_model`` puts the vectorizer in front, giving the exported
model that takes raw strings and returns the 4 class probabilities.

GPU note: recurrent layers keep their default activations and no recurrent dropout, and masks
are right-padded with never an all-padding row (see ``GuardIds``), so Keras can use cuDNN kernels.
"""

from __future__ import annotations

from typing import Any

from newsrnn.config import ArchConfig
from newsrnn.nn import layers

N_CLASSES = 4


def standardizer(name: str) -> Any:
    """What TextVectorization's ``standardize`` gets for ``vectorizer.standardize``: Keras' own
    string for its built-in mode, the registered ``split_punctuation`` function otherwise."""
    if name == "lower_and_strip_punctuation":
        return name
    if name == "lower_split_punctuation":
        return layers.split_punctuation
    raise ValueError(f"vectorizer.standardize: unknown mode {name!r}")


def guard_layer(max_length: int | None, name: str = "guard_ids") -> Any:
    """A GuardIds layer."""
    return layers.GuardIds(max_length=max_length, name=name)


def char_front(arch: ArchConfig, name: str = "vectorizer") -> Any:
    """The ``tokens: char_ngrams`` front end (in the exported model where the word vectorizer
    would be, under the same name), or a char branch's (``char_ngram_dim`` > 0) n-gram hasher."""
    buckets = arch.ngram_buckets if arch.tokens == "char_ngrams" else arch.char_ngram_buckets
    return layers.CharNgramIds(buckets, arch.char_ngram_min, arch.char_ngram_max, arch.max_chars, name=name)


def word_ngram_front(arch: ArchConfig, name: str = "vectorizer") -> Any:
    """The ``tokens: word_ngrams`` front end, where the word vectorizer would be."""
    return layers.WordNgramIds(arch.ngram_buckets, arch.ngram_max, arch.max_words, name=name)


def is_char_front(layer: Any) -> bool:
    """Whether a front end reads char n-grams (alone, or after the words: ``JoinedFront``)."""
    return isinstance(layer, (layers.CharNgramIds, JoinedFront))


class JoinedFront:
    """The front end of a words architecture with a char branch (``char_ngram_dim`` > 0).

    Text -> one id row: the guarded word ids padded (or cut) to ``word_length`` columns, then
    the guarded char n-gram ids (``layers.JoinIds``); the network splits them again. Called on
    strings it gives the rows ``Datasets`` trains on; ``build_text_model`` puts the same layers
    (``vectorizer``, ``guard_ids``, ``char_vectorizer``, ``char_guard_ids``, ``join_ids``) into
    the exported model, and ``from_model`` finds them there.
    """

    def __init__(self, words: Any, word_guard: Any, chars: Any, char_guard: Any, join: Any) -> None:
        self.words, self.word_guard, self.chars, self.char_guard, self.join = words, word_guard, chars, char_guard, join
        self.word_length = join.word_length

    @classmethod
    def build(cls, arch: ArchConfig, words: Any, word_length: int) -> JoinedFront:
        """New char layers for ``arch`` behind the shared word vectorizer ``words``."""
        return cls(words, guard_layer(word_length), char_front(arch, name="char_vectorizer"),
                   guard_layer(None, name="char_guard_ids"), layers.JoinIds(word_length, name="join_ids"))

    @classmethod
    def from_model(cls, model: Any, suffix: str = "") -> JoinedFront | None:
        """The joined front of an exported text model, or None if it has none. ``suffix`` names
        an ensemble part's copies (``join_ids_1`` ...); the word vectorizer is always the shared
        ``vectorizer``."""
        names = {la.name for la in model.layers}
        if f"join_ids{suffix}" not in names:
            return None
        get = model.get_layer
        return cls(get("vectorizer"), get(f"guard_ids{suffix}"), get(f"char_vectorizer{suffix}"),
                   get(f"char_guard_ids{suffix}"), get(f"join_ids{suffix}"))

    def __call__(self, text: Any) -> Any:
        return self.join([self.word_guard(self.words(text)), self.char_guard(self.chars(text))])


def char_front_max_length(arch: ArchConfig) -> int:
    """The most n-gram ids a text can give: the guard's cap for a char front."""
    return sum(max(0, arch.max_chars - n + 1) for n in range(arch.char_ngram_min, arch.char_ngram_max + 1))


def word_ngram_front_max_length(arch: ArchConfig) -> int:
    """The most n-gram ids a text can give a word n-gram front: the guard's cap."""
    return sum(max(0, arch.max_words - n + 1) for n in range(1, arch.ngram_max + 1))


def parts_mean(counts: tuple[int, ...]) -> Any:
    """A PartsMean layer (the ensemble's combiner when members read different front ends)."""
    return layers.PartsMean(counts=counts, name="mean_probs")


def ngram_table_size(arch: ArchConfig, vocab_size: int) -> int:
    """Rows of the n-gram embedding (and idf) table: words + bigram buckets, or 1 + the buckets
    of a front that hashes its own n-grams (char or word)."""
    if arch.tokens != "words":
        return arch.ngram_buckets + 1
    return vocab_size + arch.ngram_buckets


def build_network(arch: ArchConfig, vocab_size: int, name: str = "network", embeddings: Any = None,
                  idf: Any = None, char_idf: Any = None, word_length: int | None = None) -> Any:
    """The trainable network: token ids (batch, time) -> class probabilities (batch, 4).

    ``embeddings`` (vocab, >= embed_dim), required when ``arch.pretrained_embeddings``: the
    embedding table starts from its leading ``embed_dim`` columns and keeps training.
    ``idf`` (``data.idf_of`` the training rows), required when ``arch.ngram_weighting`` is tfidf
    (the idf table) or nb (the idf, then the 4 classes' log-count ratios: (table, 5)).
    With a char branch (``arch.char_ngram_dim`` > 0) the ids are ``JoinedFront`` rows: the words
    in the first ``word_length`` columns, then the char n-grams, weighted by ``char_idf``.
    """
    import keras

    if arch.pretrained_embeddings:
        if embeddings is None:
            raise ValueError("pretrained_embeddings is set but no pre-trained vectors were given")
        if embeddings.shape[0] != vocab_size or embeddings.shape[1] < arch.embed_dim:
            raise ValueError(f"pre-trained vectors of shape {tuple(embeddings.shape)} do not fit a "
                             f"vocabulary of {vocab_size} and embed_dim {arch.embed_dim}")
    tfidf = arch.ngram_buckets > 0 and arch.ngram_weighting in ("tfidf", "nb")
    nb = tfidf and arch.ngram_weighting == "nb"
    table = ngram_table_size(arch, vocab_size)
    shape = (table, 1 + N_CLASSES) if nb else (table,)
    if tfidf and (idf is None or tuple(idf.shape) != shape):
        raise ValueError(f"ngram_weighting {arch.ngram_weighting} needs a table of shape {shape} "
                         f"(data.idf_of the training rows); got {None if idf is None else tuple(idf.shape)}")
    if nb and arch.ngram_dim != N_CLASSES:
        raise ValueError(f"ngram_weighting nb needs ngram_dim {N_CLASSES} (one per class), not {arch.ngram_dim}")
    if arch.cell == "none" and arch.ngram_buckets == 0:
        raise ValueError("cell none needs ngram_buckets > 0: the n-gram branch is the whole network")
    if arch.tokens != "words" and arch.cell != "none":
        raise ValueError(f"tokens {arch.tokens} needs cell none: an n-gram bag has no word sequence to recur over")

    char_table = arch.char_ngram_buckets + 1
    if arch.char_ngram_dim > 0 and (char_idf is None or len(char_idf) != char_table or not word_length):
        raise ValueError(f"a char branch needs word_length and an idf table of {char_table} entries "
                         f"(id_idf of the training rows' char n-grams); got word_length {word_length}, "
                         f"{None if char_idf is None else len(char_idf)} entries")

    inputs = keras.Input(shape=(None,), dtype="int64", name="token_ids")
    word_ids, char_ids = inputs, None
    if arch.char_ngram_dim > 0:
        word_ids, char_ids = layers.SplitIds(word_length, name="split_ids")(inputs)
    features = []
    if arch.cell != "none":
        features.append(_recurrent_features(arch, vocab_size, word_ids, embeddings))
    if arch.ngram_buckets > 0:
        # Char and word n-gram fronts hand over n-gram ids already; word ids get their hashed n-grams here.
        ngram_ids = (word_ids if arch.tokens != "words" else
                     layers.NgramIds(vocab_size, arch.ngram_buckets, arch.ngram_max, name="ngram_ids")(word_ids))
        bag = keras.layers.Embedding(table, arch.ngram_dim, mask_zero=True,
                                     name="ngram_embedding")(ngram_ids)
        if tfidf:
            weigher = layers.IdfBag(table, classes=N_CLASSES if nb else 0, name="ngram_tfidf")
            bag = weigher([ngram_ids, bag])
            weigher.set_weights([idf[:, 0], idf[:, 1:]] if nb else [idf])
        else:
            bag = keras.layers.GlobalAveragePooling1D(name="ngram_mean")(bag)
        features.append(bag)
    if char_ids is not None:
        chars = keras.layers.Embedding(char_table, arch.char_ngram_dim, mask_zero=True,
                                       name="char_embedding")(char_ids)
        char_weigher = layers.IdfBag(char_table, name="char_tfidf")
        features.append(char_weigher([char_ids, chars]))
        char_weigher.set_weights([char_idf])
    x = features[0] if len(features) == 1 else keras.layers.Concatenate(name="features")(features)
    if arch.dropout > 0:
        x = keras.layers.Dropout(arch.dropout, name="dropout")(x)
    # float32 output keeps softmax stable under a mixed_float16 policy.
    outputs = keras.layers.Dense(N_CLASSES, activation="softmax", dtype="float32", name="probs")(x)
    return keras.Model(inputs, outputs, name=name)


def _recurrent_features(arch: ArchConfig, vocab_size: int, inputs: Any, embeddings: Any) -> Any:
    """Embedding, the recurrent layers (or, for ``cell: conv``, the convolutions) and the
    pooling over time: (batch, features)."""
    import keras

    embedding = keras.layers.Embedding(vocab_size, arch.embed_dim, mask_zero=arch.mask_zero, name="embedding")
    x = embedding(inputs)
    if arch.pretrained_embeddings:
        # Set after building: a Constant initializer would copy the table into the model config.
        embedding.set_weights([embeddings[:, : arch.embed_dim]])
    if arch.embed_dropout > 0:
        x = keras.layers.SpatialDropout1D(arch.embed_dropout, name="embed_dropout")(x)
    if arch.cell == "conv":  # max-pooled over time by the layer itself
        return layers.ConvMax(arch.units, arch.conv_widths, name="conv_max")(x)
    cell_cls = {"simple_rnn": keras.layers.SimpleRNN, "lstm": keras.layers.LSTM,
                "gru": keras.layers.GRU}[arch.cell]
    for i in range(arch.layers):
        last = i == arch.layers - 1
        layer = cell_cls(arch.units, return_sequences=not last or arch.pooling != "last",
                         name=f"{arch.cell}_{i}")
        if arch.bidirectional:
            layer = keras.layers.Bidirectional(layer, name=f"bi_{arch.cell}_{i}")
        x = layer(x)
    if arch.pooling in ("max", "max_mean"):
        pooled = [layers.MaskedMax(name="max_pool")(x)]
        if arch.pooling == "max_mean":
            pooled.append(keras.layers.GlobalAveragePooling1D(name="mean_pool")(x))
        x = pooled[0] if len(pooled) == 1 else keras.layers.Concatenate(name="pooled")(pooled)
    elif arch.pooling == "mean":
        x = keras.layers.GlobalAveragePooling1D(name="mean_pool")(x)
    return x


def build_text_model(vectorizer: Any, network: Any, max_length: int | None) -> Any:
    """Raw strings (batch,) -> probabilities: vectorizer, GuardIds, then the network (or a
    ``JoinedFront``'s layers, then the network)."""
    import keras

    text = keras.Input(shape=(), dtype="string", name="text")
    if isinstance(vectorizer, JoinedFront):
        ids = vectorizer(text)
    else:
        ids = guard_layer(max_length)(vectorizer(text))
    probs = network(ids)
    return keras.Model(text, probs, name="newsrnn_text_classifier")
