package dev.ext4j.fuse;

import com.kenai.jffi.MemoryIO;
import dev.ext4j.Errno;
import dev.ext4j.Ext4Exception;
import dev.ext4j.cli.Main;
import dev.ext4j.fs.Caller;
import dev.ext4j.fs.Ext4FileSystem;
import dev.ext4j.fs.FileAttributes;
import dev.ext4j.fs.Permissions;
import dev.ext4j.fs.StatFs;
import dev.ext4j.xattr.Acl;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.locks.ReentrantReadWriteLock;
import jnr.ffi.Pointer;
import jnr.ffi.Runtime;
import jnr.ffi.provider.ClosureManager;
import ru.serce.jnrfuse.struct.FileStat;

/**
 * A do-nothing filesystem in memory, served exactly as {@link Ext4LowLevel} serves ext4 (issue 16):
 * the same libfuse 3 binding, session, {@link FuseLoop} and worker count, the same INIT
 * ({@link Ext4LowLevel#negotiate}), mount options, timeouts, reply helpers and directory entry
 * filling, so that what it measures on a workload is what ext4j's transport alone costs there.
 * Behind the callbacks it does only what keeps the files real for the benchmarks: inodes in a
 * table (node id = inode number, never reused; the root is 1), directories as name maps with
 * stable readdir cookies, file data off the heap in lazily allocated chunks, xattrs in a map.
 * FORGET is ignored: an inode's memory goes when its last link and its last open go.
 *
 * <p>Not shipped (test scope). {@code bench/nullfs-java MNT} starts it in the background;
 * {@code umount MNT} ends it.
 */
public final class NullLowLevel {
    private static final int S_IFMT = 0xF000, S_IFDIR = 0x4000, S_IFREG = 0x8000, S_IFLNK = 0xA000, S_ISGID = 02000;
    private static final int NAME_MAX = 255;
    private static final int XATTR_CREATE = 1, XATTR_REPLACE = 2;
    private static final int SEEK_DATA = 3, SEEK_HOLE = 4;
    private static final int RENAME_NOREPLACE = 1;
    private static final String ACCESS_ACL = "system.posix_acl_access", DEFAULT_ACL = "system.posix_acl_default";
    /** As ext4j's read-write mounts. */
    private static final double TIMEOUT = 60;
    private static final MemoryIO MEMORY = MemoryIO.getInstance();

    private final LibFuse3 lib;
    private final boolean kernelChecks;
    private final Errors errors = new Errors((op, e) -> { }, System::nanoTime);
    private final List<Object> callbacks = new ArrayList<>();
    private final Pointer ops;
    private final ThreadLocal<Ext4LowLevel.Scratch> scratch = ThreadLocal.withInitial(Ext4LowLevel.Scratch::new);
    private final Map<Long, Inode> inodes = new ConcurrentHashMap<>();
    private final AtomicLong nextIno = new AtomicLong(Ext4LowLevel.ROOT_NODE + 1);

    /** A do-nothing filesystem whose root belongs to {@code owner} (uid, gid); kernelChecks: default_permissions. */
    NullLowLevel(LibFuse3 lib, long[] owner, boolean kernelChecks) {
        this.lib = lib;
        this.kernelChecks = kernelChecks;
        Inode root = new Inode(Ext4LowLevel.ROOT_NODE, S_IFDIR | 0755, owner[0], owner[1], null);
        root.nlink = 2;
        root.dir.parent = root.ino;
        inodes.put(root.ino, root);
        this.ops = table();
    }

    /** {@code NullLowLevel MNT [-o OPTIONS]}: mounts, serves until unmounted, exits 0. */
    public static void main(String[] args) {
        if (args.length != 1 && !(args.length == 3 && args[1].equals("-o"))) {
            System.err.println("usage: NullLowLevel MOUNTPOINT [-o FUSE_OPTIONS]");
            System.exit(2);
        }
        Path mnt = Path.of(args[0]).toAbsolutePath().normalize();
        List<String> opts = new ArrayList<>(args.length == 3 ? List.of(args[2].split(",")) : List.of());
        long[] ids = Main.ownIds();
        // as Main: the kernel checks permissions whenever someone but root can reach the mount
        boolean kernelChecks = Main.kernelChecksPermissions(ids[0], opts) || opts.contains("default_permissions");
        opts.remove("default_permissions");
        opts.add("fsname=nulljava");
        opts.add("subtype=nulljava");
        if (kernelChecks) {
            opts.add("default_permissions");
        }
        NullLowLevel fs = new NullLowLevel(LibFuse3.load(), ids, kernelChecks);
        FuseLoop loop = fs.mount(mnt, List.of("-o", String.join(",", opts)));
        loop.serve(Integer.getInteger("ext4j.workers", 8)); // Main's WORKER_THREADS
        System.exit(0);
    }

