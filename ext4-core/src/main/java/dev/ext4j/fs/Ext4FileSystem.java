package dev.ext4j.fs;

import dev.ext4j.Errno;
import dev.ext4j.Ext4Exception;
import dev.ext4j.dir.DirSink;
import dev.ext4j.format.Inode;
import dev.ext4j.format.Superblock;
import dev.ext4j.io.BlockDevice;
import dev.ext4j.io.FileBlockDevice;
import dev.ext4j.resize.OnlineResize;
import java.io.Closeable;
import java.io.IOException;
import java.lang.System.Logger.Level;
import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.util.List;

/**
 * A mounted ext4 filesystem, addressed by inode numbers: the public face of ext4-core. Each call
 * passes the write gate where it changes something and goes to the part that does the work, all
 * of which share one {@link SuperInfo}:
 * <ul>
 * <li>{@link Mount}: ext4_fill_super(), the feature gate, journal replay, orphan cleanup;
 * <li>{@link InodeTable}: inodes read, checked, cached and written;
 * <li>{@link Namei}: lookups, readdir and namespace changes;
 * <li>{@link FileRead} and {@link FileWrite} with {@link Writeback}: file data;
 * <li>{@link Xattrs}: extended attributes and ACLs;
 * <li>{@link Evict}: open counts, and freeing inodes whose last name went;
 * <li>{@link SuperState}: the superblock's state, errors and statfs; {@link Flusher}: background writeback;
 * <li>{@link Ioctl}: chattr flags, migrate, resize;
 * <li>{@link Freeze}: freeze, thaw and remount;
 * <li>{@link Mmp}: multi-mount protection of a read-write mount of an mmp image.
 * </ul>
 *
 * <p>Thread-safe; the lock order is in {@link InodeLocks}.
 */
public final class Ext4FileSystem implements Closeable {
    private static final System.Logger LOG = System.getLogger("ext4j");
    public static final long ROOT_INO = 2;
    /** renameat2(2)'s flags, for {@link #rename(long, byte[], long, byte[], int)}. */
    public static final int RENAME_NOREPLACE = 1, RENAME_EXCHANGE = 2, RENAME_WHITEOUT = 4;

    private final SuperInfo s;
    private final Ioctl ioctl;
    private final Freeze freezer;

    Ext4FileSystem(SuperInfo s) {
        this.s = s;
        this.ioctl = s.ioctl;
        this.freezer = new Freeze(s.gate, s.state, s.orphans, s.retry, s.writeback, s.flusher, s.atime, s.mmp, s.readOnly, this::sync);
    }

    /**
     * Opens the image file and mounts it; read-only when the options or the image say so. The
     * filesystem is the whole image, or the partition or offset of {@link MountOptions#placement()}.
     */
    public static Ext4FileSystem open(Path image, MountOptions options) throws Ext4Exception {
        return Mount.open(image, options);
    }

    /**
     * How long a read-write mount of {@code image} may spend waiting on multi-mount protection (the
     * MMP block watched for another node, twice at most), for a caller that times the mount: 0 for
     * an image without mmp, or one that cannot be read (the mount will say why).
     */
    public static long mmpWaitMillis(Path image) {
        try (BlockDevice dev = FileBlockDevice.open(image, true)) {
            return Mmp.longestWaitSeconds(dev, Mount.readSuperblock(dev)) * 1000L;
        } catch (IOException | Ext4Exception e) {
            return 0;
        }
    }

    /**
     * Mounts the filesystem on {@code device}. Refuses unknown incompatible features by name;
     * mounts read-only, saying why, when a feature or state forbids writing.
     */
    public static Ext4FileSystem mount(BlockDevice device, MountOptions options) throws Ext4Exception {
        return Mount.mount(device, options, device.getClass().getSimpleName());
    }

    SuperInfo sbi() {
        return s;
    }

    Writeback writeback() {
        return s.writeback;
    }

    InodeInfo inode(long ino) throws Ext4Exception {
        return s.inode(ino);
    }

    /** Whether changes are refused as on a read-only mount: mounted read-only, or remounted so ({@link #remount}). */
    public boolean isReadOnly() {
        return s.state.readOnly();
    }

    /** What the mount had to say: read-only reasons, ignored checksum failures. */
    public List<String> messages() {
        return s.messages;
    }

    public Superblock superblock() {
        return s.sb;
    }

