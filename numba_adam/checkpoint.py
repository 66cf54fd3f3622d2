"""Checkpoint files: logical state as safetensors, checksummed, written atomically, no pickle.

Format 3 (written now) is a valid safetensors file::

     8 bytes  header length N (little-endian uint64)
     N bytes  JSON: {"__metadata__": {...}, "groups.0.exp_avg": {"dtype": "F32",
              "shape": [count], "data_offsets": [begin, end]}, ...}, space-padded so
              the data starts at a multiple of 64
     data     the arrays back to back, widest dtype first

``__metadata__`` holds ``format`` ("numba_adam checkpoint"), ``format_version``
("3"), ``numba_adam`` (numba_adam's header as JSON text) and ``checksum``
("crc32:" and 8 hex digits: CRC-32 of that header text followed by all the
data).  The numba_adam header holds what a reader needs to rebuild the state
in any memory layout: the optimizer's class and dtype, and per group its
hyperparameters, schedule config, completed updates and its tensors' names
and shapes, plus an ``arrays`` directory (dtype, count, offset) that must
agree with the safetensors entries.  The arrays are the logical state per
group: ``groups.G.exp_avg``, ``groups.G.exp_avg_sq`` (and
``groups.G.max_exp_avg_sq`` for AMSGrad, ``groups.G.params`` with
``save(params=True)``), each the group's tensors back to back in C order.
Tensors with 16- or 8-bit state (``state_bits`` in their tensor entry) store
their codes instead, losslessly: ``groups.G.exp_avg.bf16`` (U16 bfloat16
patterns) or ``groups.G.exp_avg.q8`` (U8 codes, version ``q8_codes`` of
``_codes``) plus ``groups.G.exp_avg_absmax`` (F32, one per 256-element
block), likewise for the other moments; codes are in the state's memory order.

Formats 1 and 2 (magic ``NUMBA-ADAM-CKPT``, JSON header, 64-byte aligned
arrays, SHA-256 trailer; format 1 with flat engine buffers and per-tensor
offsets) still load.

Why the format is written here and not with the ``safetensors`` package:
its NumPy writer copies every array to ``bytes`` first and writes the file in
place, with no fsync; a save here must stream the optimizer's buffers without
copies, checksum them as they go and replace the target atomically.  The tests
read every checkpoint back with ``safetensors.numpy.load_file``.

Why CRC-32 rather than SHA-256: the checksum guards against torn or damaged
files, not against an adversary (who could recompute any digest); CRC-32 runs
at about 6 GB/s here against SHA-256's 1.8 GB/s, which is what lets a save
cost about what ``np.save`` plus fsync does.  PyTorch's zip checkpoints use
CRC-32 for the same purpose.
"""

from __future__ import annotations

import glob
import hashlib
import json
import mmap
import os
import stat
import struct
import tempfile
import threading
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__, _codes, _crc32

FORMAT_NAME = "numba_adam checkpoint"
FORMAT_VERSION = 3
READABLE_VERSIONS = (1, 2, 3)
MAGIC = b"NUMBA-ADAM-CKPT\n"   # formats 1 and 2
_SAFETENSORS_DTYPES = {"<f4": "F32", "<f8": "F64", "<u2": "U16", "|u1": "U8"}
# Array-name suffix of compact state codes, by state_bits (see ``_state``).
_CODE_SUFFIX = {32: "", 16: ".bf16", 8: ".q8"}
_CODE_BITS = {np.dtype(np.uint16): 16, np.dtype(np.uint8): 8}
_CHECKSUM_PLACEHOLDER = "crc32:00000000"
_PREFIX = struct.Struct("<16sIIQ")
_DIGEST = 32
_ALIGN = 64
_STATE_KEYS = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")


class CheckpointError(ValueError):
    """A checkpoint cannot be written, read, or does not fit the optimizer."""


