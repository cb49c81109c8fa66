package dev.ext4j.fuse;

import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** {@link Ext4Fuse#isUnmount}: the statfs that comes from umount(8) or fusermount, known by the process name. */
class UnmountCallerTest {

    /** Runs a copy of sleep(1) named {@code name}, so the process's comm is that name. */
    private static boolean asProcessNamed(Path dir, String name) throws Exception {
        Path exe = Files.copy(Path.of("/bin/sleep"), dir.resolve(name), StandardCopyOption.COPY_ATTRIBUTES);
        Process p = new ProcessBuilder(exe.toString(), "30").start();
        try {
            return Ext4Fuse.isUnmount(p.pid());
        } finally {
            p.destroy();
            p.waitFor(10, TimeUnit.SECONDS);
        }
    }

    @Test
    void umountAndFusermountAreUnmountsOthersAreNot(@TempDir Path dir) throws Exception {
        assertTrue(asProcessNamed(dir, "umount"));
        assertTrue(asProcessNamed(dir, "fusermount3"));
        assertTrue(asProcessNamed(dir, "fusermount"));
        assertFalse(asProcessNamed(dir, "dbench"), "a statfs of a workload writes nothing home");
        assertFalse(asProcessNamed(dir, "umountx"));
        assertFalse(Ext4Fuse.isUnmount(ProcessHandle.current().pid()));
    }

    @Test
    void aPidTheServerCannotSeeIsNoUnmount() {
        assertFalse(Ext4Fuse.isUnmount(0), "pid 0: a caller in a pid namespace the server does not see");
        assertFalse(Ext4Fuse.isUnmount(Long.MAX_VALUE));
    }
}
