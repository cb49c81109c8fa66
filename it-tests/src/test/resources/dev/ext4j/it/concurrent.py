"""Concurrent writers and readers for ConcurrentWritersIT.

Usage: python3 -c "$(cat concurrent.py)" COMMAND ARGS...

Blocks of the shared file are self-describing 4 KiB units: a 16-byte header (b"CWB1", block number,
generation, 0) followed by sha256(header) repeated and the header again, so a reader can tell a
whole block of any generation from a torn or misplaced one.

  init FILE BLOCKS                 writes generation 0 of every block, fsyncs; prints "ok".
  shared FILE FIRST COUNT WRITES SEED MAP
                                   WRITES random blocks of [FIRST, FIRST+COUNT), each with a single
                                   pwrite of exactly 4096 bytes at its aligned offset and the next
                                   generation; writes the final generations as "block gen" lines to
                                   MAP (outside the mount); prints "ok WRITES".
  private FILE SIZE WRITES SEED    WRITES random writes (1 byte to 64 KiB, random offsets below SIZE)
                                   to a file of its own; prints "sha256 HEX SIZE" of what it wrote.
  reader FILE BLOCKS STOP          reads FILE with O_DIRECT (the driver, not the kernel's page cache)
                                   in 128 KiB reads, over and over until the file STOP exists; every
                                   block must be whole (some generation of that very block) and no
                                   block's generation may go back; prints "TORN ...", "MISPLACED ...",
                                   "BACKWARDS ..." per problem and "ok passes=P newer=N" at the end.
  verify FILE MAP...               every block has the generation the MAPs say (0 when absent);
                                   prints "ok BLOCKS" or the first problems.
"""
import hashlib
import mmap
import os
import random
import struct
import sys

BS = 4096
MAGIC = b"CWB1"


def block(n, gen):
    header = MAGIC + struct.pack("<III", n, gen, 0)
    return header + hashlib.sha256(header).digest() * 127 + header


def parse(data):
    """(block, gen) if data is a whole block of some generation, else None."""
    if data[:4] != MAGIC:
        return None
    n, gen, _ = struct.unpack("<III", data[4:16])
    return (n, gen) if data == block(n, gen) else None


def init(path, blocks):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        for b in range(blocks):
            os.pwrite(fd, block(b, 0), b * BS)
        os.fsync(fd)
    finally:
        os.close(fd)
    print("ok")


def shared(path, first, count, writes, seed, map_path):
    r = random.Random(seed)
    gens = {}
    fd = os.open(path, os.O_WRONLY)
    try:
        for _ in range(writes):
            b = first + r.randrange(count)
            g = gens.get(b, 0) + 1
            data = block(b, g)
            n = os.pwrite(fd, data, b * BS)
            if n != BS:
                print(f"SHORT block {b} wrote {n}")
                sys.exit(1)
            gens[b] = g
    finally:
        os.close(fd)
    with open(map_path, "w") as f:
        for b in sorted(gens):
            f.write(f"{b} {gens[b]}\n")
    print(f"ok {writes}")


def private(path, size, writes, seed):
    r = random.Random(seed)
    model = bytearray()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        for _ in range(writes):
            n = r.choice([1, r.randrange(1, 4096), r.randrange(1, 65536), 4096, 65536])
            off = r.randrange(0, size - n)
            data = r.randbytes(n)
            done = 0
            while done < n:
                done += os.pwrite(fd, data[done:], off + done)
            if len(model) < off + n:
                model.extend(bytes(off + n - len(model)))
            model[off:off + n] = data
    finally:
        os.close(fd)
    print(f"sha256 {hashlib.sha256(model).hexdigest()} {len(model)}")


def reader(path, blocks, stop):
    fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
    buf = mmap.mmap(-1, 128 << 10)
    seen = [0] * blocks
    passes = 0
    newer = 0
    problems = 0
    try:
        while True:
            last = os.path.exists(stop)
            off = 0
            end = blocks * BS
            while off < end:
                want = min(len(buf), end - off)
                n = os.preadv(fd, [memoryview(buf)[:want]], off)
                if n != want:
                    print(f"SHORT read at {off}: {n} of {want}")
                    problems += 1
                    if n <= 0:
                        break
                data = bytes(buf[:n])
                for k in range(0, n - n % BS, BS):
                    b = (off + k) // BS
                    got = parse(data[k:k + BS])
                    if got is None:
                        print(f"TORN block {b} pass {passes}: starts {data[k:k + 16].hex()}")
                        problems += 1
                    elif got[0] != b:
                        print(f"MISPLACED block {b} holds block {got[0]} gen {got[1]}")
                        problems += 1
                    elif got[1] < seen[b]:
                        print(f"BACKWARDS block {b}: gen {got[1]} after gen {seen[b]}")
                        problems += 1
                    else:
                        if got[1] > seen[b]:
                            newer += 1
                        seen[b] = got[1]
                    if problems > 20:
                        sys.exit(1)
                off += n
            passes += 1
            if last:
                break
    finally:
        os.close(fd)
    print(f"ok passes={passes} newer={newer}")
    sys.exit(1 if problems else 0)


def verify(path, maps):
    final = {}
    for m in maps:
        with open(m) as f:
            for line in f:
                b, g = line.split()
                final[int(b)] = int(g)
    problems = 0
    with open(path, "rb") as f:
        data = f.read()
    blocks = len(data) // BS
    for b in range(blocks):
        got = parse(data[b * BS:(b + 1) * BS])
        want = (b, final.get(b, 0))
        if got != want:
            print(f"WRONG block {b}: {got} (want {want})")
            problems += 1
            if problems > 20:
                break
    if problems:
        sys.exit(1)
    print(f"ok {blocks}")


def main():
    a = sys.argv[1:]
    if a[0] == "init":
        init(a[1], int(a[2]))
    elif a[0] == "shared":
        shared(a[1], int(a[2]), int(a[3]), int(a[4]), int(a[5]), a[6])
    elif a[0] == "private":
        private(a[1], int(a[2]), int(a[3]), int(a[4]))
    elif a[0] == "reader":
        reader(a[1], int(a[2]), a[3])
    elif a[0] == "verify":
        verify(a[1], a[2:])
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)


main()
