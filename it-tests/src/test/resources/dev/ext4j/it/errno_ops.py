"""Error paths of the filesystem in the current directory, one line per operation: "label -> OK"
(with the value, for the few operations whose result is a value) or "label -> ERRNO_NAME". ErrnoIT runs it on a kernel ext4 mount and on an ext4j mount of copies of
the same image and requires identical output: the kernel is the oracle.

Usage: python3 -c "$(cat errno_ops.py)" root|user|ro

  root  as root on a fresh read-write filesystem: name, directory, rename, link, size and xattr
        errors; also sets up the tree the "user" part works in
  user  as uid/gid 65534 after "root": permission checks (EACCES, EPERM, the sticky bit)
  ro    as root on a read-only mount of an image holding file, dir/inner and file's user.note
"""
import ctypes
import errno
import fcntl
import os
import struct
import subprocess
import sys
import time


def attempt(label, fn):
    try:
        fn()
        result = "OK"
    except OSError as e:
        result = errno.errorcode.get(e.errno, str(e.errno))
    except AssertionError as e:
        result = f"WRONG RESULT ({e})"
    print(f"{label} -> {result}", flush=True)


def show(label, fn):
    """For results that are values rather than errors: "label -> OK value"."""
    try:
        result = f"OK {fn()}"
    except OSError as e:
        result = errno.errorcode.get(e.errno, str(e.errno))
    print(f"{label} -> {result}", flush=True)


def largest_value(path, name):
    """The largest value of xattr NAME that PATH takes, found by bisection."""
    lo, hi = 0, 65536
    while lo < hi:
        mid = (lo + hi + 1) // 2
        try:
            os.setxattr(path, name, b"v" * mid)
            lo = mid
        except OSError as e:
            if e.errno not in (errno.ENOSPC, errno.E2BIG):
                raise
            hi = mid - 1
    os.removexattr(path, name)
    return lo


def must(condition, what):
    """For checks of a result: fails the attempt with a message that the output comparison shows."""
    if not condition:
        raise AssertionError(what)


def create(path, mode=0o644, flags=os.O_WRONLY | os.O_CREAT | os.O_EXCL):
    os.close(os.open(path, flags, mode))


def write_file(path, data):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def with_fd(path, flags, fn):
    def run():
        fd = os.open(path, flags)
        try:
            fn(fd)
        finally:
            os.close(fd)
    return run


UTIME_NOW = (1 << 30) - 1
UTIME_OMIT = (1 << 30) - 2
_libc = ctypes.CDLL(None, use_errno=True)


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


def utimensat(path, atime, mtime):
    """utimensat(2) with (seconds, nanoseconds) pairs, nanoseconds possibly UTIME_NOW or UTIME_OMIT."""
    times = (_Timespec * 2)(_Timespec(*atime), _Timespec(*mtime))
    if _libc.utimensat(-100, os.fsencode(path), times, 0) != 0:  # AT_FDCWD
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


def past_clock_tick(ns):
    """Waits until the clock is 20 ms past NS, so that a change made now gets a later ctime
    than NS even with the kernel's coarse clock."""
    while time.time_ns() < ns + 20_000_000:
        time.sleep(0.005)


def acl_blob(*entries):
    """A system.posix_acl_access value: version 2, then (tag, perm, id) entries."""
    return struct.pack("<I", 2) + b"".join(struct.pack("<HHI", t, p, i) for t, p, i in entries)


# user::rw- user:1:r-- group::r-- mask::r-- other::r--
ACL_WITH_USER = acl_blob((0x01, 6, 0xFFFFFFFF), (0x02, 4, 1), (0x04, 4, 0xFFFFFFFF), (0x10, 4, 0xFFFFFFFF), (0x20, 4, 0xFFFFFFFF))


