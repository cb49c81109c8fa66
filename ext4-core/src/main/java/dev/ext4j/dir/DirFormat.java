package dev.ext4j.dir;

import dev.ext4j.format.Feature;
import dev.ext4j.format.Superblock;

/**
 * What a directory reader needs to know of the filesystem: block size, features that change the
 * entry layout, checksum and hash parameters, and the inode count entries are checked against.
 *
 * @param hashUnsigned true when s_flags says the hash treated names as unsigned chars
 */
public record DirFormat(int blockSize, boolean fileType, boolean metadataCsum, boolean dirIndex,
                        boolean largeDir, int[] hashSeed, boolean hashUnsigned, long inodesCount) {
    /** The format the superblock describes (read again after an online resize changes the inode count). */
    public static DirFormat of(Superblock sb) {
        return new DirFormat(sb.blockSize(), sb.has(Feature.FILETYPE), sb.has(Feature.METADATA_CSUM), sb.has(Feature.DIR_INDEX),
                sb.has(Feature.LARGEDIR), sb.hashSeed(), (sb.flags() & Superblock.FLAG_UNSIGNED_HASH) != 0, sb.inodesCount());
    }
}
