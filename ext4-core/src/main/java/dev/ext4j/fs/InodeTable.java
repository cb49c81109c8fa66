package dev.ext4j.fs;

import dev.ext4j.Ext4Exception;
import dev.ext4j.alloc.GroupTable;
import dev.ext4j.blockmap.BlockMap;
import dev.ext4j.blockmap.ExtentTree;
import dev.ext4j.blockmap.IndirectMap;
import dev.ext4j.format.Checksums;
import dev.ext4j.format.DirEntry;
import dev.ext4j.format.Feature;
import dev.ext4j.format.GroupDescriptor;
import dev.ext4j.format.Inode;
import dev.ext4j.format.Superblock;
import dev.ext4j.io.BufferCache;
import dev.ext4j.io.Lru;
import dev.ext4j.pagecache.PageCache;
import dev.ext4j.pagecache.PageCache.FilePages;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ConcurrentHashMap;

/**
 * The inode table in memory (the kernel's iget and ext4_iget(), ext4_get_inode_loc(),
 * ext4_do_update_inode()): inodes are read from their inode table block, checked (range, unused
 * part of the table, checksum, extra size, file type) and cached; a changed inode is stamped with
 * its checksum, written into its block through the buffer cache and replaces the cached one.
 *
 * <p>Loads and writes of one inode run under its install monitor ({@link InodeLocks#install}),
 * so a load cannot put an older copy over a newer one.
 *
 * <p>An inode with in-memory state (a file handle open, a lookup the kernel holds, a link in the
 * orphan list, or pages in the page cache with their writeback state, see {@link InodeInfo}) is pinned: kept in {@code pinned}, which lookups try
 * first, and never evicted, so there is one object per such inode and its state is never lost to
 * the cache. Pins come and go under the install monitor. The pinned inodes are the referenced
 * ones, the orphans and those the page cache holds pages for, so they are no more than the kernel
 * and the page cache already keep.
 */
final class InodeTable {
    private final Superblock sb;
    private final GroupTable groups;
    private final BufferCache cache;
    private final InodeLocks locks;
    private final int blockSize;
    private final boolean metadataCsum;
    private final int csumSeed;
    /** Inodes nobody holds open, least recently used first out. */
    private final Lru<Long, InodeInfo> cached;
    /** Inodes referenced, orphaned or with pages: never evicted, looked up first. */
    private final ConcurrentHashMap<Long, InodeInfo> pinned = new ConcurrentHashMap<>();
    /**
     * The lookups the kernel holds (FUSE's nlookup, dropped by FORGET: until then the kernel may
     * name the inode by number). Counted here, not in a pinned {@link InodeInfo}: the kernel may
     * hold millions of inodes in its cache, and a count costs a map entry, not an inode in memory.
     */
    private final ConcurrentHashMap<Long, Long> lookups = new ConcurrentHashMap<>();
    /** The orphan list that stamps an orphan's i_dtime at each write; null for a read-only view. */
    private Orphans orphans;

    InodeTable(Superblock sb, GroupTable groups, BufferCache cache, InodeLocks locks, int entries) {
        this.sb = sb;
        this.groups = groups;
        this.cache = cache;
        this.locks = locks;
        this.blockSize = sb.blockSize();
        this.metadataCsum = sb.has(Feature.METADATA_CSUM);
        this.csumSeed = metadataCsum ? sb.checksumSeed() : 0;
        this.cached = new Lru<>(entries);
    }

    void useOrphans(Orphans list) {
        this.orphans = list;
    }

    /** The in-core inode, or null when it is not in memory. */
    InodeInfo lookup(long ino) {
        InodeInfo info = pinned.get(ino);
        return info != null ? info : cached.get(ino);
    }

    /** Loads and checks inode {@code ino}. */
    InodeInfo get(long ino) throws Ext4Exception {
        InodeInfo info = lookup(ino);
        if (info != null) {
            return info;
        }
        // Loaded under the inode's install monitor, which write() holds too, so a concurrent
        // write() cannot be overtaken by this older copy landing in the cache after it. Not
        // under the inode's read lock: callers load inodes while holding other inodes' locks
        // (lookup under its directory's, the rename loop check up the ancestors), and waiting
        // for one more inode lock there breaks the lock order (see InodeLocks).
        try (InodeLocks.Locked l = locks.install(ino)) {
            info = lookup(ino);
            return info != null ? info : load(ino);
        }
    }

