package dev.ext4j.resize;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.ext4j.Errno;
import dev.ext4j.Ext4Exception;
import dev.ext4j.format.Inode;
import dev.ext4j.fs.Ext4FileSystem;
import dev.ext4j.fs.MountOptions;
import dev.ext4j.io.BlockDevice;
import dev.ext4j.io.FileBlockDevice;
import dev.ext4j.testutil.Expect;
import dev.ext4j.testutil.FsUtil;
import dev.ext4j.io.ForwardingDevice;
import dev.ext4j.testutil.Images;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Online grow against e2fsck, dumpe2fs, resize2fs and the kernel: every test starts from an image
 * made by mkfs.ext4, grows it through ext4j while mounted, closes it, and requires e2fsck -fn to
 * find nothing; files written before, during and after the grow are read back through ext4j and,
 * where loop mounts work, through the kernel.
 */
class OnlineResizeTest {
    private static final long MIB = 1 << 20;
    private static final long GIB = 1L << 30;

    @TempDir
    Path work;

    /** Files written so far, by name, to check after the grow. */
    private final Map<String, byte[]> files = new LinkedHashMap<>();

    private Path mkfs(String name, String size, String... args) {
        return Images.mkfs(work.resolve(name + ".img"), size, List.of(args), null);
    }

    private static Ext4FileSystem openRw(Path img) throws Ext4Exception {
        Ext4FileSystem fs = Ext4FileSystem.open(img, MountOptions.defaults());
        assertFalse(fs.isReadOnly(), "mounted read-write: " + fs.messages());
        return fs;
    }

    private static byte[] b(String s) {
        return s.getBytes(StandardCharsets.UTF_8);
    }

    private void write(Ext4FileSystem fs, String name, long size, long seed) throws Ext4Exception {
        byte[] data = new byte[(int) size];
        new Random(seed).nextBytes(data);
        long ino = fs.mknod(Ext4FileSystem.ROOT_INO, b(name), Inode.S_IFREG | 0644, 0, 0, 0, 0);
        int chunk = 1 << 20;
        for (int off = 0; off < data.length; off += chunk) {
            int n = Math.min(chunk, data.length - off);
            assertEquals(n, fs.write(ino, off, ByteBuffer.wrap(data, off, n)));
        }
        synchronized (files) {
            files.put(name, data);
        }
    }

    /** A file of {@code size} bytes that need not be kept in memory: every byte is its offset's low byte. */
    private static void writeBig(Ext4FileSystem fs, String name, long size) throws Ext4Exception {
        long ino = fs.mknod(Ext4FileSystem.ROOT_INO, b(name), Inode.S_IFREG | 0644, 0, 0, 0, 0);
        byte[] chunk = new byte[1 << 20];
        for (int i = 0; i < chunk.length; i++) {
            chunk[i] = (byte) i;
        }
        for (long off = 0; off < size; off += chunk.length) {
            int n = (int) Math.min(chunk.length, size - off);
            assertEquals(n, fs.write(ino, off, ByteBuffer.wrap(chunk, 0, n)));
        }
    }

    private void verifyFiles(Ext4FileSystem fs) throws Ext4Exception {
        for (Map.Entry<String, byte[]> e : files.entrySet()) {
            long ino = fs.lookup(Ext4FileSystem.ROOT_INO, b(e.getKey()));
            byte[] got = FsUtil.readAll(fs, ino, 1 << 20);
            assertArrayEquals(e.getValue(), got, e.getKey() + ": " + FsUtil.hexDiff(e.getValue(), got));
        }
    }

    /** e2fsck -fn finds nothing (its notes about a clock that stepped back aside). */
    static void assertFsckClean(Path img) {
        Images.assertSilentlyClean(img);
    }

