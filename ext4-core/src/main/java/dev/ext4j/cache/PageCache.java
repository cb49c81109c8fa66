package dev.ext4j.cache;

import java.nio.ByteBuffer;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.atomic.AtomicLong;

/**
 * File data pages (the page cache of the kernel's buffered I/O path), for every inode, bounded in
 * bytes. A page holds {@link #pageSize()} bytes of one file, always whole: a page that a write only
 * partly covers is first filled from the image (or zeros), so reads can be answered from any page.
 *
 * <p>Pages change only under their inode's write lock (writes, truncate, writeback); reads look
 * them up under the read lock. Eviction, from any thread, takes only clean pages that are not
 * under writeback, and each page's own monitor decides the race with a writer that is about to
 * dirty it. Dirty pages are never evicted: writeback cleans them (see fs.Writeback).
 *
 * <p>Page memory is direct memory in frames of one page, carved from chunks as the cache grows to
 * its bound and reused through a free list, so the cache costs the garbage collector nothing and
 * its footprint is the bound. A reader copies from a page without a lock that eviction would
 * take, so it checks afterwards that the page was not evicted (and its frame reused) meanwhile:
 * see {@link Page#evicted()}.
 */
public final class PageCache {
    private final int pageSize;
    private final int blockSize;
    private final long maxBytes;
    private final ConcurrentHashMap<Long, FilePages> files = new ConcurrentHashMap<>();
    /** Clean pages in the order they became clean; a page seen again since gets a second chance. */
    private final ConcurrentLinkedQueue<Page> clean = new ConcurrentLinkedQueue<>();
    private final AtomicLong bytes = new AtomicLong();
    private final AtomicLong dirtyBytes = new AtomicLong();
    /** Frames not in use; under its own monitor. */
    private final ArrayDeque<ByteBuffer> freeFrames = new ArrayDeque<>();
    /** Frames carved so far, at most maxBytes / pageSize. Under freeFrames' monitor. */
    private long framesMade;
    /** Bytes of direct memory carved at once. */
    private static final int CHUNK = 4 << 20;

    public PageCache(int blockSize, long maxBytes) {
        this.blockSize = blockSize;
        this.pageSize = Math.max(4096, blockSize);
        this.maxBytes = Math.max(maxBytes, 64L * pageSize);
    }

    /**
     * A free frame: from the free list, from a new chunk while the bound allows, else from clean
     * pages evicted now. Null when every frame holds a dirty page or one under writeback.
     */
    private ByteBuffer takeFrame() {
        for (int attempt = 0; attempt < 2; attempt++) {
            synchronized (freeFrames) {
                ByteBuffer f = freeFrames.poll();
                if (f != null) {
                    return f;
                }
                long room = maxBytes / pageSize - framesMade;
                if (room > 0) {
                    int n = (int) Math.min(room, Math.max(1, CHUNK / pageSize));
                    ByteBuffer chunk = ByteBuffer.allocateDirect(n * pageSize);
                    for (int i = 1; i < n; i++) {
                        freeFrames.push(chunk.slice(i * pageSize, pageSize));
                    }
                    framesMade += n;
                    return chunk.slice(0, pageSize);
                }
            }
            evictUntil(Math.min(bytes.get(), maxBytes) - pageSize);
        }
        return null;
    }

    private void giveFrame(ByteBuffer frame) {
        if (frame.isDirect()) { // heap frames are the overflow of a full cache: the collector takes them
            synchronized (freeFrames) {
                freeFrames.push(frame);
            }
        }
    }

    public int pageSize() {
        return pageSize;
    }

    public int blocksPerPage() {
        return pageSize / blockSize;
    }

    public long maxBytes() {
        return maxBytes;
    }

    public long bytes() {
        return bytes.get();
    }

    public long dirtyBytes() {
        return dirtyBytes.get();
    }

    /** The pages of inode {@code ino}, made on first use. */
    public FilePages of(long ino) {
        return files.computeIfAbsent(ino, FilePages::new);
    }

    /** The pages of inode {@code ino}, or null when it has none. */
    public FilePages peek(long ino) {
        return files.get(ino);
    }

    /** Inodes that have dirty pages or a writeback under way, oldest first dirtied first. */
    public List<FilePages> dirtyFiles() {
        List<FilePages> out = new ArrayList<>();
        for (FilePages f : files.values()) {
            if (f.dirtyPages.get() > 0 || f.busy()) {
                out.add(f);
            }
        }
        out.sort((a, b) -> Long.compare(a.oldestDirtyNanos(), b.oldestDirtyNanos()));
        return out;
    }

    /** Forgets an inode's pages (it was deleted). Its dirty pages must have been dropped first. */
    public void remove(long ino) {
        FilePages f = files.remove(ino);
        if (f != null) {
            f.dropFrom(0);
        }
    }

