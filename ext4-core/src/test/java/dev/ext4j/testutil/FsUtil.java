package dev.ext4j.testutil;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import dev.ext4j.Ext4Exception;
import dev.ext4j.dir.DirEntries;
import dev.ext4j.fs.Ext4FileSystem;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/** Directory walking and whole-file reads over the ext4j API, with the resume protocol checked. */
public final class FsUtil {
    private FsUtil() {
    }

    /** One entry as the sink saw it. */
    public record Entry(byte[] name, long ino, int fileType, long next) {
        public String nameString() {
            return new String(name, StandardCharsets.ISO_8859_1);
        }

        @Override
        public String toString() {
            return nameString() + "@" + ino + "/t" + fileType + "->" + next;
        }
    }

    @FunctionalInterface
    public interface Readdir {
        void readdir(long position, dev.ext4j.dir.DirSink sink) throws Ext4Exception;
    }

    public static Readdir of(Ext4FileSystem fs, long dirIno) {
        return (pos, sink) -> fs.readdir(dirIno, pos, sink);
    }

    public static Readdir of(DirEntries dir) {
        return dir::readdir;
    }

    /** All entries in one call. */
    public static List<Entry> readdirAll(Readdir rd) throws Ext4Exception {
        List<Entry> out = new ArrayList<>();
        rd.readdir(0, (name, ino, type, next) -> {
            out.add(new Entry(name.clone(), ino, type, next));
            return true;
        });
        return out;
    }

    /**
     * All entries, taking {@code chunk} per call and refusing the next one, then resuming from the
     * last taken entry's position. Checks that the refused entry is the first one of the next call
     * and that the chunked walk equals the one-call walk.
     */
    public static List<Entry> readdirChunked(Readdir rd, int chunk) throws Ext4Exception {
        List<Entry> out = new ArrayList<>();
        long pos = 0;
        Entry refused = null;
        for (int round = 0; ; round++) {
            if (round > 1_000_000) {
                fail("readdir does not terminate");
            }
            List<Entry> taken = new ArrayList<>();
            Entry[] rej = {null};
            rd.readdir(pos, (name, ino, type, next) -> {
                if (rej[0] != null) {
                    fail("sink called again after it refused an entry");
                }
                if (taken.size() == chunk) {
                    rej[0] = new Entry(name.clone(), ino, type, next);
                    return false;
                }
                taken.add(new Entry(name.clone(), ino, type, next));
                return true;
            });
            if (refused != null) {
                assertTrue(!taken.isEmpty(), "resuming at " + pos + " gave nothing, but " + refused + " was refused");
                Entry first = taken.get(0);
                assertArrayEquals(refused.name(), first.name(), "entry refused before is delivered first on resume");
                assertEquals(refused.ino(), first.ino());
                assertEquals(refused.next(), first.next());
            }
            out.addAll(taken);
            if (rej[0] == null) {
                break;
            }
            assertTrue(!taken.isEmpty(), "no progress");
            refused = rej[0];
            pos = taken.get(taken.size() - 1).next();
        }
        List<Entry> all = readdirAll(rd);
        assertEquals(all.size(), out.size(), "chunked readdir returns as many entries as one call");
        for (int i = 0; i < all.size(); i++) {
            assertArrayEquals(all.get(i).name(), out.get(i).name(), "entry " + i);
            assertEquals(all.get(i).ino(), out.get(i).ino(), "entry " + i);
            assertEquals(all.get(i).next(), out.get(i).next(), "entry " + i);
        }
        return out;
    }

    /** Names as ISO-8859-1 strings (one char per byte), in order. */
    public static List<String> names(List<Entry> entries) {
        List<String> n = new ArrayList<>();
        for (Entry e : entries) {
            n.add(e.nameString());
        }
        return n;
    }

    public static byte[] bytes(String s) {
        return s.getBytes(StandardCharsets.ISO_8859_1);
    }

    /** The whole file, read in chunks of {@code chunk} bytes. */
    public static byte[] readAll(Ext4FileSystem fs, long ino, int chunk) throws Ext4Exception {
        long size = fs.stat(ino).size();
        if (size > Integer.MAX_VALUE - 16) {
            throw new IllegalArgumentException("file too large for readAll: " + size);
        }
        byte[] out = new byte[(int) size];
        int pos = 0;
        while (pos < size) {
            int want = (int) Math.min(chunk, size - pos);
            ByteBuffer dst = ByteBuffer.wrap(out, pos, want).slice();
            int n = fs.read(ino, pos, dst);
            assertTrue(n > 0 && n <= want, "read at " + pos + " returned " + n + " (wanted up to " + want + ")");
            assertEquals(n, dst.position(), "read count matches the bytes put");
            pos += n;
        }
        ByteBuffer past = ByteBuffer.allocate(16);
        assertEquals(0, fs.read(ino, size, past), "read at EOF returns 0");
        assertEquals(0, fs.read(ino, size + 12345, past), "read past EOF returns 0");
        return out;
    }

    public static String hexDiff(byte[] a, byte[] b) {
        int n = Math.min(a.length, b.length);
        for (int i = 0; i < n; i++) {
            if (a[i] != b[i]) {
                return "first difference at byte " + i + " (" + (a[i] & 0xFF) + " vs " + (b[i] & 0xFF) + ")";
            }
        }
        return a.length == b.length ? "equal" : "lengths " + a.length + " vs " + b.length;
    }

    public static boolean equalRange(byte[] a, int aOff, byte[] b, int bOff, int len) {
        return Arrays.equals(a, aOff, aOff + len, b, bOff, bOff + len);
    }
}
