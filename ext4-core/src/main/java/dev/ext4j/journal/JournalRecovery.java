package dev.ext4j.journal;

import dev.ext4j.Errno;
import dev.ext4j.Ext4Exception;
import dev.ext4j.format.Checksums;
import dev.ext4j.format.JournalBlock;
import dev.ext4j.format.JournalSuperblock;
import java.util.Collections;
import java.util.HashMap;
import java.util.Map;
import java.util.TreeMap;

/**
 * Journal recovery (the kernel's fs/jbd2/recovery.c, jbd2_journal_recover() and do_one_pass()):
 * three passes over the log from s_start. SCAN finds the end of the log, the first transaction
 * without a valid commit block; REVOKE collects revoke records with the newest transaction that
 * revoked each block; REPLAY picks, for every home block, the newest logged copy that no later
 * revoke cancels and whose data checksum holds.
 *
 * <p>Nothing is written here: {@link Result} says where each home block's new contents are in the
 * log, so a read-write mount writes them home and a read-only one serves them from memory.
 * Where the kernel refuses to mount after its recovery (a corrupt transaction, a bad checksum in a
 * descriptor or data block, a bad revoke block) recovery throws before anything is written.
 */
public final class JournalRecovery {
    private static final System.Logger LOG = System.getLogger("ext4j");

    private enum Pass { SCAN, REVOKE, REPLAY }

    /** Where a home block's replayed contents are: a log block, its first word escaped or not. */
    public record LogCopy(long logBlock, boolean escaped) {
    }

    /**
     * What recovery found.
     *
     * @param startTid  the first transaction in the log (s_sequence)
     * @param endTid    the first transaction not replayed (the end of the log)
     * @param blocks    home block to the log copy to write there, in block order
     * @param revokeHits logged copies skipped because a revoke cancelled them
     */
    public record Result(int startTid, int endTid, Map<Long, LogCopy> blocks, int revokeHits) {
        public int transactions() {
            return endTid - startTid;
        }
    }

    private final Journal journal;
    private final JournalSuperblock jsb;
    private final int seed;
    private final boolean csum;
    /** Revoked block to the newest transaction that revoked it. */
    private final Map<Long, Integer> revoked = new HashMap<>();
    private final TreeMap<Long, LogCopy> replay = new TreeMap<>();
    private int revokeHits;
    private boolean endKnown;
    private int endTid;
    /** A transaction whose commit block failed its checksum (the kernel's j_failed_commit). */
    private Integer failedCommit;

    private JournalRecovery(Journal journal) {
        this.journal = journal;
        this.jsb = journal.superblock();
        this.seed = jsb.checksumSeed();
        this.csum = jsb.hasCsumV2or3();
    }

    /** Runs the three passes; the journal must need recovery (s_start != 0). */
    public static Result recover(Journal journal) throws Ext4Exception {
        JournalSuperblock jsb = journal.superblock();
        if (jsb.start() == 0) {
            return new Result(jsb.sequence(), jsb.sequence(), Map.of(), 0);
        }
        JournalRecovery r = new JournalRecovery(journal);
        r.pass(Pass.SCAN);
        if (r.failedCommit != null) {
            throw Ext4Exception.corrupted("journal inode " + journal.inodeNumber() + ": journal transaction " + r.failedCommit
                    + " is corrupt (bad commit block checksum); run e2fsck");
        }
        r.pass(Pass.REVOKE);
        r.pass(Pass.REPLAY);
        if (jsb.fastCommitBlocks() > 0 && r.fastCommitAreaUsed()) {
            LOG.log(System.Logger.Level.WARNING, "journal inode {0}: the fast-commit area holds blocks that ext4j does not replay;"
                    + " changes committed only there are missing; run e2fsck to replay them", journal.inodeNumber());
        }
        return new Result(jsb.sequence(), r.endTid, Collections.unmodifiableMap(r.replay), r.revokeHits);
    }

    private boolean fastCommitAreaUsed() throws Ext4Exception {
        byte[] b = journal.readLogBlock(jsb.logEnd());
        for (byte x : b) {
            if (x != 0) {
                return true;
            }
        }
        return false;
    }

    /** Transaction ids compare modulo 2^32 (the kernel's tid_geq()). */
    private static boolean tidGeq(int x, int y) {
        return x - y >= 0;
    }