    /**
     * Evicts clean pages until the cache is back under its bound (or nothing more can go). Dirty
     * pages are counted but not evicted; the caller starts writeback for those.
     */
    public void shrink() {
        evictUntil(maxBytes);
    }

    private void evictUntil(long target) {
        long budget = 2 * (bytes.get() / pageSize) + 16; // every queued page at most twice
        while (bytes.get() > target && budget-- > 0) {
            Page p = clean.poll();
            if (p == null) {
                return;
            }
            synchronized (p) {
                if (p.evicted || p.dirtyMask != 0 || p.writeback || p.filling) {
                    continue; // gone, or no longer clean, or still being filled: queued again when clean
                }
                if (p.referenced) {
                    p.referenced = false;
                    clean.add(p);
                    continue;
                }
                p.evicted = true;
                p.owner.pages.remove(p.index, p);
            }
            bytes.addAndGet(-pageSize);
            giveFrame(p.data);
        }
    }

    /** One page of a file. Fields other than the data are guarded by the page's monitor. */
    public final class Page {
        public final long index;
        /** The page's bytes: a frame, used only with absolute gets and puts. */
        public final ByteBuffer data;
        final FilePages owner;
        /** Blocks changed since their last writeback, one bit per block of the page. */
        int dirtyMask;
        /** Dirty blocks that were holes when dirtied: each holds a delayed-allocation reservation. */
        int reservedMask;
        /** When the page was first dirtied (System.nanoTime()). */
        long dirtiedAt;
        /** Being written back: it must stay until its blocks are converted to written. */
        boolean writeback;
        /** The blocks the current writeback took. */
        int takenMask;
        boolean referenced;
        volatile boolean evicted;
        /** New, and its writer has not dirtied it yet: its frame must not be taken away. */
        boolean filling = true;

        Page(FilePages owner, long index, ByteBuffer data) {
            this.owner = owner;
            this.index = index;
            this.data = data;
        }

        public synchronized int dirtyMask() {
            return dirtyMask;
        }

        public synchronized int reservedMask() {
            return reservedMask;
        }

        public synchronized boolean underWriteback() {
            return writeback;
        }

        /**
         * Marks blocks dirty (and which of them hold a reservation); returns false when the page
         * was evicted meanwhile, in which case the caller gets a new one.
         */
        public synchronized boolean markDirty(int blocks, int reserved) {
            if (evicted) {
                return false;
            }
            filling = false;
            if (dirtyMask == 0) {
                dirtiedAt = System.nanoTime();
                owner.dirtyPages.incrementAndGet();
                dirtyBytes.addAndGet(pageSize);
            }
            dirtyMask |= blocks;
            reservedMask |= reserved;
            return true;
        }

        /** Writeback took the dirty blocks: the page is clean but pinned until {@link #endWriteback}. */
        public synchronized void startWriteback() {
            if (dirtyMask != 0) {
                owner.dirtyPages.decrementAndGet();
                dirtyBytes.addAndGet(-pageSize);
            }
            takenMask = dirtyMask;
            dirtyMask = 0;
            reservedMask = 0;
            writeback = true;
        }

        /** The writeback is over; when its data write failed, the blocks it took are dirty again. */
        public synchronized void endWriteback(boolean failed) {
            writeback = false;
            if (failed && takenMask != 0 && !evicted) {
                markDirty(takenMask, 0);
            }
            takenMask = 0;
            if (dirtyMask == 0 && !evicted) {
                clean.add(this);
            }
        }

        /** Clears blocks {@code mask} without writing them (truncated away); returns the reserved ones. */
        public synchronized int clearBlocks(int mask) {
            int freed = reservedMask & mask;
            boolean wasDirty = dirtyMask != 0;
            dirtyMask &= ~mask;
            reservedMask &= ~mask;
            if (wasDirty && dirtyMask == 0) {
                owner.dirtyPages.decrementAndGet();
                dirtyBytes.addAndGet(-pageSize);
                if (!writeback) {
                    clean.add(this);
                }
            }
            return freed;
        }

        /** The writer that made the page did not dirty it after all: it may be evicted. */
        public synchronized void filled() {
            if (filling) {
                filling = false;
                if (dirtyMask == 0 && !writeback && !evicted) {
                    clean.add(this);
                }
            }
        }

        public void touch() {
            referenced = true;
        }

        /**
         * Whether the page left the cache: a reader that copied from it without the inode's write
         * lock asks afterwards, and reads again from the image when it did (only clean pages are
         * evicted behind a reader's back, so the image holds the same bytes).
         */
        public boolean evicted() {
            java.lang.invoke.VarHandle.acquireFence(); // the copy happens before this read
            return evicted;
        }
    }

