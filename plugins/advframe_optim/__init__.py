"""advframe_optim: optimisation attacks (Carlini–Wagner L2, L-BFGS, DeepFool).

The attacks register through the ``advframe`` entry point ``optim =
"advframe_optim.plugin"``, exactly as a third-party plugin would.
"""

from advframe_optim.cw import CarliniWagnerL2
from advframe_optim.deepfool import DeepFool
from advframe_optim.lbfgs import LBFGSAttack

__all__ = ["CarliniWagnerL2", "DeepFool", "LBFGSAttack"]