    private InodeInfo load(long ino) throws Ext4Exception {
        if (ino < 1 || ino > sb.inodesCount()) {
            throw Ext4Exception.corrupted("inode " + ino + " is out of range (1.." + sb.inodesCount() + ")");
        }
        long ipg = sb.inodesPerGroup();
        long group = (ino - 1) / ipg;
        long index = (ino - 1) % ipg;
        GroupDescriptor gd = groups.get(group);
        boolean uninitAllowed = sb.has(Feature.METADATA_CSUM) || sb.has(Feature.GDT_CSUM);
        if (uninitAllowed && ((gd.flags() & GroupDescriptor.FLAG_INODE_UNINIT) != 0
                || index >= ipg - gd.itableUnused())) {
            throw Ext4Exception.corrupted("inode " + ino + " is in the unused part of group " + group + "'s inode table");
        }
        int isz = sb.inodeSize();
        long byteOff = index * isz;
        long block = gd.inodeTable() + byteOff / blockSize;
        ByteBuffer b = cache.get(block);
        byte[] raw = new byte[isz];
        b.get((int) (byteOff % blockSize), raw);
        Inode inode = new Inode(raw);
        int seed = 0;
        if (metadataCsum) {
            int computed = inode.computeChecksum(csumSeed, ino);
            if (computed != inode.storedChecksum()) {
                throw Ext4Exception.badChecksum("inode " + ino + " (block " + block + ")", inode.storedChecksum() & 0xFFFFFFFFL,
                        computed & 0xFFFFFFFFL);
            }
            seed = seed(ino, inode);
        }
        if (isz > Inode.GOOD_OLD_SIZE && Inode.GOOD_OLD_SIZE + inode.extraIsize() > isz) {
            throw Ext4Exception.corrupted("inode " + ino + ": i_extra_isize " + inode.extraIsize() + " does not fit in " + isz + " bytes");
        }
        if (inode.mode() != 0 && DirEntry.fileTypeOfMode(inode.mode()) == DirEntry.FT_UNKNOWN) {
            throw Ext4Exception.corrupted(String.format("inode %d has an invalid file type in mode 0%o", ino, inode.mode()));
        }
        InodeInfo info = new InodeInfo(ino, inode, seed, blockMap(ino, inode, seed));
        cached.put(ino, info);
        return info;
    }

    /** Block of the inode table that holds {@code ino}, and the byte offset in it. */
    private long[] location(long ino) {
        long ipg = sb.inodesPerGroup();
        long byteOff = ((ino - 1) % ipg) * sb.inodeSize();
        long block = groups.get((ino - 1) / ipg).inodeTable() + byteOff / blockSize;
        return new long[] {block, byteOff % blockSize};
    }

    /** Writes a changed inode, with its orphan chain link when it is an orphan; the caller holds its write lock. */
    InodeInfo write(long ino, Inode changed) throws Ext4Exception {
        return orphans.stampAndWrite(ino, changed, this::install);
    }

    /** Writes an inode copy; see {@link Orphans#stampAndWrite}. */
    @FunctionalInterface
    interface InodeWriter {
        InodeInfo write(long ino, Inode changed) throws Ext4Exception;
    }

    /**
     * Sets only i_dtime of {@code ino}, an orphan's link to the next one, on the copy last written:
     * the read, the change and the write are one step under the install lock, so a change that
     * the inode's lock holder wrote meanwhile is kept.
     */
    void writeOrphanLink(long ino, long nextIno) throws Ext4Exception {
        try (InodeLocks.Locked l = locks.install(ino)) {
            Inode copy = get(ino).inode().copy();
            copy.setDtime(nextIno);
            install(ino, copy);
        }
    }

    private InodeInfo install(long ino, Inode changed) throws Ext4Exception {
        InodeInfo was = lookup(ino);
        Ext4FileSystem.Time lazy = was != null ? was.lazyAtime() : null;
        if (lazy != null && Atime.compare(lazy, changed.atimeSeconds(), changed.atimeNanos()) > 0) {
            changed.setAtime(lazy.seconds(), lazy.nanos()); // lazytime: written with the inode's next write
        }
        int seed = 0;
        if (metadataCsum) {
            changed.setChecksum(changed.computeChecksum(csumSeed, ino));
            seed = seed(ino, changed);
        }
        long[] loc = location(ino);
        ByteBuffer raw = changed.raw();
        BlockMap map = blockMap(ino, changed, seed);
        try (InodeLocks.Locked l = locks.install(ino)) {
            cache.update(loc[0], b -> b.put((int) loc[1], raw, 0, changed.rawSize()));
            InodeInfo info = lookup(ino);
            if (info == null) {
                info = new InodeInfo(ino, changed, seed, map);
                cached.put(ino, info);
            } else {
                info.update(changed, seed, map);
                if (lazy != null && info.lazyAtime() == lazy) {
                    info.setLazyAtime(null);
                    unpinIfIdle(ino, info);
                }
            }
            return info;
        }
    }

