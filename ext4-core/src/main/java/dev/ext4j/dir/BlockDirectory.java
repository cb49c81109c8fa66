package dev.ext4j.dir;

import dev.ext4j.Ext4Exception;
import dev.ext4j.extent.BlockMap;
import dev.ext4j.extent.Mapping;
import dev.ext4j.Errno;
import dev.ext4j.format.Checksums;
import dev.ext4j.format.DirEntry;
import dev.ext4j.format.DxNode;
import dev.ext4j.io.BlockCache;
import java.lang.System.Logger.Level;
import java.nio.ByteBuffer;

/**
 * A directory kept in blocks: a linear list of entries per block (fs/ext4/dir.c), optionally with an
 * htree index over it (fs/ext4/namei.c, dx_probe() and ext4_htree_next_block()). Readdir walks the
 * blocks in order, so a position is the byte offset of an entry in the directory file and stays
 * valid across calls. Lookup uses the index when it is sound and falls back to a linear scan, with
 * a log line asking for e2fsck, when it is not.
 */
public final class BlockDirectory implements DirEntries {
    private static final System.Logger LOG = System.getLogger("ext4j");

    private final BlockCache cache;
    private final long ino;
    private final BlockMap map;
    private final long blocks;
    private final boolean indexed;
    private final DirFormat fmt;
    private final int inodeSeed;

    /**
     * @param sizeBytes the directory's i_size
     * @param indexed   EXT4_INDEX_FL is set (used only with the dir_index feature)
     */
    public BlockDirectory(BlockCache cache, long ino, BlockMap map, long sizeBytes, boolean indexed,
                          DirFormat fmt, int inodeSeed) throws Ext4Exception {
        int bs = fmt.blockSize();
        if (sizeBytes % bs != 0 || sizeBytes <= 0) {
            throw Ext4Exception.corrupted("directory inode " + ino + ": size " + sizeBytes + " is not a positive multiple of the block size " + bs);
        }
        this.cache = cache;
        this.ino = ino;
        this.map = map;
        this.blocks = sizeBytes / bs;
        this.indexed = indexed && fmt.dirIndex();
        this.fmt = fmt;
        this.inodeSeed = inodeSeed;
    }

    private String where(long lblk) {
        return "directory inode " + ino + " block " + lblk;
    }

    /** The directory block {@code lblk}, checksum-verified, or null for a hole. */
    private ByteBuffer block(long lblk) throws Ext4Exception {
        Mapping m = map.map(lblk, 1);
        if (m.readsAsZeros()) {
            return null;
        }
        ByteBuffer b = cache.get(m.physical());
        if (fmt.metadataCsum()) {
            verify(b, lblk, m.physical());
        }
        return b;
    }

    /**
     * Checks a block's checksum: an htree node's dx tail, or a leaf's dirent tail. Index nodes are
     * told apart by their position (block 0) or their fake entry spanning the block, not by the
     * tail: a dx_tail's reserved word can look exactly like a dirent tail.
     */
    private void verify(ByteBuffer b, long lblk, long pblk) throws Ext4Exception {
        int bs = fmt.blockSize();
        DxNode dx = dxNodeOf(b, lblk);
        if (dx != null && dx.limit() == DxNode.expectedLimit(bs, dx.entriesOffset(), true) && dx.count() <= dx.limit()) {
            int stored = dx.storedChecksum();
            int computed = dx.computeChecksum(inodeSeed);
            if (stored != computed) {
                throw Ext4Exception.badChecksum(where(lblk) + " (physical " + pblk + ") htree node", stored & 0xFFFFFFFFL, computed & 0xFFFFFFFFL);
            }
            return;
        }
        int tail = bs - DirEntry.TAIL_SIZE;
        if (!DirEntry.isTail(b, tail)) {
            throw new Ext4Exception(Errno.EBADMSG, where(lblk) + " (physical " + pblk + "): no checksum tail; run e2fsck -D");
        }
        int stored = DirEntry.tailChecksum(b, tail);
        int computed = Checksums.crc32c(inodeSeed, b, 0, tail);
        if (stored != computed) {
            throw Ext4Exception.badChecksum(where(lblk) + " (physical " + pblk + ")", stored & 0xFFFFFFFFL, computed & 0xFFFFFFFFL);
        }
    }

