package dev.ext4j.journal;

import dev.ext4j.Errno;
import dev.ext4j.Ext4Exception;
import dev.ext4j.LockOrder;
import dev.ext4j.alloc.Allocator;
import dev.ext4j.io.BufferCache;
import java.lang.System.Logger.Level;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.locks.ReentrantLock;

/**
 * Write-ahead journaling of metadata (jbd2's transaction.c, commit.c, checkpoint.c and revoke.c,
 * our implementation), on top of the {@link BufferCache} and the {@link JournalLog} writer.
 *
 * <p><b>Transactions.</b> One transaction is running; handles join it ({@link #start}) and every
 * block the cache changes meanwhile belongs to it ({@link #dirtied}). A handle that would push the
 * running transaction past {@link JournalLog#maxTransactionBlocks} (blocks already in it plus the
 * credits of the handles still running) first gets the transaction committed. Handles nest per
 * thread: an inner start joins the outer handle. Ordinary handles reserve at most four times the
 * default credits; a handle that asks for more (an online resize step, which counts the blocks it
 * will dirty) gets up to {@link #maxCredits}, a whole transaction.
 *
 * <p><b>Commit</b> (timer, fsync, a full transaction, unmount): new handles wait while the running
 * transaction drains (T_LOCKED), then the cache's current copy of each of its blocks is taken as
 * the frozen copy (the cache never changes an array once published, so the copy is the array
 * itself), a new transaction opens and handles go on; the frozen copies and the revoke records go
 * to the log, which forces the device before and after the commit block.
 *
 * <p><b>Checkpoint.</b> A committed copy waits in the checkpoint list until it is written home;
 * a newer change of the block in a later transaction does not replace it there until that
 * transaction commits, so home only ever receives committed contents. After the home writes are
 * forced the log's tail moves ({@link JournalLog#checkpointed}). Checkpoints run after the
 * timer's commit, when the list outgrows the cache's dirty limit, before a commit the log has no
 * room for, and at unmount.
 *
 * <p><b>Revoke and freed blocks.</b> A block freed while a copy of it is in a live transaction
 * (committing or waiting for checkpoint) gets a revoke record in the running transaction, so
 * replay never writes that stale copy over whatever the block holds next. Freed blocks stay
 * unusable to the allocator until the transaction that freed them is committed (mballoc's
 * ext4_free_data), so a crash before that commit cannot find them holding another file's data;
 * once it is committed their stale checkpoint copies are dropped.
 *
 * <p>Locking: {@link #commitLock} serializes commits and checkpoints and is taken with no handle
 * running on the thread (after inode locks, see InodeLocks). The {@link #state} monitor is a leaf,
 * taken under the cache's block locks by {@link #dirtied} and {@link #forgotten}.
 */
public final class JournalManager implements Transactions, BufferCache.Tracker, Allocator.FreeDeferral {
    private static final System.Logger LOG = System.getLogger("ext4j");

    /**
     * Whether a handle that dirties more blocks than its credits fails at once (system property
     * {@code ext4j.creditcheck}, on in the unit tests); without it the first overrun is logged once.
     * jbd2 reports the same overrun with a warning in jbd2_journal_dirty_metadata().
     */
    static final boolean CREDIT_CHECK = Boolean.getBoolean("ext4j.creditcheck");

    /** The production overrun is logged only once per JVM. */
    private static final java.util.concurrent.atomic.AtomicBoolean OVERRUN_LOGGED = new java.util.concurrent.atomic.AtomicBoolean();

    /** A transaction (transaction_t) while it runs and commits. Guarded by {@link #state}. */
    private static final class Txn {
        final int tid;
        final Set<Long> blocks = new HashSet<>();
        final Set<Long> revoked = new HashSet<>();
        /** Ranges freed in this transaction: [start, length]. */
        final List<long[]> freed = new ArrayList<>();
        int handles;
        long credits;

