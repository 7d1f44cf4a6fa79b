"""Files only their owner can read: databases, their WAL/SHM, backups, session files.

A SQLite database holds password hashes and session data; created under the usual umask
(022) it is readable by every local user. SQLite creates a database's ``-wal``, ``-shm``
and journal files with the permissions of the database file itself, so creating the
database file 0600 before SQLite opens it makes all of them private, whatever the umask.

Example::

    >>> prepare_private_database("app.sqlite3")   # created 0600 if missing, warned if others can read it
    >>> sqlite3.connect("app.sqlite3")
"""

from __future__ import annotations

import logging
import os
import stat
import threading

__all__ = ["create_private_file", "prepare_private_database", "warn_if_shared"]

log = logging.getLogger("fluxon.security")

_PRIVATE_MODE = 0o600
_warned: set[str] = set()
_warned_lock = threading.Lock()


def create_private_file(path: str | os.PathLike) -> bool:
    """Create ``path`` empty with mode 0600 unless it exists; True when this call created it.

    The mode is set with ``fchmod`` as well: the umask can only remove bits, and this
    way the result does not depend on it. A symlink at ``path`` is not followed.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), _PRIVATE_MODE)
    except FileExistsError:
        return False
    try:
        os.fchmod(fd, _PRIVATE_MODE)
    finally:
        os.close(fd)
    return True


def warn_if_shared(path: str | os.PathLike, what: str) -> None:
    """Log a warning (once per path and process) when group or others may read or write ``path``."""
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return
    if not mode & 0o077:
        return
    key = os.path.abspath(path)
    with _warned_lock:
        if key in _warned:
            return
        _warned.add(key)
    log.warning("%s %s is accessible by group or others (mode %o): it may hold password hashes and "
                "session data; chmod 600 it (and its -wal/-shm files)", what, path, mode)


def prepare_private_database(path: str | os.PathLike, what: str = "database") -> None:
    """Before SQLite opens ``path``: create it 0600 when missing, warn when others can read it.

    In-memory databases and ``file:`` URIs are left alone.
    """
    text = os.fspath(path)
    if not text or text == ":memory:" or text.startswith("file:"):
        return
    if not create_private_file(text):
        warn_if_shared(text, what)
