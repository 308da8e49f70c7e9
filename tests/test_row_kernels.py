"""The DQN's compiled first-layer kernels on hand-made inputs (the update-vs-autograd test in
test_dqn.py checks them inside whole updates)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from gymnasium import spaces

from sshr_torch.agents import DQNAgent
from sshr_torch.agents import _row_kernels as kernels
from sshr_torch.her import Batch


def stage(obs, goal, next_obs, n_states=5, n_goals=4):
    n = len(obs)
    pairs = np.full((2, n, 2), -7, dtype=np.int64)
    rank = np.full((2, n), -7, dtype=np.int64)
    unique = np.full(2 * n, -7, dtype=np.int64)
    slot = np.full(n_states + n_goals, 123, dtype=np.int64)  # stale contents must not matter
    args = (np.array(obs), np.array(goal), np.array(next_obs), n_states, n_goals)
    n_rows = kernels.stage_rows(*args, pairs, slot, rank, unique)
    return n_rows, pairs, rank, unique


def test_stage_rows_by_hand():
    # states 3, 1, 3 and goals 0, 0, 2 -> rows 3, 1, 3 and 5, 5, 7 (5 states come first)
    n_rows, pairs, rank, unique = stage([3, 1, 3], [0, 0, 2], [4, 0, 2])
    assert n_rows == 4
    np.testing.assert_array_equal(pairs[0], [[3, 5], [1, 5], [3, 7]])
    np.testing.assert_array_equal(pairs[1], [[4, 5], [0, 5], [2, 7]])
    np.testing.assert_array_equal(unique[:4], [3, 1, 5, 7])  # in order of first use
    np.testing.assert_array_equal(rank, [[0, 1, 0], [2, 2, 3]])
    np.testing.assert_array_equal(unique[rank], pairs[0].T)  # each entry finds its row


@pytest.mark.parametrize(
    ("obs", "goal", "next_obs"),
    [([5], [0], [0]), ([0], [4], [0]), ([0], [0], [-1]), ([-1], [0], [0])],
)
def test_stage_rows_rejects_values_out_of_range(obs, goal, next_obs):
    assert stage(obs, goal, next_obs)[0] == -1


def test_sum_rows_and_lazy_adam_rows_by_hand():
    grad = np.array([[1.0, 2.0], [3.0, -4.0]], dtype=np.float32)
    out = np.full((3, 2), 9.0, dtype=np.float32)
    # entry 0 uses rows 0 (state) and 2 (goal); entry 1 uses rows 1 and 2
    kernels.sum_rows(grad, np.array([0, 1]), np.array([2, 2]), out)
    np.testing.assert_array_equal(out, [[1, 2], [3, -4], [4, -2]])

    param = np.zeros((4, 2), dtype=np.float32)
    m = np.full((4, 2), 0.5, dtype=np.float32)
    v = np.full((4, 2), 0.25, dtype=np.float32)
    kernels.lazy_adam_rows(param, m, v, np.array([3, 0]), out[:2], 0.9, 0.99, 0.1, 0.0)
    g = out[:2]  # rows 3 and 0 get gradient rows 0 and 1
    m_new = 0.9 * 0.5 + 0.1 * g
    v_new = 0.99 * 0.25 + 0.01 * g * g
    np.testing.assert_allclose(m[[3, 0]], m_new, rtol=1e-6)
    np.testing.assert_allclose(v[[3, 0]], v_new, rtol=1e-6)
    np.testing.assert_allclose(param[[3, 0]], -0.1 * m_new / np.sqrt(v_new), rtol=1e-6)
    np.testing.assert_array_equal(param[[1, 2]], 0.0)  # rows not stepped stay as they were
    np.testing.assert_array_equal(m[[1, 2]], 0.5)
    np.testing.assert_array_equal(v[[1, 2]], 0.25)


def test_relu_backward_by_hand():
    grad = np.array([[1.0, -2.0, 3.0], [4.0, 5.0, -6.0]], dtype=np.float32)
    hidden = np.array([[0.0, 0.5, 2.0], [1.0, 0.0, 0.0]], dtype=np.float32)  # relu(z) >= 0
    kernels.relu_backward(grad, hidden)
    np.testing.assert_array_equal(grad, [[0.0, -2.0, 3.0], [4.0, 0.0, 0.0]])
    np.testing.assert_array_equal(hidden, [[0.0, 0.5, 2.0], [1.0, 0.0, 0.0]])  # untouched


def test_update_rejects_a_batch_outside_the_spaces():
    agent = DQNAgent(5, 4, 2)
    batch = Batch(
        obs=np.array([0, 1]),
        goal=np.array([0, 4]),  # 4 is outside Discrete(4)
        action=np.array([0, 1]),
        reward=np.zeros(2, dtype=np.float32),
        next_obs=np.array([1, 2]),
        terminal=np.zeros(2, dtype=np.float32),
        relabelled=np.zeros(2, dtype=bool),
    )
    before = agent.q_network.first.weight.clone()
    with pytest.raises(ValueError, match="outside Discrete"):
        agent.update(batch)
    assert agent.n_updates == 0
    assert (agent.q_network.first.weight == before).all()
    # Dense mode (a MultiBinary goal): the Discrete state is checked as it is encoded.
    mixed = DQNAgent(5, spaces.MultiBinary(3), 2)
    assert mixed.fast is not None and not mixed.fast.index_mode
    bits = np.array([[0, 1, 1], [1, 0, 0]], dtype=np.int8)
    with pytest.raises(ValueError, match=r"outside Discrete\(5\)"):
        mixed.update(batch._replace(obs=np.array([0, 5]), goal=bits))
    assert mixed.n_updates == 0


def test_kernels_compile_without_a_writable_cache(tmp_path):
    # A copy of the module beside a *file* named __pycache__, and cache directories that
    # cannot be made: numba has nowhere to cache, so the kernels compile in the process.
    shutil.copy(kernels.__file__, tmp_path / "kernels_copy.py")
    (tmp_path / "__pycache__").write_text("not a directory")
    code = (
        "import numpy as np, kernels_copy as k\n"
        "out = np.zeros((2, 3), np.float32)\n"
        "k.sum_rows(np.ones((1, 3), np.float32), np.array([0]), np.array([1]), out)\n"
        "print(out.tolist())\n"
    )
    env = {
        **os.environ,
        "PYTHONPATH": str(tmp_path),
        "NUMBA_CACHE_DIR": "/dev/null/numba",
        "HOME": "/dev/null",  # and no user-wide cache either
        "XDG_CACHE_HOME": "/dev/null/cache",
    }
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]]"
