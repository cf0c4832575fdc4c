"""The advnet defense, generator training against a fixed classifier, and the generator attack
(adversarial networks): checkpoints hold both networks, resume is exact, the attack loads G alone."""

from __future__ import annotations

import pytest
import torch

import advframe
from advframe.checkpoint import load_checkpoint
from advframe.errors import CheckpointError, ParameterError
from advframe.threat import ThreatModel
from advframe_advnet.attack import load_generator
from advframe_advnet.defense import AdversarialNetworks
from advframe_advnet.fixed import GeneratorTrainConfig, train_generator
from tests.helpers import invoke, run_cli

ADVNET = {"width": 2, "eps": 0.3}
KW = {"epochs": 2, "batch_size": 16, "lr": 0.01, "optimizer": "sgd", "momentum": 0.9, "seed": 3}


def tiny(n: int = 48, split: str = "train"):
    return advframe.load_dataset("mnist5k", split=split).take(n)


SMALL = {"model": "mnist_cnn", "model_config": {"width": 0.5}}  # built by train() after seeding


def states_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_advnet_checkpoint_holds_both_networks_and_resume_is_exact(tmp_path):
    straight = advframe.train(**SMALL, data=tiny(), defense="advnet", defense_params=ADVNET,
                              out=tmp_path / "a.safetensors", **KW)
    part = advframe.train(**SMALL, data=tiny(), defense="advnet", defense_params=ADVNET,
                          out=tmp_path / "b.safetensors", max_steps=4, **KW)
    assert part.steps == 4 and straight.steps == 6
    torch.manual_seed(123)  # resume must not depend on the caller's RNG
    advframe.train(**SMALL, data=tiny(), defense="advnet", defense_params=ADVNET,
                   out=tmp_path / "b.safetensors", resume=True, **KW)
    ta, meta = load_checkpoint(tmp_path / "a.safetensors")
    tb, _ = load_checkpoint(tmp_path / "b.safetensors")
    assert any(k.startswith("model.") for k in ta)
    assert any(k.startswith("defense.generator.") for k in ta)  # G's weights and BN statistics
    assert any(k.startswith("defense.g_optim.state.") for k in ta)  # G's Adam moments
    assert states_equal(ta, tb)
    assert meta["defense"] == "advnet" and meta["defense_state"]["generator_config"]["kind"] == "g1"
    assert set(meta["history"][0]) >= {"clean_acc", "adv_acc", "adv_loss", "grad_norm_g"}


def test_generator_steps_raise_the_adversarial_loss_of_a_fixed_classifier():
    torch.manual_seed(0)
    data = tiny(64)
    model = advframe.load_model("mnist_cnn_standard")
    defense = AdversarialNetworks(width=2, g_lr=0.01)
    defense.setup(model, data, {"seed": 0})
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = data.x, data.y
    losses = [defense.generator_steps(model, defense.gen, x, y, step) for step in range(6)]
    assert losses[-1] > losses[0] + 0.5, losses  # ascent on the classifier's loss
    assert states_equal(before, model.state_dict())  # the classifier did not move
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("params,match", [({"generator": "g9"}, "unknown generator 'g9'"),
                                          ({"hvp": "approx"}, "unknown hvp 'approx'"),
                                          ({"gamma": -1.0}, "gamma=-1.0"), ({"g_steps": 1.5}, "g_steps"),
                                          ({"width": 0}, "width=0")])
def test_advnet_rejects_bad_parameters(params, match):
    with pytest.raises(ParameterError, match=match):
        AdversarialNetworks(**params)


def test_a_generator_trained_against_a_fixed_model_lowers_its_accuracy():
    """The pattern of Table 5 of the adversarial-networks paper: G trained against the fixed standard model fools it."""
    model = advframe.load_model("mnist_cnn_standard")
    result = train_generator(model, tiny(512), generator="g1", width=2, eps=0.3, epochs=8, batch_size=32,
                             optimizer="adam", lr=0.01, seed=1, out=None)
    assert result.history[-1]["adv_acc"] < 0.5 < result.history[0]["adv_acc"]
    assert result.path is None and not result.generator.training


def test_train_generator_takes_a_config_or_keyword_options():
    model = advframe.load_model("mnist_cnn_standard")
    data = tiny(32)
    by_config = train_generator(model, data, GeneratorTrainConfig(width=2, batch_size=16, seed=5, max_steps=1))
    by_keywords = train_generator(model, data, width=2, batch_size=16, seed=5, max_steps=1)
    mixed = train_generator(model, data, GeneratorTrainConfig(width=2, seed=9), batch_size=16, seed=5, max_steps=1)
    assert states_equal(by_config.generator.state_dict(), by_keywords.generator.state_dict())
    assert states_equal(by_config.generator.state_dict(), mixed.generator.state_dict())
    with pytest.raises(TypeError, match="unexpected keyword argument 'widht'"):
        train_generator(model, data, widht=2)


