package dev.ext4j.it;

import static org.awaitility.Awaitility.await;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;

/**
 * Online growth end to end, through a real FUSE mount of the packaged driver: {@code resize SIZE}
 * written to the control file and {@code resize2fs IMG SIZE} (EXT4_IOC_RESIZE_FS on the mount),
 * while a writer runs; 4 KiB and 1 KiB blocks; an image without the resize inode grown past what
 * its one descriptor block can describe (the conversion to meta_bg); and shrinking refused. After
 * each grow, {@code statfs} shows the new size, more data than the old size could hold is written
 * and reads back, and after unmounting the image is e2fsck-clean and a kernel loop mount sees the
 * same files (same SHA-256) and the same size.
 *
 * <p>Not covered here: "a resize while another runs gives EBUSY". At the FUSE level the two
 * resizes cannot be made to overlap deterministically without a test hook in the driver (a resize
 * takes milliseconds to a second, and a second one that comes later simply sees the grown size);
 * the core's OnlineResizeTest covers it.
 *
 * <p>Images are sparse and deleted at the end of each test (they are up to 12 GiB apparent, about
 * 1 GiB used).
 */
class ResizeIT extends FuseTestBase {
    private static final long MIB = 1L << 20;
    private static final long GIB = 1L << 30;
    /** How long the writer may take to write a file (or stop), and a big file may take to write. */
    private static final Duration WRITER_TIMEOUT = Duration.ofMinutes(3);
    private static final Duration BIG_WRITE = Duration.ofMinutes(10);

    /** The {@code statfs} figures of a mounted filesystem ({@code stat -f}). */
    record StatFs(long blockSize, long blocks, long free, long available) {
        long totalBytes() {
            return blocks * blockSize;
        }

        long usedBytes() {
            return (blocks - free) * blockSize;
        }

        static StatFs of(Path mnt) {
            String[] f = Tools.run(Tools.SHORT, "stat", "-f", "-c", "%S %b %f %a", mnt.toString()).requireOk().stdout().strip().split(" ");
            return new StatFs(Long.parseLong(f[0]), Long.parseLong(f[1]), Long.parseLong(f[2]), Long.parseLong(f[3]));
        }
    }

    /** The ring writer of resize.py, running in the mount while the filesystem grows. */
    private static final class Writer implements AutoCloseable {
        final Process process;
        final Path out;
        final Path stop;

        Writer(Path mnt, Path dir, String seed, int files, long size) {
            out = dir.resolve("writer.out");
            stop = dir.resolve("writer.stop");
            process = StaleDataIT.startPython(mnt, out, "resize.py", "ring", "ring", stop.toString(), seed, Integer.toString(files),
                    Long.toString(size));
        }

        String output() {
            return StaleDataIT.read(out);
        }

        long written() {
            return output().lines().filter(l -> l.startsWith("wrote ")).count();
        }

        /** Waits until the writer has written {@code n} files in all; it must still be running. */
        void awaitWritten(long n) {
            await("writer file " + n).atMost(WRITER_TIMEOUT).pollInterval(Duration.ofMillis(50))
                    .until(() -> written() >= n || !process.isAlive());
            assertTrue(process.isAlive(), "the writer stopped early:\n" + output());
        }

        /** Stops the writer between two files; it must exit 0; returns the files it left, name → SHA-256. */
        Map<String, String> stop() throws IOException {
            Files.writeString(stop, "stop\n");
            await("the writer to stop").atMost(WRITER_TIMEOUT).until(() -> !process.isAlive());
            String o = output();
            assertEquals(0, process.exitValue(), "writer:\n" + o);
            assertTrue(o.lines().anyMatch(l -> l.startsWith("done ")), "writer:\n" + o);
            Map<String, String> files = new TreeMap<>();
            o.lines().filter(l -> l.startsWith("wrote ")).forEach(l -> {
                String[] w = l.split(" ");
                files.put(w[1], w[2]); // the last content written to a name wins
            });
            return files;
        }

        @Override
        public void close() {
            if (process.isAlive()) {
                Tools.killTree(process.toHandle());
            }
        }
    }

    // ------------------------------------------------------------------------------------------

    @Test
    void growsFrom512MiBTo2GiBThroughTheControlFileWhileAWriterRuns() throws IOException {
        growUnderLoad("grow2g", 2 * GIB, 524288, 720 * MIB, mnt -> {
            assertEquals("ok resized to 524288 blocks\n", Control.reply(mnt, "resize 2G"), "2 GiB of 4 KiB blocks");
            return "the control file";
        });
    }

