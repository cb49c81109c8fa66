package dev.ext4j.fs;

import dev.ext4j.Errno;
import dev.ext4j.Ext4Exception;
import dev.ext4j.alloc.Allocator;
import dev.ext4j.blockmap.Mapping;
import dev.ext4j.format.Feature;
import dev.ext4j.format.Inode;
import dev.ext4j.format.Superblock;
import dev.ext4j.inline.InlineData;
import dev.ext4j.io.BufferCache;
import dev.ext4j.journal.Transactions;
import java.nio.ByteBuffer;

/**
 * File data changes, written through to the image (ext4_file_write_iter() without the page cache,
 * ext4_setattr() for size, ext4_fallocate() and ext4_punch_hole()). Each call holds the inode's
 * write lock, changes a copy of the inode and writes it once at the end, after the data.
 */
final class FileWrite {
    /** fallocate(2) mode bits. */
    static final int FALLOC_FL_KEEP_SIZE = 0x01, FALLOC_FL_PUNCH_HOLE = 0x02, FALLOC_FL_ZERO_RANGE = 0x10;
    static final int FALLOC_FL_COLLAPSE_RANGE = 0x08, FALLOC_FL_INSERT_RANGE = 0x20;
    /** Longest run allocated at once (one extent's worth of written blocks). */
    private static final int MAX_RUN = 32768;

    /** What file data changes need from the mounted filesystem (with what {@link RangeShift} needs). */
    interface Host extends RangeShift.Host {
        /** balance_dirty_pages(): a writer that dirtied pages waits while too many are dirty. */
        void balanceDirty(long ino) throws Ext4Exception;
    }

    private final Superblock sb;
    private final SuperState state;
    private final BufferCache cache;
    private final boolean metadataCsum;
    private final Transactions tx;
    private final InodeTable inodes;
    private final InodeLocks locks;
    private final Orphans orphans;
    /** The buffered write path; null on a read-only mount. */
    private final Writeback writeback;
    private final Host host;
    private final int bs;

    FileWrite(Superblock sb, SuperState state, BufferCache cache, Transactions tx, InodeTable inodes, InodeLocks locks,
              Orphans orphans, Writeback writeback, Host host) {
        this.sb = sb;
        this.state = state;
        this.cache = cache;
        this.metadataCsum = sb.has(Feature.METADATA_CSUM);
        this.tx = tx;
        this.inodes = inodes;
        this.locks = locks;
        this.orphans = orphans;
        this.writeback = writeback;
        this.host = host;
        this.bs = sb.blockSize();
    }

    /** The largest file size the map and the features allow (EFBIG past it). */
    long maxSize(FileMap map) {
        long max = map.maxBlocks() * bs;
        if (!sb.has(Feature.LARGE_FILE)) {
            max = Math.min(max, (1L << 31) - 1);
        }
        return max;
    }

    /** A copy of a regular file to change; EPERM when it is immutable or append-only. */
    Inode regularCopy(InodeInfo info) throws Ext4Exception {
        return regularCopy(info, -1, 0);
    }

    /**
     * As {@link #regularCopy(InodeInfo)}, for a write at {@code offset} into a file of {@code size}
     * bytes (its cached size): an append-only file takes writes at or past its end (the kernel
     * lets only O_APPEND writers open it).
     */
    private Inode regularCopy(InodeInfo info, long offset, long size) throws Ext4Exception {
        Inode i = info.inode();
        if (i.isDirectory()) {
            throw new Ext4Exception(Errno.EISDIR, "inode " + info.ino() + " is a directory");
        }
        if (!i.isRegular()) {
            throw new Ext4Exception(Errno.EINVAL, "inode " + info.ino() + " is not a regular file");
        }
        if (i.hasFlag(Inode.IMMUTABLE_FL)) {
            throw new Ext4Exception(Errno.EPERM, "inode " + info.ino() + " is immutable");
        }
        if (i.hasFlag(Inode.APPEND_FL) && (offset < 0 || offset < size)) {
            throw new Ext4Exception(Errno.EPERM, "inode " + info.ino() + " is append-only"
                    + (offset < 0 ? "" : ": write at " + offset + " before its end " + size));
        }
        return i.copy();
    }

