"""sshr_torch: Smart Start + Hindsight Experience Replay for sparse-reward discrete RL."""

__version__ = "0.1.0"