        Txn(int tid) {
            this.tid = tid;
        }

        boolean isEmpty() {
            return blocks.isEmpty() && revoked.isEmpty() && freed.isEmpty();
        }
    }

    /** A committed copy waiting to be written home, and the transaction that logged it. */
    private record Frozen(byte[] contents, int tid) {
    }

    /**
     * The handle a thread runs: nesting depth, the credits it reserved and the blocks it brought
     * into the running transaction (jbd2's h_total_credits less h_buffer_credits). Nested handles
     * share the outermost one's.
     */
    private static final class Running {
        int depth;
        int credits;
        int used;
    }

    private final BufferCache cache;
    private final JournalLog log;
    private final Allocator allocator;
    private final long maxTransaction;
    private final int defaultCredits;
    private final Object state = new Object();
    private Txn running;
    /** running's tid, for readers that take no monitor ({@link #runningTid}). */
    private volatile int runningTid;
    /** The running transaction takes no new handles: it is draining for a commit. */
    private boolean locked;
    private Txn committing;
    /** Home block to its newest committed copy not yet written home. */
    private final Map<Long, Frozen> checkpoint = new HashMap<>();
    private int lastCommitted;
    private boolean anyCommitted;
    private final ReentrantLock commitLock = new ReentrantLock();
    /** {@link LockOrder} names: a running handle, and the commit lock (one level: a thread holds one or the other). */
    private static final String HANDLE = "journal handle";
    private static final String COMMIT = "journal commit";
    private final ThreadLocal<Running> current = ThreadLocal.withInitial(Running::new);
    /** The first failed commit (the journal is then aborted: nothing more is committed). */
    private volatile Ext4Exception aborted;
    /** Told once, with no lock of ours held, when the journal aborts (ext4's ext4_handle_error()). */
    private volatile java.util.function.Consumer<Ext4Exception> abortListener = e -> { };

    /** Starts journaling every change of {@code cache}; the log must be open and empty. */
    public JournalManager(BufferCache cache, JournalLog log, Allocator allocator) {
        this.cache = cache;
        this.log = log;
        this.allocator = allocator;
        this.maxTransaction = log.maxTransactionBlocks();
        this.defaultCredits = (int) Math.max(1, Math.min(DEFAULT_CREDITS, maxTransaction / 4));
        this.running = new Txn(log.nextTid());
        this.runningTid = running.tid;
        cache.setTracker(this);
        if (allocator != null) {
            allocator.setFreeDeferral(this);
        }
    }

    /**
     * What runs once when a failed commit aborts the journal, on the thread whose commit failed,
     * after the journal superblock got the errno (as far as the device still takes writes). The
     * thread runs no handle then but may hold inode locks.
     */
    public void onAbort(java.util.function.Consumer<Ext4Exception> listener) {
        this.abortListener = listener;
    }

    // ---- handles ----

    @Override
    public Handle start(int credits) {
        Running r = current.get();
        if (r.depth > 0) {
            r.depth++;
            return this::stop;
        }
        // the usual handles are cut to four times the default as before; a larger reservation (a
        // resize step that counted its blocks) is granted up to a whole transaction
        int want = Math.max(1, credits <= defaultCredits * 4 ? credits : Math.min(credits, maxCredits()));
        if (LockOrder.ENABLED) {
            LockOrder.acquire(LockOrder.Level.JOURNAL, HANDLE, -1);
        }
        boolean interrupted = false;
        try {
            while (true) {
                int full;
                synchronized (LockOrder.monitor(LockOrder.Level.JOURNAL_STATE, -1, state)) {
                    while (locked) {
                        interrupted |= waitOn(state);
                    }
                    Txn t = running;
                    boolean fits = t.blocks.size() + t.credits + want <= maxTransaction;
                    if (fits || (t.handles == 0 && t.blocks.isEmpty()) || aborted != null) {
                        t.handles++;
                        t.credits += want;
                        r.credits = want;
                        r.used = 0;
                        r.depth = 1;
                        return this::stop;
                    }
                    if (t.isEmpty()) {
                        interrupted |= waitOn(state); // only reservations fill it: wait for a handle to stop
                        continue;
                    }
                    full = t.tid;
                }
                if (LockOrder.ENABLED) {
                    LockOrder.release(LockOrder.Level.JOURNAL, HANDLE, -1); // no handle yet: the commit comes first
                }
                try {
                    commit(full, false); // jbd2 has kjournald commit it; here the waiting starter does
                } catch (Ext4Exception e) {
                    LOG.log(Level.ERROR, "journal: commit of a full transaction failed: {0}", e.toString());
                }
                if (LockOrder.ENABLED) {
                    LockOrder.acquire(LockOrder.Level.JOURNAL, HANDLE, -1);
                }
            }
        } finally {
            if (interrupted) {
                Thread.currentThread().interrupt();
            }
        }
    }

