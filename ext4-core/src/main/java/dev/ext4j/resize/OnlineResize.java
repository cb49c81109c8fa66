package dev.ext4j.resize;

import dev.ext4j.Errno;
import dev.ext4j.Ext4Exception;
import dev.ext4j.LockOrder;
import dev.ext4j.alloc.Allocator;
import dev.ext4j.alloc.Bitmaps;
import dev.ext4j.alloc.GroupTable;
import dev.ext4j.alloc.Layout;
import dev.ext4j.format.Checksums;
import dev.ext4j.format.Feature;
import dev.ext4j.format.Inode;
import dev.ext4j.format.Superblock;
import dev.ext4j.io.BufferCache;
import dev.ext4j.io.BlockDevice;
import dev.ext4j.journal.Transactions;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.locks.ReentrantLock;

/**
 * Online grow of a mounted filesystem (the kernel's fs/ext4/resize.c: ext4_resize_fs(),
 * ext4_group_extend_no_check(), ext4_flex_group_add()).
 *
 * <p><b>Steps and transactions.</b> A grow runs as a sequence of steps, each adding whole groups
 * (ending on a flex group boundary where at least one flex group fits, the last step ending at
 * the size wanted), the way ext4_resize_fs() calls ext4_flex_group_add() once per flex group.
 * A step's writes of the new groups, descriptors, resize inode and superblock run in one journal
 * handle whose credits ({@link #stepCredits}) cover every block it dirties, and which is at
 * most the journal's largest transaction ({@link Host#maxCredits}); so a crash leaves either the
 * size before the step or after it, consistent either way once the journal is replayed. The
 * backups of a step follow in handles of their own, each within a transaction (update_backups()
 * extends or restarts its handle likewise); a crash before them leaves stale backups, which
 * e2fsck accepts. The resize starts its handles itself, outside any other handle and inode
 * lock. EXT4_IOC_GROUP_ADD ({@link #addGroup}) is one such step with table locations given.
 *
 * <p>Each step, finished before the next begins (the checks once, before the first):
 * <ol>
 * <li>Checks, with nothing changed when one fails: read-only (EROFS), another resize running
 *     (EBUSY), shrinking (EINVAL), sparse_super2 and bigalloc (EOPNOTSUPP), more than 2^32 blocks
 *     without 64bit or 2^32 inodes (EFBIG), a damaged resize inode (EUCLEAN), no room for the new
 *     groups' tables (ENOSPC), a journal whose transaction cannot hold a step of one group (ENOSPC).
 *     A last partial group of the final step too small for its metadata and 50 blocks is dropped,
 *     as resize2fs does; the size reached is returned. A step that fails leaves the steps before
 *     it done: the size reached so far is then in the superblock.
 * <li>The plan ({@link Plan}): the superblock of the grown filesystem, where each new group's
 *     bitmaps and inode table go (ext4_alloc_group_tables(): with flex_bg packed at the start of
 *     each new flex group, without it in the group after its superblock backup and GDT), and
 *     which new descriptor blocks come from reserved GDT blocks (add_new_gdb()), from meta_bg
 *     (add_new_gdb_meta_bg()), or need the conversion to meta_bg first (ext4_convert_meta_bg()).
 * <li>The image grows (ENOSPC when it cannot; nothing else has changed then).
 * <li>The new groups are written where nobody looks yet: bitmaps, zeroed inode tables,
 *     descriptors, the resize inode's lists.
 * <li>The superblock takes the new sizes, the allocator extends the old last group and publishes
 *     the group count (see {@link Allocator#publishGrowth}); from then on the space is used.
 * <li>The backups: superblock copies (with s_block_group_nr) and GDT copies in every backup
 *     group, old and new, in as many handles as the journal needs.
 * </ol>
 *
 * <p>Locking: {@link #running} makes resizes one at a time (tryLock: EBUSY). Nothing else is
 * held while the new groups are written: no other thread reads a group at or past the published
 * count, or a reserved GDT block. The superblock's monitor is held while its fields change. The
 * allocator takes one group lock (the old last group's) to extend that group and swap its
 * geometry, and publishes the group count last (a volatile write), so an allocating thread sees
 * either the old groups or all of the new ones complete. Lock order: running, then a journal
 * handle (started with no other handle or inode lock held, so its start may commit), then the
 * superblock monitor, then one group lock at a time (the free counts are summed under the
 * superblock's monitor), then the block cache's per-block locks.
 */
