package dev.ext4j.fs;

import static dev.ext4j.fs.RwModel.b;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.ext4j.Errno;
import dev.ext4j.Ext4Exception;
import dev.ext4j.format.Inode;
import dev.ext4j.fs.RwModel.Driver;
import dev.ext4j.fs.RwModel.Node;
import dev.ext4j.testutil.Expect;
import dev.ext4j.testutil.FsUtil;
import dev.ext4j.testutil.Images;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * Inline data written by ext4j (fs/ext4/inline.c): files that start inline and move to blocks,
 * inline truncate and fallocate, inline directories that grow into the system.data xattr, become
 * block directories and then htrees, renames between inline and block directories, and long
 * symlinks kept inline. Each test checks content at every step, looks at the inodes with debugfs
 * ("Size of inline data"), ends with a clean {@code e2fsck -fn}, and has the kernel read the tree.
 */
class InlineWriteTest {
    @TempDir
    Path work;

    /** An inline_data configuration; {@code inodeSize} fixes the inline limit. */
    record V(String name, int blockSize, int inodeSize, boolean extents, List<String> args) {
        /**
         * ext4_get_max_inline_size() of a new inode with no other xattr: i_block, plus the inode
         * body after i_extra_isize (32) less the ibody header, the system.data entry (20) and the
         * entry list's end (4), rounded down to 4.
         */
        int maxInline() {
            return 60 + ((inodeSize - 128 - 32 - 4 - 20 - 4) & ~3);
        }

        /** The largest system.data value of an inline directory (i_size is 60 plus this once it grows). */
        int maxDirValue() {
            return maxInline() - 60;
        }

        @Override
        public String toString() {
            return name;
        }
    }

    static Stream<V> variants() {
        return Stream.of(
                new V("inline-4k", 4096, 256, true, List.of("-b", "4096", "-O", "inline_data")),
                new V("inline-1k", 1024, 256, true, List.of("-b", "1024", "-O", "inline_data")),
                new V("inline-1k-inode1024", 1024, 1024, true, List.of("-b", "1024", "-I", "1024", "-O", "inline_data")),
                new V("inline-nocsum-nodirindex", 4096, 256, true, List.of("-b", "4096", "-O", "inline_data,^metadata_csum,^dir_index")),
                new V("inline-ext3", 4096, 256, false, List.of("-b", "4096", "-t", "ext3", "-O", "inline_data")));
    }

    private Path mkfs(V v) {
        return Images.mkfs(work.resolve(v.name() + ".img"), "64M", v.args(), null);
    }

    private static Ext4FileSystem openRw(Path img) throws Exception {
        Ext4FileSystem fs = Ext4FileSystem.open(img, MountOptions.defaults());
        assertFalse(fs.isReadOnly(), "mounted read-write: " + fs.messages());
        return fs;
    }

    private static boolean inline(Ext4FileSystem fs, long ino) throws Exception {
        return (fs.stat(ino).flags() & Inode.INLINE_DATA_FL) != 0;
    }

    private static boolean extents(Ext4FileSystem fs, long ino) throws Exception {
        return (fs.stat(ino).flags() & Inode.EXTENTS_FL) != 0;
    }

    /** debugfs's "Size of inline data" of {@code path}, or -1 when the inode is not inline. */
    private static int debugfsInlineSize(Path img, String path) {
        String out = Images.stat(img, "\"" + path + "\"");
        Matcher m = Pattern.compile("Size of inline data: (\\d+)").matcher(out);
        return m.find() ? Integer.parseInt(m.group(1)) : -1;
    }

    /** debugfs's "system.data (N)" of {@code path}, or -1 when there is none. */
    private static int debugfsSystemData(Path img, String path) {
        String out = Images.stat(img, "\"" + path + "\"");
        Matcher m = Pattern.compile("system\\.data \\((\\d+)\\)").matcher(out);
        return m.find() ? Integer.parseInt(m.group(1)) : -1;
    }

    /** e2fsck, the model through a read-only ext4j mount, and through the kernel. */
    private void checkImage(Path img, Node root) throws Exception {
        RwModel.assertFsckClean(img);
        try (Ext4FileSystem ro = Ext4FileSystem.open(img, MountOptions.defaults().withReadOnly(true))) {
            RwModel.verifyFs(ro, root);
        }
        RwModel.verifyKernel(img, work.resolve("mnt"), root);
    }

    private static void checkContent(Driver d, String path) throws Exception {
        long ino = d.ino(path);
        Node n = d.node(path);
        assertEquals(n.content.size, d.fs.stat(ino).size(), path + ": size");
        n.content.check(path, (off, len) -> RwModel.fsRead(d.fs, ino, off, len));
        byte[] all = FsUtil.readAll(d.fs, ino, 7);
        assertArrayEquals(n.content.read(0, (int) n.content.size), all, path + ": read in 7-byte pieces");
    }

    private static byte[] random(Random rnd, int n) {
        byte[] d = new byte[n];
        rnd.nextBytes(d);
        return d;
    }

    // ================================================================ files

