package dev.ext4j.format;

import java.nio.ByteBuffer;

/**
 * View of an extent tree node: struct ext4_extent_header followed by eh_max entries, in i_block (60
 * bytes, four entries) or in a block (with struct ext4_extent_tail after the entries).
 *
 * <pre>
 * header (12 bytes): 0x0 eh_magic (16, 0xF30A)  0x2 eh_entries (16)  0x4 eh_max (16)
 *                    0x6 eh_depth (16)          0x8 eh_generation
 * leaf entry, struct ext4_extent (12):  0x0 ee_block  0x4 ee_len (16)  0x6 ee_start_hi (16)  0x8 ee_start_lo
 * index entry, struct ext4_extent_idx:  0x0 ei_block  0x4 ei_leaf_lo    0x8 ei_leaf_hi (16)
 * tail after eh_max entries: et_checksum (32)
 * </pre>
 */
public final class ExtentNode {
    public static final int MAGIC = 0xF30A;
    public static final int HEADER_SIZE = 12;
    public static final int ENTRY_SIZE = 12;
    /** ee_len above this marks an unwritten extent of length ee_len - 32768. */
    public static final int INIT_MAX_LEN = 32768;
    public static final int MAX_DEPTH = 5;

    static final int EH_MAGIC = 0x0;
    static final int EH_ENTRIES = 0x2;
    static final int EH_MAX = 0x4;
    static final int EH_DEPTH = 0x6;
    static final int EE_BLOCK = 0x0;
    static final int EE_LEN = 0x4;
    static final int EE_START_HI = 0x6;
    static final int EE_START_LO = 0x8;
    static final int EI_BLOCK = 0x0;
    static final int EI_LEAF_LO = 0x4;
    static final int EI_LEAF_HI = 0x8;

    private final ByteBuffer buf;

    /** {@code buf} holds the node at position 0 (i_block, or a whole block). */
    public ExtentNode(ByteBuffer buf) {
        this.buf = buf;
    }

    public int magic() { return buf.getShort(EH_MAGIC) & 0xFFFF; }
    public int entries() { return buf.getShort(EH_ENTRIES) & 0xFFFF; }
    public int max() { return buf.getShort(EH_MAX) & 0xFFFF; }
    public int depth() { return buf.getShort(EH_DEPTH) & 0xFFFF; }

    private int entry(int i) {
        return HEADER_SIZE + i * ENTRY_SIZE;
    }

    /** Logical block of entry {@code i}: ee_block or ei_block (same offset). */
    public long logical(int i) {
        return buf.getInt(entry(i) + EE_BLOCK) & 0xFFFFFFFFL;
    }

    /** Leaf entry {@code i}, decoded. */
    public Extent extent(int i) {
        int e = entry(i);
        int len = buf.getShort(e + EE_LEN) & 0xFFFF;
        boolean unwritten = len > INIT_MAX_LEN;
        long start = (buf.getInt(e + EE_START_LO) & 0xFFFFFFFFL) | (long) (buf.getShort(e + EE_START_HI) & 0xFFFF) << 32;
        return new Extent(logical(i), start, unwritten ? len - INIT_MAX_LEN : len, unwritten);
    }

    /** Child block of index entry {@code i}. */
    public long indexLeaf(int i) {
        int e = entry(i);
        return (buf.getInt(e + EI_LEAF_LO) & 0xFFFFFFFFL) | (long) (buf.getShort(e + EI_LEAF_HI) & 0xFFFF) << 32;
    }

    /** Byte offset of the ext4_extent_tail in a block node. */
    public int tailOffset() {
        return HEADER_SIZE + max() * ENTRY_SIZE;
    }

    public int storedChecksum() {
        return buf.getInt(tailOffset());
    }

    /** crc32c(inode seed, the node up to the tail). */
    public int computeChecksum(int inodeSeed) {
        return Checksums.crc32c(inodeSeed, buf, 0, tailOffset());
    }
}
