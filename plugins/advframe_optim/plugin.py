"""Hook implementations of the advframe_optim plugin."""

from __future__ import annotations

import advframe
from advframe.hookspecs import Registrar
from advframe_optim.cw import CarliniWagnerL2
from advframe_optim.deepfool import DeepFool
from advframe_optim.lbfgs import LBFGSAttack


@advframe.hookimpl
def register_attacks(register: Registrar) -> None:
    """Register ``cw_l2``, ``lbfgs`` and ``deepfool``."""
    register(CarliniWagnerL2)
    register(LBFGSAttack)
    register(DeepFool)
