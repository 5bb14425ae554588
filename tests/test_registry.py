"""The name -> entry table shared by zoo loaders, checkpoint formats and demo tasks."""
from __future__ import annotations

import pytest

from explorer.registry import Registry


def test_a_name_registered_twice_is_refused():
    reg = Registry("widget")
    reg.register("a")(len)
    with pytest.raises(ValueError, match="widget 'a' is registered twice"):
        reg.add("a", str)
    assert reg.get("a") is len and reg.names() == ["a"] and "a" in reg and len(reg) == 1


def test_an_unknown_name_lists_the_known_ones_in_order():
    reg = Registry("widget")
    reg.add("b", 1)
    reg.add("a", 2)
    with pytest.raises(ValueError, match="unknown widget 'c'; known widgets: b, a"):
        reg.get("c")


def test_zoo_loaders_and_demo_tasks_share_it():
    import explorer.demozoo.zoo  # noqa: F401  (registers "demo", as load_zoo's first call does)
    from explorer.demozoo.data import TASKS
    from explorer.zoo import register_zoo

    with pytest.raises(ValueError, match="zoo 'demo' is registered twice"):
        register_zoo("demo")(lambda **kw: None)
    assert TASKS == ["digits", "textures", "signs", "counting", "letters", "satellite", "clock", "scenes"]
