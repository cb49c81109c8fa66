package dev.ext4j.format;

import java.nio.ByteBuffer;

/**
 * Static accessors for struct ext4_xattr_entry and the two headers entries follow: the 32-byte
 * struct ext4_xattr_header of an xattr block and the 4-byte struct ext4_xattr_ibody_header after
 * i_extra_isize in a large inode.
 *
 * <pre>
 * block header: 0x00 h_magic (0xEA020000)  0x04 h_refcount  0x08 h_blocks  0x0C h_hash  0x10 h_checksum
 * ibody header: 0x00 h_magic
 * entry: 0x0 e_name_len (8)  0x1 e_name_index (8)  0x2 e_value_offs (16)  0x4 e_value_inum
 *        0x8 e_value_size  0xC e_hash  0x10 e_name[e_name_len], padded to 4 bytes
 * a list ends with four zero bytes
 * </pre>
 */
public final class XattrEntry {
    public static final int MAGIC = 0xEA020000;
    public static final int BLOCK_HEADER_SIZE = 32;
    public static final int IBODY_HEADER_SIZE = 4;
    public static final int ENTRY_HEADER_SIZE = 16;

    static final int H_MAGIC = 0x00;
    static final int H_REFCOUNT = 0x04;
    static final int H_BLOCKS = 0x08;
    public static final int H_CHECKSUM = 0x10;
    static final int E_NAME_LEN = 0x0;
    static final int E_NAME_INDEX = 0x1;
    static final int E_VALUE_OFFS = 0x2;
    static final int E_VALUE_INUM = 0x4;
    static final int E_VALUE_SIZE = 0x8;

    private XattrEntry() {
    }

    public static int magic(ByteBuffer b, int headerOff) { return b.getInt(headerOff + H_MAGIC); }
    public static long refcount(ByteBuffer b) { return b.getInt(H_REFCOUNT) & 0xFFFFFFFFL; }
    public static long blocks(ByteBuffer b) { return b.getInt(H_BLOCKS) & 0xFFFFFFFFL; }
    public static int blockChecksum(ByteBuffer b) { return b.getInt(H_CHECKSUM); }

    public static int nameLen(ByteBuffer b, int off) { return b.get(off + E_NAME_LEN) & 0xFF; }
    public static int nameIndex(ByteBuffer b, int off) { return b.get(off + E_NAME_INDEX) & 0xFF; }
    public static int valueOffs(ByteBuffer b, int off) { return b.getShort(off + E_VALUE_OFFS) & 0xFFFF; }
    public static long valueInum(ByteBuffer b, int off) { return b.getInt(off + E_VALUE_INUM) & 0xFFFFFFFFL; }
    public static long valueSize(ByteBuffer b, int off) { return b.getInt(off + E_VALUE_SIZE) & 0xFFFFFFFFL; }

    public static byte[] name(ByteBuffer b, int off) {
        byte[] n = new byte[nameLen(b, off)];
        b.get(off + ENTRY_HEADER_SIZE, n);
        return n;
    }

    /** True at the four zero bytes that end an entry list. */
    public static boolean isLast(ByteBuffer b, int off) {
        return b.getInt(off) == 0;
    }

    /** EXT4_XATTR_LEN(): header plus name, rounded up to 4. */
    public static int entryLen(int nameLen) {
        return (ENTRY_HEADER_SIZE + nameLen + 3) & ~3;
    }

    /** ext4_xattr_block_csum(): crc32c(fs seed, block number, block with h_checksum as zero). */
    public static int computeBlockChecksum(ByteBuffer b, int fsSeed, long block, int blockSize) {
        int c = Checksums.crc32cLe64(fsSeed, block);
        return Checksums.crc32cZeroing(c, b, 0, blockSize, H_CHECKSUM, -1, 4);
    }
}
