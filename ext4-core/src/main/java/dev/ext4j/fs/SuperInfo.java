package dev.ext4j.fs;

import dev.ext4j.Errno;
import dev.ext4j.Ext4Exception;
import dev.ext4j.alloc.Allocator;
import dev.ext4j.alloc.GroupTable;
import dev.ext4j.dir.DirFormat;
import dev.ext4j.format.Feature;
import dev.ext4j.format.Inode;
import dev.ext4j.format.Superblock;
import dev.ext4j.io.BufferCache;
import dev.ext4j.io.BlockDevice;
import dev.ext4j.journal.JournalLog;
import dev.ext4j.journal.JournalManager;
import dev.ext4j.journal.Transactions;
import dev.ext4j.pagecache.PageCache;
import dev.ext4j.resize.OnlineResize;
import java.util.List;

/**
 * What the parts of one mount share (the kernel's struct ext4_sb_info): the superblock and the
 * buffer cache, the allocator and the journal, the inode table and its locks, the error state, and
 * the parts that change files. Its constructor builds the parts, each given the components it
 * uses and, for the few calls back into the filesystem, this object as its {@code Host}
 * (the write gate, writing an inode, a block account...); {@code Mount}, {@code Migrate},
 * {@code OrphanFile} and {@code SuperState} still take it whole.
 * {@link Ext4FileSystem} is only the public face.
 *
 * <p>Built once per mount. The parts that change the filesystem (allocator, writeback, flusher,
 * resize) are null on a read-only mount.
 */
