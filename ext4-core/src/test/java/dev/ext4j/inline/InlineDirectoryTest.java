package dev.ext4j.inline;

import static dev.ext4j.testutil.FsUtil.bytes;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTimeoutPreemptively;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import dev.ext4j.Errno;
import dev.ext4j.Ext4Exception;
import dev.ext4j.dir.DirFormat;
import dev.ext4j.format.DirEntry;
import dev.ext4j.format.Inode;
import dev.ext4j.fs.Ext4FileSystem;
import dev.ext4j.fs.MountOptions;
import dev.ext4j.testutil.Expect;
import dev.ext4j.testutil.FsUtil;
import dev.ext4j.testutil.FsUtil.Entry;
import dev.ext4j.testutil.Images;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * Inline directories: entries in i_block after the parent's inode number, and more in the
 * system.data value. Valid layouts, resumed readdir, lookup, and corrupt entries that must give
 * EUCLEAN and never an unchecked exception; then the same through a real image damaged by debugfs.
 */
class InlineDirectoryTest {
    private static final long DIR_INO = 50;
    private static final long PARENT = 2;
    private static final long INODES = 1000;

    static DirFormat fmt(int blockSize, boolean fileType) {
        return new DirFormat(blockSize, fileType, false, true, false, new int[4], false, INODES);
    }

    static DirFormat fmt() {
        return fmt(4096, true);
    }

    /** A little-endian region of {@code size} bytes with directory entries put at chosen offsets. */
    static final class Region {
        final ByteBuffer b;

        Region(int size) {
            b = ByteBuffer.allocate(size).order(ByteOrder.LITTLE_ENDIAN);
        }

        /** An entry with exactly these header fields (which may be inconsistent) and the name bytes that fit. */
        Region entry(int off, long ino, int recLen, int nameLen, int fileType, String name) {
            b.putInt(off, (int) ino);
            b.putShort(off + 4, (short) recLen);
            b.put(off + 6, (byte) nameLen);
            b.put(off + 7, (byte) fileType);
            byte[] n = bytes(name);
            for (int i = 0; i < n.length && off + 8 + i < b.capacity(); i++) {
                b.put(off + 8 + i, n[i]);
            }
            return this;
        }

        Region entry(int off, long ino, int recLen, String name) {
            return entry(off, ino, recLen, name.length(), DirEntry.FT_REG_FILE, name);
        }

        Region parent(long ino) {
            b.putInt(0, (int) ino);
            return this;
        }

        byte[] array() {
            return b.array();
        }
    }

    /** i_block: parent 2; a(11) @4, bb(12) @16, deleted zz @28, file3(13) @40 to the end. */
    static Region validIBlock() {
        return new Region(Inode.I_BLOCK_SIZE).parent(PARENT)
                .entry(4, 11, 12, "a")
                .entry(16, 12, 12, "bb")
                .entry(28, 0, 12, "zz")
                .entry(40, 13, 20, "file3");
    }

    /** system.data: x1(20) @0, longer_name(21) @12 to the end (40 bytes). */
    static Region validXattr() {
        return new Region(40)
                .entry(0, 20, 12, 2, DirEntry.FT_DIR, "x1")
                .entry(12, 21, 28, "longer_name");
    }

    static InlineDirectory dir(Region iBlock, Region xattr) {
        return new InlineDirectory(DIR_INO, ByteBuffer.wrap(iBlock.array()).order(ByteOrder.LITTLE_ENDIAN),
                xattr == null ? new byte[0] : xattr.array(), fmt());
    }

    static InlineDirectory dir(Region iBlock, Region xattr, DirFormat fmt) {
        return new InlineDirectory(DIR_INO, ByteBuffer.wrap(iBlock.array()).order(ByteOrder.LITTLE_ENDIAN),
                xattr == null ? new byte[0] : xattr.array(), fmt);
    }

    // ---------------------------------------------------------------- valid directories

