package dev.ext4j.it;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.function.Consumer;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * Images damaged on purpose. Offsets come from debugfs (stat, blocks, htree_dump); the bytes are
 * written with RandomAccessFile. Structural damage is tested on images without metadata_csum (so
 * the structural checks are what catches it), checksum damage on metadata_csum images.
 *
 * <p>After every case: the damaged operation fails with the right errno, everything else still
 * works, the mount still answers {@code ls /}, the server log has no "unexpected failure", and the
 * image is byte-for-byte unchanged.
 */
class CorruptImageIT extends FuseTestBase {
    private static final String EUCLEAN = "Structure needs cleaning";
    private static final String EBADMSG = "Bad message";
    private static final int BS = 4096;

    private static Path plainImage;
    private static Path csumImage;

    @BeforeAll
    static void buildImages() throws IOException {
        Path src = scratch.resolve("src");
        Files.createDirectories(src);
        Files.writeString(src.resolve("good.txt"), "still readable\n");
        Files.createDirectories(src.resolve("other"));
        Files.writeString(src.resolve("other/inner.txt"), "inner\n");
        // more than 4 extents: the extent tree gets a leaf block (depth 1)
        for (String name : List.of("frag", "frag-loop", "frag-beyond")) {
            try (RandomAccessFile f = new RandomAccessFile(src.resolve(name).toFile(), "rw")) {
                for (int i = 0; i < 12; i++) {
                    f.seek(i * 65536L);
                    byte[] b = new byte[4096];
                    java.util.Arrays.fill(b, (byte) ('A' + i));
                    f.write(b);
                }
            }
        }
        Files.writeString(src.resolve("small-extent"), "x".repeat(10000));
        for (String d : List.of("dir-reclen0", "dir-namelen", "dir-csum", "dir-badino", "dir-sizehigh")) {
            Files.createDirectories(src.resolve(d));
            for (String n : List.of("alpha", "beta", "gamma")) {
                Files.writeString(src.resolve(d).resolve(n), n + "\n");
            }
        }
        Path htree = Files.createDirectories(src.resolve("htree"));
        for (int i = 0; i < 600; i++) {
            Files.writeString(htree.resolve(String.format("name-%04d", i)), String.format("content %04d%n", i));
        }
        for (String n : List.of("xattr-bad", "xattr-good")) {
            Files.writeString(src.resolve(n), n + "\n");
            Tools.run(Duration.ofSeconds(10), "setfattr", "-n", "user.big", "-v", "v".repeat(900), src.resolve(n).toString()).requireOk();
        }
        Tools.run(Duration.ofSeconds(10), "ln", "-s", "t/".repeat(150) + "end", src.resolve("slow-link").toString()).requireOk();
        Files.writeString(src.resolve("bad-mode"), "bad mode\n");
        Files.writeString(src.resolve("bad-inode-csum"), "bad inode checksum\n");

        plainImage = scratch.resolve("plain.img");
        Tools.mkfs(src, plainImage, "32M", List.of("-T", "default", "-b", "4096", "-O", "^metadata_csum"));
        Tools.e2fsckOptimizeDirs(plainImage);
        Tools.e2fsckClean(plainImage);
        csumImage = scratch.resolve("csum.img");
        Tools.mkfs(src, csumImage, "32M", List.of("-T", "default", "-b", "4096", "-O", "metadata_csum"));
        Tools.e2fsckOptimizeDirs(csumImage);
        Tools.e2fsckClean(csumImage);
        assertTrue(Tools.debugfs(plainImage, "htree_dump /htree").contains("Root node dump"), "/htree is not indexed");
    }

    // ----------------------------------------------------------------------------------------------
    // helpers

    private static Path copy(Path base, String name) throws IOException {
        Path p = scratch.resolve(name + ".img");
        Files.copy(base, p, java.nio.file.StandardCopyOption.REPLACE_EXISTING);
        return p;
    }

