package dev.ext4j.fs;

import static dev.ext4j.fs.RwModel.b;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.ext4j.Errno;
import dev.ext4j.Ext4Exception;
import dev.ext4j.format.Inode;
import dev.ext4j.fs.RwModel.Driver;
import dev.ext4j.fs.RwModel.Node;
import dev.ext4j.testutil.Expect;
import dev.ext4j.testutil.Images;
import java.lang.management.ManagementFactory;
import java.lang.management.ThreadInfo;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.EnumSet;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.Set;
import java.util.concurrent.CyclicBarrier;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * The read-write core against e2fsck, an in-memory model and the kernel: a mixed workload over
 * block sizes and feature sets, the error cases, ENOSPC and concurrent namespace changes. Every
 * test that changes an image closes it, requires {@code e2fsck -fn} to find nothing, reopens it
 * read-only to compare with the model and, where loop mounts work, has the kernel read it too.
 */
class ReadWriteTest {
    private static final long KIB = 1024;
    private static final long MIB = 1024 * KIB;
    private static final long GIB = 1024 * MIB;
    private static final int FALLOC_KEEP_SIZE = 0x01;
    private static final int FALLOC_PUNCH_HOLE = 0x02;
    private static final int FALLOC_ZERO_RANGE = 0x10;

    @TempDir
    Path work;

    record Variant(String name, int blockSize, String size, List<String> args) {
        boolean extents() {
            return !args.contains("ext3");
        }

        @Override
        public String toString() {
            return name;
        }
    }

    static Stream<Variant> variants() {
        return Stream.of(
                new Variant("default-4k", 4096, "96M", List.of("-b", "4096")),
                new Variant("default-1k", 1024, "96M", List.of("-b", "1024")),
                new Variant("nocsum-4k", 4096, "96M", List.of("-b", "4096", "-O", "^metadata_csum")),
                new Variant("ext3-1k", 1024, "96M", List.of("-b", "1024", "-t", "ext3")),
                new Variant("ext3-4k", 4096, "96M", List.of("-b", "4096", "-t", "ext3")),
                new Variant("default-64k", 65536, "256M", List.of("-b", "65536", "-N", "16384")),
                new Variant("no64bit-4k", 4096, "96M", List.of("-b", "4096", "-O", "^64bit")),
                new Variant("inline-4k", 4096, "96M", List.of("-b", "4096", "-O", "inline_data")));
    }

    private Path mkfs(Variant v) {
        return Images.mkfs(work.resolve(v.name() + ".img"), v.size(), v.args(), null);
    }

    private static Ext4FileSystem openRw(Path img) throws Ext4Exception {
        Ext4FileSystem fs = Ext4FileSystem.open(img, MountOptions.defaults());
        assertFalse(fs.isReadOnly(), "mounted read-write: " + fs.messages());
        return fs;
    }

    private static Ext4FileSystem openRo(Path img) throws Ext4Exception {
        return Ext4FileSystem.open(img, MountOptions.defaults().withReadOnly(true));
    }

    /** After close: e2fsck, then the model through a read-only ext4j mount and through the kernel. */
    private void checkImage(Path img, Node root) throws Exception {
        RwModel.assertFsckClean(img);
        try (Ext4FileSystem ro = openRo(img)) {
            RwModel.verifyFs(ro, root);
        }
        RwModel.verifyKernel(img, work.resolve("mnt"), root);
    }

    static byte[] random(Random rnd, long size) {
        byte[] d = new byte[(int) size];
        rnd.nextBytes(d);
        return d;
    }

    // ================================================================ 1. the workload

    @ParameterizedTest(name = "{0}")
    @MethodSource("variants")
    void workload(Variant v) throws Exception {
        Path img = mkfs(v);
        Random rnd = new Random(v.name().hashCode());
        Driver d;
        try (Ext4FileSystem fs = openRw(img)) {
            d = new Driver(fs);
            runWorkload(d, v, rnd);
        }
        checkImage(img, d.root);
    }

