package dev.ext4j.fs;

import static org.awaitility.Awaitility.await;
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
import java.time.Duration;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * A change to the file while its writeback is between writing the data and mapping it: the data
 * write is held at the device, the change is made to wait for it (as it does), and then the
 * writeback completes. The image file is real; only the pause is injected.
 */
class WritebackRaceTest {
    @TempDir
    Path work;

    /**
     * The image file, holding until released the first write whose first byte is {@link #marker},
     * or the first read made once {@link #readWhen} is true.
     */
    private static final class PausingDevice extends ForwardingDevice {
        volatile int marker = -1;
        volatile java.util.function.BooleanSupplier readWhen;
        final CountDownLatch reached = new CountDownLatch(1);
        final CountDownLatch release = new CountDownLatch(1);

        PausingDevice(BlockDevice inner) {
            super(inner);
        }

        static PausingDevice over(Path img) throws Exception {
            return new PausingDevice(FileBlockDevice.open(img, false));
        }

        @Override
        public void write(long offset, ByteBuffer src) throws IOException {
            if (marker >= 0 && src.remaining() > 0 && (src.get(src.position()) & 0xFF) == marker) {
                marker = -1;
                pause();
            }
            super.write(offset, src);
        }

        @Override
        public void read(long offset, ByteBuffer dst) throws IOException {
            java.util.function.BooleanSupplier when = readWhen;
            if (when != null && when.getAsBoolean()) {
                readWhen = null;
                pause();
            }
            super.read(offset, dst);
        }

        private void pause() throws IOException {
            reached.countDown();
            try {
                release.await();
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new IOException(e);
            }
        }
    }

    /** A flusher that does not run on its own during the test. */
    private static final MountOptions NO_FLUSHER = MountOptions.defaults().withWriteback(64L << 20, 3_600_000, 3_600_000);

    /**
     * A truncate that shrinks the file below what writes left in memory but not below the on-disk
     * size, while a writeback of the cut-off data is in flight: the blocks that writeback mapped
     * past the new end must go (they stayed, unwritten, counted in st_blocks until a later
     * truncate), and the file must read zeros there when it grows again.
     */
    @Test
    void aTruncateDuringWritebackLeavesNoOldDataPastTheNewEnd() throws Exception {
        Path img = Images.mkfs(work.resolve("t.img"), "64M", List.of("-b", "4096"), null);
        PausingDevice dev = PausingDevice.over(img);
        byte[] head = filled(0x10000, 0x11);
        long ino;
        try (Ext4FileSystem fs = Ext4FileSystem.mount(dev, NO_FLUSHER)) {
            ino = create(fs, "f");
            fs.write(ino, 0, ByteBuffer.wrap(head));
            fs.sync(); // on disk: 64 KiB
            fs.write(ino, 0x200000, ByteBuffer.wrap(filled(0x40000, 0x98))); // in memory: 2 MiB + 256 KiB
            CompletableFuture<Void> sync = hold(dev, 0x98, fs::sync);
            whileHeld(dev, () -> fs.truncate(ino, 0x100000)); // shorter than in memory, longer than on disk
            sync.get(30, TimeUnit.SECONDS);
            fs.sync();
            assertEquals(head.length / 512, fs.stat(ino).blocks512(), "the blocks past the new end went (st_blocks)");
            fs.truncate(ino, 0x300000);
            assertArrayEquals(new byte[0x40000], read(fs, ino, 0x200000, 0x40000), "zeros where the cut-off data was");
            fs.release(ino);
        }
        Images.assertSilentlyClean(img);
        try (Ext4FileSystem fs = Ext4FileSystem.open(img, MountOptions.defaults().withReadOnly(true))) {
            assertEquals(0x300000, fs.stat(ino).size());
            assertArrayEquals(head, read(fs, ino, 0, head.length));
            assertArrayEquals(new byte[0x40000], read(fs, ino, 0x200000, 0x40000), "zeros after a remount");
        }
    }