    /**
     * Writes {@code src} at {@code offset} and returns the count, advancing {@code src} by it. As
     * generic_perform_write(), a write that fails after some progress (ENOSPC) is short rather than
     * failed, and one that crosses the largest file size is cut there (EFBIG only at or past it).
     */
    int write(long ino, long offset, ByteBuffer src) throws Ext4Exception {
        state.requireWritable();
        if (offset < 0) {
            throw new Ext4Exception(Errno.EINVAL, "negative offset " + offset);
        }
        if (src.remaining() == 0) {
            return 0;
        }
        int written;
        try (InodeLocks.Held h = locks.lockAll(ino)) {
            InodeInfo info = inodes.get(ino);
            Inode copy = regularCopy(info, offset, info.size());
            if (copy.hasFlag(Inode.INLINE_DATA_FL) || (mayStartInline(copy) && info.size() == copy.size()
                    && !writeback.hasPages(ino))) {
                int n = writeInline(ino, copy, offset, src);
                if (n > 0) {
                    return n;
                }
                if (copy.hasFlag(Inode.INLINE_DATA_FL)) {
                    info = convertInline(info, copy); // ext4_convert_inline_data_to_extent()
                    copy = info.inode().copy();
                }
            }
            BlockAccount acct = host.account(ino, copy);
            FileMap map = FileMap.of(cache, ino, copy, info.csumSeed(), metadataCsum, acct);
            long max = maxSize(map);
            if (offset >= max) {
                throw new Ext4Exception(Errno.EFBIG, "write at " + offset + " is at or past the largest file size " + max);
            }
            int len = (int) Math.min(src.remaining(), max - offset);
            boolean through = writeback.lowOnSpace() && readyForWriteThrough(ino, offset, len);
            if (through) {
                written = writeThrough(ino, offset, src, len);
            } else {
                written = writeback.write(ino, offset, src, len);
                updateTimes(ino);
            }
        }
        host.balanceDirty(ino);
        return written;
    }

    /** How long a write may leave mtime and ctime as they are: a tick of the kernel's coarse clock at HZ=250. */
    private static final long TICK_NANOS = 4_000_000;

    /**
     * file_update_time() on a coarse clock: a write through the page cache moves mtime and ctime
     * unless both moved less than a tick ago and no attributes showed them since (multigrain
     * timestamps), so a run of small writes does not rewrite the inode for each.
     */
    private void updateTimes(long ino) throws Ext4Exception {
        InodeInfo info = inodes.get(ino); // writeback may have changed it meanwhile
        Inode i = info.inode();
        Ext4FileSystem.Time now = Ext4FileSystem.Time.now();
        if (!info.timesSeen() && lessThanATickAgo(i.mtimeSeconds(), i.mtimeNanos(), now)
                && lessThanATickAgo(i.ctimeSeconds(), i.ctimeNanos(), now)) {
            return;
        }
        info.setTimesSeen(false);
        Inode copy = i.copy();
        copy.setMtime(now.seconds(), now.nanos());
        copy.setCtime(now.seconds(), now.nanos());
        host.writeInode(ino, copy);
    }

    private static boolean lessThanATickAgo(long seconds, int nanos, Ext4FileSystem.Time now) {
        if (seconds > now.seconds() || seconds < now.seconds() - 1) {
            return false;
        }
        long ago = (now.seconds() - seconds) * 1_000_000_000L + now.nanos() - nanos;
        return ago >= 0 && ago < TICK_NANOS;
    }

    /**
     * Writes the inode's dirty pages back and drops the cached pages a write-through of [offset,
     * offset + len) overwrites; false when one of them stays dirty (another writeback held it), and
     * the write goes through the page cache after all.
     */
    private boolean readyForWriteThrough(long ino, long offset, int len) throws Ext4Exception {
        writeback.writeback(ino);
        return writeback.forgetCached(ino, offset, offset + len);
    }