    /**
     * A file written in pieces stays inline up to the limit, with content checked after every
     * write, and moves to one block (extent or block map) with the write that passes it; then
     * grows on in blocks. Holes inside the inline data read as zeros.
     */
    @ParameterizedTest(name = "{0}")
    @MethodSource("variants")
    void filesStartInlineAndMoveToBlocks(V v) throws Exception {
        Path img = mkfs(v);
        Random rnd = new Random(v.name().hashCode());
        int max = v.maxInline();
        int bs = v.blockSize();
        Driver d;
        try (Ext4FileSystem fs = openRw(img)) {
            d = new Driver(fs);
            d.mkdir("/f", 0755);
            // an empty new file is not inline yet (as the kernel leaves it until the first write)
            long empty = d.create("/f/empty", 0644);
            assertFalse(inline(fs, empty), "an empty file is not inline");
            assertEquals(v.extents(), extents(fs, empty));

            long grow = d.create("/f/grow", 0644);
            int[] steps = {1, 29, 30, 1, max - 61, 0};
            for (int s : steps) {
                if (s > 0) {
                    d.write("/f/grow", d.node("/f/grow").content.size, random(rnd, s));
                }
                checkContent(d, "/f/grow");
                assertTrue(inline(fs, grow), "size " + fs.stat(grow).size() + " is inline");
                assertEquals(0, fs.stat(grow).blocks512() - (fs.stat(grow).size() + 511) / 512, "an inline file has no blocks");
            }
            assertEquals(max, fs.stat(grow).size());
            d.write("/f/grow", max, random(rnd, 1));
            checkContent(d, "/f/grow");
            assertFalse(inline(fs, grow), "one byte past the limit moves to a block");
            assertEquals(v.extents(), extents(fs, grow));
            assertEquals(bs / 512, fs.stat(grow).blocks512(), "one block");
            d.write("/f/grow", max + 1, random(rnd, 3 * bs + 17), rnd);
            checkContent(d, "/f/grow");

            // exactly the limit, in one write, then past it in one write
            d.create("/f/max", 0644);
            d.write("/f/max", 0, random(rnd, max));
            assertTrue(inline(fs, d.ino("/f/max")));
            d.create("/f/over", 0644);
            d.write("/f/over", 0, random(rnd, max + 1));
            assertFalse(inline(fs, d.ino("/f/over")), "a first write past the limit goes to a block");
            checkContent(d, "/f/over");

            // a hole inside the inline data, then a write past the limit far away (block 0 keeps the inline bytes)
            d.create("/f/hole", 0644);
            d.write("/f/hole", 0, random(rnd, 10));
            d.write("/f/hole", 50, random(rnd, 5));
            assertTrue(inline(fs, d.ino("/f/hole")));
            checkContent(d, "/f/hole");
            d.write("/f/hole", 3L * bs + 100, random(rnd, 7));
            assertFalse(inline(fs, d.ino("/f/hole")));
            checkContent(d, "/f/hole");

            // an overwrite in the middle of the xattr part of an inline file
            d.create("/f/over-mid", 0644);
            d.write("/f/over-mid", 0, random(rnd, max - 3));
            d.write("/f/over-mid", 55, random(rnd, 20));
            d.write("/f/over-mid", 0, random(rnd, 2));
            assertTrue(inline(fs, d.ino("/f/over-mid")));
            checkContent(d, "/f/over-mid");

            // a user xattr in the inode body leaves less room: the file moves sooner
            long x = d.create("/f/xattr", 0644);
            fs.setXattr(x, "user.k", new byte[16], 0);
            d.write("/f/xattr", 0, random(rnd, 60));
            assertTrue(inline(fs, x));
            d.write("/f/xattr", 60, random(rnd, max - 60));
            assertFalse(inline(fs, x), "with a 16-byte xattr beside it, " + max + " bytes do not fit inline");
            assertArrayEquals(new byte[16], fs.getXattr(x, "user.k"));
            checkContent(d, "/f/xattr");
            long y = d.create("/f/xattr-after", 0644);
            d.write("/f/xattr-after", 0, random(rnd, 70));
            fs.setXattr(y, "user.after", b("value"), 0);
            assertArrayEquals(b("value"), fs.getXattr(y, "user.after"));
            assertTrue(inline(fs, y));
            checkContent(d, "/f/xattr-after");

            // unlinking inline files frees their inodes
            d.create("/f/gone", 0644);
            d.write("/f/gone", 0, random(rnd, 40));
            d.unlink("/f/gone");
        }
        checkImage(img, d.root);
        assertEquals(max, debugfsInlineSize(img, "/f/max"), "debugfs: /f/max inline");
        assertEquals(max - 60, debugfsSystemData(img, "/f/max"));
        assertEquals(-1, debugfsInlineSize(img, "/f/hole"), "debugfs: /f/hole left the inode");
        assertEquals(-1, debugfsInlineSize(img, "/f/over"));
        assertEquals(-1, debugfsSystemData(img, "/f/grow"), "no system.data after the move");
        assertEquals(70, debugfsInlineSize(img, "/f/xattr-after"));
    }

    /**
     * Truncate as the kernel does it: down within the inline data shrinks the system.data value;
     * up within the inline size only sets i_size (zeros); up past it moves the data to a block.
     */
    @ParameterizedTest(name = "{0}")
    @MethodSource("variants")
    void truncateInlineFiles(V v) throws Exception {
        Path img = mkfs(v);
        Random rnd = new Random(3);
        int max = v.maxInline();
        Driver d;
        try (Ext4FileSystem fs = openRw(img)) {
            d = new Driver(fs);
            d.mkdir("/t", 0755);
            d.create("/t/down20", 0644);
            d.write("/t/down20", 0, random(rnd, 100));
            d.truncate("/t/down20", 20);
            assertTrue(inline(fs, d.ino("/t/down20")));
            checkContent(d, "/t/down20");

            d.create("/t/down70", 0644);
            d.write("/t/down70", 0, random(rnd, 100));
            d.truncate("/t/down70", 70);
            checkContent(d, "/t/down70");
            d.write("/t/down70", 90, random(rnd, 5)); // the bytes cut off must come back as zeros
            checkContent(d, "/t/down70");

            d.create("/t/up-within", 0644);
            d.write("/t/up-within", 0, random(rnd, 10));
            d.truncate("/t/up-within", 50);
            assertTrue(inline(fs, d.ino("/t/up-within")), "up within i_block stays inline");
            checkContent(d, "/t/up-within");
            d.truncate("/t/up-within", 60);
            assertTrue(inline(fs, d.ino("/t/up-within")));
            checkContent(d, "/t/up-within");

            d.create("/t/up-past", 0644);
            d.write("/t/up-past", 0, random(rnd, 10));
            d.truncate("/t/up-past", 100);
            assertFalse(inline(fs, d.ino("/t/up-past")), "up past the inline size moves to a block (as Linux 6.18)");
            checkContent(d, "/t/up-past");

            d.create("/t/up-far", 0644);
            d.write("/t/up-far", 0, random(rnd, max));
            d.truncate("/t/up-far", 5_000_000);
            assertFalse(inline(fs, d.ino("/t/up-far")));
            assertEquals(v.blockSize() / 512, fs.stat(d.ino("/t/up-far")).blocks512(), "only block 0 is allocated");
            checkContent(d, "/t/up-far");

            d.create("/t/zero", 0644);
            d.write("/t/zero", 0, random(rnd, max));
            d.truncate("/t/zero", 0);
            assertTrue(inline(fs, d.ino("/t/zero")), "an inline file truncated to 0 stays inline");
            checkContent(d, "/t/zero");
            d.write("/t/zero", 0, random(rnd, 33));
            checkContent(d, "/t/zero");

            // a file that moved to blocks and was emptied may start inline again
            d.create("/t/again", 0644);
            d.write("/t/again", 0, random(rnd, 2 * max));
            d.truncate("/t/again", 0);
            d.write("/t/again", 0, random(rnd, 5));
            assertTrue(inline(fs, d.ino("/t/again")));
            checkContent(d, "/t/again");

            // fallocate moves an inline file to blocks first (ext4_fallocate())
            d.create("/t/falloc", 0644);
            d.write("/t/falloc", 0, random(rnd, 40));
            if (v.extents()) {
                d.fallocate("/t/falloc", 0, 0, 3L * v.blockSize());
                assertFalse(inline(fs, d.ino("/t/falloc")));
                checkContent(d, "/t/falloc");
                d.create("/t/punch", 0644);
                d.write("/t/punch", 0, random(rnd, 90));
                d.fallocate("/t/punch", 0x03, 10, 20);
                assertFalse(inline(fs, d.ino("/t/punch")));
                checkContent(d, "/t/punch");
            } else {
                // no unwritten extents without the extents feature: converted, then EOPNOTSUPP
                long ino = d.ino("/t/falloc");
                Expect.errno(Errno.EOPNOTSUPP, () -> fs.fallocate(ino, 0, 0, 4096));
                assertFalse(inline(fs, ino));
                checkContent(d, "/t/falloc");
            }
        }
        checkImage(img, d.root);
        assertEquals(60, debugfsInlineSize(img, "/t/down20"));
        assertEquals(0, debugfsSystemData(img, "/t/down20"));
        assertEquals(95, debugfsInlineSize(img, "/t/down70"), "cut to 70, then written up to 95: still inline");
        assertEquals(60, debugfsInlineSize(img, "/t/up-within"));
        assertEquals(-1, debugfsInlineSize(img, "/t/up-past"));
        assertEquals(60, debugfsInlineSize(img, "/t/zero"));
    }

