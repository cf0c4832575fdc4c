"""advframe_transfer: black-box transfer evaluation (Kurakin, Goodfellow & Bengio, ICLR 2017).

Adversarial examples made on source models, classified by target models: transfer-rate and
error-rate matrices (``advframe transfer``, :func:`advframe_transfer.transfer.transfer`),
and the report layout for ``advframe.transfer/1`` documents (``advframe report``).
"""
