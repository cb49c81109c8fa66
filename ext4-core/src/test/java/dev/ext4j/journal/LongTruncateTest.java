package dev.ext4j.journal;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.ext4j.Ext4Exception;
import dev.ext4j.fs.Ext4FileSystem;
import dev.ext4j.fs.MountOptions;
import dev.ext4j.io.BlockDevice;
import dev.ext4j.io.MemoryBlockDevice;
import dev.ext4j.io.ForwardingDevice;
import dev.ext4j.testutil.Images;
import dev.ext4j.testutil.RecordingDevice;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.TreeSet;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * A truncate or delete of a file so fragmented that freeing it dirties more blocks than one
 * transaction of a 1 MiB journal may hold (a quarter of the log): it restarts its handle between
 * steps (ext4_ext_truncate_extend_restart()), so it commits as several transactions, and a power
 * cut between them is finished by the orphan list at the next mount.
 */
class LongTruncateTest {
    private static final int PUNCH = 0x02 | 0x01; // FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE
    /** Extents of the fragmented file: spread over ~400 groups of 256 blocks, so freeing them dirties
     * more bitmaps than a 255-block transaction holds. */
    private static final int FRAGMENTS = 50_000;
    private static final int BS = 1024;

    @TempDir
    static Path shared;
    @TempDir
    Path dir;

    /** The image with /big holding FRAGMENTS one-block unwritten extents, each followed by a gap. */
    private static byte[] fragmented;

    @BeforeAll
    static void makeFragmentedImage() throws Exception {
        Path img = shared.resolve("frag.img");
        Images.mkfs(img, "128M", List.of("-b", "1024", "-g", "256", "-N", "4096", "-J", "size=1"), null);
        try (Ext4FileSystem fs = Ext4FileSystem.open(img, noTimer())) {
            long ino = fs.mknod(Ext4FileSystem.ROOT_INO, b("big"), 0100644, 0, 0, 0, 0);
            fs.fallocate(ino, 0, 0, 2L * FRAGMENTS * BS);
            for (int k = 0; k < FRAGMENTS; k++) {
                fs.fallocate(ino, PUNCH, (2L * k + 1) * BS, BS);
            }
            fs.write(ino, 0, ByteBuffer.wrap(b("first block")));
        }
        // 50,000 splits at the end of the tree leave index levels half full ("extent tree could be
        // narrower", an optimization, not an error): let e2fsck rebuild the tree so the cases
        // below start from an image that e2fsck -fn passes
        Images.Result r = Images.run(List.of("e2fsck", "-fy", img.toString()));
        assertTrue(r.exitCode() <= 1, "e2fsck -fy of the fragmented image: " + r.all());
        JournalCrashTest.assertFsckClean(img, "the fragmented image");
        fragmented = Files.readAllBytes(img);
    }

    private static MountOptions noTimer() {
        return MountOptions.defaults().withWriteback(MountOptions.DEFAULT_CACHE_BYTES, 3_600_000, 30_000);
    }

    private static byte[] b(String s) {
        return s.getBytes(StandardCharsets.UTF_8);
    }

    /** Counts jbd2 commit blocks (magic 0xC03B3998, blocktype 2) as they are written. */
    static final class CommitCounter extends ForwardingDevice {
        final AtomicInteger commits = new AtomicInteger();

        CommitCounter(BlockDevice inner) {
            super(inner);
        }

        @Override
        public void write(long offset, ByteBuffer src) throws IOException {
            ByteBuffer be = src.duplicate().order(ByteOrder.BIG_ENDIAN);
            for (int at = be.position(); at + 8 <= be.limit(); at += BS) {
                if (be.getInt(at) == 0xC03B3998 && be.getInt(at + 4) == 2) {
                    commits.incrementAndGet();
                }
            }
            super.write(offset, src);
        }
    }