    // ================================================================ directories

    /** Names of 1..n in a fixed width, so each entry takes the same room (12 bytes for "nNN"). */
    private static String entry(int i) {
        return String.format("n%02d", i);
    }

    /**
     * A new directory is inline (60 bytes, no blocks); entries fill i_block, then the directory
     * grows into the system.data xattr (i_size 60 + the value), then moves to a block with "."
     * and "..", then to an htree (dir_index) as entries keep coming; then everything is removed
     * again and the directories are removed. e2fsck checks each stage.
     */
    @ParameterizedTest(name = "{0}")
    @MethodSource("variants")
    void inlineDirectoriesGrowConvertAndShrink(V v) throws Exception {
        Path img = mkfs(v);
        int bs = v.blockSize();
        // entries of 12 bytes: 4 fit in i_block's 56, the value holds maxDirValue / 12 more
        int inIBlock = 4;
        int inValue = v.maxDirValue() / 12;
        Driver d;
        try (Ext4FileSystem fs = openRw(img)) {
            d = new Driver(fs);
            long dir = d.mkdir("/d", 0755);
            assertTrue(inline(fs, dir), "a new directory is inline");
            assertEquals(60, fs.stat(dir).size());
            assertEquals(0, fs.stat(dir).blocks512());
            assertEquals(Ext4FileSystem.ROOT_INO, fs.lookup(dir, b("..")));
            for (int i = 0; i < inIBlock; i++) {
                d.create("/d/" + entry(i), 0644);
            }
            assertEquals(60, fs.stat(dir).size(), "i_block holds " + inIBlock + " entries");
            d.create("/d/" + entry(inIBlock), 0644);
            assertTrue(inline(fs, dir));
            assertEquals(60 + v.maxDirValue(), fs.stat(dir).size(), "grown into the xattr");
            RwModel.verifyFs(fs, d.root);
            for (int i = inIBlock + 1; i < inIBlock + inValue; i++) {
                d.create("/d/" + entry(i), 0644);
            }
            assertTrue(inline(fs, dir), (inIBlock + inValue) + " entries are inline");
            RwModel.verifyFs(fs, d.root);
        }
        RwModel.assertFsckClean(img);
        assertEquals(60 + v.maxDirValue(), debugfsInlineSize(img, "/d"), "debugfs: /d inline");
        try (Ext4FileSystem fs = openRw(img)) {
            d = new Driver(fs, d.root);
            long dir = d.ino("/d");
            // removing from both regions, then adding again into the holes
            d.unlink("/d/" + entry(0));
            d.unlink("/d/" + entry(2));
            d.unlink("/d/" + entry(inIBlock + 1));
            assertTrue(inline(fs, dir));
            d.create("/d/z0", 0644);
            d.create("/d/z1", 0644);
            d.create("/d/z2", 0644);
            assertTrue(inline(fs, dir), "the holes took the new names");
            RwModel.verifyFs(fs, d.root);
            d.create("/d/this-name-does-not-fit-anywhere-inline", 0644);
            assertFalse(inline(fs, dir), "a name that fits in neither region moves the directory to a block");
            assertEquals(bs, fs.stat(dir).size());
            assertEquals(bs / 512, fs.stat(dir).blocks512());
            assertEquals(v.extents(), extents(fs, dir));
            assertEquals(Ext4FileSystem.ROOT_INO, fs.lookup(dir, b("..")));
            RwModel.verifyFs(fs, d.root);
        }
        RwModel.assertFsckClean(img);
        assertEquals(-1, debugfsInlineSize(img, "/d"));
        try (Ext4FileSystem fs = openRw(img)) {
            d = new Driver(fs, d.root);
            long dir = d.ino("/d");
            int more = 3 * bs / 16;
            for (int i = 0; i < more; i++) {
                d.create("/d/long-" + i, 0644);
            }
            if (!v.args().contains("inline_data,^metadata_csum,^dir_index")) {
                assertTrue((fs.stat(dir).flags() & Inode.INDEX_FL) != 0, "an htree after " + more + " more entries");
            }
            RwModel.verifyFs(fs, d.root);
            for (String name : new ArrayList<>(d.node("/d").children.keySet())) {
                d.unlink("/d/" + name);
            }
            d.rmdir("/d");
            // an inline directory filled and emptied, then removed
            d.mkdir("/e", 0700);
            for (int i = 0; i < inIBlock + inValue; i++) {
                d.mkdir("/e/" + entry(i), 0700);
            }
            assertTrue(inline(fs, d.ino("/e")));
            assertEquals(2 + inIBlock + inValue, fs.stat(d.ino("/e")).nlink());
            Expect.errno(Errno.ENOTEMPTY, () -> fs.rmdir(Ext4FileSystem.ROOT_INO, b("e")));
            long eIno = d.ino("/e");
            for (int i = 0; i < inIBlock + inValue; i++) {
                String last = entry(inIBlock + inValue - 1);
                Expect.errno(Errno.EEXIST, () -> fs.mkdir(eIno, b(last), 0700, 0, 0));
                d.rmdir("/e/" + entry(i));
            }
            assertTrue(inline(fs, d.ino("/e")));
            d.rmdir("/e");
            d.mkdir("/kept", 0755);
            d.create("/kept/only", 0600);
        }
        checkImage(img, d.root);
        assertEquals(60, debugfsInlineSize(img, "/kept"));
    }

