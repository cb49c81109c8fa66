package dev.ext4j.fs;

import static dev.ext4j.testutil.FsUtil.bytes;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import dev.ext4j.Errno;
import dev.ext4j.format.DirEntry;
import dev.ext4j.format.Inode;
import dev.ext4j.testutil.Expect;
import dev.ext4j.testutil.FsUtil;
import dev.ext4j.testutil.FsUtil.Entry;
import dev.ext4j.testutil.Images;
import java.io.IOException;
import java.io.RandomAccessFile;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.ServerSocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.nio.file.attribute.FileTime;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.HashSet;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.Set;
import java.util.TreeMap;
import java.util.TreeSet;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * Builds a varied source tree, makes images of it with mkfs.ext4 -d in several block sizes and
 * feature sets, and compares everything ext4j reads back with the source: names (through resumed
 * readdir), types, sizes, contents, modes, link counts, owners, times, symlink targets, xattrs and
 * ACLs, devices, and statfs against dumpe2fs.
 */
class ReadPathTest {
    private static final long MIB = 1 << 20;
    /** Mtimes are set to whole seconds from here; mkfs -d copies seconds only. */
    private static final long TIME_BASE = 1_000_000_000L;
    private static final int BIGDIR_ENTRIES = 3000;
    private static final int DEEP_LEVELS = 40;

    @TempDir
    static Path work;
    static Path tree;
    /** getfattr's view of the source: relative path to (name to value). */
    static Map<String, Map<String, byte[]>> sourceXattrs;
    /** The names of the non-ASCII directory, as raw bytes. */
    static List<byte[]> rawNames;

    record Variant(String name, int blockSize, String size, List<String> args) {
        boolean inline() {
            return args.contains("inline_data");
        }

        boolean ext3() {
            return args.contains("ext3");
        }

        boolean fileType() {
            return !args.contains("^filetype");
        }

        @Override
        public String toString() {
            return name;
        }
    }

    static Stream<Variant> variants() {
        return Stream.of(
                new Variant("default-4k", 4096, "96M", List.of("-b", "4096")),
                new Variant("default-1k", 1024, "96M", List.of("-b", "1024")),
                new Variant("default-64k", 65536, "256M", List.of("-b", "65536")),
                new Variant("nocsum-4k", 4096, "96M", List.of("-b", "4096", "-O", "^metadata_csum")),
                new Variant("nocsum-1k", 1024, "96M", List.of("-b", "1024", "-O", "^metadata_csum")),
                new Variant("inline-4k", 4096, "96M", List.of("-b", "4096", "-O", "inline_data")),
                new Variant("inline-1k", 1024, "96M", List.of("-b", "1024", "-O", "inline_data")),
                new Variant("ext3-4k", 4096, "96M", List.of("-b", "4096", "-t", "ext3")),
                new Variant("ext3-1k", 1024, "96M", List.of("-b", "1024", "-t", "ext3")),
                new Variant("no64bit-4k", 4096, "96M", List.of("-b", "4096", "-O", "^64bit")),
                new Variant("no64bit-1k", 1024, "96M", List.of("-b", "1024", "-O", "^64bit")),
                new Variant("ext2-nofiletype-4k", 4096, "96M", List.of("-b", "4096", "-t", "ext2", "-O", "^filetype")));
    }

    // ---------------------------------------------------------------- source tree