    /**
     * e2fsck -fn from the first backup superblock (group 1) and its GDT copy: backups carry the
     * free counts of the moment they were written, and e2fsck ignores bitmap checksums from a
     * backup (it reports the same for an image fresh from mkfs); anything about inodes, tables or
     * the layout is a fault.
     */
    private static void assertBackupUsable(Path img) {
        Map<String, String> h = Images.dumpe2fsHeader(img);
        long bs = Long.parseLong(h.get("Block size"));
        long backup = Long.parseLong(h.get("First block")) + Long.parseLong(h.get("Blocks per group"));
        Images.Result r = Images.run(List.of("e2fsck", "-fn", "-b", String.valueOf(backup), "-B", String.valueOf(bs), img.toString()));
        List<String> odd = new ArrayList<>();
        for (String line : r.all().split("\n")) {
            String l = line.trim();
            if (l.isEmpty() || l.startsWith("Pass ") || l.startsWith("e2fsck ") || Images.isClockNote(l)
                    || l.matches("Free (blocks|inodes) count wrong.*") || l.matches("Fix\\? no") || l.matches("Directories count wrong.*")
                    || l.matches("(Block|Inode) bitmap differences:.*") || l.matches("Group \\d+ (block|inode) bitmap does not match checksum\\.")
                    || l.equals("IGNORED.") || l.startsWith("Padding at end of inode bitmap is not set")
                    || l.matches("[-+(][-+0-9(). ]*") || l.contains("WARNING: Filesystem still has errors") || l.startsWith("Padding at end")
                    || l.matches(".*: \\d+/\\d+ files \\(.*\\), \\d+/\\d+ blocks") || l.startsWith("ext2fs_check_desc")
                    || l.startsWith("Backing up journal inode block information")) {
                continue;
            }
            odd.add(l);
        }
        assertTrue(odd.isEmpty(), "e2fsck from the backup superblock at " + backup + ":\n" + r.all());
    }

    /**
     * After close: e2fsck, dumpe2fs's block count, the files through a read-only ext4j mount and
     * through the kernel.
     */
    private void checkImage(Path img, long blocks) throws Exception {
        assertFsckClean(img);
        assertBackupUsable(img);
        assertEquals(String.valueOf(blocks), Images.dumpe2fsHeader(img).get("Block count"), "dumpe2fs block count");
        try (Ext4FileSystem ro = Ext4FileSystem.open(img, MountOptions.defaults().withReadOnly(true))) {
            assertEquals(blocks, ro.superblock().blocksCount());
            verifyFiles(ro);
        }
        verifyKernel(img, blocks);
    }

    private void verifyKernel(Path img, long blocks) throws Exception {
        Path mnt = Files.createDirectories(work.resolve("mnt"));
        Images.Result r = Images.run(List.of("mount", "-o", "loop,ro", img.toString(), mnt.toString()));
        if (r.exitCode() != 0) {
            System.err.println("loop mount of " + img + " failed, no kernel comparison: " + r.all().trim());
            return;
        }
        try {
            for (Map.Entry<String, byte[]> e : files.entrySet()) {
                assertArrayEquals(e.getValue(), Files.readAllBytes(mnt.resolve(e.getKey())), "kernel: " + e.getKey());
            }
            Images.Result df = Images.runOk(List.of("stat", "-f", "-c", "%b %S", mnt.toString()));
            String[] f = df.stdout().trim().split(" ");
            long bytes = Long.parseLong(f[0]) * Long.parseLong(f[1]);
            int bs = Integer.parseInt(f[1]);
            long total = blocks * bs;
            // the overhead of a small 1 KiB-block filesystem (inode tables, reserved GDT, journal) is over 10%
            assertTrue(bytes > total * 8 / 10 && bytes <= total, "kernel statfs sees " + bytes + " bytes of " + total);
        } finally {
            Images.Result u = Images.run(List.of("umount", mnt.toString()));
            if (u.exitCode() != 0) {
                Images.run(List.of("umount", "-l", mnt.toString()));
                throw new IllegalStateException("umount " + mnt + ": " + u.all());
            }
        }
    }

