package dev.ext4j.blockmap;

import dev.ext4j.testutil.ImageVariant;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.ext4j.Errno;
import dev.ext4j.format.Extent;
import dev.ext4j.testutil.Expect;
import dev.ext4j.testutil.Images;
import java.nio.file.Path;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * Indirect block maps (ext3 files) written through {@link IndirectMap} and checked with the tools:
 * e2fsck -fn silent, debugfs stat listing exactly the model's blocks and the indirect blocks the
 * map allocated, and debugfs dump returning the data.
 */
class IndirectWriteTest {
    @TempDir
    Path work;


    static Stream<ImageVariant> variants() {
        return Stream.of(
                new ImageVariant("ext3-1k", "32M", List.of("-t", "ext3", "-b", "1024")),
                new ImageVariant("ext3-4k", "64M", List.of("-t", "ext3", "-b", "4096")));
    }

    private ScratchFile make(ImageVariant v) {
        ScratchFile f = ScratchFile.make(work, v.name(), v.size(), v.args());
        assertEquals(Integer.parseInt(v.args().get(v.args().indexOf("-b") + 1)), f.blockSize, "block size of " + v);
        return f;
    }

    /** The mapping and the indirect blocks debugfs stat lists for the file. */
    record StatBlocks(TreeMap<Long, Long> map, Set<Long> indirect) {
    }

    private static final Pattern DATA = Pattern.compile("\\((\\d+)(?:-(\\d+))?\\):(\\d+)(?:-(\\d+))?");
    private static final Pattern META = Pattern.compile("\\(([DT]?IND)\\):(\\d+)");

    static StatBlocks stat(ScratchFile f) {
        String out = Images.stat(f.img, "<" + f.ino + ">");
        int at = out.indexOf("BLOCKS:");
        TreeMap<Long, Long> map = new TreeMap<>();
        Set<Long> ind = new HashSet<>();
        if (at >= 0) {
            String blocks = out.substring(at);
            Matcher m = DATA.matcher(blocks);
            while (m.find()) {
                long l0 = Long.parseLong(m.group(1));
                long l1 = m.group(2) == null ? l0 : Long.parseLong(m.group(2));
                long p0 = Long.parseLong(m.group(3));
                for (long i = 0; i <= l1 - l0; i++) {
                    map.put(l0 + i, p0 + i);
                }
            }
            Matcher mm = META.matcher(blocks);
            while (mm.find()) {
                ind.add(Long.parseLong(mm.group(2)));
            }
        }
        return new StatBlocks(map, ind);
    }

    private static void verify(ScratchFile f, IndirectMap m, boolean dump) throws Exception {
        TreeMap<Long, Long> expect = new TreeMap<>();
        f.model.forEach((l, v) -> expect.put(l, v[0]));
        for (Map.Entry<Long, Long> e : expect.entrySet()) {
            Mapping mp = m.map(e.getKey(), 1);
            assertEquals(e.getValue(), mp.physical(), "block " + e.getKey());
        }
        for (long l : new long[] {0, 11, 12, 13, 300, 70_000, 1_000_000}) {
            if (!expect.containsKey(l) && l < IndirectMap.maxBlocks(f.blockSize)) {
                assertTrue(m.map(l, 1).isHole(), "hole at " + l);
            }
        }
        assertEquals(f.meta.size(), m.metaBlocksDelta(), "metaBlocksDelta counts the indirect blocks the file owns");
        long size = f.coveringSize();
        f.commit(false, size);
        f.assertFsckClean(false);
        StatBlocks s = stat(f);
        assertEquals(expect, s.map(), "debugfs stat lists the model's blocks");
        assertEquals(f.meta, s.indirect(), "debugfs stat lists the indirect blocks the map allocated");
        if (dump) {
            assertArrayEquals(f.expectedContents(size), f.dump(), "file contents");
        }
    }

