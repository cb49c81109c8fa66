package dev.ext4j.format;

import java.nio.ByteBuffer;

/**
 * One block of the orphan file (COMPAT_ORPHAN_FILE, the inode s_orphan_file_inum names): an array
 * of inode numbers, 0 for a free slot, and struct ext4_orphan_block_tail at the end of the block.
 *
 * <pre>
 * 0x00                slots: __le32 inode numbers, (block size - 8) / 4 of them
 * block size - 8      ob_magic (32)     EXT4_ORPHAN_BLOCK_MAGIC, 0x0B10CA04
 * block size - 4      ob_checksum (32)  crc32c(orphan file's inode seed, le64 physical block, slots)
 * </pre>
 *
 * The checksum seed is the orphan file's per-inode seed, crc32c(fs seed, le32 ino, le32
 * generation), as for the inode's other metadata; the block number is where the block sits on disk,
 * not its place in the file (see ext4_orphan_file_block_csum_verify() and e2fsprogs'
 * ext2fs_do_orphan_file_block_csum()). The tail itself is not covered. Without metadata_csum the
 * checksum field is not checked.
 */
public final class OrphanBlock {
    public static final int MAGIC = 0x0B10CA04;
    public static final int TAIL_SIZE = 8;
    /** Offsets from the end of the block. */
    static final int OB_MAGIC_FROM_END = 8;
    static final int OB_CHECKSUM_FROM_END = 4;
    static final int SLOT_SIZE = 4;

    private final ByteBuffer buf;
    private final int blockSize;

    private OrphanBlock(ByteBuffer buf, int blockSize) {
        this.buf = buf;
        this.blockSize = blockSize;
    }

    /** A view of {@code block}, a whole block of {@code blockSize} bytes (little-endian, absolute reads). */
    public static OrphanBlock of(ByteBuffer block, int blockSize) {
        return new OrphanBlock(block, blockSize);
    }

    /** Slots per block (ext4_inodes_per_orphan_block()). */
    public static int slotsPerBlock(int blockSize) {
        return (blockSize - TAIL_SIZE) / SLOT_SIZE;
    }

    public int slots() {
        return slotsPerBlock(blockSize);
    }

    /** The inode number in slot {@code i}; 0 when the slot is free. */
    public long slot(int i) {
        return buf.getInt(i * SLOT_SIZE) & 0xFFFFFFFFL;
    }

    public int magic() {
        return buf.getInt(blockSize - OB_MAGIC_FROM_END);
    }

    public int storedChecksum() {
        return buf.getInt(blockSize - OB_CHECKSUM_FROM_END);
    }

    /** crc32c over the physical block number and the slots, from the orphan file's inode seed. */
    public int computeChecksum(int inodeSeed, long physicalBlock) {
        int c = Checksums.crc32cLe64(inodeSeed, physicalBlock);
        return Checksums.crc32c(c, buf, 0, slots() * SLOT_SIZE);
    }

    // ---- writers; the buffer must be writable ----

    public void setSlot(int i, long ino) {
        buf.putInt(i * SLOT_SIZE, (int) ino);
    }

    public void setMagic(int magic) {
        buf.putInt(blockSize - OB_MAGIC_FROM_END, magic);
    }

    public void setChecksum(int checksum) {
        buf.putInt(blockSize - OB_CHECKSUM_FROM_END, checksum);
    }

    public void updateChecksum(int inodeSeed, long physicalBlock) {
        setChecksum(computeChecksum(inodeSeed, physicalBlock));
    }
}
