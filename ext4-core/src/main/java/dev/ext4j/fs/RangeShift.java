package dev.ext4j.fs;

import dev.ext4j.Errno;
import dev.ext4j.Ext4Exception;
import dev.ext4j.blockmap.ExtentShift;
import dev.ext4j.format.Inode;
import dev.ext4j.io.BufferCache;
import dev.ext4j.journal.Transactions;

/**
 * fallocate(2)'s FALLOC_FL_COLLAPSE_RANGE and FALLOC_FL_INSERT_RANGE, as ext4_collapse_range() and
 * ext4_insert_range() do them: the blocks of [offset, offset + length) are removed and the extents
 * after them move left, or the extents from offset on move right and leave a hole; i_size follows.
 *
 * <p>The rules, checked in the kernel's order: other mode bits with either flag are EINVAL (the
 * VFS), a directory EISDIR, an immutable or append-only file EPERM; an inline-data file is moved to
 * a block first, as ext4_fallocate() does; a block-mapped file is EOPNOTSUPP; offset and length
 * must be multiples of the block size (EINVAL); a collapse must end before i_size (EINVAL); an
 * insert must start before i_size (EINVAL) and must not grow the file past the largest size
 * (EFBIG).
 *
 * <p>Pages move with nothing: before the map changes the inode's dirty pages are written back
 * (without its lock, which the writeback's last step needs) until, under the lock, none is dirty
 * or in flight; then its cached pages are dropped, as the kernel writes back and truncates the page
 * cache from offset. The removal frees its blocks in steps ({@link FileWrite#removeInSteps}), and
 * the shift may restart the handle between leaves: every step leaves a consistent file.
 */
final class RangeShift {
    /** FALLOC_FL_SUPPORTED_MASK: the mode bits the VFS knows; others are EOPNOTSUPP. */
    private static final int VFS_KNOWN = 0x7F;
    /** Rounds of writeback before giving up on a file that writers keep dirtying. */
    private static final int MAX_ROUNDS = 1000;

    /** What a shift needs from the mounted filesystem. */
    interface Host {
        /** A block account for one operation on {@code ino}. */
        BlockAccount account(long ino, Inode inode);

        /** Stamps and writes a changed inode; the caller holds its lock. */
        InodeInfo writeInode(long ino, Inode changed) throws Ext4Exception;
    }

    private final BufferCache cache;
    private final boolean metadataCsum;
    private final InodeTable inodes;
    private final InodeLocks locks;
    private final Transactions tx;
    private final Writeback writeback;
    private final FileWrite fw;
    private final Host host;
    private final int bs;

    RangeShift(BufferCache cache, boolean metadataCsum, InodeTable inodes, InodeLocks locks, Transactions tx, Writeback writeback,
               FileWrite fw, Host host) {
        this.cache = cache;
        this.metadataCsum = metadataCsum;
        this.inodes = inodes;
        this.locks = locks;
        this.tx = tx;
        this.writeback = writeback;
        this.fw = fw;
        this.host = host;
        this.bs = cache.blockSize();
    }

    /** Collapses or inserts [offset, offset + length); {@code mode} holds one of the two flags. */
    void shift(long ino, int mode, long offset, long length) throws Ext4Exception {
        if ((mode & ~VFS_KNOWN) != 0) {
            throw new Ext4Exception(Errno.EOPNOTSUPP, "fallocate mode 0x" + Integer.toHexString(mode));
        }
        boolean collapse = mode == FileWrite.FALLOC_FL_COLLAPSE_RANGE;
        if (!collapse && mode != FileWrite.FALLOC_FL_INSERT_RANGE) {
            throw new Ext4Exception(Errno.EINVAL, "fallocate mode 0x" + Integer.toHexString(mode)
                    + ": collapse and insert range take no other flag");
        }
        for (int round = 0; round < MAX_ROUNDS; round++) {
            try (InodeLocks.Held h = locks.lockAll(ino)) {
                InodeInfo info = inodes.get(ino);
                Inode copy = fw.regularCopy(info);
                if (copy.hasFlag(Inode.INLINE_DATA_FL)) {
                    info = fw.convertInline(info, copy);
                    copy = info.inode().copy();
                }
                BlockAccount acct = host.account(ino, copy);
                FileMap map = FileMap.of(cache, ino, copy, info.csumSeed(), metadataCsum, acct);
                long size = info.size();
                check(ino, copy, map, collapse, offset, length, size);
                if (writeback.dropAllIfQuiet(ino)) {
                    move(ino, copy, map, acct, collapse, offset, length, size);
                    return;
                }
            }
            writeback.writebackFully(ino);
        }
        throw new Ext4Exception(Errno.EBUSY, "inode " + ino + ": writes kept dirtying the file during "
                + (collapse ? "collapse" : "insert") + " range");
    }