    /** The block as an htree node if it looks like one: block 0 of an indexed dir, or a fake empty entry spanning the block. */
    private DxNode dxNodeOf(ByteBuffer b, long lblk) {
        if (!indexed) {
            return null;
        }
        if (lblk == 0) {
            return DxNode.root(b);
        }
        if (DirEntry.inode(b, 0) == 0 && DirEntry.recLen(b, 0, fmt.blockSize()) == fmt.blockSize()
                && DirEntry.nameLen(b, 0, fmt.fileType()) == 0) {
            return DxNode.node(b);
        }
        return null;
    }

    /** End of the entry area: before the checksum tail of a leaf; index nodes span the block. */
    private int entriesEnd(ByteBuffer b, long lblk) {
        int tail = fmt.blockSize() - DirEntry.TAIL_SIZE;
        boolean leafWithTail = fmt.metadataCsum() && dxNodeOf(b, lblk) == null && DirEntry.isTail(b, tail);
        return leafWithTail ? tail : fmt.blockSize();
    }

    @Override
    public void readdir(long position, DirSink sink) throws Ext4Exception {
        int bs = fmt.blockSize();
        for (long lblk = position / bs; lblk < blocks; lblk++) {
            ByteBuffer b = block(lblk);
            if (b == null) {
                continue;
            }
            int end = entriesEnd(b, lblk);
            int start = lblk == position / bs ? (int) (position % bs) : 0;
            for (int off = 0; off < end; ) {
                int recLen = DirEntryCheck.check(b, off, end, fmt, where(lblk));
                long entryIno = DirEntry.inode(b, off);
                if (off >= start && entryIno != 0) {
                    int nameLen = DirEntry.nameLen(b, off, fmt.fileType());
                    long next = lblk * bs + off + recLen;
                    if (!sink.accept(DirEntry.name(b, off, nameLen), entryIno, DirEntry.fileType(b, off, fmt.fileType()), next)) {
                        return;
                    }
                }
                off += recLen;
            }
        }
    }

    @Override
    public long lookup(byte[] name) throws Ext4Exception {
        if (indexed) {
            try {
                return dxLookup(name);
            } catch (BadIndex e) {
                LOG.log(Level.WARNING, "directory inode {0}: htree index unusable ({1}); falling back to a linear scan, run e2fsck", ino, e.getMessage());
            }
        }
        for (long lblk = 0; lblk < blocks; lblk++) {
            long found = searchLeaf(lblk, name);
            if (found != 0) {
                return found;
            }
        }
        return 0;
    }

    /** Scans one block for {@code name}; 0 when absent. */
    private long searchLeaf(long lblk, byte[] name) throws Ext4Exception {
        ByteBuffer b = block(lblk);
        if (b == null) {
            return 0;
        }
        int end = entriesEnd(b, lblk);
        for (int off = 0; off < end; ) {
            int recLen = DirEntryCheck.check(b, off, end, fmt, where(lblk));
            long entryIno = DirEntry.inode(b, off);
            if (entryIno != 0 && DirEntry.nameEquals(b, off, DirEntry.nameLen(b, off, fmt.fileType()), name)) {
                return entryIno;
            }
            off += recLen;
        }
        return 0;
    }

    /** An htree index that cannot be used; lookup falls back to a linear scan. */
    private static final class BadIndex extends Exception {
        BadIndex(String message) {
            super(message, null, false, false);
        }
    }

