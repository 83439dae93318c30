"""Component ``architectures``: validate the params once, up front, and cut them per stage."""

from typing import NamedTuple

from kfp import dsl

from components.image import BASE_IMAGE


class StageParams(NamedTuple):
    items: list
    fetch: str
    prepare: str
    vectorize: str
    tracking: str
    ensemble: str
    register: str


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def architectures(params_json: str) -> StageParams:
    """Validate ``params_json`` (a params.yaml as JSON) and hand each stage only what it reads.

    ``items`` are the loop's items, one per architecture with its tune/train/evaluate slices;
    the other outputs are the single stages' slices (``newsrnn.config.stage_params``). A task's
    cache key is its inputs, so an edit re-runs only the tasks that read the edited key, as
    `dvc repro` does. A typo in the params fails here, in seconds, instead of in every GPU task.
    """
    import json

    from newsrnn.config import config_from_dict, stage_params

    cfg = config_from_dict(json.loads(params_json))

    def cut(stage: str, arch: "str | None" = None) -> str:
        return json.dumps(stage_params(cfg, stage, arch), sort_keys=True, separators=(",", ":"))

    items = [{"arch": a, "tune": cut("tune", a), "train": cut("train", a), "evaluate": cut("evaluate", a)}
             for a in cfg.models]
    return StageParams(items, cut("fetch"), cut("prepare"), cut("vectorize"), cut("tracking"), cut("ensemble"),
                       cut("register"))
