"""Hook implementations of the advframe_advtrain plugin."""

from __future__ import annotations

from importlib import resources

import advframe
from advframe.errors import CheckpointError
from advframe_advtrain.ensemble import EnsembleAdversarialTraining
from advframe_advtrain.goodfellow import FGSMAdversarialTraining
from advframe_advtrain.kurakin import MixedBatchAdversarialTraining
from advframe_advtrain.madry import PGDAdversarialTraining

DEFENSES = (FGSMAdversarialTraining, MixedBatchAdversarialTraining, PGDAdversarialTraining,
            EnsembleAdversarialTraining)

MIXED_WEIGHTS = "weights/mnist_cnn_mixed_step_ll.safetensors"


def mnist_cnn_mixed_step_ll():
    """The shipped mnist_cnn trained with mixed_batch (step_ll, preset mnist) on mnist5k.

    Reproduce with the ``advframe train`` command in docs/defenses.md.
    """
    from advframe.api import model_from_checkpoint

    ref = resources.files("advframe_zoo").joinpath(MIXED_WEIGHTS)
    with resources.as_file(ref) as path:
        if not path.is_file():
            raise CheckpointError(f"the shipped weights advframe_zoo/{MIXED_WEIGHTS} are missing: reinstall advframe")
        model = model_from_checkpoint(path)
    return model.eval()


mnist_cnn_mixed_step_ll.name = "mnist_cnn_mixed_step_ll"  # type: ignore[attr-defined]
mnist_cnn_mixed_step_ll.summary = (  # type: ignore[attr-defined]
    "the shipped mnist_cnn, mixed-batch step_ll adversarially trained on mnist5k (Kurakin 2017)")


@advframe.hookimpl
def register_defenses(register):
    """Register fgsm_at, mixed_batch, pgd_at and ensemble_at."""
    for defense in DEFENSES:
        register(defense)


@advframe.hookimpl
def register_models(register):
    """Register the shipped mixed-batch step_ll MNIST model."""
    register(mnist_cnn_mixed_step_ll)
