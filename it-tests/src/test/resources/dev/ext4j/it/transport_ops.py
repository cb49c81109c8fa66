"""What a process sees of the FUSE transport, with a kernel ext4 mount as the oracle: one line per check,
"label -> JSON value" (the value a check returns, or the errno name when it fails; "WRONG RESULT (...)" when
a check of a result fails). TransportIT runs it as root in the root of a kernel mount and of an ext4j mount of
copies of the same new image (4 KiB blocks) and requires identical lines. Values never hold inode numbers or
times themselves, only how they relate ("same inode as before"), so two filesystems can agree.

Usage: python3 -c "$(cat transport_ops.py)" checks|race SECONDS

  checks  hard links seen at once through every name, renameat2 flags, O_TMPFILE and linkat, SEEK_DATA and
          SEEK_HOLE, copy_file_range, fallocate collapse and insert range, file handles after the caches
          are dropped, fstat of an open directory replaced by a rename; lines starting "record:" are only
          recorded (the test compares them only where the kernel fails too); the kernel's FUSE module
          refuses collapse and insert range (EOPNOTSUPP) before any server sees them
  race    processes that create, open, unlink, rename, link and stat the same few names for SECONDS
          while one holds files open; prints what went wrong (nothing, on a correct filesystem) and the
          names left (none: it removes them, and its directory, at the end)
"""
import ctypes
import errno
import hashlib
import json
import multiprocessing
import os
import random
import stat
import struct
import subprocess
import sys
import time

_libc = ctypes.CDLL(None, use_errno=True)
AT_FDCWD = -100


def _check(rc):
    if rc < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return rc


def show(label, fn):
    try:
        result = json.dumps(fn(), sort_keys=True)
    except OSError as e:
        result = errno.errorcode.get(e.errno, str(e.errno))
    except AssertionError as e:
        result = f"WRONG RESULT ({e})"
    print(f"{label} -> {result}", flush=True)


def must(condition, what):
    if not condition:
        raise AssertionError(what)


def write_file(path, data, mode=0o644):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def read_file(path):
    with open(path, "rb") as f:
        return f.read()


def sha(data):
    return hashlib.sha256(data).hexdigest()[:16]


def pattern(n, seed):
    """N bytes that differ from block to block and from seed to seed."""
    out = bytearray()
    counter = 0
    while len(out) < n:
        out += hashlib.sha256(f"{seed}:{counter}".encode()).digest()
        counter += 1
    return bytes(out[:n])


def attrs(st):
    """The attributes a name shows, without inode number or times."""
    return {"mode": oct(st.st_mode), "uid": st.st_uid, "gid": st.st_gid, "size": st.st_size, "nlink": st.st_nlink}


# ---------------------------------------------------------------------------------------------------------
# hard links: every name of an inode shows each change at once


