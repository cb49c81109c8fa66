package dev.ext4j.journal;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.ext4j.Ext4Exception;
import dev.ext4j.fs.Ext4FileSystem;
import dev.ext4j.fs.MountOptions;
import dev.ext4j.io.MemoryBlockDevice;
import dev.ext4j.io.ForwardingDevice;
import dev.ext4j.testutil.FsUtil;
import dev.ext4j.testutil.Images;
import dev.ext4j.testutil.RecordingDevice;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.TreeMap;
import java.util.TreeSet;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * Power loss on journaled mounts. A metadata workload runs once on an image in memory while every
 * write the filesystem makes is recorded; then, for many cut points N, the image as it was after
 * the first N writes (every later write lost) is replayed by ext4j's mount (and, for some cuts, by
 * e2fsck), must be e2fsck-clean, and must hold every file whose last change was followed by a
 * completed sync() before the cut.
 */
class JournalCrashTest {
    private static final String XATTR = "user.k";

    @TempDir
    Path dir;


    /** What the workload knows: files, the writes at which each was last touched, and the completed syncs. */
    static final class Model {
        final Map<String, byte[]> content = new TreeMap<>();
        final Map<String, byte[]> xattr = new HashMap<>();
        /** Write counts right after each sync() returned, with the files as they were then. */
        final List<Integer> syncAt = new ArrayList<>();
        final List<Map<String, String>> syncState = new ArrayList<>();
        /** Every touch of each path, as write counts, in order. */
        final Map<String, List<Integer>> touches = new HashMap<>();

        void touch(String path, int at) {
            touches.computeIfAbsent(path, k -> new ArrayList<>()).add(at);
        }

        String digest(String path) {
            byte[] x = xattr.get(path);
            return JournalFixture.sha(content.get(path)) + "/" + (x == null ? "-" : JournalFixture.sha(x));
        }

        /** Files that must be intact after a cut at {@code n}: synced before it and untouched since. */
        Map<String, String> mustSurvive(int n) {
            int s = -1;
            for (int i = 0; i < syncAt.size() && syncAt.get(i) <= n; i++) {
                s = i;
            }
            if (s < 0) {
                return Map.of();
            }
            int from = syncAt.get(s);
            Map<String, String> out = new TreeMap<>();
            for (var e : syncState.get(s).entrySet()) {
                boolean changed = touches.getOrDefault(e.getKey(), List.of()).stream().anyMatch(t -> t >= from && t < n);
                if (!changed) {
                    out.put(e.getKey(), e.getValue());
                }
            }
            return out;
        }
    }

    private static MountOptions noTimer() {
        // no timer commits: the run is the same every time and commits happen at sync, when full and at unmount
        return MountOptions.defaults().withWriteback(MountOptions.DEFAULT_CACHE_BYTES, 3_600_000, 30_000);
    }

    private static byte[] b(String s) {
        return s.getBytes(StandardCharsets.UTF_8);
    }

    private static String parentOf(String p) {
        int i = p.lastIndexOf('/');
        return i == 0 ? "/" : p.substring(0, i);
    }

    private static String nameOf(String p) {
        return p.substring(p.lastIndexOf('/') + 1);
    }