    /** Records corruption found while serving {@code op} and applies errors=; see {@link SuperState#recordError}. */
    public void recordError(String op, Ext4Exception e) {
        s.state.recordError(op, e);
    }

    /** What errors=panic runs once the error is recorded (the FUSE side unmounts and exits). */
    public void onPanic(Runnable handler) {
        s.state.onPanic(handler);
    }

    /**
     * {@code listener} learns each inode whose block count (what stat shows) writeback changed
     * behind the caller's back: the data blocks it maps count from the write, but the extent tree
     * blocks it needs count only from then.
     */
    public void onBlocksChanged(java.util.function.LongConsumer listener) {
        s.blocksChanged = listener;
    }

    /** A point in time: seconds since the epoch and nanoseconds. */
    public record Time(long seconds, int nanos) {
        /**
         * utimensat(2)'s UTIME_NOW for {@link #setAttributes}: the time of the change, which the
         * kernel allows on an append-only inode (ATTR_TOUCH) where an explicit time is refused.
         */
        public static final Time NOW = new Time(Long.MIN_VALUE, 0);

        public static Time now() {
            java.time.Instant i = java.time.Instant.now();
            return new Time(i.getEpochSecond(), i.getNano());
        }
    }

    // ---- attributes (inode.c: ext4_getattr(), ext4_setattr()) ----

    public FileAttributes stat(long ino) throws Ext4Exception {
        return s.attributes(ino);
    }

    /** The inode's i_mode, type bits included: what a path walk needs of each name, without a stat. */
    public int mode(long ino) throws Ext4Exception {
        return s.inode(ino).inode().mode();
    }

    /**
     * Changes attributes (ext4_setattr()): each argument may be null to leave it alone, and a time
     * may be {@link Time#NOW}. The caller (the kernel, with default_permissions) has checked who
     * may change what; the inode flags it cannot see are checked here as notify_change() does: an
     * immutable inode takes no change (EPERM), an append-only one only times set to now. A chown of
     * a non-directory clears setuid, and setgid when group execute is set, as the VFS does.
     */
    public FileAttributes setAttributes(long ino, Integer mode, Long uid, Long gid, Time atime, Time mtime) throws Ext4Exception {
        s.requireWritable();
        try (WriteGate.Entered g = s.enterGate(); InodeLocks.Held h = s.locks.lockAll(ino)) {
            Inode i = s.inode(ino).inode().copy();
            boolean explicitTimes = (atime != null && atime != Time.NOW) || (mtime != null && mtime != Time.NOW);
            if (mode != null || uid != null || gid != null || explicitTimes) {
                Namei.requireNotImmutable(ino, i); // ATTR_MODE, ATTR_UID, ATTR_GID, ATTR_TIMES_SET
            } else if ((atime != null || mtime != null) && i.hasFlag(Inode.IMMUTABLE_FL)) {
                throw new Ext4Exception(Errno.EPERM, "inode " + ino + " is immutable"); // ATTR_TOUCH
            }
            Time now = Time.now();
            atime = atime == Time.NOW ? now : atime;
            mtime = mtime == Time.NOW ? now : mtime;
            if (mode != null) {
                i.setMode((i.mode() & Inode.S_IFMT) | (mode & 07777));
                s.xattrs.chmodAcl(ino, i);
            }
            if (uid != null || gid != null) {
                if (uid != null) {
                    i.setUid(uid);
                }
                if (gid != null) {
                    i.setGid(gid);
                }
                if (!i.isDirectory() && mode == null) {
                    i.setMode(i.mode() & ~Permissions.setidToDrop(i.mode()));
                }
            }
            if (atime != null) {
                i.setAtime(atime.seconds(), atime.nanos());
            }
            if (mtime != null) {
                i.setMtime(mtime.seconds(), mtime.nanos());
            }
            i.setCtime(now.seconds(), now.nanos());
            s.writeInode(ino, i);
        }
        return stat(ino);
    }

    // ---- names (namei.c, dir.c) ----

    /** Inode of {@code name} in directory {@code dirIno}; ENOENT when absent. */
    public long lookup(long dirIno, byte[] name) throws Ext4Exception {
        return s.namei.lookup(dirIno, name);
    }

    /** Walks an absolute path ("/a/b", bytes, '/'-separated) from the root. */
    public long resolve(byte[] path) throws Ext4Exception {
        return s.namei.resolve(path);
    }

    /** {@link #resolve}, with 0 when a name on the path is not there. */
    public long resolveOrZero(byte[] path) throws Ext4Exception {
        return s.namei.resolveOrZero(path);
    }