    @BeforeAll
    static void buildTree() throws Exception {
        Images.tool("mkfs.ext4");
        Images.tool("debugfs");
        Images.tool("e2fsck");
        Images.tool("dumpe2fs");
        Images.tool("setfattr");
        Images.tool("getfattr");
        tree = work.resolve("tree");
        Files.createDirectories(tree);
        Random rnd = new Random(0x5EED);

        Path files = Files.createDirectory(tree.resolve("files"));
        for (int size : new int[] {0, 1, 59, 60, 61, 1023, 1024, 1025, 4095, 4096, 4097, 65535, 65536, 65537}) {
            Files.write(files.resolve("f" + size), random(rnd, size));
        }
        Files.write(files.resolve("big"), random(rnd, (int) (4 * MIB + 3)));

        Path sparse = Files.createDirectory(tree.resolve("sparse"));
        try (RandomAccessFile f = new RandomAccessFile(sparse.resolve("sparse80").toFile(), "rw")) {
            f.setLength(80 * MIB);
            for (long at : new long[] {MIB, 30 * MIB, 70 * MIB}) {
                f.seek(at + 123);
                f.write(random(rnd, 9000));
            }
            f.seek(80 * MIB - 3);
            f.write(new byte[] {1, 2, 3});
        }
        try (RandomAccessFile f = new RandomAccessFile(sparse.resolve("allhole").toFile(), "rw")) {
            f.setLength(5 * MIB + 7);
        }
        try (RandomAccessFile f = new RandomAccessFile(sparse.resolve("headhole").toFile(), "rw")) {
            f.seek(200_000);
            f.write(random(rnd, 70_000));
        }

        Path bigdir = Files.createDirectory(tree.resolve("bigdir"));
        for (int i = 0; i < BIGDIR_ENTRIES; i++) {
            String name = String.format("n%05d_%s", i, "x".repeat(i % 47));
            if (i % 500 == 7) {
                Files.createDirectory(bigdir.resolve(name));
            } else if (i % 700 == 3) {
                Files.createSymbolicLink(bigdir.resolve(name), Path.of("target-" + i));
            } else if (i % 97 == 0) {
                Files.write(bigdir.resolve(name), random(rnd, i % 300));
            } else {
                Files.createFile(bigdir.resolve(name));
            }
        }

        Path deep = tree.resolve("deep");
        for (int i = 1; i <= DEEP_LEVELS; i++) {
            deep = deep.resolve(String.format("d%02d", i));
        }
        Files.createDirectories(deep);
        Files.writeString(deep.resolve("leaf.txt"), "at the bottom\n");

        Path links = Files.createDirectory(tree.resolve("links"));
        link(links, "fast30", "t".repeat(30));
        link(links, "fast59", "u".repeat(59));
        link(links, "exact60", "v".repeat(60));
        link(links, "medium100", "m".repeat(100));
        link(links, "slow300", "s/".repeat(150));
        link(links, "slow1000", "L".repeat(1000));
        link(links, "todir", "../files");
        link(links, "dangling", "/no/such/place");

        Path x = Files.createDirectory(tree.resolve("xattr"));
        Path small = Files.createFile(x.resolve("small"));
        Images.setXattr(small, "user.a", bytes("hello"));
        Path medium = Files.write(x.resolve("medium"), bytes("data"));
        Images.setXattr(medium, "user.medium", random(rnd, 900));
        Images.setXattr(medium, "user.tiny", bytes("t"));
        Path many = Files.createFile(x.resolve("many"));
        for (int k = 0; k < 10; k++) {
            Images.setXattr(many, "user.k" + k + "_" + "n".repeat(k), random(rnd, 1 + k * 8));
        }
        Images.setXattr(many, "trusted.t", bytes("trusted value"));
        Path empty = Files.createFile(x.resolve("emptyvalue"));
        Images.runOk(List.of("setfattr", "-n", "user.empty", empty.toString()));
        Path acl = Files.write(x.resolve("acl"), bytes("acl file"));
        Images.setXattr(acl, "system.posix_acl_access", aclValue(1000, 0));
        Path acldir = Files.createDirectory(x.resolve("acldir"));
        Files.writeString(acldir.resolve("before"), "created before the default ACL");
        Images.setXattr(acldir, "system.posix_acl_access", aclValue(1000, 2000));
        Images.setXattr(acldir, "system.posix_acl_default", aclValue(3000, 0));
        Files.writeString(acldir.resolve("inherits"), "created after the default ACL");
        Path dirx = Files.createDirectory(x.resolve("dirx"));
        Images.setXattr(dirx, "user.on_dir", bytes("directory xattr"));

        Path hard = Files.createDirectory(tree.resolve("hard"));
        Files.write(hard.resolve("a"), random(rnd, 5000));
        Files.createLink(hard.resolve("b"), hard.resolve("a"));
        Files.createDirectory(hard.resolve("sub"));
        Files.createLink(hard.resolve("sub").resolve("c"), hard.resolve("a"));
        Files.writeString(hard.resolve("single"), "one link");

        Path special = Files.createDirectory(tree.resolve("special"));
        Images.runOk(List.of("mkfifo", special.resolve("fifo").toString()));
        Images.runOk(List.of("mknod", special.resolve("null").toString(), "c", "1", "3"));
        Images.runOk(List.of("mknod", special.resolve("sda1").toString(), "b", "8", "1"));
        Images.runOk(List.of("mknod", special.resolve("bigdev").toString(), "c", "300", "70000"));
        try (ServerSocketChannel ch = ServerSocketChannel.open(StandardProtocolFamily.UNIX)) {
            ch.bind(UnixDomainSocketAddress.of(special.resolve("sock")));
        }

        Path owners = Files.createDirectory(tree.resolve("owners"));
        chown(Files.writeString(owners.resolve("u1234"), "owned"), 1234, 5678);
        chown(Files.writeString(owners.resolve("uhigh"), "high ids"), 100000, 200000);
        chown(Files.createDirectory(owners.resolve("dirowned")), 4321, 8765);

        Path perms = Files.createDirectory(tree.resolve("perms"));
        chmod(Files.writeString(perms.resolve("m0000"), "x"), 0);
        chmod(Files.writeString(perms.resolve("m0600"), "x"), 0600);
        chmod(Files.writeString(perms.resolve("m4755"), "x"), 04755);
        chmod(Files.writeString(perms.resolve("m2710"), "x"), 02710);
        chmod(Files.writeString(perms.resolve("m0777"), "x"), 0777);
        chmod(Files.createDirectory(perms.resolve("d1777")), 01777);

        Files.createDirectory(tree.resolve("empty"));

        // Names with bytes >= 0x80 exercise the signed/unsigned directory hash; made through xargs
        // so that their bytes do not depend on the JVM's file name encoding.
        Path raw = Files.createDirectory(tree.resolve("rawnames"));
        rawNames = new ArrayList<>();
        Set<String> seen = new HashSet<>();
        java.io.ByteArrayOutputStream list = new java.io.ByteArrayOutputStream();
        while (rawNames.size() < 400) {
            int len = 1 + rnd.nextInt(40);
            byte[] n = new byte[len];
            for (int i = 0; i < len; i++) {
                int c;
                do {
                    c = rnd.nextInt(3) == 0 ? 0x21 + rnd.nextInt(0x5E) : 0x80 + rnd.nextInt(0x80);
                } while (c == '/');
                n[i] = (byte) c;
            }
            String key = new String(n, StandardCharsets.ISO_8859_1);
            if (key.equals(".") || key.equals("..") || key.startsWith("-") || !seen.add(key)) {
                continue;
            }
            rawNames.add(n);
            list.write(n);
            list.write(0);
        }
        Path listFile = work.resolve("rawnames.list");
        Files.write(listFile, list.toByteArray());
        Images.Result r = Images.run(List.of("xargs", "-0", "-a", listFile.toString(), "touch", "--"), raw);
        assertEquals(0, r.exitCode(), r.all());

        // Times: whole seconds, distinct per entry, children before their directory.
        long[] k = {0};
        try (Stream<Path> s = Files.walk(tree)) {
            List<Path> all = new ArrayList<>(s.toList());
            all.sort((a, b) -> Integer.compare(b.getNameCount(), a.getNameCount()));
            for (Path p : all) {
                if (p.equals(tree) || p.startsWith(raw) && !p.equals(raw)) {
                    continue;
                }
                long t = TIME_BASE + 7919 * k[0]++;
                if (p.equals(files.resolve("f1"))) {
                    t = -31_536_000L; // 1969: a negative 32-bit time
                }
                setTimes(p, t);
            }
        }
        sourceXattrs = readSourceXattrs(tree);
        assertTrue(sourceXattrs.containsKey("xattr/acl"), "the source filesystem kept the ACL: " + sourceXattrs.keySet());
        assertTrue(sourceXattrs.get("xattr/acldir").containsKey("system.posix_acl_default"));
    }