    static void poke(Path img, long offset, byte... bytes) {
        try (RandomAccessFile f = new RandomAccessFile(img.toFile(), "rw")) {
            f.seek(offset);
            f.write(bytes);
        } catch (IOException e) {
            throw new java.io.UncheckedIOException(e);
        }
    }

    static void poke16(Path img, long offset, int v) {
        poke(img, offset, (byte) v, (byte) (v >>> 8));
    }

    static void poke32(Path img, long offset, long v) {
        poke(img, offset, (byte) v, (byte) (v >>> 8), (byte) (v >>> 16), (byte) (v >>> 24));
    }

    static byte[] peek(Path img, long offset, int len) {
        try (RandomAccessFile f = new RandomAccessFile(img.toFile(), "r")) {
            byte[] b = new byte[len];
            f.seek(offset);
            f.readFully(b);
            return b;
        } catch (IOException e) {
            throw new java.io.UncheckedIOException(e);
        }
    }

    static int peek16(Path img, long offset) {
        byte[] b = peek(img, offset, 2);
        return (b[0] & 0xff) | (b[1] & 0xff) << 8;
    }

    static long peek32(Path img, long offset) {
        byte[] b = peek(img, offset, 4);
        return (b[0] & 0xffL) | (b[1] & 0xffL) << 8 | (b[2] & 0xffL) << 16 | (b[3] & 0xffL) << 24;
    }

    private static long match(String text, String regex, String what) {
        Matcher m = Pattern.compile(regex).matcher(text);
        assertTrue(m.find(), "cannot find " + what + " in debugfs output:\n" + text);
        return Long.parseLong(m.group(1));
    }

    /** First data block of a file or directory ({@code debugfs blocks}). */
    static long firstBlock(Path img, String path) {
        return match(Tools.debugfs(img, "blocks " + path), "(\\d+)", "a block of " + path);
    }

    /** Byte offset of a path's inode in the image ({@code debugfs imap}). */
    static long inodeOffset(Path img, String path) {
        String imap = Tools.debugfs(img, "imap " + path);
        long block = match(imap, "located at block (\\d+)", "the inode table block of " + path);
        Matcher m = Pattern.compile("offset 0x([0-9a-fA-F]+)").matcher(imap);
        assertTrue(m.find(), imap);
        return block * BS + Long.parseLong(m.group(1), 16);
    }

    /** Offset of the directory entry named {@code name} in the directory block at {@code blockOffset}. */
    static long direntOffset(Path img, long blockOffset, String name) {
        byte[] block = peek(img, blockOffset, BS);
        int off = 0;
        while (off + 8 <= BS) {
            int recLen = (block[off + 4] & 0xff) | (block[off + 5] & 0xff) << 8;
            int nameLen = block[off + 6] & 0xff;
            if (new String(block, off + 8, Math.min(nameLen, BS - off - 8), StandardCharsets.ISO_8859_1).equals(name)) {
                return blockOffset + off;
            }
            if (recLen < 8) {
                break;
            }
            off += recLen;
        }
        throw new AssertionError("no entry " + name + " in block at " + blockOffset);
    }

    private static Tools.Result sh(MountedImage m, String... cmd) {
        return Tools.run(Duration.ofSeconds(30), null, m.mountPoint(), List.of(cmd));
    }

    private static void assertFailsWith(MountedImage m, String errno, String... cmd) {
        Tools.Result r = sh(m, cmd);
        assertFalse(r.timedOut(), String.join(" ", cmd) + " hung: " + r.describe());
        assertNotEquals(0, r.exitCode(), String.join(" ", cmd) + " should fail with '" + errno + "': " + r.describe());
        assertTrue(r.stderr().contains(errno), String.join(" ", cmd) + " should fail with '" + errno + "': " + r.describe());
    }

    private static void assertWorks(MountedImage m, String expectedOut, String... cmd) {
        Tools.Result r = sh(m, cmd);
        assertTrue(r.ok(), String.join(" ", cmd) + " should still work: " + r.describe());
        if (expectedOut != null) {
            assertEquals(expectedOut, r.stdout(), String.join(" ", cmd));
        }
    }

