"""Hook implementations of the advframe_zoo plugin."""

from __future__ import annotations

import advframe
from advframe.hookspecs import Registrar
from advframe_zoo.datasets import CIFAR10, MNIST, FashionMNIST, MNIST5k
from advframe_zoo.models import CifarCNN, MnistCNN, mnist_cnn_mixed_step_ll, mnist_cnn_robust, mnist_cnn_standard

DATASETS = (MNIST5k, MNIST, FashionMNIST, CIFAR10)
MODELS = (MnistCNN, CifarCNN, mnist_cnn_standard, mnist_cnn_mixed_step_ll, mnist_cnn_robust)


@advframe.hookimpl
def register_datasets(register: Registrar) -> None:
    """Register mnist5k (the embedded default data set) and the MNIST / Fashion-MNIST / CIFAR-10 readers."""
    for dataset in DATASETS:
        register(dataset, default=dataset is MNIST5k)


@advframe.hookimpl
def register_models(register: Registrar) -> None:
    """Register the small CNNs and the shipped MNIST models (standard, mixed-batch, robust).

    The embedded default: ``mnist_cnn_standard`` (shipped weights) is the model
    ``advframe eval`` uses when none is named, ``mnist_cnn`` the architecture
    ``advframe train`` builds when none is named.
    """
    defaults = {mnist_cnn_standard: True, MnistCNN: "train"}
    for model in MODELS:
        register(model, default=defaults.get(model, False))
