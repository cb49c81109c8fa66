package dev.ext4j.alloc;

import dev.ext4j.Errno;
import dev.ext4j.Ext4Exception;
import dev.ext4j.LockOrder;
import dev.ext4j.format.Checksums;
import dev.ext4j.format.Feature;
import dev.ext4j.format.GroupDescriptor;
import dev.ext4j.format.Superblock;
import dev.ext4j.io.BufferCache;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/**
 * The block and inode allocators: the bitmaps of every group, the free counts of the group
 * descriptors, and where new blocks and inodes go.
 *
 * <p>Kernel counterparts, for comparing behaviour:
 * <ul>
 * <li>{@link #allocateBlocks}: ext4_mb_new_blocks() in mballoc.c. The goal block is tried first
 *     (ext4_mb_find_by_goal(); a shorter run that starts exactly at the goal is taken, as with
 *     EXT4_MB_HINT_MERGE, so a file grows in place); otherwise groups are scanned from the goal's
 *     group on, wrapping around, for a run of the full length, and when there is none within a
 *     bounded number of bitmaps the longest run seen is taken. A run never crosses a group.
 * <li>{@link #freeBlocks}: ext4_free_blocks() / ext4_mb_clear_bb().
 * <li>{@link #allocateInode}: __ext4_new_inode() in ialloc.c, with find_group_orlov() for
 *     directories made in the root (spread over groups: above-average free inodes and blocks,
 *     fewest directories) and find_group_other() for the rest (the parent's group first).
 * <li>{@link #freeInode}: ext4_free_inode().
 * <li>Bitmaps are read as ext4_read_block_bitmap() / ext4_read_inode_bitmap() do: verified against
 *     bg_block_bitmap_csum / bg_inode_bitmap_csum (metadata_csum) the first time, and built in
 *     memory for BLOCK_UNINIT / INODE_UNINIT groups (ext4_init_block_bitmap(),
 *     ext4_mark_bitmap_end()); the first allocation in such a group writes the bitmap and clears
 *     the flag. As mballoc does when it builds a buddy, the first read also checks the bitmap
 *     against the descriptor's free count.
 * </ul>
 *
 * <p>A group whose bitmap fails its checksum or disagrees with its free count fails the operation
 * that found it (EBADMSG or EUCLEAN, naming the group and the bitmap block), and is skipped by
 * later allocations, as the kernel's EXT4_GROUP_INFO_BBITMAP_CORRUPT does; freeing in it keeps
 * failing until e2fsck has repaired the filesystem.
 *
 * <p>Not handled here: the reserved blocks (s_r_blocks_count) are the caller's policy, and the
 * descriptor backups and the superblock are written by their owners ({@link #writeCounts} only
 * fills in the superblock's free counts).
 *
 * <p>Locking: every change to a group (its bitmaps, descriptor and free counts) happens under
 * {@link GroupTable#lock(long)}. Group locks are innermost among the filesystem's locks: they are
 * taken after any inode locks, and no thread ever holds two group locks at once (several groups
 * share one monitor). Under a group lock only the block cache's per-block update lock is taken,
 * so the allocator must never be called from inside a {@link BufferCache.Mutator}.
 * Free counts read as allocation hints are read without the lock and rechecked under it.
 * Bigalloc filesystems are refused: clusters are not implemented.
 */
public final class Allocator {
    /** EXT4_ROOT_INO. */
    private static final long ROOT_INO = 2;
    /** Bitmaps read, after the first usable run was found, while looking for one of the full length. */
    private static final int SCAN_GROUPS_AFTER_CANDIDATE = 32;
    /** Searches repeated when the chosen run was taken by another thread meanwhile. */
    private static final int MAX_ATTEMPTS = 16;
    private static final Run RETRY = new Run(-1, 0);
    /** EXT4_MAX_BLOCK_FILE_PHYS: the last block an indirect block map can point to. */
    private static final long MAX_BLOCK_FILE_PHYS = 0xFFFFFFFFL;

    /** A run of {@code length} contiguous blocks starting at block {@code start}. */
    public record Run(long start, int length) {
    }

    private final GroupTable groups;
    private final BufferCache cache;
    private final int blockSize;
    private final long firstDataBlock;
    // The geometry below grows with an online resize (publishGrowth()); groupCount is written
    // last, so a thread that reads it sees the blocks, inodes, metadata map and group states of
    // every group below it. Searches snapshot groupCount once and use only groups below it.
    private volatile long blocksCount;
    /** The sum of bg_free_blocks_count, kept as the descriptors change. */
    private final java.util.concurrent.atomic.AtomicLong freeBlocks;
    private final long blocksPerGroup;
    private final long inodesPerGroup;
    private volatile long inodesCount;
    private final long firstIno;
    private volatile long groupCount;
    /** Groups wholly below 2^32 blocks, usable by indirect-mapped files (s_blockfile_groups). */
    private volatile long blockfileGroups;
    private final int flexSize;
    /** Group descriptors carry checksums (gdt_csum or metadata_csum): the UNINIT flags and bg_itable_unused count. */
    private final boolean descCsum;
    private final boolean metadataCsum;
    private final int csumSeed;
    private volatile MetadataMap metadata;
    /** Per group; a resize copies the array but keeps the objects, so no change is lost. */
    private volatile GroupState[] states;

