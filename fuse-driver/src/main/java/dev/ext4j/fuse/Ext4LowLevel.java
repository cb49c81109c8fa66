package dev.ext4j.fuse;

import dev.ext4j.Errno;
import dev.ext4j.Ext4Exception;
import dev.ext4j.fs.Caller;
import dev.ext4j.fs.Ext4FileSystem;
import dev.ext4j.fs.FileAttributes;
import dev.ext4j.fs.Permissions;
import java.io.IOException;
import java.lang.System.Logger.Level;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import jnr.ffi.Pointer;
import jnr.ffi.Runtime;
import jnr.ffi.provider.ClosureManager;
import jnr.ffi.provider.MemoryManager;
import ru.serce.jnrfuse.struct.FileStat;
import ru.serce.jnrfuse.struct.Statvfs;

/**
 * The FUSE adapter over libfuse 3's low-level API: requests name inodes by node id, which is the
 * inode number (FUSE_ROOT_ID stands for inode 2), so every name of a hard link is one inode to the
 * kernel, and the kernel enforces permissions and POSIX ACLs itself (default_permissions with
 * FUSE_POSIX_ACL). Each callback runs inside {@link #guard}, which hands failures to
 * {@link Errors}, the errno translation the libfuse 2 adapter ({@link Ext4Fuse}) shares, and ends
 * the request with the reply or the error. The kernel's lookup counts are the core's
 * ({@link Ext4FileSystem#remember}, {@link Ext4FileSystem#forget}): an unlinked inode lives until
 * the kernel forgets it and its last open file is released.
 */
public final class Ext4LowLevel {
    private static final System.Logger LOG = System.getLogger("ext4j");
    /** FUSE_ROOT_ID, the root directory's node id. */
    static final long ROOT_NODE = 1;
    /** The control file's node id: above every ext4 inode number (32 bits). */
    static final long CONTROL_NODE = 1L << 32;
    private static final int S_IFMT = 0xF000, S_IFDIR = 0x4000;
    /** The largest read or write the kernel is offered (max_write; max_pages follows from it). */
    static final int MAX_IO = 1 << 20;

    private final LibFuse3 lib;
    private final Ext4FileSystem fs;
    private final ControlFile control;
    private final Errors errors;
    private final long fakeRootUid;
    /** How long the kernel may trust names and attributes: ext4j is the image's only writer. */
    private final double timeout;
    /** The kernel checks permissions itself (default_permissions); then it also enforces ACLs. */
    private final boolean kernelChecks;
    /** The callbacks, kept reachable for as long as the table that points at them. */
    private final List<Object> callbacks = new ArrayList<>();
    private final Pointer ops;
    private volatile LibFuse3Session session;
    private final ThreadLocal<Scratch> scratch = ThreadLocal.withInitial(Scratch::new);

    /** One worker thread's native buffers: an entry (with its stat), a statvfs and a data buffer. */
    static final class Scratch {
        final MemoryManager memory = Runtime.getSystemRuntime().getMemoryManager();
        final Pointer entry = memory.allocateDirect(LibFuse3.ENTRY_SIZE, true);
        final FileStat stat = FileStat.of(entry.slice(LibFuse3.ENTRY_ATTR));
        final Statvfs statvfs = Statvfs.of(memory.allocateDirect(256, true));
        Pointer data = memory.allocateDirect(4096);
        long dataSize = 4096;

        /** The entry cleared but for what a directory entry tells: node id 0 (no lookup), st_ino and the file type. */
        void direntOnly(long ino, int fileType) {
            entry.setMemory(0, LibFuse3.ENTRY_SIZE, (byte) 0);
            Ext4Fuse.fillDirent(stat, ino, fileType);
        }

        Pointer data(long size) {
            if (size > dataSize) {
                data = memory.allocateDirect(size);
                dataSize = size;
            }
            return data;
        }
    }

    /** A callback body: ends the request with a reply unless it throws. */
    @FunctionalInterface
    interface Body {
        void run() throws Ext4Exception;
    }

    /**
     * @param controlName the control file's name at the mount root
     * @param mountPoint  where the filesystem is mounted (for absolute paths given to the control file)
     * @param owner       uid and gid of the mounting user, who owns the control file
     * @param fakeroot    the mounting user counts as root in every check; the kernel checks nothing then
     * @param kernelChecks whether the mount has default_permissions
     */
    public Ext4LowLevel(LibFuse3 lib, Ext4FileSystem fs, String controlName, java.nio.file.Path mountPoint, long[] owner,
                        boolean fakeroot, boolean kernelChecks) {
        this.lib = lib;
        this.fs = fs;
        this.control = new ControlFile(fs, controlName, mountPoint, owner[0], owner[1]);
        this.control.onChange(new ControlFile.Changes() {
            @Override
            public void inode(long ino) {
                notifyInode(ino);
            }

            @Override
            public void entry(long dirIno, byte[] name) {
                notifyEntry(dirIno, name);
            }
        });
        fs.onBlocksChanged(this::notifyInode);
        this.fakeRootUid = fakeroot ? owner[0] : -1;
        this.errors = new Errors(fs::recordError, System::nanoTime);
        this.kernelChecks = kernelChecks;
        this.timeout = fs.isReadOnly() ? 3600 : 60;
        this.ops = table();
    }