    /** Mounts on {@code mnt} as {@link Ext4LowLevel#mount} does: the loop that serves it, not yet serving. */
    FuseLoop mount(Path mnt, List<String> options) {
        LibFuse3Session session = LibFuse3Session.mount(lib, ops, LibFuse3.OP_COUNT, mnt, options);
        Ext4LowLevel.readAheadMaxIo(mnt);
        return new FuseLoop(session);
    }

    // ---- the filesystem ----

    /** One inode; its attributes are guarded by its monitor, its directory and its data by their own locks. */
    private static final class Inode {
        final long ino;
        final int type;
        int mode;
        long uid, gid, nlink;
        int rdevMajor, rdevMinor;
        long atimeSec, mtimeSec, ctimeSec;
        int atimeNsec, mtimeNsec, ctimeNsec;
        int opens;
        /** Null until the first xattr. */
        Map<String, byte[]> xattrs;
        final Dir dir;
        final Data data;
        final byte[] target;

        Inode(long ino, int mode, long uid, long gid, byte[] target) {
            this.ino = ino;
            this.type = mode & S_IFMT;
            this.mode = mode;
            this.uid = uid;
            this.gid = gid;
            this.nlink = 1;
            this.dir = type == S_IFDIR ? new Dir() : null;
            this.data = type == S_IFREG ? new Data() : null;
            this.target = target;
            Instant now = Instant.now();
            atimeSec = mtimeSec = ctimeSec = now.getEpochSecond();
            atimeNsec = mtimeNsec = ctimeNsec = now.getNano();
        }

        synchronized FileAttributes attributes() {
            long size = data != null ? data.size : dir != null ? 4096 : target != null ? target.length : 0;
            long blocks = data != null ? data.allocated / 512 : dir != null ? 8 : 0;
            return new FileAttributes(ino, mode, nlink, uid, gid, size, blocks, atimeSec, atimeNsec, mtimeSec, mtimeNsec,
                    ctimeSec, ctimeNsec, ctimeSec, ctimeNsec, rdevMajor, rdevMinor, 0, 4096, 0);
        }

        synchronized void changed(boolean modified) {
            Instant now = Instant.now();
            ctimeSec = now.getEpochSecond();
            ctimeNsec = now.getNano();
            if (modified) {
                mtimeSec = ctimeSec;
                mtimeNsec = ctimeNsec;
            }
        }

        synchronized byte[] xattr(String name) {
            return xattrs == null ? null : xattrs.get(name);
        }

        /** Sets ({@code value} not null) or removes xattr {@code name}; with the inode's monitor held. */
        void putXattr(String name, byte[] value) {
            if (value == null) {
                if (xattrs != null) {
                    xattrs.remove(name);
                }
                return;
            }
            if (xattrs == null) {
                xattrs = new LinkedHashMap<>();
            }
            xattrs.put(name, value);
        }

        /** The file type as a directory entry gives it (ext4's codes, which {@link Ext4Fuse#fillDirent} takes). */
        int fileType() {
            return switch (type) {
                case S_IFREG -> 1;
                case S_IFDIR -> 2;
                case 0x2000 -> 3;
                case 0x6000 -> 4;
                case 0x1000 -> 5;
                case 0xC000 -> 6;
                case S_IFLNK -> 7;
                default -> 0;
            };
        }
    }

    /** A directory entry: its name (NUL-terminated, as the direntry helpers take it), inode and readdir cookie. */
    private record Entry(byte[] name, long ino, int fileType, long cookie) {
    }

    /** A directory's entries by name and by cookie; "." and ".." are cookies 1 and 2. Guarded by its monitor. */
    private static final class Dir {
        final Map<String, Entry> byName = new HashMap<>();
        final TreeMap<Long, Entry> byCookie = new TreeMap<>();
        long nextCookie = 3;
        volatile long parent;
        volatile int count;
        volatile boolean removed;

        void add(String name, Inode child) {
            byte[] z = Arrays.copyOf(name.getBytes(StandardCharsets.ISO_8859_1), name.length() + 1);
            Entry e = new Entry(z, child.ino, child.fileType(), nextCookie++);
            byName.put(name, e);
            byCookie.put(e.cookie(), e);
            count++;
        }

        void remove(String name, Entry e) {
            byName.remove(name);
            byCookie.remove(e.cookie());
            count--;
        }
    }

    /**
     * A regular file's bytes, off the heap in chunks of {@link #CHUNK} bytes allocated on the first
     * write into them and grown by doubling from 4 KiB (a 4 KiB file takes 4 KiB). Bytes past the
     * size, and missing chunks, read as zeros.
     */
    private static final class Data {
        static final int SHIFT = 16, CHUNK = 1 << SHIFT, FIRST = 4096;
        final ReentrantReadWriteLock lock = new ReentrantReadWriteLock();
        long[] chunks = new long[0];
        int[] sizes = new int[0];
        volatile long size;
        volatile long allocated;

