"""Hook implementations of the advframe_advnet plugin (adversarial networks)."""

from __future__ import annotations

from typing import Any

import advframe
from advframe.hookspecs import Registrar
from advframe_advnet.attack import GeneratorAttack
from advframe_advnet.classifiers import D1, D2
from advframe_advnet.defense import AdversarialNetworks


@advframe.hookimpl
def register_attacks(register: Registrar) -> None:
    """Register ``generator`` (a trained generator as an attack)."""
    register(GeneratorAttack)


@advframe.hookimpl
def register_defenses(register: Registrar) -> None:
    """Register ``advnet`` (adversarial networks, Eq. 4–5)."""
    register(AdversarialNetworks)


@advframe.hookimpl
def register_models(register: Registrar) -> None:
    """Register the paper's classifiers ``d1_cnn`` (MNIST) and ``d2_resnet`` (32×32 images)."""
    register(D1)
    register(D2)


@advframe.hookimpl
def register_commands(app: Any) -> None:
    """Add ``advframe train-generator`` (typer is imported only here, by the CLI)."""
    from advframe_advnet.cli import train_generator_command

    app.command("train-generator")(train_generator_command)