    /** Mounts on {@code mnt} with libfuse's {@code options} ("-o", "..."): the loop that serves it, not yet serving. */
    public FuseLoop mount(java.nio.file.Path mnt, List<String> options) {
        session = LibFuse3Session.mount(lib, ops, LibFuse3.OP_COUNT, mnt, options);
        readAheadMaxIo(mnt);
        return new FuseLoop(session);
    }

    /**
     * The kernel reads ahead 128 KiB at a time on a FUSE mount (its bdi's default), though READs
     * of up to {@link #MAX_IO} are offered: root raises the mount's read_ahead_kb to that, as
     * {@code blockdev --setra} would for a disk. Anyone else keeps the default.
     */
    static void readAheadMaxIo(java.nio.file.Path mnt) {
        String device = null;
        for (dev.ext4j.io.ImageUse.MountEntry e : dev.ext4j.io.ImageUse.mounts()) {
            if (e.mountPoint().equals(mnt.toString())) {
                device = e.device();
            }
        }
        java.nio.file.Path ra = java.nio.file.Path.of("/sys/class/bdi", String.valueOf(device), "read_ahead_kb");
        if (device != null && java.nio.file.Files.isWritable(ra)) {
            try {
                java.nio.file.Files.writeString(ra, Integer.toString(MAX_IO / 1024));
            } catch (java.io.IOException e) {
                LOG.log(Level.DEBUG, "read_ahead_kb of {0} not raised: {1}", mnt, e.toString());
            }
        }
    }

    // ---- node ids ----

    static long ino(long node) {
        return node == ROOT_NODE ? Ext4FileSystem.ROOT_INO : node;
    }

    static long node(long ino) {
        return ino == Ext4FileSystem.ROOT_INO ? ROOT_NODE : ino;
    }

    // ---- the table ----

    private Pointer table() {
        ClosureManager closures = Runtime.getSystemRuntime().getClosureManager();
        Pointer t = Runtime.getSystemRuntime().getMemoryManager().allocateDirect((long) LibFuse3.OP_COUNT * 8, true);
        class Slots {
            <T> void set(int slot, Class<T> type, T callback) {
                callbacks.add(callback);
                t.putAddress((long) slot * Runtime.getSystemRuntime().addressSize(), closures.getClosurePointer(type, callback).address());
            }
        }
        Slots s = new Slots();
        s.set(LibFuse3.OP_INIT, LibFuse3.Init.class, this::init);
        s.set(LibFuse3.OP_DESTROY, LibFuse3.Destroy.class, this::destroy);
        s.set(LibFuse3.OP_LOOKUP, LibFuse3.InoName.class, this::lookup);
        s.set(LibFuse3.OP_FORGET, LibFuse3.Forget.class, this::forget);
        s.set(LibFuse3.OP_FORGET_MULTI, LibFuse3.ForgetMulti.class, this::forgetMulti);
        s.set(LibFuse3.OP_GETATTR, LibFuse3.InoFi.class, this::getattr);
        s.set(LibFuse3.OP_SETATTR, LibFuse3.SetAttr.class, this::setattr);
        s.set(LibFuse3.OP_READLINK, LibFuse3.Ino.class, this::readlink);
        s.set(LibFuse3.OP_MKNOD, LibFuse3.Mknod.class, this::mknod);
        s.set(LibFuse3.OP_MKDIR, LibFuse3.Mkdir.class, this::mkdir);
        s.set(LibFuse3.OP_UNLINK, LibFuse3.InoName.class, this::unlink);
        s.set(LibFuse3.OP_RMDIR, LibFuse3.InoName.class, this::rmdir);
        s.set(LibFuse3.OP_SYMLINK, LibFuse3.Symlink.class, this::symlink);
        s.set(LibFuse3.OP_RENAME, LibFuse3.Rename.class, this::rename);
        s.set(LibFuse3.OP_LINK, LibFuse3.Link.class, this::link);
        s.set(LibFuse3.OP_OPEN, LibFuse3.InoFi.class, this::open);
        s.set(LibFuse3.OP_READ, LibFuse3.InoSizeOffFi.class, this::read);
        s.set(LibFuse3.OP_WRITE, LibFuse3.Write.class, this::write);
        s.set(LibFuse3.OP_RELEASE, LibFuse3.InoFi.class, this::release);
        s.set(LibFuse3.OP_FSYNC, LibFuse3.InoIntFi.class, this::fsync);
        s.set(LibFuse3.OP_OPENDIR, LibFuse3.InoFi.class, this::opendir);
        s.set(LibFuse3.OP_READDIR, LibFuse3.InoSizeOffFi.class, (req, node, size, off, fi) -> readdir(req, node, size, off, false));
        s.set(LibFuse3.OP_READDIRPLUS, LibFuse3.InoSizeOffFi.class, (req, node, size, off, fi) -> readdir(req, node, size, off, true));
        s.set(LibFuse3.OP_RELEASEDIR, LibFuse3.InoFi.class, (req, node, fi) -> lib.fuse_reply_err(req, 0));
        s.set(LibFuse3.OP_FSYNCDIR, LibFuse3.InoIntFi.class, this::fsync);
        s.set(LibFuse3.OP_STATFS, LibFuse3.Ino.class, this::statfs);
        s.set(LibFuse3.OP_SETXATTR, LibFuse3.SetXattr.class, this::setxattr);
        s.set(LibFuse3.OP_GETXATTR, LibFuse3.GetXattr.class, this::getxattr);
        s.set(LibFuse3.OP_LISTXATTR, LibFuse3.ListXattr.class, this::listxattr);
        s.set(LibFuse3.OP_REMOVEXATTR, LibFuse3.InoName.class, this::removexattr);
        s.set(LibFuse3.OP_ACCESS, LibFuse3.Access.class, this::access);
        s.set(LibFuse3.OP_CREATE, LibFuse3.Create.class, this::create);
        s.set(LibFuse3.OP_IOCTL, LibFuse3.Ioctl.class, this::ioctl);
        s.set(LibFuse3.OP_FALLOCATE, LibFuse3.Fallocate.class, this::fallocate);
        s.set(LibFuse3.OP_LSEEK, LibFuse3.Lseek.class, this::lseek);
        s.set(LibFuse3.OP_COPY_FILE_RANGE, LibFuse3.CopyFileRange.class, this::copyFileRange);
        // no flush: ENOSYS makes the kernel stop sending it (see Ext4Fuse); no getlk, setlk or
        // flock: the kernel keeps POSIX and flock locks itself
        return t;
    }