        /** Copies up to {@code len} bytes at {@code off} to native {@code dst}; the count. */
        int read(long off, long dst, long len) {
            lock.readLock().lock();
            try {
                long n = Math.min(len, size - off);
                for (long done = 0; done < n; ) {
                    long pos = off + done;
                    int i = (int) (pos >>> SHIFT), in = (int) (pos & (CHUNK - 1));
                    int seg = (int) Math.min(CHUNK - in, n - done);
                    int have = i < chunks.length && chunks[i] != 0 ? Math.max(0, Math.min(seg, sizes[i] - in)) : 0;
                    if (have > 0) {
                        MEMORY.copyMemory(chunks[i] + in, dst + done, have);
                    }
                    if (have < seg) {
                        MEMORY.setMemory(dst + done + have, seg - have, (byte) 0);
                    }
                    done += seg;
                }
                return (int) Math.max(0, n);
            } finally {
                lock.readLock().unlock();
            }
        }

        void write(long off, long src, long len) {
            lock.writeLock().lock();
            try {
                for (long done = 0; done < len; ) {
                    long pos = off + done;
                    int i = (int) (pos >>> SHIFT), in = (int) (pos & (CHUNK - 1));
                    int seg = (int) Math.min(CHUNK - in, len - done);
                    MEMORY.copyMemory(src + done, chunk(i, in + seg) + in, seg);
                    done += seg;
                }
                size = Math.max(size, off + len);
            } finally {
                lock.writeLock().unlock();
            }
        }

        /** Chunk {@code i} with at least {@code need} bytes, allocated or grown (zero-filled). */
        private long chunk(int i, int need) {
            if (i >= chunks.length) {
                int n = Math.max(i + 1, chunks.length * 2);
                chunks = Arrays.copyOf(chunks, n);
                sizes = Arrays.copyOf(sizes, n);
            }
            if (sizes[i] < need) {
                int grown = Math.max(FIRST, sizes[i]);
                while (grown < need) {
                    grown *= 2;
                }
                long p = MEMORY.allocateMemory(grown, true);
                if (chunks[i] != 0) {
                    MEMORY.copyMemory(chunks[i], p, sizes[i]);
                    MEMORY.freeMemory(chunks[i]);
                }
                allocated += grown - sizes[i];
                chunks[i] = p;
                sizes[i] = grown;
            }
            return chunks[i];
        }

        /** New size; what is cut off is freed or zeroed, so that bytes past the size stay zeros. */
        void truncate(long newSize) {
            lock.writeLock().lock();
            try {
                if (newSize < size) {
                    for (int i = (int) ((newSize + CHUNK - 1) >>> SHIFT); i < chunks.length; i++) {
                        drop(i);
                    }
                    int i = (int) (newSize >>> SHIFT), in = (int) (newSize & (CHUNK - 1));
                    if (in > 0 && i < chunks.length && chunks[i] != 0 && sizes[i] > in) {
                        MEMORY.setMemory(chunks[i] + in, sizes[i] - in, (byte) 0);
                    }
                }
                size = newSize;
            } finally {
                lock.writeLock().unlock();
            }
        }

        private void drop(int i) {
            if (chunks[i] != 0) {
                MEMORY.freeMemory(chunks[i]);
                allocated -= sizes[i];
                chunks[i] = 0;
                sizes[i] = 0;
            }
        }
    }

    private Inode inode(long node) throws Ext4Exception {
        Inode n = inodes.get(node);
        if (n == null) {
            throw new Ext4Exception(Errno.ENOENT, "no inode " + node);
        }
        return n;
    }

    private Inode dir(long node) throws Ext4Exception {
        Inode n = inode(node);
        if (n.dir == null) {
            throw new Ext4Exception(Errno.ENOTDIR, "not a directory");
        }
        return n;
    }

    private static String string(byte[] name) throws Ext4Exception {
        if (name.length > NAME_MAX) {
            throw new Ext4Exception(Errno.ENAMETOOLONG, "name too long");
        }
        return new String(name, StandardCharsets.ISO_8859_1);
    }

    /** A new inode named {@code name} in {@code parent}, owned by the caller (setgid directories as the kernel does). */
    private Inode make(long parent, byte[] rawName, int mode, int umask, byte[] target, long rdev) throws Ext4Exception {
        String name = string(rawName);
        Inode p = dir(parent);
        boolean isDir = (mode & S_IFMT) == S_IFDIR;
        byte[] defaultAcl = p.xattr(DEFAULT_ACL);
        int m = defaultAcl != null ? mode : mode & ~umask;
        long gid = Caller.gid();
        synchronized (p) {
            if ((p.mode & S_ISGID) != 0) {
                gid = p.gid;
                m |= isDir ? S_ISGID : 0;
            }
        }
        Inode n = new Inode(nextIno.getAndIncrement(), m, Caller.uid(), gid, target);
        n.rdevMajor = (int) (((rdev >>> 8) & 0xFFF) | ((rdev >>> 32) & ~0xFFFL));
        n.rdevMinor = (int) ((rdev & 0xFF) | ((rdev >>> 12) & ~0xFFL));
        if (isDir) {
            n.nlink = 2;
            n.dir.parent = p.ino;
        }
        if (defaultAcl != null && target == null) {
            // posix_acl_create(): the directory's default ACL makes the new inode's
            Acl.Inherited acl = Acl.createMasq(defaultAcl, n.mode);
            n.mode = acl.mode();
            n.putXattr(ACCESS_ACL, acl.access());
            n.putXattr(DEFAULT_ACL, isDir ? defaultAcl : null);
        }
        synchronized (p.dir) {
            if (p.dir.removed) {
                throw new Ext4Exception(Errno.ENOENT, "the directory was removed");
            }
            if (p.dir.byName.containsKey(name)) {
                throw new Ext4Exception(Errno.EEXIST, "exists");
            }
            inodes.put(n.ino, n);
            p.dir.add(name, n);
        }
        entriesChanged(p, isDir ? 1 : 0);
        return n;
    }

