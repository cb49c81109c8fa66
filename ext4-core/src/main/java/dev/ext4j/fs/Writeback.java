package dev.ext4j.fs;

import dev.ext4j.Ext4Exception;
import dev.ext4j.alloc.Allocator;
import dev.ext4j.pagecache.PageCache;
import dev.ext4j.pagecache.PageCache.FilePages;
import dev.ext4j.pagecache.PageCache.Page;
import dev.ext4j.blockmap.Mapping;
import dev.ext4j.format.Feature;
import dev.ext4j.format.Inode;
import dev.ext4j.format.Superblock;
import dev.ext4j.io.BufferCache;
import dev.ext4j.journal.Transactions;
import java.lang.System.Logger.Level;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.List;

/**
 * The buffered write path, iomap style (the kernel's ext4 buffered iomap series and page-io.c).
 *
 * <p>A write copies into cached pages under the inode's write lock, marks the blocks it touched
 * dirty, and promises a block for each dirty block that is a hole on disk (delayed allocation:
 * ENOSPC comes from write(), never later). i_size moves in memory only.
 *
 * <p>Writeback of an inode, in three steps: (1) under the inode's lock, take the dirty blocks
 * inside i_size with a copy of their bytes, allocate the holes among them as unwritten extents
 * (whole runs at once, so a file written in order gets long extents) and note the extent
 * sequence; (2) without the lock, write the data; (3) under the lock again, convert the blocks
 * that are still mapped where the data went to written, and move the on-disk size forward. The
 * on-disk size and the "written" state therefore never run ahead of the data, and a crash never
 * shows stale blocks. On a file with block maps instead of extents, which have no unwritten
 * state, step (1) only allocates and step (3) maps the blocks.
 */
final class Writeback {
    private static final System.Logger LOG = System.getLogger("ext4j");
    /** Longest run written back at once: the longest unwritten extent. */
    private static final int MAX_RUN = 32767;
    /** Bytes per write of the data: 1 MiB. */
    private static final int SLICE = 1 << 20;

    /** What writeback needs from the mounted filesystem. */
    interface Host {
        /** A block account for one operation on {@code ino}, with the inode's group as the first place to look. */
        BlockAccount account(long ino, Inode inode);

        /** Stamps and writes a changed inode; the caller holds its lock. */
        InodeInfo writeInode(long ino, Inode changed) throws Ext4Exception;

        /** Tells a client that caches stat that writeback changed the block count of {@code ino}. */
        void blocksChanged(long ino);
    }

    private final Superblock sb;
    private final BufferCache cache;
    private final boolean metadataCsum;
    private final Transactions tx;
    private final InodeTable inodes;
    private final InodeLocks locks;
    private final Allocator allocator;
    private final Retry retry;
    private final PageCache pages;
    private final BlockAccount.Reserve reserve;
    private final Host host;
    private final int bs;
    private final int ps;
    private final int perPage;

    Writeback(Superblock sb, BufferCache cache, Transactions tx, InodeTable inodes, InodeLocks locks, Allocator allocator, Retry retry,
              PageCache pages, BlockAccount.Reserve reserve, Host host) {
        this.sb = sb;
        this.cache = cache;
        this.metadataCsum = sb.has(Feature.METADATA_CSUM);
        this.tx = tx;
        this.inodes = inodes;
        this.locks = locks;
        this.allocator = allocator;
        this.retry = retry;
        this.host = host;
        this.pages = pages;
        this.reserve = reserve;
        this.bs = sb.blockSize();
        this.ps = pages.pageSize();
        this.perPage = pages.blocksPerPage();
    }

    PageCache pages() {
        return pages;
    }

    boolean hasPages(long ino) {
        FilePages f = pages.peek(ino);
        return f != null && !f.isEmpty();
    }

    // ------------------------------------------------------------------------------------ write

