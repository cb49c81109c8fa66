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
 * Who may use an image: a read-write mount has it alone, read-only mounts share it (the lock on the
 * image file, refused at once with a message naming the other mount); a SIGKILLed server's lock
 * is gone with it; an image a kernel loop device holds is not mounted read-write; an image that
 * cannot be written is refused read-write with a hint at {@code -o ro}; and {@code norecovery}
 * shows an image that needs recovery without replaying its journal or changing a byte of it.
 */
class ImageUseIT extends FuseTestBase {

    private static Path image(Path dir) {
        Path image = dir.resolve("disk.img");
        Tools.mkfs(null, image, "32M", List.of("-b", "4096"));
        return image;
    }

    private static MountedImage attempt(Path dir, Path image, String name, String... opts) throws IOException {
        Path mnt = Files.createDirectories(dir.resolve(name));
        return MountedImage.attempt(image, mnt, dir.resolve(name + ".log"), null, opts);
    }

    /** The second mount is refused at once, saying the image is in use and by which mount point. */
    private static void assertRefused(MountedImage first, MountedImage second, String what) {
        assertTrue(first.mounted(), what + ": the first mount failed: " + first.mountResult().describe());
        assertFalse(second.mountResult().ok(), what + ": the second mount was not refused");
        String out = second.mountResult().output();
        assertTrue(out.contains("is in use") && out.contains(first.mountPoint().toString()) && out.contains("EBUSY"),
                what + ": the refusal does not say the image is in use by " + first.mountPoint() + ":\n" + out);
        assertTrue(second.mountResult().elapsed().compareTo(Duration.ofSeconds(20)) < 0, what + ": the refusal took "
                + second.mountResult().elapsed());
    }

    @Test
    void aReadWriteMountHasTheImageAloneReadOnlyMountsShareIt() throws IOException {
        Path dir = newDir("lock");
        Path image = image(dir);
        try (MountedImage rw = attempt(dir, image, "rw-first", "rw")) {
            try (MountedImage second = attempt(dir, image, "rw-second", "rw")) {
                assertRefused(rw, second, "rw then rw");
            }
            try (MountedImage second = attempt(dir, image, "ro-second", "ro")) {
                assertRefused(rw, second, "rw then ro");
            }
            Files.writeString(rw.path("written"), "by the one read-write mount");
        }
        try (MountedImage a = attempt(dir, image, "ro-first", "ro")) {
            try (MountedImage second = attempt(dir, image, "rw-after-ro", "rw")) {
                assertRefused(a, second, "ro then rw");
            }
            try (MountedImage b = attempt(dir, image, "ro-too", "ro")) {
                assertTrue(b.mounted(), "a second read-only mount was refused: " + b.mountResult().describe());
                assertEquals("by the one read-write mount", Files.readString(b.path("written")));
            }
        }
        Tools.e2fsckClean(image);
    }

    @Test
    void aKilledServersLockIsGoneAtOnce() throws IOException {
        Path dir = newDir("kill");
        Path image = image(dir);
        Path dead = Files.createDirectories(dir.resolve("killed"));
        try (MountedImage first = MountedImage.mount(image, dead, dir.resolve("killed.log"))) {
            Files.writeString(first.path("before-kill"), "x");
            ProcessHandle server = ProcessHandle.of(first.serverPid()).orElseThrow(() -> new AssertionError("no server"));
            server.destroyForcibly(); // SIGKILL
            await("the killed server").atMost(Duration.ofSeconds(30)).until(() -> !server.isAlive());
            try (MountedImage next = attempt(dir, image, "next", "rw")) {
                assertTrue(next.mounted(), "the mount after the kill was refused: " + next.mountResult().describe());
                Files.writeString(next.path("after-kill"), "y");
            }
        } finally {
            Tools.run(Tools.SHORT, "fusermount", "-u", "-z", dead.toString());
        }
        Tools.e2fsckClean(image);
    }

    @Test
    void anImageOnALoopDeviceIsNotMountedReadWrite() throws IOException {
        Path dir = newDir("loop");
        Path image = image(dir);
        Path kmnt = Files.createDirectories(dir.resolve("kernel"));
        try (KernelMount k = KernelMount.attemptReadWrite(image, kmnt)) {
            assertTrue(k.mounted(), k.result().describe());
            try (MountedImage m = attempt(dir, image, "ext4j", "rw")) {
                assertFalse(m.mountResult().ok(), "a read-write mount of an image on a loop device was not refused");
                String out = m.mountResult().output();
                assertTrue(out.matches("(?s).*attached to loop device /dev/loop\\d+.*"), "the refusal names no loop device:\n" + out);
            }
        }
        Tools.e2fsckClean(image);
    }

    @Test
    void anImageThatCannotBeWrittenIsRefusedWithAHintAtRo() throws IOException {
        Path dir = newDir("rofs");
        image(dir);
        Path view = Files.createDirectories(dir.resolve("ro-view"));
        Tools.run(Tools.SHORT, "mount", "--bind", dir.toString(), view.toString()).requireOk();
        try {
            Tools.run(Tools.SHORT, "mount", "-o", "remount,ro,bind", view.toString()).requireOk();
            Path image = view.resolve("disk.img");
            try (MountedImage rw = attempt(dir, image, "rw", "rw")) {
                assertFalse(rw.mountResult().ok(), "a read-write mount of an image on a read-only filesystem was not refused");
                String out = rw.mountResult().output();
                assertTrue(out.contains("read-only filesystem") && out.contains("-o ro") && !out.contains("\tat "),
                        "no clear message suggesting -o ro:\n" + out);
            }
            try (MountedImage ro = attempt(dir, image, "ro", "ro")) {
                assertTrue(ro.mounted(), ro.mountResult().describe());
            }
        } finally {
            Tools.run(Tools.SHORT, "umount", view.toString());
        }
    }

