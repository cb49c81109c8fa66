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
 *
 * <p>The setters write the raw fields; they leave the checksum to {@link #updateChecksum}.
 */
public final class ExtentNode {
    public static final int MAGIC = 0xF30A;
    public static final int HEADER_SIZE = 12;
    public static final int ENTRY_SIZE = 12;
    /** ee_len above this marks an unwritten extent of length ee_len - 32768. */
    public static final int INIT_MAX_LEN = 32768;
    /** EXT_UNWRITTEN_MAX_LEN: the longest unwritten extent. */
    public static final int UNWRITTEN_MAX_LEN = INIT_MAX_LEN - 1;
    /** ext4_ext_space_root(): entries that fit in i_block (60 bytes). */
    public static final int ROOT_MAX = (60 - HEADER_SIZE) / ENTRY_SIZE;
    public static final int TAIL_SIZE = 4;
    public static final int MAX_DEPTH = 5;

    static final int EH_MAGIC = 0x0;
    static final int EH_ENTRIES = 0x2;
    static final int EH_MAX = 0x4;
    static final int EH_DEPTH = 0x6;
    static final int EH_GENERATION = 0x8;
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

    public int generation() { return buf.getInt(EH_GENERATION); }

    /**
     * ext4_ext_space_block() / ext4_ext_space_block_idx(): eh_max of a node in a block of
     * {@code blockSize} bytes. The 4-byte tail fits in what is left over: (blockSize - 12) % 12
     * is 4 or 8 for every power-of-two block size from 1k up.
     */
    public static int blockMax(int blockSize) {
        return (blockSize - HEADER_SIZE) / ENTRY_SIZE;
    }

    /** Writes a header with no entries (ext4_ext_tree_init() for the root). Generation 0. */
    public void initHeader(int max, int depth) {
        buf.putShort(EH_MAGIC, (short) MAGIC);
        buf.putShort(EH_ENTRIES, (short) 0);
        buf.putShort(EH_MAX, (short) max);
        buf.putShort(EH_DEPTH, (short) depth);
        buf.putInt(EH_GENERATION, 0);
    }

    public void setEntries(int n) { buf.putShort(EH_ENTRIES, (short) n); }
    public void setMax(int n) { buf.putShort(EH_MAX, (short) n); }
    public void setDepth(int d) { buf.putShort(EH_DEPTH, (short) d); }

    /** Sets ee_block / ei_block of entry {@code i}. */
    public void setLogical(int i, long logical) {
        buf.putInt(entry(i) + EE_BLOCK, (int) logical);
    }

    /**
     * Encodes a leaf entry. The length is 1..32768 for a written extent and 1..32767 for an
     * unwritten one (ee_len = length + 32768); the physical start has 48 bits.
     */
    public void setExtent(int i, Extent e) {
        int max = e.unwritten() ? UNWRITTEN_MAX_LEN : INIT_MAX_LEN;
        if (e.length() < 1 || e.length() > max) {
            throw new IllegalArgumentException("extent length " + e.length() + " (expected 1.." + max + "): " + e);
        }
        if (e.physical() < 0 || e.physical() >>> 48 != 0) {
            throw new IllegalArgumentException("physical block does not fit in 48 bits: " + e);
        }
        int off = entry(i);
        buf.putInt(off + EE_BLOCK, (int) e.logical());
        buf.putShort(off + EE_LEN, (short) (e.unwritten() ? e.length() + INIT_MAX_LEN : e.length()));
        buf.putShort(off + EE_START_HI, (short) (e.physical() >>> 32));
        buf.putInt(off + EE_START_LO, (int) e.physical());
    }

    /** Encodes an index entry; ei_unused is cleared. */
    public void setIndex(int i, long logical, long leaf) {
        int off = entry(i);
        buf.putInt(off + EI_BLOCK, (int) logical);
        buf.putInt(off + EI_LEAF_LO, (int) leaf);
        buf.putShort(off + EI_LEAF_HI, (short) (leaf >>> 32));
        buf.putShort(off + EI_LEAF_HI + 2, (short) 0);
    }

    /** Moves {@code count} entries from slot {@code from} to slot {@code to} (memmove). */
    public void moveEntries(int from, int to, int count) {
        if (count <= 0 || from == to) {
            return;
        }
        byte[] tmp = new byte[count * ENTRY_SIZE];
        buf.get(entry(from), tmp);
        buf.put(entry(to), tmp);
    }

    /** Copies {@code count} entries from {@code src} slot {@code srcFrom} to slot {@code to} here. */
    public void copyEntriesFrom(ExtentNode src, int srcFrom, int to, int count) {
        if (count <= 0) {
            return;
        }
        byte[] tmp = new byte[count * ENTRY_SIZE];
        src.buf.get(src.entry(srcFrom), tmp);
        buf.put(entry(to), tmp);
    }

    /** Zeroes slots {@code from} .. {@code to - 1}. */
    public void clearEntries(int from, int to) {
        for (int off = entry(from); off < entry(to); off++) {
            buf.put(off, (byte) 0);
        }
    }

    /** Stores crc32c(inode seed, the node up to the tail) in the tail (block nodes only). */
    public void updateChecksum(int inodeSeed) {
        buf.putInt(tailOffset(), computeChecksum(inodeSeed));
    }
}
