"""The documented short import paths are the modules themselves, not copies."""

import importlib

import pytest

SHORT_PATHS = {
    "pytest_clever.toy": "pytest_clever.extras.digits",
    "pytest_clever.transforms": "pytest_clever.defences.transforms",
    "pytest_clever.strategies": "pytest_clever.extras.strategies",
    "pytest_clever.densenet": "pytest_clever.extras.densenet",
}


@pytest.mark.parametrize("short", sorted(SHORT_PATHS))
def test_a_short_path_is_the_same_module(short):
    assert importlib.import_module(short) is importlib.import_module(SHORT_PATHS[short])


def test_names_import_from_the_short_paths():
    import pytest_clever
    from pytest_clever import toy
    from pytest_clever.densenet import densenet121
    from pytest_clever.extras import digits
    from pytest_clever.extras.densenet import densenet121 as real_densenet121
    from pytest_clever.strategies import points_in_ball
    from pytest_clever.transforms import jpeg

    assert toy is digits
    assert densenet121 is real_densenet121
    assert points_in_ball is pytest_clever.points_in_ball
    assert jpeg.__module__ == "pytest_clever.defences.transforms"