    /** A directory's entries changed: mtime and ctime, and its link count by {@code links} (subdirectories). */
    private static void entriesChanged(Inode dir, int links) {
        synchronized (dir) {
            dir.nlink += links;
            dir.changed(true);
        }
    }

    /** One link of {@code n} went ({@code all}: a directory's); the inode goes when no link and no open is left. */
    private void unlinked(Inode n, boolean all) {
        boolean free;
        synchronized (n) {
            n.nlink = all ? 0 : n.nlink - 1;
            n.changed(false);
            free = n.nlink == 0 && n.opens == 0;
        }
        if (free) {
            free(n);
        }
    }

    private void free(Inode n) {
        inodes.remove(n.ino);
        if (n.data != null) {
            n.data.truncate(0);
        }
    }

    // ---- the table, as Ext4LowLevel's ----

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
        s.set(LibFuse3.OP_INIT, LibFuse3.Init.class, (userData, conn) -> Ext4LowLevel.negotiate(conn, kernelChecks));
        s.set(LibFuse3.OP_DESTROY, LibFuse3.Destroy.class, userData -> { });
        s.set(LibFuse3.OP_LOOKUP, LibFuse3.InoName.class, this::lookup);
        s.set(LibFuse3.OP_FORGET, LibFuse3.Forget.class, (req, node, nlookup) -> lib.fuse_reply_none(req));
        s.set(LibFuse3.OP_FORGET_MULTI, LibFuse3.ForgetMulti.class, (req, count, forgets) -> lib.fuse_reply_none(req));
        s.set(LibFuse3.OP_GETATTR, LibFuse3.InoFi.class, this::getattr);
        s.set(LibFuse3.OP_SETATTR, LibFuse3.SetAttr.class, this::setattr);
        s.set(LibFuse3.OP_READLINK, LibFuse3.Ino.class, this::readlink);
        s.set(LibFuse3.OP_MKNOD, LibFuse3.Mknod.class, this::mknod);
        s.set(LibFuse3.OP_MKDIR, LibFuse3.Mkdir.class, this::mkdir);
        s.set(LibFuse3.OP_UNLINK, LibFuse3.InoName.class, (req, parent, name) -> remove(req, parent, name, false));
        s.set(LibFuse3.OP_RMDIR, LibFuse3.InoName.class, (req, parent, name) -> remove(req, parent, name, true));
        s.set(LibFuse3.OP_SYMLINK, LibFuse3.Symlink.class, this::symlink);
        s.set(LibFuse3.OP_RENAME, LibFuse3.Rename.class, this::rename);
        s.set(LibFuse3.OP_LINK, LibFuse3.Link.class, this::link);
        s.set(LibFuse3.OP_OPEN, LibFuse3.InoFi.class, this::open);
        s.set(LibFuse3.OP_READ, LibFuse3.InoSizeOffFi.class, this::read);
        s.set(LibFuse3.OP_WRITE, LibFuse3.Write.class, this::write);
        s.set(LibFuse3.OP_RELEASE, LibFuse3.InoFi.class, this::release);
        s.set(LibFuse3.OP_FSYNC, LibFuse3.InoIntFi.class, this::fsync);
        s.set(LibFuse3.OP_OPENDIR, LibFuse3.InoFi.class, (req, node, fi) -> lib.fuse_reply_err(req, Errno.ENOSYS.value()));
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
        s.set(LibFuse3.OP_FALLOCATE, LibFuse3.Fallocate.class, (req, node, mode, offset, length, fi) ->
                lib.fuse_reply_err(req, Errno.EOPNOTSUPP.value()));
        s.set(LibFuse3.OP_LSEEK, LibFuse3.Lseek.class, this::lseek);
        // as Ext4LowLevel: no flush (ENOSYS stops it), no locks (the kernel keeps them); unlike
        // it: no ioctl and no copy_file_range, which no benchmark asks for
        return t;
    }

    /** As {@link Ext4LowLevel}'s guard: the caller from the request, failures through {@link Errors}. */
    private void guard(Pointer req, String op, long node, Ext4LowLevel.Body body) {
        Caller.fromRequest(() -> {
            Pointer ctx = lib.fuse_req_ctx(req);
            return new long[] {ctx.getInt(LibFuse3.CTX_UID) & 0xFFFFFFFFL, ctx.getInt(LibFuse3.CTX_GID) & 0xFFFFFFFFL};
        }, -1);
        int res = errors.call(op, "inode " + node, () -> {
            body.run();
            return 0;
        });
        if (res < 0) {
            lib.fuse_reply_err(req, -res);
        }
    }

    // ---- attributes and entries ----

    private void replyEntry(Pointer req, Inode n) {
        lib.fuse_reply_entry(req, fillEntry(n));
    }

    private Pointer fillEntry(Inode n) {
        Ext4LowLevel.Scratch s = scratch.get();
        FileAttributes a = n.attributes();
        s.entry.setMemory(0, LibFuse3.ENTRY_SIZE, (byte) 0);
        s.entry.putLong(LibFuse3.ENTRY_INO, n.ino);
        s.entry.putLong(LibFuse3.ENTRY_GENERATION, a.generation());
        Ext4Fuse.fill(s.stat, a);
        s.entry.putDouble(LibFuse3.ENTRY_ATTR_TIMEOUT, TIMEOUT);
        s.entry.putDouble(LibFuse3.ENTRY_ENTRY_TIMEOUT, TIMEOUT);
        return s.entry;
    }

    private void replyAttr(Pointer req, Inode n) {
        Ext4LowLevel.Scratch s = scratch.get();
        s.entry.setMemory(LibFuse3.ENTRY_ATTR, LibFuse3.STAT_SIZE, (byte) 0);
        Ext4Fuse.fill(s.stat, n.attributes());
        lib.fuse_reply_attr(req, s.entry.slice(LibFuse3.ENTRY_ATTR), TIMEOUT);
    }

    // ---- callbacks ----

    private void lookup(Pointer req, long parent, Pointer namePtr) {
        guard(req, "lookup", parent, () -> {
            String name = string(Ext4LowLevel.name(namePtr));
            Inode p = dir(parent);
            long ino;
            if (name.equals(".")) {
                ino = parent;
            } else if (name.equals("..")) {
                ino = p.dir.parent;
            } else {
                synchronized (p.dir) {
                    Entry e = p.dir.byName.get(name);
                    ino = e == null ? 0 : e.ino();
                }
            }
            Inode n = ino == 0 ? null : inodes.get(ino);
            if (n == null) {
                // a negative entry the kernel may keep, as ext4j's
                Ext4LowLevel.Scratch s = scratch.get();
                s.entry.setMemory(0, LibFuse3.ENTRY_SIZE, (byte) 0);
                s.entry.putDouble(LibFuse3.ENTRY_ENTRY_TIMEOUT, TIMEOUT);
                lib.fuse_reply_entry(req, s.entry);
                return;
            }
            replyEntry(req, n);
        });
    }

    private void getattr(Pointer req, long node, Pointer fi) {
        guard(req, "getattr", node, () -> replyAttr(req, inode(node)));
    }

    private void setattr(Pointer req, long node, Pointer attr, int toSet, Pointer fi) {
        guard(req, "setattr", node, () -> {
            Inode n = inode(node);
            FileStat st = FileStat.of(attr);
            if ((toSet & LibFuse3.SET_ATTR_SIZE) != 0) {
                if (n.data == null) {
                    throw new Ext4Exception(n.dir != null ? Errno.EISDIR : Errno.EINVAL, "not a regular file");
                }
                n.data.truncate(st.st_size.longValue());
                n.changed(true);
            }
            Ext4FileSystem.Time atime = Ext4LowLevel.time(toSet, LibFuse3.SET_ATTR_ATIME, LibFuse3.SET_ATTR_ATIME_NOW, st.st_atim);
            Ext4FileSystem.Time mtime = Ext4LowLevel.time(toSet, LibFuse3.SET_ATTR_MTIME, LibFuse3.SET_ATTR_MTIME_NOW, st.st_mtim);
            synchronized (n) {
                if ((toSet & LibFuse3.SET_ATTR_MODE) != 0) {
                    n.mode = n.type | (st.st_mode.intValue() & 07777);
                    byte[] acl = n.xattr(ACCESS_ACL);
                    if (acl != null) {
                        n.putXattr(ACCESS_ACL, Acl.chmod(acl, n.mode)); // posix_acl_chmod()
                    }
                }
                if ((toSet & LibFuse3.SET_ATTR_UID) != 0) {
                    n.uid = st.st_uid.longValue() & 0xFFFFFFFFL;
                }
                if ((toSet & LibFuse3.SET_ATTR_GID) != 0) {
                    n.gid = st.st_gid.longValue() & 0xFFFFFFFFL;
                }
                n.changed(false);
                if (atime != null) {
                    n.atimeSec = atime == Ext4FileSystem.Time.NOW ? n.ctimeSec : atime.seconds();
                    n.atimeNsec = atime == Ext4FileSystem.Time.NOW ? n.ctimeNsec : atime.nanos();
                }
                if (mtime != null) {
                    n.mtimeSec = mtime == Ext4FileSystem.Time.NOW ? n.ctimeSec : mtime.seconds();
                    n.mtimeNsec = mtime == Ext4FileSystem.Time.NOW ? n.ctimeNsec : mtime.nanos();
                }
            }
            replyAttr(req, n);
        });
    }

    private void readlink(Pointer req, long node) {
        guard(req, "readlink", node, () -> {
            Inode n = inode(node);
            if (n.target == null) {
                throw new Ext4Exception(Errno.EINVAL, "not a symlink");
            }
            lib.fuse_reply_readlink(req, Arrays.copyOf(n.target, n.target.length + 1));
        });
    }

    /** The caller's umask, which the kernel leaves to the filesystem once it handles ACLs. */
    private int umask(Pointer req) {
        return lib.fuse_req_ctx(req).getInt(LibFuse3.CTX_UMASK);
    }

    private void mknod(Pointer req, long parent, Pointer namePtr, int mode, long rdev) {
        guard(req, "mknod", parent, () -> replyEntry(req, make(parent, Ext4LowLevel.name(namePtr), mode, umask(req), null, rdev)));
    }

    private void mkdir(Pointer req, long parent, Pointer namePtr, int mode) {
        guard(req, "mkdir", parent, () ->
                replyEntry(req, make(parent, Ext4LowLevel.name(namePtr), S_IFDIR | (mode & 07777), umask(req), null, 0)));
    }

    private void symlink(Pointer req, Pointer link, long parent, Pointer namePtr) {
        guard(req, "symlink", parent, () ->
                replyEntry(req, make(parent, Ext4LowLevel.name(namePtr), S_IFLNK | 0777, 0, Ext4LowLevel.name(link), 0)));
    }

    private void link(Pointer req, long node, long newParent, Pointer namePtr) {
        guard(req, "link", node, () -> {
            String name = string(Ext4LowLevel.name(namePtr));
            Inode n = inode(node);
            if (n.dir != null) {
                throw new Ext4Exception(Errno.EPERM, "a directory cannot be linked");
            }
            Inode p = dir(newParent);
            synchronized (p.dir) {
                if (p.dir.byName.containsKey(name)) {
                    throw new Ext4Exception(Errno.EEXIST, "exists");
                }
                p.dir.add(name, n);
            }
            synchronized (n) {
                n.nlink++;
                n.changed(false);
            }
            entriesChanged(p, 0);
            replyEntry(req, n);
        });
    }

    /** UNLINK and RMDIR. */
    private void remove(Pointer req, long parent, Pointer namePtr, boolean rmdir) {
        guard(req, rmdir ? "rmdir" : "unlink", parent, () -> {
            String name = string(Ext4LowLevel.name(namePtr));
            Inode p = dir(parent);
            Inode n;
            synchronized (p.dir) {
                Entry e = p.dir.byName.get(name);
                if (e == null) {
                    throw new Ext4Exception(Errno.ENOENT, "no such entry");
                }
                n = inode(e.ino());
                if (rmdir && n.dir == null) {
                    throw new Ext4Exception(Errno.ENOTDIR, "not a directory");
                }
                if (!rmdir && n.dir != null) {
                    throw new Ext4Exception(Errno.EISDIR, "a directory");
                }
                if (rmdir && n.dir.count > 0) {
                    throw new Ext4Exception(Errno.ENOTEMPTY, "not empty");
                }
                p.dir.remove(name, e);
                if (rmdir) {
                    n.dir.removed = true;
                }
            }
            entriesChanged(p, rmdir ? -1 : 0);
            unlinked(n, rmdir);
            lib.fuse_reply_err(req, 0);
        });
    }

    private void rename(Pointer req, long parent, Pointer namePtr, long newParent, Pointer newNamePtr, int flags) {
        guard(req, "rename", parent, () -> {
            if ((flags & ~RENAME_NOREPLACE) != 0) {
                throw new Ext4Exception(Errno.EINVAL, "only RENAME_NOREPLACE");
            }
            String name = string(Ext4LowLevel.name(namePtr));
            String newName = string(Ext4LowLevel.name(newNamePtr));
            Inode p = dir(parent);
            Inode q = dir(newParent);
            Inode moved;
            Inode replaced = null;
            Dir first = p.ino <= q.ino ? p.dir : q.dir;
            Dir second = p.ino <= q.ino ? q.dir : p.dir;
            synchronized (first) {
                synchronized (second) {
                    Entry e = p.dir.byName.get(name);
                    if (e == null) {
                        throw new Ext4Exception(Errno.ENOENT, "no such entry");
                    }
                    moved = inode(e.ino());
                    Entry t = q.dir.byName.get(newName);
                    if (t != null) {
                        if (t.ino() == e.ino()) {
                            lib.fuse_reply_err(req, 0); // two names of one inode: nothing to do
                            return;
                        }
                        if ((flags & RENAME_NOREPLACE) != 0) {
                            throw new Ext4Exception(Errno.EEXIST, "exists");
                        }
                        replaced = inode(t.ino());
                        if (replaced.dir != null && moved.dir == null) {
                            throw new Ext4Exception(Errno.EISDIR, "a directory");
                        }
                        if (replaced.dir == null && moved.dir != null) {
                            throw new Ext4Exception(Errno.ENOTDIR, "not a directory");
                        }
                        if (replaced.dir != null && replaced.dir.count > 0) {
                            throw new Ext4Exception(Errno.ENOTEMPTY, "not empty");
                        }
                        q.dir.remove(newName, t);
                        if (replaced.dir != null) {
                            replaced.dir.removed = true;
                        }
                    }
                    p.dir.remove(name, e);
                    q.dir.add(newName, moved);
                    if (moved.dir != null) {
                        moved.dir.parent = q.ino;
                    }
                }
            }
            int dirLink = moved.dir != null ? 1 : 0;
            if (p != q) {
                entriesChanged(p, -dirLink);
            }
            entriesChanged(q, (p != q ? dirLink : 0) - (replaced != null && replaced.dir != null ? 1 : 0));
            moved.changed(false);
            if (replaced != null) {
                unlinked(replaced, replaced.dir != null);
            }
            lib.fuse_reply_err(req, 0);
        });
    }

    private void open(Pointer req, long node, Pointer fi) {
        guard(req, "open", node, () -> {
            int bits = fi.getInt(LibFuse3.FI_BITS);
            Inode n = inode(node);
            Permissions.checkOpen(n.attributes(), fi.getInt(LibFuse3.FI_FLAGS), false);
            synchronized (n) {
                n.opens++;
            }
            fi.putLong(LibFuse3.FI_FH, node);
            fi.putInt(LibFuse3.FI_BITS, bits | LibFuse3.FI_KEEP_CACHE);
            if (lib.fuse_reply_open(req, fi) != 0) {
                closed(n);
            }
        });
    }

    private void create(Pointer req, long parent, Pointer namePtr, int mode, Pointer fi) {
        guard(req, "create", parent, () -> {
            Inode n;
            if (LibFuse3Session.isTmpfile()) {
                n = new Inode(nextIno.getAndIncrement(), mode & ~umask(req), Caller.uid(), Caller.gid(), null);
                n.nlink = 0;
                inodes.put(n.ino, n);
            } else {
                n = make(parent, Ext4LowLevel.name(namePtr), mode, umask(req), null, 0);
            }
            synchronized (n) {
                n.opens++;
            }
            fi.putLong(LibFuse3.FI_FH, n.ino);
            if (lib.fuse_reply_create(req, fillEntry(n), fi) != 0) {
                closed(n);
            }
        });
    }

    private void read(Pointer req, long node, long size, long off, Pointer fi) {
        guard(req, "read", node, () -> {
            Inode n = inode(node);
            long len = Math.min(size, Ext4LowLevel.MAX_IO);
            Pointer p = scratch.get().data(len);
            lib.fuse_reply_buf(req, p, n.data.read(off, p.address(), len));
        });
    }

    private void write(Pointer req, long node, Pointer buf, long size, long off, Pointer fi) {
        guard(req, "write", node, () -> {
            Inode n = inode(node);
            n.data.write(off, buf.address(), size);
            n.changed(true);
            lib.fuse_reply_write(req, size);
        });
    }

    private void release(Pointer req, long node, Pointer fi) {
        guard(req, "release", node, () -> {
            closed(inode(fi.getLong(LibFuse3.FI_FH)));
            lib.fuse_reply_err(req, 0);
        });
    }

    /** One open of {@code n} ended; an inode without links goes with its last open. */
    private void closed(Inode n) {
        boolean free;
        synchronized (n) {
            n.opens--;
            free = n.nlink == 0 && n.opens == 0;
        }
        if (free) {
            free(n);
        }
    }

    private void fsync(Pointer req, long node, int datasync, Pointer fi) {
        guard(req, "fsync", node, () -> lib.fuse_reply_err(req, 0));
    }

    /** READDIR and READDIRPLUS, filled as {@link Ext4LowLevel}'s: entries after cookie {@code off} while they fit in {@code size} bytes. */
    private void readdir(Pointer req, long node, long size, long off, boolean plus) {
        guard(req, "readdir", node, () -> {
            Inode d = dir(node);
            List<Entry> batch = new ArrayList<>();
            int most = (int) Math.min(size / 24 + 1, Integer.MAX_VALUE); // 24 bytes: the smallest direntry
            synchronized (d.dir) {
                if (off < 1) {
                    batch.add(new Entry(new byte[] {'.', 0}, d.ino, 2, 1));
                }
                if (off < 2) {
                    batch.add(new Entry(new byte[] {'.', '.', 0}, d.dir.parent, 2, 2));
                }
                for (Entry e : d.dir.byCookie.tailMap(off, false).values()) {
                    if (batch.size() >= most) {
                        break;
                    }
                    batch.add(e);
                }
            }
            Ext4LowLevel.Scratch s = scratch.get();
            Pointer buf = s.data(size);
            long used = 0;
            for (Entry e : batch) {
                Pointer at = buf.slice(used);
                long room = size - used;
                long len;
                if (plus) {
                    Inode child = e.cookie() <= 2 ? null : inodes.get(e.ino());
                    if (child != null) {
                        fillEntry(child);
                    } else {
                        s.direntOnly(e.ino(), e.fileType()); // "." and "..": no attributes, no lookup
                    }
                    len = lib.fuse_add_direntry_plus(req, at, room, e.name(), s.entry, e.cookie());
                } else {
                    s.direntOnly(e.ino(), e.fileType());
                    len = lib.fuse_add_direntry(req, at, room, e.name(), s.entry.slice(LibFuse3.ENTRY_ATTR), e.cookie());
                }
                if (len > room) {
                    break;
                }
                used += len;
            }
            lib.fuse_reply_buf(req, buf, used);
        });
    }

    private void statfs(Pointer req, long node) {
        guard(req, "statfs", node, () -> {
            ru.serce.jnrfuse.struct.Statvfs st = scratch.get().statvfs;
            Ext4Fuse.fill(st, new StatFs(4096, 1L << 32, 1L << 31, 1L << 31, 1L << 32, 1L << 31, NAME_MAX, false));
            lib.fuse_reply_statfs(req, jnr.ffi.Struct.getMemory(st));
        });
    }

    private static String xattrName(Pointer p) {
        return new String(Ext4LowLevel.name(p), StandardCharsets.ISO_8859_1);
    }

    private void getxattr(Pointer req, long node, Pointer namePtr, long size) {
        guard(req, "getxattr", node, () -> {
            Inode n = inode(node);
            byte[] found;
            synchronized (n) {
                found = n.xattrs == null ? null : n.xattrs.get(xattrName(namePtr));
            }
            if (found == null) {
                throw new Ext4Exception(Errno.ENODATA, "no such attribute");
            }
            Ext4LowLevel.replyXattr(lib, scratch.get(), req, found, size);
        });
    }

    private void listxattr(Pointer req, long node, long size) {
        guard(req, "listxattr", node, () -> {
            Inode n = inode(node);
            List<String> names;
            synchronized (n) {
                names = n.xattrs == null ? List.of() : List.copyOf(n.xattrs.keySet());
            }
            Ext4LowLevel.replyXattr(lib, scratch.get(), req, Ext4Fuse.nameList(names), size);
        });
    }

    private void setxattr(Pointer req, long node, Pointer namePtr, Pointer value, long size, int flags) {
        guard(req, "setxattr", node, () -> {
            Inode n = inode(node);
            String name = xattrName(namePtr);
            byte[] v = new byte[(int) size];
            value.get(0, v, 0, v.length);
            synchronized (n) {
                boolean has = n.xattrs != null && n.xattrs.containsKey(name);
                if ((flags & XATTR_CREATE) != 0 && has) {
                    throw new Ext4Exception(Errno.EEXIST, "the attribute exists");
                }
                if ((flags & XATTR_REPLACE) != 0 && !has) {
                    throw new Ext4Exception(Errno.ENODATA, "no such attribute");
                }
                if (name.equals(DEFAULT_ACL) && n.dir == null) {
                    throw new Ext4Exception(Errno.EACCES, "a default ACL needs a directory");
                }
                if (name.equals(ACCESS_ACL)) {
                    // as ext4_set_acl(): the ACL sets the permission bits; one that says no more is not kept
                    n.mode = (n.mode & ~0777) | Acl.permissionBits(v);
                    if (Acl.equivalentToMode(v)) {
                        v = null;
                    }
                }
                n.putXattr(name, v);
                n.changed(false);
            }
            lib.fuse_reply_err(req, 0);
        });
    }

    private void removexattr(Pointer req, long node, Pointer namePtr) {
        guard(req, "removexattr", node, () -> {
            Inode n = inode(node);
            synchronized (n) {
                if (n.xattrs == null || n.xattrs.remove(xattrName(namePtr)) == null) {
                    throw new Ext4Exception(Errno.ENODATA, "no such attribute");
                }
                n.changed(false);
            }
            lib.fuse_reply_err(req, 0);
        });
    }

    private void access(Pointer req, long node, int mask) {
        guard(req, "access", node, () -> {
            // asked only without default_permissions, when every caller is root (as Ext4LowLevel)
            Permissions.checkAccess(inode(node).attributes(), mask, false);
            lib.fuse_reply_err(req, 0);
        });
    }

    private void lseek(Pointer req, long node, long off, int whence, Pointer fi) {
        guard(req, "lseek", node, () -> {
            long size = inode(node).attributes().size();
            if (off >= size || (whence != SEEK_DATA && whence != SEEK_HOLE)) {
                throw new Ext4Exception(Errno.ENXIO, "past the end");
            }
            lib.fuse_reply_lseek(req, whence == SEEK_DATA ? off : size); // no holes are told
        });
    }
}