def test_generator_training_resumes_exactly_and_feeds_the_generator_attack(tmp_path):
    model = advframe.load_model("mnist_cnn_standard")
    data = tiny(128)
    kw = {"generator": "g1", "width": 2, "eps": 0.3, "epochs": 3, "batch_size": 32, "optimizer": "adam",
          "lr": 0.01, "seed": 1, "classifier_name": "mnist_cnn_standard"}
    train_generator(model, data, out=tmp_path / "g.safetensors", **kw)
    train_generator(model, data, out=tmp_path / "h.safetensors", max_steps=5, **kw)
    torch.manual_seed(7)
    train_generator(model, data, out=tmp_path / "h.safetensors", resume=True, **kw)
    ta, meta = load_checkpoint(tmp_path / "g.safetensors")
    tb, _ = load_checkpoint(tmp_path / "h.safetensors")
    assert states_equal(ta, tb) and meta["format"] == "advframe.generator/1" and meta["step"] == 12
    attack = advframe.get_attack("generator", checkpoint=str(tmp_path / "g.safetensors"))
    result = advframe.evaluate(model, tiny(100, "test"), attacks=[attack], eps=[0.3], batch_size=100)
    run = result.run("generator", 0.3)
    assert run.violations == 0 and run.gradient_evaluations == 0
    with pytest.raises(CheckpointError, match="generator_config"):
        train_generator(model, data, out=tmp_path / "h.safetensors", resume=True, **{**kw, "width": 4})


def test_generator_attack_loads_g_from_an_advnet_checkpoint_and_stays_in_the_threat_model(tmp_path):
    out = tmp_path / "c.safetensors"
    advframe.train(**SMALL, data=tiny(), defense="advnet", defense_params={**ADVNET, "generator": "g3"},
                   out=out, **{**KW, "epochs": 1})
    gen = load_generator(out)
    assert gen.kind == "g3" and not gen.training
    attack = advframe.get_attack("generator", checkpoint=str(out))
    assert attack.uses_true_label and attack.norms == ("linf",)
    model = advframe.load_model(out)
    data = tiny(20, "test")
    for eps in (0.0, 0.1, 0.3):
        threat = ThreatModel("linf", eps, (0.0, 1.0))
        x_adv = attack(model, data.x, data.y, threat)
        assert threat.audit(x_adv, data.x).violations == 0
        assert attack.gradient_evaluations == 0
    with pytest.raises(ParameterError, match="supports norm linf"):
        attack(model, data.x, data.y, ThreatModel("l2", 1.0, (0.0, 1.0)))


def test_generator_attack_refuses_checkpoints_without_a_generator(tmp_path):
    with pytest.raises(ParameterError, match="checkpoint=PATH"):
        advframe.get_attack("generator")
    plain = tmp_path / "plain.safetensors"
    advframe.train(**SMALL, data=tiny(16), out=plain, epochs=1, batch_size=16)
    with pytest.raises(CheckpointError, match="holds no generator"):
        advframe.get_attack("generator", checkpoint=str(plain))


def test_cli_train_generator_then_eval_with_the_generator_attack(tmp_path):
    out = tmp_path / "g.safetensors"
    proc = run_cli("train-generator", "--out", str(out), "--width", "2", "--epochs", "1", "--no-progress",
                   "--device", "cpu", "--generator", "g2")
    assert proc.returncode == 0, proc.stderr
    assert "trained generator g2" in proc.stdout and out.exists()
    proc = run_cli("eval", "--attack", "generator", "--param", f"checkpoint={out}", "--eps", "0.3",
                   "--limit", "100", "--no-progress", "--no-checks", "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    assert "generator" in proc.stdout
    # bad input, in-process through the console script's entry point
    bad = invoke(["eval", "--attack", "generator", "--param", "checkpoint=nowhere.safetensors", "--limit", "10"])
    assert bad.code == 2 and "Traceback" not in bad.output
    assert len(bad.lines) == 1 and "nowhere.safetensors" in bad.output
    bad = invoke(["train-generator", "--out", str(tmp_path / "x.safetensors"), "--generator", "g7"])
    assert bad.code == 2 and "unknown generator 'g7'" in bad.output and "Traceback" not in bad.output
