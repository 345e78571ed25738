"""Writes that never destroy: the one write primitive of nsiter and the check that predicts it.

Every file nsiter or its experiments write goes through :func:`atomic_write` (or :func:`atomic_write_csv`),
and every command that takes ``--out`` calls :func:`check_writable` with the same rules before its work:

* A symbolic link is followed to its final target (``os.path.realpath``): the target is written and the
  link stays a link.  A dangling link creates its target (as the shell's ``>`` does).
* A regular file, or a new name, is written atomically: a temporary file in the *target's* folder, written,
  ``fsync``-ed, then ``os.replace``-d over the target (POSIX ``rename(2)`` is atomic), so a reader sees the
  old or the new content and never half a file; the temporary file is removed whatever happens.  An existing
  file keeps its permission bits and, when root writes it, its owner (a new one gets 0644); a read-only one
  is refused, not replaced.  A hard link to the target keeps the old content (the new content is a new
  inode).
* A character device (``/dev/null``, a terminal, ``/dev/stdout``) or a FIFO (a named pipe, the shell's
  ``>(cmd)``) is written in place and never replaced.  It is opened non-blocking, so a FIFO without a reader
  is refused at once instead of hanging; the data is then written blocking, as to any pipe.
* A directory, a block device (a disk: a CSV never overwrites one) and a socket are refused.
* Every failure is one :class:`WriteError` (both an ``OSError`` and a ``ValueError``) whose message names
  the user's path, never the temporary file, and the cause, e.g.
  ``cannot write 'out.csv': no space left on device``.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import io
import os
import stat
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from nsiter.checks import short_repr

__all__ = ["WriteError", "atomic_write", "atomic_write_csv", "check_writable"]

NEW_FILE_MODE = 0o644  # mkstemp creates 0600; results are ordinary shared files
ECHO_CHARS = 200  # a path is echoed up to this many characters (a 5000-character name is cut)


class WriteError(OSError, ValueError):
    """A file could not be written: ``WriteError(errno, cause, path)``, printed as one line naming both.

    An ``OSError`` (``errno``, ``strerror`` = the cause, ``filename`` = the user's path), so code that
    tolerates a failed write (a cache) catches it as one; a ``ValueError``, so the command line reports it
    as bad input: one line, exit status 2.  (The standard library's ``io.UnsupportedOperation`` is both too.)
    """

    def __str__(self) -> str:
        return f"cannot write {short_repr(self.filename, ECHO_CHARS)}: {self.strerror}"


def _cause(err: OSError) -> str:
    """The reason of an ``OSError`` in lower case: ``"no space left on device"``."""
    text = os.strerror(err.errno) if err.errno else (err.strerror or type(err).__name__)
    return text[:1].lower() + text[1:]


def _error(path: str, cause: OSError | str, code: int | None = None) -> WriteError:
    if isinstance(cause, OSError):
        code, cause = cause.errno, _cause(cause)
    return WriteError(code, cause, path)


def _folder_error(path: str, folder: str, err: OSError) -> WriteError:
    """A failure to create a file in ``folder``: permissions and read-only file systems say which folder."""
    where = short_repr(folder, ECHO_CHARS)
    if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return _error(path, f"folder {where} is not writable ({_cause(err)})", err.errno)
    if err.errno == errno.ENOENT:  # /proc and /sys: the folder exists but takes no new files
        return _error(path, f"folder {where} does not accept new files ({_cause(err)})", err.errno)
    return _error(path, err)


def _check_names(path: str, name: str) -> None:
    """Refuse a component or a path longer than the limits of the file system that would hold it."""
    probe = os.path.dirname(os.path.abspath(name)) or os.sep
    while not os.path.isdir(probe) and os.path.dirname(probe) != probe:
        probe = os.path.dirname(probe)
    try:
        name_max = os.pathconf(probe, "PC_NAME_MAX")
        path_max = os.pathconf(probe, "PC_PATH_MAX")
    except (OSError, ValueError):
        name_max, path_max = 255, 4096  # Linux and macOS
    for part in Path(name).parts:
        size = len(os.fsencode(part))
        if size > name_max:
            raise _error(
                path, f"file name too long ({size} bytes; the limit is {name_max})", errno.ENAMETOOLONG
            )
    size = len(os.fsencode(os.path.abspath(name)))
    if size >= path_max:
        raise _error(path, f"path too long ({size} bytes; the limit is {path_max - 1})", errno.ENAMETOOLONG)


def _existing_folder(path: str, folder: str, *, parents: bool) -> str:
    """The folder that will receive the temporary file, or its deepest existing ancestor when ``parents``
    creates the rest; refuses a missing folder (without ``parents``) and an ancestor that is a file, by name."""
    probe, missing = folder, None
    while not os.path.lexists(probe) and os.path.dirname(probe) != probe:
        probe, missing = os.path.dirname(probe), probe
    if not os.path.isdir(probe):
        raise _error(path, f"{short_repr(probe, ECHO_CHARS)} is not a folder", errno.ENOTDIR)
    if missing is not None and not parents:
        raise _error(path, f"folder {short_repr(missing, ECHO_CHARS)} does not exist", errno.ENOENT)
    return probe


class _Plan(NamedTuple):
    """How a path is written: ``in_place`` (a character device or FIFO), else replaced: ``target`` is the
    final target of any links, ``folder`` the existing folder that will receive the temporary file (or its
    deepest existing ancestor, with ``parents``), ``old`` the replaced file's status (None: a new file),
    whose permission bits and owner the new content keeps."""

    in_place: bool
    target: str
    folder: str
    old: os.stat_result | None


def _name(path: str | Path) -> str:
    """The path as a string; a string ending in a separator names a folder (``Path`` would drop it)."""
    try:
        name = os.fspath(path)
    except TypeError:
        name = None
    if not isinstance(name, str) or not name:
        raise _error(str(path), "expected a non-empty path (str or os.PathLike)", errno.EINVAL)
    if name.endswith(os.sep) and not os.path.isdir(name):
        raise _error(name, "a path ending in a separator names a folder, not a file", errno.EISDIR)
    return name


def _plan(path: str, parents: bool) -> _Plan:
    """Decide how ``path`` is written; raise :class:`WriteError` for what is refused: a directory, a block
    device, a socket, a link loop, a read-only file, a missing folder (without ``parents``), a long name."""
    _check_names(path, path)
    try:
        st = os.stat(path)  # follows links, the /proc/self/fd ones of /dev/stdout and >(cmd) too
    except (FileNotFoundError, NotADirectoryError):  # new, a dangling link, or an ancestor is a file
        st = None
    except OSError as err:  # ELOOP, EACCES on a folder on the way
        raise _error(path, err) from err
    if st is not None:
        kind = st.st_mode
        if stat.S_ISDIR(kind):
            raise _error(path, "it is a directory", errno.EISDIR)
        if stat.S_ISCHR(kind) or stat.S_ISFIFO(kind):
            return _Plan(True, path, "", None)
        if stat.S_ISBLK(kind):
            raise _error(path, "it is a block device (a disk): refused, never overwritten", errno.EINVAL)
        if stat.S_ISSOCK(kind):
            raise _error(path, "it is a socket", errno.EINVAL)
        if not stat.S_ISREG(kind):
            raise _error(path, "it is not a regular file", errno.EINVAL)
    target = os.path.realpath(path)
    if target != os.path.abspath(path):
        _check_names(path, target)  # a link may point at a longer name
    folder = _existing_folder(path, os.path.dirname(target), parents=parents)
    try:  # os.access below would call a read-only file system a permission problem
        read_only = bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except OSError:
        read_only = False
    if read_only:
        raise _folder_error(path, folder, OSError(errno.EROFS, os.strerror(errno.EROFS)))
    if st is None:
        return _Plan(False, target, folder, None)
    if not os.access(target, os.W_OK):
        raise _error(path, "the file is read-only (permission denied)", errno.EACCES)
    return _Plan(False, target, folder, st)


def check_writable(path: str | Path, *, parents: bool = False) -> Path:
    """Raise :class:`WriteError` (a ``ValueError`` naming ``path``) unless :func:`atomic_write` with the same
    ``parents`` would be allowed to write ``path``: called before the work that fills the file.

    The rules are the write's (see the module): links are followed, directories, block devices and sockets
    are refused, a missing folder is named (unless ``parents``), names are within the file system's limits,
    and the folder that will receive the temporary file is probed by creating and removing an empty file in
    it (``os.access`` cannot see every refusal: ``/proc`` refuses new files even to root).  A character
    device or FIFO is checked for write permission only; it is never opened here (closing a FIFO's only
    writer would end its reader).  A full disk is only found by the write itself.

    Returns ``path`` as a ``Path``.
    """
    name = _name(path)
    path = Path(name)
    plan = _plan(name, parents)
    if plan.in_place:
        if not os.access(name, os.W_OK):
            raise _error(name, "permission denied", errno.EACCES)
        return path
    try:
        fd, probe = tempfile.mkstemp(dir=plan.folder, prefix=".nsiter-probe.", suffix=".tmp")
    except OSError as err:
        raise _folder_error(name, plan.folder, err) from err
    os.close(fd)
    os.unlink(probe)
    return path


def _write_in_place(path: str, raw: bytes) -> None:
    """Write ``raw`` into a character device or FIFO without replacing it (no hang without a reader)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as err:
        if err.errno == errno.ENXIO:
            raise _error(path, "it is a FIFO with no reader", errno.ENXIO) from err
        raise _error(path, err) from err
    try:
        if stat.S_ISREG(os.fstat(fd).st_mode):  # replaced by a file since it was looked at: never overwrite
            raise _error(path, "it became a regular file during the write", errno.EAGAIN)
        os.set_blocking(fd, True)
        view = memoryview(raw)
        while view:
            view = view[os.write(fd, view) :]
    except WriteError:
        raise
    except OSError as err:
        raise _error(path, err) from err
    finally:
        os.close(fd)


def atomic_write(path: str | Path, data: str | bytes, *, parents: bool = False) -> Path:
    """Write ``data`` to ``path`` without ever destroying what is there (``parents``: create missing folders).

    A regular file (or a new name) is replaced atomically: a temporary file with a unique name (so
    concurrent writers never share one) in the folder of the link's final target, ``fsync``-ed, then
    renamed over the target, and the folder ``fsync``-ed so the rename survives a crash.  A character
    device or FIFO is written in place.  Everything else, and every failure (no space, I/O error, read-only
    file system, permission), raises :class:`WriteError` naming ``path``; the temporary file is removed.

    Returns ``path`` as given (a link stays the name returned).
    """
    name = _name(path)
    path = Path(name)
    raw = data.encode() if isinstance(data, str) else bytes(data)
    plan = _plan(name, parents)
    if plan.in_place:
        _write_in_place(name, raw)
        return path
    target, old = plan.target, plan.old
    folder = os.path.dirname(target)
    if folder != plan.folder:  # parents: create the missing folders
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as err:
            raise _folder_error(name, plan.folder, err) from err
    base = os.path.basename(target)
    try:  # the prefix is cut so that a name near the length limit still has a temporary sibling
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{base[:32]}.", suffix=".tmp")
    except OSError as err:
        raise _folder_error(name, folder, err) from err
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), NEW_FILE_MODE if old is None else stat.S_IMODE(old.st_mode))
            if old is not None and (old.st_uid, old.st_gid) != (os.geteuid(), os.getegid()):
                with contextlib.suppress(OSError):  # root keeps the owner; others cannot give a file away
                    os.fchown(fh.fileno(), old.st_uid, old.st_gid)
            fh.write(raw)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException as err:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(err, OSError):
            raise _error(name, err) from err
        raise
    with contextlib.suppress(OSError):  # not every file system can fsync a folder
        dirfd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dirfd)
        finally:
            os.close(dirfd)
    return path


def atomic_write_csv(
    path: str | Path, fieldnames: Sequence[str], rows: Iterable[Mapping[str, Any]], *, parents: bool = False
) -> Path:
    """Write ``rows`` as CSV with a header (``csv.DictWriter``: floats with ``repr`` precision) through
    :func:`atomic_write`."""
    buf = io.StringIO(newline="")
    writer = csv.DictWriter(buf, fieldnames=list(fieldnames))
    writer.writeheader()
    writer.writerows(rows)
    return atomic_write(path, buf.getvalue(), parents=parents)