    /**
     * Renames of files and directories between inline and block directories, within an inline
     * directory, over existing names, and the ".." of a moved inline directory (the parent number
     * at the start of i_block); rmdir of emptied inline directories; a rename into a full inline
     * directory that converts it while the same directory loses the old name.
     */
    @ParameterizedTest(name = "{0}")
    @MethodSource("variants")
    void renamesBetweenInlineAndBlockDirectories(V v) throws Exception {
        Path img = mkfs(v);
        Random rnd = new Random(11);
        Driver d;
        try (Ext4FileSystem fs = openRw(img)) {
            d = new Driver(fs);
            d.mkdir("/in", 0755);
            d.mkdir("/blk", 0755);
            for (int i = 0; i < 100; i++) {
                d.create("/blk/filler-" + i, 0644);
            }
            assertFalse(inline(fs, d.ino("/blk")));
            assertTrue(inline(fs, d.ino("/in")));
            d.create("/in/f", 0644);
            d.write("/in/f", 0, random(rnd, 30));
            d.create("/blk/g", 0644);
            d.write("/blk/g", 0, random(rnd, 3000));

            d.rename("/in/f", "/blk/f");            // inline -> block
            d.rename("/blk/g", "/in/g");            // block -> inline
            d.rename("/in/g", "/in/g2");            // within an inline directory
            d.create("/in/victim", 0644);
            d.rename("/blk/f", "/in/victim");       // over a file in an inline directory
            d.create("/blk/victim2", 0644);
            d.rename("/in/g2", "/blk/victim2");     // from inline over a file in a block directory
            assertTrue(inline(fs, d.ino("/in")));

            // directories: an inline one moves between parents of both kinds; ".." follows
            long sub = d.mkdir("/in/sub", 0755);
            d.create("/in/sub/inner", 0644);
            d.rename("/in/sub", "/blk/sub");
            assertEquals(d.ino("/blk"), fs.lookup(sub, b("..")), "'..' of the moved inline directory");
            assertTrue(inline(fs, sub));
            d.rename("/blk/sub", "/in/sub-back");
            assertEquals(d.ino("/in"), fs.lookup(sub, b("..")));
            long nested = d.mkdir("/in/sub-back/nested", 0755);
            d.rename("/in/sub-back/nested", "/nested-top");
            assertEquals(Ext4FileSystem.ROOT_INO, fs.lookup(nested, b("..")));
            // a block directory moves into an inline one
            long big = d.mkdir("/blk/bigdir", 0755);
            for (int i = 0; i < 100; i++) {
                d.create("/blk/bigdir/x" + i, 0644);
            }
            assertFalse(inline(fs, big));
            d.rename("/blk/bigdir", "/in/sub-back/bigdir");
            assertEquals(d.ino("/in/sub-back"), fs.lookup(big, b("..")));
            // an inline directory replaces an empty inline directory, and one in a block directory
            d.mkdir("/in/empty-target", 0755);
            d.mkdir("/in/mover", 0755);
            d.create("/in/mover/m", 0644);
            d.rename("/in/mover", "/in/empty-target");
            d.mkdir("/blk/empty-target", 0755);
            d.rename("/in/empty-target", "/blk/empty-target");
            Expect.errno(Errno.ENOTEMPTY, () -> fs.rename(d.ino("/in"), b("sub-back"), d.ino("/blk"), b("empty-target")));

            // fill an inline directory, then rename inside it to a name that does not fit: the
            // directory becomes a block one in the middle of the rename
            d.mkdir("/full", 0755);
            int k = 0;
            while (inline(fs, d.ino("/full"))) {
                d.create("/full/" + entry(k++), 0644);
            }
            d.unlink("/full/" + entry(k - 1));
            assertFalse(inline(fs, d.ino("/full")));
            d.mkdir("/full2", 0755);
            for (int i = 0; i < k - 1; i++) {
                d.create("/full2/" + entry(i), 0644);
            }
            assertTrue(inline(fs, d.ino("/full2")), (k - 1) + " entries still inline");
            d.rename("/full2/" + entry(0), "/full2/a-much-longer-name-than-before-so-it-moves");
            assertFalse(inline(fs, d.ino("/full2")));
            RwModel.verifyFs(fs, d.root);

            // emptied inline directories go
            d.unlink("/in/sub-back/inner");
            for (String n : new ArrayList<>(d.node("/in/sub-back/bigdir").children.keySet())) {
                d.unlink("/in/sub-back/bigdir/" + n);
            }
            d.rmdir("/in/sub-back/bigdir");
            d.rmdir("/in/sub-back");
            assertTrue(inline(fs, d.ino("/in")));
        }
        checkImage(img, d.root);
        assertTrue(debugfsInlineSize(img, "/in") >= 60, "debugfs: /in inline");
        assertEquals(-1, debugfsInlineSize(img, "/blk"));
    }

    // ================================================================ symlinks