def hard_links():
    os.mkdir("hl")
    write_file("hl/a", b"hello world\n")
    show("hl: nlink of a new file", lambda: os.stat("hl/a").st_nlink)
    os.stat("hl/a")  # the attributes of a are now cached (on FUSE, for the attribute timeout)
    show("hl: ln a b, then nlink of a and b", lambda: (os.link("hl/a", "hl/b"), os.stat("hl/a").st_nlink, os.stat("hl/b").st_nlink)[1:])

    def through_b(label, change):
        """Change the inode through b, then stat and read it through a at once: a shows what b shows."""
        def run():
            os.stat("hl/a")
            change()
            sa, sb = os.stat("hl/a"), os.stat("hl/b")
            must(sa.st_ino == sb.st_ino, "a and b are not one inode")
            same = {k: getattr(sa, k) == getattr(sb, k) for k in ("st_mode", "st_uid", "st_gid", "st_size", "st_nlink",
                                                                  "st_mtime_ns", "st_ctime_ns")}
            return {"a": attrs(sa), "a equals b": same, "content of a": read_file("hl/a").decode()}
        show(f"hl: {label} through b, stat and read a at once", run)

    through_b("chmod 0600", lambda: os.chmod("hl/b", 0o600))
    through_b("chown 1:2", lambda: os.chown("hl/b", 1, 2))
    through_b("truncate to 5", lambda: os.truncate("hl/b", 5))
    through_b("utime (1000, 2000)", lambda: os.utime("hl/b", (1000, 2000)))
    show("hl: utime through b: atime and mtime of a", lambda: (os.utime("hl/b", (3000, 4000)), os.stat("hl/a").st_atime,
                                                             os.stat("hl/a").st_mtime)[1:])
    show("hl: setxattr user.x through b, getxattr through a", lambda: (os.stat("hl/a"), os.setxattr("hl/b", "user.x", b"via b"),
                                                                     os.getxattr("hl/a", "user.x").decode())[2])
    show("hl: removexattr through b, listxattr through a", lambda: (os.removexattr("hl/b", "user.x"), os.listxattr("hl/a"))[1])

    def write_b():
        fd = os.open("hl/b", os.O_WRONLY | os.O_APPEND)
        try:
            os.write(fd, b"-appended through b")
        finally:
            os.close(fd)
    through_b("append", write_b)

    def write_while_a_open():
        fd = os.open("hl/a", os.O_RDONLY)
        try:
            before = os.fstat(fd).st_size
            write_file("hl/b", b"rewritten through b, a open\n")
            return {"size before": before, "fstat size of a's fd": os.fstat(fd).st_size, "pread of a's fd": os.pread(fd, 100, 0).decode()}
        finally:
            os.close(fd)
    show("hl: rewrite b while a is open", write_while_a_open)

    nlinks = lambda: {n: os.stat(f"hl/{n}").st_nlink for n in sorted(os.listdir("hl"))}
    show("hl: ln a c, nlinks", lambda: (os.stat("hl/a"), os.link("hl/a", "hl/c"), nlinks())[2])
    show("hl: unlink c, nlinks", lambda: (os.unlink("hl/c"), nlinks())[1])
    show("hl: rename a new file over b, nlinks and b's content",
         lambda: (os.stat("hl/a"), write_file("hl/d", b"d\n"), os.rename("hl/d", "hl/b"), nlinks(), read_file("hl/b").decode())[3:])
    show("hl: ln a e, mkdir sub, rename e to sub/e, nlink of a",
         lambda: (os.link("hl/a", "hl/e"), os.mkdir("hl/sub"), os.stat("hl/a"), os.rename("hl/e", "hl/sub/e"), os.stat("hl/a").st_nlink,
                  os.stat("hl/sub/e").st_nlink)[4:])
    show("hl: rename a to a2, nlink and content of sub/e",
         lambda: (os.stat("hl/sub/e"), os.rename("hl/a", "hl/a2"), os.stat("hl/sub/e").st_nlink, read_file("hl/sub/e").decode())[2:])
    show("hl: chmod 0640 through a2 after the rename, mode of sub/e",
         lambda: (os.chmod("hl/a2", 0o640), oct(os.stat("hl/sub/e").st_mode))[1])
    show("hl: unlink a2, nlink and content of sub/e",
         lambda: (os.unlink("hl/a2"), os.stat("hl/sub/e").st_nlink, read_file("hl/sub/e").decode())[1:])
    show("hl: ln sub/e f, nlink of sub/e", lambda: (os.link("hl/sub/e", "hl/f"), os.stat("hl/sub/e").st_nlink)[1])
    show("hl: rename sub/e over f (same inode: nothing happens), names and nlink",
         lambda: (os.rename("hl/sub/e", "hl/f"), sorted(os.listdir("hl/sub")), os.stat("hl/f").st_nlink)[1:])

    # changes the kernel does not make itself (an ioctl, an ACL's mode): seen through the other name at once
    def seen_at_once(change):
        def run():
            before = os.stat("hl/sub/e")
            change()
            after = os.stat("hl/sub/e")
            return {"ctime moved": after.st_ctime_ns != before.st_ctime_ns, "mode": oct(after.st_mode)}
        return run
    show("hl: chattr +A through f, ctime of sub/e", seen_at_once(lambda: subprocess.run(["chattr", "+A", "hl/f"], check=True)))
    show("hl: setfacl u:nobody:r-- through f, mode and ctime of sub/e",
         seen_at_once(lambda: subprocess.run(["setfacl", "-m", "u:nobody:r--", "hl/f"], check=True)))


