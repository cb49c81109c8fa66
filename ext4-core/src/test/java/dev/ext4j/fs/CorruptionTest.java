package dev.ext4j.fs;

import static dev.ext4j.testutil.FsUtil.bytes;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTimeoutPreemptively;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.ext4j.Errno;
import dev.ext4j.Ext4Exception;
import dev.ext4j.format.Inode;
import dev.ext4j.io.MemoryBlockDevice;
import dev.ext4j.testutil.Expect;
import dev.ext4j.testutil.FsUtil;
import dev.ext4j.testutil.Images;
import java.io.RandomAccessFile;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.TreeSet;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * Images damaged byte by byte: every damaged structure must give the right errno (EUCLEAN for
 * inconsistency, EBADMSG for a bad checksum), other files must still read, no unchecked exception
 * may escape, and the image must be byte-for-byte unchanged after the read-only mount.
 */
class CorruptionTest {
    private static final int BS = 1024;
    private static final int HTREE_FILES = 300;

    /** Held so the level sticks: the damage here makes ext4j log warnings by design. */
    private static final java.util.logging.Logger EXT4J_LOG = java.util.logging.Logger.getLogger("ext4j");

    @TempDir
    static Path work;
    static Path csumImage;
    static Path plainImage;
    static byte[] control;
    static byte[] fragContent;

    @TempDir
    Path tmp;

    @BeforeAll
    static void makeImages() throws Exception {
        EXT4J_LOG.setLevel(java.util.logging.Level.SEVERE);
        Path src = Files.createDirectories(work.resolve("src"));
        Random rnd = new Random(77);
        control = new byte[20_000];
        rnd.nextBytes(control);
        Files.write(src.resolve("control"), control);
        fragContent = new byte[10 * 65536];
        try (RandomAccessFile f = new RandomAccessFile(src.resolve("frag").toFile(), "rw")) {
            for (int i = 0; i < 10; i++) {
                byte[] chunk = new byte[4096];
                rnd.nextBytes(chunk);
                System.arraycopy(chunk, 0, fragContent, i * 65536, 4096);
                f.seek(i * 65536L);
                f.write(chunk);
            }
            f.setLength(fragContent.length);
        }
        byte[] contig = new byte[3000];
        rnd.nextBytes(contig);
        Files.write(src.resolve("contig"), contig);
        Path dir = Files.createDirectory(src.resolve("dir"));
        for (int i = 0; i < 20; i++) {
            Files.writeString(dir.resolve(String.format("entry-%02d", i)), "e" + i);
        }
        Path htree = Files.createDirectory(src.resolve("htree"));
        for (int i = 0; i < HTREE_FILES; i++) {
            Files.createFile(htree.resolve(String.format("a-rather-long-file-name-%04d", i)));
        }
        Path x = Files.writeString(src.resolve("xattr"), "has xattrs");
        byte[] big = new byte[700];
        rnd.nextBytes(big);
        Images.setXattr(x, "user.big", big);
        Images.setXattr(x, "user.small", bytes("small"));
        Path x2 = Files.writeString(src.resolve("xattr2"), "other xattrs");
        Images.setXattr(x2, "user.other", bytes("fine"));

        csumImage = Images.mkfs(work.resolve("csum.img"), "16M", List.of("-b", "1024"), src);
        plainImage = Images.mkfs(work.resolve("plain.img"), "16M", List.of("-b", "1024", "-O", "^metadata_csum"), src);
        for (Path img : List.of(csumImage, plainImage)) {
            Images.fsckOptimizeDirs(img);
            Images.assertClean(img);
            assertTrue(Images.stat(img, "/frag").contains("(ETB0)"), "frag has an extent block");
            assertTrue(Images.stat(img, "/htree").contains("Flags: 0x81000"), "htree is indexed");
        }
    }

    /** A fresh copy of the csum or plain image. */
    private Path fresh(boolean csum) {
        return Images.copy(csum ? csumImage : plainImage, tmp.resolve((csum ? "csum" : "plain") + System.nanoTime() + ".img"));
    }

    @FunctionalInterface
    interface FsBody {
        void run(Ext4FileSystem fs) throws Exception;
    }