    private static void put(ScratchFile f, IndirectMap m, long lblk, int count) throws Exception {
        long p = f.allocData(count, 0);
        f.fill(lblk, p, count);
        m.set(lblk, p, count);
        f.modelPut(new Extent(lblk, p, count, false));
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("variants")
    void mapsEveryLevelThenTruncatesAndPunches(ImageVariant v) throws Exception {
        try (ScratchFile f = make(v)) {
            IndirectMap m = f.indirect();
            long p = f.blockSize / 4;
            long ind = 12;
            long dind = ind + p;
            long tind = dind + p * p;
            put(f, m, 0, 12);
            put(f, m, ind, 5);
            put(f, m, ind + p - 3, 10); // from the single into the double indirect block
            put(f, m, dind + 5 * p + 3, 4);
            put(f, m, tind - 2, 4); // from the double into the triple indirect block
            put(f, m, tind + 7, 3);
            put(f, m, tind + 2 * p * p + 5 * p + 1, 2);
            if (f.blockSize == 1024) {
                put(f, m, tind + p * p * p - 1, 1); // the last block the map can address
            }
            verify(f, m, false);
            // IND; DIND with three second-level blocks; TIND with two second- and two third-level
            // blocks, and one more of each for the last addressable block
            int expected = 1 + (1 + 3) + (1 + 2 + 2);
            assertEquals(f.blockSize == 1024 ? expected + 2 : expected, f.meta.size());

            // truncate inside the run in the double indirect range: the triple indirect tree goes
            long cut = dind + 5 * p + 4;
            long freed = m.removeRange(cut, Long.MAX_VALUE);
            assertEquals(f.model.tailMap(cut).size(), freed);
            f.modelRemove(cut, Long.MAX_VALUE);
            verify(f, m, false);
            assertEquals(0, f.iBlock.getInt(IndirectMap.TIND * 4), "triple indirect block freed");

            // punch across direct and single indirect blocks
            m.removeRange(5, ind + 3);
            f.modelRemove(5, ind + 3);
            verify(f, m, true);

            // punch from the single into the double indirect range
            m.removeRange(ind + p - 3, dind + 2);
            f.modelRemove(ind + p - 3, dind + 2);
            verify(f, m, true);

            // empty the single indirect block: it goes
            m.removeRange(ind, dind);
            f.modelRemove(ind, dind);
            assertEquals(0, f.iBlock.getInt(IndirectMap.IND * 4), "single indirect block freed");
            verify(f, m, true);

            // empty a second-level block of the double indirect tree: it goes, the top stays
            int before = f.meta.size();
            m.removeRange(dind + 5 * p, dind + 6 * p);
            f.modelRemove(dind + 5 * p, dind + 6 * p);
            assertEquals(before - 1, f.meta.size());
            verify(f, m, true);

            m.removeRange(0, Long.MAX_VALUE);
            f.modelRemove(0, Long.MAX_VALUE);
            for (int i = 0; i < 15; i++) {
                assertEquals(0, f.iBlock.getInt(i * 4), "i_block[" + i + "]");
            }
            assertTrue(f.meta.isEmpty() && f.data.isEmpty(), "every block given back");
            assertEquals(0, m.metaBlocksDelta());
            verify(f, m, true);
        }
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("variants")
    void contiguousRunsReadBackAndFreeInRuns(ImageVariant v) throws Exception {
        try (ScratchFile f = make(v)) {
            IndirectMap m = f.indirect();
            long p = f.blockSize / 4;
            put(f, m, 0, 40); // direct, indirect and beyond, one contiguous run on disk
            put(f, m, 12 + p + 3, 20);
            Mapping run = m.map(0, 1000);
            assertEquals(40, run.length(), "one run across the direct/indirect boundary");
            verify(f, m, true);
            f.freeCalls.clear();
            assertEquals(60, m.removeRange(0, Long.MAX_VALUE));
            // data is freed in contiguous runs (ext4_free_data()), indirect blocks one by one
            long dataCalls = f.freeCalls.stream().filter(c -> c[1] > 1).count();
            assertEquals(2, dataCalls, "two data runs");
            f.modelRemove(0, Long.MAX_VALUE);
            verify(f, m, true);
        }
    }

    @Test
    void refusesRemapsAndLeavesTheMapAloneOnNoSpace() throws Exception {
        try (ScratchFile f = ScratchFile.make(work, "ind-errors", "32M", List.of("-t", "ext3", "-b", "1024"))) {
            IndirectMap m = f.indirect();
            long p = 256;
            long dind = 12 + p;
            long tind = dind + p * p;
            assertEquals(0, m.goal(0), "nothing mapped: no preference");
            put(f, m, 0, 3);
            long first = f.model.get(0L)[0];
            assertEquals(first + 2, m.goal(5), "the nearest pointer before the slot");
            m.set(1, first + 1); // the same mapping again is fine
            Expect.errno(Errno.EEXIST, () -> m.set(1, first + 100));
            Expect.errno(Errno.EEXIST, () -> m.set(2, first + 50, 3)); // block 2 is mapped elsewhere
            assertEquals(first + 2, m.map(2, 1).physical());
            assertTrue(m.map(3, 1).isHole());
            put(f, m, 12, 4);
            long ind0 = f.model.get(12L)[0];
            Expect.errno(Errno.EEXIST, () -> m.set(13, ind0 + 50, 2)); // nothing in the indirect block changes
            assertEquals(ind0 + 1, m.map(13, 1).physical());
            assertTrue(m.map(16, 1).isHole());

            byte[] iblock = f.iBlock.array().clone();
            Set<Long> meta = new HashSet<>(f.meta);
            long data = f.allocData(1, 0);
            f.source.allowance = 1; // a double indirect branch needs two blocks
            Expect.errno(Errno.ENOSPC, () -> m.set(dind + 7, data));
            f.source.allowance = 2; // a triple indirect branch needs three
            Expect.errno(Errno.ENOSPC, () -> m.set(tind + 7, data));
            assertArrayEquals(iblock, f.iBlock.array(), "i_block unchanged");
            assertEquals(meta, f.meta, "blocks allocated before ENOSPC were given back");
            assertEquals(1, m.metaBlocksDelta());
            f.source.allowance = -1;
            f.fill(tind + 7, data, 1);
            m.set(tind + 7, data);
            f.modelPut(new Extent(tind + 7, data, 1, false));
            assertEquals(4, m.metaBlocksDelta());

            assertThrows(IllegalArgumentException.class, () -> m.set(20, 1L << 32));
            assertThrows(IllegalArgumentException.class, () -> m.set(IndirectMap.maxBlocks(1024), 5));
            assertThrows(IllegalArgumentException.class, () -> m.set(20, 5, 0));
            IndirectMap ro = new IndirectMap(f.cache, f.ino, f.iBlock);
            assertThrows(IllegalStateException.class, () -> ro.set(20, 5));
            assertThrows(IllegalStateException.class, () -> ro.removeRange(0, 5));
            verify(f, m, false);
        }
    }
}
