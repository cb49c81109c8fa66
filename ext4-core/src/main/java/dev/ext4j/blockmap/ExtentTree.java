package dev.ext4j.blockmap;

import dev.ext4j.Errno;
import dev.ext4j.Ext4Exception;
import dev.ext4j.format.Extent;
import dev.ext4j.format.ExtentNode;
import dev.ext4j.format.Inode;
import dev.ext4j.io.BufferCache;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.List;

/**
 * An inode's extent tree (fs/ext4/extents.c): lookup as ext4_find_extent() and
 * ext4_ext_map_blocks() do, and, for a tree made with {@link #writable}, the changes the kernel
 * makes:
 * <ul>
 * <li>{@link #insert}: ext4_ext_insert_extent(): merge with the neighbour in the leaf (append or
 *     prepend, then ext4_ext_try_to_merge()), else put the extent in the leaf; a full leaf sends it
 *     to the next leaf when that has room and the extent lies past the leaf's last one, else
 *     ext4_ext_create_new_leaf() splits at the insertion point (ext4_ext_split(): the entries after
 *     it move to a new leaf, new index blocks are made down from the lowest index with a free
 *     slot) or, with every index up to the root full, grows the tree in depth
 *     (ext4_ext_grow_indepth()). ext4_ext_correct_indexes() keeps every index key equal to the
 *     first logical block below it, and ext4_ext_try_to_merge_up() folds a single leaf of at most
 *     four extents back into the inode.
 * <li>{@link #removeRange}: ext4_ext_remove_space(): the extent that straddles the end of a punched
 *     range is split first (ext4_force_split_extent_at()), then leaves are trimmed right to left
 *     (ext4_ext_rm_leaf()), empty leaves and index blocks are freed (ext4_ext_rm_idx()), and an
 *     empty tree goes back to depth 0. Beyond the kernel, a root with a single child that fits in
 *     the inode takes that child's entries (the kernel does this only after inserts, from depth 1),
 *     so e2fsck never finds a tree it could make shorter.
 * <li>{@link #markWritten}: ext4_convert_unwritten_extents_endio(): split an unwritten extent
 *     around the range (ext4_split_convert_extents(), no merging while splitting), mark the middle
 *     written, then ext4_ext_try_to_merge().
 * <li>{@link #shift}: ext4_ext_shift_extents() for collapse and insert range ({@link ExtentShift}).
 * </ul>
 *
 * <p>Every node is checked as ext4_ext_check() does: magic, entries within max, max within the
 * node's room, the depth the parent expects (which also rules out loops, since depth strictly
 * falls), and, once per contents of a block node, its tail checksum, ordered keys and
 * non-overlapping extents (ext4_valid_extent_entries()).
 *
 * <p>New tree blocks have eh_max = (blocksize - 12) / 12, as ext4_ext_space_block() and
 * libext2fs give (the 4-byte tail fits in the remainder), eh_generation 0, and, with
 * metadata_csum, the tail crc32c(inode seed, node). Changed blocks are written through the
 * {@link BufferCache} at once; the root lives in the caller's 60-byte i_block buffer, which the
 * caller writes back into the inode. Blocks are freed only once nothing in the tree refers to them.
 *
 * <p>Not thread-safe: the caller holds the inode's block-map lock (the kernel's i_data_sem).
 * Bigalloc (clusters) is not handled: blocks are freed block by block.
 */
public final class ExtentTree implements WritableBlockMap {
    /** EXT_MAX_BLOCKS: logical blocks are 32-bit and 0xFFFFFFFF is never mapped. */
    public static final long MAX_BLOCKS = 0xFFFFFFFFL;
    private static final int ROOT_SIZE = Inode.I_BLOCK_SIZE;

    private final BufferCache cache;
    final long ino;
    private final ByteBuffer root;
    private final int inodeSeed;
    private final boolean verifyChecksums;
    private final BlockSource source;
    private final int blockSize;
    /** Test hook: block nodes count as full at this many entries (0: at eh_max). */
    private final int nodeLimit;
    private long metaBlocksDelta;

    /**
     * A read-only tree: {@link #map} works, changes throw {@link IllegalStateException}.
     *
     * @param root      i_block, 60 bytes, little-endian
     * @param inodeSeed crc32c(fs seed, ino, generation), used when {@code verifyChecksums}
     */
    public ExtentTree(BufferCache cache, long ino, ByteBuffer root, int inodeSeed, boolean verifyChecksums) {
        this(cache, ino, root, inodeSeed, verifyChecksums, null, 0);
    }

    private ExtentTree(BufferCache cache, long ino, ByteBuffer root, int inodeSeed, boolean metadataCsum,
            BlockSource source, int nodeLimit) {
        this.cache = cache;
        this.ino = ino;
        this.root = root;
        this.inodeSeed = inodeSeed;
        this.verifyChecksums = metadataCsum;
        this.source = source;
        this.blockSize = cache.blockSize();
        this.nodeLimit = nodeLimit;
    }

    /**
     * A tree that can change. With {@code metadataCsum} the tail checksums of block nodes are
     * verified on read and stamped on write.
     *
     * @param root   i_block (60 bytes, little-endian, writable); it holds the changed root when a
     *               change returns, for the caller to write into the inode
     * @param source allocates tree blocks and takes back freed blocks
     */
    public static ExtentTree writable(BufferCache cache, long ino, ByteBuffer root, int inodeSeed, boolean metadataCsum,
            BlockSource source) {
        return writable(cache, ino, root, inodeSeed, metadataCsum, source, 0);
    }