    private void check(long ino, Inode copy, FileMap map, boolean collapse, long offset, long length, long size)
            throws Ext4Exception {
        long max = fw.maxSize(map);
        if (offset + length < 0 || offset + length > max) {
            throw new Ext4Exception(Errno.EFBIG, "fallocate range " + offset + "+" + length + " past the largest file size " + max);
        }
        if (!copy.hasFlag(Inode.EXTENTS_FL)) {
            throw new Ext4Exception(Errno.EOPNOTSUPP, "inode " + ino + ": " + (collapse ? "collapse" : "insert")
                    + " range needs an extent-mapped file");
        }
        if (offset % bs != 0 || length % bs != 0) {
            throw new Ext4Exception(Errno.EINVAL, "inode " + ino + ": range " + offset + "+" + length
                    + " is not in whole blocks of " + bs);
        }
        if (collapse && offset + length >= size) {
            throw new Ext4Exception(Errno.EINVAL, "inode " + ino + ": collapse of " + offset + "+" + length
                    + " reaches the end of the file at " + size);
        }
        if (!collapse && length > max - size) {
            throw new Ext4Exception(Errno.EFBIG, "inode " + ino + ": inserting " + length + " bytes into " + size
                    + " passes the largest file size " + max);
        }
        if (!collapse && offset >= size) {
            throw new Ext4Exception(Errno.EINVAL, "inode " + ino + ": insert at " + offset + " is not before the end " + size);
        }
    }

    /** The change itself, under the inode's lock with its pages gone. */
    private void move(long ino, Inode copy, FileMap map, BlockAccount acct, boolean collapse, long offset, long length, long size)
            throws Ext4Exception {
        long start = offset / bs;
        long blocks = length / bs;
        boolean[] moving = {false};
        ExtentShift.StepCredits credits = n -> {
            moving[0] = true;
            if (tx.needsRestart(n)) {
                fw.restart(tx, ino, copy, acct); // the tree is valid between two leaves
            }
        };
        if (tx.needsRestart(FileWrite.STEP_CREDITS)) {
            fw.restart(tx, ino, copy, acct); // room for the first split (a new leaf and index blocks)
        }
        try {
            if (collapse) {
                fw.removeInSteps(ino, copy, map, acct, start, start + blocks, false); // a half-punched hole is a consistent file
                map.shift(start + blocks, -blocks, credits);
                copy.setSize(size - length);
            } else {
                // as ext4_insert_range(): the size grows before extents move past it (a restart
                // may commit some of them); a split that fails first leaves the file as it was
                copy.setSize(size + length);
                try {
                    map.shift(start, blocks, credits);
                } catch (Ext4Exception | RuntimeException e) {
                    if (!moving[0]) {
                        copy.setSize(size);
                    }
                    throw e;
                }
            }
        } finally {
            Ext4FileSystem.Time now = Ext4FileSystem.Time.now();
            copy.setMtime(now.seconds(), now.nanos());
            copy.setCtime(now.seconds(), now.nanos());
            fw.addBlocks(copy, acct);
            InodeInfo updated = host.writeInode(ino, copy);
            updated.mapChanged();
            updated.sizeSettled();
        }
    }
}