    /** Mounts read-only, runs the checks, then checks the control file and that the image is unchanged. */
    private static void withFs(Path img, FsBody body) throws Exception {
        String before = Images.sha256(img);
        try (Ext4FileSystem fs = Ext4FileSystem.open(img, MountOptions.defaults().withReadOnly(true))) {
            body.run(fs);
            assertControlReads(fs);
        }
        assertEquals(before, Images.sha256(img), "the read-only mount did not write to the image");
    }

    private static void assertControlReads(Ext4FileSystem fs) throws Exception {
        long ino = fs.resolve(bytes("/control"));
        assertArrayEquals(control, FsUtil.readAll(fs, ino, 4096), "the control file still reads");
        List<String> root = FsUtil.names(FsUtil.readdirAll(FsUtil.of(fs, Ext4FileSystem.ROOT_INO)));
        assertTrue(root.containsAll(List.of("control", "frag", "dir", "htree", "xattr")), root.toString());
    }

    private static void assertOpenFails(Path img, Errno errno, String messagePart) {
        Ext4Exception e = Expect.errno(errno, () -> Ext4FileSystem.open(img, MountOptions.defaults().withReadOnly(true)).close());
        assertTrue(e.getMessage().contains(messagePart), "message \"" + e.getMessage() + "\" mentions " + messagePart);
    }

    private static long etbBlock(Path img) {
        Matcher m = Pattern.compile("\\(ETB0\\):(\\d+)").matcher(Images.stat(img, "/frag"));
        assertTrue(m.find());
        return Long.parseLong(m.group(1));
    }

    // ---------------------------------------------------------------- superblock

    @Test
    void truncatedImageIsRefused() throws Exception {
        Path img = fresh(true);
        try (RandomAccessFile f = new RandomAccessFile(img.toFile(), "rw")) {
            f.setLength(f.length() / 2);
        }
        assertOpenFails(img, Errno.EUCLEAN, "truncated");
        byte[] half = Files.readAllBytes(img);
        Expect.errno(Errno.EUCLEAN, () -> Ext4FileSystem.mount(new MemoryBlockDevice(half, true), MountOptions.defaults()));
        try (RandomAccessFile f = new RandomAccessFile(img.toFile(), "rw")) {
            f.setLength(1500);
        }
        assertOpenFails(img, Errno.EUCLEAN, "too small");
        Expect.errno(Errno.EUCLEAN, () -> Ext4FileSystem.mount(new MemoryBlockDevice(new byte[0], true), MountOptions.defaults()));
    }

    @ParameterizedTest
    @ValueSource(booleans = {true, false})
    void badMagicIsRefused(boolean csum) {
        Path img = fresh(csum);
        Images.writeLe16(img, 1024 + 0x38, 0xEF54);
        assertOpenFails(img, Errno.EUCLEAN, "magic");
    }

    @Test
    void badSuperblockChecksum() throws Exception {
        Path img = fresh(true);
        Images.writeAt(img, 1024 + 0x78, bytes("changed"));
        assertOpenFails(img, Errno.EBADMSG, "superblock");
        // without metadata_csum nothing checks it, and the new volume name is read
        Path plain = fresh(false);
        Images.writeAt(plain, 1024 + 0x78, bytes("changed"));
        withFs(plain, fs -> assertEquals("changed", fs.superblock().volumeName()));
    }

    @Test
    void hostileSuperblockFieldsAreRefused() {
        int[][] edits = {
                {0x18, 9},          // s_log_block_size: 512 KiB blocks
                {0x20, 0},          // s_blocks_per_group 0
                {0x28, 0},          // s_inodes_per_group 0
                {0x00, 12345},      // s_inodes_count not groups * inodes per group
        };
        for (int[] e : edits) {
            Path img = fresh(false);
            Images.writeLe32(img, 1024 + e[0], e[1]);
            Expect.errno(Errno.EUCLEAN, () -> Ext4FileSystem.open(img, MountOptions.defaults().withReadOnly(true)).close());
        }
    }

    @Test
    void unknownIncompatFeatureIsRefusedByName() {
        Path img = fresh(false);
        int incompat = Images.readLe32(img, 1024 + 0x60);
        Images.writeLe32(img, 1024 + 0x60, incompat | 0x80000000);
        assertOpenFails(img, Errno.EOPNOTSUPP, "FEATURE_I31");
    }

