"""The attack catalogue as a whole: every DESIGN.md name is listed, and pgd is monotone in eps
on the embedded model."""

import advframe
from advframe import plugins
from tests.helpers import run_cli

DESIGN_NAMES = ["fgsm", "fgsm_pred", "step_ll", "step_rnd", "fast_entropy", "fast_grad_l2", "fast_grad_linf",
                "rand_sign", "rand_normal", "iter_basic", "iter_ll", "pgd", "mim", "cw_l2", "lbfgs", "deepfool"]


def test_every_design_attack_is_registered_with_norms_and_targeting():
    reg = plugins.registry()
    for name in DESIGN_NAMES:
        d = reg.get("attacks", name).describe()
        assert d["norms"] and set(d["norms"]) <= {"linf", "l2"}, name
        assert isinstance(d["targetable"], bool) and isinstance(d["uses_true_label"], bool), name
    assert reg.get("attacks", "bim").name == "iter_basic"


def test_list_attacks_shows_them_through_the_console_script():
    proc = run_cli("list", "attacks")
    assert proc.returncode == 0, proc.stderr
    rows = {line.split("│")[1].strip().split(" ")[0]: line for line in proc.stdout.splitlines() if line.startswith("│")}
    for name in DESIGN_NAMES:
        assert name in rows, name
    assert "l2" in rows["cw_l2"] and "linf" in rows["fgsm"]
    assert "(bim)" in rows["iter_basic"]


def test_pgd_accuracy_does_not_rise_with_eps_on_the_embedded_model():
    model = advframe.load_model("mnist_cnn_standard")
    data = advframe.load_dataset("mnist5k", split="test").take(200)
    grid = [0.0, 0.05, 0.1, 0.2, 0.3]
    r = advframe.evaluate(model, data, attacks=["pgd"], eps=grid, params={"steps": 10}, batch_size=200)
    top1 = [r.run("pgd", e).top1 for e in grid]
    assert top1[0] == r.clean_top1
    assert all(b <= a for a, b in zip(top1, top1[1:])), top1
    assert top1[-1] < 0.05
