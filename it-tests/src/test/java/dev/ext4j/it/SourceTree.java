package dev.ext4j.it;

import java.io.IOException;
import java.io.RandomAccessFile;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.nio.file.attribute.BasicFileAttributeView;
import java.nio.file.attribute.FileTime;
import java.nio.file.attribute.UserDefinedFileAttributeView;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.stream.Stream;

/**
 * The source tree the read tests pack into images with {@code mkfs.ext4 -d}: boundary file sizes,
 * sparse files, a deep path, fast/slow/inline symlinks, hard links, xattrs (small, large, many,
 * ACLs), special modes and owners, devices and fifos, unusual names and unusual timestamps.
 * Content is random from a fixed seed.
 *
 * <p>mkfs -d (e2fsprogs 1.47.0) stores whole seconds only and cannot store dates after 2038, so
 * every entry gets a whole-second mtime, except the entries under {@code times/}: those carry
 * nanoseconds and dates outside 1970..2038 and are written into the image afterwards with debugfs
 * ({@link #stampExactTimes}).
 */
public final class SourceTree {
    public static final int MIB = 1 << 20;
    private static final Instant FILETIME_LIMIT = Instant.parse("2262-04-11T00:00:00Z");
    /** Sizes around the inline limit (60), every supported block size, and 4 MiB + 3. */
    public static final long[] SIZES = {0, 1, 59, 60, 61, 1023, 1024, 1025, 4095, 4096, 4097, 65535, 65536, 65537, 4L * MIB + 3};

    /** Entries under times/ and the instant their mtime, atime and ctime must show. */
    private final Map<String, Instant> exactTimes = new LinkedHashMap<>();
    private final Path root;
    private final Random random;

    private SourceTree(Path root, long seed) {
        this.root = root;
        this.random = new Random(seed);
    }

    public Path root() {
        return root;
    }

    public Map<String, Instant> exactTimes() {
        return exactTimes;
    }

    /** Builds the full tree in {@code root} (which must be empty or absent). */
    public static SourceTree build(Path root, long seed) throws IOException {
        SourceTree t = new SourceTree(root, seed);
        Files.createDirectories(root);
        t.buildAll();
        return t;
    }

    private byte[] randomBytes(int n) {
        byte[] b = new byte[n];
        random.nextBytes(b);
        return b;
    }

    private Path file(String rel, long size) throws IOException {
        Path p = root.resolve(rel);
        Files.createDirectories(p.getParent());
        try (var out = Files.newOutputStream(p)) {
            long left = size;
            while (left > 0) {
                int n = (int) Math.min(left, MIB);
                out.write(randomBytes(n));
                left -= n;
            }
        }
        return p;
    }

    private Path text(String rel, String content) throws IOException {
        Path p = root.resolve(rel);
        Files.createDirectories(p.getParent());
        Files.writeString(p, content);
        return p;
    }

    private Path dir(String rel) throws IOException {
        return Files.createDirectories(root.resolve(rel));
    }

    /** A sparse file: {@code length} bytes with random data of the given lengths at the given offsets. */
    private void sparse(String rel, long length, long[][] regions) throws IOException {
        Path p = root.resolve(rel);
        Files.createDirectories(p.getParent());
        try (RandomAccessFile f = new RandomAccessFile(p.toFile(), "rw")) {
            for (long[] r : regions) {
                f.getChannel().write(ByteBuffer.wrap(randomBytes((int) r[1])), r[0]);
            }
            f.setLength(length);
        }
    }

    private void symlink(String rel, String target) throws IOException {
        Path p = root.resolve(rel);
        Files.createDirectories(p.getParent());
        Files.createSymbolicLink(p, Path.of(target));
    }

    private void sh(String... cmd) {
        Tools.run(Duration.ofSeconds(30), null, root, List.of(cmd)).requireOk();
    }

    private void userXattr(String rel, String name, byte[] value) throws IOException {
        UserDefinedFileAttributeView v = Files.getFileAttributeView(root.resolve(rel), UserDefinedFileAttributeView.class);
        v.write(name, ByteBuffer.wrap(value));
    }

