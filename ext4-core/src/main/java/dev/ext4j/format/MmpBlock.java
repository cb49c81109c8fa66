package dev.ext4j.format;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;

/**
 * View of struct mmp_struct, the multi-mount protection block (INCOMPAT_MMP) that s_mmp_block
 * names: 1024 bytes at the start of that block; the rest of a larger block is unused.
 *
 * <pre>
 * 0x000 mmp_magic (32)          EXT4_MMP_MAGIC, 0x004D4D50 ("PMM" little-endian)
 * 0x004 mmp_seq (32)            a number the holder changes every update interval, or CLEAN / FSCK
 * 0x008 mmp_time (64)           seconds since the epoch of the last update (for people only)
 * 0x010 mmp_nodename[64]        host name of the last holder (for people only)
 * 0x050 mmp_bdevname[32]        device name of the last holder (for people only)
 * 0x070 mmp_check_interval (16) seconds: how long a checker must wait to see a live holder move
 * 0x072 mmp_pad1 (16), 0x074 mmp_pad2[226]
 * 0x3FC mmp_checksum (32)       crc32c(filesystem checksum seed, bytes 0..0x3FB), with metadata_csum
 * </pre>
 *
 * The names are NUL-padded and need not end in a NUL when they fill their field.
 */
public final class MmpBlock {
    public static final int SIZE = 1024;
    public static final int MAGIC = 0x004D4D50;
    /** mmp_seq of a filesystem nobody holds (EXT4_MMP_SEQ_CLEAN). */
    public static final int SEQ_CLEAN = 0xFF4D4D50;
    /** mmp_seq while e2fsck runs (EXT4_MMP_SEQ_FSCK). */
    public static final int SEQ_FSCK = 0xE24D4D50;
    /** The largest sequence a holder writes (EXT4_MMP_SEQ_MAX); the two above lie past it. */
    public static final int SEQ_MAX = 0xE24D4D4F;

    static final int MMP_MAGIC = 0x000;
    static final int MMP_SEQ = 0x004;
    static final int MMP_TIME = 0x008;
    static final int MMP_NODENAME = 0x010;
    static final int NODENAME_SIZE = 64;
    static final int MMP_BDEVNAME = 0x050;
    static final int BDEVNAME_SIZE = 32;
    static final int MMP_CHECK_INTERVAL = 0x070;
    static final int MMP_CHECKSUM = 0x3FC;

    private final ByteBuffer buf;

    private MmpBlock(ByteBuffer buf) {
        this.buf = buf;
    }

    /** A view of the first {@link #SIZE} bytes of {@code block} (absolute, little-endian). */
    public static MmpBlock of(ByteBuffer block) {
        return new MmpBlock(block.duplicate().order(ByteOrder.LITTLE_ENDIAN));
    }

    /** The whole block, for writing. */
    public ByteBuffer raw() {
        return buf.duplicate().clear();
    }

    public int magic() { return buf.getInt(MMP_MAGIC); }
    public int seq() { return buf.getInt(MMP_SEQ); }
    public long time() { return buf.getLong(MMP_TIME); }
    public String nodeName() { return text(MMP_NODENAME, NODENAME_SIZE); }
    public String deviceName() { return text(MMP_BDEVNAME, BDEVNAME_SIZE); }
    public int checkInterval() { return buf.getShort(MMP_CHECK_INTERVAL) & 0xFFFF; }
    public int storedChecksum() { return buf.getInt(MMP_CHECKSUM); }

    /** Whether the node names of this block and {@code other} are the same bytes (as kmmpd compares them). */
    public boolean sameNode(MmpBlock other) {
        return buf.slice(MMP_NODENAME, NODENAME_SIZE).equals(other.buf.slice(MMP_NODENAME, NODENAME_SIZE));
    }

    public void setSeq(int seq) { buf.putInt(MMP_SEQ, seq); }
    public void setTime(long seconds) { buf.putLong(MMP_TIME, seconds); }
    public void setCheckInterval(int seconds) { buf.putShort(MMP_CHECK_INTERVAL, (short) seconds); }
    /** The host name, cut to the field's 64 bytes. */
    public void setNodeName(String name) { putText(MMP_NODENAME, NODENAME_SIZE, name.getBytes(StandardCharsets.UTF_8)); }

    /**
     * The device name, cut to the field's 32 bytes. A longer name keeps its end (an image path's
     * file name tells more than its first directories).
     */
    public void setDeviceName(String name) {
        byte[] b = name.getBytes(StandardCharsets.UTF_8);
        int from = Math.max(0, b.length - BDEVNAME_SIZE);
        putText(MMP_BDEVNAME, BDEVNAME_SIZE, java.util.Arrays.copyOfRange(b, from, b.length));
    }

    /** crc32c of the bytes before mmp_checksum, from the filesystem's checksum seed (ext4_mmp_csum()). */
    public int computeChecksum(int csumSeed) {
        return Checksums.crc32c(csumSeed, buf, 0, MMP_CHECKSUM);
    }

    public void updateChecksum(int csumSeed) {
        buf.putInt(MMP_CHECKSUM, computeChecksum(csumSeed));
    }

    private String text(int off, int size) {
        byte[] b = new byte[size];
        buf.get(off, b);
        int len = 0;
        while (len < size && b[len] != 0) {
            len++;
        }
        return new String(b, 0, len, StandardCharsets.UTF_8);
    }

    private void putText(int off, int size, byte[] value) {
        int n = Math.min(size, value.length);
        buf.put(off, value, 0, n);
        for (int i = off + n; i < off + size; i++) {
            buf.put(i, (byte) 0);
        }
    }
}
