package dev.ext4j.fs;

import static dev.ext4j.testutil.FsData.create;
import static dev.ext4j.testutil.FsData.name;
import static dev.ext4j.testutil.FsData.readAll;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import dev.ext4j.Errno;
import dev.ext4j.Ext4Exception;
import dev.ext4j.testutil.Expect;
import dev.ext4j.testutil.Images;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import java.util.TreeSet;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * lseek(2) SEEK_DATA / SEEK_HOLE ({@link FileSeek}) and copy_file_range(2) ({@link CopyRange})
 * against a model of which blocks hold data, e2fsck, and the kernel: a read-only loop mount of the
 * same image answers the same offsets with python's os.lseek.
 */
class SeekCopyTest {
    private static final int SEEK_DATA = 3, SEEK_HOLE = 4;
    private static final int KEEP_SIZE = 0x01;
    /** Nothing written back before the test asks: dirty pages stay dirty. */
    private static final MountOptions QUIET = MountOptions.defaults().withWriteback(1L << 30, 3_600_000, 3_600_000).withIdleFlush(0);

    @TempDir
    Path work;

    /**
     * Which blocks of one file hold data, as the kernel reports them: those written, and nothing
     * else (holes and unwritten extents alike, block by block also with 1 KiB blocks).
     */
    private static final class DataMap {
        final int bs;
        long size;
        final TreeSet<Long> written = new TreeSet<>();

        DataMap(int bs) {
            this.bs = bs;
        }

        void wrote(long off, long len) {
            for (long b = off / bs; b <= (off + len - 1) / bs; b++) {
                written.add(b);
            }
            size = Math.max(size, off + len);
        }

        boolean data(long b) {
            return written.contains(b);
        }

        long expect(long off, int whence) {
            if (off < 0 || off >= size) {
                return -Errno.ENXIO.value();
            }
            for (long b = off / bs; b * bs < size; b++) {
                if (data(b) == (whence == SEEK_DATA)) {
                    return Math.min(size, Math.max(off, b * bs));
                }
            }
            return whence == SEEK_DATA ? -Errno.ENXIO.value() : size;
        }

        /** The offsets worth asking: every block start and middle, the edges of the file. */
        List<Long> probes() {
            List<Long> out = new ArrayList<>(List.of(-1L, 0L, 1L, size - 1, size, size + 1, size + 100L * bs));
            for (long b = 0; b * bs < size; b++) {
                out.add(b * bs);
                out.add(b * bs + bs / 2);
            }
            return out;
        }
    }

    private static long seekOrErrno(Ext4FileSystem fs, long ino, long off, int whence) throws Ext4Exception {
        try {
            return fs.seek(ino, off, whence);
        } catch (Ext4Exception e) {
            if (e.errno() != Errno.ENXIO) {
                throw e;
            }
            return -Errno.ENXIO.value();
        }
    }

    private static void check(Ext4FileSystem fs, long ino, DataMap m, String when) throws Ext4Exception {
        for (long off : m.probes()) {
            for (int whence : new int[] {SEEK_DATA, SEEK_HOLE}) {
                assertEquals(m.expect(off, whence), seekOrErrno(fs, ino, off, whence),
                        when + ": " + (whence == SEEK_DATA ? "SEEK_DATA" : "SEEK_HOLE") + " from " + off);
            }
        }
    }

