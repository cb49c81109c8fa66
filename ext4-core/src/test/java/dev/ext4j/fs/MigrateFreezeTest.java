package dev.ext4j.fs;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.ext4j.Errno;
import dev.ext4j.Ext4Exception;
import dev.ext4j.format.Inode;
import dev.ext4j.testutil.Images;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Random;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** {@link Ext4FileSystem#migrate} and {@link Ext4FileSystem#freeze} on real images, checked by e2fsck. */
class MigrateFreezeTest {
    @TempDir
    Path work;

    /** An ext3 image (1 KiB blocks, no extents) with files that use direct, indirect and double indirect blocks, then extents enabled. */
    private Path ext3WithExtents(byte[] big) throws IOException {
        Path src = Files.createDirectories(work.resolve("src"));
        Files.write(src.resolve("big"), big);
        Files.writeString(src.resolve("small"), "small file\n");
        Files.createDirectories(src.resolve("dir"));
        Path img = Images.mkfs(work.resolve("ext3.img"), "32M", List.of("-t", "ext3", "-b", "1024"), src);
        Images.runOk(List.of("tune2fs", "-O", "extents", img.toString()));
        return img;
    }

    private static byte[] random(int n) {
        byte[] b = new byte[n];
        new Random(n).nextBytes(b);
        return b;
    }

    private static byte[] readAll(Ext4FileSystem fs, long ino) throws Ext4Exception {
        byte[] out = new byte[(int) fs.stat(ino).size()];
        fs.read(ino, 0, ByteBuffer.wrap(out));
        return out;
    }

    @Test
    void migrateKeepsContentAndLeavesACleanImage() throws Exception {
        byte[] big = random(3 << 20); // 3 MiB of 1 KiB blocks: direct, indirect and double indirect
        Path img = ext3WithExtents(big);
        long blocksBefore;
        try (Ext4FileSystem fs = Ext4FileSystem.open(img, MountOptions.defaults())) {
            long ino = fs.resolve("/big".getBytes(StandardCharsets.UTF_8));
            blocksBefore = fs.stat(ino).blocks512();
            fs.migrate(ino);
            assertTrue(fs.inode(ino).inode().hasFlag(Inode.EXTENTS_FL));
            assertArrayEquals(big, readAll(fs, ino));
            assertTrue(fs.stat(ino).blocks512() < blocksBefore, "the indirect blocks are gone from i_blocks");
            Ext4Exception again = assertThrows(Ext4Exception.class, () -> fs.migrate(ino));
            assertEquals(Errno.EINVAL, again.errno(), "an extent-mapped file is refused, as by the kernel");
            fs.migrate(fs.resolve("/small".getBytes(StandardCharsets.UTF_8)));
            fs.migrate(fs.resolve("/dir".getBytes(StandardCharsets.UTF_8)));
            fs.write(ino, big.length, ByteBuffer.wrap(new byte[] {1, 2, 3}));
        }
        Images.assertClean(img);
        assertTrue(Images.stat(img, "/big").contains("EXTENTS:"), Images.stat(img, "/big"));
    }

    @Test
    void blocksMappedDuringMigrationGiveEagainAndChangeNothing() throws Exception {
        Path img = ext3WithExtents(random(200 << 10));
        try (Ext4FileSystem fs = Ext4FileSystem.open(img, MountOptions.defaults())) {
            long ino = fs.resolve("/big".getBytes(StandardCharsets.UTF_8));
            fs.truncate(ino, 1 << 20); // a hole from 200 KiB to 1 MiB
            long free = fs.statfs(false).freeBlocks();
            long sectors = fs.stat(ino).blocks512();
            // the write lands in the page cache; the sync's writeback maps it into the hole
            Migrate m = fs.sbi().migration(() -> {
                fs.write(ino, 500 << 10, ByteBuffer.wrap(new byte[] {7}));
                fs.sync();
            }, null);
            Ext4Exception e = assertThrows(Ext4Exception.class, () -> m.run(ino));
            assertEquals(Errno.EAGAIN, e.errno());
            assertFalse(fs.inode(ino).inode().hasFlag(Inode.EXTENTS_FL));
            long taken = (fs.stat(ino).blocks512() - sectors) / 2; // 1 KiB blocks
            assertEquals(free - taken, fs.statfs(false).freeBlocks(), "only the write's blocks are allocated; the new tree's blocks are back");
            fs.migrate(ino);
            byte[] one = new byte[1];
            fs.read(ino, 500 << 10, ByteBuffer.wrap(one));
            assertEquals(7, one[0]);
        }
        Images.assertClean(img);
    }

    @Test
    void freezeHoldsWritersAndLeavesTheImageClean() throws Exception {
        Path img = Images.mkfs(work.resolve("f.img"), "32M", List.of("-b", "4096"), null);
        Path copy = work.resolve("copy.img");
        try (Ext4FileSystem fs = Ext4FileSystem.open(img, MountOptions.defaults())) {
            long ino = fs.mknod(Ext4FileSystem.ROOT_INO, "a".getBytes(StandardCharsets.UTF_8), 0100644, 0, 0, 0, 0);
            fs.write(ino, 0, ByteBuffer.wrap("before\n".getBytes(StandardCharsets.UTF_8)));
            fs.freeze();
            assertTrue(fs.isFrozen());
            assertEquals(Errno.EBUSY, assertThrows(Ext4Exception.class, fs::freeze).errno());
            CompletableFuture<Integer> writer = CompletableFuture.supplyAsync(() -> {
                try {
                    return fs.write(ino, 7, ByteBuffer.wrap("after\n".getBytes(StandardCharsets.UTF_8)));
                } catch (Ext4Exception e) {
                    throw new IllegalStateException(e);
                }
            });
            assertThrows(TimeoutException.class, () -> writer.get(300, TimeUnit.MILLISECONDS), "the writer waits while frozen");
            assertEquals("before\n", new String(readAll(fs, ino), StandardCharsets.UTF_8), "reads go on");
            Files.copy(img, copy);
            fs.thaw();
            assertEquals(6, writer.get(10, TimeUnit.SECONDS));
            assertEquals(Errno.EINVAL, assertThrows(Ext4Exception.class, fs::thaw).errno());
            fs.freeze(); // and close() of a frozen filesystem thaws it first
        }
        Images.assertClean(copy);
        Images.assertClean(img);
        assertTrue(Images.debugfsRead(copy, "cat /a").contains("before"));
    }
}
