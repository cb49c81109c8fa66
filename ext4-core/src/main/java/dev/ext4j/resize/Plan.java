package dev.ext4j.resize;

import dev.ext4j.Errno;
import dev.ext4j.Ext4Exception;
import dev.ext4j.alloc.Bitmaps;
import dev.ext4j.alloc.GroupTable;
import dev.ext4j.alloc.Layout;
import dev.ext4j.format.Feature;
import dev.ext4j.format.GroupDescriptor;
import dev.ext4j.format.Superblock;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.List;

/**
 * What an online resize will do, worked out before anything changes: the superblock of the
 * grown filesystem ({@link #target}), where each new group's bitmaps and inode table go, its
 * flags, and the resize inode changes. Placement follows ext4_alloc_group_tables(): new groups
 * are taken a flex group at a time (one group without flex_bg); a batch's block bitmaps, then its
 * inode bitmaps, then its inode tables are laid end to end from the first free block of its first
 * group, running on into following groups that hold no superblock backup, and moving to the next
 * such run when one is full.
 */
final class Plan {
    /** resize2fs keeps a last partial group only when it has this many blocks past its metadata. */
    private static final long MIN_LAST_GROUP_SPARE = 50;
    final Superblock target;
    final long oldGroups;
    final long newGroups;
    /** Per new group {@code oldGroups + i}: block bitmap, inode bitmap, inode table, bg_flags. */
    final long[] bb;
    final long[] ib;
    final long[] it;
    final int[] flags;
    /** The descriptors of the new groups, filled in as their blocks are written. */
    final List<GroupTable.DescriptorMutator> descriptors = new ArrayList<>();
    /** Null without resize_inode or without new groups. */
    ResizeInode resizeInode;
    boolean convertsToMetaBg;
    private final int flexSize;
    private final long itb;

    private Plan(Superblock target, long oldGroups) {
        this.target = target;
        this.oldGroups = oldGroups;
        this.newGroups = target.groupCount();
        int n = (int) (newGroups - oldGroups);
        this.bb = new long[n];
        this.ib = new long[n];
        this.it = new long[n];
        this.flags = new int[n];
        int log = target.logGroupsPerFlex();
        this.flexSize = target.has(Feature.FLEX_BG) && log > 0 && log < 31 ? 1 << log : 1;
        this.itb = Layout.inodeTableBlocks(target);
    }

    /**
     * The plan for growing {@code old} to {@code wanted} blocks; a last new group shorter than its
     * metadata plus 50 blocks is left out, as resize2fs does.
     */
    static Plan make(Superblock old, long wanted, OnlineResize.ResizeInodeLoader loader) throws Ext4Exception {
        Plan p = layout(old, wanted, loader);
        long rem = (wanted - old.firstDataBlock()) % old.blocksPerGroup();
        if (p.newGroups > p.oldGroups && rem != 0
                && rem < Layout.baseMetaBlocks(p.target, p.newGroups - 1) + 2 + p.itb + MIN_LAST_GROUP_SPARE) {
            p = layout(old, wanted - rem, loader);
        }
        p.placeTables();
        return p;
    }

    /**
     * The plan for adding one group, {@code old}'s next, ending at block {@code blocks}, with its
     * bitmaps and inode table where the caller says (EXT4_IOC_GROUP_ADD: resize2fs chose them and
     * the caller checked them, see {@link OnlineResize#addGroup}).
     */
    static Plan withTables(Superblock old, long blocks, OnlineResize.ResizeInodeLoader loader, long blockBitmap, long inodeBitmap,
            long inodeTable) throws Ext4Exception {
        Plan p = layout(old, blocks, loader);
        if (p.newGroups != p.oldGroups + 1) {
            throw new IllegalArgumentException("a plan with given tables adds one group, not " + (p.newGroups - p.oldGroups));
        }
        p.bb[0] = blockBitmap;
        p.ib[0] = inodeBitmap;
        p.it[0] = inodeTable;
        p.flags[0] = p.initialFlags() & ~GroupDescriptor.FLAG_BLOCK_UNINIT; // its block bitmap is written
        return p;
    }

    /** The grown superblock and the descriptor blocks; the tables are placed later. */
    private static Plan layout(Superblock old, long blocks, OnlineResize.ResizeInodeLoader loader) throws Ext4Exception {
        Superblock t = new Superblock(old.raw());
        t.setBlocksCount(blocks);
        long groups = t.groupCount();
        if (groups * old.inodesPerGroup() > 0xFFFFFFFFL) {
            throw new Ext4Exception(Errno.EFBIG, groups + " groups of " + old.inodesPerGroup() + " inodes exceed 2^32 - 1 inodes");
        }
        t.setInodesCount(groups * old.inodesPerGroup());
        // the same share of the blocks reserved for root (resize2fs keeps the percentage)
        t.setReservedBlocksCount((long) (old.reservedBlocksCount() * (double) blocks / old.blocksCount()));
        Plan p = new Plan(t, old.groupCount());
        p.planDescriptorBlocks(old, loader);
        return p;
    }