    /** Runs {@code change} on a copy of the fragmented image; returns the commits it made (sync before and after). */
    private int commitsOf(String what, FsChange change) throws Exception {
        byte[] image = fragmented.clone();
        CommitCounter dev = new CommitCounter(new MemoryBlockDevice(image, false));
        int commits;
        try (Ext4FileSystem fs = Ext4FileSystem.mount(dev, noTimer())) {
            fs.sync();
            int before = dev.commits.get();
            change.run(fs, fs.resolve(b("/big")));
            fs.sync();
            commits = dev.commits.get() - before;
        }
        Path img = dir.resolve("after.img");
        Files.write(img, image);
        JournalCrashTest.assertFsckClean(img, "after the " + what);
        return commits;
    }

    @FunctionalInterface
    interface FsChange {
        void run(Ext4FileSystem fs, long ino) throws Ext4Exception;
    }

    @Test
    void aTruncateOfAHugelyFragmentedFileCommitsInSeveralTransactions() throws Exception {
        int commits = commitsOf("truncate", (fs, ino) -> {
            fs.truncate(ino, (long) FRAGMENTS * BS / 4); // seven eighths of the extents go
            assertEquals((long) FRAGMENTS * BS / 4, fs.stat(ino).size());
        });
        assertTrue(commits >= 2, "the truncate committed " + commits + " transaction(s)");
    }

    @Test
    void aDeleteOfAHugelyFragmentedFileCommitsInSeveralTransactions() throws Exception {
        int commits = commitsOf("delete", (fs, ino) -> fs.unlink(Ext4FileSystem.ROOT_INO, b("big")));
        assertTrue(commits >= 2, "the delete committed " + commits + " transaction(s)");
    }

    @Test
    void punchingAHoleOverEveryExtentCommitsInSeveralTransactions() throws Exception {
        int commits = commitsOf("punch", (fs, ino) -> {
            fs.fallocate(ino, PUNCH, 0, 2L * FRAGMENTS * BS);
            assertEquals(2L * FRAGMENTS * BS, fs.stat(ino).size());
            assertEquals(0, fs.stat(ino).blocks512(), "no data and no tree block is left");
        });
        assertTrue(commits >= 2, "the punch committed " + commits + " transaction(s)");
    }

    /**
     * An ext3-style file (indirect blocks), contiguous over ~350 groups of 256 blocks: its truncate
     * and its delete free blocks in more groups than one transaction may dirty.
     */
    @Test
    void aTruncateAndADeleteOfAnIndirectMappedFileCommitInSeveralTransactions() throws Exception {
        Path img = dir.resolve("ind.img");
        Images.mkfs(img, "128M", List.of("-b", "1024", "-g", "256", "-N", "4096", "-J", "size=1", "-O", "^extents,^64bit"), null);
        byte[] image = Files.readAllBytes(img);
        CommitCounter dev = new CommitCounter(new MemoryBlockDevice(image, false));
        int truncateCommits;
        int deleteCommits;
        try (Ext4FileSystem fs = Ext4FileSystem.mount(dev, noTimer())) {
            long ino = fs.mknod(Ext4FileSystem.ROOT_INO, b("big"), 0100644, 0, 0, 0, 0);
            byte[] chunk = new byte[1 << 20];
            java.util.Arrays.fill(chunk, (byte) 0x5a);
            for (int mb = 0; mb < 90; mb++) {
                fs.write(ino, (long) mb << 20, ByteBuffer.wrap(chunk));
            }
            fs.sync();
            int before = dev.commits.get();
            fs.truncate(ino, 10L << 20);
            fs.sync();
            truncateCommits = dev.commits.get() - before;
            long other = fs.mknod(Ext4FileSystem.ROOT_INO, b("other"), 0100644, 0, 0, 0, 0);
            for (int mb = 0; mb < 80; mb++) {
                fs.write(other, (long) mb << 20, ByteBuffer.wrap(chunk));
            }
            fs.sync();
            before = dev.commits.get();
            fs.unlink(Ext4FileSystem.ROOT_INO, b("other"));
            fs.sync();
            deleteCommits = dev.commits.get() - before;
            assertEquals(10L << 20, fs.stat(ino).size());
        }
        Files.write(img, image);
        JournalCrashTest.assertFsckClean(img, "after the truncate and the delete of indirect-mapped files");
        assertTrue(truncateCommits >= 2, "the truncate committed " + truncateCommits + " transaction(s)");
        assertTrue(deleteCommits >= 2, "the delete committed " + deleteCommits + " transaction(s)");
    }