    /**
     * {@link #resolveOrZero(byte[])}, calling {@code search} on each directory before a name is
     * looked up in it (the root first), as the kernel's path walk checks search permission
     * (may_lookup()); it may refuse by throwing.
     */
    public long resolveOrZero(byte[] path, SearchCheck search) throws Ext4Exception {
        return s.namei.resolveOrZero(path, search);
    }

    /** A check of a directory a path walk is about to look a name up in. */
    @FunctionalInterface
    public interface SearchCheck {
        void check(long dirIno) throws Ext4Exception;
    }

    /** Lists {@code dirIno} from {@code position}; its atime moves as the atime flags say. */
    public void readdir(long dirIno, long position, DirSink sink) throws Ext4Exception {
        s.namei.readdir(dirIno, position, sink);
        s.atime.accessed(dirIno);
    }

    /** Creates a file, device, fifo or socket ({@code mode} carries the type); returns its inode. */
    public long mknod(long dirIno, byte[] name, int mode, int major, int minor, long uid, long gid) throws Ext4Exception {
        int type = mode & Inode.S_IFMT;
        int m = type == 0 ? mode | Inode.S_IFREG : mode;
        if (type == Inode.S_IFDIR || type == Inode.S_IFLNK) {
            throw new Ext4Exception(Errno.EINVAL, "mknod cannot make directories or symlinks");
        }
        try (WriteGate.Entered g = s.enterGate()) {
            return s.namei.create(dirIno, name, m, major, minor, null, uid, gid);
        }
    }

    public long mkdir(long dirIno, byte[] name, int mode, long uid, long gid) throws Ext4Exception {
        try (WriteGate.Entered g = s.enterGate()) {
            return s.namei.create(dirIno, name, (mode & 07777) | Inode.S_IFDIR, 0, 0, null, uid, gid);
        }
    }

    public long symlink(long dirIno, byte[] name, byte[] target, long uid, long gid) throws Ext4Exception {
        try (WriteGate.Entered g = s.enterGate()) {
            // a failed create is undone, so it may run again
            return s.retry.run(() -> s.namei.create(dirIno, name, Inode.S_IFLNK | 0777, 0, 0, target, uid, gid));
        }
    }

    public void link(long ino, long dirIno, byte[] name) throws Ext4Exception {
        try (WriteGate.Entered g = s.enterGate()) {
            s.namei.link(ino, dirIno, name);
        }
    }

    public void unlink(long dirIno, byte[] name) throws Ext4Exception {
        try (WriteGate.Entered g = s.enterGate()) {
            s.namei.remove(dirIno, name, false);
        }
    }

    public void rmdir(long dirIno, byte[] name) throws Ext4Exception {
        try (WriteGate.Entered g = s.enterGate()) {
            s.namei.remove(dirIno, name, true);
        }
    }

    public void rename(long fromDir, byte[] fromName, long toDir, byte[] toName) throws Ext4Exception {
        rename(fromDir, fromName, toDir, toName, 0);
    }

    /**
     * renameat2(2): {@link #RENAME_NOREPLACE} (EEXIST when the target exists) or {@link #RENAME_EXCHANGE}
     * (the names swap inodes; ENOENT unless both exist); EINVAL for RENAME_WHITEOUT, both, or other bits.
     */
    public void rename(long fromDir, byte[] fromName, long toDir, byte[] toName, int flags) throws Ext4Exception {
        try (WriteGate.Entered g = s.enterGate()) {
            s.namei.rename(fromDir, fromName, toDir, toName, flags);
        }
    }

    /**
     * O_TMPFILE: a regular file with no name, made as {@link #mknod} makes one in {@code dirIno}, on
     * the orphan list and already open once: {@link #release} frees it unless {@link #link} named it.
     */
    public long tmpfile(long dirIno, int mode, long uid, long gid) throws Ext4Exception {
        try (WriteGate.Entered g = s.enterGate()) {
            return s.namei.tmpfile(dirIno, mode, uid, gid);
        }
    }

    /** posix_acl_create(): a new inode's mode in {@code dirIno}, umask applied unless the directory has a default ACL. */
    public int createMode(long dirIno, int mode, int umask) throws Ext4Exception {
        return s.xattrs.createMode(dirIno, mode, umask);
    }

    // ---- file data (readpage.c, symlink.c, the buffered write path) ----

