package dev.ext4j.fs;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.ext4j.LockOrder;
import dev.ext4j.journal.Transactions;
import dev.ext4j.testutil.Images;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** {@link InodeLocks}: one lock per inode, bounded memory, and the order {@link LockOrder} checks. */
class InodeLocksTest {
    @TempDir
    Path work;

    /** Locks whose entries leave with their last holder. */
    private static InodeLocks locks() {
        return new InodeLocks(Transactions.unjournaled(null), 0); // its handles do nothing
    }

    /** Inode 1026 shared a stripe with the root (2) among the old 1,024: a long truncate there held up every lookup in /. */
    @Test
    void aWriterOfOneInodeDoesNotBlockAReaderOfAnother() throws Exception {
        InodeLocks locks = locks();
        CountDownLatch locked = new CountDownLatch(1);
        CountDownLatch done = new CountDownLatch(1);
        ExecutorService pool = Executors.newFixedThreadPool(2);
        try {
            Future<?> writer = pool.submit(() -> {
                try (InodeLocks.Held h = locks.lockAll(1026)) {
                    locked.countDown();
                    done.await();
                }
                return null;
            });
            assertTrue(locked.await(10, TimeUnit.SECONDS));
            Future<?> root = pool.submit(() -> {
                try (InodeLocks.Locked l = locks.read(Ext4FileSystem.ROOT_INO)) {
                    return null;
                }
            });
            root.get(10, TimeUnit.SECONDS); // a timeout here: the root waited for inode 1026
            CompletableFuture<Void> same = CompletableFuture.runAsync(() -> {
                try (InodeLocks.Locked l = locks.read(1026)) {
                    assertEquals(0, done.getCount(), "read inode 1026 while its writer held it");
                }
            });
            assertThrows(TimeoutException.class, () -> same.get(200, TimeUnit.MILLISECONDS), "the writer's own inode stays locked");
            done.countDown();
            writer.get(10, TimeUnit.SECONDS);
            same.get(10, TimeUnit.SECONDS);
        } finally {
            done.countDown();
            pool.shutdownNow();
        }
        assertEquals(0, locks.entries());
    }

    /** Several threads lock overlapping inodes (with duplicates and zeros); the writers exclude each other, and no entry is left. */
    @Test
    void manyThreadsLeaveTheMapEmpty() throws Exception {
        InodeLocks locks = locks();
        hammer(locks);
        assertEquals(0, locks.entries(), "entries left in the map");
    }

    /** The same with idle entries kept for reuse: taken up again, or dropped when there are enough. */
    @Test
    void manyThreadsLeaveAtMostTheIdleEntries() throws Exception {
        InodeLocks locks = new InodeLocks(Transactions.unjournaled(null), 8);
        hammer(locks);
        assertEquals(0, locks.heldEntries());
        assertTrue(locks.entries() <= 8 + 4, locks.entries() + " idle entries kept"); // the map's size is read without a lock
    }

    /** Sequential locks of many inodes keep no more than the idle bound. */
    @Test
    void idleEntriesAreBounded() {
        InodeLocks locks = new InodeLocks(Transactions.unjournaled(null));
        for (long ino = 1; ino <= 3 * InodeLocks.IDLE_KEPT; ino++) {
            try (InodeLocks.Held h = locks.lockAll(ino); InodeLocks.Locked l = locks.read(ino)) {
                if (ino % 4096 == 0) { // heldEntries() walks every entry: each time would take minutes
                    assertEquals(1, locks.heldEntries());
                }
            }
        }
        assertEquals(InodeLocks.IDLE_KEPT, locks.entries());
        assertEquals(0, locks.heldEntries());
    }

    private static void hammer(InodeLocks locks) throws Exception {
        int inodes = 40;
        int threads = 4;
        int rounds = 20_000;
        long[] counts = new long[inodes + 1]; // changed only under the inode's write lock
        ExecutorService pool = Executors.newFixedThreadPool(threads);
        try {
            List<Future<Long>> results = new ArrayList<>();
            for (int t = 0; t < threads; t++) {
                long seed = t;
                results.add(pool.submit(() -> {
                    SplittableRandom r = new SplittableRandom(seed);
                    long increments = 0;
                    for (int i = 0; i < rounds; i++) {
                        int a = 1 + r.nextInt(inodes);
                        int b = 1 + r.nextInt(inodes);
                        switch (r.nextInt(3)) {
                            case 0 -> {
                                try (InodeLocks.Held h = locks.lockAll(b, 0, a, b)) {
                                    counts[a]++;
                                    increments++;
                                    if (a != b) {
                                        counts[b]++;
                                        increments++;
                                    }
                                }
                            }
                            case 1 -> {
                                try (InodeLocks.Locked l = locks.read(a)) {
                                    assertTrue(counts[a] >= 0);
                                }
                            }
                            default -> {
                                try (InodeLocks.Held h = locks.lockAll(a); InodeLocks.Locked l = locks.install(a)) {
                                    counts[a]++;
                                    increments++;
                                }
                            }
                        }
                    }
                    return increments;
                }));
            }
            long expected = 0;
            for (Future<Long> f : results) {
                expected += f.get(120, TimeUnit.SECONDS);
            }
            long sum = 0;
            for (long c : counts) {
                sum += c;
            }
            assertEquals(expected, sum, "an increment under a write lock was lost: two threads held one inode's lock");
        } finally {
            pool.shutdownNow();
        }
    }