    /**
     * Copies {@code len} bytes of {@code src} into the pages of the file from {@code offset}; the
     * caller holds the inode's write lock and has checked the size limits. Returns the bytes
     * taken: fewer than asked when the space ran out part way (ENOSPC when none).
     */
    int write(long ino, long offset, ByteBuffer src, int len) throws Ext4Exception {
        InodeInfo info = inodes.withPages(ino, pages);
        FilePages f = info.pages();
        Inode copy = info.inode().copy();
        FileMap map = FileMap.of(cache, ino, copy, info.csumSeed(), metadataCsum, host.account(ino, copy));
        long size = info.size();
        boolean retried = false;
        if (offset > size) {
            zeroPageTail(info, f, map, size);
        }
        long end = offset + len;
        long pos = offset;
        MappingCache mc = new MappingCache(map, info);
        try {
            while (pos < end) {
                long index = pos / ps;
                int inPage = (int) (pos - index * ps);
                int n = (int) Math.min(ps - inPage, end - pos);
                int mask = blockMask(inPage, n);
                Page p = pageForWrite(f, map, index, inPage == 0 && n == ps, size);
                try {
                    int holes;
                    while (true) {
                        holes = 0;
                        int reservedBefore = p.reservedMask();
                        for (int b = 0; b < perPage; b++) {
                            if ((mask & (1 << b)) != 0 && (reservedBefore & (1 << b)) == 0 && mc.isHole(index * perPage + b)) {
                                holes |= 1 << b;
                            }
                        }
                        if (holes == 0) {
                            break;
                        }
                        try {
                            promise(info, Integer.bitCount(holes), map.hasExtents());
                            break;
                        } catch (Ext4Exception e) {
                            if (retried || e.errno() != dev.ext4j.Errno.ENOSPC) {
                                throw e;
                            }
                            // as ext4_should_retry_alloc(): write back this inode, which turns
                            // its promises into blocks, and try once more
                            retried = true;
                            writeback(ino);
                            info = inodes.get(ino); // the same object: pinned while it has pages
                            copy = info.inode().copy();
                            map = FileMap.of(cache, ino, copy, info.csumSeed(), metadataCsum, host.account(ino, copy));
                            mc = new MappingCache(map, info);
                        }
                    }
                    p.markDirty(mask, holes);
                    p.data.put(inPage, src, src.position(), n);
                } finally {
                    p.unpin();
                }
                src.position(src.position() + n);
                pos += n;
            }
        } catch (Ext4Exception e) {
            if (pos == offset) {
                throw e;
            }
            // a short write: what was copied stays and counts
        }
        if (pos > info.size()) {
            info.setSize(pos);
        }
        return (int) (pos - offset);
    }

    /**
     * The page at {@code index}, pinned (the caller unpins it): the cached one, or a new one filled
     * from the image unless the write covers it all.
     */
    private Page pageForWrite(FilePages f, FileMap map, long index, boolean whole, long size) throws Ext4Exception {
        Page p = f.pin(index);
        if (p != null) {
            return p;
        }
        p = f.add(index);
        if (whole) {
            return p;
        }
        try {
            zero(p.data, 0, ps);
            if (index * ps < size) {
                fill(map, index, p.data, size);
            }
        } catch (Ext4Exception | RuntimeException e) {
            p.unpin();
            f.dropRange(index, index + 1); // never filled: it must not be read
            throw e;
        }
        return p;
    }

    /** Reads the on-disk bytes of page {@code index} below {@code size} into {@code data}. */
    private void fill(FileMap map, long index, ByteBuffer data, long size) throws Ext4Exception {
        long first = index * perPage;
        int blocks = (int) Math.min(perPage, (size - index * ps + bs - 1) / bs);
        for (int b = 0; b < blocks; ) {
            Mapping m = map.map(first + b, blocks - b);
            int n = (int) Math.min(m.length(), blocks - b);
            if (!m.readsAsZeros()) {
                cache.readDirect(m.physical(), 0, data.slice(b * bs, n * bs));
            }
            b += n;
        }
    }

    private static final ByteBuffer ZEROS = ByteBuffer.allocateDirect(64 * 1024);

    /** Zeros bytes [from, to) of a page (or any buffer), its position left alone. */
    static void zero(ByteBuffer page, int from, int to) {
        for (int at = from; at < to; ) {
            int n = Math.min(to - at, ZEROS.capacity());
            page.put(at, ZEROS, 0, n);
            at += n;
        }
    }

    /** Bits of the blocks of a page that bytes [inPage, inPage+n) touch. */
    private int blockMask(int inPage, int n) {
        int first = inPage / bs;
        int last = (inPage + n - 1) / bs;
        return ((1 << (last + 1)) - 1) & ~((1 << first) - 1);
    }

    /**
     * Zeros what lies past the old EOF in its page, before a write or truncate extends the file
     * (the partial block at EOF must read as zeros past the old size); the block becomes dirty so
     * the zeros reach the image too.
     */
    void zeroPageTail(long ino, FileMap map, long size) throws Ext4Exception {
        InodeInfo info = inodes.withPages(ino, pages);
        zeroPageTail(info, info.pages(), map, size);
    }

