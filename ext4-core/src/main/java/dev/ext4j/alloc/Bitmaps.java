package dev.ext4j.alloc;

import java.nio.ByteBuffer;

/**
 * Bit operations on an ext4 bitmap block (the kernel's ext4_set_bit(), ext4_find_next_zero_bit(),
 * mb_find_next_bit()). Bit {@code i} is bit {@code i % 8} of byte {@code i / 8}, so a little-endian
 * long at byte {@code 8k} holds bits {@code 64k..64k+63} in order; the scans read whole words.
 *
 * <p>Buffers are little-endian with the bitmap at index 0; their capacity is a whole block (at
 * least 1024 bytes), so every word touched by a bit below {@code 8 * blockSize} is inside.
 */
public final class Bitmaps {

    private Bitmaps() {
    }

    static boolean isSet(ByteBuffer bm, int bit) {
        return (bm.get(bit >>> 3) & (1 << (bit & 7))) != 0;
    }

    /** The first clear bit in {@code [from, to)}, or -1. */
    static int nextClear(ByteBuffer bm, int from, int to) {
        int i = from;
        while (i < to) {
            int w = i >>> 6;
            long free = ~bm.getLong(w << 3) & (-1L << (i & 63));
            if (free != 0) {
                int bit = (w << 6) + Long.numberOfTrailingZeros(free);
                return bit < to ? bit : -1;
            }
            i = (w + 1) << 6;
        }
        return -1;
    }

    /** The first set bit in {@code [from, to)}, or {@code to} when all are clear. */
    static int nextSet(ByteBuffer bm, int from, int to) {
        int i = from;
        while (i < to) {
            int w = i >>> 6;
            long used = bm.getLong(w << 3) & (-1L << (i & 63));
            if (used != 0) {
                return Math.min(to, (w << 6) + Long.numberOfTrailingZeros(used));
            }
            i = (w + 1) << 6;
        }
        return to;
    }

    /** Clear bits in {@code [0, to)}. */
    public static int countClear(ByteBuffer bm, int to) {
        int clear = 0;
        int full = to >>> 6;
        for (int w = 0; w < full; w++) {
            clear += Long.bitCount(~bm.getLong(w << 3));
        }
        for (int i = full << 6; i < to; i++) {
            if (!isSet(bm, i)) {
                clear++;
            }
        }
        return clear;
    }

    /** Sets bits {@code [from, to)}. */
    public static void set(ByteBuffer bm, int from, int to) {
        int i = from;
        for (; i < to && (i & 7) != 0; i++) {
            bm.put(i >>> 3, (byte) (bm.get(i >>> 3) | (1 << (i & 7))));
        }
        for (; i + 8 <= to; i += 8) {
            bm.put(i >>> 3, (byte) 0xFF);
        }
        for (; i < to; i++) {
            bm.put(i >>> 3, (byte) (bm.get(i >>> 3) | (1 << (i & 7))));
        }
    }

    /** Clears bits {@code [from, to)}. */
    static void clear(ByteBuffer bm, int from, int to) {
        int i = from;
        for (; i < to && (i & 7) != 0; i++) {
            bm.put(i >>> 3, (byte) (bm.get(i >>> 3) & ~(1 << (i & 7))));
        }
        for (; i + 8 <= to; i += 8) {
            bm.put(i >>> 3, (byte) 0);
        }
        for (; i < to; i++) {
            bm.put(i >>> 3, (byte) (bm.get(i >>> 3) & ~(1 << (i & 7))));
        }
    }
}
