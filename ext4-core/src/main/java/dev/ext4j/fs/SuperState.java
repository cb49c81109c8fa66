package dev.ext4j.fs;

import dev.ext4j.LockOrder;
import dev.ext4j.Errno;
import dev.ext4j.Ext4Exception;
import dev.ext4j.alloc.Layout;
import dev.ext4j.format.Feature;
import dev.ext4j.alloc.GroupTable;
import dev.ext4j.format.Superblock;
import dev.ext4j.io.BlockDevice;
import dev.ext4j.io.BufferCache;
import dev.ext4j.journal.Transactions;
import java.io.IOException;
import java.lang.System.Logger.Level;
import java.nio.ByteBuffer;

/**
 * The superblock's state and the error policy (the kernel's ext4_setup_super(),
 * ext4_commit_super(), ext4_handle_error() and ext4_statfs() in super.c): in use or clean, errors
 * recorded, and whether changes are still allowed.
 */
final class SuperState {
    private static final System.Logger LOG = System.getLogger("ext4j");

    /** What the superblock's state asks of the parts built after it. */
    interface Host {
        /** The in-core inode (the journal's, whose blocks count as overhead). */
        InodeInfo inode(long ino) throws Ext4Exception;

        /** Dirty file data in the page cache, in bytes (0 on a read-only mount). */
        long dirtyPageBytes();
    }

    private final BlockDevice device;
    private final Superblock sb;
    private final BufferCache cache;
    private final GroupTable groups;
    private final Transactions tx;
    /** Mounted read-only (a remount read-only is {@link #remountedReadOnly}). */
    private final boolean mountedReadOnly;
    private final BlockAccount.Reserve reserve;
    private final long resvClusters;
    private final int blockSize;
    private final Host host;
    private final ErrorPolicy errorPolicy;
    /** s_state as found at mount: restored at unmount (the kernel's s_mount_state). */
    private int mountState;
    /** Set when errors=remount-ro took effect: every change is refused from then on. */
    private volatile String errorReadOnly;
    /** Set when a failed commit aborted the journal: nothing can be committed any more. */
    private volatile String journalAborted;
    /**
     * Set by remount,ro ({@link Ext4FileSystem#remount}) while the write gate is closed and
     * everything is home: changes are refused and nothing is written until a remount,rw.
     */
    private volatile boolean remountedReadOnly;
    /** Called after errors=panic recorded an error; the mount's owner stops serving. */
    private volatile Runnable panicHandler = () -> { };
    private volatile long overhead = -1;

    SuperState(BlockDevice device, Superblock sb, BufferCache cache, GroupTable groups, Transactions tx, boolean readOnly,
               BlockAccount.Reserve reserve, long resvClusters, ErrorPolicy errorPolicy, Host host) {
        this.device = device;
        this.sb = sb;
        this.cache = cache;
        this.groups = groups;
        this.tx = tx;
        this.mountedReadOnly = readOnly;
        this.reserve = reserve;
        this.resvClusters = resvClusters;
        this.blockSize = sb.blockSize();
        this.errorPolicy = errorPolicy;
        this.host = host;
    }

    /** Why changes are refused since an error (errors=remount-ro, or a lost MMP block), or null. */
    String errorReadOnly() {
        return errorReadOnly;
    }

    boolean journalAborted() {
        return journalAborted != null;
    }

    /** Whether the filesystem is read-only now: mounted so, or remounted read-only. */
    boolean readOnly() {
        return mountedReadOnly || remountedReadOnly;
    }

    boolean remountedReadOnly() {
        return remountedReadOnly;
    }

    /** remount,ro (with everything home and the gate closed) or remount,rw (after {@link #markInUse}). */
    void setRemountedReadOnly(boolean ro) {
        remountedReadOnly = ro;
    }

    /** EROFS unless the filesystem is mounted read-write. */
    void requireWritable() throws Ext4Exception {
        if (readOnly()) {
            throw new Ext4Exception(Errno.EROFS, "the filesystem is mounted read-only");
        }
        requireNoError();
    }