def flag_ops():
    """Immutable (chattr +i) and append-only (+a) files and directories: what each operation may do."""
    os.mkdir("flags")
    for kind, flag in (("immutable", "+i"), ("append-only", "+a")):
        d, f = f"flags/{kind}-dir", f"flags/{kind}-file"
        os.mkdir(d)
        write_file(f"{d}/inner", b"inner")
        write_file(f, b"data")
        os.setxattr(f, "user.old", b"1")
        subprocess.run(["chattr", flag, d, f], check=True)
        attempt(f"{kind} file: read", lambda: must(open(f, "rb").read() == b"data", "value"))
        attempt(f"{kind} file: open O_WRONLY", lambda: os.close(os.open(f, os.O_WRONLY)))
        attempt(f"{kind} file: append", with_fd(f, os.O_WRONLY | os.O_APPEND, lambda fd: os.write(fd, b"+")))
        attempt(f"{kind} file: truncate", lambda: os.truncate(f, 1))
        attempt(f"{kind} file: utime to now", lambda: os.utime(f))
        attempt(f"{kind} file: utime to given times", lambda: os.utime(f, (5, 5)))
        attempt(f"{kind} file: utimensat(OMIT, given)", lambda: utimensat(f, (0, UTIME_OMIT), (7, 0)))
        attempt(f"{kind} file: chmod", lambda: os.chmod(f, 0o600))
        attempt(f"{kind} file: chown", lambda: os.chown(f, 1, 1))
        attempt(f"{kind} file: setxattr user.x", lambda: os.setxattr(f, "user.x", b"1"))
        attempt(f"{kind} file: removexattr user.old", lambda: os.removexattr(f, "user.old"))
        attempt(f"{kind} file: set an ACL", lambda: os.setxattr(f, "system.posix_acl_access", ACL_WITH_USER))
        attempt(f"{kind} file: remove the ACL", lambda: os.removexattr(f, "system.posix_acl_access"))
        attempt(f"{kind} file: link", lambda: os.link(f, f"flags/{kind}-link"))
        attempt(f"{kind} file: rename", lambda: os.rename(f, f"flags/{kind}-moved"))
        attempt(f"{kind} file: unlink", lambda: os.unlink(f))
        attempt(f"{kind} dir: create a file", lambda: create(f"{d}/new"))
        attempt(f"{kind} dir: mkdir", lambda: os.mkdir(f"{d}/sub"))
        attempt(f"{kind} dir: symlink", lambda: os.symlink("inner", f"{d}/sym"))
        attempt(f"{kind} dir: mkfifo", lambda: os.mkfifo(f"{d}/fifo"))
        attempt(f"{kind} dir: link into", lambda: os.link(f"{d}/inner", f"{d}/l2"))
        attempt(f"{kind} dir: rename into", lambda: (write_file(f"flags/{kind}-outside", b"o"), os.rename(f"flags/{kind}-outside", f"{d}/came")))
        attempt(f"{kind} dir: write inner", lambda: write_file(f"{d}/inner", b"changed"))
        attempt(f"{kind} dir: unlink inner", lambda: os.unlink(f"{d}/inner"))
        attempt(f"{kind} dir: rename inner out", lambda: os.rename(f"{d}/inner", f"flags/{kind}-out"))
        attempt(f"{kind} dir: chmod", lambda: os.chmod(d, 0o700))
        subprocess.run(["chattr", "-i", "-a", d, f], check=True)


def acl_text(path, name):
    """An ACL xattr as "tag:id:perm" entries, or "none"."""
    try:
        v = os.getxattr(path, name)
    except OSError as e:
        return "none" if e.errno == errno.ENODATA else errno.errorcode[e.errno]
    tags = {0x01: "user_obj", 0x02: "user", 0x04: "group_obj", 0x08: "group", 0x10: "mask", 0x20: "other"}
    out = []
    for off in range(4, len(v), 8):
        tag, perm, ident = struct.unpack_from("<HHI", v, off)
        out.append(f"{tags.get(tag, tag)}:{'' if ident == 0xFFFFFFFF else ident}:{perm:o}")
    return ",".join(out)