    /**
     * Two writebacks of one file in flight at once, the first held at its data write while the
     * second completes; then a truncate cuts off the first one's blocks. Each writeback must learn
     * of what was cut from its own range: the second one's end must not take the first one's
     * record of it away, or the first converts blocks the truncate cut off, and their bytes show
     * when the file grows again (the fsx failure: two rounds of one file, the flusher's and the
     * writer's own).
     */
    @Test
    void aWritebackThatEndsFirstLeavesTheOtherOnesCancellations() throws Exception {
        Path img = Images.mkfs(work.resolve("two.img"), "64M", List.of("-b", "4096"), null);
        PausingDevice dev = PausingDevice.over(img);
        byte[] a = filled(0x10000, 0xAA);
        byte[] b = filled(0x10000, 0xBB);
        long ino;
        try (Ext4FileSystem fs = Ext4FileSystem.mount(dev, NO_FLUSHER)) {
            ino = create(fs, "f");
            fs.write(ino, 0x200000, ByteBuffer.wrap(a));
            CompletableFuture<Void> first = hold(dev, 0xAA, () -> fs.writeback().writeback(ino));
            fs.write(ino, 0x100000, ByteBuffer.wrap(b));
            fs.writeback().writeback(ino); // the second writeback, of b alone, ends first
            whileHeld(dev, () -> fs.truncate(ino, 0x180000)); // cuts off all of a
            first.get(30, TimeUnit.SECONDS);
            assertTrue(fs.inode(ino).tickets().isEmpty(), "no writeback left a record behind");
            fs.truncate(ino, 0x300000);
            assertArrayEquals(b, read(fs, ino, 0x100000, b.length));
            assertArrayEquals(new byte[a.length], read(fs, ino, 0x200000, a.length), "zeros where the cut-off data was");
            fs.release(ino);
        }
        Images.assertSilentlyClean(img);
        try (Ext4FileSystem fs = Ext4FileSystem.open(img, MountOptions.defaults().withReadOnly(true))) {
            assertArrayEquals(b, read(fs, ino, 0x100000, b.length));
            assertArrayEquals(new byte[a.length], read(fs, ino, 0x200000, a.length), "zeros after a remount");
        }
    }

    /**
     * Near a full disk a write goes straight to the image (ext4_nonda_switch()) and first drops
     * the cached pages it overwrites; a page that another writeback holds and that a write has
     * dirtied again must stay, with its new bytes and its promise (they were dropped: the bytes
     * were lost and the promise leaked, so the superblock's free count came out low).
     */
    @Test
    void aWriteThroughKeepsAPageThatIsDirtyAgainUnderWriteback() throws Exception {
        Path img = Images.mkfs(work.resolve("low.img"), "16M", List.of("-b", "4096"), null);
        PausingDevice dev = PausingDevice.over(img);
        byte[] want = filled(4096, 0xAA);
        long ino;
        try (Ext4FileSystem fs = Ext4FileSystem.mount(dev, NO_FLUSHER)) {
            ino = create(fs, "f");
            fs.write(ino, 0, ByteBuffer.wrap(want.clone()));
            CompletableFuture<Void> writeback = hold(dev, 0xAA, () -> fs.writeback().writeback(ino));
            byte[] again = filled(100, 0xCC);
            fs.write(ino, 0, ByteBuffer.wrap(again)); // dirty again while under writeback
            System.arraycopy(again, 0, want, 0, again.length);
            // a second file takes the space until writes stop being delayed
            long filler = create(fs, "g");
            byte[] chunk = new byte[64 << 10];
            for (long off = 0; !fs.writeback().lowOnSpace(); off += chunk.length) {
                assertEquals(chunk.length, fs.write(filler, off, ByteBuffer.wrap(chunk)));
            }
            byte[] through = filled(100, 0xDD);
            System.arraycopy(through, 0, want, 200, through.length);
            whileHeld(dev, () -> fs.write(ino, 200, ByteBuffer.wrap(through)));
            writeback.get(30, TimeUnit.SECONDS);
            assertArrayEquals(want, read(fs, ino, 0, want.length), "the bytes written while the page was under writeback");
            fs.release(ino);
        }
        Images.assertSilentlyClean(img);
        try (Ext4FileSystem fs = Ext4FileSystem.open(img, MountOptions.defaults().withReadOnly(true))) {
            assertArrayEquals(want, read(fs, ino, 0, want.length), "after a remount");
        }
    }

