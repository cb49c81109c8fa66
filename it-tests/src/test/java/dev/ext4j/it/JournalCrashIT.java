package dev.ext4j.it;

import static org.awaitility.Awaitility.await;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import org.junit.jupiter.api.Test;

/**
 * SIGKILL of the server in the middle of a metadata-heavy workload (cp -a of /usr/include/linux,
 * files created with fsync, renames, deletes; journal.py), at seeded random times, over several
 * rounds on one image. After each crash: a copy replayed by the kernel (a read-write loop mount) is
 * e2fsck-clean and holds every file whose fsync returned and that was not touched after; so does the
 * image once ext4j's next mount has replayed it and unmounted.
 */
class JournalCrashIT extends FuseTestBase {
    private static final int ROUNDS = 6;

    @Test
    void sigkillDuringMetadataWorkReplaysClean() throws IOException {
        Path dir = newDir("journal-crash");
        Path image = dir.resolve("disk.img");
        Tools.mkfs(null, image, "256M", List.of("-b", "4096", "-J", "size=8"));
        Random rnd = new Random(2024);
        for (int round = 0; round < ROUNDS; round++) {
            Path out = dir.resolve("writer" + round + ".out");
            Path mnt = Files.createDirectories(dir.resolve("mnt" + round));
            MountedImage m = MountedImage.mount(image, mnt, dir.resolve("server" + round + ".log"));
            Process writer = null;
            long killAfterMs = 1500 + rnd.nextInt(6000);
            try {
                writer = StaleDataIT.startPython(mnt, out, "journal.py", Integer.toString(round));
                await().pollDelay(Duration.ofMillis(killAfterMs)).atMost(Duration.ofMillis(killAfterMs + 5000)).until(() -> true);
                ProcessHandle server = ProcessHandle.of(m.serverPid()).orElseThrow(() -> new AssertionError("the server is gone"));
                server.destroyForcibly(); // SIGKILL
                await("the killed server").atMost(Duration.ofSeconds(30)).until(() -> !server.isAlive());
                Tools.run(Tools.SHORT, "fusermount", "-u", "-z", mnt.toString()).requireOk();
                Process w = writer;
                await("the writer after the crash").atMost(Duration.ofSeconds(60)).until(() -> !w.isAlive());
            } finally {
                if (writer != null && writer.isAlive()) {
                    Tools.killTree(writer.toHandle());
                }
                m.close();
            }
            Map<String, String> synced = syncedAndUntouched(Files.readString(out));
            String what = "round " + round + " (SIGKILL after " + killAfterMs + " ms, " + synced.size() + " fsynced files)";
            assertTrue(Tools.run(Tools.SHORT, "dumpe2fs", "-h", image.toString()).output().contains("needs_recovery"),
                    what + ": the crashed image needs recovery");

            Path kernelCopy = dir.resolve("kernel" + round + ".img");
            Tools.run(Tools.LONG, "cp", "--sparse=always", image.toString(), kernelCopy.toString()).requireOk();
            Path kmnt = Files.createDirectories(dir.resolve("kernel" + round));
            try (KernelMount k = KernelMount.attemptReadWrite(kernelCopy, kmnt)) {
                assertTrue(k.mounted(), what + ": the kernel cannot mount the crashed image: " + k.result().describe());
                assertIntact(kmnt, synced, what + ", replayed by the kernel");
            }
            Tools.e2fsckClean(kernelCopy);
            Files.delete(kernelCopy);

            Path mnt2 = Files.createDirectories(dir.resolve("again" + round));
            try (MountedImage again = MountedImage.mount(image, mnt2, dir.resolve("again" + round + ".log"))) {
                assertIntact(mnt2, synced, what + ", replayed by ext4j");
                assertEquals(List.of(), again.unexpectedFailures(), what + ": server log of the mount after the crash");
            }
            Tools.e2fsckClean(image);
        }
    }

    /** "synced PATH SHA" lines without a later "touch PATH". */
    private static Map<String, String> syncedAndUntouched(String log) {
        Map<String, String> out = new LinkedHashMap<>();
        for (String line : log.split("\n")) {
            String[] f = line.split(" ");
            if (f[0].equals("synced") && f.length == 3) {
                out.put(f[1], f[2]);
            } else if (f[0].equals("touch") && f.length == 2) {
                out.remove(f[1]);
            }
        }
        return out;
    }

    private static void assertIntact(Path mnt, Map<String, String> synced, String what) {
        List<String> bad = new ArrayList<>();
        for (var e : synced.entrySet()) {
            Path p = mnt.resolve(e.getKey());
            if (!Files.exists(p)) {
                bad.add(e.getKey() + " is missing");
            } else if (!Tools.sha256(p).equals(e.getValue())) {
                bad.add(e.getKey() + " has other contents");
            }
        }
        assertTrue(bad.isEmpty(), what + ": fsynced files lost: " + bad);
    }
}