    private long dxLookup(byte[] name) throws Ext4Exception, BadIndex {
        ByteBuffer rootBlock = block(0);
        if (rootBlock == null) {
            throw new BadIndex("block 0 is a hole");
        }
        DxNode root = DxNode.root(rootBlock);
        int version = root.hashVersion();
        if (version > DxHash.TEA) {
            throw new BadIndex("hash version " + version);
        }
        if (root.infoLength() != 8) {
            throw new BadIndex("info_length " + root.infoLength() + " (expected 8)");
        }
        int levels = root.indirectLevels();
        int maxLevels = fmt.largeDir() ? 3 : 2;
        if (levels >= maxLevels) {
            throw new BadIndex("indirect_levels " + levels + " (max " + (maxLevels - 1) + ")");
        }
        if (fmt.hashUnsigned()) {
            version += DxHash.LEGACY_UNSIGNED;
        }
        long h = DxHash.hash(name, 0, name.length, version, fmt.hashSeed());
        int hash = DxHash.major(h);

        // path[i] = node at level i, at[i] = entry taken there
        DxNode[] path = new DxNode[levels + 1];
        int[] at = new int[levels + 1];
        DxNode node = root;
        for (int level = 0; ; level++) {
            checkNode(node, level == 0 ? DxNode.ROOT_ENTRIES : DxNode.NODE_ENTRIES, level);
            path[level] = node;
            at[level] = searchNode(node, hash);
            if (level == levels) {
                break;
            }
            node = DxNode.node(indexBlock(node.block(at[level])));
        }
        while (true) {
            long leaf = path[levels].block(at[levels]);
            if (leaf >= blocks) {
                throw new BadIndex("entry points to block " + leaf + " past the directory end " + blocks);
            }
            long found = searchLeaf(leaf, name);
            if (found != 0) {
                return found;
            }
            // A name whose hash collides may continue in the next leaf, marked by bit 0 of its hash.
            int level = levels;
            while (level >= 0 && at[level] + 1 >= path[level].count()) {
                level--;
            }
            if (level < 0) {
                return 0;
            }
            at[level]++;
            int nextHash = path[level].hash(at[level]);
            if ((nextHash & ~1) != hash) {
                return 0;
            }
            for (int l = level + 1; l <= levels; l++) {
                path[l] = DxNode.node(indexBlock(path[l - 1].block(at[l - 1])));
                checkNode(path[l], DxNode.NODE_ENTRIES, l);
                at[l] = 0;
            }
        }
    }

    private ByteBuffer indexBlock(long lblk) throws Ext4Exception, BadIndex {
        if (lblk >= blocks || lblk == 0) {
            throw new BadIndex("index entry points to block " + lblk + " (directory has " + blocks + ")");
        }
        ByteBuffer b = block(lblk);
        if (b == null) {
            throw new BadIndex("index block " + lblk + " is a hole");
        }
        return b;
    }

    private void checkNode(DxNode node, int entriesOffset, int level) throws BadIndex {
        int expected = DxNode.expectedLimit(fmt.blockSize(), entriesOffset, fmt.metadataCsum());
        if (node.limit() != expected) {
            throw new BadIndex("level " + level + " limit " + node.limit() + " (expected " + expected + ")");
        }
        if (node.count() == 0 || node.count() > node.limit()) {
            throw new BadIndex("level " + level + " count " + node.count() + " (limit " + node.limit() + ")");
        }
    }

    /** Index of the last entry whose hash is at or below {@code hash} (unsigned); entry 0 always qualifies. */
    private static int searchNode(DxNode node, int hash) {
        int lo = 1;
        int hi = node.count() - 1;
        int found = 0;
        while (lo <= hi) {
            int mid = (lo + hi) >>> 1;
            if (Integer.compareUnsigned(node.hash(mid), hash) <= 0) {
                found = mid;
                lo = mid + 1;
            } else {
                hi = mid - 1;
            }
        }
        return found;
    }
}
