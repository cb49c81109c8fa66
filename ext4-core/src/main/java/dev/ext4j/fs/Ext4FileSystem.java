package dev.ext4j.fs;

import dev.ext4j.Errno;
import dev.ext4j.Ext4Exception;
import dev.ext4j.LockOrder;
import dev.ext4j.alloc.GroupTable;
import dev.ext4j.alloc.Layout;
import dev.ext4j.dir.BlockDirectory;
import dev.ext4j.dir.DirEntries;
import dev.ext4j.dir.DirFormat;
import dev.ext4j.dir.DirSink;
import dev.ext4j.extent.BlockMap;
import dev.ext4j.extent.ExtentTree;
import dev.ext4j.extent.IndirectMap;
import dev.ext4j.extent.Mapping;
import dev.ext4j.format.Checksums;
import dev.ext4j.format.DirEntry;
import dev.ext4j.format.Feature;
import dev.ext4j.format.GroupDescriptor;
import dev.ext4j.format.Inode;
import dev.ext4j.format.JournalSuperblock;
import dev.ext4j.format.Superblock;
import dev.ext4j.inline.InlineDirectory;
import dev.ext4j.io.BlockCache;
import dev.ext4j.io.BlockDevice;
import dev.ext4j.io.FileBlockDevice;
import dev.ext4j.io.Lru;
import dev.ext4j.io.ReadAroundDevice;
import dev.ext4j.journal.Journal;
import dev.ext4j.journal.JournalLog;
import dev.ext4j.journal.JournalManager;
import dev.ext4j.journal.JournalRecovery;
import dev.ext4j.journal.Transactions;
import dev.ext4j.journal.ReplayOverlay;
import dev.ext4j.resize.OnlineResize;
import dev.ext4j.xattr.Acl;
import dev.ext4j.xattr.Xattr;
import dev.ext4j.xattr.XattrNames;
import dev.ext4j.xattr.XattrReader;
import dev.ext4j.xattr.XattrWriter;
import java.io.Closeable;
import java.io.IOException;
import java.lang.System.Logger.Level;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * A mounted ext4 filesystem (the kernel's super.c and the read side of inode.c and namei.c): the
 * feature gate at mount, then inodes, directories, file data, symlinks and xattrs by inode number.
 *
 * <p>Thread-safe: everything read is immutable once loaded, and the caches lock per segment.
 */
public final class Ext4FileSystem implements Closeable {
    private static final System.Logger LOG = System.getLogger("ext4j");
    public static final long ROOT_INO = 2;
    /** The system.data xattr that holds inline data past i_block. */
    private static final byte[] INLINE_DATA_NAME = {'d', 'a', 't', 'a'};

    private final BlockDevice device;
    private final Superblock sb;
    private final BlockCache cache;
    private final GroupTable groups;
    private final boolean readOnly;
    private final List<String> messages;
    private final int blockSize;
    private final boolean metadataCsum;
    private final int csumSeed;
    /** Replaced when an online resize changes s_inodes_count. */
    private volatile DirFormat dirFormat;
    private final Lru<Long, InodeInfo> inodes;
    private final DentryCache dentries = new DentryCache(1 << 18);
    private final InodeLocks locks;
    /** The journal, or the cache's own write-back when the mount does not journal. */
    private final Transactions tx;
    /** Every change passes it before taking inode locks; closed while frozen. */
    private final WriteGate gate = new WriteGate();
    /** Serializes freeze and thaw (the kernel's s_umount around freeze_super()). */
    private final Object freezeLock = new Object();
    private final java.util.concurrent.ConcurrentHashMap<Long, Integer> openCounts = new java.util.concurrent.ConcurrentHashMap<>();
    private final Namei namei;
    private final FileWrite fileWrite;
    /** The page cache and the buffered write path; null on a read-only mount. */
    private final Writeback writeback;
    private final MountOptions options;
    /** The block and inode allocator; null on a read-only mount. */
    private final dev.ext4j.alloc.Allocator allocator;
    private final Orphans orphans;
    /** Online grow; null on a read-only mount. */
    private final OnlineResize resizer;
    /** Replaced when an online resize changes s_r_blocks_count. */
    private final BlockAccount.Reserve reserve;
    private final long resvClusters;
    private final ErrorPolicy errorPolicy;
    /** Set when errors=remount-ro took effect: every change is refused from then on. */
    private volatile String errorReadOnly;
    /** Set when a failed commit aborted the journal: nothing can be committed any more. */
    private volatile String journalAborted;
    /** Called after errors=panic recorded an error; the mount's owner stops serving. */
    private volatile Runnable panicHandler = () -> { };
    /** Writes dirty metadata home every flush interval (the role of the kernel's flusher threads). */
    private final java.util.concurrent.ScheduledExecutorService flusher;
    /** The first failure of a background flush, reported by the next sync. */
    private final java.util.concurrent.atomic.AtomicReference<Ext4Exception> flushError = new java.util.concurrent.atomic.AtomicReference<>();

    private Ext4FileSystem(BlockDevice device, Superblock sb, BlockCache cache, GroupTable groups,
                           boolean readOnly, List<String> messages, MountOptions options, JournalLog log) throws Ext4Exception {
        this.device = device;
        this.sb = sb;
        this.cache = cache;
        this.groups = groups;
        this.readOnly = readOnly;
        this.messages = List.copyOf(messages);
        this.blockSize = sb.blockSize();
        this.metadataCsum = sb.has(Feature.METADATA_CSUM);
        this.csumSeed = metadataCsum ? sb.checksumSeed() : 0;
        int fl = sb.flags();
        this.dirFormat = new DirFormat(blockSize, sb.has(Feature.FILETYPE), metadataCsum, sb.has(Feature.DIR_INDEX),
                sb.has(Feature.LARGEDIR), sb.hashSeed(), (fl & Superblock.FLAG_UNSIGNED_HASH) != 0, sb.inodesCount());
        this.inodes = new Lru<>(options.inodeCacheEntries());
        this.allocator = readOnly ? null : new dev.ext4j.alloc.Allocator(sb, groups, cache);
        this.tx = log == null ? Transactions.unjournaled(cache) : new JournalManager(cache, log, allocator);
        this.locks = new InodeLocks(tx);
        this.namei = new Namei(this);
        this.fileWrite = new FileWrite(this);
        this.orphans = new Orphans(this);
        this.resvClusters = options.reservedClusters() >= 0 ? options.reservedClusters() : defaultResvClusters(sb);
        this.reserve = new BlockAccount.Reserve(sb.reservedBlocksCount(), resvClusters, sb.defResuid(), sb.defResgid());
        this.errorPolicy = options.errors() != null ? options.errors() : ErrorPolicy.fromSuperblock(sb.errors());
        this.options = options;
        this.writeback = readOnly ? null : new Writeback(this, new dev.ext4j.cache.PageCache(blockSize, options.cacheBytes()), reserve);
        this.flusher = readOnly ? null : startFlusher(options.flushIntervalMillis());
        this.resizer = readOnly ? null : new OnlineResize(device, sb, cache, groups, allocator, new ResizeHost());
        if (tx instanceof JournalManager jm) {
            jm.onAbort(this::journalAborted);
        }
    }

    Writeback writeback() {
        return writeback;
    }

    /**
     * After a write: above the dirty limit (half the page cache) the writer writes back its own
     * inode before it returns, as balance_dirty_pages() throttles; above the background limit (a
     * quarter) the flusher is woken.
     */
    void balanceDirty(long ino) throws Ext4Exception {
        var pc = writeback.pages();
        writeback.balance(ino, pc.maxBytes() / 2);
        if (pc.dirtyBytes() > pc.maxBytes() / 4 && flushQueued.compareAndSet(false, true)) {
            flusher.execute(this::flushRound);
        }
    }

    private final java.util.concurrent.atomic.AtomicBoolean flushQueued = new java.util.concurrent.atomic.AtomicBoolean();

    /** One round of the flusher: expired or excess dirty pages, then changed metadata. */
    private void flushRound() {
        flushQueued.set(false);
        var pc = writeback.pages();
        flush(() -> writeback.flusherRound(options.dirtyExpireMillis() * 1_000_000L, pc.maxBytes() / 4));
    }

    /** A change or write-back step that returns nothing (the flusher's data step, an orphan's follow-up). */
    @FunctionalInterface
    interface Step {
        void run() throws Ext4Exception;
    }

    /**
     * The flusher's work: {@code data} written back, then a commit and checkpoint (or changed
     * metadata written home without a journal). Nothing while frozen: everything is home then, and
     * nothing may reach the image until the thaw. A failure is kept for the next sync.
     */
    private void flush(Step data) {
        if (gate.isFrozen()) {
            return;
        }
        if (journalAborted != null) {
            return; // nothing can commit any more; the abort was reported once
        }
        long released = releases();
        try {
            retrying(data);
            tx.tick();
        } catch (Ext4Exception | RuntimeException e) {
            if (e instanceof Ext4Exception x) {
                if (x.errno() == Errno.ENOSPC) {
                    // the pages stay dirty with their promises (nothing is dropped, unlike a failed
                    // delayed allocation in the kernel): the next round retries, and a sync writes
                    // them back itself and reports its own outcome, so this is kept for none
                    LOG.log(waitsForCommit(x, released) ? Level.DEBUG : Level.WARNING,
                            "writeback found no free block (the data stays dirty and is retried): {0}", e.toString());
                    return;
                }
                flushError.compareAndSet(null, x);
            }
            LOG.log(Level.ERROR, "writeback failed (the data stays dirty and is retried): {0}", e.toString());
        }
    }

    private java.util.concurrent.ScheduledExecutorService startFlusher(long intervalMillis) {
        var ex = new java.util.concurrent.ScheduledThreadPoolExecutor(1, r -> {
            Thread t = new Thread(r, "ext4j-flush");
            t.setDaemon(true);
            return t;
        });
        ex.setExecuteExistingDelayedTasksAfterShutdownPolicy(false); // a pending idle flush: close() does it all
        ex.scheduleWithFixedDelay(this::flushRound, intervalMillis, intervalMillis, java.util.concurrent.TimeUnit.MILLISECONDS);
        return ex;
    }

    /** Opens the image file and mounts it. */
    public static Ext4FileSystem open(Path image, MountOptions options) throws Ext4Exception {
        if (!options.readOnly()) {
            // Open for writing only when the filesystem will be mounted read-write; otherwise the
            // image is opened read-only, so a read-only mount cannot write to it whatever happens.
            Ext4FileSystem fs = openDevice(image, options, false);
            if (!fs.isReadOnly()) {
                return fs;
            }
            closeQuietly(fs.device);
        }
        return openDevice(image, options.withReadOnly(true), true);
    }

    private static Ext4FileSystem openDevice(Path image, MountOptions options, boolean readOnly) throws Ext4Exception {
        BlockDevice dev;
        try {
            dev = new ReadAroundDevice(FileBlockDevice.open(image, readOnly), 4L << 30);
        } catch (IOException e) {
            throw new Ext4Exception(Errno.EIO, "cannot open " + image + ": " + e.getMessage(), e);
        }
        try {
            return mount(dev, options);
        } catch (Ext4Exception | RuntimeException e) {
            closeQuietly(dev);
            throw e;
        }
    }

    /**
     * Mounts the filesystem on {@code device}. Refuses unknown incompatible features by name;
     * mounts read-only, saying why, when a feature or state forbids writing.
     */
    public static Ext4FileSystem mount(BlockDevice device, MountOptions options) throws Ext4Exception {
        List<String> messages = new ArrayList<>();
        Superblock sb = readSuperblock(device);
        boolean readOnly = options.readOnly() || device.isReadOnly();
        readOnly |= gateFeatures(sb, messages);
        if (sb.has(Feature.RECOVER)) {
            List<String> journalMessages = new ArrayList<>();
            device = recoverJournal(device, sb, readOnly, journalMessages);
            // replay may have rewritten the superblock and the group descriptors: start over from them
            sb = readSuperblock(device);
            messages.clear();
            readOnly |= gateFeatures(sb, messages);
            messages.addAll(journalMessages);
        }
        long deviceSize = deviceSize(device);
        long bytes = sb.blocksCount() * sb.blockSize();
        if (bytes > deviceSize) {
            throw Ext4Exception.corrupted("image is truncated: the superblock says " + sb.blocksCount() + " blocks of "
                    + sb.blockSize() + " bytes (" + bytes + " bytes) but the image has " + deviceSize + " bytes");
        }
        BlockCache cache = new BlockCache(device, sb.blockSize(), sb.blocksCount(), options.metadataCacheBytes());
        GroupTable groups = GroupTable.load(sb, cache, readOnly, messages);
        // the orphan file is checked through a read-only view before anything is written (opening
        // the log writes the journal superblock): a damaged one refuses the mount untouched
        OrphanFile orphanFile = readOnly ? null
                : OrphanFile.load(new Ext4FileSystem(device, sb, cache, groups, true, messages, options, null));
        JournalLog log = readOnly ? null : openJournalLog(device, sb, options, messages);
        Ext4FileSystem fs = new Ext4FileSystem(device, sb, cache, groups, readOnly, messages, options, log);
        FileAttributes root = fs.stat(ROOT_INO);
        if ((root.mode() & Inode.S_IFMT) != Inode.S_IFDIR) {
            throw Ext4Exception.corrupted("root inode 2 is not a directory (mode " + Integer.toOctalString(root.mode()) + ")");
        }
        for (String m : messages) {
            LOG.log(Level.WARNING, m);
        }
        if (!readOnly) {
            fs.markMounted();
            if (sb.lastOrphan() != 0) {
                fs.orphans.cleanup();
            }
            if (orphanFile != null) {
                orphanFile.cleanup(fs);
            }
        } else {
            if (sb.lastOrphan() != 0) {
                LOG.log(Level.WARNING, "the orphan list (from inode " + sb.lastOrphan() + ") is left for a read-write mount to finish");
            }
            if (sb.has(Feature.ORPHAN_PRESENT)) {
                LOG.log(Level.WARNING, "the orphan file (inode " + sb.orphanFileInum() + ") may hold orphans; they are left for a"
                        + " read-write mount to finish");
            }
        }
        return fs;
    }

    /**
     * The log a read-write mount of a has_journal filesystem writes its transactions into (null:
     * no journaling, by the image or by {@code journal=off}). A log left non-empty without
     * needs_recovery is wiped as the kernel's jbd2_journal_wipe() does: its transactions are
     * skipped, not replayed, and the next tid follows the last one found.
     */
    private static JournalLog openJournalLog(BlockDevice device, Superblock sb, MountOptions options, List<String> messages)
            throws Ext4Exception {
        if (!sb.has(Feature.HAS_JOURNAL) || !options.journal()) {
            return null;
        }
        Journal journal;
        try {
            journal = Journal.open(device, sb);
        } catch (Ext4Exception e) {
            if (e.errno() != Errno.EOPNOTSUPP) {
                throw e;
            }
            messages.add(e.getMessage() + "; changes are not journaled (as with journal=off)");
            return null;
        }
        JournalSuperblock jsb = journal.superblock();
        if (jsb.start() != 0) {
            JournalRecovery.Result r = JournalRecovery.recover(journal);
            messages.add("journal inode " + journal.inodeNumber() + " holds transactions " + r.startTid() + ".."
                    + (r.endTid() - 1) + " but the filesystem does not need recovery: they are cleared, not replayed");
            jsb.setStart(0);
            jsb.setSequence(r.endTid() + 1);
            journal.writeSuperblock();
            journal.sync();
        }
        try {
            return JournalLog.open(journal, sb.has(Feature.METADATA_CSUM), sb.has(Feature.BIT64));
        } catch (Ext4Exception e) {
            if (e.errno() != Errno.EOPNOTSUPP) {
                throw e;
            }
            messages.add(e.getMessage() + "; changes are not journaled (as with journal=off)");
            return null;
        }
    }

    private static long deviceSize(BlockDevice device) throws Ext4Exception {
        try {
            return device.size();
        } catch (IOException e) {
            throw new Ext4Exception(Errno.EIO, "cannot read the image size: " + e.getMessage(), e);
        }
    }

    /** Reads, validates and checksums the primary superblock. */
    private static Superblock readSuperblock(BlockDevice device) throws Ext4Exception {
        ByteBuffer raw = ByteBuffer.allocate(Superblock.SIZE);
        long deviceSize = deviceSize(device);
        if (deviceSize < Superblock.OFFSET_IN_IMAGE + Superblock.SIZE) {
            throw Ext4Exception.corrupted("image of " + deviceSize + " bytes is too small to hold a superblock");
        }
        try {
            device.read(Superblock.OFFSET_IN_IMAGE, raw);
        } catch (IOException e) {
            throw new Ext4Exception(Errno.EIO, "cannot read the superblock: " + e.getMessage(), e);
        }
        Superblock sb = new Superblock(raw.flip());
        sb.validate();
        if (sb.has(Feature.METADATA_CSUM)) {
            if (sb.checksumType() != 1) {
                throw Ext4Exception.corrupted("superblock: checksum type " + sb.checksumType() + " (expected 1, crc32c)");
            }
            int computed = sb.computeChecksum();
            if (computed != sb.storedChecksum()) {
                throw Ext4Exception.badChecksum("superblock", sb.storedChecksum() & 0xFFFFFFFFL, computed & 0xFFFFFFFFL);
            }
        }
        return sb;
    }

    /**
     * Replays the journal of a filesystem that needs recovery (ext4_load_journal()). Read-write:
     * the replayed blocks are written home, the journal is emptied (s_start 0, s_sequence past the
     * last transaction) and needs_recovery is cleared, each step made durable before the next.
     * Read-only: nothing is written; the returned device shows the replayed blocks from memory.
     *
     * @return the device to mount from
     */
    private static BlockDevice recoverJournal(BlockDevice device, Superblock sb, boolean readOnly, List<String> messages)
            throws Ext4Exception {
        if (!sb.has(Feature.HAS_JOURNAL)) {
            throw Ext4Exception.corrupted("superblock: needs_recovery is set but the filesystem has no journal; run e2fsck");
        }
        Journal journal = Journal.open(device, sb);
        JournalSuperblock jsb = journal.superblock();
        JournalRecovery.Result r = JournalRecovery.recover(journal);
        String what = r.transactions() == 0 ? "journal was empty"
                : "journal replayed: transactions " + r.startTid() + ".." + (r.endTid() - 1) + ", " + r.blocks().size()
                        + " blocks, " + r.revokeHits() + " revoked copies skipped";
        // an online resize logs blocks past the old end (the new groups' bitmaps and descriptors)
        // with the superblock that takes them in: the bound is the image, as jbd2's is the device
        long limit = Math.max(sb.blocksCount(), deviceSize(device) / sb.blockSize());
        for (long home : r.blocks().keySet()) {
            // block 0 is legitimate: it holds the superblock of a filesystem with blocks over 1 KiB
            if (home < 0 || home >= limit) {
                throw Ext4Exception.corrupted("journal inode " + journal.inodeNumber() + ": transaction logs block " + home
                        + " outside the image (0.." + (limit - 1) + "); run e2fsck");
            }
        }
        if (readOnly) {
            messages.add(what + " in memory (read-only mount; the image is unchanged)");
            if (jsb.errno() != 0) {
                messages.add("journal recorded error " + jsb.errno() + " in a previous mount; run e2fsck");
            }
            return new ReplayOverlay(device, journal, r);
        }
        int bs = sb.blockSize();
        try {
            for (var e : r.blocks().entrySet()) {
                device.write(e.getKey() * bs, ByteBuffer.wrap(JournalRecovery.contents(journal, e.getValue())));
            }
            device.sync();
        } catch (IOException e) {
            throw new Ext4Exception(Errno.EIO, "writing replayed blocks home failed: " + e.getMessage(), e);
        }
        int journalErrno = jsb.errno();
        jsb.setStart(0);
        jsb.setSequence(r.endTid() + 1);
        jsb.setErrno(0);
        journal.writeSuperblock();
        journal.sync();
        Superblock replayed = readSuperblock(device);
        replayed.setFeatureIncompat(replayed.featureIncompat() & ~Feature.RECOVER.mask());
        if (journalErrno != 0) {
            // ext4_clear_journal_err(): an aborted journal marks the filesystem as having errors
            replayed.setState(replayed.state() | Superblock.STATE_ERROR);
            messages.add("journal recorded error " + journalErrno + " in a previous mount; the filesystem is marked"
                    + " with errors; run e2fsck");
        }
        replayed.updateChecksum();
        try {
            device.write(Superblock.OFFSET_IN_IMAGE, replayed.raw());
            device.sync();
        } catch (IOException e) {
            throw new Ext4Exception(Errno.EIO, "writing the superblock after journal replay failed: " + e.getMessage(), e);
        }
        messages.add(what);
        return device;
    }

    /** The feature gate; returns true when the mount must be read-only. */
    private static boolean gateFeatures(Superblock sb, List<String> messages) throws Ext4Exception {
        List<String> refused = new ArrayList<>();
        for (Feature f : Feature.values()) {
            if (f.kind() == Feature.Kind.INCOMPAT && sb.has(f) && !f.readable()) {
                refused.add(f.kernelName());
            }
        }
        refused.addAll(Feature.names(Feature.Kind.INCOMPAT, Feature.unknownBits(Feature.Kind.INCOMPAT, sb.featureIncompat())));
        if (!refused.isEmpty()) {
            throw new Ext4Exception(Errno.EOPNOTSUPP, "unsupported incompatible features: " + String.join(" ", refused));
        }
        boolean ro = false;
        int unknownRo = Feature.unknownBits(Feature.Kind.RO_COMPAT, sb.featureRoCompat());
        if (unknownRo != 0) {
            messages.add("unknown read-only-compatible features " + String.join(" ", Feature.names(Feature.Kind.RO_COMPAT, unknownRo))
                    + "; mounted read-only");
            ro = true;
        }
        List<String> notWritable = new ArrayList<>();
        for (Feature f : Feature.values()) {
            if (sb.has(f) && !f.writable()) {
                notWritable.add(f.kernelName());
            }
        }
        if (!notWritable.isEmpty()) {
            messages.add("ext4j cannot write features " + String.join(" ", notWritable) + "; mounted read-only");
            ro = true;
        }
        return ro;
    }

    public boolean isReadOnly() {
        return readOnly;
    }

    /** What the mount had to say: read-only reasons, ignored checksum failures. */
    public List<String> messages() {
        return messages;
    }

    public Superblock superblock() {
        return sb;
    }

    // ---- inodes ----

    /** Loads and checks inode {@code ino}; reserved inodes other than the root are allowed only for {@code internal}. */
    InodeInfo inode(long ino) throws Ext4Exception {
        InodeInfo info = inodes.get(ino);
        if (info != null) {
            return info;
        }
        // Loaded under the inode's install monitor, which writeInode() holds too, so a concurrent
        // writeInode() cannot be overtaken by this older copy landing in the cache after it. Not
        // under the inode's read lock: callers load inodes while holding other inodes' locks
        // (lookup under its directory's, the rename loop check up the ancestors), and waiting
        // for one more inode lock there breaks the lock order (see InodeLocks).
        try (InodeLocks.Locked l = locks.install(ino)) {
            info = inodes.get(ino);
            return info != null ? info : load(ino);
        }
    }

    private InodeInfo load(long ino) throws Ext4Exception {
        InodeInfo info;
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
                throw Ext4Exception.badChecksum("inode " + ino + " (block " + block + ")", inode.storedChecksum() & 0xFFFFFFFFL, computed & 0xFFFFFFFFL);
            }
            seed = inodeSeed(ino, inode);
        }
        if (isz > Inode.GOOD_OLD_SIZE && Inode.GOOD_OLD_SIZE + inode.extraIsize() > isz) {
            throw Ext4Exception.corrupted("inode " + ino + ": i_extra_isize " + inode.extraIsize() + " does not fit in " + isz + " bytes");
        }
        if (inode.mode() != 0 && DirEntry.fileTypeOfMode(inode.mode()) == DirEntry.FT_UNKNOWN) {
            throw Ext4Exception.corrupted(String.format("inode %d has an invalid file type in mode 0%o", ino, inode.mode()));
        }
        info = new InodeInfo(ino, inode, seed, blockMap(ino, inode, seed));
        inodes.put(ino, info);
        return info;
    }

    /** Block of the inode table that holds {@code ino}, and the byte offset in it. */
    private long[] inodeLocation(long ino) {
        long ipg = sb.inodesPerGroup();
        long byteOff = ((ino - 1) % ipg) * sb.inodeSize();
        long block = groups.get((ino - 1) / ipg).inodeTable() + byteOff / blockSize;
        return new long[] {block, byteOff % blockSize};
    }

    /**
     * Writes a changed version of an inode: stamps its checksum, writes it into its inode table
     * block and replaces the in-memory inode. The caller holds the inode's write lock.
     */
    InodeInfo writeInode(long ino, Inode changed) throws Ext4Exception {
        requireWritable();
        return orphans.stampAndWrite(ino, changed, this::installInode);
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
            Inode copy = inode(ino).inode().copy();
            copy.setDtime(nextIno);
            installInode(ino, copy);
        }
    }

    private InodeInfo installInode(long ino, Inode changed) throws Ext4Exception {
        int seed = 0;
        if (metadataCsum) {
            changed.setChecksum(changed.computeChecksum(csumSeed, ino));
            seed = inodeSeed(ino, changed);
        }
        long[] loc = inodeLocation(ino);
        ByteBuffer raw = changed.raw();
        InodeInfo info = new InodeInfo(ino, changed, seed, blockMap(ino, changed, seed));
        try (InodeLocks.Locked l = locks.install(ino)) {
            cache.update(loc[0], b -> b.put((int) loc[1], raw, 0, changed.rawSize()));
            inodes.put(ino, info);
        }
        return info;
    }

    /** EROFS unless the filesystem is mounted read-write. */
    void requireWritable() throws Ext4Exception {
        if (readOnly) {
            throw new Ext4Exception(Errno.EROFS, "the filesystem is mounted read-only");
        }
        String why = errorReadOnly;
        if (why != null) {
            throw new Ext4Exception(Errno.EROFS, "read-only since an error (errors=remount-ro): " + why);
        }
        String aborted = journalAborted;
        if (aborted != null) {
            throw new Ext4Exception(Errno.EROFS, "the journal aborted after a failed commit (" + aborted
                    + "); no change can be made until an unmount, e2fsck and a new mount");
        }
    }

    /**
     * ext4_handle_error() for an aborted journal (a commit failed): the error goes into the home
     * superblock (s_errno EIO, the error fields, state not clean) as far as the device still takes
     * writes, without anything uncommitted (the superblock as the image has it, not our copy, which
     * may hold changes that never committed), and errors= applies: every later change is refused
     * with EROFS whatever the policy (nothing can commit any more, as ext4_journal_check_start()),
     * remount-ro also says so in the status, and panic stops serving. The journal superblock got
     * the errno already, so the next mount marks the filesystem as having errors even if a replay
     * writes an older superblock home.
     */
    private void journalAborted(Ext4Exception cause) {
        journalAborted = cause.getMessage();
        String op = "jbd2_commit";
        int code = 2; // EXT4_ERR_EIO
        synchronized (LockOrder.monitor(LockOrder.Level.SUPERBLOCK, -1, sb)) {
            sb.recordError(Time.now().seconds(), 0, 0, op, code);
            sb.setState(sb.state() | Superblock.STATE_ERROR);
            mountState |= Superblock.STATE_ERROR;
        }
        try {
            Superblock home = readSuperblock(device);
            home.recordError(Time.now().seconds(), 0, 0, op, code);
            home.setState(home.state() | Superblock.STATE_ERROR);
            home.updateChecksum();
            device.write(Superblock.OFFSET_IN_IMAGE, home.raw());
            device.sync();
        } catch (Ext4Exception | IOException | RuntimeException e) {
            LOG.log(Level.ERROR, "recording the journal abort in the superblock failed: {0}", e.toString());
        }
        switch (errorPolicy) {
            case CONTINUE -> LOG.log(Level.ERROR, "journal aborted (errors=continue): every change is refused with EROFS from now on");
            case REMOUNT_RO -> {
                if (errorReadOnly == null) {
                    errorReadOnly = "journal commit failed: " + cause.getMessage();
                }
                LOG.log(Level.ERROR, "journal aborted, errors=remount-ro: refusing all changes from now on");
            }
            case PANIC -> {
                LOG.log(Level.ERROR, "errors=panic: stopping after the journal aborted: " + cause.getMessage());
                panicHandler.run();
            }
        }
    }

    /**
     * ext4_handle_error() for corruption found while serving {@code op}: the error is counted in the
     * superblock with the state marked not clean, then errors= decides (continue, refuse changes
     * from now on, or stop serving). Read-only mounts only log it.
     */
    public void recordError(String op, Ext4Exception e) {
        if (readOnly) {
            return;
        }
        int code = switch (e.errno()) {
            case EBADMSG -> 4;
            case EUCLEAN -> 5;
            default -> 2;
        };
        try (Transactions.Handle h = tx.start(1)) {
            synchronized (LockOrder.monitor(LockOrder.Level.SUPERBLOCK, -1, sb)) {
                sb.recordError(Time.now().seconds(), 0, 0, op, code);
                sb.setState(sb.state() | Superblock.STATE_ERROR);
                mountState |= Superblock.STATE_ERROR;
                writeSuperblock();
            }
        } catch (Ext4Exception f) {
            LOG.log(Level.ERROR, "recording the error in the superblock failed: {0}", f.toString());
        }
        switch (errorPolicy) {
            case CONTINUE -> { }
            case REMOUNT_RO -> {
                if (errorReadOnly == null) {
                    errorReadOnly = op + ": " + e.getMessage();
                    LOG.log(Level.ERROR, "errors=remount-ro: refusing all changes from now on");
                }
            }
            case PANIC -> {
                LOG.log(Level.ERROR, "errors=panic: stopping after " + op + ": " + e.getMessage());
                // as ext4_commit_super() before the kernel panics: the error reaches the image
                // now, in the log (so a replay keeps it) and at home (so dumpe2fs shows it)
                try {
                    tx.sync();
                } catch (Ext4Exception f) {
                    LOG.log(Level.ERROR, "committing the journal before stopping failed: {0}", f.toString());
                }
                try {
                    writeSuperblock(true);
                    cache.force();
                } catch (Ext4Exception f) {
                    LOG.log(Level.ERROR, "writing the superblock before stopping failed: {0}", f.toString());
                }
                panicHandler.run();
            }
        }
    }

    /** What errors=panic runs once the error is recorded (the FUSE side unmounts and exits). */
    public void onPanic(Runnable handler) {
        this.panicHandler = handler;
    }


    // ---- attributes ----

    /** A point in time: seconds since the epoch and nanoseconds. */
    public record Time(long seconds, int nanos) {
        public static Time now() {
            java.time.Instant i = java.time.Instant.now();
            return new Time(i.getEpochSecond(), i.getNano());
        }
    }

    /**
     * Changes attributes (ext4_setattr()): each argument may be null to leave it alone. The
     * caller (the kernel, with default_permissions) has checked who may change what; a chown of a
     * non-directory clears setuid, and setgid when group execute is set, as the VFS does.
     */
    public FileAttributes setAttributes(long ino, Integer mode, Long uid, Long gid, Time atime, Time mtime) throws Ext4Exception {
        requireWritable();
        try (Entered g = enterGate(); InodeLocks.Held h = locks.lockAll(ino)) {
            Inode i = inode(ino).inode().copy();
            if (mode != null || uid != null || gid != null) {
                Namei.requireNotImmutable(ino, i); // notify_change()
            }
            Time now = Time.now();
            if (mode != null) {
                i.setMode((i.mode() & Inode.S_IFMT) | (mode & 07777));
            }
            if (uid != null || gid != null) {
                if (uid != null) {
                    i.setUid(uid);
                }
                if (gid != null) {
                    i.setGid(gid);
                }
                if (!i.isDirectory() && mode == null) {
                    // setuid always goes; setgid only with group execute (without it, it marks
                    // mandatory locking and stays), as should_remove_suid() decides
                    int kill = 04000 | ((i.mode() & 00010) != 0 ? 02000 : 0);
                    i.setMode(i.mode() & ~kill);
                }
            }
            if (atime != null) {
                i.setAtime(atime.seconds(), atime.nanos());
            }
            if (mtime != null) {
                i.setMtime(mtime.seconds(), mtime.nanos());
            }
            i.setCtime(now.seconds(), now.nanos());
            writeInode(ino, i);
        }
        return stat(ino);
    }

    // ---- namespace and data changes (fs/ext4/namei.c, inode.c) ----

    /** Creates a file, device, fifo or socket ({@code mode} carries the type); returns its inode. */
    public long mknod(long dirIno, byte[] name, int mode, int major, int minor, long uid, long gid) throws Ext4Exception {
        int type = mode & Inode.S_IFMT;
        int m = type == 0 ? mode | Inode.S_IFREG : mode;
        if (type == Inode.S_IFDIR || type == Inode.S_IFLNK) {
            throw new Ext4Exception(Errno.EINVAL, "mknod cannot make directories or symlinks");
        }
        try (Entered g = enterGate()) {
            return namei.create(dirIno, name, m, major, minor, null, uid, gid);
        }
    }

    public long mkdir(long dirIno, byte[] name, int mode, long uid, long gid) throws Ext4Exception {
        try (Entered g = enterGate()) {
            return namei.create(dirIno, name, (mode & 07777) | Inode.S_IFDIR, 0, 0, null, uid, gid);
        }
    }

    public long symlink(long dirIno, byte[] name, byte[] target, long uid, long gid) throws Ext4Exception {
        try (Entered g = enterGate()) {
            return retryingAlloc(() -> namei.create(dirIno, name, Inode.S_IFLNK | 0777, 0, 0, target, uid, gid)); // a failed create is undone
        }
    }

    public void link(long ino, long dirIno, byte[] name) throws Ext4Exception {
        try (Entered g = enterGate()) {
            namei.link(ino, dirIno, name);
        }
    }

    public void unlink(long dirIno, byte[] name) throws Ext4Exception {
        try (Entered g = enterGate()) {
            namei.remove(dirIno, name, false);
        }
    }

    public void rmdir(long dirIno, byte[] name) throws Ext4Exception {
        try (Entered g = enterGate()) {
            namei.remove(dirIno, name, true);
        }
    }

    public void rename(long fromDir, byte[] fromName, long toDir, byte[] toName) throws Ext4Exception {
        try (Entered g = enterGate()) {
            namei.rename(fromDir, fromName, toDir, toName);
        }
    }

    public int write(long ino, long offset, ByteBuffer src) throws Ext4Exception {
        try (Entered g = enterGate()) {
            return retryingAlloc(() -> fileWrite.write(ino, offset, src)); // nothing was taken: ENOSPC comes only for none
        }
    }

    /**
     * Whether {@code e} is an ENOSPC that a commit may lift: some free blocks wait for the commit of
     * the transaction that freed them, or did when the allocation failed ({@code released}, the
     * allocator's {@link dev.ext4j.alloc.Allocator#releases} before it: a commit since may have made
     * them reusable).
     */
    boolean waitsForCommit(Ext4Exception e, long released) {
        return e.errno() == Errno.ENOSPC && allocator != null && tx.journaled()
                && (allocator.hasUncommittedFrees() || allocator.releases() != released);
    }

    /** The allocator's count of committed frees released, for {@link #waitsForCommit}; 0 read-only. */
    long releases() {
        return allocator == null ? 0 : allocator.releases();
    }

    /** A change that allocates data blocks and may run again after a failure. */
    private interface Retryable<T> {
        T run() throws Ext4Exception;
    }

    /**
     * Runs {@code op}, and once more after a commit when its ENOSPC came from blocks waiting for
     * one (ext4_should_retry_alloc(): file data may not reuse them before, see
     * Allocator#allocateBlocks). The caller runs no handle.
     */
    private <T> T retryingAlloc(Retryable<T> op) throws Ext4Exception {
        long released = releases();
        try {
            return op.run();
        } catch (Ext4Exception e) {
            if (!waitsForCommit(e, released)) {
                throw e;
            }
            tx.sync();
            return op.run();
        }
    }

    /** {@link #retryingAlloc} for a step that returns nothing. */
    private void retrying(Step op) throws Ext4Exception {
        retryingAlloc(() -> {
            op.run();
            return null;
        });
    }

    /** Writes every dirty page back, committing once first if ENOSPC came from blocks that wait for a commit. */
    private void writebackAllRetrying() throws Ext4Exception {
        retrying(writeback::writebackAll);
    }

    public void truncate(long ino, long size) throws Ext4Exception {
        try (Entered g = enterGate()) {
            fileWrite.truncate(ino, size);
        }
    }

    public void fallocate(long ino, int mode, long offset, long length) throws Ext4Exception {
        try (Entered g = enterGate()) {
            // what the first try allocated stays: fallocate again is the rest
            retrying(() -> fileWrite.fallocate(ino, mode, offset, length));
        }
    }

    /** setxattr(2): XATTR_CREATE / XATTR_REPLACE in {@code flags}; ACLs arrive in the VFS format. */
    public void setXattr(long ino, String name, byte[] value, int flags) throws Ext4Exception {
        changeXattr(ino, name, value, flags);
    }

    public void removeXattr(long ino, String name) throws Ext4Exception {
        changeXattr(ino, name, null, 0);
    }

    private boolean hasXattr(Inode inode, long ino, Xattr key) throws Ext4Exception {
        List<Xattr> all = new ArrayList<>(XattrReader.readIbody(inode, ino, eaInodeReader()));
        if (inode.fileAcl() != 0) {
            all.addAll(XattrReader.readBlock(cache, inode.fileAcl(), ino, metadataCsum, csumSeed, eaInodeReader()));
        }
        return all.stream().anyMatch(x -> x.nameIndex() == key.nameIndex() && Arrays.equals(x.suffix(), key.suffix()));
    }

    /** Sets ({@code value != null}) or removes one attribute: inode body first, then the xattr block. */
    private void changeXattr(long ino, String name, byte[] value, int flags) throws Ext4Exception {
        requireWritable();
        Xattr key = XattrNames.split(name);
        if (key == null || key.nameIndex() == XattrNames.SYSTEM) {
            throw new Ext4Exception(Errno.EOPNOTSUPP, "unsupported xattr namespace in \"" + name + "\"");
        }
        if (key.suffix().length > 255) {
            throw new Ext4Exception(Errno.ERANGE, "xattr name of " + key.suffix().length + " bytes (max 255)");
        }
        byte[] disk = value;
        if (value != null && (key.nameIndex() == XattrNames.POSIX_ACL_ACCESS || key.nameIndex() == XattrNames.POSIX_ACL_DEFAULT)) {
            disk = Acl.xattrToDisk(value);
        }
        try (Entered g = enterGate(); InodeLocks.Held h = locks.lockAll(ino)) {
            InodeInfo info = inode(ino);
            Inode copy = info.inode().copy();
            if (value != null && key.nameIndex() == XattrNames.POSIX_ACL_DEFAULT && !copy.isDirectory()) {
                throw new Ext4Exception(Errno.EACCES, "a default ACL needs a directory");
            }
            if (value != null && key.nameIndex() == XattrNames.POSIX_ACL_ACCESS) {
                // ext4_set_acl(): the ACL sets the permission bits, and one that says no more than
                // them is not stored at all
                copy.setMode((copy.mode() & ~0777) | Acl.permissionBits(value));
                if (Acl.equivalentToMode(value)) {
                    disk = null;
                    flags = 0;
                    if (!hasXattr(copy, ino, key)) {
                        Time now = Time.now();
                        copy.setCtime(now.seconds(), now.nanos());
                        writeInode(ino, copy);
                        return;
                    }
                }
            }
            List<Xattr> body = XattrReader.readIbody(copy, ino, eaInodeReader());
            long oldBlock = copy.fileAcl();
            List<Xattr> inBlock = oldBlock == 0 ? List.of()
                    : XattrReader.readBlock(cache, oldBlock, ino, metadataCsum, csumSeed, eaInodeReader());
            int room = copy.rawSize() > Inode.GOOD_OLD_SIZE ? copy.rawSize() - Inode.GOOD_OLD_SIZE - copy.extraIsize() : 0;
            XattrWriter.Layout layout = XattrWriter.change(body, inBlock, key, disk, flags, room, blockSize);
            XattrWriter.writeIbody(copy, layout.ibody());
            long sectors = copy.blocks512(sb.has(Feature.HUGE_FILE), blockSize);
            if (!layout.block().equals(inBlock) || layout.block().isEmpty() != (oldBlock == 0)) {
                long newBlock = 0;
                if (!layout.block().isEmpty()) {
                    boolean shared = oldBlock != 0 && dev.ext4j.format.XattrEntry.refcount(cache.get(oldBlock)) > 1;
                    // ext4_new_meta_blocks() without EXT4_MB_USE_RESERVED: never the blocks promised to
                    // delayed writes or the last 2%, and root's reserve only for root
                    newBlock = oldBlock != 0 && !shared ? oldBlock : account(ino, copy).allocateJournaled(0, 1).start();
                    long nb = newBlock;
                    BlockCache.Mutator fill = b -> {
                        XattrWriter.writeBlock(b, layout.block(), blockSize); // leaves h_checksum zero
                        if (metadataCsum) {
                            b.putInt(dev.ext4j.format.XattrEntry.H_CHECKSUM, dev.ext4j.format.XattrEntry.computeBlockChecksum(b, csumSeed, nb, blockSize));
                        }
                    };
                    if (newBlock == oldBlock) {
                        cache.update(newBlock, fill);
                    } else {
                        cache.create(newBlock, fill);
                    }
                }
                if (oldBlock != 0 && oldBlock != newBlock) {
                    xattrBlockRelease(oldBlock);
                    sectors -= blockSize / 512;
                }
                if (newBlock != 0 && newBlock != oldBlock) {
                    sectors += blockSize / 512;
                }
                copy.setFileAcl(newBlock);
                copy.setBlocks512(Math.max(0, sectors), blockSize);
            }
            Time now = Time.now();
            copy.setCtime(now.seconds(), now.nanos());
            writeInode(ino, copy);
        }
    }

    /** Whether a file handle has {@code ino} open. */
    public boolean isOpen(long ino) {
        return openCounts.containsKey(ino);
    }

    /** An open file handle was created for {@code ino}. */
    public void open(long ino) {
        openCounts.merge(ino, 1, Integer::sum);
    }

    /** The last use of an open file handle ended: an inode whose last name went is freed now. */
    public void release(long ino) throws Ext4Exception {
        Integer left = openCounts.computeIfPresent(ino, (k, n) -> n > 1 ? n - 1 : null);
        if (left == null && !readOnly) {
            evictIfUnlinked(ino);
        }
    }

    /** ext4_evict_inode() after the last close: an inode with no name left is freed. */
    private void evictIfUnlinked(long ino) throws Ext4Exception {
        try (Entered g = enterGate(); InodeLocks.Held h = locks.lockAll(ino)) {
            InodeInfo info = inode(ino);
            Inode in = info.inode();
            if (in.linksCount() == 0 && in.mode() != 0 && (in.dtime() == 0 || orphans.contains(ino))) {
                freeInode(ino, info.inode().copy());
            }
        }
    }

    /**
     * Frees an inode whose last name is gone (ext4_evict_inode()): its blocks and xattr block, then
     * the inode itself, unless a file handle still has it open. The caller holds its lock.
     */
    void freeInode(long ino, Inode copy) throws Ext4Exception {
        copy.setLinksCount(0);
        if (openCounts.containsKey(ino)) {
            orphans.add(ino); // a crash before the last release leaves it for the next mount
            writeInode(ino, copy); // freed on the last release
            return;
        }
        InodeInfo info = inode(ino);
        boolean dir = copy.isDirectory();
        fileWrite.releaseAll(info, copy);
        if (copy.fileAcl() != 0) {
            xattrBlockRelease(copy.fileAcl());
            copy.setFileAcl(0);
            copy.setBlocks512(0, blockSize);
        }
        orphans.remove(ino);
        copy.setDtime(Time.now().seconds());
        copy.setSize(0);
        writeInode(ino, copy);
        allocator.freeInode(ino, dir);
    }

    Orphans orphans() {
        return orphans;
    }

    /** Finishes what a crash interrupted for one orphan: a delete, or a truncate. */
    void finishOrphan(long ino) throws Ext4Exception {
        finishOrphan(ino, () -> { });
    }

    /**
     * {@link #finishOrphan(long)}, then {@code then} under the orphan's locks and in its handle, so
     * that it commits with the orphan's finish (the orphan file clears its slot).
     */
    void finishOrphan(long ino, Step then) throws Ext4Exception {
        try (InodeLocks.Held h = locks.lockAll(ino)) {
            Inode copy = inode(ino).inode().copy();
            if (copy.mode() == 0) {
                LOG.log(Level.ERROR, "orphan list: inode " + ino + " is not in use; dropped from the list");
                orphans.remove(ino);
            } else if (copy.linksCount() == 0) {
                freeInode(ino, copy);
            } else {
                fileWrite.finishTruncate(ino);
            }
            then.run();
        }
    }

    /** Drops one reference to a shared xattr block, freeing it with the last. */
    private void xattrBlockRelease(long block) throws Ext4Exception {
        ByteBuffer b = cache.get(block);
        long refs = dev.ext4j.format.XattrEntry.refcount(b);
        if (refs <= 1) {
            allocator.freeBlocks(block, 1);
            return;
        }
        cache.update(block, w -> {
            w.putInt(4, (int) (refs - 1));
            if (metadataCsum) {
                w.putInt(dev.ext4j.format.XattrEntry.H_CHECKSUM, dev.ext4j.format.XattrEntry.computeBlockChecksum(w, csumSeed, block, blockSize));
            }
        });
    }

    // ---- for the write paths ----

    InodeLocks locks() {
        return locks;
    }

    DentryCache dentries() {
        return dentries;
    }

    BlockCache cache() {
        return cache;
    }

    dev.ext4j.alloc.Allocator allocator() {
        return allocator;
    }

    boolean metadataCsum() {
        return metadataCsum;
    }

    DirFormat dirFormat() {
        return dirFormat;
    }

    int blockSize() {
        return blockSize;
    }

    /** The per-inode checksum seed of a new or changed inode. */
    int inodeSeed(long ino, Inode inode) {
        return metadataCsum ? Checksums.crc32cLe32(Checksums.crc32cLe32(csumSeed, (int) ino), (int) inode.generation()) : 0;
    }

    /** A block account for one operation on {@code ino}, with the inode's group as the first place to look. */
    BlockAccount account(long ino, Inode inode) {
        boolean regular = inode.isRegular();
        return new BlockAccount(allocator, reserve, allocator.goalForInode(ino, regular), !inode.hasFlag(Inode.EXTENTS_FL));
    }

    /** An inode reached through a directory entry: must be in use and not a reserved one. */
    private InodeInfo linkedInode(long ino, long dirIno) throws Ext4Exception {
        if (ino != ROOT_INO && ino < sb.firstIno()) {
            throw Ext4Exception.corrupted("directory inode " + dirIno + " has an entry for reserved inode " + ino);
        }
        InodeInfo info = inode(ino);
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
    private boolean isFastSymlink(Inode inode) {
        if (!inode.isSymlink() || inode.hasFlag(Inode.EXTENTS_FL) || inode.hasFlag(Inode.INLINE_DATA_FL)) {
            return false;
        }
        long eaBlocks = inode.fileAcl() != 0 ? blockSize / 512 : 0;
        return inode.blocks512(sb.has(Feature.HUGE_FILE), blockSize) - eaBlocks == 0;
    }

    /** ext4_isize(): i_size_high counts only for regular files, or for anything with large_dir. */
    private long isize(Inode i) {
        return i.isRegular() || sb.has(Feature.LARGEDIR) ? i.size() : i.size() & 0xFFFFFFFFL;
    }

    public FileAttributes stat(long ino) throws Ext4Exception {
        Inode i = inode(ino).inode();
        long nlink = i.linksCount();
        if (i.isDirectory() && nlink == 1 && sb.has(Feature.DIR_NLINK)) {
            nlink = 1; // more than 65000 subdirectories: the count is not kept
        }
        long blocks = i.blocks512(sb.has(Feature.HUGE_FILE), blockSize);
        if (i.hasFlag(Inode.INLINE_DATA_FL) && i.isRegular()) {
            blocks += (isize(i) + 511) >> 9; // as ext4_file_getattr(): inline files are not sparse
        }
        long size = isize(i);
        if (writeback != null && i.isRegular()) {
            size = writeback.size(ino);
            blocks += writeback.delayedBlocks(ino) * (blockSize / 512); // as ext4_getattr(): delayed blocks count
        }
        return new FileAttributes(ino, i.mode(), nlink, i.uid(), i.gid(), size, blocks,
                i.atimeSeconds(), i.atimeNanos(), i.mtimeSeconds(), i.mtimeNanos(),
                i.ctimeSeconds(), i.ctimeNanos(), i.crtimeSeconds(), i.crtimeNanos(),
                i.deviceMajor(), i.deviceMinor(), i.flags(), blockSize);
    }

    // ---- names ----

    /** Inode of {@code name} in directory {@code dirIno}; ENOENT when absent. */
    public long lookup(long dirIno, byte[] name) throws Ext4Exception {
        long ino = find(dirIno, name);
        if (ino == 0) {
            throw new Ext4Exception(Errno.ENOENT, "no entry in directory inode " + dirIno);
        }
        return ino;
    }

    /**
     * {@link #lookup}, with 0 for a name that is not there: the kernel looks up every name before
     * it creates it, and an exception per new name costs more than the search.
     */
    private long find(long dirIno, byte[] name) throws Ext4Exception {
        if (name.length > 255) {
            throw new Ext4Exception(Errno.ENAMETOOLONG, "name of " + name.length + " bytes (max 255)");
        }
        long cached = dentries.get(dirIno, name);
        if (cached != 0) {
            return cached;
        }
        try (InodeLocks.Locked l = locks.read(dirIno)) {
            long ino = directory(dirIno).lookup(name);
            if (ino == 0) {
                return 0;
            }
            linkedInode(ino, dirIno);
            dentries.put(dirIno, name, ino); // under the lock, so an unlink cannot slip in between
            return ino;
        }
    }

    /** Walks an absolute path ("/a/b", bytes, '/'-separated) from the root. */
    public long resolve(byte[] path) throws Ext4Exception {
        long ino = resolveOrZero(path);
        if (ino == 0) {
            throw new Ext4Exception(Errno.ENOENT, "no such path");
        }
        return ino;
    }

    /** {@link #resolve}, with 0 when a name on the path is not there (see {@link #find}). */
    public long resolveOrZero(byte[] path) throws Ext4Exception {
        long ino = ROOT_INO;
        int i = 0;
        while (i < path.length) {
            while (i < path.length && path[i] == '/') {
                i++;
            }
            int start = i;
            while (i < path.length && path[i] != '/') {
                i++;
            }
            if (i > start) {
                if (!inode(ino).inode().isDirectory()) {
                    throw new Ext4Exception(Errno.ENOTDIR, "inode " + ino + " is not a directory");
                }
                ino = find(ino, Arrays.copyOfRange(path, start, i));
                if (ino == 0) {
                    return 0;
                }
            }
        }
        return ino;
    }

    public void readdir(long dirIno, long position, DirSink sink) throws Ext4Exception {
        try (InodeLocks.Locked l = locks.read(dirIno)) {
            directory(dirIno).readdir(position, sink);
        }
    }

    /**
     * The ".." of a directory, read without its lock: only cross-directory renames change it, and
     * they hold the rename lock (see {@link InodeLocks}).
     */
    long parentOf(long dirIno) throws Ext4Exception {
        long parent = directory(dirIno).lookup(new byte[] {'.', '.'});
        if (parent == 0) {
            throw Ext4Exception.corrupted("directory inode " + dirIno + " has no \"..\" entry");
        }
        return parent;
    }

    private DirEntries directory(long dirIno) throws Ext4Exception {
        InodeInfo info = inode(dirIno);
        Inode i = info.inode();
        if (!i.isDirectory()) {
            throw new Ext4Exception(Errno.ENOTDIR, "inode " + dirIno + " is not a directory");
        }
        if (i.linksCount() == 0) {
            // removed while someone still held its number (the VFS's IS_DEADDIR): nothing is in it
            throw new Ext4Exception(Errno.ENOENT, "directory inode " + dirIno + " was removed");
        }
        if (i.hasFlag(Inode.ENCRYPT_FL)) {
            throw new Ext4Exception(Errno.ENOKEY, "directory inode " + dirIno + " is encrypted");
        }
        if (i.hasFlag(Inode.INLINE_DATA_FL)) {
            return new InlineDirectory(dirIno, i.iBlock(), inlineXattr(info), dirFormat);
        }
        boolean indexed = i.hasFlag(Inode.INDEX_FL) && !i.hasFlag(Inode.CASEFOLD_FL);
        return new BlockDirectory(cache, dirIno, info.map(), isize(i), indexed, dirFormat, info.csumSeed());
    }

    // ---- data ----

    /**
     * Reads up to {@code dst.remaining()} bytes at {@code offset} into {@code dst}; returns the count,
     * 0 at or past the end of the file.
     */
    public int read(long ino, long offset, ByteBuffer dst) throws Ext4Exception {
        try (InodeLocks.Locked l = locks.read(ino)) {
            return readLocked(ino, offset, dst);
        }
    }

    private int readLocked(long ino, long offset, ByteBuffer dst) throws Ext4Exception {
        InodeInfo info = inode(ino);
        Inode i = info.inode();
        if (i.isDirectory()) {
            throw new Ext4Exception(Errno.EISDIR, "inode " + ino + " is a directory");
        }
        if (i.hasFlag(Inode.ENCRYPT_FL)) {
            throw new Ext4Exception(Errno.ENOKEY, "inode " + ino + " is encrypted");
        }
        long size = writeback != null && i.isRegular() ? writeback.size(ino) : isize(i);
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
        dev.ext4j.cache.PageCache.FilePages pages = writeback != null ? writeback.pages().peek(ino) : null;
        if (pages != null && !pages.isEmpty()) {
            readThroughPages(info, pages, offset, offset + len, dst);
            return len;
        }
        readFromImage(info, offset, offset + len, dst);
        return len;
    }

    /** Reads [pos, end) from the cached pages where there are some, and from the image between them. */
    private void readThroughPages(InodeInfo info, dev.ext4j.cache.PageCache.FilePages pages, long pos, long end, ByteBuffer dst)
            throws Ext4Exception {
        int ps = writeback.pages().pageSize();
        while (pos < end) {
            long index = pos / ps;
            dev.ext4j.cache.PageCache.Page p = pages.pin(index);
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
            long next = pages.nextIndex(index);
            long stop = next < 0 ? end : Math.min(end, next * ps);
            readFromImage(info, pos, stop, dst);
            pos = stop;
        }
    }

    /** Reads [pos, end) of a block-mapped file from the image: holes and unwritten blocks are zeros. */
    private void readFromImage(InodeInfo info, long pos, long end, ByteBuffer dst) throws Ext4Exception {
        while (pos < end) {
            long lblk = pos / blockSize;
            int inBlock = (int) (pos % blockSize);
            long lastBlk = (end - 1) / blockSize;
            Mapping m = info.map().map(lblk, lastBlk - lblk + 1);
            long runEnd = Math.min(end, (lblk + m.length()) * blockSize);
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
        for (int k = 0; k < n; k++) {
            dst.put((byte) 0);
        }
    }

    /** Target of a symbolic link. */
    public byte[] readlink(long ino) throws Ext4Exception {
        InodeInfo info = inode(ino);
        Inode i = info.inode();
        if (!i.isSymlink()) {
            throw new Ext4Exception(Errno.EINVAL, "inode " + ino + " is not a symbolic link");
        }
        if (i.hasFlag(Inode.ENCRYPT_FL)) {
            throw new Ext4Exception(Errno.ENOKEY, "symlink inode " + ino + " is encrypted");
        }
        long size = isize(i);
        if (size <= 0 || size >= blockSize || size >= 4096) {
            throw Ext4Exception.corrupted("symlink inode " + ino + " has size " + size + " (expected 1.." + (Math.min(blockSize, 4096) - 1) + ")");
        }
        byte[] target = new byte[(int) size];
        if (isFastSymlink(i)) {
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

    private byte[] inlineXattr(InodeInfo info) throws Ext4Exception {
        for (Xattr x : XattrReader.readIbody(info.inode(), info.ino(), this::readEaInode)) {
            if (x.nameIndex() == XattrNames.SYSTEM && Arrays.equals(x.suffix(), INLINE_DATA_NAME)) {
                return x.value();
            }
        }
        throw Ext4Exception.corrupted("inode " + info.ino() + " has inline data but no system.data xattr");
    }

    // ---- xattrs ----

    private List<Xattr> xattrs(long ino) throws Ext4Exception {
        InodeInfo info = inode(ino);
        List<Xattr> all = new ArrayList<>(XattrReader.readIbody(info.inode(), ino, eaInodeReader()));
        long block = info.inode().fileAcl();
        if (block != 0) {
            all.addAll(XattrReader.readBlock(cache, block, ino, metadataCsum, csumSeed, eaInodeReader()));
        }
        return all;
    }

    private XattrReader.ValueInodeReader eaInodeReader() {
        return sb.has(Feature.EA_INODE) ? this::readEaInode : null;
    }

    private byte[] readEaInode(long valueIno, long size) throws Ext4Exception {
        InodeInfo v = inode(valueIno);
        if (!v.inode().hasFlag(Inode.EA_INODE_FL) || v.inode().size() != size || size > (64L << 20)) {
            throw Ext4Exception.corrupted("xattr value inode " + valueIno + " is not an xattr inode of " + size + " bytes");
        }
        byte[] value = new byte[(int) size];
        read(valueIno, 0, ByteBuffer.wrap(value));
        return value;
    }

    /** Names of the attributes a user can see (system.data and unknown indexes are hidden). */
    public List<String> listXattrs(long ino) throws Ext4Exception {
        List<String> names = new ArrayList<>();
        for (Xattr x : xattrs(ino)) {
            // trusted.* is listed only to CAP_SYS_ADMIN, as ext4_xattr_trusted_list()
            if (XattrNames.isKnown(x.nameIndex()) && x.nameIndex() != XattrNames.SYSTEM && x.nameIndex() != XattrNames.RICHACL
                    && (x.nameIndex() != XattrNames.TRUSTED || Caller.isRoot())) {
                names.add(x.fullName());
            }
        }
        return names;
    }

    /**
     * Value of attribute {@code name} (ISO-8859-1, one char per byte); ENODATA when absent. ACLs are
     * returned in the VFS xattr format.
     */
    public byte[] getXattr(long ino, String name) throws Ext4Exception {
        byte[] value = findXattr(ino, name);
        if (value == null) {
            throw new Ext4Exception(Errno.ENODATA, "inode " + ino + " has no xattr " + name);
        }
        return value;
    }

    /**
     * {@link #getXattr}, with null for a missing attribute: the kernel asks for
     * security.capability before the first write to every file, and an exception per new file
     * costs more than the lookup.
     */
    public byte[] findXattr(long ino, String name) throws Ext4Exception {
        Xattr key = XattrNames.split(name);
        if (key == null || key.nameIndex() == XattrNames.SYSTEM) {
            throw new Ext4Exception(Errno.EOPNOTSUPP, "unsupported xattr namespace in \"" + name + "\"");
        }
        for (Xattr x : xattrs(ino)) {
            if (x.nameIndex() == key.nameIndex() && Arrays.equals(x.suffix(), key.suffix())) {
                boolean acl = x.nameIndex() == XattrNames.POSIX_ACL_ACCESS || x.nameIndex() == XattrNames.POSIX_ACL_DEFAULT;
                return acl ? Acl.diskToXattr(x.value(), ino) : x.value();
            }
        }
        return null;
    }

    // ---- filesystem ----

    /**
     * Free counts as ext4_statfs() reports them: free blocks and inodes summed over the group
     * descriptors; available blocks less the reserved ones and, with extents, the kernel's own
     * reserve of 2% (at most 4096 clusters) that keeps delayed allocation from running dry.
     * Changes not yet written home are written first (see {@link MountOptions#idleFlushMillis}).
     */
    public StatFs statfs() {
        if (idleFlushQueued.compareAndSet(true, false)) {
            // the idle flush, now: umount(8) asks statfs just before it unmounts, and a FUSE 2
            // unmount does not wait for the server, so the image is home before that happens
            flush(writeback::writebackAll);
        }
        long free = 0;
        long freeInodes = 0;
        for (long g = 0; g < groups.groupCount(); g++) {
            GroupDescriptor gd = groups.get(g);
            free += gd.freeBlocksCount();
            freeInodes += gd.freeInodesCount();
        }
        int ratio = sb.clusterRatio();
        free *= ratio;
        if (reserve != null) {
            free = Math.max(0, free - reserve.delayed()); // as ext4_statfs(): delayed blocks are as good as used
        }
        long reserved = sb.reservedBlocksCount() + resvClusters;
        return new StatFs(blockSize, sb.blocksCount() - overheadBlocks(), free, Math.max(0, free - reserved),
                sb.inodesCount(), freeInodes, 255, readOnly);
    }

    /**
     * Grows the filesystem online to {@code newBlocksCount} blocks (EXT4_IOC_RESIZE_FS); see
     * {@link OnlineResize} for the refusals and the locking. A last group too small to be useful
     * is left out, as resize2fs does: {@link #superblock()} tells the size reached.
     */
    public void resize(long newBlocksCount) throws Ext4Exception {
        requireWritable();
        // no handle here: the resize starts one per step, sized to what the step dirties
        try (Entered g = enterGate()) {
            resizer.grow(newBlocksCount);
        }
    }

    /**
     * Adds one block group whose bitmaps and inode table a resizer placed (EXT4_IOC_GROUP_ADD);
     * see {@link OnlineResize#addGroup} for the checks.
     */
    public void addGroup(OnlineResize.NewGroup group) throws Ext4Exception {
        requireWritable();
        try (Entered g = enterGate()) {
            resizer.addGroup(group);
        }
    }

    /** What {@link OnlineResize} needs of this mount. */
    private final class ResizeHost implements OnlineResize.Host {
        @Override
        public Inode readInode(long ino) throws Ext4Exception {
            return inode(ino).inode().copy();
        }

        @Override
        public void writeInode(long ino, Inode changed) throws Ext4Exception {
            Ext4FileSystem.this.writeInode(ino, changed);
        }

        @Override
        public void writeSuperblock() throws Ext4Exception {
            Ext4FileSystem.this.writeSuperblock();
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
            DirFormat d = dirFormat;
            dirFormat = new DirFormat(d.blockSize(), d.fileType(), d.metadataCsum(), d.dirIndex(), d.largeDir(), d.hashSeed(),
                    d.hashUnsigned(), sb.inodesCount());
            reserve.setForRoot(sb.reservedBlocksCount());
            overhead = -1;
        }
    }

    /** s_resv_clusters (ext4_calculate_resv_clusters()): 2% of the blocks, at most 4096 clusters, with extents. */
    private static long defaultResvClusters(Superblock sb) {
        int ratio = sb.clusterRatio();
        return sb.has(Feature.EXTENTS) ? Math.min(sb.blocksCount() / ratio / 50, 4096) * ratio : 0;
    }

    private volatile long overhead = -1;

    /** Blocks that hold filesystem metadata (ext4_calculate_overhead()), computed once. */
    private long overheadBlocks() {
        long o = overhead;
        if (o >= 0) {
            return o;
        }
        o = sb.firstDataBlock();
        long itb = Layout.inodeTableBlocks(sb);
        for (long g = 0; g < groups.groupCount(); g++) {
            o += Layout.baseMetaBlocks(sb, g) + 2 + itb;
        }
        if (sb.journalInum() != 0 && sb.has(Feature.HAS_JOURNAL)) {
            try {
                o += inode(sb.journalInum()).inode().size() / blockSize;
            } catch (Ext4Exception e) {
                LOG.log(Level.WARNING, "journal inode {0}: {1}", sb.journalInum(), e.getMessage());
            }
        }
        overhead = o;
        return o;
    }

    /** s_state as found at mount: restored at unmount (the kernel's s_mount_state). */
    private int mountState;

    /** ext4_setup_super(): not clean while mounted read-write, one more mount counted. */
    private void markMounted() throws Ext4Exception {
        synchronized (LockOrder.monitor(LockOrder.Level.SUPERBLOCK, -1, sb)) {
            mountState = sb.state();
            sb.setMountCount(sb.mountCount() + 1);
            sb.setMtime(Time.now().seconds());
            markInUse();
        }
    }

    /**
     * The superblock of a filesystem that may change: s_state without the valid bit and, with a
     * journal, needs_recovery, home and durable before the first transaction reaches the log (at
     * mount, and when a freeze ends).
     */
    private void markInUse() throws Ext4Exception {
        synchronized (LockOrder.monitor(LockOrder.Level.SUPERBLOCK, -1, sb)) {
            sb.setState(mountState & ~Superblock.STATE_VALID);
            if (tx.journaled()) {
                sb.setFeatureIncompat(sb.featureIncompat() | Feature.RECOVER.mask());
            }
            writeSuperblock(true);
            cache.force();
        }
    }

    /**
     * ext4_put_super() / ext4_freeze(): the file data and metadata home, the log empty, and the
     * superblock clean (free counts, the state found at mount, no needs_recovery), all durable.
     * Nothing may be changing meanwhile.
     */
    private void writeClean() throws Ext4Exception {
        if (errorReadOnly == null) {
            writebackAllRetrying();
        }
        tx.unmount(); // everything home (the log empty) before the superblock says clean
        synchronized (LockOrder.monitor(LockOrder.Level.SUPERBLOCK, -1, sb)) {
            StatFs s = statfs();
            sb.setFreeBlocksCount(s.freeBlocks());
            sb.setFreeInodesCount(s.freeInodes());
            sb.setState(mountState);
            sb.setFeatureIncompat(sb.featureIncompat() & ~Feature.RECOVER.mask());
            writeSuperblock(true);
        }
        cache.force();
    }

    /**
     * Stamps the superblock checksum and writes the primary superblock: through the journal (the
     * block cache) when the mount journals, else straight to the image.
     */
    void writeSuperblock() throws Ext4Exception {
        writeSuperblock(!tx.journaled());
    }

    /** {@code home}: straight to the image, as at mount and unmount (the log empty), or without a journal. */
    private void writeSuperblock(boolean home) throws Ext4Exception {
        synchronized (LockOrder.monitor(LockOrder.Level.SUPERBLOCK, -1, sb)) {
            sb.setWtime(Time.now().seconds());
            sb.updateChecksum();
            ByteBuffer raw = sb.raw();
            if (home) {
                cache.writeRaw(Superblock.OFFSET_IN_IMAGE, raw);
            } else {
                cache.update(Superblock.OFFSET_IN_IMAGE / blockSize,
                        b -> b.put((int) (Superblock.OFFSET_IN_IMAGE % blockSize), raw, 0, Superblock.SIZE));
            }
        }
    }

    /** Makes everything written so far durable (sync(2), fsync(2)). */
    public void sync() throws Ext4Exception {
        if (!readOnly) {
            writebackAllRetrying();
            tx.sync();
            Ext4Exception earlier = flushError.getAndSet(null);
            if (earlier != null) {
                throw new Ext4Exception(Errno.EIO, "an earlier background write failed: " + earlier.getMessage(), earlier);
            }
        }
    }

    // ---- freeze, thaw, status, flags, migrate (super.c, ioctl.c, migrate.c) ----

    /** A passage through the write gate, left by close(). */
    interface Entered extends AutoCloseable {
        @Override
        void close();
    }

    /**
     * A journal handle for changes made without an inode lock (a migration building its detached
     * tree); the thread must take no inode lock while it runs (see {@link InodeLocks}).
     */
    Transactions.Handle startHandle(int credits) {
        return tx.start(credits);
    }

    Transactions transactions() {
        return tx;
    }

    /** sb_start_write(): every change enters before taking inode locks (see {@link InodeLocks}). */
    Entered enterGate() {
        gate.enter();
        return options.idleFlushMillis() > 0 && flusher != null ? this::leaveGate : gate::exit;
    }

    /** sb_end_write(), and the idle flush is armed: see {@link MountOptions#idleFlushMillis}. */
    private void leaveGate() {
        gate.exit();
        lastChange = System.nanoTime();
        if (idleFlushQueued.compareAndSet(false, true)) {
            scheduleIdleFlush(options.idleFlushMillis());
        }
    }

    /** When the last change left the gate (System.nanoTime()). */
    private volatile long lastChange;
    private final java.util.concurrent.atomic.AtomicBoolean idleFlushQueued = new java.util.concurrent.atomic.AtomicBoolean();

    private void scheduleIdleFlush(long delayMillis) {
        try {
            flusher.schedule(this::idleFlush, delayMillis, java.util.concurrent.TimeUnit.MILLISECONDS);
        } catch (java.util.concurrent.RejectedExecutionException e) {
            idleFlushQueued.set(false); // unmounting: close() writes everything
        }
    }

    /**
     * Once no change has come for the idle time and none is in flight: dirty data written back,
     * the transaction committed and checkpointed (or metadata written home), so that the image
     * file at rest is a consistent filesystem, also for whoever reads it the moment a FUSE 2
     * unmount returns, which does not wait for the server.
     */
    private void idleFlush() {
        long idle = options.idleFlushMillis() * 1_000_000L;
        long quiet = System.nanoTime() - lastChange;
        if (quiet < idle || gate.busy()) {
            scheduleIdleFlush(quiet < idle ? Math.max(1, (idle - quiet) / 1_000_000L) : options.idleFlushMillis());
            return;
        }
        idleFlushQueued.set(false); // a change from now on arms it again
        flush(writeback::writebackAll);
    }

    /**
     * freeze_super() / ext4_freeze(): new changes wait (they do not fail), the changes in flight
     * finish, then everything is synced and the superblock written clean, so that the image file
     * can be copied as a consistent, e2fsck-clean filesystem. Reads go on. EBUSY when frozen
     * already, EROFS on a read-only mount.
     */
    public void freeze() throws Ext4Exception {
        requireWritable();
        synchronized (freezeLock) {
            gate.freeze();
            try {
                sync(); // first: it reports a failed background write rather than freezing over it
                writeClean();
            } catch (Ext4Exception | RuntimeException e) {
                gate.thaw();
                throw e;
            }
        }
        LOG.log(Level.INFO, "frozen: the image is consistent until thawed");
    }

    /** thaw_super() / ext4_unfreeze(): the superblock says not clean again, and waiting changes go on. EINVAL when not frozen. */
    public void thaw() throws Ext4Exception {
        synchronized (freezeLock) {
            if (!gate.isFrozen()) {
                throw new Ext4Exception(Errno.EINVAL, "the filesystem is not frozen");
            }
            try {
                markInUse();
            } finally {
                gate.thaw();
            }
        }
        LOG.log(Level.INFO, "thawed");
    }

    public boolean isFrozen() {
        return gate.isFrozen();
    }

    /** What the control file's {@code status} reports. */
    public FsStatus status() {
        StatFs s = statfs();
        String ro = readOnly ? "mounted read-only" : errorReadOnly != null ? "read-only since an error: " + errorReadOnly : null;
        long dirty = cache.dirtyBlocks() * (long) blockSize + (writeback == null ? 0 : writeback.pages().dirtyBytes());
        synchronized (LockOrder.monitor(LockOrder.Level.SUPERBLOCK, -1, sb)) {
            return new FsStatus(blockSize, sb.blocksCount(), s.freeBlocks(), sb.inodesCount(), s.freeInodes(),
                    dirty, isFrozen(), sb.errorCount(), sb.featureNames(), ro);
        }
    }

    /**
     * EXT4_IOC_GETFLAGS: the inode flags a user may see (EXT4_FL_USER_VISIBLE); the FS_*_FL bits
     * of chattr(1) are the same numbers.
     */
    public int getFlags(long ino) throws Ext4Exception {
        return inode(ino).inode().flags() & InodeFlags.USER_VISIBLE;
    }

    /**
     * EXT4_IOC_SETFLAGS (ext4_ioctl_setflags()): changes the user-modifiable flags, keeps the
     * others. Only the owner or root may (EPERM); immutable and append-only only root (EPERM).
     * Setting EXTENTS_FL migrates the file as {@link #migrate} does. A request without it leaves
     * it alone: the VFS masks flags to FS_FL_USER_MODIFIABLE, which lacks it, before a FUSE
     * server sees them (and ext4j has no extent-to-indirect migration).
     */
    public void setFlags(long ino, int flags) throws Ext4Exception {
        requireWritable();
        Inode current = inode(ino).inode();
        int old = current.flags();
        if (!Caller.isRoot() && Caller.uid() != current.uid()) {
            throw new Ext4Exception(Errno.EPERM, "inode " + ino + ": only the owner may change its flags");
        }
        if (((flags ^ old) & (Inode.IMMUTABLE_FL | Inode.APPEND_FL)) != 0 && !Caller.isRoot()) {
            throw new Ext4Exception(Errno.EPERM, "inode " + ino + ": immutable and append-only need CAP_LINUX_IMMUTABLE");
        }
        if ((flags & Inode.EXTENTS_FL) != 0 && (old & Inode.EXTENTS_FL) == 0) {
            migrate(ino);
        }
        try (Entered g = enterGate(); InodeLocks.Held h = locks.lockAll(ino)) {
            Inode copy = inode(ino).inode().copy();
            int keep = copy.flags() & ~InodeFlags.USER_MODIFIABLE;
            int wanted = (flags & InodeFlags.USER_MODIFIABLE & ~Inode.EXTENTS_FL) | (copy.flags() & Inode.EXTENTS_FL);
            if ((keep | wanted) == copy.flags()) {
                return;
            }
            copy.setFlags(keep | wanted);
            Time now = Time.now();
            copy.setCtime(now.seconds(), now.nanos());
            writeInode(ino, copy);
        }
    }

    /**
     * EXT4_IOC_MIGRATE (ext4_ext_migrate()): converts a block-mapped file or directory to an
     * extent tree; see {@link Migrate}. EINVAL, as the kernel, without the extents feature, for
     * a file that is extent-mapped already or has inline data; EAGAIN when the file's blocks
     * changed meanwhile (nothing is changed then).
     */
    public void migrate(long ino) throws Ext4Exception {
        requireWritable();
        try (Entered g = enterGate()) {
            new Migrate(this).run(ino);
        }
    }

    /** Unmount: a read-write mount writes the free counts and a clean state, then syncs; a frozen one is thawed first. */
    @Override
    public void close() throws IOException {
        try {
            if (!readOnly) {
                if (gate.isFrozen()) {
                    LOG.log(Level.INFO, "unmounting a frozen filesystem: thawed first");
                    thaw();
                }
                stopFlusher();
                // files still open at unmount are closed now: an unlinked one is freed, as its
                // last release would have freed it. After errors=remount-ro nothing more is
                // changed; the orphan list keeps them for the next mount.
                for (Long ino : List.copyOf(openCounts.keySet())) {
                    openCounts.remove(ino);
                    if (errorReadOnly == null && journalAborted == null) {
                        evictIfUnlinked(ino);
                    }
                }
                if (journalAborted != null) {
                    // nothing uncommitted may reach home: the image keeps needs_recovery, the
                    // committed log and the recorded error for the next mount or e2fsck
                    LOG.log(Level.ERROR, "unmount after the journal aborted: changes since the last commit are lost; run e2fsck");
                } else {
                    writeClean();
                }
            }
        } catch (Ext4Exception e) {
            throw new IOException("unmount of a read-write filesystem failed: " + e.getMessage(), e);
        } finally {
            device.close();
        }
    }

    /** Lets a running flush finish: interrupting it would close the image's channel. */
    private void stopFlusher() {
        flusher.shutdown();
        try {
            if (!flusher.awaitTermination(60, java.util.concurrent.TimeUnit.SECONDS)) {
                LOG.log(Level.WARNING, "the flusher did not stop within 60 s");
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    private static void closeQuietly(BlockDevice dev) {
        try {
            dev.close();
        } catch (IOException e) {
            LOG.log(Level.DEBUG, "closing the image: {0}", e.toString());
        }
    }
}
