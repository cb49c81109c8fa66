package dev.ext4j.journal;

import dev.ext4j.Errno;
import dev.ext4j.Ext4Exception;
import dev.ext4j.alloc.GroupTable;
import dev.ext4j.blockmap.BlockMap;
import dev.ext4j.blockmap.ExtentTree;
import dev.ext4j.blockmap.IndirectMap;
import dev.ext4j.blockmap.Mapping;
import dev.ext4j.format.Checksums;
import dev.ext4j.format.Feature;
import dev.ext4j.format.GroupDescriptor;
import dev.ext4j.format.Inode;
import dev.ext4j.format.JournalBlock;
import dev.ext4j.format.JournalSuperblock;
import dev.ext4j.format.Superblock;
import dev.ext4j.io.BufferCache;
import dev.ext4j.io.BlockDevice;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.List;

/**
 * An opened internal journal (the kernel's journal_t as set up by ext4_get_journal() and
 * jbd2's load_superblock()): the journal inode's blocks mapped once, and its checked superblock.
 * Log block n is block n of the journal inode; block 0 holds the journal superblock.
 *
 * <p>Not thread-safe: recovery runs before the mount is shared, and {@link JournalLog} serializes
 * its callers.
 */
public final class Journal {
    private final BlockDevice device;
    private final int blockSize;
    private final long ino;
    /** Device block of each log block, 0..s_maxlen-1. */
    private final long[] map;
    private final JournalSuperblock jsb;

    private Journal(BlockDevice device, int blockSize, long ino, long[] map, JournalSuperblock jsb) {
        this.device = device;
        this.blockSize = blockSize;
        this.ino = ino;
        this.map = map;
        this.jsb = jsb;
    }

    /**
     * Opens the journal of the filesystem on {@code device} and checks its superblock as the
     * kernel's load_superblock() does. Refuses an external journal (EOPNOTSUPP) and a bad journal
     * superblock (EUCLEAN, EBADMSG for a checksum), naming the journal inode.
     */
    public static Journal open(BlockDevice device, Superblock sb) throws Ext4Exception {
        long ino = sb.journalInum();
        if (ino == 0) {
            throw new Ext4Exception(Errno.EOPNOTSUPP, "the filesystem has an external journal device;"
                    + " ext4j only opens internal journals (run e2fsck with the journal device to replay it)");
        }
        int bs = sb.blockSize();
        BufferCache cache = new BufferCache(device, bs, sb.blocksCount(), 64L * bs);
        Inode inode = readInode(sb, cache, ino);
        int seed = sb.has(Feature.METADATA_CSUM)
                ? Checksums.crc32cLe32(Checksums.crc32cLe32(sb.checksumSeed(), (int) ino), (int) inode.generation()) : 0;
        BlockMap bmap = inode.hasFlag(Inode.EXTENTS_FL)
                ? new ExtentTree(cache, ino, inode.iBlock(), seed, sb.has(Feature.METADATA_CSUM))
                : new IndirectMap(cache, ino, inode.iBlock());
        long inodeBlocks = inode.size() / bs;
        if (inodeBlocks < 1) {
            throw corrupt(ino, "journal inode is empty (i_size " + inode.size() + ")");
        }
        ByteBuffer first = ByteBuffer.allocate(bs);
        long block0 = physical(bmap, ino, 0);
        read(device, ino, block0, first);
        JournalSuperblock jsb = new JournalSuperblock(first.flip());
        check(jsb, ino, block0, bs, inodeBlocks);
        long[] map = new long[(int) jsb.maxLen()];
        for (long l = 0; l < map.length; ) {
            Mapping m = bmap.map(l, map.length - l);
            if (m.readsAsZeros()) {
                throw corrupt(ino, "journal inode has a hole or unwritten extent at log block " + l);
            }
            for (long i = 0; i < m.length(); i++) {
                long p = m.physical() + i;
                if (p >= sb.blocksCount()) {
                    throw corrupt(ino, "log block " + (l + i) + " maps to block " + p + " past the end of the filesystem");
                }
                map[(int) (l + i)] = p;
            }
            l += m.length();
        }
        return new Journal(device, bs, ino, map, jsb);
    }

