package dev.ext4j.fs;

import dev.ext4j.extent.BlockMap;
import dev.ext4j.format.Inode;

/**
 * An inode in memory (the kernel's struct ext4_inode_info): one object per live inode, kept by
 * {@link InodeTable}, that holds the verified on-disk record with its checksum seed and block map,
 * and the inode's own in-memory state: how many file handles have it open. While a handle is open
 * the object stays in the table (it is pinned), so the count cannot be lost to the cache's
 * eviction.
 *
 * <p>The record, seed and map change together, as one version, when the inode is written
 * ({@link InodeTable#write}); readers get a consistent version from {@link #inode()} and
 * {@link #map()} as long as they hold the inode's lock, or read only the record.
 */
final class InodeInfo {
    /** One written version: the record, its checksum seed and its block map. */
    private record Version(Inode inode, int csumSeed, BlockMap map) {
    }

    private final long ino;
    private volatile Version version;
    /** Open file handles; under this object's monitor. */
    private int opens;

    /**
     * @param csumSeed crc32c(fs seed, ino, generation); 0 without metadata_csum
     * @param map      the extent tree or indirect map; null for inline data and fast symlinks
     */
    InodeInfo(long ino, Inode inode, int csumSeed, BlockMap map) {
        this.ino = ino;
        this.version = new Version(inode, csumSeed, map);
    }

    long ino() {
        return ino;
    }

    /** The on-disk record as last read or written; callers change a copy and write it through {@link InodeTable#write}. */
    Inode inode() {
        return version.inode();
    }

    int csumSeed() {
        return version.csumSeed();
    }

    BlockMap map() {
        return version.map();
    }

    /** A new version written (under the inode's install monitor). */
    void update(Inode inode, int csumSeed, BlockMap map) {
        version = new Version(inode, csumSeed, map);
    }

    /** One more open file handle; true for the first (the table pins the inode then). */
    synchronized boolean open() {
        return ++opens == 1;
    }

    /** One handle fewer; true when it was the last (the table unpins the inode then). */
    synchronized boolean release() {
        if (opens == 0) {
            return false;
        }
        return --opens == 0;
    }

    synchronized boolean isOpen() {
        return opens > 0;
    }

    /** Forgets every handle (unmount); true when some were open. */
    synchronized boolean closeAll() {
        boolean was = opens > 0;
        opens = 0;
        return was;
    }
}
