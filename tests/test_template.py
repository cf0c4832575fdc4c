"""The plugin template's own tests run from advframe's root, not only from inside the template."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_template_tests_run_from_the_repository_root():
    # a quick subset: importing advframe_example uninstalled is what used to fail from here
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "examples/plugin-template/tests", "-k", "hooks_register or zero_alpha or bad_alpha"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "3 passed" in proc.stdout, proc.stdout
