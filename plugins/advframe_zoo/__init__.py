"""advframe_zoo: the papers' models, data-set readers and the embedded default.

* data sets: ``mnist5k`` (5,000 real MNIST digits shipped as package data, a fixed
  stratified 4,000 / 1,000 split), and readers of standard formats from a folder the
  user names: ``mnist`` / ``fashion_mnist`` (IDX files) and ``cifar10`` (binary version);
* models: ``mnist_cnn`` and ``cifar_cnn`` (small CNNs with a width factor), and
  ``mnist_cnn_standard``, the shipped standard-trained MNIST model.
"""

from __future__ import annotations
