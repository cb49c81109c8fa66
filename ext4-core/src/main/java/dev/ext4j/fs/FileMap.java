package dev.ext4j.fs;

import dev.ext4j.Errno;
import dev.ext4j.Ext4Exception;
import dev.ext4j.extent.BlockSource;
import dev.ext4j.extent.ExtentTree;
import dev.ext4j.extent.IndirectMap;
import dev.ext4j.extent.Mapping;
import dev.ext4j.format.Extent;
import dev.ext4j.format.Inode;
import dev.ext4j.io.BlockCache;

/**
 * The block map of an inode being changed, over the i_block bytes of its new copy: an extent tree,
 * or on filesystems without extents a legacy indirect map. The copy is written by the caller once
 * all changes are made.
 */
final class FileMap {
    /** Largest logical block an extent can address (2^32 - 1). */
    static final long MAX_EXTENT_LBLK = 0xFFFFFFFFL;

    private final ExtentTree extents;
    private final IndirectMap indirect;
    private final int blockSize;

    private FileMap(ExtentTree extents, IndirectMap indirect, int blockSize) {
        this.extents = extents;
        this.indirect = indirect;
        this.blockSize = blockSize;
    }

    static FileMap of(BlockCache cache, long ino, Inode copy, int csumSeed, boolean metadataCsum, BlockSource source) {
        if (copy.hasFlag(Inode.EXTENTS_FL)) {
            return new FileMap(ExtentTree.writable(cache, ino, copy.iBlock(), csumSeed, metadataCsum, source), null, cache.blockSize());
        }
        return new FileMap(null, IndirectMap.writable(cache, ino, copy.iBlock(), source), cache.blockSize());
    }

    boolean hasExtents() {
        return extents != null;
    }

    /** One past the last logical block the map can address. */
    long maxBlocks() {
        return extents != null ? MAX_EXTENT_LBLK : IndirectMap.maxBlocks(blockSize);
    }

    Mapping map(long lblk, long maxLength) throws Ext4Exception {
        return extents != null ? extents.map(lblk, maxLength) : indirect.map(lblk, maxLength);
    }

    /** Maps a hole to {@code length} blocks from {@code physical}. */
    void insert(long lblk, long physical, int length, boolean unwritten) throws Ext4Exception {
        if (extents != null) {
            extents.insert(new Extent(lblk, physical, length, unwritten));
            return;
        }
        if (unwritten) {
            throw new Ext4Exception(Errno.EOPNOTSUPP, "unwritten blocks need the extents feature");
        }
        for (int i = 0; i < length; i++) {
            indirect.set(lblk + i, physical + i);
        }
    }

    void markWritten(long lblk, long length) throws Ext4Exception {
        if (extents != null) {
            extents.markWritten(lblk, length);
        }
    }

    /** The first mapped (or unwritten) run at or after {@code from}, or null when none is left. */
    Mapping nextRun(long from) throws Ext4Exception {
        long max = maxBlocks();
        long l = from;
        if (extents == null) {
            l = indirect.nextMapped(from);
            if (l < 0) {
                return null;
            }
        }
        while (l < max) {
            Mapping m = map(l, max - l);
            if (!m.isHole()) {
                return m;
            }
            l += m.length();
        }
        return null;
    }

    /** Unmaps [from, to) and frees what it mapped. */
    void removeRange(long from, long to) throws Ext4Exception {
        if (extents != null) {
            extents.removeRange(from, Math.min(to, MAX_EXTENT_LBLK + 1));
        } else {
            indirect.removeRange(from, Math.min(to, IndirectMap.maxBlocks(blockSize)));
        }
    }
}