    @Test
    void readdirListsDotsThenIBlockThenXattrEntries() throws Exception {
        InlineDirectory d = dir(validIBlock(), validXattr());
        List<Entry> all = FsUtil.readdirAll(FsUtil.of(d));
        assertEquals(List.of(".", "..", "a", "bb", "file3", "x1", "longer_name"), FsUtil.names(all));
        assertEquals(List.of(DIR_INO, PARENT, 11L, 12L, 13L, 20L, 21L), all.stream().map(Entry::ino).toList());
        assertEquals(List.of(DirEntry.FT_DIR, DirEntry.FT_DIR, DirEntry.FT_REG_FILE, DirEntry.FT_REG_FILE,
                DirEntry.FT_REG_FILE, DirEntry.FT_DIR, DirEntry.FT_REG_FILE), all.stream().map(Entry::fileType).toList());
        assertEquals(PARENT, d.parent());
        // positions strictly increase, so a cookie names one place
        for (int i = 1; i < all.size(); i++) {
            assertTrue(all.get(i).next() > all.get(i - 1).next(), "positions increase: " + all);
        }
    }

    @ParameterizedTest
    @ValueSource(ints = {1, 2, 3, 4, 5, 6, 7, 8})
    void readdirResumesAfterEachRefusal(int chunk) throws Exception {
        InlineDirectory d = dir(validIBlock(), validXattr());
        List<Entry> chunked = FsUtil.readdirChunked(FsUtil.of(d), chunk);
        assertEquals(List.of(".", "..", "a", "bb", "file3", "x1", "longer_name"), FsUtil.names(chunked));
    }

    @Test
    void readdirFromEveryPositionGivesASuffix() throws Exception {
        InlineDirectory d = dir(validIBlock(), validXattr());
        List<Entry> all = FsUtil.readdirAll(FsUtil.of(d));
        // from each entry's next position: exactly the entries after it
        for (int i = 0; i < all.size(); i++) {
            List<Entry> rest = readdirFrom(d, all.get(i).next());
            assertEquals(FsUtil.names(all.subList(i + 1, all.size())), FsUtil.names(rest), "after " + all.get(i));
        }
        // from any position at all, even inside an entry: some suffix, never an exception
        for (long pos = 0; pos < 200; pos++) {
            List<String> rest = FsUtil.names(readdirFrom(d, pos));
            List<String> names = FsUtil.names(all);
            assertEquals(names.subList(names.size() - rest.size(), names.size()), rest, "from position " + pos);
        }
        assertEquals(List.of(), readdirFrom(d, Long.MAX_VALUE / 2));
    }

    private static List<Entry> readdirFrom(InlineDirectory d, long pos) throws Ext4Exception {
        List<Entry> out = new ArrayList<>();
        d.readdir(pos, (name, ino, type, next) -> out.add(new Entry(name.clone(), ino, type, next)));
        return out;
    }

    @Test
    void lookupFindsEntriesInBothRegions() throws Exception {
        InlineDirectory d = dir(validIBlock(), validXattr());
        assertEquals(DIR_INO, d.lookup(bytes(".")));
        assertEquals(PARENT, d.lookup(bytes("..")));
        assertEquals(11, d.lookup(bytes("a")));
        assertEquals(12, d.lookup(bytes("bb")));
        assertEquals(13, d.lookup(bytes("file3")));
        assertEquals(20, d.lookup(bytes("x1")));
        assertEquals(21, d.lookup(bytes("longer_name")));
        assertEquals(0, d.lookup(bytes("zz")), "a deleted entry is not found");
        assertEquals(0, d.lookup(bytes("file")));
        assertEquals(0, d.lookup(bytes("file33")));
        assertEquals(0, d.lookup(bytes("longer_nam")));
        assertEquals(0, d.lookup(bytes("nope")));
        assertEquals(0, d.lookup(new byte[] {'a', 0}));
    }

    @Test
    void emptyInlineDirectoryHasOnlyDots() throws Exception {
        // as mkdir makes it: the parent, then one unused entry spanning the remaining 56 bytes
        Region iBlock = new Region(Inode.I_BLOCK_SIZE).parent(7).entry(4, 0, 56, 0, 0, "");
        InlineDirectory d = dir(iBlock, null);
        assertEquals(List.of(".", ".."), FsUtil.names(FsUtil.readdirChunked(FsUtil.of(d), 1)));
        assertEquals(7, d.lookup(bytes("..")));
        assertEquals(0, d.lookup(bytes("x")));
    }

