package dev.ext4j.it;

import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

/**
 * A rootless image build: an unprivileged user (nobody) mounts with {@code -o fakeroot}, creates a
 * tree, gives files to root, sets a setuid bit and makes device nodes through the control file;
 * debugfs then shows them in the image, which is e2fsck-clean. Without write permission on the
 * image the same user's read-write mount is refused with a hint at {@code -o ro}.
 */
class FakerootIT extends FuseTestBase {
    private static final String NOBODY = Integer.toString(Tools.NOBODY);

    /** {@code ext4j ARGS} as nobody, with the state directory under /tmp (root's runtime directory is not theirs). */
    private static List<String> asNobody(List<String> command) {
        List<String> cmd = new ArrayList<>(List.of("setpriv", "--reuid=" + NOBODY, "--regid=" + NOBODY, "--clear-groups"));
        cmd.addAll(command);
        return cmd;
    }

    private static final Map<String, String> ENV = Map.of("XDG_RUNTIME_DIR", "");

    /** A shell script run as nobody in {@code dir} (entered as nobody: root cannot reach nobody's FUSE mount). */
    private static Tools.Result shAsNobody(Path dir, String script) {
        return Tools.run(Tools.SHORT, ENV, null, asNobody(List.of("sh", "-c", "cd \"$1\" && " + script, "sh", dir.toString())));
    }

    @Test
    void anUnprivilegedUserBuildsARootFilesystem() throws IOException {
        Path dir = newDir("fakeroot");
        // nobody must reach the image, the mount point and the driver jar
        Files.setPosixFilePermissions(scratch, PosixFilePermissions.fromString("rwxr-xr-x"));
        Tools.run(Tools.SHORT, "chmod", "-R", "a+rX", Tools.jar().getParent().toString()).requireOk();
        Path image = dir.resolve("rootfs.img");
        Tools.mkfs(null, image, "32M", List.of("-b", "4096"));
        Path mnt = Files.createDirectories(dir.resolve("mnt"));
        Tools.run(Tools.SHORT, "chown", "-R", NOBODY + ":" + NOBODY, dir.toString()).requireOk();
        Path fuse = Path.of("/dev/fuse");
        var fuseMode = Files.getPosixFilePermissions(fuse);
        Files.setPosixFilePermissions(fuse, PosixFilePermissions.fromString("rw-rw-rw-"));
        try {
            // an image nobody cannot write: refused read-write, with the hint
            Tools.run(Tools.SHORT, "chown", "0:0", image.toString()).requireOk();
            try (MountedImage denied = MountedImage.attemptWith(image, mnt, dir.resolve("denied.log"), ENV,
                    asNobody(MountedImage.cli("mount", "-o", "log=" + dir.resolve("denied.log"), image.toString(), mnt.toString())))) {
                assertFalse(denied.mountResult().ok(), "nobody mounted root's 0644 image read-write");
                String out = denied.mountResult().output();
                assertTrue(out.contains("no permission to open image") && out.contains("-o ro") && !out.contains("\tat "),
                        "no clear message suggesting -o ro:\n" + out);
            }
            Tools.run(Tools.SHORT, "chown", NOBODY + ":" + NOBODY, image.toString()).requireOk();

            try (MountedImage m = MountedImage.attemptWith(image, mnt, dir.resolve("server.log"), ENV,
                    asNobody(MountedImage.cli("mount", "-o", "fakeroot,log=" + dir.resolve("server.log"), image.toString(), mnt.toString())))) {
                assertTrue(m.mounted(), m.mountResult().describe() + "\n--- server log ---\n" + m.log());
                shAsNobody(mnt, String.join(" && ",
                        "mkdir -p bin etc dev home/user",
                        "echo 'root:x:0:0::/root:/bin/sh' > etc/passwd",
                        "echo 'built by nobody' > etc/motd",
                        "cp /bin/true bin/su",
                        "chown 0:0 bin etc dev etc/passwd bin/su",
                        "chown 1000:1000 home/user",
                        "chmod 4755 bin/su",
                        "echo 'mknod /dev/null c 1 3 0666' > .ext4j-control",
                        "echo 'mknod " + mnt + "/dev/sda b 8 0 0660' > .ext4j-control",
                        "test -u bin/su", "test -c dev/null", "test -b dev/sda")).requireOk();
                // the kernel itself refuses a device node to a user without CAP_MKNOD
                assertFalse(shAsNobody(mnt, "mknod dev/tty c 5 0").ok(), "mknod through the mount without CAP_MKNOD");
            }
        } finally {
            Files.setPosixFilePermissions(fuse, fuseMode);
        }
        assertStat(image, "/bin/su", "Mode:  04755", "User:     0   Group:     0");
        assertStat(image, "/etc/passwd", "User:     0   Group:     0");
        assertStat(image, "/etc/motd", "User: 65534   Group: 65534");
        assertStat(image, "/home/user", "User:  1000   Group:  1000");
        assertStat(image, "/dev/null", "Type: character special", "Mode:  0666", "User:     0", "Device major/minor number: 01:03");
        assertStat(image, "/dev/sda", "Type: block special", "Mode:  0660", "Device major/minor number: 08:00");
        Tools.e2fsckClean(image);
    }

    private static void assertStat(Path image, String path, String... expected) {
        String stat = Tools.debugfs(image, "stat " + path);
        for (String e : expected) {
            assertTrue(stat.contains(e), path + ": debugfs stat shows no \"" + e + "\":\n" + stat);
        }
    }
}
