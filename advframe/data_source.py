"""Uniform, indexable access to evaluation data given in several forms."""

from __future__ import annotations

import os
from typing import Any

import torch

from advframe.dataset import LabeledData
from advframe.errors import DataError, Hint


class BatchSource:
    """Indexable batches of ``(x, y)`` with a name, split, bounds and default eps grid.

    Wraps a :class:`LabeledData` (sliced in memory) or a map-style torch dataset
    (items stacked per batch, so large data sets stream). Batches taken from a torch
    dataset are validated as they are read.
    """

    def __init__(self, data: Any, bounds: tuple[float, float] | None = None, limit: int | None = None):
        self.data = data
        if isinstance(data, LabeledData):
            self.name, self.split = data.name, data.split
            self.bounds = tuple(bounds or data.bounds)
            self.default_eps = tuple(data.default_eps)
        else:
            self.name, self.split = getattr(data, "name", type(data).__name__), getattr(data, "split", "")
            self.bounds = tuple(bounds or getattr(data, "bounds", (0.0, 1.0)))
            self.default_eps = tuple(getattr(data, "default_eps", ()))
        self.limit = limit

    def __len__(self) -> int:
        n = len(self.data)
        return n if self.limit is None else min(n, self.limit)

    def take(self, limit: int | None) -> "BatchSource":
        """The first ``limit`` examples."""
        if limit is not None and limit < 1:
            raise DataError("{limit} is invalid: use a positive number of examples", hint=Hint("limit", limit))
        return BatchSource(self.data, self.bounds, limit if self.limit is None or limit is None
                           else min(limit, self.limit))

    def batch(self, start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Examples ``[start, stop)``."""
        if isinstance(self.data, LabeledData):
            return self.data.x[start:stop], self.data.y[start:stop]
        items = [self.data[i] for i in range(start, stop)]
        x = torch.stack([torch.as_tensor(it[0], dtype=torch.float32) for it in items])
        y = torch.as_tensor([int(it[1]) for it in items], dtype=torch.long)
        LabeledData(x, y, num_classes=int(1 << 30), bounds=self.bounds, name=self.name).validate()
        return x, y


def as_source(data: Any, bounds: tuple[float, float] | None = None) -> BatchSource:
    """Turn a LabeledData, an ``(x, y)`` pair or a map-style dataset into a :class:`BatchSource`.

    Raises:
        DataError: for data that is not finite, outside the bounds, or mismatched.
    """
    if isinstance(data, BatchSource):
        return data
    if isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(t, torch.Tensor) for t in data):
        x, y = data
        if not torch.is_floating_point(x):
            raise DataError(f"inputs have dtype {x.dtype}: convert them to float in the model's input range")
        if torch.is_floating_point(y) or torch.is_complex(y) or y.dtype == torch.bool:
            raise DataError(f"labels have dtype {y.dtype}: pass class indices as integers (y.long())")
        y = y.long()
        num_classes = int(y.max()) + 1 if y.numel() else 1
        data = LabeledData(x, y, num_classes=max(num_classes, 2), bounds=tuple(bounds or (0.0, 1.0)),
                           name="custom", split="")
    if isinstance(data, LabeledData):
        if bounds is not None:
            data = LabeledData(data.x, data.y, data.num_classes, tuple(bounds), data.name, data.split,
                               data.default_eps)
        data.validate()
        return BatchSource(data, bounds)
    if isinstance(data, (str, bytes, os.PathLike)):
        raise DataError(f"cannot evaluate on the name {str(data)!r}: load the data first, e.g. "
                        f"data = advframe.load_dataset({str(data)!r})")
    if hasattr(data, "__getitem__") and hasattr(data, "__len__"):
        return BatchSource(data, bounds)
    raise DataError(f"cannot evaluate on {type(data).__name__}: pass LabeledData, an (x, y) pair of tensors, "
                    f"or a map-style torch dataset")
