"""Hook implementations: advframe imports this module through the ``advframe`` entry point."""

from __future__ import annotations

import advframe
from advframe.hookspecs import Registrar
from advframe_example.attack import RandomStartFGSM
from advframe_example.dataset import Stripes
from advframe_example.model import ExampleMLP


@advframe.hookimpl
def register_attacks(register: Registrar) -> None:
    """Register ``example_r_fgsm``."""
    register(RandomStartFGSM)


@advframe.hookimpl
def register_datasets(register: Registrar) -> None:
    """Register ``example_stripes``."""
    register(Stripes)


@advframe.hookimpl
def register_models(register: Registrar) -> None:
    """Register ``example_mlp``."""
    register(ExampleMLP)