    @Test
    void entriesOnlyInXattrRegion() throws Exception {
        Region iBlock = new Region(Inode.I_BLOCK_SIZE).parent(PARENT).entry(4, 0, 56, 0, 0, "");
        InlineDirectory d = dir(iBlock, validXattr());
        assertEquals(List.of(".", "..", "x1", "longer_name"), FsUtil.names(FsUtil.readdirChunked(FsUtil.of(d), 2)));
        assertEquals(21, d.lookup(bytes("longer_name")));
    }

    @Test
    void withoutFiletypeFeatureNameLenIs16Bits() throws Exception {
        Region iBlock = new Region(Inode.I_BLOCK_SIZE).parent(PARENT)
                .entry(4, 11, 12, 1, 0, "a")
                .entry(16, 12, 44, 3, 0, "abc");
        InlineDirectory d = dir(iBlock, null, fmt(4096, false));
        List<Entry> all = FsUtil.readdirAll(FsUtil.of(d));
        assertEquals(List.of(".", "..", "a", "abc"), FsUtil.names(all));
        assertEquals(DirEntry.FT_UNKNOWN, all.get(3).fileType());
        // a file_type byte read as the high byte of name_len makes the name too long
        Region bad = new Region(Inode.I_BLOCK_SIZE).parent(PARENT).entry(4, 11, 56, 1, 1, "a");
        Expect.errno(Errno.EUCLEAN, () -> FsUtil.readdirAll(FsUtil.of(dir(bad, null, fmt(4096, false)))));
    }

    // ---------------------------------------------------------------- corrupt entries

    /** i_block whose last entry (file3 @40) has rec_len 20 + {@code over}, overrunning the region. */
    @ParameterizedTest
    @ValueSource(ints = {1, 2, 3, 4, 5, 6, 7, 8})
    void lastIBlockEntryOverrunningItsRegion(int over) {
        Region iBlock = validIBlock().entry(40, 13, 20 + over, "file3");
        // with and without the xattr region after it: i_block's own end is the bound either way
        for (Region x : new Region[] {null, validXattr()}) {
            InlineDirectory d = dir(iBlock, x);
            Expect.errno(Errno.EUCLEAN, () -> FsUtil.readdirAll(FsUtil.of(d)));
            Expect.errno(Errno.EUCLEAN, () -> d.lookup(bytes("file3")));
            Expect.errno(Errno.EUCLEAN, () -> d.lookup(bytes("x1")));
            Expect.errno(Errno.EUCLEAN, () -> d.lookup(bytes("absent")));
        }
    }

    @ParameterizedTest
    @ValueSource(ints = {1, 2, 3, 4, 5, 6, 7, 8})
    void lastXattrEntryOverrunningItsRegion(int over) throws Exception {
        Region x = validXattr().entry(12, 21, 28 + over, "longer_name");
        InlineDirectory d = dir(validIBlock(), x);
        Expect.errno(Errno.EUCLEAN, () -> FsUtil.readdirAll(FsUtil.of(d)));
        Expect.errno(Errno.EUCLEAN, () -> d.lookup(bytes("longer_name")));
        Expect.errno(Errno.EUCLEAN, () -> d.lookup(bytes("absent")));
        assertEquals(11, d.lookup(bytes("a")), "entries before the damage are still found");
    }

    @Test
    void headerThatDoesNotFitInIBlock() {
        // a(12) bb(12) then 28 bytes: the walk stops at 56 with 4 bytes left for an 8-byte header
        Region iBlock = new Region(Inode.I_BLOCK_SIZE).parent(PARENT)
                .entry(4, 11, 12, "a")
                .entry(16, 12, 12, "bb")
                .entry(28, 13, 28, "file3");
        InlineDirectory d = dir(iBlock, validXattr());
        Expect.errno(Errno.EUCLEAN, () -> FsUtil.readdirAll(FsUtil.of(d)));
        Expect.errno(Errno.EUCLEAN, () -> d.lookup(bytes("x1")));
    }

