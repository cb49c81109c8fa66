package dev.ext4j.it;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.TreeMap;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * Disk images with a partition table, as VMs and SD cards have: GPT and MBR images made by sfdisk
 * with two ext4 partitions (in the MBR, one of them a logical partition in an extended one) and a
 * FAT one. Each ext4 partition is mounted read-write by {@code -o partition=N} and by
 * {@code -o offset=BYTES}, written, unmounted; then the partition's bytes are e2fsck-clean, the
 * kernel (a loop mount of the partition's bytes) reads the files back, and every byte outside the
 * partition is as it was. {@code ext4j probe} names the partitions and their filesystems; an online
 * resize grows within its partition and stops at its end with ENOSPC.
 */
class PartitionedImageIT extends FuseTestBase {
    private static final long MIB = 1L << 20;
    private static final String BASIC_DATA = "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7";

    /** A partition as sfdisk -d lists it, in sectors. */
    record Part(int number, long start, long sectors) {
        long startBytes() {
            return start * 512;
        }

        long endBytes() {
            return (start + sectors) * 512;
        }
    }

    /** A 16 MiB image partitioned by {@code script}; the partitions as sfdisk reports them. */
    private static Map<Integer, Part> partition(Path img, String script) {
        Tools.run(Tools.SHORT, "truncate", "-s", "16M", img.toString()).requireOk();
        Tools.bash(Tools.SHORT, "printf '" + script + "' | sfdisk -q \"$1\"", img.toString()).requireOk();
        String dump = Tools.run(Tools.SHORT, "sfdisk", "-d", img.toString()).requireOk().stdout();
        Map<Integer, Part> parts = new TreeMap<>();
        Matcher m = Pattern.compile("(?m)^\\S+?(\\d+) : start=\\s*(\\d+), size=\\s*(\\d+)").matcher(dump);
        while (m.find()) {
            int n = Integer.parseInt(m.group(1));
            parts.put(n, new Part(n, Long.parseLong(m.group(2)), Long.parseLong(m.group(3))));
        }
        return parts;
    }

    /** The table, ext4 (labelled pN) in {@code ext4}, FAT in partition 2. */
    private static Map<Integer, Part> disk(Path img, String table, int... ext4) {
        String script = table.equals("gpt")
                ? "label: gpt\\nstart=2048, size=8192, type=L, name=\"one\"\\nsize=8192, type=" + BASIC_DATA + "\\nsize=8192, type=L\\n"
                : "label: dos\\nstart=2048, size=8192, type=83\\nsize=8192, type=c\\ntype=5\\nsize=8192, type=83\\n";
        Map<Integer, Part> parts = partition(img, script);
        for (int n : ext4) {
            Part p = parts.get(n);
            Tools.run(Tools.LONG, "mkfs.ext4", "-q", "-F", "-L", "p" + n, "-E", "offset=" + p.startBytes(), img.toString(),
                    (p.sectors() / 2) + "k").requireOk();
        }
        Path fat = img.resolveSibling(img.getFileName() + ".fat");
        Tools.run(Tools.SHORT, "mkfs.vfat", "-C", "-n", "FATPART", fat.toString(), String.valueOf(parts.get(2).sectors() / 2)).requireOk();
        Tools.run(Tools.SHORT, "dd", "if=" + fat, "of=" + img, "bs=512", "seek=" + parts.get(2).start(), "conv=notrunc", "status=none")
                .requireOk();
        return parts;
    }

    private static byte[] sha256(Path img, long from, long to) throws IOException {
        try (RandomAccessFile f = new RandomAccessFile(img.toFile(), "r")) {
            MessageDigest md = MessageDigest.getInstance("SHA-256");
            byte[] buf = new byte[1 << 16];
            f.seek(from);
            for (long left = to - from; left > 0; ) {
                int n = f.read(buf, 0, (int) Math.min(buf.length, left));
                md.update(buf, 0, n);
                left -= n;
            }
            return md.digest();
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }

    /** The partition's bytes as an image of their own (dd), for e2fsck and the kernel. */
    private static Path extract(Path img, Part p) {
        Path out = img.resolveSibling(img.getFileName() + ".p" + p.number());
        Tools.run(Tools.SHORT, "dd", "if=" + img, "of=" + out, "bs=512", "skip=" + p.start(), "count=" + p.sectors(), "status=none")
                .requireOk();
        return out;
    }

    /** The ext4 partitions: GPT 1 and 3; MBR 1 and the logical 5 inside extended 3. */
    @ParameterizedTest
    @ValueSource(strings = {"gpt", "dos"})
    void eachExt4PartitionMountsByNumberAndByOffset(String table) throws IOException {
        Path img = scratch.resolve(table + ".img");
        int second = table.equals("gpt") ? 3 : 5;
        Map<Integer, Part> parts = disk(img, table, 1, second);
        byte[] data = new byte[200_000];
        new Random(table.hashCode()).nextBytes(data);

        String probe = Tools.run(Tools.SHORT, MountedImage.cli("probe", img.toString())).requireOk().stdout();
        assertTrue(probe.contains(table.equals("gpt") ? "GPT partition table" : "MBR partition table"), probe);
        for (int n : parts.keySet()) {
            Part p = parts.get(n);
            assertTrue(Pattern.compile("(?m)^\\s+" + n + "\\s+" + p.startBytes() + "\\s+" + p.start() + "\\s+" + p.sectors() * 512 + "\\s")
                    .matcher(probe).find(), "partition " + n + " at " + p + " in\n" + probe);
        }
        for (int n : List.of(1, second)) {
            assertTrue(Pattern.compile("(?m)^\\s+" + n + "\\s.*ext4 label=\"p" + n + "\"").matcher(probe).find(), probe);
        }
        assertTrue(probe.contains(table.equals("gpt") ? "Microsoft basic data" : "W95 FAT32 (LBA)"), probe);
        assertTrue(probe.contains(table.equals("gpt") ? "Linux filesystem \"one\"" : "Extended"), probe);

        for (int n : List.of(1, second)) {
            Part p = parts.get(n);
            for (String how : List.of("partition=" + n, "offset=" + p.startBytes())) {
                byte[] before = sha256(img, 0, p.startBytes());
                byte[] after = sha256(img, p.endBytes(), Files.size(img));
                Path mnt = newDir("mnt-" + table + "-" + n);
                String name = how.replace('=', '-');
                try (MountedImage m = MountedImage.mount(img, mnt, scratch.resolve(table + n + ".log"), how)) {
                    Files.createDirectories(mnt.resolve("dir"));
                    Files.write(mnt.resolve("dir/" + name), data);
                }
                assertArrayEquals(before, sha256(img, 0, p.startBytes()), how + ": bytes before the partition changed");
                assertArrayEquals(after, sha256(img, p.endBytes(), Files.size(img)), how + ": bytes after the partition changed");
                Path part = extract(img, p);
                Tools.e2fsckClean(part);
                Path kmnt = newDir("kernel-" + table + "-" + n);
                try (KernelMount k = KernelMount.attempt(part, kmnt)) {
                    assertTrue(k.mounted(), k.result().describe());
                    assertArrayEquals(data, Files.readAllBytes(kmnt.resolve("dir/" + name)), how + " as the kernel reads it");
                }
                Files.delete(part);
            }
        }
        // the FAT partition is untouched and still FAT
        Tools.run(Tools.SHORT, "fsck.vfat", "-n", extract(img, parts.get(2)).toString()).requireOk();
    }

    @Test
    void onlineResizeGrowsWithinThePartitionAndStopsAtItsEnd() throws IOException {
        Path img = scratch.resolve("resize.img");
        Map<Integer, Part> parts = partition(img, "label: gpt\\nstart=2048, size=8192, type=L\\nsize=8192, type=L\\n");
        Part p1 = parts.get(1);
        // a 2 MiB filesystem in the 4 MiB partition
        Tools.run(Tools.LONG, "mkfs.ext4", "-q", "-F", "-b", "1024", "-E", "offset=" + p1.startBytes(), img.toString(), "2048k").requireOk();
        byte[] after = sha256(img, p1.endBytes(), Files.size(img));
        long imageSize = Files.size(img);
        Path mnt = newDir("mnt-resize");
        Path log = scratch.resolve("resize.log");
        try (MountedImage m = MountedImage.mount(img, mnt, log, "partition=1")) {
            String reply = Control.reply(mnt, "resize 5M");
            assertTrue(reply.startsWith("error ENOSPC") && reply.contains("partition 1 (4194304 bytes"), reply);
            reply = Control.reply(mnt, "resize 4M");
            assertEquals("ok resized to 4096 blocks", reply.strip());
            Files.write(mnt.resolve("big"), new byte[2 << 20]); // more than the 2 MiB filesystem had free
            assertEquals("4194304", Control.status(mnt).get("size"));
        }
        assertTrue(Files.readString(log).contains("holds at most 4096 blocks (4194304 bytes)"), Files.readString(log));
        assertEquals(imageSize, Files.size(img), "the image file did not grow");
        assertArrayEquals(after, sha256(img, p1.endBytes(), Files.size(img)), "bytes after partition 1 changed");
        Tools.e2fsckClean(extract(img, p1));
    }

    @Test
    void refusalsNameThePartition() throws IOException {
        Path img = scratch.resolve("refuse.img");
        Map<Integer, Part> parts = disk(img, "dos", 1);
        Path mnt = newDir("mnt-refuse");
        for (String[] c : new String[][] {
                {"partition=3", "partition 3 is an extended partition"},
                {"partition=7", "no partition 7 in the MBR table (partitions: 1, 2, 3, 5)"},
                {"partition=2", "not an ext2/3/4 filesystem"}}) {
            try (MountedImage m = MountedImage.attempt(img, mnt, scratch.resolve("refuse.log"), null, c[0])) {
                assertFalse(m.mountResult().ok(), c[0] + " mounted");
                assertTrue(m.mountResult().stderr().contains(c[1]) || m.log().contains(c[1]), c[0] + ": " + m.mountResult().describe());
            }
        }
        String probe = Tools.run(Tools.SHORT, MountedImage.cli("probe", extract(img, parts.get(1)).toString())).requireOk().stdout();
        assertTrue(probe.contains("no partition table; a bare filesystem image: ext4 label=\"p1\""), probe);
    }
}
