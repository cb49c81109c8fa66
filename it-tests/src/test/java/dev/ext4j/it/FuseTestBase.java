package dev.ext4j.it;

import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.TestInfo;

/**
 * Base class of the FUSE integration tests. Aborts the whole class (an assumption failure, reported
 * as skipped) when the environment cannot run them: no /dev/fuse, not root, missing tools. A missing
 * driver jar is a failure, not a skip: it means the build is broken. Each class gets a scratch
 * directory that is checked for left-behind mounts and deleted at the end.
 */
public abstract class FuseTestBase {
    protected static Path scratch;

    @BeforeAll
    static void requireEnvironment(TestInfo info) throws IOException {
        assumeTrue(Files.exists(Path.of("/dev/fuse")),
                "/dev/fuse does not exist: the FUSE integration tests need the fuse kernel module (modprobe fuse) "
                        + "and, in a container, --device /dev/fuse --cap-add SYS_ADMIN");
        Object uid = Files.getAttribute(Path.of("/proc/self"), "unix:uid");
        assumeTrue(Integer.valueOf(0).equals(uid),
                "the FUSE integration tests must run as root (they use loop mounts, mknod and chown); running as uid " + uid);
        for (String tool : List.of("mkfs.ext4", "debugfs", "e2fsck", "dumpe2fs", "fusermount", "getfattr", "setfattr", "mount", "timeout",
                "setpriv", Tools.python3())) {
            assumeTrue(Tools.run(Duration.ofSeconds(10), "sh", "-c", "command -v " + tool).ok(),
                    tool + " is not installed (Debian: apt-get install fuse libfuse2 e2fsprogs attr util-linux python3)");
        }
        assertTrue(Files.isRegularFile(Tools.builtJar()),
                "the driver jar " + Tools.builtJar() + " does not exist: build it first (mvn -B -DskipTests package)");
        scratch = Tools.scratch(info.getTestClass().map(Class::getSimpleName).orElse("it"));
    }

    @AfterAll
    static void cleanScratch() {
        if (scratch == null) {
            return;
        }
        List<MountTable.Entry> left = MountTable.under(scratch);
        for (MountTable.Entry e : left) {
            // a test failed to clean up after itself: still never leave the mount behind
            Tools.run(Duration.ofSeconds(30), "umount", "-l", e.mountPoint().toString());
        }
        // and no server process of ours may outlive the class
        MountedImage.serversUnder(scratch).forEach(Tools::killTree);
        Path dir = scratch;
        scratch = null;
        if (System.getProperty("ext4j.keepScratch") == null) {
            Tools.deleteTree(dir);
        }
        assertTrue(left.isEmpty(), "mounts were left behind under " + dir + ": " + left);
    }

    /** A fresh empty directory in the class's scratch directory. */
    protected static Path newDir(String prefix) {
        try {
            return Files.createTempDirectory(scratch, prefix + "-");
        } catch (IOException e) {
            throw new java.io.UncheckedIOException(e);
        }
    }

    /**
     * Whether format variant {@code name} runs: every one, unless {@code -Dext4j.it.variants}
     * names some (the libfuse 2 run of it-tests/pom.xml takes two, since the on-disk formats do not
     * depend on the transport).
     */
    protected static boolean variantSelected(String name) {
        String only = System.getProperty("ext4j.it.variants");
        return only == null || only.isBlank() || java.util.List.of(only.split(",")).contains(name);
    }
}
