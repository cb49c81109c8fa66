package dev.ext4j.it;

import static org.awaitility.Awaitility.await;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import org.junit.jupiter.api.Test;

/**
 * The control file at the mount root: hidden, owned by the mounting user, mode 0600, closed to
 * other users; commands written to it fail visibly in a shell and leave their reply for a read on
 * the same open file; freeze holds writers and leaves an image that copies e2fsck-clean.
 */
class ControlFileIT extends FuseTestBase {
    private static final String CTL = Control.NAME;
    private static final int WRITERS = 12;

    /** {@code echo CMD > CTL} in a shell, run in the mount. */
    private static Tools.Result send(Path mnt, String cmd) {
        return Control.send(mnt, cmd);
    }

    /** Writes {@code cmd} and reads the reply on one open file, as {@code exec 3<>CTL}. */
    private static String reply(Path mnt, String cmd) {
        return Control.reply(mnt, cmd);
    }

    private static Path mountDir(String name) throws IOException {
        Path dir = newDir(name);
        Tools.mkfs(null, dir.resolve("disk.img"), "64M", List.of("-b", "4096"));
        Files.createDirectories(dir.resolve("mnt"));
        return dir;
    }

    @Test
    void hiddenOwnedAndAnswersCommands() throws IOException {
        Path dir = mountDir("control");
        Path image = dir.resolve("disk.img");
        Path mnt = dir.resolve("mnt");
        try (MountedImage m = MountedImage.mount(image, mnt, dir.resolve("server.log"), "allow_other")) {
            assertFalse(m.ls("").stdout().contains(CTL), "readdir does not list the control file: " + m.ls("").stdout());
            assertEquals("regular empty file 600 0 0", Tools.run(Tools.SHORT, "stat", "-c", "%F %a %u %g", mnt.resolve(CTL).toString())
                    .requireOk().stdout().strip(), "a 0600 regular file of the mounting user (root here)");
            Tools.Result nobody = Tools.run(Tools.SHORT, "setpriv", "--reuid=" + Tools.NOBODY, "--regid=" + Tools.NOBODY, "--clear-groups",
                    "cat", mnt.resolve(CTL).toString());
            assertFalse(nobody.ok());
            assertTrue(nobody.stderr().contains("Permission denied"), nobody.describe());

            String status = Tools.run(Tools.SHORT, "cat", mnt.resolve(CTL).toString()).requireOk().stdout();
            assertTrue(status.startsWith("ok status\n") && status.contains("block_size: 4096\n") && status.contains("frozen: no\n")
                    && status.contains("errors: 0\n") && status.contains("read_only: no\n") && status.contains("features: "), status);

            Tools.Result bad = send(mnt, "bogus");
            assertFalse(bad.ok(), "an unknown command fails the shell's write");
            assertTrue(bad.stderr().contains("Invalid argument"), bad.describe());
            assertTrue(reply(mnt, "bogus").startsWith("error EINVAL: unknown command"), reply(mnt, "bogus"));
            assertTrue(send(mnt, "sync").ok());
            assertEquals("ok synced\n", reply(mnt, "sync"));
            assertTrue(reply(mnt, "status").startsWith("ok status\nsize: 67108864\n"));

            assertEquals("ok resized to 32768 blocks\n", reply(mnt, "resize 128M"), "64 MiB to 128 MiB of 4 KiB blocks");
            assertTrue(reply(mnt, "status").contains("size: 134217728\n"));
            Tools.Result shrink = send(mnt, "resize 1000");
            assertTrue(!shrink.ok() && shrink.stderr().contains("Invalid argument"), "shrinking: " + shrink.describe());
            assertTrue(reply(mnt, "resize 12x").startsWith("error EINVAL: size"), "a malformed size");
            // resize2fs finds the mount by its fsname (the image's real path) and grows it through
            // EXT4_IOC_RESIZE_FS on the mount point, an ioctl on a directory
            Tools.Result rz = Tools.run(Tools.SHORT, "resize2fs", image.toRealPath().toString(), "160M");
            assertTrue(rz.ok() && rz.output().contains("on-line resizing required"), rz.describe());
            assertTrue(reply(mnt, "status").contains("size: 167772160\n"), reply(mnt, "status"));

            assertTrue(Tools.run(Tools.SHORT, "rm", "-f", mnt.resolve(CTL).toString()).stderr().contains("Operation not permitted"));
            assertTrue(Tools.run(Tools.SHORT, "mv", mnt.resolve(CTL).toString(), mnt.resolve("x").toString()).stderr()
                    .contains("Operation not permitted"));
            assertTrue(Tools.run(Tools.SHORT, "mkdir", mnt.resolve(CTL).toString()).stderr().contains("File exists"));
            assertEquals(List.of(), m.unexpectedFailures(), "server log");
        }
        Tools.e2fsckClean(image);
    }