final class SuperInfo implements SuperState.Host, Migrate.Host, OrphanFile.Cleanup, Xattrs.Host, Evict.Host, Atime.Host, CopyRange.Host, Namei.Host, FileWrite.Host,
        Writeback.Host, Ioctl.Host, Orphans.Host {
    final BlockDevice device;
    final Superblock sb;
    final BufferCache cache;
    final GroupTable groups;
    final boolean readOnly;
    final MountOptions options;
    final List<String> messages;
    final int blockSize;
    final boolean metadataCsum;
    final int csumSeed;
    /** The journal, or the buffer cache's own write-back when the mount does not journal. */
    final Transactions tx;
    /** The block and inode allocator; null on a read-only mount. */
    final Allocator allocator;
    final InodeLocks locks;
    final InodeTable inodes;
    final DentryCache dentries = new DentryCache(1 << 18);
    /** Every change passes it before taking inode locks; closed while frozen. */
    final WriteGate gate = new WriteGate();
    final BlockAccount.Reserve reserve;
    /** s_resv_clusters: blocks kept back for metadata that delayed writes need. */
    final long resvClusters;
    final SuperState state;
    final Retry retry;
    final Orphans orphans;
    final Namei namei;
    final FileWrite fileWrite;
    final FileRead fileRead;
    final FileSeek fileSeek;
    final CopyRange copyRange;
    final Xattrs xattrs;
    final Evict evict;
    final Atime atime;
    /** The page cache and the buffered write path; null on a read-only mount. */
    final Writeback writeback;
    final Ioctl ioctl;
    /** Writes dirty data and metadata home in the background; null on a read-only mount. */
    final Flusher flusher;
    /** Multi-mount protection of a read-write mount of an MMP image; null otherwise. */
    final Mmp mmp;
    /** Replaced when an online resize changes s_inodes_count. */
    private volatile DirFormat dirFormat;
    /** Told the inode whose block count writeback changed (its tree blocks), for a client that caches stat. */
    volatile java.util.function.LongConsumer blocksChanged = ino -> { };

    SuperInfo(BlockDevice device, Superblock sb, BufferCache cache, GroupTable groups, boolean readOnly, List<String> messages,
              MountOptions options, JournalLog log, Mmp mmp) throws Ext4Exception {
        this.device = device;
        this.mmp = mmp;
        this.sb = sb;
        this.cache = cache;
        this.groups = groups;
        this.readOnly = readOnly;
        this.options = options;
        this.messages = List.copyOf(messages);
        this.blockSize = sb.blockSize();
        this.metadataCsum = sb.has(Feature.METADATA_CSUM);
        this.csumSeed = metadataCsum ? sb.checksumSeed() : 0;
        this.dirFormat = DirFormat.of(sb);
        this.allocator = readOnly ? null : new Allocator(sb, groups, cache);
        this.tx = log == null ? Transactions.unjournaled(cache) : new JournalManager(cache, log, allocator);
        this.locks = new InodeLocks(tx);
        this.inodes = new InodeTable(sb, groups, cache, locks, options.inodeCacheEntries());
        this.resvClusters = options.reservedClusters() >= 0 ? options.reservedClusters() : defaultResvClusters(sb);
        this.reserve = new BlockAccount.Reserve(sb.reservedBlocksCount(), resvClusters, sb.defResuid(), sb.defResgid());
        this.retry = new Retry(allocator, tx);
        this.state = new SuperState(device, sb, cache, groups, tx, readOnly, reserve, resvClusters,
                options.errors() != null ? options.errors() : ErrorPolicy.fromSuperblock(sb.errors()), this);
        this.orphans = new Orphans(sb, state, inodes, this);
        this.inodes.useOrphans(orphans);
        this.locks.onRelease((ino, tid) -> {
            InodeInfo info = inodes.lookup(ino);
            if (info != null) {
                info.changedIn(tid);
            }
        });
        PageCache pages = readOnly ? null : new PageCache(blockSize, options.cacheBytes());
        this.writeback = readOnly ? null : new Writeback(sb, cache, tx, inodes, locks, allocator, retry, pages, reserve, this);
        this.fileWrite = new FileWrite(sb, state, cache, tx, inodes, locks, orphans, writeback, this);
        this.fileRead = new FileRead(cache, inodes, locks, pages);
        this.fileSeek = new FileSeek(inodes, locks, pages, blockSize);
        this.xattrs = new Xattrs(sb, state, cache, inodes, locks, allocator, fileRead, this);
        this.evict = new Evict(inodes, locks, orphans, state, allocator, fileWrite, xattrs, blockSize, this);
        this.namei = new Namei(sb, state, cache, inodes, locks, dentries, allocator, orphans, fileRead, xattrs, evict, this);
        this.atime = new Atime(inodes, locks, state, this);
        this.copyRange = new CopyRange(state, cache, metadataCsum, inodes, fileRead, fileWrite, fileSeek, retry, this);
        this.flusher = readOnly ? null : new Flusher(gate, state, tx, retry, writeback, options);
        OnlineResize resizer = readOnly ? null : new OnlineResize(device, sb, cache, groups, allocator, new ResizeHost());
        this.ioctl = new Ioctl(state, inodes, locks, resizer, this);
        if (tx instanceof JournalManager jm) {
            jm.onAbort(state::journalAborted);
        }
    }

    /** s_resv_clusters (ext4_calculate_resv_clusters()): 2% of the blocks, at most 4096 clusters, with extents. */
    private static long defaultResvClusters(Superblock sb) {
        int ratio = sb.clusterRatio();
        return sb.has(Feature.EXTENTS) ? Math.min(sb.blocksCount() / ratio / 50, 4096) * ratio : 0;
    }

    /**
     * sb_start_write(): every change enters before taking inode locks (see {@link InodeLocks}).
     * EROFS once inside on a filesystem remounted read-only: the remount happens with the gate
     * closed, so no change that enters after it can start.
     */
    @Override
    public WriteGate.Entered enterGate() throws Ext4Exception {
        WriteGate.Entered e;
        if (flusher == null) {
            gate.enter();
            e = gate::exit;
        } else {
            e = flusher.enterGate();
        }
        if (state.remountedReadOnly()) {
            e.close();
            throw new Ext4Exception(Errno.EROFS, "the filesystem is mounted read-only");
        }
        return e;
    }

    /**
     * sb_start_write_trylock(): null while the filesystem is frozen or remounted read-only
     * (read-only mounts have no flusher and never get here).
     */
    @Override
    public WriteGate.Entered tryEnterGate() {
        WriteGate.Entered e = flusher != null ? flusher.tryEnterGate() : null;
        if (e != null && state.remountedReadOnly()) {
            e.close();
            return null;
        }
        return e;
    }

    // ---- the accessors the parts use ----

    Superblock superblock() {
        return sb;
    }

    BufferCache cache() {
        return cache;
    }

    Allocator allocator() {
        return allocator;
    }

    InodeLocks locks() {
        return locks;
    }

    Orphans orphans() {
        return orphans;
    }

    Writeback writeback() {
        return writeback;
    }

    Transactions transactions() {
        return tx;
    }

    boolean metadataCsum() {
        return metadataCsum;
    }

    int blockSize() {
        return blockSize;
    }

    @Override
    public DirFormat dirFormat() {
        return dirFormat;
    }

    /** After an online resize: the inode count that directory entries are checked against. */
    void geometryChanged() {
        dirFormat = DirFormat.of(sb);
        reserve.setForRoot(sb.reservedBlocksCount());
        state.geometryChanged();
    }

    /** What stat(2) shows of {@code ino} (ext4_getattr()): sizes and blocks as writes left them in memory. */
    @Override
    public FileAttributes attributes(long ino) throws Ext4Exception {
        InodeInfo info = inode(ino);
        info.setTimesSeen(true);
        Inode i = info.inode();
        boolean hugeFile = sb.has(Feature.HUGE_FILE);
        long blocks = i.blocks512(hugeFile, blockSize);
        long size = inodes.isize(i);
        if (i.hasFlag(Inode.INLINE_DATA_FL) && i.isRegular()) {
            blocks += (size + 511) >> 9; // as ext4_file_getattr(): inline files are not sparse
        }
        if (writeback != null && i.isRegular()) {
            size = info.size();
            blocks += info.reservedData() * (blockSize / 512); // as ext4_getattr(): delayed blocks count
        }
        // a directory with more than 65000 subdirectories keeps 1 (dir_nlink): shown as it is
        Ext4FileSystem.Time atime = Atime.of(info);
        return new FileAttributes(ino, i.mode(), i.linksCount(), i.uid(), i.gid(), size, blocks,
                atime.seconds(), atime.nanos(), i.mtimeSeconds(), i.mtimeNanos(),
                i.ctimeSeconds(), i.ctimeNanos(), i.crtimeSeconds(), i.crtimeNanos(),
                i.deviceMajor(), i.deviceMinor(), i.flags(), blockSize, i.generation());
    }

    @Override
    public InodeInfo inode(long ino) throws Ext4Exception {
        return inodes.get(ino);
    }

    @Override
    public long dirtyPageBytes() {
        return writeback == null ? 0 : writeback.pages().dirtyBytes();
    }

    /**
     * Writes a changed version of an inode: stamps its checksum, writes it into its inode table
     * block and replaces the in-memory inode. The caller holds the inode's write lock.
     */
    @Override
    public InodeInfo writeInode(long ino, Inode changed) throws Ext4Exception {
        state.requireWritable();
        return inodes.write(ino, changed);
    }

    @Override
    public int inodeSeed(long ino, Inode inode) {
        return inodes.seed(ino, inode);
    }

    void requireWritable() throws Ext4Exception {
        state.requireWritable();
    }

    @Override
    public void writeSuperblock() throws Ext4Exception {
        state.writeSuperblock();
    }

    /**
     * A journal handle for changes made without an inode lock (a migration building its detached
     * tree); the thread must take no inode lock while it runs (see {@link InodeLocks}).
     */
    @Override
    public Transactions.Handle startHandle(int credits) {
        return tx.start(credits);
    }

    /** A block account for one operation on {@code ino}, with the inode's group as the first place to look. */
    @Override
    public BlockAccount account(long ino, Inode inode) {
        return new BlockAccount(allocator, reserve, allocator.goalForInode(ino, inode.isRegular()), !inode.hasFlag(Inode.EXTENTS_FL));
    }

    @Override
    public void blocksChanged(long ino) {
        blocksChanged.accept(ino);
    }

    @Override
    public void balanceDirty(long ino) throws Ext4Exception {
        flusher.balanceDirty(ino);
    }

    @Override
    public void freeInode(long ino, Inode copy) throws Ext4Exception {
        evict.freeInode(ino, copy);
    }

    @Override
    public void finishOrphan(long ino) throws Ext4Exception {
        evict.finishOrphan(ino, () -> { });
    }

    @Override
    public void finishOrphan(long ino, Retry.Step then) throws Ext4Exception {
        evict.finishOrphan(ino, then);
    }

    @Override
    public void migrate(long ino) throws Ext4Exception {
        migration(() -> { }, null).run(ino);
    }

    /** A migration (EXT4_IOC_MIGRATE) with test hooks: before the swap, and between steps (null: none). */
    Migrate migration(Migrate.Hook beforeSwap, Migrate.Hook betweenSteps) {
        return new Migrate(sb, cache, tx, locks, allocator, orphans, this, beforeSwap, betweenSteps);
    }

    /** What {@link OnlineResize} needs of this mount. */
    private final class ResizeHost implements OnlineResize.Host {
        @Override
        public Inode readInode(long ino) throws Ext4Exception {
            return inode(ino).inode().copy();
        }

        @Override
        public void writeInode(long ino, Inode changed) throws Ext4Exception {
            SuperInfo.this.writeInode(ino, changed);
        }

        @Override
        public void writeSuperblock() throws Ext4Exception {
            SuperInfo.this.writeSuperblock();
        }

        @Override
        public Transactions.Handle startHandle(int credits) {
            return tx.start(credits);
        }

        @Override
        public int maxCredits() {
            return tx.maxCredits();
        }

        @Override
        public void geometryChanged() {
            SuperInfo.this.geometryChanged();
        }
    }
}
