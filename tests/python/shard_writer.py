"""Writes the tiny DeepSeek-V3-style safetensors shards the MLA tests load (written by hand rather
than with the safetensors package, so that the loader is checked against the format itself)."""
import json
import struct

import numpy as np


def write_safetensors(path, tensors):
    """A minimal safetensors writer (8-byte header length, JSON header, raw little-endian data)."""
    header, blobs, off = {}, [], 0
    for name, (dtype, arr) in tensors.items():
        raw = np.ascontiguousarray(arr).tobytes()
        header[name] = {"dtype": dtype, "shape": list(arr.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    path.write_bytes(struct.pack("<Q", len(h)) + h + b"".join(blobs))
