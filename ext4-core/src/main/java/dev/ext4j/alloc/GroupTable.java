package dev.ext4j.alloc;

import dev.ext4j.Errno;
import dev.ext4j.Ext4Exception;
import dev.ext4j.format.Feature;
import dev.ext4j.format.GroupDescriptor;
import dev.ext4j.format.Superblock;
import dev.ext4j.io.BufferCache;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.List;

/**
 * The group descriptor table (ext4_get_group_desc() in balloc.c, ext4_check_descriptors() in
 * super.c): read once at mount from the primary GDT blocks, or from the meta_bg blocks, kept in
 * memory, and checked for checksums and for bitmap and inode table locations inside the filesystem.
 */
public final class GroupTable {
    private final Superblock sb;
    private final int descSize;
    private final int perBlock;
    /**
     * One buffer per descriptor block. An online resize appends blocks ({@link #grow}) and then
     * publishes the larger count ({@link #publish}); the old buffers are kept, so a descriptor
     * changed meanwhile under its group lock is never lost to a copy.
     */
    private volatile ByteBuffer[] blocks;
    /** Groups in use; written last by a resize, after their descriptors are complete. */
    private volatile long groups;
    private final Object[] locks = new Object[1024];

    private GroupTable(Superblock sb, ByteBuffer[] blocks) {
        this.sb = sb;
        this.descSize = sb.descSize();
        this.perBlock = sb.blockSize() / descSize;
        this.groups = sb.groupCount();
        this.blocks = blocks;
        for (int i = 0; i < locks.length; i++) {
            locks[i] = new Object();
        }
    }

    /**
     * Reads and checks the table. A bad checksum refuses a read-write mount and is only reported
     * (added to {@code warnings}) on a read-only one, as the kernel does.
     */
    public static GroupTable load(Superblock sb, BufferCache cache, boolean readOnly, List<String> warnings) throws Ext4Exception {
        int bs = sb.blockSize();
        int descSize = sb.descSize();
        long groups = sb.groupCount();
        long perBlock = bs / descSize;
        long gdtBlocks = (groups + perBlock - 1) / perBlock;
        if (gdtBlocks > Integer.MAX_VALUE) {
            throw new Ext4Exception(Errno.EFBIG, "superblock: " + groups + " groups are more than ext4j can hold");
        }
        ByteBuffer[] blocks = new ByteBuffer[(int) gdtBlocks];
        for (int i = 0; i < gdtBlocks; i++) {
            blocks[i] = ByteBuffer.allocate(bs).order(ByteOrder.LITTLE_ENDIAN).put(cache.get(descriptorBlock(sb, i))).flip();
        }
        GroupTable gt = new GroupTable(sb, blocks);
        gt.check(readOnly, warnings);
        return gt;
    }

    /**
     * Location of GDT block {@code i} (ext4's descriptor_loc()) in the layout {@code sb} describes
     * (an online resize passes the superblock it is about to install).
     */
    public static long descriptorBlock(Superblock sb, long i) {
        long first = sb.firstDataBlock();
        long perBlock = sb.blockSize() / sb.descSize();
        if (!sb.has(Feature.META_BG) || i < sb.firstMetaBg()) {
            // right after the block holding the superblock (block 1 with 1 KiB blocks, else 0),
            // which is not s_first_data_block with bigalloc
            return Superblock.OFFSET_IN_IMAGE / sb.blockSize() + 1 + i;
        }
        long group = i * perBlock;
        return first + group * sb.blocksPerGroup() + (Layout.hasSuper(sb, group) ? 1 : 0);
    }

    public long groupCount() {
        return groups;
    }

    public GroupDescriptor get(long group) {
        return new GroupDescriptor(blocks[(int) (group / perBlock)], (int) (group % perBlock) * descSize, descSize);
    }

    /** Descriptor blocks held in memory (s_gdb_count once a resize has published its groups). */
    public int blockCount() {
        return blocks.length;
    }

    /** A copy of descriptor block {@code i}, for writing it whole (a new block, the backups). */
    public ByteBuffer blockCopy(int i) {
        ByteBuffer b = blocks[i];
        return ByteBuffer.allocate(b.capacity()).order(ByteOrder.LITTLE_ENDIAN).put(0, b, 0, b.capacity());
    }

    /**
     * Online resize, before the new groups are published: holds descriptors for {@code newGroups}
     * groups, the added ones zero. Caller is the one resize in progress.
     */
    public void grow(long newGroups) {
        int need = (int) ((newGroups + perBlock - 1) / perBlock);
        ByteBuffer[] old = blocks;
        if (need > old.length) {
            ByteBuffer[] b = java.util.Arrays.copyOf(old, need);
            for (int i = old.length; i < need; i++) {
                b[i] = ByteBuffer.allocate(sb.blockSize()).order(ByteOrder.LITTLE_ENDIAN);
            }
            blocks = b;
        }
    }