    // ================================================================ growth

    @Test
    void grow4kFlexBg512MTo2G() throws Exception {
        Path img = mkfs("flex4k", "512M", "-b", "4096");
        try (Ext4FileSystem fs = openRw(img)) {
            write(fs, "before", 3 * MIB + 123, 1);
            fs.resize(2 * GIB / 4096);
            assertEquals(2 * GIB / 4096, fs.superblock().blocksCount());
            assertEquals(2 * GIB, Files.size(img));
            write(fs, "after", 2 * MIB, 2);
            // more than the old filesystem could hold
            writeBig(fs, "big", 600 * MIB);
            verifyFiles(fs);
        }
        checkImage(img, 2 * GIB / 4096);
        compareWithResize2fs(img, "512M", List.of("-b", "4096"), 2 * GIB / 4096);
    }

    /**
     * The group layout resize2fs (offline) gives the same image: the same group count, block and
     * inode counts; and where kernel-style placement and resize2fs agree (the inode tables' flex
     * packing), the same bitmaps and inode table locations.
     */
    private void compareWithResize2fs(Path ours, String size, List<String> args, long blocks) {
        Path theirs = Images.mkfs(work.resolve("offline.img"), size, args, null);
        Images.runOk(List.of("resize2fs", theirs.toString(), String.valueOf(blocks)));
        Map<String, String> a = Images.dumpe2fsHeader(ours);
        Map<String, String> b = Images.dumpe2fsHeader(theirs);
        for (String k : List.of("Block count", "Inode count", "Reserved GDT blocks", "Filesystem features")) {
            assertEquals(b.get(k), a.get(k), "dumpe2fs " + k + ": ext4j online vs resize2fs offline");
        }
    }


    /** 1 KiB blocks: several new groups, new descriptor blocks from the reserved GDT blocks, a short last group. */
    @Test
    void grow1kSeveralGroupsUsesReservedGdt() throws Exception {
        Path img = mkfs("r1k", "64M", "-b", "1024");
        int reservedBefore = Integer.parseInt(Images.dumpe2fsHeader(img).get("Reserved GDT blocks"));
        long blocks = 300 * MIB / 1024 + 777;
        try (Ext4FileSystem fs = openRw(img)) {
            write(fs, "before", 5 * MIB, 3);
            fs.resize(blocks);
            assertEquals(blocks, fs.superblock().blocksCount());
            assertTrue(fs.superblock().reservedGdtBlocks() < reservedBefore, "reserved GDT blocks were used");
            write(fs, "after", 100 * MIB, 4);
            verifyFiles(fs);
        }
        checkImage(img, blocks);
        compareWithResize2fs(img, "64M", List.of("-b", "1024"), blocks);
    }

    /** Growing in steps, one of them only the last group (GROUP_EXTEND), each step checked by e2fsck. */
    @Test
    void growInStepsFromAPartialLastGroup() throws Exception {
        Path img = mkfs("steps", "20000K", "-b", "1024");
        try (Ext4FileSystem fs = openRw(img)) {
            write(fs, "a", 300 * 1024, 5);
            fs.resize(20000 + 1000); // inside the last group
            assertEquals(21000, fs.superblock().blocksCount());
            write(fs, "b", 300 * 1024, 6);
            fs.resize(3 * 8192 + 1 + 20); // a last group of 20 blocks is too small: rounded down
            assertEquals(3 * 8192 + 1, fs.superblock().blocksCount());
            fs.resize(90000);
            assertEquals(90000, fs.superblock().blocksCount());
            write(fs, "c", 30 * MIB, 7);
        }
        checkImage(img, 90000);
    }