    /**
     * ext4_ext_truncate_extend_restart(): false when the handle has {@code credits} left, or gets
     * them because the running transaction has room (jbd2_journal_extend(), nested handles too:
     * they share the outer one's credits); else true for an outermost handle, which must restart.
     */
    @Override
    public boolean needsRestart(int credits) {
        Running r = current.get();
        if (r.depth == 0) {
            return false;
        }
        return !extend(credits) && r.depth == 1;
    }

    @Override
    public boolean extend(int credits) {
        Running r = current.get();
        if (r.depth == 0) {
            return true;
        }
        synchronized (LockOrder.monitor(LockOrder.Level.JOURNAL_STATE, -1, state)) {
            if (r.credits - r.used >= credits) {
                return true;
            }
            Txn t = running;
            // room as start() counts it, with this handle's own reservation already used up
            if (t.blocks.size() + (t.credits - r.credits) + credits <= maxTransaction) {
                int grown = r.used + credits;
                t.credits += grown - r.credits;
                r.credits = grown;
                return true;
            }
            return false;
        }
    }

    @Override
    public void restart(int credits) {
        Running r = current.get();
        if (r.depth != 1) {
            return;
        }
        stop();
        start(credits); // may commit the full transaction first: this thread runs no handle now
    }

    private void stop() {
        Running r = current.get();
        if (--r.depth > 0) {
            return;
        }
        synchronized (LockOrder.monitor(LockOrder.Level.JOURNAL_STATE, -1, state)) {
            running.handles--;
            running.credits -= r.credits;
            state.notifyAll();
        }
        if (LockOrder.ENABLED) {
            LockOrder.release(LockOrder.Level.JOURNAL, HANDLE, -1);
        }
    }

    /**
     * Waits on {@code monitor} (held); returns true when interrupted. The waits are short and must
     * not be cut off, so callers wait on and set the interrupt flag again when they are done.
     */
    private static boolean waitOn(Object monitor) {
        try {
            monitor.wait();
            return false;
        } catch (InterruptedException e) {
            return true;
        }
    }

    // ---- the block cache's and the allocator's hooks ----

    /**
     * A block joins the running transaction; the calling thread's handle pays one credit for it
     * the first time (jbd2_journal_dirty_metadata() taking from h_buffer_credits). A block already
     * in the transaction costs nothing. A handle that pays more than it reserved fails with
     * {@link #CREDIT_CHECK}, else the first such overrun is logged.
     */
    @Override
    public void dirtied(long block) {
        boolean joined;
        synchronized (LockOrder.monitor(LockOrder.Level.JOURNAL_STATE, -1, state)) {
            joined = running.blocks.add(block);
            running.revoked.remove(block); // jbd2_journal_cancel_revoke(): the new copy replays
        }
        if (joined) {
            charge(block);
        }
    }

