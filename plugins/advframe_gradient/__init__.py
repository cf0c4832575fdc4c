"""advframe_gradient: one-step and iterative gradient attacks.

Kurakin, Goodfellow & Bengio, *Adversarial Machine Learning at Scale* (ICLR 2017):
``fgsm``, ``fgsm_pred``, ``step_ll``, ``step_rnd``, ``fast_entropy``, ``fast_grad_l2``,
``fast_grad_linf``, ``rand_sign``, ``rand_normal``, ``iter_basic`` (``bim``), ``iter_ll``;
Madry et al. (ICLR 2018): ``pgd``; Dong et al. (CVPR 2018): ``mim``. Registered
through the ``advframe`` entry-point group like any third-party plugin.
"""

from __future__ import annotations

__all__: list[str] = []