    /**
     * Reads up to {@code dst.remaining()} bytes at {@code offset} into {@code dst}; returns the count,
     * 0 at or past the end of the file. The file's atime moves as the atime flags say ({@link #setAtime}).
     */
    public int read(long ino, long offset, ByteBuffer dst) throws Ext4Exception {
        int n = s.fileRead.read(ino, offset, dst);
        s.atime.accessed(ino);
        return n;
    }

    /**
     * The atime mount flags: relatime (the default), strictatime or noatime, nodiratime, and
     * lazytime (access times kept in memory until the inode is written, or a sync, fsync, freeze
     * or unmount).
     */
    public void setAtime(AtimeMode mode, boolean noDirAtime, boolean lazyTime) {
        s.atime.set(mode, noDirAtime, lazyTime);
    }

    /** The atime rule {@link #setAtime} set. */
    public AtimeMode atimeMode() {
        return s.atime.mode();
    }

    /**
     * Whether a read of {@code ino} now would move its access time: a FUSE transport keeps the
     * kernel's cached pages of a file at open only when not, since reads the cache serves never
     * reach ext4j.
     */
    public boolean readMovesAtime(long ino) throws Ext4Exception {
        return s.atime.readWouldMove(ino);
    }

    /** Target of a symbolic link; reading it moves the link's atime as a read does. */
    public byte[] readlink(long ino) throws Ext4Exception {
        byte[] target = s.fileRead.readlink(ino);
        s.atime.accessed(ino);
        return target;
    }

    public int write(long ino, long offset, ByteBuffer src) throws Ext4Exception {
        try (WriteGate.Entered g = s.enterGate()) {
            return s.retry.run(() -> s.fileWrite.write(ino, offset, src)); // nothing was taken: ENOSPC comes only for none
        }
    }

    /**
     * file_remove_privs() where the kernel leaves it to the filesystem (FUSE_HANDLE_KILLPRIV_V2): a
     * write, truncate or fallocate by a caller without CAP_FSETID clears setuid and setgid
     * ({@link Permissions#setidToDrop}); EPERM on an immutable or append-only inode that has them.
     */
    public void dropSetid(long ino) throws Ext4Exception {
        if (Permissions.setidToDrop(mode(ino)) == 0) {
            return; // the usual case, on every write: without the inode's lock, and not a stat (which marks the times seen)
        }
        s.requireWritable();
        try (WriteGate.Entered g = s.enterGate(); InodeLocks.Held h = s.locks.lockAll(ino)) {
            Inode i = s.inode(ino).inode().copy();
            int drop = Permissions.setidToDrop(i.mode());
            if (drop != 0) {
                Namei.requireNotImmutable(ino, i);
                i.setMode(i.mode() & ~drop);
                Time now = Time.now();
                i.setCtime(now.seconds(), now.nanos());
                s.writeInode(ino, i);
            }
        }
    }

    public void truncate(long ino, long size) throws Ext4Exception {
        try (WriteGate.Entered g = s.enterGate()) {
            s.fileWrite.truncate(ino, size);
        }
    }

    /** fallocate(2): preallocate, KEEP_SIZE, PUNCH_HOLE, ZERO_RANGE, and COLLAPSE_RANGE / INSERT_RANGE ({@link RangeShift}). */
    public void fallocate(long ino, int mode, long offset, long length) throws Ext4Exception {
        try (WriteGate.Entered g = s.enterGate()) {
            // what the first try allocated stays: fallocate again is the rest
            s.retry.run(() -> s.fileWrite.fallocate(ino, mode, offset, length));
        }
    }

    // ---- seek and copy (ext4_llseek(), vfs_copy_file_range()) ----

    /** lseek(2) with SEEK_DATA (3) or SEEK_HOLE (4); ENXIO from i_size on, EINVAL for other whence values. See {@link FileSeek}. */
    public long seek(long ino, long offset, int whence) throws Ext4Exception {
        return s.fileSeek.seek(ino, offset, whence);
    }

    /** copy_file_range(2) inside the image: the bytes copied, short at the source's end. See {@link CopyRange}. */
    public long copyFileRange(long inIno, long inOff, long outIno, long outOff, long len) throws Ext4Exception {
        try (WriteGate.Entered g = s.enterGate()) {
            long n = s.copyRange.copy(inIno, inOff, outIno, outOff, len);
            if (n > 0) {
                s.atime.accessed(inIno); // the source was read, as a splice reads it
            }
            return n;
        }
    }

