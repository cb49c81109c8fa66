package dev.ext4j.dir;

import static dev.ext4j.testutil.FsUtil.bytes;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.ext4j.Errno;
import dev.ext4j.Ext4Exception;
import dev.ext4j.blockmap.Mapping;
import dev.ext4j.format.Checksums;
import dev.ext4j.format.DirEntry;
import dev.ext4j.format.DxNode;
import dev.ext4j.format.Inode;
import dev.ext4j.testutil.Expect;
import dev.ext4j.testutil.FsUtil;
import dev.ext4j.testutil.Images;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.Set;
import java.util.TreeSet;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * Drives {@link DirectoryWriter} on images made by mkfs.ext4: thousands of inserts (short, 255-byte
 * and high-byte names) that force make_indexed_dir(), leaf splits, index splits and new levels,
 * deletes and re-inserts, then requires e2fsck -fn to be clean, debugfs to list exactly the
 * model's names, htree_dump to read the tree, and the read side to agree.
 */
class DirectoryWriteTest {

    @TempDir
    Path work;

    /**
     * A mkfs variant; {@code levels} is the expected final indirect_levels, -1 for a linear
     * directory; {@code hashVersion} the root's expected hash version (half_md4 unless debugfs set
     * s_def_hash_version).
     */
    record Variant(String name, String size, List<String> mkfs, String[] debugfs, int names, int preBlocks, int levels,
                   int hashVersion) {
        Variant(String name, String size, List<String> mkfs, String[] debugfs, int names, int preBlocks, int levels) {
            this(name, size, mkfs, debugfs, names, preBlocks, levels, DxHash.HALF_MD4);
        }

        @Override
        public String toString() {
            return name;
        }
    }

    static Stream<Variant> variants() {
        return Stream.of(
                new Variant("4k-csum", "64M", List.of("-b", "4096"), new String[0], 5000, 300, 0),
                new Variant("1k-csum", "64M", List.of("-b", "1024"), new String[0], 5000, 1500, 1),
                new Variant("1k-nocsum", "64M", List.of("-b", "1024", "-O", "^metadata_csum"), new String[0], 5000, 1500, 1),
                new Variant("1k-tea", "64M", List.of("-b", "1024"), new String[] {"ssv def_hash_version tea"}, 5000, 1500, 1,
                        DxHash.TEA),
                new Variant("1k-legacy-unsigned", "64M", List.of("-b", "1024"),
                        new String[] {"ssv def_hash_version legacy", "ssv flags 2"}, 5000, 1500, 1, DxHash.LEGACY),
                new Variant("64k-nocsum", "256M", List.of("-b", "65536", "-O", "^metadata_csum"), new String[0], 2000, 30, 0),
                new Variant("4k-no-dir_index", "64M", List.of("-b", "4096", "-O", "^dir_index"), new String[0], 2000, 300, -1));
    }

    /** The directory as the test expects it: name (ISO-8859-1, one char per byte) to inode. */
    static final class Model {
        final DirFixture fx;
        final Map<String, Long> entries = new LinkedHashMap<>();
        final Random rnd;

        Model(DirFixture fx, long seed) {
            this.fx = fx;
            this.rnd = new Random(seed);
        }

        String newName(int kind) {
            while (true) {
                byte[] n = switch (kind) {
                    case 0 -> ("n" + rnd.nextInt(10_000_000) + "_" + (char) ('a' + rnd.nextInt(26))).getBytes(StandardCharsets.ISO_8859_1);
                    case 1 -> randomBytes(255);
                    case 2 -> randomHighBytes(1 + rnd.nextInt(60));
                    default -> randomBytes(1 + rnd.nextInt(120));
                };
                String s = new String(n, StandardCharsets.ISO_8859_1);
                if (!s.equals(".") && !s.equals("..") && !entries.containsKey(s)) {
                    return s;
                }
            }
        }

        String newName() {
            int k = rnd.nextInt(10);
            return newName(k < 5 ? 0 : k < 7 ? 1 : k < 9 ? 2 : 3);
        }

        private byte[] randomBytes(int len) {
            byte[] b = new byte[len];
            for (int i = 0; i < len; i++) {
                int v;
                do {
                    int r = rnd.nextInt(95 + 128);
                    v = r < 95 ? 0x20 + r : 0x80 + (r - 95);
                } while (v == '/');
                b[i] = (byte) v;
            }
            return b;
        }

        private byte[] randomHighBytes(int len) {
            byte[] b = new byte[len];
            for (int i = 0; i < len; i++) {
                b[i] = (byte) (rnd.nextInt(4) == 0 ? 'a' + rnd.nextInt(26) : 0x80 + rnd.nextInt(128));
            }
            return b;
        }