    // ---------------------------------------------------------------- group descriptors and inodes

    @Test
    void badGroupDescriptorChecksumIsReportedOnReadOnlyMount() throws Exception {
        Path img = fresh(true);
        long gdt = 2L * BS; // 1 KiB blocks: superblock in block 1, descriptors from block 2
        int stored = Images.readLe16(img, gdt + 0x1E);
        Images.writeLe16(img, gdt + 0x1E, stored ^ 0x5A5A);
        withFs(img, fs -> assertTrue(fs.messages().stream().anyMatch(m -> m.contains("group descriptor 0")),
                "the bad checksum is reported: " + fs.messages()));
    }

    @Test
    void badInodeChecksum() throws Exception {
        Path img = fresh(true);
        long off = Images.inodeByteOffset(img, "/contig", BS);
        long ino = Images.inodeOf(img, "/contig");
        byte[] b = Images.readAt(img, off + 0x08, 1); // i_atime
        Images.writeAt(img, off + 0x08, new byte[] {(byte) (b[0] ^ 1)});
        withFs(img, fs -> {
            Expect.errno(Errno.EBADMSG, () -> fs.lookup(Ext4FileSystem.ROOT_INO, bytes("contig")));
            Expect.errno(Errno.EBADMSG, () -> fs.stat(ino));
            Expect.errno(Errno.EBADMSG, () -> fs.read(ino, 0, ByteBuffer.allocate(10)));
        });
    }

    // ---------------------------------------------------------------- extents

    @ParameterizedTest
    @ValueSource(booleans = {true, false})
    void extentBlockWithBadMagic(boolean csum) throws Exception {
        Path img = fresh(csum);
        Images.writeLe16(img, etbBlock(img) * BS, 0xF30B);
        withFs(img, fs -> {
            long ino = fs.resolve(bytes("/frag"));
            assertEquals(fragContent.length, fs.stat(ino).size(), "the inode itself is fine");
            Ext4Exception e = Expect.errno(Errno.EUCLEAN, () -> fs.read(ino, 0, ByteBuffer.allocate(100)));
            assertTrue(e.getMessage().contains("magic"), e.getMessage());
            Expect.errno(Errno.EUCLEAN, () -> fs.read(ino, 9 * 65536, ByteBuffer.allocate(100)));
        });
    }

    @ParameterizedTest
    @ValueSource(ints = {1, 2, 5, 0xFFFF})
    void extentBlockWithWrongDepth(int depth) throws Exception {
        for (boolean csum : new boolean[] {true, false}) {
            Path img = fresh(csum);
            Images.writeLe16(img, etbBlock(img) * BS + 6, depth);
            withFs(img, fs -> {
                long ino = fs.resolve(bytes("/frag"));
                Expect.errno(Errno.EUCLEAN, () -> fs.read(ino, 0, ByteBuffer.allocate(100)));
            });
        }
    }

    @Test
    void extentBlockWithTooManyEntries() throws Exception {
        Path img = fresh(false);
        long etb = etbBlock(img);
        int max = Images.readLe16(img, etb * BS + 4);
        Images.writeLe16(img, etb * BS + 2, max + 1);
        withFs(img, fs -> Expect.errno(Errno.EUCLEAN, () -> fs.read(fs.resolve(bytes("/frag")), 0, ByteBuffer.allocate(100))));
        Path img2 = fresh(false);
        Images.writeLe16(img2, etb * BS + 4, 200); // eh_max larger than a 1 KiB block holds
        withFs(img2, fs -> Expect.errno(Errno.EUCLEAN, () -> fs.read(fs.resolve(bytes("/frag")), 0, ByteBuffer.allocate(100))));
    }

