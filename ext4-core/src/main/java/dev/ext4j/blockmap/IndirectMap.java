package dev.ext4j.blockmap;

import dev.ext4j.Errno;
import dev.ext4j.Ext4Exception;
import dev.ext4j.io.BufferCache;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.List;

/**
 * The legacy block map of ext2/ext3 files (fs/ext4/indirect.c): twelve direct pointers in i_block,
 * then single, double and triple indirect blocks of 32-bit pointers.
 *
 * <ul>
 * <li>{@link #map}: ext4_ind_map_blocks() lookup (ext4_get_branch()).
 * <li>{@link #set}: the allocating half of ext4_ind_map_blocks(): the missing indirect blocks of
 *     the branch are allocated together first (ext4_alloc_branch(); ENOSPC leaves the map as it
 *     was), written zeroed bottom-up, then spliced in (ext4_splice_branch()). Their goal is
 *     ext4_find_near(): the nearest pointer before the slot, else the parent block.
 * <li>{@link #removeRange}: ext4_ind_truncate() and ext4_ind_remove_space(): pointers in the range
 *     are cleared, subtrees wholly inside it are freed (ext4_free_branches()), and an indirect
 *     block left with only zero pointers is freed too (for truncate this is what
 *     ext4_find_shared() arranges; for a punched hole the kernel may keep such a block, which is
 *     just as valid). Runs of contiguous data blocks are freed together (ext4_free_data()).
 * </ul>
 *
 * <p>Indirect blocks are written through the {@link BufferCache} at once; i_block is the caller's
 * 60-byte buffer, which it writes back into the inode. Not thread-safe: the caller holds the
 * inode's block-map lock.
 */
public final class IndirectMap implements WritableBlockMap {
    static final int DIRECT = 12;
    static final int IND = 12;
    static final int DIND = 13;
    static final int TIND = 14;
    /** Logical block numbers are 32-bit (ext4_lblk_t). */
    private static final long MAX_LBLK = 0xFFFFFFFFL;

    private final BufferCache cache;
    private final long ino;
    private final ByteBuffer iBlock;
    private final int perBlock;
    private final BlockSource source;
    private long metaBlocksDelta;

    /** A read-only map; changes throw {@link IllegalStateException}. */
    public IndirectMap(BufferCache cache, long ino, ByteBuffer iBlock) {
        this(cache, ino, iBlock, null);
    }

    private IndirectMap(BufferCache cache, long ino, ByteBuffer iBlock, BlockSource source) {
        this.cache = cache;
        this.ino = ino;
        this.iBlock = iBlock;
        this.perBlock = cache.blockSize() / 4;
        this.source = source;
    }

    /**
     * A map that can change.
     *
     * @param iBlock i_block (60 bytes, little-endian, writable); it holds the changed pointers when
     *               a change returns, for the caller to write into the inode
     * @param source allocates indirect blocks (below 2^32) and takes back freed blocks
     */
    public static IndirectMap writable(BufferCache cache, long ino, ByteBuffer iBlock, BlockSource source) {
        if (iBlock.isReadOnly() || iBlock.capacity() < 60) {
            throw new IllegalArgumentException("i_block must be a writable buffer of at least 60 bytes");
        }
        if (source == null) {
            throw new IllegalArgumentException("a writable map needs a BlockSource");
        }
        return new IndirectMap(cache, ino, iBlock.order(ByteOrder.LITTLE_ENDIAN), source);
    }

    /** Largest logical block count this map can address. */
    public static long maxBlocks(int blockSize) {
        long p = blockSize / 4;
        return DIRECT + p + p * p + p * p * p;
    }

    /** {@link #maxBlocks(int)} for this map's block size. */
    @Override
    public long maxBlocks() {
        return maxBlocks(cache.blockSize());
    }

    /** False: a block-mapped file has no unwritten blocks (fallocate needs extents). */
    @Override
    public boolean supportsUnwritten() {
        return false;
    }

    /**
     * Indirect blocks allocated minus indirect blocks freed by this object's changes so far. The
     * caller adds it (times blocksize / 512) to i_blocks, beside the data blocks it counts itself.
     */
    @Override
    public long metaBlocksDelta() {
        return metaBlocksDelta;
    }

    // ------------------------------------------------------------------------------------------
    // Lookup

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

