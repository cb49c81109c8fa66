package dev.ext4j.fs;

import dev.ext4j.Errno;
import dev.ext4j.Ext4Exception;
import dev.ext4j.alloc.GroupTable;
import dev.ext4j.format.Feature;
import dev.ext4j.format.Inode;
import dev.ext4j.format.JournalSuperblock;
import dev.ext4j.format.Superblock;
import dev.ext4j.io.BufferCache;
import dev.ext4j.io.BlockDevice;
import dev.ext4j.io.FileBlockDevice;
import dev.ext4j.io.ReadAroundDevice;
import dev.ext4j.journal.Journal;
import dev.ext4j.journal.JournalLog;
import dev.ext4j.journal.JournalRecovery;
import dev.ext4j.journal.ReplayOverlay;
import dev.ext4j.journal.Transactions;
import java.io.IOException;
import java.lang.System.Logger.Level;
import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * Mounting (the kernel's ext4_fill_super() and ext4_load_journal()): the superblock read and
 * checked, the feature gate, journal replay, the free space checks, then the orphan cleanup of a
 * read-write mount. A read-only mount never writes: replayed blocks are shown from memory.
 */
final class Mount {
    private static final System.Logger LOG = System.getLogger("ext4j");

    private Mount() {
    }

    /** Opens the image file and mounts it. */
    static Ext4FileSystem open(Path image, MountOptions options) throws Ext4Exception {
        checkOptions(options);
        if (!options.readOnly()) {
            // Open for writing only when the filesystem will be mounted read-write; otherwise the
            // image is opened read-only, so a read-only mount cannot write to it whatever happens.
            Ext4FileSystem fs = openDevice(image, options, false);
            if (!fs.isReadOnly()) {
                return fs;
            }
            closeQuietly(fs.sbi().device);
        }
        return openDevice(image, options.withReadOnly(true), true);
    }

    /** Refuses a combination of options the kernel refuses too. */
    private static void checkOptions(MountOptions options) throws Ext4Exception {
        if (options.noRecovery() && !options.readOnly()) {
            // ext4_fill_super() refuses norecovery on a read-write mount that needs recovery; ext4j
            // never mounts read-write with it, so that a replay it skipped cannot be written over
            throw new Ext4Exception(Errno.EINVAL, "norecovery (noload) needs a read-only mount (-o ro)");
        }
    }

    private static Ext4FileSystem openDevice(Path image, MountOptions options, boolean readOnly) throws Ext4Exception {
        BlockDevice file;
        try {
            file = FileBlockDevice.open(image, readOnly);
        } catch (IOException e) {
            throw new Ext4Exception(Errno.EIO, "cannot open " + image + ": " + e.getMessage(), e);
        }
        try {
            // read-around under the window: its chunks never reach outside the partition
            BlockDevice window = options.placement().open(file);
            BlockDevice dev = new ReadAroundDevice(window, 4L << 30);
            if (window != file) {
                checkFits(dev, window);
            }
            return mount(dev, options, image.toString());
        } catch (Ext4Exception | RuntimeException e) {
            closeQuietly(file);
            throw e;
        }
    }

    /**
     * Refuses a filesystem larger than its partition (or offset window), saying so: the superblock's
     * size is the filesystem's, and nothing past the window may be read or written.
     */
    private static void checkFits(BlockDevice dev, BlockDevice window) throws Ext4Exception {
        Superblock sb = readSuperblock(dev);
        long bytes = sb.blocksCount() * sb.blockSize();
        if (bytes > deviceSize(dev)) {
            throw new Ext4Exception(Errno.EINVAL, "the filesystem (" + sb.blocksCount() + " blocks of " + sb.blockSize() + " bytes, "
                    + bytes + " bytes) is larger than " + window);
        }
    }

    /**
     * Mounts the filesystem on {@code device}. Refuses unknown incompatible features by name;
     * mounts read-only, saying why, when a feature or state forbids writing.
     */
    static Ext4FileSystem mount(BlockDevice device, MountOptions options, String deviceName) throws Ext4Exception {
        checkOptions(options);
        Superblock sb = readSuperblock(device);
        List<String> messages = new ArrayList<>();
        boolean readOnly = options.readOnly() || device.isReadOnly();
        readOnly |= gateFeatures(sb, messages);
        // as ext4_fill_super(): before the journal is touched; a read-only mount leaves the block alone
        Mmp mmp = !readOnly && sb.has(Feature.MMP) ? Mmp.protect(device, sb, deviceName, Mmp.hostName(), Mmp.Clock.SYSTEM) : null;
        try {
            return mount(mmp == null ? device : mmp.fence(device), options, sb, messages, readOnly, mmp);
        } catch (Ext4Exception | RuntimeException e) {
            stopQuietly(mmp);
            throw e;
        }
    }

    private static Ext4FileSystem mount(BlockDevice device, MountOptions options, Superblock sb, List<String> messages,
                                        boolean readOnly, Mmp mmp) throws Ext4Exception {
        if (sb.has(Feature.RECOVER) && options.noRecovery()) {
            // as the kernel with norecovery: what the image holds, without the journal's transactions
            messages.add("norecovery: the journal needs recovery but is not replayed; the filesystem is shown as the image"
                    + " holds it, without its last committed changes, and may look inconsistent");
        } else if (sb.has(Feature.RECOVER)) {
            List<String> journalMessages = new ArrayList<>();
            device = recoverJournal(device, sb, readOnly, journalMessages);
            // replay may have rewritten the superblock and the group descriptors: start over from them
            sb = readSuperblock(device);
            messages.clear();
            readOnly |= gateFeatures(sb, messages);
            messages.addAll(journalMessages);
            if (readOnly && mmp != null) {
                stopQuietly(mmp); // the replayed superblock has a feature ext4j cannot write
                mmp = null;
            }
        }
        long deviceSize = deviceSize(device);
        long bytes = sb.blocksCount() * sb.blockSize();
        if (bytes > deviceSize) {
            throw Ext4Exception.corrupted("image is truncated: the superblock says " + sb.blocksCount() + " blocks of "
                    + sb.blockSize() + " bytes (" + bytes + " bytes) but the image has " + deviceSize + " bytes");
        }
        BufferCache cache = new BufferCache(device, sb.blockSize(), sb.blocksCount(), options.metadataCacheBytes());
        GroupTable groups = GroupTable.load(sb, cache, readOnly, messages);
        // the orphan file is checked through a read-only inode table before anything is written
        // (opening the log writes the journal superblock): a damaged one refuses the mount untouched
        OrphanFile orphanFile = readOnly ? null : OrphanFile.load(sb, cache,
                new InodeTable(sb, groups, cache, new InodeLocks(Transactions.unjournaled(cache)), 64));
        JournalLog log = readOnly ? null : openJournalLog(device, sb, options, messages);
        Ext4FileSystem fs = new Ext4FileSystem(new SuperInfo(device, sb, cache, groups, readOnly, messages, options, log, mmp));
        SuperInfo s = fs.sbi();
        if (mmp != null) {
            mmp.start(s.state.mmpReporter());
        }
        FileAttributes root = fs.stat(Ext4FileSystem.ROOT_INO);
        if ((root.mode() & Inode.S_IFMT) != Inode.S_IFDIR) {
            throw Ext4Exception.corrupted("root inode 2 is not a directory (mode " + Integer.toOctalString(root.mode()) + ")");
        }
        for (String m : messages) {
            LOG.log(Level.WARNING, m);
        }
        if (!readOnly) {
            s.state.markMounted();
            if (sb.lastOrphan() != 0) {
                s.orphans.cleanup();
            }
            if (orphanFile != null) {
                orphanFile.cleanup(sb, cache, s.allocator, s);
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
    static Superblock readSuperblock(BlockDevice device) throws Ext4Exception {
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
        // an empty journal is normal (a clean unmount by a driver that keeps needs_recovery until
        // then, or a kill before the first commit): nothing to say
        String what = r.transactions() == 0 ? null
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
            if (what != null) {
                messages.add(what + " in memory (read-only mount; the image is unchanged)");
            }
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
        if (what != null) {
            messages.add(what);
        }
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

    private static void stopQuietly(Mmp mmp) {
        if (mmp == null) {
            return;
        }
        try {
            mmp.stop();
        } catch (Ext4Exception e) {
            LOG.log(Level.WARNING, "releasing the MMP block after a failed mount: {0}", e.getMessage());
        }
    }

    static void closeQuietly(BlockDevice dev) {
        try {
            dev.close();
        } catch (IOException e) {
            LOG.log(Level.DEBUG, "closing the image: {0}", e.toString());
        }
    }
}