    /** Creates, mkdirs, renames, unlinks (one while open), xattrs, truncates and appends, with a sync every few operations. */
    static Model workload(Ext4FileSystem fs, RecordingDevice dev, long seed, int ops) throws Ext4Exception {
        Random rnd = new Random(seed);
        Model m = new Model();
        List<String> dirs = new ArrayList<>(List.of("/"));
        long openIno = 0;
        for (int op = 0; op < ops; op++) {
            int at = dev.writes.size();
            List<String> files = new ArrayList<>(m.content.keySet());
            int kind = files.size() < 4 ? 0 : rnd.nextInt(10);
            switch (kind) {
                case 0, 1, 2 -> {
                    String d = dirs.get(rnd.nextInt(dirs.size()));
                    String p = (d.equals("/") ? "" : d) + "/f" + op;
                    byte[] data = new byte[rnd.nextInt(6000)];
                    rnd.nextBytes(data);
                    m.touch(p, at);
                    long ino = fs.mknod(fs.resolve(b(d)), b(nameOf(p)), 0100644, 0, 0, 0, 0);
                    fs.write(ino, 0, ByteBuffer.wrap(data));
                    m.content.put(p, data);
                }
                case 3 -> {
                    String p = "/d" + op;
                    fs.mkdir(Ext4FileSystem.ROOT_INO, b(nameOf(p)), 0755, 0, 0);
                    dirs.add(p);
                }
                case 4 -> {
                    String from = files.get(rnd.nextInt(files.size()));
                    String d = dirs.get(rnd.nextInt(dirs.size()));
                    String to = (d.equals("/") ? "" : d) + "/r" + op;
                    m.touch(from, at);
                    m.touch(to, at);
                    fs.rename(fs.resolve(b(parentOf(from))), b(nameOf(from)), fs.resolve(b(d)), b(nameOf(to)));
                    m.content.put(to, m.content.remove(from));
                    byte[] x = m.xattr.remove(from);
                    if (x != null) {
                        m.xattr.put(to, x);
                    }
                }
                case 5 -> {
                    String p = files.get(rnd.nextInt(files.size()));
                    m.touch(p, at);
                    long ino = fs.resolve(b(p));
                    if (openIno == 0 && rnd.nextBoolean()) {
                        fs.open(ino); // unlinked while open: on the orphan list until released
                        openIno = ino;
                    }
                    fs.unlink(fs.resolve(b(parentOf(p))), b(nameOf(p)));
                    m.content.remove(p);
                    m.xattr.remove(p);
                }
                case 6 -> {
                    String p = files.get(rnd.nextInt(files.size()));
                    byte[] v = new byte[10 + rnd.nextInt(rnd.nextBoolean() ? 100 : 700)];
                    rnd.nextBytes(v);
                    m.touch(p, at);
                    fs.setXattr(fs.resolve(b(p)), XATTR, v, 0);
                    m.xattr.put(p, v);
                }
                case 7 -> {
                    String p = files.get(rnd.nextInt(files.size()));
                    byte[] old = m.content.get(p);
                    int size = old.length == 0 ? 0 : rnd.nextInt(old.length);
                    m.touch(p, at);
                    fs.truncate(fs.resolve(b(p)), size);
                    m.content.put(p, java.util.Arrays.copyOf(old, size));
                }
                case 8 -> {
                    String p = files.get(rnd.nextInt(files.size()));
                    byte[] old = m.content.get(p);
                    byte[] more = new byte[rnd.nextInt(40000)];
                    rnd.nextBytes(more);
                    m.touch(p, at);
                    fs.write(fs.resolve(b(p)), old.length, ByteBuffer.wrap(more));
                    byte[] all = java.util.Arrays.copyOf(old, old.length + more.length);
                    System.arraycopy(more, 0, all, old.length, more.length);
                    m.content.put(p, all);
                }
                default -> {
                    if (openIno != 0) {
                        fs.release(openIno);
                        openIno = 0;
                    }
                }
            }
            if (op % 7 == 6) {
                fs.sync();
                m.syncAt.add(dev.writes.size());
                Map<String, String> state = new TreeMap<>();
                for (String p : m.content.keySet()) {
                    state.put(p, m.digest(p));
                }
                m.syncState.add(state);
            }
        }
        if (openIno != 0) {
            fs.release(openIno);
        }
        return m;
    }

    /** The files in {@code expected} are there through a read-only ext4j mount, with their contents and xattr. */
    private static void assertSurvivors(Path img, Map<String, String> expected, String what) throws Exception {
        try (Ext4FileSystem fs = Ext4FileSystem.open(img, MountOptions.defaults().withReadOnly(true))) {
            for (var e : expected.entrySet()) {
                long ino = fs.resolve(b(e.getKey()));
                byte[] data = FsUtil.readAll(fs, ino, 65536);
                byte[] x;
                try {
                    x = fs.getXattr(ino, XATTR);
                } catch (Ext4Exception ex) {
                    x = null;
                }
                String got = JournalFixture.sha(data) + "/" + (x == null ? "-" : JournalFixture.sha(x));
                assertEquals(e.getValue(), got, what + ": " + e.getKey() + " was synced and not touched since");
            }
        }
    }

