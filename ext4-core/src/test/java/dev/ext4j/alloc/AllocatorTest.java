package dev.ext4j.alloc;

import dev.ext4j.testutil.ImageVariant;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.ext4j.Errno;
import dev.ext4j.Ext4Exception;
import dev.ext4j.format.GroupDescriptor;
import dev.ext4j.format.Superblock;
import dev.ext4j.io.BufferCache;
import dev.ext4j.io.FileBlockDevice;
import dev.ext4j.testutil.Expect;
import dev.ext4j.testutil.Images;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.BitSet;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.Set;
import java.util.TreeMap;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CyclicBarrier;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * The allocator on images made by mkfs.ext4. While blocks and inodes are allocated, debugfs must
 * see them in use (and the bitmap checksums must satisfy libext2fs); after everything allocated is
 * freed again, {@code e2fsck -fn} must find nothing to fix: bitmaps, free counts, descriptor and
 * bitmap checksums, the UNINIT flags and bg_itable_unused all consistent.
 */
class AllocatorTest {
    @TempDir
    Path work;


    static Stream<ImageVariant> variants() {
        return Stream.of(
                new ImageVariant("4k", "300M", List.of("-b", "4096")),
                new ImageVariant("1k", "64M", List.of("-b", "1024")),
                new ImageVariant("1k-short-groups", "64M", List.of("-b", "1024", "-g", "4096")),
                new ImageVariant("gdt_csum", "600M", List.of("-b", "4096", "-O", "^metadata_csum,uninit_bg")),
                new ImageVariant("ext3", "64M", List.of("-t", "ext3")),
                new ImageVariant("32bit", "300M", List.of("-b", "4096", "-O", "^64bit")),
                new ImageVariant("meta_bg", "256M", List.of("-b", "1024", "-O", "meta_bg,^resize_inode")),
                new ImageVariant("sparse_super2", "1G", List.of("-b", "4096", "-O", "sparse_super2")),
                new ImageVariant("big-4k", "1G", List.of("-b", "4096")),
                new ImageVariant("64k", "512M", List.of("-b", "65536")));
    }

    /** The image opened read-write with the pieces the allocator sits on. */
    static final class Image implements AutoCloseable {
        final Path path;
        final FileBlockDevice dev;
        final Superblock sb;
        final BufferCache cache;
        final GroupTable groups;
        final Allocator alloc;

        Image(Path path) throws IOException, Ext4Exception {
            this(path, 0);
        }

        /** @param maxDirty changed blocks the cache keeps before it flushes (0: writes through) */
        Image(Path path, long maxDirty) throws IOException, Ext4Exception {
            this.path = path;
            dev = FileBlockDevice.open(path, false);
            ByteBuffer raw = ByteBuffer.allocate(Superblock.SIZE);
            dev.read(Superblock.OFFSET_IN_IMAGE, raw);
            sb = new Superblock(raw.flip());
            sb.validate();
            // small, so that bitmap blocks are evicted and read again during the longer tests
            cache = new BufferCache(dev, sb.blockSize(), sb.blocksCount(), 64L * sb.blockSize(), maxDirty);
            groups = GroupTable.load(sb, cache, false, new ArrayList<>());
            alloc = new Allocator(sb, groups, cache);
        }

        long groupStart(long g) {
            return sb.firstDataBlock() + g * sb.blocksPerGroup();
        }

        long groupOfInode(long ino) {
            return (ino - 1) / sb.inodesPerGroup();
        }

        /** writeCounts, then the superblock with its checksum. */
        void writeSuper() throws Ext4Exception {
            alloc.writeCounts(sb);
            sb.updateChecksum();
            cache.writeRaw(Superblock.OFFSET_IN_IMAGE, sb.raw());
            cache.sync();
        }

        @Override
        public void close() throws IOException {
            dev.close();
        }
    }

    private Path mkfs(ImageVariant v) {
        return Images.mkfs(work.resolve(v.name() + ".img"), v.size(), v.args(), null);
    }

    private Path mkfs(String name, String size, String... args) {
        return Images.mkfs(work.resolve(name + ".img"), size, List.of(args), null);
    }

    /** Allocated runs, checked for overlaps as they are added. */
    static final class Runs {
        final TreeMap<Long, Allocator.Run> byStart = new TreeMap<>();
        long blocks;