    /** Mounts a damaged image, runs the checks, then the common after-checks. */
    private void withMount(Path img, Consumer<MountedImage> checks) {
        String sha = Tools.sha256(img);
        Path mnt = newDir("mnt-" + img.getFileName());
        Path log = scratch.resolve(img.getFileName() + ".log");
        try (MountedImage m = MountedImage.mount(img, mnt, log, "ro")) {
            checks.accept(m);
            assertWorks(m, null, "ls", "-a", "."); // ls of the mount's root (no -l: damaged entries may live there)
            assertTrue(m.alive(), "the mount no longer answers ls /");
            assertWorks(m, "still readable\n", "cat", "good.txt");
            assertEquals(List.of(), m.unexpectedFailures(), "unexpected failures in the server log");
        }
        assertEquals(sha, Tools.sha256(img), "the damaged image was modified by the read-only mount");
    }

    /** Mount attempts on damaged images that must be refused. */
    private void assertRefused(Path img, String... anyOf) {
        String sha = Tools.sha256(img);
        Path mnt = newDir("mnt-" + img.getFileName());
        try (MountedImage m = MountedImage.attempt(img, mnt, scratch.resolve(img.getFileName() + ".log"), null, "ro")) {
            Tools.Result r = m.mountResult();
            assertFalse(r.timedOut(), "mount hung: " + r.describe());
            assertNotEquals(0, r.exitCode(), "the damaged image was mounted: " + r.describe());
            String msg = r.stderr().toLowerCase();
            boolean found = false;
            for (String s : anyOf) {
                found |= msg.contains(s);
            }
            assertTrue(found, "the refusal should mention one of " + List.of(anyOf) + ": " + r.describe());
            assertFalse(m.isMounted(), "refused mount left a mount behind");
            assertEquals(List.of(), MountedImage.unexpectedFailures(m.log()), "unexpected failures in the server log");
        }
        assertEquals(sha, Tools.sha256(img), "the image was modified by the mount attempt");
    }

    // ----------------------------------------------------------------------------------------------
    // refused mounts

    @Test
    void truncatedImageIsRefused() throws IOException {
        Path img = copy(plainImage, "truncated");
        try (RandomAccessFile f = new RandomAccessFile(img.toFile(), "rw")) {
            f.setLength(f.length() / 2);
        }
        assertRefused(img, "truncated");
    }

    @Test
    void badMagicIsRefused() throws IOException {
        Path img = copy(plainImage, "bad-magic");
        assertEquals(0xEF53, peek16(img, 1024 + 0x38));
        poke16(img, 1024 + 0x38, 0x1234);
        assertRefused(img, "magic");
    }

    @Test
    void badSuperblockChecksumIsRefused() throws IOException {
        Path img = copy(csumImage, "bad-sb-csum");
        // a byte of the volume name, without updating s_checksum
        poke(img, 1024 + 0x78, (byte) 'X');
        assertRefused(img, "checksum", "csum");
    }

    // ----------------------------------------------------------------------------------------------
    // damaged metadata inside a mountable image

    @Test
    void extentBlockWithBadMagic() throws IOException {
        Path img = copy(plainImage, "extent-magic");
        long etb = match(Tools.debugfs(img, "stat /frag"), "\\(ETB0\\):\\s*(\\d+)", "the extent tree block of /frag");
        assertEquals(0xF30A, peek16(img, etb * BS));
        poke16(img, etb * BS, 0xBEEF);
        withMount(img, m -> {
            assertFailsWith(m, EUCLEAN, "cat", "frag");
            assertWorks(m, "x".repeat(10000), "cat", "small-extent");
            assertWorks(m, "inner\n", "cat", "other/inner.txt");
            // the file's inode itself is fine: stat works
            assertWorks(m, null, "stat", "frag");
        });
    }