    @Test
    void resize2fsGrowsTheMountedImageOnlineWhileAWriterRuns() throws IOException {
        growUnderLoad("resize2fs", GIB, 262144, 560 * MIB, mnt -> {
            // resize2fs finds the mount by its fsname, the image's real path
            Path image = mnt.resolveSibling("disk.img");
            Tools.Result rz = Tools.run(Tools.LONG, "resize2fs", image.toRealPath().toString(), "1G");
            assertTrue(rz.ok() && rz.output().contains("on-line resizing required") && rz.output().contains("is now 262144 (4k) blocks long"),
                    rz.describe());
            return "resize2fs";
        });
    }

    /** How a test grows the mounted filesystem; returns what it used, for the log. */
    @FunctionalInterface
    private interface Grow {
        String run(Path mnt) throws IOException;
    }

    /**
     * A 512 MiB image of 4 KiB blocks grown to {@code bytes} by {@code grow} while a writer runs:
     * the writer goes on all through it and after, df shows the new size, a file of
     * {@code bigBytes} (more than the old size held) is written on top, everything reads back,
     * and the image is e2fsck-clean and mounts in the kernel with the same files.
     */
    private void growUnderLoad(String name, long bytes, long blocks, long bigBytes, Grow grow) throws IOException {
        Path dir = newDir(name);
        Path image = dir.resolve("disk.img");
        Path mnt = Files.createDirectories(dir.resolve("mnt"));
        Path kmnt = Files.createDirectories(dir.resolve("kernel"));
        try {
            Tools.mkfs(null, image, "512M", List.of("-b", "4096"));
            Map<String, String> expected = new TreeMap<>();
            StatFs grown;
            try (MountedImage m = MountedImage.mount(image, mnt, dir.resolve("server.log"))) {
                StatFs before = StatFs.of(mnt);
                assertTrue(before.totalBytes() < 512 * MIB, "before: " + before);
                try (Writer w = new Writer(mnt, dir, name, 24, 4 * MIB)) {
                    w.awaitWritten(2);
                    long atResize = w.written();
                    long t0 = System.nanoTime();
                    String how = grow.run(mnt);
                    long ms = (System.nanoTime() - t0) / 1_000_000;
                    assertTrue(w.process.isAlive(), "the writer was running all through the resize:\n" + w.output());
                    long afterResize = w.written();
                    w.awaitWritten(afterResize + 3); // and goes on writing on the grown filesystem
                    expected.putAll(w.stop());
                    System.out.printf("ResizeIT %s: the grow through %s took %d ms; the writer had written %d files of 4 MiB before it, %d when it returned, %d in all%n",
                            name, how, ms, atResize, afterResize, w.written());
                }
                assertEquals(Long.toString(bytes), Control.status(mnt).get("size"));
                grown = StatFs.of(mnt);
                assertTrue(grown.totalBytes() > bytes - 64 * MIB && grown.totalBytes() <= bytes, "df after the grow: " + grown);

                // more than the old filesystem could hold, on top of the writer's files
                expected.putAll(writeBig(mnt, "big.bin", bigBytes, "big"));
                StatFs full = StatFs.of(mnt);
                assertTrue(full.usedBytes() > bigBytes, "used after the big file: " + full);
                assertEquals(expected, sums(mnt), "the files read back through ext4j");
                grown = unmountCleanly(m, mnt);
            }
            afterUnmount(image, kmnt, blocks, expected, grown);
        } finally {
            deleteImages(dir);
        }
    }

    @Test
    void growsA1KiBBlockImage() throws IOException {
        Path dir = newDir("grow1k");
        Path image = dir.resolve("disk.img");
        Path mnt = Files.createDirectories(dir.resolve("mnt"));
        Path kmnt = Files.createDirectories(dir.resolve("kernel"));
        try {
            Tools.mkfs(null, image, "64M", List.of("-b", "1024"));
            Map<String, String> expected = new TreeMap<>();
            StatFs grown;
            try (MountedImage m = MountedImage.mount(image, mnt, dir.resolve("server.log"))) {
                expected.putAll(writeBig(mnt, "before-small", 3000, "b1"));
                expected.putAll(writeBig(mnt, "before-big", 40 * MIB, "b2"));
                assertEquals("ok resized to 307200 blocks\n", Control.reply(mnt, "resize 300M"), "300 MiB of 1 KiB blocks");
                assertEquals("314572800", Control.status(mnt).get("size"));
                grown = StatFs.of(mnt);
                assertEquals(1024, grown.blockSize());
                assertTrue(grown.totalBytes() > 260 * MIB && grown.totalBytes() <= 300 * MIB, "df after the grow: " + grown);
                // 40 MiB + 120 MiB: more than the 64 MiB filesystem held
                expected.putAll(writeBig(mnt, "after-big", 120 * MIB, "a1"));
                expected.putAll(writeBig(mnt, "after-small", 5000, "a2"));
                assertEquals(expected, sums(mnt), "the files read back through ext4j");
                grown = unmountCleanly(m, mnt);
            }
            afterUnmount(image, kmnt, 307200, expected, grown);
        } finally {
            deleteImages(dir);
        }
    }

