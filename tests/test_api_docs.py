"""API reference pages: a component's documented parameters carry its real defaults and types.

mkdocstrings reads parameters through griffe; ``docs_ext/griffe_params.py`` (enabled in
mkdocs.yml) gives attacks and defenses a typed ``__init__`` from their ``defaults``. This
test loads a few classes the way the docs build does and reads their ``Args:`` tables.
"""

from pathlib import Path

import pytest

griffe = pytest.importorskip("griffe")

ROOT = Path(__file__).resolve().parent.parent


def documented_params(path: str) -> dict[str, tuple[str, str | None]]:
    """``{name: (type, default)}`` of the Parameters section of class ``path`` as the docs build sees it."""
    extensions = griffe.load_extensions(f"{ROOT / 'docs_ext' / 'griffe_params.py'}:ConfigurableParams")
    module, _, name = path.rpartition(".")
    loader = griffe.GriffeLoader(extensions=extensions, search_paths=[str(ROOT), str(ROOT / "plugins")],
                                 docstring_parser=griffe.Parser.google)
    pkg = loader.load(module.split(".")[0])
    loader.resolve_aliases(implicit=False, external=False)
    cls = pkg[path[len(module.split(".")[0]) + 1:]]
    sections = cls.docstring.parse(griffe.Parser.google, warnings=False)
    params = next(s for s in sections if s.kind is griffe.DocstringSectionKind.parameters).value
    return {p.name: (str(p.annotation) if p.annotation is not None else "", p.default) for p in params}


def test_pgd_page_shows_defaults_and_types():
    params = documented_params("advframe_gradient.pgd.PGD")
    assert params == {"steps": ("int", "40"), "step_size": ("float | None", "None"), "restarts": ("int", "1"),
                      "random_start": ("bool", "True"), "seed": ("int | None", "None"),
                      "loss": ("str", "'model'"), "early_exit": ("bool", "True")}


def test_own_kwargs_init_and_defense_params_are_documented_too():
    square = documented_params("advframe_autoattack.square.Square")  # its own __init__(**params)
    assert square == {"queries": ("int", "5000"), "p_init": ("float", "0.8"), "seed": ("int | None", "None")}
    madry = documented_params("advframe_advtrain.madry.PGDAdversarialTraining")
    assert madry["eps"] == ("float", "0.3") and madry["norm"] == ("str", "'linf'")
    assert all(t and d is not None for t, d in madry.values())
