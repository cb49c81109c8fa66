package dev.ext4j.it;

import java.io.IOException;
import java.io.InputStream;
import java.nio.ByteBuffer;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.nio.file.attribute.FileTime;
import java.nio.file.attribute.UserDefinedFileAttributeView;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.TreeSet;

/**
 * Walks two trees side by side with java.nio.file and lists every difference: names, types, sizes,
 * content (streamed in chunks), permission bits, nlink, owner, times (seconds and nanoseconds),
 * symlink targets, hard-link structure and user.* xattrs. The result is a list of readable
 * differences, so an assertion message says exactly what is wrong where.
 */
public final class TreeCompare {
    private static final LinkOption[] NOFOLLOW = {LinkOption.NOFOLLOW_LINKS};
    private static final int CHUNK = 1 << 20;
    private static final Instant FILETIME_LIMIT = Instant.parse("2262-04-11T00:00:00Z");

    /** What to compare. The defaults compare everything a source tree and an image can agree on. */
    public static final class Options {
        Set<String> excludeTopLevel = Set.of();
        boolean dirSizes = true;
        boolean rootNlink = true;
        boolean mtime = true;
        boolean dirMtime = true;
        boolean ctime;
        boolean atime;
        boolean ino;
        boolean content = true;
        boolean xattrs = true;
        int maxDiffs = 200;

        public static Options defaults() {
            return new Options();
        }

        /** A source tree against the image made from it (mkfs -d): lost+found is extra, directory sizes differ. */
        public static Options sourceVsImage() {
            Options o = new Options();
            o.excludeTopLevel = Set.of("lost+found");
            o.dirSizes = false;
            o.rootNlink = false; // lost+found adds a link to the root
            o.dirMtime = false;  // mkfs -d stamps directories it fills itself
            return o;
        }

        /** Two views of the same image (kernel and ext4j): everything must match, inode numbers and all times included. */
        public static Options sameImage() {
            Options o = new Options();
            o.ctime = true;
            o.atime = true;
            o.ino = true;
            return o;
        }

        public Options exclude(String... names) {
            excludeTopLevel = Set.of(names);
            return this;
        }

        public Options mtime(boolean on) {
            mtime = on;
            dirMtime = dirMtime && on;
            return this;
        }

        public Options content(boolean on) {
            content = on;
            return this;
        }

        public Options xattrs(boolean on) {
            xattrs = on;
            return this;
        }
    }

    private final Path expectedRoot;
    private final Path actualRoot;
    private final Options opt;
    private final List<String> diffs = new ArrayList<>();
    private final Map<Long, String> firstPathByInoExpected = new HashMap<>();
    private final Map<Long, String> firstPathByInoActual = new HashMap<>();

    private TreeCompare(Path expectedRoot, Path actualRoot, Options opt) {
        this.expectedRoot = expectedRoot;
        this.actualRoot = actualRoot;
        this.opt = opt;
    }

    /** Compares {@code actual} against {@code expected}; returns the differences (empty when equal). */
    public static List<String> compare(Path expected, Path actual, Options options) {
        TreeCompare c = new TreeCompare(expected, actual, options);
        c.walk("");
        return c.diffs;
    }

    private boolean full() {
        return diffs.size() >= opt.maxDiffs;
    }

    private void diff(String rel, String what) {
        if (diffs.size() < opt.maxDiffs) {
            diffs.add((rel.isEmpty() ? "/" : rel) + ": " + what);
        } else if (diffs.size() == opt.maxDiffs) {
            diffs.add("... more differences not listed");
        }
    }