public final class OnlineResize {
    private static final System.Logger LOG = System.getLogger("ext4j");
    private static final long MAX_U32 = 0xFFFFFFFFL;

    /** What a resize needs from the mounted filesystem. */
    public interface Host {
        Inode readInode(long ino) throws Ext4Exception;

        /** Stamps and writes an inode. */
        void writeInode(long ino, Inode changed) throws Ext4Exception;

        /** Stamps and writes the primary superblock. */
        void writeSuperblock() throws Ext4Exception;

        /** The superblock's counts changed: refresh what was derived from them. */
        void geometryChanged();

        /**
         * Starts a journal handle for {@code credits} blocks (at most {@link #maxCredits}); the
         * resize runs no other handle and holds no inode lock when it calls this.
         */
        Transactions.Handle startHandle(int credits);

        /** The most blocks one handle may dirty: the journal's largest transaction, unbounded without one. */
        int maxCredits();
    }

    /**
     * EXT4_IOC_GROUP_ADD's argument (struct ext4_new_group_input): group number, the block numbers
     * of its bitmaps and inode table, its length in blocks, and the blocks it would reserve.
     */
    public record NewGroup(long group, long blockBitmap, long inodeBitmap, long inodeTable, long blocksCount, int reservedBlocks) {
    }

    private final BlockDevice device;
    private final Superblock sb;
    private final BufferCache cache;
    private final GroupTable groups;
    private final Allocator allocator;
    private final Host host;
    private final ReentrantLock running = new ReentrantLock();

    public OnlineResize(BlockDevice device, Superblock sb, BufferCache cache, GroupTable groups, Allocator allocator, Host host) {
        this.device = device;
        this.sb = sb;
        this.cache = cache;
        this.groups = groups;
        this.allocator = allocator;
        this.host = host;
    }

    /**
     * Grows the filesystem to {@code newBlocksCount} blocks, or a little less when the last group
     * would be too small; returns the block count reached.
     */
    public long grow(long newBlocksCount) throws Ext4Exception {
        return alone(() -> growLocked(newBlocksCount));
    }

    /** A resize: it returns the block count reached. */
    @FunctionalInterface
    private interface Resize {
        long run() throws Ext4Exception;
    }

    /** Runs {@code r} as the only resize; EBUSY while another runs. */
    private long alone(Resize r) throws Ext4Exception {
        if (LockOrder.ENABLED) {
            LockOrder.acquire(LockOrder.Level.RESIZE, -1);
        }
        if (!running.tryLock()) {
            if (LockOrder.ENABLED) {
                LockOrder.release(LockOrder.Level.RESIZE, -1);
            }
            throw new Ext4Exception(Errno.EBUSY, "another resize is in progress");
        }
        try {
            return r.run();
        } finally {
            running.unlock();
            if (LockOrder.ENABLED) {
                LockOrder.release(LockOrder.Level.RESIZE, -1);
            }
        }
    }

    private long growLocked(long wanted) throws Ext4Exception {
        Superblock first = snapshot();
        long oldBlocks = first.blocksCount();
        if (wanted < oldBlocks) {
            throw new Ext4Exception(Errno.EINVAL, "cannot shrink from " + oldBlocks + " to " + wanted + " blocks: online resize only grows");
        }
        if (wanted == oldBlocks) {
            return oldBlocks;
        }
        checkFeatures(first);
        if (!first.has(Feature.BIT64) && wanted > MAX_U32) {
            throw new Ext4Exception(Errno.EFBIG, wanted + " blocks need the 64bit feature (at most " + MAX_U32 + " without it)");
        }
        checkCapacity(wanted, first.blockSize());
        long reached = oldBlocks;
        int steps = 0;
        while (true) {
            Superblock old = snapshot();
            long stepTo = stepTarget(old, wanted);
            boolean last = stepTo == wanted;
            Plan plan = Plan.make(old, stepTo, this::resizeInode);
            if (plan.target.blocksCount() == old.blocksCount()) {
                if (steps == 0) {
                    LOG.log(System.Logger.Level.INFO, "resize to " + wanted + " blocks: the last group would be too small, size stays " + oldBlocks);
                }
                break;
            }
            apply(old, plan);
            reached = plan.target.blocksCount();
            steps++;
            if (last) {
                break;
            }
        }
        LOG.log(System.Logger.Level.INFO, "resized from " + oldBlocks + " to " + reached + " blocks in " + steps + " step(s)"
                + (first.has(Feature.META_BG) || !snapshot().has(Feature.META_BG) ? "" : ", converted to meta_bg"));
        return reached;
    }

