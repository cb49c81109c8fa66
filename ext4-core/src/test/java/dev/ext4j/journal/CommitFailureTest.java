package dev.ext4j.journal;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTimeoutPreemptively;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.ext4j.Errno;
import dev.ext4j.Ext4Exception;
import dev.ext4j.fs.ErrorPolicy;
import dev.ext4j.fs.Ext4FileSystem;
import dev.ext4j.fs.MountOptions;
import dev.ext4j.format.Superblock;
import dev.ext4j.io.BlockDevice;
import dev.ext4j.io.MemoryBlockDevice;
import dev.ext4j.testutil.FsUtil;
import dev.ext4j.io.ForwardingDevice;
import dev.ext4j.testutil.Images;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Set;
import java.util.concurrent.atomic.AtomicBoolean;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/**
 * A commit that fails (the journal area stops taking writes) aborts the journal: the error is
 * recorded in the superblock, errors= applies, every later change fails with EROFS, unmount
 * completes, and after e2fsck -fy (the test leaves errors on purpose: the image is marked with
 * errors and needs recovery) the image is clean and mounts again.
 */
class CommitFailureTest {
    private static final int BS = 1024;

    @TempDir
    Path dir;

    /** Fails every write into the journal's blocks once armed. */
    static final class JournalWriteFailure extends ForwardingDevice {
        final Set<Long> journalBlocks;
        volatile boolean armed;

        JournalWriteFailure(BlockDevice inner, Set<Long> journalBlocks) {
            super(inner);
            this.journalBlocks = journalBlocks;
        }

        @Override
        public void write(long offset, ByteBuffer src) throws IOException {
            if (armed) {
                for (long b = offset / BS; b * BS < offset + src.remaining(); b++) {
                    if (journalBlocks.contains(b)) {
                        throw new IOException("injected write failure at block " + b);
                    }
                }
            }
            super.write(offset, src);
        }
    }

    private static byte[] b(String s) {
        return s.getBytes(StandardCharsets.UTF_8);
    }

    @ParameterizedTest
    @EnumSource(ErrorPolicy.class)
    void aFailedCommitAbortsTheJournalAndAppliesTheErrorsPolicy(ErrorPolicy policy) throws Exception {
        Path img = dir.resolve("fs.img");
        Images.mkfs(img, "16M", List.of("-b", "1024", "-J", "size=1"), null);
        Set<Long> journal = JournalFixture.superblockAndJournal(img, BS);
        journal.remove(1L); // the ext4 superblock: only the log fails
        byte[] image = Files.readAllBytes(img);
        JournalWriteFailure dev = new JournalWriteFailure(new MemoryBlockDevice(image, false), journal);
        AtomicBoolean panicked = new AtomicBoolean();
        MountOptions opts = MountOptions.defaults().withErrors(policy)
                .withWriteback(MountOptions.DEFAULT_CACHE_BYTES, 3_600_000, 30_000);
        byte[] data = b("synced before the failure");
        assertTimeoutPreemptively(Duration.ofSeconds(120), () -> {
            try (Ext4FileSystem fs = Ext4FileSystem.mount(dev, opts)) {
                fs.onPanic(() -> panicked.set(true));
                long a = fs.mknod(Ext4FileSystem.ROOT_INO, b("a"), 0100644, 0, 0, 0, 0);
                fs.write(a, 0, ByteBuffer.wrap(data));
                fs.sync();
                dev.armed = true;
                fs.mknod(Ext4FileSystem.ROOT_INO, b("b"), 0100644, 0, 0, 0, 0);
                Ext4Exception failed = assertThrows(Ext4Exception.class, fs::sync);
                assertEquals(Errno.EIO, failed.errno(), failed.getMessage());
                Ext4Exception later = assertThrows(Ext4Exception.class,
                        () -> fs.mknod(Ext4FileSystem.ROOT_INO, b("c"), 0100644, 0, 0, 0, 0));
                assertEquals(Errno.EROFS, later.errno(), later.getMessage());
                assertTrue(later.getMessage().contains("journal abort") || later.getMessage().contains("journal commit failed"),
                        later.getMessage());
                assertThrows(Ext4Exception.class, () -> fs.truncate(a, 0));
                assertEquals(policy == ErrorPolicy.PANIC, panicked.get(), "the panic hook ran");
                assertArrayEquals(data, FsUtil.readAll(fs, a, 4096), "reads still work");
            }
        });
        Files.write(img, image);
        Superblock home = new Superblock(ByteBuffer.wrap(image, 1024, Superblock.SIZE).slice().order(ByteOrder.LITTLE_ENDIAN));
        assertTrue(home.errorCount() >= 1, "the superblock counts the error");
        assertTrue((home.state() & Superblock.STATE_ERROR) != 0, "the superblock says the filesystem has errors");
        // left with errors on purpose: e2fsck repairs (replays the committed log, clears the error)
        Images.Result fix = Images.run(List.of("e2fsck", "-fy", img.toString()));
        assertTrue(fix.exitCode() <= 1, "e2fsck -fy: " + fix.all());
        JournalCrashTest.assertFsckClean(img, "after e2fsck -fy");
        try (Ext4FileSystem fs = Ext4FileSystem.open(img, MountOptions.defaults())) {
            assertArrayEquals(data, FsUtil.readAll(fs, fs.resolve(b("/a")), 4096), "a synced file survives");
            fs.mknod(Ext4FileSystem.ROOT_INO, b("d"), 0100644, 0, 0, 0, 0);
        }
        JournalCrashTest.assertFsckClean(img, "after a new mount");
    }
}