    /** Without resize_inode there are no reserved GDT blocks: the filesystem turns meta_bg. */
    @Test
    void growWithoutResizeInodeTo8GUsesMetaBg() throws Exception {
        // 1 KiB blocks: 16 descriptors per block, so 8 GiB needs 64 descriptor blocks, not 4
        Path img = mkfs("nores", "512M", "-b", "1024", "-O", "^resize_inode");
        long blocks = 8 * GIB / 1024;
        try (Ext4FileSystem fs = openRw(img)) {
            write(fs, "before", 2 * MIB, 8);
            fs.resize(blocks);
            assertTrue(fs.superblock().has(dev.ext4j.format.Feature.META_BG), "meta_bg set");
            write(fs, "after", 3 * MIB, 9);
            writeBig(fs, "big", 700 * MIB);
        }
        checkImage(img, blocks);
        Map<String, String> h = Images.dumpe2fsHeader(img);
        assertTrue(h.get("Filesystem features").contains("meta_bg"), h.get("Filesystem features"));
    }

    /** Reserved GDT blocks run out part way: they are used first, then the filesystem turns meta_bg. */
    @Test
    void reservedGdtExhaustedConvertsToMetaBg() throws Exception {
        Path img = mkfs("exhaust", "32M", "-b", "1024", "-E", "resize=" + (160 * 1024));
        int reserved = Integer.parseInt(Images.dumpe2fsHeader(img).get("Reserved GDT blocks"));
        assertTrue(reserved > 0, "mkfs reserved some GDT blocks");
        long blocks = 600 * MIB / 1024;
        try (Ext4FileSystem fs = openRw(img)) {
            write(fs, "before", 1 * MIB, 10);
            fs.resize(blocks);
            assertEquals(0, fs.superblock().reservedGdtBlocks());
            assertTrue(fs.superblock().has(dev.ext4j.format.Feature.META_BG));
            assertFalse(fs.superblock().has(dev.ext4j.format.Feature.RESIZE_INODE));
            write(fs, "after", 40 * MIB, 11);
        }
        checkImage(img, blocks);
    }

    /** Files written by another thread before, during and after the grow are all intact. */
    @Test
    void concurrentWriterDuringGrow() throws Exception {
        Path img = mkfs("conc", "256M", "-b", "4096");
        AtomicBoolean stop = new AtomicBoolean();
        ExecutorService ex = Executors.newSingleThreadExecutor();
        try (Ext4FileSystem fs = openRw(img)) {
            write(fs, "first", MIB, 12);
            Future<Integer> writer = ex.submit(() -> {
                int n = 0;
                while (!stop.get() || n < 20) {
                    write(fs, "w" + n, 64 * 1024 + n * 4096L, 100 + n);
                    n++;
                }
                return n;
            });
            Thread.sleep(50);
            fs.resize(1536 * MIB / 4096);
            fs.resize(3 * GIB / 4096);
            stop.set(true);
            int n = writer.get(120, TimeUnit.SECONDS);
            assertTrue(n >= 20);
            writeBig(fs, "big", 400 * MIB);
            verifyFiles(fs);
        } finally {
            ex.shutdownNow();
        }
        checkImage(img, 3 * GIB / 4096);
    }

    // ================================================================ bounded journal transactions

    /**
     * A 1 MiB journal (1024 blocks: transactions of at most 255) and a grow by 766 groups, whose
     * 1532 new bitmaps alone would overflow not just one transaction but the whole log: the grow
     * runs in steps, each in its own handle.
     */
    @Test
    void growByManyGroupsWithATinyJournalRunsInSteps() throws Exception {
        Path img = mkfs("tinyj", "16M", "-b", "1024", "-J", "size=1");
        long blocks = 6 * GIB / 1024;
        try (Ext4FileSystem fs = openRw(img)) {
            assertTrue(OnlineResize.stepCredits(fs.superblock(), 766) > 1024, "one handle could not hold the whole grow");
            write(fs, "before", MIB, 20);
            fs.resize(blocks);
            assertEquals(blocks, fs.superblock().blocksCount());
            write(fs, "after", 2 * MIB, 21);
            writeBig(fs, "big", 40 * MIB); // more than the old filesystem held
            verifyFiles(fs);
        }
        checkImage(img, blocks);
    }

