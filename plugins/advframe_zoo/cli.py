"""``advframe import``: RobustBench / timm weights into an advframe checkpoint, once.

Loaded only by the plugin's ``register_commands`` hook, so ``import advframe`` never imports typer.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from advframe.cli import render
from advframe.cli.models import ModelParamOption, NormalizeOption, parse_model_params, parse_normalize
from advframe.cli.common import check_image_size
from advframe.cli.outputs import check_output_path
from advframe.errors import ParameterError
from advframe.threat import ThreatModel, parse_eps


def import_command(
    src: Annotated[Path, typer.Argument(metavar="SRC", help="A RobustBench .pt file (state dict, or {'state_dict': ...}, 'module.'/'model.' prefixes) or a timm / Hugging Face model.safetensors.")],
    arch: Annotated[str, typer.Option("--arch", metavar="NAME", help="The architecture: a registered model (see 'advframe list models'), e.g. wrn_28_10, or timm:NAME.")],
    out: Annotated[Path, typer.Option("--out", help="The advframe checkpoint to write (.safetensors).")],
    model_param: ModelParamOption = None,
    normalize: NormalizeOption = None,
    dataset: Annotated[Optional[str], typer.Option(help="Data set the model is evaluated on by default (default: cifar10 or cifar100 for 32x32 inputs by the class count, else imagefolder).")] = None,
    eps: Annotated[Optional[str], typer.Option(help="The eps the weights were trained for, e.g. 8/255 (recorded as the checkpoint's threat model).")] = None,
    norm: Annotated[Optional[str], typer.Option(help="The norm of that threat model: linf or l2 (default linf).")] = None,
    image_size: Annotated[Optional[int], typer.Option(help="Input side in pixels, when the architecture declares none or another.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print what was written as JSON.")] = False,
) -> None:
    """Import foreign weights into an advframe checkpoint; afterwards 'advframe eval --model OUT' needs no other flag.

    .pt files are read with torch.load(weights_only=True): a pickle that asks for code is refused and never runs.
    """
    from advframe_zoo.importing import describe, import_weights

    if out.suffix != ".safetensors":
        raise ParameterError(f"--out '{out}' must name a .safetensors file, e.g. --out {out.stem}.safetensors")
    check_output_path(out, "--out")
    check_image_size(image_size)
    if norm is not None and eps is None:
        raise ParameterError(f"--norm {norm} without --eps: pass the eps the weights were trained for, "
                             f"e.g. --eps 8/255")
    threat = ThreatModel(norm=norm or "linf", eps=parse_eps(eps)) if eps is not None else None
    result = import_weights(src, arch, out, config=parse_model_params(model_param),
                            normalize=parse_normalize(normalize), dataset=dataset, threat=threat,
                            image_size=image_size)
    if as_json:
        render.console.print_json(json.dumps(describe(result)))
        return
    threat = result.threat_model
    threat_text = f"{threat['norm']} eps {threat['eps']:.4g}" if threat else "not given (--eps)"
    render.console.print(
        f"imported {result.parameters:,} parameters ({result.tensors} tensors) of {arch} from {src.name} "
        f"({result.source['format']}); normalisation: {result.normalize_source}; input "
        f"{'x'.join(map(str, result.input_shape))}; data set {result.dataset}; threat model {threat_text}",
        highlight=False, markup=False)
    render.console.print(f"wrote {out}: evaluate with  advframe eval --model {out}"
                         + ("" if result.dataset == "mnist5k" else " --data-dir DIR"), highlight=False, markup=False)