    /**
     * Symlinks of 60 bytes and more up to the inline limit are kept inline, as e2fsprogs (mkfs -d,
     * debugfs) and older kernels store them; shorter ones are fast symlinks, longer ones take a block.
     */
    @ParameterizedTest(name = "{0}")
    @MethodSource("variants")
    void longSymlinksAreInline(V v) throws Exception {
        Path img = mkfs(v);
        int max = v.maxInline();
        int[] lengths = {1, 59, 60, 61, 100, max - 1, max, max + 1, Math.min(v.blockSize(), 4096) - 1};
        Driver d;
        try (Ext4FileSystem fs = openRw(img)) {
            d = new Driver(fs);
            d.mkdir("/s", 0755);
            for (int len : lengths) {
                byte[] target = new byte[len];
                for (int i = 0; i < len; i++) {
                    target[i] = (byte) ('a' + i % 26);
                }
                long ino = d.symlink("/s/l" + len, target);
                assertArrayEquals(target, fs.readlink(ino), len + "-byte target");
                assertEquals(len >= 60 && len <= max, inline(fs, ino), len + "-byte target inline");
                assertEquals(len > max ? v.blockSize() / 512 : 0, fs.stat(ino).blocks512(), len + "-byte target blocks");
            }
            Expect.errno(Errno.EINVAL, () -> fs.write(d.ino("/s/l100"), 0, ByteBuffer.wrap(b("x"))));
            d.unlink("/s/l100");
        }
        checkImage(img, d.root);
        assertEquals(max - 60, debugfsSystemData(img, "/s/l" + max));
        assertEquals(1, debugfsSystemData(img, "/s/l61"));
        assertEquals(-1, debugfsSystemData(img, "/s/l59"));
    }

    // ================================================================ ENOSPC

    /**
     * With no block left, what needs none still works (writes within the inline limit, inline
     * directories, entries that fit inline, inline symlinks) and what needs one fails with ENOSPC
     * and changes nothing: a file stays inline with its bytes, a directory stays inline with its
     * entries, the new inode of a failed create is freed.
     */
    @Test
    void enospcLeavesInlineInodesAsTheyWere() throws Exception {
        V v = new V("inline-1k-small", 1024, 256, true, List.of("-b", "1024", "-O", "inline_data"));
        Path img = Images.mkfs(work.resolve("full.img"), "8M", v.args(), null);
        int max = v.maxInline();
        Random rnd = new Random(5);
        Driver d;
        try (Ext4FileSystem fs = openRw(img)) {
            d = new Driver(fs);
            d.mkdir("/d", 0755);
            for (int i = 0; i < 4 + v.maxDirValue() / 12; i++) {
                d.create("/d/" + entry(i), 0644);
            }
            d.create("/small", 0644);
            d.write("/small", 0, random(rnd, 50));
            // fill every block
            long big = d.create("/big", 0644);
            Node bn = d.node("/big");
            while (true) {
                byte[] data = random(rnd, 256 * 1024);
                try {
                    int w = fs.write(big, bn.content.size, ByteBuffer.wrap(data));
                    bn.content.write(bn.content.size, data, 0, w);
                } catch (dev.ext4j.Ext4Exception e) {
                    assertEquals(Errno.ENOSPC, e.errno());
                    break;
                }
            }
            long dir = d.ino("/d");
            long small = d.ino("/small");
            long inodesBefore = fs.statfs(false).freeInodes();
            Expect.errno(Errno.ENOSPC, () -> fs.write(small, 0, ByteBuffer.wrap(new byte[max + 1])));
            Expect.errno(Errno.ENOSPC, () -> fs.truncate(small, max + 1));
            Expect.errno(Errno.ENOSPC, () -> fs.fallocate(small, 0, 0, 1024));
            assertTrue(inline(fs, small));
            checkContent(d, "/small");
            Expect.errno(Errno.ENOSPC, () -> fs.mknod(dir, b("does-not-fit-inline"), Inode.S_IFREG | 0644, 0, 0, 0, 0));
            assertTrue(inline(fs, dir), "the directory stays inline");
            assertEquals(inodesBefore, fs.statfs(false).freeInodes(), "the inode of the failed create is free again");
            Expect.errno(Errno.ENOSPC, () -> fs.symlink(Ext4FileSystem.ROOT_INO, b("toolong"), new byte[max + 1], 0, 0));
            RwModel.verifyFs(fs, d.root);
            // what needs no block works
            d.write("/small", 50, random(rnd, max - 50));
            checkContent(d, "/small");
            d.mkdir("/newdir", 0755);
            d.create("/newdir/a", 0644);
            d.symlink("/newdir/link", b("l".repeat(max)));
            d.unlink("/d/" + entry(0));
            d.create("/d/zz9", 0644);
            assertTrue(inline(fs, dir));
        }
        checkImage(img, d.root);
    }

    // ================================================================ corruption

