"""The MLflow pyfunc model: raw text in, label and class probabilities out.

This file is logged with MLflow's "models from code" (``python_model=<this file>``), so nothing
is pickled: serving imports this module and loads ``model.keras`` with ``safe_mode=True``.

Request (``mlflow models serve``)::

    {"dataframe_split": {"columns": ["text"], "data": [["Stocks rally"], ["Cup final tonight"]]}}

or ``{"inputs": {"text": ["Stocks rally", "Cup final tonight"]}}``.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

from newsrnn.config import CLASS_NAMES

MAX_BATCH = 10_000
# "0": load without compiling the XLA path up front (what logging sets while MLflow checks the
# input example; see log_pyfunc_model). Servers and the promotion gate load with the warm-up.
WARMUP_ENV = "NEWSRNN_SERVE_WARMUP"


class TextClassifier(mlflow.pyfunc.PythonModel):
    """pyfunc wrapper around the exported ``.keras`` text model."""

    def load_context(self, context: Any) -> None:
        """Load and verify the Keras model (safe mode) once per server process."""
        from newsrnn.predictor import Predictor

        # A server lives long: compile the fast single-text path now, not on the first requests.
        self.predictor = Predictor.from_path(context.artifacts["model_dir"], max_batch=MAX_BATCH, xla=True)
        self.warmup_s = self.predictor.warmup() if os.environ.get(WARMUP_ENV, "1") != "0" else None

    # The hint is pd.DataFrame, not Any: MLflow validates inputs against the signature, and an
    # ``Any`` hint makes every model load warn that the input cannot be validated.
    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        """DataFrame with a string column ``text`` -> DataFrame of label + 4 probabilities."""
        if isinstance(model_input, pd.DataFrame):
            if "text" not in model_input.columns:
                raise MlflowException(
                    f"input needs a column named 'text' (got columns {list(model_input.columns)})",
                    error_code=INVALID_PARAMETER_VALUE)
            texts = model_input["text"].tolist()
        elif isinstance(model_input, (list, tuple)):
            texts = list(model_input)
        else:
            raise MlflowException(f"expected a DataFrame with a 'text' column, got {type(model_input).__name__}",
                                  error_code=INVALID_PARAMETER_VALUE)
        bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
        if bad:
            raise MlflowException(f"'text' must hold strings; row {bad[0]} is {type(texts[bad[0]]).__name__}",
                                  error_code=INVALID_PARAMETER_VALUE)
        if len(texts) > MAX_BATCH:
            raise MlflowException(f"{len(texts)} rows in one request; the limit is {MAX_BATCH}",
                                  error_code=INVALID_PARAMETER_VALUE)
        probs = self.predictor.predict_proba(texts)
        out = pd.DataFrame(probs, columns=list(CLASS_NAMES))
        out.insert(0, "label", [CLASS_NAMES[int(i)] for i in probs.argmax(1)] if len(probs) else [])
        return out


def signature() -> Any:
    """String ``text`` column in; label plus one probability column per class out."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    return ModelSignature(
        inputs=Schema([ColSpec("string", "text")]),
        outputs=Schema([ColSpec("string", "label")] + [ColSpec("float", c) for c in CLASS_NAMES]),
    )


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:  # tensorflow-cpu provides the tensorflow module
        return version(f"{dist}-cpu")


@contextmanager
def _no_warmup() -> Any:
    old = os.environ.get(WARMUP_ENV)
    os.environ[WARMUP_ENV] = "0"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(WARMUP_ENV, None)
        else:
            os.environ[WARMUP_ENV] = old


def log_pyfunc_model(model_dir: str | Path, name: str = "model") -> str:
    """Log the model directory as a pyfunc model in the active run; returns its model URI.

    MLflow checks the input example by loading the logged model in this process and scoring it.
    That load skips the warm-up (XLA compiles of every padded length: about 17 s of the 25 s a
    log took on 2 vCPU, 2026-12-03), which only a long-lived server needs; the promotion gate
    (``register``) loads the logged model with it, as ``mlflow models serve`` does.
    """
    import newsrnn

    with _no_warmup():
        info = mlflow.pyfunc.log_model(
            name=name,
            python_model=str(Path(__file__).resolve()),
            artifacts={"model_dir": str(Path(model_dir).resolve())},
            # The package travels with the model, and requirements are stated rather than inferred
            # (inference starts a subprocess that loads TensorFlow and the model a second time).
            code_paths=[str(Path(newsrnn.__file__).resolve().parent)],
            pip_requirements=[f"keras=={_version('keras')}", f"tensorflow=={_version('tensorflow')}",
                              f"mlflow=={_version('mlflow')}", "pandas", "numpy", "pyyaml"],
            signature=signature(),
            input_example=pd.DataFrame({"text": ["Stocks rally as oil prices fall"]}),
        )
    return info.model_uri


mlflow.models.set_model(TextClassifier())
