package dev.ext4j.journal;

import dev.ext4j.Errno;
import dev.ext4j.Ext4Exception;
import dev.ext4j.format.Checksums;
import dev.ext4j.format.JournalBlock;
import dev.ext4j.format.JournalSuperblock;
import java.time.Instant;
import java.util.ArrayDeque;
import java.util.List;

/**
 * Writes transactions into the circular log of an opened, empty (recovered) journal and moves its
 * tail when their blocks are home (the writing half of the kernel's fs/jbd2/commit.c and
 * checkpoint.c, without the handles and buffer tracking that belong to the caller).
 *
 * <p>A transaction goes into the log as: revoke blocks, then descriptor blocks each followed by the
 * data blocks its tags describe, all made durable, then the commit block, made durable. Tags use
 * the journal's format: journal_block_tag3_t with CSUM_V3, otherwise journal_block_tag_t.
 *
 * <p>The journal superblock says where the log starts: s_start and s_sequence name the oldest
 * transaction not yet checkpointed, or s_start is 0 when there is none. Setting and clearing
 * needs_recovery in the ext4 superblock is the caller's: set it before the first {@link #commit},
 * clear it after {@link #isEmpty()} turned true at unmount.
 *
 * <p>Thread-safe: every method is synchronized on the log.
 */
public final class JournalLog {
    /** One block of a transaction: where it belongs and its new contents (one block long). */
    public record LogBlock(long homeBlock, byte[] contents) {
    }

    /** A committed transaction still needed for recovery: its tid and the log blocks it spans. */
    private record Committed(int tid, long start, long blocks) {
    }

    private final Journal journal;
    private final JournalSuperblock jsb;
    private final int blockSize;
    private final int seed;
    private final boolean csum;
    private final boolean v1Checksum;
    private final boolean bit64;
    private final ArrayDeque<Committed> live = new ArrayDeque<>();
    /** The log block the next transaction starts at. */
    private long head;
    private int nextTid;

    private JournalLog(Journal journal) {
        this.journal = journal;
        this.jsb = journal.superblock();
        this.blockSize = journal.blockSize();
        this.seed = jsb.checksumSeed();
        this.csum = jsb.hasCsumV2or3();
        this.v1Checksum = jsb.hasCompat(JournalSuperblock.COMPAT_CHECKSUM);
        this.bit64 = jsb.hasIncompat(JournalSuperblock.INCOMPAT_64BIT);
        this.head = jsb.first();
        this.nextTid = jsb.sequence();
    }

    /**
     * Starts logging into {@code journal}, which must be empty (s_start 0: clean or just
     * recovered). Sets the journal features the kernel's ext4 sets at mount: CSUM_V3 (crc32c) with
     * metadata_csum, 64BIT with a 64bit filesystem, and REVOKE; then writes the journal superblock.
     */
    public static JournalLog open(Journal journal, boolean metadataCsum, boolean fs64bit) throws Ext4Exception {
        JournalSuperblock jsb = journal.superblock();
        if (jsb.blockType() != JournalBlock.SUPERBLOCK_V2) {
            throw new Ext4Exception(Errno.EOPNOTSUPP, "journal inode " + journal.inodeNumber()
                    + ": a v1 journal superblock has no feature flags; ext4j writes only v2 journals");
        }
        if (jsb.start() != 0) {
            throw new Ext4Exception(Errno.EINVAL, "journal inode " + journal.inodeNumber()
                    + " needs recovery (s_start " + jsb.start() + "); replay it before logging");
        }
        if (jsb.hasIncompat(JournalSuperblock.INCOMPAT_FAST_COMMIT)) {
            throw new Ext4Exception(Errno.EOPNOTSUPP, "journal inode " + journal.inodeNumber()
                    + ": ext4j does not write journals with fast commits");
        }
        int incompat = jsb.featureIncompat() | JournalSuperblock.INCOMPAT_REVOKE;
        int compat = jsb.featureCompat();
        if (metadataCsum) {
            incompat = (incompat & ~JournalSuperblock.INCOMPAT_CSUM_V2) | JournalSuperblock.INCOMPAT_CSUM_V3;
            compat &= ~JournalSuperblock.COMPAT_CHECKSUM;
            jsb.setChecksumType(JournalSuperblock.CHECKSUM_CRC32C);
        }
        if (fs64bit) {
            incompat |= JournalSuperblock.INCOMPAT_64BIT;
        }
        jsb.setFeatureIncompat(incompat);
        jsb.setFeatureCompat(compat);
        journal.writeSuperblock();
        journal.sync();
        return new JournalLog(journal);
    }

