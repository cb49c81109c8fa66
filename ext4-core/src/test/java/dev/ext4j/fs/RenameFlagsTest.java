package dev.ext4j.fs;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.ext4j.Errno;
import dev.ext4j.Ext4Exception;
import dev.ext4j.format.Inode;
import dev.ext4j.testutil.Expect;
import dev.ext4j.testutil.ImageVariant;
import dev.ext4j.testutil.Images;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.Callable;
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
 * renameat2(2)'s flags: RENAME_NOREPLACE refuses a target that exists, RENAME_EXCHANGE swaps two
 * names (files and directories, in one directory or across two, with inline-data and htree
 * directories), and the flags the kernel refuses are EINVAL. e2fsck checks every ".." and link
 * count afterwards.
 */
class RenameFlagsTest {
    private static final long ROOT = Ext4FileSystem.ROOT_INO;
    private static final Ext4FileSystem.Time OLD = new Ext4FileSystem.Time(1_000_000, 0);

    @TempDir
    Path work;

    static Stream<ImageVariant> variants() {
        return Stream.of(
                new ImageVariant("4k", "32M", List.of("-b", "4096")),
                new ImageVariant("1k", "32M", List.of("-b", "1024")),
                new ImageVariant("inline_data", "32M", List.of("-b", "4096", "-O", "inline_data")));
    }

    private static byte[] name(String s) {
        return s.getBytes(StandardCharsets.UTF_8);
    }

    private static long file(Ext4FileSystem fs, long dir, String n, String content) throws Ext4Exception {
        long ino = fs.mknod(dir, name(n), 0100644, 0, 0, 0, 0);
        fs.write(ino, 0, ByteBuffer.wrap(name(content)));
        return ino;
    }

    private static String content(Ext4FileSystem fs, long ino) throws Ext4Exception {
        byte[] b = new byte[(int) fs.stat(ino).size()];
        fs.read(ino, 0, ByteBuffer.wrap(b));
        return new String(b, StandardCharsets.UTF_8);
    }

    /** Sets the times of {@code inos} long ago, so that a change of mtime can be seen. */
    private static void age(Ext4FileSystem fs, long... inos) throws Ext4Exception {
        for (long ino : inos) {
            fs.setAttributes(ino, null, null, null, OLD, OLD);
        }
    }

    static long ctimeNanos(Ext4FileSystem fs, long ino) throws Ext4Exception {
        FileAttributes a = fs.stat(ino);
        return a.ctimeSeconds() * 1_000_000_000L + a.ctimeNanos();
    }

    @Test
    void flagsTheKernelRefusesAreEinvalAndChangeNothing() throws Exception {
        Path img = Images.mkfs(work.resolve("flags.img"), "16M", List.of(), null);
        try (Ext4FileSystem fs = Ext4FileSystem.open(img, MountOptions.defaults())) {
            long a = file(fs, ROOT, "a", "A");
            long b = file(fs, ROOT, "b", "B");
            for (int flags : new int[] {Ext4FileSystem.RENAME_WHITEOUT, Ext4FileSystem.RENAME_NOREPLACE | Ext4FileSystem.RENAME_EXCHANGE,
                    Ext4FileSystem.RENAME_WHITEOUT | Ext4FileSystem.RENAME_EXCHANGE, 8, 1 << 30}) {
                Expect.errno(Errno.EINVAL, () -> fs.rename(ROOT, name("a"), ROOT, name("b"), flags));
                Expect.errno(Errno.EINVAL, () -> fs.rename(ROOT, name("a"), ROOT, name("c"), flags));
            }
            assertEquals(a, fs.lookup(ROOT, name("a")));
            assertEquals(b, fs.lookup(ROOT, name("b")));
            Expect.errno(Errno.ENOENT, () -> fs.lookup(ROOT, name("c")));
        }
        Images.assertClean(img);
    }