    /**
     * The write without delayed allocation, for when free space runs low (the kernel's
     * ext4_nonda_switch()): the inode's dirty pages are written back first, then the data goes
     * straight to allocated blocks, so ENOSPC comes exactly when the last block is gone. The
     * caller holds the inode's write lock.
     */
    private int writeThrough(long ino, long offset, ByteBuffer src, int len) throws Ext4Exception {
        InodeInfo info = inodes.get(ino);
        Inode copy = info.inode().copy();
        BlockAccount acct = host.account(ino, copy);
        FileMap map = FileMap.of(cache, ino, copy, info.csumSeed(), metadataCsum, acct);
        ByteBuffer part = src.duplicate();
        part.limit(part.position() + len);
        int start = part.position();
        long oldSize = copy.size();
        if (offset > oldSize) {
            zeroTail(map, oldSize);
        }
        // between runs the handle may restart: the inode is written first with the size and
        // blocks of what is written and mapped so far, so each commit is consistent
        Retry.Step restart = () -> {
            int done = part.position() - start;
            if (done > 0) {
                copy.setSize(Math.max(oldSize, offset + done));
            }
            restart(tx, ino, copy, acct);
        };
        try {
            writeRange(map, acct, offset, part, restart);
        } catch (Ext4Exception e) {
            if (part.position() == start) {
                throw e;
            }
            // a short write: what was written stays and counts
        } finally {
            int written = part.position() - start;
            Ext4FileSystem.Time now = Ext4FileSystem.Time.now();
            if (written > 0) {
                copy.setSize(Math.max(oldSize, offset + written));
                copy.setMtime(now.seconds(), now.nanos());
                copy.setCtime(now.seconds(), now.nanos());
            }
            addBlocks(copy, acct);
            InodeInfo updated = host.writeInode(ino, copy);
            updated.mapChanged();
            updated.sizeSettled();
        }
        int written = part.position() - start;
        src.position(src.position() + written);
        return written;
    }

    /**
     * A regular file that may start inline on a filesystem with inline_data: one that holds no
     * block, as a new file (the kernel's EXT4_STATE_MAY_INLINE_DATA of a new inode, which ext4j
     * reads off the disk instead of keeping it in memory), also after a truncate that only set
     * its size: the kernel then keeps that i_size beside a shorter inline data.
     */
    private boolean mayStartInline(Inode copy) {
        long eaSectors = copy.fileAcl() != 0 ? bs / 512 : 0;
        return sb.has(Feature.INLINE_DATA) && copy.blocks512(sb.has(Feature.HUGE_FILE), bs) == eaSectors;
    }

    /**
     * ext4_try_to_write_inline_data(): a write that ends within the most the inode can hold inline
     * stays there (the file becomes inline if it was not); returns its count, or 0 when it does
     * not fit and the file must move to blocks.
     */
    private int writeInline(long ino, Inode copy, long offset, ByteBuffer src) throws Ext4Exception {
        long end = offset + src.remaining();
        if (end > InlineData.maxSize(copy, ino)) {
            return 0;
        }
        int n = src.remaining();
        InlineData.write(copy, ino, offset, src.duplicate());
        Ext4FileSystem.Time now = Ext4FileSystem.Time.now();
        copy.setSize(Math.max(copy.size(), end));
        copy.setMtime(now.seconds(), now.nanos());
        copy.setCtime(now.seconds(), now.nanos());
        host.writeInode(ino, copy);
        src.position(src.position() + n);
        return n;
    }