def acl_ops():
    """Default ACLs: what a new file, directory and fifo take from their directory's default ACL.
    The umask is 0 here: on libfuse 2 the kernel applies the umask before ext4j sees the mode (it
    cannot tell the kernel that ext4j handles ACLs), where a kernel ext4 mount ignores it."""
    old = os.umask(0)
    try:
        os.mkdir("acl", 0o755)
        # user::rwx user:1:rwx group::r-x mask::rwx other::r-x
        os.setxattr("acl", "system.posix_acl_default",
                    acl_blob((0x01, 7, 0xFFFFFFFF), (0x02, 7, 1), (0x04, 5, 0xFFFFFFFF), (0x10, 7, 0xFFFFFFFF), (0x20, 5, 0xFFFFFFFF)))
        os.mkdir("acl-plain", 0o755)
        os.setxattr("acl-plain", "system.posix_acl_default", acl_blob((0x01, 7, 0xFFFFFFFF), (0x04, 0, 0xFFFFFFFF), (0x20, 0, 0xFFFFFFFF)))
        for d in ("acl", "acl-plain"):
            attempt(f"{d}: create a file 0666", lambda: create(f"{d}/file", 0o666))
            attempt(f"{d}: create a file 0600", lambda: create(f"{d}/private", 0o600))
            attempt(f"{d}: mkdir 0777", lambda: os.mkdir(f"{d}/sub", 0o777))
            attempt(f"{d}: mkfifo 0644", lambda: os.mkfifo(f"{d}/fifo", 0o644))
            attempt(f"{d}: symlink", lambda: os.symlink("file", f"{d}/link"))
            for n in ("file", "private", "sub", "fifo"):
                show(f"{d}/{n}: mode, access ACL, default ACL", lambda: (oct(os.stat(f"{d}/{n}").st_mode), acl_text(f"{d}/{n}", "system.posix_acl_access"),
                                                                      acl_text(f"{d}/{n}", "system.posix_acl_default")))
            attempt(f"{d}/sub: mkdir in it", lambda: os.mkdir(f"{d}/sub/deeper", 0o700))
            show(f"{d}/sub/deeper: mode, access ACL, default ACL", lambda: (oct(os.stat(f"{d}/sub/deeper").st_mode),
                                                                          acl_text(f"{d}/sub/deeper", "system.posix_acl_access"),
                                                                          acl_text(f"{d}/sub/deeper", "system.posix_acl_default")))
    finally:
        os.umask(old)


SETGID_DATA_OPS = ("write", "truncate", "fallocate", "punch a hole", "zero a range", "copy_file_range into")


def setgid_setup():
    """Files of 65534 in group 0 with setgid and group execute, a setuid one, a setgid directory of
    group 1000: the user part checks what its changes leave of the bits."""
    for op in SETGID_DATA_OPS:
        f = "sg-" + op.replace(" ", "-")
        attempt(f"setup: {f} 02775 of 65534:0", lambda: (write_file(f, b"x" * 8192), os.chown(f, 65534, 0), os.chmod(f, 0o2775)))
    attempt("setup: su-write 04755 of 65534:65534", lambda: (write_file("su-write", b"x"), os.chown("su-write", 65534, 65534), os.chmod("su-write", 0o4755)))
    attempt("setup: sg-chmod 0775 of 65534:0", lambda: (write_file("sg-chmod", b"x"), os.chown("sg-chmod", 65534, 0), os.chmod("sg-chmod", 0o775)))
    attempt("setup: sgdir 02777 of 0:1000", lambda: (os.mkdir("sgdir"), os.chown("sgdir", 0, 1000), os.chmod("sgdir", 0o2777)))


def fallocate(path, mode, offset, length):
    fd = os.open(path, os.O_WRONLY)
    try:
        if _libc.fallocate(fd, mode, ctypes.c_long(offset), ctypes.c_long(length)) != 0:
            e = ctypes.get_errno()
            raise OSError(e, os.strerror(e))
    finally:
        os.close(fd)


def setgid_user_ops():
    """As 65534, not in group 0: each data change clears setgid (and setuid), as file_remove_privs()."""
    mode = lambda p: oct(os.stat(p).st_mode & 0o7777)
    changes = {"write": lambda f: with_fd(f, os.O_WRONLY, lambda fd: os.write(fd, b"y"))(),
               "truncate": lambda f: os.truncate(f, 100),
               "fallocate": lambda f: fallocate(f, 0, 0, 65536),
               "punch a hole": lambda f: fallocate(f, 0x01 | 0x02, 0, 4096),  # PUNCH_HOLE | KEEP_SIZE
               "zero a range": lambda f: fallocate(f, 0x10, 0, 4096),  # ZERO_RANGE
               "copy_file_range into": lambda f: with_fd("sg-chmod", os.O_RDONLY, lambda src: with_fd(
                   f, os.O_WRONLY, lambda dst: os.copy_file_range(src, dst, 1, 0, 0))())()}
    for op in SETGID_DATA_OPS:
        f = "sg-" + op.replace(" ", "-")
        show(f"{op} a setgid file of mine, group not mine: mode after", lambda: (changes[op](f), mode(f))[1])
    show("write a setuid file of mine: mode after", lambda: (changes["write"]("su-write"), mode("su-write"))[1])
    show("chmod 02775 a file of mine, group not mine: mode after", lambda: (os.chmod("sg-chmod", 0o2775), mode("sg-chmod"))[1])
    show("create in a setgid dir of group 1000: gid, mode", lambda: (create("sgdir/f", 0o644), os.stat("sgdir/f").st_gid, mode("sgdir/f"))[1:])
    show("mkdir in a setgid dir of group 1000: gid, mode", lambda: (os.mkdir("sgdir/d", 0o755), os.stat("sgdir/d").st_gid, mode("sgdir/d"))[1:])
    show("create 02755 in a setgid dir of group 1000: mode", lambda: (create("sgdir/g", 0o2755), mode("sgdir/g"))[1])