    /**
     * Without a resize inode there are no reserved GDT blocks. 512 MiB to 8 GiB (4 to 64 groups)
     * still fits the one descriptor block (64 descriptors of 64 bytes); 8 GiB to 12 GiB needs a
     * second one, which only meta_bg can give: the filesystem is converted to meta_bg on the way.
     */
    @Test
    void growsAnImageWithoutResizeInodeTo8GiBAndOnThroughMetaBg() throws IOException {
        Path dir = newDir("metabg");
        Path image = dir.resolve("disk.img");
        Path mnt = Files.createDirectories(dir.resolve("mnt"));
        Path kmnt = Files.createDirectories(dir.resolve("kernel"));
        try {
            Tools.mkfs(null, image, "512M", List.of("-b", "4096", "-O", "^resize_inode"));
            assertFalse(Tools.superblock(image).get("Filesystem features").contains("resize_inode"));
            Map<String, String> expected = new TreeMap<>();
            StatFs grown;
            try (MountedImage m = MountedImage.mount(image, mnt, dir.resolve("server.log"))) {
                expected.putAll(writeBig(mnt, "before", 100 * MIB, "b"));
                assertEquals("ok resized to 2097152 blocks\n", Control.reply(mnt, "resize 8G"), "8 GiB of 4 KiB blocks");
                assertEquals("8589934592", Control.status(mnt).get("size"));
                StatFs at8 = StatFs.of(mnt);
                assertTrue(at8.totalBytes() > 8 * GIB - 256 * MIB && at8.totalBytes() <= 8 * GIB, "df at 8 GiB: " + at8);
                // beyond the old size: 100 MiB + 600 MiB
                expected.putAll(writeBig(mnt, "after8g", 600 * MIB, "a"));
                assertEquals(expected, sums(mnt), "the files read back through ext4j at 8 GiB");

                assertEquals("ok resized to 3145728 blocks\n", Control.reply(mnt, "resize 12G"), "12 GiB: a second descriptor block");
                assertTrue(Control.status(mnt).get("features").contains("meta_bg"), "status: " + Control.status(mnt));
                grown = StatFs.of(mnt);
                assertTrue(grown.totalBytes() > 12 * GIB - 384 * MIB && grown.totalBytes() <= 12 * GIB, "df at 12 GiB: " + grown);
                expected.putAll(writeBig(mnt, "after12g", 64 * MIB, "c"));
                assertEquals(expected, sums(mnt), "the files read back through ext4j at 12 GiB");
                grown = unmountCleanly(m, mnt);
            }
            assertTrue(Tools.superblock(image).get("Filesystem features").contains("meta_bg"), "dumpe2fs: " + Tools.superblock(image));
            afterUnmount(image, kmnt, 3145728, expected, grown);
        } finally {
            deleteImages(dir);
        }
    }