    private void zeroPageTail(InodeInfo info, FilePages f, FileMap map, long size) throws Ext4Exception {
        int inPage = (int) (size % ps);
        if (inPage == 0) {
            return;
        }
        long index = size / ps;
        Page p = f.pin(index);
        if (p == null) {
            if (size % bs == 0 || map.map(size / bs, 1).readsAsZeros()) {
                return; // nothing on disk past EOF in its block
            }
            p = pageForWrite(f, map, index, false, size);
        }
        try {
            zero(p.data, inPage, ps);
            if (size % bs != 0) {
                int eofBlock = inPage / bs;
                int bit = 1 << eofBlock;
                int reserved = (p.reservedMask() & bit) == 0 && new MappingCache(map, info).isHole(index * perPage + eofBlock) ? bit : 0;
                if (reserved != 0) {
                    promise(info, 1, map.hasExtents());
                }
                p.markDirty(bit, reserved);
            }
        } finally {
            p.unpin();
        }
    }

    /** ext4_da_reserve_space(): {@code n} more data blocks and the metadata they may need. */
    private void promise(InodeInfo info, int n, boolean extents) throws Ext4Exception {
        promise(info, n, extents, true);
    }

    /** {@link #promise}; unchecked to take back promises given back a moment ago. */
    private void promise(InodeInfo info, int n, boolean extents, boolean checked) throws Ext4Exception {
        long meta = metaFor(info.reservedData() + n, extents) - info.reservedMeta();
        if (checked) {
            reserve.reserveDelayed(allocator::freeBlocksCount, n + Math.max(0, meta));
        } else {
            reserve.restoreDelayed(n + Math.max(0, meta));
        }
        info.setReserved(info.reservedData() + n, info.reservedMeta() + Math.max(0, meta));
    }

    /** Gives back {@code n} data blocks' promise and the metadata promise they no longer need. */
    private void unpromise(InodeInfo info, long n, boolean extents) {
        long data = Math.max(0, info.reservedData() - Math.max(0, n));
        long meta = Math.min(info.reservedMeta(), metaFor(data, extents));
        long back = (info.reservedData() - data) + (info.reservedMeta() - meta);
        info.setReserved(data, meta);
        if (back > 0) {
            reserve.releaseDelayed(back);
        }
    }

    /**
     * Worst-case map blocks for {@code data} delayed blocks: a leaf (or indirect block) per full
     * node of single-block runs, and a block per tree level above.
     */
    private long metaFor(long data, boolean extents) {
        if (data == 0 || extents && reserve.poolsMetadata()) {
            return 0; // extent blocks come from the reserved pool (s_resv_clusters), as the kernel's
        }
        long perNode = extents ? (bs - 12) / 12 : bs / 4;
        return (data + perNode - 1) / perNode + 2;
    }

    /** The last mapping looked up, reused while the extent sequence says it still holds. */
    private static final class MappingCache {
        private final FileMap map;
        private final InodeInfo info;
        private Mapping last;
        private long seq;

        MappingCache(FileMap map, InodeInfo info) {
            this.map = map;
            this.info = info;
        }

        boolean isHole(long lblk) throws Ext4Exception {
            if (last == null || seq != info.mapSeq() || lblk < last.logical() || lblk >= last.logical() + last.length()) {
                seq = info.mapSeq();
                last = map.map(lblk, MAX_RUN);
            }
            return last.isHole();
        }
    }

    // -------------------------------------------------------------------------------- writeback

    /**
     * A run of dirty blocks taken for writeback: where they go, and the pages their bytes are in
     * ({@code pages[from + k]} holds block {@code lblk + k}). The bytes are read from the live
     * pages when written: a write meanwhile dirties its page again, so the next writeback writes
     * the newer bytes.
     */
    private record Run(long lblk, int length, long physical, boolean fresh, boolean unwritten, Page[] pages, int from) {
    }

    /** A reused direct buffer for data writes, so the JDK needs no temporary copy. */
    private static final ThreadLocal<ByteBuffer> IO_BUFFER = ThreadLocal.withInitial(() -> ByteBuffer.allocateDirect(SLICE));

    /** Writes run {@code r}'s bytes to its blocks, a slice at a time. */
    private void writeRun(Run r) throws Ext4Exception {
        ByteBuffer buf = IO_BUFFER.get();
        int perSlice = SLICE / bs;
        for (int k = 0; k < r.length(); k += perSlice) {
            int n = Math.min(perSlice, r.length() - k);
            buf.clear();
            for (int j = k; j < k + n; j++) {
                int inPage = (int) ((r.lblk() + j) % perPage) * bs;
                buf.put((j - k) * bs, r.pages()[r.from() + j].data, inPage, bs);
            }
            buf.limit(n * bs);
            cache.writeDirect(r.physical() + k, 0, buf);
        }
    }