def xflag_ops():
    """FS_XFLAG_DAX through FS_IOC_FSSETXATTR is kept, and a new inode inherits its directory's
    flags as ext4_mask_flags() says (DAX, noatime, nodump; directories more than files)."""
    getxattr, setxattr, getflags = 0x801C581F, 0x401C5820, 0x80086601

    def flags(path):
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        try:
            return hex(struct.unpack("<I", fcntl.ioctl(fd, getflags, bytes(8))[:4])[0] & ~0x10080000)  # less extents, inline data
        finally:
            os.close(fd)

    def set_dax():
        fd = os.open("xf", os.O_RDONLY)
        try:
            fsx = bytearray(fcntl.ioctl(fd, getxattr, bytes(28)))
            struct.pack_into("<I", fsx, 0, struct.unpack_from("<I", fsx)[0] | 0x8000)  # FS_XFLAG_DAX
            fcntl.ioctl(fd, setxattr, bytes(fsx))
            return hex(struct.unpack_from("<I", fcntl.ioctl(fd, getxattr, bytes(28)))[0])
        finally:
            os.close(fd)
    os.mkdir("xf")
    show("FS_IOC_FSSETXATTR DAX on a dir: xflags after", set_dax)
    subprocess.run(["chattr", "+A", "+d", "+S", "xf"], check=True)
    create("xf/file")
    os.mkdir("xf/sub")
    os.mkfifo("xf/fifo")
    os.symlink("file", "xf/link")
    for n in ("xf", "xf/file", "xf/sub"):
        show(f"{n}: flags", lambda: flags(n))


def utime_ops():
    """utimensat(2) with UTIME_OMIT and UTIME_NOW in each combination: which times move, ctime too."""
    given = 1_000_000_000
    for a, m in ((UTIME_OMIT, UTIME_OMIT), (UTIME_OMIT, 0), (0, UTIME_OMIT), (0, 0), (UTIME_NOW, UTIME_OMIT),
                 (UTIME_OMIT, UTIME_NOW), (UTIME_NOW, UTIME_NOW), (UTIME_NOW, 0), (0, UTIME_NOW)):
        name = {UTIME_OMIT: "OMIT", UTIME_NOW: "NOW", 0: "given"}
        f = f"utime-{name[a]}-{name[m]}"
        write_file(f, b"t")
        os.utime(f, (500_000_000, 600_000_000))
        before = os.stat(f)
        past_clock_tick(before.st_ctime_ns)
        start = time.time_ns()

        def run():
            utimensat(f, (given if a == 0 else 0, a), (given if m == 0 else 0, m))
            after = os.stat(f)

            def which(new, old):
                if new == old:
                    return "kept"
                if new == given * 1_000_000_000:
                    return "given"
                return "now" if abs(new - start) < 2_000_000_000 else f"other {new}"
            return (f"atime {which(after.st_atime_ns, before.st_atime_ns)}, mtime {which(after.st_mtime_ns, before.st_mtime_ns)}, "
                    f"ctime {'moved' if after.st_ctime_ns > before.st_ctime_ns else 'kept'}")
        show(f"utimensat({name[a]}, {name[m]})", run)


