"""Writers for ResizeIT: files of seeded pseudo-random content whose SHA-256 the test knows.

Usage: python3 -c "$(cat resize.py)" COMMAND ARGS...

  ring DIR STOP SEED FILES SIZE  creates DIR and writes the files DIR/w0 .. DIR/w{FILES-1} of SIZE
                                 bytes each, then starts over at w0 (replacing the file's content
                                 with new bytes), so the space used stays bounded however long it
                                 runs. Each file is written in 64 KiB writes, fsynced and closed, then
                                 "wrote NAME SHA256" is printed (the last line for a name is its
                                 content). Between files it stops once the file STOP exists (a path
                                 outside the mount) and prints "done COUNT". Any error: "error ..." and
                                 exit 1.
  write FILE SIZE SEED           writes one file of SIZE bytes in 1 MiB writes, fsyncs it, prints
                                 "wrote FILE SHA256".
"""
import hashlib
import os
import random
import sys

CHUNK = 64 << 10


def write_file(path, size, seed, chunk):
    rng = random.Random(seed)
    digest = hashlib.sha256()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        left = size
        while left > 0:
            data = rng.randbytes(min(chunk, left))
            view = memoryview(data)
            while view:
                n = os.write(fd, view)
                view = view[n:]
            digest.update(data)
            left -= len(data)
        os.fsync(fd)
    finally:
        os.close(fd)
    return digest.hexdigest()


def ring(directory, stop, seed, files, size):
    os.makedirs(directory, exist_ok=True)
    count = 0
    while not os.path.exists(stop):
        name = f"{directory}/w{count % files}"
        sha = write_file(name, size, f"{seed}-{count}", CHUNK)
        count += 1
        print(f"wrote {name} {sha}", flush=True)
    print(f"done {count}", flush=True)


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    try:
        if cmd == "ring":
            ring(args[0], args[1], args[2], int(args[3]), int(args[4]))
        elif cmd == "write":
            sha = write_file(args[0], int(args[1]), args[2], 1 << 20)
            print(f"wrote {args[0]} {sha}", flush=True)
        else:
            raise SystemExit(f"unknown command {cmd}")
    except OSError as e:
        print(f"error {e!r}", flush=True)
        sys.exit(1)


main()