        void add(Allocator.Run r) {
            Map.Entry<Long, Allocator.Run> before = byStart.floorEntry(r.start() + r.length() - 1);
            if (before != null && before.getKey() + before.getValue().length() > r.start()) {
                throw new AssertionError("run " + r + " overlaps " + before.getValue());
            }
            byStart.put(r.start(), r);
            blocks += r.length();
        }

        void remove(Allocator.Run r) {
            byStart.remove(r.start());
            blocks -= r.length();
        }

        List<Allocator.Run> list() {
            return new ArrayList<>(byStart.values());
        }
    }

    private static Allocator.Run allocate(Image im, Runs runs, long goal, int max) throws Ext4Exception {
        boolean goalFree = goal >= im.sb.firstDataBlock() && goal < im.sb.blocksCount() && !im.alloc.blockInUse(goal);
        Allocator.Run r = im.alloc.allocateBlocks(goal, max);
        assertTrue(r.length() >= 1 && r.length() <= max, () -> "run " + r + " for at most " + max);
        assertTrue(r.start() >= im.sb.firstDataBlock() && r.start() + r.length() <= im.sb.blocksCount(), () -> "run " + r + " outside");
        if (goalFree) {
            assertEquals(goal, r.start(), () -> "goal " + goal + " was free but the run is " + r);
        }
        // a run stays inside one group
        long g = (r.start() - im.sb.firstDataBlock()) / im.sb.blocksPerGroup();
        assertTrue(r.start() + r.length() <= im.groupStart(g + 1), () -> "run " + r + " crosses the end of group " + g);
        runs.add(r);
        return r;
    }

    /** debugfs sees every block of {@code runs} and every inode in use, and no file owns those blocks. */
    private static void assertInUseByDebugfs(Path img, List<Allocator.Run> runs, List<Long> inodes) {
        List<String> cmds = new ArrayList<>();
        long blocks = 0;
        StringBuilder icheck = new StringBuilder("icheck");
        for (Allocator.Run r : runs) {
            cmds.add("testb " + r.start() + " " + r.length());
            blocks += r.length();
            icheck.append(' ').append(r.start());
        }
        for (long ino : inodes) {
            cmds.add("testi <" + ino + ">");
        }
        cmds.add(icheck.toString());
        String out = Images.debugfsCmds(img, false, cmds);
        assertEquals(blocks, count(out, "marked in use") - inodes.size(), out);
        assertEquals(0, count(out, "not in use"), out);
        assertEquals(inodes.size(), count(out, "is marked in use"), out);
        assertEquals(runs.size(), count(out, "<block not found>"), out);
    }

    private static int count(String text, String what) {
        int n = 0;
        for (int i = text.indexOf(what); i >= 0; i = text.indexOf(what, i + 1)) {
            n++;
        }
        return n;
    }

    private static void assertClean(Path img) {
        Images.assertClean(img);
    }

    /** The allocator's view of every block of group {@code g} equals what libext2fs builds or reads. */
    private static void assertGroupBitmapMatchesDebugfs(Image im, long g) throws Ext4Exception {
        long start = im.groupStart(g);
        long len = Math.min(im.sb.blocksPerGroup(), im.sb.blocksCount() - start);
        String out = Images.debugfsCmds(im.path, false, List.of("testb " + start + " " + len));
        BitSet expected = new BitSet();
        for (String line : out.split("\n")) {
            if (line.endsWith("marked in use")) {
                expected.set((int) (Long.parseLong(line.split(" ")[1]) - start));
            }
        }
        BitSet actual = new BitSet();
        for (long b = start; b < start + len; b++) {
            if (im.alloc.blockInUse(b)) {
                actual.set((int) (b - start));
            }
        }
        assertEquals(expected, actual, "group " + g + " blocks in use (offsets in the group)");
    }

    // ------------------------------------------------------------------ the main round trip