        void add(DirectoryWriter w, String name) throws Ext4Exception {
            long t = fx.targets[rnd.nextInt(fx.targets.length)];
            w.add(bytes(name), t, DirEntry.FT_REG_FILE);
            entries.put(name, t);
            fx.links.merge(t, 1, Integer::sum);
        }

        void remove(DirectoryWriter w, String name) throws Ext4Exception {
            long expected = entries.remove(name);
            assertEquals(expected, w.remove(bytes(name)), "remove returns the entry's inode");
            fx.links.merge(expected, -1, Integer::sum);
        }

        void replace(DirectoryWriter w, String name) throws Ext4Exception {
            long old = entries.get(name);
            long t = fx.targets[rnd.nextInt(fx.targets.length)];
            assertEquals(old, w.replace(bytes(name), t, DirEntry.FT_REG_FILE), "replace returns the old inode");
            entries.put(name, t);
            fx.links.merge(old, -1, Integer::sum);
            fx.links.merge(t, 1, Integer::sum);
        }

        void removeFraction(DirectoryWriter w, double fraction) throws Ext4Exception {
            List<String> names = new ArrayList<>(entries.keySet());
            for (String n : names) {
                if (rnd.nextDouble() < fraction) {
                    remove(w, n);
                }
            }
        }
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("variants")
    void insertDeleteInsert(Variant v) throws Exception {
        DirFixture fx = DirFixture.create(work, v.name(), v.size(), v.mkfs(), 8, v.preBlocks(), v.debugfs());
        Model m = new Model(fx, v.name().hashCode());
        DirectoryWriter w = fx.writer();
        assertTrue(w.isEmpty());
        for (int i = 0; i < v.names(); i++) {
            m.add(w, m.newName());
        }
        assertFalse(w.isEmpty());
        verifyReadSide(fx, m, w);
        m.removeFraction(w, 0.5);
        // a fresh writer, as the fs layer makes one per operation
        w = fx.writer();
        for (int i = 0; i < v.names() / 2; i++) {
            m.add(w, m.newName());
        }
        List<String> some = new ArrayList<>(m.entries.keySet()).subList(0, 200);
        for (String n : some) {
            m.replace(w, n);
        }
        verifyReadSide(fx, m, fx.writer());
        assertEquals(v.levels(), fx.indirectLevels(), "indirect levels");
        if (v.levels() >= 0) {
            assertEquals(v.hashVersion(), DxNode.root(fx.cache.get(fx.map.map(0, 1).physical())).hashVersion(), "root hash version");
        }
        if (v.name().contains("unsigned")) {
            assertTrue(fx.fmt.hashUnsigned());
        }
        if (v.levels() < 0) {
            assertTrue(fx.indexCalls.isEmpty(), "a filesystem without dir_index never indexes");
        } else {
            assertEquals(List.of(true), fx.indexCalls, "indexed once, by make_indexed_dir()");
        }
        fx.finish();
        verifyImage(fx, m, v.levels());
    }

    /** Lookup of every name, readdir (whole and resumed) equal to the model, absent names absent. */
    static void verifyReadSide(DirFixture fx, Model m, DirectoryWriter w) throws Exception {
        for (DirEntries r : List.of(fx.reader(), w.reader())) {
            for (Map.Entry<String, Long> e : m.entries.entrySet()) {
                assertEquals(e.getValue(), r.lookup(bytes(e.getKey())), () -> "lookup " + e.getKey());
            }
            for (int i = 0; i < 50; i++) {
                assertEquals(0, r.lookup(bytes(m.newName())), "absent name");
            }
            List<FsUtil.Entry> all = FsUtil.readdirChunked(FsUtil.of(r), 997);
            Map<String, Long> seen = new HashMap<>();
            for (FsUtil.Entry e : all) {
                assertEquals(null, seen.put(e.nameString(), e.ino()), () -> "readdir returns " + e + " once");
            }
            assertEquals(fx.dirIno, seen.remove("."));
            assertTrue(seen.remove("..") != null);
            assertEquals(m.entries, seen, "readdir lists the model");
        }
    }

    static void verifyImage(DirFixture fx, Model m, int levels) {
        verifyImage(fx, fx.dirPath, m, levels);
    }

