package dev.ext4j.blockmap;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.ext4j.Errno;
import dev.ext4j.format.Extent;
import dev.ext4j.testutil.Expect;
import dev.ext4j.testutil.ImageVariant;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * The same run-level changes through {@link WritableBlockMap}, on an extent tree (ext4) and on an
 * indirect map (ext3), checked against a model block by block and then by e2fsck -fn and debugfs
 * dump on the image.
 */
class WritableBlockMapTest {
    @TempDir
    Path work;

    static Stream<ImageVariant> variants() {
        return Stream.of(
                new ImageVariant("ext4-1k", "32M", List.of("-b", "1024")),
                new ImageVariant("ext4-4k", "64M", List.of("-b", "4096")),
                new ImageVariant("ext3-1k", "32M", List.of("-t", "ext3", "-b", "1024")),
                new ImageVariant("ext3-4k", "64M", List.of("-t", "ext3", "-b", "4096")));
    }

    private static boolean extents(ImageVariant v) {
        return !v.args().contains("ext3");
    }

    private static WritableBlockMap open(ScratchFile f, boolean extents) {
        return extents ? f.tree(0) : f.indirect();
    }

    /** Maps {@code count} new blocks at {@code lblk} as one run. */
    private static void insert(ScratchFile f, WritableBlockMap m, long lblk, int count, boolean unwritten) throws Exception {
        Extent e = f.newExtent(lblk, count, unwritten, 0);
        m.insert(lblk, e.physical(), count, unwritten);
        f.modelPut(e);
    }

    /** Every block of the model reads back, and the holes around and between runs are holes. */
    private static void checkAgainstModel(ScratchFile f, WritableBlockMap m) throws Exception {
        for (Map.Entry<Long, long[]> en : f.model.entrySet()) {
            Mapping mp = m.map(en.getKey(), 1);
            assertEquals(en.getValue()[0], mp.physical(), "block " + en.getKey());
            assertEquals(en.getValue()[1] != 0, mp.unwritten(), "unwritten flag of block " + en.getKey());
        }
        // nextRun visits exactly the model's blocks, run by run
        long seen = 0;
        long from = 0;
        for (Mapping r = m.nextRun(from); r != null; r = m.nextRun(from)) {
            for (long l = r.logical(); l < r.logical() + r.length(); l++) {
                long[] v = f.model.get(l);
                assertTrue(v != null && v[0] == r.physical() + (l - r.logical()), "run " + r + " at block " + l);
                seen++;
            }
            from = r.logical() + r.length();
        }
        assertEquals(f.model.size(), seen, "nextRun covers every mapped block once");
    }

    private static void commitAndCheck(ScratchFile f, WritableBlockMap m, boolean extents) {
        assertEquals(f.meta.size() - f.metaBase, m.metaBlocksDelta(), "metaBlocksDelta counts the map's own blocks");
        long size = f.coveringSize();
        f.commit(extents, size);
        f.assertFsckClean(false);
        assertArrayEquals(f.expectedContents(size), f.dump(), "file contents");
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("variants")
    void runsAcrossBoundariesThenRemoveRanges(ImageVariant v) throws Exception {
        boolean ext = extents(v);
        try (ScratchFile f = ScratchFile.make(work, v.name(), v.size(), v.args())) {
            WritableBlockMap m = open(f, ext);
            long p = f.blockSize / 4;
            assertEquals(ext, m.supportsUnwritten());
            assertEquals(ext ? ExtentTree.MAX_BLOCKS : IndirectMap.maxBlocks(f.blockSize), m.maxBlocks());
            assertNull(m.nextRun(0), "an empty map has no run");

            insert(f, m, 3, 20, false);          // direct into single indirect
            insert(f, m, 12 + p - 2, 6, false);  // single into double indirect
            insert(f, m, 12 + p + 7 * p, 3, false);
            checkAgainstModel(f, m);
            Mapping first = m.map(3, 100);
            assertEquals(20, first.length(), "one run of 20 blocks at 3: " + first);
            assertTrue(m.map(0, 3).isHole() && m.map(0, 3).length() == 3, "a hole of 3 before it");

            // a run whose first block is mapped is refused and changes nothing
            long spare = f.allocData(2, 0);
            Expect.errno(Errno.EEXIST, () -> m.insert(22, spare, 2, false));
            for (long b = spare; b < spare + 2; b++) {
                f.data.remove(b);
                f.pool.add(b);
            }
            assertTrue(m.map(23, 1).isHole(), "block 23 stays a hole");
            checkAgainstModel(f, m);

            // punch the middle of the first run, then truncate inside the double indirect range
            assertEquals(5, m.removeRange(8, 13));
            f.modelRemove(8, 13);
            checkAgainstModel(f, m);
            long cut = 12 + p + 7 * p + 1;
            assertEquals(2, m.removeRange(cut, Long.MAX_VALUE));
            f.modelRemove(cut, Long.MAX_VALUE);
            checkAgainstModel(f, m);
            commitAndCheck(f, m, ext);
        }
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("variants")
    void unwrittenRunsOnlyInExtentTrees(ImageVariant v) throws Exception {
        boolean ext = extents(v);
        try (ScratchFile f = ScratchFile.make(work, v.name(), v.size(), v.args())) {
            WritableBlockMap m = open(f, ext);
            insert(f, m, 0, 4, false);
            if (ext) {
                insert(f, m, 4, 8, true);
                assertTrue(m.map(5, 1).unwritten());
                m.markWritten(6, 2);
                f.modelMarkWritten(6, 8);
                assertFalse(m.map(6, 1).unwritten(), "block 6 written");
                assertTrue(m.map(8, 1).unwritten(), "block 8 still unwritten");
            } else {
                long spare = f.allocData(8, 0);
                Expect.errno(Errno.EOPNOTSUPP, () -> m.insert(4, spare, 8, true));
                assertTrue(m.map(4, 1).isHole(), "nothing mapped");
                for (long b = spare; b < spare + 8; b++) {
                    f.data.remove(b);
                    f.pool.add(b);
                }
                m.markWritten(0, 4); // nothing to do, and no error
            }
            checkAgainstModel(f, m);
            commitAndCheck(f, m, ext);
        }
    }
}
