package dev.ext4j.blockmap;

import dev.ext4j.Ext4Exception;

/**
 * Where the block maps get the blocks they need for themselves and give back the blocks they
 * release: the caller's allocator, bound to one inode (the kernel's ext4_new_meta_blocks() and
 * ext4_free_blocks() as called from extents.c and indirect.c).
 *
 * <p>The maps never count blocks into i_blocks: {@link ExtentTree#metaBlocksDelta()} and
 * {@link IndirectMap#metaBlocksDelta()} say how many tree or indirect blocks were added or removed,
 * and {@code removeRange} returns the data blocks it freed.
 */
public interface BlockSource {

    /**
     * One block for an extent tree node or an indirect block. The maps zero and fill it
     * themselves. Blocks for an indirect map must lie below 2^32.
     *
     * @param goal the block the kernel would try first (next to the neighbouring mapping), or 0
     *             for no preference: then allocate near the inode (ext4_inode_to_goal_block())
     * @throws Ext4Exception ENOSPC (or EDQUOT) when no block can be had; the map is left as it was
     */
    long allocateMetaBlock(long goal) throws Ext4Exception;

    /**
     * Releases {@code length} blocks from {@code start}: data blocks of a removed range or tree and
     * indirect blocks that became empty. Called after the map no longer refers to them.
     */
    void freeBlocks(long start, long length) throws Ext4Exception;
}