    /** e2fsck -fn clean, debugfs ls lists the model, htree_dump reads the tree. */
    static void verifyImage(DirFixture fx, String path, Model m, int levels) {
        Images.Result fsck = Images.run(List.of("e2fsck", "-fn", fx.img.toString()));
        assertEquals(0, fsck.exitCode(), () -> "e2fsck -fn:\n" + fsck.all());
        String ls = Images.debugfsRead(fx.img, "ls -p " + path);
        Map<String, Long> listed = new HashMap<>();
        for (String line : ls.split("\n")) {
            if (line.isEmpty()) {
                continue;
            }
            String[] f = line.split("/", -1);
            assertEquals(8, f.length, () -> "ls -p line " + line);
            if (Long.parseLong(f[1]) != 0) { // ls shows empty entries (inode 0) too
                listed.put(f[5], Long.parseLong(f[1]));
            }
        }
        assertEquals(fx.dirIno, listed.remove("."));
        assertTrue(listed.remove("..") != null);
        assertEquals(m.entries, listed, "debugfs ls lists the model");
        if (levels >= 0) {
            // any message on stderr (a checksum or read error) fails, except that without
            // metadata_csum debugfs complains it cannot compute checksums at all
            Images.Result r = Images.run(List.of("debugfs", "-R", "htree_dump " + path, fx.img.toString()));
            assertEquals(0, r.exitCode(), r::all);
            for (String line : r.stderr().split("\n")) {
                assertTrue(line.isBlank() || line.startsWith("debugfs ")
                        || !fx.fmt.metadataCsum() && line.contains("does not have space for checksum"), () -> "htree_dump: " + line);
            }
            String dump = r.stdout();
            assertTrue(dump.contains("Indirect levels: " + levels), () -> "htree_dump:\n" + dump.substring(0, Math.min(2000, dump.length())));
            assertFalse(dump.contains("Corrupted directory block"), "htree_dump reports no corrupt block");
        }
    }

    // ---- conversion, linear-only, the INDEX_FL of a filesystem without dir_index ----

    @Test
    void linearBecomesHtreeWhenTheFirstBlockFills() throws Exception {
        DirFixture fx = DirFixture.create(work, "convert", "32M", List.of("-b", "4096"), 1, 10);
        Model m = new Model(fx, 7);
        DirectoryWriter w = fx.writer();
        while (!w.indexed()) {
            assertEquals(fx.bs, w.sizeBytes(), "one linear block until it is full");
            m.add(w, m.newName(0));
        }
        assertEquals(3L * fx.bs, w.sizeBytes(), "root, and the old entries split into two leaves");
        assertEquals(3L * fx.bs, fx.sizeBytes);
        assertEquals(List.of(true), fx.indexCalls);
        ByteBuffer root = fx.cache.get(fx.map.map(0, 1).physical());
        DxNode dx = DxNode.root(root);
        assertEquals(fx.sb.defHashVersion(), dx.hashVersion());
        assertEquals(8, dx.infoLength());
        assertEquals(0, dx.indirectLevels());
        assertEquals(DxNode.expectedLimit(fx.bs, DxNode.ROOT_ENTRIES, true), dx.limit());
        assertEquals(2, dx.count());
        assertEquals(1, dx.block(0));
        assertEquals(2, dx.block(1));
        assertEquals(fx.dirIno, DirEntry.inode(root, 0));
        assertEquals(12, DirEntry.recLen(root, 0, fx.bs));
        assertEquals(fx.bs - 12, DirEntry.recLen(root, 12, fx.bs));
        assertEquals(2, DirEntry.inode(root, 12), "'..' is the root directory");
        verifyReadSide(fx, m, w);
        fx.finish();
        verifyImage(fx, m, 0);
    }

    @Test
    void withoutDirIndexAStaleIndexFlagIsCleared() throws Exception {
        DirFixture fx = DirFixture.create(work, "noindex", "32M", List.of("-b", "1024", "-O", "^dir_index"), 1, 80);
        fx.setIndexed(true);
        fx.indexCalls.clear();
        Model m = new Model(fx, 8);
        DirectoryWriter w = fx.writer();
        m.add(w, "first");
        assertEquals(List.of(false), fx.indexCalls, "ext4_update_dx_flag()");
        assertFalse(fx.readInode().hasFlag(Inode.INDEX_FL));
        for (int i = 0; i < 300; i++) {
            m.add(w, m.newName());
        }
        assertFalse(w.indexed());
        assertTrue(w.sizeBytes() > 10L * fx.bs, "grew linearly");
        verifyReadSide(fx, m, w);
        fx.finish();
        verifyImage(fx, m, -1);
    }

