package dev.ext4j.fs;

import dev.ext4j.Errno;
import dev.ext4j.Ext4Exception;
import dev.ext4j.alloc.Allocator;
import dev.ext4j.extent.BlockSource;

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

    /**
     * The blocks ordinary allocations leave free (ext4_has_free_clusters()): s_r_blocks_count for
     * everyone but root and s_def_resuid/s_def_resgid, and s_resv_clusters (2% up to 4096) for all
     * file data. Metadata that an operation in progress needs may use s_resv_clusters, as the
     * kernel's EXT4_MB_USE_RESERVED allocations do, so a change is not left half done.
     */
    record Reserve(long forRoot, long resvClusters, long resuid, long resgid) {
        boolean privileged() {
            return Caller.isRoot() || Caller.uid() == resuid || (resgid != 0 && Caller.gid() == resgid);
        }

        /** How many of {@code want} blocks the caller may take with {@code free} left; ENOSPC for none. */
        int allowance(long free, int want, boolean metadata) throws Ext4Exception {
            long keep = (privileged() ? 0 : forRoot) + (metadata ? 0 : resvClusters);
            long may = free - keep;
            if (may <= 0) {
                throw new Ext4Exception(Errno.ENOSPC, free + " blocks free, " + keep + " of them reserved"
                        + (privileged() ? "" : " (uid " + Caller.uid() + " may not use root's " + forRoot + ")"));
            }
            return (int) Math.min(want, may);
        }
    }

    @Override
    public long allocateMetaBlock(long goal) throws Ext4Exception {
        reserve.allowance(allocator.freeBlocksCount(), 1, true);
        Allocator.Run r = allocator.allocateBlocks(goal != 0 ? goal : inodeGoal, 1, below32);
        delta += r.length();
        return r.start();
    }

    Allocator.Run allocateData(long goal, int maxLength) throws Ext4Exception {
        int n = reserve.allowance(allocator.freeBlocksCount(), maxLength, false);
        Allocator.Run r = allocator.allocateBlocks(goal != 0 ? goal : inodeGoal, n, below32);
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
}