    @ParameterizedTest(name = "{0}")
    @MethodSource("variants")
    void allocateCheckFreeAllIsClean(ImageVariant v) throws Exception {
        Path img = mkfs(v);
        Random rnd = new Random(v.name().hashCode());
        Runs runs = new Runs();
        List<Long> dirs = new ArrayList<>();
        List<Long> files = new ArrayList<>();
        try (Image im = new Image(img)) {
            long freeBlocks = im.alloc.freeBlocksCount();
            long freeInodes = im.alloc.freeInodesCount();
            assertEquals(im.sb.freeBlocksCount(), freeBlocks, "sum of descriptors vs superblock after mkfs");
            assertEquals(im.sb.freeInodesCount(), freeInodes);
            // the bitmap built for a BLOCK_UNINIT group is the one libext2fs builds
            for (long g = 0; g < im.groups.groupCount(); g++) {
                if ((im.groups.get(g).flags() & GroupDescriptor.FLAG_BLOCK_UNINIT) != 0 && im.groups.get(g).blockBitmap() != 0) {
                    assertGroupBitmapMatchesDebugfs(im, g);
                    break;
                }
            }
            long blocks = im.sb.blocksCount();
            int maxRun = (int) Math.max(1, Math.min(300, freeBlocks / 800));
            for (int round = 0; round < 2; round++) {
                for (int i = 0; i < 12; i++) {
                    long d = im.alloc.allocateInode(2, true);
                    assertTrue(d >= im.sb.firstIno(), () -> "directory inode " + d + " below s_first_ino");
                    dirs.add(d);
                    for (int j = 0; j < 8; j++) {
                        long f = im.alloc.allocateInode(d, false);
                        assertTrue(f >= im.sb.firstIno());
                        files.add(f);
                        if (j % 4 == 0) {
                            allocate(im, runs, im.alloc.goalForInode(f, true), 1 + rnd.nextInt(maxRun));
                        }
                    }
                }
                for (int i = 0; i < 150; i++) {
                    allocate(im, runs, rnd.nextInt(10) == 0 ? 0 : (long) (rnd.nextDouble() * blocks), 1 + rnd.nextInt(maxRun));
                }
                assertEquals(dirs.size() + files.size(), new HashSet<>(concat(dirs, files)).size(), "inode handed out twice");
                assertEquals(freeBlocks - runs.blocks, im.alloc.freeBlocksCount());
                assertEquals(freeInodes - dirs.size() - files.size(), im.alloc.freeInodesCount());
                // free about half
                for (Allocator.Run r : runs.list()) {
                    if (rnd.nextBoolean()) {
                        im.alloc.freeBlocks(r.start(), r.length());
                        runs.remove(r);
                    }
                }
                for (int i = files.size() - 1; i >= 0; i -= 2) {
                    im.alloc.freeInode(files.remove(i), false);
                }
                for (int i = dirs.size() - 1; i >= 0; i -= 3) {
                    im.alloc.freeInode(dirs.remove(i), true);
                }
                assertEquals(freeBlocks - runs.blocks, im.alloc.freeBlocksCount());
                assertEquals(freeInodes - dirs.size() - files.size(), im.alloc.freeInodesCount());
            }
            im.writeSuper();

            List<Allocator.Run> sample = runs.list().subList(0, Math.min(60, runs.byStart.size()));
            assertInUseByDebugfs(img, sample, concat(dirs, files));
            Images.Result partial = Images.fsckCheck(img);
            assertNotEquals(0, partial.exitCode(), "e2fsck should see the unreferenced allocations");
            assertTrue(partial.all().contains("bitmap differences"), partial.all());
            assertFalse(partial.all().toLowerCase().contains("checksum"), partial.all());

            for (Allocator.Run r : runs.list()) {
                im.alloc.freeBlocks(r.start(), r.length());
            }
            for (long f : files) {
                im.alloc.freeInode(f, false);
            }
            for (long d : dirs) {
                im.alloc.freeInode(d, true);
            }
            assertEquals(freeBlocks, im.alloc.freeBlocksCount());
            assertEquals(freeInodes, im.alloc.freeInodesCount());
            im.writeSuper();
        }
        assertClean(img);
    }

    private static List<Long> concat(List<Long> a, List<Long> b) {
        List<Long> all = new ArrayList<>(a);
        all.addAll(b);
        return all;
    }

    // ------------------------------------------------------------------ placement

