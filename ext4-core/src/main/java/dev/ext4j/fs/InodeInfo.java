package dev.ext4j.fs;

import dev.ext4j.blockmap.BlockMap;
import dev.ext4j.format.Inode;
import dev.ext4j.pagecache.PageCache.FilePages;
import java.util.Collections;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Set;
import java.util.concurrent.atomic.AtomicLong;

/**
 * An inode in memory (the kernel's struct ext4_inode_info): one object per live inode, kept by
 * {@link InodeTable}. It holds the verified on-disk record with its checksum seed and block map
 * (the record's size is i_disksize), and the inode's own in-memory state:
 * <ul>
 * <li>how many file handles have it open (the kernel's lookups are counted apart, in
 * {@link InodeTable}, so that they do not keep this object in memory);</li>
 * <li>its link in the orphan list while it is on it ({@link #orphanNext()}, i_dtime on disk);</li>
 * <li>whether link(2) may give it a first name with no link left (an O_TMPFILE inode, {@link #linkable()});</li>
 * <li>its pages in the page cache ({@link #pages()}, the kernel's i_mapping), whose bytes and
 * dirty state the page cache keeps;</li>
 * <li>the writeback state of those pages (see {@link Writeback}): i_size as writes left it in
 * memory, ahead of i_disksize ({@link #size()}); the delayed-allocation reservations
 * (i_reserved_data_blocks); the map sequence (the extent status cache's validity cookie,
 * {@link #mapSeq()}); and the writebacks between their two locked steps ({@link #tickets()}).</li>
 * </ul>
 * The table never evicts an object that has any of this state: it is pinned while it is
 * open, on the orphan list or has pages ({@link #pinned()}), so a later lookup finds this object, not a fresh
 * one with the state lost (a map sequence back at zero would let a stale mapping pass as current;
 * lost reservations would leak).
 *
 * <p>The record, seed and map change together, as one version, when the inode is written
 * ({@link InodeTable#write}); readers get a consistent version from {@link #inode()} and
 * {@link #map()} as long as they hold the inode's lock, or read only the record.
 */
final class InodeInfo {
    /** One written version: the record, its checksum seed and its block map. */
    private record Version(Inode inode, int csumSeed, BlockMap map) {
    }

    /** {@link #memSize} when i_size is the on-disk size. */
    private static final long NO_MEM_SIZE = -1;
    /** {@link #syncTid} of an inode loaded since its last change: an fsync commits whatever is running. */
    static final long SYNC_TID_UNKNOWN = Long.MIN_VALUE;
    /** {@link #orphanNext} when the inode is not on the orphan list. */
    static final long NOT_ORPHAN = -1;

    private final long ino;
    private volatile Version version;
    /** Open file handles; under this object's monitor. */
    private int opens;
    /**
     * The last transaction that changed the inode (ext4's i_sync_tid), noted as a writer lets go
     * of it with its handle still running; {@link #SYNC_TID_UNKNOWN} until then.
     */
    private volatile long syncTid = SYNC_TID_UNKNOWN;
    /**
     * The VFS's I_LINKABLE: an O_TMPFILE inode not yet linked, which link(2) may give its first
     * name though it has no link. Set before the inode's number is handed out, cleared under the
     * inode's write lock.
     */
    private volatile boolean linkable;
    /**
     * While on the orphan list, the next orphan's number (0 ends the list), which every write of
     * the inode stamps into i_dtime; else {@link #NOT_ORPHAN}. Changed under {@link Orphans}'
     * monitor and the install monitor.
     */
    private volatile long orphanNext = NOT_ORPHAN;
    /**
     * With lazytime, an access time kept in memory only, until the inode is written for another
     * reason, or a sync, fsync, freeze or unmount writes it ({@link Atime}); null when none.
     */
    private volatile Ext4FileSystem.Time lazyAtime;
    /**
     * Its mtime and ctime went out in attributes since they last moved (the kernel's
     * I_CTIME_QUERIED): the next write must move them, however soon it comes.
     */
    private volatile boolean timesSeen;
    /** The inode's pages in the page cache, null while it has none; under this object's monitor. */
    private FilePages pages;
    /**
     * i_size while writes have moved it past the on-disk size (i_disksize), else
     * {@link #NO_MEM_SIZE}. Written under the inode's write lock; read without a lock by
     * {@link #size()}.
     */
    private volatile long memSize = NO_MEM_SIZE;
    /**
     * The extent status sequence: bumped by every change to the inode's block map, so a mapping
     * looked up earlier can tell whether it still holds (the validity cookie). Cookies are held
     * only by writes and writebacks, which run while the inode has pages, so it is pinned then.
     */
    private final AtomicLong mapSeq = new AtomicLong();
    /** Delayed-allocation reservations: data blocks, and metadata blocks for them. Under the inode's lock. */
    private long reservedData;
    private long reservedMeta;
    /**
     * The writebacks between their two locked steps, each with the logical block ranges
     * [from, to) that a truncate or punch took away meanwhile, which it must not map or convert.
     * Under the inode's lock. A set by identity: two tickets with the same ranges (none, most
     * often) are two writebacks, and one's end must not take the other's away. Made on first use:
     * most inodes in memory never see a writeback.
     */
    private Set<List<long[]>> tickets;

    /**
     * @param csumSeed crc32c(fs seed, ino, generation); 0 without metadata_csum
     * @param map      the extent tree or indirect map; null for inline data and fast symlinks
     */
    InodeInfo(long ino, Inode inode, int csumSeed, BlockMap map) {
        this.ino = ino;
        this.version = new Version(inode, csumSeed, map);
    }

