"""Progress: events counted in examples from before the first batch; bars on stderr with elapsed time and ETA."""

import io
import json

import pytest
import torch
from rich.console import Console
from rich.progress import Progress
from torch import nn

import advframe
from advframe.cli import main, render
from advframe.progress import ProgressEvent
from advframe.testing import CountingModel


def test_evaluate_reports_examples_and_starts_before_the_first_batch():
    torch.manual_seed(0)
    net = CountingModel(nn.Linear(6, 8))  # a linear classifier over 8 classes that counts its forward calls
    x = torch.rand(70, 6)
    y = net(x).argmax(1)
    net.reset()
    seen = []
    advframe.evaluate(net, (x, y), attacks=["fgsm"], eps=[0.1], batch_size=30,
                      progress=lambda e: seen.append((e.task, e.completed, e.total, net.forwards)))
    assert seen[0] == ("evaluate", 0, 70, 0)  # before the model ran at all: the bar's clock starts with the work
    assert [s[1] for s in seen] == [0, 30, 60, 70]  # examples, not batches (the last batch holds 10)
    assert all(s[2] == 70 for s in seen)


def test_progress_goes_to_the_stderr_console():
    assert render.err_console.stderr and not render.console.stderr
    assert render.progress_display().console is render.err_console


def test_bar_shows_units_elapsed_and_eta(monkeypatch):
    buf = io.StringIO()
    monkeypatch.setattr(render, "err_console", Console(file=buf, force_terminal=True, width=160, color_system=None))
    with render.progress_bar(labels={"loss": "mean loss"}) as cb:
        cb(ProgressEvent("evaluate", 0, 40, {}))
        cb(ProgressEvent("evaluate", 20, 40, {"clean_top1": 0.5}))
        cb(ProgressEvent("epoch 1", 3, 5, {"loss": 0.25}))
    text = buf.getvalue()
    assert "20/40" in text and "examples" in text and "clean_top1=0.5" in text
    assert "eta " in text and "0:00:00" in text
    assert "3/5" in text and "batches" in text and "mean loss=0.25" in text


def test_eta_uses_the_average_since_the_task_started():
    clock = [0.0]
    progress = Progress(get_time=lambda: clock[0])
    task_id = progress.add_task("evaluate", total=100, completed=10, first=10)  # a resumed run: 10 already done
    clock[0] = 10.0
    progress.update(task_id, completed=35)
    task = progress.tasks[0]
    assert render.RunRemainingColumn().render(task).plain == "eta 0:00:26"  # 25 in 10 s: 65 left -> 26 s
    fresh = progress.add_task("checks", total=9, completed=0, first=0)
    assert render.RunRemainingColumn().render(progress.tasks[fresh]).plain == "eta -:--:--"


def test_eval_output_dash_keeps_stdout_to_the_json_and_shows_both_phases_on_stderr(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["eval", "--attack", "fgsm", "--eps", "0.1", "--limit", "20", "--output", "-"])
    assert exit_info.value.code == 0
    out, err = capsys.readouterr()
    doc = json.loads(out)  # nothing but the results document on stdout
    assert doc["examples"] == 20 and doc["checks"]
    assert "evaluate" in err and "20/20" in err and "examples" in err  # the bars went to stderr
    assert "checks" in err and f"{len(doc['checks'])}/{len(doc['checks'])}" in err
    assert "fgsm" in err  # the table too, since stdout holds the JSON


def test_eval_output_dash_refuses_resume(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["eval", "--limit", "20", "--output", "-", "--resume"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--resume" in err and "Traceback" not in err