    private static byte[] random(Random rnd, int n) {
        byte[] b = new byte[n];
        rnd.nextBytes(b);
        return b;
    }

    private static void link(Path dir, String name, String target) throws IOException {
        Files.createSymbolicLink(dir.resolve(name), Path.of(target));
    }

    private static void chown(Path p, int uid, int gid) throws IOException {
        Files.setAttribute(p, "unix:uid", uid, LinkOption.NOFOLLOW_LINKS);
        Files.setAttribute(p, "unix:gid", gid, LinkOption.NOFOLLOW_LINKS);
    }

    private static void chmod(Path p, int mode) throws IOException {
        Files.setAttribute(p, "unix:mode", mode);
    }

    private static void setTimes(Path p, long seconds) {
        Images.runOk(List.of("touch", "-h", "-d", "@" + seconds, p.toString()));
    }

    /**
     * An ACL in the VFS xattr format (version 2): owner rw, a named user rw, owning group r, an
     * optional named group r, mask rw, other r.
     */
    static byte[] aclValue(int user, int group) {
        ByteBuffer b = ByteBuffer.allocate(4 + 8 * (group != 0 ? 6 : 5)).order(java.nio.ByteOrder.LITTLE_ENDIAN);
        b.putInt(2);
        b.putShort((short) 0x01).putShort((short) 6).putInt(-1);
        b.putShort((short) 0x02).putShort((short) 6).putInt(user);
        b.putShort((short) 0x04).putShort((short) 4).putInt(-1);
        if (group != 0) {
            b.putShort((short) 0x08).putShort((short) 4).putInt(group);
        }
        b.putShort((short) 0x10).putShort((short) 6).putInt(-1);
        b.putShort((short) 0x20).putShort((short) 4).putInt(-1);
        return b.array();
    }

    /** getfattr -R over the tree, excluding the raw-name directory. */
    private static Map<String, Map<String, byte[]>> readSourceXattrs(Path root) {
        Images.Result r = Images.run(List.of("getfattr", "-R", "-P", "-h", "-d", "-m", "-", "-e", "hex",
                "--absolute-names", root.toString()));
        assertEquals(0, r.exitCode(), r.all());
        Map<String, Map<String, byte[]>> out = new HashMap<>();
        String current = null;
        Pattern kv = Pattern.compile("^([^=]+)=(?:0x([0-9a-fA-F]*))?$");
        for (String line : r.stdout().split("\n")) {
            if (line.startsWith("# file: ")) {
                String abs = line.substring("# file: ".length());
                current = abs.equals(root.toString()) ? "" : abs.substring(root.toString().length() + 1);
                continue;
            }
            Matcher m = kv.matcher(line.trim());
            if (current != null && m.matches()) {
                out.computeIfAbsent(current, c -> new TreeMap<>())
                        .put(m.group(1), m.group(2) == null ? new byte[0] : Images.hex(m.group(2)));
            }
        }
        return out;
    }

