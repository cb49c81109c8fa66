package dev.ext4j.fuse;

import dev.ext4j.Errno;
import dev.ext4j.Ext4Exception;
import dev.ext4j.fs.Caller;
import dev.ext4j.fs.Ext4FileSystem;
import dev.ext4j.fs.FileAttributes;
import dev.ext4j.fs.Permissions;
import dev.ext4j.fs.StatFs;
import java.io.IOException;
import java.lang.System.Logger.Level;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.Charset;
import java.nio.charset.StandardCharsets;
import java.util.List;
import jnr.ffi.Pointer;
import jnr.ffi.Runtime;
import jnr.ffi.Struct;
import jnr.ffi.types.off_t;
import jnr.ffi.types.size_t;
import ru.serce.jnrfuse.FuseFillDir;
import ru.serce.jnrfuse.FuseStubFS;
import ru.serce.jnrfuse.struct.FileStat;
import ru.serce.jnrfuse.struct.FuseFileInfo;
import ru.serce.jnrfuse.struct.Statvfs;
import ru.serce.jnrfuse.struct.Timespec;

/**
 * The FUSE adapter: each callback resolves its path (through the core's dentry cache) and calls
 * ext4-core. Every callback runs inside {@link #guard}, which hands failures to {@link Errors},
 * the one place where core errors become {@code -errno} and where an unexpected exception becomes
 * EIO and a log line instead of a dead mount. The permission checks the kernel cannot make on a
 * FUSE inode are ext4-core's {@link Permissions}; the ioctls are decoded by {@link Ioctls}. Open
 * files and directories carry their inode number in the FUSE file handle.
 *
 * <p>With {@code checks} (a mount other users can reach), the kernel is not asked to check
 * permissions, since libfuse 2 cannot tell it that ext4j handles POSIX ACLs and it would check the
 * mode bits alone; every callback checks instead, as the VFS would on ext4: search permission on
 * each directory of the path (walked from the root), then the operation's own check
 * ({@link Permissions}), with the caller's supplementary groups read from {@code /proc/PID/status}
 * when a check needs them. The kernel then also leaves the umask to ext4j (FUSE_CAP_DONT_MASK),
 * so that a directory's default ACL replaces it, as on ext4.
 */
public final class Ext4Fuse extends FuseStubFS {
    private static final System.Logger LOG = System.getLogger("ext4j");

    private final Ext4FileSystem fs;
    /**
     * Open files whose last name went. libfuse 2's path API keeps such a file reachable by renaming
     * it to {@code .fuse_hidden*} instead of unlinking it, and unlinks that name after the last
     * release. ext4j turns the rename into the real unlink (the inode goes on the orphan list and is
     * freed at the last release) and answers for the hidden path from this map, so no such name
     * ever reaches the image or a directory listing.
     */
    private final java.util.concurrent.ConcurrentHashMap<String, Long> hidden = new java.util.concurrent.ConcurrentHashMap<>();
    private static final String HIDDEN_PREFIX = ".fuse_hidden";

    /** The charset jnr-ffi uses for path strings; names are converted back to bytes with it. */
    private final Charset charset = Charset.defaultCharset();

    private final ControlFile control;

    /**
     * @param controlName the control file's name at the mount root
     * @param mountPoint  where the filesystem is mounted (for absolute paths given to the control file)
     * @param owner       uid and gid of the mounting user, who owns the control file
     * @param fakeroot    the mounting user counts as root in every check (fuse2fs's fakeroot); the
     *                    server must then be mounted without default_permissions, and reachable by
     *                    the mounting user only
     * @param checks      ext4j checks permissions, ACLs included (the mount must not have
     *                    default_permissions); false when only root, or the fakeroot user, can reach it
     */
    public Ext4Fuse(Ext4FileSystem fs, String controlName, java.nio.file.Path mountPoint, long[] owner, boolean fakeroot, boolean checks) {
        this.fs = fs;
        this.control = new ControlFile(fs, controlName, mountPoint, owner[0], owner[1]);
        this.fakeRootUid = fakeroot ? owner[0] : -1;
        this.checks = checks;
        this.errors = new Errors(fs::recordError, System::nanoTime);
    }

