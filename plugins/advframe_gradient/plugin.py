"""Hook implementations of the advframe_gradient plugin."""

from __future__ import annotations

import advframe
from advframe_gradient.iterative import IterBasic, IterLL
from advframe_gradient.momentum import MIM
from advframe_gradient.noise import RandNormal, RandSign
from advframe_gradient.one_step import (FGSM, FastEntropy, FastGradL2, FastGradLinf, FGSMPred, StepLL,
                                        StepRnd)
from advframe_gradient.pgd import PGD

ATTACKS = (FGSM, FGSMPred, StepLL, StepRnd, FastEntropy, FastGradL2, FastGradLinf, RandSign, RandNormal,
           IterBasic, IterLL, PGD, MIM)


@advframe.hookimpl
def register_attacks(register):
    """Register the one-step, noise and iterative gradient attacks."""
    for attack in ATTACKS:
        register(attack)