    /** What the allocator learnt about one group's bitmaps; guarded by groups.lock(g). */
    private static final class GroupState {
        boolean blockBitmapChecked;
        boolean inodeBitmapChecked;
        Ext4Exception blockBitmapBad;
        Ext4Exception inodeBitmapBad;
        /** Blocks (group offsets) freed by a journal transaction not yet committed: free on disk, not yet reusable. */
        java.util.BitSet busy;
    }

    /**
     * Told of every freed range when a journal logs the changes (the kernel's ext4_free_data list
     * of mballoc): the blocks stay unusable until {@link #releaseFreed} says the transaction that
     * freed them is committed, so a crash before that commit never finds them holding new data.
     */
    public interface FreeDeferral {
        void freed(long start, long length);
    }

    private volatile FreeDeferral deferral;

    public void setFreeDeferral(FreeDeferral d) {
        this.deferral = d;
    }

    /** Calls of {@link #releaseFreed}, so that a caller can tell whether blocks became reusable since it looked. */
    private final java.util.concurrent.atomic.AtomicLong releases = new java.util.concurrent.atomic.AtomicLong();

    public long releases() {
        return releases.get();
    }

    /** The transaction that freed {@code [start, start + length)} is committed: the blocks may be reused. */
    public void releaseFreed(long start, long length) {
        releases.incrementAndGet();
        try {
            forEachGroupRun(start, length, (g, off, n, first) -> {
                synchronized (LockOrder.monitor(LockOrder.Level.GROUP, g, groups.lock(g))) {
                    java.util.BitSet busy = state(g).busy;
                    if (busy != null) {
                        busy.clear(off, off + n);
                    }
                }
            });
        } catch (Ext4Exception e) {
            throw new IllegalStateException("releasing blocks cannot fail", e);
        }
    }

    /** A run of blocks inside one group: {@code n} blocks from offset {@code off}, block {@code first}. */
    @FunctionalInterface
    private interface GroupRun {
        void accept(long g, int off, int n, long first) throws Ext4Exception;
    }

    /** Splits {@code [start, start + length)} at group boundaries, in block order. */
    private void forEachGroupRun(long start, long length, GroupRun run) throws Ext4Exception {
        long block = start;
        long end = start + length;
        while (block < end) {
            long g = (block - firstDataBlock) / blocksPerGroup;
            int off = (int) (block - groupFirstBlock(g));
            int n = (int) Math.min(end - block, groupLength(g) - off);
            run.accept(g, off, n, block);
            block += n;
        }
    }

    /** Whether some free blocks wait for the commit of the transaction that freed them. */
    public boolean hasUncommittedFrees() {
        if (deferral == null) {
            return false;
        }
        for (long g = 0; g < groupCount; g++) {
            synchronized (LockOrder.monitor(LockOrder.Level.GROUP, g, groups.lock(g))) {
                java.util.BitSet busy = state(g).busy;
                if (busy != null && !busy.isEmpty()) {
                    return true;
                }
            }
        }
        return false;
    }

    /** The bitmap to search in: {@code bm}, or a copy with the group's busy blocks marked used. Caller holds the group lock. */
    private ByteBuffer searchView(long g, ByteBuffer bm) {
        java.util.BitSet busy = state(g).busy;
        if (busy == null || busy.isEmpty()) {
            return bm;
        }
        ByteBuffer view = ByteBuffer.allocate(blockSize).order(ByteOrder.LITTLE_ENDIAN);
        view.put(0, bm, 0, blockSize);
        for (int a = busy.nextSetBit(0); a >= 0; a = busy.nextSetBit(busy.nextClearBit(a))) {
            Bitmaps.set(view, a, busy.nextClearBit(a));
        }
        return view;
    }

    /**
     * @throws Ext4Exception EOPNOTSUPP with bigalloc
     */
    public Allocator(Superblock sb, GroupTable groups, BufferCache cache) throws Ext4Exception {
        if (sb.has(Feature.BIGALLOC)) {
            throw new Ext4Exception(Errno.EOPNOTSUPP, "bigalloc: allocating clusters of " + sb.clusterRatio()
                    + " blocks is not supported; mount read-only");
        }
        if (cache.blockSize() != sb.blockSize()) {
            throw new IllegalArgumentException("block cache of " + cache.blockSize() + "-byte blocks for a filesystem of "
                    + sb.blockSize() + "-byte blocks");
        }
        this.groups = groups;
        this.cache = cache;
        this.blockSize = sb.blockSize();
        this.firstDataBlock = sb.firstDataBlock();
        this.blocksCount = sb.blocksCount();
        this.blocksPerGroup = sb.blocksPerGroup();
        this.inodesPerGroup = sb.inodesPerGroup();
        this.inodesCount = sb.inodesCount();
        this.firstIno = sb.firstIno();
        this.groupCount = groups.groupCount();
        this.blockfileGroups = blockfileGroups(groupCount);
        this.flexSize = sb.has(Feature.FLEX_BG) && sb.logGroupsPerFlex() < 31 ? 1 << sb.logGroupsPerFlex() : 1;
        this.metadataCsum = sb.has(Feature.METADATA_CSUM);
        this.descCsum = metadataCsum || sb.has(Feature.GDT_CSUM);
        this.csumSeed = metadataCsum ? sb.checksumSeed() : 0;
        this.metadata = MetadataMap.build(sb, groups);
        this.states = grownStates(new GroupState[0], groupCount);
        long free = 0;
        for (long g = 0; g < groupCount; g++) {
            free += groups.get(g).freeBlocksCount();
        }
        this.freeBlocks = new java.util.concurrent.atomic.AtomicLong(free);
    }

