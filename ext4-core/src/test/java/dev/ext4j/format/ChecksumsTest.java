package dev.ext4j.format;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.Arrays;
import java.util.Random;
import org.junit.jupiter.api.Test;

/**
 * crc32c with arbitrary seeds (the kernel's raw, uninverted form) and crc16, against published check
 * values and a bit-by-bit reference implementation.
 */
class ChecksumsTest {
    private static final byte[] CHECK = "123456789".getBytes(StandardCharsets.US_ASCII);

    /** Bitwise reflected CRC-32C with no initial or final inversion: the kernel's crc32c(seed, ...). */
    static int refCrc32c(int seed, byte[] data, int off, int len) {
        int crc = seed;
        for (int i = off; i < off + len; i++) {
            crc ^= data[i] & 0xFF;
            for (int b = 0; b < 8; b++) {
                crc = (crc & 1) != 0 ? (crc >>> 1) ^ 0x82F63B78 : crc >>> 1;
            }
        }
        return crc;
    }

    @Test
    void standardCheckValue() {
        // CRC-32C("123456789") = 0xE3069283 with init ~0 and a final inversion; raw = its complement
        assertEquals(~0xE3069283, Checksums.crc32c(~0, CHECK, 0, CHECK.length));
        assertEquals(0xE3069283, ~Checksums.crc32c(0xFFFFFFFF, ByteBuffer.wrap(CHECK), 0, CHECK.length));
        assertEquals(~0xE3069283, refCrc32c(~0, CHECK, 0, CHECK.length), "the reference agrees");
    }

    @Test
    void iscsiTestVectors() {
        // RFC 3720 B.4 (final values, inverted)
        byte[] zeros = new byte[32];
        byte[] ones = new byte[32];
        Arrays.fill(ones, (byte) 0xFF);
        byte[] inc = new byte[32];
        byte[] dec = new byte[32];
        for (int i = 0; i < 32; i++) {
            inc[i] = (byte) i;
            dec[i] = (byte) (31 - i);
        }
        assertEquals(0x8A9136AA, ~Checksums.crc32c(~0, zeros, 0, 32));
        assertEquals(0x62A8AB43, ~Checksums.crc32c(~0, ones, 0, 32));
        assertEquals(0x46DD794E, ~Checksums.crc32c(~0, inc, 0, 32));
        assertEquals(0x113FDB5C, ~Checksums.crc32c(~0, dec, 0, 32));
    }

    @Test
    void emptyInputReturnsTheSeed() {
        Random rnd = new Random(1);
        for (int i = 0; i < 1000; i++) {
            int seed = i < 3 ? new int[] {0, -1, 0x80000000}[i] : rnd.nextInt();
            assertEquals(seed, Checksums.crc32c(seed, new byte[0], 0, 0));
            assertEquals(seed, Checksums.crc32c(seed, ByteBuffer.allocate(8), 3, 0));
        }
    }

    @Test
    void chainingEqualsOneCall() {
        Random rnd = new Random(2);
        for (int i = 0; i < 2000; i++) {
            int seed = rnd.nextInt();
            byte[] a = new byte[rnd.nextInt(70)];
            byte[] b = new byte[rnd.nextInt(70)];
            rnd.nextBytes(a);
            rnd.nextBytes(b);
            byte[] ab = new byte[a.length + b.length];
            System.arraycopy(a, 0, ab, 0, a.length);
            System.arraycopy(b, 0, ab, a.length, b.length);
            int chained = Checksums.crc32c(Checksums.crc32c(seed, a, 0, a.length), b, 0, b.length);
            assertEquals(Checksums.crc32c(seed, ab, 0, ab.length), chained, "seed " + seed);
        }
    }

    @Test
    void matchesBitwiseReferenceForArbitrarySeeds() {
        Random rnd = new Random(3);
        for (int i = 0; i < 3000; i++) {
            int seed = rnd.nextInt();
            byte[] data = new byte[rnd.nextInt(300)];
            rnd.nextBytes(data);
            int off = data.length == 0 ? 0 : rnd.nextInt(data.length);
            int len = rnd.nextInt(data.length - off + 1);
            int want = refCrc32c(seed, data, off, len);
            assertEquals(want, Checksums.crc32c(seed, data, off, len));
            ByteBuffer heap = ByteBuffer.wrap(data);
            heap.position(data.length / 2);
            assertEquals(want, Checksums.crc32c(seed, heap, off, len));
            assertEquals(data.length / 2, heap.position(), "the buffer's position is left alone");
            ByteBuffer direct = ByteBuffer.allocateDirect(data.length).put(data).flip();
            assertEquals(want, Checksums.crc32c(seed, direct.asReadOnlyBuffer(), off, len));
        }
    }

    @Test
    void seedPrefixSteersTheRegister() {
        Random rnd = new Random(4);
        for (int i = 0; i < 1000; i++) {
            int seed = rnd.nextInt();
            int p = Checksums.seedPrefix(seed);
            byte[] le = {(byte) p, (byte) (p >>> 8), (byte) (p >>> 16), (byte) (p >>> 24)};
            assertEquals(seed, refCrc32c(~0, le, 0, 4));
        }
    }

    @Test
    void littleEndianWordHelpers() {
        Random rnd = new Random(5);
        for (int i = 0; i < 1000; i++) {
            int seed = rnd.nextInt();
            int v = rnd.nextInt();
            long w = rnd.nextLong();
            byte[] b4 = ByteBuffer.allocate(4).order(java.nio.ByteOrder.LITTLE_ENDIAN).putInt(v).array();
            byte[] b8 = ByteBuffer.allocate(8).order(java.nio.ByteOrder.LITTLE_ENDIAN).putLong(w).array();
            assertEquals(refCrc32c(seed, b4, 0, 4), Checksums.crc32cLe32(seed, v));
            assertEquals(refCrc32c(seed, b8, 0, 8), Checksums.crc32cLe64(seed, w));
        }
    }

    @Test
    void crc16CheckValues() {
        // lib/crc16.c is CRC-16/ARC (reflected 0x8005): check 0xBB3D from 0, MODBUS 0x4B37 from 0xFFFF
        assertEquals(0xBB3D, Checksums.crc16(0, CHECK));
        assertEquals(0x4B37, Checksums.crc16(0xFFFF, CHECK));
        assertEquals(0x4B37, Checksums.crc16(~0, CHECK), "only the low 16 bits of the seed count");
        Random rnd = new Random(6);
        for (int i = 0; i < 500; i++) {
            byte[] a = new byte[rnd.nextInt(50)];
            byte[] b = new byte[rnd.nextInt(50)];
            rnd.nextBytes(a);
            rnd.nextBytes(b);
            byte[] ab = Arrays.copyOf(a, a.length + b.length);
            System.arraycopy(b, 0, ab, a.length, b.length);
            int seed = rnd.nextInt(0x10000);
            assertEquals(Checksums.crc16(seed, ab), Checksums.crc16(Checksums.crc16(seed, a), b));
            assertEquals(Checksums.crc16(seed, b), Checksums.crc16(seed, ByteBuffer.wrap(ab), a.length, b.length));
        }
    }
}