    private void charge(long block) {
        Running r = current.get();
        if (r.depth == 0 || ++r.used <= r.credits) {
            return;
        }
        String msg = "journal: a handle with " + r.credits + " credits dirtied block " + block + ", its block number " + r.used
                + " in the transaction: the operation must ask for more credits or restart its handle";
        if (CREDIT_CHECK) {
            throw new IllegalStateException(msg);
        }
        if (OVERRUN_LOGGED.compareAndSet(false, true)) {
            LOG.log(Level.WARNING, msg + " (logged once)");
        }
    }

    @Override
    public void forgotten(long block) {
        synchronized (LockOrder.monitor(LockOrder.Level.JOURNAL_STATE, -1, state)) {
            if (running.blocks.remove(block)) {
                Running r = current.get();
                if (r.depth > 0 && r.used > 0) {
                    r.used--; // jbd2_journal_forget() gives the credit back for a block this transaction had
                }
            }
            if (checkpoint.containsKey(block) || committing != null && committing.blocks.contains(block)) {
                running.revoked.add(block);
            }
        }
    }

    @Override
    public void freed(long start, long length) {
        synchronized (LockOrder.monitor(LockOrder.Level.JOURNAL_STATE, -1, state)) {
            running.freed.add(new long[] {start, length});
        }
    }

    // ---- commit and checkpoint ----

    @Override
    public void tick() throws Ext4Exception {
        commit(-1, true);
    }

    @Override
    public void sync() throws Ext4Exception {
        if (!commit(-1, false)) {
            cache.force(); // nothing to commit: file data written since still has to be durable
        }
    }

    @Override
    public int runningTid() {
        return runningTid;
    }

    @Override
    public void syncTo(int tid) throws Ext4Exception {
        long written = cache.writesDone();
        commit(tid, false); // nothing when tid is committed already, or was while this waited for the commit lock
        cache.forceUpTo(written);
    }

    @Override
    public void unmount() throws Ext4Exception {
        commit(-1, true);
        if (!log.isEmpty()) {
            throw new Ext4Exception(Errno.EIO, "journal: the log is not empty after the last checkpoint");
        }
    }

    @Override
    public boolean journaled() {
        return true;
    }

    /**
     * A handle may reserve a whole transaction (an online resize step sizes itself to this); the
     * ordinary ones ask for {@link Transactions#DEFAULT_CREDITS} or less.
     */
    @Override
    public int maxCredits() {
        return (int) Math.min(Integer.MAX_VALUE, maxTransaction);
    }

    /**
     * Commits the running transaction ({@code tid} -1) or transaction {@code tid} if it is still
     * the running one. Returns whether a transaction was committed.
     */
    private boolean commit(int tid, boolean thenCheckpoint) throws Ext4Exception {
        if (current.get().depth > 0) {
            throw new IllegalStateException("a commit from inside a handle would wait for itself");
        }
        Ext4Exception abortedNow = null;
        if (LockOrder.ENABLED) {
            LockOrder.acquire(LockOrder.Level.JOURNAL, COMMIT, -1);
        }
        commitLock.lock();
        try {
            Ext4Exception a = aborted;
            if (a != null) {
                throw new Ext4Exception(Errno.EIO, "the journal is aborted after a failed commit: " + a.getMessage(), a);
            }
            boolean done = commitLocked(tid);
            boolean big;
            synchronized (LockOrder.monitor(LockOrder.Level.JOURNAL_STATE, -1, state)) {
                big = checkpoint.size() > cache.maxDirty();
            }
            if (thenCheckpoint || big) {
                checkpointLocked();
            }
            return done;
        } catch (Ext4Exception | RuntimeException e) {
            if (aborted == null) {
                aborted = e instanceof Ext4Exception x ? x : new Ext4Exception(Errno.EIO, e.toString(), e);
                abortedNow = aborted;
                LOG.log(Level.ERROR, "journal aborted: {0}", e.toString());
                try {
                    log.recordAbort(-Errno.EIO.value());
                } catch (Ext4Exception | RuntimeException f) {
                    LOG.log(Level.ERROR, "journal: recording the abort in the journal superblock failed: {0}", f.toString());
                }
            }
            throw e;
        } finally {
            commitLock.unlock();
            if (LockOrder.ENABLED) {
                LockOrder.release(LockOrder.Level.JOURNAL, COMMIT, -1);
            }
            if (abortedNow != null) {
                try {
                    abortListener.accept(abortedNow);
                } catch (RuntimeException f) {
                    LOG.log(Level.ERROR, "journal: handling the abort failed: {0}", f.toString());
                }
            }
        }
    }