    /**
     * Test hook, like the kernel's extent tests that shrink nodes: block nodes are treated as full
     * at {@code nodeLimit} entries (at least 2), so splits and depth growth happen with few
     * extents. eh_max on disk stays the real capacity, so the image stays valid (e2fsck may only
     * remark that such a tree could be narrower).
     */
    static ExtentTree writable(BufferCache cache, long ino, ByteBuffer root, int inodeSeed, boolean metadataCsum,
            BlockSource source, int nodeLimit) {
        if (root.isReadOnly() || root.capacity() < ROOT_SIZE) {
            throw new IllegalArgumentException("root must be a writable buffer of at least " + ROOT_SIZE + " bytes");
        }
        if (source == null) {
            throw new IllegalArgumentException("a writable tree needs a BlockSource");
        }
        if (nodeLimit != 0 && nodeLimit < 2) {
            throw new IllegalArgumentException("node limit " + nodeLimit + " (expected 0 or at least 2)");
        }
        return new ExtentTree(cache, ino, root.order(ByteOrder.LITTLE_ENDIAN), inodeSeed, metadataCsum, source, nodeLimit);
    }

    /** ext4_ext_tree_init(): an empty depth-0 root (magic, 0 entries, max 4) in i_block. */
    public static void initEmpty(ByteBuffer root) {
        for (int i = 0; i < ROOT_SIZE; i++) {
            root.put(i, (byte) 0);
        }
        new ExtentNode(root.duplicate().order(ByteOrder.LITTLE_ENDIAN)).initHeader(ExtentNode.ROOT_MAX, 0);
    }

    /**
     * Tree blocks allocated minus tree blocks freed by this object's changes so far. The caller
     * adds it (times blocksize / 512) to i_blocks, beside the data blocks it counts itself.
     */
    @Override
    public long metaBlocksDelta() {
        return metaBlocksDelta;
    }

    /** eh_depth of the root. */
    public int depth() throws Ext4Exception {
        ExtentNode r = new ExtentNode(root);
        check(r, -1, ROOT_SIZE, 0);
        return r.depth();
    }

    // ------------------------------------------------------------------------------------------
    // Lookup

    @Override
    public Mapping map(long lblk, long maxLength) throws Ext4Exception {
        ExtentNode node = new ExtentNode(root);
        check(node, -1, ROOT_SIZE, 0);
        long nextStart = Long.MAX_VALUE; // first logical block past lblk that some extent covers
        long block = 0;
        while (node.depth() > 0) {
            int i = search(node, lblk);
            if (i + 1 < node.entries()) {
                nextStart = Math.min(nextStart, node.logical(i + 1));
            }
            if (i < 0) {
                // lblk lies before the first index; descend the first child to find the next extent
                i = 0;
            }
            int depth = node.depth();
            block = node.indexLeaf(i);
            node = new ExtentNode(readNode(block, depth - 1));
        }
        int i = search(node, lblk);
        if (i >= 0) {
            Extent e = node.extent(i);
            if (e.contains(lblk)) {
                long len = Math.min(e.logicalEnd() - lblk, maxLength);
                return new Mapping(lblk, e.physical() + (lblk - e.logical()), len, e.unwritten());
            }
        }
        if (i + 1 < node.entries()) {
            nextStart = Math.min(nextStart, node.logical(i + 1));
        }
        long hole = nextStart > lblk ? Math.min(nextStart - lblk, maxLength) : maxLength;
        return new Mapping(lblk, 0, Math.max(1, hole), false);
    }

    /** Every extent in logical order (a whole-tree walk, for fiemap, migration and checks). */
    public List<Extent> extents() throws Ext4Exception {
        List<Extent> out = new ArrayList<>();
        ExtentNode r = new ExtentNode(root);
        check(r, -1, ROOT_SIZE, 0);
        collect(r, out);
        return out;
    }

    private void collect(ExtentNode node, List<Extent> out) throws Ext4Exception {
        if (node.depth() == 0) {
            for (int i = 0; i < node.entries(); i++) {
                out.add(node.extent(i));
            }
            return;
        }
        for (int i = 0; i < node.entries(); i++) {
            collect(load(node.indexLeaf(i), node.depth() - 1).node, out);
        }
    }

    /**
     * ext4_ext_find_goal(): where a data block for {@code lblk} should go to continue the nearest
     * extent, or the leaf block, or 0 for no preference (then near the inode).
     */
    public long goal(long lblk) throws Ext4Exception {
        return findGoal(findPath(lblk), lblk);
    }

    /** Index of the last entry whose logical start is at or before {@code lblk}, or -1. */
    private static int search(ExtentNode node, long lblk) {
        int lo = 0;
        int hi = node.entries() - 1;
        int found = -1;
        while (lo <= hi) {
            int mid = (lo + hi) >>> 1;
            if (node.logical(mid) <= lblk) {
                found = mid;
                lo = mid + 1;
            } else {
                hi = mid - 1;
            }
        }
        return found;
    }