    private static String repeat(String s, int len) {
        StringBuilder b = new StringBuilder();
        while (b.length() < len) {
            b.append(s);
        }
        return b.substring(0, len);
    }

    private void buildAll() throws IOException {
        text("hello.txt", "Hello from the ext4j integration tests.\n");

        // sizes around the inline-data limit and every block size
        for (long s : SIZES) {
            file("sizes/size-" + s, s);
        }

        // sparse files: data at 0, 1 MiB and 40 MiB of a 50 MiB file; holes at the start and the end;
        // no data at all; data beyond 64.3 MiB (triple-indirect blocks with 1 KiB blocks and no extents)
        sparse("sparse/sparse-50m", 50L * MIB, new long[][] {{0, 4096}, {MIB, 4096}, {40L * MIB, 8192}});
        sparse("sparse/hole-at-end", 8L * MIB, new long[][] {{0, 10}});
        sparse("sparse/hole-at-start", 5L * MIB + 7 + 5000, new long[][] {{5L * MIB + 7, 5000}});
        sparse("sparse/all-hole", 3L * MIB, new long[][] {});
        sparse("sparse/triple-indirect", 70L * MIB + 4900, new long[][] {{70L * MIB - 100, 5000}});

        // a path 40 levels deep
        StringBuilder deep = new StringBuilder("deep");
        for (int i = 1; i <= 40; i++) {
            deep.append(String.format("/level-%02d", i));
        }
        text(deep + "/bottom.txt", "40 levels down\n");

        // symlinks: fast (< 60 bytes, in the inode), exactly at the limit, slow (in a block), dangling
        text("links/target.txt", "link target\n");
        symlink("links/fast", "target.txt");
        symlink("links/len-59", repeat("abcdefghij/", 59));
        symlink("links/len-60", repeat("abcdefghij/", 60));
        symlink("links/len-61", repeat("abcdefghij/", 61));
        symlink("links/slow-500", repeat("../links/", 495) + "x.txt");
        symlink("links/dangling", "does/not/exist");
        symlink("links/to-dir", "../deep");
        symlink("links/absolute", "/etc/hostname");
        symlink("links/unicode", "zółw/日本語");
        // hard links: three names for one inode, across directories
        file("links/hard-a", 3000);
        Files.createLink(root.resolve("links/hard-b"), root.resolve("links/hard-a"));
        dir("links/sub");
        Files.createLink(root.resolve("links/sub/hard-c"), root.resolve("links/hard-a"));
        text("links/hard-small", "tiny\n");
        Files.createLink(root.resolve("links/hard-small-2"), root.resolve("links/hard-small"));

        // extended attributes: small ones fit in the inode, large/many need the xattr block
        text("xattrs/small", "small xattrs\n");
        userXattr("xattrs/small", "a", "1".getBytes(StandardCharsets.UTF_8));
        userXattr("xattrs/small", "colour", "blue".getBytes(StandardCharsets.UTF_8));
        text("xattrs/large", "a large xattr\n");
        userXattr("xattrs/large", "big", randomBytes(900));
        text("xattrs/many", "many xattrs\n");
        for (int i = 0; i < 16; i++) { // all of them must still fit one 1 KiB xattr block
            userXattr("xattrs/many", String.format("k%02d", i), randomBytes(8 + i));
        }
        text("xattrs/empty-value", "empty value\n");
        userXattr("xattrs/empty-value", "empty", new byte[0]);
        text("xattrs/binary", "binary value\n");
        userXattr("xattrs/binary", "bin", new byte[] {0, 1, 2, 0, (byte) 0xff, 0, '\n'});
        text("xattrs/mixed", "small and large\n");
        userXattr("xattrs/mixed", "s", "x".getBytes(StandardCharsets.UTF_8));
        userXattr("xattrs/mixed", "l", randomBytes(700));
        dir("xattrs/dir");
        userXattr("xattrs/dir", "d", "on a directory".getBytes(StandardCharsets.UTF_8));
        // POSIX ACL user::rw- user:1000:r-- group::r-- mask::rw- other::r-- (setfacl may not be installed)
        text("xattrs/acl", "acl\n");
        sh("setfattr", "-n", "system.posix_acl_access", "-v",
                "0x0200000001000600ffffffff02000400e803000004000400ffffffff10000600ffffffff20000400ffffffff", "xattrs/acl");
        dir("xattrs/acl-dir");
        sh("setfattr", "-n", "system.posix_acl_default", "-v",
                "0x0200000001000700ffffffff02000500e803000004000500ffffffff10000700ffffffff20000500ffffffff", "xattrs/acl-dir");

        // modes
        for (String m : List.of("0600", "0755", "4755", "2755", "6755", "0000", "0444", "0777")) {
            text("modes/file-" + m, m + "\n");
            sh("chmod", m, "modes/file-" + m);
        }
        for (String m : List.of("1777", "0711", "2775", "0700")) {
            dir("modes/dir-" + m);
            sh("chmod", m, "modes/dir-" + m);
        }

        // owners, including ids above 65535 (high 16 bits stored separately)
        text("owners/u1234-g5678", "owned\n");
        sh("chown", "1234:5678", "owners/u1234-g5678");
        text("owners/nobody", "nobody\n");
        sh("chown", "65534:65534", "owners/nobody");
        text("owners/big-ids", "big ids\n");
        sh("chown", "100000:200000", "owners/big-ids");
        dir("owners/dir-4321");
        sh("chown", "4321:8765", "owners/dir-4321");

        // special files
        dir("special");
        sh("mkfifo", "special/fifo");
        sh("mknod", "special/null-like", "c", "1", "3");
        sh("mknod", "special/loop-like", "b", "7", "200");
        sh("mknod", "special/big-dev", "c", "300", "70000");
        sh("python3", "-c", "import socket; socket.socket(socket.AF_UNIX).bind('special/socket')");

        // names
        text("names/with space", "space\n");
        text("names/żółw-ünïcödé", "utf-8\n");
        text("names/日本語.txt", "cjk\n");
        text("names/" + repeat("n", 255), "longest name\n");
        text("names/-dash", "dash\n");
        text("names/.hidden", "hidden\n");
        text("names/a=b,c;d'e\"f", "punctuation\n");

        // small directories and files (inline data candidates), an empty directory and file
        text("small/one", "1\n");
        text("small/two", "22\n");
        text("small/three", "333\n");
        dir("small/empty-dir");
        text("small/empty-file", "");

        // a directory spanning several blocks even at 4 KiB (linear: mkfs -d does not index)
        for (int i = 0; i < 300; i++) {
            text(String.format("medium-dir/entry-%03d-%s", i, repeat("m", i % 40)), i + "\n");
        }

        // every entry gets a whole-second mtime and atime (mkfs -d drops nanoseconds)
        normalizeTimes();

        // unusual timestamps, fixed up in the image with debugfs after mkfs
        exact("times/nanos", "2001-02-03T04:05:06.123456789Z", false);
        exact("times/pre-1970", "1960-01-01T00:00:00.500000000Z", false);
        exact("times/int32-min", "1901-12-13T20:45:52Z", false);
        exact("times/epoch", "1970-01-01T00:00:00Z", false);
        // (debugfs cannot set -1 seconds: it is its parse error value)
        exact("times/before-epoch", "1969-12-31T23:59:58.999999999Z", false);
        exact("times/int32-max", "2038-01-19T03:14:07Z", false);
        exact("times/y2038", "2038-01-19T03:14:08Z", false);
        exact("times/post-2038", "2100-06-07T08:09:10.999999999Z", false);
        exact("times/far-future", "2400-01-01T00:00:00Z", false);
        exact("times/ext4-max", "2446-05-10T22:38:55Z", false);
        exact("times/dir-nanos", "2010-10-10T10:10:10.101010101Z", true);
        symlink("times/link-nanos", "nanos");
        setTimes(root.resolve("times/link-nanos"), Instant.parse("2020-02-29T12:00:00.000000042Z"));
        exactTimes.put("times/link-nanos", Instant.parse("2020-02-29T12:00:00.000000042Z"));
        setTimes(root.resolve("times"), Instant.parse("2015-01-01T00:00:00Z"));
    }

