package dev.ext4j.it;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * {@code -o dev,suid} (issue 17, item 9): FUSE mounts come up nodev,nosuid; mounted by root with
 * dev and suid, a character device node in the image is the device (here /dev/null) and a
 * setuid-root program runs with euid 0 for an unprivileged user, as on a kernel mount; without
 * them the device does not open (EACCES) and the program runs as its caller.
 */
class DevSuidIT extends FuseTestBase {
    private static Path image;

    @BeforeAll
    static void buildImage() throws IOException {
        Path src = scratch.resolve("src");
        Files.createDirectories(src);
        Tools.bash(Duration.ofSeconds(10), """
                cd "$1"
                mknod null c 1 3 && chmod 666 null
                cp /usr/bin/id id && chown root:root id && chmod 4755 id
                """, src.toString()).requireOk();
        image = scratch.resolve("devsuid.img");
        Tools.mkfs(src, image, "16M", List.of());
        assertTrue(Tools.debugfs(image, "stat /id").contains("Mode:  04755"), Tools.debugfs(image, "stat /id"));
        assertTrue(Tools.debugfs(image, "stat /null").contains("Type: character special"), Tools.debugfs(image, "stat /null"));
    }

    /** Writes to the device node as root: null when it worked, else the shell's message. */
    private static String writeDevice(Path mnt) {
        Tools.Result r = Tools.run(Duration.ofSeconds(30), "sh", "-c", "echo data > \"$1\"/null", "sh", mnt.toString());
        return r.ok() ? null : r.stderr();
    }

    /** {@code id} from the image run by nobody (from inside the mount, so the path to it need not be open to nobody). */
    private static String idAsNobody(Path mnt) {
        return Tools.run(Duration.ofSeconds(30), null, mnt, List.of("setpriv", "--reuid=" + Tools.NOBODY, "--regid=" + Tools.NOBODY,
                "--clear-groups", "./id")).requireOk().stdout();
    }

    @Test
    void devAndSuidAsOnAKernelMountOnlyWhenAsked() {
        Path mnt = newDir("mnt-devsuid");
        try (MountedImage m = MountedImage.mount(image, mnt, scratch.resolve("devsuid.log"), "dev,suid,allow_other")) {
            String flags = MountTable.find(mnt).orElseThrow().mountOptions();
            assertFalse(List.of(flags.split(",")).contains("nodev") || List.of(flags.split(",")).contains("nosuid"), flags);
            assertEquals(null, writeDevice(mnt), "the node is /dev/null");
            String id = idAsNobody(mnt);
            assertTrue(id.startsWith("uid=" + Tools.NOBODY + "(") && id.contains(" euid=0("), "setuid root: " + id);
            assertEquals(List.of(), m.unexpectedFailures());
        }

        Path plain = newDir("mnt-plain");
        try (MountedImage m = MountedImage.mount(image, plain, scratch.resolve("plain.log"), "allow_other")) {
            List<String> flags = List.of(MountTable.find(plain).orElseThrow().mountOptions().split(","));
            assertTrue(flags.contains("nodev") && flags.contains("nosuid"), flags.toString());
            String refused = writeDevice(plain);
            assertTrue(refused != null && refused.contains("Permission denied"), "nodev: EACCES, got " + refused);
            String id = idAsNobody(plain);
            assertTrue(id.startsWith("uid=" + Tools.NOBODY + "(") && !id.contains("euid="), "nosuid: " + id);
            assertEquals(List.of(), m.unexpectedFailures());
        }
        Tools.e2fsckClean(image);
    }
}