    /**
     * A damaged inline directory or inline file answers EUCLEAN to the change that meets the
     * damage, naming the inode, and nothing is written: a rec_len running past i_block, and an
     * inline flag without its system.data xattr.
     */
    @Test
    void damagedInlineInodesGiveEuclean() throws Exception {
        V v = new V("inline-nocsum", 4096, 256, true, List.of("-b", "4096", "-O", "inline_data,^metadata_csum"));
        Path img = mkfs(v);
        long dir;
        long file;
        try (Ext4FileSystem fs = openRw(img)) {
            dir = fs.mkdir(Ext4FileSystem.ROOT_INO, b("d"), 0755, 0, 0);
            fs.mknod(dir, b("a"), Inode.S_IFREG | 0644, 0, 0, 0, 0);
            file = fs.mknod(Ext4FileSystem.ROOT_INO, b("f"), Inode.S_IFREG | 0644, 0, 0, 0, 0);
            fs.write(file, 0, ByteBuffer.wrap(b("inline bytes")));
        }
        long dirAt = Images.inodeByteOffset(img, "<" + dir + ">", v.blockSize());
        Images.writeLe16(img, dirAt + Inode.I_BLOCK + 4 + 4, 64); // the first entry's rec_len: past i_block
        long fileAt = Images.inodeByteOffset(img, "<" + file + ">", v.blockSize());
        Images.writeAt(img, fileAt + 128 + 32, new byte[4]); // no ibody magic: system.data is gone
        byte[] dirBefore = Images.readAt(img, dirAt, v.inodeSize());
        byte[] fileBefore = Images.readAt(img, fileAt, v.inodeSize());
        try (Ext4FileSystem fs = Ext4FileSystem.open(img, MountOptions.defaults().withReadOnly(false))) {
            Ext4Exception e = Expect.errno(Errno.EUCLEAN, () -> fs.mknod(dir, b("b"), Inode.S_IFREG | 0644, 0, 0, 0, 0));
            assertTrue(e.getMessage().contains("inode " + dir), e.getMessage());
            Expect.errno(Errno.EUCLEAN, () -> fs.unlink(dir, b("a")));
            Expect.errno(Errno.EUCLEAN, () -> fs.rmdir(Ext4FileSystem.ROOT_INO, b("d")));
            e = Expect.errno(Errno.EUCLEAN, () -> fs.write(file, 3, ByteBuffer.wrap(b("x"))));
            assertTrue(e.getMessage().contains("inode " + file), e.getMessage());
            Expect.errno(Errno.EUCLEAN, () -> fs.write(file, 0, ByteBuffer.wrap(new byte[5000])));
            Expect.errno(Errno.EUCLEAN, () -> fs.truncate(file, 2));
            Expect.errno(Errno.EUCLEAN, () -> fs.fallocate(file, 0, 0, 4096));
        }
        assertArrayEquals(dirBefore, Images.readAt(img, dirAt, v.inodeSize()), "the directory inode was not written");
        assertArrayEquals(fileBefore, Images.readAt(img, fileAt, v.inodeSize()), "the file inode was not written");
    }

    // ================================================================ concurrency

    /**
     * Threads creating, writing (around the inline limit), truncating, renaming and removing in
     * small directories that keep being made anew (so they start inline and convert while others
     * work in them), then e2fsck and a read through ext4j and the kernel. Each write puts the
     * pattern of {@link ReadWriteTest#pattern}, so the content can be checked afterwards.
     */
    @Test
    void concurrentChangesAroundTheInlineLimits() throws Exception {
        V v = variants().findFirst().orElseThrow();
        Path img = mkfs(v);
        int threads = 4;
        try (Ext4FileSystem fs = Ext4FileSystem.open(img, new MountOptions(false, 256 << 10, 16))) {
            long top = fs.mkdir(Ext4FileSystem.ROOT_INO, b("c"), 0755, 0, 0);
            long[] dirs = new long[threads];
            for (int i = 0; i < threads; i++) {
                dirs[i] = fs.mkdir(top, b("d" + i), 0755, 0, 0);
            }
            java.util.concurrent.ExecutorService pool = java.util.concurrent.Executors.newFixedThreadPool(threads);
            List<java.util.concurrent.Future<Integer>> futures = new ArrayList<>();
            for (int t = 0; t < threads; t++) {
                int id = t;
                futures.add(pool.submit(() -> inlineWorker(fs, dirs, id, v.maxInline())));
            }
            int ok = 0;
            try {
                for (java.util.concurrent.Future<Integer> f : futures) {
                    ok += f.get(120, java.util.concurrent.TimeUnit.SECONDS);
                }
            } finally {
                pool.shutdownNow();
            }
            assertTrue(ok > 1000, "most operations succeeded: " + ok);
        }
        RwModel.assertFsckClean(img);
        Node root;
        try (Ext4FileSystem ro = Ext4FileSystem.open(img, MountOptions.defaults().withReadOnly(true))) {
            root = ReadWriteTest.modelOf(ro, true);
            RwModel.verifyFs(ro, root);
        }
        RwModel.verifyKernel(img, work.resolve("mnt"), root);
    }

    private static final java.util.Set<Errno> RACES = java.util.EnumSet.of(Errno.ENOENT, Errno.EEXIST, Errno.ENOTEMPTY,
            Errno.EISDIR, Errno.ENOTDIR, Errno.EINVAL);

    private static int inlineWorker(Ext4FileSystem fs, long[] dirs, int id, int max) throws Exception {
        Random rnd = new Random(77 + id);
        int ok = 0;
        for (int i = 0; i < 1500; i++) {
            long dirA = dirs[rnd.nextInt(dirs.length)];
            long dirB = dirs[rnd.nextInt(dirs.length)];
            byte[] f1 = b("f" + rnd.nextInt(10));
            byte[] f2 = b("f" + rnd.nextInt(10));
            byte[] sub = b("s" + rnd.nextInt(2));
            int op = rnd.nextInt(100);
            try {
                if (rnd.nextInt(3) == 0) {
                    dirA = fs.lookup(dirA, sub);
                }
                if (op < 20) {
                    fs.mknod(dirA, f1, Inode.S_IFREG | 0644, 0, 0, 0, 0);
                } else if (op < 40) {
                    long ino = fs.lookup(dirA, f1);
                    fs.open(ino);
                    try {
                        if ((fs.stat(ino).mode() & Inode.S_IFMT) == Inode.S_IFREG) {
                            long off = rnd.nextInt(max + 20);
                            int len = 1 + rnd.nextInt(rnd.nextInt(8) == 0 ? 3000 : 40);
                            byte[] data = new byte[len];
                            for (int k = 0; k < len; k++) {
                                data[k] = ReadWriteTest.pattern(ino, off + k);
                            }
                            assertEquals(len, fs.write(ino, off, ByteBuffer.wrap(data)));
                        }
                    } finally {
                        fs.release(ino);
                    }
                } else if (op < 45) {
                    long ino = fs.lookup(dirA, f1);
                    fs.open(ino);
                    try {
                        if ((fs.stat(ino).mode() & Inode.S_IFMT) == Inode.S_IFREG) {
                            fs.truncate(ino, rnd.nextInt(max + 40));
                        }
                    } finally {
                        fs.release(ino);
                    }
                } else if (op < 55) {
                    fs.rename(dirA, f1, dirA, f2);
                } else if (op < 65) {
                    long from = dirs[id];
                    long to = dirs[(id + 1) % dirs.length];
                    if (rnd.nextBoolean()) {
                        fs.rename(from, f1, to, f2);
                    } else {
                        fs.rename(from, sub, to, b("s" + rnd.nextInt(2)));
                    }
                } else if (op < 75) {
                    fs.unlink(dirA, f1);
                } else if (op < 82) {
                    fs.mkdir(dirs[rnd.nextInt(dirs.length)], sub, 0755, 0, 0);
                } else if (op < 90) {
                    // empty a subdirectory and remove it, so a new inline one takes its place
                    long parent = dirs[rnd.nextInt(dirs.length)];
                    long s = fs.lookup(parent, sub);
                    List<byte[]> names = new ArrayList<>();
                    fs.readdir(s, 0, (name, ino, type, next) -> {
                        if (type != dev.ext4j.format.DirEntry.FT_DIR) {
                            names.add(name.clone());
                        }
                        return true;
                    });
                    for (byte[] n : names) {
                        try {
                            fs.unlink(s, n);
                        } catch (dev.ext4j.Ext4Exception e) {
                            if (!RACES.contains(e.errno())) {
                                throw e;
                            }
                        }
                    }
                    fs.rmdir(parent, sub);
                } else if (op < 95) {
                    fs.symlink(dirA, f1, b("t".repeat(55 + rnd.nextInt(90))), 0, 0);
                } else {
                    fs.readdir(dirB, 0, (name, ino, type, next) -> true);
                }
                ok++;
            } catch (dev.ext4j.Ext4Exception e) {
                if (!RACES.contains(e.errno())) {
                    throw new AssertionError("thread " + id + ", operation " + i + " (" + op + "): " + e, e);
                }
            }
        }
        return ok;
    }