    @Test
    void runStartsAtAFreeGoalAndExtendsInPlace() throws Exception {
        Path img = mkfs("goal", "300M", "-b", "4096");
        try (Image im = new Image(img)) {
            long goal = im.groupStart(1) + 5000;
            assertFalse(im.alloc.blockInUse(goal));
            Allocator.Run a = im.alloc.allocateBlocks(goal, 100);
            assertEquals(new Allocator.Run(goal, 100), a);
            Allocator.Run b = im.alloc.allocateBlocks(a.start() + a.length(), 50);
            assertEquals(new Allocator.Run(goal + 100, 50), b, "a file grows in place");
            // a goal in use: the run comes after it in the same group
            Allocator.Run c = im.alloc.allocateBlocks(goal, 10);
            assertEquals(new Allocator.Run(goal + 150, 10), c);
            // the run stops at the group's end
            long last = im.groupStart(2) - 3;
            Allocator.Run d = im.alloc.allocateBlocks(last, 10);
            assertEquals(new Allocator.Run(last, 3), d);
            // block-mapped files are limited to groups below 2^32, which here is all of them
            Allocator.Run e = im.alloc.allocateBlocks(goal + 1000, 5, true);
            assertEquals(new Allocator.Run(goal + 1000, 5), e);
            assertInUseByDebugfs(img, List.of(a, b, c, d, e), List.of());
            for (Allocator.Run r : List.of(a, b, c, d, e)) {
                im.alloc.freeBlocks(r.start(), r.length());
            }
            im.writeSuper();
        }
        assertClean(img);
    }

    @Test
    void prefersAFullRunToTheFirstHole() throws Exception {
        Path img = mkfs("holes", "64M", "-b", "1024");
        try (Image im = new Image(img)) {
            long base = im.groupStart(3) + 1000;
            Allocator.Run row = im.alloc.allocateBlocks(base, 40);
            assertEquals(base, row.start());
            // free every other block: holes of one block from base on
            for (long b = base; b < base + 40; b += 2) {
                im.alloc.freeBlocks(b, 1);
            }
            Allocator.Run r = im.alloc.allocateBlocks(base + 1, 16);
            assertEquals(16, r.length(), "a run of 16 was free after the holes");
            assertTrue(r.start() >= base + 40, () -> "run " + r + " should come after the holes");
            // a run of the full length that starts exactly at a free goal is not needed:
            // a short one at the goal is taken (the file grows in place)
            Allocator.Run hole = im.alloc.allocateBlocks(base + 2, 16);
            assertEquals(new Allocator.Run(base + 2, 1), hole);
            im.alloc.freeBlocks(hole.start(), 1);
            im.alloc.freeBlocks(r.start(), r.length());
            for (long b = base + 1; b < base + 40; b += 2) {
                im.alloc.freeBlocks(b, 1);
            }
            im.writeSuper();
        }
        assertClean(img);
    }

    @Test
    void directoriesInTheRootSpreadAndFilesStayNearTheirParent() throws Exception {
        Path img = mkfs("orlov", "64M", "-b", "1024");
        List<Long> dirs = new ArrayList<>();
        List<Long> files = new ArrayList<>();
        try (Image im = new Image(img)) {
            Set<Long> dirGroups = new HashSet<>();
            for (int i = 0; i < 8; i++) {
                long d = im.alloc.allocateInode(2, true);
                dirs.add(d);
                dirGroups.add(im.groupOfInode(d));
            }
            assertTrue(dirGroups.size() >= 4, () -> "top-level directories in groups " + dirGroups);
            for (long d : List.copyOf(dirs)) {
                long f = im.alloc.allocateInode(d, false);
                files.add(f);
                assertEquals(im.groupOfInode(d), im.groupOfInode(f), () -> "file " + f + " of directory " + d);
                long sub = im.alloc.allocateInode(d, true);
                dirs.add(sub);
                assertEquals(im.groupOfInode(d), im.groupOfInode(sub), () -> "subdirectory " + sub + " of " + d);
            }
            // the first file in group 0 of a fresh filesystem: right after lost+found (11)
            long first = im.alloc.allocateInode(11, false);
            assertEquals(12, first);
            files.add(first);
            // used_dirs_count follows
            long dirsInGroups = 0;
            for (long g = 0; g < im.groups.groupCount(); g++) {
                dirsInGroups += im.groups.get(g).usedDirsCount();
            }
            assertEquals(2 + dirs.size(), dirsInGroups, "root, lost+found and the new directories");
            for (long f : files) {
                im.alloc.freeInode(f, false);
            }
            for (long d : dirs) {
                im.alloc.freeInode(d, true);
            }
            im.writeSuper();
        }
        assertClean(img);
    }

    @Test
    void goalForInodeFollowsFlexGroups() throws Exception {
        Path img = mkfs("flex", "64M", "-b", "1024");
        try (Image im = new Image(img)) {
            long ipg = im.sb.inodesPerGroup();
            // 8 groups in one flex group of 16: directories go to group 0, regular files to group 1
            assertEquals(im.groupStart(0), im.alloc.goalForInode(5 * ipg + 3, false));
            assertEquals(im.groupStart(1), im.alloc.goalForInode(5 * ipg + 3, true));
        }
    }

