package dev.ext4j.blockmap;

import dev.ext4j.testutil.ImageVariant;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.ext4j.Errno;
import dev.ext4j.format.Extent;
import dev.ext4j.format.ExtentNode;
import dev.ext4j.format.Inode;
import dev.ext4j.io.BufferCache;
import dev.ext4j.testutil.Expect;
import dev.ext4j.testutil.Images;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.HashSet;
import java.util.List;
import java.util.Random;
import java.util.Set;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * Extent tree writes checked against the e2fsprogs tools: every change is committed into an image
 * made by mkfs.ext4, then e2fsck -fn must be silent, debugfs must read back exactly the extents
 * the tree holds, the block-level mapping must equal a model, and debugfs dump must return the
 * data written to the blocks (zeros for holes and unwritten extents).
 */
class ExtentWriteTest {
    @TempDir
    Path work;


    static Stream<ImageVariant> variants() {
        return Stream.of(
                new ImageVariant("4k-csum", "64M", List.of("-b", "4096")),
                new ImageVariant("1k-csum", "32M", List.of("-b", "1024")),
                new ImageVariant("4k-nocsum", "64M", List.of("-b", "4096", "-O", "^metadata_csum")),
                new ImageVariant("1k-nocsum-32bit", "32M", List.of("-b", "1024", "-O", "^metadata_csum,^64bit")),
                new ImageVariant("64k-csum", "256M", List.of("-b", "65536")));
    }

    static Stream<ImageVariant> smallBlockVariants() {
        return Stream.of(
                new ImageVariant("4k-csum", "64M", List.of("-b", "4096")),
                new ImageVariant("1k-csum", "32M", List.of("-b", "1024")),
                new ImageVariant("1k-nocsum", "32M", List.of("-b", "1024", "-O", "^metadata_csum")));
    }

    private ScratchFile make(ImageVariant v) {
        ScratchFile f = ScratchFile.make(work, v.name(), v.size(), v.args());
        assertEquals(Integer.parseInt(v.args().get(v.args().indexOf("-b") + 1)), f.blockSize, "block size of " + v);
        return f;
    }

    /** Tree against model, then the image against the tools. */
    private static void verify(ScratchFile f, ExtentTree t, boolean canonical, boolean allowOptimize, boolean dump) throws Exception {
        List<Extent> ext = t.extents();
        assertEquals(f.modelBlocks(), ScratchFile.blocksOf(ext), "tree maps what the model maps");
        if (canonical) {
            assertEquals(f.modelExtents(), ext, "tree holds the model's extents");
        }
        checkMap(f, t, ext);
        assertEquals(f.meta.size() - f.metaBase, t.metaBlocksDelta(), "metaBlocksDelta counts the tree blocks added");
        long size = f.coveringSize();
        f.commit(true, size);
        f.assertFsckClean(allowOptimize);
        assertEquals(ext, f.debugfsExtents(), "debugfs reads the same extents");
        if (dump) {
            assertArrayEquals(f.expectedContents(size), f.dump(), "file contents");
        }
    }

    /** map() walks the file in runs that agree with the model, holes included. */
    private static void checkMap(ScratchFile f, ExtentTree t, List<Extent> ext) throws Exception {
        Set<Long> starts = new HashSet<>();
        ext.forEach(e -> starts.add(e.logical()));
        long end = f.model.isEmpty() ? 10 : f.model.lastKey() + 10;
        long l = 0;
        while (l < end) {
            Mapping m = t.map(l, 1 << 30);
            assertTrue(m.length() >= 1);
            if (m.isHole()) {
                Long next = f.model.ceilingKey(l);
                long expect = next == null ? 1 << 30 : next - l;
                assertEquals(expect, m.length(), "hole at " + l);
            } else {
                for (long i = 0; i < m.length(); i++) {
                    long[] v = f.model.get(l + i);
                    assertTrue(v != null && v[0] == m.physical() + i && (v[1] != 0) == m.unwritten(), "block " + (l + i));
                }
                long after = l + m.length();
                assertTrue(!f.model.containsKey(after) || starts.contains(after), "run at " + l + " ends inside an extent");
            }
            l += m.length();
        }
    }