    /**
     * ext4_convert_inline_data_nolock() for a file: the inline bytes move to a new block 0, the
     * system.data xattr goes, and the inode gets an extent tree (or block map) that maps the block.
     * Written at once, as the kernel converts in a transaction of its own before the write,
     * truncate or fallocate that needed it; a failed allocation changes nothing.
     */
    InodeInfo convertInline(InodeInfo info, Inode copy) throws Ext4Exception {
        long ino = info.ino();
        byte[] data = InlineData.read(copy, ino);
        int len = (int) Math.min(data.length, copy.size());
        InlineData.destroy(copy, ino, sb.has(Feature.EXTENTS));
        BlockAccount acct = host.account(ino, copy);
        long blk = acct.allocateData(0, 1).start();
        byte[] block = new byte[bs];
        System.arraycopy(data, 0, block, 0, len);
        try {
            cache.writeDirect(blk, 0, ByteBuffer.wrap(block));
            FileMap.of(cache, ino, copy, info.csumSeed(), metadataCsum, acct).insert(0, blk, 1, false);
        } catch (Ext4Exception | RuntimeException e) {
            try {
                acct.freeBlocks(blk, 1);
            } catch (Ext4Exception | RuntimeException f) {
                e.addSuppressed(f);
            }
            throw e;
        }
        addBlocks(copy, acct);
        return host.writeInode(ino, copy);
    }

    /** Moves i_blocks by what {@code acct} gained or released since the last call. */
    void addBlocks(Inode copy, BlockAccount acct) {
        long sectors = copy.blocks512(sb.has(Feature.HUGE_FILE), bs) + acct.takeDelta() * (bs / 512);
        copy.setBlocks512(Math.max(0, sectors), bs);
    }

    /**
     * Writes {@code src} at {@code offset}, allocating holes and filling unwritten blocks; before
     * a run is allocated, {@code restart} runs when the handle has no credits left for it.
     */
    private void writeRange(FileMap map, BlockAccount acct, long offset, ByteBuffer src, Retry.Step restart) throws Ext4Exception {
        long pos = offset;
        long end = offset + src.remaining();
        while (pos < end) {
            long lblk = pos / bs;
            long lastBlk = (end - 1) / bs;
            Mapping m = map.map(lblk, Math.min(lastBlk - lblk + 1, MAX_RUN));
            if (m.isHole() || m.unwritten()) {
                long physical;
                int n;
                if (m.isHole()) {
                    if (!tx.extend(STEP_CREDITS)) {
                        restart.run();
                    }
                    // at most 16 groups' bitmaps and descriptors per run, so one run fits STEP_CREDITS
                    long most = 16L * sb.blocksPerGroup();
                    Allocator.Run run = acct.allocateData(goal(map, lblk), (int) Math.min(m.length(), most));
                    physical = run.start();
                    n = run.length();
                } else {
                    physical = m.physical();
                    n = (int) m.length();
                }
                // whole blocks: the parts this write does not cover are zeros
                long runEnd = Math.min(end, (lblk + n) * bs);
                byte[] blocks = new byte[n * bs];
                int first = (int) (pos - lblk * bs);
                ByteBuffer part = src.duplicate().limit(src.position() + (int) (runEnd - pos));
                part.get(blocks, first, part.remaining());
                cache.writeDirect(physical, 0, ByteBuffer.wrap(blocks));
                if (m.isHole()) {
                    Ext4Exception failed = insertOrFree(map, acct, lblk, physical, n, false);
                    if (failed != null) {
                        // the blocks mapped before the failure hold their data: count them
                        long mappedEnd = Math.min(runEnd, (lblk + mappedPrefix(map, lblk, physical, n)) * bs);
                        src.position(src.position() + (int) Math.max(0, mappedEnd - pos));
                        throw failed;
                    }
                } else {
                    map.markWritten(lblk, n);
                }
                src.position(src.position() + (int) (runEnd - pos));
                pos = runEnd;
            } else {
                long runEnd = Math.min(end, (lblk + m.length()) * bs);
                int n = (int) (runEnd - pos);
                ByteBuffer part = src.duplicate().limit(src.position() + n);
                cache.writeDirect(m.physical(), (int) (pos - lblk * bs), part);
                src.position(src.position() + n);
                pos = runEnd;
            }
        }
    }

    /** Goal for new data at {@code lblk}: right after the block before it, when that is mapped. */
    private long goal(FileMap map, long lblk) throws Ext4Exception {
        if (lblk == 0) {
            return 0;
        }
        Mapping prev = map.map(lblk - 1, 1);
        return prev.isHole() ? 0 : prev.physical() + 1;
    }