    /** The same grow on a journal=off mount: no handles to bound, one step. */
    @Test
    void growWithTheJournalOff() throws Exception {
        Path img = mkfs("joff", "16M", "-b", "1024", "-J", "size=1");
        long blocks = GIB / 1024 + 5000;
        try (Ext4FileSystem fs = Ext4FileSystem.open(img, MountOptions.defaults().withJournal(false))) {
            assertFalse(fs.isReadOnly(), fs.messages().toString());
            write(fs, "before", MIB, 22);
            fs.resize(blocks);
            assertEquals(blocks, fs.superblock().blocksCount());
            writeBig(fs, "big", 30 * MIB);
            verifyFiles(fs);
        }
        checkImage(img, blocks);
    }

    /** Passes everything on (grow() too) and records every write and growth in order. */
    private static final class Recording extends ForwardingDevice {
        /** A write (bytes) or a growth (bytes null, offset the new size). */
        record Event(long offset, byte[] bytes) {
        }

        final List<Event> events = java.util.Collections.synchronizedList(new ArrayList<>());

        Recording(BlockDevice inner) {
            super(inner);
        }

        @Override
        public void write(long offset, ByteBuffer src) throws IOException {
            byte[] b = new byte[src.remaining()];
            src.duplicate().get(b);
            events.add(new Event(offset, b));
            inner.write(offset, src);
        }

        @Override
        public void grow(long newSize) throws IOException {
            events.add(new Event(newSize, null));
            inner.grow(newSize);
        }

        /** {@code base} as it would be after the first {@code n} events (every later one lost). */
        void cut(Path base, Path out, int n) throws IOException {
            Images.copy(base, out);
            try (java.io.RandomAccessFile f = new java.io.RandomAccessFile(out.toFile(), "rw")) {
                for (int i = 0; i < n; i++) {
                    Event e = events.get(i);
                    if (e.bytes() == null) {
                        f.setLength(Math.max(f.length(), e.offset()));
                    } else {
                        f.seek(e.offset());
                        f.write(e.bytes());
                    }
                }
            }
        }
    }

    /**
     * Power loss during a grow in steps (1 MiB journal, 16 MiB to 900 MiB): for cut points across
     * the run, the image with every later write lost is replayed by ext4j's mount and, for some
     * cuts, by e2fsck; each is e2fsck -fn clean at whatever size it reached, and some cuts end
     * between steps, at an intermediate size.
     */
    @Test
    void powerLossDuringAGrowInStepsReplaysClean() throws Exception {
        Path base = mkfs("crashbase", "16M", "-b", "1024", "-J", "size=1");
        Path live = Images.copy(base, work.resolve("live.img"));
        long oldBlocks = 16 * MIB / 1024;
        long blocks = 900 * MIB / 1024;
        MountOptions noTimer = MountOptions.defaults().withWriteback(MountOptions.DEFAULT_CACHE_BYTES, 3_600_000, 30_000);
        Recording dev = new Recording(FileBlockDevice.open(live, false));
        try (Ext4FileSystem fs = Ext4FileSystem.mount(dev, noTimer)) {
            write(fs, "before", 200 * 1024, 23);
            fs.sync();
            dev.events.clear(); // cuts start from the synced image: copy it as the base
            Images.copy(live, base);
            fs.resize(blocks);
            assertEquals(blocks, fs.superblock().blocksCount());
        }
        assertFsckClean(live);
        int total = dev.events.size();
        java.util.TreeSet<Integer> points = new java.util.TreeSet<>(List.of(total));
        Random rnd = new Random(5);
        for (int k = 1; k <= 14; k++) {
            points.add((int) ((long) total * k / 15));
            points.add(rnd.nextInt(total));
        }
        java.util.Set<Long> sizes = new java.util.TreeSet<>();
        Path img = work.resolve("cut.img");
        int k = 0;
        for (int n : points) {
            String what = "cut after event " + n + " of " + total;
            dev.cut(base, img, n);
            if (k++ % 4 == 0) {
                Path byE2fsck = Images.copy(img, work.resolve("cut.e2fsck.img"));
                Images.Result r = Images.run(List.of("e2fsck", "-E", "journal_only", "-y", byE2fsck.toString()));
                assertTrue(r.exitCode() <= 1, what + ": e2fsck journal replay: " + r.all());
                assertReplayedClean(byE2fsck, what + " (replayed by e2fsck)");
            }
            try (Ext4FileSystem fs = Ext4FileSystem.open(img, MountOptions.defaults())) {
                assertFalse(fs.isReadOnly(), what + ": " + fs.messages());
                long size = fs.superblock().blocksCount();
                assertTrue(size >= oldBlocks && size <= blocks, what + ": " + size + " blocks");
                sizes.add(size);
                verifyFiles(fs);
            }
            assertReplayedClean(img, what);
        }
        assertTrue(sizes.size() >= 3 && sizes.stream().anyMatch(s -> s > oldBlocks && s < blocks),
                "some cut ended between steps: sizes seen " + sizes);
        verifyKernel(img, blocks);
    }

