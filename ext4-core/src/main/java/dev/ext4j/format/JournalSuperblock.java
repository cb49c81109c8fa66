package dev.ext4j.format;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/**
 * View of jbd2's journal_superblock_t: the first block of the journal, 1024 bytes used. Unlike
 * ext4, jbd2 is big-endian throughout. The v2 fields (features, uuid, checksum) read as zero in a
 * v1 superblock.
 *
 * <pre>
 * 0x000 h_magic  0x004 h_blocktype  0x008 h_sequence      (journal_header_t)
 * 0x00C s_blocksize   0x010 s_maxlen   0x014 s_first     0x018 s_sequence   0x01C s_start
 * 0x020 s_errno       0x024 s_feature_compat  0x028 s_feature_incompat  0x02C s_feature_ro_compat
 * 0x030 s_uuid[16]    0x040 s_nr_users  0x044 s_dynsuper  0x048 s_max_transaction
 * 0x04C s_max_trans_data  0x050 s_checksum_type (8)  0x054 s_num_fc_blks  0x058 s_head
 * 0x0FC s_checksum    0x100 s_users[16*48]
 * </pre>
 */
public final class JournalSuperblock {
    public static final int SIZE = 1024;

    static final int S_BLOCKSIZE = 0x00C;
    static final int S_MAXLEN = 0x010;
    static final int S_FIRST = 0x014;
    static final int S_SEQUENCE = 0x018;
    static final int S_START = 0x01C;
    static final int S_ERRNO = 0x020;
    static final int S_FEATURE_COMPAT = 0x024;
    static final int S_FEATURE_INCOMPAT = 0x028;
    static final int S_FEATURE_RO_COMPAT = 0x02C;
    static final int S_UUID = 0x030;
    static final int S_NR_USERS = 0x040;
    static final int S_MAX_TRANSACTION = 0x048;
    static final int S_CHECKSUM_TYPE = 0x050;
    static final int S_NUM_FC_BLKS = 0x054;
    static final int S_CHECKSUM = 0x0FC;

    /** s_feature_compat: v1 commit block checksums (crc32 over the transaction's blocks). */
    public static final int COMPAT_CHECKSUM = 0x1;
    /** s_feature_incompat bits. */
    public static final int INCOMPAT_REVOKE = 0x1, INCOMPAT_64BIT = 0x2, INCOMPAT_ASYNC_COMMIT = 0x4,
            INCOMPAT_CSUM_V2 = 0x8, INCOMPAT_CSUM_V3 = 0x10, INCOMPAT_FAST_COMMIT = 0x20;
    /** The incompat bits this implementation knows (the kernel's JBD2_KNOWN_INCOMPAT_FEATURES). */
    public static final int KNOWN_INCOMPAT = 0x3F;
    /** s_checksum_type for crc32c, the only one v2/v3 checksums use. */
    public static final int CHECKSUM_CRC32C = 4;
    /** Fast-commit blocks when s_num_fc_blks is 0 (JBD2_DEFAULT_FAST_COMMIT_BLOCKS). */
    public static final int DEFAULT_FAST_COMMIT_BLOCKS = 256;

    private final ByteBuffer buf;

    /** Wraps a copy of the first {@link #SIZE} bytes of {@code raw} (from its position). */
    public JournalSuperblock(ByteBuffer raw) {
        ByteBuffer copy = ByteBuffer.allocate(SIZE);
        copy.put(raw.duplicate().limit(raw.position() + SIZE));
        this.buf = copy.flip().order(ByteOrder.BIG_ENDIAN);
    }

    /** The raw bytes, big-endian, for writing back into the journal's first block. */
    public ByteBuffer raw() {
        return buf.duplicate().order(ByteOrder.BIG_ENDIAN);
    }

    private long u32(int off) {
        return buf.getInt(off) & 0xFFFFFFFFL;
    }

    private boolean v2() {
        return blockType() == JournalBlock.SUPERBLOCK_V2;
    }

    private int v2Int(int off) {
        return v2() ? buf.getInt(off) : 0;
    }

