package dev.ext4j.fs;

import dev.ext4j.Errno;
import dev.ext4j.Ext4Exception;
import dev.ext4j.alloc.Allocator;
import dev.ext4j.journal.Transactions;

/**
 * The one retry policy for an ENOSPC that a commit may cure (the kernel's ext4_should_retry_alloc()):
 * blocks freed by a transaction that has not committed may not hold new file data yet (see
 * Allocator#allocateBlocks), so an allocation that found nothing else runs once more after a
 * commit. Buffered writes, symlinks, fallocate, writeback and the flusher all go through here.
 */
final class Retry {
    /** A change that allocates blocks and may run again after a failure. */
    @FunctionalInterface
    interface Retryable<T> {
        T run() throws Ext4Exception;
    }

    /** The allocator; null on a read-only mount. */
    private final Allocator allocator;
    private final Transactions tx;

    Retry(Allocator allocator, Transactions tx) {
        this.allocator = allocator;
        this.tx = tx;
    }

    /**
     * Whether {@code e} is an ENOSPC that a commit may lift: some free blocks wait for the commit of
     * the transaction that freed them, or did when the allocation failed ({@code released}, the
     * allocator's {@link Allocator#releases} before it: a commit since may have made them reusable).
     */
    boolean waitsForCommit(Ext4Exception e, long released) {
        return e.errno() == Errno.ENOSPC && allocator != null && tx.journaled()
                && (allocator.hasUncommittedFrees() || allocator.releases() != released);
    }

    /** The allocator's count of committed frees released, for {@link #waitsForCommit}; 0 read-only. */
    long releases() {
        return allocator == null ? 0 : allocator.releases();
    }

    /**
     * Runs {@code op}, and once more after a commit when its ENOSPC came from blocks waiting for
     * one. The caller runs no handle (the commit waits for every running handle).
     */
    <T> T run(Retryable<T> op) throws Ext4Exception {
        long released = releases();
        try {
            return op.run();
        } catch (Ext4Exception e) {
            if (!waitsForCommit(e, released)) {
                throw e;
            }
            tx.sync();
            return op.run();
        }
    }

    /** {@link #run(Retryable)} for a step that returns nothing. */
    void run(Step op) throws Ext4Exception {
        run(() -> {
            op.run();
            return null;
        });
    }

    /** A change or write-back step that returns nothing (the flusher's data step, an orphan's follow-up). */
    @FunctionalInterface
    interface Step {
        void run() throws Ext4Exception;
    }
}