    /** The tid the next {@link #commit} must carry. */
    public synchronized int nextTid() {
        return nextTid;
    }

    /** The log block the next transaction starts at (for tests that steer it over the end of the log). */
    synchronized long head() {
        return head;
    }

    /** True when every committed transaction has been checkpointed (s_start is 0). */
    public synchronized boolean isEmpty() {
        return live.isEmpty();
    }

    private long capacity() {
        return jsb.logEnd() - jsb.first();
    }

    /** Log blocks not held by transactions that still need recovery. One block stays unused, so a full log differs from an empty one. */
    public synchronized long freeSpace() {
        long used = 0;
        for (Committed c : live) {
            used += c.blocks();
        }
        return capacity() - used - 1;
    }

    /**
     * The log blocks a transaction should stay within (a quarter of the log, as jbd2's
     * j_max_transaction_buffers): handles are admitted against it. A transaction that outgrew its
     * credits may still be committed as long as it fits in the whole log.
     */
    public long maxTransactionBlocks() {
        return capacity() / 4;
    }

    private int tagsPerDescriptor() {
        int room = blockSize - JournalBlock.HEADER_SIZE - (csum ? JournalBlock.TAIL_SIZE : 0);
        return 1 + (room - jsb.tagBytes() - 16) / jsb.tagBytes(); // the first tag carries the uuid
    }

    private int recordsPerRevokeBlock() {
        int room = blockSize - JournalBlock.REVOKE_HEADER_SIZE - (csum ? JournalBlock.TAIL_SIZE : 0);
        return room / (bit64 ? 8 : 4);
    }

    /** Log blocks a transaction of {@code blocks} blocks and {@code revokes} revoked blocks takes, commit included. */
    public long blocksNeeded(int blocks, int revokes) {
        long descriptors = (blocks + tagsPerDescriptor() - 1) / tagsPerDescriptor();
        long revokeBlocks = (revokes + recordsPerRevokeBlock() - 1) / recordsPerRevokeBlock();
        return revokeBlocks + descriptors + blocks + 1;
    }

