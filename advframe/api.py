"""The Python API: build components by name, load models and data sets.

Everything here returns data; nothing prints.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from advframe import plugins
from advframe.attack import Attack
from advframe.checkpoint import load_checkpoint
from advframe.dataset import Dataset, LabeledData
from advframe.defense import Defense
from advframe.errors import CheckpointError
from advframe.model import as_model


def get_attack(name: str, **params: Any) -> Attack:
    """Construct a registered attack, e.g. ``get_attack("pgd", steps=40)``.

    Raises:
        UnknownNameError: for an unknown name (with the closest known name).
        ParameterError: for a parameter the attack does not take.
    """
    return plugins.registry().build("attacks", name, **params)


def get_defense(name: str, **params: Any) -> Defense:
    """Construct a registered defense."""
    return plugins.registry().build("defenses", name, **params)


def get_dataset(name: str, **params: Any) -> Dataset:
    """Construct a registered data-set reader."""
    return plugins.registry().build("datasets", name, **params)


def build_model(name: str, **config: Any) -> nn.Module:
    """Construct a registered model architecture (untrained unless the factory loads weights)."""
    return plugins.registry().build("models", name, **config)


def _looks_like_path(spec: str) -> bool:
    return spec.endswith(".safetensors") or os.sep in spec or "/" in spec or Path(spec).is_file()


def load_model(spec: str | os.PathLike[str] | nn.Module, device: str | torch.device = "cpu") -> nn.Module:
    """A model ready for evaluation, in eval mode.

    Args:
        spec: a registered model name, a ``.safetensors`` checkpoint written by advframe
            (the architecture is rebuilt from its metadata), or an ``nn.Module`` (a plain
            classifier is wrapped with cross-entropy and arg-max).
        device: where to put it.

    Raises:
        CheckpointError: for a missing, corrupt or non-safetensors checkpoint, or one
            without advframe metadata.
        UnknownNameError: for an unknown model name.
    """
    if isinstance(spec, nn.Module):
        model = as_model(spec)
    elif isinstance(spec, (str, os.PathLike)) and _looks_like_path(str(spec)):
        model = model_from_checkpoint(spec)
    else:
        model = build_model(str(spec))
    return model.to(device).eval()


def model_from_checkpoint(path: str | os.PathLike[str]) -> nn.Module:
    """Rebuild a model from an advframe safetensors checkpoint."""
    tensors, meta = load_checkpoint(path)
    name = meta.get("model")
    if not isinstance(name, str):
        raise CheckpointError(f"'{path}' has no 'model' entry in its metadata: it was not written by advframe; "
                              f"re-save it with advframe.save_model")
    model = build_model(name, **(meta.get("model_config") or {}))
    state = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")} or tensors
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise CheckpointError(f"'{path}' does not fit model '{name}': missing {list(missing)[:3]}, "
                              f"unexpected {list(unexpected)[:3]}")
    model._advframe_checkpoint = {k: v for k, v in meta.items()}
    return model


def load_dataset(name: str, split: str = "test", data_dir: str | os.PathLike[str] | None = None,
                 **params: Any) -> LabeledData:
    """Read a split of a registered data set, validated (finite, inside bounds).

    Raises:
        UnknownNameError: for a data set name that no plugin registered.
        DataError: for a missing data folder, an unknown split, or invalid values.
    """
    return get_dataset(name, **params).load(split, Path(data_dir) if data_dir is not None else None)
