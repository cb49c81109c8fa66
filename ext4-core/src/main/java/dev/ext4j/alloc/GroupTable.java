package dev.ext4j.alloc;

import dev.ext4j.Errno;
import dev.ext4j.Ext4Exception;
import dev.ext4j.format.Feature;
import dev.ext4j.format.GroupDescriptor;
import dev.ext4j.format.Superblock;
import dev.ext4j.io.BlockCache;
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
    private final long groups;
    private final ByteBuffer table;
    private final Object[] locks = new Object[1024];

    private GroupTable(Superblock sb, ByteBuffer table) {
        this.sb = sb;
        this.descSize = sb.descSize();
        this.groups = sb.groupCount();
        this.table = table;
        for (int i = 0; i < locks.length; i++) {
            locks[i] = new Object();
        }
    }

    /**
     * Reads and checks the table. A bad checksum refuses a read-write mount and is only reported
     * (added to {@code warnings}) on a read-only one, as the kernel does.
     */
    public static GroupTable load(Superblock sb, BlockCache cache, boolean readOnly, List<String> warnings) throws Ext4Exception {
        int bs = sb.blockSize();
        int descSize = sb.descSize();
        long groups = sb.groupCount();
        long perBlock = bs / descSize;
        long gdtBlocks = (groups + perBlock - 1) / perBlock;
        if (groups * descSize > Integer.MAX_VALUE) {
            throw new Ext4Exception(Errno.EFBIG, "superblock: " + groups + " groups are more than ext4j can hold");
        }
        ByteBuffer table = ByteBuffer.allocate((int) (gdtBlocks * bs)).order(ByteOrder.LITTLE_ENDIAN);
        for (long i = 0; i < gdtBlocks; i++) {
            table.put(cache.get(descriptorBlock(sb, i)));
        }
        GroupTable gt = new GroupTable(sb, table.flip());
        gt.check(readOnly, warnings);
        return gt;
    }

    /** Location of GDT block {@code i} (ext4's descriptor_loc()). */
    static long descriptorBlock(Superblock sb, long i) {
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
        return new GroupDescriptor(table, (int) (group * descSize), descSize);
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
    public void update(long group, BlockCache cache, DescriptorMutator m) throws Ext4Exception {
        synchronized (lock(group)) {
            GroupDescriptor gd = get(group);
            m.apply(gd);
            boolean csum = sb.has(Feature.METADATA_CSUM);
            if (csum || sb.has(Feature.GDT_CSUM)) {
                gd.setChecksum(gd.computeChecksum(csum, csum ? sb.checksumSeed() : 0, sb.uuid(), group));
            }
            int off = (int) (group * descSize);
            int bs = sb.blockSize();
            long block = descriptorBlock(sb, off / bs);
            ByteBuffer desc = table.duplicate().position(off).limit(off + descSize);
            cache.update(block, b -> b.position(off % bs).put(desc));
        }
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
