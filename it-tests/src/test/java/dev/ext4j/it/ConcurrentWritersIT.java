package dev.ext4j.it;

import static org.awaitility.Awaitility.await;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import org.awaitility.core.ConditionTimeoutException;
import org.junit.jupiter.api.Test;

/**
 * Processes writing at once through one mount: four write files of their own (random offsets and
 * lengths, checked by checksum at the end), four write disjoint regions of one shared file (each
 * block with one aligned 4096-byte pwrite), and two read the shared file in a loop meanwhile. The
 * readers use O_DIRECT, so that their reads reach the driver rather than the kernel's page cache
 * (whose copy into a cached page is not atomic against a concurrent reader, on any filesystem):
 * every block they read must be one whole generation of that very block, and no block may go back
 * to an older generation. All waits are bounded: a deadlock in the driver fails the test with the
 * server's thread dump instead of hanging it. At the end the image is e2fsck-clean and the kernel
 * reads the same data.
 */
class ConcurrentWritersIT extends FuseTestBase {
    private static final int SHARED_BLOCKS = 4096; // 16 MiB
    private static final int WRITERS = 4;
    private static final int SHARED_WRITES = 2500;
    private static final long PRIVATE_SIZE = 8 << 20;
    private static final int PRIVATE_WRITES = 1500;
    private static final int READERS = 2;
    private static final Duration WORK_TIMEOUT = Duration.ofMinutes(4);

    @Test
    void writersAndReadersRunTogetherWithoutTornBlocksOrDeadlock() throws IOException {
        Path dir = newDir("concurrent");
        Path image = dir.resolve("disk.img");
        Tools.mkfs(null, image, "256M", List.of("-b", "4096"));
        Path mnt = Files.createDirectories(dir.resolve("mnt"));
        Path out = Files.createDirectories(dir.resolve("out"));
        Path stop = out.resolve("stop");
        Map<String, String> privateSums = new LinkedHashMap<>();
        List<Path> maps = new ArrayList<>();
        for (int w = 0; w < WRITERS; w++) {
            maps.add(out.resolve("map" + w));
        }
        String sharedFile = "shared";

        try (MountedImage m = MountedImage.mount(image, mnt, dir.resolve("server.log"))) {
            Tools.python(Tools.LONG, mnt, "concurrent.py", "init", sharedFile, Integer.toString(SHARED_BLOCKS)).requireOk();
            Map<String, Process> procs = new LinkedHashMap<>();
            List<Process> started = new ArrayList<>();
            try {
                for (int r = 0; r < READERS; r++) {
                    procs.put("reader" + r, start(mnt, out.resolve("reader" + r + ".out"), started,
                            "reader", sharedFile, Integer.toString(SHARED_BLOCKS), stop.toString()));
                }
                int region = SHARED_BLOCKS / WRITERS;
                for (int w = 0; w < WRITERS; w++) {
                    procs.put("shared" + w, start(mnt, out.resolve("shared" + w + ".out"), started, "shared", sharedFile,
                            Integer.toString(w * region), Integer.toString(region), Integer.toString(SHARED_WRITES),
                            Integer.toString(100 + w), maps.get(w).toString()));
                    procs.put("private" + w, start(mnt, out.resolve("private" + w + ".out"), started, "private", "p" + w,
                            Long.toString(PRIVATE_SIZE), Integer.toString(PRIVATE_WRITES), Integer.toString(200 + w)));
                }
                List<Process> writers = procs.entrySet().stream().filter(e -> !e.getKey().startsWith("reader")).map(Map.Entry::getValue).toList();
                awaitOrDump("the writers", () -> writers.stream().noneMatch(Process::isAlive), m, procs, out);
                Files.writeString(stop, "stop");
                awaitOrDump("the readers' last pass", () -> procs.values().stream().noneMatch(Process::isAlive), m, procs, out);
            } finally {
                for (Process p : started) {
                    if (p.isAlive()) {
                        Tools.killTree(p.toHandle());
                    }
                }
            }

            List<String> failures = new ArrayList<>();
            for (Map.Entry<String, Process> e : procs.entrySet()) {
                String text = StaleDataIT.read(out.resolve(e.getKey() + ".out"));
                if (e.getValue().exitValue() != 0) {
                    failures.add(e.getKey() + " exited " + e.getValue().exitValue() + ":\n" + text);
                }
            }
            assertTrue(failures.isEmpty(), String.join("\n", failures));
            for (int r = 0; r < READERS; r++) {
                String text = StaleDataIT.read(out.resolve("reader" + r + ".out")).strip();
                System.out.println("ConcurrentWritersIT reader" + r + ": " + text);
                assertTrue(text.matches("ok passes=\\d+ newer=\\d+"), "reader" + r + ": " + text);
                int newer = Integer.parseInt(text.replaceAll(".*newer=", ""));
                assertTrue(newer > 0, "reader" + r + " never saw a block change while the writers ran: " + text);
            }
            for (int w = 0; w < WRITERS; w++) {
                String text = StaleDataIT.read(out.resolve("private" + w + ".out")).strip();
                assertTrue(text.startsWith("sha256 "), "private" + w + ": " + text);
                String[] f = text.split(" ");
                privateSums.put("p" + w, f[1]);
                assertEquals(Long.parseLong(f[2]), Files.size(mnt.resolve("p" + w)), "size of p" + w);
            }
            checkData(mnt, sharedFile, maps, privateSums, "through the mount that wrote it");
            assertEquals(List.of(), m.unexpectedFailures(), "server log");
        }
        Tools.e2fsckClean(image);

        Path kmnt = Files.createDirectories(dir.resolve("kernel"));
        try (KernelMount k = KernelMount.attempt(image, kmnt)) {
            assertTrue(k.mounted(), "the kernel cannot mount the image: " + k.result().describe());
            checkData(kmnt, sharedFile, maps, privateSums, "through the kernel");
        }
    }