    /**
     * A root that dx_probe() refuses: without metadata_csum the index is dropped (EXT4_INDEX_FL
     * cleared) and the name goes in linearly, as ext4_add_entry() does; with it, EUCLEAN.
     */
    @ParameterizedTest
    @MethodSource("csumOnOff")
    void corruptIndex(boolean csum) throws Exception {
        List<String> mkfs = csum ? List.of("-b", "1024") : List.of("-b", "1024", "-O", "^metadata_csum");
        DirFixture fx = DirFixture.create(work, "corrupt" + csum, "32M", mkfs, 1, 60);
        Model m = new Model(fx, 14);
        DirectoryWriter w = fx.writer();
        for (int i = 0; i < 200; i++) {
            m.add(w, m.newName(0));
        }
        assertTrue(w.indexed());
        long p0 = fx.map.map(0, 1).physical();
        fx.cache.update(p0, b -> {
            b.put(DxNode.ROOT_INFO + 5, (byte) 9); // info_length 9
            if (csum) {
                DxNode.root(b).setChecksum(fx.inodeSeed);
            }
        });
        fx.indexCalls.clear();
        DirectoryWriter w2 = fx.writer();
        if (csum) {
            Expect.errno(Errno.EUCLEAN, () -> w2.add(bytes("after"), fx.targets[0], DirEntry.FT_REG_FILE));
            assertTrue(fx.indexCalls.isEmpty());
            return;
        }
        m.add(w2, "after");
        assertEquals(List.of(false), fx.indexCalls, "the index is dropped");
        assertFalse(w2.indexed());
        for (int i = 0; i < 100; i++) {
            m.add(w2, m.newName());
        }
        verifyReadSide(fx, m, w2);
        fx.finish();
        verifyImage(fx, m, -1);
    }

    static Stream<Boolean> csumOnOff() {
        return Stream.of(false, true);
    }

    // ---- deep trees ----

    /** 255-byte names on 1 KiB blocks (3 per leaf) until the tree has three levels (large_dir). */
    @Test
    void threeLevelsWithLargeDir() throws Exception {
        DirFixture fx = DirFixture.create(work, "large", "96M", List.of("-b", "1024", "-O", "large_dir"), 8, 17000);
        Model m = new Model(fx, 3);
        DirectoryWriter w = fx.writer();
        int extra = -1;
        for (int i = 0; i < 60_000 && extra != 0; i++) {
            m.add(w, m.newName(1));
            if (extra < 0 && fx.indirectLevels() == 2) {
                extra = 500;
            } else if (extra > 0) {
                extra--;
            }
        }
        assertEquals(2, fx.indirectLevels(), "three index levels");
        m.removeFraction(w, 0.3);
        for (int i = 0; i < 500; i++) {
            m.add(w, m.newName());
        }
        verifyReadSide(fx, m, w);
        fx.finish();
        verifyImage(fx, m, 2);
    }

    /** Without large_dir the index stops at two levels: ENOSPC, and the directory stays sound. */
    @Test
    void indexFullWithoutLargeDir() throws Exception {
        DirFixture fx = DirFixture.create(work, "full", "96M", List.of("-b", "1024"), 8, 17000);
        Model m = new Model(fx, 4);
        DirectoryWriter w = fx.writer();
        Ext4Exception full = null;
        for (int i = 0; i < 60_000 && full == null; i++) {
            String n = m.newName(1);
            try {
                m.add(w, n);
            } catch (Ext4Exception e) {
                full = e;
            }
        }
        assertTrue(full != null, "the index filled up");
        assertEquals(Errno.ENOSPC, full.errno(), full.toString());
        assertTrue(full.getMessage().contains("large_dir"), full.getMessage());
        assertEquals(1, fx.indirectLevels());
        // names that land in leaves with room still go in; removing makes room
        m.removeFraction(w, 0.5);
        for (int i = 0; i < 300; i++) {
            m.add(w, m.newName(0));
        }
        verifyReadSide(fx, m, w);
        fx.finish();
        verifyImage(fx, m, 1);
    }

