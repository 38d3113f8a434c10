"""Byte-level training data that needs no download.

Default corpus: the text of CPython's documentation topics (``pydoc_data.topics.topics``, shipped
with every Python), the topics joined in sorted-key order, UTF-8 bytes. Fixed split: the first 90%
of the bytes train, the last 10% validate. ``--text FILE`` (``ByteData.from_file``) takes any file's
bytes with the same split. The corpus's SHA-256 goes into results and the cache key (the topics
text differs between Python versions).
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch

VAL_FRACTION = 0.1


class ByteData:
    def __init__(self, data: bytes | np.ndarray, name: str):
        if isinstance(data, (bytes, bytearray)):
            arr = np.frombuffer(bytes(data), dtype=np.uint8)
        else:
            arr = np.asarray(data)
            if arr.dtype.kind == "f":
                bad = np.argwhere(~np.isfinite(arr))
                if len(bad):
                    raise ValueError(f"data: element {int(bad[0][0])} is {arr.flat[int(bad[0][0])]}; expected byte "
                                     "values 0..255")
                if np.any(arr != np.round(arr)):
                    raise ValueError("data: holds non-integer values; expected byte values 0..255")
            if arr.dtype.kind not in "fiu" or arr.ndim != 1:
                raise ValueError(f"data: expected a 1-D array of byte values, got dtype {arr.dtype} shape {arr.shape}")
            if arr.size and (arr.min() < 0 or arr.max() > 255):
                raise ValueError(f"data: values must lie in 0..255, got min {arr.min()} max {arr.max()}")
            arr = arr.astype(np.uint8)
        self.name = name
        self.tokens = arr
        self.sha256 = hashlib.sha256(arr.tobytes()).hexdigest()
        split = int(len(arr) * (1 - VAL_FRACTION))
        self.train, self.val = arr[:split], arr[split:]

    @classmethod
    def pydoc_topics(cls) -> "ByteData":
        from pydoc_data.topics import topics

        text = "\n\n".join(topics[k] for k in sorted(topics))
        return cls(text.encode("utf-8"), "pydoc_data.topics")

    @classmethod
    def from_file(cls, path) -> "ByteData":
        p = Path(path)
        if not p.is_file():
            raise ValueError(f"--text: {str(p)!r} is not a readable file")
        return cls(p.read_bytes(), p.name)

    def check(self, batch: int, seq: int) -> None:
        """Both splits must hold one batch of ``seq + 1`` bytes (inputs and shifted targets)."""
        need = seq + 1
        for split, arr in (("training", self.train), ("validation", self.val)):
            if len(arr) < need:
                raise ValueError(f"data {self.name!r}: {len(self.tokens)} bytes give a {split} split of {len(arr)} "
                                 f"bytes, too short for one sequence of {seq} tokens (+1 target); need at least "
                                 f"{int(np.ceil(need / (VAL_FRACTION if split == 'validation' else 1 - VAL_FRACTION)))} bytes")

    def train_batch(self, rng: np.random.Generator, batch: int, seq: int):
        starts = rng.integers(0, len(self.train) - seq, size=batch)
        return self._gather(self.train, starts, seq)

    def val_batches(self, n: int, batch: int, seq: int):
        """``n`` fixed validation batches: windows evenly spaced over the validation split."""
        total = n * batch
        last = len(self.val) - seq - 1
        starts = np.linspace(0, max(last, 0), total).astype(np.int64)
        return [self._gather(self.val, starts[i * batch:(i + 1) * batch], seq) for i in range(n)]

    @staticmethod
    def _gather(arr, starts, seq):
        idx = starts[:, None] + np.arange(seq + 1)[None, :]
        w = torch.from_numpy(arr[idx].astype(np.int64))
        return w[:, :-1], w[:, 1:]


__all__ = ["ByteData", "VAL_FRACTION"]