    @Test
    void noReplaceRefusesAnExistingTargetAndRenamesOtherwise() throws Exception {
        Path img = Images.mkfs(work.resolve("noreplace.img"), "16M", List.of(), null);
        int noReplace = Ext4FileSystem.RENAME_NOREPLACE;
        try (Ext4FileSystem fs = Ext4FileSystem.open(img, MountOptions.defaults())) {
            long dir = fs.mkdir(ROOT, name("d"), 0755, 0, 0);
            long a = file(fs, ROOT, "a", "A");
            long b = file(fs, dir, "b", "B");
            long sub = fs.mkdir(ROOT, name("sub"), 0755, 0, 0);
            fs.link(a, ROOT, name("a2"));
            Expect.errno(Errno.EEXIST, () -> fs.rename(ROOT, name("a"), dir, name("b"), noReplace));
            Expect.errno(Errno.EEXIST, () -> fs.rename(ROOT, name("a"), ROOT, name("a"), noReplace));
            Expect.errno(Errno.EEXIST, () -> fs.rename(ROOT, name("a"), ROOT, name("a2"), noReplace)); // even two names of one inode
            Expect.errno(Errno.EEXIST, () -> fs.rename(ROOT, name("sub"), dir, name("b"), noReplace));
            Expect.errno(Errno.ENOENT, () -> fs.rename(ROOT, name("nope"), dir, name("c"), noReplace));
            assertEquals(b, fs.lookup(dir, name("b")));
            assertEquals("B", content(fs, b));

            fs.rename(ROOT, name("a"), dir, name("c"), noReplace);
            assertEquals(a, fs.lookup(dir, name("c")));
            Expect.errno(Errno.ENOENT, () -> fs.lookup(ROOT, name("a")));
            fs.rename(ROOT, name("sub"), dir, name("sub"), noReplace);
            assertEquals(dir, fs.lookup(sub, name("..")));
            assertEquals(3, fs.stat(dir).nlink());
            assertEquals(4, fs.stat(ROOT).nlink(), "root: its own two, lost+found's and d's \"..\"; sub's left");
        }
        Images.assertClean(img);
        try (Ext4FileSystem fs = Ext4FileSystem.open(img, MountOptions.defaults().withReadOnly(true))) {
            long dir = fs.lookup(ROOT, name("d"));
            assertEquals("A", content(fs, fs.lookup(dir, name("c"))));
            assertEquals(dir, fs.lookup(fs.lookup(dir, name("sub")), name("..")));
        }
    }

    /**
     * The kernel as the oracle: the same exchanges (a file with a directory across parents, then
     * two directories across parents) made by the kernel's ext4 on a twin image show the same
     * link counts and types as ext4j's image does when the kernel mounts it.
     */
    @Test
    void exchangeShowsAsTheKernelsOwn() throws Exception {
        assumeTrue("root".equals(System.getProperty("user.name")) && Files.exists(Path.of("/dev/loop-control")),
                "kernel loop mounts need root and /dev/loop-control");
        Path ours = Images.mkfs(work.resolve("ours.img"), "16M", List.of(), null);
        Path theirs = Images.mkfs(work.resolve("theirs.img"), "16M", List.of(), null);
        int exchange = Ext4FileSystem.RENAME_EXCHANGE;
        try (Ext4FileSystem fs = Ext4FileSystem.open(ours, MountOptions.defaults())) {
            long p1 = fs.mkdir(ROOT, name("p1"), 0755, 0, 0);
            long p2 = fs.mkdir(ROOT, name("p2"), 0755, 0, 0);
            file(fs, p1, "f", "f");
            long d = fs.mkdir(p2, name("d"), 0755, 0, 0);
            fs.mkdir(d, name("sub"), 0755, 0, 0);
            fs.mkdir(p2, name("e"), 0755, 0, 0);
            fs.rename(p1, name("f"), p2, name("d"), exchange);
            fs.rename(p2, name("e"), p1, name("f"), exchange);
        }
        Images.assertClean(ours);
        String script = "import ctypes, os, sys\n"
                + "libc = ctypes.CDLL(None, use_errno=True)\n"
                + "def x(a, b):\n"
                + "    if libc.renameat2(-100, a.encode(), -100, b.encode(), 2) != 0:\n"
                + "        sys.exit('renameat2 %s %s: %s' % (a, b, os.strerror(ctypes.get_errno())))\n"
                + "m = sys.argv[1]\n"
                + "os.mkdir(m + '/p1'); os.mkdir(m + '/p2')\n"
                + "open(m + '/p1/f', 'w').write('f')\n"
                + "os.mkdir(m + '/p2/d'); os.mkdir(m + '/p2/d/sub'); os.mkdir(m + '/p2/e')\n"
                + "x(m + '/p1/f', m + '/p2/d')\n"
                + "x(m + '/p2/e', m + '/p1/f')\n";
        Path py = Files.writeString(work.resolve("exchange.py"), script);
        Path mnt = Files.createDirectories(work.resolve("mnt"));
        withKernelMount(theirs, mnt, "loop", () -> Images.runOk(List.of("python3", py.toString(), mnt.toString())));
        Images.assertClean(theirs);
        List<String> shown = List.of("p1", "p2", "p1/f", "p2/d", "p2/e", "p2/e/sub");
        String kernels = withKernelMount(theirs, mnt, "loop,ro", () -> statAll(mnt, shown));
        String ext4js = withKernelMount(ours, mnt, "loop,ro", () -> statAll(mnt, shown));
        assertEquals(kernels, ext4js);
        assertTrue(kernels.contains("p2/e/sub directory 2"), kernels);
    }