    /**
     * Writes back the dirty blocks of inode {@code ino} that no other writeback holds; returns when
     * they are written and mapped. Pages another writeback is writing stay dirty for the next one,
     * so two writes of one block never race (see {@link #writebackFully}).
     */
    void writeback(long ino) throws Ext4Exception {
        FilePages f = pages.peek(ino);
        if (f == null || !f.hasDirty()) {
            return;
        }
        List<Page> taken = new ArrayList<>();
        List<Run> runs;
        long cookie;
        List<long[]> ticket = new ArrayList<>();
        InodeInfo info;
        long blocksBefore;
        f.beginRound();
        try {
            try (InodeLocks.Held h = locks.lockAll(ino)) {
                info = inodes.get(ino); // pinned while f is in the page cache
                blocksBefore = blocks(info);
                java.util.Map<Page, Integer> promisesBack = new java.util.IdentityHashMap<>();
                try {
                    runs = prepare(ino, info, f, taken, promisesBack);
                } catch (Ext4Exception | RuntimeException e) {
                    for (Page p : taken) {
                        p.endWriteback(true, promisesBack.getOrDefault(p, 0)); // dirty again, for a retry
                    }
                    throw e;
                }
                cookie = info.mapSeq();
                info.tickets().add(ticket);
                f.startIo();
            }
            Ext4Exception failed = null;
            try {
                for (Run r : runs) {
                    writeRun(r);
                }
            } catch (Ext4Exception e) {
                failed = e;
            } finally {
                f.endIo();
            }
            try (InodeLocks.Held h = locks.lockAll(ino)) {
                boolean completed = false;
                try {
                    if (pages.peek(ino) == f) {
                        complete(ino, info, runs, cookie, ticket, failed == null);
                        if (blocks(info) != blocksBefore) {
                            host.blocksChanged(ino);
                        }
                    } else {
                        // deleted meanwhile: its mapped blocks went with it, but a block map's
                        // new blocks are mapped only on completion, so they are ours to free
                        for (Run r : runs) {
                            if (r.fresh() && !r.unwritten()) {
                                allocator.freeBlocks(r.physical(), r.length());
                            }
                        }
                    }
                    completed = true;
                } finally {
                    info.tickets().remove(ticket);
                    for (Page p : taken) {
                        // a failed write or completion leaves the pages dirty: what was not mapped is written again
                        p.endWriteback(failed != null || !completed);
                    }
                }
            }
            if (failed != null) {
                throw failed;
            }
        } finally {
            f.endRound();
        }
    }

    /** i_blocks of the inode, in 512-byte units. */
    private long blocks(InodeInfo info) {
        return info.inode().blocks512(sb.has(Feature.HUGE_FILE), bs);
    }

    /** Writes back until nothing of the inode is dirty or being written (fsync, sync, unmount). */
    void writebackFully(long ino) throws Ext4Exception {
        FilePages f = pages.peek(ino);
        if (f == null) {
            return;
        }
        for (int round = 0; round < 1000; round++) {
            writeback(ino);
            f.awaitWritebacks();
            if (!f.hasDirty()) {
                return;
            }
        }
        throw new Ext4Exception(dev.ext4j.Errno.EIO, "inode " + ino + ": writeback did not settle");
    }

    /**
     * Journal credits one run of new blocks may take when it is mapped: a map path that splits
     * (extent leaf and index, or indirect blocks), a bitmap and a descriptor, the inode.
     */
    private static final int RUN_CREDITS = 10;
    /** At most this many credits per round, however large the journal. */
    private static final int MAX_ROUND_CREDITS = 2048;

