"""Hook implementations of the advframe_zoo plugin."""

from __future__ import annotations

from typing import Any

import advframe
from advframe.hookspecs import Registrar
from advframe_zoo.cifar import CIFAR10, CIFAR100
from advframe_zoo.datasets import MNIST, FashionMNIST, MNIST5k
from advframe_zoo.imagefolder import ImageFolder
from advframe_zoo.inception import InceptionV3
from advframe_zoo.models import CifarCNN, MnistCNN, mnist_cnn_mixed_step_ll, mnist_cnn_robust, mnist_cnn_standard
from advframe_zoo.resnet import PreActResNet18, ResNet50
from advframe_zoo.timm_models import timm_model
from advframe_zoo.wide_resnet import WRN28_10, WRN34_10, WRN70_16, WideResNet

DATASETS = (MNIST5k, MNIST, FashionMNIST, CIFAR10, CIFAR100, ImageFolder)
MODELS = (MnistCNN, CifarCNN, mnist_cnn_standard, mnist_cnn_mixed_step_ll, mnist_cnn_robust,
          PreActResNet18, WideResNet, WRN28_10, WRN34_10, WRN70_16, ResNet50, InceptionV3, timm_model)


@advframe.hookimpl
def register_datasets(register: Registrar) -> None:
    """Register mnist5k (the embedded default data set) and the readers of MNIST / Fashion-MNIST IDX files,
    CIFAR-10 / -100 (binary and torchvision's python folders) and image folders."""
    for dataset in DATASETS:
        register(dataset, default=dataset is MNIST5k)


@advframe.hookimpl
def register_models(register: Registrar) -> None:
    """Register the small CNNs, the shipped MNIST models (standard, mixed-batch, robust), RobustBench's
    architectures with its parameter names (PreActResNet-18, WideResNets, ResNet-50), Inception v3 with
    torchvision's and the timm family.

    The embedded default: ``mnist_cnn_standard`` (shipped weights) is the model
    ``advframe eval`` uses when none is named, ``mnist_cnn`` the architecture
    ``advframe train`` builds when none is named.
    """
    defaults = {mnist_cnn_standard: True, MnistCNN: "train"}
    for model in MODELS:
        register(model, default=defaults.get(model, False))


@advframe.hookimpl
def register_commands(app: Any) -> None:
    """Add ``advframe import`` (typer is imported only here, by the CLI)."""
    from advframe_zoo.cli import import_command

    app.command("import")(import_command)
