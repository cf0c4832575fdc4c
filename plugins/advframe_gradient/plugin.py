"""Hook implementations of the advframe_gradient plugin."""

from __future__ import annotations

import advframe
from advframe.hookspecs import Registrar
from advframe_gradient.iterative import IterBasic, IterLL
from advframe_gradient.kl import PGDKL
from advframe_gradient.momentum import MIM
from advframe_gradient.noise import RandNormal, RandSign
from advframe_gradient.one_step import FGSM, FastEntropy, FastGradL2, FastGradLinf, FGSMPred, StepLL, StepRnd
from advframe_gradient.pgd import PGD

ATTACKS = (FGSM, FGSMPred, StepLL, StepRnd, FastEntropy, FastGradL2, FastGradLinf, RandSign, RandNormal,
           IterBasic, IterLL, PGD, MIM, PGDKL)


#: The attacks of Kurakin et al. 2017's transfer tables (§4.4), the default of ``advframe transfer``.
TRANSFER_SUITE = advframe.Suite("kurakin_transfer", (("fgsm", {}), ("iter_basic", {}), ("iter_ll", {})),
                                "fgsm, iter_basic and iter_ll, the attacks of Kurakin et al. 2017's transfer tables")


@advframe.hookimpl
def register_suites(register: Registrar) -> None:
    """Register the transfer suite of Kurakin et al. 2017, the default of ``advframe transfer``."""
    register(TRANSFER_SUITE, default="transfer")


@advframe.hookimpl
def register_attacks(register: Registrar) -> None:
    """Register the one-step, noise and iterative gradient attacks; iter_ll is the default attack."""
    for attack in ATTACKS:
        register(attack, default=attack is IterLL)
