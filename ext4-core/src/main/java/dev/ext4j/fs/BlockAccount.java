package dev.ext4j.fs;

import dev.ext4j.Errno;
import dev.ext4j.Ext4Exception;
import dev.ext4j.LockOrder;
import dev.ext4j.alloc.Allocator;
import dev.ext4j.blockmap.BlockSource;

/**
 * Allocation on behalf of one inode during one operation: every block it gets or gives back passes
 * here, so the change to i_blocks is known exactly when the inode is written.
 */
final class BlockAccount implements BlockSource {
    private final Allocator allocator;
    private final Reserve reserve;
    private final long inodeGoal;
    private final boolean below32;
    private long delta;

    /**
     * @param inodeGoal where to look first when nothing better is known (the inode's group)
     * @param below32   the inode uses an indirect map, which can only hold 32-bit block numbers
     */
    BlockAccount(Allocator allocator, Reserve reserve, long inodeGoal, boolean below32) {
        this.allocator = allocator;
        this.reserve = reserve;
        this.inodeGoal = inodeGoal;
        this.below32 = below32;
    }

    /** Allocations from here on were reserved beforehand (writeback of delayed pages): no reserve check. */
    private boolean reserved;

    BlockAccount reserved() {
        this.reserved = true;
        return this;
    }

    /**
     * The blocks ordinary allocations leave free (ext4_has_free_clusters()): s_r_blocks_count for
     * everyone but root and s_def_resuid/s_def_resgid, and s_resv_clusters (2% up to 4096) for all
     * file data. Metadata that an operation in progress needs may use s_resv_clusters, as the
     * kernel's EXT4_MB_USE_RESERVED allocations do, so a change is not left half done.
     */
    static final class Reserve {
        /** Blocks only root (or s_def_resuid/resgid) may use; online resize changes it. */
        private volatile long forRoot;
        private final long resvClusters;
        private final long resuid;
        private final long resgid;
        /** Blocks promised to dirty pages (delayed allocation, data and worst-case metadata). */
        private final java.util.concurrent.atomic.AtomicLong delayed = new java.util.concurrent.atomic.AtomicLong();
        /**
         * Writebacks that turn promises into blocks hold it shared from the allocation to the
         * release of the promise; a reading of free blocks less the promised ones (statfs, a new
         * promise) takes it exclusively, so it never finds blocks both allocated and promised.
         */
        private final java.util.concurrent.locks.ReentrantReadWriteLock keeping = new java.util.concurrent.locks.ReentrantReadWriteLock();

        Reserve(long forRoot, long resvClusters, long resuid, long resgid) {
            this.forRoot = forRoot;
            this.resvClusters = resvClusters;
            this.resuid = resuid;
            this.resgid = resgid;
        }

        /** The root reserve after an online resize (it keeps its share of the blocks). */
        void setForRoot(long blocks) {
            forRoot = blocks;
        }

        boolean privileged() {
            return Caller.isRoot() || Caller.uid() == resuid || (resgid != 0 && Caller.gid() == resgid);
        }

        private long keep(boolean metadata) {
            return (privileged() ? 0 : forRoot) + (metadata ? 0 : resvClusters);
        }

        /**
         * How many of {@code want} blocks the caller may take with {@code free} left, after what
         * delayed allocation has promised; ENOSPC for none.
         */
        int allowance(long free, int want, boolean metadata) throws Ext4Exception {
            long keep = keep(metadata);
            long may = free - delayed.get() - keep;
            if (may <= 0) {
                throw noSpace(free, keep);
            }
            return (int) Math.min(want, may);
        }

        private Ext4Exception noSpace(long free, long keep) {
            return new Ext4Exception(Errno.ENOSPC, free + " blocks free, " + delayed.get() + " promised to delayed writes, "
                    + keep + " reserved" + (privileged() ? "" : " (uid " + Caller.uid() + " may not use root's " + forRoot + ")"));
        }