    /**
     * The callback table to hand to libfuse, with flag_utime_omit_ok set: without it libfuse 2
     * drops a utimensat() that sets one time and omits the other (touch -a, touch -m). The flags
     * are C bit-fields in one unsigned int (nullpath_ok, nopath, utime_omit_ok from bit 0) after
     * the 38 function pointers getattr .. bmap of libfuse 2's ABI; jnr-fuse lays them out as one
     * byte each and hides their offsets, so the bit is set in the first byte, found by that count.
     */
    public jnr.ffi.Struct operations() {
        jnr.ffi.Pointer table = jnr.ffi.Struct.getMemory(fuseOperations);
        long flags = 38L * jnr.ffi.Runtime.getSystemRuntime().addressSize();
        table.putByte(flags, (byte) (table.getByte(flags) | UTIME_OMIT_OK));
        return fuseOperations;
    }

    /** flag_utime_omit_ok's bit in struct fuse_operations' flag word. */
    private static final int UTIME_OMIT_OK = 1 << 2;

    private final java.util.function.Supplier<long[]> callerIds = () -> {
        var ctx = getContext();
        return new long[] {ctx.uid.get(), ctx.gid.get()};
    };

    /** The supplementary groups of the requesting thread: libfuse 2's context has none. */
    private final java.util.function.Supplier<long[]> callerGroups = () -> groupsOf(getContext().pid.get());

    /** Errno translation and the catch-all: in {@link Errors} and nowhere else. */
    private final Errors errors;
    /** The uid treated as root (fakeroot), -1 for none. */
    private final long fakeRootUid;
    /** ext4j checks permissions itself (see the class comment). */
    private final boolean checks;

    /** Runs a callback as the request's caller, through {@link Errors}. */
    int guard(String op, String path, Errors.Op body) {
        Caller.fromRequest(callerIds, fakeRootUid, checks ? callerGroups : null);
        return errors.call(op, path, body);
    }

    /**
     * The supplementary groups of process (or thread) {@code pid}: the {@code Groups:} line of
     * {@code /proc/PID/status}, as fuse2fs reads them; none when the process is gone.
     */
    static long[] groupsOf(long pid) {
        try (var lines = java.nio.file.Files.lines(java.nio.file.Path.of("/proc", Long.toString(pid), "status"))) {
            return lines.filter(l -> l.startsWith("Groups:")).findFirst()
                    .map(l -> java.util.Arrays.stream(l.substring("Groups:".length()).trim().split("\\s+"))
                            .filter(g -> !g.isEmpty()).mapToLong(Long::parseLong).toArray())
                    .orElse(new long[0]);
        } catch (IOException | java.io.UncheckedIOException e) {
            return new long[0];
        }
    }

    /** With {@link #checks}: the caller needs {@code mask} (R_OK, W_OK, X_OK) on inode {@code ino}. */
    private void permit(long ino, int mask) throws Ext4Exception {
        if (checks) {
            Permissions.checkPermission(fs.stat(ino), acl(ino), mask, fs.isReadOnly());
        }
    }

    private Permissions.AclSource acl(long ino) {
        return Permissions.AclSource.of(fs, ino);
    }

    /** may_lookup(): search permission on each directory a path walk passes. */
    private final Ext4FileSystem.SearchCheck search = dir -> permit(dir, Permissions.X_OK);

    private byte[] bytes(String s) {
        return s.getBytes(charset);
    }

    /** Xattr names for the core: one char per byte. */
    private String xattrName(String s) {
        return new String(bytes(s), StandardCharsets.ISO_8859_1);
    }

    private long resolve(String path) throws Ext4Exception {
        long ino = resolveOrZero(path);
        if (ino == 0) {
            throw new Ext4Exception(Errno.ENOENT, "no such path");
        }
        return ino;
    }

    /** {@link #resolve}, with 0 for a path that is not there (every create looks its name up first). */
    private long resolveOrZero(String path) throws Ext4Exception {
        Long orphan = hidden.get(path);
        if (!checks) {
            return orphan != null ? orphan : fs.resolveOrZero(bytes(path));
        }
        if (orphan != null) {
            parent(path); // its directories are searched as for any other name
            return orphan;
        }
        return fs.resolveOrZero(bytes(path), search);
    }

    /**
     * The inode of a file the caller has open, when libfuse gives its path instead of its handle:
     * an open file is used without any permission check, as the kernel uses a file descriptor.
     */
    private long opened(String path) throws Ext4Exception {
        Long orphan = hidden.get(path);
        return orphan != null ? orphan : fs.resolve(bytes(path));
    }

    private static long handleOr(FuseFileInfo fi) {
        return fi == null ? 0 : fi.fh.get();
    }

