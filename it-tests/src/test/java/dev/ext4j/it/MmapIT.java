package dev.ext4j.it;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;

/**
 * A shared writable mapping through the kernel: its pages reach ext4j's page cache as writes,
 * read(2) sees them, and after unmount the image is clean and the kernel reads the same bytes.
 */
class MmapIT extends FuseTestBase {
    @Test
    void sharedWritableMmapWritesReachTheImage() throws IOException {
        Path dir = newDir("mmap");
        Path image = dir.resolve("disk.img");
        Tools.mkfs(null, image, "64M", List.of("-b", "1024"));
        Path mnt = Files.createDirectories(dir.resolve("mnt"));
        String sha;
        try (MountedImage m = MountedImage.mount(image, mnt, dir.resolve("server.log"))) {
            String out = Tools.python(Tools.SHORT, mnt, "mmap.py").requireOk().stdout().trim();
            assertTrue(out.startsWith("sha256="), out);
            sha = out.substring("sha256=".length());
            assertEquals(sha, Tools.sha256(mnt.resolve("mapped")), "a second read through the mount");
            assertEquals(List.of(), m.unexpectedFailures(), "server log");
        }
        Tools.e2fsckClean(image);
        Path kmnt = Files.createDirectories(dir.resolve("kernel"));
        try (KernelMount k = KernelMount.attempt(image, kmnt)) {
            assertTrue(k.mounted(), "the kernel cannot mount the image: " + k.result().describe());
            assertEquals(sha, Tools.sha256(kmnt.resolve("mapped")), "the kernel reads other data");
        }
    }
}
