package dev.ext4j.fs;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.awaitility.Awaitility.await;

import dev.ext4j.Errno;
import dev.ext4j.Ext4Exception;
import dev.ext4j.io.BlockDevice;
import dev.ext4j.io.FileBlockDevice;
import dev.ext4j.testutil.Expect;
import dev.ext4j.io.ForwardingDevice;
import dev.ext4j.testutil.Images;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Writeback when the image fails: an I/O error is never dropped. The pages stay dirty (reads still
 * see the data, a later writeback retries), and the error is reported once, by the next sync or
 * fsync, as the kernel's errseq reports it. The image file is real; only the failure is injected.
 */
class WritebackErrorTest {
    @TempDir
    Path work;

    /** The image file, with writes that fail while {@link #failing} is set. */
    private static final class FailingDevice extends ForwardingDevice {
        final AtomicBoolean failing = new AtomicBoolean();
        final AtomicInteger failed = new AtomicInteger();

        FailingDevice(BlockDevice inner) {
            super(inner);
        }

        @Override
        public void write(long offset, ByteBuffer src) throws IOException {
            if (failing.get()) {
                failed.incrementAndGet();
                throw new IOException("injected write error at byte " + offset);
            }
            super.write(offset, src);
        }
    }

    private static byte[] pattern(int len, int seed) {
        byte[] b = new byte[len];
        for (int i = 0; i < len; i++) {
            b[i] = (byte) (i * 13 + seed + (i >> 12));
        }
        return b;
    }

    private static byte[] read(Ext4FileSystem fs, long ino, int len) throws Ext4Exception {
        byte[] back = new byte[len];
        assertEquals(len, fs.read(ino, 0, ByteBuffer.wrap(back)));
        return back;
    }

    private static long create(Ext4FileSystem fs, String name, byte[] data) throws Ext4Exception {
        long ino = fs.mknod(Ext4FileSystem.ROOT_INO, name.getBytes(StandardCharsets.UTF_8), 0100644, 0, 0, 0, 0);
        assertEquals(data.length, fs.write(ino, 0, ByteBuffer.wrap(data)));
        return ino;
    }

    @Test
    void aFailedSyncKeepsTheDataDirtyAndTheNextOneWritesIt() throws Exception {
        Path img = Images.mkfs(work.resolve("a.img"), "64M", List.of("-b", "4096"), null);
        byte[] data = pattern(3 << 20, 1);
        FailingDevice dev = new FailingDevice(FileBlockDevice.open(img, false));
        // a flusher that does not run on its own during the test
        MountOptions opts = MountOptions.defaults().withWriteback(64L << 20, 3_600_000, 3_600_000);
        try (Ext4FileSystem fs = Ext4FileSystem.mount(dev, opts)) {
            long ino = create(fs, "f", data);
            dev.failing.set(true);
            Ext4Exception e = Expect.errno(Errno.EIO, fs::sync);
            assertTrue(dev.failed.get() > 0, "the writeback reached the device: " + e);
            assertArrayEquals(data, read(fs, ino, data.length), "the data is still readable from the dirty pages");
            dev.failing.set(false);
            fs.sync(); // the retry writes the pages and reports nothing new
        }
        try (Ext4FileSystem fs = Ext4FileSystem.open(img, MountOptions.defaults().withReadOnly(true))) {
            long ino = fs.lookup(Ext4FileSystem.ROOT_INO, "f".getBytes(StandardCharsets.UTF_8));
            assertEquals(data.length, fs.stat(ino).size());
            assertArrayEquals(data, read(fs, ino, data.length));
        }
        Images.assertClean(img);
    }

    @Test
    void aBackgroundWritebackErrorIsReportedByTheNextSyncOnce() throws Exception {
        Path img = Images.mkfs(work.resolve("b.img"), "64M", List.of("-b", "1024"), null);
        byte[] data = pattern(1 << 20, 2);
        FailingDevice dev = new FailingDevice(FileBlockDevice.open(img, false));
        // the flusher runs every 20 ms and writes back anything dirty. Without the journal: a round
        // that found the data not yet dirtied would commit the new inode, and a failed journal
        // write aborts the journal for good (as jbd2 does), which is not what this test is about
        MountOptions opts = MountOptions.defaults().withWriteback(64L << 20, 20, 0).withJournal(false);
        try (Ext4FileSystem fs = Ext4FileSystem.mount(dev, opts)) {
            dev.failing.set(true);
            long ino = create(fs, "g", data);
            await().atMost(Duration.ofSeconds(20)).until(() -> dev.failed.get() > 0);
            dev.failing.set(false);
            // the flusher may have retried successfully meanwhile; the error is still reported
            Expect.errno(Errno.EIO, fs::sync);
            fs.sync(); // reported once
            assertArrayEquals(data, read(fs, ino, data.length));
        }
        try (Ext4FileSystem fs = Ext4FileSystem.open(img, MountOptions.defaults().withReadOnly(true))) {
            long ino = fs.lookup(Ext4FileSystem.ROOT_INO, "g".getBytes(StandardCharsets.UTF_8));
            assertArrayEquals(data, read(fs, ino, data.length));
        }
        Images.assertClean(img);
    }
}