    @ParameterizedTest
    @ValueSource(ints = {1, 2, 4, 6, 7})
    void xattrValueTooShortForAHeader(int len) {
        Region x = new Region(len);
        if (len >= 4) {
            x.b.putInt(0, 20);
        }
        InlineDirectory d = dir(validIBlock(), x);
        Expect.errno(Errno.EUCLEAN, () -> FsUtil.readdirAll(FsUtil.of(d)));
        Expect.errno(Errno.EUCLEAN, () -> d.lookup(bytes("absent")));
    }

    @Test
    void xattrEntryHeaderCutShortAfterValidEntry() {
        // x1 (12 bytes) then 4 bytes: a header cannot fit
        Region x = new Region(16).entry(0, 20, 12, "x1");
        x.b.putInt(12, 21);
        InlineDirectory d = dir(validIBlock(), x);
        Expect.errno(Errno.EUCLEAN, () -> FsUtil.readdirAll(FsUtil.of(d)));
    }

    @ParameterizedTest
    @ValueSource(ints = {5, 9, 13, 44, 200, 255})
    void nameLenLargerThanRecLen(int nameLen) {
        Region iBlock = validIBlock().entry(16, 12, 12, nameLen, DirEntry.FT_REG_FILE, "bb");
        InlineDirectory d = dir(iBlock, validXattr());
        Expect.errno(Errno.EUCLEAN, () -> FsUtil.readdirAll(FsUtil.of(d)));
        Expect.errno(Errno.EUCLEAN, () -> d.lookup(bytes("file3")));
    }

    @ParameterizedTest
    @ValueSource(ints = {1024, 4096, 65536})
    void recLenZero(int blockSize) {
        Region iBlock = validIBlock().entry(16, 12, 0, "bb");
        InlineDirectory d = dir(iBlock, validXattr(), fmt(blockSize, true));
        assertTimeoutPreemptively(Duration.ofSeconds(5), () -> {
            Expect.errno(Errno.EUCLEAN, () -> FsUtil.readdirAll(FsUtil.of(d)));
            Expect.errno(Errno.EUCLEAN, () -> d.lookup(bytes("file3")));
        });
        Region x = validXattr().entry(0, 20, 0, "x1");
        InlineDirectory dx = dir(validIBlock(), x, fmt(blockSize, true));
        assertTimeoutPreemptively(Duration.ofSeconds(5), () -> Expect.errno(Errno.EUCLEAN, () -> FsUtil.readdirAll(FsUtil.of(dx))));
    }

    @ParameterizedTest
    @ValueSource(ints = {4, 8, 13, 14, 15, 17, 18, 19, 65535})
    void recLenTooSmallOrNotMultipleOfFour(int recLen) {
        Region iBlock = validIBlock().entry(16, 12, recLen, "bb");
        InlineDirectory d = dir(iBlock, validXattr());
        Expect.errno(Errno.EUCLEAN, () -> FsUtil.readdirAll(FsUtil.of(d)));
        Expect.errno(Errno.EUCLEAN, () -> d.lookup(bytes("x1")));
    }

    @Test
    void inodeNumberPastTheInodeCount() {
        Region iBlock = validIBlock().entry(16, INODES + 1, 12, "bb");
        InlineDirectory d = dir(iBlock, validXattr());
        Expect.errno(Errno.EUCLEAN, () -> FsUtil.readdirAll(FsUtil.of(d)));
        Expect.errno(Errno.EUCLEAN, () -> d.lookup(bytes("bb")));
    }

