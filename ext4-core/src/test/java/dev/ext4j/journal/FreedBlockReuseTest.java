package dev.ext4j.journal;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.ext4j.Errno;
import dev.ext4j.Ext4Exception;
import dev.ext4j.fs.Ext4FileSystem;
import dev.ext4j.fs.MountOptions;
import dev.ext4j.testutil.FsUtil;
import dev.ext4j.testutil.Images;
import dev.ext4j.testutil.RecordingDevice;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import java.util.TreeSet;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Blocks freed by a transaction that is not committed yet must not receive file data (mballoc's
 * ext4_free_data): on a full filesystem a file is deleted and another written right away, with no
 * sync between. A power cut anywhere afterwards must never show the deleted file (brought back by
 * the replay, since its delete did not commit) holding the new file's data.
 */
class FreedBlockReuseTest {
    private static final int CHUNK = 64 * 1024;

    @TempDir
    Path dir;

    private static byte[] b(String s) {
        return s.getBytes(StandardCharsets.UTF_8);
    }

    /** Writes {@code fill} bytes until the filesystem is full; returns the bytes written. */
    private static long fill(Ext4FileSystem fs, long ino, byte fill) throws Ext4Exception {
        byte[] chunk = new byte[CHUNK];
        Arrays.fill(chunk, fill);
        long pos = 0;
        while (true) {
            int n;
            try {
                n = fs.write(ino, pos, ByteBuffer.wrap(chunk));
            } catch (Ext4Exception e) {
                if (e.errno() != Errno.ENOSPC) {
                    throw e;
                }
                return pos;
            }
            pos += n;
            if (n < CHUNK) {
                return pos;
            }
        }
    }

    private static boolean allBytes(byte[] data, byte v) {
        for (byte x : data) {
            if (x != v) {
                return false;
            }
        }
        return true;
    }

    @Test
    void dataNeverLandsInBlocksWhoseFreeingIsNotCommitted() throws Exception {
        Path img = dir.resolve("base.img");
        Images.mkfs(img, "8M", List.of("-b", "1024", "-J", "size=1", "-m", "0"), null);
        byte[] base = Files.readAllBytes(img);
        RecordingDevice dev = new RecordingDevice(base.clone());
        MountOptions opts = MountOptions.defaults().withWriteback(MountOptions.DEFAULT_CACHE_BYTES, 3_600_000, 30_000);
        long aSize;
        long bSize;
        int afterUnlink;
        try (Ext4FileSystem fs = Ext4FileSystem.mount(dev, opts)) {
            long a = fs.mknod(Ext4FileSystem.ROOT_INO, b("a"), 0100644, 0, 0, 0, 0);
            aSize = fill(fs, a, (byte) 'A');
            fs.sync();
            afterUnlink = dev.writes.size();
            fs.unlink(Ext4FileSystem.ROOT_INO, b("a"));
            long bIno = fs.mknod(Ext4FileSystem.ROOT_INO, b("b"), 0100644, 0, 0, 0, 0);
            bSize = fill(fs, bIno, (byte) 'B');
            fs.sync();
        }
        assertTrue(aSize > 4 << 20, "a filled the filesystem: " + aSize + " bytes");
        assertTrue(bSize > aSize / 2, "b got most of a's space back: " + bSize + " of " + aSize + " bytes");
        int total = dev.writes.size();
        TreeSet<Integer> cuts = new TreeSet<>();
        for (int i = 0; i <= 40; i++) {
            cuts.add(afterUnlink + (int) ((long) (total - afterUnlink) * i / 40));
        }
        Path cut = dir.resolve("cut.img");
        for (int n : cuts) {
            String what = "cut after write " + n + " of " + total + " (the unlink starts after " + afterUnlink + ")";
            Files.write(cut, dev.cut(base, n));
            JournalFixture.replayWithExt4j(cut);
            JournalCrashTest.assertFsckClean(cut, what);
            try (Ext4FileSystem fs = Ext4FileSystem.open(cut, MountOptions.defaults().withReadOnly(true))) {
                long a;
                try {
                    a = fs.resolve(b("/a"));
                } catch (Ext4Exception e) {
                    continue; // the delete committed
                }
                byte[] data = FsUtil.readAll(fs, a, CHUNK);
                assertEquals(aSize, data.length, what + ": a is back with its size");
                assertTrue(allBytes(data, (byte) 'A'), what + ": a is back, and holds only its own data");
            }
        }
    }