    private static int depthOf(ExtentTree t) throws Exception {
        return t.depth();
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("variants")
    void fragmentedFileGrowsDeepThenTruncatePunchAndEmpty(ImageVariant v) throws Exception {
        try (ScratchFile f = make(v)) {
            int bs = f.blockSize;
            ByteBuffer empty = ByteBuffer.allocate(60);
            ExtentTree.initEmpty(empty);
            assertArrayEquals(empty.array(), Images.readAt(f.img, f.inodeOffset + Inode.I_BLOCK, 60),
                    "initEmpty writes the root debugfs (libext2fs) writes for a new file");

            ExtentTree t = f.tree(0);
            int perBlock = ExtentNode.blockMax(bs);
            // enough extents for depth 2 with 1k and 4k blocks (root 4 x leaves), depth 1 with 64k
            int n = bs == 65536 ? 150 : 4 * perBlock + 100;
            long near = 0;
            for (int i = 0; i < n; i++) {
                Extent e = f.newExtent(3L * i, 1 + i % 2, i % 7 == 3, near);
                near = e.physical() + e.length();
                t.insert(e);
                f.modelPut(e);
            }
            assertEquals(bs == 65536 ? 1 : 2, depthOf(t));
            verify(f, t, true, false, true);
            List<ScratchFile.ExLine> lines = f.debugfsEx();
            assertEquals(depthOf(t), lines.get(0).maxLevel(), "debugfs sees the same depth");
            assertEquals(f.meta.size(), lines.stream().filter(l -> !l.leaf()).count(),
                    "one index entry per tree block the file owns");

            // truncate inside a two-block extent, three quarters in
            int k = (3 * n / 4) | 1;
            long cut = 3L * k + 1;
            long freed = t.removeRange(cut, Long.MAX_VALUE);
            assertEquals(f.model.tailMap(cut).size(), freed, "data blocks freed by truncate");
            f.modelRemove(cut, Long.MAX_VALUE);
            verify(f, t, true, false, true);

            // punch a hole spanning leaves, cutting an extent at both ends
            long from = 3L * (n / 5 | 1) + 1;
            long to = 3L * (n / 2 | 1) + 1;
            long inRange = f.model.subMap(from, to).size();
            assertEquals(inRange, t.removeRange(from, to));
            f.modelRemove(from, to);
            verify(f, t, true, true, true); // the leaves at the edges of the hole stay part-empty, as in the kernel

            // a hole in the middle of one extent
            int j = 7 | 1;
            Extent big = f.newExtent(3L * n + 100, 9, false, 0);
            t.insert(big);
            f.modelPut(big);
            assertEquals(3, t.removeRange(big.logical() + 3, big.logical() + 6));
            f.modelRemove(big.logical() + 3, big.logical() + 6);
            verify(f, t, true, true, true);
            assertEquals(0, t.removeRange(3L * j + 2, 3L * j + 3), "nothing mapped there");

            // everything: back to an empty depth-0 root, every tree block freed
            t.removeRange(0, Long.MAX_VALUE);
            f.modelRemove(0, Long.MAX_VALUE);
            assertEquals(0, depthOf(t));
            ExtentNode root = new ExtentNode(f.iBlock);
            assertEquals(0, root.entries());
            assertEquals(4, root.max());
            assertEquals(0, t.metaBlocksDelta());
            assertTrue(f.meta.isEmpty() && f.data.isEmpty(), "every block given back");
            verify(f, t, true, false, true);
        }
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("smallBlockVariants")
    void randomOrderInsertsMergeAndMatchTheModel(ImageVariant v) throws Exception {
        try (ScratchFile f = make(v)) {
            ExtentTree t = f.tree(0);
            Random rnd = new Random(42);
            // pieces of a few long runs, each run contiguous on disk, inserted in random order
            List<Extent> pieces = new ArrayList<>();
            long lblk = 0;
            int runs = f.blockSize == 1024 ? 260 : 500;
            for (int r = 0; r < runs; r++) {
                int len = 2 + rnd.nextInt(6);
                boolean unw = rnd.nextInt(5) == 0;
                Extent run = f.newExtent(lblk, len, unw, 0);
                int at = 0;
                while (at < len) {
                    int piece = Math.min(len - at, 1 + rnd.nextInt(3));
                    pieces.add(new Extent(lblk + at, run.physical() + at, piece, unw));
                    at += piece;
                }
                lblk += len + 1 + rnd.nextInt(3);
            }
            Collections.shuffle(pieces, rnd);
            for (Extent p : pieces) {
                t.insert(p);
                f.modelPut(p);
            }
            assertTrue(t.extents().size() < pieces.size(), "neighbours merged");
            // leaves split at the insertion point stay part-empty: e2fsck may say "could be narrower"
            verify(f, t, false, true, true);

            // random punches and re-inserts into the holes
            for (int round = 0; round < 6; round++) {
                long a = rnd.nextInt((int) lblk);
                long b = a + 1 + rnd.nextInt(200);
                t.removeRange(a, b);
                f.modelRemove(a, b);
                for (long l = a; l < b; l += 3) {
                    if (rnd.nextBoolean()) {
                        int len = (int) Math.min(2, b - l);
                        Extent e = f.newExtent(l, len, rnd.nextBoolean(), 0);
                        t.insert(e);
                        f.modelPut(e);
                    }
                }
                verify(f, t, false, true, round % 2 == 0);
            }
        }
    }

    @Test
    void mergesAsTheKernelDoes() throws Exception {
        try (ScratchFile f = ScratchFile.make(work, "merge", "64M", List.of("-b", "4096"))) {
            ExtentTree t = f.tree(0);
            long p = f.allocData(40, 0);
            java.util.function.Consumer<Extent> insert = e -> {
                f.fill(e.logical(), e.physical(), e.length());
                Expect.ok(() -> t.insert(e));
                f.modelPut(e);
            };
            insert.accept(new Extent(10, p + 10, 2, false));
            insert.accept(new Extent(12, p + 12, 3, false)); // appended
            assertEquals(List.of(new Extent(10, p + 10, 5, false)), t.extents());
            insert.accept(new Extent(5, p + 5, 5, false)); // prepended
            assertEquals(List.of(new Extent(5, p + 5, 10, false)), t.extents());
            insert.accept(new Extent(15, p + 15, 2, true)); // unwritten next to written: apart
            insert.accept(new Extent(17, p + 17, 3, true)); // unwritten appended to unwritten
            insert.accept(new Extent(20, p + 21, 1, false)); // not contiguous on disk
            assertEquals(List.of(new Extent(5, p + 5, 10, false), new Extent(15, p + 15, 5, true),
                    new Extent(20, p + 21, 1, false)), t.extents());
            insert.accept(new Extent(30, p + 30, 2, false));
            insert.accept(new Extent(34, p + 34, 2, false));
            insert.accept(new Extent(32, p + 32, 2, false)); // fills the gap: both sides merge
            assertEquals(List.of(new Extent(5, p + 5, 10, false), new Extent(15, p + 15, 5, true),
                    new Extent(20, p + 21, 1, false), new Extent(30, p + 30, 6, false)), t.extents());
            assertEquals(0, t.depth());
            // the blocks of the run that stayed unmapped go back to the pool
            Set<Long> used = new HashSet<>();
            f.model.values().forEach(x -> used.add(x[0]));
            for (long b = p; b < p + 40; b++) {
                if (!used.contains(b)) {
                    f.data.remove(b);
                    f.pool.add(b);
                }
            }
            verify(f, t, true, false, true);
        }
    }

    @Test
    void mergedLengthStaysWithinTheLimits() throws Exception {
        try (ScratchFile f = ScratchFile.make(work, "limits", "2G", List.of("-b", "4096"))) {
            ExtentTree t = f.tree(0);
            long p = f.allocData(32769, 0);
            t.insert(new Extent(0, p, 32767, false));
            t.insert(new Extent(32767, p + 32767, 1, false)); // 32768 written: merged
            assertEquals(List.of(new Extent(0, p, 32768, false)), t.extents());
            t.insert(new Extent(32768, p + 32768, 1, false)); // 32769: a second extent
            assertEquals(2, t.extents().size());
            t.removeRange(0, Long.MAX_VALUE);

            long q = f.allocData(32768, 0);
            t.insert(new Extent(0, q, 32766, true));
            t.insert(new Extent(32766, q + 32766, 1, true)); // 32767 unwritten: merged
            assertEquals(List.of(new Extent(0, q, 32767, true)), t.extents());
            t.insert(new Extent(32767, q + 32767, 1, true)); // 32768 unwritten is not encodable
            assertEquals(List.of(new Extent(0, q, 32767, true), new Extent(32767, q + 32767, 1, true)), t.extents());
            for (int i = 0; i < 32768; i++) {
                f.model.put((long) i, new long[] {q + i, 1});
            }
            assertEquals(f.modelBlocks(), ScratchFile.blocksOf(t.extents()));
            f.commit(true, f.coveringSize());
            f.assertFsckClean(false);
            assertEquals(t.extents(), f.debugfsExtents());
            // the 32769 blocks freed above went back to the pool, the file owns the second run only
            assertEquals(32768, f.data.size());
        }
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("smallBlockVariants")
    void markWrittenSplitsAndMergesBack(ImageVariant v) throws Exception {
        try (ScratchFile f = make(v)) {
            ExtentTree t = f.tree(0);
            Extent u = f.newExtent(0, 10, true, 0);
            t.insert(u);
            f.modelPut(u);
            long p = u.physical();
            t.markWritten(3, 4);
            f.modelMarkWritten(3, 7);
            assertEquals(List.of(new Extent(0, p, 3, true), new Extent(3, p + 3, 4, false), new Extent(7, p + 7, 3, true)), t.extents());
            verify(f, t, true, false, true);
            t.markWritten(0, 3);
            f.modelMarkWritten(0, 3);
            assertEquals(List.of(new Extent(0, p, 7, false), new Extent(7, p + 7, 3, true)), t.extents());
            t.markWritten(5, 100); // past the end, over written blocks: only 7..9 change
            f.modelMarkWritten(5, 105);
            assertEquals(List.of(new Extent(0, p, 10, false)), t.extents());
            verify(f, t, true, false, true);

            // many unwritten extents with holes between them: converting half of each splits leaves
            int n = f.blockSize == 1024 ? 300 : 1300;
            for (int i = 0; i < n; i++) {
                Extent e = f.newExtent(100 + 3L * i, 2, true, 0);
                t.insert(e);
                f.modelPut(e);
            }
            int before = t.depth();
            for (int i = 0; i < n; i += 1) {
                t.markWritten(100 + 3L * i + (i % 2), 1);
                f.modelMarkWritten(100 + 3L * i + (i % 2), 100 + 3L * i + (i % 2) + 1);
            }
            assertEquals(2 * n + 1, t.extents().size(), "every unwritten extent split in two");
            assertTrue(t.depth() > before, "splits grew the tree (" + before + " -> " + t.depth() + ")");
            verify(f, t, true, true, true);
            // a range over holes and both halves converts the rest; pieces in one leaf merge again
            t.markWritten(100, 3L * n);
            f.modelMarkWritten(100, 100 + 3L * n);
            verify(f, t, false, true, true);
            assertTrue(t.extents().size() < 2 * n, "halves merged back");
        }
    }

    static Stream<ImageVariant> tinyVariants() {
        return Stream.of(
                new ImageVariant("4k-csum", "64M", List.of("-b", "4096")),
                new ImageVariant("1k-csum", "32M", List.of("-b", "1024")));
    }

    /**
     * Nodes treated as full at three (1k) or four (4k) entries: splits at every level, depth growth, merges up and
     * removal of whole subtrees happen within a few hundred extents. The image stays valid (e2fsck
     * may only remark that the underfull tree could be narrower or shorter).
     */
    @ParameterizedTest(name = "{0}")
    @MethodSource("tinyVariants")
    void tinyNodesSplitGrowAndShrink(ImageVariant v) throws Exception {
        try (ScratchFile f = make(v)) {
            // e2fsck refuses trees deeper than 4 levels with 4k blocks (5 with 1k blocks)
            int limit = f.blockSize == 1024 ? 3 : 4;
            ExtentTree t = f.tree(limit);
            Random rnd = new Random(7);
            List<Long> starts = new ArrayList<>();
            for (int i = 0; i < 160; i++) {
                starts.add(4L * i);
            }
            Collections.shuffle(starts, rnd);
            int maxDepth = 0;
            for (long s : starts) {
                Extent e = f.newExtent(s, 1 + rnd.nextInt(3), rnd.nextInt(4) == 0, 0);
                t.insert(e);
                f.modelPut(e);
                maxDepth = Math.max(maxDepth, t.depth());
            }
            // e2fsck's own limit on depth is 4 for 4k blocks and 5 for 1k blocks
            assertTrue(maxDepth >= 3 && maxDepth <= (f.blockSize == 1024 ? 5 : 4), "depth " + maxDepth);
            verify(f, t, true, true, true);

            for (int round = 0; round < 8; round++) {
                long a = rnd.nextInt(640);
                long b = a + 1 + rnd.nextInt(120);
                t.removeRange(a, b);
                f.modelRemove(a, b);
                long c = rnd.nextInt(640);
                long len = 1 + rnd.nextInt(60);
                t.markWritten(c, len);
                f.modelMarkWritten(c, c + len);
                verify(f, t, false, true, round % 3 == 0);
            }
            t.removeRange(0, Long.MAX_VALUE);
            f.modelRemove(0, Long.MAX_VALUE);
            assertEquals(0, t.depth());
            assertEquals(0, t.metaBlocksDelta());
            verify(f, t, true, false, true);
        }
    }

    /**
     * shift() (collapse and insert range) on trees of tiny nodes, three to four levels deep: left
     * shifts into a punched gap and right shifts from inside extents, leaves moved one at a time
     * with their index keys; the mapping against a model, the image against e2fsck and debugfs.
     */
    @ParameterizedTest(name = "{0}")
    @MethodSource("tinyVariants")
    void tinyNodesShiftLeftAndRight(ImageVariant v) throws Exception {
        try (ScratchFile f = make(v)) {
            ExtentTree t = f.tree(f.blockSize == 1024 ? 3 : 4);
            Random rnd = new Random(17);
            for (int i = 0; i < 150; i++) {
                Extent e = f.newExtent(4L * i, 1 + rnd.nextInt(3), rnd.nextInt(4) == 0, 0);
                t.insert(e);
                f.modelPut(e);
            }
            assertTrue(t.depth() >= 3, "depth " + t.depth());
            int[] steps = {0};
            ExtentShift.StepCredits count = n -> steps[0]++;
            for (int round = 0; round < 12; round++) {
                long last = f.model.lastKey();
                if (round % 2 == 0) {
                    long a = rnd.nextInt((int) last);
                    long b = a + 1 + rnd.nextInt(40);
                    t.removeRange(a, b);
                    f.modelRemove(a, b);
                    if (a == 0 || f.model.containsKey(a - 1)) {
                        Expect.errno(Errno.EINVAL, () -> t.shift(b, a - b - 1, count)); // one block too far: below 0 or over a mapped one
                    }
                    t.shift(b, a - b, count);
                    shiftModel(f, b, a - b);
                } else {
                    long c = rnd.nextInt((int) last);
                    long d = 1 + rnd.nextInt(30);
                    t.shift(c, d, count);
                    shiftModel(f, c, d);
                }
                assertEquals(f.modelBlocks(), ScratchFile.blocksOf(t.extents()), "round " + round);
                verify(f, t, false, true, false);
            }
            assertTrue(steps[0] > 12, "leaves moved one at a time: " + steps[0] + " steps");
            long end = f.model.lastKey() + 1;
            Expect.errno(Errno.EINVAL, () -> t.shift(0, ExtentTree.MAX_BLOCKS - end + 1, count));
            assertEquals(f.modelBlocks(), ScratchFile.blocksOf(t.extents()), "a refused shift changes nothing");
        }
    }

    /** Moves the model's blocks at or after {@code from} by {@code delta}. */
    private static void shiftModel(ScratchFile f, long from, long delta) {
        java.util.TreeMap<Long, long[]> moved = new java.util.TreeMap<>(f.model.headMap(from));
        f.model.tailMap(from).forEach((l, v) -> moved.put(l + delta, v));
        f.model.clear();
        f.model.putAll(moved);
    }

    @Test
    void tinyNodesMarkWrittenMatchesModelExactly() throws Exception {
        try (ScratchFile f = ScratchFile.make(work, "tinymw", "32M", List.of("-b", "1024"))) {
            ExtentTree t = f.tree(3);
            for (int i = 0; i < 90; i++) {
                Extent e = f.newExtent(5L * i, 4, true, 0);
                t.insert(e);
                f.modelPut(e);
            }
            Random rnd = new Random(3);
            for (int round = 0; round < 40; round++) {
                long a = rnd.nextInt(450);
                long len = 1 + rnd.nextInt(12);
                t.markWritten(a, len);
                f.modelMarkWritten(a, a + len);
                assertEquals(f.modelBlocks(), ScratchFile.blocksOf(t.extents()), "round " + round);
            }
            verify(f, t, false, true, true);
        }
    }

    @Test
    void overlapsAndBadExtentsAreRefused() throws Exception {
        try (ScratchFile f = ScratchFile.make(work, "refuse", "32M", List.of("-b", "1024"))) {
            ExtentTree t = f.tree(0);
            long p = f.allocData(200, 0);
            t.insert(new Extent(10, p, 5, false));
            t.insert(new Extent(20, p + 20, 5, false));
            for (Extent bad : List.of(new Extent(10, p + 100, 1, false), new Extent(12, p + 100, 1, false),
                    new Extent(8, p + 100, 3, false), new Extent(14, p + 100, 1, false), new Extent(15, p + 100, 6, false),
                    new Extent(0, p + 100, 100, false), new Extent(24, p + 100, 1, true))) {
                Expect.errno(Errno.EEXIST, () -> t.insert(bad));
            }
            t.insert(new Extent(15, p + 150, 5, false)); // exactly the gap
            assertEquals(3, t.extents().size());
            assertThrows(IllegalArgumentException.class, () -> t.insert(new Extent(100, p, 0, false)));
            assertThrows(IllegalArgumentException.class, () -> t.insert(new Extent(100, p, 32769, false)));
            assertThrows(IllegalArgumentException.class, () -> t.insert(new Extent(100, p, 32768, true)));
            assertThrows(IllegalArgumentException.class, () -> t.insert(new Extent(ExtentTree.MAX_BLOCKS - 1, p, 2, false)));
            assertThrows(IllegalArgumentException.class, () -> t.insert(new Extent(100, 0, 1, false)));
            t.insert(new Extent(ExtentTree.MAX_BLOCKS - 1, p + 199, 1, false)); // the last logical block

            // overlaps found across leaves of a deeper tree
            for (int i = 0; i < 400; i++) {
                t.insert(new Extent(1000 + 2L * i, p + 30 + (i % 100), 1, false));
            }
            assertEquals(2, t.depth());
            for (int i = 0; i < 400; i += 7) {
                long l = 1000 + 2L * i - 1;
                Expect.errno(Errno.EEXIST, () -> t.insert(new Extent(l, p, 2, false)));
            }
            ExtentTree ro = new ExtentTree(f.cache, f.ino, f.iBlock, f.inodeSeed, f.csum);
            assertThrows(IllegalStateException.class, () -> ro.insert(new Extent(5, p, 1, false)));
            assertEquals(new Mapping(10, p, 5, false), ro.map(10, 100));
        }
    }

    @Test
    void noSpaceLeavesTheTreeAsItWas() throws Exception {
        try (ScratchFile f = ScratchFile.make(work, "nospace", "32M", List.of("-b", "1024"))) {
            ExtentTree t = f.tree(0);
            for (int i = 0; i < 4; i++) {
                Extent e = f.newExtent(10L * i, 4, true, 0);
                t.insert(e);
                f.modelPut(e);
            }
            List<Extent> before = t.extents();
            byte[] root = f.iBlock.array().clone();
            f.source.allowance = 0;
            Extent fifth = f.newExtent(100, 1, false, 0);
            Expect.errno(Errno.ENOSPC, () -> t.insert(fifth));
            Expect.errno(Errno.ENOSPC, () -> t.markWritten(1, 1)); // needs two more entries
            Expect.errno(Errno.ENOSPC, () -> t.removeRange(21, 22)); // punch inside an extent: split
            assertEquals(before, t.extents());
            assertArrayEquals(root, f.iBlock.array(), "root unchanged");
            t.markWritten(0, 4); // whole extent: no split, no block needed
            f.modelMarkWritten(0, 4);
            t.removeRange(30, 40); // a whole extent: no split
            f.modelRemove(30, 40);
            f.source.allowance = -1;
            f.data.remove(fifth.physical());
            f.pool.add(fifth.physical());

            // tiny nodes: append until an insert needs two new blocks at once and only one is
            // allowed; the first one must be given back (a depth growth that succeeded may stay)
            ExtentTree tiny = f.tree(3);
            long lb = 1000;
            boolean rolledBack = false;
            for (int i = 0; i < 200 && !rolledBack; i++) {
                Extent e = f.newExtent(lb, 1, false, 0);
                lb += 2;
                Set<Long> metaBefore = new HashSet<>(f.meta);
                List<Extent> extentsBefore = tiny.extents();
                int depthBefore = tiny.depth();
                f.source.allowance = 1;
                try {
                    tiny.insert(e);
                } catch (dev.ext4j.Ext4Exception x) {
                    assertEquals(Errno.ENOSPC, x.errno());
                    assertEquals(extentsBefore, tiny.extents(), "mapping unchanged after ENOSPC");
                    if (tiny.depth() == depthBefore) {
                        assertEquals(metaBefore, f.meta, "blocks allocated before ENOSPC were given back");
                        rolledBack = true;
                    }
                    f.source.allowance = -1;
                    tiny.insert(e);
                }
                f.source.allowance = -1;
                f.modelPut(e);
            }
            assertTrue(rolledBack, "an insert needing two blocks was seen");
            assertEquals(f.meta.size(), t.metaBlocksDelta() + tiny.metaBlocksDelta());
            ExtentTree again = f.tree(0);
            List<Extent> ext = again.extents();
            assertEquals(f.modelBlocks(), ScratchFile.blocksOf(ext));
            f.commit(true, f.coveringSize());
            f.assertFsckClean(true);
            assertEquals(ext, f.debugfsExtents());
            assertArrayEquals(f.expectedContents(f.coveringSize()), f.dump());
        }
    }

    /** New tree blocks carry the eh_max libext2fs (and the kernel) give a block node. */
    @ParameterizedTest(name = "{0}")
    @MethodSource("variants")
    void newBlocksHaveTheCapacityLibext2fsUses(ImageVariant v) throws Exception {
        Path src = work.resolve("sparse-" + v.name());
        try (var out = Files.newByteChannel(src, java.nio.file.StandardOpenOption.CREATE, java.nio.file.StandardOpenOption.WRITE)) {
            int bs = v.args().contains("1024") ? 1024 : v.args().contains("65536") ? 65536 : 4096;
            for (int i = 0; i < 20; i++) {
                out.position((long) i * 2 * bs);
                out.write(ByteBuffer.wrap(new byte[] {1}));
            }
        }
        try (ScratchFile f = ScratchFile.make(work, v.name(), v.size(), v.args(), List.of("write " + src + " sparse"))) {
            // the index line names the leaf block that libext2fs made
            long leaf = f.debugfsEx("sparse").stream().filter(l -> !l.leaf()).findFirst().orElseThrow().pstart();
            ExtentNode libNode = new ExtentNode(ByteBuffer.wrap(Images.readAt(f.img, leaf * f.blockSize, f.blockSize)).order(ByteOrder.LITTLE_ENDIAN));
            assertEquals(ExtentNode.blockMax(f.blockSize), libNode.max());

            ExtentTree t = f.tree(0);
            for (int i = 0; i < 5; i++) {
                Extent e = f.newExtent(2L * i, 1, false, 0);
                t.insert(e);
                f.modelPut(e);
            }
            long ours = new ExtentNode(f.iBlock).indexLeaf(0);
            BufferCache c = f.cache;
            ExtentNode node = new ExtentNode(c.get(ours));
            assertEquals(libNode.max(), node.max());
            assertEquals(0, node.generation());
            if (f.csum) {
                assertEquals(node.computeChecksum(f.inodeSeed), node.storedChecksum());
            }
            verify(f, t, true, false, true);
            assertFalse(f.meta.isEmpty());
        }
    }

    @Test
    void goalFollowsTheNearestExtent() throws Exception {
        try (ScratchFile f = ScratchFile.make(work, "goal", "32M", List.of("-b", "1024"))) {
            ExtentTree t = f.tree(0);
            assertEquals(0, t.goal(5), "empty tree: no preference");
            Extent e = f.newExtent(100, 4, false, 0);
            t.insert(e);
            f.modelPut(e);
            assertEquals(e.physical() + 10, t.goal(110));
            assertEquals(e.physical() - 10, t.goal(90));
        }
    }

    /** A tree libext2fs built (debugfs write of a sparse file) is changed like one of ours. */
    @ParameterizedTest(name = "{0}")
    @MethodSource("smallBlockVariants")
    void changesATreeLibext2fsBuilt(ImageVariant v) throws Exception {
        int bs = v.args().contains("1024") ? 1024 : 4096;
        int chunks = bs == 1024 ? 400 : 1500;
        Path src = work.resolve("src-" + v.name());
        try (var out = Files.newByteChannel(src, java.nio.file.StandardOpenOption.CREATE, java.nio.file.StandardOpenOption.WRITE)) {
            for (int i = 0; i < chunks; i++) {
                out.position(2L * i * bs);
                out.write(ByteBuffer.wrap(ScratchFile.pattern(2L * i, bs)));
            }
        }
        try (ScratchFile f = ScratchFile.make(work, v.name(), v.size(), v.args(), List.of("write " + src + " f"))) {
            f.adoptExisting();
            ExtentTree t = f.tree(0);
            assertTrue(t.depth() >= 1, "libext2fs made a tree");
            assertEquals(chunks, f.model.size());
            Random rnd = new Random(11);
            for (int i = 0; i < chunks; i += 1 + rnd.nextInt(3)) {
                Extent e = f.newExtent(2L * i + 1, 1, rnd.nextBoolean(), 0);
                t.insert(e);
                f.modelPut(e);
            }
            verify(f, t, false, true, true);
            long a = 2L * chunks / 3;
            t.removeRange(a, a + 300);
            f.modelRemove(a, a + 300);
            t.markWritten(0, 2L * chunks);
            f.modelMarkWritten(0, 2L * chunks);
            verify(f, t, false, true, true);
            t.removeRange(3, Long.MAX_VALUE);
            f.modelRemove(3, Long.MAX_VALUE);
            assertEquals(0, t.depth(), "a short file goes back into the inode");
            assertEquals(0, f.meta.size());
            verify(f, t, false, false, true);
        }
    }
}