    // ------------------------------------------------------------------ UNINIT groups

    @Test
    void firstUseOfUninitGroupsInitializesThem() throws Exception {
        Path img = mkfs("uninit", "64M", "-b", "1024");
        try (Image im = new Image(img)) {
            long ipg = im.sb.inodesPerGroup();
            GroupDescriptor g3 = im.groups.get(3);
            GroupDescriptor g4 = im.groups.get(4);
            int both = GroupDescriptor.FLAG_BLOCK_UNINIT | GroupDescriptor.FLAG_INODE_UNINIT;
            assertEquals(both, g3.flags() & both, "mkfs leaves group 3 uninitialized");
            assertEquals(both, g4.flags() & both);
            assertGroupBitmapMatchesDebugfs(im, 3);
            long free3 = g3.freeBlocksCount();

            // blocks: the goal is free in a BLOCK_UNINIT group
            long goal = im.groupStart(3) + 4000;
            Allocator.Run r = im.alloc.allocateBlocks(goal, 64);
            assertEquals(new Allocator.Run(goal, 64), r);
            assertEquals(0, g3.flags() & GroupDescriptor.FLAG_BLOCK_UNINIT);
            assertEquals(free3 - 64, g3.freeBlocksCount());

            // inodes: a parent in group 3 puts the file at the group's first inode
            long ino = im.alloc.allocateInode(3 * ipg + 1, false);
            assertEquals(3 * ipg + 1, ino);
            assertEquals(0, g3.flags() & GroupDescriptor.FLAG_INODE_UNINIT);
            assertEquals(ipg - 1, g3.itableUnused());
            assertEquals(ipg - 1, g3.freeInodesCount());

            // an inode in a group that is BLOCK_UNINIT too initializes its block bitmap as well
            long ino4 = im.alloc.allocateInode(4 * ipg + 1, true);
            assertEquals(4 * ipg + 1, ino4);
            assertEquals(0, g4.flags() & both);
            assertEquals(1, g4.usedDirsCount());

            String dump = Images.dumpe2fs(img);
            assertTrue(dump.contains("Group 3: (Blocks " + im.groupStart(3) + "-"), dump);
            String group3 = dump.substring(dump.indexOf("Group 3:"), dump.indexOf("Group 4:"));
            assertFalse(group3.contains("UNINIT"), group3);
            assertTrue(group3.contains(ipg - 1 + " unused inodes"), group3);
            assertInUseByDebugfs(img, List.of(r), List.of(ino, ino4));

            im.alloc.freeBlocks(r.start(), r.length());
            im.alloc.freeInode(ino, false);
            im.alloc.freeInode(ino4, true);
            assertEquals(free3, g3.freeBlocksCount());
            im.writeSuper();
        }
        assertClean(img);
    }

    // ------------------------------------------------------------------ ENOSPC

    @ParameterizedTest(name = "{0}")
    @MethodSource("smallImages")
    void fillingTheImageEndsInEnospcAndFreeingAllIsClean(List<String> args) throws Exception {
        Path img = Images.mkfs(work.resolve("full.img"), "20M", args, null);
        Runs runs = new Runs();
        List<Long> inodes = new ArrayList<>();
        try (Image im = new Image(img)) {
            long freeBlocks = im.alloc.freeBlocksCount();
            long freeInodes = im.alloc.freeInodesCount();
            Random rnd = new Random(7);
            while (true) {
                try {
                    allocate(im, runs, rnd.nextInt(4) == 0 ? 0 : (long) (rnd.nextDouble() * im.sb.blocksCount()), 1 + rnd.nextInt(700));
                } catch (Ext4Exception e) {
                    assertEquals(Errno.ENOSPC, e.errno(), e.toString());
                    assertTrue(e.getMessage().contains("no free block"), e.getMessage());
                    break;
                }
            }
            assertEquals(freeBlocks, runs.blocks, "every free block was handed out");
            assertEquals(0, im.alloc.freeBlocksCount());
            Expect.errno(Errno.ENOSPC, () -> im.alloc.allocateBlocks(0, 1));
            while (true) {
                try {
                    inodes.add(im.alloc.allocateInode(inodes.isEmpty() ? 2 : inodes.get(inodes.size() - 1), inodes.size() % 5 == 0));
                } catch (Ext4Exception e) {
                    assertEquals(Errno.ENOSPC, e.errno(), e.toString());
                    break;
                }
            }
            assertEquals(freeInodes, inodes.size());
            assertEquals(inodes.size(), new HashSet<>(inodes).size());
            assertEquals(0, im.alloc.freeInodesCount());
            im.writeSuper();
            for (Allocator.Run r : runs.list()) {
                im.alloc.freeBlocks(r.start(), r.length());
            }
            for (int i = 0; i < inodes.size(); i++) {
                im.alloc.freeInode(inodes.get(i), i % 5 == 0);
            }
            assertEquals(freeBlocks, im.alloc.freeBlocksCount());
            assertEquals(freeInodes, im.alloc.freeInodesCount());
            im.writeSuper();
        }
        assertClean(img);
    }

