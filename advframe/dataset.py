"""The Dataset protocol and the in-memory labelled data that readers return."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch

from advframe.errors import CheckpointError, DataError
from advframe.model import eval_mode
from advframe.params import Configurable


@dataclass
class LabeledData:
    """Inputs and labels of one split, ready for a model.

    Attributes:
        x: float tensor ``(N, C, H, W)`` (or ``(N, D)``) with values inside ``bounds``.
        y: long tensor ``(N,)`` of class indices.
        num_classes: number of classes.
        bounds: ``(lo, hi)`` of valid inputs.
        name: data set name, for reports.
        split: split name, for reports.
    """

    x: torch.Tensor
    y: torch.Tensor
    num_classes: int
    bounds: tuple[float, float] = (0.0, 1.0)
    name: str = "custom"
    split: str = "test"
    default_eps: tuple[float, ...] = ()

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def take(self, limit: int | None) -> "LabeledData":
        """The first ``limit`` examples (all when ``limit`` is None)."""
        if limit is None or limit >= len(self):
            return self
        return LabeledData(self.x[:limit], self.y[:limit], self.num_classes, self.bounds,
                           self.name, self.split, self.default_eps)

    def batches(self, batch_size: int, start: int = 0, stop: int | None = None
                ) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
        """Yield ``(offset, x, y)`` batches of ``[start, stop)``."""
        stop = len(self) if stop is None else stop
        for i in range(start, stop, batch_size):
            j = min(i + batch_size, stop)
            yield i, self.x[i:j], self.y[i:j]

    def validate(self) -> "LabeledData":
        """Check shapes, finiteness, bounds and labels.

        Raises:
            DataError: naming the first bad value and how to fix it.
        """
        if self.x.shape[0] != self.y.shape[0]:
            raise DataError(f"data set '{self.name}' has {self.x.shape[0]} inputs but {self.y.shape[0]} labels")
        if not torch.is_floating_point(self.x):
            raise DataError(f"data set '{self.name}' inputs have dtype {self.x.dtype}: convert them to float")
        bad = ~torch.isfinite(self.x)
        if bool(bad.any()):
            idx = int(bad.reshape(len(self), -1).any(dim=1).nonzero()[0])
            raise DataError(f"data set '{self.name}' example {idx} holds NaN or infinite values: clean the data")
        lo, hi = self.bounds
        if len(self):
            mn, mx = float(self.x.min()), float(self.x.max())
            if mn < lo or mx > hi:
                raise DataError(f"data set '{self.name}' values span [{mn:g}, {mx:g}], outside the bounds "
                                f"[{lo:g}, {hi:g}]: rescale the inputs (e.g. divide uint8 pixels by 255)")
            ymin, ymax = int(self.y.min()), int(self.y.max())
            if ymin < 0 or ymax >= self.num_classes:
                raise DataError(f"data set '{self.name}' has label {ymin if ymin < 0 else ymax} outside "
                                f"0..{self.num_classes - 1}")
        return self


class Dataset(Configurable):
    """Base class for data-set readers.

    Class attributes a subclass sets: ``name``, ``summary``, ``num_classes``,
    ``input_shape``, ``bounds``, ``default_eps`` (the eps grid ``eval`` uses when none
    is given), ``splits``, ``needs_data_dir`` (True when the files come from a folder
    the user names with ``--data-dir``) and ``streamed``.
    """

    summary: ClassVar[str] = ""
    num_classes: ClassVar[int] = 10
    input_shape: ClassVar[tuple[int, ...]] = ()
    bounds: ClassVar[tuple[float, float]] = (0.0, 1.0)
    default_eps: ClassVar[tuple[float, ...]] = (2 / 255, 4 / 255, 8 / 255, 16 / 255)
    splits: ClassVar[tuple[str, ...]] = ("train", "test")
    needs_data_dir: ClassVar[bool] = False
    streamed: ClassVar[bool] = False
    """True for a reader whose :meth:`load` returns a map-style data set decoded batch by
    batch (an image folder) instead of tensors in memory: evaluation streams it, training
    refuses it."""

    def load(self, split: str = "test", data_dir: Path | None = None) -> LabeledData:
        """Read one split; subclasses implement :meth:`read`."""
        if split not in self.splits:
            raise DataError(f"data set '{self.name}' has no split '{split}': use one of {', '.join(self.splits)}")
        if self.needs_data_dir:
            if data_dir is None:
                raise DataError(f"data set '{self.name}' reads files from a folder: pass --data-dir DIR")
            data_dir = Path(data_dir)
            if not data_dir.is_dir():
                raise DataError(f"data dir '{data_dir}' does not exist: pass the folder that holds the "
                                f"'{self.name}' files")
        x, y = self.read(split, data_dir)
        if int(x.shape[0]) == 0:
            where = f" in '{data_dir}'" if data_dir is not None else ""
            raise DataError(f"data set '{self.name}' split '{split}' has no examples{where}: check the files")
        data = LabeledData(x, y, self.num_classes, tuple(self.bounds), self.name, split, tuple(self.default_eps))
        return data.validate()

    def read(self, split: str, data_dir: Path | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(x, y)`` tensors of a split."""
        raise NotImplementedError(f"data set {self.name} does not implement read()")

    def info(self) -> dict[str, Any]:
        """A JSON-serialisable description."""
        return {"name": self.name, "num_classes": self.num_classes, "input_shape": list(self.input_shape),
                "bounds": list(self.bounds)}