    // ---------------------------------------------------------------- the test

    @ParameterizedTest(name = "{0}")
    @MethodSource("variants")
    void imageReadsBackLikeTheSourceTree(Variant v, @TempDir Path dir) throws Exception {
        Path img = Images.mkfs(dir.resolve("img"), v.size(), v.args(), tree);
        Images.fsckOptimizeDirs(img);
        Images.assertClean(img);
        Map<String, String> dump = Images.dumpe2fsHeader(img);
        assertEquals(String.valueOf(v.blockSize()), dump.get("Block size"));

        try (Ext4FileSystem fs = Ext4FileSystem.open(img, MountOptions.defaults().withReadOnly(true))) {
            assertTrue(fs.isReadOnly());
            FileAttributes root = fs.stat(Ext4FileSystem.ROOT_INO);
            assertEquals(Inode.S_IFDIR, root.mode() & Inode.S_IFMT);
            assertEquals(v.blockSize(), root.blockSize());

            checkPreconditions(fs, v, img);
            Map<Long, Long> inoMap = new HashMap<>();
            int[] count = {0};
            compareDir(fs, v, tree, Ext4FileSystem.ROOT_INO, Ext4FileSystem.ROOT_INO, "", inoMap, count);
            assertTrue(count[0] > BIGDIR_ENTRIES + 80, "compared " + count[0] + " entries");
            checkRawNames(fs, v);
            checkRandomReads(fs, v);
            checkErrors(fs);
            checkStatfs(fs, dump, v);
        }
    }

    /** The image has the structures this variant is meant to cover. */
    private void checkPreconditions(Ext4FileSystem fs, Variant v, Path img) throws Exception {
        long bigdir = fs.resolve(bytes("/bigdir"));
        assertTrue((fs.stat(bigdir).flags() & Inode.INDEX_FL) != 0, "bigdir is htree-indexed after e2fsck -D");
        long big = fs.resolve(bytes("/files/big"));
        boolean extents = (fs.stat(big).flags() & Inode.EXTENTS_FL) != 0;
        assertEquals(!v.ext3() && !v.args().contains("ext2"), extents, "extent-mapped big file");
        long f59 = fs.resolve(bytes("/files/f59"));
        long f61 = fs.resolve(bytes("/files/f61"));
        long empty = fs.resolve(bytes("/empty"));
        assertEquals(v.inline(), (fs.stat(f59).flags() & Inode.INLINE_DATA_FL) != 0, "f59 inline");
        assertEquals(v.inline(), (fs.stat(f61).flags() & Inode.INLINE_DATA_FL) != 0, "f61 inline (i_block + system.data)");
        assertEquals(v.inline(), (fs.stat(empty).flags() & Inode.INLINE_DATA_FL) != 0, "empty dir inline");
        long medium = fs.resolve(bytes("/links/medium100"));
        assertEquals(v.inline(), (fs.stat(medium).flags() & Inode.INLINE_DATA_FL) != 0, "100-byte symlink inline");
        if (v.inline()) {
            assertEquals(60, fs.stat(empty).size(), "inline empty dir");
        }
    }

