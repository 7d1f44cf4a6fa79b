"""Files that hold secrets or user data are created private (0600, folders 0700), whatever the umask.

A database, its ``-wal``/``-shm`` companions, the broker's session file and their backups
hold password hashes and session data: readable by every local user under the usual umask
022 unless created otherwise. SQLite gives ``-wal``/``-shm``/``-journal`` files the mode of
their database file, so making the database file private before SQLite opens it is enough.
"""

from __future__ import annotations

import logging
import os
import stat
import threading

__all__ = ["ensure_private_file", "make_private_dir", "prepare_private_database", "warn_if_shared"]

log = logging.getLogger("fluxon.security")

_PRIVATE_FILE = 0o600
_PRIVATE_DIR = 0o700
_warned: set[str] = set()
_warned_lock = threading.Lock()


def ensure_private_file(path: str | os.PathLike) -> bool:
    """Create ``path`` empty with mode 0600 if it does not exist; True when it was created.

    An existing file is left as it is, but a warning names it when group or others may read it
    (an operator may have chosen that; the project never does).
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), _PRIVATE_FILE)
    except FileExistsError:
        mode = os.stat(path).st_mode
        if stat.S_ISREG(mode) and mode & 0o077:
            log.warning("%s is readable by other local users (mode %o): chmod 600 it", os.fspath(path),
                        stat.S_IMODE(mode))
        return False
    try:
        os.fchmod(fd, _PRIVATE_FILE)  # the umask may have removed bits; never adds any, but be explicit
    finally:
        os.close(fd)
    return True


def make_private_dir(path: str | os.PathLike) -> None:
    """Create the folder ``path`` (and its parents) with mode 0700; an existing one is left as it is."""
    os.makedirs(path, mode=_PRIVATE_DIR, exist_ok=True)


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
                "session data; chmod 600 it (and its -wal/-shm files)", what, os.fspath(path), mode)


def prepare_private_database(path: str | os.PathLike, what: str = "database") -> None:
    """Before SQLite opens ``path``: create it 0600 when missing, warn (once) when others can read it.

    Called for every connection a worker opens, hence the once-per-path warning. In-memory
    databases and ``file:`` URIs are left alone.
    """
    text = os.fspath(path)
    if not text or text == ":memory:" or text.startswith("file:"):
        return
    if os.path.exists(text):
        warn_if_shared(text, what)
    else:
        ensure_private_file(text)