    private void check(ExtentNode node, int expectedDepth, int room, long block) throws Ext4Exception {
        if (node.magic() != ExtentNode.MAGIC) {
            throw Ext4Exception.corrupted(String.format("%s: bad magic 0x%04x (expected 0x%04x)", where(block), node.magic(), ExtentNode.MAGIC));
        }
        int fit = (room - ExtentNode.HEADER_SIZE - (block == 0 ? 0 : ExtentNode.TAIL_SIZE)) / ExtentNode.ENTRY_SIZE;
        if (node.max() == 0 || node.max() > fit) {
            throw Ext4Exception.corrupted(where(block) + ": eh_max " + node.max() + " (expected 1.." + fit + ")");
        }
        if (node.entries() > node.max()) {
            throw Ext4Exception.corrupted(where(block) + ": eh_entries " + node.entries() + " is above eh_max " + node.max());
        }
        if (expectedDepth < 0 ? node.depth() > ExtentNode.MAX_DEPTH : node.depth() != expectedDepth) {
            throw Ext4Exception.corrupted(where(block) + ": depth " + node.depth() + " (expected "
                    + (expectedDepth < 0 ? "at most " + ExtentNode.MAX_DEPTH : expectedDepth) + ")");
        }
        if (node.depth() > 0 && node.entries() == 0) {
            throw Ext4Exception.corrupted(where(block) + ": index node with no entries");
        }
    }

    /**
     * A block node through the buffer cache: its header checked every time ({@link #check}), its
     * checksum and entries once per contents, as the kernel skips them for a verified buffer.
     */
    private ByteBuffer readNode(long block, int expectedDepth) throws Ext4Exception {
        ByteBuffer b = cache.getChecked(block, ino, c -> {
            ExtentNode node = new ExtentNode(c);
            check(node, expectedDepth, blockSize, block);
            int computed = verifyChecksums ? node.computeChecksum(inodeSeed) : 0;
            if (verifyChecksums && node.storedChecksum() != computed) {
                throw Ext4Exception.badChecksum(where(block), node.storedChecksum() & 0xFFFFFFFFL, computed & 0xFFFFFFFFL);
            }
            validateEntries(node, block);
            return true;
        });
        check(new ExtentNode(b), expectedDepth, blockSize, block); // the depth this parent expects
        return b;
    }

    private String where(long block) {
        return block == 0 ? "inode " + ino + " extent root" : "inode " + ino + " extent block " + block;
    }

    // ------------------------------------------------------------------------------------------
    // The path to a logical block (struct ext4_ext_path)

    /** One node on the path from the root: its block (0 for i_block), a private copy, a position. */
    static final class Level {
        final long block;
        final ByteBuffer buf;
        final ExtentNode node;
        /** p_idx in an index node, p_ext in a leaf: the entry followed or found; -1 in an empty leaf. */
        int pos;

        Level(long block, ByteBuffer buf) {
            this.block = block;
            this.buf = buf;
            this.node = new ExtentNode(buf);
        }

        int entries() {
            return node.entries();
        }
    }

    /** Reads a block node into a private buffer to change it, checked as {@link #readNode} checks. */
    private Level load(long block, int expectedDepth) throws Ext4Exception {
        if (block == 0) {
            throw Ext4Exception.corrupted("inode " + ino + ": extent index points to block 0");
        }
        ByteBuffer src = readNode(block, expectedDepth);
        ByteBuffer copy = ByteBuffer.allocate(blockSize).order(ByteOrder.LITTLE_ENDIAN);
        copy.put(0, src, 0, blockSize);
        return new Level(block, copy);
    }

    private Level rootLevel() throws Ext4Exception {
        Level l = new Level(0, root);
        check(l.node, -1, ROOT_SIZE, 0);
        validateEntries(l.node, 0);
        return l;
    }

    private void validateEntries(ExtentNode n, long block) throws Ext4Exception {
        long prevEnd = -1;
        for (int i = 0; i < n.entries(); i++) {
            long start = n.logical(i);
            if (n.depth() == 0) {
                Extent e = n.extent(i);
                if (e.length() == 0 || e.physical() == 0 || e.logicalEnd() > MAX_BLOCKS || start < prevEnd) {
                    throw Ext4Exception.corrupted(where(block) + ": bad extent " + i + " " + e
                            + (start < prevEnd ? " (starts before the previous one ends at " + prevEnd + ")" : ""));
                }
                prevEnd = e.logicalEnd();
            } else {
                if (start <= prevEnd || n.indexLeaf(i) == 0) {
                    throw Ext4Exception.corrupted(where(block) + ": bad index " + i + " (logical " + start
                            + ", child " + n.indexLeaf(i) + ", previous logical " + prevEnd + ")");
                }
                prevEnd = start;
            }
        }
    }

    /** ext4_find_extent(): the path from the root to the leaf where {@code lblk} is or would be. */
    Level[] findPath(long lblk) throws Ext4Exception {
        Level top = rootLevel();
        int depth = top.node.depth();
        Level[] path = new Level[depth + 1];
        path[0] = top;
        for (int k = 0; k < depth; k++) {
            Level l = path[k];
            l.pos = Math.max(search(l.node, lblk), 0);
            path[k + 1] = load(l.node.indexLeaf(l.pos), depth - k - 1);
        }
        Level leaf = path[depth];
        leaf.pos = leaf.entries() == 0 ? -1 : Math.max(search(leaf.node, lblk), 0);
        return path;
    }

    /** The room of a node: eh_max, or the test limit for block nodes. */
    private int capacity(Level l) {
        int max = l.node.max();
        return l.block != 0 && nodeLimit > 0 ? Math.min(max, nodeLimit) : max;
    }

    private boolean hasFree(Level l) {
        return l.entries() < capacity(l);
    }

    /** ext4_ext_dirty(): writes a changed block node (the root is the caller's to persist). */
    void dirty(Level l) throws Ext4Exception {
        if (l.block != 0) {
            writeNode(l.block, l.buf, false);
        }
    }

    private void writeNode(long block, ByteBuffer buf, boolean fresh) throws Ext4Exception {
        if (verifyChecksums) {
            new ExtentNode(buf).updateChecksum(inodeSeed);
        }
        // a whole node this tree built, its checksum stamped: it passes readNode's check
        cache.changeChecked(block, ino, fresh, b -> b.put(0, buf, 0, blockSize));
    }