def atime_part():
    """Whether a read moves atime, by the mount's atime flags: a file and a directory whose atime
    is before mtime, after it, after it but two days old; each read twice."""
    day = 24 * 3600
    now = time.time()
    write_file("atime-file", b"content")
    os.mkdir("atime-dir")
    write_file("atime-dir/entry", b"e")
    cases = (("atime before mtime", now - 100, now - 50), ("atime after mtime and ctime", now + 3600, now - 50),
             ("atime two days old, after mtime", now - 2 * day, now - 3 * day))
    for path, read in (("atime-file", lambda p: open(p, "rb").read()), ("atime-dir", os.listdir)):
        for label, atime, mtime in cases:
            os.utime(path, (atime, mtime))
            past_clock_tick(os.stat(path).st_ctime_ns)
            if label == "atime after mtime and ctime":
                os.utime(path, (now + 3600, mtime))  # ctime moved by the utime itself: atime stays after it

            def run():
                before = os.stat(path).st_atime_ns
                read(path)
                first = os.stat(path).st_atime_ns
                past_clock_tick(time.time_ns())  # strictatime: the kernel's coarse clock must have moved on
                read(path)
                second = os.stat(path).st_atime_ns
                moved = lambda a, b: "moved" if a != b else "kept"
                return f"first read: {moved(first, before)}, second read: {moved(second, first)}"
            show(f"{path}: {label}", run)


