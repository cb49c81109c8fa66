package dev.ext4j.fs;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.ext4j.Errno;
import dev.ext4j.Ext4Exception;
import dev.ext4j.testutil.Images;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicLong;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Issue 17, item 1: reading xattrs while another thread adds and removes large ones on the same
 * file must never see a block that is no longer the inode's. Writers move the attributes in and
 * out of an xattr block (allocated, then freed when they go), a third thread writes file data that
 * takes the freed blocks at once (filled with 'a'), and readers get and list the attributes the
 * whole time: any EUCLEAN or EBADMSG, or a value that is not one the writers set, fails the test.
 * It runs {@code ext4j.xattrRaceSeconds} seconds (20 by default; the run of minutes is
 * {@code -Dext4j.xattrRaceSeconds=300}).
 */
class XattrRaceTest {
    @TempDir
    Path work;

    private static final long SECONDS = Long.getLong("ext4j.xattrRaceSeconds", 20);

    private static byte[] name(String s) {
        return s.getBytes(StandardCharsets.UTF_8);
    }

    @Test
    void readersNeverSeeAFreedXattrBlock() throws Exception {
        Path img = Images.mkfs(work.resolve("race.img"), "32M", List.of("-b", "1024", "-I", "256"), null);
        byte[] small = "s".repeat(40).getBytes(StandardCharsets.US_ASCII);
        byte[] large = "L".repeat(700).getBytes(StandardCharsets.US_ASCII);
        byte[] larger = "M".repeat(900).getBytes(StandardCharsets.US_ASCII);
        List<String> failures = new ArrayList<>();
        AtomicLong reads = new AtomicLong();
        AtomicLong changes = new AtomicLong();
        try (Ext4FileSystem fs = Ext4FileSystem.open(img, MountOptions.defaults())) {
            long ino = fs.mknod(Ext4FileSystem.ROOT_INO, name("target"), 0100644, 0, 0, 0, 0);
            long filler = fs.mknod(Ext4FileSystem.ROOT_INO, name("filler"), 0100644, 0, 0, 0, 0);
            fs.setXattr(ino, "user.keep", small, 0);
            long deadline = System.nanoTime() + SECONDS * 1_000_000_000L;
            java.util.function.BooleanSupplier stop = () -> System.nanoTime() > deadline;
            ConcurrentLinkedQueue<String> errors = new ConcurrentLinkedQueue<>();
            CountDownLatch started = new CountDownLatch(5);
            List<Thread> threads = new ArrayList<>();
            threads.add(worker("writer-a", started, stop, errors, () -> {
                fs.setXattr(ino, "user.big", large, 0);
                fs.setXattr(ino, "user.big", larger, 0);
                fs.removeXattr(ino, "user.big"); // the block goes: user.keep fits in the inode
                changes.addAndGet(3);
            }));
            threads.add(worker("writer-b", started, stop, errors, () -> {
                fs.setXattr(ino, "user.other", large, 0);
                fs.removeXattr(ino, "user.other");
                changes.addAndGet(2);
            }));
            byte[] aaaa = new byte[64 << 10];
            Arrays.fill(aaaa, (byte) 'a');
            threads.add(worker("filler", started, stop, errors, () -> {
                fs.write(filler, 0, ByteBuffer.wrap(aaaa));
                fs.fsync(filler, true); // allocated now: freed xattr blocks are taken and overwritten
                fs.truncate(filler, 0);
            }));
            for (int r = 0; r < 2; r++) {
                threads.add(worker("reader-" + r, started, stop, errors, () -> {
                    List<String> names = fs.listXattrs(ino);
                    assertTrue(names.contains("user.keep"), "user.keep listed: " + names);
                    for (String n : names) {
                        byte[] v = fs.findXattr(ino, n);
                        if (v != null && !Arrays.equals(v, small) && !Arrays.equals(v, large) && !Arrays.equals(v, larger)) {
                            throw new AssertionError(n + " has a value no writer set (" + v.length + " bytes)");
                        }
                    }
                    reads.incrementAndGet();
                }));
            }
            started.await();
            for (Thread t : threads) {
                t.join((SECONDS + 60) * 1000);
                assertTrue(!t.isAlive(), t.getName() + " did not stop");
            }
            failures.addAll(errors);
            assertEquals(List.of(), failures.stream().limit(10).toList(), "readers saw a block that was not the inode's any more");
            assertTrue(reads.get() > 100 && changes.get() > 100, "the race ran: " + reads + " reads, " + changes + " changes");
            assertEquals(0, fs.status().errorCount(), "no error recorded in the superblock");
        }
        Images.assertClean(img);
    }

    /** An action that may throw. */
    private interface Step {
        void run() throws Exception;
    }

    private static Thread worker(String name, CountDownLatch started, java.util.function.BooleanSupplier stop, ConcurrentLinkedQueue<String> errors, Step step) {
        Thread t = new Thread(() -> {
            started.countDown();
            while (!stop.getAsBoolean()) {
                try {
                    step.run();
                } catch (Ext4Exception e) {
                    if (e.errno() != Errno.ENOSPC) {
                        errors.add(name + ": " + e.errno() + " " + e.getMessage());
                    }
                } catch (Exception | AssertionError e) {
                    errors.add(name + ": " + e);
                }
            }
        }, name);
        t.start();
        return t;
    }
}