    /** Zeros the bytes from {@code size} to the end of its block, when that block holds data. */
    private void zeroTail(FileMap map, long size) throws Ext4Exception {
        int inBlock = (int) (size % bs);
        if (inBlock == 0) {
            return;
        }
        Mapping m = map.map(size / bs, 1);
        if (!m.readsAsZeros()) {
            cache.writeDirect(m.physical(), inBlock, ByteBuffer.allocate(bs - inBlock));
        }
    }

    void truncate(long ino, long size) throws Ext4Exception {
        state.requireWritable();
        if (size < 0) {
            throw new Ext4Exception(Errno.EINVAL, "negative size " + size);
        }
        try (InodeLocks.Held h = locks.lockAll(ino)) {
            InodeInfo info = inodes.get(ino);
            Inode copy = regularCopy(info);
            if (copy.hasFlag(Inode.INLINE_DATA_FL)) {
                if (size <= InlineData.size(copy, ino)) {
                    truncateInline(ino, copy, size);
                    return;
                }
                // as the kernel (seen on 6.18): a size past the inline data, larger or smaller than
                // i_size, moves the data to a block first
                info = convertInline(info, copy);
                copy = info.inode().copy();
            }
            BlockAccount acct = host.account(ino, copy);
            FileMap map = FileMap.of(cache, ino, copy, info.csumSeed(), metadataCsum, acct);
            if (size > maxSize(map)) {
                throw new Ext4Exception(Errno.EFBIG, "size " + size + " is past the largest file size " + maxSize(map));
            }
            long old = copy.size();
            long memSize = inodes.get(ino).size();
            if (size < memSize) {
                writeback.forgetRange(ino, size, Long.MAX_VALUE, map.hasExtents());
            } else if (size > memSize) {
                writeback.zeroPageTail(ino, map, memSize);
            }
            boolean orphan = size < old;
            try {
                if (orphan) {
                    // as ext4_setattr(): on the orphan list with the new size before blocks go,
                    // so a crash part way is finished by the next mount
                    orphans.add(ino);
                    copy.setSize(size);
                    host.writeInode(ino, copy.copy());
                }
                if (size < Math.max(old, memSize)) {
                    // cut at i_size, not the on-disk size, as ext4_truncate(): a writeback in
                    // flight may have mapped blocks for written data past the on-disk size
                    removeInSteps(ino, copy, map, acct, (size + bs - 1) / bs, Long.MAX_VALUE, orphan);
                }
                if (orphan) {
                    zeroTail(map, size);
                } else if (size > old) {
                    zeroTail(map, old);
                }
            } finally {
                Ext4FileSystem.Time now = Ext4FileSystem.Time.now();
                copy.setSize(size);
                copy.setMtime(now.seconds(), now.nanos());
                copy.setCtime(now.seconds(), now.nanos());
                addBlocks(copy, acct);
                if (orphan && copy.linksCount() > 0) {
                    // an open file without a name stays on the list for its last release, as
                    // ext4_setattr() deletes the orphan only while the inode has links
                    orphans.remove(ino);
                }
                host.writeInode(ino, copy).sizeSettled();
            }
        }
    }

    /**
     * Finishes a truncate that a crash interrupted (an orphan that still has links): the blocks
     * past i_size go and the inode leaves the orphan list. The caller holds the inode's lock.
     */
    void finishTruncate(long ino) throws Ext4Exception {
        InodeInfo info = inodes.get(ino);
        Inode copy = info.inode().copy();
        if (info.map() != null && copy.isRegular() && !copy.hasFlag(Inode.INLINE_DATA_FL)) {
            BlockAccount acct = host.account(ino, copy);
            FileMap map = FileMap.of(cache, ino, copy, info.csumSeed(), metadataCsum, acct);
            removeInSteps(ino, copy, map, acct, (copy.size() + bs - 1) / bs, Long.MAX_VALUE, true);
            addBlocks(copy, acct);
        }
        orphans.remove(ino);
        copy.setDtime(0);
        host.writeInode(ino, copy);
    }