    /** Step 1, under the inode's lock: take the dirty blocks, allocate the holes, copy the bytes. */
    private List<Run> prepare(long ino, InodeInfo info, FilePages f, List<Page> taken,
            java.util.Map<Page, Integer> promisesBack) throws Ext4Exception {
        Inode copy = info.inode().copy();
        long size = info.size();
        long eofBlocks = (size + bs - 1) / bs;
        // the dirty blocks inside i_size, in order: each one's number, page and promise, in
        // arrays rather than an object per block, as a writeback can take a million blocks
        int count = 0;
        long[] lblks = new long[64];
        Page[] pageOf = new Page[64];
        boolean[] promised = new boolean[64];
        long beyond = 0;
        // what one round may take is bounded by the journal credits mapping it can use (as
        // ext4_writepages() sizes its handle): the rest stays dirty for the next round
        int budget = Math.max(RUN_CREDITS, Math.min(tx.maxCredits() / 2, MAX_ROUND_CREDITS));
        int credits = 0;
        long prev = -2;
        long groupBlocks = sb.blocksPerGroup();
        for (Page p : f.dirtyFrom(0)) {
            if (credits + RUN_CREDITS > budget) {
                break;
            }
            long took = p.takeForWriteback(f);
            if (took == 0) {
                continue; // clean, or another writeback is writing it: the next round takes it
            }
            int dirty = (int) took;
            int reserved = (int) (took >>> 32);
            taken.add(p);
            for (int b = 0; b < perPage; b++) {
                if ((dirty & (1 << b)) == 0) {
                    continue;
                }
                long lblk = p.index() * perPage + b;
                if (lblk >= eofBlocks) {
                    beyond += (reserved >> b) & 1; // past EOF: dropped, its promise given back
                    continue;
                }
                if (count == lblks.length) {
                    lblks = java.util.Arrays.copyOf(lblks, 2 * count);
                    pageOf = java.util.Arrays.copyOf(pageOf, 2 * count);
                    promised = java.util.Arrays.copyOf(promised, 2 * count);
                }
                // a new run may split the map and start in a new group; a long one crosses groups
                credits += lblk != prev + 1 ? RUN_CREDITS : lblk % groupBlocks == 0 ? 2 : 0;
                prev = lblk;
                lblks[count] = lblk;
                pageOf[count] = p;
                promised[count++] = ((reserved >> b) & 1) != 0;
            }
        }
        boolean extents = copy.hasFlag(Inode.EXTENTS_FL);
        unpromise(info, beyond, extents);
        if (count == 0) {
            return List.of();
        }
        if (!tx.extend(credits + 1)) {
            tx.restart(credits + 1); // nothing changed yet in this handle
        }
        BlockAccount acct = host.account(ino, copy).reserved();
        FileMap map = FileMap.of(cache, ino, copy, info.csumSeed(), metadataCsum, acct);
        List<Run> runs = new ArrayList<>();
        long promisedUsed = 0;
        try {
            int i = 0;
            while (i < count) {
                // a run of consecutive logical blocks with the same on-disk state
                long lblk = lblks[i];
                Mapping m = map.map(lblk, MAX_RUN);
                int j = i + 1;
                while (j < count && lblks[j] == lblk + (j - i) && j - i < m.length()) {
                    j++;
                }
                int n = j - i;
                if (m.isHole()) {
                    // the promise becomes these blocks in one step for statfs and new promises,
                    // which would otherwise count the blocks twice, allocated and promised
                    Allocator.Run got;
                    int kept;
                    reserve.beginKeeping();
                    try {
                        got = acct.allocateData(goal(map, lblk), n);
                        n = got.length();
                        kept = count(promised, i, n);
                        unpromise(info, kept, extents);
                    } finally {
                        reserve.endKeeping();
                    }
                    if (extents) {
                        try {
                            map.insert(lblk, got.start(), n, true);
                        } catch (Ext4Exception | RuntimeException e) {
                            acct.freeBlocks(got.start(), n); // no block of the run is mapped: blocks and promise go back
                            promise(info, kept, extents, false);
                            throw e;
                        }
                    }
                    runs.add(new Run(lblk, n, got.start(), true, extents, pageOf, i));
                } else {
                    // already mapped (or filled by fallocate meanwhile: the promise goes)
                    runs.add(new Run(lblk, n, m.physical(), false, m.unwritten(), pageOf, i));
                    promisedUsed += count(promised, i, n);
                }
                i += n;
            }
        } catch (Ext4Exception | RuntimeException e) {
            // nothing of this round is written (an ENOSPC from blocks that wait for a commit, which
            // the caller may commit and retry): a block map's new blocks are not mapped yet and go
            // back, with their promises, extent runs stay mapped unwritten; blocks left without an
            // allocation keep their promises, which go back to their pages
            boolean[] allocated = new boolean[count];
            int promisedAgain = 0;
            for (Run r : runs) {
                boolean back = r.fresh() && !extents;
                if (back) {
                    acct.freeBlocks(r.physical(), r.length());
                }
                for (int k = r.from(); k < r.from() + r.length(); k++) {
                    allocated[k] = !back;
                    promisedAgain += back && promised[k] ? 1 : 0;
                }
            }
            promise(info, promisedAgain, extents, false);
            for (int k = 0; k < count; k++) {
                if (promised[k] && !allocated[k]) {
                    promisesBack.merge(pageOf[k], 1 << (int) (lblks[k] % perPage), (a, b) -> a | b);
                }
            }
            throw e;
        } finally {
            unpromise(info, promisedUsed, extents);
            if (acct.delta() != 0) {
                info.mapChanged();
                long sectors = copy.blocks512(sb.has(Feature.HUGE_FILE), bs) + acct.delta() * (bs / 512);
                copy.setBlocks512(Math.max(0, sectors), bs);
                host.writeInode(ino, copy);
            }
        }
        return runs;
    }

