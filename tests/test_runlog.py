"""Checkpoint files: arrays come back with their values and dtypes, loadable weights-only."""

from __future__ import annotations

import numpy as np
import torch

from sshr_torch import runlog


def test_checkpoint_round_trip_keeps_values_and_dtypes(tmp_path):
    n = 10_000  # large enough for integer arrays to be stored narrowed
    state = {
        "states": np.arange(n, dtype=np.int64) % 180,  # fits uint8
        "signed": np.arange(n, dtype=np.int64) % 7 - 3,  # fits int8
        "positions": np.arange(n, dtype=np.int64) * 1000,  # needs int32
        "huge": np.full(n, 2**40, dtype=np.int64),  # fits nothing narrower
        "unsigned": np.arange(n, dtype=np.uint64) % 300,  # fits int16
        "small": np.arange(5, dtype=np.int64),  # too small to narrow
        "values": np.linspace(0.0, 1.0, n),
        "flags": np.arange(n) % 3 == 0,
        "view": np.arange(3 * n, dtype=np.int64)[n : 2 * n],
        "read_only": np.frombuffer(np.arange(4, dtype=np.float32).tobytes(), dtype=np.float32),
        "counts": [1, 2.5, True, None, "x"],
        "mixed": [np.int64(3), 4],
    }
    path = tmp_path / "checkpoint.pt"
    runlog.save_checkpoint(path, state)
    raw = torch.load(path, weights_only=True)
    assert raw["states"][runlog.NUMPY_TAG].dtype == torch.uint8
    assert raw["positions"][runlog.NUMPY_TAG].dtype == torch.int32
    loaded = runlog.load_checkpoint(path)
    for key, value in state.items():
        if isinstance(value, np.ndarray):
            assert loaded[key].dtype == value.dtype, key
            np.testing.assert_array_equal(loaded[key], value)
    assert loaded["counts"] == [1, 2.5, True, None, "x"]
    assert loaded["mixed"] == [3, 4] and type(loaded["mixed"][0]) is int
