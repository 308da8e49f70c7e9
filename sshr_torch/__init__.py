"""sshr_torch: Smart Start + Hindsight Experience Replay for sparse-reward discrete RL.

    from sshr_torch import TrainConfig, train
    result = train(TrainConfig(her="future", episodes=50))

Importing the package registers the maze env with gymnasium
(``gymnasium.make("sshr_torch/GridMaze-v0", maze="keulen_hard")``); torch loads only when the
trainer is first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sshr_torch import env as _env  # noqa: F401  (registers sshr_torch/GridMaze-v0)
from sshr_torch.config import TrainConfig

if TYPE_CHECKING:
    from sshr_torch.trainer import TrainResult, train

__version__ = "0.1.0"
__all__ = ["TrainConfig", "TrainResult", "train", "__version__"]


def __getattr__(name: str) -> Any:
    # The trainer pulls in torch and TensorBoard: load it on first use only.
    if name in ("train", "TrainResult"):
        from sshr_torch import trainer

        return getattr(trainer, name)
    raise AttributeError(f"module 'sshr_torch' has no attribute {name!r}")
