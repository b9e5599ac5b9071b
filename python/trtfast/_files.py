"""Files written whole or not at all: engine files, exported plans, caches."""

from __future__ import annotations

import contextlib
import errno
import os
import secrets


def atomic_write(path: str | os.PathLike[str], *parts: bytes) -> None:
    """Write ``parts`` to ``path`` through a temporary file beside it, flushed to the disk and
    renamed over ``path``: readers see the old file or the new one, never part of one, even if
    the writer is interrupted or the machine stops. A failure raises the OSError naming ``path``
    and leaves no temporary file behind."""
    target = os.fspath(path)
    temporary = f"{target}.{secrets.token_hex(6)}.tmp"
    try:
        # 0o666 so that the umask applies as for open().
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
    except OSError as error:
        raise _naming(error, target) from None
    try:
        with open(fd, "wb") as file:
            for part in parts:
                file.write(part)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, target)
    except BaseException as error:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        if isinstance(error, OSError):
            raise _naming(error, target) from None
        raise
    _sync_folder(os.path.dirname(os.path.abspath(target)))


def _naming(error: OSError, target: str) -> OSError:
    """The same error, naming the file the caller asked for rather than the temporary one."""
    if error.errno is None:
        return error
    return type(error)(error.errno, error.strerror, target)


def _sync_folder(folder: str) -> None:
    """Make the rename durable. Some filesystems cannot sync a folder; there is nothing to do."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    except OSError as error:
        if error.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)
