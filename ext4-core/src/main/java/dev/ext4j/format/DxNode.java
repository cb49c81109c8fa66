package dev.ext4j.format;

import java.nio.ByteBuffer;

/**
 * Views of the htree index blocks: struct dx_root (block 0 of an indexed directory) and struct
 * dx_node (interior blocks). Both hide behind fake directory entries so old kernels see an empty
 * directory block.
 *
 * <pre>
 * dx_root: 0x00 "." entry (12 bytes)  0x0C ".." entry (rec_len to the block end)
 *          0x18 dx_root_info: reserved_zero (32)  0x1C hash_version (8)  0x1D info_length (8, = 8)
 *               0x1E indirect_levels (8)  0x1F unused_flags (8)
 *          0x20 dx_countlimit: limit (16) count (16), then block (32) of entry 0
 * dx_node: 0x00 fake dirent: inode 0, rec_len = block size   0x08 dx_countlimit, then entries
 * entries: struct dx_entry { hash (32), block (32) }; entry 0's hash slot holds the countlimit.
 * tail (metadata_csum) after limit entries: struct dx_tail { dt_reserved (32), dt_checksum (32) }
 * </pre>
 */
public final class DxNode {
    public static final int ROOT_INFO = 0x18;
    public static final int ROOT_ENTRIES = 0x20;
    public static final int NODE_ENTRIES = 0x08;
    public static final int ENTRY_SIZE = 8;
    public static final int TAIL_SIZE = 8;

    static final int INFO_HASH_VERSION = 0x04;
    static final int INFO_LENGTH = 0x05;
    static final int INFO_INDIRECT_LEVELS = 0x06;
    static final int LIMIT = 0x0;
    static final int COUNT = 0x2;

    private final ByteBuffer buf;
    private final int entriesOffset;

    private DxNode(ByteBuffer buf, int entriesOffset) {
        this.buf = buf;
        this.entriesOffset = entriesOffset;
    }

    public static DxNode root(ByteBuffer block) {
        return new DxNode(block, ROOT_ENTRIES);
    }

    public static DxNode node(ByteBuffer block) {
        return new DxNode(block, NODE_ENTRIES);
    }

    public int hashVersion() { return buf.get(ROOT_INFO + INFO_HASH_VERSION) & 0xFF; }
    public int infoLength() { return buf.get(ROOT_INFO + INFO_LENGTH) & 0xFF; }
    public int indirectLevels() { return buf.get(ROOT_INFO + INFO_INDIRECT_LEVELS) & 0xFF; }

    public int entriesOffset() { return entriesOffset; }
    public int limit() { return buf.getShort(entriesOffset + LIMIT) & 0xFFFF; }
    public int count() { return buf.getShort(entriesOffset + COUNT) & 0xFFFF; }

    /** Hash of entry {@code i}; entry 0 has none (it covers everything below entry 1). */
    public int hash(int i) {
        return i == 0 ? 0 : buf.getInt(entriesOffset + i * ENTRY_SIZE);
    }

    /** Directory logical block of entry {@code i}. */
    public long block(int i) {
        return buf.getInt(entriesOffset + i * ENTRY_SIZE + 4) & 0x0FFFFFFFL;
    }

    // ---- writers (htree modification, fs/ext4/namei.c); the buffer must be writable ----

    /** Clears dx_root_info and sets info_length 8, the hash version and indirect_levels 0. */
    public void initRootInfo(int hashVersion) {
        for (int i = 0; i < 8; i++) {
            buf.put(ROOT_INFO + i, (byte) 0);
        }
        buf.put(ROOT_INFO + INFO_LENGTH, (byte) 8);
        buf.put(ROOT_INFO + INFO_HASH_VERSION, (byte) hashVersion);
    }

    public void setIndirectLevels(int levels) { buf.put(ROOT_INFO + INFO_INDIRECT_LEVELS, (byte) levels); }
    public void setLimit(int limit) { buf.putShort(entriesOffset + LIMIT, (short) limit); }
    public void setCount(int count) { buf.putShort(entriesOffset + COUNT, (short) count); }

    /** Sets the hash of entry {@code i}, which must not be 0 (its slot holds the countlimit). */
    public void setHash(int i, int hash) {
        if (i == 0) {
            throw new IllegalArgumentException("entry 0 has no hash");
        }
        buf.putInt(entriesOffset + i * ENTRY_SIZE, hash);
    }

    public void setBlock(int i, long lblk) {
        buf.putInt(entriesOffset + i * ENTRY_SIZE + 4, (int) lblk);
    }

    /** ext4_dx_csum_set(): stores {@link #computeChecksum} in the dx_tail after {@code limit} entries. */
    public void setChecksum(int inodeSeed) {
        buf.putInt(tailOffset() + 4, computeChecksum(inodeSeed));
    }

    /** Expected limit: entries that fit between the entries start and the block end (minus tail). */
    public static int expectedLimit(int blockSize, int entriesOffset, boolean metadataCsum) {
        return (blockSize - entriesOffset - (metadataCsum ? TAIL_SIZE : 0)) / ENTRY_SIZE;
    }

    public int tailOffset() {
        return entriesOffset + limit() * ENTRY_SIZE;
    }

    public int storedChecksum() {
        return buf.getInt(tailOffset() + 4);
    }

    /** ext4_dx_csum(): crc32c(inode seed, block up to the counted entries, dt_reserved, zero). */
    public int computeChecksum(int inodeSeed) {
        int c = Checksums.crc32c(inodeSeed, buf, 0, entriesOffset + count() * ENTRY_SIZE);
        c = Checksums.crc32c(c, buf, tailOffset(), 4);
        return Checksums.crc32c(c, new byte[4], 0, 4);
    }
}