    @ParameterizedTest(name = "{0}")
    @ValueSource(strings = {"ext4-4k", "ext4-1k", "ext3-4k", "ext3-1k"})
    void seekDataAndHoleOverHolesUnwrittenAndDirtyData(String variant) throws Exception {
        int bs = variant.endsWith("1k") ? 1024 : 4096;
        boolean extents = variant.startsWith("ext4");
        List<String> args = new ArrayList<>(List.of("-b", Integer.toString(bs)));
        if (!extents) {
            args.addAll(List.of("-t", "ext3"));
        }
        Path img = Images.mkfs(work.resolve("s.img"), "64M", args, null);
        Random rnd = new Random(bs);
        DataMap m = new DataMap(bs);
        long ino;
        long full;
        try (Ext4FileSystem fs = Ext4FileSystem.open(img, QUIET)) {
            ino = create(fs, "sparse");
            write(fs, ino, m, 0, bs, rnd);
            write(fs, ino, m, 5L * bs + 100, 10, rnd);
            fs.truncate(ino, 40L * bs);
            m.size = 40L * bs;
            fs.sync();
            check(fs, ino, m, "clean sparse file");
            if (extents) {
                fs.fallocate(ino, KEEP_SIZE, 12L * bs, 8L * bs);
                check(fs, ino, m, "preallocated blocks 12..19");
                write(fs, ino, m, 13L * bs + 7, 10, rnd);
                check(fs, ino, m, "a dirty write into block 13 of the unwritten extent");
            }
            write(fs, ino, m, 25L * bs, bs, rnd); // delayed allocation: dirty, no block yet
            write(fs, ino, m, 30L * bs + bs / 3, 5, rnd);
            check(fs, ino, m, "dirty blocks 25 and 30 over holes");
            fs.fsync(ino, false);
            check(fs, ino, m, "after fsync");
            // data up to EOF: the only hole is the virtual one at i_size
            full = create(fs, "full");
            DataMap f = new DataMap(bs);
            write(fs, full, f, 0, 2 * bs + bs / 2, rnd);
            check(fs, full, f, "a file of data to EOF, dirty");
            fs.sync();
            check(fs, full, f, "a file of data to EOF, written");

            Expect.errno(Errno.EINVAL, () -> fs.seek(ino, 0, 0));
            Expect.errno(Errno.EINVAL, () -> fs.seek(ino, 0, 2));
            Expect.errno(Errno.EINVAL, () -> fs.seek(ino, 0, 5));
            Expect.errno(Errno.EISDIR, () -> fs.seek(Ext4FileSystem.ROOT_INO, 0, SEEK_DATA));
            long empty = create(fs, "empty");
            Expect.errno(Errno.ENXIO, () -> fs.seek(empty, 0, SEEK_DATA));
            Expect.errno(Errno.ENXIO, () -> fs.seek(empty, 0, SEEK_HOLE));
        }
        RwModel.assertFsckClean(img);
        try (Ext4FileSystem fs = Ext4FileSystem.open(img, MountOptions.defaults().withReadOnly(true))) {
            check(fs, ino, m, "after a remount");
            compareWithKernel(img, fs, List.of(ino, full), List.of("sparse", "full"), m.probes());
        }
    }

    private static void write(Ext4FileSystem fs, long ino, DataMap m, long off, int len, Random rnd) throws Ext4Exception {
        byte[] d = new byte[len];
        rnd.nextBytes(d);
        assertEquals(len, fs.write(ino, off, ByteBuffer.wrap(d)));
        m.wrote(off, len);
    }

    /** The kernel's answers for the same offsets of the same files, on a read-only loop mount. */
    private void compareWithKernel(Path img, Ext4FileSystem fs, List<Long> inos, List<String> names, List<Long> probes) throws Exception {
        Path mnt = Files.createDirectories(work.resolve("mnt"));
        Images.Result r = Images.run(List.of("mount", "-o", "loop,ro", img.toString(), mnt.toString()));
        if (r.exitCode() != 0) {
            System.err.println("loop mount of " + img + " failed, no kernel comparison: " + r.all().trim());
            return;
        }
        try {
            for (int i = 0; i < inos.size(); i++) {
                StringBuilder offs = new StringBuilder();
                for (long p : probes) {
                    offs.append(p).append(',');
                }
                String script = "import os, sys\n"
                        + "fd = os.open(sys.argv[1], os.O_RDONLY)\n"
                        + "for o in sys.argv[2].rstrip(',').split(','):\n"
                        + "    for w in (3, 4):\n"
                        + "        try: print(os.lseek(fd, int(o), w))\n"
                        + "        except OSError as e: print(-e.errno)\n";
                Images.Result k = Images.runOk(List.of("python3", "-c", script, mnt.resolve(names.get(i)).toString(), offs.toString()));
                String[] lines = k.stdout().trim().split("\n");
                int n = 0;
                for (long p : probes) {
                    for (int whence : new int[] {SEEK_DATA, SEEK_HOLE}) {
                        assertEquals(Long.parseLong(lines[n++].trim()), seekOrErrno(fs, inos.get(i), p, whence),
                                names.get(i) + ": the kernel's " + (whence == SEEK_DATA ? "SEEK_DATA" : "SEEK_HOLE") + " from " + p);
                    }
                }
            }
        } finally {
            Images.Result u = Images.run(List.of("umount", mnt.toString()));
            if (u.exitCode() != 0) {
                Images.run(List.of("umount", "-l", mnt.toString()));
                fail("umount " + mnt + ": " + u.all());
            }
        }
    }