    /** lazytime: {@code ino}'s access time is {@code t}, in memory until the inode is written; it stays pinned meanwhile. */
    void setLazyAtime(long ino, Ext4FileSystem.Time t) throws Ext4Exception {
        pinWith(ino, info -> info.setLazyAtime(t));
    }

    /** The inodes with an access time lazytime has not written yet. */
    List<Long> withLazyAtime() {
        List<Long> out = new ArrayList<>();
        pinned.forEach((ino, info) -> {
            if (info.lazyAtime() != null) {
                out.add(ino);
            }
        });
        return out;
    }

    /** The inodes that hold delayed-allocation promises, as "ino (data+meta blocks)". */
    List<String> withPromises() {
        List<String> out = new ArrayList<>();
        pinned.forEach((ino, info) -> {
            if (info.reservedData() != 0 || info.reservedMeta() != 0) {
                out.add(ino + " (" + info.reservedData() + "+" + info.reservedMeta() + ")");
            }
        });
        return out;
    }

    /** An open file handle for {@code ino}: the first reference pins it in the table. */
    void open(long ino) throws Ext4Exception {
        pinWith(ino, InodeInfo::open);
    }

    /** A lookup the kernel holds (FUSE's nlookup) on {@code ino}: it references the inode without pinning it. */
    void remember(long ino) {
        try (InodeLocks.Locked l = locks.install(ino)) {
            lookups.merge(ino, 1L, Long::sum);
        }
    }

    /**
     * {@code change} applied and the inode pinned, in one step under its install monitor, so an
     * unpin in between cannot put the object back in the cache after the change.
     */
    private InodeInfo pinWith(long ino, java.util.function.Consumer<InodeInfo> change) throws Ext4Exception {
        try (InodeLocks.Locked l = locks.install(ino)) {
            InodeInfo info = get(ino);
            change.accept(info);
            pinned.put(ino, info);
            return info;
        }
    }

    /**
     * A handle closed; true when nothing references the inode any more (it is unpinned, back in
     * the cache, unless it has pages or is an orphan).
     */
    boolean release(long ino) {
        return unref(ino, InodeInfo::release);
    }

    /**
     * The kernel forgot {@code n} lookups of {@code ino}; true when nothing references it any more
     * and it may have lost its last name: an unlinked inode that was referenced is on the orphan
     * list, which pins it, so an inode that is not pinned still has a name.
     */
    boolean forget(long ino, long n) {
        try (InodeLocks.Locked l = locks.install(ino)) {
            if (lookups.computeIfPresent(ino, (k, held) -> held > n ? held - n : null) != null) {
                return false;
            }
            InodeInfo info = pinned.get(ino);
            return info != null && !info.referenced();
        }
    }

    private boolean unref(long ino, java.util.function.Predicate<InodeInfo> drop) {
        try (InodeLocks.Locked l = locks.install(ino)) {
            InodeInfo info = pinned.get(ino);
            if (info == null) {
                return !lookups.containsKey(ino); // no handle had it open
            }
            if (!drop.test(info)) {
                return false;
            }
            unpinIfIdle(ino, info);
            return !lookups.containsKey(ino);
        }
    }

    /** Puts {@code ino} on the orphan list before {@code next}: pinned while it is on it. Under the orphan list's monitor. */
    void linkOrphan(long ino, long next) throws Ext4Exception {
        pinWith(ino, info -> info.setOrphanNext(next));
    }

    /** Takes {@code ino} off the orphan list (in memory); under the orphan list's monitor. */
    void unlinkOrphan(long ino) {
        unref(ino, info -> {
            info.setOrphanNext(InodeInfo.NOT_ORPHAN);
            return true;
        });
    }

    /** Back in the cache, where it may be evicted, once nothing pins it. Under the install monitor. */
    private void unpinIfIdle(long ino, InodeInfo info) {
        if (!info.pinned() && pinned.remove(ino, info)) {
            cached.put(ino, info);
        }
    }

    /**
     * Inode {@code ino} with its pages in {@code pageCache}, made on first use: from then until
     * {@link #dropPages} the inode is pinned, with the writeback state it keeps for them. The
     * caller holds the inode's write lock (pages are made and dropped only under it).
     */
    InodeInfo withPages(long ino, PageCache pageCache) throws Ext4Exception {
        InodeInfo info = get(ino);
        if (info.pages() != null) {
            return info; // pinned already: get() found the pinned object
        }
        FilePages f = pageCache.of(ino);
        try (InodeLocks.Locked l = locks.install(ino)) {
            info = get(ino);
            info.attach(f);
            pinned.put(ino, info);
            return info;
        }
    }

