package dev.ext4j.fs;

import dev.ext4j.journal.Transactions;
import java.util.concurrent.locks.ReentrantReadWriteLock;

/**
 * Per-inode read-write locks (the kernel's i_rwsem), striped by inode number so memory stays
 * bounded. Lock order, everywhere: the write gate first ({@link WriteGate}, entered shared by every
 * change, as sb_start_write() comes before i_rwsem; a freeze waits for it to drain and never holds
 * an inode lock), then the rename lock (cross-directory renames only), then every
 * inode lock an operation needs, taken at once by {@link #lockAll} in ascending stripe order (each
 * stripe once, so two inodes sharing a stripe cannot deadlock), then the journal handle (started
 * by {@link #lockAll} right after the inode locks, as the kernel starts its handle after i_rwsem
 * and before i_data_sem; a commit run by a starter whose transaction is full sits here too), then
 * the allocator's group locks (never two at once), then the orphan list's monitor
 * ({@link Orphans}), then the superblock's. Innermost of all, the install monitors
 * ({@link #installLock}), held only around the block cache and the inode cache while an inode is
 * loaded or written, never while taking another lock: loading an inode needs no inode lock, so it
 * may happen under any of them. The block cache's per-block locks and its flush lock are leaves
 * below everything, with the journal's state monitor below them.
 *
 * <p>The rule that keeps commits from deadlocking: a thread that runs a handle never waits for an
 * inode lock (a commit waits for every running handle to stop, and a thread waiting to start one
 * may hold inode locks). Nested lockAll calls of a thread re-take locks it already holds. A long
 * truncate, delete or punch restarts its handle between steps ({@link Transactions#restart}) with
 * its inode locks still held: it is then a thread waiting to start a handle, as above, and the
 * commit it may run waits only for other threads' handles.
 *
 * <p>An online resize takes no inode lock: after the write gate it holds the resizer's own lock
 * (OnlineResize's running) and starts one handle per step and per batch of backups, each with no
 * other handle running on the thread, so a start that has to commit a full transaction may.
 */
final class InodeLocks {
    private static final int STRIPES = 1024;
    private final ReentrantReadWriteLock[] locks = new ReentrantReadWriteLock[STRIPES];
    /** Serializes renames between directories, like the kernel's s_vfs_rename_mutex. */
    final Object renameLock = new Object();

    private final Object[] installLocks = new Object[STRIPES];
    private final Transactions transactions;

    InodeLocks(Transactions transactions) {
        this.transactions = transactions;
        for (int i = 0; i < STRIPES; i++) {
            locks[i] = new ReentrantReadWriteLock();
            installLocks[i] = new Object();
        }
    }

    /**
     * The monitor under which an inode is read into the inode cache or written from a changed
     * copy (the kernel's inode hash lock around iget rather than i_rwsem): a load cannot put an
     * older copy over a newer one.
     */
    Object installLock(long ino) {
        return installLocks[(int) (ino % STRIPES)];
    }

    ReentrantReadWriteLock of(long ino) {
        return locks[(int) (ino % STRIPES)];
    }

    /** A held set of write locks and the handle started under them, released in reverse order by close(). */
    final class Held implements AutoCloseable {
        private final int[] stripes;
        private final Transactions.Handle handle;

        Held(int[] stripes, Transactions.Handle handle) {
            this.stripes = stripes;
            this.handle = handle;
        }

        @Override
        public void close() {
            handle.close();
            for (int i = stripes.length - 1; i >= 0; i--) {
                locks[stripes[i]].writeLock().unlock();
            }
        }
    }

    /** Write-locks the given inodes (0 entries are skipped) in the documented order, then starts a journal handle. */
    Held lockAll(long... inos) {
        int[] s = stripesOf(inos);
        for (int stripe : s) {
            locks[stripe].writeLock().lock();
        }
        try {
            return new Held(s, transactions.start(Transactions.DEFAULT_CREDITS));
        } catch (RuntimeException | Error e) {
            new Held(s, () -> { }).close();
            throw e;
        }
    }

    /** The distinct stripes of the non-zero inodes, ascending (a loop: this runs for every change). */
    private static int[] stripesOf(long[] inos) {
        int[] s = new int[inos.length];
        int n = 0;
        for (long ino : inos) {
            if (ino != 0) {
                s[n++] = (int) (ino % STRIPES);
            }
        }
        java.util.Arrays.sort(s, 0, n);
        int distinct = 0;
        for (int i = 0; i < n; i++) {
            if (distinct == 0 || s[distinct - 1] != s[i]) {
                s[distinct++] = s[i];
            }
        }
        return java.util.Arrays.copyOf(s, distinct);
    }

    /** Read-locks one inode. */
    AutoCloseable read(long ino) {
        ReentrantReadWriteLock.ReadLock l = of(ino).readLock();
        l.lock();
        return l::unlock;
    }
}
