"""Hook implementations of the advframe_zoo plugin."""

from __future__ import annotations

import advframe
from advframe_zoo.datasets import CIFAR10, MNIST, FashionMNIST, MNIST5k
from advframe_zoo.models import CifarCNN, MnistCNN, mnist_cnn_mixed_step_ll, mnist_cnn_standard

DATASETS = (MNIST5k, MNIST, FashionMNIST, CIFAR10)
MODELS = (MnistCNN, CifarCNN, mnist_cnn_standard, mnist_cnn_mixed_step_ll)


@advframe.hookimpl
def register_datasets(register):
    """Register mnist5k and the MNIST / Fashion-MNIST / CIFAR-10 readers."""
    for dataset in DATASETS:
        register(dataset)


@advframe.hookimpl
def register_models(register):
    """Register the small CNNs and the shipped standard-trained MNIST model."""
    for model in MODELS:
        register(model)
