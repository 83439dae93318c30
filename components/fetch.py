"""Component ``fetch``: the raw corpus, from a DVC-versioned git repo or the configured sources."""

from kfp import dsl
from kfp.dsl import Dataset, Output

from components.image import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def fetch(stage_params: str, raw: Output[Dataset], data_version: str = "", dvc_repo: str = "",
          dvc_rev: str = "", dvc_remote: str = "") -> str:
    """Write ``train.parquet``, ``test.parquet`` and ``source.json`` into ``raw``; return the data sha.

    ``stage_params`` holds only the ``data`` keys the DVC fetch stage lists.

    With ``dvc_repo`` the files are read from that repo's DVC remote at ``dvc_rev``
    (``newsrnn.dvcdata.fetch_dvc``), else ``newsrnn.fetch.fetch`` tries ``data.sources``.
    ``data_version`` is not read: it is in the inputs so the step's cache key changes with the data.
    """
    import json
    import os
    import tempfile

    from newsrnn.config import config_from_dict
    from newsrnn.fetch import data_sha256

    key_file = os.environ.get("NEWSRNN_GCS_KEY_FILE", "")
    if key_file and os.path.isfile(key_file) and not os.environ.get("GOOGLE_APPLICATION_CREDENTIALS"):
        # A path that does not exist would break every other way of finding GCS credentials.
        os.environ["GOOGLE_APPLICATION_CREDENTIALS"] = key_file
    if dvc_repo:
        from newsrnn.dvcdata import fetch_dvc

        fetch_dvc(dvc_repo, raw.path, rev=dvc_rev or None, remote=dvc_remote or None)
    else:
        from newsrnn.fetch import fetch as fetch_corpus

        cfg = config_from_dict(json.loads(stage_params))
        with tempfile.TemporaryDirectory() as cache_dir:
            fetch_corpus(cfg.data, raw.path, cache_dir)
    sha = data_sha256(raw.path)
    raw.metadata["data_sha256"] = sha
    return sha
