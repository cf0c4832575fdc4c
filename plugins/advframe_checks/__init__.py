"""advframe_checks: the built-in honesty checks (gradient masking, attack failure, label leaking).

Registered through the ``register_checks`` hook as the checker ``honesty``;
:func:`advframe.checks.run_checks` and ``advframe eval`` run it. docs/checks.md describes
each check with its threshold and source.
"""
