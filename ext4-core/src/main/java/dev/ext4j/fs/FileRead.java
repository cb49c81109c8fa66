package dev.ext4j.fs;

import dev.ext4j.Errno;
import dev.ext4j.Ext4Exception;
import dev.ext4j.blockmap.Mapping;
import dev.ext4j.format.Inode;
import dev.ext4j.io.BufferCache;
import dev.ext4j.pagecache.PageCache;
import dev.ext4j.xattr.Xattr;
import dev.ext4j.xattr.XattrNames;
import dev.ext4j.xattr.XattrReader;
import java.nio.ByteBuffer;
import java.util.Arrays;

/**
 * Reading file data and symlinks (the kernel's readpage.c, inline.c's read side and symlink.c):
 * through the page cache where a file has pages, from the image between them; holes and unwritten
 * extents read as zeros; inline data from i_block and the system.data xattr.
 */
final class FileRead {
    /** The system.data xattr that holds inline data past i_block. */
    private static final byte[] INLINE_DATA_NAME = {'d', 'a', 't', 'a'};

    private final BufferCache cache;
    private final InodeTable inodes;
    private final InodeLocks locks;
    /** The page cache of the buffered write path; null on a read-only mount. */
    private final PageCache pages;
    private final int bs;

    FileRead(BufferCache cache, InodeTable inodes, InodeLocks locks, PageCache pages) {
        this.cache = cache;
        this.inodes = inodes;
        this.locks = locks;
        this.pages = pages;
        this.bs = cache.blockSize();
    }

    /**
     * Reads up to {@code dst.remaining()} bytes at {@code offset} into {@code dst}; returns the count,
     * 0 at or past the end of the file.
     */
    int read(long ino, long offset, ByteBuffer dst) throws Ext4Exception {
        try (InodeLocks.Locked l = locks.read(ino)) {
            return readLocked(ino, offset, dst);
        }
    }

    /** {@link #read} for a caller that holds the inode's lock, or reads an inode nothing writes (an EA inode). */
    int readLocked(long ino, long offset, ByteBuffer dst) throws Ext4Exception {
        InodeInfo info = inodes.get(ino);
        Inode i = info.inode();
        if (i.isDirectory()) {
            throw new Ext4Exception(Errno.EISDIR, "inode " + ino + " is a directory");
        }
        if (i.hasFlag(Inode.ENCRYPT_FL)) {
            throw new Ext4Exception(Errno.ENOKEY, "inode " + ino + " is encrypted");
        }
        long size = i.isRegular() ? info.size() : inodes.isize(i);
        if (offset >= size || !dst.hasRemaining()) {
            return 0;
        }
        int len = (int) Math.min(dst.remaining(), size - offset);
        if (i.hasFlag(Inode.INLINE_DATA_FL)) {
            byte[] data = inlineData(info);
            int avail = (int) Math.max(0, Math.min(len, data.length - offset));
            if (avail > 0) { // offset may lie past the inline bytes (i_size beyond them reads as zeros)
                dst.put(data, (int) offset, avail);
            }
            fillZeros(dst, len - avail);
            return len;
        }
        if (info.map() == null) {
            throw Ext4Exception.corrupted("inode " + ino + " has no block map to read");
        }
        PageCache.FilePages filePages = pages != null ? pages.peek(ino) : null;
        if (filePages != null && !filePages.isEmpty()) {
            readThroughPages(info, filePages, offset, offset + len, dst);
            return len;
        }
        readFromImage(info, offset, offset + len, dst);
        return len;
    }

    /** Reads [pos, end) from the cached pages where there are some, and from the image between them. */
    private void readThroughPages(InodeInfo info, PageCache.FilePages filePages, long pos, long end, ByteBuffer dst)
            throws Ext4Exception {
        int ps = pages.pageSize();
        while (pos < end) {
            long index = pos / ps;
            PageCache.Page p = filePages.pin(index);
            if (p != null) {
                int inPage = (int) (pos - index * ps);
                int n = (int) Math.min(ps - inPage, end - pos);
                try {
                    dst.put(dst.position(), p.data, inPage, n);
                } finally {
                    p.unpin();
                }
                dst.position(dst.position() + n);
                pos += n;
                continue;
            }
            long next = filePages.nextIndex(index);
            long stop = next < 0 ? end : Math.min(end, next * ps);
            readFromImage(info, pos, stop, dst);
            pos = stop;
        }
    }