    /**
     * EXT4_IOC_GROUP_ADD (ext4_group_add()): adds group {@code in.group()}, which must be the next
     * one, after a full last group, with its bitmaps and inode table at the given blocks inside
     * it, clear of its superblock backup and GDT blocks and of each other (verify_group_input();
     * EINVAL naming the fault otherwise; EPERM when a new descriptor block would be needed and no
     * reserved GDT block is left, as the kernel refuses). The group is added as one step of
     * {@link #grow}: its block bitmap marks its metadata, its inode bitmap and table are written
     * afresh, in one journal handle, then the backups. Unlike the kernel, an image shorter than the
     * new group is grown (an image file, not a block device). {@code in.reservedBlocks()} is only
     * checked: the reserved share of the grown filesystem stays the percentage it was, as in the
     * kernel's ext4_update_super(). Returns the new block count.
     */
    public long addGroup(NewGroup in) throws Ext4Exception {
        return alone(() -> addGroupLocked(in));
    }

    private long addGroupLocked(NewGroup in) throws Ext4Exception {
        Superblock old = snapshot();
        checkFeatures(old);
        long groups = old.groupCount();
        long g = in.group();
        long bpg = old.blocksPerGroup();
        long start = old.blocksCount();
        if (g != groups) {
            throw new Ext4Exception(Errno.EINVAL, "cannot add group " + g + ": the filesystem has " + groups + " groups, the next is " + groups);
        }
        if ((start - old.firstDataBlock()) % bpg != 0) {
            throw new Ext4Exception(Errno.EINVAL, "cannot add group " + g + ": the last group " + (groups - 1) + " is not full ("
                    + (start - groupFirstBlock(old, groups - 1)) + " of " + bpg + " blocks); extend it first");
        }
        if (in.blocksCount() < 1 || in.blocksCount() > bpg) {
            throw new Ext4Exception(Errno.EINVAL, "group " + g + ": blocks_count " + in.blocksCount() + " is not in 1.." + bpg);
        }
        long end = start + in.blocksCount();
        if (!old.has(Feature.BIT64) && end > MAX_U32) {
            throw new Ext4Exception(Errno.EFBIG, end + " blocks need the 64bit feature (at most " + MAX_U32 + " without it)");
        }
        long dpb = old.blockSize() / old.descSize();
        boolean newDescBlock = g % dpb == 0;
        if (newDescBlock && !old.has(Feature.SPARSE_SUPER)) {
            throw new Ext4Exception(Errno.EPERM, "cannot add group " + g + ": it needs a new descriptor block, which a filesystem"
                    + " without sparse_super cannot get online");
        }
        int reservedGdb = Layout.hasSuper(old, g) ? old.reservedGdtBlocks() : 0;
        if ((reservedGdb > 0 || newDescBlock) && (!old.has(Feature.RESIZE_INODE) || old.reservedGdtBlocks() == 0)) {
            throw new Ext4Exception(Errno.EPERM, "cannot add group " + g + ": no reserved GDT blocks are left (use EXT4_IOC_RESIZE_FS)");
        }
        long overhead = Layout.baseMetaBlocks(old, g);
        long itb = Layout.inodeTableBlocks(old);
        long metaEnd = start + overhead;
        long bb = in.blockBitmap();
        long ib = in.inodeBitmap();
        long it = in.inodeTable();
        long itEnd = it + itb;
        String where = "group " + g + " (blocks " + start + ".." + (end - 1) + ")";
        String fault = null;
        if (in.reservedBlocks() > in.blocksCount() / 5) {
            fault = "reserved_blocks " + in.reservedBlocks() + " is more than a fifth of its " + in.blocksCount() + " blocks";
        } else if (in.blocksCount() - 2 - overhead - itb < 0) {
            fault = "blocks_count " + in.blocksCount() + " is less than its " + (overhead + 2 + itb) + " blocks of metadata";
        } else if (bb < start || bb >= end) {
            fault = "block bitmap " + bb + " is outside the group";
        } else if (ib < start || ib >= end) {
            fault = "inode bitmap " + ib + " is outside the group";
        } else if (it < start || itEnd > end) {
            fault = "inode table " + it + ".." + (itEnd - 1) + " is not inside the group";
        } else if (bb == ib) {
            fault = "block bitmap and inode bitmap are both at " + bb;
        } else if (bb >= it && bb < itEnd) {
            fault = "block bitmap " + bb + " is inside the inode table " + it + ".." + (itEnd - 1);
        } else if (ib >= it && ib < itEnd) {
            fault = "inode bitmap " + ib + " is inside the inode table " + it + ".." + (itEnd - 1);
        } else if (bb < metaEnd) {
            fault = "block bitmap " + bb + " is in the superblock backup and GDT blocks " + start + ".." + (metaEnd - 1);
        } else if (ib < metaEnd) {
            fault = "inode bitmap " + ib + " is in the superblock backup and GDT blocks " + start + ".." + (metaEnd - 1);
        } else if (it < metaEnd) {
            fault = "inode table " + it + ".." + (itEnd - 1) + " overlaps the superblock backup and GDT blocks " + start + ".." + (metaEnd - 1);
        }
        if (fault != null) {
            throw new Ext4Exception(Errno.EINVAL, "cannot add " + where + ": " + fault);
        }
        if (stepCredits(old, 1) > host.maxCredits()) {
            throw new Ext4Exception(Errno.ENOSPC, "the journal is too small for an online resize: adding one group dirties up to "
                    + stepCredits(old, 1) + " blocks, one transaction holds " + host.maxCredits());
        }
        Plan plan = Plan.withTables(old, end, this::resizeInode, bb, ib, it);
        if (plan.convertsToMetaBg) {
            throw new IllegalStateException("group " + g + " would convert to meta_bg after the checks");
        }
        apply(old, plan);
        LOG.log(System.Logger.Level.INFO, "added " + where + ": " + start + " -> " + end + " blocks");
        return end;
    }

