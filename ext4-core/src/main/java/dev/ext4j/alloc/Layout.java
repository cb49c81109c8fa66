package dev.ext4j.alloc;

import dev.ext4j.format.Feature;
import dev.ext4j.format.Superblock;

/** Where fixed metadata lives in each group: superblock backups and descriptor blocks. */
public final class Layout {

    private Layout() {
    }

    /**
     * ext4_bg_has_super(): group 0; with sparse_super only groups 1 and powers of 3, 5 and 7; with
     * sparse_super2 only the (at most two) groups named in s_backup_bgs.
     */
    public static boolean hasSuper(Superblock sb, long group) {
        if (group == 0) {
            return true;
        }
        if (sb.has(Feature.SPARSE_SUPER2)) {
            return group == sb.backupBg(0) || group == sb.backupBg(1);
        }
        if (!sb.has(Feature.SPARSE_SUPER)) {
            return true;
        }
        if (group == 1) {
            return true;
        }
        return isPowerOf(group, 3) || isPowerOf(group, 5) || isPowerOf(group, 7);
    }

    private static boolean isPowerOf(long n, int base) {
        long p = base;
        while (p < n) {
            p *= base;
        }
        return p == n;
    }

    /** Blocks of one group's inode table. */
    public static long inodeTableBlocks(Superblock sb) {
        return (sb.inodesPerGroup() * sb.inodeSize() + sb.blockSize() - 1) / sb.blockSize();
    }

    /** GDT blocks of the whole table (s_gdb_count). */
    public static long gdtBlocks(Superblock sb) {
        long perBlock = sb.blockSize() / sb.descSize();
        return (sb.groupCount() + perBlock - 1) / perBlock;
    }

    /**
     * ext4_num_base_meta_blocks(): superblock, descriptor and reserved descriptor blocks at the start
     * of {@code group}.
     */
    public static long baseMetaBlocks(Superblock sb, long group) {
        long num = hasSuper(sb, group) ? 1 : 0;
        long perBlock = sb.blockSize() / sb.descSize();
        if (!sb.has(Feature.META_BG) || group < sb.firstMetaBg() * perBlock) {
            if (num != 0) {
                num += (sb.has(Feature.META_BG) ? sb.firstMetaBg() : gdtBlocks(sb)) + sb.reservedGdtBlocks();
            }
        } else {
            long inMeta = group % perBlock;
            if (inMeta == 0 || inMeta == 1 || inMeta == perBlock - 1) {
                num += 1;
            }
        }
        return num;
    }
}