    // ================================================================ against the kernel

    /**
     * The kernel and ext4j make the same choices on the same workload: a file of the inline limit
     * stays inline and one byte more does not, a directory grows into the xattr at the fifth
     * 12-byte entry and becomes a block at the one after the value fills. The kernel writes one
     * copy through a read-write loop mount, ext4j the other; debugfs compares the inodes.
     */
    @Test
    void sameInlineChoicesAsTheKernel() throws Exception {
        V v = variants().findFirst().orElseThrow();
        Path img = mkfs(v);
        Path mnt = Files.createDirectories(work.resolve("kmnt"));
        int max = v.maxInline();
        int dirEntries = 4 + v.maxDirValue() / 12;
        Images.Result r = Images.run(List.of("mount", "-o", "loop", img.toString(), mnt.toString()));
        if (r.exitCode() != 0) {
            System.err.println("loop mount failed, no kernel comparison: " + r.all().trim());
            return;
        }
        try {
            Files.write(mnt.resolve("k-max"), new byte[max]);
            Files.write(mnt.resolve("k-over"), new byte[max + 1]);
            Files.write(mnt.resolve("k-70"), new byte[70]);
            for (long[] c : FILE_CASES) {
                try (java.io.RandomAccessFile f = new java.io.RandomAccessFile(mnt.resolve("k-" + caseName(c)).toFile(), "rw")) {
                    f.write(new byte[(int) c[0]]);
                    if (c[1] >= 0) {
                        f.setLength(c[1]);
                    }
                    if (c[2] >= 0) {
                        f.seek(c[2]);
                        f.write(new byte[5]);
                    }
                    if (c[3] >= 0) {
                        f.setLength(c[3]);
                    }
                }
            }
            for (int n : new int[] {4, 5, dirEntries, dirEntries + 1}) {
                Path dir = Files.createDirectories(mnt.resolve("k-dir" + n));
                for (int i = 0; i < n; i++) {
                    Files.createFile(dir.resolve(entry(i)));
                }
            }
            Path ops = Files.createDirectories(mnt.resolve("k-dirops"));
            for (String[] op : dirOps(dirEntries)) {
                switch (op[0]) {
                    case "add" -> Files.createFile(ops.resolve(op[1]));
                    case "rm" -> Files.delete(ops.resolve(op[1]));
                    default -> Files.move(ops.resolve(op[1]), ops.resolve(op[2]));
                }
            }
        } finally {
            Images.Result u = Images.run(List.of("umount", mnt.toString()));
            if (u.exitCode() != 0) {
                Images.run(List.of("umount", "-l", mnt.toString()));
                throw new IllegalStateException("umount " + mnt + ": " + u.all());
            }
        }
        try (Ext4FileSystem fs = openRw(img)) {
            long root = Ext4FileSystem.ROOT_INO;
            for (String[] f : new String[][] {{"e-max", "" + max}, {"e-over", "" + (max + 1)}, {"e-70", "70"}}) {
                long ino = fs.mknod(root, b(f[0]), Inode.S_IFREG | 0644, 0, 0, 0, 0);
                fs.write(ino, 0, ByteBuffer.wrap(new byte[Integer.parseInt(f[1])]));
            }
            for (long[] c : FILE_CASES) {
                long ino = fs.mknod(root, b("e-" + caseName(c)), Inode.S_IFREG | 0644, 0, 0, 0, 0);
                fs.write(ino, 0, ByteBuffer.wrap(new byte[(int) c[0]]));
                if (c[1] >= 0) {
                    fs.truncate(ino, c[1]);
                }
                if (c[2] >= 0) {
                    fs.write(ino, c[2], ByteBuffer.wrap(new byte[5]));
                }
                if (c[3] >= 0) {
                    fs.truncate(ino, c[3]);
                }
            }
            for (int n : new int[] {4, 5, dirEntries, dirEntries + 1}) {
                long dir = fs.mkdir(root, b("e-dir" + n), 0755, 0, 0);
                for (int i = 0; i < n; i++) {
                    fs.mknod(dir, b(entry(i)), Inode.S_IFREG | 0644, 0, 0, 0, 0);
                }
            }
            long ops = fs.mkdir(root, b("e-dirops"), 0755, 0, 0);
            for (String[] op : dirOps(dirEntries)) {
                switch (op[0]) {
                    case "add" -> fs.mknod(ops, b(op[1]), Inode.S_IFREG | 0644, 0, 0, 0, 0);
                    case "rm" -> fs.unlink(ops, b(op[1]));
                    default -> fs.rename(ops, b(op[1]), ops, b(op[2]));
                }
            }
        }
        RwModel.assertFsckClean(img);
        List<String> names = new ArrayList<>(List.of("max", "over", "70"));
        for (long[] c : FILE_CASES) {
            names.add(caseName(c));
        }
        for (int n : new int[] {4, 5, dirEntries, dirEntries + 1}) {
            names.add("dir" + n);
        }
        names.add("dirops");
        List<String> kernel = new ArrayList<>();
        List<String> ours = new ArrayList<>();
        for (String n : names) {
            kernel.add(summary(img, n, "/k-" + n));
            ours.add(summary(img, n, "/e-" + n));
        }
        assertEquals(String.join("\n", kernel), String.join("\n", ours), "the kernel's inodes (expected) and ext4j's");
        for (int n : new int[] {4, 5, dirEntries, dirEntries + 1}) {
            assertEquals(dirLayout(img, "/k-dir" + n, v), dirLayout(img, "/e-dir" + n, v), "dir" + n + ": entry layout");
        }
        assertEquals(dirLayout(img, "/k-dirops", v), dirLayout(img, "/e-dirops", v), "dirops: entry layout");
        assertEquals(max, debugfsInlineSize(img, "/e-max"));
        assertEquals(-1, debugfsInlineSize(img, "/e-over"));
        assertEquals(60, debugfsInlineSize(img, "/e-dir4"));
        assertEquals(60 + v.maxDirValue(), debugfsInlineSize(img, "/e-dir" + dirEntries));
        assertEquals(-1, debugfsInlineSize(img, "/e-dir" + (dirEntries + 1)));
    }

