"""What ``advframe eval`` reads before it starts: the model, the data (sized to the model), the batch size."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

from advframe import plugins
from advframe.cli import render
from advframe.cli.common import default_name, parse_batch_size
from advframe.errors import DataError, ParameterError
from advframe.evaluation import ResumeState


def dataset_params(dataset: str, net: Any, image_size: Optional[int], class_map: Optional[Path]) -> dict[str, Any]:
    """The reader parameters ``--image-size`` and ``--class-map`` give (image folders take them).

    A reader that takes ``image_size`` gets the user's, else the side of the input shape the
    model declares; one that takes ``resize`` gets ``image_size / crop_pct`` when the model's
    checkpoint records timm's ``crop_pct``.

    Raises:
        ParameterError: an option the data set does not take, or no size for a reader that needs one.
    """
    from advframe.arrays import is_array_file
    from advframe.dataset import declared_input_shape

    factory = None if is_array_file(dataset) else plugins.registry().get("datasets", dataset).factory
    takes = dict(getattr(factory, "defaults", None) or {})  # a factory function declares none
    params: dict[str, Any] = {}
    for option, key, value in (("--image-size", "image_size", image_size), ("--class-map", "class_map", class_map)):
        if value is not None and key not in takes:
            raise ParameterError(f"{option} applies to data sets read from image folders (e.g. imagefolder); "
                                 f"'{dataset}' does not take it: drop {option}")
        if value is not None:
            params[key] = str(value) if isinstance(value, Path) else value
    if "image_size" in takes and "image_size" not in params:
        shape = declared_input_shape(net)
        if shape is not None:
            params["image_size"] = int(shape[-1])
    crop = (getattr(net, "_advframe_checkpoint", None) or {}).get("crop_pct")  # timm's, recorded by import
    if "resize" in takes and "image_size" in params and isinstance(crop, float) and 0.1 <= crop <= 1.0:
        params["resize"] = int(round(params["image_size"] / crop))
    return params


def load_model_and_data(model: Optional[str], dataset: Optional[str], data_dir: Optional[Path], split: str,
                        device: str, image_size: Optional[int] = None, class_map: Optional[Path] = None,
                        **user: Any) -> tuple[object, object, str]:
    """The model and data the user named, or the embedded default.

    The model is loaded first: an image folder is resized to the input size it declares.
    ``user`` holds the options of :func:`advframe.cli.models.load_user_model` the user gave
    (``arch``, ``model_param``, ``normalize``, ``untrained``).
    """
    import advframe
    from advframe.checkpoint import read_metadata
    from advframe.cli.models import is_checkpoint, load_user_model

    if data_dir is not None and not data_dir.is_dir():
        raise DataError(f"--data-dir '{data_dir}' does not exist: pass an existing folder")
    model_spec = model or (None if user.get("arch") is not None else default_name("models", "--model"))
    if dataset is None:
        if is_checkpoint(model) and Path(model).is_file():
            dataset = read_metadata(model).get("dataset")
        dataset = dataset or default_name("datasets", "--dataset")
    net, name = load_user_model(model_spec, device=device, **user)
    data = advframe.load_dataset(dataset, split=split, data_dir=data_dir,
                                 **dataset_params(dataset, net, image_size, class_map))
    check_class_order(net, data, device)
    return net, data, name


def check_class_order(net: Any, data: Any, device: str) -> None:
    """Refuse an image folder read without a class map whose class count is not the model's.

    Its labels are then the sorted folder names' positions, which cannot be the model's class
    order (3 folders of ImageNet classes against 1,000 outputs).

    Raises:
        DataError: naming both counts and ``--class-map``.
    """
    import torch

    from advframe.model import as_model, eval_mode

    classes = getattr(data, "classes", None)
    if not isinstance(classes, list) or getattr(data, "class_map", "") is not None or len(data) == 0:
        return
    from advframe.dataset import LabeledData, check_fits

    model = as_model(net)
    x0, y0 = data[0]
    check_fits(model, LabeledData(x0.unsqueeze(0), torch.tensor([y0]), 2, data.bounds, data.name, data.split), device)
    with eval_mode(model), torch.no_grad():
        scores = model.scores(model(x0.unsqueeze(0).to(device)))
    if scores.dim() == 2 and scores.shape[1] != len(classes):
        raise DataError(f"the image folder has {len(classes)} class folders but the model scores "
                        f"{scores.shape[1]} classes: pass --class-map FILE (e.g. ImageNet's "
                        f"LOC_synset_mapping.txt) so that the labels follow the model's class order")


def resolve_batch_size(text: str, net: Any, data: Any, device: str, limit: Optional[int],
                       resumed: Optional[ResumeState] = None, report: bool = True) -> int:
    """``--batch-size``, or for ``auto`` the size found on the device, reported on stderr when ``report``.

    A run resumed from ``resumed`` keeps the batch size it used (its saved state holds it).
    """
    given = parse_batch_size(text)
    if given is not None:
        return given
    if resumed is not None:
        saved = json.loads(resumed.path.read_text()).get("config", {}).get("batch_size")
        if isinstance(saved, int) and saved > 0:
            return saved
    from advframe.batch_size import HEADROOM, find_batch_size
    from advframe.data_source import as_source
    from advframe.dataset import LabeledData, check_fits
    from advframe.model import as_model

    source = as_source(data).take(limit)
    x, y = source.batch(0, min(2, len(source)))
    model = as_model(net).to(device)
    check_fits(model, LabeledData(x, y, 2, source.bounds, source.name, source.split), device)  # before it runs
    found = find_batch_size(model, x.to(device), y.to(device), device, cap=len(source))
    how = ("largest that fit by trial" if found.method == "trial"
           else "estimated from the activation memory per example and the memory available")
    why = (f"{round((1 - HEADROOM) * 100)} % kept free for the attacks' own tensors" if found.batch_size < found.largest
           else "every example in one batch")
    if report:
        render.err_console.print(f"batch size auto: {found.batch_size} ({how}: {found.largest}; {why})",
                                 highlight=False)
    return found.batch_size
