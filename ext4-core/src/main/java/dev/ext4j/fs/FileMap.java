package dev.ext4j.fs;

import dev.ext4j.Ext4Exception;
import dev.ext4j.blockmap.BlockSource;
import dev.ext4j.blockmap.ExtentShift;
import dev.ext4j.blockmap.ExtentTree;
import dev.ext4j.blockmap.IndirectMap;
import dev.ext4j.blockmap.Mapping;
import dev.ext4j.blockmap.WritableBlockMap;
import dev.ext4j.format.Inode;
import dev.ext4j.io.BufferCache;

/**
 * The block map of an inode being changed, over the i_block bytes of its new copy: an extent tree,
 * or on filesystems without extents a legacy indirect map, chosen once by {@link #of} (as
 * ext4_map_blocks() chooses by EXT4_EXTENTS_FL); every call goes to the {@link WritableBlockMap}.
 * The copy is written by the caller once all changes are made.
 */
final class FileMap {
    private final WritableBlockMap map;

    private FileMap(WritableBlockMap map) {
        this.map = map;
    }

    static FileMap of(BufferCache cache, long ino, Inode copy, int csumSeed, boolean metadataCsum, BlockSource source) {
        if (copy.hasFlag(Inode.EXTENTS_FL)) {
            return new FileMap(ExtentTree.writable(cache, ino, copy.iBlock(), csumSeed, metadataCsum, source));
        }
        return new FileMap(IndirectMap.writable(cache, ino, copy.iBlock(), source));
    }

    /** True for an extent tree, the only map that holds unwritten blocks. */
    boolean hasExtents() {
        return map.supportsUnwritten();
    }

    /** One past the last logical block the map can address. */
    long maxBlocks() {
        return map.maxBlocks();
    }

    Mapping map(long lblk, long maxLength) throws Ext4Exception {
        return map.map(lblk, maxLength);
    }

    /** Maps a hole to {@code length} blocks from {@code physical}. */
    void insert(long lblk, long physical, int length, boolean unwritten) throws Ext4Exception {
        map.insert(lblk, physical, length, unwritten);
    }

    void markWritten(long lblk, long length) throws Ext4Exception {
        map.markWritten(lblk, length);
    }

    /** The first mapped (or unwritten) run at or after {@code from}, or null when none is left. */
    Mapping nextRun(long from) throws Ext4Exception {
        return map.nextRun(from);
    }

    /**
     * Moves every extent at or after {@code from} by {@code delta} blocks (collapse and insert
     * range); see {@link ExtentTree#shift}. EOPNOTSUPP for an indirect map.
     */
    void shift(long from, long delta, ExtentShift.StepCredits credits) throws Ext4Exception {
        if (!(map instanceof ExtentTree tree)) {
            throw new Ext4Exception(dev.ext4j.Errno.EOPNOTSUPP, "collapse and insert range need an extent-mapped file");
        }
        tree.shift(from, delta, credits);
    }

    /** Unmaps [from, to) and frees what it mapped. */
    void removeRange(long from, long to) throws Ext4Exception {
        map.removeRange(from, to);
    }
}
