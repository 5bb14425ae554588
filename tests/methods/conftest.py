"""The TinyZoo and its task vectors, shared by the tests of methods that read a zoo (built once per module)."""
from __future__ import annotations

import pytest

import explorer as ex
from tests.tinyzoo import TinyZoo


@pytest.fixture(scope="module")
def zoo() -> TinyZoo:
    return TinyZoo()


@pytest.fixture(scope="module")
def tv(zoo) -> ex.TaskVectors:
    return ex.task_vectors(zoo, device="cpu")
