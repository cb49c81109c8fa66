package dev.ext4j.alloc;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.BitSet;
import java.util.Random;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/** The word-at-a-time bitmap scans against java.util.BitSet, over word and byte boundaries. */
class BitmapsTest {

    @ParameterizedTest
    @ValueSource(ints = {1024, 4096})
    void scansAndRangesAgreeWithBitSet(int blockSize) {
        int bits = blockSize * 8;
        Random rnd = new Random(blockSize);
        ByteBuffer bm = ByteBuffer.allocate(blockSize).order(ByteOrder.LITTLE_ENDIAN);
        BitSet ref = new BitSet(bits);
        for (int round = 0; round < 2000; round++) {
            int a = rnd.nextInt(bits);
            int b = Math.min(bits, a + (rnd.nextBoolean() ? rnd.nextInt(8) : rnd.nextInt(700)));
            if (rnd.nextBoolean()) {
                Bitmaps.set(bm, a, b);
                ref.set(a, b);
            } else {
                Bitmaps.clear(bm, a, b);
                ref.clear(a, b);
            }
            int from = rnd.nextInt(bits);
            int to = from + rnd.nextInt(bits - from + 1);
            int clear = ref.nextClearBit(from);
            assertEquals(clear < to ? clear : -1, Bitmaps.nextClear(bm, from, to), "nextClear " + from + ".." + to);
            int set = ref.nextSetBit(from);
            assertEquals(set >= 0 && set < to ? set : to, Bitmaps.nextSet(bm, from, to), "nextSet " + from + ".." + to);
            assertEquals(ref.get(from), Bitmaps.isSet(bm, from));
            assertEquals(to - ref.get(0, to).cardinality(), Bitmaps.countClear(bm, to), "countClear " + to);
        }
        for (int i = 0; i < bits; i++) {
            assertEquals(ref.get(i), (bm.get(i >>> 3) & (1 << (i & 7))) != 0, "bit " + i + " in ext4's byte order");
        }
    }
}
