package dev.ext4j.dir;

import dev.ext4j.Ext4Exception;
import dev.ext4j.blockmap.BlockMap;
import dev.ext4j.blockmap.Mapping;
import dev.ext4j.Errno;
import dev.ext4j.format.Checksums;
import dev.ext4j.format.DirEntry;
import dev.ext4j.format.DxNode;
import dev.ext4j.io.BufferCache;
import java.lang.System.Logger.Level;
import java.nio.ByteBuffer;
import java.util.HashMap;
import java.util.Map;

/**
 * A directory kept in blocks: a linear list of entries per block (fs/ext4/dir.c), optionally with an
 * htree index over it (fs/ext4/namei.c, dx_probe() and ext4_htree_next_block()). Readdir walks the
 * blocks in order, so a position is the byte offset of an entry in the directory file and stays
 * valid across calls. Lookup uses the index when it is sound and falls back to a linear scan, with
 * a log line asking for e2fsck, when it is not.
 */
public final class BlockDirectory implements DirEntries {
    // An instance serves one caller: readers make their own per call from the inode they read; a
    // DirectoryWriter keeps a private one whose size and index state follow its changes.
    private static final System.Logger LOG = System.getLogger("ext4j");

    private final BufferCache cache;
    private final long ino;
    private final BlockMap map;
    /** Directory size in blocks; grows only in a {@link DirectoryWriter}'s private instance. */
    private long blocks;
    /** Changes only in a {@link DirectoryWriter}'s private instance (conversion, dx fallback). */
    private boolean indexed;
    /** Blocks a writer mapped during its lifetime, in case the caller's BlockMap is a snapshot; null until then. */
    private Map<Long, Long> allocated;
    private final DirFormat fmt;
    private final int inodeSeed;