    /**
     * e2fsck -fn exits 0 and finds nothing but the superblock's summary free counts (not journaled
     * with every change, by the kernel either).
     */
    private static void assertReplayedClean(Path img, String what) {
        Images.Result r = Images.fsckCheck(img);
        List<String> odd = new ArrayList<>();
        for (String line : r.all().split("\n")) {
            String l = line.trim();
            if (l.isEmpty() || l.startsWith("Pass ") || l.startsWith("e2fsck ") || Images.isClockNote(l)
                    || l.matches(".*: \\d+/\\d+ files \\(.*\\), \\d+/\\d+ blocks")
                    || l.matches("Free (blocks|inodes) count wrong \\(\\d+, counted=\\d+\\)\\.") || l.equals("Fix? no")) {
                continue;
            }
            odd.add(l);
        }
        assertTrue(r.exitCode() == 0 && odd.isEmpty(), what + ": e2fsck -fn exited " + r.exitCode() + ":\n" + r.all());
    }

    // ================================================================ one resize at a time

    /**
     * A resize held inside the device's grow() (a latch): a second resize from another thread gets
     * EBUSY and changes nothing; released, the first completes.
     */
    @Test
    void aSecondResizeWhileOneRunsGetsEbusy() throws Exception {
        Path img = mkfs("busy", "64M", "-b", "4096");
        java.util.concurrent.CountDownLatch entered = new java.util.concurrent.CountDownLatch(1);
        java.util.concurrent.CountDownLatch release = new java.util.concurrent.CountDownLatch(1);
        BlockDevice dev = new ForwardingDevice(FileBlockDevice.open(img, false)) {
            @Override
            public void grow(long newSize) throws IOException {
                entered.countDown();
                try {
                    if (!release.await(60, TimeUnit.SECONDS)) {
                        throw new IOException("the test never released grow()");
                    }
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                    throw new IOException("interrupted", e);
                }
                inner.grow(newSize);
            }
        };
        long first = 256 * MIB / 4096;
        ExecutorService ex = Executors.newFixedThreadPool(2);
        try (Ext4FileSystem fs = Ext4FileSystem.mount(dev, MountOptions.defaults())) {
            long blocks = fs.superblock().blocksCount();
            Future<?> one = ex.submit(() -> {
                fs.resize(first);
                return null;
            });
            org.awaitility.Awaitility.await().atMost(30, TimeUnit.SECONDS).until(() -> entered.getCount() == 0);
            Future<?> two = ex.submit(() -> {
                Expect.errno(Errno.EBUSY, () -> fs.resize(512 * MIB / 4096));
                return null;
            });
            two.get(30, TimeUnit.SECONDS);
            assertEquals(blocks, fs.superblock().blocksCount(), "nothing changed yet");
            assertEquals(64 * MIB, Files.size(img), "the image has not grown yet");
            release.countDown();
            one.get(60, TimeUnit.SECONDS);
            assertEquals(first, fs.superblock().blocksCount());
            write(fs, "after", MIB, 24);
        } finally {
            release.countDown();
            ex.shutdownNow();
        }
        checkImage(img, first);
    }

