"""The semantic index: a scope's vectors in memory, searched with one matrix product.

The store is the truth; the index is a process's copy of one scope's vectors, brought up to
date from the store's cursor before each search (only what other processes and threads
added since), and told to forget an entry when the store no longer has it.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ._store import Store

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

_controller: Any = None


@contextlib.contextmanager
def _one_blas_thread() -> Iterator[None]:
    """Run the search's matrix product on one BLAS thread, when threadpoolctl is there.

    The product is bound by memory, not arithmetic, so more threads gain little; and BLAS
    threads spin for a while after their work, slowing the next embedding (torch) by more
    than the product took: 2x on a 2-core machine.
    """
    global _controller
    if _controller is None:
        try:
            import threadpoolctl

            _controller = threadpoolctl.ThreadpoolController()
        except ImportError:
            _controller = False
    if _controller is False:
        yield
        return
    with _controller.limit(limits=1, user_api="blas"):
        yield


class Index:
    """One scope's vectors: rows of a growing float32 matrix, with their keys.

    Args:
        namespace: the namespace the scope belongs to.
        scope: the scope.
    """

    def __init__(self, namespace: str, scope: str) -> None:
        self.namespace = namespace
        self.scope = scope
        self.cursor = 0
        self.keys: list[str] = []
        self.rows: dict[str, int] = {}
        self.matrix: npt.NDArray[np.float32] | None = None
        self.lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.keys)

    def sync(self, store: Store) -> None:
        """Add what the store wrote to this scope since the last sync."""
        import numpy as np

        batch = store.vectors(self.namespace, self.scope, self.cursor)
        if batch.cursor < self.cursor:  # the store was emptied or rebuilt: start over
            self.cursor, self.keys, self.rows, self.matrix = 0, [], {}, None
            batch = store.vectors(self.namespace, self.scope, 0)
        for key, raw in zip(batch.keys, batch.vectors, strict=True):
            self.add(key, np.frombuffer(raw, dtype=np.float32))
        self.cursor = batch.cursor

    def add(self, key: str, vector: npt.NDArray[np.float32]) -> None:
        """Add (or replace) one entry's vector."""
        import numpy as np

        row = self.rows.get(key)
        if self.matrix is None:
            self.matrix = np.zeros((16, vector.shape[0]), dtype=np.float32)
        if vector.shape[0] != self.matrix.shape[1]:
            return  # another embedder's vector under the same scope: never compared
        if row is None:
            row = len(self.keys)
            if row == self.matrix.shape[0]:
                grown = np.zeros((row * 2, self.matrix.shape[1]), dtype=np.float32)
                grown[:row] = self.matrix[:row]
                self.matrix = grown
            self.keys.append(key)
            self.rows[key] = row
        self.matrix[row] = vector

    def remove(self, key: str) -> None:
        """Forget an entry (the last row takes its place)."""
        row = self.rows.pop(key, None)
        if row is None or self.matrix is None:
            return
        last = len(self.keys) - 1
        if row != last:
            moved = self.keys[last]
            self.keys[row] = moved
            self.rows[moved] = row
            self.matrix[row] = self.matrix[last]
        self.keys.pop()

    def search(
        self, query: npt.NDArray[np.float32], threshold: float, limit: int
    ) -> list[tuple[str, float]]:
        """The best ``limit`` entries scoring at least ``threshold``, best first."""
        import numpy as np

        count = len(self.keys)
        if count == 0 or self.matrix is None or query.shape[0] != self.matrix.shape[1]:
            return []
        with _one_blas_thread():
            scores = self.matrix[:count] @ query
        if count > limit:
            top = np.argpartition(scores, count - limit)[count - limit :]
        else:
            top = np.arange(count)
        ranked = sorted(((float(scores[i]), int(i)) for i in top), reverse=True)
        return [(self.keys[i], score) for score, i in ranked if score >= threshold]
