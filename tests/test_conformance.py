"""Every built-in attack passes the conformance kit (advframe.testing) that third parties run.

The kit labels half its batch as the model predicts, so each attack runs its search there;
that is what catches fab_t failing on an l2 run that breaks nothing (found first by the
worst-case l2 runs of docs/worst-case.md).
"""

from __future__ import annotations

import functools

import pytest

import advframe
from advframe import plugins
from advframe.testing import check_attack
from tests.helpers import FAST_ATTACK_PARAMS

#: Attacks that cannot run without a file the user trains first (the generator runs through
#: evaluate, with the engine's audit, in test_advnet_training.py).
NEEDS_A_FILE = {"generator"}


def _builtin_attacks() -> list[str]:
    return [n for n in plugins.registry().names("attacks") if n not in NEEDS_A_FILE]


def test_every_builtin_attack_is_checked():
    names = set(_builtin_attacks())
    assert {"pgd", "iter_ll", "fgsm", "cw_l2", "deepfool", "apgd_ce", "fab_t", "square"} <= names
    assert len(names) >= 20


@pytest.mark.parametrize("name", _builtin_attacks())
def test_builtin_attack_passes_the_conformance_kit(name):
    factory = functools.partial(advframe.get_attack, name, **FAST_ATTACK_PARAMS.get(name, {}))
    check_attack(factory, check_devices=["cpu"])