    private boolean commitLocked(int tid) throws Ext4Exception {
        Txn t;
        List<JournalLog.LogBlock> frozen = new ArrayList<>();
        synchronized (LockOrder.monitor(LockOrder.Level.JOURNAL_STATE, -1, state)) {
            t = running;
            if (tid != -1 && t.tid != tid || t.isEmpty()) {
                return false;
            }
            locked = true;
            boolean interrupted = false;
            while (t.handles > 0) {
                interrupted |= waitOn(state);
            }
            if (interrupted) {
                Thread.currentThread().interrupt();
            }
            List<Long> order = new ArrayList<>(t.blocks);
            order.sort(null);
            for (long b : order) {
                byte[] copy = cache.dirtyCopy(b);
                if (copy != null) {
                    frozen.add(new JournalLog.LogBlock(b, copy));
                }
            }
            committing = t;
            running = new Txn(t.tid + 1);
            runningTid = running.tid;
            locked = false;
            state.notifyAll();
        }
        List<Long> revokes = new ArrayList<>(t.revoked);
        revokes.sort(null);
        if (log.blocksNeeded(frozen.size(), revokes.size()) > log.freeSpace()) {
            checkpointLocked();
        }
        long written = cache.writesDone(); // the commit forces the device before its commit block
        log.commit(t.tid, frozen, revokes);
        cache.forced(written);
        synchronized (LockOrder.monitor(LockOrder.Level.JOURNAL_STATE, -1, state)) {
            for (long[] r : t.freed) {
                for (long b = r[0]; b < r[0] + r[1]; b++) {
                    Frozen f = checkpoint.get(b);
                    if (f != null && f.tid() - t.tid < 0) {
                        checkpoint.remove(b); // freed for good: its stale copy must not go home any more
                    }
                }
            }
            for (JournalLog.LogBlock b : frozen) {
                checkpoint.put(b.homeBlock(), new Frozen(b.contents(), t.tid));
            }
            committing = null;
            lastCommitted = t.tid;
            anyCommitted = true;
        }
        if (allocator != null) {
            for (long[] r : t.freed) {
                allocator.releaseFreed(r[0], r[1]);
            }
        }
        return true;
    }

    /** Writes every committed copy home in block order, then lets the log forget them. Caller holds the commit lock. */
    private void checkpointLocked() throws Ext4Exception {
        List<Map.Entry<Long, Frozen>> entries;
        int upTo;
        synchronized (LockOrder.monitor(LockOrder.Level.JOURNAL_STATE, -1, state)) {
            if (!anyCommitted) {
                return;
            }
            entries = new ArrayList<>(checkpoint.entrySet());
            upTo = lastCommitted;
        }
        entries.sort(Map.Entry.comparingByKey());
        for (Map.Entry<Long, Frozen> e : entries) {
            cache.writeHome(e.getKey(), e.getValue().contents());
        }
        log.checkpointed(upTo); // forces the home writes before moving the log's tail
        synchronized (LockOrder.monitor(LockOrder.Level.JOURNAL_STATE, -1, state)) {
            for (Map.Entry<Long, Frozen> e : entries) {
                checkpoint.remove(e.getKey(), e.getValue());
            }
        }
    }
}
