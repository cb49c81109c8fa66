package dev.ext4j.it;

import static org.awaitility.Awaitility.await;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import org.junit.jupiter.api.Test;

/**
 * Multi-mount protection against the kernel, on images made with {@code mkfs.ext4 -O mmp} and an
 * update interval of 1 s (so the kernel's check watches the block for 11 s): while ext4j holds an
 * image read-write the kernel's mount is refused ("Device is already active on another node"),
 * after ext4j's unmount the kernel mounts it, and while the kernel holds it ext4j's read-write
 * mount is refused with the node and device the kernel wrote, without counting a mount (a
 * read-only mount still works). A frozen ext4j mount stops its updates, so the kernel can take the
 * image over; the thaw then finds the block gone and ext4j refuses changes and writes nothing
 * more. e2fsck runs only on unmounted images: it checks the MMP block itself.
 */
class MmpIT extends FuseTestBase {
    private static final String CLEAN = "ff4d4d50";

    private static Path image(Path dir) {
        Path img = dir.resolve("mmp.img");
        // inode tables written now: the kernel's lazy init would write them later, while the tests compare bytes
        Tools.mkfs(null, img, "64M", List.of("-O", "mmp", "-E", "mmp_update_interval=1,lazy_itable_init=0"));
        return img;
    }

    /** {@code debugfs -R dump_mmp}: "key: value" lines (sequence in hex, node_name, device_name, ...). */
    private static Map<String, String> mmp(Path img) {
        Map<String, String> out = new LinkedHashMap<>();
        for (String line : Tools.debugfs(img, "dump_mmp").split("\n")) {
            int colon = line.indexOf(':');
            if (colon > 0 && !line.startsWith(" ")) {
                out.put(line.substring(0, colon).strip(), line.substring(colon + 1).strip());
            }
        }
        return out;
    }

    private static String sequence(Path img) {
        return mmp(img).get("sequence");
    }

    private static String hostName() throws IOException {
        return Files.readString(Path.of("/proc/sys/kernel/hostname")).strip();
    }

    /** What ext4j records as its device: the image path, its last 32 bytes when longer. */
    private static String deviceField(Path img) {
        String p = img.toString();
        return p.length() <= 32 ? p : p.substring(p.length() - 32);
    }

    private static String mountCount(Path img) {
        return Tools.superblock(img).get("Mount count");
    }

    @Test
    void whoeverHoldsTheImageKeepsTheOtherOut() throws Exception {
        Path dir = newDir("held");
        Path img = image(dir);
        Path mnt = Files.createDirectory(dir.resolve("mnt"));
        Path kmnt = Files.createDirectory(dir.resolve("kmnt"));
        byte[] big = new byte[1 << 20];
        new Random(18).nextBytes(big);
        String host = hostName();

        try (MountedImage m = MountedImage.mount(img, mnt, dir.resolve("ext4j.log"))) {
            Files.writeString(m.path("a.txt"), "written by ext4j under MMP\n");
            Files.write(m.path("big"), big);
            Map<String, String> held = mmp(img);
            assertNotEquals(CLEAN, held.get("sequence"), "held while mounted: " + held);
            assertEquals(host, held.get("node_name"));
            assertEquals(deviceField(img), held.get("device_name"));
            String first = held.get("sequence");
            await("ext4j updates the MMP block every second").atMost(Duration.ofSeconds(10)).pollInterval(Duration.ofMillis(200))
                    .until(() -> !sequence(img).equals(first));

            try (KernelMount k = KernelMount.attemptReadWrite(img, kmnt)) {
                assertFalse(k.mounted(), "the kernel mounted an image ext4j holds:\n" + k.result().describe());
                String dmesg = Tools.run(Tools.SHORT, "dmesg").requireOk().stdout();
                assertTrue(dmesg.contains("Device is already active on another node"), "dmesg says why");
                assertTrue(dmesg.contains("last update node: " + host + ", last update device: " + deviceField(img)),
                        "the kernel names ext4j's node and device");
            }
            assertTrue(m.alive(), "ext4j still serves");
            assertEquals("written by ext4j under MMP\n", Files.readString(m.path("a.txt")));
        }
        assertEquals(CLEAN, sequence(img), "ext4j's unmount releases the block");
        Tools.e2fsckClean(img);

        try (KernelMount k = KernelMount.attemptReadWrite(img, kmnt)) {
            assertTrue(k.mounted(), "the kernel mounts the released image:\n" + k.result().describe());
            assertArrayEquals(big, Files.readAllBytes(kmnt.resolve("big")));
            String count = mountCount(img);

            Path mnt2 = Files.createDirectory(dir.resolve("mnt2"));
            try (MountedImage refused = MountedImage.attempt(img, mnt2, dir.resolve("refused.log"), null)) {
                assertFalse(refused.mounted(), "ext4j mounted an image the kernel holds");
                assertFalse(refused.isMounted());
                String out = refused.mountResult().output();
                // on this host the image lock's loop-device check refuses first, before the MMP
                // block is read; MmpTest refuses a block another node keeps updating
                assertTrue(out.contains("is attached to loop device /dev/loop"), out);
                assertTrue(out.contains("(EBUSY)"), out);
            }
            try (MountedImage ro = MountedImage.mount(img, mnt2, dir.resolve("ro.log"), "ro")) {
                assertEquals("written by ext4j under MMP\n", Files.readString(ro.path("a.txt")), "read-only needs no MMP block");
            }
            assertTrue(Files.readString(kmnt.resolve("a.txt")).startsWith("written"), "the kernel still serves");
            assertEquals(count, mountCount(img), "the refused mount did not count a mount, so never wrote the superblock");
        }
        assertEquals(CLEAN, sequence(img));
        Tools.e2fsckClean(img);
    }

