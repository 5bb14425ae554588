"""Shared fixtures: tiny open_clip vision towers with random weights, built on the fly."""
from __future__ import annotations

import os

import pytest
import torch

import explorer as ex


def tiny_tower(seed: int = 0, *, width: int = 16, layers: int = 2, image_size: int = 16, patch_size: int = 8,
               output_dim: int = 8) -> torch.nn.Module:
    """A 2-block open_clip VisionTransformer with the same parameter names as ViT-B/32's visual tower."""
    from open_clip.transformer import VisionTransformer

    torch.manual_seed(seed)
    return VisionTransformer(image_size=image_size, patch_size=patch_size, width=width, layers=layers, heads=2,
                             mlp_ratio=2.0, output_dim=output_dim)


def tiny_state_dicts(num_tasks: int = 3, seed: int = 0, noise: float = 0.01):
    """(base state dict, {task_i: expert state dict}) where each expert = base + seeded Gaussian noise."""
    base = {k: v.clone() for k, v in tiny_tower(seed).state_dict().items()}
    gen = torch.Generator().manual_seed(seed + 1)
    experts = {}
    for t in range(num_tasks):
        experts[f"task{t}"] = {k: v + noise * torch.randn(v.shape, generator=gen) for k, v in base.items()}
    return base, experts


def write_zoo_folder(root, num_tasks: int = 3):
    """A folder zoo (`base.safetensors` + `<task>.safetensors`) of tiny towers: (folder, base, experts)."""
    from explorer.weights import write_weights

    base, experts = tiny_state_dicts(num_tasks=num_tasks)
    write_weights(base, root / "zoo" / "base.safetensors")
    for task, sd in experts.items():
        write_weights(sd, root / "zoo" / f"{task}.safetensors")
    return root / "zoo", base, experts


@pytest.fixture(scope="module")
def zoo():
    """A 3-task TinyZoo, built once per module (tests/app overrides it with a registered one)."""
    from tests.tinyzoo import TinyZoo

    return TinyZoo()


@pytest.fixture(scope="module")
def tv(zoo) -> ex.TaskVectors:
    """The module's `zoo` as task vectors on the CPU."""
    return ex.task_vectors(zoo, device="cpu")


@pytest.fixture
def tiny_tv() -> ex.TaskVectors:
    base, experts = tiny_state_dicts()
    return ex.task_vectors(base, experts, device="cpu")


@pytest.fixture
def tiny_zoo():
    """The shared TinyZoo whose expert accuracies are known by construction (18 of 24 images right)."""
    from tests.tinyzoo import TinyZoo

    return TinyZoo.known()


STRICT_SKIPS = os.environ.get("EXPLORER_NO_SKIPS") == "1"  # set by .ci/run: in CI every tool must start


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """With EXPLORER_NO_SKIPS=1 a skipped test fails with its reason (chromium, Ray, a wheel that cannot build):
    CI cannot pass without running what it claims to check. Expected failures (xfail) stay as they are."""
    outcome = yield
    report = outcome.get_result()
    if STRICT_SKIPS and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome, report.longrepr = "failed", f"skipped, and EXPLORER_NO_SKIPS=1 forbids skips: {reason}"


if os.environ.get("PYTEST_XDIST_WORKER"):
    # One torch thread per pytest-xdist worker (`make test` runs a worker per core), and in every process a test
    # starts (notebook kernels, CLI runs, the Space's app): two OpenMP teams spinning on one core made a notebook
    # 5x slower (02_sparsify 182 s against 32 s beside one busy core).
    torch.set_num_threads(1)
    os.environ["OMP_NUM_THREADS"] = "1"


@pytest.fixture(autouse=True)
def _torch_threads_restored():
    """Whatever a test sets torch's thread count to, the next test starts from the suite's own count."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)
