"""Fills the filesystem in the current directory until it fails, and says how it failed.

Usage: python3 -c "$(cat fill.py)" blocks PREFIX | inodes PREFIX

  blocks  writes files PREFIX0, PREFIX1, ... of up to 4 MiB of random bytes in 64 KiB writes until a
          write fails. Prints "file NAME SIZE SHA256" for every file (what was accepted, short writes
          included), then "write -> ERRNO" for the failure and "close -> ..." for that file.
  inodes  creates empty files PREFIX0, PREFIX1, ... until the creation fails. Prints
          "created N", "create -> ERRNO", then what mkdir and symlink do on the full filesystem.

The filesystem size bounds the work: if no error comes after twice its size (or its inode count),
the last line says "write -> NO ERROR" ("create -> NO ERROR").
"""
import errno
import hashlib
import os
import sys

CHUNK = 64 << 10
FILE_SIZE = 4 << 20


def name(e):
    return errno.errorcode.get(e.errno, str(e.errno))


def attempt(label, fn):
    try:
        fn()
        result = "OK"
    except OSError as e:
        result = name(e)
    print(f"{label} -> {result}", flush=True)


def fill_blocks(prefix):
    st = os.statvfs(".")
    limit = 2 * st.f_blocks * st.f_frsize
    total = 0
    i = 0
    while total < limit:
        path = f"{prefix}{i}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        digest = hashlib.sha256()
        size = 0
        failure = None
        while size < FILE_SIZE and failure is None:
            data = os.urandom(CHUNK)
            while data:
                try:
                    n = os.write(fd, data)
                except OSError as e:
                    failure = e
                    break
                digest.update(data[:n])
                size += n
                data = data[n:]
        try:
            os.close(fd)
            closed = "OK"
        except OSError as e:
            closed = name(e)
        total += size
        print(f"file {path} {size} {digest.hexdigest()}", flush=True)
        if failure is not None:
            print(f"write -> {name(failure)}", flush=True)
            print(f"close -> {closed}", flush=True)
            return
        i += 1
    print("write -> NO ERROR", flush=True)


def fill_inodes(prefix):
    limit = 2 * os.statvfs(".").f_files
    created = 0
    while created < limit:
        try:
            os.close(os.open(f"{prefix}{created}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        except OSError as e:
            print(f"created {created}", flush=True)
            print(f"create -> {name(e)}", flush=True)
            attempt("mkdir", lambda: os.mkdir(f"{prefix}dir"))
            attempt("symlink", lambda: os.symlink("target", f"{prefix}sym"))
            attempt("mkfifo", lambda: os.mkfifo(f"{prefix}fifo"))
            return
        created += 1
    print(f"created {created}", flush=True)
    print("create -> NO ERROR", flush=True)


{"blocks": fill_blocks, "inodes": fill_inodes}[sys.argv[1]](sys.argv[2])