    // ---- the guard ----

    /** Runs {@code body} as the request's caller; a failure ends the request with its errno (through {@link Errors}). */
    private void guard(Pointer req, String op, long node, Body body) {
        Caller.fromRequest(() -> {
            Pointer ctx = lib.fuse_req_ctx(req);
            return new long[] {ctx.getInt(LibFuse3.CTX_UID) & 0xFFFFFFFFL, ctx.getInt(LibFuse3.CTX_GID) & 0xFFFFFFFFL};
        }, fakeRootUid);
        int res = errors.call(op, "inode " + ino(node), () -> {
            body.run();
            return 0;
        });
        if (res < 0) {
            lib.fuse_reply_err(req, -res);
        }
    }

    static byte[] name(Pointer p) {
        int n = p.indexOf(0, (byte) 0);
        byte[] b = new byte[n];
        p.get(0, b, 0, n);
        return b;
    }

    /** EPERM for a change aimed at the control file. */
    private static void notControl(long node) throws Ext4Exception {
        if (node == CONTROL_NODE) {
            throw new Ext4Exception(Errno.EPERM, "the control file cannot be changed this way");
        }
    }

    /** EEXIST for a new entry under the control file's name. */
    private void notControlName(long dirIno, byte[] name) throws Ext4Exception {
        if (control.isName(dirIno, name)) {
            throw new Ext4Exception(Errno.EEXIST, "the name is the control file's");
        }
    }

    // ---- attributes and entries ----

    /** Fills the scratch entry for {@code ino} (its stat included) and replies with it; the kernel now holds one more lookup. */
    private void replyEntry(Pointer req, long ino) throws Ext4Exception {
        Pointer e = fillEntry(ino);
        fs.remember(ino);
        if (lib.fuse_reply_entry(req, e) != 0) {
            fs.forget(ino, 1); // the request was interrupted: the kernel never saw the entry
        }
    }

    private Pointer fillEntry(long ino) throws Ext4Exception {
        Scratch s = scratch.get();
        FileAttributes a = fs.stat(ino);
        s.entry.setMemory(0, LibFuse3.ENTRY_SIZE, (byte) 0);
        s.entry.putLong(LibFuse3.ENTRY_INO, node(ino));
        s.entry.putLong(LibFuse3.ENTRY_GENERATION, a.generation());
        Ext4Fuse.fill(s.stat, a);
        s.entry.putDouble(LibFuse3.ENTRY_ATTR_TIMEOUT, timeout);
        s.entry.putDouble(LibFuse3.ENTRY_ENTRY_TIMEOUT, timeout);
        return s.entry;
    }

    private void replyAttr(Pointer req, long node) throws Ext4Exception {
        Scratch s = scratch.get();
        s.entry.setMemory(LibFuse3.ENTRY_ATTR, LibFuse3.STAT_SIZE, (byte) 0);
        if (node == CONTROL_NODE) {
            Ext4Fuse.fillControl(s.stat, control);
        } else {
            Ext4Fuse.fill(s.stat, fs.stat(ino(node)));
        }
        lib.fuse_reply_attr(req, s.entry.slice(LibFuse3.ENTRY_ATTR), node == CONTROL_NODE ? 0 : timeout);
    }

    // ---- callbacks ----

    private void init(Pointer userData, Pointer conn) {
        negotiate(conn, kernelChecks);
    }