    private long blockfileGroups(long groups) {
        return Math.max(1, Math.min(groups, (MAX_BLOCK_FILE_PHYS - firstDataBlock) / blocksPerGroup));
    }

    private static GroupState[] grownStates(GroupState[] old, long groups) {
        GroupState[] s = java.util.Arrays.copyOf(old, (int) groups);
        for (int i = old.length; i < s.length; i++) {
            s[i] = new GroupState();
        }
        return s;
    }

    private GroupState state(long g) {
        return states[(int) g];
    }

    // ---------------------------------------------------------------- online resize

    /**
     * The allocator's part of an online resize (ext4_group_extend_no_check() and the
     * s_groups_count update of ext4_update_super()). The caller has written the new groups'
     * bitmaps, inode tables and descriptors (held by {@code groups}, not yet published) and
     * passes the superblock of the grown filesystem. Then:
     * <ol>
     * <li>under the old last group's lock, that group grows to {@code newSb}'s size: the bits
     *     past its old end are cleared and its free count goes up; the block count, metadata map
     *     and per-group states are replaced while that lock is held, so a thread that holds it
     *     sees the group's length, bitmap and count agree;
     * <li>the new groups' free blocks join the total, and the group count is published last.
     * </ol>
     * From then on allocations may use the new groups. Only this one call changes the geometry,
     * and the resize that makes it is serialized by its caller.
     */
    public void publishGrowth(Superblock newSb) throws Ext4Exception {
        long oldGroups = groupCount;
        long newGroups = newSb.groupCount();
        long newBlocks = newSb.blocksCount();
        if (newBlocks < blocksCount || newGroups < oldGroups) {
            throw new IllegalArgumentException("growth from " + blocksCount + " to " + newBlocks + " blocks");
        }
        MetadataMap map = MetadataMap.build(newSb, groups);
        GroupState[] grown = grownStates(states, newGroups);
        long last = oldGroups - 1;
        synchronized (LockOrder.monitor(LockOrder.Level.GROUP, last, groups.lock(last))) {
            GroupDescriptor gd = groups.get(last);
            int oldLen = groupLength(last);
            int newLen = (int) Math.min(blocksPerGroup, newBlocks - groupFirstBlock(last));
            if (newLen > oldLen) {
                ByteBuffer bm = readBlockBitmap(last, gd);
                long added = (newLen - oldLen) - (Bitmaps.countClear(bm, newLen) - Bitmaps.countClear(bm, oldLen));
                changeBlockBitmap(last, gd, bm, b -> Bitmaps.clear(b, oldLen, newLen), added);
            }
            metadata = map;
            states = grown;
            inodesCount = newSb.inodesCount();
            blocksCount = newBlocks;
        }
        long free = 0;
        for (long g = oldGroups; g < newGroups; g++) {
            free += groups.get(g).freeBlocksCount();
        }
        freeBlocks.addAndGet(free);
        groupCount = newGroups;
        blockfileGroups = blockfileGroups(newGroups);
    }

    // ---------------------------------------------------------------- blocks

    /**
     * Allocates 1 to {@code maxLength} contiguous blocks (ext4_mb_new_blocks()). A goal outside the
     * filesystem (0 for metadata with no better idea) means "anywhere, from the first group".
     *
     * @throws Ext4Exception ENOSPC when no block is free; EBADMSG or EUCLEAN when a bitmap read on
     *     the way is damaged
     */
    public Run allocateBlocks(long goal, int maxLength) throws Ext4Exception {
        return allocateBlocks(goal, maxLength, false);
    }

    /**
     * Like {@link #allocateBlocks(long, int)}; with {@code blockMapped} (for a file mapped by
     * indirect blocks, whose pointers are 32 bits) only groups that lie wholly below block 2^32 are
     * searched, as mballoc limits such files to s_blockfile_groups.
     */
    public Run allocateBlocks(long goal, int maxLength, boolean blockMapped) throws Ext4Exception {
        return allocateBlocks(goal, maxLength, blockMapped, true);
    }