    /** The refusals every grow and group add share; nothing has changed when one fails. */
    private static void checkFeatures(Superblock old) throws Ext4Exception {
        for (Feature f : new Feature[] {Feature.SPARSE_SUPER2, Feature.BIGALLOC}) {
            if (old.has(f)) {
                throw new Ext4Exception(Errno.EOPNOTSUPP, "online resize of a filesystem with " + f.kernelName() + " is not supported");
            }
        }
        if (old.has(Feature.RESIZE_INODE) && old.has(Feature.META_BG)) {
            throw Ext4Exception.corrupted("resize_inode and meta_bg are both set; run e2fsck");
        }
        if (!old.has(Feature.RESIZE_INODE) && old.reservedGdtBlocks() != 0) {
            throw Ext4Exception.corrupted(old.reservedGdtBlocks() + " reserved GDT blocks without resize_inode; run e2fsck");
        }
    }

    /**
     * Blocks a step dirties besides 2 bitmaps per new group and its descriptor blocks: the
     * superblock, the old last group's bitmap and descriptor (extended), the resize inode's inode
     * block and double-indirect block, the bitmap and descriptor of the double-indirect block's
     * group (freed by a conversion to meta_bg), and a margin of two.
     */
    private static final int STEP_FIXED_CREDITS = 10;

    /** The blocks a step adding {@code groups} new groups to {@code old} dirties in its handle, at most. */
    static long stepCredits(Superblock old, long groups) {
        long dpb = old.blockSize() / old.descSize();
        long reservedLists = old.has(Feature.RESIZE_INODE) ? old.reservedGdtBlocks() : 0;
        return 2 * groups + (groups + dpb - 1) / dpb + 1 + reservedLists + STEP_FIXED_CREDITS;
    }

