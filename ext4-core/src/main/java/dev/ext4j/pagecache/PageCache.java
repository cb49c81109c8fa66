package dev.ext4j.pagecache;

import java.nio.ByteBuffer;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicLong;

/**
 * File data pages (the page cache of the kernel's buffered I/O path), for every inode, bounded in
 * bytes. A page holds {@link #pageSize()} bytes of one file, always whole: a page that a write only
 * partly covers is first filled from the image (or zeros), so reads can be answered from any page.
 *
 * <p>Pages are frames: a fixed set of page objects over direct memory, made as the cache grows to
 * its bound and then reused, so the cache costs the garbage collector nothing and its footprint is
 * the bound. A frame that is free, or that holds another file's page, must not be touched in the
 * name of the old one; so code that works on a page pins it first ({@link FilePages#pin}), which
 * checks whose page it is, and eviction passes over pinned, dirty and in-flight pages.
 *
 * <p>Pages change only under their inode's write lock (writes, truncate, writeback); reads pin
 * them under the read lock. Eviction is a clock over the frames, from any thread, taking clean
 * unpinned pages not seen since the hand last passed. Dirty pages are never evicted: writeback
 * cleans them (see fs.Writeback).
 */
public final class PageCache {
    private static final System.Logger LOG = System.getLogger("ext4j");
    /** Frames made at once: 4 MiB of pages. */
    private static final int CHUNK = 4 << 20;

    private final int pageSize;
    private final int blockSize;
    private final long maxBytes;
    private final ConcurrentHashMap<Long, FilePages> files = new ConcurrentHashMap<>();
    private final AtomicLong bytes = new AtomicLong();
    private final AtomicLong dirtyBytes = new AtomicLong();
    /** Every frame made, and the free ones; under {@code frames}' monitor. */
    private final ArrayList<Page> frames = new ArrayList<>();
    private final ArrayDeque<Page> freeFrames = new ArrayDeque<>();
    /** The clock hand: the next frame eviction looks at; under {@code frames}' monitor. */
    private int hand;
    private boolean warnedOverBound;
    /** A chunk is being made ahead of need ({@link #growAhead}); under {@code frames}' monitor. */
    private boolean growingAhead;

