"""Checkpoint files: versioned, checksummed, written atomically, no pickle.

Layout (little-endian)::

    16 bytes  magic b"NUMBA-ADAM-CKPT\\n"
     4 bytes  format version (uint32)
     4 bytes  reserved (0)
     8 bytes  header length H (uint64)
     H bytes  header: UTF-8 JSON (groups, hyperparameters, schedule configs,
              step counts, tensor names/shapes/offsets, array directory)
              then zero padding to a multiple of 64
     arrays   raw bytes of each flat array, each starting at a multiple of 64
    32 bytes  SHA-256 of everything above

Reading parses JSON and raw numbers only, so a file from anyone is safe to
open: nothing in it is ever executed.  Writing goes to a temporary file in the
same folder, fsyncs it and renames it over the target, so a crash mid-write
leaves the previous checkpoint intact.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

MAGIC = b"NUMBA-ADAM-CKPT\n"
FORMAT_VERSION = 1
_PREFIX = struct.Struct("<16sIIQ")
_DIGEST = 32
_ALIGN = 64


class CheckpointError(ValueError):
    """A checkpoint cannot be written, read, or does not fit the optimizer."""


def _padding(n: int) -> bytes:
    return b"\0" * (-n % _ALIGN)


def write_checkpoint(path: str | os.PathLike, header: dict[str, Any],
                     arrays: dict[str, list[np.ndarray]]) -> None:
    """Write ``header`` and named arrays (each a list of pieces written back to back).

    The header gains an ``arrays`` directory: name -> dtype, element count and
    byte offset after the header.
    """
    path = Path(path)
    directory, offset = {}, 0
    for name, pieces in arrays.items():
        dtype = np.result_type(*pieces) if pieces else np.dtype(np.float32)
        count = int(sum(p.size for p in pieces))
        directory[name] = dict(dtype=dtype.newbyteorder("<").str, count=count, offset=offset)
        offset += count * dtype.itemsize
        offset += -offset % _ALIGN
    try:
        header_bytes = json.dumps(dict(header, arrays=directory), allow_nan=False,
                                  default=_not_serialisable).encode()
    except ValueError as exc:
        raise CheckpointError(f"cannot save: {exc}") from None
    prefix = _PREFIX.pack(MAGIC, FORMAT_VERSION, 0, len(header_bytes))

    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or ".")
    try:
        with os.fdopen(fd, "wb") as f:
            digest = hashlib.sha256()

            def put(chunk) -> None:
                f.write(chunk)
                digest.update(chunk)

            head = prefix + header_bytes
            put(head + _padding(len(head)))
            for name, pieces in arrays.items():
                dtype = np.dtype(directory[name]["dtype"])
                written = 0
                for piece in pieces:
                    flat = np.ascontiguousarray(piece.ravel(order="K"), dtype=dtype)
                    put(memoryview(flat).cast("B"))
                    written += flat.nbytes
                put(_padding(written))
            f.write(digest.digest())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _fsync_directory(path.parent)


def _not_serialisable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise ValueError(f"{value!r} ({type(value).__name__}) cannot be stored in a checkpoint")


def _fsync_directory(directory: Path) -> None:
    try:
        fd = os.open(directory or ".", os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def read_checkpoint(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Read and verify a checkpoint; returns (header, name -> read-only flat array).

    Raises:
        CheckpointError: missing, truncated, corrupted, foreign or newer-format file.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {exc.strerror or exc}") from None
    if len(data) < _PREFIX.size + _DIGEST or not data.startswith(MAGIC):
        if len(data) < len(MAGIC) and MAGIC.startswith(data):
            raise CheckpointError(f"{path} is truncated ({len(data)} bytes)")
        raise CheckpointError(f"{path} is not a numba_adam checkpoint (wrong magic bytes)")
    _, version, _, header_len = _PREFIX.unpack_from(data)
    if version != FORMAT_VERSION:
        raise CheckpointError(f"{path} has checkpoint format version {version}; this numba_adam "
                              f"reads version {FORMAT_VERSION}")
    body = memoryview(data)[:-_DIGEST]
    if hashlib.sha256(body).digest() != data[-_DIGEST:]:
        raise CheckpointError(f"{path} is corrupted or truncated (checksum mismatch)")
    start = _PREFIX.size
    try:
        header = json.loads(bytes(body[start:start + header_len]))
    except (UnicodeDecodeError, ValueError) as exc:
        raise CheckpointError(f"{path} has an unreadable header: {exc}") from None
    base = start + header_len
    base += -base % _ALIGN
    arrays = {}
    for name, entry in header.get("arrays", {}).items():
        try:
            dtype = np.dtype(entry["dtype"])
            if dtype.kind != "f":
                raise TypeError(dtype)
            count, offset = int(entry["count"]), int(entry["offset"])
            end = base + offset + count * dtype.itemsize
            if offset < 0 or count < 0 or end > len(body):
                raise ValueError("out of bounds")
            # read-only views of the file's bytes: callers copy what they keep
            arrays[name] = np.frombuffer(body, dtype=dtype, count=count, offset=base + offset)
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"{path} has a bad entry for array {name!r}: {exc}") from None
    return header, arrays


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint read from disk, independent of any optimizer.

    ``groups`` holds each group's hyperparameters (``lr_schedule`` as a config
    where a schedule was used), ``updates``, and its tensors' names and shapes;
    ``state_dict()`` gives the torch-layout dict that ``load_state_dict``
    takes; ``params`` are the saved parameter values (or None).
    """

    path: Path
    optimizer: str
    dtype: np.dtype
    groups: list[dict[str, Any]]
    arrays: dict[str, np.ndarray]

    @property
    def tensors(self) -> list[dict[str, Any]]:
        return [t for g in self.groups for t in g["tensors"]]

    def tensor(self, array: str, i: int) -> np.ndarray | None:
        """Tensor ``i``'s slice of a flat array ("exp_avg", "exp_avg_sq", "max_exp_avg_sq", "params")."""
        t = self.tensors[i]
        flat = self.arrays.get(array)
        offset = t.get("vmax_offset" if array == "max_exp_avg_sq" else "offset", -1)
        if flat is None or offset < 0:
            return None
        n = int(np.prod(t["shape"], dtype=np.int64))
        if offset + n > flat.size:
            raise CheckpointError(f"{self.path}: tensor {i} lies outside array {array!r}")
        return flat[offset:offset + n].reshape(t["shape"], order=t["order"])

    @property
    def params(self) -> list[np.ndarray] | None:
        if "params" not in self.arrays:
            return None
        return [self.tensor("params", i) for i in range(len(self.tensors))]

    def state_dict(self) -> dict[str, Any]:
        state, groups, index = {}, [], 0
        for group in self.groups:
            ids = list(range(index, index + len(group["tensors"])))
            index += len(ids)
            saved = dict(group["hyperparameters"], params=ids)
            if group.get("lr_schedule") is not None:
                saved["lr_schedule"] = group["lr_schedule"]
            names = [t["name"] for t in group["tensors"]]
            if any(n is not None for n in names):
                saved["param_names"] = names
            groups.append(saved)
            if group["updates"] > 0:
                for i in ids:
                    entry = {"step": group["updates"]}
                    for key in ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"):
                        value = self.tensor(key, i)
                        if value is not None:
                            entry[key] = value
                    state[i] = entry
        return {"state": state, "param_groups": groups}


def load_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Read a checkpoint file written by ``Optimizer.save``.

    Example:
        >>> import numpy as np, numba_adam, tempfile, os
        >>> opt = numba_adam.Adam({"w": np.zeros(3)}, lr=0.1)
        >>> opt.step({"w": np.ones(3)})
        >>> path = os.path.join(tempfile.mkdtemp(), "run.ckpt")
        >>> opt.save(path, params=True)
        >>> ckpt = numba_adam.load_checkpoint(path)
        >>> ckpt.groups[0]["updates"], ckpt.params[0].round(3).tolist()
        (1, [-0.1, -0.1, -0.1])
    """
    header, arrays = read_checkpoint(path)
    try:
        groups = header["groups"]
        for group in groups:
            group["updates"] = int(group["updates"])
            for t in group["tensors"]:
                t["shape"] = tuple(int(s) for s in t["shape"])
                if t["order"] not in ("C", "F"):
                    raise ValueError(f"bad memory order {t['order']!r}")
        return Checkpoint(Path(path), str(header["optimizer"]), np.dtype(header["dtype"]),
                          groups, arrays)
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path} has a malformed header: {exc!r}") from None