    @Override
    public int getattr(String path, FileStat stat) {
        return guard("getattr", path, () -> {
            if (control.is(path)) {
                fillControl(stat);
                return 0;
            }
            long ino = resolveOrZero(path);
            if (ino == 0) {
                return -Errno.ENOENT.value();
            }
            fill(stat, fs.stat(ino));
            return 0;
        });
    }

    @Override
    public int fgetattr(String path, FileStat stat, FuseFileInfo fi) {
        return guard("fgetattr", path, () -> {
            long ino = handleOr(fi);
            if (control.is(path) || control.owns(ino)) {
                fillControl(stat);
            } else {
                fill(stat, fs.stat(ino != 0 ? ino : opened(path)));
            }
            return 0;
        });
    }

    private void fillControl(FileStat st) {
        fillControl(st, control);
    }

    /** The control file: a regular file of the mounting user, mode 0600, empty (read with direct I/O). */
    static void fillControl(FileStat st, ControlFile control) {
        long now = System.currentTimeMillis() / 1000;
        st.st_ino.set(ControlFile.INO);
        st.st_mode.set(0100600);
        st.st_nlink.set(1);
        st.st_uid.set(control.ownerUid());
        st.st_gid.set(control.ownerGid());
        st.st_size.set(0);
        st.st_blksize.set(4096);
        setTime(st.st_atim, now, 0);
        setTime(st.st_mtim, now, 0);
        setTime(st.st_ctim, now, 0);
    }

    static void fill(FileStat st, FileAttributes a) {
        st.st_ino.set(a.ino());
        st.st_mode.set(a.mode());
        st.st_nlink.set(a.nlink());
        st.st_uid.set(a.uid());
        st.st_gid.set(a.gid());
        st.st_size.set(a.size());
        st.st_blocks.set(a.blocks512());
        st.st_blksize.set(a.blockSize());
        st.st_rdev.set(makedev(a.rdevMajor(), a.rdevMinor()));
        setTime(st.st_atim, a.atimeSeconds(), a.atimeNanos());
        setTime(st.st_mtim, a.mtimeSeconds(), a.mtimeNanos());
        setTime(st.st_ctim, a.ctimeSeconds(), a.ctimeNanos());
    }

    private static void setTime(Timespec t, long sec, int nsec) {
        t.tv_sec.set(sec);
        t.tv_nsec.set(nsec);
    }

    /** glibc's makedev(). */
    static long makedev(long major, long minor) {
        return ((major & 0xFFFFF000L) << 32) | ((major & 0xFFFL) << 8) | ((minor & 0xFFFFFF00L) << 12) | (minor & 0xFFL);
    }

    @Override
    public int readlink(String path, Pointer buf, @size_t long size) {
        return guard("readlink", path, () -> {
            if (size <= 0) {
                return -Errno.EINVAL.value();
            }
            byte[] target = fs.readlink(resolve(path));
            int n = (int) Math.min(target.length, size - 1);
            buf.put(0, target, 0, n);
            buf.putByte(n, (byte) 0);
            return 0;
        });
    }

    @Override
    public int open(String path, FuseFileInfo fi) {
        return guard("open", path, () -> {
            if (control.is(path)) {
                fi.fh.set(control.open(Caller.uid()));
                setDirectIo(fi); // its size says 0: reads must reach read() anyway
                return 0;
            }
            long ino = resolve(path);
            if (checks) {
                Permissions.checkMayOpen(fs.stat(ino), acl(ino), fi.flags.get(), fs.isReadOnly());
            } else {
                // may_open(): the VFS cannot see immutable and append-only on a FUSE inode
                Permissions.checkOpen(fs.stat(ino), fi.flags.get(), fs.isReadOnly());
            }
            fs.open(ino);
            fi.fh.set(ino);
            return 0;
        });
    }

    @Override
    public int read(String path, Pointer buf, @size_t long size, @off_t long offset, FuseFileInfo fi) {
        return guard("read", path, () -> {
            long ino = handleOr(fi);
            if (control.owns(ino)) {
                byte[] reply = control.read(ino, size);
                buf.put(0, reply, 0, reply.length);
                return reply.length;
            }
            if (ino == 0) {
                ino = opened(path);
            }
            return fs.read(ino, offset, view(buf, Math.min(size, 1 << 24)));
        });
    }

    @Override
    public int release(String path, FuseFileInfo fi) {
        return guard("release", path, () -> {
            if (control.owns(fi.fh.get())) {
                control.release(fi.fh.get());
                return 0;
            }
            fs.release(fi.fh.get());
            return 0;
        });
    }