    // ================================================================ EXT4_IOC_GROUP_ADD

    /** Adds group {@code g} through the core API with the tables where resize2fs would put them: first free blocks after its backup area. */
    private static long addGroup(Ext4FileSystem fs, long g, long blocksCount) throws Ext4Exception {
        dev.ext4j.format.Superblock sb = fs.superblock();
        long start = sb.firstDataBlock() + g * sb.blocksPerGroup();
        long bb = start + dev.ext4j.alloc.Layout.baseMetaBlocks(sb, g);
        fs.addGroup(new OnlineResize.NewGroup(g, bb, bb + 1, bb + 2, blocksCount, 0));
        return start + blocksCount;
    }

    /**
     * GROUP_ADD of a full group holding a superblock backup (so its reserved GDT copies are in the
     * new group) and then a short last group; every refusal verify_group_input() makes leaves the
     * filesystem as it was.
     */
    @org.junit.jupiter.params.ParameterizedTest(name = "{0}")
    @org.junit.jupiter.params.provider.ValueSource(strings = {"default features", "-O ^metadata_csum,^64bit,^flex_bg"})
    void groupAddTwoGroupsAndItsRefusals(String features) throws Exception {
        List<String> args = new ArrayList<>(List.of("-b", "1024"));
        if (features.startsWith("-O")) {
            args.addAll(List.of(features.split(" ")));
        }
        Path img = mkfs("gadd", "24577K", args.toArray(new String[0]));
        long blocks;
        try (Ext4FileSystem fs = openRw(img)) {
            dev.ext4j.format.Superblock sb = fs.superblock();
            assertEquals(3 * 8192 + 1, sb.blocksCount());
            write(fs, "before", MIB, 30);
            long start = 3 * 8192 + 1;
            long meta = dev.ext4j.alloc.Layout.baseMetaBlocks(sb, 3);
            assertTrue(meta > 2, "group 3 holds a superblock backup and GDT copies");
            long bb = start + meta;
            long itb = dev.ext4j.alloc.Layout.inodeTableBlocks(sb);
            // the refusals, each naming its fault, nothing changed
            refuse(fs, new OnlineResize.NewGroup(4, bb, bb + 1, bb + 2, 8192, 0), "the next is 3");
            refuse(fs, new OnlineResize.NewGroup(3, bb, bb + 1, bb + 2, 8193, 0), "blocks_count 8193");
            refuse(fs, new OnlineResize.NewGroup(3, start + 1, bb + 1, bb + 2, 8192, 0), "block bitmap " + (start + 1) + " is in the superblock backup");
            refuse(fs, new OnlineResize.NewGroup(3, bb, bb, bb + 2, 8192, 0), "both at " + bb);
            refuse(fs, new OnlineResize.NewGroup(3, bb, bb + 1, bb + 1, 8192, 0), "inside the inode table");
            refuse(fs, new OnlineResize.NewGroup(3, bb, bb + 1, start + 8192 - itb + 1, 8192, 0), "is not inside the group");
            refuse(fs, new OnlineResize.NewGroup(3, bb, bb + 1, bb + 2, 8192, 8192 / 5 + 1), "reserved_blocks");
            refuse(fs, new OnlineResize.NewGroup(3, bb, bb + 1, bb + 2, (int) (meta + itb), 0), "metadata");
            assertEquals(start, fs.superblock().blocksCount());
            assertEquals(start * 1024, Files.size(img));

            assertEquals(start + 8192, addGroup(fs, 3, 8192));
            blocks = addGroup(fs, 4, 5000);
            assertEquals(4 * 8192 + 1 + 5000, blocks);
            assertEquals(blocks, fs.superblock().blocksCount());
            refuse(fs, new OnlineResize.NewGroup(5, blocks, blocks + 1, blocks + 2, 8192, 0), "is not full");
            write(fs, "after", MIB, 31);
            writeBig(fs, "big", 24 * MIB); // more than the old filesystem had free
            verifyFiles(fs);
        }
        checkImage(img, blocks);
    }

