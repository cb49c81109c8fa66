package dev.ext4j.dir;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.ext4j.Errno;
import dev.ext4j.format.DirEntry;
import dev.ext4j.testutil.Expect;
import dev.ext4j.testutil.Images;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * {@link DirentRegion} on the first block of a directory made by debugfs: fill it to the last
 * byte, delete every other entry (merging into the previous one, or keeping a first entry with
 * inode 0), fit a longer name into merged room, then e2fsck -fn must be clean and debugfs ls must
 * list exactly the entries left.
 */
class DirentRegionTest {
    @TempDir
    Path work;

    private static byte[] b(String s) {
        return s.getBytes(StandardCharsets.UTF_8);
    }

    @ParameterizedTest(name = "metadata_csum={0}")
    @ValueSource(booleans = {true, false})
    void fillDeleteAndReuseALeaf(boolean csum) throws Exception {
        List<String> mkfs = csum ? List.of("-b", "1024") : List.of("-b", "1024", "-O", "^metadata_csum");
        DirFixture fx = DirFixture.create(work, "region" + csum, "32M", mkfs, 1, 0);
        long target = fx.targets[0];
        int bs = fx.bs;
        int end = bs - (csum ? DirEntry.TAIL_SIZE : 0);
        long pblk = fx.map.map(0, 1).physical();
        ByteBuffer b = ByteBuffer.allocate(bs).order(ByteOrder.LITTLE_ENDIAN);
        b.put(0, fx.cache.get(pblk), 0, bs);
        DirentRegion r = new DirentRegion(b, 0, end, fx.fmt, "test block");

        // "." (12) and ".." leave end - 24 bytes; 8-byte names take 16 each
        TreeMap<String, Long> model = new TreeMap<>();
        int n = 0;
        for (; ; n++) {
            byte[] name = b(String.format("name-%03d", n));
            int off = r.findSlot(name);
            if (off < 0) {
                break;
            }
            r.insert(off, name, target, DirEntry.FT_REG_FILE);
            model.put(new String(name, StandardCharsets.UTF_8), target);
        }
        assertEquals((end - 24) / 16, n, "entries that fit in the block");
        Expect.errno(Errno.EEXIST, () -> r.findSlot(b("name-000")));
        assertEquals(-1, r.findSlot(b("zzzzzzzz")), "no room left for another 8-byte name");

        // delete the first, two neighbours and the last: each joins the entry before it
        int at9 = r.find(b("name-009"));
        for (int i : new int[] {0, 10, 11, n - 1}) {
            byte[] name = b(String.format("name-%03d", i));
            int off = r.find(name);
            assertTrue(off > 0, "found " + i);
            int prev = r.previous(off);
            int prevLen = DirEntry.recLen(b, prev, bs);
            int len = DirEntry.recLen(b, off, bs);
            r.delete(off, prev);
            assertEquals(prevLen + len, DirEntry.recLen(b, prev, bs), "rec_len of the entry before " + i);
            assertEquals(-1, r.find(name));
            model.remove(new String(name, StandardCharsets.UTF_8));
        }
        Expect.errno(Errno.EUCLEAN, () -> r.previous(13));
        assertEquals(16 + 16 + 16, DirEntry.recLen(b, at9, bs), "name-009 took both deleted neighbours");
        // a 20-byte name needs 28 bytes: ".." has 16 spare now, name-009 has 32
        byte[] longer = b("a-longer-name-of-20b");
        assertEquals(at9, r.findSlot(longer), "the first entry with room for 28 bytes");
        assertEquals(32, r.room(at9));
        r.insert(at9, longer, target, DirEntry.FT_REG_FILE);
        assertEquals(16, DirEntry.recLen(b, at9, bs), "name-009 shrank to its minimum");
        assertEquals(at9 + 16, r.find(longer));
        model.put("a-longer-name-of-20b", target);

        if (csum) {
            BlockDirectory.sealLeaf(b, fx.fmt, fx.inodeSeed, "test block");
        }
        fx.cache.update(pblk, x -> x.put(0, b, 0, bs));
        fx.cache.flush();
        fx.links.put(target, model.size() + 1);
        fx.finish();

        Images.Result fsck = Images.run(List.of("e2fsck", "-fn", fx.img.toString()));
        assertEquals(0, fsck.exitCode(), () -> "e2fsck -fn:\n" + fsck.all());
        Map<String, Long> listed = new TreeMap<>();
        for (String line : Images.debugfsRead(fx.img, "ls -p /d").split("\n")) {
            String[] f = line.split("/", -1);
            if (f.length == 8 && Long.parseLong(f[1]) != 0 && !f[5].equals(".") && !f[5].equals("..")) {
                listed.put(f[5], Long.parseLong(f[1]));
            }
        }
        assertEquals(model, listed, "debugfs ls lists the entries left");
    }

    @ParameterizedTest(name = "first entry of a region, metadata_csum={0}")
    @ValueSource(booleans = {true, false})
    void deletingTheFirstEntryKeepsItsPlace(boolean csum) throws Exception {
        List<String> mkfs = csum ? List.of("-b", "1024") : List.of("-b", "1024", "-O", "^metadata_csum");
        DirFixture fx = DirFixture.create(work, "first" + csum, "32M", mkfs, 1, 0);
        fx.close();
        // a region that starts at an entry, as an inline directory's do: the first one has no previous
        ByteBuffer b = ByteBuffer.allocate(64).order(ByteOrder.LITTLE_ENDIAN);
        DirEntry.setRecLen(b, 0, 64, fx.bs);
        DirentRegion r = new DirentRegion(b, 0, 64, fx.fmt, "region");
        r.insert(r.findSlot(b("abc")), b("abc"), fx.targets[0], DirEntry.FT_REG_FILE);
        int second = r.findSlot(b("defg"));
        r.insert(second, b("defg"), fx.targets[0], DirEntry.FT_REG_FILE);
        assertEquals(0, r.find(b("abc")));
        assertEquals(-1, r.previous(0));
        r.delete(0, -1);
        assertEquals(0, DirEntry.inode(b, 0), "first entry keeps its place with inode 0");
        assertEquals(DirEntry.minRecLen(3), DirEntry.recLen(b, 0, fx.bs), "and its rec_len");
        assertEquals(0, DirEntry.nameLen(b, 0, fx.fmt.fileType()), "name_len zeroed");
        assertEquals(DirEntry.minRecLen(3), r.find(b("defg")));
        assertEquals(0, r.previous(DirEntry.minRecLen(3)), "the deleted first entry still precedes the next");
        // the freed first slot takes a name that fits in it again
        assertEquals(0, r.findSlot(b("xy")));
    }
}
