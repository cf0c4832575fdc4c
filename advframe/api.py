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
from advframe.arrays import is_array_file, load_array_dataset
from advframe.attack import Attack
from advframe.dataset import Dataset, LabeledData
from advframe.defense import Defense
from advframe.model import as_model
from advframe.errors import AdvframeError, ParameterError
from advframe.model_io import MODEL_PARAM, check_model_params, model_from_checkpoint, save_model
from advframe.options import resolve_device

__all__ = ["build_model", "get_attack", "get_dataset", "get_defense", "load_dataset", "load_model",
           "model_from_checkpoint", "save_model"]


def get_attack(name: str, **params: Any) -> Attack:
    """Construct a registered attack, e.g. ``get_attack(NAME, steps=40)`` (see ``advframe list attacks``).

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


def build_model(name: str, /, **config: Any) -> nn.Module:
    """Construct a registered model architecture (untrained unless the factory loads weights).

    Raises:
        UnknownNameError: for an unknown name.
        ParameterError: for a keyword the factory does not take, a value it cannot use
            (``width="abc"``), or an absurd size (``width=1e308``, more than
            :data:`~advframe.model_io.MAX_PARAMETERS` parameters).
    """
    entry = plugins.registry().get("models", name)
    if config:
        check_model_params(entry.factory, config, entry.name)
    try:
        return plugins.registry().build("models", name, **config)
    except AdvframeError:
        raise
    except (TypeError, ValueError, RuntimeError, MemoryError, OverflowError) as exc:
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise ParameterError(f"model '{entry.name}' cannot be built with "
                             f"{', '.join(f'{k}={v!r}' for k, v in config.items())} "
                             f"({type(exc).__name__}: {first[:160]}): fix its parameters ({{config}})",
                             hint=MODEL_PARAM) from None


def _looks_like_path(spec: str) -> bool:
    return spec.endswith(".safetensors") or os.sep in spec or "/" in spec or Path(spec).is_file()


def load_model(spec: str | os.PathLike[str] | nn.Module, device: str | torch.device = "cpu", *,
               arch: str | None = None, config: dict[str, Any] | None = None) -> nn.Module:
    """A model ready for evaluation, in eval mode.

    Args:
        spec: a registered model name, a ``.safetensors`` checkpoint written by advframe
            (the architecture is rebuilt from its metadata, see :func:`advframe.save_model`),
            or an ``nn.Module`` (a plain classifier is wrapped with cross-entropy and arg-max).
        device: where to put it.
        arch: for a checkpoint, ``package.module:factory`` that builds its architecture
            (needed when no installed plugin registers it; a path recorded in the file is
            never imported).
        config: constructor keywords overriding the checkpoint's ``model_config``.

    Raises:
        CheckpointError: for a missing, corrupt or non-safetensors checkpoint, one whose
            architecture is unknown (the message names the ``--arch`` to pass), or weights
            that do not fit.
        UnknownNameError: for an unknown model name.
        ParameterError: for an unknown device, or a ``config`` the architecture cannot take.
    """
    device = resolve_device(device)
    if config is not None and not isinstance(config, dict):
        raise ParameterError(f"config is {type(config).__name__}, expected a dict of constructor keywords")
    if isinstance(spec, nn.Module):
        model = as_model(spec)
    elif isinstance(spec, (str, os.PathLike)) and _looks_like_path(str(spec)):
        model = as_model(model_from_checkpoint(spec, arch=arch, config=config))
    else:
        model = as_model(build_model(str(spec), **(config or {})))
    return model.to(device).eval()


def load_dataset(name: str, split: str = "test", data_dir: str | os.PathLike[str] | None = None,
                 **params: Any) -> LabeledData:
    """Read a split of a registered data set, or of an array file, validated (finite, inside bounds).

    ``name`` may be an ``.npz`` or ``.safetensors`` file holding ``x`` and ``y`` (see
    :mod:`advframe.arrays`): your own data without a reader plugin.

    Raises:
        UnknownNameError: for a data set name that no plugin registered.
        DataError: for a missing data folder, an unknown split, or invalid values.
    """
    if is_array_file(name):
        return load_array_dataset(name, split)
    return get_dataset(name, **params).load(split, Path(data_dir) if data_dir is not None else None)
