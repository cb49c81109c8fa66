package dev.ext4j.extent;

import dev.ext4j.Ext4Exception;
import dev.ext4j.io.BlockCache;
import java.nio.ByteBuffer;

/**
 * The legacy block map of ext2/ext3 files (see ext4_ind_map_blocks() in fs/ext4/indirect.c): twelve
 * direct pointers in i_block, then single, double and triple indirect blocks of 32-bit pointers.
 */
public final class IndirectMap implements BlockMap {
    static final int DIRECT = 12;
    static final int IND = 12;
    static final int DIND = 13;
    static final int TIND = 14;

    private final BlockCache cache;
    private final long ino;
    private final ByteBuffer iBlock;
    private final int perBlock;

    public IndirectMap(BlockCache cache, long ino, ByteBuffer iBlock) {
        this.cache = cache;
        this.ino = ino;
        this.iBlock = iBlock;
        this.perBlock = cache.blockSize() / 4;
    }

    /** Largest logical block count this map can address. */
    public static long maxBlocks(int blockSize) {
        long p = blockSize / 4;
        return DIRECT + p + p * p + p * p * p;
    }

    @Override
    public Mapping map(long lblk, long maxLength) throws Ext4Exception {
        long first = physical(lblk);
        long len = 1;
        // Extend the run while the following blocks stay contiguous (or stay a hole), within the
        // same indirect block so each step is a cached lookup.
        while (len < maxLength && lblk + len < maxBlocks(cache.blockSize())) {
            long next = physical(lblk + len);
            if (first == 0 ? next != 0 : next != first + len) {
                break;
            }
            len++;
            if (len >= 1024) {
                break;
            }
        }
        return new Mapping(lblk, first, len, false);
    }

    /** Physical block of {@code lblk}, or 0 for a hole. */
    private long physical(long lblk) throws Ext4Exception {
        if (lblk < DIRECT) {
            return iBlock.getInt((int) lblk * 4) & 0xFFFFFFFFL;
        }
        long p = perBlock;
        long rel = lblk - DIRECT;
        if (rel < p) {
            return walk(iBlock.getInt(IND * 4) & 0xFFFFFFFFL, rel, 1);
        }
        rel -= p;
        if (rel < p * p) {
            return walk(iBlock.getInt(DIND * 4) & 0xFFFFFFFFL, rel, 2);
        }
        rel -= p * p;
        if (rel < p * p * p) {
            return walk(iBlock.getInt(TIND * 4) & 0xFFFFFFFFL, rel, 3);
        }
        throw new Ext4Exception(dev.ext4j.Errno.EFBIG, "inode " + ino + ": logical block " + lblk + " is beyond the indirect map");
    }

    private long walk(long block, long rel, int levels) throws Ext4Exception {
        long b = block;
        for (int level = levels; level > 0; level--) {
            if (b == 0) {
                return 0;
            }
            long span = 1;
            for (int i = 1; i < level; i++) {
                span *= perBlock;
            }
            int slot = (int) (rel / span);
            rel %= span;
            ByteBuffer buf;
            try {
                buf = cache.get(b);
            } catch (Ext4Exception e) {
                throw new Ext4Exception(e.errno(), "inode " + ino + " indirect block: " + e.getMessage(), e);
            }
            b = buf.getInt(slot * 4) & 0xFFFFFFFFL;
        }
        return b;
    }
}