    private void pass(Pass pass) throws Ext4Exception {
        int tid = jsb.sequence();
        long next = jsb.start();
        int crc32Sum = ~0;
        boolean checkCommitTime = false;
        long lastCommitTime = 0;
        boolean v1 = jsb.hasCompat(JournalSuperblock.COMPAT_CHECKSUM);
        long inode = journal.inodeNumber();
        scan:
        while (true) {
            if (pass != Pass.SCAN && tidGeq(tid, endTid)) {
                break;
            }
            long at = next;
            JournalBlock block = new JournalBlock(journal.readLogBlock(at));
            next = journal.next(next);
            if (block.magic() != JournalBlock.MAGIC || block.sequence() != tid) {
                break;
            }
            switch (block.blockType()) {
                case JournalBlock.DESCRIPTOR -> {
                    if (csum && block.computeTailChecksum(seed) != block.storedTailChecksum()) {
                        if (pass != Pass.SCAN) {
                            throw Ext4Exception.badChecksum("journal inode " + inode + ", descriptor at log block " + at,
                                    block.storedTailChecksum() & 0xFFFFFFFFL, block.computeTailChecksum(seed) & 0xFFFFFFFFL);
                        }
                        // may be a stale block of an older log cycle: the commit time decides
                        checkCommitTime = true;
                    }
                    var tags = block.tags(jsb);
                    if (pass == Pass.REPLAY) {
                        for (JournalBlock.Tag tag : tags) {
                            long logBlock = next;
                            next = journal.next(next);
                            replayTag(tag, tid, logBlock);
                        }
                    } else if (pass == Pass.SCAN && v1 && !checkCommitTime && !endKnown) {
                        crc32Sum = Checksums.crc32Be(crc32Sum, journal.readLogBlock(at), 0, journal.blockSize());
                        for (int i = 0; i < tags.size(); i++) {
                            crc32Sum = Checksums.crc32Be(crc32Sum, journal.readLogBlock(next), 0, journal.blockSize());
                            next = journal.next(next);
                        }
                    } else {
                        next = journal.advance(next, tags.size());
                    }
                }
                case JournalBlock.COMMIT -> {
                    long commitTime = block.commitSeconds();
                    if (checkCommitTime) {
                        if (commitTime >= lastCommitTime) {
                            throw new Ext4Exception(Errno.EBADMSG, "journal inode " + inode + ": invalid checksum found in transaction "
                                    + tid + " (descriptor or revoke block); run e2fsck");
                        }
                        break scan; // a stale commit block of an older cycle: the log ends here
                    }
                    boolean bad = false;
                    if (pass == Pass.SCAN && v1) {
                        if (endKnown) {
                            failedCommit = endTid;
                            break scan;
                        }
                        int found = block.commitChecksum();
                        boolean matches = crc32Sum == found && block.commitChecksumType() == JournalBlock.CRC32_CHKSUM
                                && block.commitChecksumSize() == JournalBlock.CRC32_CHKSUM_SIZE;
                        boolean unused = block.commitChecksumType() == 0 && block.commitChecksumSize() == 0 && found == 0;
                        bad = !matches && !unused;
                        crc32Sum = ~0;
                    }
                    if (pass == Pass.SCAN && !bad && csum && block.computeCommitChecksum(seed) != block.commitChecksum()) {
                        bad = true;
                    }
                    if (bad) {
                        if (commitTime < lastCommitTime) {
                            break scan; // stale
                        }
                        endKnown = true;
                        endTid = tid;
                        if (!jsb.hasIncompat(JournalSuperblock.INCOMPAT_ASYNC_COMMIT)) {
                            failedCommit = tid;
                            break scan;
                        }
                    }
                    if (pass == Pass.SCAN) {
                        lastCommitTime = commitTime;
                    }
                    tid++;
                }
                case JournalBlock.REVOKE -> {
                    if (pass == Pass.SCAN && csum && block.computeTailChecksum(seed) != block.storedTailChecksum()) {
                        checkCommitTime = true;
                    }
                    if (pass == Pass.REVOKE) {
                        revokeRecords(block, tid, at);
                    }
                }
                default -> {
                    break scan;
                }
            }
        }
        if (pass == Pass.SCAN) {
            if (!endKnown) {
                endKnown = true;
                endTid = tid;
            }
        } else if (endTid != tid) {
            throw new Ext4Exception(Errno.EIO, "journal inode " + inode + ": recovery pass " + pass + " ended at transaction "
                    + tid + ", the scan at " + endTid);
        }
    }

    /** The kernel's scan_revoke_records(): r_count bytes of 4- or 8-byte block numbers. */
    private void revokeRecords(JournalBlock block, int tid, long at) throws Ext4Exception {
        long count = block.revokeCount();
        int max = journal.blockSize() - (csum ? JournalBlock.TAIL_SIZE : 0);
        if (count > max) {
            throw new Ext4Exception(Errno.EINVAL, "journal inode " + journal.inodeNumber() + ", revoke block at log block " + at
                    + ": r_count " + count + " (at most " + max + "); run e2fsck");
        }
        boolean bit64 = jsb.hasIncompat(JournalSuperblock.INCOMPAT_64BIT);
        int len = bit64 ? 8 : 4;
        for (int off = JournalBlock.REVOKE_HEADER_SIZE; off + len <= count; off += len) {
            long home = block.revokeRecord(off, bit64);
            revoked.merge(home, tid, (old, now) -> now - old > 0 ? now : old);
        }
    }

    private void replayTag(JournalBlock.Tag tag, int tid, long logBlock) throws Ext4Exception {
        Integer revokedBy = revoked.get(tag.homeBlock());
        if (revokedBy != null && tidGeq(revokedBy, tid)) {
            revokeHits++;
            return;
        }
        if (csum) {
            int expected = jsb.blockTagChecksum(seed, tid, journal.readLogBlock(logBlock));
            if (tag.checksum() != expected) {
                throw Ext4Exception.badChecksum("journal inode " + journal.inodeNumber() + ": data block for block "
                        + tag.homeBlock() + " at log block " + logBlock + " in transaction " + tid + " (run e2fsck)",
                        tag.checksum() & 0xFFFFFFFFL, expected & 0xFFFFFFFFL);
            }
        }
        replay.put(tag.homeBlock(), new LogCopy(logBlock, tag.escaped()));
    }

    /** The contents recovery writes home for {@code copy}: the log block with the magic restored if escaped. */
    public static byte[] contents(Journal journal, LogCopy copy) throws Ext4Exception {
        byte[] b = journal.readLogBlock(copy.logBlock());
        if (copy.escaped()) {
            b[0] = (byte) (JournalBlock.MAGIC >>> 24);
            b[1] = (byte) (JournalBlock.MAGIC >>> 16);
            b[2] = (byte) (JournalBlock.MAGIC >>> 8);
            b[3] = (byte) JournalBlock.MAGIC;
        }
        return b;
    }
}