    private void compareDir(Ext4FileSystem fs, Variant v, Path src, long dirIno, long parentIno, String rel,
                            Map<Long, Long> inoMap, int[] count) throws Exception {
        List<Entry> entries = FsUtil.readdirChunked(FsUtil.of(fs, dirIno), 7);
        Map<String, Entry> byName = new TreeMap<>();
        for (Entry e : entries) {
            assertTrue(byName.put(e.nameString(), e) == null, rel + ": duplicate entry " + e);
        }
        assertEquals(dirIno, byName.get(".").ino(), rel + ": '.'");
        assertEquals(parentIno, byName.get("..").ino(), rel + ": '..'");
        Set<String> expected = new TreeSet<>(List.of(".", ".."));
        try (Stream<Path> s = Files.list(src)) {
            s.forEach(p -> expected.add(p.getFileName().toString()));
        }
        if (rel.isEmpty()) {
            expected.add("lost+found");
            expected.remove("rawnames"); // names are bytes, not strings: checkRawNames()
        }
        Set<String> gotNames = new TreeSet<>(byName.keySet());
        if (rel.isEmpty()) {
            assertTrue(gotNames.remove("rawnames"));
        }
        assertEquals(expected, gotNames, rel + ": names");

        for (Entry e : entries) {
            String name = e.nameString();
            if (name.equals(".") || name.equals("..") || rel.isEmpty() && (name.equals("lost+found") || name.equals("rawnames"))) {
                continue;
            }
            Path p = src.resolve(name);
            String childRel = rel.isEmpty() ? name : rel + "/" + name;
            count[0]++;
            assertEquals(e.ino(), fs.lookup(dirIno, e.name()), childRel + ": lookup agrees with readdir");
            if (count[0] % 50 == 0 || !rel.startsWith("bigdir")) {
                assertEquals(e.ino(), fs.resolve(bytes("/" + childRel)), childRel + ": resolve");
            }
            Map<String, Object> a = Files.readAttributes(p, "unix:*", LinkOption.NOFOLLOW_LINKS);
            long srcIno = (Long) a.get("ino");
            Long prev = inoMap.putIfAbsent(srcIno, e.ino());
            if (prev != null) {
                assertEquals(prev.longValue(), e.ino(), childRel + ": hard links share an inode");
            }
            FileAttributes st = fs.stat(e.ino());
            int mode = (Integer) a.get("mode");
            assertEquals(Integer.toOctalString(mode), Integer.toOctalString(st.mode()), childRel + ": mode");
            assertEquals(e.ino(), st.ino());
            assertEquals(v.fileType() ? DirEntry.fileTypeOfMode(mode) : DirEntry.FT_UNKNOWN, e.fileType(), childRel + ": dirent file type");
            assertEquals(((Integer) a.get("nlink")).longValue(), st.nlink(), childRel + ": nlink");
            assertEquals(((Integer) a.get("uid")).longValue(), st.uid(), childRel + ": uid");
            assertEquals(((Integer) a.get("gid")).longValue(), st.gid(), childRel + ": gid");
            FileTime mt = (FileTime) a.get("lastModifiedTime");
            long secs = Math.floorDiv(mt.to(TimeUnit.NANOSECONDS), 1_000_000_000L);
            int nanos = (int) Math.floorMod(mt.to(TimeUnit.NANOSECONDS), 1_000_000_000L);
            assertEquals(secs, st.mtimeSeconds(), childRel + ": mtime seconds");
            assertEquals(nanos, st.mtimeNanos(), childRel + ": mtime nanos");
            assertEquals(v.blockSize(), st.blockSize());

            int type = mode & Inode.S_IFMT;
            switch (type) {
                case Inode.S_IFREG -> {
                    assertEquals(((Long) a.get("size")).longValue(), st.size(), childRel + ": size");
                    compareContent(fs, e.ino(), p, v.blockSize(), childRel);
                }
                case Inode.S_IFDIR -> {
                    if ((st.flags() & Inode.INLINE_DATA_FL) == 0) {
                        assertEquals(0, st.size() % v.blockSize(), childRel + ": dir size is whole blocks");
                    }
                    Expect.errno(Errno.EISDIR, () -> fs.read(e.ino(), 0, ByteBuffer.allocate(10)));
                    compareDir(fs, v, p, e.ino(), dirIno, childRel, inoMap, count);
                }
                case Inode.S_IFLNK -> {
                    byte[] target = bytes(Files.readSymbolicLink(p).toString());
                    assertEquals(target.length, st.size(), childRel + ": symlink size");
                    byte[] got = fs.readlink(e.ino());
                    assertArrayEquals(target, got, childRel + ": symlink target");
                }
                case Inode.S_IFCHR, Inode.S_IFBLK -> {
                    long rdev = (Long) a.get("rdev");
                    long major = ((rdev >>> 8) & 0xFFF) | ((rdev >>> 32) & ~0xFFFL);
                    long minor = (rdev & 0xFF) | ((rdev >>> 12) & ~0xFFL);
                    assertEquals(major, st.rdevMajor(), childRel + ": major");
                    assertEquals(minor, st.rdevMinor(), childRel + ": minor");
                }
                case Inode.S_IFIFO, Inode.S_IFSOCK -> assertEquals(0, st.size(), childRel);
                default -> fail(childRel + ": unexpected type " + Integer.toOctalString(type));
            }
            if (type != Inode.S_IFLNK) {
                Expect.errno(Errno.EINVAL, () -> fs.readlink(e.ino()));
            }
            compareXattrs(fs, e.ino(), childRel);
        }
    }

    private void compareContent(Ext4FileSystem fs, long ino, Path p, int blockSize, String rel) throws Exception {
        long size = Files.size(p);
        int chunk = size > 8 * MIB ? (int) MIB + 5 : blockSize * 3 + 17;
        try (RandomAccessFile f = new RandomAccessFile(p.toFile(), "r")) {
            byte[] want = new byte[chunk];
            byte[] got = new byte[chunk];
            long pos = 0;
            while (pos < size) {
                int n = (int) Math.min(chunk, size - pos);
                f.seek(pos);
                f.readFully(want, 0, n);
                Arrays.fill(got, (byte) 0x5A);
                ByteBuffer dst = ByteBuffer.wrap(got, 0, n);
                int r = fs.read(ino, pos, dst);
                assertEquals(n, r, rel + ": read at " + pos);
                if (!Arrays.equals(want, 0, n, got, 0, n)) {
                    fail(rel + ": content differs in [" + pos + ", " + (pos + n) + "): "
                            + FsUtil.hexDiff(Arrays.copyOf(want, n), Arrays.copyOf(got, n)));
                }
                pos += n;
            }
        }
        assertEquals(0, fs.read(ino, size, ByteBuffer.allocate(1)), rel + ": read at EOF");
    }

