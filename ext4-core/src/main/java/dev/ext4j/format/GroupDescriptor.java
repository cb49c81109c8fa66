package dev.ext4j.format;

import java.nio.ByteBuffer;

/**
 * View of struct ext4_group_desc, 32 bytes, or 64 (s_desc_size) with the 64bit feature.
 *
 * <pre>
 * 0x00 bg_block_bitmap_lo  0x04 bg_inode_bitmap_lo  0x08 bg_inode_table_lo
 * 0x0C bg_free_blocks_count_lo (16)  0x0E bg_free_inodes_count_lo (16)  0x10 bg_used_dirs_count_lo (16)
 * 0x12 bg_flags (16)  0x18 bg_block_bitmap_csum_lo (16)  0x1A bg_inode_bitmap_csum_lo (16)
 * 0x1C bg_itable_unused_lo (16)  0x1E bg_checksum (16)
 * 0x20 bg_block_bitmap_hi  0x24 bg_inode_bitmap_hi  0x28 bg_inode_table_hi
 * 0x2C bg_free_blocks_count_hi (16)  0x2E bg_free_inodes_count_hi (16)  0x30 bg_used_dirs_count_hi (16)
 * 0x32 bg_itable_unused_hi (16)  0x38 bg_block_bitmap_csum_hi (16)  0x3A bg_inode_bitmap_csum_hi (16)
 * </pre>
 */
public final class GroupDescriptor {
    static final int BG_BLOCK_BITMAP_LO = 0x00;
    static final int BG_INODE_BITMAP_LO = 0x04;
    static final int BG_INODE_TABLE_LO = 0x08;
    static final int BG_FREE_BLOCKS_COUNT_LO = 0x0C;
    static final int BG_FREE_INODES_COUNT_LO = 0x0E;
    static final int BG_USED_DIRS_COUNT_LO = 0x10;
    static final int BG_FLAGS = 0x12;
    static final int BG_BLOCK_BITMAP_CSUM_LO = 0x18;
    static final int BG_INODE_BITMAP_CSUM_LO = 0x1A;
    static final int BG_ITABLE_UNUSED_LO = 0x1C;
    static final int BG_CHECKSUM = 0x1E;
    static final int BG_BLOCK_BITMAP_HI = 0x20;
    static final int BG_INODE_BITMAP_HI = 0x24;
    static final int BG_INODE_TABLE_HI = 0x28;
    static final int BG_FREE_BLOCKS_COUNT_HI = 0x2C;
    static final int BG_FREE_INODES_COUNT_HI = 0x2E;
    static final int BG_USED_DIRS_COUNT_HI = 0x30;
    static final int BG_ITABLE_UNUSED_HI = 0x32;
    static final int BG_BLOCK_BITMAP_CSUM_HI = 0x38;
    static final int BG_INODE_BITMAP_CSUM_HI = 0x3A;
    /** Descriptors at least this long hold the _hi halves. */
    static final int SIZE_64 = 64;

    public static final int FLAG_INODE_UNINIT = 0x1;
    public static final int FLAG_BLOCK_UNINIT = 0x2;
    public static final int FLAG_INODE_ZEROED = 0x4;

    private final ByteBuffer buf;
    private final int base;
    private final int size;

    /** A view of the descriptor at {@code base} in {@code buf}, {@code size} bytes long. */
    public GroupDescriptor(ByteBuffer buf, int base, int size) {
        this.buf = buf;
        this.base = base;
        this.size = size;
    }

    private long u32(int off) {
        return buf.getInt(base + off) & 0xFFFFFFFFL;
    }

    private int u16(int off) {
        return buf.getShort(base + off) & 0xFFFF;
    }

    private long join32(int lo, int hi) {
        return u32(lo) | (size >= SIZE_64 ? u32(hi) << 32 : 0);
    }

    private long join16(int lo, int hi) {
        return u16(lo) | (size >= SIZE_64 ? (long) u16(hi) << 16 : 0);
    }