    private void runWorkload(Driver d, Variant v, Random rnd) throws Exception {
        int bs = v.blockSize();
        long ppb = bs / 4;
        // ---- a nested tree of files of many sizes, block edges and indirect-map edges included
        String[] dirs = {"/w", "/w/a", "/w/a/b", "/w/a/b/c", "/w/a/b/c/d", "/w/x", "/w/x/y", "/w/big", "/w/links", "/w/sparse", "/w/t"};
        for (String dir : dirs) {
            d.mkdir(dir, 0755);
        }
        List<Long> sizes = new ArrayList<>(List.of(0L, 1L, 100L, bs - 1L, (long) bs, bs + 1L, 2L * bs - 1, 12L * bs - 1,
                12L * bs, 12L * bs + 1, (12 + ppb) * bs, (12 + ppb) * bs + 1, 64 * KIB, 300 * KIB - 1, 300 * KIB));
        for (int i = 0; i < 15; i++) {
            sizes.add((long) rnd.nextInt((int) (300 * KIB) + 1));
        }
        List<String> files = new ArrayList<>();
        for (int i = 0; i < sizes.size(); i++) {
            String p = fp(dirs, i);
            d.create(p, 0644, i % 3 == 0 ? 1000 : 0, i % 3 == 0 ? 1000 : 0);
            d.write(p, 0, random(rnd, Math.min(sizes.get(i), 300 * KIB)), rnd);
            files.add(p);
        }
        // overwrites inside mapped blocks, unaligned, and appends past EOF inside the last block
        for (String p : files.subList(0, 12)) {
            Node n = d.node(p);
            long size = n.content.size;
            if (size > 10) {
                long off = rnd.nextInt((int) size);
                d.write(p, off, random(rnd, Math.min(size - off + 7, 1 + rnd.nextInt(3 * bs))), rnd);
            }
            d.write(p, n.content.size + rnd.nextInt(bs), random(rnd, 1 + rnd.nextInt(50)));
        }

        // ---- renames of files: within a directory, across, over existing files
        d.rename(fp(dirs, 12), "/w/a/f12-renamed");
        d.rename(fp(dirs, 1), "/w/x/f1-moved");
        d.rename(fp(dirs, 2), fp(dirs, 11)); // over an existing file, in another directory
        d.rename(fp(dirs, 4), fp(dirs, 10)); // over an existing file, same directory
        d.link("/w/x/f1-moved", "/w/links/f1-link");
        d.rename("/w/links/f1-link", "/w/x/f1-moved"); // two names of one inode: nothing happens
        assertTrue(d.exists("/w/links/f1-link"));

        // ---- renames of directories
        d.mkdir("/w/a/b/c/d/e", 0750);
        d.create("/w/a/b/c/d/e/inner", 0600);
        d.write("/w/a/b/c/d/e/inner", 0, random(rnd, 3 * bs + 5));
        d.rename("/w/a/b/c/d", "/w/a/b/c/d2"); // within its parent
        d.rename("/w/a/b/c/d2", "/w/x/moved"); // to another parent: ".." and both parents' counts change
        d.rename("/w/x/moved/e", "/w/e-up"); // to the grandparent's parent
        d.mkdir("/w/x/empty-target", 0700);
        d.rename("/w/a/b/c", "/w/x/empty-target"); // over an empty directory elsewhere
        d.mkdir("/w/x/y/empty2", 0700);
        d.rename("/w/x/moved", "/w/x/y/empty2"); // over an empty directory in a child
        d.rename("/w/e-up", "/w/a/e-back");
        d.mkdir("/w/x/sd1", 0755);
        d.mkdir("/w/x/sd2", 0755);
        d.rename("/w/x/sd1", "/w/x/sd2"); // over an empty directory in the same parent

        // ---- a directory of 3,000 entries, half of them deleted, then 5,000 more
        List<String> big = new ArrayList<>();
        for (int i = 0; i < 3000; i++) {
            String p = "/w/big/" + bigName(rnd, i);
            d.create(p, 0644);
            big.add(p);
        }
        Collections.shuffle(big, rnd);
        for (String p : big.subList(0, 1500)) {
            d.unlink(p);
        }
        for (int i = 3000; i < 8000; i++) {
            d.create("/w/big/" + bigName(rnd, i), 0644);
        }
        d.write(big.get(2000), 0, random(rnd, 3 * bs + 1));
        // renames inside the htree, into it over an entry, and out of it
        d.rename(big.get(2001), "/w/big/renamed-inside");
        d.rename("/w/a/f0", big.get(2002));
        d.rename(big.get(2003), "/w/a/f0");
        d.rename(big.get(2004), "/w/x/from-big");
        // an htree directory moved to another parent: its ".." lives in the dx root
        d.rename("/w/big", "/w/x/big-moved");
        d.create("/w/x/big-moved/after-move", 0644);
        // an htree directory emptied and removed
        d.mkdir("/w/t/wasbig", 0755);
        for (int i = 0; i < 400; i++) {
            d.create("/w/t/wasbig/" + bigName(rnd, i), 0644);
        }
        for (String name : new ArrayList<>(d.node("/w/t/wasbig").children.keySet())) {
            d.unlink("/w/t/wasbig/" + name);
        }
        d.rmdir("/w/t/wasbig");

        // ---- hard links
        d.link("/w/a/f6", "/w/links/h6a");
        d.link("/w/a/f6", "/w/x/y/h6b");
        d.link("/w/a/f6", "/w/a/h6c");
        d.unlink("/w/a/f6");
        d.rename(fp(dirs, 11), "/w/links/h6a"); // over one name of a linked file: the others stay
        d.write("/w/a/h6c", 5, random(rnd, 100));

        // ---- symlinks, fast and slow, and special files
        d.symlink("/w/links/s1", b("x"));
        d.symlink("/w/links/s59", b("t".repeat(59)));
        d.symlink("/w/links/s60", b("u".repeat(60)));
        d.symlink("/w/links/s200", b("../a/" + "v".repeat(195)));
        d.symlink("/w/links/smax", b("w".repeat(Math.min(bs, 4096) - 1)));
        d.mknod("/w/links/chr", Inode.S_IFCHR | 0620, 1, 3);
        d.mknod("/w/links/blk", Inode.S_IFBLK | 0660, 8, 1);
        d.mknod("/w/links/bigdev", Inode.S_IFCHR | 0600, 300, 70000);
        d.mknod("/w/links/fifo", Inode.S_IFIFO | 0644, 0, 0);
        d.mknod("/w/links/sock", Inode.S_IFSOCK | 0755, 0, 0);

        // ---- truncate down and up: the cut tail reads as zeros after growing again
        String t1 = "/w/t/t1";
        d.create(t1, 0644);
        d.write(t1, 0, random(rnd, 5L * bs + 123));
        d.truncate(t1, 2L * bs + 77);
        d.truncate(t1, 6L * bs + 5);
        d.write(t1, 8L * bs + 3, random(rnd, 10));
        String t2 = "/w/t/t2";
        d.create(t2, 0644);
        d.write(t2, 0, random(rnd, 10));
        d.truncate(t2, 0);
        d.truncate(t2, 3L * bs);
        String t3 = "/w/t/t3"; // deep into the double-indirect range on 1k, then back to direct blocks
        d.create(t3, 0644);
        d.write(t3, 0, random(rnd, Math.min((12 + ppb + 3) * bs + 10, 8 * MIB)), rnd);
        d.truncate(t3, 5L * bs + 1);
        d.truncate(t3, 20L * bs);
        d.write(t3, 15L * bs + 100, random(rnd, bs));
        String t4 = "/w/t/t4"; // truncate at exact block edges
        d.create(t4, 0644);
        d.write(t4, 0, random(rnd, 7L * bs));
        d.truncate(t4, 4L * bs);
        d.truncate(t4, 4L * bs + 1);
        d.truncate(t4, 9L * bs);

        // ---- many extents (a tree of several leaves), then punched, refilled and cut
        String frag = "/w/t/frag";
        String frag2 = "/w/t/frag2";
        d.create(frag, 0644);
        d.create(frag2, 0644);
        for (int i = 0; i < 600; i++) {
            d.write(frag, 2L * i * bs, random(rnd, bs));
            d.write(frag2, (long) i * bs, random(rnd, bs)); // interleaved allocation
        }
        d.fallocate(frag, FALLOC_PUNCH_HOLE | FALLOC_KEEP_SIZE, 100L * bs + 7, 300L * bs);
        for (int i = 150; i < 260; i++) {
            d.write(frag, (2L * i + 1) * bs - 3, random(rnd, 6));
        }
        d.truncate(frag, 900L * bs + 5);
        d.truncate(frag2, 10L * bs);

        // ---- fallocate: default, KEEP_SIZE, PUNCH_HOLE, ZERO_RANGE
        fallocateCases(d, v, rnd);

        // ---- open, unlink, still readable and writable, freed at release
        long ou = d.create("/w/t/open-unlinked", 0644);
        byte[] ouData = random(rnd, 3L * bs + 17);
        d.write("/w/t/open-unlinked", 0, ouData);
        d.fs.open(ou);
        d.unlink("/w/t/open-unlinked");
        assertArrayEquals(ouData, RwModel.fsRead(d.fs, ou, 0, ouData.length), "an open unlinked file stays readable");
        assertEquals(ouData.length, d.fs.write(ou, bs, ByteBuffer.wrap(ouData)));
        assertEquals(0, d.fs.stat(ou).nlink());
        d.fs.release(ou);
        long ou2 = d.create("/w/t/open-at-unmount", 0644); // still open at close(): freed then
        d.write("/w/t/open-at-unmount", 0, random(rnd, 5L * bs));
        d.fs.open(ou2);
        d.fs.open(ou2);
        d.unlink("/w/t/open-at-unmount");
        d.fs.release(ou2);

        // ---- mkdir and rmdir
        for (int i = 0; i < 20; i++) {
            d.mkdir("/w/t/dir" + i, 0755);
            if (i % 3 == 0) {
                d.mkdir("/w/t/dir" + i + "/sub", 0755);
            }
        }
        for (int i = 0; i < 20; i += 2) {
            if (i % 3 == 0) {
                d.rmdir("/w/t/dir" + i + "/sub");
            }
            d.rmdir("/w/t/dir" + i);
        }
        // ".." of directories whose inode numbers come back in other places
        long p1 = d.mkdir("/w/t/p1", 0755);
        long p2 = d.mkdir("/w/t/p2", 0755);
        for (int i = 0; i < 10; i++) {
            String parent = i % 2 == 0 ? "/w/t/p1" : "/w/t/p2";
            long q = d.mkdir(parent + "/q", 0755);
            assertEquals(i % 2 == 0 ? p1 : p2, d.fs.lookup(q, b("..")), "\"..\" of " + parent + "/q (inode " + q + ")");
            assertEquals(q, d.fs.lookup(q, b(".")));
            d.rmdir(parent + "/q");
        }
        String deep = "/w/t/deep";
        d.mkdir(deep, 0755);
        for (int i = 0; i < 10; i++) {
            deep += "/l" + i;
            d.mkdir(deep, 0755);
        }
        while (!deep.equals("/w/t/deep")) {
            d.rmdir(deep);
            deep = RwModel.parentOf(deep);
        }

        // ---- sparse writes at large offsets
        String s1 = "/w/sparse/s1";
        d.create(s1, 0644);
        d.write(s1, 0, random(rnd, 100));
        d.write(s1, GIB - 100, random(rnd, 5000));
        d.write(s1, 4 * GIB + 7, random(rnd, 10)); // byte offsets past 2^32
        String s2 = "/w/sparse/s2";
        d.create(s2, 0644);
        d.write(s2, GIB, random(rnd, 3L * bs));
        d.truncate(s2, GIB + bs + 10);
        d.write(s2, 2 * GIB, random(rnd, 1));
        if (v.extents()) {
            String s3 = "/w/sparse/last-block";
            d.create(s3, 0644);
            d.write(s3, 0xFFFFFFFEL * bs, random(rnd, bs)); // the last block an extent can map
            d.write(s3, 12345, random(rnd, 10));
        }

        // ---- attributes, last, so nothing later touches the times
        d.chmod("/w/a/f0", 04755);
        d.chown("/w/a/f0", 100000, 200000); // high 16 bits of uid and gid; clears setuid
        d.chmod("/w/x/y", 02775);
        d.chown("/w/x/y", 0, 4242);
        d.create("/w/x/y/inherits", 0640); // gets the setgid directory's group
        d.mkdir("/w/x/y/subdir", 0755); // and its setgid bit
        d.chmod("/w/links/s60", 0777);
        d.utimens("/w/a/f0", new Ext4FileSystem.Time(1_500_000_000L, 123_456_789), new Ext4FileSystem.Time(1_600_000_000L, 987_654_321));
        d.utimens("/w/links/s200", new Ext4FileSystem.Time(1_234_567_890L, 1), new Ext4FileSystem.Time(1_234_567_891L, 999_999_999));
        d.utimens("/w/x", null, new Ext4FileSystem.Time(4_000_000_000L, 500)); // past 2038: the epoch bits
        d.utimens("/w/t/t1", new Ext4FileSystem.Time(0, 0), new Ext4FileSystem.Time(1, 2));
    }

