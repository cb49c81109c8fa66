package dev.ext4j.fs;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.ext4j.testutil.Images;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Access times in the core: relatime moves atime on the first read after a change and not on the
 * next; lazytime keeps the new atime in memory (stat shows it, the inode record does not) until
 * the inode is written for another reason or a sync, and an unmount writes it. ErrnoIT compares
 * the relatime, strictatime, noatime and nodiratime rules with the kernel.
 */
class AtimeTest {
    @TempDir
    Path work;

    private static byte[] name(String s) {
        return s.getBytes(StandardCharsets.UTF_8);
    }

    private static long recorded(Ext4FileSystem fs, long ino) throws Exception {
        return fs.sbi().inode(ino).inode().atimeSeconds();
    }

    @Test
    void lazytimeKeepsTheAccessTimeInMemoryUntilTheInodeIsWritten() throws Exception {
        Path img = Images.mkfs(work.resolve("lazy.img"), "16M", List.of("-b", "4096"), null);
        long ino;
        long read;
        try (Ext4FileSystem fs = Ext4FileSystem.open(img, MountOptions.defaults())) {
            fs.setAtime(AtimeMode.RELATIME, false, true);
            ino = fs.mknod(Ext4FileSystem.ROOT_INO, name("f"), 0100644, 0, 0, 0, 0);
            fs.write(ino, 0, ByteBuffer.wrap(name("data")));
            fs.setAttributes(ino, null, null, null, new Ext4FileSystem.Time(1000, 0), new Ext4FileSystem.Time(2000, 0));
            fs.read(ino, 0, ByteBuffer.allocate(16));
            read = fs.stat(ino).atimeSeconds();
            assertTrue(read > 2000, "stat shows the access: " + read);
            assertEquals(1000, recorded(fs, ino), "the inode record keeps the old atime");
            fs.read(ino, 0, ByteBuffer.allocate(16));
            assertEquals(read, fs.stat(ino).atimeSeconds(), "relatime: the second read moves nothing");

            fs.setAttributes(ino, 0600, null, null, null, null);
            assertEquals(read, recorded(fs, ino), "the next write of the inode takes the atime along");

            long other = fs.mknod(Ext4FileSystem.ROOT_INO, name("g"), 0100644, 0, 0, 0, 0);
            fs.setAttributes(other, null, null, null, new Ext4FileSystem.Time(1000, 0), new Ext4FileSystem.Time(2000, 0));
            fs.read(other, 0, ByteBuffer.allocate(16));
            assertEquals(1000, recorded(fs, other));
            fs.sync();
            assertNotEquals(1000, recorded(fs, other), "a sync writes it");

            fs.setAttributes(other, null, null, null, new Ext4FileSystem.Time(1000, 0), new Ext4FileSystem.Time(2000, 0));
            fs.read(other, 0, ByteBuffer.allocate(16));
            assertEquals(1000, recorded(fs, other));
        }
        Images.assertClean(img);
        try (Ext4FileSystem fs = Ext4FileSystem.open(img, MountOptions.defaults().withReadOnly(true))) {
            assertNotEquals(1000, fs.stat(fs.lookup(Ext4FileSystem.ROOT_INO, name("g"))).atimeSeconds(), "the unmount wrote it");
            assertEquals(read, fs.stat(ino).atimeSeconds());
        }
    }

    @Test
    void noAccessTimeMovesOnAReadOnlyMountOrWithNoatime() throws Exception {
        Path img = Images.mkfs(work.resolve("ro.img"), "16M", List.of("-b", "4096"), null);
        long ino;
        try (Ext4FileSystem fs = Ext4FileSystem.open(img, MountOptions.defaults())) {
            ino = fs.mknod(Ext4FileSystem.ROOT_INO, name("f"), 0100644, 0, 0, 0, 0);
            fs.setAttributes(ino, null, null, null, new Ext4FileSystem.Time(1000, 0), new Ext4FileSystem.Time(2000, 0));
            fs.setAtime(AtimeMode.NOATIME, false, false);
            fs.read(ino, 0, ByteBuffer.allocate(16));
            assertEquals(1000, fs.stat(ino).atimeSeconds(), "noatime");
        }
        String sha = Images.sha256(img);
        try (Ext4FileSystem fs = Ext4FileSystem.open(img, MountOptions.defaults().withReadOnly(true))) {
            fs.read(ino, 0, ByteBuffer.allocate(16));
            assertEquals(1000, fs.stat(ino).atimeSeconds(), "read-only");
        }
        assertEquals(sha, Images.sha256(img), "a read-only mount wrote nothing");
        Images.assertClean(img);
    }
}