    public PageCache(int blockSize, long maxBytes) {
        this.blockSize = blockSize;
        this.pageSize = Math.max(4096, blockSize);
        this.maxBytes = Math.max(maxBytes, 64L * pageSize);
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

    /** The pages of inode {@code ino}, made on first use (fs.InodeTable pins the inode from then on). */
    public FilePages of(long ino) {
        return files.computeIfAbsent(ino, FilePages::new);
    }

    /** The pages of inode {@code ino}, or null when it has none. */
    public FilePages peek(long ino) {
        return files.get(ino);
    }

    /** Inodes that have dirty pages or a writeback under way, first dirtied first. */
    public List<FilePages> dirtyFiles() {
        record Aged(long since, FilePages file) {
        }
        List<Aged> aged = new ArrayList<>();
        for (FilePages f : files.values()) {
            if (f.dirtyPages.get() > 0 || f.busy()) {
                aged.add(new Aged(f.dirtiedWhen, f)); // read once: the sort needs keys that hold still
            }
        }
        aged.sort(Comparator.comparingLong(Aged::since));
        return aged.stream().map(Aged::file).toList();
    }

    /** The files that have no page cached any more and nothing under way (see {@link FilePages#idle}). */
    public List<FilePages> idleFiles() {
        List<FilePages> idle = new ArrayList<>();
        for (FilePages f : files.values()) {
            if (f.idle()) {
                idle.add(f);
            }
        }
        return idle;
    }

    /** Forgets an inode's pages (it was deleted, or went idle; fs.InodeTable unpins it). Its dirty pages must have been dropped first. */
    public void remove(long ino) {
        FilePages f = files.remove(ino);
        if (f != null) {
            f.dropFrom(0);
        }
    }

    /** Evicts clean pages until the cache is back under its bound (or nothing more can go). */
    public void shrink() {
        while (bytes.get() > maxBytes && evictOne()) {
            // one more
        }
    }

    /**
     * A free frame: from the free list, new while the bound allows, else one evicted now; past
     * the bound when every frame is dirty, pinned or in flight (writers then write back before
     * they dirty more, so that stays rare and short).
     */
    private Page takeFrame() {
        synchronized (frames) {
            Page p = freeFrames.poll();
            if (p != null) {
                growAhead();
                return p;
            }
            if ((long) frames.size() * pageSize < maxBytes) {
                return makeFrames();
            }
        }
        if (evictOne()) {
            synchronized (frames) {
                Page p = freeFrames.poll();
                if (p != null) {
                    return p;
                }
            }
        }
        synchronized (frames) {
            if (!warnedOverBound) {
                warnedOverBound = true;
                LOG.log(System.Logger.Level.WARNING, "page cache: every page is dirty or in flight; growing past cache_size");
            }
            return makeFrames();
        }
    }

    /**
     * While the cache grows, makes the next chunk of frames on another thread once half of the
     * free ones are taken. New memory is zeroed and faulted in page by page, which on a virtual
     * machine costs a writer several microseconds per page; off its path, a stream of small
     * writes finds its frames ready. A chunk that no longer fits under the bound when it is done
     * (writers grew the cache meanwhile) is dropped. Under {@code frames}' monitor.
     */
    private void growAhead() {
        int n = Math.max(1, CHUNK / pageSize);
        if (growingAhead || freeFrames.size() >= n / 2 || (long) frames.size() * pageSize + CHUNK > maxBytes) {
            return;
        }
        growingAhead = true;
        java.util.concurrent.CompletableFuture.runAsync(() -> {
            ByteBuffer chunk = null;
            try {
                chunk = ByteBuffer.allocateDirect(n * pageSize);
            } catch (OutOfMemoryError e) {
                // writers make their frames themselves, as without this
            }
            synchronized (frames) {
                growingAhead = false;
                if (chunk != null && (long) frames.size() * pageSize + CHUNK <= maxBytes) {
                    addFrames(chunk, n).forEach(freeFrames::push);
                }
            }
        });
    }

    /** Makes a chunk of frames; returns one and frees the rest. Under {@code frames}' monitor. */
    private Page makeFrames() {
        int n = Math.max(1, CHUNK / pageSize);
        List<Page> made = addFrames(ByteBuffer.allocateDirect(n * pageSize), n);
        for (int i = 1; i < n; i++) {
            freeFrames.push(made.get(i));
        }
        return made.get(0);
    }

    /** Frames over {@code chunk}, added to the frames. Under {@code frames}' monitor. */
    private List<Page> addFrames(ByteBuffer chunk, int n) {
        List<Page> made = new ArrayList<>(n);
        for (int i = 0; i < n; i++) {
            Page p = new Page(chunk.slice(i * pageSize, pageSize));
            frames.add(p);
            made.add(p);
        }
        return made;
    }

    private void freeFrame(Page p) {
        bytes.addAndGet(-pageSize);
        synchronized (frames) {
            freeFrames.push(p);
        }
    }

    /** One turn of the clock: evicts the first clean unpinned page not referenced since the last turn. */
    private boolean evictOne() {
        int budget;
        synchronized (frames) {
            budget = 2 * frames.size();
        }
        while (budget-- > 0) {
            Page p;
            synchronized (frames) {
                if (frames.isEmpty()) {
                    return false;
                }
                hand = (hand + 1) % frames.size();
                p = frames.get(hand);
            }
            synchronized (p) {
                if (p.owner == null || p.pins > 0 || p.dirtyMask != 0 || p.writeback) {
                    continue;
                }
                if (p.referenced) {
                    p.referenced = false;
                    continue;
                }
                p.owner.pages.remove(p.index, p);
                p.owner = null;
            }
            freeFrame(p);
            return true;
        }
        return false;
    }

    /**
     * One frame, and the page of a file it holds while {@link #owner} is set. Fields other than
     * the data are guarded by the frame's monitor.
     */
    public final class Page {
        /** The page's bytes, used only with absolute gets and puts. */
        public final ByteBuffer data;
        /** The file whose page this is; null while the frame is free. */
        FilePages owner;
        /** Its index in that file. */
        long index;
        /** Blocks changed since their last writeback, one bit per block of the page. */
        int dirtyMask;
        /** Dirty blocks that were holes when dirtied: each holds a delayed-allocation reservation. */
        int reservedMask;
        /** Being written back: it must stay until its blocks are converted to written. */
        boolean writeback;
        /** The blocks the current writeback took. */
        int takenMask;
        /** Truncated away while under writeback: the frame is freed when the writeback ends. */
        boolean dropped;
        /** Users between pin and unpin: a pinned page is not evicted. */
        int pins;
        boolean referenced;

        Page(ByteBuffer data) {
            this.data = data;
        }

        public long index() {
            return index;
        }

        public synchronized void unpin() {
            pins--;
        }

        /** Marks blocks dirty, and which of them hold a reservation. The caller has the page pinned. */
        public synchronized void markDirty(int blocks, int reserved) {
            if (dirtyMask == 0) {
                if (owner.dirtyPages.getAndIncrement() == 0) {
                    owner.dirtiedWhen = System.nanoTime();
                }
                dirtyBytes.addAndGet(pageSize);
                owner.pages.tagDirty(index, true);
            }
            dirtyMask |= blocks;
            reservedMask |= reserved;
        }

        public synchronized int reservedMask() {
            return reservedMask;
        }

        public synchronized boolean underWriteback() {
            return writeback;
        }

        /** The blocks that hold data not on disk yet: dirty, or taken by the writeback under way. */
        public synchronized int pendingMask() {
            return dirtyMask | (writeback ? takenMask : 0);
        }

        /**
         * Writeback takes the dirty blocks of this page of {@code f}: returns them and which were
         * reserved as {@code dirty | reserved << 32}, or 0 when the page is not {@code f}'s any
         * more, is clean, or is another writeback's. The page is then pinned by the writeback until
         * {@link #endWriteback}.
         */
        public synchronized long takeForWriteback(FilePages f) {
            if (owner != f || dropped || dirtyMask == 0 || writeback) {
                return 0;
            }
            long taken = (dirtyMask & 0xFFFFFFFFL) | (long) reservedMask << 32;
            owner.dirtyPages.decrementAndGet();
            dirtyBytes.addAndGet(-pageSize);
            owner.pages.tagDirty(index, false);
            takenMask = dirtyMask;
            dirtyMask = 0;
            reservedMask = 0;
            writeback = true;
            return taken;
        }

        /** The writeback is over; when its data write failed, the blocks it took are dirty again. */
        public void endWriteback(boolean failed) {
            endWriteback(failed, 0);
        }

        /**
         * Like {@link #endWriteback(boolean)}; a failed writeback that allocated nothing for some
         * of the blocks it took gives their delayed-allocation promises back too ({@code reserved}).
         */
        public void endWriteback(boolean failed, int reserved) {
            synchronized (this) {
                writeback = false;
                if (!dropped) {
                    if (failed && takenMask != 0) {
                        markDirty(takenMask, reserved & takenMask);
                    }
                    takenMask = 0;
                    return;
                }
                dropped = false;
                owner = null;
                takenMask = 0;
            }
            freeFrame(this);
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
                owner.pages.tagDirty(index, false);
            }
            return freed;
        }

        /** This page of {@code f}'s, pinned; false when the frame holds something else now. */
        synchronized boolean pin(FilePages f, long idx) {
            if (owner != f || index != idx || dropped) {
                return false;
            }
            pins++;
            referenced = true;
            return true;
        }
    }

