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
    model declares.

    Raises:
        ParameterError: an option the data set does not take, or no size for a reader that needs one.
    """
    from advframe.arrays import is_array_file
    from advframe.dataset import declared_input_shape

    takes = {} if is_array_file(dataset) else dict(plugins.registry().get("datasets", dataset).factory.defaults)
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
    return net, data, name


def resolve_batch_size(text: str, net: Any, data: Any, device: str, limit: Optional[int],
                       resumed: Optional[ResumeState] = None) -> int:
    """``--batch-size``, or for ``auto`` the size found on the device, reported on stderr.

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
    from advframe.model import as_model

    source = as_source(data).take(limit)
    x, y = source.batch(0, min(2, len(source)))
    model = as_model(net).to(device)
    found = find_batch_size(model, x.to(device), y.to(device), device, cap=len(source))
    how = ("largest that fit by trial" if found.method == "trial"
           else "estimated from the activation memory per example and the memory available")
    why = (f"{round((1 - HEADROOM) * 100)} % kept free for the attacks' own tensors" if found.batch_size < found.largest
           else "every example in one batch")
    render.err_console.print(f"batch size auto: {found.batch_size} ({how}: {found.largest}; {why})", highlight=False)
    return found.batch_size