    /** What ext4j asks of the kernel at INIT (the capabilities in {@code conn}, its sizes); kernelChecks: default_permissions. */
    static void negotiate(Pointer conn, boolean kernelChecks) {
        int capable = conn.getInt(LibFuse3.CONN_CAPABLE);
        int want = conn.getInt(LibFuse3.CONN_WANT);
        int add = LibFuse3.CAP_IOCTL_DIR | LibFuse3.CAP_EXPORT_SUPPORT | LibFuse3.CAP_CACHE_SYMLINKS | LibFuse3.CAP_ASYNC_READ
                | LibFuse3.CAP_READDIRPLUS | LibFuse3.CAP_PARALLEL_DIROPS
                | LibFuse3.CAP_AUTO_INVAL_DATA;
        if (kernelChecks) {
            // the kernel enforces ACLs and caches them, and leaves the umask to us (createMode)
            add |= LibFuse3.CAP_POSIX_ACL | LibFuse3.CAP_DONT_MASK;
        }
        want |= add & capable;
        // O_TRUNC as a SETATTR before the open; no splicing, no writeback cache (ENOSPC comes from write())
        // READDIRPLUS for every listing, not only the first of a directory (READDIRPLUS_AUTO): a
        // walk then looks up no name it listed (f_many_subdirs' 65,000 directories: 14-16 s
        // against 17.5 s)
        want &= ~(LibFuse3.CAP_READDIRPLUS_AUTO | LibFuse3.CAP_ATOMIC_O_TRUNC | LibFuse3.CAP_SPLICE_READ | LibFuse3.CAP_SPLICE_WRITE
                | LibFuse3.CAP_SPLICE_MOVE | LibFuse3.CAP_WRITEBACK_CACHE | LibFuse3.CAP_POSIX_LOCKS | LibFuse3.CAP_FLOCK_LOCKS);
        conn.putInt(LibFuse3.CONN_WANT, want);
        conn.putInt(LibFuse3.CONN_MAX_WRITE, MAX_IO);
        conn.putInt(LibFuse3.CONN_MAX_READAHEAD, MAX_IO); // the kernel keeps the smaller of this and its own
        conn.putInt(LibFuse3.CONN_TIME_GRAN, 1);
        if ((capable & LibFuse3.CAP_IOCTL_DIR) == 0) {
            LOG.log(Level.WARNING, "the kernel cannot pass ioctls on directories: lsattr on directories and online resize will fail");
        }
        LOG.log(Level.DEBUG, "FUSE protocol {0}.{1}, capabilities 0x{2}, wanted 0x{3}", conn.getInt(LibFuse3.CONN_PROTO_MAJOR),
                conn.getInt(LibFuse3.CONN_PROTO_MINOR), Integer.toHexString(capable), Integer.toHexString(want));
    }

    private void destroy(Pointer userData) {
        try {
            fs.close();
        } catch (IOException e) {
            LOG.log(Level.ERROR, "closing the image: {0}", e.toString());
        }
    }

    private void lookup(Pointer req, long parent, Pointer namePtr) {
        guard(req, "lookup", parent, () -> {
            byte[] name = name(namePtr);
            long dir = ino(parent);
            if (control.isName(dir, name)) {
                Scratch s = scratch.get();
                s.entry.setMemory(0, LibFuse3.ENTRY_SIZE, (byte) 0);
                s.entry.putLong(LibFuse3.ENTRY_INO, CONTROL_NODE);
                Ext4Fuse.fillControl(s.stat, control);
                lib.fuse_reply_entry(req, s.entry);
                return;
            }
            long ino = name.length == 1 && name[0] == '.' ? self(dir) : lookupOrZero(dir, name);
            if (ino == 0) {
                // a negative entry the kernel may keep: every new name comes through it
                Scratch s = scratch.get();
                s.entry.setMemory(0, LibFuse3.ENTRY_SIZE, (byte) 0);
                s.entry.putDouble(LibFuse3.ENTRY_ENTRY_TIMEOUT, timeout);
                lib.fuse_reply_entry(req, s.entry);
                return;
            }
            replyEntry(req, ino);
        });
    }

    private long lookupOrZero(long dir, byte[] name) throws Ext4Exception {
        try {
            return fs.lookup(dir, name);
        } catch (Ext4Exception e) {
            if (e.errno() == Errno.ENOENT) {
                return 0;
            }
            throw e;
        }
    }

    /**
     * "." of a node id, as the kernel asks it when it opens a file handle whose inode it forgot
     * (EXPORT_SUPPORT): the inode while it is in use, ENOENT (the kernel's ESTALE) once freed.
     */
    private long self(long ino) throws Ext4Exception {
        if (ino < 1 || ino > fs.superblock().inodesCount()) {
            throw new Ext4Exception(Errno.ENOENT, "no inode " + ino);
        }
        FileAttributes a = fs.stat(ino);
        if (a.mode() == 0 || (a.nlink() == 0 && !fs.isReferenced(ino))) {
            throw new Ext4Exception(Errno.ENOENT, "inode " + ino + " is free");
        }
        return ino;
    }

