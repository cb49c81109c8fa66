package dev.ext4j.fs;

/** What statfs(2) reports, in blocks of {@code blockSize} bytes and in inodes. */
public record StatFs(int blockSize, long blocks, long freeBlocks, long availableBlocks, long inodes,
                     long freeInodes, int nameMax, boolean readOnly) {
}