    /** The pages of one inode, by page index, and its size as writes left it in memory. */
    public final class FilePages {
        public final long ino;
        final PageTable<Page> pages = new PageTable<>();
        final AtomicLong dirtyPages = new AtomicLong();
        /** i_size when writes moved it past the size on disk (i_disksize); -1 otherwise. Under the inode lock. */
        private volatile long size = -1;
        /**
         * The extent status sequence: bumped by every change to the inode's block map, so a
         * mapping looked up earlier can tell whether it still holds (the validity cookie).
         */
        public final AtomicLong mapSeq = new AtomicLong();
        /** Delayed-allocation reservations of this inode: data blocks, and metadata blocks for them. */
        public long reservedData;
        public long reservedMeta;
        /** Writebacks whose data writes are in flight; truncate and punch wait for none. */
        private int inFlight;
        /**
         * The writebacks between their two locked steps, each with the logical block ranges
         * [from, to) that a truncate or punch took away meanwhile, which it must not map or
         * convert. Under the inode's lock.
         */
        public final List<List<long[]>> tickets = new ArrayList<>();
        /** Writebacks started and not yet finished; under this object's monitor. */
        private int writebacks;

        FilePages(long ino) {
            this.ino = ino;
        }

        /** The first cached page index at or after {@code index}, or -1. */
        public long nextIndex(long index) {
            return pages.nextIndex(index);
        }

        public boolean isEmpty() {
            return pages.isEmpty();
        }

        public Page get(long index) {
            Page p = pages.get(index);
            if (p != null) {
                p.referenced = true;
            }
            return p;
        }

        /**
         * A new page at {@code index} with undefined bytes, for the caller (who holds the inode's
         * write lock) to fill; null when the cache is full of dirty pages, which the caller writes
         * back before it asks again.
         */
        public Page add(long index) {
            ByteBuffer frame = takeFrame();
            return frame == null ? null : install(index, frame);
        }

        /** A new page over the cache's bound, in heap memory: for when writeback could not make room. */
        public Page addOverflow(long index) {
            return install(index, ByteBuffer.allocate(pageSize));
        }

        private Page install(long index, ByteBuffer frame) {
            Page fresh = new Page(this, index, frame);
            Page had = pages.putIfAbsent(index, fresh);
            if (had != null) {
                giveFrame(frame);
                return had;
            }
            bytes.addAndGet(pageSize);
            return fresh; // queued for eviction once its writer lets go of it (markDirty, filled)
        }

        public synchronized void startIo() {
            inFlight++;
        }

        public synchronized void endIo() {
            if (--inFlight == 0) {
                notifyAll();
            }
        }

        synchronized boolean busy() {
            return writebacks > 0;
        }

        public synchronized void beginRound() {
            writebacks++;
        }

        public synchronized void endRound() {
            if (--writebacks == 0) {
                notifyAll();
            }
        }

        /** Waits until every writeback of this inode has finished (not under the inode's lock). */
        public synchronized void awaitWritebacks() {
            boolean interrupted = false;
            while (writebacks > 0) {
                try {
                    wait();
                } catch (InterruptedException e) {
                    interrupted = true;
                }
            }
            if (interrupted) {
                Thread.currentThread().interrupt();
            }
        }

        /** Waits until no writeback of this inode is writing data (blocks may be freed after). */
        public synchronized void awaitIo() {
            boolean interrupted = false;
            while (inFlight > 0) {
                try {
                    wait();
                } catch (InterruptedException e) {
                    interrupted = true;
                }
            }
            if (interrupted) {
                Thread.currentThread().interrupt();
            }
        }

        public boolean hasDirty() {
            return dirtyPages.get() > 0;
        }

        public long size() {
            return size;
        }

        public void setSize(long s) {
            size = s;
        }

        /** When the longest-dirty page of this file was dirtied (System.nanoTime()). */
        public long oldestDirtyNanos() {
            long oldest = Long.MAX_VALUE;
            for (Page p : pages.range(0, Long.MAX_VALUE)) {
                synchronized (p) {
                    if (p.dirtyMask != 0) {
                        oldest = Math.min(oldest, p.dirtiedAt);
                    }
                }
            }
            return oldest;
        }

        /** The pages from {@code fromIndex} on, in order (a snapshot). */
        public Iterable<Page> from(long fromIndex) {
            return pages.range(fromIndex, Long.MAX_VALUE);
        }


        /**
         * Drops the pages from {@code fromIndex} on (truncate, punch, delete); returns how many
         * reserved blocks they held. A page under writeback goes too: its writeback holds its own
         * copy of the data, and finds the blocks gone when it comes to convert them.
         */
        public long dropFrom(long fromIndex) {
            return dropRange(fromIndex, Long.MAX_VALUE);
        }

        /** Drops the pages in [from, to); see {@link #dropFrom}. */
        public long dropRange(long from, long to) {
            long freed = 0;
            for (Page p : pages.range(from, to)) {
                synchronized (p) {
                    freed += Integer.bitCount(p.clearBlocks(-1));
                    p.evicted = true;
                    if (pages.remove(p.index, p)) {
                        bytes.addAndGet(-pageSize);
                        giveFrame(p.data);
                    }
                }
            }
            return freed;
        }
    }
}