    private void forget(Pointer req, long node, long nlookup) {
        forgetOne(node, nlookup);
        lib.fuse_reply_none(req);
    }

    private void forgetMulti(Pointer req, long count, Pointer forgets) {
        for (long i = 0; i < count; i++) {
            forgetOne(forgets.getLong(i * LibFuse3.FORGET_DATA_SIZE), forgets.getLong(i * LibFuse3.FORGET_DATA_SIZE + 8));
        }
        lib.fuse_reply_none(req);
    }

    private void forgetOne(long node, long nlookup) {
        if (node == CONTROL_NODE) {
            return;
        }
        errors.call("forget", "inode " + ino(node), () -> {
            fs.forget(ino(node), nlookup);
            return 0;
        });
    }

    private void getattr(Pointer req, long node, Pointer fi) {
        guard(req, "getattr", node, () -> replyAttr(req, node));
    }

    private void setattr(Pointer req, long node, Pointer attr, int toSet, Pointer fi) {
        guard(req, "setattr", node, () -> {
            if (node == CONTROL_NODE) {
                if ((toSet & ~(LibFuse3.SET_ATTR_SIZE | LibFuse3.SET_ATTR_ATIME | LibFuse3.SET_ATTR_MTIME
                        | LibFuse3.SET_ATTR_ATIME_NOW | LibFuse3.SET_ATTR_MTIME_NOW | LibFuse3.SET_ATTR_KILL_SUIDGID)) != 0) {
                    notControl(node);
                }
                replyAttr(req, node); // the O_TRUNC of "echo cmd > .ext4j-control"; touch
                return;
            }
            long ino = ino(node);
            FileStat st = FileStat.of(attr);
            if ((toSet & LibFuse3.SET_ATTR_SIZE) != 0) {
                if ((toSet & LibFuse3.SET_ATTR_KILL_SUIDGID) != 0) {
                    fs.dropSetid(ino);
                }
                fs.truncate(ino, st.st_size.longValue());
            }
            Integer mode = (toSet & LibFuse3.SET_ATTR_MODE) != 0 ? st.st_mode.intValue() : null;
            Long uid = (toSet & LibFuse3.SET_ATTR_UID) != 0 ? st.st_uid.longValue() & 0xFFFFFFFFL : null;
            Long gid = (toSet & LibFuse3.SET_ATTR_GID) != 0 ? st.st_gid.longValue() & 0xFFFFFFFFL : null;
            Ext4FileSystem.Time atime = time(toSet, LibFuse3.SET_ATTR_ATIME, LibFuse3.SET_ATTR_ATIME_NOW, st.st_atim);
            Ext4FileSystem.Time mtime = time(toSet, LibFuse3.SET_ATTR_MTIME, LibFuse3.SET_ATTR_MTIME_NOW, st.st_mtim);
            if (mode != null || uid != null || gid != null || atime != null || mtime != null) {
                fs.setAttributes(ino, mode, uid, gid, atime, mtime);
            }
            replyAttr(req, node);
        });
    }

    static Ext4FileSystem.Time time(int toSet, int set, int now, ru.serce.jnrfuse.struct.Timespec t) {
        if ((toSet & now) != 0) {
            return Ext4FileSystem.Time.NOW;
        }
        return (toSet & set) != 0 ? new Ext4FileSystem.Time(t.tv_sec.get(), (int) t.tv_nsec.longValue()) : null;
    }

    private void readlink(Pointer req, long node) {
        guard(req, "readlink", node, () -> {
            byte[] target = fs.readlink(ino(node));
            byte[] z = java.util.Arrays.copyOf(target, target.length + 1);
            lib.fuse_reply_readlink(req, z);
        });
    }

    /** The caller's umask, which the kernel leaves to the filesystem once it handles ACLs. */
    private int umask(Pointer req) {
        return lib.fuse_req_ctx(req).getInt(LibFuse3.CTX_UMASK);
    }

    private void mknod(Pointer req, long parent, Pointer namePtr, int mode, long rdev) {
        guard(req, "mknod", parent, () -> {
            byte[] name = name(namePtr);
            long dir = ino(parent);
            notControlName(dir, name);
            int major = (int) (((rdev >>> 8) & 0xFFF) | ((rdev >>> 32) & ~0xFFFL));
            int minor = (int) ((rdev & 0xFF) | ((rdev >>> 12) & ~0xFFL));
            replyEntry(req, fs.mknod(dir, name, fs.createMode(dir, mode, umask(req)), major, minor, Caller.uid(), Caller.gid()));
        });
    }

    private void mkdir(Pointer req, long parent, Pointer namePtr, int mode) {
        guard(req, "mkdir", parent, () -> {
            byte[] name = name(namePtr);
            long dir = ino(parent);
            notControlName(dir, name);
            replyEntry(req, fs.mkdir(dir, name, fs.createMode(dir, mode, umask(req)), Caller.uid(), Caller.gid()));
        });
    }

    private void symlink(Pointer req, Pointer link, long parent, Pointer namePtr) {
        guard(req, "symlink", parent, () -> {
            byte[] name = name(namePtr);
            long dir = ino(parent);
            notControlName(dir, name);
            replyEntry(req, fs.symlink(dir, name, name(link), Caller.uid(), Caller.gid()));
        });
    }

