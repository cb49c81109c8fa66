package dev.ext4j.extent;

import dev.ext4j.Ext4Exception;
import dev.ext4j.format.Extent;
import dev.ext4j.format.ExtentNode;
import dev.ext4j.io.BlockCache;
import java.nio.ByteBuffer;

/**
 * Lookup in an inode's extent tree (see ext4_find_extent() and ext4_ext_map_blocks() in
 * fs/ext4/extents.c). Every node is checked as ext4_ext_check() does: magic, entries within max,
 * max within the node's room, the depth the parent expects (which also rules out loops, since depth
 * strictly falls), and the tail checksum of block nodes.
 */
public final class ExtentTree implements BlockMap {
    private final BlockCache cache;
    private final long ino;
    private final ByteBuffer root;
    private final int inodeSeed;
    private final boolean verifyChecksums;

    /**
     * @param root      i_block, 60 bytes, little-endian
     * @param inodeSeed crc32c(fs seed, ino, generation), used when {@code verifyChecksums}
     */
    public ExtentTree(BlockCache cache, long ino, ByteBuffer root, int inodeSeed, boolean verifyChecksums) {
        this.cache = cache;
        this.ino = ino;
        this.root = root;
        this.inodeSeed = inodeSeed;
        this.verifyChecksums = verifyChecksums;
    }

    @Override
    public Mapping map(long lblk, long maxLength) throws Ext4Exception {
        ExtentNode node = new ExtentNode(root);
        check(node, -1, root.capacity(), 0);
        long nextStart = Long.MAX_VALUE; // first logical block past lblk that some extent covers
        long block = 0;
        while (node.depth() > 0) {
            int i = search(node, lblk);
            if (i + 1 < node.entries()) {
                nextStart = Math.min(nextStart, node.logical(i + 1));
            }
            if (i < 0) {
                // lblk lies before the first index; descend the first child to find the next extent
                i = 0;
            }
            int depth = node.depth();
            block = node.indexLeaf(i);
            ByteBuffer b = cache.get(block);
            node = new ExtentNode(b);
            check(node, depth - 1, b.capacity(), block);
        }
        int i = search(node, lblk);
        if (i >= 0) {
            Extent e = node.extent(i);
            if (e.contains(lblk)) {
                long len = Math.min(e.logicalEnd() - lblk, maxLength);
                return new Mapping(lblk, e.physical() + (lblk - e.logical()), len, e.unwritten());
            }
        }
        if (i + 1 < node.entries()) {
            nextStart = Math.min(nextStart, node.logical(i + 1));
        }
        long hole = nextStart > lblk ? Math.min(nextStart - lblk, maxLength) : maxLength;
        return new Mapping(lblk, 0, Math.max(1, hole), false);
    }

    /** Index of the last entry whose logical start is at or before {@code lblk}, or -1. */
    private static int search(ExtentNode node, long lblk) {
        int lo = 0;
        int hi = node.entries() - 1;
        int found = -1;
        while (lo <= hi) {
            int mid = (lo + hi) >>> 1;
            if (node.logical(mid) <= lblk) {
                found = mid;
                lo = mid + 1;
            } else {
                hi = mid - 1;
            }
        }
        return found;
    }

    private void check(ExtentNode node, int expectedDepth, int room, long block) throws Ext4Exception {
        String where = block == 0 ? "inode " + ino + " extent root" : "inode " + ino + " extent block " + block;
        if (node.magic() != ExtentNode.MAGIC) {
            throw Ext4Exception.corrupted(String.format("%s: bad magic 0x%04x (expected 0x%04x)", where, node.magic(), ExtentNode.MAGIC));
        }
        int fit = (room - ExtentNode.HEADER_SIZE - (block == 0 ? 0 : 4)) / ExtentNode.ENTRY_SIZE;
        if (node.max() == 0 || node.max() > fit) {
            throw Ext4Exception.corrupted(where + ": eh_max " + node.max() + " (expected 1.." + fit + ")");
        }
        if (node.entries() > node.max()) {
            throw Ext4Exception.corrupted(where + ": eh_entries " + node.entries() + " is above eh_max " + node.max());
        }
        if (expectedDepth < 0 ? node.depth() > ExtentNode.MAX_DEPTH : node.depth() != expectedDepth) {
            throw Ext4Exception.corrupted(where + ": depth " + node.depth() + " (expected "
                    + (expectedDepth < 0 ? "at most " + ExtentNode.MAX_DEPTH : expectedDepth) + ")");
        }
        if (node.depth() > 0 && node.entries() == 0) {
            throw Ext4Exception.corrupted(where + ": index node with no entries");
        }
        if (block != 0 && verifyChecksums) {
            int stored = node.storedChecksum();
            int computed = node.computeChecksum(inodeSeed);
            if (stored != computed) {
                throw Ext4Exception.badChecksum(where, stored & 0xFFFFFFFFL, computed & 0xFFFFFFFFL);
            }
        }
    }
}