    @Test
    void extentBlockChecksum() throws Exception {
        // a byte in an unused entry slot: only the checksum notices
        Path img = fresh(true);
        long at = etbBlock(img) * BS + 12 + 12 * 60;
        Images.writeAt(img, at, new byte[] {0x42});
        withFs(img, fs -> Expect.errno(Errno.EBADMSG, () -> fs.read(fs.resolve(bytes("/frag")), 0, ByteBuffer.allocate(100))));
        Path plain = fresh(false);
        Images.writeAt(plain, etbBlock(plain) * BS + 12 + 12 * 60, new byte[] {0x42});
        withFs(plain, fs -> assertArrayEquals(fragContent, FsUtil.readAll(fs, fs.resolve(bytes("/frag")), 65536)));
    }

    /** The extent block becomes an index node whose only entry points back to itself. */
    @ParameterizedTest
    @ValueSource(booleans = {true, false})
    void extentLoop(boolean csum) throws Exception {
        Path img = fresh(csum);
        long etb = etbBlock(img);
        ByteBuffer node = ByteBuffer.allocate(24).order(ByteOrder.LITTLE_ENDIAN);
        node.putShort((short) 0xF30A).putShort((short) 1).putShort((short) ((BS - 12 - 4) / 12)).putShort((short) 1).putInt(0);
        node.putInt(0).putInt((int) etb).putShort((short) 0).putShort((short) 0);
        Images.writeAt(img, etb * BS, node.array());
        assertTimeoutPreemptively(Duration.ofSeconds(10), () -> withFs(img, fs -> {
            long ino = fs.resolve(bytes("/frag"));
            Expect.errno(Errno.EUCLEAN, () -> fs.read(ino, 0, ByteBuffer.allocate(100)));
            Expect.errno(Errno.EUCLEAN, () -> fs.read(ino, 600 * 1024, ByteBuffer.allocate(100)));
        }));
        // and with the in-inode root claiming depth 2, so the self-pointing node has the expected depth once
        if (!csum) {
            long off = Images.inodeByteOffset(img, "/frag", BS);
            Images.writeLe16(img, off + Inode.I_BLOCK + 6, 2);
            assertTimeoutPreemptively(Duration.ofSeconds(10), () -> withFs(img, fs ->
                    Expect.errno(Errno.EUCLEAN, () -> fs.read(fs.resolve(bytes("/frag")), 0, ByteBuffer.allocate(100)))));
        }
    }

    @Test
    void inInodeExtentRootWithBadMagic() throws Exception {
        // without metadata_csum the damage reaches the extent check
        Path plain = fresh(false);
        long off = Images.inodeByteOffset(plain, "/contig", BS);
        Images.writeLe16(plain, off + Inode.I_BLOCK, 0x1234);
        withFs(plain, fs -> {
            long ino = fs.resolve(bytes("/contig"));
            Expect.errno(Errno.EUCLEAN, () -> fs.read(ino, 0, ByteBuffer.allocate(10)));
        });
        // with it, a raw write first breaks the inode checksum
        Path csum = fresh(true);
        long coff = Images.inodeByteOffset(csum, "/contig", BS);
        Images.writeLe16(csum, coff + Inode.I_BLOCK, 0x1234);
        withFs(csum, fs -> Expect.errno(Errno.EBADMSG, () -> fs.stat(fs.resolve(bytes("/contig")))));
        // debugfs rewrites the inode with a fresh checksum: then the extent check speaks
        Path fixed = fresh(true);
        int word0 = Images.readLe32(fixed, coff + Inode.I_BLOCK);
        Images.debugfs(fixed, "sif /contig block[0] 0x" + Integer.toHexString((word0 & 0xFFFF0000) | 0x1234));
        withFs(fixed, fs -> {
            long ino = fs.resolve(bytes("/contig"));
            fs.stat(ino);
            Expect.errno(Errno.EUCLEAN, () -> fs.read(ino, 0, ByteBuffer.allocate(10)));
        });
    }

    @Test
    void extentPointingOutsideTheFilesystem() throws Exception {
        Path img = fresh(false);
        long off = Images.inodeByteOffset(img, "/contig", BS);
        long blocks = Long.parseLong(Images.dumpe2fsHeader(img).get("Block count"));
        Images.writeLe32(img, off + Inode.I_BLOCK + 12 + 8, (int) (blocks + 100)); // ee_start_lo of extent 0
        withFs(img, fs -> Expect.errno(Errno.EUCLEAN, () -> fs.read(fs.resolve(bytes("/contig")), 0, ByteBuffer.allocate(10))));
    }