    private void link(Pointer req, long node, long newParent, Pointer namePtr) {
        guard(req, "link", node, () -> {
            notControl(node);
            byte[] name = name(namePtr);
            long dir = ino(newParent);
            notControlName(dir, name);
            fs.link(ino(node), dir, name);
            replyEntry(req, ino(node));
        });
    }

    private void unlink(Pointer req, long parent, Pointer namePtr) {
        guard(req, "unlink", parent, () -> {
            byte[] name = name(namePtr);
            notControl(control.isName(ino(parent), name) ? CONTROL_NODE : 0);
            fs.unlink(ino(parent), name);
            lib.fuse_reply_err(req, 0);
        });
    }

    private void rmdir(Pointer req, long parent, Pointer namePtr) {
        guard(req, "rmdir", parent, () -> {
            byte[] name = name(namePtr);
            notControl(control.isName(ino(parent), name) ? CONTROL_NODE : 0);
            fs.rmdir(ino(parent), name);
            lib.fuse_reply_err(req, 0);
        });
    }

    private void rename(Pointer req, long parent, Pointer namePtr, long newParent, Pointer newNamePtr, int flags) {
        guard(req, "rename", parent, () -> {
            byte[] name = name(namePtr);
            byte[] newName = name(newNamePtr);
            if (control.isName(ino(parent), name) || control.isName(ino(newParent), newName)) {
                notControl(CONTROL_NODE);
            }
            fs.rename(ino(parent), name, ino(newParent), newName, flags);
            lib.fuse_reply_err(req, 0);
        });
    }

    private void open(Pointer req, long node, Pointer fi) {
        guard(req, "open", node, () -> {
            int bits = fi.getInt(LibFuse3.FI_BITS);
            if (node == CONTROL_NODE) {
                fi.putLong(LibFuse3.FI_FH, control.open(Caller.uid()));
                fi.putInt(LibFuse3.FI_BITS, bits | LibFuse3.FI_DIRECT_IO); // its size says 0: reads must reach read() anyway
                lib.fuse_reply_open(req, fi);
                return;
            }
            long ino = ino(node);
            // may_open(): the kernel cannot see immutable and append-only on a FUSE inode
            Permissions.checkOpen(fs.stat(ino), fi.getInt(LibFuse3.FI_FLAGS), fs.isReadOnly());
            fs.open(ino);
            fi.putLong(LibFuse3.FI_FH, ino);
            // every change reaches the image through this kernel, so what it cached is still
            // true; but a read it serves from its cache does not move atime
            if (!fs.readMovesAtime(ino)) {
                fi.putInt(LibFuse3.FI_BITS, bits | LibFuse3.FI_KEEP_CACHE);
            }
            if (lib.fuse_reply_open(req, fi) != 0) {
                fs.release(ino);
            }
        });
    }

    private void create(Pointer req, long parent, Pointer namePtr, int mode, Pointer fi) {
        guard(req, "create", parent, () -> {
            byte[] name = name(namePtr);
            long dir = ino(parent);
            int m = fs.createMode(dir, mode, umask(req));
            long ino;
            if (LibFuse3Session.isTmpfile()) {
                ino = fs.tmpfile(dir, m, Caller.uid(), Caller.gid()); // opened once already
            } else {
                notControlName(dir, name);
                ino = fs.mknod(dir, name, m, 0, 0, Caller.uid(), Caller.gid());
                fs.open(ino);
            }
            fi.putLong(LibFuse3.FI_FH, ino);
            Pointer e = fillEntry(ino);
            fs.remember(ino);
            if (lib.fuse_reply_create(req, e, fi) != 0) {
                fs.forget(ino, 1);
                fs.release(ino);
            }
        });
    }

    private void read(Pointer req, long node, long size, long off, Pointer fi) {
        guard(req, "read", node, () -> {
            long fh = fi.getLong(LibFuse3.FI_FH);
            if (control.owns(fh)) {
                byte[] reply = control.read(fh, size);
                Pointer p = scratch.get().data(Math.max(1, reply.length));
                p.put(0, reply, 0, reply.length);
                lib.fuse_reply_buf(req, p, reply.length);
                return;
            }
            long n = Math.min(size, MAX_IO);
            Pointer p = scratch.get().data(n);
            int got = fs.read(ino(node), off, Ext4Fuse.view(p, n));
            lib.fuse_reply_buf(req, p, got);
        });
    }

    private void write(Pointer req, long node, Pointer buf, long size, long off, Pointer fi) {
        guard(req, "write", node, () -> {
            long fh = fi.getLong(LibFuse3.FI_FH);
            if (control.owns(fh)) {
                byte[] data = new byte[(int) size];
                buf.get(0, data, 0, data.length);
                int res = control.write(fh, data);
                if (res < 0) {
                    lib.fuse_reply_err(req, -res);
                } else {
                    lib.fuse_reply_write(req, res);
                }
                return;
            }
            long ino = ino(node);
            if (LibFuse3Session.killsSetid()) {
                fs.dropSetid(ino);
            }
            lib.fuse_reply_write(req, fs.write(ino, off, Ext4Fuse.view(buf, size)));
        });
    }