    @Test
    void extentTreeThatPointsToItself() throws IOException {
        Path img = copy(plainImage, "extent-loop");
        long etb = match(Tools.debugfs(img, "stat /frag-loop"), "\\(ETB0\\):\\s*(\\d+)", "the extent tree block of /frag-loop");
        long off = etb * BS;
        // turn the leaf into an index node (depth 1) whose first entry points back at this block
        poke16(img, off + 6, 1);
        poke32(img, off + 12, 0);            // ei_block
        poke32(img, off + 16, etb);          // ei_leaf_lo
        poke16(img, off + 20, 0);            // ei_leaf_hi
        withMount(img, m -> {
            assertFailsWith(m, EUCLEAN, "cat", "frag-loop");
            assertWorks(m, null, "cat", "frag");
        });
    }

    @Test
    void extentPointingBeyondTheFilesystem() throws IOException {
        Path img = copy(plainImage, "extent-beyond");
        long etb = match(Tools.debugfs(img, "stat /frag-beyond"), "\\(ETB0\\):\\s*(\\d+)", "the extent tree block of /frag-beyond");
        // first leaf extent: ee_block(4) ee_len(2) ee_start_hi(2) ee_start_lo(4) at offset 12
        poke32(img, etb * BS + 20, 0x7fffff00L);
        withMount(img, m -> {
            Tools.Result r = sh(m, "cat", "frag-beyond");
            assertFalse(r.timedOut(), r.describe());
            assertFalse(r.ok(), "reading a block past the end of the filesystem must fail: " + r.describe());
            assertTrue(r.stderr().contains(EUCLEAN), "expected '" + EUCLEAN + "': " + r.describe());
        });
    }

    @Test
    void directoryEntryWithRecLenZero() throws IOException {
        Path img = copy(plainImage, "dirent-reclen0");
        long block = firstBlock(img, "/dir-reclen0") * BS;
        long ent = direntOffset(img, block, "beta");
        poke16(img, ent + 4, 0);
        withMount(img, m -> {
            assertFailsWith(m, EUCLEAN, "ls", "dir-reclen0");
            assertWorks(m, "alpha\n", "cat", "dir-namelen/alpha");
        });
    }

    @Test
    void directoryEntryWithNameLongerThanRecLen() throws IOException {
        Path img = copy(plainImage, "dirent-namelen");
        long block = firstBlock(img, "/dir-namelen") * BS;
        long ent = direntOffset(img, block, "alpha");
        int recLen = peek16(img, ent + 4);
        assertTrue(recLen < 200, "alpha is expected not to be the last entry (rec_len " + recLen + ")");
        poke(img, ent + 6, (byte) 200);
        withMount(img, m -> {
            assertFailsWith(m, EUCLEAN, "ls", "dir-namelen");
            assertWorks(m, "alpha\n", "cat", "dir-reclen0/alpha");
        });
    }

    @Test
    void directoryEntryWithInodeNumberOutOfRange() throws IOException {
        Path img = copy(plainImage, "dirent-badino");
        long block = firstBlock(img, "/dir-badino") * BS;
        long ent = direntOffset(img, block, "gamma");
        poke32(img, ent, 0x7ffffff0L);
        withMount(img, m -> {
            Tools.Result r = sh(m, "cat", "dir-badino/gamma");
            assertFalse(r.timedOut(), r.describe());
            assertFalse(r.ok(), "an entry pointing past the inode table must not be readable: " + r.describe());
            assertTrue(r.stderr().contains(EUCLEAN), "expected '" + EUCLEAN + "': " + r.describe());
            assertWorks(m, "alpha\n", "cat", "dir-badino/alpha");
        });
    }

    @Test
    void directoryBlockWithBadChecksum() throws IOException {
        Path img = copy(csumImage, "dir-csum");
        long block = firstBlock(img, "/dir-csum") * BS;
        long ent = direntOffset(img, block, "beta");
        poke(img, ent + 8, (byte) 'B'); // "beta" -> "Beta": structurally fine, checksum wrong
        withMount(img, m -> {
            assertFailsWith(m, EBADMSG, "ls", "dir-csum");
            assertWorks(m, "alpha\n", "cat", "dir-reclen0/alpha");
        });
    }