    /**
     * EXT4_IOC_GROUP_ADD on the mount root (as an old resize2fs issues it), from python3's
     * fcntl.ioctl with struct ext4_new_group_input packed as on 64-bit Linux: a group past a full
     * last group is added; one that does not follow the last group is refused with EINVAL.
     */
    @Test
    void groupAddIoctlOnTheMountRoot() throws IOException {
        Path dir = newDir("groupadd");
        Path image = dir.resolve("disk.img");
        Tools.mkfs(null, image, "24577K", List.of("-b", "1024")); // three full groups of 8192 blocks after block 0
        Path mnt = Files.createDirectories(dir.resolve("mnt"));
        String py = "import fcntl, os, struct, sys\n"
                + "g, bb, ib, it, n = (int(a) for a in sys.argv[2:7])\n"
                + "fd = os.open(sys.argv[1], os.O_RDONLY)\n"
                + "try:\n"
                + "    fcntl.ioctl(fd, 0x40286608, struct.pack('<IxxxxQQQIHH', g, bb, ib, it, n, 0, 0))\n"
                + "    print('ok')\n"
                + "except OSError as e:\n"
                + "    print('errno', e.errno)\n";
        long start = 3 * 8192 + 1;
        // tables well past group 3's superblock backup, GDT and reserved GDT blocks
        long bb = start + 1000;
        try (MountedImage m = MountedImage.mount(image, mnt, dir.resolve("server.log"))) {
            Tools.Result wrong = Tools.run(Tools.SHORT, "python3", "-c", py, mnt.toString(), "4", String.valueOf(bb),
                    String.valueOf(bb + 1), String.valueOf(bb + 2), "8192");
            assertEquals("errno 22", wrong.stdout().strip(), "group 4 before group 3: " + wrong.describe());
            Tools.Result add = Tools.run(Tools.SHORT, "python3", "-c", py, mnt.toString(), "3", String.valueOf(bb),
                    String.valueOf(bb + 1), String.valueOf(bb + 2), "8192");
            assertEquals("ok", add.stdout().strip(), add.describe());
            assertTrue(reply(mnt, "status").contains("size: " + (start + 8192) * 1024 + "\n"), reply(mnt, "status"));
            Files.write(mnt.resolve("big"), new byte[20 << 20]); // more than the three old groups had free
            assertEquals(List.of(), m.unexpectedFailures(), "server log");
        }
        Tools.e2fsckClean(image);
    }

    @Test
    void freezeHoldsWritersAndTheImageCopiesClean() throws Exception {
        Path dir = mountDir("freeze");
        Path image = dir.resolve("disk.img");
        Path mnt = dir.resolve("mnt");
        Path copy = dir.resolve("copy.img");
        Path log = mnt.resolve("log");
        try (MountedImage m = MountedImage.mount(image, mnt, dir.resolve("server.log"))) {
            Files.writeString(mnt.resolve("other"), "other\n");
            String copied;
            // more writers than the server's 8 first request threads: all of them wait while frozen, and the thaw must still get through
            List<Process> writers = new java.util.ArrayList<>();
            for (int w = 0; w < WRITERS; w++) {
                writers.add(new ProcessBuilder("bash", "-c", "i=0; while :; do echo line $i >> \"$1\"; i=$((i+1)); done", "bash",
                        (w == 0 ? log : mnt.resolve("log" + w)).toString()).redirectErrorStream(true).start());
            }
            boolean frozen = false;
            try {
                await().atMost(Duration.ofSeconds(30)).until(() -> Files.exists(log) && Files.size(log) > 1000);
                assertEquals("ok frozen\n", reply(mnt, "freeze"));
                frozen = true;
                long atFreeze = Files.size(log);
                await().during(Duration.ofSeconds(1)).atMost(Duration.ofSeconds(5)).until(() -> Files.size(log) == atFreeze);
                assertTrue(writers.stream().allMatch(Process::isAlive), "the writers wait, they do not fail");
                assertTrue(reply(mnt, "status").contains("frozen: yes\n"));
                assertEquals("error EBUSY: the filesystem is frozen already\n", reply(mnt, "freeze"));

                // reads go on while frozen (not of the writer's file: the kernel holds its page
                // locked for the write that waits in the server)
                assertEquals("other\n", Files.readString(mnt.resolve("other")));
                Tools.run(Tools.LONG, "cp", "--sparse=always", image.toString(), copy.toString()).requireOk();
                Tools.e2fsckClean(copy);
                copied = Tools.debugfs(copy, "cat /log");
                assertEquals(atFreeze, copied.length(), "the copy holds everything written before the freeze");

                assertEquals("ok thawed\n", reply(mnt, "thaw"));
                frozen = false;
                await().atMost(Duration.ofSeconds(30)).until(() -> Files.size(log) > atFreeze);
            } finally {
                if (frozen) {
                    send(mnt, "thaw"); // never leave a writer hanging in a frozen mount
                }
                for (Process w : writers) {
                    w.destroyForcibly().waitFor();
                }
            }
            assertTrue(Files.readString(log).startsWith(copied), "the copy's log is the start of the log written on");
            assertEquals("error EINVAL: the filesystem is not frozen\n", reply(mnt, "thaw"));
            assertEquals("ok frozen\n", reply(mnt, "freeze"));
            m.unmount(); // unmounting a frozen filesystem thaws it first
            assertTrue(m.cleanlyUnmounted(), "unmount while frozen: " + m.cleanupNotes());
            assertEquals(List.of(), m.unexpectedFailures(), "server log");
        }
        Tools.e2fsckClean(image);
    }

    @Test
    void readOnlyMountRefusesChangesAndControlNameIsAnOption() throws IOException {
        Path dir = mountDir("ro");
        Path image = dir.resolve("disk.img");
        Path mnt = dir.resolve("mnt");
        try (MountedImage m = MountedImage.mount(image, mnt, dir.resolve("server.log"), "ro", "control=ctl")) {
            assertFalse(Files.exists(mnt.resolve(CTL)), "-o control=ctl renames it");
            String status = Tools.run(Tools.SHORT, "cat", mnt.resolve("ctl").toString()).requireOk().stdout();
            assertTrue(status.contains("read_only: yes (mounted read-only)\n"), status);
            // the kernel refuses to open anything for writing on a read-only mount, the control file too
            Tools.Result r = Tools.bash(Tools.SHORT, "cd \"$1\" && echo freeze > ctl", mnt.toString());
            assertTrue(r.stderr().contains("Read-only file system"), r.describe());
        }
        Tools.e2fsckClean(image);
    }
}