    /**
     * e2fsck -fn exits 0 and finds nothing, but the superblock's summary free counts after a
     * replay: those are not journaled with every change (the kernel's are not either; a kernel
     * image copied after sync and replayed by e2fsck shows the same lines, exit code 0).
     */
    static void assertFsckClean(Path img, String what) {
        assertEquals(0, Images.fsckCheck(img).exitCode(), what + ": e2fsck -fn exit code");
        List<String> f = new ArrayList<>(JournalFixture.fsckFindings(img));
        f.removeIf(l -> l.matches("Free (blocks|inodes) count wrong \\(\\d+, counted=\\d+\\)\\.") || l.equals("Fix? no"));
        assertTrue(f.isEmpty(), what + ": e2fsck -fn found " + f);
    }

    private byte[] mkfs(String name, String size, String... args) throws IOException {
        Path img = dir.resolve(name);
        Images.mkfs(img, size, List.of(args), null);
        return Files.readAllBytes(img);
    }

    @ParameterizedTest(name = "{0}")
    @CsvSource({
        "1k blocks metadata_csum 1 MiB journal, 16M, -b 1024 -J size=1, 120",
        "4k blocks no metadata_csum,             32M, -b 4096 -O ^metadata_csum -J size=4, 60",
    })
    void everyCutReplaysClean(String label, String size, String mkfsArgs, int cuts) throws Exception {
        byte[] base = mkfs("base.img", size, mkfsArgs.trim().split(" "));
        RecordingDevice dev = new RecordingDevice(base.clone());
        Model m;
        try (Ext4FileSystem fs = Ext4FileSystem.mount(dev, noTimer())) {
            assertFalse(fs.isReadOnly());
            m = workload(fs, dev, 42, 90);
        }
        int total = dev.writes.size();
        assertTrue(m.syncAt.size() > 5 && total > 100, "the workload synced " + m.syncAt.size() + " times in " + total + " writes");
        TreeSet<Integer> points = new TreeSet<>(List.of(0, total));
        for (int s : m.syncAt) {
            points.add(Math.max(0, s - 1));
            points.add(s);
            points.add(Math.min(total, s + 1));
        }
        Random rnd = new Random(7);
        while (points.size() < cuts + m.syncAt.size() * 3) {
            points.add(rnd.nextInt(total + 1));
        }
        Path img = dir.resolve("cut.img");
        int k = 0;
        for (int n : points) {
            String what = label + ", cut after write " + n + " of " + total;
            Files.write(img, dev.cut(base, n));
            if (k++ % 6 == 0) {
                Path byE2fsck = JournalFixture.e2fsckReplayed(img, dir);
                assertFsckClean(byE2fsck, what + " (replayed by e2fsck)");
                assertSurvivors(byE2fsck, m.mustSurvive(n), what + " (replayed by e2fsck)");
            }
            JournalFixture.replayWithExt4j(img);
            assertFsckClean(img, what);
            assertSurvivors(img, m.mustSurvive(n), what);
        }
        // the whole run, unmounted: clean, and every file the model holds is there
        Files.write(img, dev.cut(base, total));
        assertFsckClean(img, label + ", after unmount");
        Map<String, String> all = new TreeMap<>();
        for (String p : m.content.keySet()) {
            all.put(p, m.digest(p));
        }
        assertSurvivors(img, all, label + ", after unmount");
        assertFalse(JournalFixture.hasFeature(img, "needs_recovery"), "a clean unmount clears needs_recovery");
    }

