package dev.ext4j.fs;

import dev.ext4j.LockOrder;
import dev.ext4j.journal.Transactions;
import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;
import java.util.Arrays;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.locks.ReentrantLock;
import java.util.concurrent.locks.ReentrantReadWriteLock;
import java.util.function.BiFunction;

/**
 * Per-inode read-write locks (the kernel's i_rwsem), one per inode, and per-inode install locks,
 * so a long truncate of one inode holds up no other. Memory stays bounded: an inode's locks exist
 * while a thread holds or waits for one of them (a counted entry in a map), and at most
 * {@link #IDLE_KEPT} entries stay when nobody holds them. Lock order, everywhere (checked by {@link LockOrder} when
 * {@code -Dext4j.lockcheck=true}, with these levels): the write gate first ({@link WriteGate},
 * entered shared by every change, as sb_start_write() comes before i_rwsem; a freeze waits for it
 * to drain and never holds an inode lock), then an online resize's own lock (OnlineResize's
 * running), then the rename lock (cross-directory renames only), then every inode lock an
 * operation needs, taken at once by {@link #lockAll} in ascending inode order, then the journal
 * handle (started by {@link #lockAll} right after the inode locks, as the kernel starts its handle
 * after i_rwsem and before i_data_sem; a commit run by a starter whose transaction is full sits
 * here too), then the orphan list's monitor ({@link Orphans}), then the superblock's, then the
 * allocator's group locks (never two at once; the free counts are summed group by group under the
 * superblock's monitor). Then the install locks ({@link #install}), held only
 * around the block cache and the inode cache while an inode is loaded or written, never while
 * taking another inode's: loading an inode needs no inode lock, so it may happen under any of
 * them. The block cache's flush lock and per-block locks come below everything, with the
 * journal's state monitor below them.
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
    /** The live entries: an inode is here exactly while some thread holds or is about to take one of its locks. */
    private final ConcurrentHashMap<Long, Entry> entries = new ConcurrentHashMap<>();
    /** Serializes renames between directories, like the kernel's s_vfs_rename_mutex. */
    private final ReentrantLock renameLock = new ReentrantLock();
    private final Locked renameUnlock = () -> {
        renameLock.unlock();
        if (LockOrder.ENABLED) {
            LockOrder.release(LockOrder.Level.RENAME, -1);
        }
    };
    private static final Locked NOTHING = () -> { };
    private final Transactions transactions;
    /** The slow path of {@link #retain}: a live entry gets one more reference, else a new one replaces it. */
    private final BiFunction<Long, Entry, Entry> retainOrCreate = (key, old) -> old != null && old.tryRetain() ? old : new Entry(key);

    /**
     * Idle entries (no holder) kept in the map for reuse: without them every uncontended lock
     * would make and drop an entry (about ten times the cost of a bare lock), which an `ls -l`
     * of a large directory showed (10,000 files: about 10% slower with 1,024 kept). Bounds the
     * memory with the held entries: some 200 bytes each, about 13 MiB.
     */
    static final int IDLE_KEPT = 1 << 16;
    private final int idleKept;

    InodeLocks(Transactions transactions) {
        this(transactions, IDLE_KEPT);
    }

    /** @param idleKept entries kept while nobody holds them (0: an entry leaves with its last holder) */
    InodeLocks(Transactions transactions, int idleKept) {
        this.transactions = transactions;
        this.idleKept = idleKept;
    }

    /** Told the inodes a writer lets go of, and the transaction its changes joined (its handle still runs). */
    @FunctionalInterface
    interface Released {
        void changed(long ino, int tid);
    }

    private volatile Released released = (ino, tid) -> { };

    /** Where {@link Held#close} reports each inode's transaction (ext4_update_inode_fsync_trans()). */
    void onRelease(Released r) {
        this.released = r;
    }

    /** A lock held until close(), which never throws. */
    interface Locked extends AutoCloseable {
        @Override
        void close();
    }

    private static final VarHandle REFS;
    private static final VarHandle INSTALL;

    static {
        try {
            REFS = MethodHandles.lookup().findVarHandle(Entry.class, "refs", int.class);
            INSTALL = MethodHandles.lookup().findVarHandle(Entry.class, "install", Entry.Install.class);
        } catch (ReflectiveOperationException e) {
            throw new ExceptionInInitializerError(e);
        }
    }

    /**
     * One inode's locks, shared by the threads that hold or wait for them and counted: a
     * reference is taken before locking and dropped after unlocking. When the count reaches 0
     * while the map holds more than {@code idleKept} entries (itself included), the entry is
     * marked dead (-1) and leaves the map; a dead entry is never used again, so at most one live
     * entry exists per inode: a thread that finds a dead one in the map puts a new one in its
     * place. An idle entry (count 0) that stays is taken up again by the next locker. The entry
     * is itself the read lock's closer ({@link #read}).
     */
    private final class Entry extends ReentrantReadWriteLock implements Locked {
        final Long key;
        /** References: threads that hold or are about to take one of the locks, -1 when dead; changed through REFS. */
        volatile int refs = 1;
        /** Made on first use: a lookup needs only the read-write lock. */
        volatile Install install;

        Entry(Long key) {
            this.key = key;
        }

        Install install() {
            Install i = install;
            if (i == null) {
                i = new Install();
                if (!INSTALL.compareAndSet(this, null, i)) {
                    i = install;
                }
            }
            return i;
        }

        boolean tryRetain() {
            int r;
            do {
                r = refs;
                if (r < 0) {
                    return false;
                }
            } while (!REFS.compareAndSet(this, r, r + 1));
            return true;
        }

        /** Drops one reference; the last one takes the entry out of the map when the map is full. */
        void release() {
            if ((int) REFS.getAndAdd(this, -1) == 1 && (idleKept == 0 || entries.size() > idleKept)
                    && REFS.compareAndSet(this, 0, -1)) {
                entries.remove(key, this);
            }
        }

        /** Releases a read lock taken by {@link #read}. */
        @Override
        public void close() {
            readLock().unlock();
            release();
            if (LockOrder.ENABLED) {
                LockOrder.release(LockOrder.Level.INODE, key);
            }
        }

        /** The install lock; close() releases it. */
        final class Install extends ReentrantLock implements Locked {
            @Override
            public void close() {
                unlock();
                release();
                if (LockOrder.ENABLED) {
                    LockOrder.release(LockOrder.Level.INSTALL, key);
                }
            }
        }
    }

    /** The live entry of {@code ino} with one more reference (a new one when there is none). */
    private Entry retain(long ino) {
        Long key = ino;
        Entry e = entries.get(key);
        if (e != null && e.tryRetain()) {
            return e;
        }
        return entries.compute(key, retainOrCreate);
    }

    /** Entries in the map, idle ones included (for tests). */
    int entries() {
        return entries.size();
    }

    /** Inodes whose locks are held or waited for (for tests). */
    int heldEntries() {
        int n = 0;
        for (Entry e : entries.values()) {
            n += e.refs > 0 ? 1 : 0;
        }
        return n;
    }

    /**
     * Takes the install lock of {@code ino}, under which an inode is read into the inode cache or
     * written from a changed copy (the kernel's inode hash lock around iget rather than
     * i_rwsem): a load cannot put an older copy over a newer one. Re-entrant.
     */
    Locked install(long ino) {
        if (LockOrder.ENABLED) {
            LockOrder.acquire(LockOrder.Level.INSTALL, ino);
        }
        Entry.Install i = retain(ino).install();
        i.lock();
        return i;
    }

    /** Takes the rename lock when {@code crossDirectory} (a rename inside one directory needs none). */
    Locked rename(boolean crossDirectory) {
        if (!crossDirectory) {
            return NOTHING;
        }
        if (LockOrder.ENABLED) {
            LockOrder.acquire(LockOrder.Level.RENAME, -1);
        }
        renameLock.lock();
        return renameUnlock;
    }

    /** A held set of write locks and the handle started under them, released in reverse order by close(). */
    final class Held implements AutoCloseable {
        private final Entry[] held;
        private final Transactions.Handle handle;

        Held(Entry[] held, Transactions.Handle handle) {
            this.held = held;
            this.handle = handle;
        }

        @Override
        public void close() {
            int tid = transactions.runningTid(); // the handle's: no commit swaps it while the handle runs
            for (Entry e : held) {
                released.changed(e.key, tid);
            }
            handle.close();
            unlockWrites(held, held.length);
        }
    }

    private void unlockWrites(Entry[] held, int n) {
        for (int i = n - 1; i >= 0; i--) {
            Entry e = held[i];
            e.writeLock().unlock();
            e.release();
            if (LockOrder.ENABLED) {
                LockOrder.release(LockOrder.Level.INODE, e.key);
            }
        }
    }

    /** Write-locks the given inodes (0 entries are skipped) in the documented order, then starts a journal handle. */
    Held lockAll(long... inos) {
        long[] sorted = distinct(inos);
        Entry[] held = new Entry[sorted.length];
        int n = 0;
        try {
            for (long ino : sorted) {
                if (LockOrder.ENABLED) {
                    LockOrder.acquire(LockOrder.Level.INODE, ino);
                }
                Entry e = retain(ino);
                e.writeLock().lock();
                held[n++] = e;
            }
            return new Held(held, transactions.start(Transactions.DEFAULT_CREDITS));
        } catch (RuntimeException | Error e) {
            unlockWrites(held, n);
            throw e;
        }
    }

    /** The distinct non-zero inodes, ascending (a loop: this runs for every change). */
    private static long[] distinct(long[] inos) {
        if (inos.length == 1 && inos[0] != 0) {
            return inos; // only read
        }
        long[] s = new long[inos.length];
        int n = 0;
        for (long ino : inos) {
            if (ino != 0) {
                s[n++] = ino;
            }
        }
        Arrays.sort(s, 0, n);
        int distinct = 0;
        for (int i = 0; i < n; i++) {
            if (distinct == 0 || s[distinct - 1] != s[i]) {
                s[distinct++] = s[i];
            }
        }
        return distinct == s.length ? s : Arrays.copyOf(s, distinct);
    }

    /** Read-locks one inode until close(). */
    Locked read(long ino) {
        if (LockOrder.ENABLED) {
            LockOrder.acquireShared(LockOrder.Level.INODE, ino);
        }
        Entry e = retain(ino);
        e.readLock().lock();
        return e;
    }
}
