"""The AutoAttack suites, as data: ordered ``(attack name, parameters)`` lists.

``autoattack`` is the standard AutoAttack ensemble (Croce & Hein, *Reliable evaluation of
adversarial robustness with an ensemble of diverse parameter-free attacks*, ICML 2020,
§5): APGD-CE, APGD-T (9 target classes), FAB-T (9 target classes) and Square (5,000
queries), each with its defaults. ``autoattack_fast`` keeps the two gradient attacks,
which break almost every example the full ensemble breaks at a fraction of the cost.
A worst-case evaluation runs each attack on the examples the previous ones left robust;
an example counts as robust only if every attack of the suite fails on it.

:mod:`advframe_autoattack.plugin` registers them through the ``register_suites`` hook.
"""

from __future__ import annotations

from typing import Any

SUITES: dict[str, list[tuple[str, dict[str, Any]]]] = {
    "autoattack": [("apgd_ce", {}), ("apgd_t", {}), ("fab_t", {}), ("square", {"queries": 5000})],
    "autoattack_fast": [("apgd_ce", {}), ("apgd_t", {})],
}

SUMMARIES: dict[str, str] = {
    "autoattack": "AutoAttack standard: apgd_ce, apgd_t, fab_t, square (Croce & Hein 2020)",
    "autoattack_fast": "AutoAttack's gradient attacks only: apgd_ce, apgd_t (Croce & Hein 2020)",
}
