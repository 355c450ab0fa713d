"""Reading a data file with bounds: regular files only, and no more bytes than a limit.

A data path can name anything the file system holds. ``/dev/zero`` never ends and fills memory; a
FIFO blocks its reader until someone writes to it; a socket or a directory is no data at all. So
the kind of the path is looked up first (``os.stat``, which opens nothing) and anything but a
regular file is refused by name. The size is checked against the limit before reading, and the read
itself stops one byte past the limit, in case the file grew in between.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

from ..errors import DataError

# The largest data file read when nothing else is configured (``data.max_file_mb``). A JSON file
# takes several times its size in memory once parsed, and the models trained here read far less.
DEFAULT_MAX_FILE_MB = 256.0

_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISSOCK, "a socket"))


def file_kind(mode: int) -> str:
    """What a ``st_mode`` names, in words (``a regular file``, ``a FIFO (named pipe)``, ...)."""
    if stat.S_ISREG(mode):
        return "a regular file"
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def check_regular_file(path: str | os.PathLike, what: str = "data file",
                       max_mb: float | None = None) -> os.stat_result:
    """The stat of ``path`` when it is an existing regular file (symlinks followed) of at most
    ``max_mb`` MiB (when given); else DataError."""
    sp = str(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise DataError("file not found", path=sp) from None
    except NotADirectoryError:
        raise DataError("file not found (a part of the path is not a directory)", path=sp) from None
    except PermissionError:
        raise DataError("cannot be read: permission denied", path=sp) from None
    except OSError as e:
        raise DataError(f"cannot be read: {e.strerror or e}", path=sp) from None
    if not stat.S_ISREG(st.st_mode):
        raise DataError(f"is {file_kind(st.st_mode)}, not a {what}: only regular files are read as data",
                        path=sp)
    if max_mb is not None and st.st_size > int(max_mb * 2**20):
        raise _too_big(sp, st.st_size, max_mb)
    return st


def _too_big(path: str, size: int | None, max_mb: float) -> DataError:
    size_txt = f"{size / 2**20:.1f} MB" if size is not None else "larger"
    return DataError(f"is {size_txt}, above the limit of {max_mb:g} MB per data file; raise "
                     "data.max_file_mb to read it (or split the file)", path=path)


def _open_checked(path: str | os.PathLike, max_mb: float):
    """The open binary file (a regular file, checked again once opened) and its size."""
    sp = str(path)
    st = check_regular_file(path, max_mb=max_mb)
    try:
        # Non-blocking, so that a FIFO swapped in after the check cannot hang the open.
        fd = os.open(Path(path), os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as e:
        raise DataError(f"cannot be read: {e.strerror or e}", path=sp) from None
    f = os.fdopen(fd, "rb")
    if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
        kind = file_kind(os.fstat(f.fileno()).st_mode)
        f.close()
        raise DataError(f"is {kind}, not a data file: only regular files are read as data", path=sp)
    return f, st.st_size


def read_bytes_bounded(path: str | os.PathLike, max_mb: float | None = None) -> bytes:
    """The bytes of a regular file of at most ``max_mb`` MiB (default ``DEFAULT_MAX_FILE_MB``)."""
    max_mb = DEFAULT_MAX_FILE_MB if max_mb is None else float(max_mb)
    limit = int(max_mb * 2**20)
    f, size = _open_checked(path, max_mb)
    with f:
        # as much as the file holds (asking for the limit would allocate the limit), then the
        # rest if it grew since
        want = min(size, limit) + 1
        raw = f.read(want)
        if len(raw) == want and want <= limit:
            raw += f.read(limit + 1 - want)
    if len(raw) > limit:
        raise _too_big(str(path), None, max_mb)
    return raw


def lines_bounded(path: str | os.PathLike, max_mb: float | None = None
                  ) -> Iterator[tuple[int, int, bytes]]:
    """The lines of a regular file of at most ``max_mb`` MiB, one at a time, as (offset of the
    line in the file, the file's size, the line's bytes with its newline): a file is never held
    whole, so reading it costs a line's memory, and a file that grows past the limit while it is
    read stops there."""
    max_mb = DEFAULT_MAX_FILE_MB if max_mb is None else float(max_mb)
    limit = int(max_mb * 2**20)
    f, size = _open_checked(path, max_mb)
    offset = 0
    with f:
        for line in f:
            if offset + len(line) > limit:
                raise _too_big(str(path), None, max_mb)
            yield offset, size, line
            offset += len(line)