    /**
     * Like {@link #allocateBlocks(long, int, boolean)}. Blocks freed by a journal transaction not
     * yet committed are taken only when nothing else is free and {@code mayReuseUncommitted}: for
     * blocks whose new contents go through the journal (tree, directory, xattr blocks), whose home
     * copy a crash before that commit leaves as the old owner had it. File data is written home
     * before any commit, so it passes false: a crash before the commit would give the freed
     * blocks back to their old owner holding the new data (or, for an old tree or directory
     * block, garbage metadata), and a checkpoint of the old owner's committed copy could overwrite
     * the new data. It gets ENOSPC then; {@link #hasUncommittedFrees} tells the caller that a
     * commit outside its handle (ext4_should_retry_alloc()) and a retry may succeed.
     */
    public Run allocateBlocks(long goal, int maxLength, boolean blockMapped, boolean mayReuseUncommitted) throws Ext4Exception {
        if (maxLength < 1) {
            throw new IllegalArgumentException("maxLength " + maxLength + ": expected at least 1 block");
        }
        int want = (int) Math.min(maxLength, blocksPerGroup);
        long ngroups = blockMapped ? blockfileGroups : groupCount;
        long g0 = 0;
        int off0 = 0;
        if (goal >= firstDataBlock && goal < blocksCount && (goal - firstDataBlock) / blocksPerGroup < ngroups) {
            g0 = (goal - firstDataBlock) / blocksPerGroup;
            off0 = (int) ((goal - firstDataBlock) % blocksPerGroup);
        }
        boolean avoidBusy = true;
        for (int attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
            Run r = searchBlocks(g0, off0, want, ngroups, avoidBusy);
            if (r == null && avoidBusy && deferral != null && mayReuseUncommitted) {
                // the last free blocks wait for a commit; the kernel would commit and retry
                // (ext4_should_retry_alloc()), which a handle cannot do for itself: take them
                avoidBusy = false;
                continue;
            }
            if (r == null) {
                throw new Ext4Exception(Errno.ENOSPC, "no free block for a run of up to " + maxLength + " blocks (goal "
                        + goal + "): " + groupCount + " groups hold " + freeBlocksCount() + " free blocks" + skippedGroups(true)
                        + (ngroups < groupCount ? "; a block-mapped file can use only the " + ngroups + " groups below block 2^32" : "")
                        + (hasUncommittedFrees() ? "; some wait for the commit of the transaction that freed them" : ""));
            }
            if (r != RETRY) {
                return r;
            }
        }
        throw new Ext4Exception(Errno.ENOSPC, "no free block for a run of up to " + maxLength + " blocks (goal " + goal
                + "): the runs found were taken by other threads " + MAX_ATTEMPTS + " times");
    }

    /**
     * One pass over groups {@code [0, ngroups)}, skipping blocks freed by an uncommitted
     * transaction when {@code avoidBusy}; null when nothing is free, RETRY when the chosen run
     * was taken meanwhile.
     */
    private Run searchBlocks(long g0, int off0, int want, long ngroups, boolean avoidBusy) throws Ext4Exception {
        long bestGroup = -1;
        int bestStart = 0;
        int bestLen = 0;
        int readSinceCandidate = 0;
        // the goal's group from the goal on, the following groups, then the goal's group before the goal
        for (long i = 0; i <= ngroups; i++) {
            boolean tail = i == ngroups;
            if (tail && off0 == 0) {
                break;
            }
            if (bestGroup >= 0 && readSinceCandidate >= SCAN_GROUPS_AFTER_CANDIDATE) {
                break;
            }
            long g = (g0 + i) % ngroups;
            synchronized (LockOrder.monitor(LockOrder.Level.GROUP, g, groups.lock(g))) {
                GroupDescriptor gd = groups.get(g);
                long free = gd.freeBlocksCount();
                if (state(g).blockBitmapBad != null || free == 0 || free <= bestLen) {
                    continue;
                }
                ByteBuffer bm = readBlockBitmap(g, gd);
                ByteBuffer view = avoidBusy ? searchView(g, bm) : bm;
                if (bestGroup >= 0) {
                    readSinceCandidate++;
                }
                int len = groupLength(g);
                if (i == 0 && !Bitmaps.isSet(view, off0)) {
                    int end = Bitmaps.nextSet(view, off0, (int) Math.min(len, (long) off0 + want));
                    return take(g, gd, bm, off0, end - off0);
                }
                int from = i == 0 ? off0 : 0;
                int to = tail ? off0 : len;
                while (from < to) {
                    int a = Bitmaps.nextClear(view, from, to);
                    if (a < 0) {
                        break;
                    }
                    int b = Bitmaps.nextSet(view, a, (int) Math.min(len, (long) a + want));
                    if (b - a >= want) {
                        return take(g, gd, bm, a, want);
                    }
                    if (b - a > bestLen) {
                        bestGroup = g;
                        bestStart = a;
                        bestLen = b - a;
                    }
                    from = b + 1; // b is a used bit, or the end of the group
                }
            }
        }
        if (bestGroup < 0) {
            return null;
        }
        synchronized (LockOrder.monitor(LockOrder.Level.GROUP, bestGroup, groups.lock(bestGroup))) {
            GroupDescriptor gd = groups.get(bestGroup);
            if (state(bestGroup).blockBitmapBad != null || gd.freeBlocksCount() == 0) {
                return RETRY;
            }
            ByteBuffer bm = readBlockBitmap(bestGroup, gd);
            ByteBuffer view = avoidBusy ? searchView(bestGroup, bm) : bm;
            if (Bitmaps.isSet(view, bestStart)) {
                return RETRY;
            }
            int end = Bitmaps.nextSet(view, bestStart, bestStart + bestLen);
            return take(bestGroup, gd, bm, bestStart, end - bestStart);
        }
    }

