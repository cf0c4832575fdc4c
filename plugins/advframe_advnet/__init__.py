"""Built-in advframe plugin: adversarial networks, a generator trained against the classifier.

Implements *A Direct Approach to Robust Deep Learning Using Adversarial Networks* (ICLR 2019
submission): the generators G1 (encoder–decoder), G2 (decoder from Gaussian z) and
G3 (decoder from the one-hot label), the classifiers D1 and D2 of its appendix, the ``advnet``
defense (the minimax of its Eq. 4 with the gradient regularisation of Eq. 5), generator
training against a fixed classifier (its Table 5) and the trained generator as an attack.
"""