    /** EROFS once an error made the filesystem read-only (errors=remount-ro, a lost MMP block) or aborted the journal. */
    void requireNoError() throws Ext4Exception {
        String why = errorReadOnly;
        if (why != null) {
            throw new Ext4Exception(Errno.EROFS, "read-only since an error: " + why);
        }
        String aborted = journalAborted;
        if (aborted != null) {
            throw new Ext4Exception(Errno.EROFS, "the journal aborted after a failed commit (" + aborted
                    + "); no change can be made until an unmount, e2fsck and a new mount");
        }
    }

    /** ext4_setup_super(): not clean while mounted read-write, one more mount counted. */
    void markMounted() throws Ext4Exception {
        synchronized (LockOrder.monitor(LockOrder.Level.SUPERBLOCK, -1, sb)) {
            mountState = sb.state();
            sb.setMountCount(sb.mountCount() + 1);
            sb.setMtime(Ext4FileSystem.Time.now().seconds());
            markInUse();
        }
    }

    /**
     * The superblock of a filesystem that may change: s_state without the valid bit and, with a
     * journal, needs_recovery, home and durable before the first transaction reaches the log (at
     * mount, and when a freeze ends).
     */
    void markInUse() throws Ext4Exception {
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
     * ext4_put_super() / ext4_freeze(): the file data ({@code dataHome}) and metadata home, the log
     * empty, and the superblock clean (free counts, the state found at mount, no needs_recovery),
     * all durable. Nothing may be changing meanwhile.
     */
    void writeClean(Retry.Step dataHome) throws Ext4Exception {
        if (errorReadOnly == null) {
            dataHome.run();
        }
        tx.unmount(); // everything home (the log empty) before the superblock says clean
        StatFs st = statfs(); // before the superblock's monitor (the reserve's lock comes first)
        synchronized (LockOrder.monitor(LockOrder.Level.SUPERBLOCK, -1, sb)) {
            sb.setFreeBlocksCount(st.freeBlocks());
            sb.setFreeInodesCount(st.freeInodes());
            sb.setState(mountState);
            sb.setFeatureIncompat(sb.featureIncompat() & ~Feature.RECOVER.mask());
            writeSuperblock(true);
        }
        cache.force();
    }

    /**
     * Stamps the superblock checksum and writes the primary superblock: through the journal (the
     * buffer cache) when the mount journals, else straight to the image.
     */
    void writeSuperblock() throws Ext4Exception {
        writeSuperblock(!tx.journaled());
    }

    /** {@code home}: straight to the image, as at mount and unmount (the log empty), or without a journal. */
    private void writeSuperblock(boolean home) throws Ext4Exception {
        synchronized (LockOrder.monitor(LockOrder.Level.SUPERBLOCK, -1, sb)) {
            sb.setWtime(Ext4FileSystem.Time.now().seconds());
            sb.updateChecksum();
            ByteBuffer raw = sb.raw();
            int bs = blockSize;
            if (home) {
                cache.writeRaw(Superblock.OFFSET_IN_IMAGE, raw);
            } else {
                cache.update(Superblock.OFFSET_IN_IMAGE / bs, b -> b.put((int) (Superblock.OFFSET_IN_IMAGE % bs), raw, 0, Superblock.SIZE));
            }
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
    void journalAborted(Ext4Exception cause) {
        journalAborted = cause.getMessage();
        String op = "jbd2_commit";
        int code = 2; // EXT4_ERR_EIO
        long now = Ext4FileSystem.Time.now().seconds();
        synchronized (LockOrder.monitor(LockOrder.Level.SUPERBLOCK, -1, sb)) {
            sb.recordError(now, 0, 0, op, code);
            sb.setState(sb.state() | Superblock.STATE_ERROR);
            mountState |= Superblock.STATE_ERROR;
        }
        try {
            Superblock home = Mount.readSuperblock(device);
            home.recordError(now, 0, 0, op, code);
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
     * from now on, or stop serving). Read-only mounts, and mounts remounted read-only, only log it.
     */
    void recordError(String op, Ext4Exception e) {
        recordError(op, e, false);
    }

    /**
     * {@link #recordError(String, Ext4Exception)}; with {@code forceReadOnly} (the kernel's force_ro)
     * every later change is refused whatever errors= says, but panic still stops serving.
     */
    void recordError(String op, Ext4Exception e, boolean forceReadOnly) {
        if (readOnly()) {
            return;
        }
        int code = switch (e.errno()) {
            case EBADMSG -> 4;
            case EUCLEAN -> 5;
            case EBUSY -> 13;
            default -> 2;
        };
        try (Transactions.Handle h = tx.start(1)) {
            synchronized (LockOrder.monitor(LockOrder.Level.SUPERBLOCK, -1, sb)) {
                sb.recordError(Ext4FileSystem.Time.now().seconds(), 0, 0, op, code);
                sb.setState(sb.state() | Superblock.STATE_ERROR);
                mountState |= Superblock.STATE_ERROR;
                writeSuperblock();
            }
        } catch (Ext4Exception f) {
            LOG.log(Level.ERROR, "recording the error in the superblock failed: {0}", f.toString());
        }
        switch (errorPolicy) {
            case CONTINUE -> {
                if (forceReadOnly && errorReadOnly == null) {
                    errorReadOnly = op + ": " + e.getMessage();
                    LOG.log(Level.ERROR, "refusing all changes from now on");
                }
            }
            case REMOUNT_RO -> {
                if (errorReadOnly == null) {
                    errorReadOnly = op + ": " + e.getMessage() + " (errors=remount-ro)";
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

    /**
     * Where multi-mount protection reports (kmmpd's ext4_error()): a lost MMP block is recorded and
     * makes the mount refuse changes whatever errors= says (another node may be writing the image);
     * a failed write of the block is recorded under errors=.
     */
    Mmp.Reporter mmpReporter() {
        return new Mmp.Reporter() {
            @Override
            public void fatal(Ext4Exception e) {
                LOG.log(Level.ERROR, e.getMessage());
                recordError("kmmpd", e, true);
            }

            @Override
            public void error(Ext4Exception e) {
                LOG.log(Level.ERROR, e.getMessage());
                recordError("kmmpd", e, false);
            }
        };
    }

    void onPanic(Runnable handler) {
        this.panicHandler = handler;
    }

    /**
     * Free counts as ext4_statfs() reports them: free blocks and inodes summed over the group
     * descriptors; available blocks less the reserved ones and, with extents, the kernel's own
     * reserve of 2% (at most 4096 clusters) that keeps delayed allocation from running dry.
     */
    StatFs statfs() {
        long freeInodes = 0;
        for (long g = 0; g < groups.groupCount(); g++) {
            freeInodes += groups.get(g).freeInodesCount();
        }
        // as ext4_statfs(): delayed blocks are as good as used
        long free = Math.max(0, reserve.freeLessPromised(() -> {
            long sum = 0;
            for (long g = 0; g < groups.groupCount(); g++) {
                sum += groups.get(g).freeBlocksCount();
            }
            return sum * sb.clusterRatio();
        }));
        long reserved = sb.reservedBlocksCount() + resvClusters;
        return new StatFs(blockSize, sb.blocksCount() - overheadBlocks(), free, Math.max(0, free - reserved),
                sb.inodesCount(), freeInodes, 255, readOnly());
    }

    /** After an online resize: the overhead is counted again. */
    void geometryChanged() {
        overhead = -1;
    }

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
                o += host.inode(sb.journalInum()).inode().size() / blockSize;
            } catch (Ext4Exception e) {
                LOG.log(Level.WARNING, "journal inode {0}: {1}", sb.journalInum(), e.getMessage());
            }
        }
        overhead = o;
        return o;
    }

    /** What the control file's {@code status} reports. */
    FsStatus status(boolean frozen) {
        StatFs st = statfs();
        String ro = mountedReadOnly ? "mounted read-only" : errorReadOnly != null ? "read-only since an error: " + errorReadOnly
                : remountedReadOnly ? "remounted read-only" : null;
        long dirty = cache.dirtyBlocks() * (long) blockSize + (host.dirtyPageBytes());
        synchronized (LockOrder.monitor(LockOrder.Level.SUPERBLOCK, -1, sb)) {
            return new FsStatus(blockSize, sb.blocksCount(), st.freeBlocks(), sb.inodesCount(), st.freeInodes(),
                    dirty, frozen, sb.errorCount(), sb.featureNames(), ro);
        }
    }
}