    private static Inode readInode(Superblock sb, BufferCache cache, long ino) throws Ext4Exception {
        List<String> ignored = new ArrayList<>();
        GroupTable groups = GroupTable.load(sb, cache, true, ignored);
        long ipg = sb.inodesPerGroup();
        if (ino < 1 || ino > sb.inodesCount()) {
            throw corrupt(ino, "journal inode number is out of range (1.." + sb.inodesCount() + ")");
        }
        GroupDescriptor gd = groups.get((ino - 1) / ipg);
        long byteOff = ((ino - 1) % ipg) * sb.inodeSize();
        long block = gd.inodeTable() + byteOff / sb.blockSize();
        byte[] raw = new byte[sb.inodeSize()];
        cache.get(block).get((int) (byteOff % sb.blockSize()), raw);
        Inode inode = new Inode(raw);
        if (sb.has(Feature.METADATA_CSUM)) {
            int computed = inode.computeChecksum(sb.checksumSeed(), ino);
            if (computed != inode.storedChecksum()) {
                throw Ext4Exception.badChecksum("journal inode " + ino + " (block " + block + ")",
                        inode.storedChecksum() & 0xFFFFFFFFL, computed & 0xFFFFFFFFL);
            }
        }
        if (!inode.isRegular() || inode.linksCount() == 0) {
            throw corrupt(ino, String.format("journal inode is not a regular file in use (mode 0%o, %d links)",
                    inode.mode(), inode.linksCount()));
        }
        return inode;
    }

    /** The checks of jbd2's journal_load()/load_superblock(), with the kernel's outcomes. */
    private static void check(JournalSuperblock jsb, long ino, long block0, int bs, long inodeBlocks) throws Ext4Exception {
        String where = "journal superblock (inode " + ino + ", block " + block0 + ")";
        if (jsb.magic() != JournalBlock.MAGIC
                || jsb.blockType() != JournalBlock.SUPERBLOCK_V1 && jsb.blockType() != JournalBlock.SUPERBLOCK_V2) {
            throw Ext4Exception.corrupted(String.format("%s: no valid journal superblock found (magic 0x%08x, block type %d;"
                    + " expected 0x%08x, type 3 or 4); run e2fsck", where, jsb.magic(), jsb.blockType(), JournalBlock.MAGIC));
        }
        if (jsb.hasIncompat(JournalSuperblock.INCOMPAT_CSUM_V2) && jsb.hasIncompat(JournalSuperblock.INCOMPAT_CSUM_V3)) {
            throw Ext4Exception.corrupted(where + ": both checksum v2 and v3 are set; run e2fsck");
        }
        if (jsb.hasCsumV2or3() && jsb.hasCompat(JournalSuperblock.COMPAT_CHECKSUM)) {
            throw Ext4Exception.corrupted(where + ": both checksum v1 and v2/v3 are set; run e2fsck");
        }
        if (jsb.hasCsumV2or3()) {
            if (jsb.checksumType() != JournalSuperblock.CHECKSUM_CRC32C) {
                throw Ext4Exception.corrupted(where + ": checksum type " + jsb.checksumType() + " (expected 4, crc32c); run e2fsck");
            }
            int computed = jsb.computeChecksum();
            if (computed != jsb.storedChecksum()) {
                throw new Ext4Exception(Errno.EBADMSG, String.format("%s: stored crc 0x%x, computed 0x%x; run e2fsck",
                        where, jsb.storedChecksum(), computed));
            }
        }
        int unknown = jsb.featureIncompat() & ~JournalSuperblock.KNOWN_INCOMPAT;
        if (unknown != 0 || jsb.featureRoCompat() != 0) {
            throw new Ext4Exception(Errno.EOPNOTSUPP, String.format("%s: unknown features (incompat 0x%x, ro_compat 0x%x)",
                    where, unknown, jsb.featureRoCompat()));
        }
        if (jsb.blockSize() != bs) {
            throw Ext4Exception.corrupted(where + ": s_blocksize " + jsb.blockSize() + " (expected the filesystem's " + bs + "); run e2fsck");
        }
        if (jsb.maxLen() > inodeBlocks || jsb.maxLen() > Integer.MAX_VALUE) {
            throw Ext4Exception.corrupted(where + ": s_maxlen " + jsb.maxLen() + " but the journal inode has " + inodeBlocks
                    + " blocks; run e2fsck");
        }
        if (jsb.first() == 0 || jsb.first() >= jsb.logEnd()) {
            throw Ext4Exception.corrupted(where + ": s_first " + jsb.first() + " (expected 1.." + (jsb.logEnd() - 1) + "); run e2fsck");
        }
        if (jsb.start() != 0 && (jsb.start() < jsb.first() || jsb.start() >= jsb.logEnd())) {
            throw Ext4Exception.corrupted(where + ": s_start " + jsb.start() + " is outside the log (" + jsb.first() + ".."
                    + (jsb.logEnd() - 1) + "); run e2fsck");
        }
    }

