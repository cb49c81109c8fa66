package dev.ext4j.fs;

import dev.ext4j.LockOrder;
import dev.ext4j.Errno;
import dev.ext4j.Ext4Exception;
import dev.ext4j.alloc.Allocator;
import dev.ext4j.blockmap.Mapping;
import dev.ext4j.io.BufferCache;
import dev.ext4j.format.Feature;
import dev.ext4j.format.Inode;
import dev.ext4j.format.OrphanBlock;
import dev.ext4j.format.Superblock;
import dev.ext4j.journal.Transactions;
import java.lang.System.Logger.Level;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Set;

/**
 * The orphan file at mount (fs/ext4/orphan.c: ext4_init_orphan_info() and the orphan-file half of
 * ext4_orphan_cleanup()). With COMPAT_ORPHAN_FILE the kernel records orphans in the slots of an
 * inode's blocks ({@link OrphanBlock}) instead of the s_last_orphan chain, and sets
 * RO_COMPAT_ORPHAN_PRESENT while any slot may be in use. After a crash every inode found in a slot
 * is finished as one on the chain is ({@link Evict#finishOrphan}): deleted when it has no
 * link left, else cut back to its size. Its slot is zeroed (and the block's checksum restamped) in
 * the same handle as the inode's last change, so a crash in between never leaves a slot naming an
 * inode that was already freed. When every slot is free, ORPHAN_PRESENT is cleared.
 *
 * <p>ext4j itself does not put orphans into the file: its own orphans go on the s_last_orphan
 * chain, which the kernel and e2fsck process on orphan_file filesystems too.
 *
 * <p>A block with a bad magic or checksum refuses a read-write mount (EUCLEAN, or EBADMSG for the
 * checksum), as the kernel refuses to mount then: the slots cannot be trusted, and finishing the
 * inodes they name might free live ones. A read-only mount does not read the file at all.
 */
final class OrphanFile {
    private static final System.Logger LOG = System.getLogger("ext4j");
    /** The kernel's limit on the orphan file's size: a larger one is taken as corruption. */
    static final long MAX_BYTES = 8L << 20;

    /** A used slot: the orphan file's block {@code block} (logical), slot {@code index}, holding {@code ino}. */
    record Slot(int block, int index, long ino) {
    }

    private final long fileIno;
    private final int seed;
    /** Physical block of each of the file's blocks, in file order. */
    private final long[] physical;
    private final List<Slot> used;

    private OrphanFile(long fileIno, int seed, long[] physical, List<Slot> used) {
        this.fileIno = fileIno;
        this.seed = seed;
        this.physical = physical;
        this.used = used;
    }

    /**
     * Reads every block of the orphan file and checks its tail (ext4_init_orphan_info()); returns
     * null when the filesystem has no orphan file. Nothing is written: {@code inodes} may be a
     * read-only view of the filesystem about to be mounted.
     */
    static OrphanFile load(Superblock sb, BufferCache cache, InodeTable inodes) throws Ext4Exception {
        if (!sb.has(Feature.ORPHAN_FILE)) {
            return null;
        }
        long ino = sb.orphanFileInum();
        if (ino == 0 || ino > sb.inodesCount()) {
            throw refuse(Ext4Exception.corrupted("superblock: orphan_file is set but s_orphan_file_inum is " + ino
                    + " (expected 1.." + sb.inodesCount() + ")"));
        }
        InodeInfo info = inodes.get(ino);
        Inode inode = info.inode();
        int bs = sb.blockSize();
        if (!inode.isRegular() || info.map() == null || inode.hasFlag(Inode.INLINE_DATA_FL)) {
            throw refuse(Ext4Exception.corrupted("orphan file inode " + ino + " is not a regular file with blocks (mode 0"
                    + Integer.toOctalString(inode.mode()) + ")"));
        }
        if (inode.size() > MAX_BYTES || inode.size() % bs != 0) {
            throw refuse(Ext4Exception.corrupted("orphan file inode " + ino + " has size " + inode.size()
                    + " (expected a multiple of the block size " + bs + ", at most " + MAX_BYTES + ")"));
        }
        int blocks = (int) (inode.size() / bs);
        long[] physical = new long[blocks];
        List<Slot> used = new ArrayList<>();
        boolean csum = sb.has(Feature.METADATA_CSUM);
        for (int b = 0; b < blocks; b++) {
            Mapping m = info.map().map(b, 1);
            if (m.isHole() || m.unwritten()) {
                throw refuse(Ext4Exception.corrupted("orphan file inode " + ino + ": block " + b + " is "
                        + (m.isHole() ? "a hole" : "unwritten") + " (the file must be fully mapped)"));
            }
            long pblk = m.physical() + (b - m.logical());
            physical[b] = pblk;
            ByteBuffer raw = cache.get(pblk);
            OrphanBlock ob = OrphanBlock.of(raw, bs);
            String where = "orphan file inode " + ino + ", block " + b + " (physical " + pblk + ")";
            if (ob.magic() != OrphanBlock.MAGIC) {
                throw refuse(Ext4Exception.corrupted(String.format("%s: bad magic 0x%08x (expected 0x%08x)", where, ob.magic(),
                        OrphanBlock.MAGIC)));
            }
            if (csum) {
                int computed = ob.computeChecksum(info.csumSeed(), pblk);
                if (computed != ob.storedChecksum()) {
                    throw refuse(Ext4Exception.badChecksum(where, ob.storedChecksum() & 0xFFFFFFFFL, computed & 0xFFFFFFFFL));
                }
            }
            for (int i = 0; i < ob.slots(); i++) {
                long o = ob.slot(i);
                if (o != 0) {
                    used.add(new Slot(b, i, o));
                }
            }
        }
        return new OrphanFile(ino, info.csumSeed(), physical, used);
    }