def save(path: str | os.PathLike, state_dict: Mapping[str, Any], *, optimizer: str,
         dtype: np.dtype, shapes: Sequence[tuple], params: Sequence[np.ndarray] | None = None
         ) -> None:
    """Write an optimizer's ``state_dict()`` (and optionally its parameter values) to ``path``.

    Raises:
        CheckpointError: a group's lr is a plain callable (only
            ``numba_adam.schedules`` schedules can be stored).
    """
    write_checkpoint(path, *contents(state_dict, optimizer=optimizer, dtype=dtype,
                                     shapes=shapes, params=params))


def contents(state_dict: Mapping[str, Any], *, optimizer: str, dtype: np.dtype,
             shapes: Sequence[tuple], params: Sequence[np.ndarray] | None = None
             ) -> tuple[dict[str, Any], dict[str, list[np.ndarray]]]:
    """The numba_adam header and the named arrays (lists of pieces) a checkpoint of
    ``state_dict`` holds; ``save`` writes them with ``write_checkpoint``.

    Only the pieces' dtypes and sizes shape the file (``file_layout``), so a
    writer that holds part of the state (one rank's shard) can pass stand-ins
    of the right dtype and size and write its own bytes where they fall.
    """
    groups, arrays = [], {}
    state = state_dict["state"]
    for gi, saved in enumerate(state_dict["param_groups"]):
        ids = list(saved["params"])
        schedule = saved.get("lr_schedule")
        if schedule is not None and not isinstance(schedule, Mapping):
            raise CheckpointError(
                f"param_groups[{gi}]['lr'] is a plain callable ({schedule!r}), which cannot be "
                f"saved; use a numba_adam.schedules schedule or a float lr")
        names = saved.get("param_names", [None] * len(ids))
        updates = int(state[ids[0]]["step"]) if ids and ids[0] in state else 0
        bits = [_CODE_BITS.get(np.asarray(state[i]["exp_avg"]).dtype, 32) if updates > 0
                else 32 for i in ids]
        groups.append(dict(
            hyperparameters={k: v for k, v in saved.items()
                             if k not in ("params", "param_names", "lr_schedule")},
            lr_schedule=schedule, updates=updates,
            tensors=[dict(name=n, shape=list(shapes[i]), **({} if b == 32 else
                                                            dict(state_bits=b)))
                     for n, i, b in zip(names, ids, bits)]))
        if updates > 0:
            for i, b in zip(ids, bits):
                for key, value in state[i].items():
                    if key != "step":
                        suffix = "" if key.endswith("_absmax") else _CODE_SUFFIX[b]
                        arrays.setdefault(f"groups.{gi}.{key}{suffix}", []).append(value)
        if params is not None:
            arrays[f"groups.{gi}.params"] = [params[i] for i in ids]
    header = dict(format=FORMAT_NAME, library_version=__version__,
                  optimizer=optimizer, dtype=str(np.dtype(dtype)), groups=groups)
    if any("state_bits" in t for g in groups for t in g["tensors"]):
        header["q8_codes"] = _codes.CODE_VERSION
    return header, arrays


@dataclass(frozen=True)
class FileLayout:
    """Where everything goes in a format-3 file: the bytes before the data, each array's
    dtype and absolute file offset (arrays in ``order``), and the checksum's place."""

    head: bytes                 # length prefix and safetensors header, checksum placeholder
    numba_adam_header: bytes    # the checksummed header text (precedes the data in the CRC)
    order: list[str]
    dtypes: dict[str, np.dtype]
    offsets: dict[str, int]
    checksum_at: int
    size: int                   # the whole file's length in bytes