def declared_input_shape(model: Any) -> tuple[int, ...] | None:
    """The shape of one input that a model declares as ``input_shape`` (itself or the module it wraps), or None.

    Architectures set it (``(3, 32, 32)`` for CIFAR networks); ``advframe import`` records it
    in a checkpoint; image-folder readers resize to it.
    """
    for m in (model, getattr(model, "module", None), getattr(model, "base", None), getattr(model, "model", None)):
        if m is None:
            continue
        shape = getattr(m, "input_shape", None)
        if isinstance(shape, (tuple, list)) and shape:
            return tuple(int(s) for s in shape)
    return None


def check_fits(model: Any, data: LabeledData, device: Any = "cpu", model_name: str | None = None,
               probe: int = 64) -> None:
    """Validate a model against its data, once, before any work: run the first ``probe``
    examples through it, and refuse data whose shape it cannot take, outputs that are NaN
    or infinite, and labels it has no score for.

    A model fed inputs of the wrong shape fails deep inside its first layer with a
    message about matrix sizes; this names the data set's input shape and the shape the
    model expects instead. :func:`advframe.evaluate` and :func:`advframe.train` call it;
    so does a caller that wants the answer before it starts anything else.

    Raises:
        DataError: naming both shapes (or the model's own complaint when it declares
            none), or the label the model has no score for.
        CheckpointError: for NaN or infinite outputs on clean data (broken weights).
    """
    if len(data) == 0:
        raise DataError(f"data set '{data.name}' split '{data.split}' has no examples: check the files")
    x = data.x[:probe].to(device)
    have = tuple(int(s) for s in data.x.shape[1:])
    try:
        with eval_mode(model), torch.no_grad():
            out = model(x)
            scores = model.scores(out) if callable(getattr(model, "scores", None)) else out
    except (RuntimeError, ValueError, IndexError) as exc:
        want = declared_input_shape(model)
        label = f"model '{model_name}'" if model_name else "the model"
        expects = ("x".join(map(str, want)) if want is not None and want != have  # else the model's own words
                   else "another shape (" + str(exc).strip().splitlines()[0][:200] + ")")
        raise DataError(f"data set '{data.name}' has inputs of shape {'x'.join(map(str, have))} but {label} "
                        f"expects {expects}: pass a model made for this data set, or a data set with "
                        f"that shape") from None
    label = f"model '{model_name}'" if model_name else "the model"
    if isinstance(out, torch.Tensor):
        bad = ~torch.isfinite(out.reshape(out.shape[0], -1)).all(dim=1)
        if bool(bad.any()):
            raise CheckpointError(f"{label} gives NaN or infinite outputs on clean example {int(bad.nonzero()[0])} "
                                  f"of '{data.name}': its weights or architecture are broken; use another "
                                  f"checkpoint")
    if isinstance(scores, torch.Tensor):
        check_labels(scores, data.y, data.name, model_name)


def check_labels(scores: torch.Tensor, y: torch.Tensor, data_name: str, model_name: str | None = None) -> None:
    """Refuse labels the model has no score for (label 15 for a 10-class model would count as a miss).

    Args:
        scores: the model's scores on some inputs, one row per example.
        y: labels to check (any examples of the data set).
        data_name: the data set, for the message.
        model_name: the model, for the message.

    Raises:
        DataError: naming the label and the number of classes the model scores.
    """
    top = int(y.max()) if y.numel() else -1
    if scores.dim() == 2 and top >= scores.shape[1]:
        label = f"model '{model_name}'" if model_name else "the model"
        raise DataError(f"data set '{data_name}' has label {top}, but {label} scores only {scores.shape[1]} "
                        f"classes (0..{scores.shape[1] - 1}): pass a model made for this data set")
