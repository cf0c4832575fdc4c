"""The CLI: the results document through the real console script, and one-line errors with exit 2
(in-process through the console script's entry point, but for one that runs the script itself)."""

import io
import json
import re
from pathlib import Path

import pytest

from tests.helpers import invoke, run_cli

RUN_KEYS = {"attack", "eps", "norm", "targeted", "params", "top1", "top5", "success_rate", "accuracy_ratio",
            "label_leaks", "max_perturbation", "violations", "gradient_evaluations", "seconds"}

ESCAPING = """
import advframe
from advframe.attack import Attack

class Escape(Attack):
    '''Steps outside the eps-ball on purpose.'''
    name = "fakeplug_escape"
    uses_true_label = False
    def perturb(self, model, x, y, threat, target):
        return (x + 3 * threat.eps).clamp(*threat.bounds)

@advframe.hookimpl
def register_attacks(register):
    register(Escape)
"""


def assert_one_line(*args: str, needles: tuple[str, ...]) -> None:
    """``advframe ARGS`` in-process: exit 2, one line naming each needle, no traceback."""
    out = invoke(list(args))
    assert out.code == 2, (out.code, out.output)
    assert "Traceback" not in out.output and len(out.lines) == 1, out.output
    for n in needles:
        assert n in out.lines[0], out.lines[0]


def test_eval_writes_the_results_document(tmp_path):
    out = tmp_path / "r.json"
    proc = run_cli("eval", "--attack", "fgsm", "--attack", "pgd", "--eps", "0.1", "--eps", "0.3",
                   "--limit", "200", "--output", str(out), "--no-progress")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(out.read_text())
    assert doc["schema"] == "advframe.eval/1"
    assert {"model", "dataset", "split", "examples", "clean", "runs", "checks"} <= doc.keys()
    assert doc["dataset"] == "mnist5k" and doc["examples"] == 200
    assert [(r["attack"], r["eps"]) for r in doc["runs"]] == [("fgsm", 0.1), ("fgsm", 0.3), ("pgd", 0.1), ("pgd", 0.3)]
    for r in doc["runs"]:
        assert RUN_KEYS <= r.keys()
        assert 0 <= r["top1"] <= r["top5"] <= 1 and r["violations"] == 0
        assert r["max_perturbation"] <= r["eps"] + 1e-6
    fgsm = {r["eps"]: r for r in doc["runs"] if r["attack"] == "fgsm"}
    assert isinstance(fgsm[0.1]["label_leaks"], int)   # fgsm reads the true label
    assert "fgsm" in proc.stdout and "pgd" in proc.stdout


def test_escaping_plugin_attack_is_reported_not_counted(fake_plugins, tmp_path):
    fake_plugins("fake-escape", "fakeplug_escape", ESCAPING)
    out = tmp_path / "r.json"
    proc = run_cli("eval", "--attack", "fakeplug_escape", "--eps", "0.1", "--limit", "100", "--output", str(out),
                   "--no-progress", "--no-checks")
    assert proc.returncode == 0, proc.stderr
    run = json.loads(out.read_text())["runs"][0]
    assert run["top1"] is None and run["violations"] == 100
    assert "refused" in proc.stderr and "fakeplug_escape" in proc.stderr


def test_unknown_attack_suggests_the_closest():
    assert_one_line("eval", "--attack", "iter_lll", needles=("iter_lll", "did you mean 'iter_ll'"))


@pytest.mark.parametrize("eps", ["-0.1", "nan", "1/0", "abc"])
def test_bad_eps(eps):
    assert_one_line("eval", "--attack", "fgsm", "--eps", eps, needles=("eps",))


def test_missing_data_dir(tmp_path):
    missing = tmp_path / "nowhere"
    assert_one_line("eval", "--dataset", "mnist", "--data-dir", str(missing), needles=(str(missing),))


def test_model_file_that_is_not_safetensors(tmp_path):
    fake = tmp_path / "model.safetensors"
    fake.write_bytes(b"PK\x03\x04 this is a zip or pickle, not safetensors")
    assert_one_line("eval", "--model", str(fake), needles=(str(fake), "safetensors"))
    pt = tmp_path / "model.pt"
    pt.write_bytes(b"\x80\x04pickle")
    assert_one_line("eval", "--model", str(pt), needles=("model.pt",))


def test_bad_option_and_param():
    assert_one_line("eval", "--bogus", needles=("--bogus",))
    assert_one_line("eval", "--attack", "pgd", "--param", "stepz=3", needles=("stepz",))
    assert_one_line("eval", "--norm", "l3", needles=("l3",))


def test_ci_runs_the_readme_test_command():
    root = Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)\n```", readme, flags=re.S)
    test_command = blocks[1].strip()
    assert "pytest" in test_command
    assert test_command in (root / ".ci" / "run").read_text().splitlines()


def readme_default_command() -> list[str]:
    """The README's first command, ``advframe eval ...`` after the install steps, as arguments."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    first = re.findall(r"```bash\n(.*?)\n```", readme, flags=re.S)[0]
    command = first.split("&&")[-1].split()
    assert command[:2] == ["advframe", "eval"], first
    return command[1:]


def test_readme_default_command_reads_in_one_screen():
    # the README's command as it is, on a prefix of the data: the same bars, tables and lines
    proc = run_cli(*readme_default_command(), "--limit", "50")
    assert proc.returncode == 0, proc.stderr
    lines = [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.strip()]
    summary = [ln for ln in lines if "--checks-detail for the evidence" in ln]
    assert len(summary) == 1 and re.match(r"\d+ checks passed", summary[0]), proc.stdout
    assert "warning(s)" not in proc.stdout  # every check passed or did not apply: no table of them
    assert len(lines) <= 30, "\n".join(lines)


CHECKS = [{"name": "a_check", "status": "pass", "evidence": "Evidence of a.", "source": "Someone 2019, A paper"},
          {"name": "b_check", "status": "warn", "evidence": "Evidence of b.", "source": "Other 2020, B paper"},
          {"name": "c_check", "status": "not_applicable", "evidence": "Evidence of c.", "source": "X 2017, C"}]


def rendered(renderable) -> str:
    from rich.console import Console

    console = Console(width=160, record=True, file=io.StringIO())
    console.print(renderable)
    return console.export_text()


def test_checks_that_pass_are_one_line_and_warnings_are_shown_in_full():
    from advframe.cli.render import checks_view

    text = rendered(checks_view(CHECKS))
    assert "Evidence of b." in text and "Other 2020" in text and "1 warning(s) of 3 checks" in text
    assert "Evidence of a." not in text and "Evidence of c." not in text
    assert "1 check passed, 1 not applicable (c_check), 1 shown above; --checks-detail for the evidence" in text
    everything = rendered(checks_view(CHECKS, detail=True))
    assert all(f"Evidence of {n}." in everything for n in "abc") and "checks passed" not in everything
    assert rendered(checks_view(CHECKS[:1])).strip() == "1 check passed; --checks-detail for the evidence"