    /** ext4_inline_data_truncate(): a new size within the inline data; the bytes past it go. */
    private void truncateInline(long ino, Inode copy, long size) throws Ext4Exception {
        InlineData.truncate(copy, ino, size);
        Ext4FileSystem.Time now = Ext4FileSystem.Time.now();
        copy.setSize(size);
        copy.setMtime(now.seconds(), now.nanos());
        copy.setCtime(now.seconds(), now.nanos());
        host.writeInode(ino, copy);
    }

    /** Frees every block of an inode that is being deleted; returns the changed copy. */
    Inode releaseAll(InodeInfo info, Inode copy) throws Ext4Exception {
        writeback.evict(info.ino(), copy.hasFlag(Inode.EXTENTS_FL));
        if (info.map() == null || copy.hasFlag(Inode.INLINE_DATA_FL)) {
            return copy;
        }
        BlockAccount acct = host.account(info.ino(), copy);
        FileMap map = FileMap.of(cache, info.ino(), copy, info.csumSeed(), metadataCsum, acct);
        removeInSteps(info.ino(), copy, map, acct, 0, Long.MAX_VALUE, true);
        addBlocks(copy, acct);
        return copy;
    }

    /**
     * Credits one step of {@link #removeInSteps} may need: it frees at most {@code STEP_CREDITS / 4}
     * runs and {@code STEP_CREDITS / 8} groups' worth of blocks, so it dirties at most a bitmap and
     * a descriptor block per group it touches, the tree or indirect blocks of its runs, the inode
     * and the superblock.
     */
    static final int STEP_CREDITS = 64;

    /**
     * Unmaps [{@code from}, {@code to}) ({@code to} {@link Long#MAX_VALUE} for the end of the map)
     * and frees what it mapped, in steps from the end when the mount journals
     * (ext4_ext_remove_space() with ext4_ext_truncate_extend_restart(), and
     * ext4_truncate_restart_trans() for indirect maps): each step frees a bounded run of blocks,
     * and when the running transaction has no room for another step the inode is written with its
     * map and i_blocks as they are and the handle is restarted ({@link #restart}), so one huge, fragmented
     * file never grows a transaction past what the log holds. Every step removes [its start,
     * {@code to}), whose part past the previous step's start is unmapped already, so only the first
     * step may split an extent (and need a tree block). The caller holds the inode's lock.
     *
     * <p>With {@code orphan} (a truncate or a delete: blocks past i_size or of an inode without
     * links must not survive a crash), the inode is on the orphan list before the first step can
     * commit alone: a truncate put it there with its new size, a delete is put there now (as
     * ext4_unlink() does when the last link goes), so the next mount finishes the job. A punched
     * hole needs nothing: any prefix of its steps leaves a consistent file.
     *
     * <p>Without a journal, or inside a nested handle that cannot restart, it is one removal.
     */
    void removeInSteps(long ino, Inode copy, FileMap map, BlockAccount acct, long from, long to, boolean orphan)
            throws Ext4Exception {
        long end = Math.min(to, map.maxBlocks());
        if (!tx.journaled() || from >= end) {
            map.removeRange(from, end);
            return;
        }
        java.util.List<Mapping> runs = new java.util.ArrayList<>();
        for (Mapping m = map.nextRun(from); m != null && m.logical() < end; m = map.nextRun(m.logical() + m.length())) {
            runs.add(m);
        }
        long groupBlocks = sb.blocksPerGroup();
        long maxRuns = STEP_CREDITS / 4;
        long maxBlocks = groupBlocks * (STEP_CREDITS / 8);
        int i = runs.size() - 1;
        long upper = end; // everything from here to the end of the range is gone already
        while (i >= 0) {
            long stepRuns = 0;
            long stepBlocks = 0;
            long start = upper;
            while (i >= 0 && stepRuns < maxRuns && stepBlocks < maxBlocks) {
                Mapping m = runs.get(i);
                long hi = Math.min(m.logical() + m.length(), upper);
                long take = Math.min(hi - m.logical(), maxBlocks - stepBlocks);
                start = hi - take;
                stepBlocks += take;
                stepRuns++;
                if (start == m.logical()) {
                    i--;
                } else {
                    upper = start; // the rest of this run goes in the next step
                }
            }
            start = Math.max(start, from);
            map.removeRange(start, end); // [upper, end) is unmapped already: no split past the first step
            upper = start;
            if (i >= 0 && tx.needsRestart(STEP_CREDITS)) {
                if (orphan) {
                    orphans.add(ino);
                }
                restart(tx, ino, copy, acct);
            }
        }
        map.removeRange(from, end); // what no run covered: an empty tree's root, a shrink
    }