    /**
     * @param sizeBytes the directory's i_size
     * @param indexed   EXT4_INDEX_FL is set (used only with the dir_index feature)
     */
    public BlockDirectory(BufferCache cache, long ino, BlockMap map, long sizeBytes, boolean indexed,
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

    // ---- state shared with DirectoryWriter ----

    long ino() { return ino; }
    long blocks() { return blocks; }
    boolean indexed() { return indexed; }
    DirFormat fmt() { return fmt; }
    int inodeSeed() { return inodeSeed; }

    void setBlocks(long blocks) { this.blocks = blocks; }
    void setIndexed(boolean indexed) { this.indexed = indexed; }

    /** Records a block the writer mapped, so it is found even if the caller's map is a snapshot. */
    void noteAllocated(long lblk, long pblk) {
        if (allocated == null) {
            allocated = new HashMap<>();
        }
        allocated.put(lblk, pblk);
    }

    /** Physical block of {@code lblk}, or 0 for a hole (or an unwritten extent, which reads as zeros). */
    long physical(long lblk) throws Ext4Exception {
        Long p = allocated == null ? null : allocated.get(lblk);
        if (p != null) {
            return p;
        }
        Mapping m = map.map(lblk, 1);
        return m.readsAsZeros() ? 0 : m.physical();
    }

    /** The directory block {@code lblk}, checksum-verified, or null for a hole. */
    ByteBuffer block(long lblk) throws Ext4Exception {
        long pblk = physical(lblk);
        return pblk == 0 ? null : block(lblk, pblk);
    }

    /** Block {@code lblk}, known to live at {@code pblk}, checksum-verified. */
    ByteBuffer block(long lblk, long pblk) throws Ext4Exception {
        return read(lblk, pblk).buf();
    }

    /** A directory block: its bytes, and whether each of its entries is known to pass {@link DirEntryCheck}. */
    record Read(ByteBuffer buf, boolean sound) {
    }

    /**
     * Block {@code lblk}, known to live at {@code pblk}: its checksum verified and each of its
     * entries checked, both once per contents, as the kernel verifies a buffer once. A block with
     * a damaged entry is read but not {@code sound}: a scan then checks entry by entry and says
     * where it meets the damage.
     */
    Read read(long lblk, long pblk) throws Ext4Exception {
        boolean[] sound = {true};
        ByteBuffer b = cache.getChecked(pblk, checkOwner(lblk), c -> {
            if (fmt.metadataCsum()) {
                verify(c, lblk, pblk);
            }
            sound[0] = entriesSound(c, lblk);
            return sound[0];
        });
        return new Read(b, sound[0]);
    }

    /** Whose check a block passed in {@link BufferCache#getChecked}: this directory's block {@code lblk}. */
    long checkOwner(long lblk) {
        return ino << 32 | lblk;
    }

    private boolean entriesSound(ByteBuffer b, long lblk) {
        int end = entriesEnd(b, lblk);
        Object where = where(lblk);
        try {
            for (int off = 0; off < end; ) {
                off += DirEntryCheck.check(b, off, end, fmt, where);
            }
            return true;
        } catch (Ext4Exception e) {
            return false;
        }
    }

    Object where(long lblk) {
        return new DirBlockName(ino, lblk);
    }

    /** The effective hash version for names: the root's (or the default) version, +3 when s_flags says unsigned. */
    int effectiveHashVersion(int version) {
        return fmt.hashUnsigned() && version <= DxHash.TEA ? version + DxHash.LEGACY_UNSIGNED : version;
    }

    /** The major hash (bit 0 clear) of {@code name[off, off+len)} under an effective hash version. */
    int hash(byte[] name, int off, int len, int effectiveVersion) {
        return DxHash.major(DxHash.hash(name, off, len, effectiveVersion, fmt.hashSeed()));
    }

    /**
     * Stores a block's checksum after a change, as the verify side expects it: ext4_dx_csum_set()
     * for an htree node, ext4_dirblock_csum_set() for a leaf. Nothing without metadata_csum.
     */
    void seal(ByteBuffer b, long lblk) throws Ext4Exception {
        if (!fmt.metadataCsum()) {
            return;
        }
        DxNode dx = dxNodeOf(b, lblk);
        if (dx != null && dx.limit() == DxNode.expectedLimit(fmt.blockSize(), dx.entriesOffset(), true) && dx.count() <= dx.limit()) {
            dx.setChecksum(inodeSeed);
            return;
        }
        sealLeaf(b, fmt, inodeSeed, where(lblk));
    }

    /** ext4_dirblock_csum_set(): the tail must be there (no room for a checksum is corruption, "run e2fsck -D"). */
    public static void sealLeaf(ByteBuffer b, DirFormat fmt, int inodeSeed, Object where) throws Ext4Exception {
        int tail = fmt.blockSize() - DirEntry.TAIL_SIZE;
        if (!DirEntry.isTail(b, tail)) {
            throw Ext4Exception.corrupted(where + ": no space for a checksum tail; run e2fsck -D");
        }
        DirEntry.setTailChecksum(b, tail, Checksums.crc32c(inodeSeed, b, 0, tail));
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
    DxNode dxNodeOf(ByteBuffer b, long lblk) {
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
    int entriesEnd(ByteBuffer b, long lblk) {
        int tail = fmt.blockSize() - DirEntry.TAIL_SIZE;
        boolean leafWithTail = fmt.metadataCsum() && dxNodeOf(b, lblk) == null && DirEntry.isTail(b, tail);
        return leafWithTail ? tail : fmt.blockSize();
    }

    @Override
    public void readdir(long position, DirSink sink) throws Ext4Exception {
        int bs = fmt.blockSize();
        for (long lblk = position / bs; lblk < blocks; lblk++) {
            long pblk = physical(lblk);
            if (pblk == 0) {
                continue;
            }
            Read r = read(lblk, pblk);
            ByteBuffer b = r.buf();
            int end = entriesEnd(b, lblk);
            int start = lblk == position / bs ? (int) (position % bs) : 0;
            Object where = where(lblk);
            for (int off = 0; off < end; ) {
                int recLen = DirEntryCheck.recLen(b, off, end, fmt, where, r.sound());
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
        Location at = find(name);
        return at == null ? 0 : at.ino();
    }

    /** Where an entry lives: directory block, physical block, byte offset in the block, its inode. */
    record Location(long lblk, long pblk, int offset, long ino) {
    }

    /**
     * ext4_find_entry(): "." and ".." in block 0 only (in an htree they are the root's fake
     * entries, which the index never leads to); other names through the index when it is sound,
     * else a linear scan; null when absent.
     */
    Location find(byte[] name) throws Ext4Exception {
        if (name.length <= 2 && name.length > 0 && name[0] == '.' && (name.length == 1 || name[1] == '.')) {
            // "." and ".." live only in block 0 (in an htree, in the root's fake entries)
            return searchLeaf(0, name);
        }
        if (indexed) {
            try {
                return dxFind(name);
            } catch (BadIndex e) {
                LOG.log(Level.WARNING, "directory inode {0}: htree index unusable ({1}); falling back to a linear scan, run e2fsck", ino, e.getMessage());
            }
        }
        for (long lblk = 0; lblk < blocks; lblk++) {
            Location found = searchLeaf(lblk, name);
            if (found != null) {
                return found;
            }
        }
        return null;
    }

    /** Scans one block for {@code name}; null when absent. */
    private Location searchLeaf(long lblk, byte[] name) throws Ext4Exception {
        long pblk = physical(lblk);
        if (pblk == 0) {
            return null;
        }
        Read r = read(lblk, pblk);
        ByteBuffer b = r.buf();
        int end = entriesEnd(b, lblk);
        Object where = where(lblk); // made once: C1 allocates it for every call
        for (int off = 0; off < end; ) {
            int recLen = DirEntryCheck.recLen(b, off, end, fmt, where, r.sound());
            long entryIno = DirEntry.inode(b, off);
            if (entryIno != 0 && DirEntry.nameEquals(b, off, DirEntry.nameLen(b, off, fmt.fileType()), name)) {
                return new Location(lblk, pblk, off, entryIno);
            }
            off += recLen;
        }
        return null;
    }

    /** An htree index that cannot be used; lookup falls back to a linear scan. */
    static final class BadIndex extends Exception {
        BadIndex(String message) {
            super(message, null, false, false);
        }
    }

    /**
     * One level of an htree path (struct dx_frame): the index block, its node view and the entry
     * taken. A writer replaces {@code buf} with a writable copy before changing it.
     */
    static final class Frame {
        final long lblk;
        final long pblk;
        ByteBuffer buf;
        DxNode node;
        int at;

        Frame(long lblk, long pblk, ByteBuffer buf, DxNode node, int at) {
            this.lblk = lblk;
            this.pblk = pblk;
            this.buf = buf;
            this.node = node;
            this.at = at;
        }
    }

    /** Result of dx_probe(): the frames from the root down, the name's hash and the effective hash version. */
    record Probe(Frame[] frames, int hash, int hashVersion) {
        Frame last() {
            return frames[frames.length - 1];
        }
    }

    /**
     * dx_probe(): walks the index from the root to the leaf's parent for {@code name}, checking the
     * root info, every node's limit and count, and loops (a block seen twice on the path).
     */
    Probe probe(byte[] name) throws Ext4Exception, BadIndex {
        long rootPblk = physical(0);
        if (rootPblk == 0) {
            throw new BadIndex("block 0 is a hole");
        }
        ByteBuffer rootBlock = block(0);
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
        version = effectiveHashVersion(version);
        int hash = hash(name, 0, name.length, version);

        Frame[] frames = new Frame[levels + 1];
        long[] seen = new long[levels + 1];
        DxNode node = root;
        ByteBuffer buf = rootBlock;
        long lblk = 0;
        long pblk = rootPblk;
        for (int level = 0; ; level++) {
            checkNode(node, level == 0 ? DxNode.ROOT_ENTRIES : DxNode.NODE_ENTRIES, level);
            frames[level] = new Frame(lblk, pblk, buf, node, searchNode(node, hash));
            seen[level] = lblk;
            if (level == levels) {
                break;
            }
            lblk = node.block(frames[level].at);
            for (int i = 0; i <= level; i++) {
                if (seen[i] == lblk) {
                    throw new BadIndex("loop: level " + (level + 1) + " points back to block " + lblk);
                }
            }
            buf = indexBlock(lblk);
            pblk = physical(lblk);
            node = DxNode.node(buf);
        }
        return new Probe(frames, hash, version);
    }

    private Location dxFind(byte[] name) throws Ext4Exception, BadIndex {
        Probe p = probe(name);
        Frame[] path = p.frames();
        int levels = path.length - 1;
        int hash = p.hash();
        while (true) {
            long leaf = path[levels].node.block(path[levels].at);
            if (leaf >= blocks || leaf == 0) {
                throw new BadIndex("entry points to block " + leaf + " (directory has " + blocks + ")");
            }
            Location found = searchLeaf(leaf, name);
            if (found != null) {
                return found;
            }
            // A name whose hash collides may continue in the next leaf, marked by bit 0 of its hash.
            int level = levels;
            while (level >= 0 && path[level].at + 1 >= path[level].node.count()) {
                level--;
            }
            if (level < 0) {
                return null;
            }
            path[level].at++;
            int nextHash = path[level].node.hash(path[level].at);
            if ((nextHash & ~1) != hash) {
                return null;
            }
            for (int l = level + 1; l <= levels; l++) {
                long lblk = path[l - 1].node.block(path[l - 1].at);
                ByteBuffer b = indexBlock(lblk);
                DxNode n = DxNode.node(b);
                checkNode(n, DxNode.NODE_ENTRIES, l);
                path[l] = new Frame(lblk, physical(lblk), b, n, 0);
            }
        }
    }

    ByteBuffer indexBlock(long lblk) throws Ext4Exception, BadIndex {
        if (lblk >= blocks || lblk == 0) {
            throw new BadIndex("index entry points to block " + lblk + " (directory has " + blocks + ")");
        }
        ByteBuffer b = block(lblk);
        if (b == null) {
            throw new BadIndex("index block " + lblk + " is a hole");
        }
        return b;
    }

    void checkNode(DxNode node, int entriesOffset, int level) throws BadIndex {
        int expected = DxNode.expectedLimit(fmt.blockSize(), entriesOffset, fmt.metadataCsum());
        if (node.limit() != expected) {
            throw new BadIndex("level " + level + " limit " + node.limit() + " (expected " + expected + ")");
        }
        if (node.count() == 0 || node.count() > node.limit()) {
            throw new BadIndex("level " + level + " count " + node.count() + " (limit " + node.limit() + ")");
        }
    }

    /** Index of the last entry whose hash is at or below {@code hash} (unsigned); entry 0 always qualifies. */
    static int searchNode(DxNode node, int hash) {
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