    /**
     * Pairs of 255-byte names with equal hashes (found by a birthday search under this image's
     * seed): splits between equal hashes must set the collision bit, and lookups follow it. Where
     * loop mounts work, the kernel replays the same operations and must build the same tree.
     */
    @Test
    void hashCollisionsSetTheContinuationBit() throws Exception {
        Path base = baseImage("collide", List.of("-b", "1024"), new String[0]);
        dev.ext4j.format.Superblock sb = DirFixture.superblock(base);
        int version = sb.defHashVersion() + ((sb.flags() & dev.ext4j.format.Superblock.FLAG_UNSIGNED_HASH) != 0 ? 3 : 0);
        byte[] prefix = new byte[240];
        new Random(11).nextBytes(prefix);
        for (int i = 0; i < prefix.length; i++) {
            prefix[i] = (byte) ('a' + ((prefix[i] & 0xFF) % 26));
        }
        int n = 800_000;
        long[] keyed = new long[n];
        for (int i = 0; i < n; i++) {
            byte[] name = collisionName(prefix, i);
            keyed[i] = ((long) DxHash.major(DxHash.hash(name, version, sb.hashSeed())) << 32) | i;
        }
        Arrays.sort(keyed);
        List<String[]> pairs = new ArrayList<>();
        for (int i = 1; i < n; i++) {
            if ((keyed[i] >>> 32) == (keyed[i - 1] >>> 32)) {
                pairs.add(new String[] {
                        new String(collisionName(prefix, (int) keyed[i - 1]), StandardCharsets.ISO_8859_1),
                        new String(collisionName(prefix, (int) keyed[i]), StandardCharsets.ISO_8859_1)});
            }
        }
        assertTrue(pairs.size() >= 40, "found " + pairs.size() + " colliding pairs");
        Random rnd = new Random(12);
        List<String> adds = new ArrayList<>();
        List<String> removes = new ArrayList<>();
        for (String[] p : pairs) {
            adds.add("+" + p[0]);
            adds.add("+" + asciiName(rnd, 255));
            adds.add("+" + p[1]);
            adds.add("+" + asciiName(rnd, 1 + rnd.nextInt(40)));
            removes.add("-" + p[0]);
        }

        Path wimg = Images.copy(base, work.resolve("collide-writer.img"));
        DirFixture fx = DirFixture.open(wimg, "/d", List.of("/f0"), 3000);
        Model m = new Model(fx, 12);
        DirectoryWriter w = fx.writer();
        apply(m, w, adds);
        long continued = fx.indexEntries().stream().filter(e -> e[2] == 0 && (e[0] & 1) == 1).count();
        assertTrue(continued > 0, "some leaf split between equal hashes");
        verifyReadSide(fx, m, w);
        apply(m, w, removes);
        for (String[] p : pairs) {
            assertEquals(m.entries.get(p[1]), w.reader().lookup(bytes(p[1])), "the twin is still found");
        }
        verifyReadSide(fx, m, w);
        int levels = fx.indirectLevels();
        fx.finish();
        verifyImage(fx, m, levels);

        List<String> ops = new ArrayList<>(adds);
        ops.addAll(removes);
        Path kimg = kernelRun(base, "collide", ops);
        if (kimg != null) {
            assertSameLayout(kimg, wimg);
        }
    }

    private static byte[] collisionName(byte[] prefix, int i) {
        byte[] suffix = String.format("%015d", i).getBytes(StandardCharsets.ISO_8859_1);
        byte[] name = Arrays.copyOf(prefix, prefix.length + suffix.length);
        System.arraycopy(suffix, 0, name, prefix.length, suffix.length);
        return name;
    }

    // ---- the kernel as the reference ----

    /**
     * A kernel comparison: mkfs arguments, debugfs tweaks, names to add, only 255-byte names,
     * pre-mapped blocks, the indirect_levels reached.
     */
    record KernelCase(String name, List<String> mkfs, String[] debugfs, int names, boolean longNames, int preBlocks,
                      int levels) {
        @Override
        public String toString() {
            return name;
        }
    }

    static Stream<KernelCase> kernelCases() {
        return Stream.of(
                new KernelCase("k-1k-csum", List.of("-b", "1024"), new String[0], 5000, false, 3000, 1),
                new KernelCase("k-4k-csum", List.of("-b", "4096"), new String[0], 5000, false, 800, 0),
                new KernelCase("k-1k-nocsum-tea", List.of("-b", "1024", "-O", "^metadata_csum"),
                        new String[] {"ssv def_hash_version tea"}, 3000, false, 2000, 1),
                new KernelCase("k-1k-legacy-unsigned", List.of("-b", "1024"),
                        new String[] {"ssv def_hash_version legacy", "ssv flags 2"}, 3000, false, 2000, 1),
                new KernelCase("k-1k-large_dir", List.of("-b", "1024", "-O", "large_dir"), new String[0], 30_000, true, 22000, 2));
    }