    /**
     * ext4_add_new_descs(): each new group that starts a descriptor block gets one, from a reserved
     * GDT block while any is left, else from meta_bg (converting to it first); each new backup group
     * keeps copies of the remaining reserved blocks.
     */
    private void planDescriptorBlocks(Superblock old, OnlineResize.ResizeInodeLoader loader) throws Ext4Exception {
        if (newGroups == oldGroups) {
            return;
        }
        Superblock t = target;
        long dpb = t.blockSize() / t.descSize();
        long gdb = Layout.gdtBlocks(old);
        List<Long> oldBackups = OnlineResize.backupGroupsBelow(old, oldGroups);
        if (old.has(Feature.RESIZE_INODE)) {
            resizeInode = loader.load(old, oldBackups);
        }
        int below = oldBackups.size();
        for (long g = oldGroups; g < newGroups; g++) {
            if (g % dpb == 0) {
                if (!t.has(Feature.META_BG)) {
                    if (t.has(Feature.RESIZE_INODE) && t.reservedGdtBlocks() > 0) {
                        resizeInode.take(gdb, below);
                        t.setReservedGdtBlocks(t.reservedGdtBlocks() - 1);
                    } else {
                        t.setFirstMetaBg(gdb);
                        t.setFeatureIncompat(t.featureIncompat() | Feature.META_BG.mask());
                        t.setFeatureCompat(t.featureCompat() & ~Feature.RESIZE_INODE.mask());
                        convertsToMetaBg = true;
                    }
                }
                gdb++;
            }
            if (Layout.hasSuper(t, g)) {
                if (t.has(Feature.RESIZE_INODE) && t.reservedGdtBlocks() > 0) {
                    resizeInode.reserveBackups(g, below, gdb, t.reservedGdtBlocks());
                }
                below++;
            }
        }
    }

    /** bg_flags of a new group before its tables are placed: nothing in use yet, the inode table zeroed. */
    private int initialFlags() {
        boolean descCsum = target.has(Feature.METADATA_CSUM) || target.has(Feature.GDT_CSUM);
        return descCsum
                ? GroupDescriptor.FLAG_BLOCK_UNINIT | GroupDescriptor.FLAG_INODE_UNINIT | GroupDescriptor.FLAG_INODE_ZEROED
                : GroupDescriptor.FLAG_INODE_ZEROED;
    }

    private void placeTables() throws Ext4Exception {
        java.util.Arrays.fill(flags, initialFlags());
        for (long start = oldGroups; start < newGroups; ) {
            long end = Math.min(newGroups - 1, start | (flexSize - 1));
            new Placer(start, end).place();
            start = end + 1;
        }
        if (flags.length > 0) {
            // the block bitmap of the last group is always written (ext4_setup_next_flex_gd())
            flags[flags.length - 1] &= ~GroupDescriptor.FLAG_BLOCK_UNINIT;
        }
    }

    /** ext4_alloc_group_tables() for the new groups {@code [first, last]}. */
    private final class Placer {
        private final long first;
        private final long last;
        private long src;
        private long cur;
        private long lim;

        Placer(long first, long last) {
            this.first = first;
            this.last = last;
            this.src = first;
        }

        void place() throws Ext4Exception {
            for (long g = first; g <= last; g++) {
                bb[index(g)] = take(1);
            }
            for (long g = first; g <= last; g++) {
                ib[index(g)] = take(1);
            }
            for (long g = first; g <= last; g++) {
                it[index(g)] = take(itb);
            }
        }

        private long take(long n) throws Ext4Exception {
            while (cur + n > lim) {
                nextRun();
            }
            long at = cur;
            cur += n;
            if (flexSize > 1) {
                // a group holding tables needs its block bitmap written
                for (long g = groupOf(at); g <= groupOf(at + n - 1); g++) {
                    flags[index(g)] &= ~GroupDescriptor.FLAG_BLOCK_UNINIT;
                }
            }
            return at;
        }

        /** The next run of blocks: after the metadata of group src, on through groups without any. */
        private void nextRun() throws Ext4Exception {
            if (src > last) {
                throw new Ext4Exception(Errno.ENOSPC, "groups " + first + ".." + last + " have no room for their bitmaps and "
                        + (last - first + 1) + " inode tables of " + itb + " blocks");
            }
            long start = OnlineResize.groupFirstBlock(target, src);
            cur = start + Layout.baseMetaBlocks(target, src);
            lim = start + groupLength(src);
            for (src++; src <= last && Layout.baseMetaBlocks(target, src) == 0; src++) {
                lim += groupLength(src);
            }
        }
    }

    private int index(long g) {
        return (int) (g - oldGroups);
    }

    private long groupOf(long block) {
        return (block - target.firstDataBlock()) / target.blocksPerGroup();
    }

    int newGroupsPlaced() {
        return bb.length;
    }

    int groupLength(long g) {
        return (int) Math.min(target.blocksPerGroup(), target.blocksCount() - OnlineResize.groupFirstBlock(target, g));
    }

    /**
     * The block bitmap of new group {@code g}: its superblock backup and GDT blocks, every table
     * placed in it (only tables of its own flex batch can be), and the bits past its end.
     */
    ByteBuffer blockBitmap(long g) {
        int bs = target.blockSize();
        ByteBuffer bm = ByteBuffer.allocate(bs).order(ByteOrder.LITTLE_ENDIAN);
        long start = OnlineResize.groupFirstBlock(target, g);
        int len = groupLength(g);
        Bitmaps.set(bm, 0, (int) Layout.baseMetaBlocks(target, g));
        long from = Math.max(oldGroups, g & ~(long) (flexSize - 1));
        long to = Math.min(newGroups - 1, g | (flexSize - 1));
        for (long j = from; j <= to; j++) {
            int i = index(j);
            mark(bm, start, len, bb[i], 1);
            mark(bm, start, len, ib[i], 1);
            mark(bm, start, len, it[i], itb);
        }
        Bitmaps.set(bm, len, bs * 8);
        return bm;
    }

    private static void mark(ByteBuffer bm, long groupStart, int len, long start, long count) {
        long a = Math.max(start, groupStart);
        long b = Math.min(start + count, groupStart + len);
        if (a < b) {
            Bitmaps.set(bm, (int) (a - groupStart), (int) (b - groupStart));
        }
    }
}
