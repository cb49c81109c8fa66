package dev.ext4j.blockmap;

import dev.ext4j.Ext4Exception;

/**
 * A file's block map that changes in runs: an {@link ExtentTree} (fs/ext4/extents.c) or an
 * {@link IndirectMap} (fs/ext4/indirect.c), behind the one interface ext4_map_blocks() puts in
 * front of ext4_ext_map_blocks() and ext4_ind_map_blocks(). A map opened read-only throws
 * {@link IllegalStateException} from the methods that change it.
 *
 * <p>Not thread-safe: the caller holds the inode's block-map lock (i_data_sem).
 */
public interface WritableBlockMap extends BlockMap {

    /** One past the last logical block the map can address (EXT_MAX_BLOCKS, or what three levels of indirect blocks reach). */
    long maxBlocks();

    /** True when the map can hold unwritten (preallocated) runs: only an extent tree can. */
    boolean supportsUnwritten();

    /**
     * Maps the hole {@code lblk .. lblk + length - 1} to {@code physical} onward, written or
     * unwritten. The data blocks are the caller's (allocated and counted by it); blocks the map
     * needs for itself come from its {@link BlockSource}.
     *
     * @throws Ext4Exception EEXIST when part of the range is mapped already, ENOSPC from the
     *                       BlockSource, EOPNOTSUPP for an unwritten run in a map that cannot hold
     *                       one; an indirect map may have mapped a prefix of the run when it throws
     */
    void insert(long lblk, long physical, int length, boolean unwritten) throws Ext4Exception;

    /** Marks the unwritten blocks of {@code lblk .. lblk + length - 1} written; nothing to do for a map without unwritten runs. */
    void markWritten(long lblk, long length) throws Ext4Exception;

    /**
     * Unmaps {@code from .. toExclusive - 1} ({@code toExclusive} may be {@link Long#MAX_VALUE})
     * and frees what it mapped through the BlockSource.
     *
     * @return the data blocks freed
     */
    long removeRange(long from, long toExclusive) throws Ext4Exception;

    /** Blocks of the map itself (tree or indirect blocks) allocated minus freed by this object's changes. */
    long metaBlocksDelta();

    /** The first mapped (or unwritten) run at or after {@code from}, or null when none is left. */
    default Mapping nextRun(long from) throws Ext4Exception {
        long max = maxBlocks();
        for (long l = from; l < max; ) {
            Mapping m = map(l, max - l);
            if (!m.isHole()) {
                return m;
            }
            l += m.length();
        }
        return null;
    }
}