    @Test
    void theInstallLockIsPerInodeAndReentrant() throws Exception {
        InodeLocks locks = locks();
        try (InodeLocks.Locked a = locks.install(1026); InodeLocks.Locked again = locks.install(1026)) {
            CompletableFuture.runAsync(() -> {
                try (InodeLocks.Locked b = locks.install(2)) {
                    assertEquals(2, locks.heldEntries());
                }
            }).get(10, TimeUnit.SECONDS);
        }
        assertEquals(0, locks.entries());
    }

    // ---- the order, through the real classes ----

    @Test
    void theWriteGateUnderAnInodeLockFailsAtOnce() {
        assumeTrue(LockOrder.ENABLED, "run with -Dext4j.lockcheck=true (ext4-core's surefire sets it)");
        InodeLocks locks = locks();
        WriteGate gate = new WriteGate();
        try (InodeLocks.Locked l = locks.read(12)) {
            IllegalStateException e = assertThrows(IllegalStateException.class, gate::enter);
            assertTrue(e.getMessage().contains("asks for write gate while holding inode 12"), e.getMessage());
        }
        assertEquals(List.of(), LockOrder.held());
        assertTrue(!gate.busy(), "the refused entry did not count as inside the gate");
        // the documented order: the gate, the inodes ascending, their install locks
        gate.enter();
        try (InodeLocks.Held h = locks.lockAll(1026, 2); InodeLocks.Locked i = locks.install(1026)) {
            assertEquals(List.of("write gate", "inode 2", "inode 1026", "install lock of inode 1026"), LockOrder.held());
        } finally {
            gate.exit();
        }
        assertEquals(List.of(), LockOrder.held());
    }

    @Test
    void aFreezeFromUnderAnInodeLockFailsAtOnce() {
        assumeTrue(LockOrder.ENABLED, "run with -Dext4j.lockcheck=true (ext4-core's surefire sets it)");
        InodeLocks locks = locks();
        WriteGate gate = new WriteGate();
        try (InodeLocks.Held h = locks.lockAll(12)) {
            IllegalStateException e = assertThrows(IllegalStateException.class, gate::freeze);
            assertTrue(e.getMessage().contains("asks for write gate (freezing) while holding inode 12"), e.getMessage());
        }
        assertTrue(!gate.isFrozen());
    }

    /** The superblock's monitor, then a read of a file (its inode's read lock), on a real filesystem. */
    @Test
    void anInodeLockUnderTheSuperblockMonitorFailsAtOnce() throws Exception {
        assumeTrue(LockOrder.ENABLED, "run with -Dext4j.lockcheck=true (ext4-core's surefire sets it)");
        Path src = Files.createDirectories(work.resolve("src"));
        Files.writeString(src.resolve("f"), "some data\n");
        Path img = Images.mkfs(work.resolve("locks.img"), "8M", List.of(), src);
        try (Ext4FileSystem fs = Ext4FileSystem.open(img, MountOptions.defaults())) {
            long ino = fs.resolve("/f".getBytes(StandardCharsets.UTF_8));
            synchronized (LockOrder.monitor(LockOrder.Level.SUPERBLOCK, -1, fs.superblock())) {
                IllegalStateException e = assertThrows(IllegalStateException.class, () -> fs.read(ino, 0, ByteBuffer.allocate(64)));
                assertTrue(e.getMessage().contains("asks for inode " + ino + " while holding superblock"), e.getMessage());
            }
            // the right order works: a change through the gate, the inode locks, the handle and below
            long dir = fs.mkdir(Ext4FileSystem.ROOT_INO, "d".getBytes(StandardCharsets.UTF_8), 0755, 0, 0);
            assertEquals(dir, fs.resolve("/d".getBytes(StandardCharsets.UTF_8)));
            assertEquals(10, fs.read(ino, 0, ByteBuffer.allocate(64)));
            assertEquals(0, fs.sbi().locks.heldEntries());
        }
        assertEquals(List.of(), LockOrder.held());
        Images.assertClean(img);
    }
}
