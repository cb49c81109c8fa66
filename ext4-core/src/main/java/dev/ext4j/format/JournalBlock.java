package dev.ext4j.format;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.List;

/**
 * View of one block of the jbd2 log (big-endian): the journal_header_t every log block but data
 * starts with, and the layouts of the descriptor, commit and revoke blocks after it.
 *
 * <pre>
 * journal_header_t:  0x00 h_magic  0x04 h_blocktype  0x08 h_sequence
 * descriptor:        0x0C tags..., each followed by a 16-byte uuid unless JBD2_FLAG_SAME_UUID;
 *                    with CSUM_V2/V3 the last 4 bytes of the block are the tail checksum
 *   journal_block_tag3_t (CSUM_V3, 16): 0x0 t_blocknr  0x4 t_flags (32)  0x8 t_blocknr_high  0xC t_checksum
 *   journal_block_tag_t (12):  0x0 t_blocknr  0x4 t_checksum (16)  0x6 t_flags (16)  0x8 t_blocknr_high
 * commit_header:     0x0C h_chksum_type (8)  0x0D h_chksum_size (8)  0x10 h_chksum[8]
 *                    0x30 h_commit_sec (64)  0x38 h_commit_nsec
 * revoke header:     0x0C r_count (bytes used, header included), records from 0x10: 4 or 8 (64BIT)
 *                    bytes each; with CSUM_V2/V3 the last 4 bytes are the tail checksum
 * </pre>
 */
public final class JournalBlock {
    public static final int MAGIC = 0xC03B3998;

    static final int H_MAGIC = 0x00;
    static final int H_BLOCKTYPE = 0x04;
    static final int H_SEQUENCE = 0x08;
    public static final int HEADER_SIZE = 0x0C;

    /** h_blocktype values. */
    public static final int DESCRIPTOR = 1, COMMIT = 2, SUPERBLOCK_V1 = 3, SUPERBLOCK_V2 = 4, REVOKE = 5;

    /** Tag flags. */
    public static final int FLAG_ESCAPE = 0x1, FLAG_SAME_UUID = 0x2, FLAG_DELETED = 0x4, FLAG_LAST_TAG = 0x8;

    static final int T_BLOCKNR = 0x0;
    static final int T3_FLAGS = 0x4;
    static final int T_BLOCKNR_HIGH = 0x8;
    static final int T3_CHECKSUM = 0xC;
    static final int T_CHECKSUM = 0x4;
    static final int T_FLAGS = 0x6;
    static final int TAG3_SIZE = 16;
    static final int TAG_SIZE = 12;
    static final int UUID_SIZE = 16;
    /** struct jbd2_journal_block_tail: the checksum in the last 4 bytes of descriptor and revoke blocks. */
    public static final int TAIL_SIZE = 4;

    static final int H_CHKSUM_TYPE = 0x0C;
    static final int H_CHKSUM_SIZE = 0x0D;
    static final int H_CHKSUM = 0x10;
    static final int H_COMMIT_SEC = 0x30;
    static final int H_COMMIT_NSEC = 0x38;
    /** h_chksum_type of a v1 (COMPAT_CHECKSUM) commit block: crc32, 4 bytes. */
    public static final int CRC32_CHKSUM = 1, CRC32_CHKSUM_SIZE = 4;

    static final int R_COUNT = 0x0C;
    public static final int REVOKE_HEADER_SIZE = 0x10;

    /** A decoded descriptor tag: where the next log block belongs, its flags and its data checksum. */
    public record Tag(long homeBlock, int flags, int checksum) {
        public boolean escaped() {
            return (flags & FLAG_ESCAPE) != 0;
        }
    }

    private final ByteBuffer buf;

    /** Wraps {@code block} (not copied). */
    public JournalBlock(byte[] block) {
        this.buf = ByteBuffer.wrap(block).order(ByteOrder.BIG_ENDIAN);
    }

    public int size() {
        return buf.capacity();
    }

    public int magic() { return buf.getInt(H_MAGIC); }
    public int blockType() { return buf.getInt(H_BLOCKTYPE); }
    public int sequence() { return buf.getInt(H_SEQUENCE); }

    public void setHeader(int blockType, int sequence) {
        buf.putInt(H_MAGIC, MAGIC);
        buf.putInt(H_BLOCKTYPE, blockType);
        buf.putInt(H_SEQUENCE, sequence);
    }

    // ---- descriptor ----

