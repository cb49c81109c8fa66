"""Stale-data crash test helper: fills free space with a marker, writes new files, scans for the marker.

Usage: python3 -c "$(cat stale.py)" fill | write SEED | scan SEED      (in the directory to work in)

  fill        writes files fillN of up to 8 MiB made of the 16-byte marker "STALE-MARKER-NN\\n"
              (NN = N % 100) in 1 MiB writes until a write fails with ENOSPC, fsyncs and closes each,
              and prints "filled BYTES FILES". Any other error is printed and exits 1.
  write SEED  writes the new files the seed describes (sizes from one byte to MiBs, partial blocks,
              holes, files extended by ftruncate, preallocated with posix_fallocate), with no fsync.
              Prints "wrote NAME" after each file and "done" at the end. An error (the server was
              killed under it) is printed as "error NAME ERRNO" and ends the writing with exit 0.
  scan SEED   reads every regular file below the current directory and prints a line per problem:
                STALE NAME OFFSET        the marker appears in the file
                FOREIGN NAME OFFSET      a byte that is neither the one the writer wrote there nor 0
                                         (data from somewhere else: another file, old blocks)
                ERROR NAME ERRNO         the file cannot be read
              then "scanned FILES BYTES". A file the writer makes may be missing, shorter or
              longer than written (a crash loses work), but whatever it holds must be its own data
              or zeros.
"""
import errno
import os
import random
import sys

MARKER_PREFIX = b"STALE-MARKER-"
FILL_FILE = 8 << 20
CHUNK = 1 << 20


def ename(e):
    return errno.errorcode.get(e.errno, str(e.errno))


def marker(n):
    m = b"STALE-MARKER-%02d\n" % (n % 100)
    assert len(m) == 16
    return m