    /** Whether a file handle or a kernel lookup ({@link #remember}) references {@code ino}. */
    public boolean isReferenced(long ino) {
        return s.evict.referenced(ino);
    }

    /** An open file handle was created for {@code ino}. */
    public void open(long ino) throws Ext4Exception {
        s.evict.open(ino);
    }

    /** The last use of an open file handle ended: an unreferenced inode whose last name went is freed now. */
    public void release(long ino) throws Ext4Exception {
        s.evict.release(ino);
    }

    /**
     * The kernel now refers to {@code ino} by number (FUSE's nlookup: one per LOOKUP, CREATE, MKDIR,
     * SYMLINK, LINK or MKNOD reply): the inode stays in memory, and an unlinked one on disk,
     * until {@link #forget} drops the reference.
     */
    public void remember(long ino) {
        s.evict.remember(ino);
    }

    /** FORGET: the kernel dropped {@code n} lookups of {@code ino}; an unreferenced inode whose last name went is freed now. */
    public void forget(long ino, long n) throws Ext4Exception {
        s.evict.forget(ino, n);
    }

    // ---- xattrs (xattr.c, acl.c) ----

    /** setxattr(2): XATTR_CREATE / XATTR_REPLACE in {@code flags}; ACLs arrive in the VFS format. */
    public void setXattr(long ino, String name, byte[] value, int flags) throws Ext4Exception {
        s.xattrs.set(ino, name, value, flags);
    }

    public void removeXattr(long ino, String name) throws Ext4Exception {
        s.xattrs.remove(ino, name);
    }

    /** Names of the attributes a user can see (system.data and unknown indexes are hidden). */
    public List<String> listXattrs(long ino) throws Ext4Exception {
        return s.xattrs.list(ino);
    }

    /** Value of attribute {@code name} (ISO-8859-1 name); ENODATA when absent. ACLs come in the VFS format. */
    public byte[] getXattr(long ino, String name) throws Ext4Exception {
        return s.xattrs.get(ino, name);
    }

    /** {@link #getXattr}, with null for a missing attribute. */
    public byte[] findXattr(long ino, String name) throws Ext4Exception {
        return s.xattrs.find(ino, name);
    }

    // ---- the filesystem (super.c, fsync.c, ioctl.c) ----

    /** ext4_statfs()'s counts; the statfs umount(8) asks just before it unmounts runs a pending idle flush. */
    public StatFs statfs(boolean unmounting) {
        if (unmounting && s.flusher != null) {
            s.flusher.flushIfIdlePending();
        }
        return s.state.statfs();
    }

    /** What the control file's {@code status} reports. */
    public FsStatus status() {
        return s.state.status(isFrozen());
    }

    /** Makes everything written so far durable (sync(2), syncfs(2)). */
    public void sync() throws Ext4Exception {
        if (!s.state.readOnly()) {
            s.atime.writeLazy(0);
            s.retry.run(s.writeback::writebackAll);
            commit();
        }
    }

    /**
     * fsync(2) and fdatasync(2) of one inode (ext4_sync_file()): its dirty pages (no other file's)
     * written back, the last transaction that changed it committed if it is not yet, and the data made
     * durable; fsyncs that come together share a flush. fdatasync commits too (size, block map).
     */
    public void fsync(long ino, boolean datasync) throws Ext4Exception {
        if (!s.state.readOnly()) {
            if (!datasync) {
                s.atime.writeLazy(ino); // fdatasync leaves times alone, as with the kernel's lazytime
            }
            s.retry.run(() -> s.writeback.writebackFully(ino));
            InodeInfo info = s.inodes.lookup(ino);
            long tid = info == null ? InodeInfo.SYNC_TID_UNKNOWN : info.syncTid();
            if (tid == InodeInfo.SYNC_TID_UNKNOWN) {
                commit();
            } else {
                s.tx.syncTo((int) tid); // ext4_fsync_journal(): the inode's transaction, not whatever runs now
                reportFlusherError();
            }
        }
    }

    /** Commits the running transaction; reports a background writeback that failed since the last one. */
    private void commit() throws Ext4Exception {
        s.tx.sync();
        reportFlusherError();
    }

    private void reportFlusherError() throws Ext4Exception {
        Ext4Exception earlier = s.flusher.takeError();
        if (earlier != null) {
            throw new Ext4Exception(Errno.EIO, "an earlier background write failed: " + earlier.getMessage(), earlier);
        }
    }