    /**
     * On a full filesystem where the only free blocks wait for the commit of a delete, a slow
     * symlink and a fallocate still succeed: their ENOSPC commits and retries once, as write() does
     * (ext4_should_retry_alloc()).
     */
    @Test
    void aSymlinkAndAFallocateOnAFullFilesystemRetryAfterTheCommitOfADelete() throws Exception {
        Path img = dir.resolve("full.img");
        Images.mkfs(img, "8M", List.of("-b", "1024", "-J", "size=1", "-m", "0", "-O", "^inline_data"), null);
        MountOptions opts = MountOptions.defaults().withWriteback(MountOptions.DEFAULT_CACHE_BYTES, 3_600_000, 30_000)
                .withReservedClusters(0); // no pool held back for metadata: fill() leaves nothing free
        byte[] target = b("t/".repeat(100)); // 200 bytes: a slow symlink, one data block
        try (Ext4FileSystem fs = Ext4FileSystem.open(img, opts)) {
            long a = fs.mknod(Ext4FileSystem.ROOT_INO, b("a"), 0100644, 0, 0, 0, 0);
            fill(fs, a, (byte) 'A');
            long filler = fs.mknod(Ext4FileSystem.ROOT_INO, b("filler"), 0100644, 0, 0, 0, 0);
            fill(fs, filler, (byte) 'F'); // the last blocks a's extent tree left
            fs.sync();
            fs.unlink(Ext4FileSystem.ROOT_INO, b("a"));
            long link = fs.symlink(Ext4FileSystem.ROOT_INO, b("link"), target, 0, 0);
            assertEquals(target.length, fs.stat(link).size());
            long bIno = fs.mknod(Ext4FileSystem.ROOT_INO, b("b"), 0100644, 0, 0, 0, 0);
            fill(fs, bIno, (byte) 'B'); // takes back what a's delete released
            fs.sync();
            fs.unlink(Ext4FileSystem.ROOT_INO, b("b"));
            long pre = fs.mknod(Ext4FileSystem.ROOT_INO, b("pre"), 0100644, 0, 0, 0, 0);
            fs.fallocate(pre, 0, 0, 1 << 20);
            assertEquals(1 << 20, fs.stat(pre).size());
        }
        JournalCrashTest.assertFsckClean(img, "after the symlink and the fallocate");
        try (Ext4FileSystem fs = Ext4FileSystem.open(img, MountOptions.defaults().withReadOnly(true))) {
            assertEquals(new String(target, StandardCharsets.UTF_8),
                    new String(fs.readlink(fs.resolve(b("/link"))), StandardCharsets.UTF_8));
        }
    }

    /**
     * Delayed writes to an ext3-style file (a block map) reserved against blocks whose freeing is
     * not committed: writeback's allocation finds only those, gives back what it took, and the
     * sync commits and retries (ext4_writepages() commits and retries on ENOSPC). The pages must
     * not stay taken by the failed round, which left a sync and the unmount failing for good.
     */
    @Test
    void writebackOfABlockMappedFileRetriesAfterTheCommitOfADelete() throws Exception {
        Path img = dir.resolve("ext3.img");
        Images.mkfs(img, "8M", List.of("-t", "ext3", "-b", "1024", "-J", "size=1", "-m", "0"), null);
        MountOptions opts = MountOptions.defaults().withWriteback(MountOptions.DEFAULT_CACHE_BYTES, 3_600_000, 30_000)
                .withReservedClusters(0);
        long bSize;
        try (Ext4FileSystem fs = Ext4FileSystem.open(img, opts)) {
            long a = fs.mknod(Ext4FileSystem.ROOT_INO, b("a"), 0100644, 0, 0, 0, 0);
            fill(fs, a, (byte) 'A');
            fs.sync();
            fs.unlink(Ext4FileSystem.ROOT_INO, b("a"));
            long bIno = fs.mknod(Ext4FileSystem.ROOT_INO, b("b"), 0100644, 0, 0, 0, 0);
            bSize = fill(fs, bIno, (byte) 'B');
            fs.sync();
        }
        assertTrue(bSize > 4 << 20, "b got a's space back: " + bSize + " bytes");
        JournalCrashTest.assertFsckClean(img, "after writing b into a's freed blocks");
        try (Ext4FileSystem fs = Ext4FileSystem.open(img, MountOptions.defaults().withReadOnly(true))) {
            byte[] data = FsUtil.readAll(fs, fs.resolve(b("/b")), CHUNK);
            assertEquals(bSize, data.length);
            assertTrue(allBytes(data, (byte) 'B'), "b's data reached the image, all of it");
        }
    }
}
