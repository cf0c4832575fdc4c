import pytest

from advframe.errors import ParameterError
from advframe.params import Configurable


class Thing(Configurable):
    name = "thing"
    defaults = {"steps": 10, "step_size": 0.01, "random_start": True, "target": None}
    presets = {"paper": {"steps": 40}}


def test_defaults_presets_and_overrides():
    assert Thing().steps == 10
    assert Thing(preset="paper").steps == 40
    assert Thing(preset="paper", steps="7").steps == 7       # explicit beats preset; strings coerced
    assert Thing(step_size="1/255").step_size == pytest.approx(1 / 255)
    assert Thing(random_start="false").random_start is False
    assert Thing(target="3").target == 3


@pytest.mark.parametrize("kwargs, match", [
    ({"stepz": 3}, "did you mean 'steps'"),
    ({"steps": "many"}, "not a valid int"),
    ({"preset": "nope"}, "no preset 'nope'"),
    ({"random_start": "maybe"}, "not a valid bool"),
])
def test_bad_parameters_name_the_value(kwargs, match):
    with pytest.raises(ParameterError, match=match):
        Thing(**kwargs)