    public int magic() { return buf.getInt(JournalBlock.H_MAGIC); }
    public int blockType() { return buf.getInt(JournalBlock.H_BLOCKTYPE); }
    public long blockSize() { return u32(S_BLOCKSIZE); }
    /** s_maxlen: blocks in the journal, this superblock included. */
    public long maxLen() { return u32(S_MAXLEN); }
    /** s_first: the first block of the log proper. */
    public long first() { return u32(S_FIRST); }
    /** s_sequence: the first transaction expected in the log. */
    public int sequence() { return buf.getInt(S_SEQUENCE); }
    /** s_start: the log block where the log starts; 0 when the journal is empty (clean). */
    public long start() { return u32(S_START); }
    public int errno() { return buf.getInt(S_ERRNO); }
    public int featureCompat() { return v2Int(S_FEATURE_COMPAT); }
    public int featureIncompat() { return v2Int(S_FEATURE_INCOMPAT); }
    public int featureRoCompat() { return v2Int(S_FEATURE_RO_COMPAT); }
    public long nrUsers() { return v2() ? u32(S_NR_USERS) : 1; }
    public long maxTransaction() { return v2() ? u32(S_MAX_TRANSACTION) : 0; }
    public int checksumType() { return v2() ? buf.get(S_CHECKSUM_TYPE) & 0xFF : 0; }
    public int storedChecksum() { return buf.getInt(S_CHECKSUM); }

    public byte[] uuid() {
        byte[] u = new byte[16];
        buf.get(S_UUID, u);
        return u;
    }

    public boolean hasIncompat(int bit) {
        return (featureIncompat() & bit) != 0;
    }

    public boolean hasCompat(int bit) {
        return (featureCompat() & bit) != 0;
    }

    /** CSUM_V2 or CSUM_V3: descriptor, revoke and commit blocks carry crc32c checksums. */
    public boolean hasCsumV2or3() {
        return hasIncompat(INCOMPAT_CSUM_V2) || hasIncompat(INCOMPAT_CSUM_V3);
    }

    /** Fast-commit blocks at the end of the journal (none without INCOMPAT_FAST_COMMIT). */
    public long fastCommitBlocks() {
        if (!hasIncompat(INCOMPAT_FAST_COMMIT)) {
            return 0;
        }
        long n = u32(S_NUM_FC_BLKS);
        return n == 0 ? DEFAULT_FAST_COMMIT_BLOCKS : n;
    }

    /** One past the last block of the circular log: s_maxlen less the fast-commit area. */
    public long logEnd() {
        return maxLen() - fastCommitBlocks();
    }

    /**
     * Bytes of one descriptor tag (the kernel's journal_tag_bytes()): 16 with CSUM_V3
     * (journal_block_tag3_t); else journal_block_tag_t (12), plus 2 with CSUM_V2, less the
     * t_blocknr_high word without 64BIT.
     */
    public int tagBytes() {
        if (hasIncompat(INCOMPAT_CSUM_V3)) {
            return JournalBlock.TAG3_SIZE;
        }
        int sz = JournalBlock.TAG_SIZE;
        if (hasIncompat(INCOMPAT_CSUM_V2)) {
            sz += 2;
        }
        return hasIncompat(INCOMPAT_64BIT) ? sz : sz - 4;
    }

    /** The seed of every v2/v3 checksum: crc32c(~0, s_uuid). */
    public int checksumSeed() {
        return Checksums.crc32c(~0, uuid(), 0, 16);
    }

    /**
     * The checksum a descriptor tag carries for a logged block (CSUM_V2/V3): crc32c(seed,
     * big-endian tid, the block as logged), all 32 bits in a tag3, the low 16 in a v2 tag; 0
     * without v2/v3 checksums.
     */
    public int blockTagChecksum(int seed, int tid, byte[] logged) {
        if (!hasCsumV2or3()) {
            return 0;
        }
        byte[] t = {(byte) (tid >>> 24), (byte) (tid >>> 16), (byte) (tid >>> 8), (byte) tid};
        int c = Checksums.crc32c(Checksums.crc32c(seed, t, 0, 4), logged, 0, logged.length);
        return hasIncompat(INCOMPAT_CSUM_V3) ? c : c & 0xFFFF;
    }

    /** crc32c(~0, the 1024 superblock bytes with s_checksum as zero). */
    public int computeChecksum() {
        ByteBuffer copy = ByteBuffer.allocate(SIZE);
        copy.put(0, buf, 0, SIZE);
        copy.putInt(S_CHECKSUM, 0);
        return Checksums.crc32c(~0, copy, 0, SIZE);
    }

    public void setSequence(int v) { buf.putInt(S_SEQUENCE, v); }
    public void setStart(long v) { buf.putInt(S_START, (int) v); }
    public void setErrno(int v) { buf.putInt(S_ERRNO, v); }
    public void setFeatureCompat(int v) { buf.putInt(S_FEATURE_COMPAT, v); }
    public void setFeatureIncompat(int v) { buf.putInt(S_FEATURE_INCOMPAT, v); }
    public void setChecksumType(int v) { buf.put(S_CHECKSUM_TYPE, (byte) v); }

    /** Stores the checksum over the current bytes when the journal has v2/v3 checksums. */
    public void updateChecksum() {
        if (hasCsumV2or3()) {
            buf.putInt(S_CHECKSUM, computeChecksum());
        }
    }
}
