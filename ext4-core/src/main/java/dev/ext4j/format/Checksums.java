package dev.ext4j.format;

import java.nio.ByteBuffer;
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

    private static final ThreadLocal<CRC32C> CRC = ThreadLocal.withInitial(CRC32C::new);

    private Checksums() {
    }

    /** The kernel's crc32c(seed, buf[off, off+len)). */
    public static int crc32c(int seed, ByteBuffer buf, int off, int len) {
        CRC32C c = start(seed);
        c.update(buf.duplicate().limit(off + len).position(off));
        return ~(int) c.getValue();
    }

    public static int crc32c(int seed, byte[] buf, int off, int len) {
        CRC32C c = start(seed);
        c.update(buf, off, len);
        return ~(int) c.getValue();
    }

    /** crc32c over the four little-endian bytes of {@code value}. */
    public static int crc32cLe32(int seed, int value) {
        return crc32c(seed, new byte[] {(byte) value, (byte) (value >>> 8), (byte) (value >>> 16),
                (byte) (value >>> 24)}, 0, 4);
    }

    /** crc32c over the eight little-endian bytes of {@code value}. */
    public static int crc32cLe64(int seed, long value) {
        return crc32cLe32(crc32cLe32(seed, (int) value), (int) (value >>> 32));
    }

    private static CRC32C start(int seed) {
        CRC32C c = CRC.get();
        c.reset();
        int p = seedPrefix(seed);
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