    /**
     * The same adds and removes through the kernel (a loop mount, hard links to one file) and
     * through the writer must give the same logical directory: the same blocks, the same index
     * entries, the same entries at the same offsets. Skipped where loop mounts are not allowed.
     */
    @ParameterizedTest(name = "{0}")
    @MethodSource("kernelCases")
    void sameLayoutAsTheKernel(KernelCase kc) throws Exception {
        Path base = baseImage(kc.name(), kc.mkfs(), kc.debugfs());
        // the operations: add all, remove a third, add a third more, remove a third
        Random rnd = new Random(kc.name().hashCode());
        List<String> ops = new ArrayList<>();
        Set<String> live = new java.util.LinkedHashSet<>();
        int adds = kc.names();
        for (int round = 0; round < 2; round++) {
            for (int i = 0; i < adds; i++) {
                String n;
                do {
                    n = asciiName(rnd, kc.longNames() ? 255 : 1 + rnd.nextInt(255));
                } while (live.contains(n) || n.equals(".") || n.equals(".."));
                live.add(n);
                ops.add("+" + n);
            }
            for (String n : new ArrayList<>(live)) {
                if (rnd.nextInt(3) == 0) {
                    live.remove(n);
                    ops.add("-" + n);
                }
            }
            adds = kc.names() / 3;
        }
        Path kimg = kernelRun(base, kc.name(), ops);
        org.junit.jupiter.api.Assumptions.assumeTrue(kimg != null, "loop mount unavailable, kernel comparison skipped");

        Path wimg = Images.copy(base, work.resolve(kc.name() + "-writer.img"));
        DirFixture fx = DirFixture.open(wimg, "/d", List.of("/f0"), kc.preBlocks());
        Model m = new Model(fx, 1);
        apply(m, fx.writer(), ops);
        int levels = fx.indirectLevels();
        assertEquals(kc.levels(), levels, "indirect levels reached");
        fx.finish();
        verifyImage(fx, m, levels);
        assertSameLayout(kimg, wimg);
    }

    /** mkfs, then debugfs: {@code extra}, an empty /d and an empty file /f0 for entries to point at. */
    private Path baseImage(String name, List<String> mkfs, String[] extra) {
        Path base = work.resolve(name + "-base.img");
        Images.mkfs(base, "96M", mkfs, null);
        List<String> setup = new ArrayList<>(List.of(extra));
        setup.addAll(List.of("mkdir /d", "write /dev/null /f0"));
        Images.debugfsCmds(base, true, setup);
        return base;
    }

    /** Operations "+name" (add, pointing at the model's target) and "-name" (remove). */
    private static void apply(Model m, DirectoryWriter w, List<String> ops) throws Ext4Exception {
        for (String op : ops) {
            if (op.charAt(0) == '+') {
                m.add(w, op.substring(1));
            } else {
                m.remove(w, op.substring(1));
            }
        }
    }

    /**
     * The operations through the kernel on a copy of {@code base}: a loop mount, hard links to
     * /f0 and unlinks. Returns the image, or null when loop mounts are not allowed here.
     */
    private Path kernelRun(Path base, String name, List<String> ops) throws Exception {
        Path kimg = Images.copy(base, work.resolve(name + "-kernel.img"));
        Path mnt = java.nio.file.Files.createDirectories(work.resolve("mnt-" + name));
        Images.Result mount = Images.run(List.of("mount", "-o", "loop", kimg.toString(), mnt.toString()));
        if (mount.exitCode() != 0) {
            System.err.println("loop mount unavailable, no kernel comparison: " + mount.all().trim());
            return null;
        }
        try {
            Path d = mnt.resolve("d");
            Path f0 = mnt.resolve("f0");
            for (String op : ops) {
                if (op.charAt(0) == '+') {
                    java.nio.file.Files.createLink(d.resolve(op.substring(1)), f0);
                } else {
                    java.nio.file.Files.delete(d.resolve(op.substring(1)));
                }
            }
        } finally {
            Images.runOk(List.of("umount", mnt.toString()));
        }
        return kimg;
    }

    /** Same blocks, index entries and entries at the same offsets; slack bytes are not compared. */
    private static void assertSameLayout(Path kimg, Path wimg) throws Exception {
        List<String> kernel = DirFixture.layout(kimg, "/d");
        List<String> ours = DirFixture.layout(wimg, "/d");
        for (int i = 1; i < Math.min(kernel.size(), ours.size()); i++) {
            assertEquals(kernel.get(i), ours.get(i), "line " + i + " of the layout (kernel, then ours)");
        }
        assertEquals(kernel.get(0), ours.get(0), "size and index flag");
        assertEquals(kernel.size(), ours.size(), "blocks");
    }

    private static String asciiName(Random rnd, int len) {
        char[] c = new char[len];
        for (int i = 0; i < len; i++) {
            char x;
            do {
                x = (char) (0x21 + rnd.nextInt(0x7E - 0x21 + 1));
            } while (x == '/');
            c[i] = x;
        }
        return new String(c);
    }

    // ---- remove, replace, "..", empty, new directories ----