    private ByteBuffer newBlockBuffer() {
        return ByteBuffer.allocate(blockSize).order(ByteOrder.LITTLE_ENDIAN);
    }

    private long allocMeta(long goal) throws Ext4Exception {
        long b = source.allocateMetaBlock(Math.max(goal, 0));
        if (b <= 0 || b >>> 48 != 0) {
            throw new IllegalStateException("BlockSource returned block " + b + " for inode " + ino);
        }
        metaBlocksDelta++;
        return b;
    }

    /** Gives back a tree block (never written, or no longer referred to). */
    private void freeMeta(long block) throws Ext4Exception {
        source.freeBlocks(block, 1);
        metaBlocksDelta--;
    }

    private void requireWritable() {
        if (source == null) {
            throw new IllegalStateException("inode " + ino + ": extent tree opened read-only");
        }
    }

    /** ext4_ext_find_goal(). */
    private static long findGoal(Level[] path, long lblk) {
        Level leaf = path[path.length - 1];
        if (leaf.pos >= 0) {
            Extent ex = leaf.node.extent(leaf.pos);
            if (lblk > ex.logical()) {
                return ex.physical() + (lblk - ex.logical());
            }
            return Math.max(ex.physical() - (ex.logical() - lblk), 0);
        }
        return leaf.block;
    }

    /** ext4_ext_next_allocated_block(): the first logical block mapped after the path's position. */
    private static long nextAllocatedBlock(Level[] path) {
        int depth = path.length - 1;
        for (int d = depth; d >= 0; d--) {
            Level l = path[d];
            if (d == depth) {
                if (l.pos >= 0 && l.pos < l.entries() - 1) {
                    return l.node.logical(l.pos + 1);
                }
            } else if (l.pos < l.entries() - 1) {
                return l.node.logical(l.pos + 1);
            }
        }
        return MAX_BLOCKS;
    }

    /** ext4_ext_next_leaf_block(): the first logical block of the next leaf. */
    static long nextLeafBlock(Level[] path) {
        for (int d = path.length - 2; d >= 0; d--) {
            Level l = path[d];
            if (l.pos < l.entries() - 1) {
                return l.node.logical(l.pos + 1);
            }
        }
        return MAX_BLOCKS;
    }

    // ------------------------------------------------------------------------------------------
    // Insert

    /**
     * Maps the hole {@code e.logical() .. e.logicalEnd() - 1} to {@code e.physical()} onward, as
     * written or unwritten. The data blocks are the caller's (allocated and counted by it); tree
     * blocks come from the {@link BlockSource}.
     *
     * @throws Ext4Exception EEXIST when part of the range is mapped already; ENOSPC from the
     *                       BlockSource, with the tree unchanged; EUCLEAN/EBADMSG for a damaged tree
     * @throws IllegalArgumentException for a length outside 1..32768 (written) or 1..32767
     *                       (unwritten), a range past logical block 2^32 - 2, or physical block 0
     */
    public void insert(Extent e) throws Ext4Exception {
        requireWritable();
        int max = e.unwritten() ? ExtentNode.UNWRITTEN_MAX_LEN : ExtentNode.INIT_MAX_LEN;
        if (e.length() < 1 || e.length() > max) {
            throw new IllegalArgumentException("extent length " + e.length() + " (expected 1.." + max + "): " + e);
        }
        if (e.logical() < 0 || e.logicalEnd() > MAX_BLOCKS) {
            throw new IllegalArgumentException("extent beyond the last logical block " + (MAX_BLOCKS - 1) + ": " + e);
        }
        if (e.physical() <= 0 || (e.physical() + e.length() - 1) >>> 48 != 0) {
            throw new IllegalArgumentException("physical blocks outside 1..2^48-1: " + e);
        }
        insertExtent(e, true);
    }

    @Override
    public void insert(long lblk, long physical, int length, boolean unwritten) throws Ext4Exception {
        insert(new Extent(lblk, physical, length, unwritten));
    }

    /** {@link #MAX_BLOCKS}. */
    @Override
    public long maxBlocks() {
        return MAX_BLOCKS;
    }

    @Override
    public boolean supportsUnwritten() {
        return true;
    }

    /** ext4_can_extents_be_merged(): {@code a} directly followed by {@code b}, on disk too. */
    private static boolean canMerge(Extent a, Extent b) {
        if (a.unwritten() != b.unwritten()) {
            return false;
        }
        if (a.logicalEnd() != b.logical()) {
            return false;
        }
        int sum = a.length() + b.length();
        if (sum > (a.unwritten() ? ExtentNode.UNWRITTEN_MAX_LEN : ExtentNode.INIT_MAX_LEN)) {
            return false;
        }
        return a.physical() + a.length() == b.physical();
    }