# ---------------------------------------------------------------------------------------------------------
# renameat2

RENAME_NOREPLACE, RENAME_EXCHANGE, RENAME_WHITEOUT = 1, 2, 4
_libc.renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]


def renameat2(old, new, flags):
    _check(_libc.renameat2(AT_FDCWD, os.fsencode(old), AT_FDCWD, os.fsencode(new), flags))


def tree(path):
    """A directory's content: name -> content (files), {..} (directories), "->target" (symlinks)."""
    out = {}
    for n in sorted(os.listdir(path)):
        p = f"{path}/{n}"
        st = os.lstat(p)
        if stat.S_ISDIR(st.st_mode):
            out[n] = tree(p)
        elif stat.S_ISLNK(st.st_mode):
            out[n] = "->" + os.readlink(p)
        elif stat.S_ISREG(st.st_mode):
            out[n] = read_file(p).decode()
        else:
            out[n] = f"type {oct(stat.S_IFMT(st.st_mode))} rdev {os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"
    return out


def renames():
    os.mkdir("rn")
    write_file("rn/a", b"A\n")
    write_file("rn/b", b"B\n")
    os.mkdir("rn/d")
    show("rn: NOREPLACE a onto existing b", lambda: renameat2("rn/a", "rn/b", RENAME_NOREPLACE))
    show("rn: NOREPLACE a onto existing dir d", lambda: renameat2("rn/a", "rn/d", RENAME_NOREPLACE))
    show("rn: NOREPLACE a to missing c", lambda: renameat2("rn/a", "rn/c", RENAME_NOREPLACE))
    show("rn: after NOREPLACE", lambda: tree("rn"))
    show("rn: NOREPLACE a missing name", lambda: renameat2("rn/missing", "rn/x", RENAME_NOREPLACE))
    show("rn: NOREPLACE|EXCHANGE", lambda: renameat2("rn/b", "rn/c", RENAME_NOREPLACE | RENAME_EXCHANGE))
    show("rn: EXCHANGE with a missing target", lambda: renameat2("rn/b", "rn/missing", RENAME_EXCHANGE))
    show("rn: EXCHANGE a name with itself", lambda: renameat2("rn/b", "rn/b", RENAME_EXCHANGE))

    def exchange_files():
        ib, ic = os.stat("rn/b").st_ino, os.stat("rn/c").st_ino
        renameat2("rn/b", "rn/c", RENAME_EXCHANGE)
        return {"content": tree("rn"), "b has c's inode": os.stat("rn/b").st_ino == ic, "c has b's inode": os.stat("rn/c").st_ino == ib}
    show("rn: EXCHANGE files b and c", exchange_files)

    os.makedirs("rn/p1/d1/deep")
    os.makedirs("rn/p2/d2")
    write_file("rn/p1/d1/one", b"1\n")
    write_file("rn/p2/d2/two", b"2\n")
    write_file("rn/p2/file", b"F\n")

    def exchange_dirs():
        i1, i2 = os.stat("rn/p1/d1").st_ino, os.stat("rn/p2/d2").st_ino
        renameat2("rn/p1/d1", "rn/p2/d2", RENAME_EXCHANGE)
        return {"tree": tree("rn"), "p1/d1 was d2": os.stat("rn/p1/d1").st_ino == i2, "p2/d2 was d1": os.stat("rn/p2/d2").st_ino == i1,
                "p1/d1/..": parent_of("rn/p1/d1"), "p2/d2/..": parent_of("rn/p2/d2"), "p2/d2/deep/..": parent_of("rn/p2/d2/deep", "rn/p2/d2"),
                "nlink p1, p2, p1/d1, p2/d2": [os.stat(p).st_nlink for p in ("rn/p1", "rn/p2", "rn/p1/d1", "rn/p2/d2")]}
    show("rn: EXCHANGE dirs p1/d1 and p2/d2", exchange_dirs)

    def exchange_file_dir():
        renameat2("rn/p2/file", "rn/p1/d1", RENAME_EXCHANGE)
        return {"tree": tree("rn"), "p2/file/..": parent_of("rn/p2/file"),
                "nlink p1, p2, p2/file": [os.stat(p).st_nlink for p in ("rn/p1", "rn/p2", "rn/p2/file")],
                "type of p1/d1": oct(stat.S_IFMT(os.stat("rn/p1/d1").st_mode))}
    show("rn: EXCHANGE file p2/file and dir p1/d1 across directories", exchange_file_dir)
    show("rn: create in the exchanged dir, list it", lambda: (write_file("rn/p2/file/new", b"n\n"), sorted(os.listdir("rn/p2/file")))[1])
    show("rn: rmdir the old parent after moving everything out",
         lambda: (renameat2("rn/p2/file", "rn/p1/moved", RENAME_NOREPLACE), renameat2("rn/p2/d2", "rn/p1/d2", RENAME_NOREPLACE),
                  os.rmdir("rn/p2"), tree("rn"), os.stat("rn/p1").st_nlink)[3:])

    def whiteout():
        write_file("rn/w", b"W\n")
        renameat2("rn/w", "rn/w2", RENAME_WHITEOUT)
        return tree("rn")
    show("record: rn: WHITEOUT w to w2", whiteout)


