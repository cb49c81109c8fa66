package dev.ext4j.it;

import static org.awaitility.Awaitility.await;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * Read-write mounts through the real driver: the same shell workload runs on a plain directory and
 * on an ext4j mount, the two trees must match, the image must be e2fsck-clean after unmount, and the
 * kernel must see the same tree.
 */
class WriteTreeIT extends FuseTestBase {

    /**
     * The workload: $1 is the directory to work in, $2 a source tree to copy. Deterministic, so two
     * runs give the same tree (times aside).
     */
    private static final String WORKLOAD = """
            set -eu
            cd "$1"
            cp -a "$2" tree
            mkdir -p wide sub/deeper other
            for i in $(seq 1 3000); do echo "entry $i" > wide/f$i; done
            for i in $(seq 1 2 3000); do rm wide/f$i; done
            for i in $(seq 1 5000); do echo "new $i" > wide/n$i; done
            mv wide/n1 other/moved
            mv wide/n2 wide/f2
            mv sub/deeper other/deeper-moved
            mv tree/linux/netfilter other/
            mv other/moved other/f-over && echo over > other/f-over2 && mv other/f-over2 other/f-over
            ln other/f-over other/hard
            ln -s ../other/f-over wide/sym
            ln -s "$(printf 'long-target-%.0s' $(seq 1 8))" wide/longsym
            chmod 600 other/f-over
            chown 1234:5678 other/hard
            setfattr -n user.color -v blue other/f-over
            setfattr -n user.big -v "$(printf 'x%.0s' $(seq 1 700))" wide/f4
            setfattr -x user.big wide/f4
            dd if=/dev/zero bs=1k count=300 2>/dev/null | tr '\\0' 'q' > big
            truncate -s 100000 big
            truncate -s 5000000 big
            truncate -s 3 wide/n3
            printf 'middle' | dd of=big bs=1 seek=4000000 conv=notrunc 2>/dev/null
            mkdir gone && rmdir gone
            rm -rf tree/linux
            mkfifo other/fifo
            """;

    static Stream<Arguments> variants() {
        return Stream.of(
                Arguments.of("4k", List.of("-b", "4096")),
                Arguments.of("1k", List.of("-b", "1024")),
                Arguments.of("inline_data", List.of("-b", "4096", "-O", "inline_data")),
                Arguments.of("no-metadata_csum", List.of("-b", "4096", "-O", "^metadata_csum")),
                Arguments.of("ext3", List.of("-t", "ext3", "-b", "4096")))
                .filter(a -> variantSelected((String) a.get()[0]));
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("variants")
    void workloadMatchesAPlainDirectory(String name, List<String> mkfs) throws Exception {
        Path dir = Files.createDirectories(scratch.resolve("w-" + name));
        Path src = Path.of("/usr/include");
        Path plain = Files.createDirectories(dir.resolve("plain"));
        Tools.bash(Tools.LONG, WORKLOAD, plain.toString(), src.toString()).requireOk();

        Path image = dir.resolve("disk.img");
        Path empty = Files.createDirectories(dir.resolve("empty"));
        Tools.mkfs(empty, image, "512M", mkfs).requireOk();
        Path mnt = Files.createDirectories(dir.resolve("mnt"));
        try (MountedImage m = MountedImage.mount(image, mnt, dir.resolve("server.log"))) {
            Tools.bash(Tools.LONG, WORKLOAD, mnt.toString(), src.toString()).requireOk();
            List<String> diffs = TreeCompare.compare(plain, mnt, TreeCompare.Options.sourceVsImage().mtime(false));
            assertTrue(diffs.isEmpty(), "ext4j differs from a plain directory on " + name + ":\n" + String.join("\n", diffs));
            assertTrue(m.unexpectedFailures().isEmpty(), "server log: " + m.unexpectedFailures());
        }
        Tools.e2fsckClean(image);

        Path remount = Files.createDirectories(dir.resolve("remount"));
        try (MountedImage m = MountedImage.mount(image, remount, dir.resolve("server2.log"), "ro")) {
            List<String> diffs = TreeCompare.compare(plain, remount, TreeCompare.Options.sourceVsImage().mtime(false));
            assertTrue(diffs.isEmpty(), "after remount on " + name + ":\n" + String.join("\n", diffs));
        }
        Path kmnt = Files.createDirectories(dir.resolve("kernel"));
        try (KernelMount k = KernelMount.attempt(image, kmnt)) {
            assertTrue(k.mounted(), "the kernel cannot mount the image: " + k.result().describe());
            List<String> diffs = TreeCompare.compare(plain, kmnt, TreeCompare.Options.sourceVsImage().mtime(false));
            assertTrue(diffs.isEmpty(), "the kernel's view differs on " + name + ":\n" + String.join("\n", diffs));
        }
    }

    /** Several processes create, rename and delete in the same and in different directories. */
    @Test
    void concurrentWritersNeitherDeadlockNorCorrupt() throws Exception {
        Path dir = Files.createDirectories(scratch.resolve("concurrent"));
        Path image = dir.resolve("disk.img");
        Path empty = Files.createDirectories(dir.resolve("empty"));
        Tools.mkfs(empty, image, "256M", List.of("-b", "4096")).requireOk();
        Path mnt = Files.createDirectories(dir.resolve("mnt"));
        String worker = """
                set -u
                cd "$1"; w=$2
                mkdir -p shared own$w
                for i in $(seq 1 400); do
                  echo "$w $i" > shared/w$w-$i
                  echo "$w $i" > own$w/f$i
                  mv shared/w$w-$i own$w/moved$i 2>/dev/null
                  [ $((i % 3)) -eq 0 ] && rm -f own$w/f$i
                  [ $((i % 5)) -eq 0 ] && mv own$w/moved$i shared/back-$w-$i 2>/dev/null
                  [ $((i % 7)) -eq 0 ] && mkdir -p shared/d$((i % 4)) && mv shared/d$((i % 4)) own$w/d$i 2>/dev/null
                done
                exit 0
                """;
        try (MountedImage m = MountedImage.mount(image, mnt, dir.resolve("server.log"))) {
            List<Process> procs = new ArrayList<>();
            for (int w = 0; w < 4; w++) {
                procs.add(new ProcessBuilder("bash", "-c", worker, "worker", mnt.toString(), Integer.toString(w))
                        .redirectErrorStream(true).redirectOutput(dir.resolve("worker" + w + ".log").toFile()).start());
            }
            try {
                await().atMost(Duration.ofMinutes(5)).pollInterval(Duration.ofMillis(200))
                        .until(() -> procs.stream().noneMatch(Process::isAlive));
            } finally {
                procs.forEach(Process::destroyForcibly);
            }
            for (Process p : procs) {
                assertEquals(0, p.exitValue(), "a worker failed");
            }
            Tools.Result find = Tools.run(Tools.LONG, "find", mnt.toString(), "-type", "f");
            assertTrue(find.ok(), "walking the tree after the workers: " + find.describe());
            assertTrue(m.unexpectedFailures().isEmpty(), "server log: " + m.unexpectedFailures());
        }
        Tools.e2fsckClean(image);
    }
}
