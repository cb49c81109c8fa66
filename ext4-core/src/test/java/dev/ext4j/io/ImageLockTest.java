package dev.ext4j.io;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.ext4j.Errno;
import dev.ext4j.Ext4Exception;
import dev.ext4j.fs.Ext4FileSystem;
import dev.ext4j.fs.MountOptions;
import dev.ext4j.testutil.Expect;
import dev.ext4j.testutil.Images;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The image lock inside one process: a second open of a mounted image is refused with EBUSY
 * whatever the modes (Java holds one lock per file and process), and the image is free again
 * once the first is closed. Across processes the ITs check it (ImageUseIT).
 */
class ImageLockTest {
    @TempDir
    Path dir;

    @Test
    void aSecondOpenInTheSameProcessIsRefusedUntilTheFirstCloses() throws Exception {
        Path img = Images.mkfs(dir.resolve("disk.img"), "8M", List.of(), null);
        MountOptions rw = MountOptions.defaults();
        MountOptions ro = rw.withReadOnly(true);
        for (MountOptions first : List.of(rw, ro)) {
            try (Ext4FileSystem fs = Ext4FileSystem.open(img, first)) {
                for (MountOptions second : List.of(rw, ro)) {
                    Ext4Exception e = Expect.errno(Errno.EBUSY, () -> Ext4FileSystem.open(img, second).close());
                    assertTrue(e.getMessage().startsWith("image " + img + " is in use"), e.getMessage());
                }
                assertFalse(fs.isReadOnly() && first == rw);
            }
        }
        try (Ext4FileSystem fs = Ext4FileSystem.open(img, rw)) {
            assertEquals(false, fs.isReadOnly(), "the image is free again");
        }
        Images.assertClean(img);
    }

    /**
     * A refused second open must not cost the first its lock: with POSIX locks, closing any
     * descriptor of the file would drop it, so the refusal comes before a descriptor is opened.
     */
    @Test
    void aRefusedSecondOpenLeavesTheLockToTheFirst() throws Exception {
        Path img = Images.mkfs(dir.resolve("disk.img"), "8M", List.of(), null);
        try (Ext4FileSystem fs = Ext4FileSystem.open(img, MountOptions.defaults())) {
            Expect.errno(Errno.EBUSY, () -> Ext4FileSystem.open(img, MountOptions.defaults().withReadOnly(true)).close());
            assertEquals(1, probe(img), "another process could lock the image of a read-write mount");
        }
        assertEquals(0, probe(img), "the lock outlived the mount");
        Images.assertClean(img);
    }

    /** Runs {@link Probe} in another JVM: 0 when it could lock {@code img} for reading, 1 when not. */
    private static int probe(Path img) throws Exception {
        Process p = new ProcessBuilder(ProcessHandle.current().info().command().orElse("java"), "-cp",
                System.getProperty("java.class.path"), Probe.class.getName(), img.toString()).inheritIO().start();
        assertTrue(p.waitFor(60, java.util.concurrent.TimeUnit.SECONDS), "the probe hung");
        return p.exitValue();
    }

    /** Exits 0 when a shared lock on the file in args[0] is free, 1 when another process holds a conflicting one. */
    public static final class Probe {
        public static void main(String[] args) throws Exception {
            try (var ch = java.nio.channels.FileChannel.open(Path.of(args[0]), java.nio.file.StandardOpenOption.READ)) {
                System.exit(ch.tryLock(0, Long.MAX_VALUE, true) != null ? 0 : 1);
            }
        }
    }

    @Test
    void aMissingImageIsEnoent() {
        Path img = dir.resolve("none.img");
        Ext4Exception e = Expect.errno(Errno.ENOENT, () -> Ext4FileSystem.open(img, MountOptions.defaults()).close());
        assertEquals("image " + img + " does not exist", e.getMessage());
        assertFalse(Files.exists(img));
    }

    @Test
    void norecoveryNeedsAReadOnlyMount() throws Exception {
        Path img = Images.mkfs(dir.resolve("disk.img"), "8M", List.of(), null);
        Ext4Exception e = Expect.errno(Errno.EINVAL, () -> Ext4FileSystem.open(img, MountOptions.defaults().withNoRecovery(true)).close());
        assertTrue(e.getMessage().contains("norecovery"), e.getMessage());
        try (Ext4FileSystem fs = Ext4FileSystem.open(img, MountOptions.defaults().withReadOnly(true).withNoRecovery(true))) {
            assertTrue(fs.isReadOnly());
            assertEquals(List.of(), fs.messages(), "a clean image mounts quietly");
        }
    }
}