    /**
     * statfs while a writeback round is allocating: the blocks the round has taken are counted
     * once, as used, and no longer as promised to dirty pages. They were given back only at the
     * end of the round, so until then df counted them twice (a full 1 KiB-block disk read 0 free
     * blocks instead of its 655). The round is held at a bitmap read that comes after its first
     * allocation: more dirty data than one group holds needs a second group.
     */
    @Test
    void statfsDuringAWritebackRoundCountsItsBlocksOnce() throws Exception {
        Path img = Images.mkfs(work.resolve("df.img"), "32M", List.of("-b", "1024"), null);
        PausingDevice dev = PausingDevice.over(img);
        long ino;
        try (Ext4FileSystem fs = Ext4FileSystem.mount(dev, NO_FLUSHER)) {
            ino = create(fs, "f");
            byte[] data = filled(12 << 20, 0x5A); // 12 MiB of 1 KiB blocks: more than a group of 8 MiB
            assertEquals(data.length, fs.write(ino, 0, ByteBuffer.wrap(data)));
            long free = fs.statfs(false).freeBlocks();
            long unallocated = fs.sbi().allocator().freeBlocksCount();
            dev.readWhen = () -> fs.sbi().allocator().freeBlocksCount() < unallocated;
            CompletableFuture<Void> writeback = CompletableFuture.runAsync(() -> run(() -> fs.writeback().writeback(ino)));
            assertTrue(dev.reached.await(30, TimeUnit.SECONDS), "the round read a bitmap after its first allocation");
            long taken = unallocated - fs.sbi().allocator().freeBlocksCount();
            // statfs answers now, or waits for the allocation under way to give back its promise
            Thread[] asker = new Thread[1];
            CompletableFuture<Long> seen = CompletableFuture.supplyAsync(() -> {
                asker[0] = Thread.currentThread();
                return fs.statfs(false).freeBlocks();
            });
            await().atMost(Duration.ofSeconds(30)).until(() -> seen.isDone() || asker[0] != null
                    && asker[0].getState() == Thread.State.WAITING
                    && Arrays.stream(asker[0].getStackTrace()).anyMatch(f -> f.getMethodName().equals("freeLessPromised")));
            dev.release.countDown();
            writeback.get(30, TimeUnit.SECONDS);
            assertEquals(free, seen.get(30, TimeUnit.SECONDS), "free blocks seen while the round held " + taken + " new blocks");
            fs.sync();
            assertEquals(free, fs.statfs(false).freeBlocks(), "free blocks after the writeback");
            fs.release(ino);
        }
        Images.assertSilentlyClean(img);
    }

