"""Files written whole or not at all: engine files, exported plans, caches."""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat


def atomic_write(path: str | os.PathLike[str], *parts: bytes) -> None:
    """Write ``parts`` to ``path`` through a temporary file beside it, flushed to the disk and
    renamed over ``path``: readers see the old file or the new one, never part of one, even if
    the writer is interrupted or the machine stops. A failure raises the OSError naming ``path``
    and leaves no temporary file behind.

    A symbolic link is written through: its target is replaced and the link kept. An existing
    file keeps its mode, group and access control lists; a new one gets the umask's mode."""
    named = os.fspath(path)
    target = os.path.realpath(named)
    temporary = f"{target}.{secrets.token_hex(6)}.tmp"
    try:
        # 0o666 so that the umask applies as for open().
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
    except OSError as error:
        raise _naming(error, named) from None
    try:
        _keep_attributes(target, fd)
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
            raise _naming(error, named) from None
        raise
    _sync_folder(os.path.dirname(target))


# The extended attributes that hold a file's POSIX access control lists.
_ACL_ATTRIBUTES = ("system.posix_acl_access",)


def _keep_attributes(target: str, fd: int) -> None:
    """Give the new file ``fd`` the mode, group and ACLs of the file it replaces, if any."""
    try:
        old = os.stat(target)
    except FileNotFoundError:
        return
    os.fchmod(fd, stat.S_IMODE(old.st_mode))
    with contextlib.suppress(PermissionError):  # only a member of the group may set it
        os.fchown(fd, -1, old.st_gid)
    for name in _ACL_ATTRIBUTES:
        # Not every file system or platform has them.
        with contextlib.suppress(OSError, AttributeError):
            os.setxattr(fd, name, os.getxattr(target, name))


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