    /**
     * Fills in the descriptor of a group being added (not yet published): zeroed, changed by
     * {@code m}, checksum stamped. Nothing is written; see {@link #writeNew}.
     */
    public void initNew(long group, DescriptorMutator m) throws Ext4Exception {
        GroupDescriptor gd = get(group);
        ByteBuffer b = blocks[(int) (group / perBlock)];
        int off = (int) (group % perBlock) * descSize;
        b.put(off, new byte[descSize]);
        m.apply(gd);
        stamp(group, gd);
    }

    /**
     * Writes the descriptors of groups {@code [first, end)} (being added) into the cache at the
     * locations {@code layout} gives: a descriptor block holding only new groups is written whole
     * (over a reserved GDT block or free space), one shared with existing groups descriptor by
     * descriptor, so concurrent changes to its older descriptors stay.
     */
    public void writeNew(long first, long end, BufferCache cache, Superblock layout) throws Ext4Exception {
        int bs = sb.blockSize();
        for (long i = first / perBlock; i * perBlock < end; i++) {
            long block = descriptorBlock(layout, i);
            if (i * perBlock >= first) {
                ByteBuffer whole = blockCopy((int) i);
                cache.create(block, b -> b.put(0, whole, 0, bs));
            } else {
                for (long g = first; g < Math.min(end, (i + 1) * perBlock); g++) {
                    store(g, cache, block);
                }
            }
        }
    }

    /** Online resize: groups {@code [0, newGroups)} are in use from now on. */
    public void publish(long newGroups) {
        if (newGroups > (long) blocks.length * perBlock) {
            throw new IllegalStateException(newGroups + " groups published, descriptors held for " + (long) blocks.length * perBlock);
        }
        groups = newGroups;
    }

    /** Changes one group's descriptor. */
    @FunctionalInterface
    public interface DescriptorMutator {
        void apply(GroupDescriptor gd) throws Ext4Exception;
    }

    /**
     * Changes descriptor {@code group} under its lock, restamps its checksum and puts it in the
     * primary table's block in the cache. Callers that also change the group's bitmaps hold
     * {@link #lock(long)} around both.
     */
    public void update(long group, BufferCache cache, DescriptorMutator m) throws Ext4Exception {
        synchronized (lock(group)) {
            GroupDescriptor gd = get(group);
            m.apply(gd);
            stamp(group, gd);
            store(group, cache, descriptorBlock(sb, group / perBlock));
        }
    }

    private void stamp(long group, GroupDescriptor gd) {
        boolean csum = sb.has(Feature.METADATA_CSUM);
        if (csum || sb.has(Feature.GDT_CSUM)) {
            gd.setChecksum(gd.computeChecksum(csum, csum ? sb.checksumSeed() : 0, sb.uuid(), group));
        }
    }

    /** Puts descriptor {@code group} into its descriptor block {@code block} in the cache. */
    private void store(long group, BufferCache cache, long block) throws Ext4Exception {
        int off = (int) (group % perBlock) * descSize;
        ByteBuffer desc = blocks[(int) (group / perBlock)].duplicate().position(off).limit(off + descSize);
        cache.update(block, b -> b.position(off).put(desc));
    }

    /** The lock of one group: bitmaps, descriptor and free counts change under it. */
    public Object lock(long group) {
        return locks[(int) (group % locks.length)];
    }

    private void check(boolean readOnly, List<String> warnings) throws Ext4Exception {
        boolean csum = sb.has(Feature.METADATA_CSUM);
        boolean gdtCsum = sb.has(Feature.GDT_CSUM);
        int seed = csum ? sb.checksumSeed() : 0;
        byte[] uuid = sb.uuid();
        long blocks = sb.blocksCount();
        long itb = Layout.inodeTableBlocks(sb);
        for (long g = 0; g < groups; g++) {
            GroupDescriptor gd = get(g);
            if (csum || gdtCsum) {
                int computed = gd.computeChecksum(csum, seed, uuid, g);
                if (computed != gd.storedChecksum()) {
                    String msg = String.format("group descriptor %d: stored crc 0x%04x, computed 0x%04x", g, gd.storedChecksum(), computed);
                    if (!readOnly) {
                        throw new Ext4Exception(Errno.EBADMSG, msg + "; run e2fsck");
                    }
                    warnings.add(msg + " (ignored on a read-only mount)");
                }
            }
            checkLocation(g, "block bitmap", gd.blockBitmap(), 1, blocks);
            checkLocation(g, "inode bitmap", gd.inodeBitmap(), 1, blocks);
            checkLocation(g, "inode table", gd.inodeTable(), itb, blocks);
        }
    }

    private void checkLocation(long g, String what, long start, long len, long blocks) throws Ext4Exception {
        if (start < sb.firstDataBlock() || start + len > blocks) {
            throw Ext4Exception.corrupted("group descriptor " + g + ": " + what + " at block " + start
                    + " (+" + len + ") is outside the filesystem (" + sb.firstDataBlock() + ".." + (blocks - 1) + ")");
        }
    }
}
