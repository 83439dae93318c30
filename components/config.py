"""Components ``architectures`` and ``stage_configs``: validate the params once, up front, and cut
them per stage (``newsrnn.config.stage_params``).

A task's cache key is its inputs, so when each task receives only the keys it reads, an edit
re-runs only the tasks that read the edited key, as `dvc repro` does. Two components, not one with
several outputs: kfp's local runner (2.17) cannot loop over a named output of a multi-output task.
"""

from typing import NamedTuple

from kfp import dsl

from components.image import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def architectures(params_json: str) -> list:
    """The loop's items: one per architecture, with its tune, train and evaluate params.

    A typo in the params fails here, in seconds, instead of in every GPU task.
    """
    import json

    from newsrnn.config import config_from_dict, stage_params

    cfg = config_from_dict(json.loads(params_json))

    def cut(stage: str, arch: str) -> str:
        return json.dumps(stage_params(cfg, stage, arch), sort_keys=True, separators=(",", ":"))

    return [{"arch": a, "tune": cut("tune", a), "train": cut("train", a), "evaluate": cut("evaluate", a)}
            for a in cfg.models]


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def stage_configs(params_json: str) -> NamedTuple(  # noqa: UP014 - kfp copies only the function's source
        "StageConfigs", [("fetch", str), ("prepare", str), ("vectorize", str), ("tracking", str),
                         ("ensemble", str), ("register", str)]):
    """The params of each stage that runs once: fetch, prepare, vectorize, tracking, ensemble, register."""
    import json
    from typing import NamedTuple

    from newsrnn.config import config_from_dict, stage_params

    cfg = config_from_dict(json.loads(params_json))
    stages = ("fetch", "prepare", "vectorize", "tracking", "ensemble", "register")
    outputs = NamedTuple("StageConfigs", [(s, str) for s in stages])  # noqa: UP014
    return outputs(*(json.dumps(stage_params(cfg, s), sort_keys=True, separators=(",", ":")) for s in stages))