    /**
     * freeze_super() / ext4_freeze(): new changes wait (they do not fail), the changes in flight
     * finish, then everything is synced and the superblock written clean, so that the image file
     * can be copied as a consistent, e2fsck-clean filesystem. Reads go on. EBUSY when frozen
     * already, EROFS on a read-only mount.
     */
    public void freeze() throws Ext4Exception {
        freezer.freeze();
    }

    /** thaw_super() / ext4_unfreeze(): the superblock says not clean again, and waiting changes go on. EINVAL when not frozen. */
    public void thaw() throws Ext4Exception {
        freezer.thaw();
    }

    public boolean isFrozen() {
        return s.gate.isFrozen();
    }

    /**
     * remount,ro and remount,rw (ext4_remount()); open files stay open. To read-only: everything is
     * written home as a freeze writes it, then every change gets EROFS and nothing more is written;
     * EBUSY while frozen or while an unlinked file is open (sb_prepare_remount_readonly()). To
     * read-write: the superblock is marked in use again; EROFS for an image opened read-only or
     * after an error (errors=remount-ro, an aborted journal, a lost MMP block), as the kernel.
     */
    public void remount(boolean readOnly) throws Ext4Exception {
        freezer.remount(readOnly);
    }

    /** EXT4_IOC_GETFLAGS: the inode flags a user may see; see {@link Ioctl#getFlags}. */
    public int getFlags(long ino) throws Ext4Exception {
        return ioctl.getFlags(ino);
    }

    /** EXT4_IOC_SETFLAGS: see {@link Ioctl#setFlags} for who may change what. */
    public void setFlags(long ino, int flags) throws Ext4Exception {
        ioctl.setFlags(ino, flags);
    }

    /** EXT4_IOC_MIGRATE: the owner or root converts a block-mapped file to extents; see {@link Ioctl#migrate}. */
    public void migrate(long ino) throws Ext4Exception {
        ioctl.migrate(ino);
    }

    /** EXT4_IOC_RESIZE_FS (root): grows the filesystem online to {@code newBlocksCount} blocks; see {@link Ioctl#resize}. */
    public void resize(long newBlocksCount) throws Ext4Exception {
        ioctl.resize(newBlocksCount);
    }

    /** EXT4_IOC_GROUP_ADD (root): adds one block group a resizer placed; see {@link OnlineResize#addGroup}. */
    public void addGroup(OnlineResize.NewGroup group) throws Ext4Exception {
        ioctl.addGroup(group);
    }

    /**
     * Unmount: a read-write mount writes the free counts and a clean state, then syncs, then releases
     * the MMP block (CLEAN) of an MMP image; a frozen one is thawed first.
     */
    @Override
    public void close() throws IOException {
        try {
            if (!s.readOnly) {
                if (s.gate.isFrozen()) {
                    LOG.log(Level.INFO, "unmounting a frozen filesystem: thawed first");
                    thaw();
                }
                s.flusher.stop();
                s.evict.closeAll();
                if (s.state.remountedReadOnly()) {
                    LOG.log(Level.INFO, "unmount of a filesystem remounted read-only: everything was home already");
                } else if (s.mmp != null && s.mmp.failed()) {
                    LOG.log(Level.ERROR, "unmount after the MMP block was lost: nothing more is written to the image; changes since"
                            + " the last commit are lost; run e2fsck once the other node lets go");
                } else if (s.state.journalAborted()) {
                    // nothing uncommitted may reach home: the image keeps needs_recovery, the
                    // committed log and the recorded error for the next mount or e2fsck
                    LOG.log(Level.ERROR, "unmount after the journal aborted: changes since the last commit are lost; run e2fsck");
                } else {
                    if (s.state.errorReadOnly() == null) {
                        s.atime.writeLazy(0);
                    }
                    s.state.writeClean(() -> s.retry.run(s.writeback::writebackAll));
                    s.writeback.checkPromisesKept();
                }
            }
        } catch (Ext4Exception e) {
            throw new IOException("unmount of a read-write filesystem failed: " + e.getMessage(), e);
        } finally {
            try {
                if (s.mmp != null) {
                    s.mmp.stop(); // last, as ext4_put_super(): the block says CLEAN once all else is home
                }
            } catch (Ext4Exception e) {
                LOG.log(Level.ERROR, "releasing the MMP block failed: {0}", e.getMessage());
            } finally {
                s.device.close();
            }
        }
    }
}