    @Override
    public int opendir(String path, FuseFileInfo fi) {
        return guard("opendir", path, () -> {
            long ino = resolve(path);
            if ((fs.mode(ino) & 0xF000) != 0x4000) {
                return -Errno.ENOTDIR.value();
            }
            permit(ino, Permissions.R_OK);
            fi.fh.set(ino);
            return 0;
        });
    }

    @Override
    public int readdir(String path, Pointer buf, FuseFillDir filler, @off_t long offset, FuseFileInfo fi) {
        return guard("readdir", path, () -> {
            long ino = handleOr(fi);
            if (ino == 0) {
                ino = opened(path);
            }
            FileStat st = new FileStat(Runtime.getSystemRuntime());
            Pointer stp = Struct.getMemory(st);
            long dir = ino;
            fs.readdir(ino, offset, (name, entryIno, fileType, next) -> {
                if (control.isName(dir, name)) {
                    return true; // shadowed by the control file, which is not listed
                }
                byte[] z = new byte[name.length + 1];
                System.arraycopy(name, 0, z, 0, name.length);
                fillDirent(st, entryIno, fileType);
                return filler.apply(buf, ByteBuffer.wrap(z), stp, next) == 0;
            });
            return 0;
        });
    }

    /** ext4 dirent file_type to the S_IFMT bits readdir reports. */
    private static final int[] DT_TO_MODE = {0, 0x8000, 0x4000, 0x2000, 0x6000, 0x1000, 0xC000, 0xA000};

    /** What a directory entry says of its inode, as readdir reports it: the number and the file type's mode bits. */
    static void fillDirent(FileStat st, long ino, int fileType) {
        st.st_ino.set(ino);
        st.st_mode.set(DT_TO_MODE[fileType < DT_TO_MODE.length ? fileType : 0]);
    }

    @Override
    public int releasedir(String path, FuseFileInfo fi) {
        return 0;
    }

    @Override
    public int statfs(String path, Statvfs st) {
        return guard("statfs", path, () -> {
            fill(st, fs.statfs(isUnmount(getContext().pid.get())));
            return 0;
        });
    }

    /**
     * Whether process {@code pid} is umount(8) or fusermount: their statfs comes just before the
     * unmount, which does not wait for the server, so it writes everything home first.
     */
    static boolean isUnmount(long pid) {
        try {
            String comm = java.nio.file.Files.readString(java.nio.file.Path.of("/proc", Long.toString(pid), "comm")).strip();
            return comm.equals("umount") || comm.startsWith("fusermount");
        } catch (java.io.IOException | RuntimeException e) {
            return false; // gone, or in a pid namespace the server does not see (pid 0)
        }
    }

    static void fill(Statvfs st, StatFs s) {
        st.f_bsize.set(s.blockSize());
        st.f_frsize.set(s.blockSize());
        st.f_blocks.set(s.blocks());
        st.f_bfree.set(s.freeBlocks());
        st.f_bavail.set(s.availableBlocks());
        st.f_files.set(s.inodes());
        st.f_ffree.set(s.freeInodes());
        st.f_favail.set(s.freeInodes());
        st.f_namemax.set(s.nameMax());
    }

    @Override
    public int getxattr(String path, String name, Pointer value, @size_t long size) {
        return guard("getxattr", path, () -> {
            if (control.is(path)) {
                return -Errno.ENODATA.value();
            }
            long ino = resolve(path);
            if (checks) {
                Permissions.checkXattr(fs.stat(ino), acl(ino), name, false, fs.isReadOnly());
            }
            byte[] found = fs.findXattr(ino, xattrName(name));
            return found == null ? -Errno.ENODATA.value() : copyOut(found, value, size);
        });
    }

    @Override
    public int listxattr(String path, Pointer list, @size_t long size) {
        return guard("listxattr", path, () -> {
            List<String> names = control.is(path) ? List.of() : fs.listXattrs(resolve(path));
            byte[] out = nameList(names);
            return copyOut(out, list, size);
        });
    }

    /** listxattr's reply: the names, each ended by a NUL. */
    static byte[] nameList(List<String> names) {
        int total = 0;
        for (String n : names) {
            total += n.length() + 1;
        }
        byte[] out = new byte[total];
        int off = 0;
        for (String n : names) {
            byte[] b = n.getBytes(StandardCharsets.ISO_8859_1);
            System.arraycopy(b, 0, out, off, b.length);
            off += b.length + 1;
        }
        return out;
    }