    /**
     * A preallocation over ~350 groups of 256 blocks dirties a bitmap per group: more than one
     * transaction of the 1 MiB journal may hold, so it restarts its handle between runs; the
     * preallocated space is all there and unwritten (reads as zeros).
     */
    @Test
    void aHugePreallocationCommitsInSeveralTransactions() throws Exception {
        Path img = dir.resolve("falloc.img");
        Images.mkfs(img, "128M", List.of("-b", "1024", "-g", "256", "-N", "4096", "-J", "size=1"), null);
        byte[] image = Files.readAllBytes(img);
        CommitCounter dev = new CommitCounter(new MemoryBlockDevice(image, false));
        int commits;
        long length = 90L << 20;
        try (Ext4FileSystem fs = Ext4FileSystem.mount(dev, noTimer())) {
            long ino = fs.mknod(Ext4FileSystem.ROOT_INO, b("prealloc"), 0100644, 0, 0, 0, 0);
            fs.sync();
            int before = dev.commits.get();
            fs.fallocate(ino, 0, 0, length);
            fs.sync();
            commits = dev.commits.get() - before;
            assertEquals(length, fs.stat(ino).size());
            assertTrue(fs.stat(ino).blocks512() >= length / 512, "i_blocks " + fs.stat(ino).blocks512());
            ByteBuffer tail = ByteBuffer.allocate(BS);
            fs.read(ino, length - BS, tail);
            assertEquals(ByteBuffer.allocate(BS), tail.flip(), "a preallocated block reads as zeros");
        }
        Files.write(img, image);
        JournalCrashTest.assertFsckClean(img, "after a huge fallocate");
        assertTrue(commits >= 2, "the fallocate committed " + commits + " transaction(s)");
    }

    @Test
    void aPowerCutBetweenTheStepsOfATruncateIsFinishedAtTheNextMount() throws Exception {
        RecordingDevice dev = new RecordingDevice(fragmented.clone());
        List<Integer> afterCommit = new ArrayList<>();
        try (Ext4FileSystem fs = Ext4FileSystem.mount(dev, noTimer())) {
            long ino = fs.resolve(b("/big"));
            fs.sync();
            int start = dev.writes.size();
            fs.truncate(ino, 3 * BS);
            int end = dev.writes.size();
            for (int n = start; n < end; n++) {
                ByteBuffer w = ByteBuffer.wrap(dev.writes.get(n).bytes());
                for (int at = 0; at + 8 <= w.limit(); at += BS) {
                    if (w.getInt(at) == 0xC03B3998 && w.getInt(at + 4) == 2) {
                        afterCommit.add(n + 1);
                    }
                }
            }
            assertTrue(afterCommit.size() >= 2, "the truncate committed " + afterCommit.size()
                    + " transaction(s) before its handle stopped; no power cut between steps to test");
        }
        TreeSet<Integer> cuts = new TreeSet<>();
        cuts.add(afterCommit.get(0));
        cuts.add(afterCommit.get(afterCommit.size() / 2));
        cuts.add(afterCommit.get(afterCommit.size() - 1));
        cuts.add(afterCommit.get(0) + 1);
        Path img = dir.resolve("cut.img");
        for (int n : cuts) {
            String what = "cut after write " + n + " of " + dev.writes.size() + " (commits end at " + afterCommit + ")";
            Files.write(img, dev.cut(fragmented, n));
            List<String> messages = JournalFixture.replayWithExt4j(img);
            JournalCrashTest.assertFsckClean(img, what + "; mount said " + messages);
            try (Ext4FileSystem fs = Ext4FileSystem.open(img, MountOptions.defaults().withReadOnly(true))) {
                assertEquals(3L * BS, fs.stat(fs.resolve(b("/big"))).size(), what);
            } catch (Ext4Exception e) {
                throw new AssertionError(what, e);
            }
        }
    }
}
