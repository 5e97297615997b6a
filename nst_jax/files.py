"""[I/O] Safe file writes: atomic, never replacing unless asked, names claimed atomically.

Every file nst_jax writes goes through :func:`write_bytes` (or :func:`atomic_path` for
writers that need a path, such as h5py):

- The data goes to a short temp name in the destination folder (``.nst-XXXXXXXX.tmp``,
  so a 250-byte destination name never makes a temp name over the file system's limit)
  and reaches its final name in one step, so nobody ever sees half a file.
- Without ``overwrite`` the final step is ``os.link(tmp, dest)``, which fails if
  ``dest`` exists: the check and the claim are one atomic operation, so two runs that
  pick the same name cannot both get it (no check-then-rename window). On file systems
  without hard links the name is claimed with ``O_CREAT | O_EXCL`` first.
- With ``overwrite`` it is ``os.replace``.

:func:`check_new_name` is the cheap test done *before* a long computation (exists,
name too long); :func:`numbered` and :func:`fallback_names` give the names to retry
with when the write itself fails, so a computed result is never thrown away.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

TEMP_PREFIX, TEMP_SUFFIX = ".nst-", ".tmp"


class OutputError(OSError):
    """An output file cannot be written (name too long, folder missing or unwritable...)."""

    def __str__(self) -> str:
        return self.strerror or super().__str__()


class OutputExists(OutputError, FileExistsError):
    """The output exists and replacing it was not asked for."""


def name_max(folder: str | os.PathLike) -> int:
    """The longest file name (bytes) the file system of ``folder`` allows (255 if unknown)."""
    try:
        return int(os.pathconf(folder, "PC_NAME_MAX"))
    except (OSError, ValueError, AttributeError):
        return 255


def check_new_name(path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Refuse, before any work, a name that cannot be written.

    Raises:
      OutputError: the folder does not exist or is not writable, the name is longer
        than the file system allows, or the file exists and ``overwrite`` is False.
    """
    p = Path(path)
    folder = p.parent
    if not folder.is_dir():
        raise OutputError(errno.ENOENT, f"output folder does not exist: {folder}")
    if not os.access(folder, os.W_OK):
        raise OutputError(errno.EACCES, f"output folder is not writable: {folder}")
    limit = name_max(folder)
    if len(os.fsencode(p.name)) > limit:
        raise OutputError(errno.ENAMETOOLONG, f"output name too long: {p.name[:40]}... is "
                          f"{len(os.fsencode(p.name))} bytes, the file system allows {limit}")
    if not overwrite and (p.exists() or p.is_symlink()):
        raise OutputExists(errno.EEXIST, f"{p} exists; pass --overwrite to replace it")
    return p


def _temp_in(folder: Path) -> Path:
    fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=TEMP_SUFFIX, dir=folder)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    return Path(tmp)


def _publish(tmp: Path, dest: Path, overwrite: bool) -> None:
    """Move ``tmp`` to ``dest``: replace if ``overwrite``, else fail if ``dest`` exists."""
    if overwrite:
        os.replace(tmp, dest)
        return
    try:
        os.link(tmp, dest)
    except FileExistsError:
        raise
    except OSError as e:
        if e.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK, errno.ENOSYS):
            raise
        # No hard links here: claim the name exclusively, then replace our own claim.
        os.close(os.open(dest, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
        os.replace(tmp, dest)
    else:
        tmp.unlink()


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike, *, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temp path in ``dest``'s folder; it becomes ``dest`` only if the block succeeds.

    Raises:
      FileExistsError: ``overwrite`` is False and ``dest`` exists (checked atomically).
      OSError: the write itself failed (disk full, ...); nothing is left behind.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_in(dest.parent)
    try:
        yield tmp
        _publish(tmp, dest, overwrite)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes(dest: str | os.PathLike, data: bytes, *, overwrite: bool = False) -> Path:
    """Write ``data`` to ``dest`` atomically; never replaces an existing file unless ``overwrite``."""
    with atomic_path(dest, overwrite=overwrite) as tmp:
        tmp.write_bytes(data)
    return Path(dest)


def numbered(path: str | os.PathLike, i: int) -> Path:
    """``out/x.png`` -> ``out/x-3.png`` for ``i = 3`` (``i = 0``: the path itself)."""
    p = Path(path)
    return p if i == 0 else p.with_name(f"{p.stem}-{i}{p.suffix}")


def fallback_names(path: str | os.PathLike, tries: int = 50) -> Iterator[Path]:
    """Where to put a result whose intended name failed, in order: numbered names in the
    same folder, then a short name in the temp folder."""
    p = Path(path)
    for i in range(1, tries + 1):
        yield numbered(p, i)
    yield Path(tempfile.gettempdir()) / f"nst_jax-{os.getpid()}{p.suffix}"