def file_layout(header: dict[str, Any], arrays: Mapping[str, Sequence[Any]]) -> FileLayout:
    """Lay out ``header`` and named arrays (lists of pieces; only their dtypes and sizes
    count) as a format-3 file.

    Raises:
        CheckpointError: the header cannot be stored as JSON.
    """
    dtypes = {name: (np.result_type(*parts) if parts else np.dtype(np.float32)).newbyteorder("<")
              for name, parts in arrays.items()}
    order = sorted(arrays, key=lambda name: -dtypes[name].itemsize)   # stable: keeps alignment
    directory, tensors, offset = {}, {}, 0
    for name in order:
        count = sum(int(np.size(p)) for p in arrays[name])
        nbytes = count * dtypes[name].itemsize
        directory[name] = dict(dtype=dtypes[name].str, count=count, offset=offset)
        tensors[name] = dict(dtype=_SAFETENSORS_DTYPES[dtypes[name].str], shape=[count],
                             data_offsets=[offset, offset + nbytes])
        offset += nbytes
    try:
        inner = json.dumps(dict(header, arrays=directory), allow_nan=False,
                           default=_not_serialisable)
    except ValueError as exc:
        raise CheckpointError(f"cannot save: {exc}") from None
    metadata = {"checksum": _CHECKSUM_PLACEHOLDER, "format": FORMAT_NAME,
                "format_version": str(FORMAT_VERSION), "numba_adam": inner}
    header_bytes = json.dumps({"__metadata__": metadata, **tensors}).encode()
    header_bytes += b" " * (-(8 + len(header_bytes)) % _ALIGN)   # data starts 64-byte aligned
    head = struct.pack("<Q", len(header_bytes)) + header_bytes
    base = len(head)
    return FileLayout(head, inner.encode(), order, dtypes,
                      {name: base + directory[name]["offset"] for name in order},
                      8 + header_bytes.index(_CHECKSUM_PLACEHOLDER.encode()), base + offset)


def format_checksum(crc: int) -> bytes:
    """The checksum field's bytes for a CRC-32 of the header text followed by the data."""
    return _format_checksum(crc).encode()


def temporary_path(path: str | os.PathLike) -> tuple[Path, Path]:
    """(target, temporary file) for an atomic write of ``path``: the target with symlinks
    resolved, and a fresh name beside it that crashed writers' leftovers never collide
    with (their stale temporaries are removed first)."""
    path = Path(os.path.realpath(path)) if os.path.islink(path) else Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    try:
        _remove_stale_temporaries(folder, path.name)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp",
                                   dir=folder)
        os.close(fd)
    except OSError as exc:
        raise CheckpointError(f"cannot save checkpoint to {path}: {exc.strerror or exc}") \
            from None
    return path, Path(tmp)


def commit(tmp: Path, path: Path) -> None:
    """Make the written temporary ``tmp`` the checkpoint ``path`` (fsync, keep an existing
    file's mode, replace atomically, fsync the folder)."""
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode) if path.is_file() else None
        fd = os.open(tmp, os.O_RDWR)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except OSError as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise CheckpointError(f"cannot save checkpoint to {path}: {exc.strerror or exc}") \
            from None
    _fsync_directory(path.parent if str(path.parent) else Path("."))


def write_checkpoint(path: str | os.PathLike, header: dict[str, Any],
                     arrays: dict[str, list[np.ndarray]]) -> None:
    """Write ``header`` and named arrays as a safetensors file (format 3).

    Each array is a list of pieces written back to back in C order; arrays are
    stored widest dtype first, so every array is aligned to its item size.  The
    numba_adam header (with an ``arrays`` directory: name -> dtype, element
    count and byte offset in the data section) and a CRC-32 over that header
    and all the data sit in the safetensors ``__metadata__``.  The checksum is
    computed on a second thread while the data is written (a reader verifies
    it on several threads, see ``_crc32``).

    A symlink is written through to its target.  A new file is created with
    mode 0600 (optimizer state is private by default); an existing one keeps
    its mode.  Temporary files that crashed saves left for the same target are
    removed first (only those of processes that no longer run).

    Raises:
        CheckpointError: the header cannot be stored as JSON, or the file
            cannot be written (the message names the path and the reason).
    """
    layout = file_layout(header, arrays)
    pieces = {name: [np.ascontiguousarray(np.asarray(p).ravel(order="C"),
                                          dtype=layout.dtypes[name]) for p in arrays[name]]
              for name in layout.order}
    views = [memoryview(p).cast("B") for name in layout.order for p in pieces[name] if p.size]
    path, tmp = temporary_path(path)
    try:
        checksum = _Checksum(layout.numba_adam_header, views)
        with open(tmp, "r+b") as f:
            f.write(layout.head)
            for view in views:
                f.write(view)
            f.seek(layout.checksum_at)
            f.write(checksum.result().encode())
    except BaseException as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise CheckpointError(f"cannot save checkpoint to {path}: "
                                  f"{exc.strerror or exc}") from None
        raise
    commit(tmp, path)


