"""The embedding cache: gallery embeddings kept in memory (within a budget) and on disk as `.npy` files
written atomically, keyed by the tower's fingerprint and the images' (`embedding.tower_fingerprint`)."""

from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path

import numpy as np


class EmbeddingCache:
    """Embeddings by key: a bounded in-memory LRU, plus `.npy` files under `cache_dir` if given.

    Keys are content fingerprints (tower weights + data), so one cache can serve every call in a
    process: `EmbeddingCache.shared` returns the process-wide instance for a configuration.
    """

    _shared: dict[tuple, EmbeddingCache] = {}

    @classmethod
    def shared(cls, cache_dir: str | Path | None = None, memory_budget_mb: int = 1024) -> EmbeddingCache:
        """The process-wide cache for (cache_dir, memory budget): e.g. the original model's gallery
        embeddings, computed in one `evaluate_models` call, serve α = 0 in the next."""
        key = (str(Path(cache_dir).resolve()) if cache_dir is not None else None, memory_budget_mb)
        if key not in cls._shared:
            cls._shared[key] = cls(cache_dir, memory_budget_mb)
        return cls._shared[key]

    def __init__(self, cache_dir: str | Path | None = None, memory_budget_mb: int = 1024):
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.memory_budget = memory_budget_mb * 2**20
        self._memory: OrderedDict[str, np.ndarray] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def path(self, key: str) -> Path | None:
        return self.cache_dir / f"{key}.npy" if self.cache_dir is not None else None

    def get(self, key: str, count: bool = True) -> np.ndarray | None:
        """The entry under `key`, or None; `count=False` leaves the hit/miss counts (which report
        embeddings) alone, for intermediate entries such as the towers' pooled outputs."""
        if key in self._memory:
            self._memory.move_to_end(key)
            self.hits += count
            return self._memory[key]
        path = self.path(key)
        if path is not None and path.is_file():
            self.hits += count
            return np.load(path, mmap_mode="r")
        self.misses += count
        return None

    def allocate(self, key: str, shape: tuple[int, int], dtype: str) -> np.ndarray:
        """An array to fill: a memory-mapped temporary file when caching to disk."""
        path = self.path(key)
        if path is None:
            return np.empty(shape, dtype=dtype)
        path.parent.mkdir(parents=True, exist_ok=True)
        return np.lib.format.open_memmap(self._partial(path), mode="w+", dtype=dtype, shape=shape)

    def commit(self, key: str, array: np.ndarray) -> np.ndarray:
        """Publish a filled array under `key`; a crash before this leaves no half-written entry."""
        path = self.path(key)
        if path is not None:
            array.flush()
            del array
            os.replace(self._partial(path), path)
            return np.load(path, mmap_mode="r")
        if array.nbytes <= self.memory_budget:
            self._memory[key] = array
            while sum(value.nbytes for value in self._memory.values()) > self.memory_budget:
                self._memory.popitem(last=False)
        return array

    @staticmethod
    def _partial(path: Path) -> Path:
        return path.with_name(path.name + ".partial")