    // ---------------------------------------------------------------- directory entries

    /** Offset in the image of /dir's entry at byte {@code entryOff} of its first block. */
    private static long dirEntry(Path img, int entryOff) {
        return Images.blocks(img, "/dir").get(0) * BS + entryOff;
    }

    private static void assertDirBroken(Path img, Errno errno) throws Exception {
        withFs(img, fs -> {
            long dir = fs.resolve(bytes("/dir"));
            Expect.errno(errno, () -> FsUtil.readdirAll(FsUtil.of(fs, dir)));
            Expect.errno(errno, () -> fs.lookup(dir, bytes("entry-19")));
            Expect.errno(errno, () -> fs.lookup(dir, bytes("no-such-entry")));
            // other directories are unaffected
            assertEquals(HTREE_FILES + 2, FsUtil.readdirAll(FsUtil.of(fs, fs.resolve(bytes("/htree")))).size());
        });
    }

    @Test
    void direntRecLenZero() throws Exception {
        Path img = fresh(false);
        Images.writeLe16(img, dirEntry(img, 24) + 4, 0);
        assertTimeoutPreemptively(Duration.ofSeconds(10), () -> assertDirBroken(img, Errno.EUCLEAN));
    }

    @Test
    void direntRecLenPastTheBlockEnd() throws Exception {
        Path img = fresh(false);
        Images.writeLe16(img, dirEntry(img, 24) + 4, BS - 24 + 4);
        assertDirBroken(img, Errno.EUCLEAN);
    }

    @Test
    void direntRecLenNotMultipleOfFour() throws Exception {
        Path img = fresh(false);
        int rec = Images.readLe16(img, dirEntry(img, 24) + 4);
        Images.writeLe16(img, dirEntry(img, 24) + 4, rec + 1);
        assertDirBroken(img, Errno.EUCLEAN);
    }

    @Test
    void direntNameLenLargerThanRecLen() throws Exception {
        Path img = fresh(false);
        Images.writeAt(img, dirEntry(img, 24) + 6, new byte[] {(byte) 200});
        assertDirBroken(img, Errno.EUCLEAN);
    }

    @Test
    void direntInodePastTheInodeCount() throws Exception {
        Path img = fresh(false);
        Images.writeLe32(img, dirEntry(img, 24), 0x7FFFFFF0);
        assertDirBroken(img, Errno.EUCLEAN);
    }

    @Test
    void direntDamageWithMetadataCsumIsABadChecksum() throws Exception {
        Path img = fresh(true);
        Images.writeLe16(img, dirEntry(img, 24) + 4, 0);
        assertDirBroken(img, Errno.EBADMSG);
    }

    @Test
    void direntPointingToReservedOrFreeInode() throws Exception {
        Path img = fresh(false);
        long e = dirEntry(img, 24);
        byte[] name = Images.readAt(img, e + 8, Images.readAt(img, e + 6, 1)[0]);
        Images.writeLe32(img, e, 7); // a reserved inode
        withFs(img, fs -> Expect.errno(Errno.EUCLEAN, () -> fs.lookup(fs.resolve(bytes("/dir")), name)));
    }

    // ---------------------------------------------------------------- htree

    /** Damage to the dx_root that makes the index unusable; lookups fall back to a linear scan. */
    @ParameterizedTest
    @ValueSource(strings = {"limit", "count0", "countOverLimit", "hashVersion", "infoLength", "levels", "leafPastEnd"})
    void badHtreeRootFallsBackToLinearLookup(String what) throws Exception {
        Path img = fresh(false);
        long root = Images.blocks(img, "/htree").get(0) * BS;
        int limit = Images.readLe16(img, root + 0x20);
        switch (what) {
            case "limit" -> Images.writeLe16(img, root + 0x20, limit - 1);
            case "count0" -> Images.writeLe16(img, root + 0x22, 0);
            case "countOverLimit" -> Images.writeLe16(img, root + 0x22, limit + 1);
            case "hashVersion" -> Images.writeAt(img, root + 0x1C, new byte[] {9});
            case "infoLength" -> Images.writeAt(img, root + 0x1D, new byte[] {12});
            case "levels" -> Images.writeAt(img, root + 0x1E, new byte[] {5});
            case "leafPastEnd" -> Images.writeLe32(img, root + 0x24, 99_999);
            default -> throw new IllegalArgumentException(what);
        }
        withFs(img, fs -> {
            long dir = fs.resolve(bytes("/htree"));
            for (int i = 0; i < HTREE_FILES; i++) {
                String n = String.format("a-rather-long-file-name-%04d", i);
                long ino = fs.lookup(dir, bytes(n));
                assertEquals(Inode.S_IFREG, fs.stat(ino).mode() & Inode.S_IFMT, n);
            }
            Expect.errno(Errno.ENOENT, () -> fs.lookup(dir, bytes("a-rather-long-file-name-9999")));
            List<String> names = FsUtil.names(FsUtil.readdirChunked(FsUtil.of(fs, dir), 7));
            assertEquals(HTREE_FILES + 2, new TreeSet<>(names).size());
        });
    }