    private void exact(String rel, String when, boolean dir) throws IOException {
        Path p = dir ? dir(rel) : text(rel, rel + "\n");
        Instant t = Instant.parse(when);
        setTimes(p, t);
        exactTimes.put(rel, t);
    }

    private static void setTimes(Path p, Instant t) throws IOException {
        FileTime ft = FileTime.from(t);
        if (t.getEpochSecond() >= 0 && t.isBefore(FILETIME_LIMIT) && (Files.isRegularFile(p, LinkOption.NOFOLLOW_LINKS) || Files.isDirectory(p, LinkOption.NOFOLLOW_LINKS))) {
            Files.getFileAttributeView(p, BasicFileAttributeView.class, LinkOption.NOFOLLOW_LINKS).setTimes(ft, ft, null);
        } else {
            // Java opens the file to set its times (that would block on a fifo and follow a symlink)
            // and sets negative times with nanoseconds to 0 and times after 2262 to 2262 (JDK 17)
            Tools.run(Duration.ofSeconds(30), "touch", "-h", "-d", "@" + java.math.BigDecimal.valueOf(t.getEpochSecond()).add(java.math.BigDecimal.valueOf(t.getNano(), 9)).toPlainString(), p.toString())
                    .requireOk();
        }
        Instant back = ((FileTime) Files.getAttribute(p, "unix:lastModifiedTime", LinkOption.NOFOLLOW_LINKS)).toInstant();
        // (FileTime cannot show anything after 2262: Long.MAX_VALUE nanoseconds; the tests check those times with find -printf)
        if (!back.equals(t) && t.isBefore(FILETIME_LIMIT)) {
            throw new IllegalStateException("the filesystem under " + p + " cannot store " + t + " (reads back " + back + ")");
        }
    }