def root_part():
    bsize = os.statvfs(".").f_bsize
    # s_maxbytes of an extent-mapped file: 2^32 - 1 blocks (ext4_max_size()).
    max_bytes = ((1 << 32) - 1) * bsize

    attempt("setup: mkdir d", lambda: os.mkdir("d"))
    attempt("setup: write d/f", lambda: write_file("d/f", b"data\n"))
    attempt("setup: mkdir d/sub", lambda: os.mkdir("d/sub"))

    # names
    attempt("open O_CREAT|O_EXCL over an existing file", lambda: create("d/f"))
    attempt("open O_CREAT|O_EXCL over an existing dir", lambda: create("d/sub"))
    attempt("open O_CREAT without O_EXCL of an existing file", lambda: create("d/f", flags=os.O_WRONLY | os.O_CREAT))
    attempt("create a 255-byte name", lambda: create("d/" + "n" * 255))
    attempt("stat a 255-byte name", lambda: os.stat("d/" + "n" * 255))
    attempt("rename to a 255-byte name", lambda: os.rename("d/" + "n" * 255, "d/" + "m" * 255))
    attempt("unlink a 255-byte name", lambda: os.unlink("d/" + "m" * 255))
    attempt("mkdir a 255-byte name", lambda: os.mkdir("d/" + "n" * 255))
    attempt("rmdir a 255-byte name", lambda: os.rmdir("d/" + "n" * 255))
    attempt("create a 256-byte name", lambda: create("d/" + "n" * 256))
    attempt("stat a 256-byte name", lambda: os.stat("d/" + "n" * 256))
    attempt("mkdir a 256-byte name", lambda: os.mkdir("d/" + "n" * 256))
    attempt("symlink with a 256-byte name", lambda: os.symlink("f", "d/" + "n" * 256))
    attempt("link with a 256-byte name", lambda: os.link("d/f", "d/" + "n" * 256))
    attempt("rename to a 256-byte name", lambda: os.rename("d/f", "d/" + "n" * 256))
    attempt("mknod fifo with a 256-byte name", lambda: os.mkfifo("d/" + "n" * 256))
    attempt("symlink target of blocksize-1 bytes", lambda: os.symlink("t" * (bsize - 1), "d/longlink"))
    attempt("readlink of it has blocksize-1 bytes",
            lambda: must(len(os.readlink("d/longlink")) == bsize - 1, "length"))
    attempt("symlink target of blocksize bytes", lambda: os.symlink("t" * bsize, "d/toolong"))

    # directories
    attempt("rmdir a non-empty dir", lambda: os.rmdir("d"))
    attempt("rmdir a file", lambda: os.rmdir("d/f"))
    attempt("rmdir .", lambda: os.rmdir("d/sub/."))
    attempt("rmdir a missing name", lambda: os.rmdir("d/missing"))
    attempt("unlink a dir", lambda: os.unlink("d/sub"))
    attempt("unlink a missing name", lambda: os.unlink("d/missing"))
    attempt("mkdir over an existing dir", lambda: os.mkdir("d/sub"))
    attempt("mkdir over an existing file", lambda: os.mkdir("d/f"))
    attempt("mkdir under a file", lambda: os.mkdir("d/f/x"))
    attempt("create under a missing dir", lambda: create("d/missing/x"))
    attempt("open a dir O_WRONLY", lambda: os.close(os.open("d", os.O_WRONLY)))
    attempt("open a dir O_RDWR", lambda: os.close(os.open("d", os.O_RDWR)))
    attempt("open a file O_DIRECTORY", lambda: os.close(os.open("d/f", os.O_RDONLY | os.O_DIRECTORY)))
    attempt("read a dir fd", with_fd("d", os.O_RDONLY, lambda fd: os.read(fd, 10)))

    # rename and link
    attempt("setup: mkdir full with a child", lambda: (os.mkdir("full"), os.mkdir("full/child")))
    attempt("setup: mkdir empty", lambda: os.mkdir("empty"))
    attempt("rename a dir into its own subdir", lambda: os.rename("d", "d/sub/inside"))
    attempt("rename a dir onto itself", lambda: os.rename("d", "d"))
    attempt("rename a dir over a non-empty dir", lambda: os.rename("empty", "full"))
    attempt("rename a file over a dir", lambda: os.rename("d/f", "empty"))
    attempt("rename a dir over a file", lambda: os.rename("empty", "d/f"))
    attempt("rename a missing name", lambda: os.rename("d/missing", "d/other"))
    attempt("rename a dir over an empty dir", lambda: os.rename("d/sub", "empty"))
    attempt("setup: mkdir d/sub again", lambda: os.mkdir("d/sub"))
    attempt("link to a dir", lambda: os.link("d", "dlink"))
    attempt("link over an existing name", lambda: os.link("d/f", "d/longlink"))
    attempt("link to a missing file", lambda: os.link("d/missing", "d/other"))
    attempt("symlink over an existing name", lambda: os.symlink("x", "d/f"))

    # sizes
    attempt("setup: create big", lambda: create("big"))
    attempt("truncate to the max file size", lambda: os.truncate("big", max_bytes))
    attempt("stat size after truncate", lambda: must(os.stat("big").st_size == max_bytes, "value"))
    attempt("truncate to the max file size + 1", lambda: os.truncate("big", max_bytes + 1))
    attempt("truncate to 2^63 - 1", lambda: os.truncate("big", (1 << 63) - 1))
    attempt("truncate to -1", lambda: os.truncate("big", -1))
    attempt("pwrite 1 byte ending at the max file size", with_fd("big", os.O_WRONLY, lambda fd: os.pwrite(fd, b"z", max_bytes - 1)))
    attempt("pwrite 1 byte at the max file size", with_fd("big", os.O_WRONLY, lambda fd: os.pwrite(fd, b"z", max_bytes)))
    attempt("pread at the last byte", with_fd("big", os.O_RDONLY,
            lambda fd: must(os.pread(fd, 10, max_bytes - 1) == b"z", "value")))
    attempt("truncate back to 0", lambda: os.truncate("big", 0))
    attempt("unlink big", lambda: os.unlink("big"))

    # xattrs
    attempt("setxattr user.a", lambda: os.setxattr("d/f", "user.a", b"1"))
    attempt("setxattr XATTR_CREATE on an existing attr", lambda: os.setxattr("d/f", "user.a", b"2", os.XATTR_CREATE))
    attempt("setxattr XATTR_REPLACE on a missing attr", lambda: os.setxattr("d/f", "user.missing", b"2", os.XATTR_REPLACE))
    attempt("setxattr XATTR_REPLACE on an existing attr", lambda: os.setxattr("d/f", "user.a", b"3", os.XATTR_REPLACE))
    attempt("getxattr sees the replaced value", lambda: must(os.getxattr("d/f", "user.a") == b"3", "value"))
    attempt("getxattr a missing attr", lambda: os.getxattr("d/f", "user.missing"))
    attempt("removexattr a missing attr", lambda: os.removexattr("d/f", "user.missing"))
    attempt("setxattr an empty value", lambda: os.setxattr("d/f", "user.empty", b""))
    attempt("getxattr the empty value", lambda: must(os.getxattr("d/f", "user.empty") == b"", "value"))
    attempt("setxattr a value of blocksize+1 bytes", lambda: os.setxattr("d/f", "user.big", b"v" * (bsize + 1)))
    attempt("setxattr a value of 64 KiB + 1 bytes", lambda: os.setxattr("d/f", "user.huge", b"v" * 65537))
    attempt("setxattr a 255-byte name", lambda: os.setxattr("d/f", "user." + "x" * 250, b"1"))
    attempt("setxattr a 256-byte name", lambda: os.setxattr("d/f", "user." + "x" * 251, b"1"))
    attempt("setxattr an unknown namespace", lambda: os.setxattr("d/f", "bogus.a", b"1"))
    attempt("setxattr trusted.a as root", lambda: os.setxattr("d/f", "trusted.a", b"1"))
    attempt("setxattr user.a on a symlink", lambda: os.setxattr("d/longlink", "user.a", b"1", follow_symlinks=False))
    show("listxattr", lambda: sorted(os.listxattr("d/f")))
    attempt("setup: create xfile", lambda: create("xfile"))
    show("largest user.big value on a file without xattrs", lambda: largest_value("xfile", "user.big"))
    attempt("setxattr user.small of 100 bytes", lambda: os.setxattr("xfile", "user.small", b"s" * 100))
    show("largest user.big value beside user.small", lambda: largest_value("xfile", "user.big"))

    # root passes every permission check but exec: a regular file needs an exec bit
    attempt("setup: script 0644, script 0100, ro 0444, locked dir 0000 with a file",
            lambda: (write_file("script", b"#!/bin/sh\nexit 0\n"), os.chmod("script", 0o644),
                     write_file("xscript", b"#!/bin/sh\nexit 0\n"), os.chmod("xscript", 0o100),
                     write_file("ro", b"r\n"), os.chmod("ro", 0o444),
                     os.mkdir("locked"), write_file("locked/in", b"i\n"), os.chmod("locked", 0)))
    show("access X_OK of a 0644 file", lambda: os.access("script", os.X_OK))
    show("access X_OK of a 0100 file", lambda: os.access("xscript", os.X_OK))
    show("access W_OK of a 0444 file", lambda: os.access("ro", os.W_OK))
    show("access R_OK|X_OK of a 0000 dir", lambda: os.access("locked", os.R_OK | os.X_OK))
    attempt("run a 0644 script", lambda: must(subprocess.run(["./script"]).returncode == 0, "exit status"))
    attempt("run a 0100 script", lambda: must(subprocess.run(["./xscript"]).returncode == 0, "exit status"))
    attempt("open a 0444 file O_WRONLY", lambda: os.close(os.open("ro", os.O_WRONLY)))
    attempt("list a 0000 dir", lambda: os.listdir("locked"))
    attempt("chdir into a 0000 dir", lambda: (os.chdir("locked"), os.chdir("..")))
    attempt("create in a 0000 dir", lambda: create("locked/new"))

    # the tree the "user" part works in
    attempt("setup: private dir 0700 with a file", lambda: (os.mkdir("private", 0o700), write_file("private/secret", b"s\n")))
    attempt("setup: rootfile 0644", lambda: (write_file("rootfile", b"root\n"), os.chmod("rootfile", 0o644)))
    attempt("setup: rootfile has trusted.t and user.u", lambda: (os.setxattr("rootfile", "trusted.t", b"1"), os.setxattr("rootfile", "user.u", b"2")))
    attempt("setup: sticky dir 1777", lambda: (os.mkdir("sticky"), os.chmod("sticky", 0o1777)))
    attempt("setup: sticky/others owned by 1000", lambda: (write_file("sticky/others", b"o\n"), os.chown("sticky/others", 1000, 1000)))
    attempt("setup: sticky/own owned by 65534", lambda: (write_file("sticky/own", b"n\n"), os.chown("sticky/own", 65534, 65534)))
    flag_ops()
    xflag_ops()
    utime_ops()
    acl_ops()
    setgid_setup()