    static Stream<List<String>> smallImages() {
        return Stream.of(
                List.of("-b", "1024", "-N", "256"),
                List.of("-b", "1024", "-N", "256", "-O", "^metadata_csum,uninit_bg"),
                List.of("-b", "4096", "-N", "128"),
                List.of("-t", "ext3", "-N", "256"));
    }

    // ------------------------------------------------------------------ corruption

    /**
     * Without a journal a freed block is reusable the moment its bit is clear. The thread that
     * freed it must have dropped its cached copy by then: dropping it later would throw away the
     * new owner's contents (here, a directory block created by another thread), and the image
     * would keep the old block (found by bench/fsstress as a directory block holding a truncated
     * file's indirect pointers).
     */
    @Test
    void aFreedBlockIsDroppedFromTheCacheBeforeAnotherThreadCanReuseIt() throws Exception {
        Path img = mkfs("reuse", "64M", "-b", "1024");
        try (Image im = new Image(img, 1000)) {
            long x = im.alloc.allocateBlocks(im.groupStart(1) + 10, 1).start();
            im.cache.create(x, b -> b.putInt(0, 0x11111111)); // the old owner's indirect block
            List<Boolean> inUseWhenFreed = new ArrayList<>();
            im.alloc.setFreeDeferral((start, length) -> {
                // the bit is clear: another thread allocates the block and writes its new contents
                try {
                    inUseWhenFreed.add(im.alloc.blockInUse(start));
                    im.cache.create(start, b -> b.putInt(0, 0x22222222));
                } catch (Ext4Exception e) {
                    throw new AssertionError(e);
                }
            });
            im.alloc.freeBlocks(x, 1);
            assertEquals(List.of(false), inUseWhenFreed);
            assertEquals(0x22222222, im.cache.get(x).getInt(0), "the new owner's contents were dropped");
            im.alloc.setFreeDeferral(null);
            im.writeSuper();
        }
        assertClean(img);
    }

    @Test
    void freeingWhatIsFreeIsCorruptionAndChangesNothing() throws Exception {
        Path img = mkfs("double", "64M", "-b", "1024");
        try (Image im = new Image(img)) {
            Allocator.Run r = im.alloc.allocateBlocks(im.groupStart(0) + 3000, 8);
            im.alloc.freeBlocks(r.start(), r.length());
            long free = im.alloc.freeBlocksCount();
            Ext4Exception e = Expect.errno(Errno.EUCLEAN, () -> im.alloc.freeBlocks(r.start() + 2, 1));
            assertTrue(e.getMessage().contains("block " + (r.start() + 2)), e.getMessage());
            assertTrue(e.getMessage().contains("already free"), e.getMessage());
            // a range of which only a part is free changes nothing either
            Allocator.Run s = im.alloc.allocateBlocks(r.start(), 4);
            Expect.errno(Errno.EUCLEAN, () -> im.alloc.freeBlocks(s.start(), 8));
            assertTrue(im.alloc.blockInUse(s.start()));
            im.alloc.freeBlocks(s.start(), 4);
            assertEquals(free, im.alloc.freeBlocksCount());
            // metadata, and a block of a group whose bitmap was never initialized
            e = Expect.errno(Errno.EUCLEAN, () -> im.alloc.freeBlocks(im.groups.get(2).inodeTable() + 1, 1));
            assertTrue(e.getMessage().contains("block " + (im.groups.get(2).inodeTable() + 1)), e.getMessage());
            assertTrue((im.groups.get(5).flags() & GroupDescriptor.FLAG_BLOCK_UNINIT) != 0);
            Expect.errno(Errno.EUCLEAN, () -> im.alloc.freeBlocks(im.groupStart(5) + 100, 1));
            Expect.errno(Errno.EUCLEAN, () -> im.alloc.freeBlocks(im.sb.blocksCount() - 1, 2));
            // inodes
            long ino = im.alloc.allocateInode(2, false);
            im.alloc.freeInode(ino, false);
            long freeInodes = im.alloc.freeInodesCount();
            e = Expect.errno(Errno.EUCLEAN, () -> im.alloc.freeInode(ino, false));
            assertTrue(e.getMessage().contains("inode " + ino), e.getMessage());
            Expect.errno(Errno.EUCLEAN, () -> im.alloc.freeInode(7, false));
            Expect.errno(Errno.EUCLEAN, () -> im.alloc.freeInode(5 * im.sb.inodesPerGroup() + 9, false));
            assertEquals(freeInodes, im.alloc.freeInodesCount());
            assertEquals(free, im.alloc.freeBlocksCount());
            im.writeSuper();
        }
        assertClean(img);
    }