    private static void refuse(Ext4FileSystem fs, OnlineResize.NewGroup in, String says) {
        Ext4Exception e = Expect.errno(Errno.EINVAL, () -> fs.addGroup(in));
        assertTrue(e.getMessage().contains(says), "'" + e.getMessage() + "' says '" + says + "'");
    }

    // ================================================================ refusals

    /** Shrinking is refused, the same size is a no-op, a read-only mount refuses with EROFS. */
    @Test
    void shrinkSameSizeAndReadOnly() throws Exception {
        Path img = mkfs("refuse", "64M", "-b", "4096");
        try (Ext4FileSystem fs = openRw(img)) {
            long blocks = fs.superblock().blocksCount();
            Expect.errno(Errno.EINVAL, () -> fs.resize(blocks * 9 / 10));
            fs.resize(blocks); // no-op
            assertEquals(blocks, fs.superblock().blocksCount());
        }
        assertFsckClean(img);
        try (Ext4FileSystem ro = Ext4FileSystem.open(img, MountOptions.defaults().withReadOnly(true))) {
            Expect.errno(Errno.EROFS, () -> ro.resize(ro.superblock().blocksCount() * 2));
        }
        assertEquals(64 * MIB, Files.size(img));
    }

    /** EFBIG without 64bit past 2^32 - 1 blocks, EOPNOTSUPP with sparse_super2, ENOSPC when the image cannot grow. */
    @Test
    void refusalsWithNothingChanged() throws Exception {
        Path small = mkfs("no64", "64M", "-b", "1024", "-O", "^64bit");
        try (Ext4FileSystem fs = openRw(small)) {
            Expect.errno(Errno.EFBIG, () -> fs.resize(1L << 32));
        }
        assertEquals(64 * MIB, Files.size(small));
        assertFsckClean(small);

        // sparse_super2
        Path s2 = mkfs("ss2", "64M", "-b", "4096", "-O", "sparse_super2");
        try (Ext4FileSystem fs = openRw(s2)) {
            Expect.errno(Errno.EOPNOTSUPP, () -> fs.resize(fs.superblock().blocksCount() * 2));
        }
        assertEquals(64 * MIB, Files.size(s2));
        assertFsckClean(s2);

        // an image that cannot grow (a fixed-size device)
        Path fixed = mkfs("fixed", "64M", "-b", "4096");
        BlockDevice dev = new FixedSize(FileBlockDevice.open(fixed, false));
        try (Ext4FileSystem fs = Ext4FileSystem.mount(dev, MountOptions.defaults())) {
            long blocks = fs.superblock().blocksCount();
            Expect.errno(Errno.ENOSPC, () -> fs.resize(blocks * 4));
            assertEquals(blocks, fs.superblock().blocksCount());
        }
        assertEquals(64 * MIB, Files.size(fixed));
        assertFsckClean(fixed);
    }

    /** A device of fixed size: everything but grow() goes to the image file. */
    private static final class FixedSize extends ForwardingDevice {
        FixedSize(BlockDevice inner) {
            super(inner);
        }

        @Override
        public void grow(long newSize) throws IOException {
            throw new IOException("a fixed-size device");
        }
    }
}