    /** The run at {@link #nextMapped}: unallocated subtrees are skipped whole. */
    @Override
    public Mapping nextRun(long from) throws Ext4Exception {
        long l = nextMapped(from);
        return l < 0 ? null : map(l, maxBlocks() - l);
    }

    /**
     * The first mapped logical block at or after {@code from}, or -1: skips unallocated indirect
     * subtrees whole, so a scan over a sparse map costs what is mapped, not what it can address.
     */
    public long nextMapped(long from) throws Ext4Exception {
        long max = maxBlocks(cache.blockSize());
        for (long l = Math.max(0, from); l < DIRECT; l++) {
            if (u32(iBlock, (int) l) != 0) {
                return l;
            }
        }
        long base = DIRECT;
        long span = perBlock;
        int[] roots = {IND, DIND, TIND};
        for (int level = 1; level <= 3 && base < max; level++) {
            if (from < base + span) {
                long r = nextMappedIn(u32(iBlock, roots[level - 1]), level, base, Math.max(from, base));
                if (r >= 0) {
                    return r;
                }
            }
            base += span;
            span *= perBlock;
        }
        return -1;
    }

    private long nextMappedIn(long block, int levels, long base, long from) throws Ext4Exception {
        if (block == 0) {
            return -1;
        }
        ByteBuffer b = read(block);
        long childSpan = 1;
        for (int i = 1; i < levels; i++) {
            childSpan *= perBlock;
        }
        for (int i = (int) ((from - base) / childSpan); i < perBlock; i++) {
            long child = u32(b, i);
            if (child == 0) {
                continue;
            }
            long childBase = base + i * childSpan;
            if (levels == 1) {
                return childBase;
            }
            long r = nextMappedIn(child, levels - 1, childBase, Math.max(from, childBase));
            if (r >= 0) {
                return r;
            }
        }
        return -1;
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
        // writers check the largest file size first, so only a corrupt i_size leads here
        throw Ext4Exception.corrupted("inode " + ino + ": logical block " + lblk + " is beyond what an indirect map can address");
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
            b = u32(read(b), slot);
        }
        return b;
    }

    private ByteBuffer read(long block) throws Ext4Exception {
        try {
            return cache.get(block);
        } catch (Ext4Exception e) {
            throw new Ext4Exception(e.errno(), "inode " + ino + " indirect block: " + e.getMessage(), e);
        }
    }

    private static long u32(ByteBuffer b, int slot) {
        return b.getInt(slot * 4) & 0xFFFFFFFFL;
    }

    /**
     * ext4_block_to_path(): the i_block slot followed by the slot in each indirect block, top
     * down; a direct block has just its i_block slot.
     */
    private int[] toPath(long lblk) {
        if (lblk < DIRECT) {
            return new int[] {(int) lblk};
        }
        long p = perBlock;
        long rel = lblk - DIRECT;
        if (rel < p) {
            return new int[] {IND, (int) rel};
        }
        rel -= p;
        if (rel < p * p) {
            return new int[] {DIND, (int) (rel / p), (int) (rel % p)};
        }
        rel -= p * p;
        return new int[] {TIND, (int) (rel / (p * p)), (int) (rel / p % p), (int) (rel % p)};
    }

    /**
     * ext4_find_goal() / ext4_find_near(): where a data block for {@code lblk} should go: the
     * nearest pointer before its slot in the deepest existing block of its branch, else that
     * block, else 0 for no preference (then near the inode). A mapped block gives itself.
     */
    public long goal(long lblk) throws Ext4Exception {
        checkLogical(lblk, 1);
        int[] path = toPath(lblk);
        ByteBuffer container = iBlock;
        long containerBlock = 0;
        for (int k = 0; k < path.length; k++) {
            long ptr = u32(container, path[k]);
            if (ptr == 0) {
                return findNear(container, containerBlock, path[k]);
            }
            if (k == path.length - 1) {
                return ptr;
            }
            container = read(ptr);
            containerBlock = ptr;
        }
        return 0;
    }

    /** ext4_find_near(): the previous non-zero pointer in the container, else the container's block. */
    private static long findNear(ByteBuffer container, long containerBlock, int slot) {
        for (int s = slot - 1; s >= 0; s--) {
            long p = u32(container, s);
            if (p != 0) {
                return p;
            }
        }
        return containerBlock;
    }

    private void requireWritable() {
        if (source == null) {
            throw new IllegalStateException("inode " + ino + ": block map opened read-only");
        }
    }

    private void checkLogical(long lblk, long count) {
        long limit = Math.min(maxBlocks(cache.blockSize()), MAX_LBLK);
        if (lblk < 0 || count < 1 || lblk >= limit || count > limit - lblk) {
            throw new IllegalArgumentException("inode " + ino + ": logical blocks " + lblk + " + " + count
                    + " outside the indirect map (0.." + (limit - 1) + ")");
        }
    }

    /** Receives what {@link #visit} finds. */
    public interface Visitor {
        /** Logical block {@code lblk} is mapped to {@code pblk}; called in logical order. */
        void data(long lblk, long pblk) throws Ext4Exception;

        /** {@code block} is an indirect block of the map (before the blocks below it). */
        void indirect(long block) throws Ext4Exception;
    }

    /**
     * Walks the whole map as ext4_ext_migrate() does (update_ind/dind/tind_extent_range()): every
     * mapped data block in logical order, and every indirect block.
     */
    public void visit(Visitor v) throws Ext4Exception {
        for (int s = 0; s < DIRECT; s++) {
            long p = u32(iBlock, s);
            if (p != 0) {
                v.data(s, p);
            }
        }
        long base = DIRECT;
        long span = perBlock;
        for (int level = 1; level <= 3; level++) {
            long blk = u32(iBlock, IND + level - 1);
            if (blk != 0) {
                visitBranch(blk, level, base, span / perBlock, v);
            }
            base += span;
            span *= perBlock;
        }
    }

    private void visitBranch(long blk, int level, long base, long slotSpan, Visitor v) throws Ext4Exception {
        v.indirect(blk);
        ByteBuffer buf = read(blk);
        for (int s = 0; s < perBlock; s++) {
            long child = u32(buf, s);
            if (child == 0) {
                continue;
            }
            if (level == 1) {
                v.data(base + s, child);
            } else {
                visitBranch(child, level - 1, base + s * slotSpan, slotSpan / perBlock, v);
            }
        }
    }

    // ------------------------------------------------------------------------------------------
    // Set

    /** Maps logical block {@code lblk} to {@code pblk}; see {@link #set(long, long, long)}. */
    public void set(long lblk, long pblk) throws Ext4Exception {
        set(lblk, pblk, 1);
    }

    /**
     * Maps {@code count} logical blocks from {@code lblk} to {@code pblk} onward, allocating the
     * indirect blocks they need. The data blocks are the caller's (allocated and counted by it).
     *
     * <p>A run is mapped one indirect block at a time: when an error stops it, the blocks of the
     * run before the failing indirect block (or direct slot) are mapped and the rest are not. A
     * mapping to the same block again is accepted.
     *
     * @throws Ext4Exception EEXIST when one of the blocks is mapped to another block already;
     *                       ENOSPC from the BlockSource (the branch it was building is given back)
     * @throws IllegalArgumentException for blocks outside the map or physical blocks outside
     *                       1..2^32-1
     */
    public void set(long lblk, long pblk, long count) throws Ext4Exception {
        requireWritable();
        checkLogical(lblk, count);
        if (pblk <= 0 || pblk > 0xFFFFFFFFL || count - 1 > 0xFFFFFFFFL - pblk) {
            throw new IllegalArgumentException("inode " + ino + ": physical blocks " + pblk + " + " + count
                    + " outside 1..2^32-1 (a block-mapped file needs 32-bit block numbers)");
        }
        long done = 0;
        while (done < count) {
            long l = lblk + done;
            long p = pblk + done;
            int[] path = toPath(l);
            if (path.length == 1) {
                long old = u32(iBlock, path[0]);
                if (old != 0 && old != p) {
                    throw remapped(l, old, p);
                }
                iBlock.putInt(path[0] * 4, (int) p);
                done++;
                continue;
            }
            long leafBlock = ensureBranch(path);
            int first = path[path.length - 1];
            int n = (int) Math.min(count - done, perBlock - first);
            cache.update(leafBlock, b -> {
                for (int k = 0; k < n; k++) {
                    long old = u32(b, first + k);
                    if (old != 0 && old != p + k) {
                        throw remapped(l + k, old, p + k);
                    }
                }
                for (int k = 0; k < n; k++) {
                    b.putInt((first + k) * 4, (int) (p + k));
                }
            });
            done += n;
        }
    }

    /**
     * {@link #set(long, long, long)}: ext4_ind_map_blocks() has no unwritten state.
     *
     * @throws Ext4Exception EOPNOTSUPP for an unwritten run
     */
    @Override
    public void insert(long lblk, long physical, int length, boolean unwritten) throws Ext4Exception {
        if (unwritten) {
            throw new Ext4Exception(Errno.EOPNOTSUPP, "unwritten blocks need the extents feature");
        }
        set(lblk, physical, length);
    }

    /** Nothing to do: an indirect map has no unwritten blocks. */
    @Override
    public void markWritten(long lblk, long length) {
    }

    private Ext4Exception remapped(long lblk, long old, long pblk) {
        return new Ext4Exception(Errno.EEXIST, "inode " + ino + ": logical block " + lblk + " is mapped to block "
                + old + " already (asked to map it to " + pblk + ")");
    }

    /**
     * ext4_get_branch() + ext4_alloc_branch() + ext4_splice_branch(): the single-indirect block
     * holding the data pointer of {@code path}, with any missing blocks of the branch allocated.
     */
    private long ensureBranch(int[] path) throws Ext4Exception {
        int levels = path.length - 1;
        ByteBuffer parent = iBlock;
        long parentBlock = 0;
        int k = 0; // path[k] is the slot in parent of the chain block at depth k + 1
        long blk = u32(iBlock, path[0]);
        while (blk != 0 && k + 1 < levels) {
            parent = read(blk);
            parentBlock = blk;
            k++;
            blk = u32(parent, path[k]);
        }
        if (blk != 0) {
            return blk;
        }
        // blocks at depths k+1 .. levels are missing; allocate them all before changing anything
        int missing = levels - k;
        long[] blocks = new long[missing];
        long goal = findNear(parent, parentBlock, path[k]);
        int a = 0;
        try {
            for (; a < missing; a++) {
                blocks[a] = allocMeta(a == 0 ? goal : blocks[a - 1] + 1);
            }
        } catch (Ext4Exception | RuntimeException e) {
            for (int j = 0; j < a; j++) {
                try {
                    freeMeta(blocks[j]);
                } catch (Ext4Exception | RuntimeException f) {
                    e.addSuppressed(f);
                }
            }
            throw e;
        }
        // zeroed, each pointing to the next, written bottom-up, then spliced into the parent
        for (int j = missing - 1; j >= 0; j--) {
            long next = j + 1 < missing ? blocks[j + 1] : 0;
            int slot = path[k + 1 + j];
            cache.create(blocks[j], b -> {
                if (next != 0) {
                    b.putInt(slot * 4, (int) next);
                }
            });
        }
        if (parentBlock == 0) {
            iBlock.putInt(path[0] * 4, (int) blocks[0]);
        } else {
            int slot = path[k];
            long first = blocks[0];
            cache.update(parentBlock, b -> b.putInt(slot * 4, (int) first));
        }
        return blocks[missing - 1];
    }

    private long allocMeta(long goal) throws Ext4Exception {
        long b = source.allocateMetaBlock(goal);
        metaBlocksDelta++;
        if (b <= 0 || b > 0xFFFFFFFFL) {
            IllegalStateException e = new IllegalStateException("BlockSource returned block " + b
                    + " for an indirect block of inode " + ino + " (must be in 1..2^32-1)");
            try {
                if (b > 0) {
                    freeMeta(b);
                }
            } catch (Ext4Exception | RuntimeException f) {
                e.addSuppressed(f);
            }
            throw e;
        }
        return b;
    }

    private void freeMeta(long block) throws Ext4Exception {
        source.freeBlocks(block, 1);
        metaBlocksDelta--;
    }

    // ------------------------------------------------------------------------------------------
    // Remove

    /** Blocks to give back once the map no longer refers to them. */
    private final class Freer {
        final List<long[]> runs = new ArrayList<>();
        final List<Long> meta = new ArrayList<>();
        long runStart;
        long runLength;
        long dataBlocks;

        void data(long p) {
            dataBlocks++;
            if (runLength > 0 && runStart + runLength == p) {
                runLength++;
                return;
            }
            endRun();
            runStart = p;
            runLength = 1;
        }

        void endRun() {
            if (runLength > 0) {
                runs.add(new long[] {runStart, runLength});
                runLength = 0;
            }
        }

        void release() throws Ext4Exception {
            endRun();
            for (long[] r : runs) {
                source.freeBlocks(r[0], r[1]);
            }
            for (long b : meta) {
                freeMeta(b);
            }
        }
    }

    /**
     * Truncates or punches: unmaps {@code from .. toExclusive - 1} ({@code toExclusive} may be
     * {@link Long#MAX_VALUE}), freeing the data blocks and the indirect blocks that become empty
     * through the {@link BlockSource}.
     *
     * @return the data blocks freed (the caller takes them off i_blocks, with
     *         {@link #metaBlocksDelta()} for indirect blocks)
     */
    @Override
    public long removeRange(long from, long toExclusive) throws Ext4Exception {
        requireWritable();
        if (from < 0 || toExclusive < from) {
            throw new IllegalArgumentException("range " + from + ".." + toExclusive);
        }
        long to = Math.min(toExclusive, maxBlocks(cache.blockSize()));
        if (from >= to) {
            return 0;
        }
        Freer f = new Freer();
        for (long l = from; l < Math.min(to, DIRECT); l++) {
            int s = (int) l;
            long p = u32(iBlock, s);
            if (p != 0) {
                f.data(p);
                iBlock.putInt(s * 4, 0);
            }
        }
        long base = DIRECT;
        long span = perBlock;
        for (int level = 1; level <= 3; level++) {
            int slot = IND + level - 1;
            if (from < base + span && to > base) {
                long blk = u32(iBlock, slot);
                if (blk != 0 && prune(blk, level, base, from, to, f)) {
                    iBlock.putInt(slot * 4, 0);
                }
            }
            base += span;
            span *= perBlock;
        }
        f.release();
        return f.dataBlocks;
    }

    /**
     * Removes {@code from .. to - 1} from the subtree of the level-{@code level} indirect block
     * {@code blk}, which covers logical blocks from {@code base}. Returns true when {@code blk}
     * itself is to be freed (its parent pointer must be cleared).
     */
    private boolean prune(long blk, int level, long base, long from, long to, Freer f) throws Ext4Exception {
        long slotSpan = 1;
        for (int i = 1; i < level; i++) {
            slotSpan *= perBlock;
        }
        long subEnd = base + slotSpan * perBlock;
        if (from <= base && to >= subEnd) {
            freeAll(blk, level, f);
            return true;
        }
        ByteBuffer buf = ByteBuffer.allocate(cache.blockSize()).order(ByteOrder.LITTLE_ENDIAN);
        buf.put(0, read(blk), 0, cache.blockSize());
        int first = (int) Math.max(0, (from - base) / slotSpan);
        int last = (int) Math.min(perBlock - 1, (to - 1 - base) / slotSpan);
        boolean changed = false;
        for (int s = first; s <= last; s++) {
            long child = u32(buf, s);
            if (child == 0) {
                continue;
            }
            if (level == 1) {
                f.data(child);
                buf.putInt(s * 4, 0);
                changed = true;
            } else if (prune(child, level - 1, base + s * slotSpan, from, to, f)) {
                buf.putInt(s * 4, 0);
                changed = true;
            }
        }
        boolean empty = true;
        for (int s = 0; s < perBlock && empty; s++) {
            empty = buf.getInt(s * 4) == 0;
        }
        if (empty) {
            f.meta.add(blk);
            return true;
        }
        if (changed) {
            cache.update(blk, b -> b.put(0, buf, 0, cache.blockSize()));
        }
        return false;
    }

    /** ext4_free_branches(): every data and indirect block below {@code blk}, and {@code blk}. */
    private void freeAll(long blk, int level, Freer f) throws Ext4Exception {
        ByteBuffer buf = read(blk);
        for (int s = 0; s < perBlock; s++) {
            long child = u32(buf, s);
            if (child == 0) {
                continue;
            }
            if (level == 1) {
                f.data(child);
            } else {
                freeAll(child, level - 1, f);
            }
        }
        f.meta.add(blk);
    }
}