    @Test
    void badBlockBitmapChecksumIsEbadmsgAndTheGroupIsSkipped() throws Exception {
        Path img = mkfs("badbb", "64M", "-b", "1024");
        long bitmap;
        try (Image im = new Image(img)) {
            bitmap = im.groups.get(0).blockBitmap();
        }
        // mark block 8000 of group 0 (free after mkfs) in use behind the checksum's back
        long off = bitmap * 1024 + 7999 / 8;
        Images.writeAt(img, off, new byte[] {(byte) (Images.readAt(img, off, 1)[0] ^ (1 << (7999 % 8)))});
        try (Image im = new Image(img)) {
            Ext4Exception e = Expect.errno(Errno.EBADMSG, () -> im.alloc.allocateBlocks(im.groupStart(0) + 5000, 4));
            assertTrue(e.getMessage().contains("group 0") && e.getMessage().contains("block " + bitmap), e.getMessage());
            // the next allocation goes elsewhere; freeing in the group keeps failing
            Allocator.Run r = im.alloc.allocateBlocks(im.groupStart(0) + 5000, 4);
            assertTrue(r.start() >= im.groupStart(1), () -> "run " + r + " in the damaged group");
            Expect.errno(Errno.EBADMSG, () -> im.alloc.freeBlocks(im.groupStart(0) + 5000, 1));
            im.alloc.freeBlocks(r.start(), r.length());
        }
    }

    @Test
    void badInodeBitmapChecksumIsEbadmsg() throws Exception {
        Path img = mkfs("badib", "64M", "-b", "1024");
        long bitmap;
        try (Image im = new Image(img)) {
            bitmap = im.groups.get(0).inodeBitmap();
        }
        Images.writeAt(img, bitmap * 1024 + 100, new byte[] {(byte) 0x5A});
        try (Image im = new Image(img)) {
            Ext4Exception e = Expect.errno(Errno.EBADMSG, () -> im.alloc.allocateInode(2, false));
            assertTrue(e.getMessage().contains("inode bitmap of group 0") && e.getMessage().contains("block " + bitmap), e.getMessage());
            long ino = im.alloc.allocateInode(2, false);
            assertTrue(im.groupOfInode(ino) > 0, () -> "inode " + ino + " in the damaged group");
            Expect.errno(Errno.EBADMSG, () -> im.alloc.freeInode(12, false));
            im.alloc.freeInode(ino, false);
        }
    }

    @Test
    void freeCountThatDisagreesWithTheBitmapIsCorruption() throws Exception {
        Path img = mkfs("count", "64M", "-b", "1024");
        Images.debugfs(img, "set_bg 2 free_blocks_count 17", "set_bg 2 checksum calc");
        try (Image im = new Image(img)) {
            Ext4Exception e = Expect.errno(Errno.EUCLEAN, () -> im.alloc.allocateBlocks(im.groupStart(2) + 4000, 1));
            assertTrue(e.getMessage().contains("bg_free_blocks_count says 17"), e.getMessage());
        }
    }

    @Test
    void bigallocIsRefused() throws Exception {
        Path img = mkfs("bigalloc", "64M", "-b", "4096", "-O", "bigalloc", "-C", "16384");
        Expect.errno(Errno.EOPNOTSUPP, () -> new Image(img).close());
    }

    // ------------------------------------------------------------------ threads