    /** File {@code i} of the tree, spread over the first six directories below /w. */
    private static String fp(String[] dirs, int i) {
        return dirs[1 + i % 6] + "/f" + i;
    }

    private static String bigName(Random rnd, int i) {
        return "entry-" + i + "-" + "n".repeat(rnd.nextInt(60));
    }

    private void fallocateCases(Driver d, Variant v, Random rnd) throws Exception {
        int bs = v.blockSize();
        // default mode: extends the size, reads as zeros; a write into the middle converts part of it
        String f1 = "/w/t/fa-default";
        d.create(f1, 0644);
        if (tryFallocate(d, v, f1, 0, 0, 5L * bs + 10)) {
            d.write(f1, 2L * bs + 7, random(rnd, 100));
            d.write(f1, 4L * bs, random(rnd, bs + 10)); // ends in the last preallocated block
            d.write(f1, 5L * bs + 50, random(rnd, 3 * bs)); // past it
        }
        // KEEP_SIZE: blocks past EOF, size unchanged; growing by truncate shows zeros
        String f2 = "/w/t/fa-keep";
        d.create(f2, 0644);
        d.write(f2, 0, random(rnd, 4L * bs - 3));
        if (tryFallocate(d, v, f2, FALLOC_KEEP_SIZE, 3L * bs, 10L * bs)) {
            assertEquals(4L * bs - 3, d.fs.stat(d.ino(f2)).size());
            d.truncate(f2, 8L * bs + 1);
            d.write(f2, 12L * bs - 5, random(rnd, 10));
            d.write(f2, 14L * bs, random(rnd, 10));
        }
        // PUNCH_HOLE: unaligned, whole blocks freed, edges zeroed; across EOF only up to EOF
        String f3 = "/w/t/fa-punch";
        d.create(f3, 0644);
        d.write(f3, 0, random(rnd, 8L * bs + 100));
        d.fallocate(f3, FALLOC_PUNCH_HOLE | FALLOC_KEEP_SIZE, bs + 10, 3L * bs);
        d.fallocate(f3, FALLOC_PUNCH_HOLE | FALLOC_KEEP_SIZE, 6L * bs, bs); // exactly one block
        d.fallocate(f3, FALLOC_PUNCH_HOLE | FALLOC_KEEP_SIZE, 5L * bs + 5, 10); // inside one block
        d.fallocate(f3, FALLOC_PUNCH_HOLE | FALLOC_KEEP_SIZE, 8L * bs - 10, 10L * bs); // across EOF
        d.write(f3, 2L * bs, random(rnd, 5)); // fills part of the hole again
        String f3b = "/w/t/fa-punch-big"; // a punch through indirect blocks on 1k
        d.create(f3b, 0644);
        d.write(f3b, 0, random(rnd, 300 * KIB), rnd);
        d.fallocate(f3b, FALLOC_PUNCH_HOLE | FALLOC_KEEP_SIZE, 10L * bs + 1, 200 * KIB);
        // ZERO_RANGE: inside the file, and past EOF (extends the size), and with KEEP_SIZE
        String f4 = "/w/t/fa-zero";
        d.create(f4, 0644);
        d.write(f4, 0, random(rnd, 6L * bs));
        if (tryFallocate(d, v, f4, FALLOC_ZERO_RANGE, bs / 2, 2L * bs)) {
            tryFallocate(d, v, f4, FALLOC_ZERO_RANGE, 5L * bs + 3, 3L * bs);
            tryFallocate(d, v, f4, FALLOC_ZERO_RANGE | FALLOC_KEEP_SIZE, 7L * bs, 4L * bs);
            d.write(f4, 9L * bs, random(rnd, 20));
        }
        // preallocated past EOF, then cut below EOF and grown again
        String f6 = "/w/t/fa-cut";
        d.create(f6, 0644);
        d.write(f6, 0, random(rnd, 2L * bs));
        if (tryFallocate(d, v, f6, FALLOC_KEEP_SIZE, bs, 8L * bs)) {
            d.truncate(f6, bs + 5);
            d.truncate(f6, 4L * bs);
        }
        // preallocate a large range, then write all over it
        String f5 = "/w/t/fa-large";
        d.create(f5, 0644);
        if (tryFallocate(d, v, f5, 0, 0, 2 * MIB)) {
            for (int i = 0; i < 20; i++) {
                d.write(f5, rnd.nextInt((int) (2 * MIB)), random(rnd, 1 + rnd.nextInt(3 * bs)));
            }
            d.truncate(f5, MIB + 3);
        }
    }

    /** Fallocate that may be refused on a file without extents (the kernel refuses it there). */
    private static boolean tryFallocate(Driver d, Variant v, String path, int mode, long off, long len) throws Ext4Exception {
        try {
            d.fallocate(path, mode, off, len);
            return true;
        } catch (Ext4Exception e) {
            if (!v.extents() && e.errno() == Errno.EOPNOTSUPP) {
                return false;
            }
            throw e;
        }
    }

    // ================================================================ 2. errors

