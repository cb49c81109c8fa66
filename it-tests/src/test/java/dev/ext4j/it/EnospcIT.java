package dev.ext4j.it;

import static org.awaitility.Awaitility.await;
import static org.junit.jupiter.api.Assertions.assertAll;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeSet;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * A full filesystem, as a process sees it: writes fail with ENOSPC (not EIO, not silently), what
 * was written before stays intact across unmount and remount, running out of inodes is ENOSPC too
 * and deleting files makes room again, unprivileged users cannot eat the blocks reserved for root,
 * and statfs ({@code df}, {@code df -i}) says what the kernel says about the same image.
 */
class EnospcIT extends FuseTestBase {
    private static final Duration FILL_TIMEOUT = Duration.ofMinutes(3);

    static Stream<Arguments> blockSizes() {
        return Stream.of(
                Arguments.of("4k", List.of("-b", "4096")),
                Arguments.of("1k", List.of("-b", "1024")));
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("blockSizes")
    void fillingTheDiskFailsWithEnospcAndKeepsWhatWasWritten(String name, List<String> mkfs) throws IOException {
        Path dir = newDir("blocks-" + name);
        Path image = dir.resolve("disk.img");
        Tools.mkfs(null, image, "32M", mkfs);
        Path manifest = dir.resolve("manifest.sha256");
        String statfsWhenFull;

        Path mnt = Files.createDirectories(dir.resolve("mnt"));
        try (MountedImage m = MountedImage.mount(image, mnt, dir.resolve("server.log"))) {
            Map<String, Long> before = ShellViews.statfsNumbers(mnt);
            List<String> out = Tools.python(FILL_TIMEOUT, mnt, "fill.py", "blocks", "f").requireOk().stdout().lines().toList();
            assertTrue(out.contains("write -> ENOSPC"), "the write that found the disk full must fail with ENOSPC:\n" + String.join("\n", out));
            assertTrue(out.contains("close -> OK"), "closing the file after ENOSPC:\n" + String.join("\n", out));

            long written = writeManifest(out, manifest);
            long freeBytes = before.get("bfree") * before.get("bsize");
            assertTrue(written >= freeBytes * 9 / 10, "ENOSPC came after " + written + " bytes, but " + freeBytes + " bytes were free");
            Map<String, Long> full = ShellViews.statfsNumbers(mnt);
            assertEquals(0, full.get("bavail"), "statfs when full: " + full);

            Tools.Result check = Tools.run(FILL_TIMEOUT, null, mnt, List.of("sha256sum", "--quiet", "-c", manifest.toString()));
            assertTrue(check.ok(), "reading back through the same mount: " + check.describe());

            // a program that keeps writing to the full disk: each write fails, the log stays short
            Tools.Result retries = Tools.bash(FILL_TIMEOUT, "cd \"$1\" && n=0; for i in $(seq 300); do"
                    + " printf x 2>/dev/null >> retry || n=$((n + 1)); done; rm retry; echo $n", mnt.toString());
            assertEquals("300", retries.requireOk().stdout().strip(), "writes to the full disk that failed");
            long enospcLines = m.log().lines().filter(l -> l.contains("ENOSPC")).count();
            assertTrue(enospcLines < 100, enospcLines + " ENOSPC lines in the server log: it is not rate-limited");

            // retry's inode goes once the kernel's asynchronous RELEASE and FORGET of it arrive
            await().atMost(Duration.ofSeconds(10)).untilAsserted(() -> assertEquals(full.get("ffree"),
                    ShellViews.statfsNumbers(mnt).get("ffree"), "df -i after rm retry"));
            statfsWhenFull = ShellViews.statfs(mnt);
            assertEquals(List.of(), m.unexpectedFailures(), "server log");
        }
        Tools.e2fsckClean(image);
        List<String> unkept = Files.readAllLines(dir.resolve("server.log")).stream().filter(l -> l.contains("still promised")).toList();
        assertEquals(List.of(), unkept, "delayed allocation promises left at unmount");

        Path remount = Files.createDirectories(dir.resolve("remount"));
        try (MountedImage m = MountedImage.mount(image, remount, dir.resolve("server2.log"))) {
            Tools.Result check = Tools.run(FILL_TIMEOUT, null, remount, List.of("sha256sum", "--quiet", "-c", manifest.toString()));
            assertTrue(check.ok(), "after unmount and remount: " + check.describe());
            assertEquals(statfsWhenFull, ShellViews.statfs(remount), "statfs after remount");
            assertEquals(List.of(), m.unexpectedFailures(), "server log after remount");
        }
        Tools.e2fsckClean(image);

        Path kmnt = Files.createDirectories(dir.resolve("kernel"));
        try (KernelMount k = KernelMount.attempt(image, kmnt)) {
            assertTrue(k.mounted(), "the kernel cannot mount the image: " + k.result().describe());
            Tools.Result check = Tools.run(FILL_TIMEOUT, null, kmnt, List.of("sha256sum", "--quiet", "-c", manifest.toString()));
            assertTrue(check.ok(), "the kernel reads other data: " + check.describe());
            assertEquals(ShellViews.statfs(kmnt), statfsWhenFull, "statfs (df) of the full filesystem differs from the kernel's");
        }
    }

    /**
     * The blocks mkfs reserves for root (-m, 5% by default; s_r_blocks_count) are the kernel's policy
     * in ext4_has_free_clusters(): an unprivileged writer gets ENOSPC while they are still free, df
     * shows 0 available, and root can still write. The same fill runs on a kernel mount of a copy
     * first, to show that this is what the kernel does.
     */
    @Test
    void unprivilegedWritersStopAtTheBlocksReservedForRoot() throws IOException {
        Path dir = newDir("reserved");
        Path image = dir.resolve("disk.img");
        Tools.mkfs(null, image, "32M", List.of("-b", "4096"));
        long reserved = Long.parseLong(Tools.superblock(image).get("Reserved block count"));
        assertTrue(reserved > 100, "mkfs reserved " + reserved + " blocks");
        Path kernelImage = dir.resolve("kernel.img");
        Files.copy(image, kernelImage);

        Path kmnt = Files.createDirectories(dir.resolve("kernel"));
        try (KernelMount k = KernelMount.attemptReadWrite(kernelImage, kmnt)) {
            assertTrue(k.mounted(), "the kernel cannot mount the image: " + k.result().describe());
            ReserveUse kernel = fillAsNobodyThenAsRoot(kmnt);
            assertAll("the kernel",
                    () -> assertTrue(kernel.nobodyLeftFree() >= reserved, kernel + ", " + reserved + " reserved"),
                    () -> assertTrue(kernel.rootWrote() >= reserved / 2 * kernel.blockSize(), kernel + ", " + reserved + " reserved"));
        }

        ReserveUse ext4j;
        Path mnt = Files.createDirectories(dir.resolve("mnt"));
        try (MountedImage m = MountedImage.mount(image, mnt, dir.resolve("server.log"), "allow_other")) {
            ext4j = fillAsNobodyThenAsRoot(mnt);
            assertEquals(List.of(), m.unexpectedFailures(), "server log");
        }
        Tools.e2fsckClean(image);
        assertAll("ext4j",
                () -> assertTrue(ext4j.nobodyLeftFree() >= reserved, "an unprivileged writer used blocks reserved for root: "
                        + ext4j.nobodyLeftFree() + " blocks left free, " + reserved + " reserved"),
                () -> assertTrue(ext4j.rootWrote() >= reserved / 2 * ext4j.blockSize(),
                        "root could write only " + ext4j.rootWrote() + " bytes into the " + reserved + " reserved blocks"));
    }

    /** What an unprivileged fill left free (blocks), and what root could write after it (bytes). */
    private record ReserveUse(long nobodyLeftFree, long rootWrote, long blockSize) {
    }

    private static ReserveUse fillAsNobodyThenAsRoot(Path mnt) {
        Tools.run(Tools.SHORT, "mkdir", "-m", "1777", mnt.resolve("pub").toString()).requireOk();
        List<String> out = Tools.pythonAsNobody(FILL_TIMEOUT, mnt.resolve("pub"), "fill.py", "blocks", "u").requireOk().stdout().lines().toList();
        assertTrue(out.contains("write -> ENOSPC"), "the unprivileged writer must get ENOSPC:\n" + String.join("\n", out));
        Map<String, Long> afterNobody = ShellViews.statfsNumbers(mnt);
        // fill.py writes 64 KiB at a time: ENOSPC may leave less than that available
        assertTrue(afterNobody.get("bavail") * afterNobody.get("bsize") < 64 << 10,
                "df still shows more than one write available when the unprivileged writer got ENOSPC: " + afterNobody);

        List<String> rootOut = Tools.python(FILL_TIMEOUT, mnt, "fill.py", "blocks", "r").requireOk().stdout().lines().toList();
        assertTrue(rootOut.contains("write -> ENOSPC"), String.join("\n", rootOut));
        long rootWrote = rootOut.stream().filter(l -> l.startsWith("file ")).mapToLong(l -> Long.parseLong(l.split(" ")[2])).sum();
        return new ReserveUse(afterNobody.get("bfree"), rootWrote, afterNobody.get("bsize"));
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("blockSizes")
    void runningOutOfInodesFailsWithEnospcUntilFilesAreDeleted(String name, List<String> mkfs) throws IOException {
        Path dir = newDir("inodes-" + name);
        Path image = dir.resolve("disk.img");
        List<String> opts = new ArrayList<>(mkfs);
        opts.addAll(List.of("-N", "64"));
        Tools.mkfs(null, image, "32M", opts);
        String statfsAtEnd;
        TreeSet<String> expectedNames = new TreeSet<>(List.of("lost+found"));

        Path mnt = Files.createDirectories(dir.resolve("mnt"));
        try (MountedImage m = MountedImage.mount(image, mnt, dir.resolve("server.log"))) {
            long freeInodes = ShellViews.statfsNumbers(mnt).get("ffree");
            assertTrue(freeInodes > 10 && freeInodes <= 64, "mkfs -N 64 left " + freeInodes + " free inodes");

            List<String> out = Tools.python(FILL_TIMEOUT, mnt, "fill.py", "inodes", "f").requireOk().stdout().lines().toList();
            assertEquals(List.of("created " + freeInodes, "create -> ENOSPC", "mkdir -> ENOSPC", "symlink -> ENOSPC", "mkfifo -> ENOSPC"), out,
                    "creating files until the inodes run out");
            assertEquals(0, ShellViews.statfsNumbers(mnt).get("ffree"), "df -i free inodes when none are left");

            Tools.run(Tools.SHORT, null, mnt, List.of("rm", "f0", "f3", "f7", "f8", "f9")).requireOk();
            // the inodes go once the kernel's asynchronous RELEASE (fill.py's files) and FORGET arrive
            await().atMost(Duration.ofSeconds(10)).untilAsserted(() -> assertEquals(5, ShellViews.statfsNumbers(mnt).get("ffree"),
                    "df -i after deleting 5 files"));
            out = Tools.python(FILL_TIMEOUT, mnt, "fill.py", "inodes", "g").requireOk().stdout().lines().toList();
            assertEquals(List.of("created 5", "create -> ENOSPC", "mkdir -> ENOSPC", "symlink -> ENOSPC", "mkfifo -> ENOSPC"), out,
                    "after deleting 5 files exactly 5 can be created again");

            for (long i = 0; i < freeInodes; i++) {
                expectedNames.add("f" + i);
            }
            expectedNames.removeAll(List.of("f0", "f3", "f7", "f8", "f9"));
            for (int i = 0; i < 5; i++) {
                expectedNames.add("g" + i);
            }
            statfsAtEnd = ShellViews.statfs(mnt);
            assertEquals(List.of(), m.unexpectedFailures(), "server log");
        }
        Tools.e2fsckClean(image);

        Path kmnt = Files.createDirectories(dir.resolve("kernel"));
        try (KernelMount k = KernelMount.attempt(image, kmnt)) {
            assertTrue(k.mounted(), "the kernel cannot mount the image: " + k.result().describe());
            TreeSet<String> names = new TreeSet<>(Tools.run(Tools.SHORT, "ls", "-A", kmnt.toString()).requireOk().stdout().lines().toList());
            assertEquals(expectedNames, names, "the kernel's listing of the root directory");
            assertEquals(ShellViews.statfs(kmnt), statfsAtEnd, "statfs (df -i) differs from the kernel's");
        }
    }

    /** Turns fill.py's "file NAME SIZE SHA256" lines into a sha256sum -c manifest; returns the bytes written. */
    private static long writeManifest(List<String> fillOutput, Path manifest) throws IOException {
        StringBuilder b = new StringBuilder();
        long total = 0;
        for (String line : fillOutput) {
            if (line.startsWith("file ")) {
                String[] f = line.split(" ");
                b.append(f[3]).append("  ").append(f[1]).append('\n');
                total += Long.parseLong(f[2]);
            }
        }
        Files.writeString(manifest, b.toString());
        return total;
    }
}