    /** Marks {@code [start, start + len)} of group {@code g} in use. Caller holds the group lock. */
    private Run take(long g, GroupDescriptor gd, ByteBuffer bm, int start, int len) throws Ext4Exception {
        long first = groupFirstBlock(g) + start;
        long meta = metadata.firstIn(first, len);
        if (meta >= 0) {
            throw markBlockBitmapBad(g, Ext4Exception.corrupted("group " + g + ": block bitmap (block " + gd.blockBitmap()
                    + ") has metadata block " + meta + " as free; run e2fsck"));
        }
        changeBlockBitmap(g, gd, bm, b -> {
            int used = Bitmaps.nextSet(b, start, start + len);
            if (used != start + len) {
                throw Ext4Exception.corrupted("group " + g + ": block " + (groupFirstBlock(g) + used) + " was taken while its group was locked");
            }
            Bitmaps.set(b, start, start + len);
        }, -len);
        return new Run(first, len);
    }

    /**
     * Frees {@code length} blocks from {@code start} (ext4_free_blocks()); the range may cross
     * groups. Each group's part is checked before it changes: a block that is already free, or that
     * is fixed metadata, is corruption (EUCLEAN, naming the block), and that group's bitmap and
     * counts stay as they were.
     */
    public void freeBlocks(long start, long length) throws Ext4Exception {
        if (length < 0) {
            throw new IllegalArgumentException("freeing " + length + " blocks at " + start);
        }
        if (length == 0) {
            return;
        }
        if (start < firstDataBlock || start >= blocksCount || length > blocksCount - start) {
            throw Ext4Exception.corrupted("freeing blocks " + start + ".." + (start + length - 1) + ": outside the data blocks ("
                    + firstDataBlock + ".." + (blocksCount - 1) + ")");
        }
        long meta = metadata.firstIn(start, length);
        if (meta >= 0) {
            throw Ext4Exception.corrupted("freeing blocks " + start + ".." + (start + length - 1) + ": block " + meta
                    + " is a group's bitmap, inode table, superblock or descriptor block");
        }
        forEachGroupRun(start, length, (g, off, n, block) -> {
            synchronized (LockOrder.monitor(LockOrder.Level.GROUP, g, groups.lock(g))) {
                GroupDescriptor gd = groups.get(g);
                ByteBuffer bm = readBlockBitmap(g, gd);
                int free = Bitmaps.nextClear(bm, off, off + n);
                if (free >= 0) {
                    throw Ext4Exception.corrupted("freeing block " + (groupFirstBlock(g) + free) + " (group " + g
                            + "): it is already free in the block bitmap (block " + gd.blockBitmap() + ")");
                }
                // dropped while still ours: once the bit is clear another thread may allocate the
                // block and create its new contents in the cache, which a later forget would lose
                for (long b = block; b < block + n; b++) {
                    cache.forget(b);
                }
                changeBlockBitmap(g, gd, bm, b -> {
                    if (Bitmaps.nextClear(b, off, off + n) >= 0) {
                        throw Ext4Exception.corrupted("group " + g + ": a block of " + (groupFirstBlock(g) + off)
                                + ".." + (groupFirstBlock(g) + off + n - 1) + " was freed while its group was locked");
                    }
                    Bitmaps.clear(b, off, off + n);
                }, n);
                if (deferral != null) {
                    GroupState st = state(g);
                    if (st.busy == null) {
                        st.busy = new java.util.BitSet();
                    }
                    st.busy.set(off, off + n);
                }
            }
            FreeDeferral d = deferral;
            if (d != null) {
                d.freed(block, n);
            }
        });
    }

    /**
     * The goal for the data of inode {@code ino}, as ext4_inode_to_goal_block() with delayed
     * allocation: the first block of the inode's group; with flex groups of 4 or more, the first
     * group of its flex group for directories and other non-regular files, the second for regular
     * files.
     */
    public long goalForInode(long ino, boolean regularFile) {
        long g = (Math.max(1, Math.min(ino, inodesCount)) - 1) / inodesPerGroup;
        if (flexSize >= 4) {
            g &= ~(long) (flexSize - 1);
            if (regularFile && g + 1 < groupCount) {
                g++;
            }
        }
        return groupFirstBlock(g);
    }

    // ---------------------------------------------------------------- inodes

    /**
     * Allocates an inode near {@code parentIno} (__ext4_new_inode()) and returns its number; never
     * one below s_first_ino. The caller writes the inode itself.
     *
     * @throws Ext4Exception ENOSPC when no inode is free
     */
    public long allocateInode(long parentIno, boolean directory) throws Ext4Exception {
        if (parentIno < 1 || parentIno > inodesCount) {
            throw new IllegalArgumentException("parent inode " + parentIno + " is outside 1.." + inodesCount);
        }
        long parentGroup = (parentIno - 1) / inodesPerGroup;
        if (directory && parentIno == ROOT_INO) {
            long g = orlovGroup();
            if (g >= 0) {
                long ino = tryAllocateInode(g, directory);
                if (ino > 0) {
                    return ino;
                }
            }
        }
        // find_group_other(): the parent's group and the following ones, first those that also
        // have free blocks for the new inode's data, then any with a free inode
        long n = groupCount;
        for (int pass = 0; pass < 2; pass++) {
            for (long i = 0; i < n; i++) {
                long g = (parentGroup + i) % n;
                GroupDescriptor gd = groups.get(g);
                if (gd.freeInodesCount() == 0 || pass == 0 && gd.freeBlocksCount() == 0) {
                    continue;
                }
                long ino = tryAllocateInode(g, directory);
                if (ino > 0) {
                    return ino;
                }
            }
        }
        throw new Ext4Exception(Errno.ENOSPC, "no free inode: " + n + " groups of " + inodesPerGroup
                + " inodes hold " + freeInodesCount() + " free" + skippedGroups(false));
    }

