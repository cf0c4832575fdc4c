"""Run every command of the docs pages as written, in order, and list each with its outcome.

Not a test (the suite parses the long commands; this runs them): run it in a fresh
virtualenv where the project and its test extra are installed, from a checkout::

    python tests/run_docs_commands.py --work /tmp/docs-run --out docs-commands.md

Each page runs in its own folder under ``--work``, in which ``docs``, ``benchmarks``,
``examples`` and ``plugins`` link to the checkout (the pages name paths under these).
The page's Python blocks run there as well (the suite's preludes first), because later
commands read the files they write.

A bash block is split into its command lines (continued lines joined, comments dropped); a
block with a shell loop runs whole. A line with ``...`` is an elided example, listed as
such. Each command runs with a time cap: ``--cap`` seconds, ``--train-cap`` for trainings
(which take minutes to hours here). A training stopped at its cap is then run again with
one epoch on a 256-example prefix (``--epochs 1 --limit 256``; ``--epochs 1`` for
``train-generator``, ``--quick`` for the capacity sweep), so that the commands that read
its output can run; the list says so.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.formats import write_stand_ins  # noqa: E402
from tests.test_doc_snippets import PLAN, SETUP, blocks, without_comment  # noqa: E402

TRAINING = re.compile(r"(^|\s)(advframe|-m advframe) (train|train-generator)\s|capacity_sweep\.py(?!.*--quick)|^\s*for ",
                      re.M)
# files the pages name without a command that writes them: made like their seed-0 siblings
SIBLINGS = {"advnet.md": [("_s0.safetensors", "_s1.safetensors", "--seed 0", "--seed 1")]}


# README.md: its two set-up commands are run on their own (a fresh virtualenv each); the
# rest is its "What you get" list and Python example
README_PLAN = [("bash", "skip", "the README's install command, run on its own in a fresh virtualenv"),
               ("bash", "skip", "the README's test command, run on its own in a fresh virtualenv (CI's command)"),
               ("bash", "bash", ""), ("python", "python", "")]


def readme_blocks() -> list[tuple[str, str]]:
    from tests.test_doc_snippets import FENCE

    return [b for b in FENCE.findall((ROOT / "README.md").read_text(encoding="utf-8")) if b[0] != "text"]


@dataclass
class Outcome:
    page: str
    command: str
    result: str
    seconds: float
    note: str = ""


def units(body: str) -> list[str]:
    """A bash block's commands: one per line, or the whole block when it holds a loop."""
    joined = body.replace("\\\n", " ")
    if re.search(r"^\s*for\s", joined, re.M):
        return [body.strip()]
    lines = [" ".join(without_comment(line).split()) for line in joined.splitlines()]
    # "[--eps 0.3]" marks an optional part: run the command without it, as the suite parses it
    lines = [" ".join(re.sub(r"\s\[[^\]]*\]", "", line).split()) for line in lines]
    return [line for line in lines if line and not line.startswith("#")]


def last_line(text: str) -> str:
    lines = [line.strip(" │┃|") for line in re.split(r"[\r\n]", text) if re.search(r"[A-Za-z0-9]", line)]
    return " ".join(lines[-1].split())[:160] if lines else ""


def run(command: str, cwd: Path, cap: float, env: dict[str, str]) -> tuple[int | None, float, str]:
    """Run ``command`` in bash; (exit code or None at the cap, seconds, last line of output)."""
    start = time.monotonic()
    with subprocess.Popen(["bash", "-c", command], cwd=cwd, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, start_new_session=True) as proc:
        try:
            out, _ = proc.communicate(timeout=cap)
            return proc.returncode, time.monotonic() - start, last_line(out)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                out, _ = proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                out, _ = proc.communicate()
            return None, time.monotonic() - start, last_line(out or "")


