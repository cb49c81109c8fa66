package dev.ext4j.format;

/**
 * A decoded leaf extent (libext2fs' struct ext2fs_extent, not the on-disk ext4_extent): logical
 * start, physical start, length in blocks, and whether it is unwritten (reads as zeros).
 */
public record Extent(long logical, long physical, int length, boolean unwritten) {

    public long logicalEnd() {
        return logical + length;
    }

    public boolean contains(long lblk) {
        return lblk >= logical && lblk < logical + length;
    }
}