    public long blockBitmap() { return join32(BG_BLOCK_BITMAP_LO, BG_BLOCK_BITMAP_HI); }
    public long inodeBitmap() { return join32(BG_INODE_BITMAP_LO, BG_INODE_BITMAP_HI); }
    public long inodeTable() { return join32(BG_INODE_TABLE_LO, BG_INODE_TABLE_HI); }
    public long freeBlocksCount() { return join16(BG_FREE_BLOCKS_COUNT_LO, BG_FREE_BLOCKS_COUNT_HI); }
    public long freeInodesCount() { return join16(BG_FREE_INODES_COUNT_LO, BG_FREE_INODES_COUNT_HI); }
    public long usedDirsCount() { return join16(BG_USED_DIRS_COUNT_LO, BG_USED_DIRS_COUNT_HI); }
    public long itableUnused() { return join16(BG_ITABLE_UNUSED_LO, BG_ITABLE_UNUSED_HI); }
    public int flags() { return u16(BG_FLAGS); }
    public int storedChecksum() { return u16(BG_CHECKSUM); }
    public long blockBitmapChecksum() { return join16(BG_BLOCK_BITMAP_CSUM_LO, BG_BLOCK_BITMAP_CSUM_HI); }
    public long inodeBitmapChecksum() { return join16(BG_INODE_BITMAP_CSUM_LO, BG_INODE_BITMAP_CSUM_HI); }

    private void put32(int lo, int hi, long v) {
        buf.putInt(base + lo, (int) v);
        if (size >= SIZE_64) {
            buf.putInt(base + hi, (int) (v >>> 32));
        }
    }

    private void put16(int lo, int hi, long v) {
        buf.putShort(base + lo, (short) v);
        if (size >= SIZE_64) {
            buf.putShort(base + hi, (short) (v >>> 16));
        }
    }

    public void setBlockBitmap(long v) { put32(BG_BLOCK_BITMAP_LO, BG_BLOCK_BITMAP_HI, v); }
    public void setInodeBitmap(long v) { put32(BG_INODE_BITMAP_LO, BG_INODE_BITMAP_HI, v); }
    public void setInodeTable(long v) { put32(BG_INODE_TABLE_LO, BG_INODE_TABLE_HI, v); }
    public void setFreeBlocksCount(long v) { put16(BG_FREE_BLOCKS_COUNT_LO, BG_FREE_BLOCKS_COUNT_HI, v); }
    public void setFreeInodesCount(long v) { put16(BG_FREE_INODES_COUNT_LO, BG_FREE_INODES_COUNT_HI, v); }
    public void setUsedDirsCount(long v) { put16(BG_USED_DIRS_COUNT_LO, BG_USED_DIRS_COUNT_HI, v); }
    public void setItableUnused(long v) { put16(BG_ITABLE_UNUSED_LO, BG_ITABLE_UNUSED_HI, v); }
    public void setFlags(int v) { buf.putShort(base + BG_FLAGS, (short) v); }
    public void setBlockBitmapChecksum(long v) { put16(BG_BLOCK_BITMAP_CSUM_LO, BG_BLOCK_BITMAP_CSUM_HI, v); }
    public void setInodeBitmapChecksum(long v) { put16(BG_INODE_BITMAP_CSUM_LO, BG_INODE_BITMAP_CSUM_HI, v); }
    public void setChecksum(int v) { buf.putShort(base + BG_CHECKSUM, (short) v); }

    /** True when a 64-byte descriptor stores the upper halves of the bitmap checksums. */
    public boolean hasChecksumHi() {
        return size >= SIZE_64;
    }

    /**
     * bg_checksum as ext4_group_desc_csum() computes it: with metadata_csum the low 16 bits of
     * crc32c(seed, group, descriptor with bg_checksum as zero); with gdt_csum crc16(~0, uuid, group,
     * descriptor without bg_checksum).
     */
    public int computeChecksum(boolean metadataCsum, int csumSeed, byte[] uuid, long group) {
        if (metadataCsum) {
            int c = Checksums.crc32cLe32(csumSeed, (int) group);
            return Checksums.crc32cZeroing(c, buf, base, size, base + BG_CHECKSUM, -1, 2) & 0xFFFF;
        }
        int c = Checksums.crc16(~0, uuid);
        c = Checksums.crc16(c, new byte[] {(byte) group, (byte) (group >>> 8), (byte) (group >>> 16), (byte) (group >>> 24)});
        c = Checksums.crc16(c, buf, base, BG_CHECKSUM);
        if (size > BG_CHECKSUM + 2) {
            c = Checksums.crc16(c, buf, base + BG_CHECKSUM + 2, size - BG_CHECKSUM - 2);
        }
        return c;
    }
}