    private void walk(String rel) {
        if (full()) {
            return;
        }
        Path e = rel.isEmpty() ? expectedRoot : expectedRoot.resolve(rel);
        Path a = rel.isEmpty() ? actualRoot : actualRoot.resolve(rel);
        Map<String, Object> ea;
        Map<String, Object> aa;
        try {
            ea = Files.readAttributes(e, "unix:*", NOFOLLOW);
        } catch (IOException ex) {
            diff(rel, "cannot stat expected: " + ex);
            return;
        }
        try {
            aa = Files.readAttributes(a, "unix:*", NOFOLLOW);
        } catch (IOException ex) {
            diff(rel, "cannot stat actual: " + ex);
            return;
        }
        int eMode = (Integer) ea.get("mode");
        int aMode = (Integer) aa.get("mode");
        int eType = eMode & 0170000;
        int aType = aMode & 0170000;
        if (eType != aType) {
            diff(rel, "type " + typeName(aType) + ", expected " + typeName(eType));
            return;
        }
        compareAttributes(rel, eType, ea, aa);
        switch (eType) {
            case 0100000 -> {
                hardLinks(rel, ea, aa);
                if (opt.content) {
                    compareContent(rel, e, a);
                }
                if (opt.xattrs) {
                    compareXattrs(rel, e, a);
                }
            }
            case 0120000 -> {
                try {
                    String et = Files.readSymbolicLink(e).toString();
                    String at = Files.readSymbolicLink(a).toString();
                    if (!et.equals(at)) {
                        diff(rel, "symlink target '" + abbreviate(at) + "' (" + at.length() + " chars), expected '" + abbreviate(et) + "' (" + et.length() + " chars)");
                    }
                } catch (IOException ex) {
                    diff(rel, "readlink failed: " + ex);
                }
            }
            case 0040000 -> {
                if (opt.xattrs) {
                    compareXattrs(rel, e, a);
                }
                TreeSet<String> en = list(rel, e, "expected");
                TreeSet<String> an = list(rel, a, "actual");
                if (en == null || an == null) {
                    return;
                }
                if (rel.isEmpty()) {
                    en.removeAll(opt.excludeTopLevel);
                    an.removeAll(opt.excludeTopLevel);
                }
                TreeSet<String> missing = new TreeSet<>(en);
                missing.removeAll(an);
                TreeSet<String> extra = new TreeSet<>(an);
                extra.removeAll(en);
                if (!missing.isEmpty()) {
                    diff(rel, missing.size() + " missing entries: " + abbreviate(missing.toString()));
                }
                if (!extra.isEmpty()) {
                    diff(rel, extra.size() + " unexpected entries: " + abbreviate(extra.toString()));
                }
                for (String name : en) {
                    if (an.contains(name)) {
                        walk(rel.isEmpty() ? name : rel + "/" + name);
                    }
                }
            }
            default -> {
                // devices, fifos, sockets: attributes only (rdev is compared with them)
            }
        }
    }

    private TreeSet<String> list(String rel, Path dir, String side) {
        TreeSet<String> names = new TreeSet<>();
        try (DirectoryStream<Path> ds = Files.newDirectoryStream(dir)) {
            for (Path p : ds) {
                if (!names.add(p.getFileName().toString())) {
                    diff(rel, side + " lists " + p.getFileName() + " twice");
                }
            }
        } catch (IOException | java.nio.file.DirectoryIteratorException ex) {
            diff(rel, "cannot list " + side + ": " + ex);
            return null;
        }
        return names;
    }

    private void compareAttributes(String rel, int type, Map<String, Object> e, Map<String, Object> a) {
        boolean dir = type == 0040000;
        int eMode = (Integer) e.get("mode");
        int aMode = (Integer) a.get("mode");
        if ((eMode & 07777) != (aMode & 07777)) {
            diff(rel, String.format("mode %04o, expected %04o", aMode & 07777, eMode & 07777));
        }
        if (!dir || opt.dirSizes) {
            check(rel, "size", e.get("size"), a.get("size"));
        }
        if (!(dir && rel.isEmpty() && !opt.rootNlink)) {
            check(rel, "nlink", e.get("nlink"), a.get("nlink"));
        }
        check(rel, "uid", e.get("uid"), a.get("uid"));
        check(rel, "gid", e.get("gid"), a.get("gid"));
        if (type == 0020000 || type == 0060000) {
            check(rel, "rdev", e.get("rdev"), a.get("rdev"));
        }
        if (opt.ino) {
            check(rel, "ino", e.get("ino"), a.get("ino"));
        }
        if (opt.mtime && (!dir || opt.dirMtime)) {
            checkTime(rel, "mtime", e.get("lastModifiedTime"), a.get("lastModifiedTime"));
        }
        if (opt.ctime) {
            checkTime(rel, "ctime", e.get("ctime"), a.get("ctime"));
        }
        if (opt.atime) {
            checkTime(rel, "atime", e.get("lastAccessTime"), a.get("lastAccessTime"));
        }
    }

    private void check(String rel, String what, Object expected, Object actual) {
        if (!expected.equals(actual)) {
            diff(rel, what + " " + actual + ", expected " + expected);
        }
    }

