package dev.ext4j.fs;

import java.util.List;

/**
 * A mounted filesystem's state, for the control file's {@code status}.
 *
 * @param dirtyBytes  file data in the page cache and metadata blocks not yet written home
 * @param errorCount  s_error_count: errors recorded in the superblock
 * @param features    the feature names set, as dumpe2fs lists them
 * @param readOnlyWhy why changes are refused, or null on a writable mount
 */
public record FsStatus(int blockSize, long blocks, long freeBlocks, long inodes, long freeInodes, long dirtyBytes,
                       boolean frozen, long errorCount, List<String> features, String readOnlyWhy) {

    public long sizeBytes() {
        return blocks * blockSize;
    }
}
