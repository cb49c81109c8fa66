"""Holds one file open and does what it is told, one command per line on stdin, one answer line on
stdout ("ok ..." or "error ERRNO"). OpenUnlinkedIT drives it.

  open PATH     create PATH (O_RDWR|O_CREAT|O_EXCL) and keep the fd
  write MIB     append MIB MiB of random bytes through the fd
  fsync         fsync the fd
  unlink PATH   unlink a path (usually the open file's)
  fstat         "ok nlink=N size=S"
  verify        read the whole file back through the fd: "ok" when it is exactly what was written
  close         close the fd
"""
import errno
import hashlib
import os
import sys

fd = None
digest = hashlib.sha256()
size = 0


def handle(cmd, arg):
    global fd, size
    if cmd == "open":
        fd = os.open(arg, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        return "ok"
    if cmd == "write":
        for _ in range(int(arg)):
            data = os.urandom(1 << 20)
            written = 0
            while written < len(data):
                written += os.pwrite(fd, data[written:], size + written)
            digest.update(data)
            size += len(data)
        return f"ok size={size}"
    if cmd == "fsync":
        os.fsync(fd)
        return "ok"
    if cmd == "unlink":
        os.unlink(arg)
        return "ok"
    if cmd == "fstat":
        st = os.fstat(fd)
        return f"ok nlink={st.st_nlink} size={st.st_size}"
    if cmd == "verify":
        h = hashlib.sha256()
        pos = 0
        while True:
            chunk = os.pread(fd, 1 << 20, pos)
            if not chunk:
                break
            h.update(chunk)
            pos += len(chunk)
        if pos == size and h.hexdigest() == digest.hexdigest():
            return "ok"
        return f"mismatch: read {pos} bytes, wrote {size}"
    if cmd == "close":
        os.close(fd)
        fd = None
        return "ok"
    return f"unknown command {cmd}"


for line in sys.stdin:
    cmd, _, arg = line.strip().partition(" ")
    try:
        answer = handle(cmd, arg)
    except OSError as e:
        answer = "error " + errno.errorcode.get(e.errno, str(e.errno))
    print(answer, flush=True)
