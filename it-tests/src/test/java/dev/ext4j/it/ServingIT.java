package dev.ext4j.it;

import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;

/**
 * How the server takes requests (FuseLoop): between requests one worker polls /dev/fuse for a
 * moment before it sleeps, so a burst of requests is served by a thread that is awake. Once the
 * requests stop, so must the polling: an idle mount costs no CPU.
 */
class ServingIT extends FuseTestBase {
    private static final long CLOCK_TICKS_PER_SECOND = 100; // USER_HZ on Linux

    @Test
    void anIdleMountUsesNoCpuAfterABurstOfRequests() throws Exception {
        Path dir = newDir("serving");
        Path image = dir.resolve("disk.img");
        Tools.mkfs(null, image, "64M", List.of());
        Path mnt = Files.createDirectories(dir.resolve("mnt"));
        try (MountedImage m = MountedImage.mount(image, mnt, dir.resolve("server.log"))) {
            assertTrue(m.serverPid() > 0, "server process not found");
            // a burst: 20,000 requests one after another, each sent when the last was answered
            Tools.bash(Tools.LONG, "cd \"$1\" && for i in $(seq 200); do touch f$i; stat f$i >/dev/null; done"
                    + " && python3 -c 'import os\nfor i in range(20000): os.stat(\"f%d\" % (i % 200 + 1))'", mnt.toString()).requireOk();
            Thread.sleep(500);
            long before = cpuTicks(m.serverPid());
            long start = System.nanoTime();
            Thread.sleep(3000);
            long used = cpuTicks(m.serverPid()) - before;
            double seconds = (System.nanoTime() - start) / 1e9;
            // a worker left polling would use a whole CPU (~300 ticks); timers and the flusher use ~none
            assertTrue(used < 0.1 * seconds * CLOCK_TICKS_PER_SECOND,
                    "the idle server used " + used + " clock ticks of CPU in " + seconds + " s");
            assertTrue(m.ls("").requireOk().stdout().lines().anyMatch("f200"::equals), "the mount still answers");
        }
        Tools.e2fsckClean(image);
    }

    /** utime + stime of all of the process's threads, in clock ticks (proc(5)). */
    private static long cpuTicks(long pid) throws IOException {
        String stat = Files.readString(Path.of("/proc", Long.toString(pid), "stat"));
        String[] f = stat.substring(stat.lastIndexOf(')') + 2).split(" ");
        return Long.parseLong(f[11]) + Long.parseLong(f[12]); // fields 14 and 15
    }
}