    /** Whole-second times for every entry, children before parents so directory times stick. */
    private void normalizeTimes() throws IOException {
        List<Path> all = new ArrayList<>();
        try (Stream<Path> s = Files.walk(root)) {
            s.forEach(all::add);
        }
        long base = 1_500_000_000L;
        for (int i = all.size() - 1; i >= 0; i--) {
            setTimes(all.get(i), Instant.ofEpochSecond(base + i * 3601L));
        }
    }

    /** Sets i_size of the files under sparse/ to their source size (works around an mkfs -d bug with inline_data). */
    public void restoreSparseSizes(Path image) {
        List<String> cmds = new ArrayList<>();
        try (Stream<Path> s = Files.list(root.resolve("sparse"))) {
            for (Path p : s.sorted().toList()) {
                cmds.add("sif /sparse/" + p.getFileName() + " size " + Files.size(p));
            }
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        Tools.debugfsWrite(image, cmds.toArray(String[]::new));
    }

    /**
     * Writes the exact times of the times/ entries into the image (mtime, atime, ctime with their
     * extra fields: nanoseconds and epoch bits), as the kernel would have encoded them.
     */
    public void stampExactTimes(Path image) {
        List<String> cmds = new ArrayList<>();
        for (Map.Entry<String, Instant> e : exactTimes.entrySet()) {
            long sec = e.getValue().getEpochSecond();
            long nsec = e.getValue().getNano();
            int lo = (int) sec;
            long epoch = ((sec - (int) sec) >> 32) & 3;
            long extra = (nsec << 2) | epoch;
            for (String f : List.of("mtime", "atime", "ctime")) {
                cmds.add("sif /" + e.getKey() + " " + f + " @" + lo);
                cmds.add("sif /" + e.getKey() + " " + f + "_extra 0x" + Long.toHexString(extra));
            }
        }
        String out = Tools.debugfsWrite(image, cmds.toArray(String[]::new));
        for (String line : out.split("\n")) {
            if (!line.startsWith("debugfs") && !line.isBlank()) {
                throw new AssertionError("debugfs complained while stamping times: " + out);
            }
        }
    }
}
