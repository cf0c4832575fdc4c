"""Hook implementations of the advframe_advtrain plugin."""

from __future__ import annotations

import advframe
from advframe.hookspecs import Registrar
from advframe_advtrain.ensemble import EnsembleAdversarialTraining
from advframe_advtrain.goodfellow import FGSMAdversarialTraining
from advframe_advtrain.kurakin import MixedBatchAdversarialTraining
from advframe_advtrain.madry import PGDAdversarialTraining
from advframe_advtrain.trades import TRADES
from advframe_advtrain.wong import FastAdversarialTraining

#: Plugins these defenses need: their attacks come from the gradient plugin.
requires = ("gradient",)

DEFENSES = (FGSMAdversarialTraining, MixedBatchAdversarialTraining, PGDAdversarialTraining,
            EnsembleAdversarialTraining, TRADES, FastAdversarialTraining)


@advframe.hookimpl
def register_defenses(register: Registrar) -> None:
    """Register fgsm_at, mixed_batch, pgd_at, ensemble_at, trades and fast_at."""
    for defense in DEFENSES:
        register(defense)