    private void compareXattrs(Ext4FileSystem fs, long ino, String rel) throws Exception {
        Map<String, byte[]> want = sourceXattrs.getOrDefault(rel, Map.of());
        List<String> listed = fs.listXattrs(ino);
        assertEquals(new TreeSet<>(want.keySet()), new TreeSet<>(listed), rel + ": xattr names");
        assertEquals(listed.size(), new LinkedHashSet<>(listed).size(), rel + ": no duplicate xattr names");
        for (Map.Entry<String, byte[]> x : want.entrySet()) {
            assertArrayEquals(x.getValue(), fs.getXattr(ino, x.getKey()), rel + ": xattr " + x.getKey());
        }
        Expect.errno(Errno.ENODATA, () -> fs.getXattr(ino, "user.does_not_exist"));
    }

    private void checkRawNames(Ext4FileSystem fs, Variant v) throws Exception {
        long dir = fs.resolve(bytes("/rawnames"));
        List<Entry> entries = FsUtil.readdirChunked(FsUtil.of(fs, dir), 13);
        Set<String> got = new TreeSet<>(FsUtil.names(entries));
        Set<String> want = new TreeSet<>(List.of(".", ".."));
        for (byte[] n : rawNames) {
            want.add(new String(n, StandardCharsets.ISO_8859_1));
        }
        assertEquals(want, got, "raw byte names");
        Map<String, Long> inos = new HashMap<>();
        for (Entry e : entries) {
            inos.put(e.nameString(), e.ino());
        }
        if (v.blockSize() < 65536) {
            assertTrue((fs.stat(dir).flags() & Inode.INDEX_FL) != 0, "rawnames is indexed");
        }
        for (byte[] n : rawNames) {
            long ino = fs.lookup(dir, n);
            assertEquals(inos.get(new String(n, StandardCharsets.ISO_8859_1)).longValue(), ino, "lookup of a high-byte name (hash signedness)");
            assertEquals(Inode.S_IFREG, fs.stat(ino).mode() & Inode.S_IFMT);
        }
    }

    private void checkRandomReads(Ext4FileSystem fs, Variant v) throws Exception {
        Path src = tree.resolve("files/big");
        byte[] all = Files.readAllBytes(src);
        long ino = fs.resolve(bytes("/files/big"));
        Random rnd = new Random(v.name().hashCode());
        for (int i = 0; i < 300; i++) {
            int off = rnd.nextInt(all.length + 100);
            int len = rnd.nextInt(3) == 0 ? rnd.nextInt(16) : rnd.nextInt(3 * v.blockSize() + 1);
            ByteBuffer dst = ByteBuffer.allocate(len + 8);
            dst.position(3);
            dst.limit(3 + len);
            int n = fs.read(ino, off, dst);
            int want = Math.max(0, Math.min(len, all.length - off));
            assertEquals(want, n, "read(" + off + ", " + len + ")");
            assertEquals(3 + n, dst.position());
            assertTrue(Arrays.equals(all, Math.min(off, all.length), Math.min(off, all.length) + n, dst.array(), 3, 3 + n),
                    "content of read(" + off + ", " + len + ")");
        }
        // Sparse file: the data islands and the holes around them.
        long sparse = fs.resolve(bytes("/sparse/sparse80"));
        FileAttributes st = fs.stat(sparse);
        assertEquals(80 * MIB, st.size());
        assertTrue(st.blocks512() * 512 < 2 * MIB, "sparse file has few blocks: " + st.blocks512());
        ByteBuffer hole = ByteBuffer.allocate(4096);
        assertEquals(4096, fs.read(sparse, 50 * MIB + 5, hole));
        assertTrue(isZero(hole.array()), "hole reads as zeros");
        ByteBuffer tail = ByteBuffer.allocate(10);
        assertEquals(3, fs.read(sparse, 80 * MIB - 3, tail));
        assertArrayEquals(new byte[] {1, 2, 3}, Arrays.copyOf(tail.array(), 3));
    }

    private static boolean isZero(byte[] b) {
        for (byte x : b) {
            if (x != 0) {
                return false;
            }
        }
        return true;
    }

