package dev.ext4j.fs;

import dev.ext4j.extent.BlockMap;
import dev.ext4j.format.Inode;

/**
 * An inode in memory (the kernel's struct ext4_inode_info): the on-disk record, verified, with the
 * per-inode checksum seed and its block map, built once.
 *
 * @param csumSeed crc32c(fs seed, ino, generation); 0 without metadata_csum
 * @param map      the extent tree or indirect map; null for inline data and fast symlinks
 */
record InodeInfo(long ino, Inode inode, int csumSeed, BlockMap map) {
}