class _Checksum:
    """CRC-32 of the header text and the data, computed on its own thread (zlib releases the
    GIL), so hashing overlaps the writes instead of adding to them."""

    def __init__(self, head: bytes, views: Sequence[memoryview]):
        self._value = None
        self._thread = threading.Thread(target=self._run, args=(head, views), daemon=True)
        self._thread.start()

    def _run(self, head, views) -> None:
        crc = zlib.crc32(head)
        for view in views:
            crc = zlib.crc32(view, crc)
        self._value = crc

    def result(self) -> str:
        self._thread.join()
        return _format_checksum(self._value)


def _format_checksum(crc: int) -> str:
    return f"crc32:{crc:08x}"


def _remove_stale_temporaries(folder: Path, name: str) -> None:
    """Delete ``.NAME.PID.*.tmp`` files whose writing process no longer exists."""
    for candidate in folder.glob(f".{glob.escape(name)}.*.tmp"):
        parts = candidate.name[len(name) + 2:].split(".")
        if not parts or not parts[0].isdigit():
            continue
        pid = int(parts[0])
        if pid == os.getpid() or _process_exists(pid):
            continue   # a live writer's file: never touched
        try:
            candidate.unlink()
        except OSError:
            pass


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def _not_serialisable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, tuple):
        return list(value)
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


MAX_HEADER_BYTES = 64 << 20   # far above any real header; bounds what a crafted file costs


def read_checkpoint(path: str | os.PathLike) -> tuple[int, dict[str, Any], dict[str, np.ndarray]]:
    """Read and verify a checkpoint; returns (format version, header, name -> read-only array).

    Only regular files are opened.  The header and array directory are checked
    against the file's size before anything large is read; the checksum is
    computed in fixed-size chunks; the arrays are read-only views of a memory
    map of the file.  So refusing a file costs bounded memory whatever it
    claims.

    Raises:
        CheckpointError: missing, not a regular file, truncated, corrupted,
            foreign or newer-format file, or a malformed header.
    """
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))   # a FIFO must not block
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {exc.strerror or exc}") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise CheckpointError(f"cannot read checkpoint {path}: not a regular file")
    with os.fdopen(fd, "rb") as f:
        try:
            first = f.read(len(MAGIC))
            f.seek(0)
            reader = _read_numba_adam_v1_v2 if first == MAGIC else _read_safetensors
            version, header, directory = reader(f, path, info.st_size)
            mapped = (mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if info.st_size
                      else b"")
        except OSError as exc:
            raise CheckpointError(f"cannot read checkpoint {path}: {exc.strerror or exc}") \
                from None
    # read-only views of the mapped file: callers copy what they keep
    arrays = {name: np.frombuffer(mapped, dtype=dtype, count=count, offset=offset)
              for name, (dtype, count, offset) in directory.items()}
    return version, header, arrays