    /** See {@link #syncTid}. */
    long syncTid() {
        return syncTid;
    }

    /** A writer that changed the inode lets go of it while transaction {@code tid} runs. */
    void changedIn(int tid) {
        syncTid = tid;
    }

    long ino() {
        return ino;
    }

    /** The on-disk record as last read or written; callers change a copy and write it through {@link InodeTable#write}. */
    Inode inode() {
        return version.inode();
    }

    int csumSeed() {
        return version.csumSeed();
    }

    BlockMap map() {
        return version.map();
    }

    /** A new version written (under the inode's install monitor). */
    void update(Inode inode, int csumSeed, BlockMap map) {
        version = new Version(inode, csumSeed, map);
    }

    /** One more open file handle. */
    synchronized void open() {
        opens++;
    }

    /** One handle fewer; true when nothing references the inode any more. */
    synchronized boolean release() {
        if (opens > 0) {
            opens--;
        }
        return !referenced();
    }

    /** Whether link(2) may name it though it has no link (an O_TMPFILE inode not linked yet). */
    boolean linkable() {
        return linkable;
    }

    void setLinkable(boolean linkable) {
        this.linkable = linkable;
    }

    /** A handle has it open: an unlinked inode is not freed yet (the kernel's lookups are the table's, see InodeTable). */
    synchronized boolean referenced() {
        return opens > 0;
    }

    /** Forgets every handle (unmount); true when some were open. */
    synchronized boolean closeAll() {
        boolean was = referenced();
        opens = 0;
        return was;
    }

    /** Whether the table must keep this object: it is referenced, on the orphan list, has pages or an unwritten atime. */
    synchronized boolean pinned() {
        return referenced() || pages != null || orphanNext != NOT_ORPHAN || lazyAtime != null;
    }

    boolean timesSeen() {
        return timesSeen;
    }

    void setTimesSeen(boolean seen) {
        timesSeen = seen;
    }

    /** The access time lazytime keeps in memory, or null. */
    Ext4FileSystem.Time lazyAtime() {
        return lazyAtime;
    }

    /** Sets (or, with null, drops) the access time lazytime keeps in memory; under the install monitor. */
    void setLazyAtime(Ext4FileSystem.Time t) {
        lazyAtime = t;
    }

    /** The next orphan's number while the inode is on the orphan list, else {@link #NOT_ORPHAN}. */
    long orphanNext() {
        return orphanNext;
    }

    /** Links it into the orphan list before {@code next} (0: the end), or takes it off with {@link #NOT_ORPHAN}. */
    void setOrphanNext(long next) {
        orphanNext = next;
    }

    /** The inode's pages in the page cache, or null while it has none. */
    synchronized FilePages pages() {
        return pages;
    }

    /** Its pages were made ({@link InodeTable#withPages}); the table pins it. */
    synchronized void attach(FilePages f) {
        pages = f;
    }

    /**
     * Its pages are gone from the page cache (the inode was deleted; {@link InodeTable#dropPages}):
     * the writeback state goes with them, i_size is the on-disk size again.
     */
    synchronized void detach() {
        pages = null;
        memSize = NO_MEM_SIZE;
        reservedData = 0;
        reservedMeta = 0;
    }

    // ------------------------------------------------------------------ writeback state

    /**
     * i_size as writes left it: past the on-disk size while written data waits for writeback.
     * Without the inode's lock: the in-memory size is read first, and writers store the on-disk
     * size before they drop the in-memory one, so a reader never sees an old on-disk size in
     * between.
     */
    long size() {
        long s = memSize;
        return s != NO_MEM_SIZE ? s : version.inode().size();
    }

    /** A write moved i_size to {@code size}, past the on-disk size; under the inode's write lock. */
    void setSize(long size) {
        memSize = size;
    }

    /**
     * The on-disk size was written, and i_size is that size again (truncate, fallocate, a
     * write-through); under the inode's write lock, after the inode was written.
     */
    void sizeSettled() {
        memSize = NO_MEM_SIZE;
    }

    /**
     * Writeback moved the on-disk size to {@code diskSize} (already written): i_size is that
     * size again when writes had not moved it further; under the inode's write lock.
     */
    void sizeReached(long diskSize) {
        long s = memSize;
        if (s != NO_MEM_SIZE && s <= diskSize) {
            memSize = NO_MEM_SIZE;
        }
    }

    /** The map sequence now (a cookie to compare with later). */
    long mapSeq() {
        return mapSeq.get();
    }

    /** The block map changed: every mapping looked up before is stale. */
    void mapChanged() {
        mapSeq.incrementAndGet();
    }

    /** Data blocks promised to dirty pages (delayed allocation); under the inode's lock, or a racy read for stat. */
    long reservedData() {
        return reservedData;
    }

    /** Metadata blocks promised for the reserved data blocks; under the inode's lock. */
    long reservedMeta() {
        return reservedMeta;
    }

    /** Sets both reservations; under the inode's write lock. */
    void setReserved(long data, long meta) {
        reservedData = data;
        reservedMeta = meta;
    }

    /** No writeback state: i_size is the on-disk size, nothing promised, no writeback between its steps. Under the inode's lock. */
    boolean idle() {
        return memSize == NO_MEM_SIZE && reservedData == 0 && reservedMeta == 0 && (tickets == null || tickets.isEmpty());
    }

    /** The writebacks between their locked steps; see {@link #tickets}. Under the inode's lock. */
    Set<List<long[]>> tickets() {
        if (tickets == null) {
            tickets = Collections.newSetFromMap(new IdentityHashMap<>());
        }
        return tickets;
    }
}