    /** Random damage: every outcome is a result or EUCLEAN, never an unchecked exception or a hang. */
    @Test
    void randomDamageNeverEscapesAsRuntimeException() {
        assertTimeoutPreemptively(Duration.ofSeconds(60), () -> {
            Random rnd = new Random(42);
            int errors = 0;
            for (int iter = 0; iter < 20_000; iter++) {
                byte[] ib = validIBlock().array();
                byte[] xv = validXattr().array();
                if (iter % 10 == 0) {
                    rnd.nextBytes(ib);
                    xv = new byte[rnd.nextInt(90)];
                    rnd.nextBytes(xv);
                } else {
                    int flips = 1 + rnd.nextInt(4);
                    for (int f = 0; f < flips; f++) {
                        if (rnd.nextBoolean()) {
                            ib[4 + rnd.nextInt(56)] = (byte) rnd.nextInt(256);
                        } else {
                            xv[rnd.nextInt(xv.length)] = (byte) rnd.nextInt(256);
                        }
                    }
                    if (rnd.nextInt(8) == 0) {
                        xv = Arrays.copyOf(xv, rnd.nextInt(60));
                    }
                }
                DirFormat f = fmt(new int[] {1024, 4096, 65536}[rnd.nextInt(3)], rnd.nextInt(4) != 0);
                InlineDirectory d = new InlineDirectory(DIR_INO, ByteBuffer.wrap(ib).order(ByteOrder.LITTLE_ENDIAN), xv, f);
                long pos = switch (rnd.nextInt(4)) {
                    case 0 -> 0;
                    case 1 -> 24;
                    default -> rnd.nextInt(160);
                };
                try {
                    int[] n = {0};
                    d.readdir(pos, (name, ino, type, next) -> {
                        assertTrue(next > 0);
                        return ++n[0] < 100;
                    });
                    d.lookup(bytes("bb"));
                    d.lookup(new byte[] {(byte) rnd.nextInt(256)});
                } catch (Ext4Exception e) {
                    assertEquals(Errno.EUCLEAN, e.errno(), e.toString());
                    errors++;
                } catch (Throwable t) {
                    AssertionError ae = new AssertionError("iteration " + iter + ": " + t + "\n i_block "
                            + Arrays.toString(ib) + "\n xattr " + Arrays.toString(xv));
                    ae.initCause(t);
                    throw ae;
                }
            }
            assertTrue(errors > 1000, "the damage was detected often: " + errors);
        });
    }

    // ---------------------------------------------------------------- through a real image