def _read_safetensors(f, path: Path, size: int) -> tuple[int, dict, dict]:
    """Format 3: a safetensors file whose ``__metadata__`` holds numba_adam's header."""
    if size < 8:
        raise CheckpointError(f"{path} is truncated or not a numba_adam checkpoint "
                              f"({size} bytes)")
    (header_len,) = struct.unpack("<Q", f.read(8))
    _check_header_length(path, header_len, 8 + header_len, size)
    outer = _parse_json(f.read(header_len), path)
    metadata = outer.pop("__metadata__", None)
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT_NAME:
        raise CheckpointError(f"{path} is not a numba_adam checkpoint (no numba_adam metadata "
                              f"in its safetensors header)")
    version = metadata.get("format_version")
    if not isinstance(version, str) or not version.isdigit() or int(version) != FORMAT_VERSION:
        raise CheckpointError(f"{path} has checkpoint format version {version}; this numba_adam "
                              f"reads versions {list(READABLE_VERSIONS)}")
    inner_text = metadata.get("numba_adam")
    if not isinstance(inner_text, str):
        raise CheckpointError(f"{path} has a malformed header: no numba_adam header text")
    header = _parse_json(inner_text.encode(), path)
    if header.get("format") != FORMAT_NAME:
        raise CheckpointError(f"{path} has a malformed header: its numba_adam header says "
                              f"format {header.get('format')!r:.60}")
    base = 8 + header_len
    directory = _check_directory(header, path, base, size, align=1)
    for name, (dtype, count, offset) in directory.items():
        expected = dict(dtype=_SAFETENSORS_DTYPES[dtype.str], shape=[count],
                        data_offsets=[offset - base, offset - base + count * dtype.itemsize])
        if outer.get(name) != expected:
            raise CheckpointError(f"{path} is corrupted: the safetensors entry for {name!r} "
                                  f"does not match the numba_adam header")
    if set(outer) != set(directory):
        raise CheckpointError(f"{path} has arrays the numba_adam header does not list: "
                              f"{sorted(set(outer) - set(directory))[:5]}")
    crc = _crc32.crc32_chunks(_file_chunks(f, path, base, size), zlib.crc32(inner_text.encode()))
    if metadata.get("checksum") != _format_checksum(crc):
        raise CheckpointError(f"{path} is corrupted or truncated (checksum mismatch)")
    return FORMAT_VERSION, header, directory


def _read_numba_adam_v1_v2(f, path: Path, size: int) -> tuple[int, dict, dict]:
    """Formats 1 and 2: magic, JSON header, 64-byte aligned arrays, SHA-256 trailer."""
    head = f.read(_PREFIX.size)
    if size < _PREFIX.size + _DIGEST:
        raise CheckpointError(f"{path} is truncated ({size} bytes)")
    _, version, _, header_len = _PREFIX.unpack(head)
    if version not in (1, 2):
        raise CheckpointError(f"{path} has checkpoint format version {version}; this numba_adam "
                              f"reads versions {list(READABLE_VERSIONS)}")
    _check_header_length(path, header_len, _PREFIX.size + header_len + _DIGEST, size)
    header = _parse_json(f.read(header_len), path)
    base = _PREFIX.size + header_len
    base += -base % _ALIGN
    directory = _check_directory(header, path, base, size - _DIGEST, align=_ALIGN)
    digest = hashlib.sha256()
    for _, read in _file_chunks(f, path, 0, size - _DIGEST):
        digest.update(read())
    if digest.digest() != os.pread(f.fileno(), _DIGEST, size - _DIGEST):
        raise CheckpointError(f"{path} is corrupted or truncated (checksum mismatch)")
    return version, header, directory


def _check_header_length(path: Path, header_len: int, needed: int, size: int) -> None:
    if header_len > MAX_HEADER_BYTES:
        raise CheckpointError(f"{path} declares a {header_len}-byte header, more than the "
                              f"{MAX_HEADER_BYTES} a checkpoint may have (or it is not a "
                              f"numba_adam checkpoint)")
    if needed > size:
        raise CheckpointError(f"{path} is truncated: its header alone needs {header_len} bytes, "
                              f"the file has {size}")


def _parse_json(raw: bytes, path: Path) -> dict[str, Any]:
    try:
        header = json.loads(raw)
        if not isinstance(header, dict):
            raise ValueError("the header is not a JSON object")
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise CheckpointError(f"{path} has an unreadable header "
                              f"(or is not a numba_adam checkpoint): {exc}") from None
    return header


