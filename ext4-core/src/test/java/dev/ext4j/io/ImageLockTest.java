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