    /**
     * find_group_orlov() for a directory in the root, simplified and deterministic: among the
     * groups with at least the average free inodes and free blocks, the one with the fewest
     * directories (the lowest number on a tie). -1 when none qualifies.
     */
    private long orlovGroup() {
        long n = groupCount;
        long freeInodes = 0;
        long freeBlocks = 0;
        for (long g = 0; g < n; g++) {
            GroupDescriptor gd = groups.get(g);
            freeInodes += gd.freeInodesCount();
            freeBlocks += gd.freeBlocksCount();
        }
        long avgInodes = freeInodes / n;
        long avgBlocks = freeBlocks / n;
        long best = -1;
        long bestDirs = Long.MAX_VALUE;
        for (long g = 0; g < n; g++) {
            GroupDescriptor gd = groups.get(g);
            long fi = gd.freeInodesCount();
            if (fi == 0 || fi < avgInodes || gd.freeBlocksCount() < avgBlocks) {
                continue;
            }
            long dirs = gd.usedDirsCount();
            if (dirs < bestDirs) {
                best = g;
                bestDirs = dirs;
            }
        }
        return best;
    }

    /** Takes the lowest free inode of group {@code g}; 0 when it has none (or is skipped as damaged). */
    private long tryAllocateInode(long g, boolean directory) throws Ext4Exception {
        synchronized (LockOrder.monitor(LockOrder.Level.GROUP, g, groups.lock(g))) {
            GroupDescriptor gd = groups.get(g);
            if (state(g).inodeBitmapBad != null || gd.freeInodesCount() == 0) {
                return 0;
            }
            ByteBuffer bm = readInodeBitmap(g, gd);
            long reserved = firstIno - 1 - g * inodesPerGroup; // inodes 1..s_first_ino-1 are never handed out
            int from = (int) Math.max(0, Math.min(inodesPerGroup, reserved));
            int idx = Bitmaps.nextClear(bm, from, (int) inodesPerGroup);
            if (idx < 0) {
                return 0;
            }
            // as __ext4_new_inode(): a group that gets inodes gets its block bitmap initialized too
            boolean initBlocks = descCsum && (gd.flags() & GroupDescriptor.FLAG_BLOCK_UNINIT) != 0;
            ByteBuffer blockBm = initBlocks ? readBlockBitmap(g, gd) : null;
            boolean init = inodeUninit(gd);
            if (initBlocks) {
                changeBlockBitmap(g, gd, blockBm, b -> { }, 0);
            }
            long ino = g * inodesPerGroup + idx + 1;
            int csum = writeBitmap(gd.inodeBitmap(), init, bm, b -> {
                if (Bitmaps.isSet(b, idx)) {
                    throw Ext4Exception.corrupted("group " + g + ": inode " + ino + " was taken while its group was locked");
                }
                Bitmaps.set(b, idx, idx + 1);
            }, (int) (inodesPerGroup / 8));
            long used = init ? 0 : inodesPerGroup - gd.itableUnused();
            groups.update(g, cache, d -> {
                d.setFreeInodesCount(d.freeInodesCount() - 1);
                if (directory) {
                    d.setUsedDirsCount(d.usedDirsCount() + 1);
                }
                if (descCsum) {
                    d.setFlags(d.flags() & ~GroupDescriptor.FLAG_INODE_UNINIT);
                    if (idx + 1 > used) {
                        d.setItableUnused(inodesPerGroup - (idx + 1));
                    }
                }
                if (metadataCsum) {
                    d.setInodeBitmapChecksum(csum & 0xFFFFFFFFL);
                }
            });
            state(g).inodeBitmapChecked = true;
            return ino;
        }
    }

    /**
     * Frees inode {@code ino} (ext4_free_inode()); {@code directory} says whether it was a
     * directory, counted in bg_used_dirs_count. A reserved inode, or one already free, is
     * corruption (EUCLEAN).
     */
    public void freeInode(long ino, boolean directory) throws Ext4Exception {
        if (ino < firstIno || ino > inodesCount) {
            throw Ext4Exception.corrupted("freeing inode " + ino + ": reserved or outside the filesystem (" + firstIno + ".."
                    + inodesCount + ")");
        }
        long g = (ino - 1) / inodesPerGroup;
        int idx = (int) ((ino - 1) % inodesPerGroup);
        synchronized (LockOrder.monitor(LockOrder.Level.GROUP, g, groups.lock(g))) {
            GroupDescriptor gd = groups.get(g);
            ByteBuffer bm = readInodeBitmap(g, gd);
            if (!Bitmaps.isSet(bm, idx)) {
                throw Ext4Exception.corrupted("freeing inode " + ino + " (group " + g + "): it is already free in the inode bitmap"
                        + (inodeUninit(gd) ? " (the group is INODE_UNINIT)" : " (block " + gd.inodeBitmap() + ")"));
            }
            if (directory && gd.usedDirsCount() == 0) {
                throw Ext4Exception.corrupted("freeing directory inode " + ino + ": group " + g + " counts no directories");
            }
            int csum = writeBitmap(gd.inodeBitmap(), false, bm, b -> Bitmaps.clear(b, idx, idx + 1), (int) (inodesPerGroup / 8));
            groups.update(g, cache, d -> {
                d.setFreeInodesCount(d.freeInodesCount() + 1);
                if (directory) {
                    d.setUsedDirsCount(d.usedDirsCount() - 1);
                }
                if (metadataCsum) {
                    d.setInodeBitmapChecksum(csum & 0xFFFFFFFFL);
                }
            });
        }
    }