    /**
     * Where the next step ends: {@code wanted} when the groups up to it fit in one handle, else the
     * end of as many whole groups as fit (ending on a flex group boundary when at least one flex
     * group fits), the way ext4_resize_fs() adds a flex group per handle.
     */
    private long stepTarget(Superblock old, long wanted) throws Ext4Exception {
        int max = host.maxCredits();
        long groups = old.groupCount();
        long bpg = old.blocksPerGroup();
        long wantedGroups = (wanted - old.firstDataBlock() + bpg - 1) / bpg;
        if (stepCredits(old, wantedGroups - groups) <= max) {
            return wanted;
        }
        long n = 0;
        for (long step = Long.highestOneBit(Math.max(1, wantedGroups - groups)); step > 0; step >>= 1) {
            if (stepCredits(old, n + step) <= max) {
                n += step;
            }
        }
        if (n == 0) {
            throw new Ext4Exception(Errno.ENOSPC, "the journal is too small for an online resize: adding one group dirties up to "
                    + stepCredits(old, 1) + " blocks, one transaction holds " + max);
        }
        int log = old.logGroupsPerFlex();
        long flex = old.has(Feature.FLEX_BG) && log > 0 && log < 31 ? 1L << log : 1;
        long end = groups + n;
        if (n >= flex) {
            end &= ~(flex - 1);
        }
        return Math.min(wanted, old.firstDataBlock() + end * bpg);
    }

    /**
     * One step: grows the image, zeroes the new inode tables, then in one handle (whose credits
     * cover every block it dirties) writes the new groups, descriptors, resize inode and
     * superblock and publishes the groups; then the backups in handles of their own. The
     * filesystem is consistent at the step's size once its handle's transaction commits, whatever
     * happens later.
     */
    private void apply(Superblock old, Plan plan) throws Ext4Exception {
        Superblock target = plan.target;
        long newBlocks = target.blocksCount();
        long oldDeviceBytes = growDevice(newBlocks * old.blockSize());
        cache.growTo(newBlocks);
        for (int i = 0; i < plan.newGroupsPlaced(); i++) {
            zero(plan.it[i], Layout.inodeTableBlocks(target), oldDeviceBytes);
        }
        long credits = stepCredits(old, plan.newGroups - plan.oldGroups);
        try (Transactions.Handle h = host.startHandle((int) Math.min(Integer.MAX_VALUE, credits))) {
            writeGroups(plan);
            writeDescriptors(plan);
            if (plan.resizeInode != null) {
                plan.resizeInode.writeBlocks((block, contents) -> cache.create(block, b -> b.put(0, contents, 0, contents.capacity())));
                host.writeInode(ResizeInode.INO, plan.resizeInode.changedInode(plan.convertsToMetaBg, old.has(Feature.HUGE_FILE)));
            }
            install(old, target);
            groups.publish(plan.newGroups);
            allocator.publishGrowth(target);
            if (plan.convertsToMetaBg && plan.resizeInode != null && plan.resizeInode.dindBlock() != 0) {
                allocator.freeBlocks(plan.resizeInode.dindBlock(), 1);
            }
            synchronized (LockOrder.monitor(LockOrder.Level.SUPERBLOCK, -1, sb)) {
                allocator.writeCounts(sb);
                host.writeSuperblock();
            }
        }
        host.geometryChanged();
        writeBackups(plan);
        LOG.log(System.Logger.Level.DEBUG, "resize step: " + old.blocksCount() + " -> " + newBlocks + " blocks, groups "
                + plan.oldGroups + ".." + (plan.newGroups - 1) + (plan.convertsToMetaBg ? ", converted to meta_bg" : ""));
    }

    private Superblock snapshot() {
        synchronized (LockOrder.monitor(LockOrder.Level.SUPERBLOCK, -1, sb)) {
            return new Superblock(sb.raw());
        }
    }

    private ResizeInode resizeInode(Superblock old, List<Long> backupGroups) throws Ext4Exception {
        Inode inode = host.readInode(ResizeInode.INO);
        return ResizeInode.load(old, inode, Layout.gdtBlocks(old), backupGroups, cache::get);
    }

    /**
     * ENOSPC, logged, when the device can never hold {@code blocks} blocks: a partition (a
     * {@link dev.ext4j.io.WindowDevice}) cannot grow past its end, so the resize stops before any step.
     */
    private void checkCapacity(long blocks, int blockSize) throws Ext4Exception {
        long capacity;
        try {
            capacity = device.capacity();
        } catch (IOException e) {
            throw new Ext4Exception(Errno.EIO, "cannot read the device's capacity: " + e.getMessage(), e);
        }
        if (blocks > capacity / blockSize) {
            String msg = "cannot resize to " + blocks + " blocks of " + blockSize + " bytes: " + device + " holds at most "
                    + capacity / blockSize + " blocks (" + capacity + " bytes)";
            LOG.log(System.Logger.Level.WARNING, msg);
            throw new Ext4Exception(Errno.ENOSPC, msg);
        }
    }

