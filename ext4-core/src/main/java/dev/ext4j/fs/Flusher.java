package dev.ext4j.fs;

import dev.ext4j.Errno;
import dev.ext4j.Ext4Exception;
import dev.ext4j.journal.Transactions;
import java.lang.System.Logger.Level;
import java.util.concurrent.RejectedExecutionException;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.ScheduledThreadPoolExecutor;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicReference;

/**
 * The background writer (the role of the kernel's flusher threads, balance_dirty_pages() and
 * jbd2's commit timer): every commit interval, expired or excess dirty pages are written back and
 * the running transaction is committed and checkpointed (or changed metadata written home without
 * a journal); a writer past the dirty limit writes back its own inode; and once no change has come
 * for the idle time, everything goes home (see {@link MountOptions#idleFlushMillis}).
 */
final class Flusher {
    private static final System.Logger LOG = System.getLogger("ext4j");

    private final WriteGate gate;
    private final SuperState state;
    private final Transactions tx;
    private final Retry retry;
    private final Writeback writeback;
    private final MountOptions options;
    private final ScheduledExecutorService executor;
    private final AtomicBoolean flushQueued = new AtomicBoolean();
    private final AtomicBoolean idleFlushQueued = new AtomicBoolean();
    /** When the last change left the gate (System.nanoTime()). */
    private volatile long lastChange;
    /** The first failure of a background flush, reported by the next sync. */
    private final AtomicReference<Ext4Exception> error = new AtomicReference<>();

    Flusher(WriteGate gate, SuperState state, Transactions tx, Retry retry, Writeback writeback, MountOptions options) {
        this.gate = gate;
        this.state = state;
        this.tx = tx;
        this.retry = retry;
        this.writeback = writeback;
        this.options = options;
        var ex = new ScheduledThreadPoolExecutor(1, r -> {
            Thread t = new Thread(r, "ext4j-flush");
            t.setDaemon(true);
            return t;
        });
        ex.setExecuteExistingDelayedTasksAfterShutdownPolicy(false); // a pending idle flush: close() does it all
        long interval = options.flushIntervalMillis();
        ex.scheduleWithFixedDelay(this::round, interval, interval, TimeUnit.MILLISECONDS);
        this.executor = ex;
    }

    /**
     * After a write: above the dirty limit (half the page cache) the writer writes back its own
     * inode before it returns, as balance_dirty_pages() throttles; above the background limit (a
     * quarter) the flusher is woken.
     */
    void balanceDirty(long ino) throws Ext4Exception {
        var pc = writeback.pages();
        writeback.balance(ino, pc.maxBytes() / 2);
        if (pc.dirtyBytes() > pc.maxBytes() / 4 && flushQueued.compareAndSet(false, true)) {
            executor.execute(this::round);
        }
    }

    /** One round: expired or excess dirty pages, then changed metadata. */
    private void round() {
        flushQueued.set(false);
        var pc = writeback.pages();
        flush(() -> writeback.flusherRound(options.dirtyExpireMillis() * 1_000_000L, pc.maxBytes() / 4));
    }

    /**
     * {@code data} written back, then a commit and checkpoint (or changed metadata written home
     * without a journal). Nothing while frozen or remounted read-only: everything is home then, and
     * nothing may reach the image until the thaw or remount. A failure is kept for the next sync.
     */
    private void flush(Retry.Step data) {
        if (gate.isFrozen() || state.remountedReadOnly() || state.journalAborted()) {
            return; // an abort was reported once: nothing can commit any more
        }
        long released = retry.releases();
        try {
            retry.run(data);
            tx.tick();
        } catch (Ext4Exception | RuntimeException e) {
            if (e instanceof Ext4Exception x) {
                if (x.errno() == Errno.ENOSPC) {
                    // the pages stay dirty with their promises (nothing is dropped, unlike a failed
                    // delayed allocation in the kernel): the next round retries, and a sync writes
                    // them back itself and reports its own outcome, so this is kept for none
                    LOG.log(retry.waitsForCommit(x, released) ? Level.DEBUG : Level.WARNING,
                            "writeback found no free block (the data stays dirty and is retried): {0}", e.toString());
                    return;
                }
                error.compareAndSet(null, x);
            }
            LOG.log(Level.ERROR, "writeback failed (the data stays dirty and is retried): {0}", e.toString());
        }
    }

    /** The first background failure since the last call, or null (a sync reports it). */
    Ext4Exception takeError() {
        return error.getAndSet(null);
    }

    /** sb_start_write(), with sb_end_write() arming the idle flush. */
    WriteGate.Entered enterGate() {
        gate.enter();
        return options.idleFlushMillis() > 0 ? this::leaveGate : gate::exit;
    }

    /** sb_start_write_trylock(): null while frozen. */
    WriteGate.Entered tryEnterGate() {
        if (!gate.tryEnter()) {
            return null;
        }
        return options.idleFlushMillis() > 0 ? this::leaveGate : gate::exit;
    }

    private void leaveGate() {
        gate.exit();
        lastChange = System.nanoTime();
        if (idleFlushQueued.compareAndSet(false, true)) {
            scheduleIdleFlush(options.idleFlushMillis());
        }
    }

    private void scheduleIdleFlush(long delayMillis) {
        try {
            executor.schedule(this::idleFlush, delayMillis, TimeUnit.MILLISECONDS);
        } catch (RejectedExecutionException e) {
            idleFlushQueued.set(false); // unmounting: close() writes everything
        }
    }

    /**
     * Once no change has come for the idle time and none is in flight: dirty data written back,
     * the transaction committed and checkpointed (or metadata written home), so that the image
     * file at rest is a consistent filesystem, also for whoever reads it the moment a FUSE 2
     * unmount returns, which does not wait for the server.
     */
    private void idleFlush() {
        long idle = options.idleFlushMillis() * 1_000_000L;
        long quiet = System.nanoTime() - lastChange;
        if (quiet < idle || gate.busy()) {
            scheduleIdleFlush(quiet < idle ? Math.max(1, (idle - quiet) / 1_000_000L) : options.idleFlushMillis());
            return;
        }
        idleFlushQueued.set(false); // a change from now on arms it again
        flush(writeback::writebackAll);
    }

    /**
     * The idle flush, now, if one is pending: umount(8) asks statfs of the mount just before it
     * unmounts (strace: fstatfs, then umount2), and a FUSE unmount does not wait for the server.
     */
    void flushIfIdlePending() {
        if (idleFlushQueued.compareAndSet(true, false)) {
            flush(writeback::writebackAll);
        }
    }

    /**
     * Waits until a round already running has finished (the executor has one thread); rounds that
     * start later find the gate closed and do nothing. A freeze and a remount read-only call it
     * once the gate is closed, before they write everything home.
     */
    void waitIdle() {
        try {
            executor.submit(() -> { }).get();
        } catch (RejectedExecutionException e) {
            // unmounting: nothing runs any more
        } catch (java.util.concurrent.ExecutionException e) {
            throw new IllegalStateException("cannot happen: the task does nothing", e);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    /** Lets a running flush finish: interrupting it would close the image's channel. */
    void stop() {
        executor.shutdown();
        try {
            if (!executor.awaitTermination(60, TimeUnit.SECONDS)) {
                LOG.log(Level.WARNING, "the flusher did not stop within 60 s");
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }
}