    @Test
    void removeCoalescesIntoThePreviousEntryOrClearsTheFirst() throws Exception {
        DirFixture fx = DirFixture.create(work, "remove", "32M", List.of("-b", "1024"), 1, 40);
        Model m = new Model(fx, 9);
        DirectoryWriter w = fx.writer();
        m.add(w, "aaaa");
        m.add(w, "bbbb");
        m.add(w, "cccc");
        long p0 = fx.map.map(0, 1).physical();
        ByteBuffer b = fx.cache.get(p0);
        assertEquals(24, offsetOf(fx, b, "aaaa"));
        assertEquals(12, DirEntry.recLen(b, 12, fx.bs), "'..' at its minimum once aaaa follows");
        m.remove(w, "bbbb");
        b = fx.cache.get(p0);
        assertEquals(24, DirEntry.recLen(b, 24, fx.bs), "aaaa swallowed bbbb");
        assertEquals(-1, offsetOf(fx, b, "bbbb"));
        m.remove(w, "aaaa");
        b = fx.cache.get(p0);
        assertEquals(12 + 24, DirEntry.recLen(b, 12, fx.bs), "'..' swallowed aaaa");
        m.add(w, "dd");
        assertEquals(24, offsetOf(fx, fx.cache.get(p0), "dd"), "the freed room is reused");

        // the first entry of an htree leaf keeps its place with inode 0
        while (!w.indexed()) {
            m.add(w, m.newName(0));
        }
        long p1 = fx.map.map(1, 1).physical();
        ByteBuffer leaf = fx.cache.get(p1);
        String first = new String(DirEntry.name(leaf, 0, DirEntry.nameLen(leaf, 0, true)), StandardCharsets.ISO_8859_1);
        int rec = DirEntry.recLen(leaf, 0, fx.bs);
        m.remove(w, first);
        leaf = fx.cache.get(p1);
        assertEquals(0, DirEntry.inode(leaf, 0));
        assertEquals(rec, DirEntry.recLen(leaf, 0, fx.bs));
        assertEquals(0, DirEntry.nameLen(leaf, 0, true));
        verifyReadSide(fx, m, w);
        // empty again after removing everything, htree or not
        for (String n : new ArrayList<>(m.entries.keySet())) {
            m.remove(w, n);
        }
        assertTrue(w.isEmpty());
        assertTrue(fx.writer().isEmpty());
        fx.finish();
        verifyImage(fx, m, 0);
    }

    private static int offsetOf(DirFixture fx, ByteBuffer b, String name) {
        int end = fx.bs - DirEntry.TAIL_SIZE;
        for (int off = 0; off < end; off += DirEntry.recLen(b, off, fx.bs)) {
            if (DirEntry.inode(b, off) != 0 && DirEntry.nameEquals(b, off, DirEntry.nameLen(b, off, true), bytes(name))) {
                return off;
            }
        }
        return -1;
    }

    @Test
    void errnos() throws Exception {
        DirFixture fx = DirFixture.create(work, "errnos", "32M", List.of("-b", "4096"), 1, 5);
        Model m = new Model(fx, 10);
        DirectoryWriter w = fx.writer();
        long t = fx.targets[0];
        m.add(w, "x");
        Expect.errno(Errno.EEXIST, () -> w.add(bytes("x"), t, DirEntry.FT_REG_FILE));
        Expect.errno(Errno.EEXIST, () -> w.add(bytes("."), t, DirEntry.FT_REG_FILE));
        Expect.errno(Errno.EEXIST, () -> w.add(bytes(".."), t, DirEntry.FT_REG_FILE));
        byte[] longName = new byte[256];
        Arrays.fill(longName, (byte) 'a');
        Expect.errno(Errno.ENAMETOOLONG, () -> w.add(longName, t, DirEntry.FT_REG_FILE));
        Expect.errno(Errno.ENAMETOOLONG, () -> w.remove(longName));
        Expect.errno(Errno.ENAMETOOLONG, () -> w.replace(longName, t, DirEntry.FT_REG_FILE));
        Expect.errno(Errno.EINVAL, () -> w.add(new byte[0], t, DirEntry.FT_REG_FILE));
        Expect.errno(Errno.EINVAL, () -> w.add(bytes("a/b"), t, DirEntry.FT_REG_FILE));
        Expect.errno(Errno.EINVAL, () -> w.remove(bytes(".")));
        Expect.errno(Errno.EINVAL, () -> w.remove(bytes("..")));
        Expect.errno(Errno.ENOENT, () -> w.remove(bytes("y")));
        Expect.errno(Errno.ENOENT, () -> w.replace(bytes("y"), t, DirEntry.FT_REG_FILE));
        byte[] max = Arrays.copyOf(longName, 255);
        m.add(w, new String(max, StandardCharsets.ISO_8859_1));
        Expect.errno(Errno.EEXIST, () -> w.add(max, t, DirEntry.FT_REG_FILE));
        verifyReadSide(fx, m, w);
        fx.finish();
        verifyImage(fx, m, -1);
    }

