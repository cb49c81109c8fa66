package dev.ext4j.fs;

import static dev.ext4j.testutil.FsData.name;
import static dev.ext4j.testutil.FsData.pattern;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.ext4j.Errno;
import dev.ext4j.Ext4Exception;
import dev.ext4j.testutil.Expect;
import dev.ext4j.testutil.Images;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The orphan list: open files whose last name went, and truncates, are on the s_last_orphan chain
 * while they are pending, so that a crash leaves work the next mount finishes. A crash is simulated
 * by copying the image file while the filesystem is still mounted (after a flush, as the flusher
 * would have done), and mounting the copy.
 */
class OrphanTest {
    @TempDir
    Path work;

    private Path mkfs(String name) {
        return Images.mkfs(work.resolve(name), "64M", List.of("-b", "4096"), null);
    }

    private static long createWith(Ext4FileSystem fs, String n, byte[] data) throws Ext4Exception {
        long ino = fs.mknod(Ext4FileSystem.ROOT_INO, name(n), 0100644, 0, 0, 0, 0);
        assertEquals(data.length, fs.write(ino, 0, ByteBuffer.wrap(data)));
        return ino;
    }

    /**
     * Unjournaled: these tests read the orphan list at its home location while mounted, where a
     * journaling mount keeps it in the log until a checkpoint (JournalCrashTest crashes with orphans
     * pending on journaled mounts).
     */
    private static final MountOptions OPTIONS = MountOptions.defaults().withJournal(false);

    private static long firstOrphan(Path img) {
        String v = Images.dumpe2fsHeader(img).get("First orphan inode");
        return v == null ? 0 : Long.parseLong(v.trim());
    }

    private static Path crashCopy(Ext4FileSystem fs, Path img, Path to) throws Exception {
        fs.sync();
        return Files.copy(img, to);
    }

    @Test
    void anOpenUnlinkedFileKeepsItsDataUntilTheLastRelease() throws Exception {
        Path img = mkfs("open.img");
        byte[] data = pattern(1 << 20, 7);
        try (Ext4FileSystem fs = Ext4FileSystem.open(img, OPTIONS)) {
            long free0 = fs.statfs(false).freeBlocks();
            long ino = createWith(fs, "f", data);
            fs.open(ino);
            fs.unlink(Ext4FileSystem.ROOT_INO, name("f"));
            assertEquals(0, fs.stat(ino).nlink());
            Expect.errno(Errno.ENOENT, () -> fs.lookup(Ext4FileSystem.ROOT_INO, name("f")));
            fs.sync();
            assertEquals(ino, firstOrphan(img), "the unlinked open file heads the orphan list");
            long held = fs.statfs(false).freeBlocks();
            assertTrue(held <= free0 - 256, "its blocks are still in use: " + held + " vs " + free0);

            byte[] back = new byte[data.length];
            assertEquals(data.length, fs.read(ino, 0, ByteBuffer.wrap(back)));
            assertArrayEquals(data, back, "the data stays readable through the open handle");
            assertEquals(100, fs.write(ino, data.length, ByteBuffer.wrap(pattern(100, 3))), "and writable");

            fs.release(ino);
            assertEquals(free0, fs.statfs(false).freeBlocks(), "the last release frees the blocks");
            fs.sync();
            assertEquals(0, firstOrphan(img), "and takes it off the orphan list");
        }
        Images.assertClean(img);
    }