def fill():
    total = 0
    n = 0
    while True:
        name = f"fill{n}"
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        block = marker(n) * (CHUNK // 16)
        size = 0
        full = False
        try:
            while size < FILL_FILE:
                try:
                    w = os.write(fd, block)
                except OSError as e:
                    if e.errno == errno.ENOSPC:
                        full = True
                        break
                    raise
                size += w
                if w < len(block):
                    full = True
                    break
            try:
                os.fsync(fd)
            except OSError as e:
                if e.errno != errno.ENOSPC:
                    raise
        finally:
            os.close(fd)
        total += size
        n += 1
        if full:
            break
    print(f"filled {total} {n}", flush=True)


def plan(seed):
    """The files to write: (name, [operations]); an operation is ("w", off, len), ("t", size) or ("f", off, len)."""
    r = random.Random(seed)
    files = []
    # plain sizes, several of them ending inside a block
    for i, size in enumerate([1, 100, 4095, 4097, 12288, 65536 + 123, (1 << 20) + 7, 3 << 20]):
        ops = []
        off = 0
        while off < size:
            n = min(size - off, r.choice([1000, 4096, 65536, 131072, 1 << 20]))
            ops.append(("w", off, n))
            off += n
        files.append((f"plain{i}", ops))
    # holes: disjoint writes at random places in random order
    for i in range(3):
        span = r.choice([256 << 10, 2 << 20, 6 << 20])
        pieces = []
        pos = r.randrange(0, 20000)
        while pos < span:
            n = r.randrange(1, 40000)
            pieces.append(("w", pos, n))
            pos += n + r.randrange(1, 300000)
        r.shuffle(pieces)
        files.append((f"holes{i}", pieces))
    # written in part, then extended by ftruncate (unaligned), then written past the old end
    for i in range(3):
        first = r.randrange(1, 50000)
        grown = first + r.randrange(1, 3 << 20)
        ops = [("w", 0, first), ("t", grown)]
        if i > 0:
            ops.append(("w", grown + r.randrange(0, 9000), r.randrange(1, 20000)))
        files.append((f"extended{i}", ops))
    # partial blocks in the middle of nowhere
    files.append(("middle", [("w", 5000, 100), ("w", 70000, 1), ("w", 1 << 20, 4096 - 17)]))
    # preallocated (posix_fallocate: mode 0, unwritten extents) and written in part
    for i in range(2):
        size = r.choice([1 << 20, 3 << 20])
        ops = [("f", 0, size)]
        for _ in range(5):
            ops.append(("w", r.randrange(0, size - 10000), r.randrange(1, 10000)))
        files.append((f"prealloc{i}", ops))
    return files


def expected(seed):
    """name -> bytearray of what the writer puts in the file (0 where it writes nothing)."""
    out = {}
    for idx, (name, ops) in enumerate(plan(seed)):
        data = bytearray()
        for op in ops:
            if op[0] == "w":
                _, off, n = op
                chunk = content(seed, idx, off, n)
                # the plan's writes never overlap, so a byte has one value or is 0
                if len(data) < off + n:
                    data.extend(bytes(off + n - len(data)))
                data[off:off + n] = chunk
            elif op[0] == "t":
                if len(data) < op[1]:
                    data.extend(bytes(op[1] - len(data)))
            elif op[0] == "f":
                if len(data) < op[1] + op[2]:
                    data.extend(bytes(op[1] + op[2] - len(data)))
        out[name] = data
    return out


def content(seed, idx, off, n):
    r = random.Random(seed * 1_000_003 + idx * 7919 + off)
    return r.randbytes(n)


def write(seed):
    for idx, (name, ops) in enumerate(plan(seed)):
        try:
            fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                for op in ops:
                    if op[0] == "w":
                        _, off, n = op
                        data = content(seed, idx, off, n)
                        done = 0
                        while done < n:
                            done += os.pwrite(fd, data[done:], off + done)
                    elif op[0] == "t":
                        os.ftruncate(fd, op[1])
                    elif op[0] == "f":
                        os.posix_fallocate(fd, op[1], op[2])
            finally:
                os.close(fd)
        except OSError as e:
            print(f"error {name} {ename(e)}", flush=True)
            return
        print(f"wrote {name}", flush=True)
    print("done", flush=True)


def scan(seed):
    want = expected(seed)
    files = 0
    total = 0
    for root, dirs, names in os.walk("."):
        dirs.sort()
        for name in sorted(names):
            path = os.path.join(root, name)
            rel = os.path.relpath(path, ".")
            try:
                if not os.path.isfile(path) or os.path.islink(path):
                    continue
                with open(path, "rb") as f:
                    data = f.read()
            except OSError as e:
                print(f"ERROR {rel} {ename(e)}", flush=True)
                continue
            files += 1
            total += len(data)
            at = data.find(MARKER_PREFIX)
            if at >= 0:
                print(f"STALE {rel} {at}", flush=True)
            exp = want.get(rel)
            if exp is None:
                if rel != "lost+found" and not rel.startswith("lost+found/"):
                    print(f"UNKNOWN {rel} {len(data)}", flush=True)
                continue
            bad = foreign(data, exp)
            if bad >= 0:
                print(f"FOREIGN {rel} {bad}", flush=True)
    print(f"scanned {files} {total}", flush=True)


def foreign(data, exp):
    """First offset where data holds neither exp's byte nor 0, or -1."""
    step = 4096
    for start in range(0, len(data), step):
        got = data[start:start + step]
        if got == exp[start:start + len(got)] and len(exp) >= start + len(got):
            continue
        if got.count(0) == len(got):
            continue
        for k, b in enumerate(got):
            e = exp[start + k] if start + k < len(exp) else 0
            if b != 0 and b != e:
                return start + k
    return -1


def main():
    cmd = sys.argv[1]
    if cmd == "fill":
        fill()
    elif cmd == "write":
        write(int(sys.argv[2]))
    elif cmd == "scan":
        scan(int(sys.argv[2]))
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)


main()
