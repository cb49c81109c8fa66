package dev.ext4j.fs;

import dev.ext4j.Ext4Exception;
import dev.ext4j.format.Inode;
import java.lang.System.Logger.Level;
import java.util.List;

/**
 * Access times (the kernel's touch_atime() and atime_needs_update() in fs/inode.c): a read or a
 * readdir moves i_atime as the mount's atime flags say. The rule is checked on the inode as it is,
 * without a lock; only an update takes the inode's lock and writes it, so with the default,
 * relatime, a file read again and again is written once a day at most.
 *
 * <p>As the kernel, an update is skipped, not waited for, while the filesystem is frozen, and
 * never made on a read-only mount or after an error made it read-only.
 */
final class Atime {
    private static final System.Logger LOG = System.getLogger("ext4j");

    /** How old atime may get under relatime before a read moves it anyway: a day. */
    private static final long RELATIME_MAX_SECONDS = 24 * 60 * 60;

    /** What an atime update needs from the mounted filesystem. */
    interface Host {
        /** sb_start_write(): passes the write gate before any inode lock is taken. */
        WriteGate.Entered enterGate() throws Ext4Exception;

        /** sb_start_write_trylock(): null while the filesystem is frozen or remounted read-only. */
        WriteGate.Entered tryEnterGate();

        /** Stamps and writes a changed inode; the caller holds its lock. */
        InodeInfo writeInode(long ino, Inode changed) throws Ext4Exception;
    }

    private final InodeTable inodes;
    private final InodeLocks locks;
    private final SuperState state;
    private final Host host;
    private volatile AtimeMode mode = AtimeMode.RELATIME;
    private volatile boolean noDirAtime;
    private volatile boolean lazy;

    Atime(InodeTable inodes, InodeLocks locks, SuperState state, Host host) {
        this.inodes = inodes;
        this.locks = locks;
        this.state = state;
        this.host = host;
    }

    void set(AtimeMode mode, boolean noDirAtime, boolean lazyTime) {
        this.mode = mode;
        this.noDirAtime = noDirAtime;
        this.lazy = lazyTime;
    }

    AtimeMode mode() {
        return mode;
    }

    boolean noDirAtime() {
        return noDirAtime;
    }

    /**
     * {@code ino} was read (a file) or listed (a directory): atime moves if the flags say so. As
     * touch_atime(), it never fails the read: an update the filesystem cannot make now (a journal
     * that aborted, a full journal, an error that made it read-only) is left out.
     */
    void accessed(long ino) {
        if (mode == AtimeMode.NOATIME || state.readOnly() || state.errorReadOnly() != null || state.journalAborted()) {
            return;
        }
        try {
            update(ino, Ext4FileSystem.Time.now());
        } catch (Ext4Exception e) {
            LOG.log(Level.DEBUG, "inode {0}: atime not updated: {1}", ino, e.getMessage());
        }
    }

    /** Whether a read of {@code ino} now would move its atime (so a cache that hides reads from ext4j must not serve it). */
    boolean readWouldMove(long ino) throws Ext4Exception {
        if (mode == AtimeMode.NOATIME || state.readOnly() || state.errorReadOnly() != null || state.journalAborted()) {
            return false;
        }
        return needsUpdate(inodes.get(ino), Ext4FileSystem.Time.now());
    }

    private void update(long ino, Ext4FileSystem.Time now) throws Ext4Exception {
        if (!needsUpdate(inodes.get(ino), now)) {
            return;
        }
        try (WriteGate.Entered g = host.tryEnterGate()) {
            if (g == null) {
                return; // frozen: sb_start_write_trylock() fails and the kernel skips the update too
            }
            try (InodeLocks.Held h = locks.lockAll(ino)) {
                InodeInfo info = inodes.get(ino);
                Inode copy = info.inode().copy();
                if (copy.linksCount() == 0 && !inodes.referenced(ino) || !needsUpdate(info, now)) {
                    return;
                }
                if (lazy) {
                    inodes.setLazyAtime(ino, now); // I_DIRTY_TIME: written later
                    return;
                }
                copy.setAtime(now.seconds(), now.nanos());
                host.writeInode(ino, copy);
            }
        }
    }

    /**
     * lazytime's access times written home (a sync, fsync, freeze or unmount): {@code ino}'s, or
     * every inode's with {@code ino} 0. The inode's write takes the time along.
     */
    void writeLazy(long ino) throws Ext4Exception {
        for (long i : ino != 0 ? List.of(ino) : inodes.withLazyAtime()) {
            InodeInfo info = inodes.pinned(i);
            if (info == null || info.lazyAtime() == null) {
                continue;
            }
            try (WriteGate.Entered g = host.enterGate(); InodeLocks.Held h = locks.lockAll(i)) {
                host.writeInode(i, inodes.get(i).inode().copy());
            }
        }
    }

    /** The access time as stat shows it: lazytime's in-memory one when there is one. */
    static Ext4FileSystem.Time of(InodeInfo info) {
        Ext4FileSystem.Time lazy = info.lazyAtime();
        Inode i = info.inode();
        return lazy != null ? lazy : new Ext4FileSystem.Time(i.atimeSeconds(), i.atimeNanos());
    }

    /** atime_needs_update() with relatime_need_update(): whether a read at {@code now} moves atime. */
    private boolean needsUpdate(InodeInfo info, Ext4FileSystem.Time now) {
        Inode i = info.inode();
        if (i.hasFlag(Inode.NOATIME_FL) || noDirAtime && i.isDirectory()) {
            return false;
        }
        Ext4FileSystem.Time atime = of(info);
        if (mode == AtimeMode.STRICTATIME) {
            return compare(atime, now.seconds(), now.nanos()) != 0;
        }
        return compare(atime, i.mtimeSeconds(), i.mtimeNanos()) <= 0
                || compare(atime, i.ctimeSeconds(), i.ctimeNanos()) <= 0
                || now.seconds() - atime.seconds() >= RELATIME_MAX_SECONDS;
    }

    /** {@code t} against the time {@code seconds}, {@code nanos}: negative, zero or positive. */
    static int compare(Ext4FileSystem.Time t, long seconds, int nanos) {
        return t.seconds() != seconds ? Long.compare(t.seconds(), seconds) : Integer.compare(t.nanos(), nanos);
    }
}