    /**
     * ext4_ext_insert_extent(). {@code merge} false is EXT4_GET_BLOCKS_PRE_IO: no merging, as when
     * an extent is split.
     */
    private void insertExtent(Extent newext, boolean merge) throws Ext4Exception {
        Level[] path = findPath(newext.logical());
        checkOverlap(path, newext);
        int depth = path.length - 1;
        Level leaf = path[depth];
        int nearex = -1;

        if (merge && leaf.pos >= 0) {
            int ex = leaf.pos;
            boolean tryAppend = true;
            Extent cur = leaf.node.extent(ex);
            if (ex < leaf.entries() - 1 && cur.logicalEnd() < newext.logical()) {
                ex++;
                tryAppend = false; // goto prepend
            } else if (ex > 0 && newext.logicalEnd() < cur.logical()) {
                ex--;
            }
            Extent x = leaf.node.extent(ex);
            if (tryAppend && canMerge(x, newext)) {
                leaf.node.setExtent(ex, new Extent(x.logical(), x.physical(), x.length() + newext.length(), x.unwritten()));
                nearex = ex;
            } else if (canMerge(newext, x)) {
                leaf.node.setExtent(ex, new Extent(newext.logical(), newext.physical(), x.length() + newext.length(), x.unwritten()));
                nearex = ex;
            }
        }

        if (nearex < 0) {
            if (!hasFree(leaf)) {
                Level[] npath = null;
                // probably the next leaf has space for us?
                if (leaf.entries() > 0 && newext.logical() > leaf.node.logical(leaf.entries() - 1)) {
                    long next = nextLeafBlock(path);
                    if (next != MAX_BLOCKS) {
                        npath = findPath(next);
                        if (!hasFree(npath[npath.length - 1])) {
                            npath = null;
                        }
                    }
                }
                if (npath == null) {
                    createNewLeaf(path, newext);
                    npath = findPath(newext.logical());
                }
                path = npath;
                depth = path.length - 1;
                leaf = path[depth];
            }
            // has_space:
            nearex = leaf.pos;
            if (nearex < 0) {
                nearex = 0;
            } else {
                if (newext.logical() > leaf.node.logical(nearex)) {
                    nearex++;
                }
                leaf.node.moveEntries(nearex, nearex + 1, leaf.entries() - nearex);
            }
            leaf.node.setEntries(leaf.entries() + 1);
            leaf.node.setExtent(nearex, newext);
        }
        leaf.pos = nearex;

        // merge:
        if (merge) {
            tryToMergeInLeaf(leaf, nearex);
            if (tryToMergeUp(path)) {
                return;
            }
        }
        correctIndexes(path);
        dirty(leaf);
    }

    /** Refuses a range that overlaps a mapped one (the kernel trims it in ext4_ext_check_overlap()). */
    private void checkOverlap(Level[] path, Extent newext) throws Ext4Exception {
        Level leaf = path[path.length - 1];
        long b1 = newext.logical();
        long next;
        if (leaf.pos >= 0) {
            Extent ex = leaf.node.extent(leaf.pos);
            if (ex.logical() <= b1 && ex.logicalEnd() > b1) {
                throw overlap(newext, ex.logical(), ex.logicalEnd());
            }
            next = ex.logical() > b1 ? ex.logical() : nextAllocatedBlock(path);
        } else {
            next = nextAllocatedBlock(path);
        }
        if (next != MAX_BLOCKS && newext.logicalEnd() > next) {
            throw overlap(newext, next, next + 1);
        }
    }

    private Ext4Exception overlap(Extent e, long from, long to) {
        return new Ext4Exception(Errno.EEXIST, "inode " + ino + ": cannot map logical blocks " + e.logical() + ".."
                + (e.logicalEnd() - 1) + ", blocks from " + from + (to > from + 1 ? " to " + (to - 1) : "") + " are mapped already");
    }

    /** ext4_ext_create_new_leaf(). */
    private void createNewLeaf(Level[] path, Extent newext) throws Ext4Exception {
        while (true) {
            int depth = path.length - 1;
            int i = depth;
            while (i > 0 && !hasFree(path[i])) {
                i--;
            }
            if (hasFree(path[i])) {
                split(path, newext, i);
                return;
            }
            growInDepth();
            path = findPath(newext.logical());
            // only the first growth (depth 0 -> 1) makes room; otherwise split the grown tree
            if (hasFree(path[path.length - 1])) {
                return;
            }
        }
    }

    /**
     * ext4_ext_split(): makes a new leaf holding the entries after the insertion point, and new
     * index blocks for the levels below {@code at} likewise, then links the new subtree into the
     * index node at level {@code at}, which has a free slot.
     */
    private void split(Level[] path, Extent newext, int at) throws Ext4Exception {
        int depth = path.length - 1;
        Level leaf = path[depth];
        int n = leaf.entries();
        int pext = Math.max(leaf.pos, 0);
        long border = pext != n - 1 ? leaf.node.logical(pext + 1) : newext.logical();

        // allocate all needed blocks first, so that ENOSPC leaves the tree as it was
        long[] ablocks = new long[depth - at];
        long goal = findGoal(path, newext.logical());
        int a = 0;
        try {
            for (; a < ablocks.length; a++) {
                ablocks[a] = allocMeta(goal);
            }
        } catch (Ext4Exception | RuntimeException e) {
            for (int j = 0; j < a; j++) {
                try {
                    freeMeta(ablocks[j]);
                } catch (Ext4Exception | RuntimeException f) {
                    e.addSuppressed(f);
                }
            }
            throw e;
        }

        // the new leaf
        long newblock = ablocks[--a];
        ByteBuffer nb = newBlockBuffer();
        ExtentNode nn = new ExtentNode(nb);
        nn.initHeader(ExtentNode.blockMax(blockSize), 0);
        int m = n - 1 - pext;
        nn.copyEntriesFrom(leaf.node, pext + 1, 0, m);
        nn.setEntries(m);
        writeNode(newblock, nb, true);
        if (m > 0) {
            leaf.node.clearEntries(pext + 1, n);
            leaf.node.setEntries(n - m);
            dirty(leaf);
        }

        // intermediate index blocks
        for (int i = depth - 1; i > at; i--) {
            long oldblock = newblock;
            newblock = ablocks[--a];
            ByteBuffer ib = newBlockBuffer();
            ExtentNode in = new ExtentNode(ib);
            in.initHeader(ExtentNode.blockMax(blockSize), depth - i);
            in.setIndex(0, border, oldblock);
            Level l = path[i];
            int entries = l.entries();
            int mi = entries - 1 - l.pos;
            in.copyEntriesFrom(l.node, l.pos + 1, 1, mi);
            in.setEntries(1 + mi);
            writeNode(newblock, ib, true);
            if (mi > 0) {
                l.node.clearEntries(l.pos + 1, entries);
                l.node.setEntries(entries - mi);
                dirty(l);
            }
        }

        insertIndex(path[at], border, newblock);
    }