    /**
     * A crash right after a sync leaves needs_recovery and a non-empty log: e2fsck, the kernel and
     * ext4j replay it to the same tree, each clean.
     */
    @Test
    void theKernelAndE2fsckReplayWhatExt4jLogged() throws Exception {
        byte[] base = mkfs("base.img", "32M", "-b", "4096", "-J", "size=4");
        RecordingDevice dev = new RecordingDevice(base.clone());
        Model m;
        int crashAt;
        try (Ext4FileSystem fs = Ext4FileSystem.mount(dev, noTimer())) {
            m = workload(fs, dev, 3, 60);
            crashAt = m.syncAt.get(m.syncAt.size() - 1);
        }
        Path img = dir.resolve("crashed.img");
        Files.write(img, dev.cut(base, crashAt));
        assertTrue(JournalFixture.hasFeature(img, "needs_recovery"), "the crashed image needs recovery");
        Map<String, String> expected = m.mustSurvive(crashAt);
        assertFalse(expected.isEmpty());

        Path byE2fsck = JournalFixture.e2fsckReplayed(img, dir);
        assertFsckClean(byE2fsck, "replayed by e2fsck");
        Map<String, String> tree = JournalFixture.treeOf(byE2fsck);

        Path byExt4j = Images.copy(img, dir.resolve("ext4j.img"));
        JournalFixture.replayWithExt4j(byExt4j);
        assertFsckClean(byExt4j, "replayed by ext4j");
        assertEquals(tree, JournalFixture.treeOf(byExt4j), "ext4j's replay and e2fsck's show the same tree");
        assertSurvivors(byExt4j, expected, "replayed by ext4j");

        assumeTrue(JournalFixture.canKernelMount(), "the kernel's replay needs root and loop devices");
        Path byKernel = Images.copy(img, dir.resolve("kernel.img"));
        JournalFixture.withKernelMount(byKernel, dir.resolve("mnt"), "loop", () -> { });
        assertFsckClean(byKernel, "replayed by the kernel");
        assertEquals(tree, JournalFixture.treeOf(byKernel), "the kernel's replay and e2fsck's show the same tree");
    }

    /** A workload many times the size of a 1 MiB log: commits of full transactions, checkpoints to make room. */
    @Test
    void aWorkloadFarLargerThanTheJournalStaysClean() throws Exception {
        Path img = dir.resolve("full.img");
        Images.mkfs(img, "64M", List.of("-b", "1024", "-J", "size=1", "-N", "8192"), null);
        Map<String, Integer> sizes = new TreeMap<>();
        Random rnd = new Random(11);
        try (Ext4FileSystem fs = Ext4FileSystem.open(img, noTimer())) {
            for (int d = 0; d < 20; d++) {
                fs.mkdir(Ext4FileSystem.ROOT_INO, b("d" + d), 0755, 0, 0);
            }
            for (int i = 0; i < 4000; i++) {
                String p = "/d" + (i % 20) + "/f" + i;
                long ino = fs.mknod(fs.resolve(b("/d" + (i % 20))), b("f" + i), 0100644, 0, 0, 0, 0);
                byte[] data = new byte[rnd.nextInt(3000)];
                java.util.Arrays.fill(data, (byte) i);
                fs.write(ino, 0, ByteBuffer.wrap(data));
                sizes.put(p, data.length);
                if (i % 3 == 0) {
                    fs.setXattr(ino, XATTR, new byte[200], 0);
                }
                if (i % 1000 == 999) {
                    fs.sync();
                }
            }
            for (int i = 0; i < 4000; i += 3) {
                String p = "/d" + (i % 20) + "/f" + i;
                fs.unlink(fs.resolve(b("/d" + (i % 20))), b("f" + i));
                sizes.remove(p);
            }
            for (int i = 1; i < 4000; i += 3) {
                String from = "/d" + (i % 20) + "/f" + i;
                String to = "/d" + ((i + 7) % 20) + "/g" + i;
                fs.rename(fs.resolve(b("/d" + (i % 20))), b("f" + i), fs.resolve(b("/d" + ((i + 7) % 20))), b("g" + i));
                sizes.put(to, sizes.remove(from));
            }
        }
        assertFsckClean(img, "after unmount");
        try (Ext4FileSystem fs = Ext4FileSystem.open(img, MountOptions.defaults().withReadOnly(true))) {
            for (var e : sizes.entrySet()) {
                assertEquals((long) e.getValue(), fs.stat(fs.resolve(b(e.getKey()))).size(), e.getKey());
            }
        }
    }
}