    /**
     * The entries of a directory as they lie on disk, inode numbers left out: rec_len, name_len,
     * file type and name of each, region by region (i_block after the parent number, the
     * system.data value) for an inline directory, or through the first block (tail included).
     */
    private static List<String> dirLayout(Path img, String path, V v) {
        long at = Images.inodeByteOffset(img, path, v.blockSize());
        ByteBuffer in = ByteBuffer.wrap(Images.readAt(img, at, v.inodeSize())).order(java.nio.ByteOrder.LITTLE_ENDIAN);
        List<String> out = new ArrayList<>();
        if ((in.getInt(0x20) & Inode.INLINE_DATA_FL) != 0) {
            out.add("parent " + in.getInt(0x28));
            entries(in, 0x28 + 4, 0x28 + 60, out);
            int first = 128 + (in.getShort(0x80) & 0xFFFF) + 4;
            for (int e = first; in.getInt(e) != 0; e += (16 + (in.get(e) & 0xFF) + 3) & ~3) {
                if ((in.get(e + 1) & 0xFF) == 7 && (in.get(e) & 0xFF) == 4) {
                    int off = first + (in.getShort(e + 2) & 0xFFFF);
                    out.add("system.data " + in.getInt(e + 8));
                    entries(in, off, off + in.getInt(e + 8), out);
                }
            }
            return out;
        }
        long block = Images.blocks(img, path).get(0);
        ByteBuffer b = ByteBuffer.wrap(Images.readAt(img, block * v.blockSize(), v.blockSize())).order(java.nio.ByteOrder.LITTLE_ENDIAN);
        entries(b, 0, v.blockSize(), out);
        return out;
    }

    private static void entries(ByteBuffer b, int from, int to, List<String> out) {
        for (int off = from; off < to; ) {
            int rec = b.getShort(off + 4) & 0xFFFF;
            int nl = b.get(off + 6) & 0xFF;
            byte[] name = new byte[nl];
            b.get(off + 8, name);
            out.add(rec + "/" + nl + "/" + (b.get(off + 7) & 0xFF) + "/" + (b.getInt(off) == 0 ? "-" : "") + new String(name, java.nio.charset.StandardCharsets.ISO_8859_1));
            if (rec < 8) {
                out.add("bad rec_len at " + off);
                return;
            }
            off += rec;
        }
    }

    /**
     * Files written by both: {first write's length, truncate to, 5 bytes written at, truncate to},
     * -1 for a step left out.
     */
    private static final long[][] FILE_CASES = {
        {100, 20, -1, -1}, {100, 70, -1, -1}, {10, 50, -1, -1}, {10, 60, -1, -1}, {10, 100, -1, -1}, {100, 120, -1, -1},
        {10, 5000, -1, -1}, {10, -1, 50, -1}, {10, -1, 200, -1}, {100, 50, 80, -1}, {0, 30, -1, -1}, {0, 30, 2, -1},
        {0, 5000, 2, -1}, {0, 5000, 4000, -1}, {0, 5000, 2, 100}, {0, 5000, 2, 40}, {0, 5000, 2, 6000}, {100, -1, -1, 0},
    };

    private static String caseName(long[] c) {
        return "w" + c[0] + "-t" + c[1] + "-p" + c[2] + "-t" + c[3];
    }

    /**
     * Removals from both regions (the first entry of a region keeps its place with inode 0, the
     * others join the one before), names that reuse the room, renames within the directory.
     */
    private static List<String[]> dirOps(int fill) {
        List<String[]> ops = new ArrayList<>();
        for (int i = 0; i < fill; i++) {
            ops.add(new String[] {"add", entry(i)});
        }
        for (String n : new String[] {entry(0), entry(2), entry(4), entry(6), entry(fill - 1)}) {
            ops.add(new String[] {"rm", n});
        }
        ops.add(new String[] {"add", "ab"});
        ops.add(new String[] {"add", "cd"});
        ops.add(new String[] {"mv", entry(3), "x3"});
        ops.add(new String[] {"add", "a-longer-name"});
        ops.add(new String[] {"mv", entry(1), "y1"});
        return ops;
    }

    /** What debugfs says of an inode's inline state: inline size, system.data, i_size, i_blocks, flags. */
    private static String summary(Path img, String name, String path) {
        String st = Images.stat(img, path);
        return name + ": inline " + debugfsInlineSize(img, path) + ", system.data " + debugfsSystemData(img, path)
                + ", size " + Images.statNumber(st, "Size") + ", blockcount " + Images.statNumber(st, "Blockcount") + ", flags " + flags(st);
    }

    private static String flags(String stat) {
        Matcher m = Pattern.compile("Flags: (0x[0-9a-f]+)").matcher(stat);
        return m.find() ? m.group(1) : "?";
    }
}