    /** How many of {@code flags[from, from + n)} are set. */
    private static int count(boolean[] flags, int from, int n) {
        int c = 0;
        for (int k = from; k < from + n; k++) {
            c += flags[k] ? 1 : 0;
        }
        return c;
    }

    /** Goal for new data at {@code lblk}: right after the block before it, when that is mapped. */
    private static long goal(FileMap map, long lblk) throws Ext4Exception {
        if (lblk == 0) {
            return 0;
        }
        Mapping prev = map.map(lblk - 1, 1);
        return prev.isHole() ? 0 : prev.physical() + 1;
    }

    /**
     * Step 3, under the inode's lock: the data is written, so the blocks still mapped where it went
     * become written (or, on block-mapped files, get mapped), and the on-disk size moves up to the
     * end of what was written, capped at i_size.
     */
    private void complete(long ino, InodeInfo info, List<Run> runs, long cookie, List<long[]> cancelled, boolean written)
            throws Ext4Exception {
        if (runs.isEmpty()) {
            return;
        }
        // each run may split the map or, in a block map, need new indirect blocks; nothing is
        // changed yet under this handle, so it may restart first
        int credits = runs.size() * RUN_CREDITS + 2;
        if (!tx.extend(credits)) {
            tx.restart(credits);
        }
        Inode copy = info.inode().copy();
        BlockAccount acct = host.account(ino, copy).reserved();
        FileMap map = FileMap.of(cache, ino, copy, info.csumSeed(), metadataCsum, acct);
        boolean stale = info.mapSeq() != cookie || !cancelled.isEmpty();
        long size = info.size();
        long reached = copy.size();
        Ext4Exception failure = null;
        for (Run r : runs) {
            if (!written || failure != null) {
                if (r.fresh() && !map.hasExtents()) {
                    acct.freeBlocks(r.physical(), r.length()); // never mapped: give the blocks back
                }
                continue;
            }
            int done = r.length();
            int through = r.length(); // blocks of the run settled one way or the other
            if (map.hasExtents()) {
                if (r.unwritten()) {
                    try {
                        done = convertWhereStillMapped(map, r, stale, cancelled);
                    } catch (Ext4Exception e) {
                        failure = e; // no block for a split: the rest stays unwritten, a consistent file
                        continue;
                    }
                }
            } else if (r.fresh()) {
                Mapped m = mapWhereStillHoles(map, acct, r, size, cancelled);
                failure = m.failure();
                done = m.mapped();
                through = m.settled();
            }
            if (done > 0) {
                reached = Math.max(reached, Math.min(size, (r.lblk() + through) * bs));
            }
        }
        if (written) {
            copy.setSize(Math.max(copy.size(), reached));
        }
        long sectors = copy.blocks512(sb.has(Feature.HUGE_FILE), bs) + acct.delta() * (bs / 512);
        copy.setBlocks512(Math.max(0, sectors), bs);
        info.mapChanged();
        host.writeInode(ino, copy);
        info.sizeReached(copy.size()); // after the on-disk size is stored: see InodeInfo.size()
        if (failure != null) {
            throw failure;
        }
    }

    /** Whether a truncate or punch took block {@code l} away during the writeback. */
    private static boolean cancelled(List<long[]> cancelled, long l) {
        for (long[] c : cancelled) {
            if (l >= c[0] && l < c[1]) {
                return true;
            }
        }
        return false;
    }

    /** The first cancelled block in (l, end), or end. */
    private static long nextCancelled(List<long[]> cancelled, long l, long end) {
        long next = end;
        for (long[] c : cancelled) {
            if (c[0] > l && c[0] < next) {
                next = c[0];
            }
        }
        return next;
    }

    /**
     * Converts the blocks of {@code r} that are still unwritten at the place the data went. With
     * a current cookie that is all of them; otherwise each is looked up again (a truncate, punch
     * or fallocate changed the map while the data was in flight), and blocks taken away then are
     * left alone.
     */
    private int convertWhereStillMapped(FileMap map, Run r, boolean stale, List<long[]> cancelled) throws Ext4Exception {
        if (!stale) {
            map.markWritten(r.lblk(), r.length());
            return r.length();
        }
        int done = 0;
        long end = r.lblk() + r.length();
        for (long l = r.lblk(); l < end; ) {
            if (cancelled(cancelled, l)) {
                l++;
                continue;
            }
            long stop = nextCancelled(cancelled, l, end);
            Mapping m = map.map(l, stop - l);
            long n = Math.min(m.length(), stop - l);
            if (m.unwritten() && m.physical() == r.physical() + (l - r.lblk())) {
                map.markWritten(l, n);
                done += (int) n;
            }
            l += n;
        }
        return done;
    }