    /**
     * The pages of one inode, by page index (the kernel's address_space), with what guards their
     * I/O: how many are dirty and since when, the writebacks under way and their data writes in
     * flight. The inode's writeback state (its size in memory, reservations, map sequence and the
     * writebacks' tickets) is the in-core inode's (fs.InodeInfo), which is pinned in the inode
     * table as long as this object is in the cache.
     */
    public final class FilePages {
        public final long ino;
        final PageTable<Page> pages = new PageTable<>();
        final AtomicLong dirtyPages = new AtomicLong();
        /**
         * When the file went from clean to dirty (System.nanoTime(); the kernel's
         * inode->dirtied_when): writeback by age starts from it, so a file rewritten all the time
         * still goes out once it has been dirty for the expiry time.
         */
        private volatile long dirtiedWhen;
        /** Writebacks whose data writes are in flight; truncate and punch wait for none. Under this object's monitor. */
        private int inFlight;
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

        /** The cached page at {@code index}, pinned (the caller unpins it), or null. */
        public Page pin(long index) {
            Page p = pages.get(index);
            return p != null && p.pin(this, index) ? p : null;
        }

        /**
         * A new page at {@code index} with undefined bytes, pinned, for the caller (who holds the
         * inode's write lock and found no page there) to fill.
         */
        public Page add(long index) {
            Page p = takeFrame();
            synchronized (p) {
                p.owner = this;
                p.index = index;
                p.pins = 1;
                p.referenced = false;
                p.dirtyMask = 0;
                p.reservedMask = 0;
            }
            bytes.addAndGet(pageSize);
            pages.putIfAbsent(index, p);
            return p;
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

        /** No page cached, none dirty, no writeback running or writing: nothing here but the object. */
        public synchronized boolean idle() {
            return pages.isEmpty() && dirtyPages.get() == 0 && writebacks == 0 && inFlight == 0;
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
            awaitUntil(() -> writebacks == 0);
        }

        /** Waits until no writeback of this inode is writing data (blocks may be freed after). */
        public synchronized void awaitIo() {
            awaitUntil(() -> inFlight == 0);
        }

        /** Waits on this object's monitor (held) until {@code done}; an interrupt is kept for later. */
        private void awaitUntil(java.util.function.BooleanSupplier done) {
            boolean interrupted = false;
            while (!done.getAsBoolean()) {
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

        /** Since when the file has had dirty pages (System.nanoTime()); see {@link #dirtiedWhen}. */
        public long dirtiedWhen() {
            return dirtiedWhen;
        }

        /**
         * The pages that may be dirty from {@code fromIndex} on, in order, each read as the walk
         * reaches it: every dirty page, maybe a few clean ones.
         */
        public Iterable<Page> dirtyFrom(long fromIndex) {
            return pages.dirtyFrom(fromIndex);
        }


        /**
         * Drops the pages from {@code fromIndex} on (truncate, punch, delete); returns how many
         * reserved blocks they held. A page under writeback goes too: its writeback holds its own
         * copy of the data, and finds the blocks gone when it comes to convert them.
         */
        public long dropFrom(long fromIndex) {
            return dropRange(fromIndex, Long.MAX_VALUE);
        }

        /**
         * Drops the pages in [from, to) if none of them is dirty or under writeback, and says
         * whether it did; the caller holds the inode's write lock, so none becomes dirty meanwhile.
         */
        public boolean dropRangeIfClean(long from, long to) {
            for (Page p : pages.range(from, to)) {
                synchronized (p) {
                    if (p.owner == this && !p.dropped && (p.dirtyMask != 0 || p.writeback)) {
                        return false;
                    }
                }
            }
            dropRange(from, to);
            return true;
        }

        /** Drops the pages in [from, to); see {@link #dropFrom}. */
        public long dropRange(long from, long to) {
            long freed = 0;
            for (Page p : pages.range(from, to)) {
                boolean free;
                synchronized (p) {
                    if (p.owner != this || p.dropped || p.index < from || p.index >= to) {
                        continue; // evicted and reused meanwhile
                    }
                    freed += Integer.bitCount(p.clearBlocks(-1));
                    pages.remove(p.index, p);
                    free = !p.writeback;
                    if (free) {
                        p.owner = null;
                    } else {
                        p.dropped = true; // its writeback frees it
                    }
                }
                if (free) {
                    freeFrame(p);
                }
            }
            return freed;
        }
    }
}