    private static void checkData(Path root, String shared, List<Path> maps, Map<String, String> sums, String view) {
        List<String> args = new ArrayList<>(List.of("verify", shared));
        maps.forEach(p -> args.add(p.toString()));
        Tools.Result v = Tools.python(Tools.LONG, root, "concurrent.py", args.toArray(String[]::new));
        assertTrue(v.ok(), "the shared file " + view + ":\n" + v.describe());
        for (Map.Entry<String, String> e : sums.entrySet()) {
            assertEquals(e.getValue(), Tools.sha256(root.resolve(e.getKey())), "content of " + e.getKey() + " " + view);
        }
    }

    private static Process start(Path cwd, Path out, List<Process> started, String... args) {
        Process p = StaleDataIT.startPython(cwd, out, "concurrent.py", args);
        started.add(p);
        return p;
    }

    /** Waits for {@code done}; on timeout fails with the server's thread dump and what each process said so far. */
    private static void awaitOrDump(String what, java.util.concurrent.Callable<Boolean> done, MountedImage m, Map<String, Process> procs, Path out) {
        try {
            await(what).atMost(WORK_TIMEOUT).pollInterval(Duration.ofMillis(100)).until(done);
        } catch (ConditionTimeoutException e) {
            StringBuilder b = new StringBuilder(what + " did not finish within " + WORK_TIMEOUT + " (a deadlock?)\n");
            for (Map.Entry<String, Process> p : procs.entrySet()) {
                b.append(p.getKey()).append(p.getValue().isAlive() ? " (running): " : " (exited " + p.getValue().exitValue() + "): ")
                        .append(StaleDataIT.read(out.resolve(p.getKey() + ".out")).strip()).append('\n');
            }
            b.append("--- jstack of the server ---\n").append(jstack(m.serverPid()));
            fail(b.toString(), e);
        }
    }

    private static String jstack(long pid) {
        if (pid <= 0) {
            return "(no server pid)";
        }
        Optional<String> java = ProcessHandle.current().info().command();
        Path jstack = java.map(j -> Path.of(j).resolveSibling("jstack")).filter(Files::isExecutable).orElse(Path.of("jstack"));
        Tools.Result r = Tools.run(Duration.ofSeconds(30), jstack.toString(), Long.toString(pid));
        return Tools.abbreviate(r.output(), 60_000);
    }
}