    private static long physical(BlockMap bmap, long ino, long lblk) throws Ext4Exception {
        Mapping m = bmap.map(lblk, 1);
        if (m.readsAsZeros()) {
            throw corrupt(ino, "journal inode has no block at log block " + lblk);
        }
        return m.physical();
    }

    private static Ext4Exception corrupt(long ino, String what) {
        return Ext4Exception.corrupted("journal inode " + ino + ": " + what + "; run e2fsck");
    }

    private static void read(BlockDevice device, long ino, long block, ByteBuffer dst) throws Ext4Exception {
        try {
            device.read(block * dst.capacity(), dst);
        } catch (IOException e) {
            throw new Ext4Exception(Errno.EIO, "journal inode " + ino + ", block " + block + ": read failed: " + e.getMessage(), e);
        }
    }

    public JournalSuperblock superblock() {
        return jsb;
    }

    public long inodeNumber() {
        return ino;
    }

    public int blockSize() {
        return blockSize;
    }

    /** The device block that holds log block {@code logBlock}. */
    public long deviceBlock(long logBlock) throws Ext4Exception {
        if (logBlock < 0 || logBlock >= map.length) {
            throw Ext4Exception.corrupted("journal inode " + ino + ": log block " + logBlock + " is past s_maxlen " + map.length);
        }
        return map[(int) logBlock];
    }

    /** Reads log block {@code logBlock}. */
    public byte[] readLogBlock(long logBlock) throws Ext4Exception {
        byte[] b = new byte[blockSize];
        read(device, ino, deviceBlock(logBlock), ByteBuffer.wrap(b));
        return b;
    }

    /** Writes log block {@code logBlock} (not durable until {@link #sync}). */
    public void writeLogBlock(long logBlock, byte[] contents) throws Ext4Exception {
        long block = deviceBlock(logBlock);
        try {
            device.write(block * blockSize, ByteBuffer.wrap(contents, 0, blockSize));
        } catch (IOException e) {
            throw new Ext4Exception(Errno.EIO, "journal inode " + ino + ", block " + block + ": write failed: " + e.getMessage(), e);
        }
    }

    /** Stamps the journal superblock's checksum and writes it to log block 0. */
    public void writeSuperblock() throws Ext4Exception {
        jsb.updateChecksum();
        long block = deviceBlock(0);
        try {
            device.write(block * blockSize, jsb.raw());
        } catch (IOException e) {
            throw new Ext4Exception(Errno.EIO, "journal superblock (block " + block + "): write failed: " + e.getMessage(), e);
        }
    }

    /** Makes every write so far durable. */
    public void sync() throws Ext4Exception {
        try {
            device.sync();
        } catch (IOException e) {
            throw new Ext4Exception(Errno.EIO, "syncing the image failed: " + e.getMessage(), e);
        }
    }

    /** The next log block after {@code logBlock}, wrapping from the end of the log to s_first. */
    public long next(long logBlock) {
        long n = logBlock + 1;
        return n >= jsb.logEnd() ? jsb.first() : n;
    }

    /** {@code logBlock + n}, wrapped as {@link #next}. */
    public long advance(long logBlock, long n) {
        long span = jsb.logEnd() - jsb.first();
        return jsb.first() + Math.floorMod(logBlock - jsb.first() + n, span);
    }
}