    private void checkTime(String rel, String what, Object expected, Object actual) {
        Instant e = ((FileTime) expected).toInstant();
        Instant a = ((FileTime) actual).toInstant();
        if (e.isAfter(FILETIME_LIMIT) || a.isAfter(FILETIME_LIMIT)) {
            // JDK 17 saturates times after 2262 (Long.MAX_VALUE ns) in some cases: not comparable here.
            // The tests compare those with find -printf %T@ (ShellViews).
            return;
        }
        if (!e.equals(a)) {
            diff(rel, what + " " + a + " (" + a.getEpochSecond() + "." + String.format("%09d", a.getNano()) + "), expected " + e
                    + " (" + e.getEpochSecond() + "." + String.format("%09d", e.getNano()) + ")");
        }
    }

    /** Files that are hard links of each other in one tree must be so in the other. */
    private void hardLinks(String rel, Map<String, Object> e, Map<String, Object> a) {
        if ((Integer) e.get("nlink") < 2 && (Integer) a.get("nlink") < 2) {
            return;
        }
        String ef = firstPathByInoExpected.putIfAbsent((Long) e.get("ino"), rel);
        String af = firstPathByInoActual.putIfAbsent((Long) a.get("ino"), rel);
        String eFirst = ef == null ? rel : ef;
        String aFirst = af == null ? rel : af;
        if (!eFirst.equals(aFirst)) {
            diff(rel, "hard-link structure: same inode as " + aFirst + ", expected same inode as " + eFirst);
        }
    }

    private void compareContent(String rel, Path e, Path a) {
        try (InputStream ein = Files.newInputStream(e); InputStream ain = Files.newInputStream(a)) {
            byte[] eb = new byte[CHUNK];
            byte[] ab = new byte[CHUNK];
            long off = 0;
            while (true) {
                int en = ein.readNBytes(eb, 0, CHUNK);
                int an = ain.readNBytes(ab, 0, CHUNK);
                int m = Arrays.mismatch(eb, 0, en, ab, 0, an);
                if (m >= 0) {
                    if (m >= Math.min(en, an)) {
                        diff(rel, "content length: actual ends at " + (off + an) + ", expected " + (off + en) + " in this chunk");
                    } else {
                        diff(rel, "content differs at offset " + (off + m) + ": byte " + (ab[m] & 0xff) + ", expected " + (eb[m] & 0xff));
                    }
                    return;
                }
                if (en < CHUNK) {
                    return;
                }
                off += en;
            }
        } catch (IOException ex) {
            diff(rel, "read failed: " + ex);
        }
    }

    private void compareXattrs(String rel, Path e, Path a) {
        Map<String, String> ex = userXattrs(rel, e, "expected");
        Map<String, String> ax = userXattrs(rel, a, "actual");
        if (ex != null && ax != null && !ex.equals(ax)) {
            diff(rel, "user xattrs " + abbreviate(ax.toString()) + ", expected " + abbreviate(ex.toString()));
        }
    }

    /** user.* xattrs (name without "user." to hex-or-text value). */
    private Map<String, String> userXattrs(String rel, Path p, String side) {
        Map<String, String> out = new TreeMap<>();
        try {
            UserDefinedFileAttributeView v = Files.getFileAttributeView(p, UserDefinedFileAttributeView.class, NOFOLLOW);
            for (String name : v.list()) {
                ByteBuffer buf = ByteBuffer.allocate(v.size(name));
                v.read(name, buf);
                byte[] b = Arrays.copyOf(buf.array(), buf.position());
                out.put(name, b.length + ":" + sha(b));
            }
        } catch (IOException ex) {
            diff(rel, "xattrs of " + side + ": " + ex);
            return null;
        }
        return out;
    }

    private static String sha(byte[] b) {
        try {
            byte[] d = java.security.MessageDigest.getInstance("SHA-256").digest(b);
            return HexFormat.of().formatHex(d, 0, 8);
        } catch (java.security.NoSuchAlgorithmException ex) {
            throw new IllegalStateException(ex);
        }
    }

    private static String abbreviate(String s) {
        return s.length() <= 300 ? s : s.substring(0, 300) + "...";
    }

    static String typeName(int type) {
        return switch (type) {
            case 0100000 -> "regular file";
            case 0040000 -> "directory";
            case 0120000 -> "symlink";
            case 0020000 -> "char device";
            case 0060000 -> "block device";
            case 0010000 -> "fifo";
            case 0140000 -> "socket";
            default -> String.format("type %06o", type);
        };
    }
}
