package dev.ext4j.fs;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.ext4j.Errno;
import dev.ext4j.testutil.Expect;
import dev.ext4j.testutil.Images;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The in-core inode (InodeInfo) keeps the writeback state of its pages (i_size ahead of the disk,
 * delayed-allocation reservations, the map sequence), so an inode with pages must outlive the
 * inode cache's eviction: with a cache far smaller than the files written, no file is opened (so
 * no handle pins it), and each must still show its size, blocks and bytes, and reach the image.
 */
class InodePinTest {
    @TempDir
    Path work;

    /** Files written: several times what the inode cache holds (its bound is at least 64). */
    private static final int FILES = 400;
    /** An inode cache of the least size, and a flusher that does not run during the test. */
    private static final MountOptions TINY_INODE_CACHE = new MountOptions(false, 64L << 20, 16)
            .withWriteback(256L << 20, 3_600_000, 3_600_000);

    @Test
    void anInodeWithDirtyPagesOutlivesTheInodeCache() throws Exception {
        Path img = Images.mkfs(work.resolve("pin.img"), "64M", List.of("-b", "4096"), null);
        long[] inos = new long[FILES];
        InodeInfo[] infos = new InodeInfo[FILES];
        try (Ext4FileSystem fs = Ext4FileSystem.open(img, TINY_INODE_CACHE)) {
            for (int k = 0; k < FILES; k++) {
                inos[k] = fs.mknod(Ext4FileSystem.ROOT_INO, name(k), 0100644, 0, 0, 0, 0);
                fs.write(inos[k], 0, ByteBuffer.wrap(content(k)));
                infos[k] = fs.inode(inos[k]);
            }
            for (int k = 0; k < FILES; k++) {
                assertEquals(0, infos[k].inode().size(), "file " + k + ": nothing written back yet");
                FileAttributes a = fs.stat(inos[k]);
                assertEquals(content(k).length, a.size(), "file " + k + ": i_size in memory");
                assertEquals(blocks512(k), a.blocks512(), "file " + k + ": its delayed blocks");
                assertArrayEquals(content(k), read(fs, inos[k], content(k).length), "file " + k);
                assertSame(infos[k], fs.inode(inos[k]), "file " + k + ": the same in-core inode while it has pages");
            }
            fs.sync();
            for (int k = 0; k < FILES; k++) {
                assertEquals(content(k).length, fs.inode(inos[k]).inode().size(), "file " + k + ": on disk after sync");
                assertEquals(0, fs.inode(inos[k]).reservedData(), "file " + k + ": its promises were used");
            }
            // a deleted file's pages go, and its inode is unpinned with them
            for (int k = 0; k < FILES; k += 2) {
                fs.unlink(Ext4FileSystem.ROOT_INO, name(k));
                assertNull(infos[k].pages(), "file " + k + ": no pages after the delete");
            }
            for (int k = 1; k < FILES; k += 2) {
                assertNotNull(fs.inode(inos[k]).pages(), "file " + k + ": still has its pages");
                assertEquals(content(k).length, fs.stat(inos[k]).size());
                assertArrayEquals(content(k), read(fs, inos[k], content(k).length), "file " + k);
            }
        }
        Images.assertSilentlyClean(img);
        try (Ext4FileSystem fs = Ext4FileSystem.open(img, MountOptions.defaults().withReadOnly(true))) {
            for (int k = 1; k < FILES; k += 2) {
                long ino = fs.lookup(Ext4FileSystem.ROOT_INO, name(k));
                assertEquals(inos[k], ino);
                assertEquals(content(k).length, fs.stat(ino).size(), "file " + k + " after a remount");
                assertArrayEquals(content(k), read(fs, ino, content(k).length), "file " + k + " after a remount");
            }
            Expect.errno(Errno.ENOENT, () -> fs.lookup(Ext4FileSystem.ROOT_INO, name(0)));
        }
    }

    /**
     * Once a file's pages are all evicted and its data is home, its inode lets go of its page set
     * and its pin: the pinned inodes stay within what the page cache holds, however many files
     * were written. The files still read back whole, from the image.
     */
    @Test
    void inodesWhosePagesWereEvictedAreLetGo() throws Exception {
        Path img = Images.mkfs(work.resolve("idle.img"), "64M", List.of("-b", "4096"), null);
        // a page cache of 1 MiB (256 pages of 4 KiB) against FILES files of 1 to 3 pages
        MountOptions smallCache = new MountOptions(false, 64L << 20, 16).withWriteback(1L << 20, 3_600_000, 3_600_000);
        long[] inos = new long[FILES];
        try (Ext4FileSystem fs = Ext4FileSystem.open(img, smallCache)) {
            for (int k = 0; k < FILES; k++) {
                inos[k] = fs.mknod(Ext4FileSystem.ROOT_INO, name(k), 0100644, 0, 0, 0, 0);
                fs.write(inos[k], 0, ByteBuffer.wrap(content(k)));
            }
            fs.sync();
            fs.writeback().flusherRound(0, Long.MAX_VALUE); // evicts past the bound, then lets go of the idle
            int pinned = fs.sbi().inodes.pinnedCount();
            assertTrue(pinned <= 256, pinned + " inodes pinned with a page cache of 256 pages");
            for (int k = 0; k < FILES; k++) {
                assertEquals(content(k).length, fs.stat(inos[k]).size(), "file " + k);
                assertArrayEquals(content(k), read(fs, inos[k], content(k).length), "file " + k);
            }
            // written again after it was let go: a new page set, pinned again
            fs.write(inos[0], 0, ByteBuffer.wrap(content(1)));
            assertNotNull(fs.inode(inos[0]).pages());
            assertArrayEquals(content(1), read(fs, inos[0], content(1).length));
        }
        Images.assertSilentlyClean(img);
    }

    private static byte[] name(int k) {
        return ("f" + k).getBytes(StandardCharsets.US_ASCII);
    }

    /** 1 to 3 blocks and a bit of file {@code k}, its bytes telling which file and where. */
    private static byte[] content(int k) {
        byte[] b = new byte[4096 * (1 + k % 3) + 100 + k];
        for (int i = 0; i < b.length; i++) {
            b[i] = (byte) (k * 31 + i / 7);
        }
        return b;
    }

    /** The 512-byte sectors stat shows for file {@code k}'s delayed blocks. */
    private static long blocks512(int k) {
        return (content(k).length + 4095) / 4096 * 8L;
    }

    private static byte[] read(Ext4FileSystem fs, long ino, int len) throws Exception {
        byte[] back = new byte[len];
        assertEquals(len, fs.read(ino, 0, ByteBuffer.wrap(back)));
        return back;
    }
}
