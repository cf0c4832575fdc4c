"""A conformance kit for plugin authors: check an attack, model, data set or defense.

Each ``check_*`` function exercises a component against advframe's contracts and
returns a list of :class:`Finding` (warnings), or raises :class:`ConformanceError` (an
``AssertionError``) listing every broken contract. pytest is not needed to use it::

    from advframe.testing import check_attack

    def test_my_attack():
        check_attack(MyAttack)                  # raises ConformanceError on a problem

:class:`CountingModel` counts the backward passes an attack makes and
:func:`toy_model` builds a small seeded classifier for any input shape.
"""

from __future__ import annotations

from advframe.testing._core import (ConformanceError, CountingModel, Finding, ToyClassifier, random_inputs,
                                    random_labels, toy_model)
from advframe.testing.attacks import AttackCheckOptions, check_attack
from advframe.testing.components import check_dataset, check_defense, check_model

__all__ = ["AttackCheckOptions", "ConformanceError", "CountingModel", "Finding", "ToyClassifier", "check_attack",
           "check_dataset", "check_defense", "check_model", "random_inputs", "random_labels", "toy_model"]
