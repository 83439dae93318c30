"""Component ``prepare``: validated, cleaned, split corpus."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Output

from components.image import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def prepare(stage_params: str, raw: Input[Dataset], prepared: Output[Dataset]) -> None:
    """``newsrnn.prepare.prepare``: ``raw`` -> ``prepared/{train,val,test}.parquet``."""
    import json
    from dataclasses import asdict

    from newsrnn.config import config_from_dict
    from newsrnn.prepare import prepare as prepare_corpus

    cfg = config_from_dict(json.loads(stage_params))
    result = prepare_corpus(cfg.data, cfg.seed, raw.path, prepared.path)
    prepared.metadata.update(asdict(result))