        /** ext4_da_reserve_space(): promises {@code n} blocks to dirty pages, or ENOSPC for all of them. */
        void reserveDelayed(java.util.function.LongSupplier freeBlocks, long n) throws Ext4Exception {
            lockAlone();
            try {
                long free = freeBlocks.getAsLong();
                long keep = keep(false);
                if (free - delayed.get() - keep < n) {
                    throw noSpace(free, keep);
                }
                delayed.addAndGet(n);
            } finally {
                unlockAlone();
            }
        }

        /** {@code freeBlocks} less the promised blocks, read as one (ext4_statfs()'s free less dirty clusters). */
        long freeLessPromised(java.util.function.LongSupplier freeBlocks) {
            lockAlone();
            try {
                return freeBlocks.getAsLong() - delayed.get();
            } finally {
                unlockAlone();
            }
        }

        private void lockAlone() {
            if (LockOrder.ENABLED) {
                LockOrder.acquire(LockOrder.Level.RESERVE, -1);
            }
            keeping.writeLock().lock();
        }

        private void unlockAlone() {
            keeping.writeLock().unlock();
            if (LockOrder.ENABLED) {
                LockOrder.release(LockOrder.Level.RESERVE, -1);
            }
        }

        /** A writeback starts turning promised blocks into allocated ones; {@link #endKeeping} follows. */
        void beginKeeping() {
            if (LockOrder.ENABLED) {
                LockOrder.acquireShared(LockOrder.Level.RESERVE, -1);
            }
            keeping.readLock().lock();
        }

        void endKeeping() {
            keeping.readLock().unlock();
            if (LockOrder.ENABLED) {
                LockOrder.release(LockOrder.Level.RESERVE, -1);
            }
        }

        /** Gives back promised blocks (written back, truncated away, or a write that fell short). */
        void releaseDelayed(long n) {
            delayed.addAndGet(-n);
        }

        /** Takes back promises given back a moment ago (by a writeback round that then failed), unchecked. */
        void restoreDelayed(long n) {
            delayed.addAndGet(n);
        }

        long delayed() {
            return delayed.get();
        }

        /** Map blocks that delayed writes need come from s_resv_clusters, so they need no promise. */
        boolean poolsMetadata() {
            return resvClusters > 0;
        }
    }

    @Override
    public long allocateMetaBlock(long goal) throws Ext4Exception {
        if (!reserved) {
            reserve.allowance(allocator.freeBlocksCount(), 1, true);
        }
        Allocator.Run r = allocator.allocateBlocks(goal != 0 ? goal : inodeGoal, 1, below32);
        delta += r.length();
        return r.start();
    }

    /** Blocks for file data (or anything else written home without the journal). */
    Allocator.Run allocateData(long goal, int maxLength) throws Ext4Exception {
        // written home before any commit: never into blocks whose freeing is not committed
        return allocate(goal, maxLength, false);
    }

    /**
     * Blocks counted as data but written through the journal (directory blocks): they may be
     * blocks whose freeing is not committed yet, when nothing else is free.
     */
    Allocator.Run allocateJournaled(long goal, int maxLength) throws Ext4Exception {
        return allocate(goal, maxLength, true);
    }

    private Allocator.Run allocate(long goal, int maxLength, boolean mayReuseUncommitted) throws Ext4Exception {
        int n = reserved ? maxLength : reserve.allowance(allocator.freeBlocksCount(), maxLength, false);
        Allocator.Run r = allocator.allocateBlocks(goal != 0 ? goal : inodeGoal, n, below32, mayReuseUncommitted);
        delta += r.length();
        return r;
    }

    @Override
    public void freeBlocks(long start, long length) throws Ext4Exception {
        allocator.freeBlocks(start, length);
        delta -= length;
    }

    /** Blocks gained (positive) or released (negative) so far. */
    long delta() {
        return delta;
    }

    /** {@link #delta()}, which then starts again from 0: for a caller that writes i_blocks in steps. */
    long takeDelta() {
        long d = delta;
        delta = 0;
        return d;
    }
}