    /**
     * An inline_data image: "good" and "bad" are inline directories; "bad" gets its last i_block
     * entry's rec_len pushed past i_block with debugfs, "badx" an entry overrunning its system.data
     * value, "extended" a valid extra entry in system.data.
     */
    @ParameterizedTest
    @ValueSource(strings = {"metadata_csum", "^metadata_csum"})
    void damagedInlineDirectoryInImage(String csum, @TempDir Path tmp) throws Exception {
        Path src = Files.createDirectories(tmp.resolve("src"));
        for (String d : new String[] {"good", "bad", "badx", "extended"}) {
            Files.createDirectory(src.resolve(d));
            for (String n : new String[] {"n01", "n02", "n03"}) {
                Files.writeString(src.resolve(d).resolve(n), d + "/" + n);
            }
        }
        Files.createDirectory(src.resolve("blockdir"));
        for (int i = 0; i < 40; i++) {
            Files.writeString(src.resolve("blockdir").resolve("file-number-" + i), "x" + i);
        }
        Path img = Images.mkfs(tmp.resolve("img"), "16M", List.of("-b", "4096", "-I", "256", "-O", "inline_data," + csum), src);
        Images.assertClean(img);

        // "bad": the last entry in i_block gets rec_len + 4
        long badOff = Images.inodeByteOffset(img, "/bad", 4096);
        ByteBuffer ib = ByteBuffer.wrap(Images.readAt(img, badOff + Inode.I_BLOCK, Inode.I_BLOCK_SIZE)).order(ByteOrder.LITTLE_ENDIAN);
        int off = 4;
        int last = -1;
        while (off < Inode.I_BLOCK_SIZE) {
            int rec = ib.getShort(off + 4) & 0xFFFF;
            assertTrue(rec >= 12 && off + rec <= Inode.I_BLOCK_SIZE, "mkfs made a sane inline dir");
            last = off;
            off += rec;
        }
        assertEquals(Inode.I_BLOCK_SIZE, off);
        int word = (last + 4) / 4;
        int oldWord = ib.getInt(last + 4);
        int newWord = (oldWord & 0xFFFF0000) | ((oldWord & 0xFFFF) + 4);
        Images.debugfs(img, "sif /bad block[" + word + "] 0x" + Integer.toHexString(newWord));
        byte[] lastName = Arrays.copyOfRange(ib.array(), last + 8, last + 8 + (ib.get(last + 6) & 0xFF));

        // "extended": one more entry in system.data, pointing at n01 (whose link count goes up)
        long n01 = Images.inodeOf(img, "/extended/n01");
        Path val = tmp.resolve("val");
        Files.write(val, new Region(16).entry(0, n01, 16, "extra").array());
        Images.debugfs(img, "ea_set -f " + val + " /extended system.data", "sif /extended size 76",
                "sif /extended/n01 links_count 2");
        // "badx": the same, but the entry's rec_len is 20 in a 16-byte value
        long n01x = Images.inodeOf(img, "/badx/n01");
        Path valx = tmp.resolve("valx");
        Files.write(valx, new Region(16).entry(0, n01x, 20, "extra").array());
        Images.debugfs(img, "ea_set -f " + valx + " /badx system.data", "sif /badx size 76");

        Images.Result fsck = Images.fsckCheck(img);
        assertTrue((fsck.exitCode() & 4) != 0, "e2fsck sees the damage:\n" + fsck.all());
        String before = Images.sha256(img);

        try (Ext4FileSystem fs = Ext4FileSystem.open(img, MountOptions.defaults().withReadOnly(true))) {
            long bad = fs.resolve(bytes("/bad"));
            assertTrue((fs.stat(bad).flags() & Inode.INLINE_DATA_FL) != 0);
            Expect.errno(Errno.EUCLEAN, () -> FsUtil.readdirAll(FsUtil.of(fs, bad)));
            Expect.errno(Errno.EUCLEAN, () -> fs.lookup(bad, lastName));
            Expect.errno(Errno.EUCLEAN, () -> fs.resolve(bytes("/bad/absent")));

            long badx = fs.resolve(bytes("/badx"));
            Expect.errno(Errno.EUCLEAN, () -> FsUtil.readdirAll(FsUtil.of(fs, badx)));
            Expect.errno(Errno.EUCLEAN, () -> fs.lookup(badx, bytes("extra")));

            long good = fs.resolve(bytes("/good"));
            assertTrue((fs.stat(good).flags() & Inode.INLINE_DATA_FL) != 0);
            assertEquals(List.of(".", "..", "n01", "n02", "n03"), sorted(FsUtil.names(FsUtil.readdirChunked(FsUtil.of(fs, good), 2))));
            assertArrayEquals(bytes("good/n02"), FsUtil.readAll(fs, fs.resolve(bytes("/good/n02")), 3));

            long ext = fs.resolve(bytes("/extended"));
            assertEquals(76, fs.stat(ext).size());
            List<Entry> e = FsUtil.readdirChunked(FsUtil.of(fs, ext), 1);
            assertEquals(List.of(".", "..", "extra", "n01", "n02", "n03"), sorted(FsUtil.names(e)));
            assertEquals("extra", e.get(e.size() - 1).nameString(), "the system.data entries come after i_block's");
            assertEquals(n01, fs.lookup(ext, bytes("extra")));
            assertArrayEquals(bytes("extended/n01"), FsUtil.readAll(fs, fs.resolve(bytes("/extended/extra")), 100));

            long blockdir = fs.resolve(bytes("/blockdir"));
            assertEquals(0, fs.stat(blockdir).flags() & Inode.INLINE_DATA_FL, "40 entries do not fit inline");
            assertEquals(42, FsUtil.readdirChunked(FsUtil.of(fs, blockdir), 7).size());
            assertArrayEquals(bytes("x39"), FsUtil.readAll(fs, fs.resolve(bytes("/blockdir/file-number-39")), 10));
        }
        assertEquals(before, Images.sha256(img), "a read-only mount never writes");
    }

    private static List<String> sorted(List<String> l) {
        List<String> c = new ArrayList<>(l);
        c.sort(null);
        return c;
    }

    @Test
    void sanityOfTheRegionBuilder() {
        byte[] a = validIBlock().array();
        assertEquals(Inode.I_BLOCK_SIZE, a.length);
        assertEquals(2, a[0]);
        assertEquals(12, a[8]);
        assertEquals('a', a[12]);
        if (validXattr().array().length != 40) {
            fail("xattr region length");
        }
    }
}
