"""Compare two folders written by ``benchmarks/behaviour_snapshot.sh`` (before and after a change).

Results documents (``*.json``) are compared value by value, ignoring ``seconds``; every
difference is listed by its path in the document. Checkpoints (``*.safetensors``) are
compared tensor by tensor (bit-identical, ``torch.equal``) and their metadata key by key.

Usage: ``python benchmarks/compare_snapshots.py BEFORE_DIR AFTER_DIR``
Exit code 0 when everything is identical, 1 otherwise.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

IGNORED = {"seconds"}


def diff_json(a: Any, b: Any, path: str = "") -> list[str]:
    """Paths where two JSON values differ (``seconds`` ignored)."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in sorted(set(a) | set(b)):
            if key in IGNORED:
                continue
            if key not in a or key not in b:
                out.append(f"{path}/{key}: only {'after' if key not in a else 'before'}")
            else:
                out += diff_json(a[key], b[key], f"{path}/{key}")
        return out
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{path}: {len(a)} items before, {len(b)} after"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in diff_json(x, y, f"{path}[{i}]")]
    return [] if a == b else [f"{path}: {a!r} -> {b!r}"]


def diff_checkpoint(a: Path, b: Path) -> list[str]:
    """Tensors that are not bit-identical, and metadata keys that differ."""
    out = []
    with safe_open(str(a), "pt") as fa, safe_open(str(b), "pt") as fb:
        keys_a, keys_b = set(fa.keys()), set(fb.keys())
        out += [f"tensor {k}: only before" for k in sorted(keys_a - keys_b)]
        out += [f"tensor {k}: only after" for k in sorted(keys_b - keys_a)]
        for k in sorted(keys_a & keys_b):
            if not torch.equal(fa.get_tensor(k), fb.get_tensor(k)):
                out.append(f"tensor {k}: differs")
        meta_a, meta_b = fa.metadata() or {}, fb.metadata() or {}
    for key in sorted(set(meta_a) | set(meta_b)):
        va, vb = meta_a.get(key), meta_b.get(key)
        try:
            va, vb = json.loads(va) if va else va, json.loads(vb) if vb else vb
        except json.JSONDecodeError:
            pass
        out += [f"metadata {d}" for d in diff_json({key: va}, {key: vb})]
    return out


def main(before: Path, after: Path) -> int:
    same = True
    for a in sorted(before.iterdir()):
        b = after / a.name
        if not b.exists():
            print(f"{a.name}: missing after")
            same = False
            continue
        if a.suffix == ".json":
            diffs = diff_json(json.loads(a.read_text()), json.loads(b.read_text()))
        elif a.suffix == ".safetensors":
            diffs = diff_checkpoint(a, b)
        else:
            continue
        print(f"{a.name}: {'identical' if not diffs else f'{len(diffs)} difference(s)'}")
        for d in diffs:
            print(f"  {d}")
        same = same and not diffs
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2])))