def parent_of(path, expected=None):
    """Which directory PATH/.. is: the name of rn's child it matches, or "other". The kernel answers ".." from
    its dentry tree; the ".." entries on disk are for e2fsck, which the test runs on both images afterwards."""
    ino = os.stat(f"{path}/..").st_ino
    candidates = [expected] if expected else []
    candidates += [f"rn/{n}" for n in sorted(os.listdir("rn")) if os.path.isdir(f"rn/{n}")]
    for c in candidates:
        if os.stat(c).st_ino == ino:
            return c
    return "other"


# ---------------------------------------------------------------------------------------------------------
# O_TMPFILE


AT_SYMLINK_FOLLOW = 0x400


def link_fd(fd, name):
    """linkat(2) of /proc/self/fd/FD with AT_SYMLINK_FOLLOW (os.link() calls link(2), which does not follow)."""
    _check(_libc.linkat(AT_FDCWD, os.fsencode(f"/proc/self/fd/{fd}"), AT_FDCWD, os.fsencode(name), AT_SYMLINK_FOLLOW))


def tmpfiles():
    os.mkdir("tmp", 0o755)

    def link_tmpfile():
        fd = os.open("tmp", os.O_TMPFILE | os.O_RDWR, 0o640)
        try:
            os.write(fd, b"written before it had a name\n")
            st = os.fstat(fd)
            before = {"nlink": st.st_nlink, "mode": oct(st.st_mode), "listing": sorted(os.listdir("tmp"))}
            link_fd(fd, "tmp/named")
            os.write(fd, b"and after\n")
            after = {"nlink": os.fstat(fd).st_nlink, "same inode": os.stat("tmp/named").st_ino == st.st_ino,
                     "content": read_file("tmp/named").decode(), "mode": oct(os.stat("tmp/named").st_mode)}
            return {"before": before, "after": after}
        finally:
            os.close(fd)
    show("tmp: O_TMPFILE|O_RDWR, write, linkat AT_SYMLINK_FOLLOW, read through the name", link_tmpfile)

    def excl():
        fd = os.open("tmp", os.O_TMPFILE | os.O_RDWR | os.O_EXCL, 0o600)
        try:
            os.write(fd, b"never linked\n")
            link_fd(fd, "tmp/excl")
        finally:
            os.close(fd)
    show("tmp: O_TMPFILE|O_EXCL cannot be linked", excl)

    def unlinked():
        fd = os.open("tmp", os.O_TMPFILE | os.O_WRONLY, 0o600)
        os.write(fd, b"x" * 100000)
        os.close(fd)
        return sorted(os.listdir("tmp"))
    show("tmp: O_TMPFILE closed without a name leaves nothing", unlinked)
    show("tmp: O_TMPFILE|O_RDONLY", lambda: os.close(os.open("tmp", os.O_TMPFILE | os.O_RDONLY, 0o600)))
    show("tmp: O_TMPFILE of a file", lambda: os.close(os.open("tmp/named", os.O_TMPFILE | os.O_RDWR, 0o600)))


# ---------------------------------------------------------------------------------------------------------
# SEEK_DATA / SEEK_HOLE