    /**
     * An image left needing recovery (a file created and fsynced, so its entry is only in the
     * journal, then the server killed): with norecovery the file is not there and the image's
     * bytes stay the same; a plain read-only mount replays the journal in memory and shows it.
     */
    @Test
    void norecoveryReadsTheImageAsItIsAndLeavesItUntouched() throws IOException {
        Path dir = newDir("norecovery");
        Path image = image(dir);
        Path dead = Files.createDirectories(dir.resolve("killed"));
        // no checkpoint before the kill: no timer commit, no idle flush
        try (MountedImage m = MountedImage.mount(image, dead, dir.resolve("killed.log"), "commit=3600,idle_flush=0")) {
            Tools.run(Tools.SHORT, "sh", "-c", "echo journaled > \"$1\" && sync \"$1\"", "sh", m.path("journaled").toString()).requireOk();
            ProcessHandle server = ProcessHandle.of(m.serverPid()).orElseThrow(() -> new AssertionError("no server"));
            server.destroyForcibly();
            await("the killed server").atMost(Duration.ofSeconds(30)).until(() -> !server.isAlive());
        } finally {
            Tools.run(Tools.SHORT, "fusermount", "-u", "-z", dead.toString());
        }
        assertTrue(Tools.run(Tools.SHORT, "dumpe2fs", "-h", image.toString()).output().contains("needs_recovery"),
                "the killed image needs recovery");
        String before = Tools.sha256(image);
        try (MountedImage rwNoRecovery = attempt(dir, image, "rw-norecovery", "rw,norecovery")) {
            assertFalse(rwNoRecovery.mountResult().ok(), "rw,norecovery was not refused");
            assertTrue(rwNoRecovery.mountResult().output().contains("norecovery"), rwNoRecovery.mountResult().describe());
        }
        try (MountedImage m = attempt(dir, image, "norecovery", "norecovery")) {
            assertTrue(m.mounted(), m.mountResult().describe());
            assertTrue(Files.isDirectory(m.path("lost+found")));
            assertFalse(Files.exists(m.path("journaled")), "norecovery: the journal was replayed");
            assertTrue(Tools.run(Tools.SHORT, "sh", "-c", "echo x > \"$1\"", "sh", m.path("new").toString()).stderr()
                    .contains("Read-only file system"), "norecovery is not read-only");
        }
        assertEquals(before, Tools.sha256(image), "norecovery changed the image");
        try (MountedImage ro = attempt(dir, image, "ro", "ro")) {
            assertTrue(ro.mounted(), ro.mountResult().describe());
            assertEquals("journaled\n", Files.readString(ro.path("journaled")), "a read-only mount replays in memory");
        }
        assertEquals(before, Tools.sha256(image), "ro changed the image");
        try (MountedImage rw = attempt(dir, image, "rw", "rw")) {
            assertTrue(rw.mounted(), rw.mountResult().describe());
        }
        Tools.e2fsckClean(image);
    }

    /**
     * umount(8) returns before a FUSE server has finished, but asks statfs of the mount just
     * before it unmounts, and ext4j writes everything home then. The server is stopped (SIGSTOP)
     * the moment umount returns, so whatever it had left for its exit is not written: e2fsck must
     * find the image consistent anyway, on both transports, with no idle flush or commit timer to
     * help (both an hour away).
     */
    @Test
    void theStatfsOfUmountWritesEverythingHomeBeforeTheUnmount() throws Exception {
        for (String transport : List.of("libfuse3", "libfuse2")) {
            Path dir = newDir("umount-" + transport);
            Path image = image(dir);
            try (MountedImage m = attempt(dir, image, "mnt", "transport=" + transport, "commit=3600", "idle_flush=3600000")) {
                assertTrue(m.mounted(), transport + ": " + m.mountResult().describe());
                Tools.bash(Tools.LONG, "cd \"$1\" && mkdir d && for i in $(seq 300); do echo $i > d/f$i; done"
                        + " && rm d/f1* && dd if=/dev/urandom of=big bs=64k count=40 status=none", m.mountPoint().toString()).requireOk();
                long pid = m.serverPid();
                Tools.Result u = Tools.run(Duration.ofSeconds(60), "bash", "-c", "umount \"$1\" && kill -STOP $2", "-",
                        m.mountPoint().toString(), Long.toString(pid));
                try {
                    u.requireOk();
                    Tools.Result fsck = Tools.run(Tools.LONG, "e2fsck", "-fn", image.toString());
                    assertTrue(fsck.ok(), transport + ": the image right after umount(8), its server stopped:\n" + fsck.output());
                } finally {
                    Tools.run(Duration.ofSeconds(10), "kill", "-CONT", Long.toString(pid));
                }
            }
            Tools.e2fsckClean(image);
            assertTrue(Tools.debugfs(image, "ls -l /d").contains("f300"), transport + ": the files are there");
        }
    }
}