    /**
     * Between two steps of a long change: the inode goes out as the steps left it (its map and
     * i_blocks), so the transaction may commit without the steps to come, and the handle restarts.
     */
    void restart(Transactions tx, long ino, Inode copy, BlockAccount acct) throws Ext4Exception {
        addBlocks(copy, acct);
        host.writeInode(ino, copy.copy());
        tx.restart(STEP_CREDITS);
    }

    void fallocate(long ino, int mode, long offset, long length) throws Ext4Exception {
        state.requireWritable();
        if (offset < 0 || length <= 0) {
            throw new Ext4Exception(Errno.EINVAL, "fallocate range " + offset + "+" + length);
        }
        if ((mode & (FALLOC_FL_COLLAPSE_RANGE | FALLOC_FL_INSERT_RANGE)) != 0) {
            new RangeShift(cache, metadataCsum, inodes, locks, tx, writeback, this, host).shift(ino, mode, offset, length);
            return;
        }
        int known = FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE;
        if ((mode & ~known) != 0 || ((mode & FALLOC_FL_PUNCH_HOLE) != 0 && (mode & FALLOC_FL_KEEP_SIZE) == 0)) {
            throw new Ext4Exception(Errno.EOPNOTSUPP, "fallocate mode 0x" + Integer.toHexString(mode));
        }
        try (InodeLocks.Held h = locks.lockAll(ino)) {
            InodeInfo info = inodes.get(ino);
            Inode copy = regularCopy(info);
            if (copy.hasFlag(Inode.INLINE_DATA_FL)) {
                info = convertInline(info, copy); // as ext4_fallocate(): ext4_convert_inline_data() first
                copy = info.inode().copy();
            }
            if (!copy.hasFlag(Inode.EXTENTS_FL) && (mode & FALLOC_FL_PUNCH_HOLE) == 0) {
                // as ext4_fallocate(): only punching works on block-mapped files, which have no
                // unwritten state to preallocate with (zeroed blocks past EOF would be corruption)
                throw new Ext4Exception(Errno.EOPNOTSUPP, "inode " + ino + ": fallocate mode 0x" + Integer.toHexString(mode)
                        + " needs an extent-mapped file");
            }
            BlockAccount acct = host.account(ino, copy);
            FileMap map = FileMap.of(cache, ino, copy, info.csumSeed(), metadataCsum, acct);
            long end = offset + length;
            if (end > maxSize(map)) {
                throw new Ext4Exception(Errno.EFBIG, "fallocate past the largest file size " + maxSize(map));
            }
            long memSize = inodes.get(ino).size();
            try {
                if ((mode & (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE)) != 0) {
                    long zeroEnd = (mode & FALLOC_FL_PUNCH_HOLE) != 0 ? Math.min(end, memSize) : end;
                    writeback.forgetRange(ino, offset, zeroEnd, map.hasExtents());
                    punch(ino, copy, map, acct, offset, zeroEnd);
                }
                if ((mode & FALLOC_FL_PUNCH_HOLE) == 0) {
                    preallocate(ino, copy, map, acct, offset, end);
                    if ((mode & FALLOC_FL_KEEP_SIZE) == 0 && end > memSize) {
                        writeback.zeroPageTail(ino, map, memSize);
                        copy.setSize(end);
                    }
                }
            } finally {
                Ext4FileSystem.Time now = Ext4FileSystem.Time.now();
                copy.setCtime(now.seconds(), now.nanos());
                if ((mode & (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE)) != 0) {
                    copy.setMtime(now.seconds(), now.nanos());
                }
                addBlocks(copy, acct);
                InodeInfo updated = host.writeInode(ino, copy);
                updated.mapChanged();
                if (copy.size() >= memSize) {
                    updated.sizeSettled();
                }
            }
        }
    }