def fallocate(fd, mode, offset, length):
    _check(_libc.fallocate(fd, mode, ctypes.c_long(offset), ctypes.c_long(length)))


FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, FALLOC_FL_COLLAPSE_RANGE, FALLOC_FL_INSERT_RANGE = 0x01, 0x02, 0x08, 0x20
K = 4096


def seeks():
    """A sparse file: data at 0 and at 64 KiB, a fallocated (unwritten) range at 128 KiB, a punched hole, a hole up to EOF."""
    fd = os.open("sparse", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.pwrite(fd, b"d" * K, 0)
        os.pwrite(fd, b"e" * (2 * K), 16 * K)
        os.pwrite(fd, b"f" * (4 * K), 24 * K)
        fallocate(fd, 0, 32 * K, 8 * K)
        fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 25 * K, K)
        os.ftruncate(fd, 64 * K + 100)
        os.fsync(fd)
        size = os.fstat(fd).st_size
        for whence, name in ((os.SEEK_DATA, "SEEK_DATA"), (os.SEEK_HOLE, "SEEK_HOLE")):
            for off in (0, 1, K - 1, K, 10 * K, 16 * K, 17 * K + 5, 18 * K, 24 * K, 25 * K, 26 * K, 32 * K, 40 * K, size - 1, size, size + 1):
                show(f"seek: {name} from {off} in sparse", lambda: os.lseek(fd, off, whence))
        show("seek: blocks of sparse", lambda: os.fstat(fd).st_blocks)
    finally:
        os.close(fd)
    write_file("empty", b"")
    fd = os.open("empty", os.O_RDONLY)
    try:
        show("seek: SEEK_DATA from 0 in an empty file", lambda: os.lseek(fd, 0, os.SEEK_DATA))
        show("seek: SEEK_HOLE from 0 in an empty file", lambda: os.lseek(fd, 0, os.SEEK_HOLE))
    finally:
        os.close(fd)
    fd = os.open("allhole", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.ftruncate(fd, 20 * K)
        fallocate(fd, FALLOC_FL_KEEP_SIZE, 20 * K, 4 * K)
        show("seek: SEEK_DATA from 0 in a file that is a hole", lambda: os.lseek(fd, 0, os.SEEK_DATA))
        show("seek: SEEK_HOLE from 5 in a file that is a hole", lambda: os.lseek(fd, 5, os.SEEK_HOLE))
        show("seek: size and blocks of a file fallocated past EOF", lambda: (os.fstat(fd).st_size, os.fstat(fd).st_blocks))
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------------------------------------
# copy_file_range


def copy_all(src, dst, count, off_src, off_dst):
    """copy_file_range until COUNT bytes are copied or it returns 0; the total."""
    total = 0
    while total < count:
        n = os.copy_file_range(src, dst, count - total, off_src + total, off_dst + total)
        if n == 0:
            break
        total += n
    return total


def copies():
    data = pattern(1 << 20, "cfr")
    write_file("cfr-src", data)
    write_file("cfr-dst", b"")
    s = os.open("cfr-src", os.O_RDONLY)
    d = os.open("cfr-dst", os.O_RDWR)
    try:
        show("cfr: 300000 bytes from 1000 to 5000 of another file", lambda: copy_all(s, d, 300000, 1000, 5000))
        show("cfr: destination size and hash", lambda: (os.fstat(d).st_size, sha(read_file("cfr-dst")),
                                                       read_file("cfr-dst")[5000:] == data[1000:301000], read_file("cfr-dst")[:5000] == bytes(5000)))
        show("cfr: 64 KiB past the source's EOF", lambda: copy_all(s, d, 65536, (1 << 20) + 10, 0))
        show("cfr: 64 KiB across the source's EOF", lambda: copy_all(s, d, 65536, (1 << 20) - 1000, 0))
        show("cfr: destination after", lambda: (os.fstat(d).st_size, sha(read_file("cfr-dst"))))
        show("cfr: 4 KiB to 2 MiB (beyond EOF)", lambda: (copy_all(s, d, K, 0, 2 << 20), os.fstat(d).st_size, sha(read_file("cfr-dst"))))
        show("cfr: within a file, not overlapping", lambda: (copy_all(d, d, 8192, 5000, 400000), sha(read_file("cfr-dst"))))
        show("cfr: within a file, overlapping", lambda: copy_all(d, d, 8192, 0, 4096))
        show("cfr: into an O_RDONLY fd", lambda: copy_all(d, s, 10, 0, 0))
        show("cfr: into an O_APPEND fd", lambda: copy_all_append(s))
        show("cfr: source unchanged", lambda: sha(read_file("cfr-src")) == sha(data))
    finally:
        os.close(s)
        os.close(d)


def copy_all_append(src):
    fd = os.open("cfr-dst", os.O_WRONLY | os.O_APPEND)
    try:
        return copy_all(src, fd, 10, 0, 0)
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------------------------------------
# fallocate collapse and insert range


def blocks(path):
    """The first byte of each 4 KiB block, and the size."""
    data = read_file(path)
    return {"size": len(data), "blocks": "".join(chr(data[i]) if data[i] else "0" for i in range(0, len(data), K)),
            "blocks uniform": all(data[i:i + K] == data[i:i + 1] * len(data[i:i + K]) for i in range(0, len(data), K)),
            "hash": sha(data)}


def collapse_insert():
    write_file("ci", b"".join(bytes([ord("A") + i]) * K for i in range(16)))
    show("ci: before", lambda: blocks("ci"))

    def falloc(mode, off, length):
        def run():
            fd = os.open("ci", os.O_RDWR)
            try:
                fallocate(fd, mode, off, length)
            finally:
                os.close(fd)
            return blocks("ci")
        return run
    show("ci: collapse 8 KiB at 4 KiB", falloc(FALLOC_FL_COLLAPSE_RANGE, K, 2 * K))
    show("ci: insert 4 KiB at 12 KiB", falloc(FALLOC_FL_INSERT_RANGE, 3 * K, K))
    show("ci: insert 8 KiB at 0", falloc(FALLOC_FL_INSERT_RANGE, 0, 2 * K))
    show("ci: collapse the first 4 KiB", falloc(FALLOC_FL_COLLAPSE_RANGE, 0, K))
    show("ci: collapse misaligned offset 1000", falloc(FALLOC_FL_COLLAPSE_RANGE, 1000, K))
    show("ci: collapse misaligned length 1000", falloc(FALLOC_FL_COLLAPSE_RANGE, K, 1000))
    show("ci: insert misaligned offset 100", falloc(FALLOC_FL_INSERT_RANGE, 100, K))
    show("ci: collapse reaching EOF", falloc(FALLOC_FL_COLLAPSE_RANGE, 12 * K, 8 * K))
    show("ci: insert at EOF", falloc(FALLOC_FL_INSERT_RANGE, os.stat("ci").st_size, K))
    show("ci: collapse with KEEP_SIZE", falloc(FALLOC_FL_COLLAPSE_RANGE | FALLOC_FL_KEEP_SIZE, 0, K))
    show("ci: after the refusals", lambda: blocks("ci"))


# ---------------------------------------------------------------------------------------------------------
# file handles


class FileHandle(ctypes.Structure):
    _fields_ = [("handle_bytes", ctypes.c_uint), ("handle_type", ctypes.c_int), ("f_handle", ctypes.c_ubyte * 128)]


def name_to_handle(path):
    fh = FileHandle()
    fh.handle_bytes = 128
    mount_id = ctypes.c_int()
    _check(_libc.name_to_handle_at(AT_FDCWD, os.fsencode(path), ctypes.byref(fh), ctypes.byref(mount_id), 0))
    return fh


def open_by_handle(fh, flags):
    mount_fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY)
    try:
        return _check(_libc.open_by_handle_at(mount_fd, ctypes.byref(fh), flags))
    finally:
        os.close(mount_fd)


