package dev.ext4j.journal;

import dev.ext4j.Ext4Exception;
import dev.ext4j.io.BufferCache;

/**
 * How a mount's metadata changes reach the image: through the journal ({@link JournalManager}), or
 * written home in block order by the block cache ({@link #unjournaled}). Every change runs inside
 * a handle, started after the inode locks (see InodeLocks for the lock order).
 */
public interface Transactions {
    /** A running handle (jbd2's handle_t); {@link #close} stops it. */
    interface Handle extends AutoCloseable {
        @Override
        void close();
    }

    /** Credits for a handle that does not say better: enough for a namespace operation. */
    int DEFAULT_CREDITS = 32;

    /**
     * Joins the running transaction (jbd2_journal_start()); a thread that already runs a handle
     * joins its own. May wait for, or run, a commit when the transaction has no room for
     * {@code credits} more blocks. Never fails: a commit that fails there is reported by the next
     * {@link #sync}. Credits above {@link #maxCredits} are cut to it: a handle must not dirty
     * more blocks than it was granted.
     */
    Handle start(int credits);

    /**
     * Whether the calling thread's handle should be restarted ({@link #restart}) before it dirties
     * up to {@code credits} more blocks: it has fewer credits left and the running transaction has
     * no room to extend it by them (jbd2_journal_extend()); when there is room the handle is
     * extended and the answer is false. Always false for a nested handle (its outer caller's
     * changes must stay in one transaction) and without a journal. The long truncate's check
     * (ext4_ext_truncate_extend_restart()).
     */
    default boolean needsRestart(int credits) {
        return false;
    }

    /**
     * jbd2_journal_extend(): makes sure the calling thread's handle has {@code credits} more blocks
     * to dirty, taking them from the running transaction's room. Returns whether it has them
     * (always true without a journal or without a handle on the thread).
     */
    default boolean extend(int credits) {
        return true;
    }

    /**
     * Stops the calling thread's outermost handle and starts it again with {@code credits}
     * (jbd2_journal_restart()): the changes made so far may commit without the ones that follow, so
     * the caller must have left the filesystem consistent (an operation in steps keeps its inode on
     * the orphan list). The handle object the caller holds stays the one to close. Between the stop
     * and the start a commit may run, which waits only for other handles: the caller may hold inode
     * locks (see InodeLocks) but nothing a handle holder may wait for. No-op without a journal or
     * inside a nested handle.
     */
    default void restart(int credits) {
    }

    /**
     * The most blocks one handle can be granted and dirty: the journal's largest transaction
     * (jbd2's j_max_transaction_buffers); unbounded without a journal. A change larger than this
     * (an online resize by many groups) is split into steps.
     */
    int maxCredits();

    /** The flusher's timer: commit the running transaction and write committed blocks home. */
    void tick() throws Ext4Exception;

    /** fsync/sync: every change made so far is durable when this returns. */
    void sync() throws Ext4Exception;

    /** The transaction a change made now joins (jbd2's running transaction's t_tid); 0 without a journal. */
    default int runningTid() {
        return 0;
    }

    /**
     * fsync of one inode (jbd2_complete_transaction()): transaction {@code tid}, the last that
     * changed it, and every one before it are durable when this returns, and so is every write of
     * the buffer cache finished before the call; no later transaction is committed for it.
     */
    default void syncTo(int tid) throws Ext4Exception {
        sync();
    }

    /** Unmount: every change is home and the log is empty when this returns. */
    void unmount() throws Ext4Exception;

    /** True when changes go through a journal (the superblock is then journaled too). */
    boolean journaled();

    /** No journal: changed blocks are written home by {@link BufferCache#flush}. */
    static Transactions unjournaled(BufferCache cache) {
        return new Transactions() {
            @Override
            public Handle start(int credits) {
                return () -> { };
            }

            @Override
            public void tick() throws Ext4Exception {
                cache.flush();
            }

            @Override
            public void sync() throws Ext4Exception {
                cache.sync();
            }

            @Override
            public void unmount() throws Ext4Exception {
                cache.flush();
            }

            @Override
            public int maxCredits() {
                return Integer.MAX_VALUE;
            }

            @Override
            public boolean journaled() {
                return false;
            }
        };
    }
}
