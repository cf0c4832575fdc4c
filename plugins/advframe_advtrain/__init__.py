"""advframe_advtrain: adversarial training defenses.

* ``fgsm_at`` — Goodfellow, Shlens & Szegedy (2015): α·J(x, y) + (1 − α)·J(x + ε·sign ∇ₓJ(x, y), y).
* ``mixed_batch`` — Kurakin, Goodfellow & Bengio (2017), Algorithm 1: k of m examples replaced
  by one-step adversarial examples with per-example ε, weighted loss with λ.
* ``pgd_at`` — Madry et al. (2018): min-max training against PGD with random start.
* ``ensemble_at`` — Tramèr et al. (2018), as in the ICLR 2019 adversarial-networks paper §4.4:
  adversarial examples from static pre-trained models mixed with clean data.
* ``trades`` — Zhang et al. (2019): CE(f(x), y) + β·KL(f(x) ‖ f(x′)), x′ by PGD on the KL.
* ``fast_at`` — Wong, Rice & Kolter (2020): FGSM from a uniform random start, α = 1.25ε,
  one-cycle learning rate, stopped on catastrophic overfitting.
"""

from __future__ import annotations

__all__: list[str] = []
