"""RowAdam: torch.optim.SparseAdam's documented semantics, as a torch.optim.Optimizer."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from sshr_torch.agents.optim import RowAdam

torch.set_num_threads(1)


def embedding_pair(seed: int, device: str = "cpu") -> tuple[nn.Embedding, nn.Embedding]:
    """Two sparse embeddings with the same weights."""
    first = nn.Embedding(12, 5, sparse=True).to(device)
    with torch.no_grad():
        first.weight.copy_(torch.randn(12, 5, generator=torch.Generator().manual_seed(seed)))
    second = nn.Embedding(12, 5, sparse=True).to(device)
    second.load_state_dict(first.state_dict())
    return first, second


@pytest.mark.parametrize("on_kernel", [True, False])
def test_row_adam_matches_sparse_adam(on_kernel, monkeypatch):
    """Same rows, same weights, same moments after 20 steps with duplicate rows per batch.

    ``on_kernel`` False forces the torch-op path that other devices use."""
    if not on_kernel:
        monkeypatch.setattr("sshr_torch.agents.optim._kernel_applies", lambda *a: False)
    ours, theirs = embedding_pair(0)
    row_adam = RowAdam(ours.parameters(), lr=0.05, betas=(0.8, 0.9), eps=1e-6)
    sparse_adam = torch.optim.SparseAdam(theirs.parameters(), lr=0.05, betas=(0.8, 0.9), eps=1e-6)
    rng = np.random.default_rng(0)
    for _ in range(20):
        rows = torch.as_tensor(rng.integers(0, 6, 7))  # rows 6-11 are never used
        targets = torch.as_tensor(rng.normal(size=(7, 5)), dtype=torch.float32)
        for module, optimizer in ((ours, row_adam), (theirs, sparse_adam)):
            optimizer.zero_grad()
            ((module(rows) - targets) ** 2).sum().backward()
            optimizer.step()
    torch.testing.assert_close(ours.weight, theirs.weight, rtol=1e-5, atol=1e-6)
    for key in ("exp_avg", "exp_avg_sq"):
        torch.testing.assert_close(
            row_adam.state[ours.weight][key], sparse_adam.state[theirs.weight][key]
        )
    assert row_adam.state[ours.weight]["step"] == sparse_adam.state[theirs.weight]["step"] == 20
    _, initial = embedding_pair(0)
    torch.testing.assert_close(ours.weight[6:], initial.weight[6:])  # untouched rows


def test_row_adam_one_step_by_hand():
    """t = 1: m = (1 - b1) g, v = (1 - b2) g^2,
    p -= lr sqrt(1 - b2) / (1 - b1) * m / (sqrt(v) + eps)."""
    param = nn.Parameter(torch.zeros(3, 2))
    param.grad = torch.sparse_coo_tensor(
        [[2, 0, 2]], [[1.0, -2.0], [4.0, 0.0], [1.0, 0.0]], (3, 2), check_invariants=True
    )
    optimizer = RowAdam([param], lr=0.1, betas=(0.9, 0.99), eps=0.5)
    optimizer.step()
    g = np.array([[4.0, 0.0], [0.0, 0.0], [2.0, -2.0]])  # rows summed: row 2 is [2, -2]
    m, v = 0.1 * g, 0.01 * g * g
    expected = -0.1 * math.sqrt(0.01) / 0.1 * m / (np.sqrt(v) + 0.5)
    expected[1] = 0.0  # row 1 had no gradient
    np.testing.assert_allclose(param.detach().numpy(), expected, rtol=1e-6)
    # A dense gradient steps every row (as a sparse gradient of all rows would).
    param.grad = torch.ones(3, 2)
    optimizer.step()
    assert optimizer.state[param]["step"] == 2
    assert (optimizer.state[param]["exp_avg"][1] != 0).all()


def test_row_adam_state_dict_round_trip_and_bad_settings():
    module, copy = embedding_pair(1)
    optimizer = RowAdam(module.parameters(), lr=0.01)
    module(torch.tensor([1, 2])).sum().backward()
    optimizer.step()
    other = RowAdam(copy.parameters(), lr=0.01)
    other.load_state_dict(optimizer.state_dict())
    torch.testing.assert_close(
        other.state[copy.weight]["exp_avg"], optimizer.state[module.weight]["exp_avg"]
    )
    for bad in (dict(lr=0.0), dict(betas=(1.0, 0.9)), dict(eps=-1.0)):
        with pytest.raises(ValueError):
            RowAdam(module.parameters(), **bad)