    @Test
    void badHtreeLimitWithMetadataCsumIsABadChecksum() throws Exception {
        Path img = fresh(true);
        long root = Images.blocks(img, "/htree").get(0) * BS;
        Images.writeLe16(img, root + 0x20, Images.readLe16(img, root + 0x20) - 1);
        withFs(img, fs -> {
            long dir = fs.resolve(bytes("/htree"));
            Expect.errno(Errno.EBADMSG, () -> fs.lookup(dir, bytes("a-rather-long-file-name-0007")));
        });
    }

    // ---------------------------------------------------------------- xattrs

    /** Byte offset in the xattr block of entry {@code name} (index 1, user.). */
    private static long xattrEntry(Path img, long block, String name) {
        byte[] b = Images.readAt(img, block * BS, BS);
        ByteBuffer bb = ByteBuffer.wrap(b).order(ByteOrder.LITTLE_ENDIAN);
        int off = 32;
        while (bb.getInt(off) != 0) {
            int nameLen = b[off] & 0xFF;
            String n = new String(b, off + 16, nameLen, java.nio.charset.StandardCharsets.ISO_8859_1);
            if (n.equals(name)) {
                return block * BS + off;
            }
            off += (16 + nameLen + 3) & ~3;
        }
        throw new AssertionError("no xattr entry " + name);
    }

    @ParameterizedTest
    @ValueSource(booleans = {true, false})
    void xattrValueOffsetPastTheBlock(boolean csum) throws Exception {
        Path img = fresh(csum);
        long block = Images.statNumber(Images.stat(img, "/xattr"), "File ACL");
        assertTrue(block > 0);
        long entry = xattrEntry(img, block, "big");
        Images.writeLe16(img, entry + 2, BS - 100); // e_value_offs: 700 bytes from here run past the block
        Errno want = csum ? Errno.EBADMSG : Errno.EUCLEAN;
        withFs(img, fs -> {
            long ino = fs.resolve(bytes("/xattr"));
            Expect.errno(want, () -> fs.listXattrs(ino));
            Expect.errno(want, () -> fs.getXattr(ino, "user.big"));
            Expect.errno(want, () -> fs.getXattr(ino, "user.small"));
            assertArrayEquals(bytes("has xattrs"), FsUtil.readAll(fs, ino, 100), "the data is still readable");
            long other = fs.resolve(bytes("/xattr2"));
            assertArrayEquals(bytes("fine"), fs.getXattr(other, "user.other"));
        });
    }

    @Test
    void xattrBlockWithBadMagic() throws Exception {
        Path img = fresh(false);
        long block = Images.statNumber(Images.stat(img, "/xattr"), "File ACL");
        Images.writeLe32(img, block * BS, 0x12345678);
        withFs(img, fs -> Expect.errno(Errno.EUCLEAN, () -> fs.listXattrs(fs.resolve(bytes("/xattr")))));
    }

