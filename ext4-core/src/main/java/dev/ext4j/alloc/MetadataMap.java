package dev.ext4j.alloc;

import dev.ext4j.format.GroupDescriptor;
import dev.ext4j.format.Superblock;
import java.nio.ByteBuffer;
import java.util.Arrays;

/**
 * The fixed metadata of the whole filesystem as sorted, merged block ranges: each group's
 * superblock backup with its descriptor and reserved descriptor blocks, and every group's block
 * bitmap, inode bitmap and inode table wherever they were placed (flex_bg packs them into the first
 * group of a flex group). Built from the descriptor table at mount; the locations never change while
 * the filesystem is mounted, except that an online resize builds a new map for the grown layout.
 *
 * <p>Two uses: building the block bitmap of a BLOCK_UNINIT group (ext4_init_block_bitmap()), and
 * refusing to hand out or free a metadata block, as the kernel's ext4_inode_block_valid() and
 * "freeing blocks not in datazone" checks do.
 */
final class MetadataMap {
    /** Range i is {@code [starts[i], ends[i])}; sorted, not overlapping, not adjacent. */
    private final long[] starts;
    private final long[] ends;

    private MetadataMap(long[] starts, long[] ends) {
        this.starts = starts;
        this.ends = ends;
    }

    /** The map of the {@code sb.groupCount()} groups that {@code sb} describes. */
    static MetadataMap build(Superblock sb, GroupTable groups) {
        long n = sb.groupCount();
        long itb = Layout.inodeTableBlocks(sb);
        long[] s = new long[(int) (4 * n)];
        long[] e = new long[s.length];
        int count = 0;
        for (long g = 0; g < n; g++) {
            long base = Layout.baseMetaBlocks(sb, g);
            if (base > 0) {
                s[count] = sb.firstDataBlock() + g * sb.blocksPerGroup();
                e[count] = s[count++] + base;
            }
            GroupDescriptor gd = groups.get(g);
            s[count] = gd.blockBitmap();
            e[count] = s[count++] + 1;
            s[count] = gd.inodeBitmap();
            e[count] = s[count++] + 1;
            s[count] = gd.inodeTable();
            e[count] = s[count++] + itb;
        }
        // the union of the ranges by a sweep over the sorted starts and ends; at equal positions a
        // start goes first, so touching ranges merge
        Arrays.sort(s, 0, count);
        Arrays.sort(e, 0, count);
        long[] starts = new long[count];
        long[] ends = new long[count];
        int m = 0;
        int depth = 0;
        for (int i = 0, j = 0; j < count; ) {
            if (i < count && s[i] <= e[j]) {
                if (depth++ == 0) {
                    starts[m] = s[i];
                }
                i++;
            } else {
                if (--depth == 0) {
                    ends[m++] = e[j];
                }
                j++;
            }
        }
        return new MetadataMap(Arrays.copyOf(starts, m), Arrays.copyOf(ends, m));
    }

    /** Index of the first range ending after {@code block}. */
    private int firstEndingAfter(long block) {
        int lo = 0;
        int hi = starts.length;
        while (lo < hi) {
            int mid = (lo + hi) >>> 1;
            if (ends[mid] <= block) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        return lo;
    }

    /** The first metadata block in {@code [start, start + length)}, or -1. */
    long firstIn(long start, long length) {
        int i = firstEndingAfter(start);
        if (i < starts.length && starts[i] < start + length) {
            return Math.max(start, starts[i]);
        }
        return -1;
    }

    /** Sets the bits of the metadata blocks in {@code [first, first + length)}; bit 0 is {@code first}. */
    void mark(ByteBuffer bitmap, long first, long length) {
        long end = first + length;
        for (int i = firstEndingAfter(first); i < starts.length && starts[i] < end; i++) {
            long a = Math.max(first, starts[i]);
            long b = Math.min(end, ends[i]);
            Bitmaps.set(bitmap, (int) (a - first), (int) (b - first));
        }
    }
}
