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
import dev.ext4j.blockmap.ExtentTree;
import dev.ext4j.testutil.Expect;
import dev.ext4j.testutil.Images;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * fallocate(2) FALLOC_FL_COLLAPSE_RANGE and FALLOC_FL_INSERT_RANGE ({@link RangeShift},
 * {@link ExtentTree#shift}) on files of hundreds of extents (trees of depth 1 and, with 1 KiB
 * blocks, 2), over holes, unwritten extents, dirty pages and preallocation past EOF: the content
 * byte for byte against a model, e2fsck after, the kernel's rules for the errors, and the same
 * operations done by the kernel (fallocate(1) on a loop mount) giving the same bytes.
 */
class RangeShiftTest {
    private static final int KEEP_SIZE = 0x01, PUNCH_HOLE = 0x02, COLLAPSE = 0x08, ZERO_RANGE = 0x10, INSERT = 0x20;
    /** Nothing written back before the test asks: dirty pages stay dirty. */
    private static final MountOptions QUIET = MountOptions.defaults().withWriteback(1L << 30, 3_600_000, 3_600_000).withIdleFlush(0);

    @TempDir
    Path work;

    /** The file's bytes as they must be. */
    private static final class Model {
        byte[] data = new byte[0];

        void write(long off, byte[] d) {
            if (off + d.length > data.length) {
                data = Arrays.copyOf(data, (int) (off + d.length));
            }
            System.arraycopy(d, 0, data, (int) off, d.length);
        }

        void collapse(long off, long len) {
            byte[] n = new byte[(int) (data.length - len)];
            System.arraycopy(data, 0, n, 0, (int) off);
            System.arraycopy(data, (int) (off + len), n, (int) off, (int) (data.length - off - len));
            data = n;
        }

        void insert(long off, long len) {
            byte[] n = new byte[(int) (data.length + len)];
            System.arraycopy(data, 0, n, 0, (int) off);
            System.arraycopy(data, (int) off, n, (int) (off + len), (int) (data.length - off));
            data = n;
        }
    }

    /** One step of the workload, done the same way by ext4j and by the kernel. */
    private record Op(String kind, long off, long len) {
    }

    /**
     * The workload in blocks: a file of {@code blocks} blocks written at every other block (one
     * extent each, with holes between), a preallocated range, then collapses and inserts at the
     * start, inside extents, across holes and unwritten extents, and across many leaves.
     */
    private static List<Op> workload(int blocks) {
        int third = blocks / 3;
        return List.of(
                new Op("prealloc", 20, 6),
                new Op("collapse", 10, 3),
                new Op("insert", 7, 5),
                new Op("collapse", 0, 2),
                new Op("insert", 0, 1),
                new Op("collapse", 18, 4), // across the unwritten extent
                new Op("insert", blocks / 2, 100),
                new Op("collapse", third, 150),
                new Op("insert", 1, third),
                new Op("collapse", 5, 1));
    }

    private static byte[] blockData(Random rnd, int bs) {
        byte[] d = new byte[bs];
        rnd.nextBytes(d);
        return d;
    }

    @ParameterizedTest(name = "{0}-byte blocks")
    @ValueSource(ints = {4096, 1024})
    void collapseAndInsertOnManyExtents(int bs) throws Exception {
        int blocks = bs == 1024 ? 800 : 300; // 400 or 150 one-block extents: depth 2 with 1 KiB blocks, depth 1 with 4 KiB
        Path img = Images.mkfs(work.resolve("r.img"), "64M", List.of("-b", Integer.toString(bs)), null);
        Model m = new Model();
        Random rnd = new Random(bs);
        long ino;
        try (Ext4FileSystem fs = Ext4FileSystem.open(img, QUIET)) {
            ino = create(fs, "f");
            for (int b = 0; b < blocks; b += 2) {
                byte[] d = blockData(rnd, bs);
                fs.write(ino, (long) b * bs, ByteBuffer.wrap(d));
                m.write((long) b * bs, d);
            }
            m.write((long) blocks * bs - 10, new byte[10]);
            fs.truncate(ino, (long) blocks * bs);
            fs.fsync(ino, false);
            assertTrue(depth(fs, ino) >= (bs == 1024 ? 2 : 1), "a tree of depth " + depth(fs, ino));
            for (Op op : workload(blocks)) {
                apply(fs, ino, m, op, bs);
                assertArrayEquals(m.data, readAll(fs, ino), "after " + op);
            }
            // dirty pages (not written back) before, inside and after a collapse, and an insert over them
            byte[] d1 = blockData(rnd, bs);
            byte[] d2 = new byte[100];
            rnd.nextBytes(d2);
            fs.write(ino, 40L * bs, ByteBuffer.wrap(d1));
            m.write(40L * bs, d1);
            fs.write(ino, 52L * bs + 7, ByteBuffer.wrap(d2));
            m.write(52L * bs + 7, d2);
            fs.write(ino, 100L * bs + 3, ByteBuffer.wrap(d2));
            m.write(100L * bs + 3, d2);
            assertTrue(fs.status().dirtyBytes() > 0, "dirty pages before the collapse");
            apply(fs, ino, m, new Op("collapse", 45, 10), bs);
            assertArrayEquals(m.data, readAll(fs, ino), "after a collapse over dirty pages");
            fs.write(ino, 60L * bs, ByteBuffer.wrap(d2));
            m.write(60L * bs, d2);
            apply(fs, ino, m, new Op("insert", 59, 3), bs);
            assertArrayEquals(m.data, readAll(fs, ino), "after an insert over dirty pages");
            // preallocation past EOF moves too, and the size follows the data alone
            long size = m.data.length;
            fs.fallocate(ino, KEEP_SIZE, size + 5L * bs, 10L * bs);
            apply(fs, ino, m, new Op("collapse", 2, 3), bs);
            apply(fs, ino, m, new Op("insert", 3, 2), bs);
            assertEquals(m.data.length, fs.stat(ino).size());
            assertArrayEquals(m.data, readAll(fs, ino), "with preallocation past EOF");
        }
        RwModel.assertFsckClean(img);
        try (Ext4FileSystem fs = Ext4FileSystem.open(img, MountOptions.defaults().withReadOnly(true))) {
            assertArrayEquals(m.data, readAll(fs, ino), "after a remount");
        }
        compareWithKernel(bs, blocks);
    }

    private static int depth(Ext4FileSystem fs, long ino) throws Ext4Exception {
        return fs.inode(ino).inode().iBlock().getShort(6) & 0xFFFF; // eh_depth of the root
    }

    private static void apply(Ext4FileSystem fs, long ino, Model m, Op op, int bs) throws Ext4Exception {
        long off = op.off() * bs;
        long len = op.len() * bs;
        switch (op.kind()) {
            case "collapse" -> {
                fs.fallocate(ino, COLLAPSE, off, len);
                m.collapse(off, len);
            }
            case "insert" -> {
                fs.fallocate(ino, INSERT, off, len);
                m.insert(off, len);
            }
            case "prealloc" -> fs.fallocate(ino, KEEP_SIZE, off, len);
            default -> throw new IllegalArgumentException(op.kind());
        }
        assertEquals(m.data.length, fs.stat(ino).size(), "size after " + op);
    }

    /**
     * The kernel does the same workload with fallocate(1) on a loop mount of a fresh image; its
     * file must hold the model's bytes too (a check of the model and the rules, which ext4j
     * matched above).
     */
    private void compareWithKernel(int bs, int blocks) throws Exception {
        Path img = Images.mkfs(work.resolve("k.img"), "64M", List.of("-b", Integer.toString(bs)), null);
        Path mnt = Files.createDirectories(work.resolve("mnt"));
        Images.Result r = Images.run(List.of("mount", "-o", "loop", img.toString(), mnt.toString()));
        if (r.exitCode() != 0) {
            System.err.println("loop mount of " + img + " failed, no kernel comparison: " + r.all().trim());
            return;
        }
        try {
            Path f = mnt.resolve("f");
            Model m = new Model();
            Random rnd = new Random(bs);
            try (var ch = java.nio.channels.FileChannel.open(f, java.nio.file.StandardOpenOption.CREATE,
                    java.nio.file.StandardOpenOption.WRITE)) {
                for (int b = 0; b < blocks; b += 2) {
                    byte[] d = blockData(rnd, bs);
                    ch.write(ByteBuffer.wrap(d), (long) b * bs);
                    m.write((long) b * bs, d);
                }
                m.write((long) blocks * bs - 10, new byte[10]);
                ch.truncate((long) blocks * bs);
                if (ch.size() < (long) blocks * bs) {
                    ch.write(ByteBuffer.wrap(new byte[10]), (long) blocks * bs - 10);
                }
            }
            for (Op op : workload(blocks)) {
                String flag = switch (op.kind()) {
                    case "collapse" -> "-c";
                    case "insert" -> "-i";
                    default -> "-n";
                };
                Images.runOk(List.of("fallocate", flag, "-o", Long.toString(op.off() * bs), "-l", Long.toString(op.len() * bs), f.toString()));
                if (op.kind().equals("collapse")) {
                    m.collapse(op.off() * bs, op.len() * bs);
                } else if (op.kind().equals("insert")) {
                    m.insert(op.off() * bs, op.len() * bs);
                }
            }
            assertArrayEquals(m.data, Files.readAllBytes(f), "the kernel's file after the workload");
            // the kernel's errors for the cases ext4j is tested on below
            Images.Result bad = Images.run(List.of("fallocate", "-c", "-o", "0", "-l", Long.toString(m.data.length), f.toString()));
            assertTrue(bad.exitCode() != 0 && bad.all().contains("Invalid argument"), "kernel: collapse to EOF: " + bad.all());
            bad = Images.run(List.of("fallocate", "-i", "-o", Long.toString(m.data.length), "-l", Integer.toString(bs), f.toString()));
            assertTrue(bad.exitCode() != 0 && bad.all().contains("Invalid argument"), "kernel: insert at EOF: " + bad.all());
            bad = Images.run(List.of("fallocate", "-c", "-o", "1", "-l", Integer.toString(bs), f.toString()));
            assertTrue(bad.exitCode() != 0 && bad.all().contains("Invalid argument"), "kernel: unaligned collapse: " + bad.all());
        } finally {
            Images.Result u = Images.run(List.of("umount", mnt.toString()));
            if (u.exitCode() != 0) {
                Images.run(List.of("umount", "-l", mnt.toString()));
                fail("umount " + mnt + ": " + u.all());
            }
        }
        RwModel.assertFsckClean(img);
    }

    @Test
    void errorsAsTheKernel() throws Exception {
        int bs = 4096;
        Path img = Images.mkfs(work.resolve("e.img"), "64M", List.of("-b", "4096"), null);
        Path ext3 = Images.mkfs(work.resolve("e3.img"), "64M", List.of("-b", "1024", "-t", "ext3"), null);
        try (Ext4FileSystem fs = Ext4FileSystem.open(img, MountOptions.defaults())) {
            long ino = create(fs, "f");
            byte[] d = new byte[10 * bs];
            new Random(1).nextBytes(d);
            fs.write(ino, 0, ByteBuffer.wrap(d));
            // other flags with either: EINVAL; unknown flags: EOPNOTSUPP
            Expect.errno(Errno.EINVAL, () -> fs.fallocate(ino, COLLAPSE | KEEP_SIZE, 0, bs));
            Expect.errno(Errno.EINVAL, () -> fs.fallocate(ino, INSERT | KEEP_SIZE, 0, bs));
            Expect.errno(Errno.EINVAL, () -> fs.fallocate(ino, COLLAPSE | INSERT, 0, bs));
            Expect.errno(Errno.EINVAL, () -> fs.fallocate(ino, COLLAPSE | PUNCH_HOLE | KEEP_SIZE, 0, bs));
            Expect.errno(Errno.EINVAL, () -> fs.fallocate(ino, INSERT | ZERO_RANGE, 0, bs));
            Expect.errno(Errno.EOPNOTSUPP, () -> fs.fallocate(ino, COLLAPSE | 0x100, 0, bs));
            // whole blocks only
            Expect.errno(Errno.EINVAL, () -> fs.fallocate(ino, COLLAPSE, 1, bs));
            Expect.errno(Errno.EINVAL, () -> fs.fallocate(ino, COLLAPSE, 0, bs + 1));
            Expect.errno(Errno.EINVAL, () -> fs.fallocate(ino, INSERT, 512, bs));
            Expect.errno(Errno.EINVAL, () -> fs.fallocate(ino, INSERT, 0, 100));
            // a collapse must end before EOF, an insert start before it
            Expect.errno(Errno.EINVAL, () -> fs.fallocate(ino, COLLAPSE, 0, 10L * bs));
            Expect.errno(Errno.EINVAL, () -> fs.fallocate(ino, COLLAPSE, 9L * bs, bs));
            Expect.errno(Errno.EINVAL, () -> fs.fallocate(ino, COLLAPSE, 20L * bs, bs));
            Expect.errno(Errno.EINVAL, () -> fs.fallocate(ino, INSERT, 10L * bs, bs));
            Expect.errno(Errno.EINVAL, () -> fs.fallocate(ino, INSERT, 0, 0));
            Expect.errno(Errno.EINVAL, () -> fs.fallocate(ino, COLLAPSE, -bs, bs));
            // an insert that would pass the largest file size
            long big = create(fs, "big");
            long max = ExtentTree.MAX_BLOCKS * bs;
            fs.truncate(big, max - bs);
            Expect.errno(Errno.EFBIG, () -> fs.fallocate(big, INSERT, 0, 2L * bs));
            fs.fallocate(big, INSERT, 0, bs); // exactly to the largest size
            assertEquals(max, fs.stat(big).size());
            // not a regular file
            long dir = fs.mkdir(Ext4FileSystem.ROOT_INO, name("d"), 0755, 0, 0);
            Expect.errno(Errno.EISDIR, () -> fs.fallocate(dir, COLLAPSE, 0, bs));
            Expect.errno(Errno.EISDIR, () -> fs.fallocate(dir, INSERT, 0, bs));
            // append-only and immutable files: EPERM
            fs.setFlags(ino, dev.ext4j.format.Inode.APPEND_FL);
            Expect.errno(Errno.EPERM, () -> fs.fallocate(ino, COLLAPSE, 0, bs));
            fs.setFlags(ino, dev.ext4j.format.Inode.IMMUTABLE_FL);
            Expect.errno(Errno.EPERM, () -> fs.fallocate(ino, INSERT, 0, bs));
            fs.setFlags(ino, 0);
            // nothing changed by the refusals
            assertArrayEquals(d, readAll(fs, ino));
        }
        RwModel.assertFsckClean(img);
        try (Ext4FileSystem fs = Ext4FileSystem.open(ext3, MountOptions.defaults())) {
            long ino = create(fs, "f");
            fs.write(ino, 0, ByteBuffer.wrap(new byte[10 * 1024]));
            Expect.errno(Errno.EOPNOTSUPP, () -> fs.fallocate(ino, COLLAPSE, 1024, 1024));
            Expect.errno(Errno.EOPNOTSUPP, () -> fs.fallocate(ino, INSERT, 1024, 1024));
        }
        RwModel.assertFsckClean(ext3);
    }

    @Test
    void anInlineFileMovesToBlocksFirst() throws Exception {
        Path img = Images.mkfs(work.resolve("i.img"), "32M", List.of("-b", "1024", "-O", "inline_data"), null);
        try (Ext4FileSystem fs = Ext4FileSystem.open(img, MountOptions.defaults())) {
            long ino = create(fs, "f");
            byte[] d = new byte[100];
            new Random(3).nextBytes(d);
            fs.write(ino, 0, ByteBuffer.wrap(d));
            // as ext4_fallocate(): converted first, then the insert at 0 is valid
            fs.fallocate(ino, INSERT, 0, 1024);
            byte[] expect = new byte[1124];
            System.arraycopy(d, 0, expect, 1024, 100);
            assertArrayEquals(expect, readAll(fs, ino));
            fs.fallocate(ino, COLLAPSE, 0, 1024);
            assertArrayEquals(d, readAll(fs, ino));
        }
        RwModel.assertFsckClean(img);
    }

    /**
     * Collapses and inserts while the flusher writes the same file back all the time: a writeback
     * between its two locked steps must finish before blocks move, or its data lands at the old
     * offsets (or stays unwritten).
     */
    @Test
    void shiftsRaceTheFlusher() throws Exception {
        int bs = 1024;
        Path img = Images.mkfs(work.resolve("f.img"), "64M", List.of("-b", "1024"), null);
        MountOptions busy = MountOptions.defaults().withWriteback(64L << 20, 1, 0);
        Model m = new Model();
        Random rnd = new Random(11);
        long ino;
        try (Ext4FileSystem fs = Ext4FileSystem.open(img, busy)) {
            ino = create(fs, "f");
            for (int round = 0; round < 60; round++) {
                for (int k = 0; k < 8; k++) {
                    byte[] d = new byte[1 + rnd.nextInt(3 * bs)];
                    rnd.nextBytes(d);
                    long off = rnd.nextInt(200 * bs);
                    assertEquals(d.length, fs.write(ino, off, ByteBuffer.wrap(d)));
                    m.write(off, d);
                }
                long blocks = m.data.length / bs;
                long at = rnd.nextInt((int) Math.max(1, blocks - 2));
                long len = 1 + rnd.nextInt((int) Math.max(1, Math.min(20, blocks - at - 1)));
                Op op = round % 2 == 0 && at + len < (m.data.length + bs - 1) / bs && (at + len) * bs < m.data.length
                        ? new Op("collapse", at, len) : new Op("insert", at, len);
                apply(fs, ino, m, op, bs);
                assertArrayEquals(m.data, readAll(fs, ino), "round " + round + " after " + op);
            }
        }
        RwModel.assertFsckClean(img);
        try (Ext4FileSystem fs = Ext4FileSystem.open(img, MountOptions.defaults().withReadOnly(true))) {
            assertArrayEquals(m.data, readAll(fs, ino), "after a remount");
        }
    }
}