    /**
     * Collapse and insert range while a writeback of the file is in flight: the shift waits until
     * that writeback has mapped its data (it lets the inode go for it), or the data would be
     * converted at the old offsets, or not at all, and read as zeros where it moved to.
     */
    @Test
    void aShiftDuringWritebackMovesTheWrittenBackData() throws Exception {
        Path img = Images.mkfs(work.resolve("shift.img"), "64M", List.of("-b", "4096"), null);
        PausingDevice dev = PausingDevice.over(img);
        byte[] head = filled(0x10000, 0x11);
        byte[] tail = filled(0x10000, 0x98);
        long ino;
        // collapsing [16K, 32K) of 192K: 48K of 0x11, zeros, the 64K of 0x98 from 112K on
        byte[] collapsed = new byte[0x2C000];
        Arrays.fill(collapsed, 0, 0xC000, (byte) 0x11);
        Arrays.fill(collapsed, 0x1C000, 0x2C000, (byte) 0x98);
        // then inserting 32K at 16K
        byte[] moved = new byte[0x34000];
        System.arraycopy(collapsed, 0, moved, 0, 0x4000);
        System.arraycopy(collapsed, 0x4000, moved, 0xC000, collapsed.length - 0x4000);
        try (Ext4FileSystem fs = Ext4FileSystem.mount(dev, NO_FLUSHER)) {
            ino = create(fs, "f");
            fs.write(ino, 0, ByteBuffer.wrap(head));
            fs.sync();
            fs.write(ino, 0x20000, ByteBuffer.wrap(tail)); // in memory only
            CompletableFuture<Void> sync = hold(dev, 0x98, fs::sync);
            whileHeld(dev, () -> fs.fallocate(ino, 0x08, 0x4000, 0x4000)); // FALLOC_FL_COLLAPSE_RANGE
            sync.get(30, TimeUnit.SECONDS);
            fs.fallocate(ino, 0x20, 0x4000, 0x8000); // FALLOC_FL_INSERT_RANGE
            assertArrayEquals(moved, read(fs, ino, 0, moved.length));
            fs.release(ino);
        }
        Images.assertSilentlyClean(img);
        try (Ext4FileSystem fs = Ext4FileSystem.open(img, MountOptions.defaults().withReadOnly(true))) {
            assertEquals(moved.length, fs.stat(ino).size());
            assertArrayEquals(moved, read(fs, ino, 0, moved.length), "after a remount");
        }
    }

    /**
     * Starts {@code writeback} on another thread with the data write of bytes {@code marker} held
     * at the device; returns once it is held.
     */
    private static CompletableFuture<Void> hold(PausingDevice dev, int marker, Action writeback) throws InterruptedException {
        dev.marker = marker;
        CompletableFuture<Void> f = CompletableFuture.runAsync(() -> run(writeback));
        assertTrue(dev.reached.await(30, TimeUnit.SECONDS), "the writeback reached its data write");
        return f;
    }

    /**
     * Runs {@code change} on another thread until it holds the inode and waits for the held data
     * write (as a truncate, punch or write-through does), then lets the write go and waits for it.
     */
    private static void whileHeld(PausingDevice dev, Action change) throws Exception {
        Thread[] runner = new Thread[1];
        CompletableFuture<Void> done = CompletableFuture.runAsync(() -> {
            runner[0] = Thread.currentThread();
            run(change);
        });
        await().atMost(Duration.ofSeconds(30)).until(() -> runner[0] != null
                && Arrays.stream(runner[0].getStackTrace()).anyMatch(f -> f.getMethodName().equals("awaitIo")));
        dev.release.countDown();
        done.get(30, TimeUnit.SECONDS);
    }

    private static long create(Ext4FileSystem fs, String name) throws Exception {
        long ino = fs.mknod(Ext4FileSystem.ROOT_INO, name.getBytes(StandardCharsets.US_ASCII), 0100644, 0, 0, 0, 0);
        fs.open(ino);
        return ino;
    }

    private static byte[] filled(int len, int b) {
        byte[] a = new byte[len];
        Arrays.fill(a, (byte) b);
        return a;
    }

    private interface Action {
        void run() throws Exception;
    }

    private static void run(Action a) {
        try {
            a.run();
        } catch (Exception e) {
            throw new RuntimeException(e);
        }
    }

    private static byte[] read(Ext4FileSystem fs, long ino, long off, int len) throws Exception {
        byte[] back = new byte[len];
        assertEquals(len, fs.read(ino, off, ByteBuffer.wrap(back)));
        return back;
    }
}