    @ParameterizedTest
    @ValueSource(strings = {"hugeSize", "offsetIntoEntryTable", "offsetZero"})
    void xattrValueOutsideTheValueArea(String what) throws Exception {
        Path img = fresh(false);
        long block = Images.statNumber(Images.stat(img, "/xattr"), "File ACL");
        long entry = xattrEntry(img, block, "big");
        switch (what) {
            case "hugeSize" -> Images.writeLe32(img, entry + 8, 0x7FFFFFFF);
            case "offsetIntoEntryTable" -> Images.writeLe16(img, entry + 2, 40);
            case "offsetZero" -> Images.writeLe16(img, entry + 2, 0);
            default -> throw new IllegalArgumentException(what);
        }
        withFs(img, fs -> {
            long ino = fs.resolve(bytes("/xattr"));
            Expect.errno(Errno.EUCLEAN, () -> fs.listXattrs(ino));
            Expect.errno(Errno.EUCLEAN, () -> fs.getXattr(ino, "user.big"));
        });
    }

    @Test
    void inInodeXattrValueOffsetPastTheInode() throws Exception {
        Path img = fresh(false);
        long off = Images.inodeByteOffset(img, "/xattr", BS);
        int extra = Images.readLe16(img, off + 0x80);
        long header = off + 128 + extra;
        assertEquals(0xEA020000, Images.readLe32(img, header), "in-inode xattr magic");
        Images.writeLe16(img, header + 4 + 2, 0xFFF0);
        withFs(img, fs -> {
            long ino = fs.resolve(bytes("/xattr"));
            Expect.errno(Errno.EUCLEAN, () -> fs.listXattrs(ino));
            Expect.errno(Errno.EUCLEAN, () -> fs.getXattr(ino, "user.small"));
        });
    }

    // ---------------------------------------------------------------- the whole image, randomly

    /** Random bytes over the metadata blocks: whatever breaks, only Ext4Exception comes out. */
    @Test
    void randomMetadataDamageNeverEscapesAsRuntimeException() throws Exception {
        Random rnd = new Random(1234);
        byte[] pristine = Files.readAllBytes(plainImage);
        List<Long> targets = new ArrayList<>();
        targets.add(etbBlock(plainImage));
        targets.addAll(Images.blocks(plainImage, "/dir"));
        targets.addAll(Images.blocks(plainImage, "/htree").subList(0, 3));
        targets.add(Images.statNumber(Images.stat(plainImage, "/xattr"), "File ACL"));
        long inodeBlock = Images.inodeByteOffset(plainImage, "/xattr", BS) / BS;
        targets.add(inodeBlock);
        assertTimeoutPreemptively(Duration.ofSeconds(60), () -> {
            for (int iter = 0; iter < 300; iter++) {
                byte[] image = pristine.clone();
                for (int k = 0; k < 1 + rnd.nextInt(8); k++) {
                    long block = targets.get(rnd.nextInt(targets.size()));
                    image[(int) (block * BS + rnd.nextInt(BS))] = (byte) rnd.nextInt(256);
                }
                try (Ext4FileSystem fs = Ext4FileSystem.mount(new MemoryBlockDevice(image, true), MountOptions.defaults())) {
                    for (String p : new String[] {"/frag", "/dir", "/htree", "/xattr", "/control"}) {
                        exercise(fs, p);
                    }
                } catch (Ext4Exception e) {
                    // a refused mount is fine
                } catch (Throwable t) {
                    AssertionError ae = new AssertionError("iteration " + iter + ": " + t);
                    ae.initCause(t);
                    throw ae;
                }
            }
        });
    }

    private static void exercise(Ext4FileSystem fs, String path) {
        try {
            long ino = fs.resolve(bytes(path));
            FileAttributes st = fs.stat(ino);
            if ((st.mode() & Inode.S_IFMT) == Inode.S_IFDIR) {
                List<FsUtil.Entry> es = FsUtil.readdirAll(FsUtil.of(fs, ino));
                for (FsUtil.Entry e : es) {
                    try {
                        fs.stat(fs.lookup(ino, e.name()));
                    } catch (Ext4Exception ignored) {
                        // expected for some damage
                    }
                }
            } else {
                fs.read(ino, 0, ByteBuffer.allocate((int) Math.min(st.size(), 1 << 20)));
            }
            for (String n : fs.listXattrs(ino)) {
                fs.getXattr(ino, n);
            }
        } catch (Ext4Exception e) {
            // any errno: the point is that nothing else escapes
        }
    }
}