    /** Grows the image to {@code bytes} if it is smaller; returns its size before. */
    private long growDevice(long bytes) throws Ext4Exception {
        long size;
        try {
            size = device.size();
            if (size < bytes) {
                device.grow(bytes);
            }
        } catch (IOException e) {
            throw new Ext4Exception(Errno.ENOSPC, "the image cannot grow to " + bytes + " bytes: " + e.getMessage(), e);
        }
        return size;
    }

    /**
     * setup_new_flex_group_blocks(): each new group's block bitmap (its metadata, and the bits past
     * a short last group, set) and inode bitmap (the bits past the inodes set); the inode tables
     * were zeroed before the step's handle started (already zero where the image grew sparsely).
     */
    private void writeGroups(Plan plan) throws Ext4Exception {
        Superblock t = plan.target;
        int bs = t.blockSize();
        boolean csum = t.has(Feature.METADATA_CSUM);
        int seed = csum ? t.checksumSeed() : 0;
        long ipg = t.inodesPerGroup();
        boolean descCsum = csum || t.has(Feature.GDT_CSUM);
        for (int n = 0; n < plan.newGroupsPlaced(); n++) {
            final int i = n;
            long g = plan.oldGroups + i;
            ByteBuffer bbm = plan.blockBitmap(g);
            ByteBuffer ibm = ByteBuffer.allocate(bs).order(ByteOrder.LITTLE_ENDIAN);
            Bitmaps.set(ibm, (int) ipg, bs * 8);
            cache.create(plan.bb[i], b -> b.put(0, bbm, 0, bs));
            cache.create(plan.ib[i], b -> b.put(0, ibm, 0, bs));
            long free = Bitmaps.countClear(bbm, (int) t.blocksPerGroup());
            int bbCsum = csum ? Checksums.crc32c(seed, bbm, 0, (int) (t.blocksPerGroup() / 8)) : 0;
            int ibCsum = csum ? Checksums.crc32c(seed, ibm, 0, (int) (ipg / 8)) : 0;
            int flags = plan.flags[i];
            plan.descriptors.add(gd -> {
                gd.setBlockBitmap(plan.bb[i]);
                gd.setInodeBitmap(plan.ib[i]);
                gd.setInodeTable(plan.it[i]);
                gd.setFreeBlocksCount(free);
                gd.setFreeInodesCount(ipg);
                gd.setItableUnused(descCsum ? ipg : 0);
                gd.setFlags(flags);
                if (csum) {
                    long mask = gd.hasChecksumHi() ? 0xFFFFFFFFL : 0xFFFFL;
                    gd.setBlockBitmapChecksum(bbCsum & mask);
                    gd.setInodeBitmapChecksum(ibCsum & mask);
                }
            });
        }
    }

    /** Writes zeros over {@code [start, start + count)} where the image held bytes before it grew. */
    private void zero(long start, long count, long oldDeviceBytes) throws Ext4Exception {
        int bs = sb.blockSize();
        long from = start * bs;
        long to = Math.min((start + count) * bs, oldDeviceBytes);
        ByteBuffer zeros = ByteBuffer.allocate(1 << 20);
        for (long off = from; off < to; off += zeros.capacity()) {
            cache.writeRaw(off, zeros.clear().limit((int) Math.min(zeros.capacity(), to - off)));
        }
    }

    private void writeDescriptors(Plan plan) throws Ext4Exception {
        groups.grow(plan.newGroups);
        for (int i = 0; i < plan.descriptors.size(); i++) {
            groups.initNew(plan.oldGroups + i, plan.descriptors.get(i));
        }
        groups.writeNew(plan.oldGroups, plan.newGroups, cache, plan.target);
    }