    /**
     * Corruption met on a read-write mount is recorded in the superblock (error count, first and
     * last error, state "with errors") and the errors= option decides what follows: continue keeps
     * writing, remount-ro refuses changes but still reads, panic stops serving the mount.
     */
    @ParameterizedTest(name = "errors={0}")
    @ValueSource(strings = {"continue", "remount-ro", "panic"})
    void corruptionOnAReadWriteMountIsRecordedAndErrorsDecides(String policy) throws IOException {
        Path img = copy(csumImage, "errors-" + policy);
        long block = firstBlock(img, "/dir-csum") * BS;
        poke(img, direntOffset(img, block, "beta") + 8, (byte) 'B');
        Path mnt = newDir("mnt-errors-" + policy);
        try (MountedImage m = MountedImage.mount(img, mnt, scratch.resolve("errors-" + policy + ".log"), "errors=" + policy)) {
            if (policy.equals("panic")) {
                // the server stops before it answers: the caller sees the connection go
                assertFailsWith(m, "Software caused connection abort", "ls", "dir-csum");
            } else {
                assertFailsWith(m, EBADMSG, "ls", "dir-csum");
            }
            switch (policy) {
                case "continue" -> {
                    assertWorks(m, null, "touch", "after-error");
                    assertWorks(m, "still readable\n", "cat", "good.txt");
                }
                case "remount-ro" -> {
                    assertFailsWith(m, "Read-only file system", "touch", "after-error");
                    assertWorks(m, "still readable\n", "cat", "good.txt");
                }
                default -> org.awaitility.Awaitility.await().atMost(Duration.ofSeconds(30)).until(() -> !m.isMounted());
            }
        }
        String header = Tools.run(Duration.ofSeconds(30), "dumpe2fs", "-h", img.toString()).stdout();
        assertTrue(header.matches("(?s).*Filesystem state:\\s+(not )?clean with errors.*"), "state says errors:\n" + header);
        assertTrue(header.matches("(?s).*FS Error count:\\s+[1-9].*"), "the error is counted:\n" + header);
        assertTrue(header.matches("(?s).*First error function:\\s+(readdir|opendir|getattr).*"), "the first error names the call:\n" + header);
    }

    @Test
    void htreeWithBadLimitFallsBackToLinearLookup() throws IOException {
        Path img = copy(plainImage, "htree-limit");
        long root = firstBlock(img, "/htree") * BS;
        // dx_root: "." (12 bytes), ".." (rec_len to the end), dx_root_info (8 bytes at 24), then limit/count at 32
        assertEquals(8, peek(img, root + 24 + 5, 1)[0], "dx_root_info.info_length");
        int limit = peek16(img, root + 32);
        assertEquals((BS - 32) / 8, limit, "dx root limit");
        poke16(img, root + 32, limit + 100);
        withMount(img, m -> {
            for (int i : new int[] {0, 1, 299, 599}) {
                assertWorks(m, String.format("content %04d%n", i), "cat", String.format("htree/name-%04d", i));
            }
            Tools.Result missing = sh(m, "cat", "htree/name-9999");
            assertTrue(missing.stderr().contains("No such file or directory"), "a missing name must still be ENOENT: " + missing.describe());
        });
    }

    @Test
    void htreeWithBadLimitStillLists() throws IOException {
        Path img = copy(plainImage, "htree-limit-ls");
        long root = firstBlock(img, "/htree") * BS;
        poke16(img, root + 32, peek16(img, root + 32) + 100);
        withMount(img, m -> {
            // the kernel falls back to a linear readdir when the index is bad; ext4j should list all names too
            Tools.Result r = sh(m, "ls", "htree");
            assertTrue(r.ok(), "ls of an htree directory with a bad dx limit: " + r.describe());
            assertEquals(600, r.stdout().lines().count(), "entries listed");
        });
    }

