"""Component ``vectorize``: the vocabulary adapted on the prepared training text."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Model, Output

from components.image import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def vectorize(stage_params: str, prepared: Input[Dataset], vectorizer: Output[Model]) -> None:
    """``newsrnn.vectorize.vectorize``: ``prepared`` -> ``vectorizer/`` (vocabulary + config)."""
    import json

    from newsrnn.config import config_from_dict
    from newsrnn.vectorize import vectorize as adapt_vocabulary

    cfg = config_from_dict(json.loads(stage_params))
    result = adapt_vocabulary(cfg.vectorizer, prepared.path, vectorizer.path)
    vectorizer.metadata["vocab_size"] = result.vocab_size