    private void release(Pointer req, long node, Pointer fi) {
        guard(req, "release", node, () -> {
            long fh = fi.getLong(LibFuse3.FI_FH);
            if (control.owns(fh)) {
                control.release(fh);
            } else {
                fs.release(fh);
            }
            lib.fuse_reply_err(req, 0);
        });
    }

    private void fsync(Pointer req, long node, int datasync, Pointer fi) {
        guard(req, "fsync", node, () -> {
            if (node != CONTROL_NODE) {
                fs.fsync(ino(node), datasync != 0);
            }
            lib.fuse_reply_err(req, 0);
        });
    }

    /**
     * OPENDIR. ENOSYS, unless the mount is strictatime: the kernel then stops sending OPENDIR and
     * RELEASEDIR (two of the five requests a directory walk costs per directory) and keeps each
     * directory's listing in its cache until the directory changes, which every change through it
     * (and the control file's mknod) tells it. A listing it serves from that cache does not move
     * atime, which under relatime moves only after a change (or once a day) anyway.
     */
    private void opendir(Pointer req, long node, Pointer fi) {
        guard(req, "opendir", node, () -> {
            if (fs.atimeMode() != dev.ext4j.fs.AtimeMode.STRICTATIME) {
                lib.fuse_reply_err(req, Errno.ENOSYS.value());
                return;
            }
            long ino = ino(node);
            if (node == CONTROL_NODE || (fs.mode(ino) & S_IFMT) != S_IFDIR) {
                throw new Ext4Exception(Errno.ENOTDIR, "not a directory");
            }
            fi.putLong(LibFuse3.FI_FH, ino);
            lib.fuse_reply_open(req, fi);
        });
    }

    /**
     * READDIR and READDIRPLUS: entries from {@code off} while they fit in {@code size} bytes. An
     * entry of READDIRPLUS carries its attributes and counts as a lookup, except "." and "..",
     * which the kernel does not take as lookups.
     */
    private void readdir(Pointer req, long node, long size, long off, boolean plus) {
        guard(req, "readdir", node, () -> {
            long dir = ino(node);
            Scratch s = scratch.get();
            Pointer buf = s.data(size);
            long[] used = {0};
            fs.readdir(dir, off, (name, entryIno, fileType, next) -> {
                if (control.isName(dir, name)) {
                    return true; // shadowed by the control file, which is not listed
                }
                byte[] z = java.util.Arrays.copyOf(name, name.length + 1);
                Pointer at = buf.slice(used[0]);
                long room = size - used[0];
                long len;
                if (plus) {
                    boolean dots = name.length <= 2 && name[0] == '.' && (name.length == 1 || name[1] == '.');
                    boolean attrs = !dots && entryOrNot(entryIno);
                    if (!attrs) {
                        // no attributes, no lookup: "." and "..", or an inode stat would call corrupt
                        // (listed anyway, as the kernel lists it; its stat then fails)
                        s.direntOnly(entryIno, fileType);
                    }
                    len = lib.fuse_add_direntry_plus(req, at, room, z, s.entry, next);
                    if (len <= room && attrs) {
                        fs.remember(entryIno);
                    }
                } else {
                    s.direntOnly(entryIno, fileType);
                    len = lib.fuse_add_direntry(req, at, room, z, s.entry.slice(LibFuse3.ENTRY_ATTR), next);
                }
                if (len > room) {
                    return false;
                }
                used[0] += len;
                return true;
            });
            lib.fuse_reply_buf(req, buf, used[0]);
        });
    }

    /** Fills the scratch entry for {@code ino}; false when its inode cannot be read. */
    private boolean entryOrNot(long ino) {
        try {
            fillEntry(ino);
            return true;
        } catch (Ext4Exception e) {
            LOG.log(Level.DEBUG, "inode {0} listed without attributes: {1}", ino, e.toString());
            return false;
        }
    }


    private void statfs(Pointer req, long node) {
        guard(req, "statfs", node, () -> {
            Statvfs st = scratch.get().statvfs;
            Ext4Fuse.fill(st, fs.statfs(Ext4Fuse.isUnmount(lib.fuse_req_ctx(req).getInt(LibFuse3.CTX_PID))));
            lib.fuse_reply_statfs(req, jnr.ffi.Struct.getMemory(st));
        });
    }

    private static String xattrName(Pointer p) {
        return new String(name(p), StandardCharsets.ISO_8859_1);
    }

    private void getxattr(Pointer req, long node, Pointer namePtr, long size) {
        guard(req, "getxattr", node, () -> {
            byte[] found = node == CONTROL_NODE ? null : fs.findXattr(ino(node), xattrName(namePtr));
            if (found == null) {
                throw new Ext4Exception(Errno.ENODATA, "no such attribute");
            }
            replyXattr(lib, scratch.get(), req, found, size);
        });
    }

