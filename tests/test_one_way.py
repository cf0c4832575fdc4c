"""One way to do each thing: the rules that keep it so, enforced on the source tree.

* every seed comes from :func:`advframe.ops.derive_seed` (no other formula);
* every adversarial input a defense trains on was made and audited by the engine.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

from advframe.ops import MODULUS, MULTIPLIER, derive_seed

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted(p for d in ("advframe", "plugins") for p in (ROOT / d).rglob("*.py"))


def _is_seed(node: ast.AST) -> bool:
    """Whether an operand is a seed: a name or attribute called ``*seed*`` (not a constant
    such as ``SEED_LIMIT``), ``int()`` of one, or arithmetic on one."""
    if isinstance(node, ast.Name | ast.Attribute):
        name = node.id if isinstance(node, ast.Name) else node.attr
        return "seed" in name.lower() and not name.isupper()
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "int" and node.args:
        return _is_seed(node.args[0])
    if isinstance(node, ast.BinOp):
        return _is_seed(node.left) or _is_seed(node.right)
    return False


def seed_arithmetic(source: str) -> list[tuple[int, str]]:
    """``(line, expression)`` of every arithmetic on a seed, and every computed ``manual_seed`` argument."""
    hits = []
    tree = ast.parse(source)
    for fn in [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == "derive_seed"]:
        fn.body = []  # the one formula itself
    for node in ast.walk(tree):
        if isinstance(node, ast.BinOp) and _is_seed(node):
            hits.append((node.lineno, ast.unparse(node)))
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr == "manual_seed" and node.args and isinstance(node.args[0], ast.BinOp)):
            hits.append((node.lineno, ast.unparse(node)))
    return hits


def test_derive_seed_is_the_fold_of_its_parts():
    assert derive_seed(7) == 7
    assert derive_seed(1, 2) == MULTIPLIER + 2
    assert derive_seed(1, 2, 3) == (MULTIPLIER + 2) * MULTIPLIER + 3
    assert derive_seed(0, "augment", 4) == derive_seed(0, 3_944_118_809, 4)  # zlib.crc32(b"augment")


def test_derive_seed_separates_positions_and_fits_torch():
    seen = {derive_seed(s, a, b) for s in range(3) for a in range(50) for b in range(50)}
    assert len(seen) == 3 * 50 * 50
    assert derive_seed(0, "targets", 5) != derive_seed(0, "labels", 5)
    big = derive_seed(2 ** 32 - 1, 2 ** 40, 2 ** 40, 2 ** 40)
    assert 0 <= big < MODULUS
    torch.Generator().manual_seed(big)  # accepted
    assert derive_seed(7, 10 ** 6, 3, below=2 ** 32) == ((7 * MULTIPLIER + 10 ** 6) * MULTIPLIER + 3) % 2 ** 32


def test_a_training_steps_attack_seed_is_a_valid_seed_parameter():
    from advframe.params import SEED_LIMIT
    from advframe_advtrain.madry import PGDAdversarialTraining

    defense = PGDAdversarialTraining()
    defense.seed = SEED_LIMIT - 1
    seeds = [defense.step_seed(step) for step in (0, 10 ** 6, 10 ** 9)]
    assert all(0 <= s < SEED_LIMIT for s in seeds) and len(set(seeds)) == 3


def test_the_rule_finds_a_second_formula():
    assert seed_arithmetic("g = torch.Generator().manual_seed(seed * 7919 + start)")
    assert seed_arithmetic("s = (self.seed * 1_000_003 + step) % 2 ** 62")
    assert seed_arithmetic("torch.manual_seed(base + 1)")
    assert not seed_arithmetic("g = torch.Generator().manual_seed(derive_seed(seed, step))")


def test_no_seed_formula_but_derive_seed():
    found = [f"{p.relative_to(ROOT)}:{line}: {expr}" for p in SOURCES
             for line, expr in seed_arithmetic(p.read_text())]
    assert not found, "seeds computed outside advframe.ops.derive_seed:\n" + "\n".join(found)


# --- every adversarial input a defense trains on comes from the engine -------------------------

DEFENSE_PARAMS = {"ensemble_at": {"sources": "mnist_cnn", "include_current": True},
                  "advnet": {"width": 2, "eps": 0.3}, "mixed_batch": {"k": 6}}


def _rows(t: torch.Tensor) -> set[bytes]:
    flat = t.detach().cpu().reshape(t.shape[0], -1).contiguous()
    return {row.numpy().tobytes() for row in flat}


def _trained_inputs(name: str, monkeypatch) -> tuple[set[bytes], set[bytes], set[bytes]]:
    """``(clean rows, rows the engine audited and passed, rows the trained model was given)``
    over two training steps of defense ``name`` (forwards inside :meth:`Engine.craft`, the
    attack's own passes, are not training inputs)."""
    import advframe
    from advframe.engine import Engine
    from advframe.threat import ThreatModel

    passed: set[bytes] = set()
    real_audit, real_craft = ThreatModel.audit, Engine.craft
    depth = [0]

    def audit(self, x_adv, x):
        report = real_audit(self, x_adv, x)
        if report.ok:
            passed.update(_rows(x_adv))
        return report

    def craft(self, *args, **kwargs):
        depth[0] += 1
        try:
            return real_craft(self, *args, **kwargs)
        finally:
            depth[0] -= 1

    monkeypatch.setattr(ThreatModel, "audit", audit)
    monkeypatch.setattr(Engine, "craft", craft)
    data = advframe.load_dataset("mnist5k", split="train").take(12)
    torch.manual_seed(0)
    model = advframe.build_model("mnist_cnn", width=0.5)
    given: set[bytes] = set()
    model.register_forward_pre_hook(lambda module, args: None if depth[0] else given.update(_rows(args[0])))
    defense = advframe.get_defense(name, **DEFENSE_PARAMS.get(name, {}))
    defense.setup(model, data, {"seed": 0, "batch_size": 12, "steps_per_epoch": 1})
    for step in range(2):
        loss, _ = defense.training_loss(model, data.x, data.y, step)
        loss.backward()
    return _rows(data.x), passed, given


def _defenses() -> list[str]:
    from advframe import plugins

    return plugins.registry().names("defenses")


@pytest.mark.parametrize("name", _defenses())
def test_a_defense_trains_only_on_clean_or_engine_audited_inputs(name, monkeypatch):
    clean, passed, given = _trained_inputs(name, monkeypatch)
    adversarial = given - clean
    assert name == "standard" or adversarial, f"defense {name} trained on no adversarial input"
    unaudited = adversarial - passed
    assert not unaudited, (f"defense {name} trained on {len(unaudited)} adversarial input(s) the engine never "
                           f"audited: craft them with advframe.engine (Engine.craft, craft_audited, ...)")