    /** The xattr size protocol: size 0 asks for the length, a short buffer is ERANGE. */
    private static int copyOut(byte[] data, Pointer dst, long size) {
        if (size == 0) {
            return data.length;
        }
        if (size < data.length) {
            return -Errno.ERANGE.value();
        }
        dst.put(0, data, 0, data.length);
        return data.length;
    }

    @Override
    public int access(String path, int mask) {
        return guard("access", path, () -> {
            if (control.is(path)) {
                if (checks) { // as for a 0600 file of the mounting user, whose open ControlFile checks
                    Permissions.checkPermission(new FileAttributes(ControlFile.INO, 0100600, 1, control.ownerUid(), control.ownerGid(),
                            0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4096, 0), Permissions.AclSource.NONE, mask, false);
                }
                return 0;
            }
            long ino = resolve(path);
            // asked only without default_permissions: when every caller is root (see Main), or with checks
            Permissions.checkPermission(fs.stat(ino), checks ? acl(ino) : Permissions.AclSource.NONE, mask, fs.isReadOnly());
            return 0;
        });
    }

    // ---- writes ----

    /** The parent directory's inode and the last component of {@code path}. */
    private record Parent(long dir, byte[] name) {
    }

    private Parent parent(String path) throws Ext4Exception {
        byte[] p = bytes(path);
        int slash = p.length - 1;
        while (slash > 0 && p[slash] != '/') {
            slash--;
        }
        byte[] name = java.util.Arrays.copyOfRange(p, slash + 1, p.length);
        byte[] dirPath = java.util.Arrays.copyOfRange(p, 0, Math.max(slash, 1));
        if (!checks) {
            return new Parent(fs.resolve(dirPath), name);
        }
        long dir = fs.resolveOrZero(dirPath, search);
        if (dir == 0) {
            throw new Ext4Exception(Errno.ENOENT, "no such path");
        }
        if ((fs.mode(dir) & 0xF000) != 0x4000) {
            throw new Ext4Exception(Errno.ENOTDIR, "inode " + dir + " is not a directory");
        }
        search.check(dir);
        return new Parent(dir, name);
    }

    /** With {@link #checks}: may_create() in {@code p}'s directory. */
    private void mayCreate(Parent p) throws Ext4Exception {
        if (checks) {
            Permissions.checkCreate(fs.stat(p.dir()), acl(p.dir()), fs.isReadOnly());
        }
    }

    /** With {@link #checks}: may_delete() of inode {@code victim} from {@code p}'s directory. */
    private void mayDelete(Parent p, long victim) throws Ext4Exception {
        if (checks) {
            Permissions.checkDelete(fs.stat(p.dir()), acl(p.dir()), fs.stat(victim), fs.isReadOnly());
        }
    }

    /**
     * The mode of a new inode in {@code dir}: with {@link #checks} the kernel leaves the umask to
     * ext4j (FUSE_CAP_DONT_MASK), which applies it unless the directory has a default ACL.
     */
    private int createMode(long dir, long mode) throws Ext4Exception {
        return ownUmask ? fs.createMode(dir, (int) mode, getContext().umask.intValue()) : (int) mode;
    }

    /** Whether the kernel agreed to leave the umask to ext4j (set by {@link #init}). */
    private volatile boolean ownUmask;

    /**
     * The parent and name of a new entry. The control file's name at the root is taken, as a
     * reserved name (EEXIST): nothing real is created under it.
     */
    private Parent parentOfNew(String path) throws Ext4Exception {
        if (control.is(path)) {
            throw new Ext4Exception(Errno.EEXIST, "the name is the control file's");
        }
        return parent(path);
    }

    /** EPERM for a change (unlink, rename, chmod, xattrs, ...) aimed at the control file. */
    private void notControl(String path) throws Ext4Exception {
        if (control.is(path)) {
            throw new Ext4Exception(Errno.EPERM, "the control file cannot be changed this way");
        }
    }

    @Override
    public int create(String path, @jnr.ffi.types.mode_t long mode, FuseFileInfo fi) {
        return guard("create", path, () -> {
            Parent p = parentOfNew(path);
            mayCreate(p);
            long ino = fs.mknod(p.dir(), p.name(), createMode(p.dir(), mode), 0, 0, Caller.uid(), Caller.gid());
            fs.open(ino);
            fi.fh.set(ino);
            return 0;
        });
    }