def drop_caches():
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("2\n")


def handles():
    os.makedirs("fh/dir")
    write_file("fh/dir/file", b"handle me\n")
    write_file("fh/gone", b"soon unlinked\n")
    ino = {p: os.stat(p).st_ino for p in ("fh/dir", "fh/dir/file", "fh/gone")}
    fh = {p: name_to_handle(p) for p in ino}

    def reopen(path, flags, read):
        fd = open_by_handle(fh[path], flags)
        try:
            return {"same inode": os.fstat(fd).st_ino == ino[path], "content": read(fd)}
        finally:
            os.close(fd)
    read_file_fd = lambda fd: os.pread(fd, 100, 0).decode()
    read_dir_fd = lambda fd: sorted(os.listdir(fd))
    show("fh: open_by_handle_at a file, cached", lambda: reopen("fh/dir/file", os.O_RDONLY, read_file_fd))
    drop_caches()
    show("fh: open_by_handle_at a file after drop_caches", lambda: reopen("fh/dir/file", os.O_RDONLY, read_file_fd))
    drop_caches()
    show("fh: open_by_handle_at a dir after drop_caches", lambda: reopen("fh/dir", os.O_RDONLY | os.O_DIRECTORY, read_dir_fd))
    drop_caches()
    show("fh: open_by_handle_at a file O_RDWR after drop_caches, write",
         lambda: write_by_handle(fh["fh/dir/file"]))
    show("fh: read back by name", lambda: read_file("fh/dir/file").decode())
    os.unlink("fh/gone")
    drop_caches()
    show("fh: open_by_handle_at an unlinked file after drop_caches", lambda: reopen("fh/gone", os.O_RDONLY, read_file_fd))
    write_file("fh/new", b"new file, perhaps in the freed inode\n")
    drop_caches()
    show("fh: the unlinked file's handle after a new file", lambda: reopen("fh/gone", os.O_RDONLY, read_file_fd))


