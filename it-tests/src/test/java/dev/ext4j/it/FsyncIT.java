package dev.ext4j.it;

import static org.awaitility.Awaitility.await;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

/**
 * fsync(2), fdatasync(2) on files and directories and sync(1) succeed on a read-write mount, and
 * statfs counts exactly the blocks the written files hold.
 */
class FsyncIT extends FuseTestBase {
    private static final long DATA_BYTES = 8 << 20;

    @Test
    void fsyncAndSyncSucceedAndStatfsCountsTheWrittenBlocks() throws IOException {
        Path dir = newDir("fsync");
        Path image = dir.resolve("disk.img");
        Tools.mkfs(null, image, "64M", List.of("-b", "4096"));
        Path mnt = Files.createDirectories(dir.resolve("mnt"));
        String sha;
        String statfsAtEnd;

        try (MountedImage m = MountedImage.mount(image, mnt, dir.resolve("server.log"))) {
            Map<String, Long> before = ShellViews.statfsNumbers(mnt);
            long bsize = before.get("bsize");
            List<String> out = Tools.python(Tools.SHORT, mnt, "fsync.py").requireOk().stdout().lines().toList();
            assertEquals(List.of(
                    "fsync a file -> OK",
                    "fdatasync a file -> OK",
                    "fsync a file again with nothing new -> OK",
                    "close a file -> OK",
                    "fsync a read-only fd -> OK",
                    "fsync a directory fd (.) -> OK",
                    "fdatasync a directory fd (.) -> OK",
                    "fsync a directory fd (sub) -> OK",
                    "fdatasync a directory fd (sub) -> OK",
                    "sync -> OK"), out.subList(0, out.size() - 1));
            String[] data = out.get(out.size() - 1).split(" ");
            sha = data[1].substring("sha256=".length());
            long sectors = Long.parseLong(data[2].substring("blocks=".length()));
            assertEquals("size=" + DATA_BYTES, data[3]);
            assertTrue(sectors * 512 >= DATA_BYTES, "st_blocks " + sectors + " for " + DATA_BYTES + " bytes");

            Tools.run(Tools.SHORT, "sync").requireOk();
            Tools.run(Tools.SHORT, "sync", "-f", mnt.resolve("data").toString()).requireOk();
            Tools.run(Tools.SHORT, "sync", "-d", mnt.resolve("data").toString()).requireOk();

            // statfs counts the data file's blocks (st_blocks, extent blocks included) and sub's one block.
            Map<String, Long> after = ShellViews.statfsNumbers(mnt);
            assertEquals(before.get("bfree") - sectors * 512 / bsize - 1, after.get("bfree"),
                    "df free blocks after writing " + DATA_BYTES + " bytes (st_blocks " + sectors + ") and a directory; before: " + before);
            assertEquals(before.get("ffree") - 2, after.get("ffree"), "df -i free inodes after creating a file and a directory");

            Tools.run(Tools.SHORT, "dd", "if=/dev/zero", "of=" + mnt.resolve("gone"), "bs=1M", "count=2", "conv=fsync").requireOk();
            assertEquals(after.get("bfree") - (2 << 20) / bsize, ShellViews.statfsNumbers(mnt).get("bfree"), "df free after writing 2 MiB more");
            Tools.run(Tools.SHORT, "rm", mnt.resolve("gone").toString()).requireOk();
            // the kernel sends the RELEASE of dd's file and the FORGET of its inode asynchronously
            // (a FUSE file's last close does not wait for its RELEASE): the inode goes with the later of them
            await().atMost(Duration.ofSeconds(10)).untilAsserted(() -> assertEquals(after, ShellViews.statfsNumbers(mnt),
                    "statfs after removing the 2 MiB file again"));

            statfsAtEnd = ShellViews.statfs(mnt);
            assertEquals(List.of(), m.unexpectedFailures(), "server log");
        }
        Tools.e2fsckClean(image);

        Path kmnt = Files.createDirectories(dir.resolve("kernel"));
        try (KernelMount k = KernelMount.attempt(image, kmnt)) {
            assertTrue(k.mounted(), "the kernel cannot mount the image: " + k.result().describe());
            assertEquals(sha, Tools.sha256(kmnt.resolve("data")), "the kernel reads other data");
            assertEquals(ShellViews.statfs(kmnt), statfsAtEnd, "statfs differs from the kernel's");
        }
    }
}