    /** Logs the reason a read-write mount is refused and returns it with the advice appended. */
    private static Ext4Exception refuse(Ext4Exception e) {
        String msg = e.getMessage() + "; a read-write mount would trust its orphan records: run e2fsck, or mount read-only";
        LOG.log(Level.ERROR, msg);
        return new Ext4Exception(e.errno(), msg, e);
    }

    /** The slots found in use at mount. */
    List<Slot> used() {
        return used;
    }

    /** What the cleanup at mount asks of the filesystem being mounted. */
    interface Cleanup {
        /** A journal handle for {@code credits} blocks. */
        Transactions.Handle startHandle(int credits);

        /** Finishes an interrupted delete or truncate of {@code ino}, then runs {@code then} in its last handle. */
        void finishOrphan(long ino, Retry.Step then) throws Ext4Exception;

        /** Stamps and writes the primary superblock; the caller holds its monitor and runs a handle. */
        void writeSuperblock() throws Ext4Exception;
    }

    /**
     * Finishes every inode found in a slot and frees the slot; clears ORPHAN_PRESENT when all slots
     * are free. A slot naming an inode that cannot be an orphan (reserved, out of range, the orphan
     * file itself, free in the inode bitmap, or seen before) is freed with a log line, as the kernel
     * skips such records.
     */
    void cleanup(Superblock sb, BufferCache cache, Allocator allocator, Cleanup fs) throws Ext4Exception {
        Set<Long> seen = new HashSet<>();
        int finished = 0;
        for (Slot s : used) {
            long ino = s.ino();
            String bad = null;
            if (ino == fileIno) {
                bad = "is the orphan file itself";
            } else if (ino < sb.firstIno() || ino > sb.inodesCount()) {
                bad = "is reserved or out of range (" + sb.firstIno() + ".." + sb.inodesCount() + ")";
            } else if (!seen.add(ino)) {
                bad = "is in another slot too";
            } else if (!allocator.inodeInUse(ino)) {
                bad = "is free in the inode bitmap";
            }
            if (bad != null) {
                LOG.log(Level.ERROR, "orphan file inode " + fileIno + ", block " + s.block() + " slot " + s.index() + ": inode " + ino
                        + " " + bad + "; the slot is cleared");
                try (Transactions.Handle h = fs.startHandle(1)) {
                    clearSlot(cache, sb, s);
                }
                continue;
            }
            fs.finishOrphan(ino, () -> clearSlot(cache, sb, s));
            finished++;
        }
        if (sb.has(Feature.ORPHAN_PRESENT)) {
            try (Transactions.Handle h = fs.startHandle(1)) {
                synchronized (LockOrder.monitor(LockOrder.Level.SUPERBLOCK, -1, sb)) {
                    sb.setFeatureRoCompat(sb.featureRoCompat() & ~Feature.ORPHAN_PRESENT.mask());
                    fs.writeSuperblock();
                }
            }
        }
        if (finished > 0) {
            LOG.log(Level.INFO, "orphan file: finished " + finished + " interrupted delete(s) or truncate(s)");
        }
    }

    /** Zeroes one slot and restamps its block's checksum; the caller runs a handle. */
    private void clearSlot(BufferCache cache, Superblock sb, Slot s) throws Ext4Exception {
        long pblk = physical[s.block()];
        boolean csum = sb.has(Feature.METADATA_CSUM);
        int bs = sb.blockSize();
        cache.update(pblk, w -> {
            OrphanBlock ob = OrphanBlock.of(w, bs);
            if (ob.slot(s.index()) != s.ino()) {
                throw new Ext4Exception(Errno.EIO, "orphan file inode " + fileIno + ", block " + s.block() + " slot " + s.index()
                        + " changed under the cleanup (holds " + ob.slot(s.index()) + ", expected " + s.ino() + ")");
            }
            ob.setSlot(s.index(), 0);
            if (csum) {
                ob.updateChecksum(seed, pblk);
            }
        });
    }
}