def user_part():
    attempt("I am 65534", lambda: must(os.geteuid() == 65534 and os.getegid() == 65534 and not os.getgroups(), "value"))
    attempt("list a 0700 root dir", lambda: os.listdir("private"))
    attempt("stat a file in a 0700 root dir", lambda: os.stat("private/secret"))
    attempt("open a file in a 0700 root dir", lambda: os.close(os.open("private/secret", os.O_RDONLY)))
    attempt("create in a 0700 root dir", lambda: create("private/new"))
    attempt("read a 0644 root file", lambda: os.close(os.open("rootfile", os.O_RDONLY)))
    attempt("open a 0644 root file O_WRONLY", lambda: os.close(os.open("rootfile", os.O_WRONLY)))
    attempt("open a 0644 root file O_RDWR|O_APPEND", lambda: os.close(os.open("rootfile", os.O_RDWR | os.O_APPEND)))
    attempt("truncate a 0644 root file", lambda: os.truncate("rootfile", 0))
    attempt("unlink in a 0755 root dir", lambda: os.unlink("rootfile"))
    attempt("create in a 0755 root dir", lambda: create("mine"))
    attempt("mkdir in a 0755 root dir", lambda: os.mkdir("d/mine"))
    attempt("rename in a 0755 root dir", lambda: os.rename("rootfile", "d/moved"))
    attempt("chmod a root file", lambda: os.chmod("rootfile", 0o666))
    attempt("chown a root file to me", lambda: os.chown("rootfile", 65534, 65534))
    attempt("utime a root file to given times", lambda: os.utime("rootfile", (1, 1)))
    attempt("utime a root file to now", lambda: os.utime("rootfile"))
    attempt("setxattr user.x on a 0644 root file", lambda: os.setxattr("rootfile", "user.x", b"1"))
    attempt("getxattr user.a of a readable root file", lambda: os.getxattr("d/f", "user.a"))
    attempt("getxattr trusted.t", lambda: os.getxattr("rootfile", "trusted.t"))
    show("listxattr of a file with trusted.t and user.u (trusted.* only for CAP_SYS_ADMIN)", lambda: sorted(os.listxattr("rootfile")))
    attempt("unlink someone else's file in a sticky dir", lambda: os.unlink("sticky/others"))
    attempt("rename someone else's file in a sticky dir", lambda: os.rename("sticky/others", "sticky/taken"))
    attempt("rename my file over someone else's in a sticky dir", lambda: os.rename("sticky/own", "sticky/others"))
    attempt("create in a sticky dir", lambda: create("sticky/made"))
    attempt("chown my file to root", lambda: os.chown("sticky/made", 0, 0))
    attempt("chmod my file", lambda: os.chmod("sticky/made", 0o600))
    attempt("setxattr trusted.x on my file", lambda: os.setxattr("sticky/made", "trusted.x", b"1"))
    attempt("setxattr user.x on my file", lambda: os.setxattr("sticky/made", "user.x", b"1"))
    attempt("unlink my file in a sticky dir", lambda: os.unlink("sticky/made"))
    attempt("unlink my own pre-made file in a sticky dir", lambda: os.unlink("sticky/own"))
    setgid_user_ops()