    /** What {@link #mapWhereStillHoles} did: blocks mapped, blocks settled from the run's start, and the failure that stopped it. */
    private record Mapped(int mapped, int settled, Ext4Exception failure) {
    }

    /**
     * Maps the fresh blocks of {@code r} whose logical blocks are still holes inside i_size; frees
     * the rest. When a block cannot be mapped (no block for an indirect block), it and the rest of
     * the run are freed and the failure is returned: the caller keeps their pages dirty.
     */
    private Mapped mapWhereStillHoles(FileMap map, BlockAccount acct, Run r, long size, List<long[]> cancelled)
            throws Ext4Exception {
        long eofBlocks = (size + bs - 1) / bs;
        int mapped = 0;
        for (int k = 0; k < r.length(); k++) {
            long l = r.lblk() + k;
            if (l < eofBlocks && !cancelled(cancelled, l) && map.map(l, 1).isHole()) {
                Ext4Exception failed = FileWrite.insertOrFree(map, acct, l, r.physical() + k, 1, false);
                if (failed != null) {
                    acct.freeBlocks(r.physical() + k + 1, r.length() - k - 1);
                    return new Mapped(mapped, k, failed);
                }
                mapped++;
            } else {
                acct.freeBlocks(r.physical() + k, 1);
            }
        }
        return new Mapped(mapped, r.length(), null);
    }

    // ------------------------------------------------------------------- truncate, punch, delete

    /**
     * Before the map of [fromByte, toByte) changes (truncate, punch, zero range, delete): waits
     * for data writes in flight, drops the whole pages inside and gives back their promises, and
     * zeros the covered bytes of the pages at the edges. The caller holds the inode's write lock.
     */
    void forgetRange(long ino, long fromByte, long toByte, boolean extents) {
        InodeInfo info = inodes.pinned(ino);
        FilePages f = info == null ? null : info.pages();
        if (f == null) {
            return;
        }
        f.awaitIo();
        for (List<long[]> ticket : info.tickets()) {
            ticket.add(new long[] {fromByte / bs, toByte == Long.MAX_VALUE ? Long.MAX_VALUE : (toByte + bs - 1) / bs});
        }
        long firstWhole = (fromByte + ps - 1) / ps;
        long endWhole = toByte == Long.MAX_VALUE ? Long.MAX_VALUE : toByte / ps;
        long freed = 0;
        if (firstWhole < endWhole) {
            freed += f.dropRange(firstWhole, endWhole);
        }
        freed += zeroInPage(f, fromByte, Math.min(toByte, firstWhole * ps));
        if (toByte != Long.MAX_VALUE && endWhole >= firstWhole) {
            freed += zeroInPage(f, Math.max(fromByte, endWhole * ps), toByte);
        }
        unpromise(info, freed, extents);
        info.mapChanged();
    }

    /** Zeros [from, to) inside one cached page; blocks wholly inside stop being dirty. */
    private long zeroInPage(FilePages f, long from, long to) {
        if (to <= from) {
            return 0;
        }
        Page p = f.pin(from / ps);
        if (p == null) {
            return 0;
        }
        try {
            int a = (int) (from % ps);
            int b = (int) Math.min(ps, a + (to - from));
            zero(p.data, a, b);
            int firstWhole = (a + bs - 1) / bs;
            int endWhole = b / bs;
            int mask = 0;
            for (int k = firstWhole; k < endWhole; k++) {
                mask |= 1 << k;
            }
            int partial = (1 << ((b - 1) / bs + 1)) - (1 << (a / bs)) & ~mask;
            if (partial != 0 && p.underWriteback()) {
                // the writeback in flight will not convert these blocks (they are cancelled), so the
                // bytes they keep are written again by the next one
                p.markDirty(partial, 0);
            }
            return Integer.bitCount(p.clearBlocks(mask));
        } finally {
            p.unpin();
        }
    }

    /**
     * ext4_nonda_switch(): true when free space is so low (less than half again the delayed
     * blocks, or fewer than a watermark more) that writes should allocate at once instead.
     */
    boolean lowOnSpace() {
        long free = allocator.freeBlocksCount();
        long dirty = reserve.delayed();
        return 2 * free < 3 * dirty || free < dirty + LOW_SPACE_WATERMARK;
    }

    /** Free blocks under which writes stop being delayed: the kernel's 4 * 32 * CPUs for 2 CPUs. */
    private static final long LOW_SPACE_WATERMARK = 256;

