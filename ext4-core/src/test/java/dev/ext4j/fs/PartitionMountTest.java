package dev.ext4j.fs;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.ext4j.Errno;
import dev.ext4j.Ext4Exception;
import dev.ext4j.format.Inode;
import dev.ext4j.io.Placement;
import dev.ext4j.testutil.Expect;
import dev.ext4j.testutil.Images;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Filesystems inside partitions of a disk image (sfdisk, then mkfs.ext4 -E offset=): opened by
 * partition number and by byte offset, written, checked by e2fsck on the partition's bytes; the
 * bytes outside the partition never change, a filesystem larger than its partition is refused,
 * and an online resize stops at the partition's end.
 */
class PartitionMountTest {
    private static final long MIB = 1 << 20;
    /** Partition 1: 4 MiB at 1 MiB holding a 2 MiB filesystem; 2: 1 MiB of 0x5a; 3: 2 MiB, a full filesystem. */
    private static final String GPT = "label: gpt\\nstart=2048, size=8192, type=L\\nsize=2048, type=U\\nsize=4096, type=L\\n";

    @TempDir
    Path work;

    private Path disk(String label) throws IOException {
        Path img = work.resolve("disk.img");
        Images.runOk(List.of("truncate", "-s", "9M", img.toString()));
        Images.runOk(List.of("bash", "-c", "printf '" + label + "' | sfdisk -q \"$1\"", "sfdisk", img.toString()));
        Images.runOk(List.of("mkfs.ext4", "-q", "-F", "-b", "1024", "-E", "offset=" + MIB, img.toString(), "2048"));
        byte[] fill = new byte[(int) MIB];
        Arrays.fill(fill, (byte) 0x5a);
        Images.writeAt(img, 5 * MIB, fill);
        Images.runOk(List.of("mkfs.ext4", "-q", "-F", "-b", "1024", "-E", "offset=" + 6 * MIB, img.toString(), "2048"));
        return img;
    }

    private static byte[] region(Path img, long from, long to) {
        return Images.readAt(img, from, (int) (to - from));
    }

    /** The partition's bytes as an image of their own, for e2fsck. */
    private Path extract(Path img, long start, long size) throws IOException {
        Path part = work.resolve("part-" + start + ".img");
        Files.write(part, Images.readAt(img, start, (int) size));
        return part;
    }

    private static Ext4FileSystem open(Path img, Placement where) throws Ext4Exception {
        Ext4FileSystem fs = Ext4FileSystem.open(img, MountOptions.defaults().withPlacement(where));
        assertFalse(fs.isReadOnly(), "read-write: " + fs.messages());
        return fs;
    }

    private static void writeFile(Ext4FileSystem fs, String name, byte[] data) throws Ext4Exception {
        long ino = fs.mknod(Ext4FileSystem.ROOT_INO, name.getBytes(StandardCharsets.UTF_8), Inode.S_IFREG | 0644, 0, 0, 0, 0);
        assertEquals(data.length, fs.write(ino, 0, ByteBuffer.wrap(data)));
    }

    private static byte[] readFile(Ext4FileSystem fs, String name, int len) throws Ext4Exception {
        long ino = fs.lookup(Ext4FileSystem.ROOT_INO, name.getBytes(StandardCharsets.UTF_8));
        ByteBuffer b = ByteBuffer.allocate(len);
        fs.read(ino, 0, b);
        return b.array();
    }

    @Test
    void eachPartitionOpensByNumberAndByOffsetAndNothingOutsideChanges() throws Exception {
        Path img = disk(GPT);
        byte[] data = new byte[300_000];
        new Random(1).nextBytes(data);
        for (Placement where : List.of(Placement.ofPartition(3), Placement.atOffset(6 * MIB), Placement.ofPartition(1))) {
            long start = where.partition() == 1 ? MIB : 6 * MIB;
            long end = where.partition() == 1 ? 5 * MIB : 8 * MIB;
            byte[] before = region(img, 0, start);
            byte[] after = region(img, end, Files.size(img));
            String name = "f" + where.partition() + "-" + where.offset();
            try (Ext4FileSystem fs = open(img, where)) {
                writeFile(fs, name, data);
            }
            try (Ext4FileSystem fs = open(img, where)) {
                assertArrayEquals(data, readFile(fs, name, data.length));
            }
            assertArrayEquals(before, region(img, 0, start), "bytes before " + where + " changed");
            assertArrayEquals(after, region(img, end, Files.size(img)), "bytes after " + where + " changed");
            Images.assertClean(extract(img, start, end - start));
        }
    }

    @Test
    void onlineResizeStopsAtThePartitionsEnd() throws Exception {
        Path img = disk(GPT);
        byte[] after = region(img, 5 * MIB, Files.size(img));
        for (Placement where : List.of(Placement.ofPartition(1), Placement.atOffset(MIB))) {
            try (Ext4FileSystem fs = open(img, where)) {
                Ext4Exception e = Expect.errno(Errno.ENOSPC, () -> fs.resize(4097));
                assertTrue(e.getMessage().contains("4194304 bytes") && e.getMessage().contains(where.partition() == 1
                        ? "partition 1" : "offset " + MIB), e.getMessage());
                assertEquals(2048, fs.superblock().blocksCount(), "nothing grew");
            }
        }
        try (Ext4FileSystem fs = open(img, Placement.ofPartition(1))) {
            fs.resize(4096);
            assertEquals(4096, fs.superblock().blocksCount());
            writeFile(fs, "big", new byte[3 << 20]);
        }
        assertArrayEquals(after, region(img, 5 * MIB, Files.size(img)), "bytes after partition 1 changed");
        Images.assertClean(extract(img, MIB, 4 * MIB));
    }

    @Test
    void aFilesystemLargerThanItsPartitionIsRefused() throws Exception {
        Path img = disk(GPT);
        // partition 3 shrunk under its filesystem
        Images.runOk(List.of("bash", "-c", "printf 'label: gpt\\nstart=2048, size=8192, type=L\\nsize=2048, type=U\\nsize=2048, type=L\\n'"
                + " | sfdisk -q --wipe never --wipe-partitions never \"$1\"", "sfdisk", img.toString()));
        byte[] before = Files.readAllBytes(img);
        Ext4Exception e = Expect.errno(Errno.EINVAL, () -> Ext4FileSystem.open(img, MountOptions.defaults().withPlacement(Placement.ofPartition(3))));
        assertTrue(e.getMessage().contains("(2048 blocks of 1024 bytes, 2097152 bytes) is larger than partition 3 (1048576 bytes"),
                e.getMessage());
        e = Expect.errno(Errno.EINVAL, () -> Ext4FileSystem.open(img, MountOptions.defaults().withPlacement(Placement.ofPartition(4))));
        assertTrue(e.getMessage().contains("no partition 4"), e.getMessage());
        e = Expect.errno(Errno.EUCLEAN, () -> Ext4FileSystem.open(img, MountOptions.defaults().withPlacement(Placement.ofPartition(2))));
        assertTrue(e.getMessage().contains("magic"), e.getMessage());
        assertArrayEquals(before, Files.readAllBytes(img), "a refused mount wrote to the image");
    }
}