def _check_directory(header: dict, path: Path, base: int, end_of_data: int,
                     align: int) -> dict[str, tuple]:
    """The array directory, checked: float dtypes, whole counts, arrays back to back (each
    padded to ``align``) from ``base``, ending exactly at ``end_of_data``.  Offsets returned
    are absolute file offsets."""
    entries = header.get("arrays", {})
    if not isinstance(entries, dict):
        raise CheckpointError(f"{path} has a malformed array directory")
    directory, end = {}, 0
    for name, entry in entries.items():
        try:
            if not isinstance(entry, dict):
                raise TypeError("not an object")
            dtype = np.dtype(str(entry["dtype"]))
            if dtype.str not in _SAFETENSORS_DTYPES:
                raise TypeError(f"dtype {dtype} is not little-endian float32, float64, uint16 "
                                f"or uint8")
            count, offset = _whole(entry["count"]), _whole(entry["offset"])
            nbytes = count * dtype.itemsize
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            raise CheckpointError(f"{path} has a bad entry for array {name!r}: {exc}") from None
        if base + offset + nbytes > end_of_data:
            raise CheckpointError(f"{path} is truncated or corrupted: array {name!r} needs "
                                  f"bytes up to {base + offset + nbytes}, the data ends at "
                                  f"{end_of_data}")
        directory[name] = (dtype, count, base + offset)
        end = max(end, offset + nbytes + (-nbytes % align))
    if base + end != end_of_data:
        raise CheckpointError(f"{path} is truncated or corrupted: its header describes "
                              f"{base + end} bytes of data, the file has {end_of_data}")
    return directory


def _file_chunks(f, path: Path, start: int, end: int) -> list[tuple[int, Any]]:
    """The file's bytes [start, end) as fixed-size chunks: (length, read), where ``read()``
    returns that chunk's bytes (``os.pread``: callable from any thread, one chunk in memory
    per reader)."""
    fd = f.fileno()

    def reader(offset: int, length: int):
        def read() -> bytes:
            data = os.pread(fd, length, offset)
            if len(data) != length:
                raise CheckpointError(f"{path} changed while it was read")
            return data
        return read

    return [(min(_crc32.CHUNK, end - at), reader(at, min(_crc32.CHUNK, end - at)))
            for at in range(start, end, _crc32.CHUNK)]