    @Test
    void inlineDataIsDataToTheEnd() throws Exception {
        Path img = Images.mkfs(work.resolve("i.img"), "32M", List.of("-b", "4096", "-O", "inline_data"), null);
        try (Ext4FileSystem fs = Ext4FileSystem.open(img, MountOptions.defaults())) {
            long ino = create(fs, "small");
            fs.write(ino, 0, ByteBuffer.wrap(new byte[100]));
            assertTrue(fs.inode(ino).inode().hasFlag(dev.ext4j.format.Inode.INLINE_DATA_FL), "the file is inline");
            assertEquals(0, fs.seek(ino, 0, SEEK_DATA));
            assertEquals(60, fs.seek(ino, 60, SEEK_DATA));
            assertEquals(100, fs.seek(ino, 0, SEEK_HOLE));
            assertEquals(100, fs.seek(ino, 99, SEEK_HOLE));
            Expect.errno(Errno.ENXIO, () -> fs.seek(ino, 100, SEEK_DATA));
            Expect.errno(Errno.ENXIO, () -> fs.seek(ino, -5, SEEK_HOLE));
        }
        RwModel.assertFsckClean(img);
    }

    // ================================================================ copy_file_range

    @ParameterizedTest(name = "{0}")
    @ValueSource(strings = {"ext4-4k", "ext4-1k", "ext3-4k"})
    void copyFileRangeWithinAndAcrossFiles(String variant) throws Exception {
        int bs = variant.endsWith("1k") ? 1024 : 4096;
        List<String> args = new ArrayList<>(List.of("-b", Integer.toString(bs)));
        if (variant.startsWith("ext3")) {
            args.addAll(List.of("-t", "ext3"));
        }
        Path img = Images.mkfs(work.resolve("c.img"), "64M", args, null);
        Random rnd = new Random(7);
        byte[] a = new byte[3 * (1 << 20) + 12345]; // more than one chunk
        rnd.nextBytes(a);
        byte[] b = new byte[50_000];
        rnd.nextBytes(b);
        long ia;
        long ib;
        long ic;
        long is;
        try (Ext4FileSystem fs = Ext4FileSystem.open(img, QUIET)) {
            ia = create(fs, "a");
            ib = create(fs, "b");
            ic = create(fs, "c");
            fs.write(ia, 0, ByteBuffer.wrap(a));
            fs.write(ib, 0, ByteBuffer.wrap(b));
            // across files, over dirty (unflushed) source data, into the middle of the target and past its end
            assertEquals(a.length - 1000L, fs.copyFileRange(ia, 1000, ic, 0, a.length));
            byte[] c = Arrays.copyOfRange(a, 1000, a.length);
            assertArrayEquals(c, readAll(fs, ic));
            assertEquals(20_000, fs.copyFileRange(ib, 30_000, ic, 5, 20_000));
            System.arraycopy(b, 30_000, c, 5, 20_000);
            assertArrayEquals(c, readAll(fs, ic));
            // within one file, not overlapping, in both directions
            assertEquals(10_000, fs.copyFileRange(ib, 0, ib, 40_000, 10_000));
            System.arraycopy(b, 0, b, 40_000, 10_000);
            assertEquals(5_000, fs.copyFileRange(ib, 45_000, ib, 100, 5_000));
            System.arraycopy(b, 45_000, b, 100, 5_000);
            assertArrayEquals(b, readAll(fs, ib));
            // short at the source's end, 0 at and past it
            assertEquals(50, fs.copyFileRange(ib, b.length - 50, ic, 0, 1000));
            System.arraycopy(b, b.length - 50, c, 0, 50);
            assertEquals(0, fs.copyFileRange(ib, b.length, ic, 0, 1000));
            assertEquals(0, fs.copyFileRange(ib, b.length + 4096, ic, 0, 1000));
            assertEquals(0, fs.copyFileRange(ib, 0, ic, 0, 0));
            fs.sync();
            assertArrayEquals(c, readAll(fs, ic));
            // overlapping ranges of one file: EINVAL, even by one byte; at its end the count is cut first
            Expect.errno(Errno.EINVAL, () -> fs.copyFileRange(ib, 0, ib, 9_999, 10_000));
            Expect.errno(Errno.EINVAL, () -> fs.copyFileRange(ib, 1000, ib, 0, 1001));
            Expect.errno(Errno.EINVAL, () -> fs.copyFileRange(ib, 0, ib, 0, 1));
            assertEquals(0, fs.copyFileRange(ib, b.length, ib, b.length - 10, 100));
            // not regular files
            long dir = fs.mkdir(Ext4FileSystem.ROOT_INO, name("d"), 0755, 0, 0);
            long fifo = fs.mknod(Ext4FileSystem.ROOT_INO, name("p"), 0010644, 0, 0, 0, 0);
            Expect.errno(Errno.EISDIR, () -> fs.copyFileRange(dir, 0, ic, 0, 10));
            Expect.errno(Errno.EISDIR, () -> fs.copyFileRange(ia, 0, dir, 0, 10));
            Expect.errno(Errno.EINVAL, () -> fs.copyFileRange(fifo, 0, ic, 0, 10));
            Expect.errno(Errno.EINVAL, () -> fs.copyFileRange(ia, 0, fifo, 0, 10));
            Expect.errno(Errno.EINVAL, () -> fs.copyFileRange(ia, -1, ic, 0, 10));
            Expect.errno(Errno.EINVAL, () -> fs.copyFileRange(ia, 0, ic, -1, 10));
            Expect.errno(Errno.EOVERFLOW, () -> fs.copyFileRange(ia, 10, ic, 0, Long.MAX_VALUE - 5));
            // a sparse source copied past the target's end stays sparse
            is = create(fs, "sparse");
            fs.write(is, 0, ByteBuffer.wrap(new byte[] {1, 2, 3}));
            fs.write(is, 64L * bs, ByteBuffer.wrap(new byte[] {4, 5, 6}));
            fs.truncate(is, 200L * bs);
            long copy = create(fs, "sparse-copy");
            assertEquals(200L * bs, fs.copyFileRange(is, 0, copy, 0, Long.MAX_VALUE / 2));
            assertEquals(200L * bs, fs.stat(copy).size());
            assertEquals(bs, fs.seek(copy, 0, SEEK_HOLE));
            assertEquals(64L * bs, fs.seek(copy, bs, SEEK_DATA));
            assertEquals(65L * bs, fs.seek(copy, 64L * bs, SEEK_HOLE));
            Expect.errno(Errno.ENXIO, () -> fs.seek(copy, 65L * bs, SEEK_DATA));
            assertArrayEquals(readAll(fs, is), readAll(fs, copy));
            // a hole copied over data writes zeros
            assertEquals(10L * bs, fs.copyFileRange(is, 100L * bs, ic, 0, 10L * bs));
            Arrays.fill(c, 0, 10 * bs, (byte) 0);
            assertArrayEquals(c, readAll(fs, ic));
        }
        RwModel.assertFsckClean(img);
        try (Ext4FileSystem fs = Ext4FileSystem.open(img, MountOptions.defaults().withReadOnly(true))) {
            assertArrayEquals(b, readAll(fs, ib));
            Expect.errno(Errno.EROFS, () -> fs.copyFileRange(ia, 0, ic, 0, 10));
        }
    }
}