    @ParameterizedTest(name = "{0}")
    @MethodSource("concurrencyImages")
    void fourThreadsAllocateAndFreeConcurrently(String name, String size, List<String> args) throws Exception {
        Path img = Images.mkfs(work.resolve(name + ".img"), size, args, null);
        Map<Long, Integer> blockOwner = new ConcurrentHashMap<>();
        Set<Long> inodeSet = ConcurrentHashMap.newKeySet();
        List<List<Allocator.Run>> kept = new ArrayList<>();
        List<List<long[]>> keptInodes = new ArrayList<>();
        try (Image im = new Image(img)) {
            long freeBlocks = im.alloc.freeBlocksCount();
            long freeInodes = im.alloc.freeInodesCount();
            int threads = 4;
            CyclicBarrier start = new CyclicBarrier(threads);
            ExecutorService pool = Executors.newFixedThreadPool(threads);
            List<Future<?>> futures = new ArrayList<>();
            for (int t = 0; t < threads; t++) {
                int id = t;
                List<Allocator.Run> mine = new ArrayList<>();
                List<long[]> myInodes = new ArrayList<>();
                kept.add(mine);
                keptInodes.add(myInodes);
                futures.add(pool.submit(() -> {
                    Random rnd = new Random(id);
                    start.await();
                    for (int i = 0; i < 600; i++) {
                        int op = rnd.nextInt(10);
                        if (op < 4) {
                            // threads 0 and 1 fight over the same goals
                            long goal = id < 2 ? im.groupStart(0) + rnd.nextInt(64) * 16 : (long) (rnd.nextDouble() * im.sb.blocksCount());
                            Allocator.Run r = im.alloc.allocateBlocks(goal, 1 + rnd.nextInt(40));
                            for (long b = r.start(); b < r.start() + r.length(); b++) {
                                Integer other = blockOwner.putIfAbsent(b, id);
                                assertNull(other, "block " + b + " handed to threads " + other + " and " + id);
                            }
                            mine.add(r);
                        } else if (op < 6 && !mine.isEmpty()) {
                            Allocator.Run r = mine.remove(rnd.nextInt(mine.size()));
                            for (long b = r.start(); b < r.start() + r.length(); b++) {
                                blockOwner.remove(b);
                            }
                            im.alloc.freeBlocks(r.start(), r.length());
                        } else if (op < 8) {
                            boolean dir = rnd.nextBoolean();
                            long ino = im.alloc.allocateInode(id % 2 == 0 ? 2 : 11, dir);
                            assertTrue(inodeSet.add(ino), "inode " + ino + " handed out twice");
                            myInodes.add(new long[] {ino, dir ? 1 : 0});
                        } else if (!myInodes.isEmpty()) {
                            long[] x = myInodes.remove(rnd.nextInt(myInodes.size()));
                            inodeSet.remove(x[0]);
                            im.alloc.freeInode(x[0], x[1] == 1);
                        }
                    }
                    return null;
                }));
            }
            pool.shutdown();
            assertTrue(pool.awaitTermination(120, TimeUnit.SECONDS), "threads did not finish");
            for (Future<?> f : futures) {
                f.get();
            }
            long held = kept.stream().flatMap(List::stream).mapToLong(Allocator.Run::length).sum();
            long heldInodes = keptInodes.stream().mapToLong(List::size).sum();
            assertEquals(freeBlocks - held, im.alloc.freeBlocksCount());
            assertEquals(freeInodes - heldInodes, im.alloc.freeInodesCount());
            im.writeSuper();
            List<Allocator.Run> sample = new ArrayList<>();
            kept.forEach(l -> sample.addAll(l.subList(0, Math.min(10, l.size()))));
            assertInUseByDebugfs(img, sample, List.of());
            for (List<Allocator.Run> l : kept) {
                for (Allocator.Run r : l) {
                    im.alloc.freeBlocks(r.start(), r.length());
                }
            }
            for (List<long[]> l : keptInodes) {
                for (long[] x : l) {
                    im.alloc.freeInode(x[0], x[1] == 1);
                }
            }
            assertEquals(freeBlocks, im.alloc.freeBlocksCount());
            assertEquals(freeInodes, im.alloc.freeInodesCount());
            im.writeSuper();
        }
        assertClean(img);
    }

    static Stream<org.junit.jupiter.params.provider.Arguments> concurrencyImages() {
        return Stream.of(
                org.junit.jupiter.params.provider.Arguments.of("1k-8-groups", "64M", List.of("-b", "1024")),
                org.junit.jupiter.params.provider.Arguments.of("4k-1-group", "64M", List.of("-b", "4096")));
    }
}