    /** Frees the whole blocks inside [from, to) and zeros the partial blocks at its edges. */
    private void punch(long ino, Inode copy, FileMap map, BlockAccount acct, long from, long to) throws Ext4Exception {
        if (to <= from) {
            return;
        }
        long firstWhole = (from + bs - 1) / bs;
        long endWhole = to / bs;
        if (firstWhole < endWhole) {
            removeInSteps(ino, copy, map, acct, firstWhole, endWhole, false); // a half-punched hole is a consistent file
        }
        zeroBytes(map, from, Math.min(to, firstWhole * bs));
        if (endWhole >= firstWhole) {
            zeroBytes(map, Math.max(from, endWhole * bs), to);
        }
    }

    private void zeroBytes(FileMap map, long from, long to) throws Ext4Exception {
        if (to <= from) {
            return;
        }
        Mapping m = map.map(from / bs, 1);
        if (!m.readsAsZeros()) {
            cache.writeDirect(m.physical(), (int) (from % bs), ByteBuffer.allocate((int) (to - from)));
        }
    }

    /**
     * Allocates the holes of [from, to) as unwritten extents, one allocated run at a time. When the
     * running transaction has no room for another run the inode is written with the blocks mapped
     * so far and the handle restarts (ext4_alloc_file_blocks() starts a handle per chunk), so a
     * huge preallocation never outgrows the log. A crash between steps leaves unwritten extents
     * that i_blocks counts and i_size may not reach yet: a consistent file.
     */
    private void preallocate(long ino, Inode copy, FileMap map, BlockAccount acct, long from, long to) throws Ext4Exception {
        for (long lblk = from / bs; lblk < (to + bs - 1) / bs; ) {
            if (tx.needsRestart(STEP_CREDITS)) {
                restart(tx, ino, copy, acct);
            }
            Mapping m = map.map(lblk, Math.min((to + bs - 1) / bs - lblk, MAX_RUN - 1));
            if (!m.isHole()) {
                lblk += m.length();
                continue;
            }
            Allocator.Run run = acct.allocateData(goal(map, lblk), (int) m.length());
            Ext4Exception failed = insertOrFree(map, acct, lblk, run.start(), run.length(), true);
            if (failed != null) {
                throw failed;
            }
            lblk += run.length();
        }
    }

    /**
     * Maps newly allocated blocks. When the map fails (no block for a new tree or indirect block)
     * the blocks it did not map are given back, as ext4_ext_map_blocks() frees the blocks it could
     * not insert, and the error is returned: an extent tree maps all or nothing, an indirect map
     * may keep a prefix of the run, which stays mapped and allocated.
     */
    static Ext4Exception insertOrFree(FileMap map, BlockAccount acct, long lblk, long physical, int length, boolean unwritten)
            throws Ext4Exception {
        try {
            map.insert(lblk, physical, length, unwritten);
            return null;
        } catch (Ext4Exception | RuntimeException e) {
            try {
                int mapped = mappedPrefix(map, lblk, physical, length);
                acct.freeBlocks(physical + mapped, length - mapped);
            } catch (Ext4Exception | RuntimeException f) {
                e.addSuppressed(f);
            }
            if (e instanceof RuntimeException r) {
                throw r;
            }
            return (Ext4Exception) e;
        }
    }

    /** How many blocks from {@code lblk} are mapped to {@code physical} onward, up to {@code length}. */
    private static int mappedPrefix(FileMap map, long lblk, long physical, int length) throws Ext4Exception {
        int k = 0;
        while (k < length) {
            Mapping m = map.map(lblk + k, length - k);
            if (m.isHole() || m.physical() != physical + k) {
                break;
            }
            k += (int) m.length();
        }
        return Math.min(k, length);
    }
}