    /**
     * A kernel lookup reference (FUSE's nlookup) keeps an unlinked inode as an open handle does:
     * it is an orphan, readable by number, until FORGET drops the last lookup; a handle closed
     * meanwhile does not free it, and neither does a FORGET of fewer lookups than were taken.
     */
    @Test
    void aLookupTheKernelHoldsKeepsAnUnlinkedInodeUntilForget() throws Exception {
        Path img = mkfs("lookup.img");
        byte[] data = pattern(300_000, 5);
        try (Ext4FileSystem fs = Ext4FileSystem.open(img, OPTIONS)) {
            long free0 = fs.statfs(false).freeBlocks();
            long ino = createWith(fs, "f", data);
            fs.remember(ino);
            fs.remember(ino);
            fs.open(ino);
            fs.unlink(Ext4FileSystem.ROOT_INO, name("f"));
            fs.release(ino);
            assertTrue(fs.isReferenced(ino), "two lookups still reference it");
            fs.sync();
            assertEquals(ino, firstOrphan(img), "the unlinked inode the kernel still knows is an orphan");
            byte[] back = new byte[data.length];
            assertEquals(data.length, fs.read(ino, 0, ByteBuffer.wrap(back)));
            assertArrayEquals(data, back, "and readable by number");

            fs.forget(ino, 1);
            assertTrue(fs.statfs(false).freeBlocks() < free0, "one lookup left: not freed");
            fs.forget(ino, 1);
            assertFalse(fs.isReferenced(ino));
            assertEquals(free0, fs.statfs(false).freeBlocks(), "the FORGET of the last lookup frees it");
            fs.sync();
            assertEquals(0, firstOrphan(img), "and takes it off the orphan list");

            long kept = createWith(fs, "kept", data);
            fs.remember(kept);
            fs.forget(kept, 5);
            assertEquals(data.length, fs.stat(fs.lookup(Ext4FileSystem.ROOT_INO, name("kept"))).size(),
                    "forgetting a linked inode changes nothing on disk");
        }
        Images.assertClean(img);
    }

    @Test
    void aCrashLeavesOrphansThatTheNextMountDeletes() throws Exception {
        Path img = mkfs("crash.img");
        Path crashed = work.resolve("crashed.img");
        long freeBefore;
        try (Ext4FileSystem fs = Ext4FileSystem.open(img, OPTIONS)) {
            freeBefore = fs.statfs(false).freeBlocks();
            createWith(fs, "keep", pattern(5000, 1));
            long[] inos = new long[4];
            for (int i = 0; i < inos.length; i++) {
                inos[i] = createWith(fs, "gone" + i, pattern(200_000 + i * 4096, i));
                fs.open(inos[i]);
                fs.unlink(Ext4FileSystem.ROOT_INO, name("gone" + i));
            }
            // one released from the middle of the chain, one from its head
            fs.release(inos[1]);
            fs.release(inos[3]);
            crashCopy(fs, img, crashed);
            assertEquals(inos[2], firstOrphan(crashed), "the chain left behind starts at the newest pending orphan");
        }
        assertFalse(Images.fsckCheck(crashed).exitCode() == 0, "before the next mount, e2fsck sees the orphans' blocks in use");

        try (Ext4FileSystem fs = Ext4FileSystem.open(crashed, OPTIONS)) {
            assertEquals(freeBefore - 2, fs.statfs(false).freeBlocks(), "only /keep (2 blocks) is left in use");
            byte[] back = new byte[5000];
            fs.read(fs.lookup(Ext4FileSystem.ROOT_INO, name("keep")), 0, ByteBuffer.wrap(back));
            assertArrayEquals(pattern(5000, 1), back);
        }
        assertEquals(0, firstOrphan(crashed));
        Images.assertClean(crashed);
        Images.assertClean(img);
    }

    @Test
    void anInterruptedTruncateIsFinishedAtMount() throws Exception {
        Path src = Files.createDirectories(work.resolve("src"));
        Files.write(src.resolve("f"), pattern(40960, 5));
        Path img = Images.mkfs(work.resolve("trunc.img"), "64M", List.of("-b", "4096"), src);
        long ino = Images.inodeOf(img, "/f");
        // a truncate to one block that stopped after its first step: size cut, blocks still mapped
        Images.debugfs(img, "sif /f size 4096", "ssv last_orphan " + ino);
        long freeBefore = Long.parseLong(Images.dumpe2fsHeader(img).get("Free blocks").trim());
        try (Ext4FileSystem fs = Ext4FileSystem.open(img, OPTIONS)) {
            assertEquals(freeBefore + 9, fs.statfs(false).freeBlocks(), "the nine blocks past EOF were freed");
            byte[] back = new byte[4096];
            assertEquals(4096, fs.read(ino, 0, ByteBuffer.wrap(back)));
            assertArrayEquals(Arrays.copyOf(pattern(40960, 5), 4096), back);
            assertEquals(1, fs.stat(ino).nlink());
        }
        assertEquals(0, firstOrphan(img));
        Images.assertClean(img);
    }

