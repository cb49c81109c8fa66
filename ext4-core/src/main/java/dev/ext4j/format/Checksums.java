package dev.ext4j.format;

import java.nio.ByteBuffer;
import java.util.Arrays;
import java.util.zip.CRC32C;

/**
 * The two checksums of ext4: crc32c for metadata_csum and crc16 for gdt_csum.
 *
 * <p>ext4 chains raw crc32c states (the kernel's {@code crc32c(seed, data, len)}, with no final
 * inversion) from arbitrary seeds. {@link CRC32C} only starts from ~0 and inverts at the end, but a
 * CRC register can be steered to any state by four input bytes: {@link #seedPrefix} computes them by
 * running the register backwards. So {@code raw(seed, data) == ~CRC32C(prefix(seed) || data)}, and
 * the JDK's hardware-accelerated implementation does the work.
 */
public final class Checksums {
    private static final int CRC32C_POLY = 0x82F63B78; // reflected Castagnoli polynomial
    private static final int CRC16_POLY = 0xA001;       // reflected 0x8005, as lib/crc16.c

    /** A thread's CRC32C, the prefixes of the seeds it used lately, and a scratch array. */
    private static final class State {
        final CRC32C crc = new CRC32C();
        /** Recent seeds and their prefixes, direct-mapped: inodes, directories and the filesystem seed alternate. */
        final int[] seeds = new int[64];
        final int[] prefixes = new int[64];
        final boolean[] known = new boolean[64];
        private byte[] scratch = new byte[4096];

        int prefix(int seed) {
            int i = (seed ^ (seed >>> 16) ^ (seed >>> 8)) & 63;
            if (!known[i] || seeds[i] != seed) {
                seeds[i] = seed;
                prefixes[i] = seedPrefix(seed);
                known[i] = true;
            }
            return prefixes[i];
        }

        byte[] scratch(int len) {
            if (scratch.length < len) {
                scratch = new byte[len];
            }
            return scratch;
        }
    }

    private static final ThreadLocal<State> CRC = ThreadLocal.withInitial(State::new);

    private Checksums() {
    }

    /** The kernel's crc32c(seed, buf[off, off+len)). */
    public static int crc32c(int seed, ByteBuffer buf, int off, int len) {
        CRC32C c = start(seed);
        if (buf.hasArray() || buf.isDirect()) {
            c.update(buf.duplicate().limit(off + len).position(off));
        } else {
            // a read-only heap view (a cached block): one bulk copy beats CRC32C's own fallback,
            // which allocates and copies in small chunks
            byte[] scratch = CRC.get().scratch(len);
            buf.get(off, scratch, 0, len);
            c.update(scratch, 0, len);
        }
        return ~(int) c.getValue();
    }

    /**
     * The kernel's crc32c(seed, ...) over {@code buf[off, off+len)} with the checksum field that
     * lives in it read as zeros: {@code holeLen} bytes at {@code hole}, and as many at
     * {@code hole2} unless it is negative. One pass from one seed, where chaining the pieces would
     * steer the register anew for each.
     */
    public static int crc32cZeroing(int seed, ByteBuffer buf, int off, int len, int hole, int hole2, int holeLen) {
        byte[] scratch = CRC.get().scratch(len);
        buf.get(off, scratch, 0, len);
        Arrays.fill(scratch, hole - off, hole - off + holeLen, (byte) 0);
        if (hole2 >= 0) {
            Arrays.fill(scratch, hole2 - off, hole2 - off + holeLen, (byte) 0);
        }
        return crc32c(seed, scratch, 0, len);
    }

    public static int crc32c(int seed, byte[] buf, int off, int len) {
        CRC32C c = start(seed);
        c.update(buf, off, len);
        return ~(int) c.getValue();
    }

    /** The reflected Castagnoli table, for short inputs where steering the JDK's CRC32C costs more than it saves. */
    private static final int[] TABLE = new int[256];

    static {
        for (int i = 0; i < 256; i++) {
            int c = i;
            for (int k = 0; k < 8; k++) {
                c = (c & 1) != 0 ? (c >>> 1) ^ CRC32C_POLY : c >>> 1;
            }
            TABLE[i] = c;
        }
    }

    /** crc32c over the four little-endian bytes of {@code value}. */
    public static int crc32cLe32(int seed, int value) {
        int c = seed;
        for (int k = 0; k < 32; k += 8) {
            c = TABLE[(c ^ (value >>> k)) & 0xFF] ^ (c >>> 8);
        }
        return c;
    }

    /** crc32c over the eight little-endian bytes of {@code value}. */
    public static int crc32cLe64(int seed, long value) {
        return crc32cLe32(crc32cLe32(seed, (int) value), (int) (value >>> 32));
    }

    private static CRC32C start(int seed) {
        State st = CRC.get();
        CRC32C c = st.crc;
        c.reset();
        int p = st.prefix(seed);
        c.update(p & 0xFF);
        c.update((p >>> 8) & 0xFF);
        c.update((p >>> 16) & 0xFF);
        c.update(p >>> 24);
        return c;
    }

    /**
     * The little-endian word P with raw(~0, P) == seed. Four input bytes xor into the register and
     * are then shifted through 32 steps; undoing those steps and the initial ~0 gives P.
     */
    static int seedPrefix(int seed) {
        int x = seed;
        for (int i = 0; i < 32; i++) {
            x = (x & 0x80000000) != 0 ? ((x ^ CRC32C_POLY) << 1) | 1 : x << 1;
        }
        return x ^ 0xFFFFFFFF;
    }

    /** The MSB-first table of crc32 (polynomial 0x04C11DB7), for jbd2's v1 commit checksums. */
    private static final int[] TABLE_BE = new int[256];

    static {
        for (int i = 0; i < 256; i++) {
            int c = i << 24;
            for (int k = 0; k < 8; k++) {
                c = (c & 0x80000000) != 0 ? (c << 1) ^ 0x04C11DB7 : c << 1;
            }
            TABLE_BE[i] = c;
        }
    }

    /** The kernel's crc32_be(crc, buf[off, off+len)): no reflection, no final inversion. */
    public static int crc32Be(int crc, byte[] buf, int off, int len) {
        int c = crc;
        for (int i = off; i < off + len; i++) {
            c = (c << 8) ^ TABLE_BE[((c >>> 24) ^ buf[i]) & 0xFF];
        }
        return c;
    }

    /** The kernel's crc16(crc, buf[off, off+len)). */
    public static int crc16(int crc, ByteBuffer buf, int off, int len) {
        int c = crc & 0xFFFF;
        for (int i = off; i < off + len; i++) {
            c ^= buf.get(i) & 0xFF;
            for (int b = 0; b < 8; b++) {
                c = (c & 1) != 0 ? (c >>> 1) ^ CRC16_POLY : c >>> 1;
            }
        }
        return c;
    }

    public static int crc16(int crc, byte[] buf) {
        return crc16(crc, ByteBuffer.wrap(buf), 0, buf.length);
    }
}