    /** ext4_ext_insert_index(): adds [logical -> ptr] before or after the path's position. */
    private void insertIndex(Level curp, long logical, long ptr) throws Ext4Exception {
        long key = curp.node.logical(curp.pos);
        if (logical == key) {
            throw Ext4Exception.corrupted(where(curp.block) + ": new index " + logical + " equals index " + curp.pos);
        }
        int ix = logical > key ? curp.pos + 1 : curp.pos;
        curp.node.moveEntries(ix, ix + 1, curp.entries() - ix);
        curp.node.setIndex(ix, logical, ptr);
        curp.node.setEntries(curp.entries() + 1);
        dirty(curp);
    }

    /**
     * ext4_ext_grow_indepth(): moves the root's entries into a new block and makes the root a
     * single index to it, one level deeper.
     */
    private void growInDepth() throws Ext4Exception {
        ExtentNode r = new ExtentNode(root);
        int depth = r.depth();
        if (depth >= ExtentNode.MAX_DEPTH) {
            throw new Ext4Exception(Errno.EFBIG, "inode " + ino + ": extent tree already has the maximum depth " + depth);
        }
        long goal = 0;
        if (depth > 0 && r.indexLeaf(0) > 1) {
            goal = r.indexLeaf(0) - 1; // try to put the new index block just before the old one
        }
        long newblock = allocMeta(goal);
        ByteBuffer nb = newBlockBuffer();
        nb.put(0, root, 0, ROOT_SIZE);
        new ExtentNode(nb).setMax(ExtentNode.blockMax(blockSize));
        writeNode(newblock, nb, true);

        long first = r.logical(0);
        r.clearEntries(0, ExtentNode.ROOT_MAX);
        r.setIndex(0, first, newblock);
        r.setEntries(1);
        r.setMax(ExtentNode.ROOT_MAX);
        r.setDepth(depth + 1);
    }

    /** ext4_ext_try_to_merge(): merge the extent with its left neighbour, else its right ones. */
    private static void tryToMergeInLeaf(Level leaf, int ex) {
        boolean merged = false;
        if (ex > 0) {
            merged = mergeRight(leaf, ex - 1);
        }
        if (!merged) {
            mergeRight(leaf, ex);
        }
    }

    /** ext4_ext_try_to_merge_right(). */
    static boolean mergeRight(Level leaf, int ex) {
        ExtentNode n = leaf.node;
        boolean done = false;
        while (ex < n.entries() - 1) {
            Extent a = n.extent(ex);
            Extent b = n.extent(ex + 1);
            if (!canMerge(a, b)) {
                break;
            }
            n.setExtent(ex, new Extent(a.logical(), a.physical(), a.length() + b.length(), a.unwritten()));
            int entries = n.entries();
            n.moveEntries(ex + 2, ex + 1, entries - ex - 2);
            n.clearEntries(entries - 1, entries);
            n.setEntries(entries - 1);
            done = true;
        }
        return done;
    }

    /**
     * ext4_ext_try_to_merge_up(): a depth-1 tree whose root holds one index and whose single leaf
     * fits in the inode goes back to depth 0; the leaf block is freed.
     */
    private boolean tryToMergeUp(Level[] path) throws Ext4Exception {
        if (path.length != 2 || path[0].entries() != 1 || path[1].entries() > ExtentNode.ROOT_MAX) {
            return false;
        }
        long blk = path[0].node.indexLeaf(0);
        pullUp(path[1]);
        freeMeta(blk);
        return true;
    }

    /** Copies a child's header and entries into the root (the child is the root's only entry). */
    private void pullUp(Level child) {
        int entries = child.entries();
        ExtentNode r = new ExtentNode(root);
        root.put(0, child.buf, 0, ExtentNode.HEADER_SIZE + entries * ExtentNode.ENTRY_SIZE);
        r.clearEntries(entries, ExtentNode.ROOT_MAX);
        r.setMax(ExtentNode.ROOT_MAX);
    }

    /**
     * ext4_ext_correct_indexes(): when the leaf's first extent changed, the index keys above it
     * follow, up through every level where the path goes through the first entry.
     */
    private void correctIndexes(Level[] path) throws Ext4Exception {
        int depth = path.length - 1;
        Level leaf = path[depth];
        if (depth == 0 || leaf.pos != 0) {
            return;
        }
        long border = leaf.node.logical(0);
        int k = depth - 1;
        setKey(path[k], border);
        while (k-- > 0) {
            if (path[k + 1].pos != 0) {
                break;
            }
            setKey(path[k], border);
        }
    }

    void setKey(Level l, long key) throws Ext4Exception {
        if (l.node.logical(l.pos) != key) {
            l.node.setLogical(l.pos, key);
            dirty(l);
        }
    }