    private void listxattr(Pointer req, long node, long size) {
        guard(req, "listxattr", node, () -> {
            List<String> names = node == CONTROL_NODE ? List.of() : fs.listXattrs(ino(node));
            replyXattr(lib, scratch.get(), req, Ext4Fuse.nameList(names), size);
        });
    }

    /** The xattr size protocol: size 0 asks for the length, a short buffer is ERANGE. */
    static void replyXattr(LibFuse3 lib, Scratch s, Pointer req, byte[] data, long size) throws Ext4Exception {
        if (size == 0) {
            lib.fuse_reply_xattr(req, data.length);
        } else if (size < data.length) {
            throw new Ext4Exception(Errno.ERANGE, "the attribute has " + data.length + " bytes");
        } else {
            Pointer p = s.data(Math.max(1, data.length));
            p.put(0, data, 0, data.length);
            lib.fuse_reply_buf(req, p, data.length);
        }
    }

    private void setxattr(Pointer req, long node, Pointer namePtr, Pointer value, long size, int flags) {
        guard(req, "setxattr", node, () -> {
            notControl(node);
            byte[] v = new byte[(int) size];
            value.get(0, v, 0, v.length);
            fs.setXattr(ino(node), xattrName(namePtr), v, flags);
            lib.fuse_reply_err(req, 0);
        });
    }

    private void removexattr(Pointer req, long node, Pointer namePtr) {
        guard(req, "removexattr", node, () -> {
            notControl(node);
            fs.removeXattr(ino(node), xattrName(namePtr));
            lib.fuse_reply_err(req, 0);
        });
    }

    private void access(Pointer req, long node, int mask) {
        guard(req, "access", node, () -> {
            if (node != CONTROL_NODE) {
                // asked only without default_permissions, when every caller is root (see Main)
                Permissions.checkAccess(fs.stat(ino(node)), mask, fs.isReadOnly());
            }
            lib.fuse_reply_err(req, 0);
        });
    }

    private void ioctl(Pointer req, long node, int cmd, Pointer arg, Pointer fi, int flags, Pointer inBuf, long inSize,
                       long outSize) {
        guard(req, "ioctl", node, () -> {
            if (node == CONTROL_NODE) {
                throw new Ext4Exception(Errno.ENOTTY, "the control file has no ioctls");
            }
            byte[] in = new byte[(int) inSize];
            if (inSize > 0) {
                inBuf.get(0, in, 0, in.length);
            }
            long ino = ino(node);
            byte[] out = Ioctls.run(fs, ino, cmd, ByteBuffer.wrap(in));
            if (Ioctls.changesInode(cmd)) {
                notifyInode(ino); // flags and ctime, or the block count, changed behind the kernel's back
            }
            int n = (int) Math.min(out.length, outSize);
            Pointer p = scratch.get().data(Math.max(1, n));
            p.put(0, out, 0, n);
            lib.fuse_reply_ioctl(req, 0, n == 0 ? null : p, n);
        });
    }

    private void fallocate(Pointer req, long node, int mode, long offset, long length, Pointer fi) {
        guard(req, "fallocate", node, () -> {
            notControl(node);
            dropSetidUnlessRoot(ino(node));
            fs.fallocate(ino(node), mode, offset, length);
            lib.fuse_reply_err(req, 0);
        });
    }

    private void lseek(Pointer req, long node, long off, int whence, Pointer fi) {
        guard(req, "lseek", node, () -> {
            notControl(node);
            // the kernel answers SEEK_SET, SEEK_CUR and SEEK_END itself
            lib.fuse_reply_lseek(req, fs.seek(ino(node), off, whence));
        });
    }

    private void copyFileRange(Pointer req, long inNode, long offIn, Pointer fiIn, long outNode, long offOut, Pointer fiOut,
                               long len, int flags) {
        guard(req, "copy_file_range", inNode, () -> {
            notControl(inNode);
            notControl(outNode);
            dropSetidUnlessRoot(ino(outNode));
            lib.fuse_reply_write(req, fs.copyFileRange(ino(inNode), offIn, ino(outNode), offOut, len));
        });
    }

    /**
     * fallocate and copy_file_range change data as a write does, but with HANDLE_KILLPRIV_V2 the
     * kernel neither clears setuid and setgid for them nor says whether the caller could keep
     * them: any process but root's (the stand-in for CAP_FSETID) clears them.
     */
    private void dropSetidUnlessRoot(long ino) throws Ext4Exception {
        if (session.killPrivV2() && Caller.uid() != 0) {
            fs.dropSetid(ino);
        }
    }

    // ---- telling the kernel ----

    /** The kernel forgets the attributes of {@code ino} (changed by the control file, an ioctl or writeback). */
    private void notifyInode(long ino) {
        LibFuse3Session se = session;
        if (se != null) {
            se.notifyInode(node(ino));
        }
    }

    /** The kernel forgets what it knew of {@code name} in {@code dirIno} (made by the control file). */
    private void notifyEntry(long dirIno, byte[] name) {
        LibFuse3Session se = session;
        if (se != null) {
            se.notifyEntry(node(dirIno), name);
        }
    }
}