    @Test
    void aTruncateInProgressIsOnTheListAndLeavesItAfter() throws Exception {
        Path img = mkfs("shrink.img");
        try (Ext4FileSystem fs = Ext4FileSystem.open(img, OPTIONS)) {
            long a = createWith(fs, "a", pattern(300_000, 2));
            long b = createWith(fs, "b", pattern(300_000, 3));
            fs.open(a);
            fs.unlink(Ext4FileSystem.ROOT_INO, name("a")); // a pending orphan ahead of the truncate
            fs.truncate(b, 1000);
            fs.sync();
            assertEquals(a, firstOrphan(img), "the truncate left the list as it found it");
            assertEquals(1000, fs.stat(b).size());
            fs.release(a);
        }
        Images.assertClean(img);
        assertEquals(0, firstOrphan(img));
    }

    /**
     * A truncate of a file whose last name is gone while it is open (ftruncate on its handle, or a
     * truncate by a path looked up just before the unlink) must leave it on the orphan list, as
     * ext4_setattr() deletes it from the list only while it has links: taken off, the last release
     * no longer freed it, and the inode stayed in use with no name and a stale chain link (found
     * by bench/fsstress).
     */
    @Test
    void aTruncateOfAnOpenUnlinkedFileLeavesItForTheLastRelease() throws Exception {
        Path img = mkfs("unlinked-truncate.img");
        try (Ext4FileSystem fs = Ext4FileSystem.open(img, OPTIONS)) {
            long free0 = fs.statfs(false).freeBlocks();
            long freeInodes0 = fs.statfs(false).freeInodes();
            long a = createWith(fs, "a", pattern(300_000, 4));
            fs.sync(); // written back: i_size on disk is what the truncate shrinks
            fs.open(a);
            fs.unlink(Ext4FileSystem.ROOT_INO, name("a"));
            fs.truncate(a, 75_000);
            fs.sync();
            assertEquals(a, firstOrphan(img), "the truncate took the unlinked file off the orphan list");
            fs.release(a);
            assertEquals(free0, fs.statfs(false).freeBlocks(), "the last release frees the blocks");
            assertEquals(freeInodes0, fs.statfs(false).freeInodes(), "and the inode");
        }
        Images.assertClean(img);
        assertEquals(0, firstOrphan(img));
    }

    @Test
    void aLoopingChainIsCutWithoutHanging() throws Exception {
        Path src = Files.createDirectories(work.resolve("src2"));
        Files.write(src.resolve("x"), pattern(8192, 1));
        Path img = Images.mkfs(work.resolve("loop.img"), "64M", List.of("-b", "4096"), src);
        long ino = Images.inodeOf(img, "/x");
        // an orphan whose next link points back at itself; it still has a name, so only its
        // blocks past EOF (none) go
        Images.debugfs(img, "ssv last_orphan " + ino, "sif /x dtime " + ino);
        try (Ext4FileSystem fs = Ext4FileSystem.open(img, OPTIONS)) {
            assertEquals(ino, fs.lookup(Ext4FileSystem.ROOT_INO, name("x")));
            byte[] back = new byte[8192];
            fs.read(ino, 0, ByteBuffer.wrap(back));
            assertArrayEquals(pattern(8192, 1), back);
        }
        assertEquals(0, firstOrphan(img));
        Images.assertClean(img);
    }
}