    @Test
    void xattrValueOffsetPastTheBlock() throws IOException {
        Path img = copy(plainImage, "xattr-offs");
        long xblock = match(Tools.debugfs(img, "stat /xattr-bad"), "File ACL:\\s*(\\d+)", "the xattr block of /xattr-bad");
        long off = xblock * BS;
        assertEquals(0xEA020000L, peek32(img, off), "xattr block magic");
        // first entry at 32: e_name_len(1) e_name_index(1) e_value_offs(2) ...
        assertEquals(3, peek(img, off + 32, 1)[0], "name length of user.big");
        poke16(img, off + 34, BS - 4);
        withMount(img, m -> {
            assertFailsWith(m, EUCLEAN, "getfattr", "-n", "user.big", "xattr-bad");
            assertWorks(m, "xattr-bad\n", "cat", "xattr-bad");
            Tools.Result good = sh(m, "getfattr", "--only-values", "-n", "user.big", "xattr-good");
            assertTrue(good.ok() && good.stdout().equals("v".repeat(900)), "xattrs of another file: " + good.describe());
        });
    }

    /**
     * i_size_high of a directory means nothing without the large_dir feature (it was i_dir_acl): the
     * kernel (ext4_isize) ignores it and lists the directory. Corpus image f_recnect_bad has such a
     * directory (/test/quux).
     */
    @Test
    void directorySizeHighIsIgnoredWithoutLargeDir() throws IOException {
        Path img = copy(plainImage, "dir-size-high");
        assertFalse(Tools.run(Duration.ofSeconds(30), "dumpe2fs", "-h", img.toString()).stdout().contains("large_dir"));
        long off = inodeOffset(img, "/dir-sizehigh");
        assertEquals(0, peek32(img, off + 0x6C), "i_size_high");
        poke32(img, off + 0x6C, 12);
        withMount(img, m -> {
            assertWorks(m, "alpha\nbeta\ngamma\n", "ls", "dir-sizehigh");
            assertWorks(m, BS + "\n", "stat", "-c", "%s", "dir-sizehigh");
        });
    }

    @Test
    void inodeWithAnInvalidFileType() throws IOException {
        Path img = copy(plainImage, "inode-mode");
        long off = inodeOffset(img, "/bad-mode");
        assertEquals(0100644, peek16(img, off), "i_mode of /bad-mode");
        poke16(img, off, 0110644); // 011 is no file type at all
        withMount(img, m -> {
            // the kernel's ext4_iget calls this inode corrupt (EFSCORRUPTED); passing the mode on to FUSE
            // would make the kernel's FUSE client answer EIO without a word in the server log instead
            assertFailsWith(m, EUCLEAN, "stat", "bad-mode");
            assertWorks(m, "bad inode checksum\n", "cat", "bad-inode-csum");
        });
    }

    @Test
    void inodeWithBadChecksum() throws IOException {
        Path img = copy(csumImage, "inode-csum");
        long off = inodeOffset(img, "/bad-inode-csum");
        // i_mtime (offset 0x10): structurally harmless, the checksum no longer matches
        poke32(img, off + 0x10, peek32(img, off + 0x10) ^ 0x5a5a);
        withMount(img, m -> {
            assertFailsWith(m, EBADMSG, "stat", "bad-inode-csum");
            assertWorks(m, "bad mode\n", "cat", "bad-mode");
        });
    }

    @Test
    void slowSymlinkWithImpossibleSize() throws IOException {
        Path img = copy(plainImage, "symlink-size");
        String stat = Tools.debugfs(img, "stat /slow-link");
        long ino = match(stat, "Inode:\\s*(\\d+)", "the inode of /slow-link");
        assertTrue(stat.contains("Size: 303"), stat);
        Tools.debugfsWrite(img, "sif <" + ino + "> size 0x100000");
        withMount(img, m -> {
            Tools.Result r = sh(m, "readlink", "-v", "slow-link");
            assertFalse(r.timedOut(), r.describe());
            assertFalse(r.ok(), "a symlink longer than its block must not be readable: " + r.describe());
            List<String> okErrors = new ArrayList<>(List.of(EUCLEAN, "File name too long"));
            assertTrue(okErrors.stream().anyMatch(r.stderr()::contains), "readlink error: " + r.describe());
        });
    }
}