    private void checkErrors(Ext4FileSystem fs) throws Exception {
        Expect.errno(Errno.ENOENT, () -> fs.resolve(bytes("/files/nope")));
        Expect.errno(Errno.ENOENT, () -> fs.resolve(bytes("/bigdir/n00001_")));
        Expect.errno(Errno.ENOENT, () -> fs.resolve(bytes("/bigdir/n99999_x")));
        Expect.errno(Errno.ENOTDIR, () -> fs.resolve(bytes("/files/f1/x")));
        Expect.errno(Errno.ENAMETOOLONG, () -> fs.lookup(Ext4FileSystem.ROOT_INO, bytes("a".repeat(256))));
        long f1 = fs.resolve(bytes("/files/f1"));
        Expect.errno(Errno.ENOTDIR, () -> fs.readdir(f1, 0, (n, i, t, p) -> true));
        Expect.errno(Errno.EOPNOTSUPP, () -> fs.getXattr(f1, "system.data"));
        Expect.errno(Errno.EOPNOTSUPP, () -> fs.getXattr(f1, "bogus.name"));
        assertEquals(fs.resolve(bytes("/files")), fs.resolve(bytes("//files//")));
        assertEquals(fs.resolve(bytes("/deep/d01/d02")), fs.resolve(bytes("/deep/d01/d02/d03/..")));
        StringBuilder deep = new StringBuilder("/deep");
        for (int i = 1; i <= DEEP_LEVELS; i++) {
            deep.append(String.format("/d%02d", i));
        }
        long leaf = fs.resolve(bytes(deep + "/leaf.txt"));
        assertArrayEquals(bytes("at the bottom\n"), FsUtil.readAll(fs, leaf, 5));
    }

    private void checkStatfs(Ext4FileSystem fs, Map<String, String> dump, Variant v) {
        StatFs s = fs.statfs(false);
        long blockCount = Long.parseLong(dump.get("Block count"));
        long free = Long.parseLong(dump.get("Free blocks"));
        long reserved = Long.parseLong(dump.get("Reserved block count"));
        assertEquals(v.blockSize(), s.blockSize());
        assertEquals(free, s.freeBlocks(), "free blocks");
        // As ext4_statfs(): f_bavail also leaves out s_resv_clusters, which extent filesystems
        // reserve for delalloc and unwritten-extent conversion (2% of the blocks, at most 4096).
        long resv = dump.get("Filesystem features").contains("extent") ? Math.min(blockCount / 50, 4096) : 0;
        assertEquals(Math.max(0, free - reserved - resv), s.availableBlocks(), "available blocks");
        assertEquals(Long.parseLong(dump.get("Inode count")), s.inodes(), "inodes");
        assertEquals(Long.parseLong(dump.get("Free inodes")), s.freeInodes(), "free inodes");
        assertEquals(255, s.nameMax());
        assertTrue(s.readOnly());
        String overhead = dump.get("Overhead clusters");
        if (overhead != null) {
            assertEquals(blockCount - Long.parseLong(overhead), s.blocks(), "blocks = block count - overhead (dumpe2fs)");
        } else {
            assertTrue(s.blocks() > 0 && s.blocks() < blockCount);
        }
    }

    // ---------------------------------------------------------------- focused cases

    /** 20,000 names in one directory of 1 KiB blocks: a two-level htree. */
    @Test
    void twentyThousandEntryHtreeDirectory(@TempDir Path dir) throws Exception {
        Path src = Files.createDirectories(dir.resolve("src/huge"));
        List<String> names = new ArrayList<>();
        for (int i = 0; i < 20_000; i++) {
            String n = String.format("f%05d-%08x", i, i * 0x9E3779B9);
            names.add(n);
            Files.createFile(src.resolve(n));
        }
        Path img = Images.mkfs(dir.resolve("img"), "64M", List.of("-b", "1024", "-N", "24000"), dir.resolve("src"));
        Images.fsckOptimizeDirs(img);
        String htree = Images.debugfsRead(img, "htree /huge");
        assertTrue(htree.contains("Indirect levels: 1"), "two-level htree:\n" + htree.substring(0, Math.min(500, htree.length())));
        try (Ext4FileSystem fs = Ext4FileSystem.open(img, MountOptions.defaults().withReadOnly(true))) {
            long huge = fs.resolve(bytes("/huge"));
            assertTrue((fs.stat(huge).flags() & Inode.INDEX_FL) != 0);
            List<Entry> entries = FsUtil.readdirChunked(FsUtil.of(fs, huge), 7);
            assertEquals(20_002, entries.size());
            Map<String, Long> inos = new HashMap<>();
            for (Entry e : entries) {
                inos.put(e.nameString(), e.ino());
            }
            Set<String> want = new TreeSet<>(names);
            want.add(".");
            want.add("..");
            assertEquals(want, new TreeSet<>(inos.keySet()));
            for (String n : names) {
                assertEquals(inos.get(n).longValue(), fs.lookup(huge, bytes(n)), n);
            }
            for (int i = 0; i < 500; i++) {
                String absent = "absent-" + i;
                Expect.errno(Errno.ENOENT, () -> fs.lookup(huge, bytes(absent)));
            }
        }
    }