    /** Reads [pos, end) of a block-mapped file from the image: holes and unwritten blocks are zeros. */
    private void readFromImage(InodeInfo info, long pos, long end, ByteBuffer dst) throws Ext4Exception {
        while (pos < end) {
            long lblk = pos / bs;
            int inBlock = (int) (pos % bs);
            long lastBlk = (end - 1) / bs;
            Mapping m = info.map().map(lblk, lastBlk - lblk + 1);
            long runEnd = Math.min(end, (lblk + m.length()) * bs);
            int n = (int) (runEnd - pos);
            if (m.readsAsZeros()) {
                fillZeros(dst, n);
            } else {
                ByteBuffer slice = dst.duplicate();
                slice.limit(slice.position() + n);
                cache.readDirect(m.physical(), inBlock, slice);
                dst.position(dst.position() + n);
            }
            pos = runEnd;
        }
    }

    private static void fillZeros(ByteBuffer dst, int n) {
        Writeback.zero(dst, dst.position(), dst.position() + n);
        dst.position(dst.position() + n);
    }

    /** Target of a symbolic link. */
    byte[] readlink(long ino) throws Ext4Exception {
        InodeInfo info = inodes.get(ino);
        Inode i = info.inode();
        if (!i.isSymlink()) {
            throw new Ext4Exception(Errno.EINVAL, "inode " + ino + " is not a symbolic link");
        }
        if (i.hasFlag(Inode.ENCRYPT_FL)) {
            throw new Ext4Exception(Errno.ENOKEY, "symlink inode " + ino + " is encrypted");
        }
        long size = inodes.isize(i);
        if (size <= 0 || size >= bs || size >= 4096) {
            throw Ext4Exception.corrupted("symlink inode " + ino + " has size " + size + " (expected 1.." + (Math.min(bs, 4096) - 1) + ")");
        }
        byte[] target = new byte[(int) size];
        if (inodes.isFastSymlink(i)) {
            if (size >= Inode.I_BLOCK_SIZE) {
                throw Ext4Exception.corrupted("fast symlink inode " + ino + " has size " + size + " (max " + (Inode.I_BLOCK_SIZE - 1) + ")");
            }
            i.iBlock().get(0, target);
            return target;
        }
        read(ino, 0, ByteBuffer.wrap(target));
        return target;
    }

    /** i_block followed by the system.data value: the whole inline content. */
    private byte[] inlineData(InodeInfo info) throws Ext4Exception {
        byte[] extra = inlineXattr(info);
        byte[] all = new byte[Inode.I_BLOCK_SIZE + extra.length];
        info.inode().iBlock().get(0, all, 0, Inode.I_BLOCK_SIZE);
        System.arraycopy(extra, 0, all, Inode.I_BLOCK_SIZE, extra.length);
        return all;
    }

    byte[] inlineXattr(InodeInfo info) throws Ext4Exception {
        for (Xattr x : XattrReader.readIbody(info.inode(), info.ino(), this::readEaInode)) {
            if (x.nameIndex() == XattrNames.SYSTEM && Arrays.equals(x.suffix(), INLINE_DATA_NAME)) {
                return x.value();
            }
        }
        throw Ext4Exception.corrupted("inode " + info.ino() + " has inline data but no system.data xattr");
    }

    /** Reads a value stored in its own inode (the ea_inode feature), checked to be one of {@code size} bytes. */
    byte[] readEaInode(long valueIno, long size) throws Ext4Exception {
        InodeInfo v = inodes.get(valueIno);
        if (!v.inode().hasFlag(Inode.EA_INODE_FL) || v.inode().size() != size || size > (64L << 20)) {
            throw Ext4Exception.corrupted("xattr value inode " + valueIno + " is not an xattr inode of " + size + " bytes");
        }
        byte[] value = new byte[(int) size];
        // without the value inode's lock: the owner's is held here, an EA inode may have a lower
        // number (inode locks go in ascending order), and ext4j never writes EA inodes
        readLocked(valueIno, 0, ByteBuffer.wrap(value));
        return value;
    }
}