    /**
     * Drops the cached pages of [from, to), which a write-through is about to overwrite, and says
     * whether it did: not while one of them is dirty or under writeback (another writeback took it
     * and a write dirtied it again meanwhile), whose data and promise must stay.
     */
    boolean forgetCached(long ino, long from, long to) {
        FilePages f = pages.peek(ino);
        if (f == null) {
            return true;
        }
        f.awaitIo(); // a writeback may be writing from these pages' frames
        return f.dropRangeIfClean(from / ps, (to + ps - 1) / ps);
    }

    /**
     * Before collapse or insert range moves blocks to other offsets: true when the inode has no
     * dirty page, no page under writeback and no writeback between its two locked steps, and then
     * its cached pages are dropped (they would hold the bytes of the old offsets); false while any
     * of that is left, for the caller to write back without the inode's lock and ask again. The
     * caller holds the inode's write lock, so no page becomes dirty meanwhile.
     */
    boolean dropAllIfQuiet(long ino) {
        InodeInfo info = inodes.pinned(ino);
        FilePages f = info == null ? null : info.pages();
        if (f == null) {
            return true;
        }
        f.awaitIo();
        if (!info.tickets().isEmpty() || !f.dropRangeIfClean(0, Long.MAX_VALUE)) {
            return false;
        }
        info.mapChanged();
        return true;
    }

    /** The inode is being deleted: its pages and promises go, and the inode table unpins it. */
    void evict(long ino, boolean extents) {
        InodeInfo info = inodes.pinned(ino);
        FilePages f = info == null ? null : info.pages();
        if (f == null) {
            return;
        }
        f.awaitIo();
        unpromise(info, f.dropFrom(0), extents);
        inodes.dropPages(ino, pages);
    }

    // ------------------------------------------------------------------------------- flushing

    /** Writes back every inode with dirty pages (sync, fsync, freeze, unmount). */
    void writebackAll() throws Ext4Exception {
        Ext4Exception first = null;
        for (FilePages f : pages.dirtyFiles()) {
            long released = retry.releases();
            try {
                writebackFully(f.ino);
            } catch (Ext4Exception e) {
                LOG.log(retry.waitsForCommit(e, released) ? Level.DEBUG : Level.ERROR, "writeback of inode " + f.ino + " failed: " + e.getMessage());
                if (first == null) {
                    first = e;
                }
            }
        }
        if (first != null) {
            throw first;
        }
    }

    /**
     * After the last writeback of an unmount every promise was kept or given back; an error in
     * their accounting (which only ever shows in statfs and in early ENOSPC) is logged here.
     */
    void checkPromisesKept() {
        long left = reserve.delayed();
        if (left != 0) {
            LOG.log(Level.WARNING, "delayed allocation: " + left + " blocks still promised after the last writeback, by inodes "
                    + inodes.withPromises() + " (an accounting error: statfs showed that many blocks fewer free; the image is not affected)");
        }
    }

    /**
     * The flusher's round, oldest inode first: inodes dirtied longer than {@code expireNanos} ago,
     * and when dirty pages exceed {@code backgroundBytes}, more until they are down to half of it.
     * The margin matters for many small files: stopping right under the threshold, the next write
     * of a few KiB started another round (and another sort of every dirty inode) per file.
     * Then clean pages past the cache bound are evicted.
     */
    void flusherRound(long expireNanos, long backgroundBytes) throws Ext4Exception {
        long now = System.nanoTime();
        long target = pages.dirtyBytes() > backgroundBytes ? backgroundBytes / 2 : Long.MAX_VALUE;
        for (FilePages f : pages.dirtyFiles()) {
            boolean expired = now - f.dirtiedWhen() >= expireNanos;
            if (!expired && pages.dirtyBytes() <= target) {
                break; // the rest were dirtied later still
            }
            writeback(f.ino);
        }
        pages.shrink();
        releaseIdle();
    }

    /**
     * Inodes whose pages were all evicted let go of their page set, and with it of their pin in
     * the inode table, once they hold no writeback state: what stays in memory is bounded by the
     * page cache, not by how many files were written since the mount.
     */
    void releaseIdle() {
        for (FilePages f : pages.idleFiles()) {
            try (InodeLocks.Held h = locks.lockAll(f.ino)) {
                InodeInfo info = inodes.pinned(f.ino);
                if (info != null && info.pages() == f && f.idle() && info.idle()) {
                    inodes.dropPages(f.ino, pages);
                }
            }
        }
    }

    /** After a write: past the dirty limit the writer writes back its own inode (balance_dirty_pages). */
    void balance(long ino, long dirtyLimit) throws Ext4Exception {
        if (pages.dirtyBytes() > dirtyLimit) {
            writeback(ino);
        }
        if (pages.bytes() > pages.maxBytes()) {
            pages.shrink();
        }
    }
}
