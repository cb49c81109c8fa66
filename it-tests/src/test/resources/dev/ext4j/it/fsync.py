"""fsync, fdatasync and directory fsync in the current directory, one line per call:
"label -> OK" or "label -> ERRNO". Writes "data" (8 MiB of random bytes) and prints
"data sha256=... blocks=..." (st_blocks, 512-byte units) at the end.

Usage: python3 -c "$(cat fsync.py)"
"""
import errno
import hashlib
import os


def attempt(label, fn):
    try:
        fn()
        result = "OK"
    except OSError as e:
        result = errno.errorcode.get(e.errno, str(e.errno))
    print(f"{label} -> {result}", flush=True)


digest = hashlib.sha256()
os.mkdir("sub")
fd = os.open("data", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
for _ in range(8):
    chunk = os.urandom(1 << 20)
    os.write(fd, chunk)
    digest.update(chunk)
attempt("fsync a file", lambda: os.fsync(fd))
attempt("fdatasync a file", lambda: os.fdatasync(fd))
attempt("fsync a file again with nothing new", lambda: os.fsync(fd))
attempt("close a file", lambda: os.close(fd))

rfd = os.open("data", os.O_RDONLY)
attempt("fsync a read-only fd", lambda: os.fsync(rfd))
os.close(rfd)

for d in [".", "sub"]:
    dfd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    attempt(f"fsync a directory fd ({d})", lambda: os.fsync(dfd))
    attempt(f"fdatasync a directory fd ({d})", lambda: os.fdatasync(dfd))
    os.close(dfd)

attempt("sync", os.sync)
st = os.stat("data")
print(f"data sha256={digest.hexdigest()} blocks={st.st_blocks} size={st.st_size}", flush=True)