    static Stream<Variant> errorVariants() {
        return Stream.of(
                new Variant("default-4k", 4096, "32M", List.of("-b", "4096")),
                new Variant("ext3-1k", 1024, "32M", List.of("-b", "1024", "-t", "ext3")));
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("errorVariants")
    void errors(Variant v) throws Exception {
        Path img = mkfs(v);
        int bs = v.blockSize();
        Random rnd = new Random(2);
        Driver d;
        try (Ext4FileSystem fs = openRw(img)) {
            d = new Driver(fs);
            d.mkdir("/e", 0755);
            d.mkdir("/e/dir", 0755);
            d.create("/e/dir/child", 0644);
            d.mkdir("/e/empty", 0755);
            d.create("/e/file", 0644);
            d.write("/e/file", 0, random(rnd, 100));
            d.mkdir("/e/a", 0755);
            d.mkdir("/e/a/b", 0755);
            d.mkdir("/e/a/b/c", 0755);
            long e = d.ino("/e");
            long file = d.ino("/e/file");
            long dir = d.ino("/e/dir");
            long a = d.ino("/e/a");
            long ab = d.ino("/e/a/b");
            long abc = d.ino("/e/a/b/c");
            byte[] n256 = b("n".repeat(256));
            int reg = Inode.S_IFREG | 0644;

            // ENAMETOOLONG: a 256-byte name anywhere; 255 bytes are fine
            Expect.errno(Errno.ENAMETOOLONG, () -> fs.mknod(e, n256, reg, 0, 0, 0, 0));
            Expect.errno(Errno.ENAMETOOLONG, () -> fs.mkdir(e, n256, 0755, 0, 0));
            Expect.errno(Errno.ENAMETOOLONG, () -> fs.symlink(e, n256, b("t"), 0, 0));
            Expect.errno(Errno.ENAMETOOLONG, () -> fs.link(file, e, n256));
            Expect.errno(Errno.ENAMETOOLONG, () -> fs.rename(e, b("file"), e, n256));
            Expect.errno(Errno.ENAMETOOLONG, () -> fs.lookup(e, n256));
            Expect.errno(Errno.ENAMETOOLONG, () -> fs.unlink(e, n256));
            Expect.errno(Errno.ENAMETOOLONG, () -> fs.rmdir(e, n256));
            Expect.errno(Errno.ENAMETOOLONG, () -> fs.symlink(e, b("long-target"), new byte[Math.min(bs, 4096)], 0, 0));
            d.create("/e/" + "n".repeat(255), 0600);
            d.rename("/e/" + "n".repeat(255), "/e/dir/" + "m".repeat(255));

            // EEXIST
            Expect.errno(Errno.EEXIST, () -> fs.mknod(e, b("file"), reg, 0, 0, 0, 0));
            Expect.errno(Errno.EEXIST, () -> fs.mknod(e, b("dir"), reg, 0, 0, 0, 0));
            Expect.errno(Errno.EEXIST, () -> fs.mkdir(e, b("file"), 0755, 0, 0));
            Expect.errno(Errno.EEXIST, () -> fs.mkdir(e, b("dir"), 0755, 0, 0));
            Expect.errno(Errno.EEXIST, () -> fs.symlink(e, b("dir"), b("x"), 0, 0));
            Expect.errno(Errno.EEXIST, () -> fs.link(file, e, b("dir")));
            Expect.errno(Errno.EEXIST, () -> fs.link(file, e, b("file")));
            Expect.errno(Errno.EEXIST, () -> fs.mkdir(e, b("."), 0755, 0, 0));
            Expect.errno(Errno.EEXIST, () -> fs.mknod(e, b(".."), reg, 0, 0, 0, 0));

            // ENOTEMPTY
            Expect.errno(Errno.ENOTEMPTY, () -> fs.rmdir(e, b("dir")));
            Expect.errno(Errno.ENOTEMPTY, () -> fs.rename(e, b("empty"), e, b("dir")));
            Expect.errno(Errno.ENOTEMPTY, () -> fs.rename(ab, b("c"), e, b("dir")));
            Expect.errno(Errno.ENOTEMPTY, () -> fs.rmdir(Ext4FileSystem.ROOT_INO, b("e")));

            // ENOTDIR
            Expect.errno(Errno.ENOTDIR, () -> fs.rmdir(e, b("file")));
            Expect.errno(Errno.ENOTDIR, () -> fs.rename(e, b("empty"), e, b("file")));
            Expect.errno(Errno.ENOTDIR, () -> fs.mknod(file, b("x"), reg, 0, 0, 0, 0));
            Expect.errno(Errno.ENOTDIR, () -> fs.mkdir(file, b("x"), 0755, 0, 0));
            Expect.errno(Errno.ENOTDIR, () -> fs.lookup(file, b("x")));
            Expect.errno(Errno.ENOTDIR, () -> fs.resolve(b("/e/file/x")));
            Expect.errno(Errno.ENOTDIR, () -> fs.readdir(file, 0, (n, i, t, next) -> true));
            Expect.errno(Errno.ENOTDIR, () -> fs.rename(e, b("file"), file, b("x")));

            // EISDIR
            Expect.errno(Errno.EISDIR, () -> fs.unlink(e, b("dir")));
            Expect.errno(Errno.EISDIR, () -> fs.rename(e, b("file"), e, b("empty")));
            Expect.errno(Errno.EISDIR, () -> fs.write(dir, 0, ByteBuffer.wrap(new byte[1])));
            Expect.errno(Errno.EISDIR, () -> fs.truncate(dir, 0));
            Expect.errno(Errno.EISDIR, () -> fs.read(dir, 0, ByteBuffer.allocate(10)));
            Expect.errno(Errno.EISDIR, () -> fs.fallocate(dir, 0, 0, 10));

            // EPERM: no hard links to directories
            Expect.errno(Errno.EPERM, () -> fs.link(dir, e, b("dirlink")));

            // EINVAL: a directory into its own subtree, and bad arguments
            Expect.errno(Errno.EINVAL, () -> fs.rename(e, b("a"), ab, b("a2")));
            Expect.errno(Errno.EINVAL, () -> fs.rename(e, b("a"), abc, b("a2")));
            Expect.errno(Errno.EINVAL, () -> fs.rename(e, b("a"), a, b("self")));
            Expect.errno(Errno.EINVAL, () -> fs.rename(a, b("b"), abc, b("b2")));
            Expect.errno(Errno.EINVAL, () -> fs.readlink(file));
            Expect.errno(Errno.EINVAL, () -> fs.truncate(file, -1));
            Expect.errno(Errno.EINVAL, () -> fs.fallocate(file, 0, 0, 0));
            Expect.errno(Errno.EINVAL, () -> fs.mknod(e, b("x"), Inode.S_IFDIR | 0755, 0, 0, 0, 0));

            // ENOENT
            Expect.errno(Errno.ENOENT, () -> fs.lookup(e, b("nope")));
            Expect.errno(Errno.ENOENT, () -> fs.unlink(e, b("nope")));
            Expect.errno(Errno.ENOENT, () -> fs.rmdir(e, b("nope")));
            Expect.errno(Errno.ENOENT, () -> fs.rename(e, b("nope"), e, b("x")));
            Expect.errno(Errno.ENOENT, () -> fs.rename(e, b("nope"), dir, b("x")));
            Expect.errno(Errno.ENOENT, () -> fs.resolve(b("/nope/x")));
            Expect.errno(Errno.ENOENT, () -> fs.symlink(e, b("empty-target"), new byte[0], 0, 0));
            long gone = d.create("/e/gone", 0644);
            fs.open(gone);
            d.unlink("/e/gone");
            Expect.errno(Errno.ENOENT, () -> fs.link(gone, e, b("back")));
            fs.release(gone);
            long removedDir = d.mkdir("/e/removed", 0755);
            d.rmdir("/e/removed");
            Expect.errno(Errno.ENOENT, () -> fs.mknod(removedDir, b("x"), reg, 0, 0, 0, 0));
            Expect.errno(Errno.ENOENT, () -> fs.mkdir(removedDir, b("x"), 0755, 0, 0));

            // EFBIG: the largest size the block map allows; a write across it is cut short there
            long p = bs / 4;
            long max = v.extents() ? 0xFFFFFFFFL * bs : (12 + p + p * p + p * p * p) * bs;
            String huge = "/e/huge";
            long hugeIno = d.create(huge, 0644);
            Expect.errno(Errno.EFBIG, () -> fs.write(hugeIno, max, ByteBuffer.wrap(new byte[1])));
            Expect.errno(Errno.EFBIG, () -> fs.write(hugeIno, max + 12345, ByteBuffer.wrap(new byte[1])));
            Expect.errno(Errno.EFBIG, () -> fs.truncate(hugeIno, max + 1));
            if (v.extents()) {
                Expect.errno(Errno.EFBIG, () -> fs.fallocate(hugeIno, 0, max - 5, 10));
            }
            byte[] tail = random(rnd, 10);
            assertEquals(4, fs.write(hugeIno, max - 4, ByteBuffer.wrap(tail)), "a write across the largest size is cut there");
            d.node(huge).content.write(max - 4, tail, 0, 4);
            d.write(huge, max - bs - 3, random(rnd, 7));
            d.truncate(huge, max);
            d.write(huge, 3, random(rnd, 5));
            assertEquals(max, fs.stat(hugeIno).size());

            // nothing above changed anything it should not have
            RwModel.verifyFs(fs, d.root);
        }
        checkImage(img, d.root);

        // EROFS on a read-only mount, which leaves the image as it was
        String before = Images.sha256(img);
        try (Ext4FileSystem ro = openRo(img)) {
            assertTrue(ro.isReadOnly());
            assertTrue(ro.statfs(false).readOnly());
            long e = ro.resolve(b("/e"));
            long file = ro.resolve(b("/e/file"));
            Expect.errno(Errno.EROFS, () -> ro.mknod(e, b("x"), Inode.S_IFREG | 0644, 0, 0, 0, 0));
            Expect.errno(Errno.EROFS, () -> ro.mkdir(e, b("x"), 0755, 0, 0));
            Expect.errno(Errno.EROFS, () -> ro.symlink(e, b("x"), b("t"), 0, 0));
            Expect.errno(Errno.EROFS, () -> ro.link(file, e, b("x")));
            Expect.errno(Errno.EROFS, () -> ro.unlink(e, b("file")));
            Expect.errno(Errno.EROFS, () -> ro.rmdir(e, b("empty")));
            Expect.errno(Errno.EROFS, () -> ro.rename(e, b("file"), e, b("x")));
            Expect.errno(Errno.EROFS, () -> ro.write(file, 0, ByteBuffer.wrap(new byte[1])));
            Expect.errno(Errno.EROFS, () -> ro.truncate(file, 0));
            Expect.errno(Errno.EROFS, () -> ro.fallocate(file, 0, 0, 10));
            Expect.errno(Errno.EROFS, () -> ro.setAttributes(file, 0600, null, null, null, null));
            Expect.errno(Errno.EROFS, () -> ro.setXattr(file, "user.x", new byte[1], 0));
            Expect.errno(Errno.EROFS, () -> ro.removeXattr(file, "user.x"));
            ro.open(file);
            ro.release(file);
            ro.sync();
            RwModel.verifyFs(ro, d.root);
        }
        assertEquals(before, Images.sha256(img), "a read-only mount does not write");
    }

    /** EMLINK at 65,000 links (EXT4_LINK_MAX); unlinking one makes room for one more. */
    @Test
    void emlink() throws Exception {
        Path img = Images.mkfs(work.resolve("emlink.img"), "32M", List.of("-b", "1024"), null);
        Driver d;
        try (Ext4FileSystem fs = openRw(img)) {
            d = new Driver(fs);
            d.mkdir("/l", 0755);
            long target = d.create("/l/target", 0644);
            d.write("/l/target", 0, b("linked"));
            Node node = d.node("/l/target");
            int perDir = 5000;
            long dirIno = 0;
            Node dirNode = null;
            for (int i = 1; i < Namei.LINK_MAX; i++) {
                if ((i - 1) % perDir == 0) {
                    String dp = "/l/d" + (i - 1) / perDir;
                    dirIno = d.mkdir(dp, 0755);
                    dirNode = d.node(dp);
                }
                String name = "h" + i;
                fs.link(target, dirIno, b(name));
                dirNode.children.put(name, node);
                node.links++;
            }
            assertEquals(Namei.LINK_MAX, fs.stat(target).nlink());
            long last = dirIno;
            Expect.errno(Errno.EMLINK, () -> fs.link(target, last, b("one-too-many")));
            d.unlink("/l/d0/h1");
            d.link("/l/target", "/l/d0/h1-again");
            Expect.errno(Errno.EMLINK, () -> fs.link(target, last, b("one-too-many")));
        }
        checkImage(img, d.root);
    }

    // ================================================================ 3. ENOSPC

    static Stream<Variant> enospcVariants() {
        return Stream.of(
                new Variant("default-1k", 1024, "8M", List.of("-b", "1024")),
                new Variant("ext3-1k", 1024, "8M", List.of("-b", "1024", "-t", "ext3")));
    }

    /**
     * ext4_has_free_clusters(): an ordinary user's data stops at the blocks reserved for root
     * (mkfs -m) plus the 2% kept for everyone; root's stops at the 2%.
     */
    @Test
    void ordinaryUsersStopAtTheRootReserveAndRootAtTheTwoPercent() throws Exception {
        Path img = Images.mkfs(work.resolve("reserve.img"), "32M", List.of("-b", "4096", "-m", "5"), null);
        long forRoot = Long.parseLong(Images.dumpe2fsHeader(img).get("Reserved block count").trim());
        long resv = Math.min(8192 / 50, 4096);
        try (Ext4FileSystem fs = openRw(img)) {
            long ino = fs.mknod(Ext4FileSystem.ROOT_INO, b("big"), 0100666, 0, 0, 1000, 1000);
            long off = fillUntilEnospc(fs, ino, 0, 1000);
            assertEquals(forRoot + resv, fs.statfs(false).freeBlocks(), "uid 1000 leaves root's blocks and the 2%");
            long more = fillUntilEnospc(fs, ino, off, 0);
            assertEquals(forRoot * 4096, more - off, "root may use its reserve, and only that");
            assertEquals(resv, fs.statfs(false).freeBlocks(), "nobody's data takes the last 2%");
            assertEquals(0, fs.statfs(false).availableBlocks());
        }
        Images.assertClean(img);
    }

    /**
     * Writes move mtime and ctime on a coarse clock, as the kernel's file_update_time(): a run of
     * writes may leave them for a tick, but never once attributes have shown them (multigrain
     * timestamps), so a stat, a write and a stat always see the times move.
     */
    @Test
    void aWriteAfterAStatMovesTheTimesHoweverSoonItComes() throws Exception {
        Path img = Images.mkfs(work.resolve("times.img"), "32M", List.of(), null);
        try (Ext4FileSystem fs = openRw(img)) {
            long ino = fs.mknod(Ext4FileSystem.ROOT_INO, b("f"), 0100644, 0, 0, 0, 0);
            for (int round = 0; round < 200; round++) {
                FileAttributes before = fs.stat(ino);
                assertEquals(1, fs.write(ino, round, ByteBuffer.wrap(b("x"))));
                fs.write(ino, round + 1, ByteBuffer.wrap(b("y"))); // right after: may leave the times
                FileAttributes after = fs.stat(ino);
                long was = before.mtimeSeconds() * 1_000_000_000L + before.mtimeNanos();
                long now = after.mtimeSeconds() * 1_000_000_000L + after.mtimeNanos();
                assertTrue(now > was, "round " + round + ": mtime " + was + " -> " + now);
                assertEquals(now, after.ctimeSeconds() * 1_000_000_000L + after.ctimeNanos(), "ctime moves with mtime");
            }
        }
        RwModel.assertFsckClean(img);
    }

    /**
     * An xattr block comes out of the same free blocks as file data (ext4_new_meta_blocks() without
     * EXT4_MB_USE_RESERVED): not those promised to delayed writes, root's or the last 2%.
     */
    @Test
    void anXattrBlockLeavesPromisedAndReservedBlocksAlone() throws Exception {
        Path img = Images.mkfs(work.resolve("xattr-reserve.img"), "32M", List.of("-b", "4096", "-m", "5", "-I", "128"), null);
        try (Ext4FileSystem fs = openRw(img)) {
            long big = fs.mknod(Ext4FileSystem.ROOT_INO, b("big"), 0100666, 0, 0, 1000, 1000);
            long small = fs.mknod(Ext4FileSystem.ROOT_INO, b("small"), 0100666, 0, 0, 1000, 1000);
            fillUntilEnospc(fs, big, 0, 1000); // dirty pages: their blocks are promised, not yet taken
            long free = fs.statfs(false).freeBlocks();
            Caller.set(1000, 1000);
            try {
                // 128-byte inodes have no room for xattrs: this one needs a block
                Expect.errno(Errno.ENOSPC, () -> fs.setXattr(small, "user.note", new byte[100], 0));
            } finally {
                Caller.set(0, 0);
            }
            assertEquals(free, fs.statfs(false).freeBlocks(), "the failed setxattr took no block");
            fs.setXattr(small, "user.note", new byte[100], 0); // root may use its reserve
            assertEquals(free - 1, fs.statfs(false).freeBlocks());
        }
        Images.assertClean(img);
    }

    /** Writes 64 KiB chunks as {@code uid} until ENOSPC; returns the offset reached. */
    private static long fillUntilEnospc(Ext4FileSystem fs, long ino, long from, long uid) throws Exception {
        Caller.set(uid, uid);
        long off = from;
        try {
            while (true) {
                off += fs.write(ino, off, ByteBuffer.allocate(65536));
            }
        } catch (Ext4Exception e) {
            assertEquals(Errno.ENOSPC, e.errno(), e.toString());
        } finally {
            Caller.set(0, 0);
        }
        return off;
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("enospcVariants")
    void enospc(Variant v) throws Exception {
        Path img = mkfs(v);
        Random rnd = new Random(28);
        Driver d;
        StatFs fresh;
        // no blocks held back from data (reserved_clusters=0), so the fill reaches the last block
        try (Ext4FileSystem fs = Ext4FileSystem.open(img, MountOptions.defaults().withReservedClusters(0))) {
            d = new Driver(fs);
            fresh = fs.statfs(false);
            d.mkdir("/fill", 0755);
            // a directory whose one block is exactly full, and a file to free one block from later
            d.mkdir("/one", 0755);
            // 1k blocks less "." and ".." (and the metadata_csum tail) in entries for 40-byte names
            int perBlock = (1024 - (v.extents() ? 12 : 0) - 24) / 48;
            for (int i = 0; i < perBlock; i++) {
                d.create(String.format("/one/%040d", i), 0644);
            }
            assertEquals(1024, fs.stat(d.ino("/one")).size());
            d.create("/victim", 0644);
            d.write("/victim", 0, random(rnd, 3 * 1024));
            d.create("/fragmented", 0644); // four extents: the root in the inode is full (ext3: direct blocks)
            for (int i = 0; i < 4; i++) {
                d.write("/fragmented", 2L * i * 1024, random(rnd, 1024));
            }
            // data until ENOSPC: short writes are fine, what they report is what is there
            List<String> files = new ArrayList<>();
            boolean full = false;
            for (int i = 0; !full; i++) {
                String p = "/fill/f" + i;
                long ino = d.create(p, 0644);
                files.add(p);
                Node n = d.node(p);
                long off = i % 5 == 0 ? rnd.nextInt(20000) : 0; // some files start with a hole
                for (int k = 0; k < 6 && !full; k++) {
                    byte[] data = random(rnd, 1 + rnd.nextInt(40000));
                    int pos = 0;
                    while (pos < data.length) {
                        try {
                            int w = fs.write(ino, off + pos, ByteBuffer.wrap(data, pos, data.length - pos));
                            assertTrue(w > 0);
                            n.content.write(off + pos, data, pos, w);
                            pos += w;
                        } catch (Ext4Exception e) {
                            assertEquals(Errno.ENOSPC, e.errno(), e.toString());
                            full = true;
                            break;
                        }
                    }
                    off += pos;
                }
            }
            // delayed allocation promised map blocks that writeback may not need; once written
            // back, what is left over is filled too (writes go straight to blocks when space is low)
            fs.sync();
            long last = d.create("/fill/last", 0644);
            files.add("/fill/last");
            for (long at = 0; ; at += 1024) {
                byte[] data = random(rnd, 1024);
                try {
                    assertEquals(1024, fs.write(last, at, ByteBuffer.wrap(data)));
                    d.node("/fill/last").content.write(at, data, 0, 1024);
                } catch (Ext4Exception e) {
                    assertEquals(Errno.ENOSPC, e.errno(), e.toString());
                    break;
                }
            }
            assertEquals(0, fs.statfs(false).freeBlocks(), "no free block is left when a write gets ENOSPC");
            // one free block: the first directory split gets block 1 and fails on block 2; the
            // directory keeps an index over one leaf, as make_indexed_dir() leaves it
            d.truncate("/victim", 2 * 1024);
            assertEquals(1, fs.statfs(false).freeBlocks());
            Driver dd = d;
            Expect.errno(Errno.ENOSPC, () -> dd.create(String.format("/one/%040d", 999), 0644));
            assertEquals(0, fs.statfs(false).freeBlocks());
            assertEquals(2048, fs.stat(d.ino("/one")).size());
            assertTrue((fs.stat(d.ino("/one")).flags() & Inode.INDEX_FL) != 0, "the directory is indexed");
            // one free block again: a new extent that needs a tree block (ext3: the first block
            // past the direct ones, which needs an indirect block) gets the data block but not the
            // map block; the data block goes back and nothing is written
            d.truncate("/victim", 1024);
            long fragmented = d.ino("/fragmented");
            long mapBlockNeeded = v.extents() ? 8 : 12;
            Expect.errno(Errno.ENOSPC, () -> fs.write(fragmented, mapBlockNeeded * 1024, ByteBuffer.wrap(new byte[1024])));
            assertEquals(1, fs.statfs(false).freeBlocks(), "the data block of the failed write was given back");
            assertEquals(7 * 1024, fs.stat(fragmented).size());
            d.write("/victim", 1024, random(rnd, 1024)); // takes it
            assertEquals(0, fs.statfs(false).freeBlocks());
            // with no block free: a write into a new hole, fallocate and a new directory fail; overwriting works
            String first = files.get(1); // written from offset 0 on
            long firstIno = d.ino(first);
            long firstSize = d.node(first).content.size;
            Expect.errno(Errno.ENOSPC, () -> fs.write(firstIno, firstSize + 100_000, ByteBuffer.wrap(new byte[10])));
            Expect.errno(v.extents() ? Errno.ENOSPC : Errno.EOPNOTSUPP, () -> fs.fallocate(firstIno, 0, firstSize + 200_000, 10_000));
            Expect.errno(Errno.ENOSPC, () -> fs.mkdir(Ext4FileSystem.ROOT_INO, b("nodir"), 0755, 0, 0));
            d.write(first, 0, random(rnd, (int) Math.min(firstSize, 3000)));
            // empty files until the directory needs a block it cannot get
            long fill = d.ino("/fill");
            for (int i = 0; ; i++) {
                try {
                    d.create("/fill/empty-" + i + "-" + "z".repeat(100), 0644);
                } catch (Ext4Exception e) {
                    assertEquals(Errno.ENOSPC, e.errno(), e.toString());
                    break;
                }
            }
            Expect.errno(Errno.ENOSPC, () -> fs.symlink(fill, b("slow-" + "z".repeat(100)), b("s".repeat(200)), 0, 0));
            Expect.errno(Errno.ENOSPC, () -> fs.mkdir(fill, b("dir-" + "z".repeat(100)), 0755, 0, 0));
            assertEquals(firstSize, fs.stat(firstIno).size());
            // two free blocks, a write of two blocks from the last direct one: on ext3 the second
            // needs an indirect block too, so the write stops after the first (a short write)
            d.truncate("/victim", 0);
            assertEquals(2, fs.statfs(false).freeBlocks());
            long straddle = d.create("/straddle", 0644);
            byte[] two = random(rnd, 2048);
            int wrote = fs.write(straddle, 11 * 1024, ByteBuffer.wrap(two));
            assertEquals(v.extents() ? 2048 : 1024, wrote);
            d.node("/straddle").content.write(11 * 1024, two, 0, wrote);
            assertEquals(11 * 1024 + wrote, fs.stat(straddle).size());
            assertEquals(v.extents() ? 0 : 1, fs.statfs(false).freeBlocks());
            RwModel.verifyFs(fs, d.root);
        }
        // everything written before the ENOSPCs is there, and the failed creates left nothing behind
        checkImage(img, d.root);

        try (Ext4FileSystem fs = openRw(img)) {
            d = new Driver(fs, d.root);
            // free some blocks, then empty files until the inodes run out
            for (int i = 2; fs.statfs(false).freeBlocks() < 200; i++) {
                d.unlink("/fill/f" + i);
            }
            d.mkdir("/inodes", 0755);
            boolean inodesOut = false;
            for (int i = 0; !inodesOut; i++) {
                try {
                    d.create("/inodes/e" + i, 0644);
                } catch (Ext4Exception e) {
                    assertEquals(Errno.ENOSPC, e.errno(), e.toString());
                    inodesOut = true;
                }
            }
            assertEquals(0, fs.statfs(false).freeInodes(), "the ENOSPC came from the inodes");
            assertTrue(fs.statfs(false).freeBlocks() > 0);
            Expect.errno(Errno.ENOSPC, () -> fs.mkdir(Ext4FileSystem.ROOT_INO, b("nodir"), 0755, 0, 0));
            Expect.errno(Errno.ENOSPC, () -> fs.symlink(Ext4FileSystem.ROOT_INO, b("nolink"), b("t"), 0, 0));
            d.link("/fill/f1", "/inodes/hard-link-needs-no-inode");
        }
        checkImage(img, d.root);

        // delete everything: the free counts come back to what mkfs left
        try (Ext4FileSystem fs = openRw(img)) {
            d = new Driver(fs, d.root);
            List<String> paths = d.paths();
            Collections.reverse(paths);
            for (String p : paths) {
                if (p.startsWith("/lost+found")) {
                    continue;
                }
                if (d.node(p).isDir()) {
                    d.rmdir(p);
                } else {
                    d.unlink(p);
                }
            }
            assertEquals(fresh.freeBlocks(), fs.statfs(false).freeBlocks(), "free blocks after deleting everything");
            assertEquals(fresh.freeInodes(), fs.statfs(false).freeInodes(), "free inodes after deleting everything");
        }
        checkImage(img, d.root);
        try (Ext4FileSystem ro = openRo(img)) {
            assertEquals(fresh.freeBlocks(), ro.statfs(false).freeBlocks());
            assertEquals(fresh.freeInodes(), ro.statfs(false).freeInodes());
        }
    }

    // ================================================================ 4. concurrency

    private static final int THREADS = 4;
    private static final int OPS_PER_THREAD = 1000;
    /** What a racing namespace operation may meet: the name gone, taken, or of the other kind. */
    private static final Set<Errno> RACES = EnumSet.of(Errno.ENOENT, Errno.EEXIST, Errno.ENOTEMPTY,
            Errno.EISDIR, Errno.ENOTDIR, Errno.EINVAL, Errno.EPERM);

    /** The byte every write puts at {@code pos} of inode {@code ino} (never 0, so holes tell apart). */
    static byte pattern(long ino, long pos) {
        return (byte) (1 + Math.floorMod(ino * 131 + pos * 7 + (pos >>> 11), 255));
    }

    /**
     * Threads racing over four directories, with the default caches and with caches so small that
     * inodes are read again under other inodes' locks (the lock order must hold there too).
     */
    @ParameterizedTest(name = "inode cache {0}")
    @ValueSource(ints = {65536, 8})
    void concurrency(int inodeCache) throws Exception {
        Path img = Images.mkfs(work.resolve("conc.img"), "64M", List.of("-b", "4096"), null);
        MountOptions options = new MountOptions(false, inodeCache < 100 ? 256 << 10 : 64 << 20, inodeCache);
        try (Ext4FileSystem fs = Ext4FileSystem.open(img, options)) {
            assertFalse(fs.isReadOnly());
            long c = fs.mkdir(Ext4FileSystem.ROOT_INO, b("c"), 0755, 0, 0);
            long[] dirs = new long[THREADS];
            for (int i = 0; i < THREADS; i++) {
                dirs[i] = fs.mkdir(c, b("d" + i), 0755, 0, 0);
            }
            ExecutorService pool = Executors.newFixedThreadPool(THREADS, r -> {
                Thread th = new Thread(r, "rw-worker");
                th.setDaemon(true);
                return th;
            });
            CyclicBarrier start = new CyclicBarrier(THREADS);
            List<Future<Integer>> futures = new ArrayList<>();
            for (int t = 0; t < THREADS; t++) {
                int id = t;
                futures.add(pool.submit(() -> {
                    start.await();
                    return worker(fs, c, dirs, id);
                }));
            }
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
            int done = 0;
            try {
                for (Future<Integer> f : futures) {
                    done += f.get(Math.max(1, deadline - System.nanoTime()), TimeUnit.NANOSECONDS);
                }
            } catch (TimeoutException e) {
                String stacks = workerStacks();
                pool.shutdownNow();
                throw new AssertionError("the workers did not finish within 60 s (deadlock?):\n" + stacks);
            } catch (ExecutionException e) {
                pool.shutdownNow();
                throw new AssertionError("a worker failed: " + e.getCause(), e.getCause());
            }
            pool.shutdown();
            assertTrue(done > THREADS * OPS_PER_THREAD / 4, "most operations succeeded: " + done);
        }
        RwModel.assertFsckClean(img);
        Node root;
        try (Ext4FileSystem ro = openRo(img)) {
            root = modelOf(ro, true);
            RwModel.verifyFs(ro, root);
        }
        RwModel.verifyKernel(img, work.resolve("mnt"), root);
    }

    /** One thread's random operations; returns how many succeeded. */
    private static int worker(Ext4FileSystem fs, long parent, long[] dirs, int id) throws Exception {
        Random rnd = new Random(1000 + id);
        int ok = 0;
        for (int i = 0; i < OPS_PER_THREAD; i++) {
            int op = rnd.nextInt(100);
            long dirA = dirs[rnd.nextInt(THREADS)];
            long dirB = dirs[rnd.nextInt(THREADS)];
            byte[] f1 = b("f" + rnd.nextInt(24));
            byte[] f2 = b("f" + rnd.nextInt(24));
            byte[] sub = b("s" + rnd.nextInt(3));
            try {
                if (rnd.nextInt(5) == 0) {
                    dirA = fs.lookup(dirA, sub); // sometimes one level down
                }
                if (op < 18) {
                    fs.mknod(dirA, f1, Inode.S_IFREG | 0644, 0, 0, id, id);
                } else if (op < 36) {
                    long off = rnd.nextInt(64 * 1024);
                    int len = 1 + rnd.nextInt(12 * 1024);
                    withOpenFile(fs, dirA, f1, ino -> {
                        byte[] data = new byte[len];
                        for (int k = 0; k < len; k++) {
                            data[k] = pattern(ino, off + k);
                        }
                        assertEquals(len, fs.write(ino, off, ByteBuffer.wrap(data)));
                    });
                } else if (op < 40) {
                    long size = rnd.nextInt(48 * 1024);
                    withOpenFile(fs, dirA, f1, ino -> fs.truncate(ino, size));
                } else if (op < 48) {
                    fs.rename(dirA, f1, dirA, f2);
                } else if (op < 62) {
                    // cross-directory, each thread its own direction: 0 -> 1, 1 -> 0, 2 -> 3, 3 -> 2
                    long from = dirs[id];
                    long to = dirs[id ^ 1];
                    if (rnd.nextBoolean()) {
                        fs.rename(from, f1, to, f2);
                    } else {
                        fs.rename(from, sub, to, b("s" + rnd.nextInt(3))); // directories too
                    }
                } else if (op < 68) {
                    fs.rename(dirA, rnd.nextBoolean() ? f1 : sub, dirB, rnd.nextBoolean() ? f2 : b("s" + rnd.nextInt(3)));
                } else if (op < 78) {
                    fs.unlink(dirA, f1);
                } else if (op < 84) {
                    fs.mkdir(dirA, sub, 0755, 0, 0);
                } else if (op < 88) {
                    fs.rmdir(dirA, sub);
                } else if (op < 91) {
                    fs.link(fs.lookup(dirA, f1), dirB, f2);
                } else if (op < 94) {
                    // the shared parent changes too: its directories swap names, files come and go
                    int k = rnd.nextInt(THREADS);
                    boolean back = rnd.nextBoolean();
                    switch (rnd.nextInt(3)) {
                        case 0 -> fs.rename(parent, b(back ? "d" + k + "-alt" : "d" + k), parent, b(back ? "d" + k : "d" + k + "-alt"));
                        case 1 -> fs.mknod(parent, f1, Inode.S_IFREG | 0600, 0, 0, 0, 0);
                        default -> fs.unlink(parent, f1);
                    }
                } else {
                    for (NamedIno e : entries(fs, dirA)) {
                        try {
                            fs.stat(fs.lookup(dirA, e.name()));
                        } catch (Ext4Exception x) {
                            if (x.errno() != Errno.ENOENT) {
                                throw x;
                            }
                        }
                    }
                }
                ok++;
            } catch (Ext4Exception e) {
                if (!RACES.contains(e.errno())) {
                    throw new AssertionError("thread " + id + ", operation " + i + " (" + op + "): " + e, e);
                }
            }
        }
        return ok;
    }

    private record NamedIno(byte[] name, long ino) {
    }

    private static List<NamedIno> entries(Ext4FileSystem fs, long dir) throws Ext4Exception {
        List<NamedIno> out = new ArrayList<>();
        fs.readdir(dir, 0, (name, ino, type, next) -> {
            if (!Arrays.equals(name, b(".")) && !Arrays.equals(name, b(".."))) {
                out.add(new NamedIno(name.clone(), ino));
            }
            return true;
        });
        return out;
    }

    @FunctionalInterface
    private interface InoAction {
        void run(long ino) throws Ext4Exception;
    }

    /**
     * Looks a regular file up, opens it and runs {@code action} only while the name still leads to
     * it, as an open file handle pins an inode against a racing unlink (FUSE's open after lookup).
     */
    /** The stacks of the test's worker threads, for a deadlock report (taken before they are interrupted). */
    private static String workerStacks() {
        StringBuilder dump = new StringBuilder();
        for (ThreadInfo ti : ManagementFactory.getThreadMXBean().dumpAllThreads(true, true)) {
            if (ti.getThreadName().equals("rw-worker")) {
                dump.append(ti);
            }
        }
        return dump.toString();
    }

    private static void withOpenFile(Ext4FileSystem fs, long dir, byte[] name, InoAction action) throws Ext4Exception {
        long ino = fs.lookup(dir, name);
        fs.open(ino);
        try {
            if (fs.lookup(dir, name) != ino || (fs.stat(ino).mode() & Inode.S_IFMT) != Inode.S_IFREG) {
                return;
            }
            action.run(ino);
        } finally {
            fs.release(ino);
        }
    }

    /**
     * The tree as ext4j reads it, as a model: names, modes, owners, hard links (one node per inode,
     * its link count the number of names found), symlink targets, file contents. With
     * {@code pattern}, each file byte must be the one {@link #pattern} gives, or 0.
     */
    static Node modelOf(Ext4FileSystem fs, boolean pattern) throws Exception {
        Map<Long, Node> byIno = new HashMap<>();
        Node root = Driver.freshRoot();
        root.children.clear();
        copyDir(fs, Ext4FileSystem.ROOT_INO, root, byIno, pattern);
        for (Map.Entry<Long, Node> e : byIno.entrySet()) {
            Node n = e.getValue();
            if (!n.isDir()) {
                assertEquals(n.links, fs.stat(e.getKey()).nlink(), "inode " + e.getKey() + ": links equal its names");
            }
        }
        return root;
    }

    private static void copyDir(Ext4FileSystem fs, long dirIno, Node dir, Map<Long, Node> byIno, boolean pattern)
            throws Exception {
        for (NamedIno e : entries(fs, dirIno)) {
            String name = new String(e.name(), StandardCharsets.ISO_8859_1);
            long ino = fs.lookup(dirIno, e.name());
            assertEquals(e.ino(), ino, name + ": lookup agrees with readdir");
            Node seen = byIno.get(ino);
            if (seen != null) {
                assertFalse(seen.isDir(), "directory inode " + ino + " has two names");
                seen.links++;
                dir.children.put(name, seen);
                continue;
            }
            FileAttributes st = fs.stat(ino);
            Node n = new Node(st.mode());
            n.uid = st.uid();
            n.gid = st.gid();
            n.ino = ino;
            byIno.put(ino, n);
            dir.children.put(name, n);
            if (n.isDir()) {
                n.parent = dir;
                copyDir(fs, ino, n, byIno, pattern);
            } else if (n.type == Inode.S_IFREG) {
                byte[] data = RwModel.fsRead(fs, ino, 0, (int) st.size());
                for (int k = 0; pattern && k < data.length; k++) {
                    if (data[k] != 0 && data[k] != pattern(ino, k)) {
                        throw new AssertionError(name + " (inode " + ino + "): byte " + k + " is " + (data[k] & 0xFF)
                                + ", neither 0 nor the pattern " + (pattern(ino, k) & 0xFF));
                    }
                }
                n.content.write(0, data, 0, data.length);
                n.content.size = st.size();
            } else if (n.type == Inode.S_IFLNK) {
                n.target = fs.readlink(ino);
            }
        }
    }

    // ================================================================ 5. inline data

    /**
     * On an inline_data image made by mkfs -d (e2fsprogs' own inline layout), ext4j changes the
     * inline files, directories and symlinks: writes that stay inline and ones that move a file to
     * a block, truncate, entries added until a directory moves to a block, removals, renames in and
     * out of inline directories with their "..", rmdir of an emptied inline directory. The result
     * is e2fsck-clean and reads the same through ext4j and the kernel. More in {@link InlineWriteTest}.
     */
    @Test
    void inlineDataFromMkfsIsWritable() throws Exception {
        Path src = work.resolve("src");
        Files.createDirectories(src.resolve("idir/sub"));
        Files.createDirectories(src.resolve("other"));
        Files.createDirectories(src.resolve("many"));
        Files.writeString(src.resolve("small"), "hello\n");
        Files.write(src.resolve("hundred"), random(new Random(4), 100));
        Files.writeString(src.resolve("idir/x"), "x");
        Files.write(src.resolve("blockfile"), random(new Random(5), 10000));
        Files.createSymbolicLink(src.resolve("longlink"), Path.of("t".repeat(90)));
        for (int i = 0; i < 200; i++) {
            Files.writeString(src.resolve("many/f" + i), "content " + i);
        }
        Path img = Images.mkfs(work.resolve("inline.img"), "32M", List.of("-b", "4096", "-O", "inline_data"), src);
        Driver d;
        try (Ext4FileSystem fs = openRw(img)) {
            d = new Driver(fs, modelOf(fs, false));
            long idir = d.ino("/idir");
            long small = d.ino("/small");
            long other = d.ino("/other");
            assertTrue((fs.stat(idir).flags() & Inode.INLINE_DATA_FL) != 0, "mkfs made /idir inline");
            assertTrue((fs.stat(small).flags() & Inode.INLINE_DATA_FL) != 0, "mkfs made /small inline");
            assertTrue((fs.stat(d.ino("/longlink")).flags() & Inode.INLINE_DATA_FL) != 0, "mkfs made /longlink inline");
            RwModel.verifyFs(fs, d.root);
            // files
            d.write("/small", 6, b("world\n"));
            assertTrue((fs.stat(small).flags() & Inode.INLINE_DATA_FL) != 0, "12 bytes stay inline");
            d.write("/hundred", 100, random(new Random(6), 28));
            d.truncate("/hundred", 64);
            d.write("/small", 12, random(new Random(7), 500));
            assertEquals(0, fs.stat(small).flags() & Inode.INLINE_DATA_FL, "512 bytes move to a block");
            // directories: add to the inline one until it moves to a block, remove, rename across
            d.create("/idir/new", 0644);
            d.mkdir("/idir/newdir", 0755);
            d.symlink("/idir/sym", b("s".repeat(70)));
            d.unlink("/idir/x");
            d.rmdir("/idir/sub");
            d.rename("/other", "/idir/other-moved");
            assertEquals(idir, fs.lookup(other, b("..")), "'..' of the moved inline directory");
            d.rename("/many/f7", "/idir/from-many");
            d.rename("/idir/new", "/many/new-from-idir");
            d.rename("/idir/newdir", "/many/newdir");
            assertEquals(d.ino("/many"), fs.lookup(d.ino("/many/newdir"), b("..")));
            for (int i = 0; (fs.stat(idir).flags() & Inode.INLINE_DATA_FL) != 0; i++) {
                d.create("/idir/fill-" + i, 0600);
            }
            d.create("/idir/after-the-move", 0600);
            d.unlink("/longlink");
        }
        checkImage(img, d.root);
    }

    /**
     * A directory moved back and forth between two directories (the loop check reads their
     * parent) while the parent renames them (holding its own lock, waiting for theirs), with an
     * inode cache so small that the parent must be read again each time: the loop check may not
     * wait for the parent's lock.
     */
    @Test
    void renameLoopCheckAgainstParentChanges() throws Exception {
        Path img = Images.mkfs(work.resolve("loop.img"), "32M", List.of("-b", "4096"), null);
        try (Ext4FileSystem fs = Ext4FileSystem.open(img, new MountOptions(false, 256 << 10, 8))) {
            long c = fs.mkdir(Ext4FileSystem.ROOT_INO, b("c"), 0755, 0, 0);
            long d0 = fs.mkdir(c, b("d0"), 0755, 0, 0);
            long d1 = fs.mkdir(c, b("d1"), 0755, 0, 0);
            fs.mkdir(d0, b("m"), 0755, 0, 0);
            long[] others = new long[1000];
            for (int i = 0; i < others.length; i++) {
                others[i] = fs.mknod(Ext4FileSystem.ROOT_INO, b("x" + i), Inode.S_IFREG | 0644, 0, 0, 0, 0);
            }
            ExecutorService pool = Executors.newFixedThreadPool(3, r -> {
                Thread th = new Thread(r, "rw-worker");
                th.setDaemon(true);
                return th;
            });
            long end = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(2500);
            List<Future<?>> futures = List.of(
                    pool.submit(() -> {
                        while (System.nanoTime() < end) {
                            quietly(() -> fs.rename(d0, b("m"), d1, b("m")));
                            quietly(() -> fs.rename(d1, b("m"), d0, b("m")));
                        }
                        return null;
                    }),
                    pool.submit(() -> {
                        while (System.nanoTime() < end) {
                            for (String n : List.of("d0", "d1")) {
                                quietly(() -> fs.rename(c, b(n), c, b(n + "-alt")));
                                quietly(() -> fs.rename(c, b(n + "-alt"), c, b(n)));
                            }
                        }
                        return null;
                    }),
                    pool.submit(() -> {
                        while (System.nanoTime() < end) {
                            for (long ino : others) {
                                fs.stat(ino); // keeps the inode cache turning over
                            }
                        }
                        return null;
                    }));
            try {
                for (Future<?> f : futures) {
                    f.get(Math.max(1, end - System.nanoTime()) + TimeUnit.SECONDS.toNanos(10),
                            TimeUnit.NANOSECONDS);
                }
            } catch (TimeoutException e) {
                String stacks = workerStacks();
                pool.shutdownNow();
                throw new AssertionError("deadlock:\n" + stacks);
            }
            pool.shutdown();
        }
        RwModel.assertFsckClean(img);
        Node root;
        try (Ext4FileSystem ro = openRo(img)) {
            root = modelOf(ro, false);
            RwModel.verifyFs(ro, root);
        }
        RwModel.verifyKernel(img, work.resolve("mnt"), root);
    }

    private static void quietly(Expect.Action a) throws Exception {
        try {
            a.run();
        } catch (Ext4Exception e) {
            if (!RACES.contains(e.errno())) {
                throw e;
            }
        }
    }
}