    /** Nanoseconds and the epoch bits of the _extra time words, set with debugfs. */
    @Test
    void extraTimestampFieldsDecode(@TempDir Path dir) throws Exception {
        Path src = Files.createDirectories(dir.resolve("src"));
        Files.writeString(src.resolve("t"), "time");
        Path img = Images.mkfs(dir.resolve("img"), "8M", List.of("-b", "4096", "-I", "256"), src);
        // mtime: 123456789 ns, epoch bits 1 (seconds + 2^32); atime: 999999999 ns, no epoch;
        // ctime: 1 ns, epoch 3 with a negative base; crtime: 500000000 ns.
        int mtimeExtra = (123_456_789 << 2) | 1;
        int atimeExtra = 999_999_999 << 2;
        int ctimeExtra = (1 << 2) | 3;
        int crtimeExtra = 500_000_000 << 2;
        Images.debugfs(img,
                "sif /t mtime 0x10000000",
                "sif /t mtime_extra " + (mtimeExtra & 0xFFFFFFFFL),
                "sif /t atime 0x20000000",
                "sif /t atime_extra " + (atimeExtra & 0xFFFFFFFFL),
                "sif /t ctime 0xF0000000",
                "sif /t ctime_extra " + ctimeExtra,
                "sif /t crtime 0x30000000",
                "sif /t crtime_extra " + crtimeExtra);
        try (Ext4FileSystem fs = Ext4FileSystem.open(img, MountOptions.defaults().withReadOnly(true))) {
            FileAttributes st = fs.stat(fs.resolve(bytes("/t")));
            assertEquals(0x10000000L + (1L << 32), st.mtimeSeconds());
            assertEquals(123_456_789, st.mtimeNanos());
            assertEquals(0x20000000L, st.atimeSeconds());
            assertEquals(999_999_999, st.atimeNanos());
            assertEquals((long) (int) 0xF0000000 + (3L << 32), st.ctimeSeconds());
            assertEquals(1, st.ctimeNanos());
            assertEquals(0x30000000L, st.crtimeSeconds());
            assertEquals(500_000_000, st.crtimeNanos());
        }
    }

    /** A 3000-byte xattr value lives in the xattr block of a 4 KiB filesystem. */
    @Test
    void largeXattrInBlockAndSharedBlock(@TempDir Path dir) throws Exception {
        Path src = Files.createDirectories(dir.resolve("src"));
        Random rnd = new Random(3000);
        byte[] big = random(rnd, 3000);
        byte[] other = random(rnd, 600);
        Path a = Files.writeString(src.resolve("a"), "a");
        Images.setXattr(a, "user.big", big);
        Images.setXattr(a, "user.other", other);
        Images.setXattr(a, "security.label", bytes("sec"));
        Path img = Images.mkfs(dir.resolve("img"), "16M", List.of("-b", "4096"), src);
        String stat = Images.stat(img, "/a");
        assertNotEquals(0, Images.statNumber(stat, "File ACL"), "the values went to an xattr block");
        try (Ext4FileSystem fs = Ext4FileSystem.open(img, MountOptions.defaults().withReadOnly(true))) {
            long ino = fs.resolve(bytes("/a"));
            assertEquals(new TreeSet<>(List.of("user.big", "user.other", "security.label")), new TreeSet<>(fs.listXattrs(ino)));
            assertArrayEquals(big, fs.getXattr(ino, "user.big"));
            assertArrayEquals(other, fs.getXattr(ino, "user.other"));
            assertArrayEquals(bytes("sec"), fs.getXattr(ino, "security.label"));
            Expect.errno(Errno.ENODATA, () -> fs.getXattr(ino, "user.bi"));
            Expect.errno(Errno.ENODATA, () -> fs.getXattr(ino, "trusted.big"));
        }
    }

    /** Mounting from memory gives the same answers as from the file. */
    @Test
    void memoryBlockDeviceMount(@TempDir Path dir) throws Exception {
        Path src = Files.createDirectories(dir.resolve("src"));
        byte[] data = random(new Random(1), 100_000);
        Files.write(src.resolve("data"), data);
        Path img = Images.mkfs(dir.resolve("img"), "4M", List.of("-b", "1024"), src);
        byte[] image = Files.readAllBytes(img);
        byte[] copy = image.clone();
        try (Ext4FileSystem fs = Ext4FileSystem.mount(new dev.ext4j.io.MemoryBlockDevice(image, true), MountOptions.defaults())) {
            assertTrue(fs.isReadOnly(), "a read-only device gives a read-only mount");
            assertFalse(fs.messages().isEmpty() && !fs.isReadOnly());
            long ino = fs.resolve(bytes("/data"));
            assertArrayEquals(data, FsUtil.readAll(fs, ino, 777));
        }
        assertArrayEquals(copy, image, "the image bytes were not touched");
    }
}