def write_by_handle(fh):
    fd = open_by_handle(fh, os.O_RDWR)
    try:
        return os.pwrite(fd, b"HANDLE", 0)
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------------------------------------
# an open directory replaced by a rename


def open_dir_replaced():
    os.makedirs("od/victim")
    write_file("od/victim/inside", b"i\n")
    fd = os.open("od/victim", os.O_RDONLY | os.O_DIRECTORY)
    try:
        ino = os.fstat(fd).st_ino
        os.rename("od/victim", "od/moved")
        os.mkdir("od/victim")
        show("od: fstat of an open dir renamed away, a new dir in its place",
             lambda: {"same inode": os.fstat(fd).st_ino == ino, "nlink": os.fstat(fd).st_nlink, "mode": oct(os.fstat(fd).st_mode),
                      "name now another inode": os.stat("od/victim").st_ino != ino, "list through the fd": sorted(os.listdir(fd))})
        show("od: create through the fd", lambda: (os.close(os.open("made", os.O_CREAT | os.O_WRONLY, 0o644, dir_fd=fd)),
                                                  sorted(os.listdir("od/moved")))[1])
    finally:
        os.close(fd)
    os.mkdir("od/empty-target")
    os.mkdir("od/replacement")
    write_file("od/replacement/r", b"r\n")
    fd = os.open("od/empty-target", os.O_RDONLY | os.O_DIRECTORY)
    try:
        ino = os.fstat(fd).st_ino
        os.rename("od/replacement", "od/empty-target")
        show("od: fstat of an open empty dir a rename replaced",
             lambda: {"same inode": os.fstat(fd).st_ino == ino, "nlink": os.fstat(fd).st_nlink, "mode": oct(os.fstat(fd).st_mode),
                      "list through the fd": sorted(os.listdir(fd)), "the name": sorted(os.listdir("od/empty-target"))})
        show("od: create through the fd of the removed dir", lambda: os.close(os.open("x", os.O_CREAT | os.O_WRONLY, 0o644, dir_fd=fd)))
    finally:
        os.close(fd)
    show("od: tree", lambda: tree("od"))


def checks():
    os.umask(0o022)
    hard_links()
    renames()
    tmpfiles()
    seeks()
    copies()
    collapse_insert()
    handles()
    open_dir_replaced()


# ---------------------------------------------------------------------------------------------------------
# the race

NAMES = [f"race/n{i}" for i in range(4)]
TOLERATED = (errno.ENOENT, errno.EEXIST)


def token_ok(data):
    """A file's content is empty (created, not yet written) or exactly one token."""
    if not data:
        return True
    parts = data.split(b":")
    return len(parts) == 3 and parts[0] == b"T" and parts[1].isdigit() and parts[2].endswith(b"\n") and parts[2][:-1].isdigit()


