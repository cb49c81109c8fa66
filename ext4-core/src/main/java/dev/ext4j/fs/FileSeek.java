package dev.ext4j.fs;

import dev.ext4j.Errno;
import dev.ext4j.Ext4Exception;
import dev.ext4j.blockmap.Mapping;
import dev.ext4j.format.Inode;
import dev.ext4j.pagecache.PageCache;

/**
 * lseek(2)'s SEEK_DATA and SEEK_HOLE, answered as ext4_llseek() does through iomap_seek_data() and
 * iomap_seek_hole() over ext4_iomap_begin_report(), under the inode's read lock:
 * <ul>
 * <li>an offset below 0 or at or past i_size is ENXIO (iomap's check; the VFS lets any offset
 *     through for these two), and i_size is a hole (the virtual hole at EOF);
 * <li>written blocks are data, holes are holes, at block granularity;
 * <li>a hole or an unwritten (preallocated) extent is data where the page cache holds blocks not
 *     written home yet: dirty ones (delayed allocation, which the kernel reports as data) and
 *     those a writeback took and has not converted yet; block by block, as the kernel answers
 *     with 1 KiB blocks too. The kernel also counts pages that reads brought into its cache over
 *     unwritten extents; ext4j's reads keep no pages, so there is no such case;
 * <li>an inline-data file is data from 0 to i_size; block-mapped files work as extent-mapped ones.
 * </ul>
 * Other {@code whence} values are EINVAL: SEEK_SET, SEEK_CUR and SEEK_END are the caller's.
 */
final class FileSeek {
    static final int SEEK_DATA = 3, SEEK_HOLE = 4;

    private final InodeTable inodes;
    private final InodeLocks locks;
    /** The page cache of the buffered write path; null on a read-only mount. */
    private final PageCache pages;
    private final int bs;

    FileSeek(InodeTable inodes, InodeLocks locks, PageCache pages, int blockSize) {
        this.inodes = inodes;
        this.locks = locks;
        this.pages = pages;
        this.bs = blockSize;
    }

    long seek(long ino, long offset, int whence) throws Ext4Exception {
        if (whence != SEEK_DATA && whence != SEEK_HOLE) {
            throw new Ext4Exception(Errno.EINVAL, "lseek whence " + whence + " (expected SEEK_DATA 3 or SEEK_HOLE 4)");
        }
        boolean data = whence == SEEK_DATA;
        try (InodeLocks.Locked l = locks.read(ino)) {
            InodeInfo info = inodes.get(ino);
            Inode i = info.inode();
            if (i.isDirectory()) {
                throw new Ext4Exception(Errno.EISDIR, "inode " + ino + " is a directory");
            }
            if (!i.isRegular()) {
                throw new Ext4Exception(Errno.EINVAL, "inode " + ino + " is not a regular file");
            }
            long size = info.size();
            if (offset < 0 || offset >= size) {
                throw new Ext4Exception(Errno.ENXIO, "inode " + ino + ": " + (data ? "SEEK_DATA" : "SEEK_HOLE") + " from " + offset
                        + (offset < 0 ? "" : " at or past the end " + size));
            }
            if (i.hasFlag(Inode.INLINE_DATA_FL)) {
                return data ? offset : size;
            }
            if (info.map() == null) {
                throw Ext4Exception.corrupted("inode " + ino + " has no block map to seek in");
            }
            long found = find(info, offset, size, data);
            if (found < 0) {
                if (data) {
                    throw new Ext4Exception(Errno.ENXIO, "inode " + ino + ": no data from " + offset + " to the end " + size);
                }
                return size;
            }
            return Math.min(Math.max(found, offset), size);
        }
    }

    /** The first byte at or after the block of {@code offset} that is data ({@code data}) or a hole; -1 when none before EOF. */
    private long find(InodeInfo info, long offset, long size, boolean data) throws Ext4Exception {
        PageCache.FilePages filePages = pages == null ? null : pages.peek(info.ino());
        int perPage = pages == null ? 1 : pages.blocksPerPage();
        long endBlk = (size + bs - 1) / bs;
        for (long lblk = offset / bs; lblk < endBlk; ) {
            Mapping m = info.map().map(lblk, endBlk - lblk);
            long runEnd = Math.min(endBlk, lblk + m.length());
            if (!m.readsAsZeros()) {
                if (data) {
                    return lblk * bs;
                }
            } else {
                long b = data ? firstCached(filePages, perPage, lblk, runEnd) : firstUncached(filePages, perPage, lblk, runEnd);
                if (b >= 0) {
                    return b * bs;
                }
            }
            lblk = runEnd;
        }
        return -1;
    }

    /** The first block in [from, to) that the page cache holds data of, or -1. */
    private static long firstCached(PageCache.FilePages pages, int perPage, long from, long to) {
        if (pages == null) {
            return -1;
        }
        for (long index = from / perPage; ; index++) {
            index = pages.nextIndex(index);
            if (index < 0 || index * perPage >= to) {
                return -1;
            }
            PageCache.Page p = pages.pin(index);
            if (p == null) {
                continue; // evicted meanwhile
            }
            try {
                int mask = p.pendingMask();
                for (int k = 0; k < perPage; k++) {
                    long b = index * perPage + k;
                    if (b >= from && b < to && (mask & (1 << k)) != 0) {
                        return b;
                    }
                }
            } finally {
                p.unpin();
            }
        }
    }

    /** The first block in [from, to) that the page cache holds no data of, or -1. */
    private static long firstUncached(PageCache.FilePages pages, int perPage, long from, long to) {
        for (long b = from; b < to; ) {
            long index = b / perPage;
            PageCache.Page p = pages == null ? null : pages.pin(index);
            if (p == null) {
                return b;
            }
            try {
                int mask = p.pendingMask();
                for (; b < to && b / perPage == index; b++) {
                    if ((mask & (1 << (int) (b % perPage))) == 0) {
                        return b;
                    }
                }
            } finally {
                p.unpin();
            }
        }
        return -1;
    }
}