    /**
     * ext4_split_extent_at() with EXT4_GET_BLOCKS_PRE_IO: the extent holding {@code split} becomes
     * [start, split) and [split, end), both keeping its state. On failure the extent is restored.
     */
    void splitAt(long split) throws Ext4Exception {
        Level[] path = findPath(split);
        Level leaf = path[path.length - 1];
        Extent ex = leaf.pos < 0 ? null : leaf.node.extent(leaf.pos);
        if (ex == null || !ex.contains(split) || split == ex.logical()) {
            throw new IllegalStateException("inode " + ino + ": no extent to split at " + split + " (found " + ex + ")");
        }
        int leftLen = (int) (split - ex.logical());
        leaf.node.setExtent(leaf.pos, new Extent(ex.logical(), ex.physical(), leftLen, ex.unwritten()));
        dirty(leaf);
        Extent right = new Extent(split, ex.physical() + leftLen, ex.length() - leftLen, ex.unwritten());
        try {
            insertExtent(right, false);
        } catch (Ext4Exception | RuntimeException e) {
            // fix_extent_len: give the extent its length back (the tree may have grown meanwhile)
            try {
                Level[] p = findPath(ex.logical());
                Level l = p[p.length - 1];
                l.node.setExtent(l.pos, ex);
                dirty(l);
            } catch (Ext4Exception | RuntimeException f) {
                e.addSuppressed(f);
            }
            throw e;
        }
    }

    // ------------------------------------------------------------------------------------------
    // Unwritten to written

    /**
     * Marks the unwritten extents in {@code lblk .. lblk + length - 1} written, splitting those
     * that stick out of the range; holes and written extents in the range are left alone. A split
     * may need a tree block (ENOSPC leaves the remaining part unconverted).
     */
    @Override
    public void markWritten(long lblk, long length) throws Ext4Exception {
        requireWritable();
        if (lblk < 0 || length < 0) {
            throw new IllegalArgumentException("range " + lblk + " + " + length);
        }
        long end = length >= MAX_BLOCKS - lblk ? MAX_BLOCKS : lblk + length;
        long cur = lblk;
        while (cur < end) {
            Level[] path = findPath(cur);
            Level leaf = path[path.length - 1];
            if (leaf.pos < 0) {
                return;
            }
            Extent ex = leaf.node.extent(leaf.pos);
            if (ex.contains(cur)) {
                long segEnd = Math.min(end, ex.logicalEnd());
                if (ex.unwritten()) {
                    convertToWritten(path, ex, cur, segEnd);
                }
                cur = segEnd;
                continue;
            }
            long next = ex.logical() > cur ? ex.logical() : nextAllocatedBlock(path);
            if (next >= end) {
                return;
            }
            cur = next;
        }
    }

    /**
     * ext4_convert_unwritten_extents_endio() for the part {@code from .. to - 1} of {@code ex},
     * the extent at {@code path}'s leaf position. When the leaf has room for the pieces, they
     * replace the extent there in one change (the leaf's first key stays); else it is split as
     * ext4_split_extent() does, first at the end of the range, then at its start.
     */
    private void convertToWritten(Level[] path, Extent ex, long from, long to) throws Ext4Exception {
        Level leaf = path[path.length - 1];
        int pieces = (from > ex.logical() ? 1 : 0) + (to < ex.logicalEnd() ? 1 : 0);
        if (leaf.entries() + pieces <= capacity(leaf)) {
            int at = leaf.pos;
            leaf.node.moveEntries(at + 1, at + 1 + pieces, leaf.entries() - at - 1);
            leaf.node.setEntries(leaf.entries() + pieces);
            if (from > ex.logical()) {
                leaf.node.setExtent(at++, new Extent(ex.logical(), ex.physical(), (int) (from - ex.logical()), true));
            }
            if (to < ex.logicalEnd()) {
                leaf.node.setExtent(at + 1, new Extent(to, ex.physical() + (to - ex.logical()), (int) (ex.logicalEnd() - to), true));
            }
            leaf.pos = at;
        } else {
            if (to < ex.logicalEnd()) {
                splitAt(to);
            }
            if (from > ex.logical()) {
                splitAt(from);
            }
            path = findPath(from);
            leaf = path[path.length - 1];
            Extent mid = leaf.node.extent(leaf.pos);
            if (mid.logical() != from || mid.logicalEnd() != to || !mid.unwritten()) {
                throw new IllegalStateException("inode " + ino + ": after splitting, expected unwritten " + from + ".." + (to - 1) + ", found " + mid);
            }
        }
        leaf.node.setExtent(leaf.pos, new Extent(from, ex.physical() + (from - ex.logical()), (int) (to - from), false));
        tryToMergeInLeaf(leaf, leaf.pos);
        if (!tryToMergeUp(path)) {
            dirty(leaf);
        }
    }

    // ------------------------------------------------------------------------------------------
    // Shift (collapse and insert range): ExtentShift

    /** ext4_ext_shift_extents() for collapse and insert range: see {@link ExtentShift}. */
    public void shift(long from, long delta, ExtentShift.StepCredits credits) throws Ext4Exception {
        requireWritable();
        new ExtentShift(this, credits).shift(from, delta);
    }

    /** After a shift: a root with one child that fits in the inode takes its entries, and the child's block is freed. */
    void shrinkRoot() throws Ext4Exception {
        Removal rm = new Removal(0, 0);
        shrink(rm);
        rm.release();
    }

    // ------------------------------------------------------------------------------------------
    // Remove

    /** What a removal frees, given back only after the tree no longer refers to it. */
    private final class Removal {
        final long start;
        final long end; // inclusive
        final List<long[]> data = new ArrayList<>();
        final List<Long> meta = new ArrayList<>();
        long dataBlocks;

