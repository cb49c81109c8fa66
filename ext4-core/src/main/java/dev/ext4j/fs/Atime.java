package dev.ext4j.fs;

import dev.ext4j.Ext4Exception;
import dev.ext4j.format.Inode;

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
    /** How old atime may get under relatime before a read moves it anyway: a day. */
    private static final long RELATIME_MAX_SECONDS = 24 * 60 * 60;

    private final SuperInfo fs;
    private volatile AtimeMode mode = AtimeMode.RELATIME;
    private volatile boolean noDirAtime;

    Atime(SuperInfo fs) {
        this.fs = fs;
    }

    void set(AtimeMode mode, boolean noDirAtime) {
        this.mode = mode;
        this.noDirAtime = noDirAtime;
    }

    AtimeMode mode() {
        return mode;
    }

    boolean noDirAtime() {
        return noDirAtime;
    }

    /** {@code ino} was read (a file) or listed (a directory): atime moves if the flags say so. */
    void accessed(long ino) throws Ext4Exception {
        if (mode == AtimeMode.NOATIME || fs.state.readOnly() || fs.state.errorReadOnly() != null) {
            return;
        }
        Ext4FileSystem.Time now = Ext4FileSystem.Time.now();
        if (!needsUpdate(fs.inode(ino).inode(), now)) {
            return;
        }
        try (SuperInfo.Entered g = fs.tryEnterGate()) {
            if (g == null) {
                return; // frozen: sb_start_write_trylock() fails and the kernel skips the update too
            }
            try (InodeLocks.Held h = fs.locks.lockAll(ino)) {
                Inode copy = fs.inode(ino).inode().copy();
                if (copy.linksCount() == 0 && !fs.inodes.referenced(ino) || !needsUpdate(copy, now)) {
                    return;
                }
                copy.setAtime(now.seconds(), now.nanos());
                fs.writeInode(ino, copy);
            }
        }
    }

    /** atime_needs_update() with relatime_need_update(): whether a read at {@code now} moves atime. */
    private boolean needsUpdate(Inode i, Ext4FileSystem.Time now) {
        if (i.hasFlag(Inode.NOATIME_FL) || noDirAtime && i.isDirectory()) {
            return false;
        }
        int atime = compare(i.atimeSeconds(), i.atimeNanos(), now.seconds(), now.nanos());
        if (mode == AtimeMode.STRICTATIME) {
            return atime != 0;
        }
        return compare(i.mtimeSeconds(), i.mtimeNanos(), i.atimeSeconds(), i.atimeNanos()) >= 0
                || compare(i.ctimeSeconds(), i.ctimeNanos(), i.atimeSeconds(), i.atimeNanos()) >= 0
                || now.seconds() - i.atimeSeconds() >= RELATIME_MAX_SECONDS;
    }

    private static int compare(long s1, int n1, long s2, int n2) {
        return s1 != s2 ? Long.compare(s1, s2) : Integer.compare(n1, n2);
    }
}