    private static String statAll(Path mnt, List<String> names) {
        StringBuilder b = new StringBuilder();
        for (String n : names) {
            b.append(n).append(' ').append(Images.runOk(List.of("stat", "-c", "%F %h", mnt.resolve(n).toString())).stdout());
        }
        return b.toString();
    }

    /** {@code mount -t ext4 -o opts img mnt}, {@code body}, and always the unmount. */
    private static <T> T withKernelMount(Path img, Path mnt, String opts, java.util.function.Supplier<T> body) {
        Images.Result r = Images.run(List.of("mount", "-t", "ext4", "-o", opts, img.toString(), mnt.toString()));
        assertEquals(0, r.exitCode(), "mount -o " + opts + " " + img + ": " + r.all());
        try {
            return body.get();
        } finally {
            if (Images.run(List.of("umount", mnt.toString())).exitCode() != 0) {
                Images.run(List.of("umount", "-l", mnt.toString()));
            }
        }
    }

    /**
     * Two renames onto one new name with RENAME_NOREPLACE, from two directories at once: the
     * check is made under the rename's locks, so exactly one wins and the other keeps its name.
     */
    @Test
    void noReplaceRacesHaveOneWinner() throws Exception {
        Path img = Images.mkfs(work.resolve("race.img"), "16M", List.of(), null);
        int rounds = 100;
        try (Ext4FileSystem fs = Ext4FileSystem.open(img, MountOptions.defaults());
             var pool = new AutoCloseableExecutor(2)) {
            long da = fs.mkdir(ROOT, name("a"), 0755, 0, 0);
            long db = fs.mkdir(ROOT, name("b"), 0755, 0, 0);
            long target = fs.mkdir(ROOT, name("t"), 0755, 0, 0);
            for (int i = 0; i < rounds; i++) {
                String n = "n" + i;
                long a = file(fs, da, n, "a");
                long b = file(fs, db, n, "b");
                CyclicBarrier start = new CyclicBarrier(2);
                Future<Errno> fa = pool.submit(() -> renameAfter(start, fs, da, n, target));
                Future<Errno> fb = pool.submit(() -> renameAfter(start, fs, db, n, target));
                Errno ea = fa.get(30, TimeUnit.SECONDS);
                Errno eb = fb.get(30, TimeUnit.SECONDS);
                assertTrue(ea == null ^ eb == null, "round " + i + ": one wins, one loses: " + ea + ", " + eb);
                assertEquals(Errno.EEXIST, ea == null ? eb : ea);
                long won = fs.lookup(target, name(n));
                assertEquals(ea == null ? a : b, won);
                assertEquals(ea == null ? b : a, fs.lookup(ea == null ? db : da, name(n)), "the loser keeps its name");
            }
        }
        Images.assertClean(img);
    }

    private static Errno renameAfter(CyclicBarrier start, Ext4FileSystem fs, long dir, String n, long target) throws Exception {
        start.await(30, TimeUnit.SECONDS);
        try {
            fs.rename(dir, name(n), target, name(n), Ext4FileSystem.RENAME_NOREPLACE);
            return null;
        } catch (Ext4Exception e) {
            return e.errno();
        }
    }

