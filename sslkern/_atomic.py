"""Writes that never leave half a file: write a temporary file in the target's folder, fsync
it, then rename it over the target (os.replace is atomic on POSIX and Windows)."""
import contextlib
import os
import tempfile


def _read_umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _read_umask()


@contextlib.contextmanager
def atomic_write(path, mode="wb", make_folder=True):
    """`with atomic_write(path) as f: ...` — `path` appears complete or not at all. The folder
    is created when missing, unless make_folder=False (then a missing folder is an OSError)."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if make_folder:
        os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file open()'s usual mode
        text = {} if "b" in mode else {"encoding": "utf-8"}  # not the locale's: files hold λ, ε
        with os.fdopen(fd, mode, **text) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_folder(folder)


def _fsync_folder(folder):
    # Makes the rename itself durable; not possible on every platform (e.g. Windows).
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