    // ---------------------------------------------------------------- counts

    /** Free blocks of all groups (the sum of bg_free_blocks_count). */
    public long freeBlocksCount() {
        return freeBlocks.get();
    }

    /** Free inodes of all groups (the sum of bg_free_inodes_count). */
    public long freeInodesCount() {
        long sum = 0;
        long n = groupCount;
        for (long g = 0; g < n; g++) {
            synchronized (LockOrder.monitor(LockOrder.Level.GROUP, g, groups.lock(g))) {
                sum += groups.get(g).freeInodesCount();
            }
        }
        return sum;
    }

    /** Sets s_free_blocks_count and s_free_inodes_count to the totals; the caller writes the superblock. */
    public void writeCounts(Superblock sb) {
        sb.setFreeBlocksCount(freeBlocksCount());
        sb.setFreeInodesCount(freeInodesCount());
    }

    // ---------------------------------------------------------------- bitmaps

    /** Package-private for tests: whether the block bitmap marks {@code block} in use. */
    boolean blockInUse(long block) throws Ext4Exception {
        long g = (block - firstDataBlock) / blocksPerGroup;
        synchronized (LockOrder.monitor(LockOrder.Level.GROUP, g, groups.lock(g))) {
            return Bitmaps.isSet(readBlockBitmap(g, groups.get(g)), (int) (block - groupFirstBlock(g)));
        }
    }

    /**
     * Whether the inode bitmap marks {@code ino} in use (the test ext4_orphan_get() makes before it
     * trusts an orphan record); false for a number outside 1..s_inodes_count.
     */
    public boolean inodeInUse(long ino) throws Ext4Exception {
        if (ino < 1 || ino > inodesCount) {
            return false;
        }
        long g = (ino - 1) / inodesPerGroup;
        synchronized (LockOrder.monitor(LockOrder.Level.GROUP, g, groups.lock(g))) {
            return Bitmaps.isSet(readInodeBitmap(g, groups.get(g)), (int) ((ino - 1) % inodesPerGroup));
        }
    }

    private long groupFirstBlock(long g) {
        return firstDataBlock + g * blocksPerGroup;
    }

    /** Blocks in group {@code g}: blocks per group, fewer in the last group. */
    private int groupLength(long g) {
        return (int) Math.min(blocksPerGroup, blocksCount - groupFirstBlock(g));
    }

    private boolean blockUninit(GroupDescriptor gd) {
        return descCsum && (gd.flags() & GroupDescriptor.FLAG_BLOCK_UNINIT) != 0;
    }

    private boolean inodeUninit(GroupDescriptor gd) {
        return descCsum && (gd.flags() & GroupDescriptor.FLAG_INODE_UNINIT) != 0;
    }

    /**
     * The block bitmap of group {@code g} as it stands (ext4_read_block_bitmap()): from the cache,
     * verified the first time, or built for a BLOCK_UNINIT group. Caller holds the group lock.
     */
    private ByteBuffer readBlockBitmap(long g, GroupDescriptor gd) throws Ext4Exception {
        GroupState st = state(g);
        if (st.blockBitmapBad != null) {
            throw again(st.blockBitmapBad);
        }
        ByteBuffer bm;
        String where;
        if (blockUninit(gd)) {
            bm = initBlockBitmap(g);
            where = "built block bitmap of BLOCK_UNINIT group " + g;
        } else {
            bm = cache.get(gd.blockBitmap());
            where = "block bitmap of group " + g + " (block " + gd.blockBitmap() + ")";
            if (!st.blockBitmapChecked && metadataCsum) {
                int computed = Checksums.crc32c(csumSeed, bm, 0, (int) (blocksPerGroup / 8));
                long mask = gd.hasChecksumHi() ? 0xFFFFFFFFL : 0xFFFFL;
                if ((computed & mask) != gd.blockBitmapChecksum()) {
                    throw markBlockBitmapBad(g, Ext4Exception.badChecksum(where, gd.blockBitmapChecksum(), computed & mask));
                }
            }
        }
        if (!st.blockBitmapChecked) {
            long free = Bitmaps.countClear(bm, groupLength(g));
            if (free != gd.freeBlocksCount()) {
                throw markBlockBitmapBad(g, Ext4Exception.corrupted(where + " has " + free
                        + " free blocks, bg_free_blocks_count says " + gd.freeBlocksCount() + "; run e2fsck"));
            }
            st.blockBitmapChecked = true;
        }
        return bm;
    }

