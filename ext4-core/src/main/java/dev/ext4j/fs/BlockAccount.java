package dev.ext4j.fs;

import dev.ext4j.Ext4Exception;
import dev.ext4j.alloc.Allocator;
import dev.ext4j.extent.BlockSource;

/**
 * Allocation on behalf of one inode during one operation: every block it gets or gives back passes
 * here, so the change to i_blocks is known exactly when the inode is written.
 */
final class BlockAccount implements BlockSource {
    private final Allocator allocator;
    private final long inodeGoal;
    private final boolean below32;
    private long delta;

    /**
     * @param inodeGoal where to look first when nothing better is known (the inode's group)
     * @param below32   the inode uses an indirect map, which can only hold 32-bit block numbers
     */
    BlockAccount(Allocator allocator, long inodeGoal, boolean below32) {
        this.allocator = allocator;
        this.inodeGoal = inodeGoal;
        this.below32 = below32;
    }

    @Override
    public long allocateMetaBlock(long goal) throws Ext4Exception {
        Allocator.Run r = allocator.allocateBlocks(goal != 0 ? goal : inodeGoal, 1, below32);
        delta += r.length();
        return r.start();
    }

    Allocator.Run allocateData(long goal, int maxLength) throws Ext4Exception {
        Allocator.Run r = allocator.allocateBlocks(goal != 0 ? goal : inodeGoal, maxLength, below32);
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