def _whole(value: Any) -> int:
    """A non-negative JSON integer (bools and floats refused)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"expected a non-negative integer, got {value!r}")
    return value


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
    version: int = FORMAT_VERSION
    _where: dict = field(default_factory=dict, repr=False)   # (array, i) -> (name, start, order)

    @property
    def tensors(self) -> list[dict[str, Any]]:
        return [t for g in self.groups for t in g["tensors"]]

    def tensor(self, array: str, i: int) -> np.ndarray | None:
        """Tensor ``i``'s values of ``array`` ("exp_avg", "exp_avg_sq", "max_exp_avg_sq",
        "params", or a low-bit state's "*_absmax"), shaped like the parameter (the scales:
        one per block); None where the file has none."""
        where = self._where.get((array, i))
        if where is None:
            return None
        name, start, count, shape, order = where
        flat = self.arrays.get(name)
        if flat is None:
            return None
        if start + count > flat.size:
            raise CheckpointError(f"{self.path}: tensor {i} lies outside array {name!r}")
        return flat[start:start + count].reshape(shape, order=order)

    @property
    def params(self) -> list[np.ndarray] | None:
        if not any(key == "params" for key, _ in self._where):
            return None
        return [self.tensor("params", i) for i in range(len(self.tensors))]

    def check_fits(self, group_sizes: Sequence[int], names: Sequence[str | None],
                   shapes: Sequence[tuple]) -> None:
        """Raise CheckpointError unless this file was saved from a model laid out like this."""
        if len(self.groups) != len(group_sizes):
            raise CheckpointError(f"{self.path} holds {len(self.groups)} parameter groups, this "
                                  f"optimizer has {len(group_sizes)}")
        for gi, (saved, size) in enumerate(zip(self.groups, group_sizes)):
            if len(saved["tensors"]) != size:
                raise CheckpointError(f"{self.path}: group {gi} holds {len(saved['tensors'])} "
                                      f"parameters, this optimizer's has {size}")
        for i, (saved, name, shape) in enumerate(zip(self.tensors, names, shapes)):
            if saved["name"] is not None and name is not None and saved["name"] != name:
                raise CheckpointError(f"{self.path}: parameter {i} is {saved['name']!r} in the "
                                      f"file but {name!r} here")
            if tuple(saved["shape"]) != tuple(shape):
                raise CheckpointError(f"{self.path}: parameter {name or i!r} has shape "
                                      f"{tuple(saved['shape'])} in the file, {tuple(shape)} here")

    def state_dict(self) -> dict[str, Any]:
        """The torch-layout state_dict (arrays are read-only views of the file)."""
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
                    for key in _STATE_KEYS + tuple(f"{k}_absmax" for k in _STATE_KEYS):
                        value = self.tensor(key, i)
                        if value is not None:
                            entry[key] = value
                    state[i] = entry
        return {"state": state, "param_groups": groups}


def _locations(version: int, groups: list[dict], arrays: Mapping[str, np.ndarray]) -> dict:
    """Where each tensor's values of each entry are: (array name, element start, count,
    shape, order)."""
    where = {}
    i = 0
    for gi, group in enumerate(groups):
        starts: dict[str, int] = {}
        for t in group["tensors"]:
            shape = tuple(t["shape"])
            n = int(np.prod(shape, dtype=np.int64))
            bits = t.get("state_bits", 32)
            entries = [(key, f"groups.{gi}.{key}{_CODE_SUFFIX[bits]}", n, shape)
                       for key in _STATE_KEYS]
            if bits == 8:
                nb = _codes.blocks(n)
                entries += [(f"{key}_absmax", f"groups.{gi}.{key}_absmax", nb, (nb,))
                            for key in _STATE_KEYS]
            entries.append(("params", f"groups.{gi}.params", n, shape))
            for key, name, count, key_shape in entries:
                if version >= 2:
                    if name in arrays:
                        start = starts.get(name, 0)
                        where[(key, i)] = (name, start, count, key_shape, "C")
                        starts[name] = start + count
                elif key in _STATE_KEYS + ("params",):   # format 1: flat engine buffers
                    offset = _whole_or_none(t.get("vmax_offset" if key == "max_exp_avg_sq"
                                                  else "offset", -1))
                    if key in arrays and offset is not None:
                        where[(key, i)] = (key, offset, n, shape, t["order"])
            i += 1
    return where


def _whole_or_none(value: Any) -> int | None:
    if value == -1:
        return None
    return _whole(value)


def _check_group(group: Any, version: int) -> dict[str, Any]:
    if not isinstance(group, dict) or not isinstance(group.get("hyperparameters"), dict):
        raise ValueError(f"a group must be an object with hyperparameters, got {group!r:.80}")
    updates = group["updates"]
    group["updates"] = _whole(updates)
    if not isinstance(group["tensors"], list):
        raise ValueError("a group's tensors must be a list")
    for t in group["tensors"]:
        if not isinstance(t, dict) or not isinstance(t["shape"], list):
            raise ValueError(f"bad tensor entry {t!r:.80}")
        t["shape"] = tuple(_whole(s) for s in t["shape"])
        if t.get("name") is not None and not isinstance(t["name"], str):
            raise ValueError(f"a tensor name must be a string, got {t['name']!r:.80}")
        t.setdefault("name", None)
        if t.get("state_bits", 32) not in (32, 16, 8):
            raise ValueError(f"bad state_bits {t['state_bits']!r}")
        if version == 1 and t.get("order") not in ("C", "F"):
            raise ValueError(f"bad memory order {t.get('order')!r}")
    return group


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
    version, header, arrays = read_checkpoint(path)
    try:
        groups = header["groups"]
        if not isinstance(groups, list):
            raise ValueError("groups must be a list")
        groups = [_check_group(g, version) for g in groups]
        dtype = np.dtype(header["dtype"])
        if dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
            raise ValueError(f"dtype {dtype} is not float32 or float64")
        return Checkpoint(Path(path), str(header["optimizer"]), dtype, groups, arrays, version,
                          _locations(version, groups, arrays))
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as exc:
        raise CheckpointError(f"{path} has a malformed header: {exc!r}") from None