    /** rename of a directory to another parent: ".." of a linear and of an htree directory. */
    @ParameterizedTest
    @MethodSource("dotDotCases")
    void setDotDotMovesADirectory(int names) throws Exception {
        DirFixture fx = DirFixture.createAt(work, "dotdot" + names, "32M", List.of("-b", "1024"), 2, 100, "/p/d", "mkdir /p");
        Model m = new Model(fx, 13);
        DirectoryWriter w = fx.writer();
        for (int i = 0; i < names; i++) {
            m.add(w, m.newName());
        }
        assertEquals(names > 30, w.indexed());
        for (String n : new ArrayList<>(m.entries.keySet()).subList(0, Math.min(5, names))) {
            m.replace(w, n);
        }
        w.setDotDot(2);
        verifyReadSide(fx, m, w);
        assertEquals(2, fx.reader().lookup(bytes("..")));
        fx.finish();
        long p = Images.inodeOf(fx.img, "/p");
        Images.debugfs(fx.img, "unlink /p/d", "link <" + fx.dirIno + "> /d", "sif /p links_count 2",
                "sif / links_count " + (Images.statNumber(Images.stat(fx.img, "/"), "Links") + 1));
        assertTrue(p > 0);
        verifyImage(fx, "/d", m, names > 30 ? 0 : -1);
    }

    static Stream<Integer> dotDotCases() {
        return Stream.of(3, 200);
    }

    @ParameterizedTest
    @MethodSource("initNewCases")
    void initNewWritesWhatMke2fsWrites(List<String> mkfs) throws Exception {
        DirFixture fx = DirFixture.createAt(work, "init" + String.join("", mkfs).replace("^", "no").replace(",", ""), "256M", mkfs, 1, 0,
                "/d", "mkdir /n");
        long n = Images.inodeOf(fx.img, "/n");
        long pblk = Images.blocks(fx.img, "/n").get(0);
        ByteBuffer before = ByteBuffer.allocate(fx.bs);
        fx.cache.get(pblk).get(0, before.array());
        long off = Images.inodeByteOffset(fx.img, "/n", fx.bs);
        Inode inode = new Inode(Images.readAt(fx.img, off, fx.sb.inodeSize()));
        int seed = fx.fmt.metadataCsum()
                ? Checksums.crc32cLe32(Checksums.crc32cLe32(fx.sb.checksumSeed(), (int) n), (int) inode.generation()) : 0;
        fx.cache.update(pblk, b -> {
            for (int i = 0; i < fx.bs; i++) {
                b.put(i, (byte) 0x5A);
            }
        });
        DirectoryWriter.initNew(fx.cache, pblk, n, 2, fx.fmt, seed);
        byte[] after = new byte[fx.bs];
        fx.cache.get(pblk).get(0, after);
        assertArrayEquals(before.array(), after, "block 0 of a new directory");
        DirectoryWriter nw = new DirectoryWriter(fx.cache, n, (lblk, max) -> new Mapping(lblk, lblk == 0 ? pblk : 0, 1, false),
                fx.bs, false, fx.fmt, seed, 1, fx);
        assertTrue(nw.isEmpty());
        fx.finish();
        Images.Result fsck = Images.run(List.of("e2fsck", "-fn", fx.img.toString()));
        assertEquals(0, fsck.exitCode(), fsck::all);
    }

    static Stream<List<String>> initNewCases() {
        return Stream.of(List.of("-b", "4096"), List.of("-b", "1024", "-O", "^metadata_csum"),
                List.of("-b", "1024", "-O", "^filetype,^metadata_csum"), List.of("-b", "65536"));
    }

    @Test
    void sortMapSortsByUnsignedHash() {
        Random r = new Random(5);
        for (int round = 0; round < 2000; round++) {
            int count = 1 + r.nextInt(200);
            int[] h = new int[count];
            int[] o = new int[count];
            int[] s = new int[count];
            for (int i = 0; i < count; i++) {
                h[i] = r.nextInt(4) == 0 ? h[r.nextInt(i + 1)] : r.nextInt() & ~1;
                o[i] = i;
                s[i] = h[i] ^ 0x5555;
            }
            long[] expected = new long[count];
            for (int i = 0; i < count; i++) {
                expected[i] = h[i] & 0xFFFFFFFFL;
            }
            Arrays.sort(expected);
            DirectoryWriter.sortMap(h, o, s);
            Set<Integer> offsets = new TreeSet<>();
            for (int i = 0; i < count; i++) {
                assertEquals(expected[i], h[i] & 0xFFFFFFFFL, "position " + i);
                assertEquals(h[i] ^ 0x5555, s[i], "entries move whole");
                offsets.add(o[i]);
            }
            assertEquals(count, offsets.size());
        }
    }
}
