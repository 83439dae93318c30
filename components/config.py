"""Component ``architectures``: validate the params once, up front, and list the architectures."""

from kfp import dsl

from components.image import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def architectures(params_json: str) -> list:
    """Validate ``params_json`` (a params.yaml as JSON) and return ``models``, the loop's items.

    A typo in the params fails here, in seconds, instead of in every GPU task.
    """
    import json

    from newsrnn.config import config_from_dict

    return list(config_from_dict(json.loads(params_json)).models)
