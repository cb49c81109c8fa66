package dev.ext4j.fs;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.ext4j.io.BlockDevice;
import dev.ext4j.io.FileBlockDevice;
import dev.ext4j.io.ForwardingDevice;
import dev.ext4j.testutil.Images;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.atomic.AtomicLong;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** fsync(2) of one inode (ext4_sync_file()): its own data and the journal, not every dirty file. */
class FsyncTest {
    @TempDir
    Path work;

    /** The image file, counting the bytes written to it and its flushes. */
    private static final class CountingDevice extends ForwardingDevice {
        final AtomicLong written = new AtomicLong();
        final AtomicLong syncs = new AtomicLong();

        CountingDevice(BlockDevice inner) {
            super(inner);
        }

        @Override
        public void write(long offset, ByteBuffer src) throws IOException {
            written.addAndGet(src.remaining());
            super.write(offset, src);
        }

        @Override
        public void sync() throws IOException {
            syncs.incrementAndGet();
            super.sync();
        }
    }

    private static final int BIG_MIB = 256;
    /**
     * A page cache large enough that nothing is written back before the test asks: the big file
     * stays under the background limit (a quarter of the cache), and the flusher's timer and the
     * idle flush do not run.
     */
    private static final MountOptions QUIET = MountOptions.defaults().withWriteback(2L << 30, 3_600_000, 3_600_000).withIdleFlush(0);

    @Test
    void fsyncOfOneFileWritesBackThatFileAlone() throws Exception {
        Path img = Images.mkfs(work.resolve("t.img"), "1G", List.of("-b", "4096"), null);
        Path crashed = work.resolve("crashed.img");
        CountingDevice dev = new CountingDevice(FileBlockDevice.open(img, false));
        byte[] small = "the one file that fsync must make durable\n".getBytes(StandardCharsets.US_ASCII);
        long smallIno;
        try (Ext4FileSystem fs = Ext4FileSystem.mount(dev, QUIET)) {
            long big = fs.mknod(Ext4FileSystem.ROOT_INO, bytes("big"), 0100644, 0, 0, 0, 0);
            smallIno = fs.mknod(Ext4FileSystem.ROOT_INO, bytes("small"), 0100644, 0, 0, 0, 0);
            fs.sync();
            byte[] chunk = new byte[1 << 20];
            Arrays.fill(chunk, (byte) 0x5A);
            for (int i = 0; i < BIG_MIB; i++) {
                fs.write(big, (long) i << 20, ByteBuffer.wrap(chunk));
            }
            fs.write(smallIno, 0, ByteBuffer.wrap(small));
            long before = dev.written.get();
            fs.fsync(smallIno, false);
            long during = dev.written.get() - before;
            assertTrue(during < (1L << 20), "fsync of a 42-byte file wrote " + during + " bytes: it wrote back the other file too");
            assertTrue(fs.status().dirtyBytes() >= ((long) BIG_MIB << 20), "the other file's pages stay dirty");
            // a crash now: the image as it is, its journal replayed, holds the fsynced file
            Images.runOk(List.of("cp", "--sparse=always", img.toString(), crashed.toString()));
        }
        Images.assertClean(img);
        try (Ext4FileSystem fs = Ext4FileSystem.open(crashed, MountOptions.defaults().withReadOnly(true))) {
            long ino = fs.lookup(Ext4FileSystem.ROOT_INO, bytes("small"));
            assertEquals(smallIno, ino);
            ByteBuffer back = ByteBuffer.allocate(small.length);
            assertEquals(small.length, fs.read(ino, 0, back));
            assertArrayEquals(small, back.array());
        }
        try (Ext4FileSystem fs = Ext4FileSystem.open(img, MountOptions.defaults().withReadOnly(true))) {
            ByteBuffer back = ByteBuffer.allocate(small.length);
            fs.read(fs.lookup(Ext4FileSystem.ROOT_INO, bytes("small")), 0, back);
            assertArrayEquals(small, back.array());
            assertEquals((long) BIG_MIB << 20, fs.stat(fs.lookup(Ext4FileSystem.ROOT_INO, bytes("big"))).size());
        }
    }

    /**
     * ext4_fsync_journal(): an fsync commits the last transaction that changed its inode, not the
     * one running now, and flushes the image only for data written since the last flush. A file
     * whose changes are durable already costs neither, while another file's change waits in the
     * running transaction; after a crash the journal replays the fsynced file.
     */
    @Test
    void fsyncOfADurableFileCommitsNothingAndDoesNotFlush() throws Exception {
        Path img = Images.mkfs(work.resolve("t.img"), "64M", List.of("-b", "4096"), null);
        Path crashed = work.resolve("crashed.img");
        CountingDevice dev = new CountingDevice(FileBlockDevice.open(img, false));
        byte[] data = "made durable by the first fsync\n".getBytes(StandardCharsets.US_ASCII);
        try (Ext4FileSystem fs = Ext4FileSystem.mount(dev, QUIET)) {
            long a = fs.mknod(Ext4FileSystem.ROOT_INO, bytes("a"), 0100644, 0, 0, 0, 0);
            fs.write(a, 0, ByteBuffer.wrap(data));
            long syncs = dev.syncs.get();
            fs.fsync(a, false);
            assertTrue(dev.syncs.get() > syncs, "the first fsync flushes the image");
            fs.mknod(Ext4FileSystem.ROOT_INO, bytes("b"), 0100644, 0, 0, 0, 0); // joins the running transaction
            long written = dev.written.get();
            syncs = dev.syncs.get();
            fs.fsync(a, false);
            fs.fsync(a, true);
            assertEquals(syncs, dev.syncs.get(), "fsync of a file with nothing new flushed the image");
            assertEquals(written, dev.written.get(), "fsync of a file with nothing new committed another file's change");
            fs.write(a, data.length, ByteBuffer.wrap(data)); // data and a new size: a's transaction is the running one
            fs.fsync(a, false);
            assertTrue(dev.syncs.get() > syncs, "fsync after a change flushes the image");
            Images.runOk(List.of("cp", "--sparse=always", img.toString(), crashed.toString()));
        }
        Images.assertClean(img);
        try (Ext4FileSystem fs = Ext4FileSystem.open(crashed, MountOptions.defaults().withReadOnly(true))) {
            long ino = fs.lookup(Ext4FileSystem.ROOT_INO, bytes("a"));
            ByteBuffer back = ByteBuffer.allocate(2 * data.length);
            assertEquals(2 * data.length, fs.read(ino, 0, back));
            assertArrayEquals(data, Arrays.copyOfRange(back.array(), data.length, 2 * data.length));
        }
    }

    private static byte[] bytes(String s) {
        return s.getBytes(StandardCharsets.UTF_8);
    }
}