        Removal(long start, long end) {
            this.start = start;
            this.end = end;
        }

        void freeData(long pblk, long len) {
            dataBlocks += len;
            if (!data.isEmpty()) {
                long[] last = data.get(data.size() - 1);
                if (pblk + len == last[0]) { // leaves are trimmed right to left
                    last[0] = pblk;
                    last[1] += len;
                    return;
                }
                if (last[0] + last[1] == pblk) {
                    last[1] += len;
                    return;
                }
            }
            data.add(new long[] {pblk, len});
        }

        void release() throws Ext4Exception {
            for (long[] r : data) {
                source.freeBlocks(r[0], r[1]);
            }
            data.clear();
            for (long b : meta) {
                freeMeta(b);
            }
            meta.clear();
        }
    }

    /**
     * Punches or truncates: unmaps {@code fromLblk .. toLblkExclusive - 1} (toLblkExclusive may be
     * {@link Long#MAX_VALUE} for "to the end"), freeing the data blocks and the tree blocks that
     * become empty through the {@link BlockSource}. Splitting the extent that straddles the end of
     * a punched range may need a tree block.
     *
     * @return the data blocks freed (the caller takes them off i_blocks, with
     *         {@link #metaBlocksDelta()} for tree blocks)
     */
    @Override
    public long removeRange(long fromLblk, long toLblkExclusive) throws Ext4Exception {
        requireWritable();
        if (fromLblk < 0 || toLblkExclusive < fromLblk) {
            throw new IllegalArgumentException("range " + fromLblk + ".." + toLblkExclusive);
        }
        long to = Math.min(toLblkExclusive, MAX_BLOCKS);
        if (fromLblk >= to) {
            return 0;
        }
        long end = to - 1;
        if (end < MAX_BLOCKS - 1) {
            // split the extent holding the last block to remove, so only whole tails go
            Level[] path = findPath(end);
            Level leaf = path[path.length - 1];
            if (leaf.pos >= 0) {
                Extent ex = leaf.node.extent(leaf.pos);
                if (end >= ex.logical() && end < ex.logicalEnd() - 1) {
                    splitAt(end + 1);
                }
            }
        }
        Removal rm = new Removal(fromLblk, end);
        Level top = rootLevel();
        removeIn(top, rm);
        ExtentNode r = top.node;
        if (r.entries() == 0) {
            // truncate to zero freed the whole tree: back to depth 0
            r.clearEntries(0, ExtentNode.ROOT_MAX);
            r.setDepth(0);
            r.setMax(ExtentNode.ROOT_MAX);
        } else {
            shrink(rm);
        }
        rm.release();
        return rm.dataBlocks;
    }

    /**
     * ext4_ext_rm_leaf() and the index walk of ext4_ext_remove_space(): removes the range below
     * {@code lvl}, right to left, freeing children that become empty (ext4_ext_rm_idx()) and
     * correcting keys whose child's first extent changed. Returns whether {@code lvl} changed; the
     * caller writes it (or frees it when empty).
     */
    private boolean removeIn(Level lvl, Removal rm) throws Ext4Exception {
        ExtentNode n = lvl.node;
        int i = search(n, rm.end);
        boolean changed = false;
        if (n.depth() == 0) {
            for (; i >= 0; i--) {
                Extent ex = n.extent(i);
                if (ex.logicalEnd() <= rm.start) {
                    break;
                }
                long a = Math.max(ex.logical(), rm.start);
                if (ex.logicalEnd() - 1 > rm.end) {
                    throw Ext4Exception.corrupted(where(lvl.block) + ": cannot remove " + rm.start + ".." + rm.end
                            + " from the middle of extent " + ex);
                }
                long keep = a - ex.logical();
                rm.freeData(ex.physical() + keep, ex.logicalEnd() - a);
                if (keep == 0) {
                    int entries = n.entries();
                    n.moveEntries(i + 1, i, entries - i - 1);
                    n.clearEntries(entries - 1, entries);
                    n.setEntries(entries - 1);
                } else {
                    n.setExtent(i, new Extent(ex.logical(), ex.physical(), (int) keep, ex.unwritten()));
                }
                changed = true;
            }
            return changed;
        }
        for (; i >= 0; i--) {
            long key = n.logical(i);
            long childBlock = n.indexLeaf(i);
            Level child = load(childBlock, n.depth() - 1);
            boolean childChanged = removeIn(child, rm);
            if (child.entries() == 0) {
                int entries = n.entries();
                n.moveEntries(i + 1, i, entries - i - 1);
                n.clearEntries(entries - 1, entries);
                n.setEntries(entries - 1);
                rm.meta.add(childBlock);
                changed = true;
            } else {
                if (childChanged) {
                    dirty(child);
                }
                long first = child.node.logical(0);
                if (first != key) {
                    n.setLogical(i, first);
                    changed = true;
                }
            }
            if (key <= rm.start) {
                break; // everything further left ends before the range
            }
        }
        return changed;
    }

    /**
     * While the root holds a single index whose child fits in the inode, the child's entries move
     * up into the root and its block is freed (ext4_ext_try_to_merge_up() at any depth).
     */
    private void shrink(Removal rm) throws Ext4Exception {
        while (true) {
            ExtentNode r = new ExtentNode(root);
            if (r.depth() == 0 || r.entries() != 1) {
                return;
            }
            long blk = r.indexLeaf(0);
            Level child = load(blk, r.depth() - 1);
            if (child.entries() > ExtentNode.ROOT_MAX) {
                return;
            }
            pullUp(child);
            rm.meta.add(blk);
        }
    }
}