    @Override
    public int mknod(String path, @jnr.ffi.types.mode_t long mode, @jnr.ffi.types.dev_t long rdev) {
        return guard("mknod", path, () -> {
            Parent p = parentOfNew(path);
            mayCreate(p);
            int major = (int) (((rdev >>> 8) & 0xFFF) | ((rdev >>> 32) & ~0xFFFL));
            int minor = (int) ((rdev & 0xFF) | ((rdev >>> 12) & ~0xFFL));
            fs.mknod(p.dir(), p.name(), createMode(p.dir(), mode), major, minor, Caller.uid(), Caller.gid());
            return 0;
        });
    }

    @Override
    public int mkdir(String path, @jnr.ffi.types.mode_t long mode) {
        return guard("mkdir", path, () -> {
            Parent p = parentOfNew(path);
            mayCreate(p);
            fs.mkdir(p.dir(), p.name(), createMode(p.dir(), mode), Caller.uid(), Caller.gid());
            return 0;
        });
    }

    @Override
    public int symlink(String target, String path) {
        return guard("symlink", path, () -> {
            Parent p = parentOfNew(path);
            mayCreate(p);
            fs.symlink(p.dir(), p.name(), bytes(target), Caller.uid(), Caller.gid());
            return 0;
        });
    }

    @Override
    public int link(String oldpath, String newpath) {
        return guard("link", newpath, () -> {
            long ino = resolve(oldpath);
            Parent p = parentOfNew(newpath);
            if (checks && protectedHardlinks()) {
                Permissions.checkLinkSource(fs.stat(ino), acl(ino));
            }
            mayCreate(p);
            fs.link(ino, p.dir(), p.name());
            return 0;
        });
    }

    /** The sysctl fs.protected_hardlinks (may_linkat()), read at each link: 1 unless it says 0. */
    private static boolean protectedHardlinks() {
        try {
            return !java.nio.file.Files.readString(java.nio.file.Path.of("/proc/sys/fs/protected_hardlinks")).trim().equals("0");
        } catch (IOException e) {
            return true;
        }
    }

    @Override
    public int unlink(String path) {
        return guard("unlink", path, () -> {
            notControl(path);
            if (hidden.remove(path) != null) {
                return 0; // libfuse forgetting a hidden name: the inode went at its last release
            }
            Parent p = parent(path);
            if (checks) {
                mayDelete(p, fs.lookup(p.dir(), p.name()));
            }
            fs.unlink(p.dir(), p.name());
            return 0;
        });
    }

    @Override
    public int rmdir(String path) {
        return guard("rmdir", path, () -> {
            notControl(path);
            Parent p = parent(path);
            if (checks) {
                mayDelete(p, fs.lookup(p.dir(), p.name()));
            }
            fs.rmdir(p.dir(), p.name());
            return 0;
        });
    }

    @Override
    public int rename(String oldpath, String newpath) {
        return guard("rename", oldpath, () -> {
            notControl(oldpath);
            notControl(newpath);
            Parent from = parent(oldpath);
            Parent to = parent(newpath);
            if (checks) {
                mayRename(from, to, newpath);
            }
            if (isHiding(newpath)) {
                long ino = resolve(oldpath);
                if (fs.isReferenced(ino)) {
                    fs.unlink(from.dir(), from.name());
                    hidden.put(newpath, ino);
                    return 0;
                }
            }
            fs.rename(from.dir(), from.name(), to.dir(), to.name());
            return 0;
        });
    }

    /**
     * vfs_rename()'s checks: none when both names are one inode; may_delete() of the source;
     * may_delete() of the target or may_create() where it goes; write permission on a directory
     * that changes parent (its ".." changes).
     */
    private void mayRename(Parent from, Parent to, String newpath) throws Ext4Exception {
        long source = fs.lookup(from.dir(), from.name());
        long target = hidden.containsKey(newpath) ? hidden.get(newpath) : fs.resolveOrZero(bytes(newpath));
        if (source == target) {
            return;
        }
        mayDelete(from, source);
        if (target != 0) {
            mayDelete(to, target);
        } else {
            mayCreate(to);
        }
        if (from.dir() != to.dir() && (fs.mode(source) & 0xF000) == 0x4000) {
            permit(source, Permissions.W_OK);
        }
    }

    /** libfuse hiding an open file it was asked to unlink: a fresh .fuse_hidden* name. */
    private boolean isHiding(String newpath) {
        return newpath.substring(newpath.lastIndexOf('/') + 1).startsWith(HIDDEN_PREFIX) && !hidden.containsKey(newpath);
    }