def churn(seed, deadline, queue):
    rnd = random.Random(seed)
    counts = {"ops": 0, "unexpected": []}
    n = 0
    while time.monotonic() < deadline:
        name = rnd.choice(NAMES)
        op = rnd.randrange(6)
        counts["ops"] += 1
        try:
            if op == 0:
                fd = os.open(name, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
                n += 1
                os.write(fd, f"T:{seed}:{n}\n".encode())
                os.close(fd)
            elif op == 1:
                fd = os.open(name, os.O_RDONLY)
                try:
                    data = os.read(fd, 100)
                    st = os.fstat(fd)
                    if not token_ok(data) or not stat.S_ISREG(st.st_mode):
                        counts["unexpected"].append(f"read {name}: {data!r} mode {oct(st.st_mode)}")
                finally:
                    os.close(fd)
            elif op == 2:
                os.unlink(name)
            elif op == 3:
                st = os.stat(name)
                if not stat.S_ISREG(st.st_mode) or st.st_size > 100:  # nlink 0: unlinked between lookup and getattr
                    counts["unexpected"].append(f"stat {name}: mode {oct(st.st_mode)} nlink {st.st_nlink} size {st.st_size}")
            elif op == 4:
                os.rename(name, rnd.choice(NAMES))
            else:
                os.link(name, rnd.choice(NAMES))
        except OSError as e:
            if e.errno not in TOLERATED:
                counts["unexpected"].append(f"op {op} on {name}: {errno.errorcode.get(e.errno, e.errno)}")
    queue.put(counts)


def holder(deadline, queue):
    """Opens whatever name is there, keeps up to 8 files open, and checks that each still reads what it read
    when opened, after the names were unlinked, renamed and reused around it."""
    rnd = random.Random(99)
    held = []
    counts = {"held": 0, "unexpected": []}

    def verify(fd, first):
        again = os.pread(fd, 100, 0)
        st = os.fstat(fd)
        if again != first or not stat.S_ISREG(st.st_mode) or st.st_size != len(first):
            counts["unexpected"].append(f"held file changed: {first!r} -> {again!r}, size {st.st_size}")
    while time.monotonic() < deadline:
        name = rnd.choice(NAMES)
        try:
            fd = os.open(name, os.O_RDONLY)
        except OSError as e:
            if e.errno not in TOLERATED:
                counts["unexpected"].append(f"open {name}: {errno.errorcode.get(e.errno, e.errno)}")
            continue
        first = os.pread(fd, 100, 0)
        if not first:  # its creator has not written yet: the content may still change
            os.close(fd)
            continue
        held.append((fd, first))
        counts["held"] += 1
        for h in held:
            verify(*h)
        if len(held) > 8:
            fd, first = held.pop(0)
            os.close(fd)
        time.sleep(0.002)
    for fd, first in held:
        verify(fd, first)
        os.close(fd)
    queue.put(counts)


def race(seconds):
    os.makedirs("race", exist_ok=True)
    deadline = time.monotonic() + seconds
    queue = multiprocessing.Queue()
    procs = [multiprocessing.Process(target=churn, args=(i, deadline, queue)) for i in range(4)]
    procs.append(multiprocessing.Process(target=holder, args=(deadline, queue)))
    for p in procs:
        p.start()
    results = [queue.get(timeout=seconds + 60) for _ in procs]
    for p in procs:
        p.join()
    unexpected = [u for r in results for u in r["unexpected"]]
    ops = sum(r.get("ops", 0) for r in results)
    held = sum(r.get("held", 0) for r in results)
    for n in NAMES:
        try:
            os.unlink(n)
        except FileNotFoundError:
            pass
    left = sorted(os.listdir("race"))
    os.rmdir("race")
    print(json.dumps({"unexpected": unexpected[:20], "left": left, "exit codes": [p.exitcode for p in procs]}, sort_keys=True))
    print(f"ops {ops}, files held {held}", file=sys.stderr)


if __name__ == "__main__":
    if sys.argv[1] == "checks":
        checks()
    else:
        race(float(sys.argv[2]))