    /** A fixed pool that try-with-resources shuts down. */
    private static final class AutoCloseableExecutor implements AutoCloseable {
        private final ExecutorService pool;

        AutoCloseableExecutor(int threads) {
            pool = Executors.newFixedThreadPool(threads);
        }

        <T> Future<T> submit(Callable<T> task) {
            return pool.submit(task);
        }

        @Override
        public void close() throws InterruptedException {
            pool.shutdownNow();
            assertTrue(pool.awaitTermination(30, TimeUnit.SECONDS));
        }
    }

    /**
     * Exchanges between a small directory (inline with inline_data) and an htree one: a file with
     * a small directory across parents (the parents' counts move), two directories across parents
     * (both ".." change, the counts stay), two files in one directory; then what must fail.
     */
    @ParameterizedTest(name = "{0}")
    @MethodSource("variants")
    void exchangeSwapsTwoNames(ImageVariant v) throws Exception {
        Path img = Images.mkfs(work.resolve(v.name() + ".img"), v.size(), v.args(), null);
        int exchange = Ext4FileSystem.RENAME_EXCHANGE;
        long p1;
        long p2;
        long f;
        long d;
        long e;
        long g;
        long inner;
        try (Ext4FileSystem fs = Ext4FileSystem.open(img, MountOptions.defaults())) {
            p1 = fs.mkdir(ROOT, name("p1"), 0755, 0, 0);
            p2 = fs.mkdir(ROOT, name("p2"), 0755, 0, 0);
            for (int i = 0; i < 300; i++) {
                file(fs, p2, String.format("filler-with-a-long-name-%04d", i), "");
            }
            assertTrue((fs.stat(p2).flags() & Inode.INDEX_FL) != 0, "p2 is an htree directory");
            f = file(fs, p1, "f", "file f");
            d = fs.mkdir(p2, name("d"), 0700, 0, 0);
            inner = file(fs, d, "inner", "inside d");
            e = fs.mkdir(p2, name("e"), 0755, 0, 0);
            for (int i = 0; i < 300; i++) {
                file(fs, e, String.format("entry-of-e-with-a-long-name-%04d", i), "");
            }
            assertTrue((fs.stat(e).flags() & Inode.INDEX_FL) != 0, "e is an htree directory: its \"..\" is in the dx root");
            g = file(fs, p2, "g", "file g");
            if (v.name().equals("inline_data")) {
                assertTrue((fs.stat(p1).flags() & Inode.INLINE_DATA_FL) != 0, "p1 is an inline directory");
                assertTrue((fs.stat(d).flags() & Inode.INLINE_DATA_FL) != 0, "d is an inline directory");
            }
            assertEquals(2, fs.stat(p1).nlink());
            assertEquals(4, fs.stat(p2).nlink());

            // a file and a directory across parents: p2's count passes to p1
            age(fs, p1, p2);
            long fCtime = ctimeNanos(fs, f);
            long dCtime = ctimeNanos(fs, d);
            fs.rename(p1, name("f"), p2, name("d"), exchange);
            assertEquals(d, fs.lookup(p1, name("f")));
            assertEquals(f, fs.lookup(p2, name("d")));
            assertEquals(p1, fs.lookup(d, name("..")));
            assertEquals(inner, fs.lookup(d, name("inner")));
            assertEquals(3, fs.stat(p1).nlink());
            assertEquals(3, fs.stat(p2).nlink());
            assertEquals("file f", content(fs, f));
            for (long parent : new long[] {p1, p2}) {
                assertTrue(fs.stat(parent).mtimeSeconds() > OLD.seconds(), "mtime of parent " + parent + " moved");
                assertTrue(fs.stat(parent).ctimeSeconds() > OLD.seconds(), "ctime of parent " + parent + " moved");
            }
            assertTrue(ctimeNanos(fs, f) > fCtime, "ctime of the file moved");
            assertTrue(ctimeNanos(fs, d) > dCtime, "ctime of the directory moved");
        }
        Images.assertClean(img); // each ".." and count as e2fsck sees them, between the steps

        try (Ext4FileSystem fs = Ext4FileSystem.open(img, MountOptions.defaults())) {
            assertEquals(p1, fs.lookup(d, name("..")), "read from the image");
            // two directories (one small, one htree) across parents: both ".." change, the counts stay
            fs.rename(p2, name("e"), p1, name("f"), exchange);
            assertEquals(e, fs.lookup(p1, name("f")));
            assertEquals(d, fs.lookup(p2, name("e")));
            assertEquals(p1, fs.lookup(e, name("..")));
            assertEquals(p2, fs.lookup(d, name("..")));
            assertEquals(3, fs.stat(p1).nlink());
            assertEquals(3, fs.stat(p2).nlink());
        }
        Images.assertClean(img);

        try (Ext4FileSystem fs = Ext4FileSystem.open(img, MountOptions.defaults())) {
            assertEquals(p1, fs.lookup(e, name("..")), "read from the image");
            assertEquals(p2, fs.lookup(d, name("..")), "read from the image");
            // two files in one (htree) directory, and a directory with a file in it
            fs.rename(p2, name("g"), p2, name("d"), exchange);
            assertEquals(f, fs.lookup(p2, name("g")));
            assertEquals(g, fs.lookup(p2, name("d")));
            fs.rename(p2, name("e"), p2, name("d"), exchange);
            assertEquals(g, fs.lookup(p2, name("e")));
            assertEquals(d, fs.lookup(p2, name("d")));
            assertEquals(p2, fs.lookup(d, name("..")));
            assertEquals(3, fs.stat(p2).nlink());

            // two names of one inode, and one name with itself: nothing happens
            fs.link(g, p1, name("g2"));
            fs.rename(p1, name("g2"), p2, name("e"), exchange);
            fs.rename(p1, name("g2"), p1, name("g2"), exchange);
            assertEquals(g, fs.lookup(p1, name("g2")));
            assertEquals(g, fs.lookup(p2, name("e")));
            fs.unlink(p1, name("g2"));

            // what the kernel refuses
            Expect.errno(Errno.ENOENT, () -> fs.rename(p1, name("f"), p2, name("missing"), exchange));
            Expect.errno(Errno.ENOENT, () -> fs.rename(p1, name("missing"), p2, name("d"), exchange));
            long sub = fs.mkdir(d, name("sub"), 0755, 0, 0);
            Expect.errno(Errno.EINVAL, () -> fs.rename(p2, name("d"), d, name("sub"), exchange));
            Expect.errno(Errno.EINVAL, () -> fs.rename(d, name("sub"), p2, name("d"), exchange));
            fs.setFlags(g, fs.getFlags(g) | Inode.IMMUTABLE_FL);
            Expect.errno(Errno.EPERM, () -> fs.rename(p2, name("e"), p2, name("g"), exchange));
            fs.setFlags(g, fs.getFlags(g) & ~Inode.IMMUTABLE_FL);
            fs.setFlags(p1, fs.getFlags(p1) | Inode.APPEND_FL);
            Expect.errno(Errno.EPERM, () -> fs.rename(p2, name("g"), p1, name("f"), exchange));
            Expect.errno(Errno.EPERM, () -> fs.rename(p2, name("g"), p1, name("f"), 0)); // nor replaced there
            fs.setFlags(p1, fs.getFlags(p1) & ~Inode.APPEND_FL);
            assertEquals(f, fs.lookup(p2, name("g")));
            assertEquals(e, fs.lookup(p1, name("f")));
            assertEquals(g, fs.lookup(p2, name("e")));
            assertEquals(sub, fs.lookup(d, name("sub")));
        }
        Images.assertClean(img);
        try (Ext4FileSystem fs = Ext4FileSystem.open(img, MountOptions.defaults().withReadOnly(true))) {
            assertEquals(e, fs.lookup(p1, name("f")));
            assertEquals(p1, fs.lookup(e, name("..")));
            assertEquals(d, fs.lookup(p2, name("d")));
            assertEquals(p2, fs.lookup(d, name("..")));
            assertEquals(inner, fs.lookup(d, name("inner")));
            assertEquals("file g", content(fs, fs.lookup(p2, name("e"))));
            assertEquals("file f", content(fs, fs.lookup(p2, name("g"))));
            assertArrayEquals(new long[] {3, 3}, new long[] {fs.stat(p1).nlink(), fs.stat(p2).nlink()});
        }
    }
}
