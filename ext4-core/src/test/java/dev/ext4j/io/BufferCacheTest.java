package dev.ext4j.io;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.ext4j.io.ForwardingDevice;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.time.Duration;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import org.awaitility.Awaitility;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The metadata block cache's rules that no single-threaded filesystem test can reach. */
class BufferCacheTest {
    private static final int BS = 1024;

    @TempDir
    Path work;

    /** A device whose read of one block waits until the test lets it go on. */
    private static final class StalledRead extends ForwardingDevice {
        final long stalledOffset;
        final CountDownLatch reading = new CountDownLatch(1);
        final CountDownLatch proceed = new CountDownLatch(1);

        StalledRead(BlockDevice inner, long stalledOffset) {
            super(inner);
            this.stalledOffset = stalledOffset;
        }

        @Override
        public void read(long offset, ByteBuffer dst) throws IOException {
            inner.read(offset, dst);
            if (offset == stalledOffset && reading.getCount() > 0) {
                reading.countDown();
                try {
                    proceed.await(30, TimeUnit.SECONDS); // holds the contents read before the change
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                }
            }
        }
    }

    /**
     * A reader that missed the cache and read a block from the device must not put those bytes
     * into the cache after a change and a flush of that block: they would become the starting
     * point of the next change (a directory block's new entries lost, or a reused block's old
     * owner's bytes coming back).
     */
    @Test
    void aReadRacingWithAChangeAndAFlushNeverPutsBackOlderContents() throws Exception {
        Path img = work.resolve("blocks.img");
        try (FileChannel ch = FileChannel.open(img, StandardOpenOption.CREATE, StandardOpenOption.WRITE)) {
            ch.write(ByteBuffer.allocate(BS).order(ByteOrder.LITTLE_ENDIAN).putInt(0, 0x01d0), 5L * BS); // block 5 holds the old bytes
            ch.write(ByteBuffer.allocate(BS), 63L * BS);
        }
        StalledRead dev = new StalledRead(FileBlockDevice.open(img, false), 5L * BS);
        try (dev) {
            BufferCache cache = new BufferCache(dev, BS, 64, 64L * BS, 1000);
            CompletableFuture<Integer> reader = CompletableFuture.supplyAsync(() -> {
                try {
                    return cache.get(5).getInt(0);
                } catch (Exception e) {
                    throw new RuntimeException(e);
                }
            });
            assertTrue(dev.reading.await(30, TimeUnit.SECONDS), "the reader never read block 5");
            Thread writer = new Thread(() -> {
                try {
                    cache.create(5, b -> b.putInt(0, 0x0e11)); // a new owner's contents, written home at once
                    cache.flush();
                } catch (Exception e) {
                    throw new RuntimeException(e);
                }
            });
            writer.start();
            // the writer either finishes (no lock held by the reader) or waits for the reader's read
            Awaitility.await().atMost(Duration.ofSeconds(30)).until(() -> !writer.isAlive()
                    || writer.getState() == Thread.State.WAITING);
            dev.proceed.countDown();
            writer.join(30_000);
            reader.get(30, TimeUnit.SECONDS);
            assertEquals(0x0e11, cache.get(5).getInt(0), "the cache holds the bytes read before the change");
            ByteBuffer onDisk = ByteBuffer.allocate(BS).order(ByteOrder.LITTLE_ENDIAN);
            dev.read(5L * BS, onDisk);
            assertEquals(0x0e11, onDisk.getInt(0));
        }
    }
}
