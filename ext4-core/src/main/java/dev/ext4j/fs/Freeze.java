package dev.ext4j.fs;

import dev.ext4j.Errno;
import dev.ext4j.Ext4Exception;
import java.lang.System.Logger.Level;

/**
 * Freeze, thaw and remount (super.c: freeze_super(), thaw_super(), ext4_freeze(),
 * ext4_unfreeze(), ext4_remount()): the write gate closed and everything written home, then
 * either held closed until the thaw or opened again on a filesystem that refuses every change.
 * The public face is {@link Ext4FileSystem#freeze}, {@link Ext4FileSystem#thaw} and
 * {@link Ext4FileSystem#remount}.
 */
final class Freeze {
    private static final System.Logger LOG = System.getLogger("ext4j");

    private final WriteGate gate;
    private final SuperState state;
    private final Orphans orphans;
    private final Retry retry;
    /** The parts that change the filesystem: null on a read-only mount (which never freezes). */
    private final Writeback writeback;
    private final Flusher flusher;
    private final Atime atime;
    /** Multi-mount protection; null without it. */
    private final Mmp mmp;
    /** Whether the image was opened read-only (no remount read-write then). */
    private final boolean readOnly;
    /** {@link Ext4FileSystem#sync}: everything written so far made durable. */
    private final Retry.Step sync;
    /** Serializes freeze, thaw and remount (the kernel's s_umount around freeze_super()). */
    private final Object freezeLock = new Object();

    Freeze(WriteGate gate, SuperState state, Orphans orphans, Retry retry, Writeback writeback, Flusher flusher, Atime atime, Mmp mmp,
           boolean readOnly, Retry.Step sync) {
        this.gate = gate;
        this.state = state;
        this.orphans = orphans;
        this.retry = retry;
        this.writeback = writeback;
        this.flusher = flusher;
        this.atime = atime;
        this.mmp = mmp;
        this.readOnly = readOnly;
        this.sync = sync;
    }

    /** See {@link Ext4FileSystem#freeze}. */
    void freeze() throws Ext4Exception {
        state.requireWritable();
        synchronized (freezeLock) {
            closeGateAndWriteHome(() -> { });
            if (mmp != null) {
                mmp.pause(); // kmmpd's writes wait for the thaw, as they pass sb_start_write()
            }
        }
        LOG.log(Level.INFO, "frozen: the image is consistent until thawed");
    }

    /** See {@link Ext4FileSystem#thaw}. */
    void thaw() throws Ext4Exception {
        synchronized (freezeLock) {
            if (!gate.isFrozen()) {
                throw new Ext4Exception(Errno.EINVAL, "the filesystem is not frozen");
            }
            try {
                if (mmp != null) {
                    mmp.resume();
                    mmp.tick(); // is the image still ours? another node may have taken it meanwhile
                }
                if (mmp == null || !mmp.failed()) {
                    state.markInUse();
                }
            } finally {
                gate.thaw();
            }
        }
        LOG.log(Level.INFO, "thawed");
    }

    /**
     * What freeze and remount read-only share (freeze_super(), sync_filesystem()): the gate closed
     * and the changes in flight finished, {@code check} passed, then everything home: dirty data
     * written back, the journal committed and checkpointed, the superblock written clean, all
     * durable. The gate stays closed; on a failure it opens again.
     */
    private void closeGateAndWriteHome(Retry.Step check) throws Ext4Exception {
        atime.writeLazy(0); // lazytime's access times, before the gate closes: writing them needs it
        gate.freeze();
        try {
            flusher.waitIdle(); // a round that started before the gate closed
            check.run();
            sync.run(); // first: it reports a failed background write rather than going on over it
            state.writeClean(() -> retry.run(writeback::writebackAll));
        } catch (Ext4Exception | RuntimeException e) {
            gate.thaw();
            throw e;
        }
    }

    /** See {@link Ext4FileSystem#remount}. */
    void remount(boolean readOnly) throws Ext4Exception {
        synchronized (freezeLock) {
            if (readOnly) {
                remountReadOnly();
            } else {
                remountReadWrite();
            }
        }
    }

    private void remountReadOnly() throws Ext4Exception {
        if (state.readOnly() || state.errorReadOnly() != null || state.journalAborted() || mmp != null && mmp.failed()) {
            return; // read-only already; after an error changes are refused since, and the unmount writes what it still can
        }
        if (gate.isFrozen()) {
            throw new Ext4Exception(Errno.EBUSY, "the filesystem is frozen; thaw it first");
        }
        closeGateAndWriteHome(() -> {
            if (orphans.size() > 0) {
                throw new Ext4Exception(Errno.EBUSY, orphans.size() + " file(s) whose last name went are still open;"
                        + " they are freed at their last close, which a read-only filesystem cannot do");
            }
        });
        state.setRemountedReadOnly(true);
        gate.thaw(); // the changes that waited find the filesystem read-only
        LOG.log(Level.INFO, "remounted read-only: everything is home and the image is clean until remounted read-write");
    }

    private void remountReadWrite() throws Ext4Exception {
        if (readOnly) {
            throw new Ext4Exception(Errno.EROFS, "the image was opened read-only (mounted with ro, a read-only image file, or a"
                    + " feature or state that forbids writing; see the mount's messages): unmount it and mount it read-write");
        }
        state.requireNoError();
        if (mmp != null && mmp.failed()) {
            throw new Ext4Exception(Errno.EROFS, "the MMP block was lost to another node: unmount, and run e2fsck once it lets go");
        }
        if (!state.remountedReadOnly()) {
            return;
        }
        state.markInUse(); // nothing changes meanwhile: every change is refused at the gate
        state.setRemountedReadOnly(false);
        LOG.log(Level.INFO, "remounted read-write");
    }
}