    /** ext4_update_super(): the new sizes, features and GDT fields go into the live superblock. */
    private void install(Superblock old, Superblock target) throws Ext4Exception {
        synchronized (LockOrder.monitor(LockOrder.Level.SUPERBLOCK, -1, sb)) {
            // s_first_meta_bg before META_BG, so a descriptor location computed meanwhile is right
            sb.setFirstMetaBg(target.firstMetaBg());
            sb.setFeatureIncompat(target.featureIncompat());
            sb.setFeatureCompat(target.featureCompat());
            sb.setReservedGdtBlocks(target.reservedGdtBlocks());
            sb.setReservedBlocksCount(target.reservedBlocksCount());
            sb.setInodesCount(target.inodesCount());
            sb.setFreeInodesCount(sb.freeInodesCount() + target.inodesCount() - old.inodesCount());
            sb.setBlocksCount(target.blocksCount());
            host.writeSuperblock();
        }
        host.geometryChanged();
    }

    /**
     * update_backups(): a copy of the superblock (s_block_group_nr set, needs_recovery cleared as
     * e2fsprogs leaves backups, checksum restamped) and of the descriptor blocks in every backup
     * group; meta_bg descriptor blocks in the second and last group of their meta group. Written
     * in as many handles as it takes, each within the journal's largest transaction (as
     * update_backups() extends or restarts its handle).
     */
    private void writeBackups(Plan plan) throws Ext4Exception {
        Superblock copy = snapshot();
        copy.setFeatureIncompat(copy.featureIncompat() & ~Feature.RECOVER.mask());
        Superblock t = plan.target;
        long dpb = t.blockSize() / t.descSize();
        long gdb = (plan.newGroups + dpb - 1) / dpb;
        long plainGdb = t.has(Feature.META_BG) ? t.firstMetaBg() : gdb;
        // {home block, what goes there: descriptor block index >= 0, or -1 - group for a superblock copy}
        List<long[]> writes = new ArrayList<>();
        for (long g : backupGroupsBelow(t, plan.newGroups)) {
            long first = groupFirstBlock(t, g);
            writes.add(new long[] {first, -1 - g});
            // the old-style GDT copies live only in groups below the first meta group
            if (!t.has(Feature.META_BG) || g < t.firstMetaBg() * dpb) {
                for (long i = 0; i < plainGdb; i++) {
                    writes.add(new long[] {first + 1 + i, i});
                }
            }
        }
        for (long i = plainGdb; i < gdb; i++) {
            for (long g : new long[] {i * dpb + 1, i * dpb + dpb - 1}) {
                if (g < plan.newGroups) {
                    writes.add(new long[] {groupFirstBlock(t, g) + (Layout.hasSuper(t, g) ? 1 : 0), i});
                }
            }
        }
        int chunk = Math.max(1, host.maxCredits());
        for (int from = 0; from < writes.size(); from += chunk) {
            int to = (int) Math.min(writes.size(), (long) from + chunk);
            try (Transactions.Handle h = host.startHandle(to - from)) {
                for (long[] w : writes.subList(from, to)) {
                    if (w[1] >= 0) {
                        writeBlockCopy((int) w[1], w[0]);
                    } else {
                        copy.setBlockGroupNr((int) (-1 - w[1]));
                        copy.updateChecksum();
                        ByteBuffer raw = copy.raw();
                        cache.create(w[0], b -> b.put(0, raw, 0, Superblock.SIZE));
                    }
                }
            }
        }
    }

    private void writeBlockCopy(int i, long block) throws Ext4Exception {
        ByteBuffer contents = groups.blockCopy(i);
        cache.create(block, b -> b.put(0, contents, 0, contents.capacity()));
    }

    static long groupFirstBlock(Superblock sb, long g) {
        return sb.firstDataBlock() + g * sb.blocksPerGroup();
    }

    /** The resize inode of {@code old}, loaded for a plan that uses reserved GDT blocks. */
    @FunctionalInterface
    interface ResizeInodeLoader {
        ResizeInode load(Superblock old, List<Long> backupGroups) throws Ext4Exception;
    }

    /** The groups from 1 up to {@code end} (excluded) that hold a superblock backup. */
    static List<Long> backupGroupsBelow(Superblock sb, long end) {
        List<Long> out = new ArrayList<>();
        for (long g = 1; g < end; g = nextBackup(sb, g)) {
            out.add(g);
        }
        return out;
    }

    private static long nextBackup(Superblock sb, long g) {
        long n = g + 1;
        while (!Layout.hasSuper(sb, n)) {
            n++;
        }
        return n;
    }
}