    /**
     * Writes transaction {@code tid} into the log and makes it durable: after this returns, a
     * crash replays {@code blocks} to their home locations and ignores every earlier logged copy
     * of the {@code revoked} blocks.
     *
     * @throws Ext4Exception ENOSPC when the log has no room (checkpoint first), EINVAL for a tid out of order
     */
    public synchronized void commit(long tid, List<LogBlock> blocks, List<Long> revoked) throws Ext4Exception {
        if ((int) tid != nextTid) {
            throw new Ext4Exception(Errno.EINVAL, "journal: transaction " + tid + " committed out of order (expected " + nextTid + ")");
        }
        long need = blocksNeeded(blocks.size(), revoked.size());
        if (need > capacity() - 1) {
            throw new Ext4Exception(Errno.EINVAL, "journal: transaction " + tid + " needs " + need + " log blocks, more than the "
                    + (capacity() - 1) + " the whole log holds");
        }
        if (need > freeSpace()) {
            throw new Ext4Exception(Errno.ENOSPC, "journal: transaction " + tid + " needs " + need + " log blocks, "
                    + freeSpace() + " free; checkpoint first");
        }
        if (live.isEmpty()) {
            // the log starts here: the superblock must say so before a commit block can be found
            jsb.setStart(head);
            jsb.setSequence((int) tid);
            journal.writeSuperblock();
        }
        long start = head;
        long at = head;
        at = writeRevokes(at, (int) tid, revoked);
        int crc32Sum = ~0;
        int perDescriptor = tagsPerDescriptor();
        for (int i = 0; i < blocks.size(); i += perDescriptor) {
            List<LogBlock> chunk = blocks.subList(i, Math.min(blocks.size(), i + perDescriptor));
            byte[] descriptor = new byte[blockSize];
            JournalBlock d = new JournalBlock(descriptor);
            d.setHeader(JournalBlock.DESCRIPTOR, (int) tid);
            long descriptorAt = at;
            at = journal.next(at);
            int off = JournalBlock.HEADER_SIZE;
            int lastTag = off;
            byte[][] written = new byte[chunk.size()][];
            for (int k = 0; k < chunk.size(); k++) {
                LogBlock b = chunk.get(k);
                if (b.contents().length != blockSize) {
                    throw new IllegalArgumentException("block " + b.homeBlock() + ": " + b.contents().length + " bytes, not one block of " + blockSize);
                }
                byte[] data = b.contents();
                int flags = k == 0 ? 0 : JournalBlock.FLAG_SAME_UUID;
                if (new JournalBlock(data).magic() == JournalBlock.MAGIC) {
                    data = data.clone();
                    data[0] = data[1] = data[2] = data[3] = 0;
                    flags |= JournalBlock.FLAG_ESCAPE;
                }
                written[k] = data;
                lastTag = off;
                off = d.putTag(jsb, off, new JournalBlock.Tag(b.homeBlock(), flags, jsb.blockTagChecksum(seed, (int) tid, data)), jsb.uuid());
            }
            d.markLastTag(lastTag);
            if (csum) {
                d.updateTailChecksum(seed);
            }
            journal.writeLogBlock(descriptorAt, descriptor);
            if (v1Checksum) {
                crc32Sum = Checksums.crc32Be(crc32Sum, descriptor, 0, blockSize);
            }
            for (byte[] data : written) {
                journal.writeLogBlock(at, data);
                at = journal.next(at);
                if (v1Checksum) {
                    crc32Sum = Checksums.crc32Be(crc32Sum, data, 0, blockSize);
                }
            }
        }
        journal.sync();
        byte[] commit = new byte[blockSize];
        JournalBlock c = new JournalBlock(commit);
        c.setHeader(JournalBlock.COMMIT, (int) tid);
        Instant now = Instant.now();
        c.setCommitTime(now.getEpochSecond(), now.getNano());
        if (csum) {
            c.setCommitChecksum(0, 0, c.computeCommitChecksum(seed));
        } else if (v1Checksum) {
            c.setCommitChecksum(JournalBlock.CRC32_CHKSUM, JournalBlock.CRC32_CHKSUM_SIZE, crc32Sum);
        }
        journal.writeLogBlock(at, commit);
        at = journal.next(at);
        journal.sync();
        live.add(new Committed((int) tid, start, need));
        head = at;
        nextTid++;
    }

    private long writeRevokes(long at, int tid, List<Long> revoked) throws Ext4Exception {
        int per = recordsPerRevokeBlock();
        int len = bit64 ? 8 : 4;
        for (int i = 0; i < revoked.size(); i += per) {
            List<Long> chunk = revoked.subList(i, Math.min(revoked.size(), i + per));
            byte[] block = new byte[blockSize];
            JournalBlock r = new JournalBlock(block);
            r.setHeader(JournalBlock.REVOKE, tid);
            int off = JournalBlock.REVOKE_HEADER_SIZE;
            for (long home : chunk) {
                r.putRevokeRecord(off, home, bit64);
                off += len;
            }
            r.setRevokeCount(off);
            if (csum) {
                r.updateTailChecksum(seed);
            }
            journal.writeLogBlock(at, block);
            at = journal.next(at);
        }
        return at;
    }

    /**
     * Every block of the transactions up to {@code tid} is durable at its home location: their
     * log space is free again. The journal superblock's s_start moves to the oldest transaction
     * still needed, or to 0 (s_sequence the next tid) when none is left.
     */
    public synchronized void checkpointed(long tid) throws Ext4Exception {
        boolean moved = false;
        while (!live.isEmpty() && live.peekFirst().tid() - (int) tid <= 0) {
            live.removeFirst();
            moved = true;
        }
        if (!moved) {
            return;
        }
        journal.sync(); // the home writes before the superblock that lets the log forget them
        if (live.isEmpty()) {
            jsb.setStart(0);
            jsb.setSequence(nextTid);
        } else {
            jsb.setStart(live.peekFirst().start());
            jsb.setSequence(live.peekFirst().tid());
        }
        journal.writeSuperblock();
        journal.sync();
    }

    /**
     * jbd2_journal_update_sb_errno() on abort: records {@code errno} (negative, as jbd2's j_errno)
     * in the journal superblock, so the next mount (or e2fsck) replays what was committed and marks
     * the filesystem as having errors. The log's start is left as it is.
     */
    public synchronized void recordAbort(int errno) throws Ext4Exception {
        jsb.setErrno(errno);
        journal.writeSuperblock();
        journal.sync();
    }
}
