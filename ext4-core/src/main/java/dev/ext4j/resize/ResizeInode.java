package dev.ext4j.resize;

import dev.ext4j.Ext4Exception;
import dev.ext4j.format.Inode;
import dev.ext4j.format.Superblock;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The resize inode (inode 7, resize_inode feature) as an online resize changes it, worked on in
 * memory copies and written only when the whole resize has been planned.
 *
 * <p>Layout (e2fsprogs' ext2fs_create_resize_inode(), checked as the kernel's verify_reserved_gdb()
 * does): i_block[EXT4_DIND_BLOCK] names a double-indirect block whose entry {@code i % (bs / 4)}
 * is the primary reserved GDT block that would become descriptor block {@code i}; each reserved
 * block in turn lists, in group order, its copies in the groups that hold superblock backups
 * ({@code group * blocks_per_group + primary}).
 *
 * <p>Two changes, as in the kernel's resize.c:
 * <ul>
 * <li>{@link #take} (add_new_gdb()): a reserved block becomes descriptor block {@code i}; its
 *     entry leaves the double-indirect block, and it and its backups leave i_blocks.
 * <li>{@link #reserveBackups} (reserve_backup_gdb()): a new group with a superblock backup has
 *     its own copies of the remaining reserved blocks; each is appended to its primary's list.
 * </ul>
 */
final class ResizeInode {
    static final long INO = 7;
    /** EXT4_DIND_BLOCK. */
    private static final int DIND = 13;

    private final int blockSize;
    private final long blocksPerGroup;
    /** The primary GDT's first block: right after the primary superblock's block. */
    private final long gdtStart;
    private final Inode inode;
    private final long dindBlock;
    private final ByteBuffer dind;
    /** Primary reserved GDT block -> its list of backups, for the blocks still reserved. */
    private final Map<Long, ByteBuffer> reserved = new LinkedHashMap<>();
    private long sectorsDelta;

    private ResizeInode(Superblock sb, Inode inode, long dindBlock, ByteBuffer dind) {
        this.blockSize = sb.blockSize();
        this.blocksPerGroup = sb.blocksPerGroup();
        this.gdtStart = Superblock.OFFSET_IN_IMAGE / blockSize + 1;
        this.inode = inode;
        this.dindBlock = dindBlock;
        this.dind = dind;
    }

    /** Reads and checks the inode; {@code read} fetches a block's bytes. */
    static ResizeInode load(Superblock sb, Inode inode, long gdtBlocks, List<Long> backupGroups, BlockReader read)
            throws Ext4Exception {
        long dindBlock = inode.blockWord(DIND);
        int r = sb.reservedGdtBlocks();
        if (dindBlock == 0) {
            if (r != 0) {
                throw Ext4Exception.corrupted("resize inode 7 has no double-indirect block but " + r + " GDT blocks are reserved; run e2fsck");
            }
            return new ResizeInode(sb, inode, 0, null);
        }
        ResizeInode ri = new ResizeInode(sb, inode, dindBlock, copy(read.read(dindBlock)));
        int apb = sb.blockSize() / 4;
        for (long k = 0; k < r; k++) {
            long primary = ri.gdtStart + gdtBlocks + k;
            long listed = ri.dind.getInt((int) ((gdtBlocks + k) % apb) * 4) & 0xFFFFFFFFL;
            if (listed != primary) {
                throw Ext4Exception.corrupted("resize inode 7: double-indirect block " + dindBlock + " entry "
                        + (gdtBlocks + k) % apb + " is " + listed + ", expected reserved GDT block " + primary + "; run e2fsck");
            }
            ByteBuffer list = copy(read.read(primary));
            for (int j = 0; j < backupGroups.size(); j++) {
                long want = backupGroups.get(j) * ri.blocksPerGroup + primary;
                long got = list.getInt(j * 4) & 0xFFFFFFFFL;
                if (got != want) {
                    throw Ext4Exception.corrupted("resize inode 7: reserved GDT block " + primary + " lists " + got
                            + " as its backup in group " + backupGroups.get(j) + ", expected " + want + "; run e2fsck");
                }
            }
            ri.reserved.put(primary, list);
        }
        return ri;
    }

    /** Reads one block. */
    @FunctionalInterface
    interface BlockReader {
        ByteBuffer read(long block) throws Ext4Exception;
    }

    private static ByteBuffer copy(ByteBuffer b) {
        ByteBuffer c = ByteBuffer.allocate(b.remaining()).order(ByteOrder.LITTLE_ENDIAN);
        c.put(b.duplicate()).flip();
        return c;
    }

    long dindBlock() {
        return dindBlock;
    }

    /**
     * Reserved block {@code gdtStart + i} becomes descriptor block {@code i}; it has
     * {@code backups} copies (the backup groups that exist now).
     */
    void take(long i, int backups) {
        long primary = gdtStart + i;
        reserved.remove(primary);
        dind.putInt((int) (i % (blockSize / 4)) * 4, 0);
        sectorsDelta -= (backups + 1L) * (blockSize / 512);
    }

    /**
     * New group {@code group}, the {@code index}th backup group, keeps copies of the
     * {@code count} reserved blocks that follow the {@code gdtBlocks} descriptor blocks.
     */
    void reserveBackups(long group, int index, long gdtBlocks, int count) {
        for (long k = 0; k < count; k++) {
            long primary = gdtStart + gdtBlocks + k;
            reserved.get(primary).putInt(index * 4, (int) (group * blocksPerGroup + primary));
        }
        sectorsDelta += (long) count * (blockSize / 512);
    }

    /** Writes the changed lists and the double-indirect block. */
    void writeBlocks(BlockWriter write) throws Ext4Exception {
        if (dind == null) {
            return;
        }
        for (Map.Entry<Long, ByteBuffer> e : reserved.entrySet()) {
            write.write(e.getKey(), e.getValue());
        }
        write.write(dindBlock, dind);
    }

    /** Writes one block whole. */
    @FunctionalInterface
    interface BlockWriter {
        void write(long block, ByteBuffer contents) throws Ext4Exception;
    }

    /**
     * The inode as it is to be written: i_blocks moved by the changes; with {@code dropDind}
     * (conversion to meta_bg, ext4_convert_meta_bg()) the double-indirect block is gone and the
     * inode holds no block.
     */
    Inode changedInode(boolean dropDind, boolean hugeFile) {
        Inode c = inode.copy();
        if (dropDind) {
            ByteBuffer iblock = ByteBuffer.allocate(Inode.I_BLOCK_SIZE);
            c.setIBlock(iblock);
            c.setBlocks512(0, blockSize);
        } else {
            c.setBlocks512(inode.blocks512(hugeFile, blockSize) + sectorsDelta, blockSize);
        }
        return c;
    }
}
