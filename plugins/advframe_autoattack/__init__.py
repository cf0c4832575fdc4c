"""advframe_autoattack: the attacks of AutoAttack (Croce & Hein, ICML 2020) — APGD-CE,
APGD-T, APGD-DLR, FAB-T and Square — and the ``autoattack`` suites.

Needs the ``gradient`` plugin (``advframe_gradient``), which owns the DLR and margin losses.
"""
