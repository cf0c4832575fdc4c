"""advframe: a plugin-based PyTorch framework for adversarial robustness.

The core API::

    import advframe
    model = advframe.load_model(MODEL_NAME_OR_CHECKPOINT)   # see 'advframe list models'
    data = advframe.load_dataset(DATASET_NAME, split="test")
    result = advframe.evaluate(model, data, eps=[0.1, 0.3])  # the attacks plugins declare as default

Importing advframe imports neither typer nor rich (only the CLI does).
"""

from __future__ import annotations

__version__ = "0.1.0"

from advframe.api import build_model, get_attack, get_dataset, get_defense, load_dataset, load_model, save_model
from advframe.attack import Attack
from advframe.checkpoint import load_checkpoint, save_checkpoint
from advframe.dataset import Dataset, LabeledData
from advframe.defense import Defense
from advframe.errors import AdvframeError
from advframe.evaluation import EvalResult, RunRow, evaluate
from advframe.hookspecs import hookimpl
from advframe.model import Classifier, Model, Normalized, as_model
from advframe.suite import Suite
from advframe.threat import ThreatModel
from advframe.training import TrainResult, train

__all__ = [
    "AdvframeError", "Attack", "EvalResult", "RunRow", "TrainResult", "Classifier", "Dataset", "Defense", "LabeledData", "Model",
    "Normalized", "Suite", "ThreatModel",
    "__version__", "as_model", "build_model", "evaluate", "get_attack", "get_dataset", "get_defense",
    "hookimpl", "load_checkpoint", "load_dataset", "load_model", "save_checkpoint", "save_model",
    "train",
]