    /**
     * ext4_init_block_bitmap(): the group's own superblock backup and descriptor blocks, the bitmaps
     * and inode tables of any group placed here, and the bits past the group's end set.
     */
    private ByteBuffer initBlockBitmap(long g) {
        ByteBuffer bm = ByteBuffer.allocate(blockSize).order(ByteOrder.LITTLE_ENDIAN);
        int len = groupLength(g);
        metadata.mark(bm, groupFirstBlock(g), len);
        Bitmaps.set(bm, len, blockSize * 8);
        return bm;
    }

    /** ext4_read_inode_bitmap(): from the cache, verified the first time, or built for INODE_UNINIT. */
    private ByteBuffer readInodeBitmap(long g, GroupDescriptor gd) throws Ext4Exception {
        GroupState st = state(g);
        if (st.inodeBitmapBad != null) {
            throw again(st.inodeBitmapBad);
        }
        ByteBuffer bm;
        String where;
        if (inodeUninit(gd)) {
            bm = ByteBuffer.allocate(blockSize).order(ByteOrder.LITTLE_ENDIAN);
            Bitmaps.set(bm, (int) inodesPerGroup, blockSize * 8);
            where = "built inode bitmap of INODE_UNINIT group " + g;
        } else {
            bm = cache.get(gd.inodeBitmap());
            where = "inode bitmap of group " + g + " (block " + gd.inodeBitmap() + ")";
            if (!st.inodeBitmapChecked && metadataCsum) {
                int computed = Checksums.crc32c(csumSeed, bm, 0, (int) (inodesPerGroup / 8));
                long mask = gd.hasChecksumHi() ? 0xFFFFFFFFL : 0xFFFFL;
                if ((computed & mask) != gd.inodeBitmapChecksum()) {
                    throw markInodeBitmapBad(g, Ext4Exception.badChecksum(where, gd.inodeBitmapChecksum(), computed & mask));
                }
            }
        }
        if (!st.inodeBitmapChecked) {
            long free = Bitmaps.countClear(bm, (int) inodesPerGroup);
            if (free != gd.freeInodesCount()) {
                throw markInodeBitmapBad(g, Ext4Exception.corrupted(where + " has " + free
                        + " free inodes, bg_free_inodes_count says " + gd.freeInodesCount() + "; run e2fsck"));
            }
            st.inodeBitmapChecked = true;
        }
        return bm;
    }

    /** Changes one bitmap block. */
    @FunctionalInterface
    private interface BitChange {
        void apply(ByteBuffer bitmap) throws Ext4Exception;
    }

    /**
     * Applies {@code change} to bitmap block {@code block} and writes it; when {@code fresh} the
     * block starts as {@code current} (a bitmap built in memory) instead of its on-disk bytes.
     * Returns crc32c over the first {@code csumBytes} bytes of the result.
     */
    private int writeBitmap(long block, boolean fresh, ByteBuffer current, BitChange change, int csumBytes) throws Ext4Exception {
        int[] csum = new int[1];
        BufferCache.Mutator m = b -> {
            if (fresh) {
                b.put(0, current, 0, blockSize);
            }
            change.apply(b);
            csum[0] = metadataCsum ? Checksums.crc32c(csumSeed, b, 0, csumBytes) : 0;
        };
        if (fresh) {
            cache.create(block, m);
        } else {
            cache.update(block, m);
        }
        return csum[0];
    }

    /**
     * Changes group {@code g}'s block bitmap and moves its free count by {@code freeDelta}; the
     * first change of a BLOCK_UNINIT group writes the built bitmap and clears the flag. Caller holds
     * the group lock and has {@code current} from {@link #readBlockBitmap}.
     */
    private void changeBlockBitmap(long g, GroupDescriptor gd, ByteBuffer current, BitChange change, long freeDelta) throws Ext4Exception {
        boolean init = blockUninit(gd);
        int csum = writeBitmap(gd.blockBitmap(), init, current, change, (int) (blocksPerGroup / 8));
        freeBlocks.addAndGet(freeDelta);
        groups.update(g, cache, d -> {
            d.setFreeBlocksCount(d.freeBlocksCount() + freeDelta);
            if (init) {
                d.setFlags(d.flags() & ~GroupDescriptor.FLAG_BLOCK_UNINIT);
            }
            if (metadataCsum) {
                d.setBlockBitmapChecksum(csum & 0xFFFFFFFFL);
            }
        });
        state(g).blockBitmapChecked = true;
    }

    private Ext4Exception markBlockBitmapBad(long g, Ext4Exception e) {
        state(g).blockBitmapBad = e;
        return e;
    }

    private Ext4Exception markInodeBitmapBad(long g, Ext4Exception e) {
        state(g).inodeBitmapBad = e;
        return e;
    }

    /** A fresh exception for a damage found earlier, so each failing operation has its own trace. */
    private static Ext4Exception again(Ext4Exception e) {
        return new Ext4Exception(e.errno(), e.getMessage() + " (group skipped until e2fsck repairs it)");
    }

    /** ", N groups skipped as damaged" for ENOSPC messages; reads the flags without the locks. */
    private String skippedGroups(boolean blockBitmaps) {
        int n = 0;
        for (GroupState st : states) {
            if ((blockBitmaps ? st.blockBitmapBad : st.inodeBitmapBad) != null) {
                n++;
            }
        }
        return n == 0 ? "" : " (" + n + " groups with damaged bitmaps skipped)";
    }
}
