"""ReconstructOptions: one set of rules and defaults for the API, the worker and the CLI."""

from __future__ import annotations

import pickle

import pytest

from face3d.models.errors import OptionsError
from face3d.models.pipeline import DEFAULT_FORMATS, ReconstructOptions, check_uv_size


def test_defaults_and_parsing() -> None:
    options = ReconstructOptions.parse()
    assert options.uv_size == 2048 and options.formats == DEFAULT_FORMATS and options.texture_format == "png"
    parsed = ReconstructOptions.parse(uv_size=512, formats=" obj, json ", texture_format="jpeg")
    assert parsed.formats == {"obj", "json"} and parsed.batch_key == (512, False, "remove")
    assert ReconstructOptions.parse(default_uv_size=1024).uv_size == 1024
    assert pickle.loads(pickle.dumps(parsed)) == parsed


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"uv_size": 0}, "power of two"),
        ({"uv_size": 300}, "power of two"),
        ({"uv_size": 8192}, "power of two"),
        ({"uv_size": 4096, "max_uv_size": 2048}, "256 to 2048"),
        ({"formats": "obj,stl"}, "formats"),
        ({"formats": ","}, "formats"),
        ({"texture_format": "gif"}, "texture"),
    ],
)
def test_invalid_options_are_options_errors(kwargs: dict, message: str) -> None:
    with pytest.raises(OptionsError, match=message):
        ReconstructOptions.parse(**kwargs)


def test_uv_size_error_names_the_caller_field() -> None:
    with pytest.raises(OptionsError, match="--uv-size"):
        ReconstructOptions.parse(uv_size=64, uv_size_name="--uv-size")
    check_uv_size(256)