    /**
     * The inode's pages go from {@code pageCache} (it is being deleted, or its pages were all
     * evicted and it holds no writeback state), and with them its writeback state; the inode is
     * unpinned unless a handle has it open. The caller holds the inode's write lock.
     */
    void dropPages(long ino, PageCache pageCache) {
        pageCache.remove(ino);
        try (InodeLocks.Locked l = locks.install(ino)) {
            InodeInfo info = pinned.get(ino);
            if (info != null) {
                info.detach();
                unpinIfIdle(ino, info);
            }
        }
    }

    /**
     * Inode {@code ino} when it is pinned (open, or with pages), else null; never loads it. Under
     * the inode's lock it is the object whose pages and writeback state are current.
     */
    InodeInfo pinned(long ino) {
        return pinned.get(ino);
    }

    /** How many inodes are pinned (open, or with pages): bounded by the open files and the page cache. */
    int pinnedCount() {
        return pinned.size();
    }

    /** Whether a file handle or a kernel lookup references {@code ino}. */
    boolean referenced(long ino) {
        if (lookups.containsKey(ino)) {
            return true;
        }
        InodeInfo info = pinned.get(ino);
        return info != null && info.referenced();
    }

    /**
     * Every pinned inode a handle or lookup referenced, all references forgotten (unmount). An
     * inode referenced by lookups alone and not pinned still has a name (an unlinked one is on the
     * orphan list, which pins it), so there is nothing to do for it.
     */
    List<Long> closeAll() {
        java.util.Set<Long> looked = new java.util.HashSet<>(lookups.keySet());
        lookups.clear();
        List<Long> open = new ArrayList<>();
        for (Long ino : List.copyOf(pinned.keySet())) {
            try (InodeLocks.Locked l = locks.install(ino)) {
                InodeInfo info = pinned.get(ino);
                if (info != null && (info.closeAll() | looked.contains(ino))) {
                    open.add(ino);
                }
                if (info != null) {
                    unpinIfIdle(ino, info);
                }
            }
        }
        return open;
    }

    /** The per-inode checksum seed of a new or changed inode. */
    int seed(long ino, Inode inode) {
        return metadataCsum ? Checksums.crc32cLe32(Checksums.crc32cLe32(csumSeed, (int) ino), (int) inode.generation()) : 0;
    }

    /** An inode reached through a directory entry: must be in use and not a reserved one. */
    InodeInfo linked(long ino, long dirIno) throws Ext4Exception {
        if (ino != Ext4FileSystem.ROOT_INO && ino < sb.firstIno()) {
            throw Ext4Exception.corrupted("directory inode " + dirIno + " has an entry for reserved inode " + ino);
        }
        InodeInfo info = get(ino);
        if (info.inode().linksCount() == 0 || info.inode().mode() == 0) {
            throw Ext4Exception.corrupted("directory inode " + dirIno + " has an entry for deleted inode " + ino);
        }
        return info;
    }

    private BlockMap blockMap(long ino, Inode inode, int seed) {
        if (inode.hasFlag(Inode.INLINE_DATA_FL) || isFastSymlink(inode)) {
            return null;
        }
        int ft = inode.fileType();
        if (ft != Inode.S_IFREG && ft != Inode.S_IFDIR && ft != Inode.S_IFLNK) {
            return null;
        }
        ByteBuffer iBlock = inode.iBlock();
        if (inode.hasFlag(Inode.EXTENTS_FL)) {
            return new ExtentTree(cache, ino, iBlock, seed, metadataCsum);
        }
        return new IndirectMap(cache, ino, iBlock);
    }

    /** ext4_inode_is_fast_symlink(): target kept in i_block, no data blocks. */
    boolean isFastSymlink(Inode inode) {
        if (!inode.isSymlink() || inode.hasFlag(Inode.EXTENTS_FL) || inode.hasFlag(Inode.INLINE_DATA_FL)) {
            return false;
        }
        long eaBlocks = inode.fileAcl() != 0 ? blockSize / 512 : 0;
        return inode.blocks512(sb.has(Feature.HUGE_FILE), blockSize) - eaBlocks == 0;
    }

    /** ext4_isize(): i_size_high counts only for regular files, or for anything with large_dir. */
    long isize(Inode i) {
        return i.isRegular() || sb.has(Feature.LARGEDIR) ? i.size() : i.size() & 0xFFFFFFFFL;
    }
}