    @Override
    public int chmod(String path, @jnr.ffi.types.mode_t long mode) {
        return guard("chmod", path, () -> {
            notControl(path);
            long ino = resolve(path);
            int m = checks ? Permissions.checkChmod(fs.stat(ino), (int) mode) : (int) mode;
            fs.setAttributes(ino, m, null, null, null, null);
            return 0;
        });
    }

    @Override
    public int chown(String path, @jnr.ffi.types.uid_t long uid, @jnr.ffi.types.gid_t long gid) {
        return guard("chown", path, () -> {
            notControl(path);
            Long u = (int) uid == -1 ? null : uid & 0xFFFFFFFFL;
            Long g = (int) gid == -1 ? null : gid & 0xFFFFFFFFL;
            long ino = resolve(path);
            if (checks) {
                Permissions.checkChown(fs.stat(ino), u, g);
            }
            fs.setAttributes(ino, null, u, g, null, null);
            return 0;
        });
    }

    /** utimensat(2)'s special nanosecond values. */
    private static final long UTIME_NOW = (1L << 30) - 1;
    private static final long UTIME_OMIT = (1L << 30) - 2;

    @Override
    public int utimens(String path, Timespec[] timespec) {
        return guard("utimens", path, () -> {
            if (control.is(path)) {
                return 0;
            }
            long ino = resolve(path);
            Ext4FileSystem.Time atime = time(timespec[0]), mtime = time(timespec[1]);
            if (checks) {
                boolean bothNow = atime == Ext4FileSystem.Time.NOW && mtime == Ext4FileSystem.Time.NOW;
                Permissions.checkTimes(fs.stat(ino), acl(ino), bothNow, fs.isReadOnly());
            }
            fs.setAttributes(ino, null, null, null, atime, mtime);
            return 0;
        });
    }

    private static Ext4FileSystem.Time time(Timespec t) {
        long nsec = t.tv_nsec.longValue();
        if (nsec == UTIME_OMIT) {
            return null;
        }
        return nsec == UTIME_NOW ? Ext4FileSystem.Time.NOW : new Ext4FileSystem.Time(t.tv_sec.get(), (int) nsec);
    }

    @Override
    public int truncate(String path, @off_t long size) {
        return guard("truncate", path, () -> {
            if (control.is(path)) {
                return 0; // the O_TRUNC of "echo cmd > .ext4j-control"
            }
            long ino = resolve(path);
            permit(ino, Permissions.W_OK); // truncate(2); O_TRUNC and ftruncate(2) come with a file handle
            fs.truncate(ino, size);
            return 0;
        });
    }

    @Override
    public int ftruncate(String path, @off_t long size, FuseFileInfo fi) {
        return guard("ftruncate", path, () -> {
            long ino = handleOr(fi);
            if (control.owns(ino)) {
                return 0;
            }
            fs.truncate(ino != 0 ? ino : opened(path), size);
            return 0;
        });
    }

    @Override
    public int write(String path, Pointer buf, @size_t long size, @off_t long offset, FuseFileInfo fi) {
        return guard("write", path, () -> {
            long ino = handleOr(fi);
            if (control.owns(ino)) {
                byte[] data = new byte[(int) size];
                buf.get(0, data, 0, data.length);
                return control.write(ino, data);
            }
            if (ino == 0) {
                ino = opened(path);
            }
            return fs.write(ino, offset, view(buf, size));
        });
    }

    @Override
    public int fallocate(String path, int mode, @off_t long off, @off_t long length, FuseFileInfo fi) {
        return guard("fallocate", path, () -> {
            notControl(path);
            long ino = handleOr(fi);
            fs.fallocate(ino != 0 ? ino : opened(path), mode, off, length);
            return 0;
        });
    }

    @Override
    public int setxattr(String path, String name, Pointer value, @size_t long size, int flags) {
        return guard("setxattr", path, () -> {
            notControl(path);
            byte[] v = new byte[(int) size];
            value.get(0, v, 0, v.length);
            long ino = resolve(path);
            if (checks) {
                Permissions.checkXattr(fs.stat(ino), acl(ino), name, true, fs.isReadOnly());
            }
            fs.setXattr(ino, xattrName(name), v, flags);
            return 0;
        });
    }

    @Override
    public int removexattr(String path, String name) {
        return guard("removexattr", path, () -> {
            notControl(path);
            long ino = resolve(path);
            if (checks) {
                Permissions.checkXattr(fs.stat(ino), acl(ino), name, true, fs.isReadOnly());
            }
            fs.removeXattr(ino, xattrName(name));
            return 0;
        });
    }