    @Test
    void aFrozenMountLetsTheKernelTakeOverAndTheThawWritesNothing() throws Exception {
        Path dir = newDir("frozen");
        Path img = image(dir);
        Path mnt = Files.createDirectory(dir.resolve("mnt"));
        Path kmnt = Files.createDirectory(dir.resolve("kmnt"));
        try (MountedImage m = MountedImage.mount(img, mnt, dir.resolve("ext4j.log"))) {
            Files.writeString(m.path("before-freeze"), "ext4j\n");
            assertEquals("ok frozen\n", Control.reply(mnt, "freeze"));
            String still = sequence(img);
            await("no updates while frozen").during(Duration.ofSeconds(3)).atMost(Duration.ofSeconds(6))
                    .pollInterval(Duration.ofMillis(300)).until(() -> sequence(img).equals(still));

            try (KernelMount k = KernelMount.attemptReadWrite(img, kmnt)) {
                assertTrue(k.mounted(), "the kernel takes an image whose holder stopped updating it:\n" + k.result().describe());
                assertEquals("ext4j\n", Files.readString(kmnt.resolve("before-freeze")));
                Files.writeString(kmnt.resolve("kernel-file"), "kernel\n");
                Tools.run(Tools.SHORT, "sync", "-f", kmnt.resolve("kernel-file").toString()).requireOk();
                byte[] kernelsImage = withoutMmpBlock(img);

                assertEquals("ok thawed\n", Control.reply(mnt, "thaw"));
                Tools.Result w = Tools.bash(Tools.SHORT, "echo x > \"$1\"", m.path("after-thaw").toString());
                assertFalse(w.ok(), "a change after the image was lost");
                assertTrue(w.stderr().contains("Read-only file system"), w.output());
                String status = Control.reply(mnt, "status");
                assertTrue(status.contains("read_only: yes (") && status.contains("MMP"), status);
                m.close();
                assertTrue(m.log().contains("the filesystem seems to be mounted on another node as well"), m.log());
                assertArrayEquals(kernelsImage, withoutMmpBlock(img), "ext4j wrote to the image after the kernel took it");
                assertTrue(mmp(img).get("device_name").startsWith("loop"), "the MMP block is the kernel's: " + mmp(img));
            }
        }
        assertEquals(CLEAN, sequence(img));
        Tools.e2fsckClean(img);
        assertEquals("kernel\n", Tools.debugfs(img, "cat /kernel-file"));
    }

    /** The image without its MMP block, which a holder rewrites every second. */
    private static byte[] withoutMmpBlock(Path img) throws IOException {
        Map<String, String> sb = Tools.superblock(img);
        int bs = Integer.parseInt(sb.get("Block size"));
        int at = Integer.parseInt(sb.get("MMP block number")) * bs;
        byte[] b = Files.readAllBytes(img);
        java.util.Arrays.fill(b, at, at + bs, (byte) 0);
        return b;
    }
}
