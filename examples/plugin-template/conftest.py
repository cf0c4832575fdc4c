"""Lets the tests import ``advframe_example`` without installing it, from any folder.

pytest loads this file before the tests below it, whether run here (``pytest``) or from
a folder above (``pytest examples/plugin-template/tests`` from advframe's root). An installed copy of the plugin wins: the folder is
added only when the package cannot be imported otherwise.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

if importlib.util.find_spec("advframe_example") is None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