def reduced(command: str) -> str:
    """The same training, short: one epoch on a 256-example prefix."""
    if "capacity_sweep.py" in command:
        return command + " --quick"
    if re.search(r"^\s*for\s", command, re.M):
        return re.sub(r"--epochs \d+", "--epochs 1 --limit 256", command)
    if " train-generator " in command:
        return command + " --epochs 1"
    return command + " --epochs 1 --limit 256"


def run_page(page: str, work: Path, cap: float, train_cap: float, log) -> list[Outcome]:
    folder = work / page.replace("/", "_").removesuffix(".md")
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("docs", "benchmarks", "examples", "plugins"):
        if not (folder / name).exists():
            (folder / name).symlink_to(ROOT / name)
    env = dict(os.environ, PYTHONPATH=str(folder), COLUMNS="160")
    if page in SETUP:  # the files the page's commands read, made small (Inception v3's weights too)
        write_stand_ins(folder, inception=True)
    outcomes = []
    plan = PLAN[page] if page in PLAN else README_PLAN
    found = blocks(page) if page in PLAN else readme_blocks()
    for index, ((_, kind, extra), (_, body)) in enumerate(zip(plan, found)):
        before = len(outcomes)
        if kind == "skip" and "checksum" not in extra:
            outcomes.append(Outcome(page, " / ".join(units(body))[:200], "not run here", 0.0, extra))
        elif kind == "module":
            target = folder / body.splitlines()[0].lstrip("# ").split(" ")[0]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(body)
        elif kind == "python":
            script = folder / f"_block{index}.py"
            script.write_text(extra + body)
            code, seconds, line = run(f"{sys.executable} {script.name}", folder, cap, env)
            outcomes.append(Outcome(page, f"(Python block {index + 1})", verdict(code), seconds, line))
        elif kind in ("bash", "skip"):
            for command in units(body):
                if "..." in command:
                    outcomes.append(Outcome(page, command, "elided example, not a command", 0.0))
                    continue
                training = bool(TRAINING.search(command))
                code, seconds, line = run(command, folder, train_cap if training else cap, env)
                outcome = Outcome(page, command, verdict(code), seconds, line)
                if code is None and training:
                    short = reduced(command)
                    code2, seconds2, line2 = run(short, folder, cap, env)
                    outcome.note = (f"stopped at the {train_cap:.0f} s cap ({line}); then `... "
                                    f"{short[len(command):].strip() or '(loop, 1 epoch)'}`: "
                                    f"{verdict(code2)} in {seconds2:.0f} s")
                elif code is not None:
                    outcome.note = line
                outcomes.append(outcome)
                for old, new, seed_old, seed_new in SIBLINGS.get(page, []):
                    if old in command and " --out " in command:
                        sibling = command.replace(old, new).replace(seed_old, seed_new)
                        code3, seconds3, _ = run(reduced(sibling), folder, cap, env)
                        outcomes.append(Outcome(page, reduced(sibling), verdict(code3), seconds3,
                                                "a file a later command reads, made like its seed-0 sibling"))
        for outcome in outcomes[before:]:
            shown = " / ".join(line.strip() for line in outcome.command.splitlines())  # one table row
            print(f"| {outcome.page} | `{shown}` | {outcome.result} | {outcome.seconds:.0f} | "
                  f"{outcome.note} |", file=log, flush=True)
    return outcomes


def verdict(code: int | None) -> str:
    return "stopped at cap" if code is None else ("ok" if code == 0 else f"exit {code}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--cap", type=float, default=600.0)
    parser.add_argument("--train-cap", type=float, default=90.0)
    parser.add_argument("--pages", nargs="*", default=["README.md", *PLAN])
    args = parser.parse_args()
    with args.out.open("a", encoding="utf-8") as log:
        print("| page | command | outcome | s | note |\n| --- | --- | --- | --- | --- |", file=log, flush=True)
        for page in args.pages:
            run_page(page, args.work, args.cap, args.train_cap, log)


if __name__ == "__main__":
    main()