    @Test
    void aShrinkIsRefused() throws IOException {
        Path dir = newDir("shrink");
        Path image = dir.resolve("disk.img");
        Path mnt = Files.createDirectories(dir.resolve("mnt"));
        try {
            Tools.mkfs(null, image, "128M", List.of("-b", "4096"));
            Map<String, String> expected;
            try (MountedImage m = MountedImage.mount(image, mnt, dir.resolve("server.log"))) {
                expected = writeBig(mnt, "file", 20 * MIB, "s");
                StatFs before = StatFs.of(mnt);
                Tools.Result shrink = Control.send(mnt, "resize 100M");
                assertFalse(shrink.ok(), "shrinking through the control file: " + shrink.describe());
                assertTrue(shrink.stderr().contains("Invalid argument"), shrink.describe());
                assertTrue(Control.reply(mnt, "resize 100M").startsWith("error EINVAL: "), Control.reply(mnt, "resize 100M"));
                assertEquals("134217728", Control.status(mnt).get("size"));
                assertEquals(before.blocks(), StatFs.of(mnt).blocks(), "df after the refused shrink");

                Tools.Result rz = Tools.run(Tools.LONG, "resize2fs", image.toRealPath().toString(), "100M");
                assertFalse(rz.ok(), "resize2fs shrinking a mounted image: " + rz.describe());
                assertEquals("134217728", Control.status(mnt).get("size"));
                assertEquals(before.blocks(), StatFs.of(mnt).blocks(), "df after resize2fs");
                assertEquals(expected, sums(mnt));
                unmountCleanly(m, mnt);
            }
            Tools.e2fsckClean(image);
            assertEquals("32768", Tools.superblock(image).get("Block count"));
            assertEquals(128 * MIB, Files.size(image), "the image file keeps its size");
        } finally {
            deleteImages(dir);
        }
    }

    // ------------------------------------------------------------------------------------------

    /** The mount's statfs, then: no unexpected failure in the server log, and a clean unmount. */
    private static StatFs unmountCleanly(MountedImage m, Path mnt) {
        StatFs last = StatFs.of(mnt);
        assertEquals(List.of(), m.unexpectedFailures(), "server log");
        m.unmount();
        assertTrue(m.cleanlyUnmounted(), "unmount: " + m.cleanupNotes());
        return last;
    }

    /**
     * After unmounting: e2fsck clean, the superblock's block count, and the kernel's read-only
     * mount sees the same files and the same statfs size as ext4j did.
     */
    private static void afterUnmount(Path image, Path kmnt, long blocks, Map<String, String> expected, StatFs ext4j) {
        Tools.e2fsckClean(image);
        assertEquals(Long.toString(blocks), Tools.superblock(image).get("Block count"));
        try (KernelMount k = KernelMount.attempt(image, kmnt)) {
            assertTrue(k.mounted(), "the kernel cannot mount the grown image: " + k.result().describe());
            StatFs kernel = StatFs.of(kmnt);
            assertEquals(ext4j.blockSize(), kernel.blockSize(), "block size: ext4j " + ext4j + ", kernel " + kernel);
            assertEquals(ext4j.blocks(), kernel.blocks(), "statfs f_blocks: ext4j " + ext4j + ", kernel " + kernel);
            assertEquals(ext4j.free(), kernel.free(), "statfs f_bfree: ext4j " + ext4j + ", kernel " + kernel);
            assertEquals(expected, sums(kmnt), "the files the kernel reads");
        }
    }

    /** Writes a file of seeded content with resize.py; returns its name → SHA-256. */
    private static Map<String, String> writeBig(Path mnt, String name, long size, String seed) {
        Tools.Result r = Tools.python(BIG_WRITE, mnt, "resize.py", "write", name, Long.toString(size), seed);
        assertTrue(r.ok(), "writing " + name + " (" + size + " bytes): " + r.describe());
        String[] w = r.stdout().strip().split(" ");
        assertEquals("wrote", w[0], r.stdout());
        Map<String, String> out = new LinkedHashMap<>();
        out.put(w[1], w[2]);
        return out;
    }

    /** Every regular file under {@code root} (relative path, as the writers name them) → SHA-256, by sha256sum in a child process. */
    private static Map<String, String> sums(Path root) {
        Tools.Result r = Tools.bash(Tools.LONG, "cd \"$1\" && find . -type f -print0 | sort -z | xargs -0 -r sha256sum", root.toString()).requireOk();
        Map<String, String> out = new TreeMap<>();
        r.stdout().lines().forEach(l -> {
            int sp = l.indexOf("  ");
            String path = l.substring(sp + 2);
            out.put(path.startsWith("./") ? path.substring(2) : path, l.substring(0, sp));
        });
        return out;
    }

    /** Deletes the test's image files (big, if sparse); logs stay for the scratch directory's cleanup. */
    private static void deleteImages(Path dir) throws IOException {
        if (MountTable.isMountPoint(dir.resolve("mnt")) || MountTable.isMountPoint(dir.resolve("kernel"))) {
            return; // never delete under a live mount (close() failed to unmount; FuseTestBase reports it)
        }
        try (Stream<Path> s = Files.list(dir)) {
            for (Path p : s.filter(p -> p.getFileName().toString().endsWith(".img")).toList()) {
                Files.deleteIfExists(p);
            }
        }
    }
}