    // No flush(): nothing is buffered per open file, and the ENOSYS libfuse answers for it makes
    // the kernel stop sending FLUSH, which saves a round trip on every close(), as with ext4's
    // missing ->flush. Write errors are reported by fsync().

    @Override
    public int fsync(String path, int isdatasync, FuseFileInfo fi) {
        return guard("fsync", path, () -> {
            if (control.is(path)) {
                return 0;
            }
            long ino = handleOr(fi);
            fs.fsync(ino != 0 ? ino : opened(path), isdatasync != 0);
            return 0;
        });
    }

    @Override
    public int fsyncdir(String path, FuseFileInfo fi) {
        // by path only: jnr-fuse binds fsyncdir without libfuse 2's int datasync argument, so fi
        // arrives holding that int (0 or 1), not a pointer, and must not be read
        return guard("fsyncdir", path, () -> {
            fs.fsync(opened(path), false);
            return 0;
        });
    }

    // ---- init and ioctls ----

    /** struct fuse_conn_info of libfuse 2.9: the offsets of {@code capable} and {@code want}. */
    private static final int CONN_CAPABLE = 20, CONN_WANT = 24;
    /** FUSE_CAP_IOCTL_DIR: without it in {@code want}, libfuse 2.9 answers ENOTTY to ioctls on directories. */
    private static final int FUSE_CAP_IOCTL_DIR = 1 << 11;
    /** FUSE_CAP_DONT_MASK: the kernel passes the umask instead of applying it (fuse_context.umask). */
    private static final int FUSE_CAP_DONT_MASK = 1 << 6;

    @Override
    public Pointer init(Pointer conn) {
        if (checks && conn != null && (conn.getInt(CONN_CAPABLE) & FUSE_CAP_DONT_MASK) != 0) {
            conn.putInt(CONN_WANT, conn.getInt(CONN_WANT) | FUSE_CAP_DONT_MASK);
            ownUmask = true;
        }
        if (conn != null && (conn.getInt(CONN_CAPABLE) & FUSE_CAP_IOCTL_DIR) != 0) {
            conn.putInt(CONN_WANT, conn.getInt(CONN_WANT) | FUSE_CAP_IOCTL_DIR);
        } else {
            LOG.log(Level.WARNING, "the kernel cannot pass ioctls on directories: lsattr on directories and online resize will fail");
        }
        return null;
    }

    @Override
    public int ioctl(String path, int cmd, Pointer arg, FuseFileInfo fi, long flags, Pointer data) {
        return guard("ioctl", path, () -> {
            if (control.is(path)) {
                return -Errno.ENOTTY.value();
            }
            int size = Ioctls.argumentSize(cmd);
            long ino = handleOr(fi);
            byte[] out = Ioctls.run(fs, ino != 0 ? ino : opened(path), cmd, copyIn(data, size));
            data.put(0, out, 0, Math.min(out.length, size));
            return 0;
        });
    }

    /** The first {@code size} bytes of an ioctl's argument, in the machine's byte order. */
    private static ByteBuffer copyIn(Pointer data, int size) {
        byte[] b = new byte[size];
        if (size > 0) {
            data.get(0, b, 0, size);
        }
        return ByteBuffer.wrap(b).order(ByteOrder.nativeOrder());
    }

    /**
     * Sets fuse_file_info.direct_io, bit 0 of the bit-field word at offset 20 (after int flags,
     * unsigned long fh_old and int writepage on 64-bit Linux), which jnr-fuse exposes only as padding.
     */
    private static void setDirectIo(FuseFileInfo fi) {
        Pointer p = Struct.getMemory(fi);
        p.putInt(FI_BITFIELDS, p.getInt(FI_BITFIELDS) | 1);
    }

    private static final int FI_BITFIELDS = 20;

    @Override
    public void destroy(Pointer initResult) {
        try {
            fs.close();
        } catch (IOException e) {
            LOG.log(Level.ERROR, "closing the image: {0}", e.toString());
        }
    }

    /**
     * libfuse's request buffer as a ByteBuffer over the same memory, so data is copied once, by
     * the core, and not first into the Java heap. Valid only during the callback.
     */
    static ByteBuffer view(Pointer buf, long size) {
        if (buf.isDirect()) {
            return com.kenai.jffi.MemoryIO.getInstance().newDirectByteBuffer(buf.address(), (int) size);
        }
        throw new IllegalStateException("libfuse passed a buffer that is not native memory");
    }
}
