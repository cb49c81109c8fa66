package dev.ext4j.dir;

/**
 * What a directory reader needs to know of the filesystem: block size, features that change the
 * entry layout, checksum and hash parameters, and the inode count entries are checked against.
 *
 * @param hashUnsigned true when s_flags says the hash treated names as unsigned chars
 */
public record DirFormat(int blockSize, boolean fileType, boolean metadataCsum, boolean dirIndex,
                        boolean largeDir, int[] hashSeed, boolean hashUnsigned, long inodesCount) {
}