    /**
     * The tags of a descriptor block (the kernel's count_tags() walk): up to the LAST_TAG flag or
     * until no further tag fits before the tail.
     */
    public List<Tag> tags(JournalSuperblock jsb) {
        int tagBytes = jsb.tagBytes();
        int end = size() - (jsb.hasCsumV2or3() ? TAIL_SIZE : 0);
        boolean v3 = jsb.hasIncompat(JournalSuperblock.INCOMPAT_CSUM_V3);
        boolean bit64 = jsb.hasIncompat(JournalSuperblock.INCOMPAT_64BIT);
        List<Tag> out = new ArrayList<>();
        int off = HEADER_SIZE;
        while (off + tagBytes <= end) {
            long block = buf.getInt(off + T_BLOCKNR) & 0xFFFFFFFFL;
            if (bit64) {
                block |= (buf.getInt(off + T_BLOCKNR_HIGH) & 0xFFFFFFFFL) << 32;
            }
            // t_flags is a 32-bit word in tag3 and a 16-bit one in tag; the flags live in its low half either way
            int flags = buf.getShort(off + T_FLAGS) & 0xFFFF;
            int csum = v3 ? buf.getInt(off + T3_CHECKSUM) : buf.getShort(off + T_CHECKSUM) & 0xFFFF;
            out.add(new Tag(block, flags, csum));
            off += tagBytes;
            if ((flags & FLAG_SAME_UUID) == 0) {
                off += UUID_SIZE;
            }
            if ((flags & FLAG_LAST_TAG) != 0) {
                break;
            }
        }
        return out;
    }

    /**
     * Writes a tag at byte {@code off} and returns the offset after it. The caller sets
     * FLAG_SAME_UUID on every tag but the first, whose uuid it passes.
     */
    public int putTag(JournalSuperblock jsb, int off, Tag tag, byte[] uuid) {
        boolean v3 = jsb.hasIncompat(JournalSuperblock.INCOMPAT_CSUM_V3);
        buf.putInt(off + T_BLOCKNR, (int) tag.homeBlock());
        if (jsb.hasIncompat(JournalSuperblock.INCOMPAT_64BIT)) {
            buf.putInt(off + T_BLOCKNR_HIGH, (int) (tag.homeBlock() >>> 32));
        }
        if (v3) {
            buf.putInt(off + T3_FLAGS, tag.flags());
            buf.putInt(off + T3_CHECKSUM, tag.checksum());
        } else {
            buf.putShort(off + T_FLAGS, (short) tag.flags());
            buf.putShort(off + T_CHECKSUM, (short) tag.checksum());
        }
        int next = off + jsb.tagBytes();
        if ((tag.flags() & FLAG_SAME_UUID) == 0) {
            buf.put(next, uuid, 0, UUID_SIZE);
            next += UUID_SIZE;
        }
        return next;
    }

    /** Sets FLAG_LAST_TAG on the tag written at byte {@code off}. */
    public void markLastTag(int off) {
        int at = off + T_FLAGS;
        buf.putShort(at, (short) (buf.getShort(at) | FLAG_LAST_TAG));
    }

    // ---- descriptor and revoke block tail ----

    public int storedTailChecksum() {
        return buf.getInt(size() - TAIL_SIZE);
    }

    /** crc32c(seed, the block with the tail checksum as zero). */
    public int computeTailChecksum(int seed) {
        return checksumWithZeroedWord(seed, size() - TAIL_SIZE);
    }

    public void updateTailChecksum(int seed) {
        buf.putInt(size() - TAIL_SIZE, computeTailChecksum(seed));
    }

    private int checksumWithZeroedWord(int seed, int at) {
        int saved = buf.getInt(at);
        buf.putInt(at, 0);
        int c = Checksums.crc32c(seed, buf, 0, size());
        buf.putInt(at, saved);
        return c;
    }

    // ---- commit ----

    public int commitChecksumType() { return buf.get(H_CHKSUM_TYPE) & 0xFF; }
    public int commitChecksumSize() { return buf.get(H_CHKSUM_SIZE) & 0xFF; }
    /** h_chksum[0]: crc32 of the transaction (v1) or crc32c of this block (v2/v3). */
    public int commitChecksum() { return buf.getInt(H_CHKSUM); }
    public long commitSeconds() { return buf.getLong(H_COMMIT_SEC); }
    public int commitNanos() { return buf.getInt(H_COMMIT_NSEC); }

    /** crc32c(seed, the block with h_chksum[0] as zero): the v2/v3 commit block checksum. */
    public int computeCommitChecksum(int seed) {
        return checksumWithZeroedWord(seed, H_CHKSUM);
    }

    public void setCommitTime(long seconds, int nanos) {
        buf.putLong(H_COMMIT_SEC, seconds);
        buf.putInt(H_COMMIT_NSEC, nanos);
    }

    public void setCommitChecksum(int type, int size, int checksum) {
        buf.put(H_CHKSUM_TYPE, (byte) type);
        buf.put(H_CHKSUM_SIZE, (byte) size);
        buf.putInt(H_CHKSUM, checksum);
    }

    // ---- revoke ----

    /** r_count: bytes of the block in use, header included. */
    public long revokeCount() { return buf.getInt(R_COUNT) & 0xFFFFFFFFL; }

    public void setRevokeCount(int bytes) { buf.putInt(R_COUNT, bytes); }

    /** Revoke record {@code i}: 8 bytes with 64BIT, else 4. */
    public long revokeRecord(int offset, boolean bit64) {
        return bit64 ? buf.getLong(offset) : buf.getInt(offset) & 0xFFFFFFFFL;
    }

    public void putRevokeRecord(int offset, long block, boolean bit64) {
        if (bit64) {
            buf.putLong(offset, block);
        } else {
            buf.putInt(offset, (int) block);
        }
    }
}