def ro_part():
    attempt("open a file O_RDONLY", lambda: os.close(os.open("file", os.O_RDONLY)))
    attempt("create a new file", lambda: create("new"))
    attempt("open a file O_WRONLY", lambda: os.close(os.open("file", os.O_WRONLY)))
    attempt("open a file O_RDWR", lambda: os.close(os.open("file", os.O_RDWR)))
    attempt("open a file O_TRUNC", lambda: os.close(os.open("file", os.O_RDONLY | os.O_TRUNC)))
    attempt("truncate a file", lambda: os.truncate("file", 0))
    attempt("mkdir", lambda: os.mkdir("newdir"))
    attempt("rmdir a non-empty dir", lambda: os.rmdir("dir"))
    attempt("unlink a file", lambda: os.unlink("file"))
    attempt("rename a file", lambda: os.rename("file", "moved"))
    attempt("link", lambda: os.link("file", "hard"))
    attempt("symlink", lambda: os.symlink("file", "sym"))
    attempt("mkfifo", lambda: os.mkfifo("fifo"))
    attempt("chmod", lambda: os.chmod("file", 0o600))
    attempt("chown", lambda: os.chown("file", 1, 1))
    attempt("utime", lambda: os.utime("file", (1, 1)))
    attempt("setxattr", lambda: os.setxattr("file", "user.x", b"1"))
    attempt("removexattr", lambda: os.removexattr("file", "user.note"))
    attempt("getxattr", lambda: must(os.getxattr("file", "user.note") == b"kept", "value"))
    attempt("read dir/inner", lambda: must(open("dir/inner", "rb").read() == b"inner\n", "value"))


{"root": root_part, "user": user_part, "ro": ro_part, "atime": atime_part}[sys.argv[1]]()
