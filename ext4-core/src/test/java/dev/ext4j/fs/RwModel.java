package dev.ext4j.fs;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import dev.ext4j.Ext4Exception;
import dev.ext4j.format.DirEntry;
import dev.ext4j.format.Inode;
import dev.ext4j.testutil.FsUtil;
import dev.ext4j.testutil.Images;
import java.io.RandomAccessFile;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.nio.file.attribute.FileTime;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.HashMap;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.Set;
import java.util.TreeMap;
import java.util.TreeSet;
import java.util.stream.Stream;

/**
 * An in-memory model of a filesystem tree for the read-write tests, a driver that applies each
 * operation to ext4j and to the model, and the checks that compare a tree (through ext4j, or
 * through a kernel loop mount) with the model.
 */
final class RwModel {
    private RwModel() {
    }

    // ---------------------------------------------------------------- file content

    /** Sparse file content: 64 KiB chunks, missing chunks read as zeros. */
    static final class Content {
        static final int CHUNK = 1 << 16;
        /** Files up to this size are compared whole; larger ones chunk by chunk, with samples of the holes. */
        static final long WHOLE_LIMIT = 4L << 20;
        final TreeMap<Long, byte[]> chunks = new TreeMap<>();
        long size;

        void write(long off, byte[] data, int from, int len) {
            long pos = off;
            int i = from;
            int end = from + len;
            while (i < end) {
                long c = pos / CHUNK;
                int in = (int) (pos % CHUNK);
                int n = Math.min(CHUNK - in, end - i);
                byte[] ch = chunks.computeIfAbsent(c, k -> new byte[CHUNK]);
                System.arraycopy(data, i, ch, in, n);
                pos += n;
                i += n;
            }
            size = Math.max(size, off + len);
        }

        /** Zeros [off, off + len) without changing the size. */
        void zero(long off, long len) {
            if (len <= 0) {
                return;
            }
            long end = off + len;
            for (Map.Entry<Long, byte[]> e : new ArrayList<>(chunks.subMap(off / CHUNK, true, (end - 1) / CHUNK, true).entrySet())) {
                long cs = e.getKey() * CHUNK;
                int a = (int) Math.max(0, off - cs);
                int b = (int) Math.min(CHUNK, end - cs);
                if (a == 0 && b == CHUNK) {
                    chunks.remove(e.getKey());
                } else {
                    Arrays.fill(e.getValue(), a, b, (byte) 0);
                }
            }
        }

        void truncate(long newSize) {
            if (newSize < size) {
                zero(newSize, size - newSize);
            }
            size = newSize;
        }

        byte[] read(long off, int len) {
            int n = (int) Math.max(0, Math.min(len, size - off));
            byte[] out = new byte[n];
            if (n == 0) {
                return out;
            }
            long end = off + n;
            for (Map.Entry<Long, byte[]> e : chunks.subMap(off / CHUNK, true, (end - 1) / CHUNK, true).entrySet()) {
                long cs = e.getKey() * CHUNK;
                long a = Math.max(off, cs);
                long b = Math.min(end, cs + CHUNK);
                System.arraycopy(e.getValue(), (int) (a - cs), out, (int) (a - off), (int) (b - a));
            }
            return out;
        }

        /** Compares with what {@code reader} returns: whole for small files, chunks and hole samples for large ones. */
        void check(String what, RangeReader reader) throws Exception {
            if (size <= WHOLE_LIMIT) {
                compare(what, reader, 0, (int) size);
                return;
            }
            long prevEnd = 0;
            for (long c : chunks.keySet()) {
                long cs = c * CHUNK;
                if (cs >= size) {
                    break;
                }
                if (cs > prevEnd) {
                    sampleHole(what, reader, prevEnd, cs);
                }
                long ce = Math.min(cs + CHUNK, size);
                compare(what, reader, cs, (int) (ce - cs));
                prevEnd = ce;
            }
            if (prevEnd < size) {
                sampleHole(what, reader, prevEnd, size);
            }
        }

        private void sampleHole(String what, RangeReader reader, long from, long to) throws Exception {
            compare(what, reader, from, (int) Math.min(8192, to - from));
            long tail = Math.max(from, to - 8192);
            compare(what, reader, tail, (int) (to - tail));
            long mid = from + (to - from) / 2;
            compare(what, reader, mid, (int) Math.min(4096, to - mid));
        }

        private void compare(String what, RangeReader reader, long off, int len) throws Exception {
            byte[] want = read(off, len);
            byte[] got = reader.read(off, len);
            if (!Arrays.equals(want, got)) {
                fail(what + ": content differs in [" + off + ", " + (off + len) + "): " + FsUtil.hexDiff(want, got));
            }
        }
    }

    @FunctionalInterface
    interface RangeReader {
        byte[] read(long off, int len) throws Exception;
    }

    // ---------------------------------------------------------------- nodes

    static final class Node {
        final int type;
        int mode;
        long uid;
        long gid;
        /** Names of a non-directory. */
        int links = 1;
        final Content content;
        byte[] target;
        int major;
        int minor;
        final TreeMap<String, Node> children;
        Node parent;
        /** Expected times, when set by utimens and not changed since; null when not checked. */
        Ext4FileSystem.Time atime;
        Ext4FileSystem.Time mtime;
        /** Inode number, learned from the first check and then required to stay the same. */
        long ino;

        Node(int mode) {
            this.type = mode & Inode.S_IFMT;
            this.mode = mode;
            this.content = type == Inode.S_IFREG ? new Content() : null;
            this.children = type == Inode.S_IFDIR ? new TreeMap<>() : null;
        }

        boolean isDir() {
            return type == Inode.S_IFDIR;
        }

        long nlink() {
            if (!isDir()) {
                return links;
            }
            return 2 + children.values().stream().filter(Node::isDir).count();
        }

        long size() {
            if (content != null) {
                return content.size;
            }
            return target != null ? target.length : 0;
        }

        void touched() {
            mtime = null;
        }
    }

    static byte[] b(String s) {
        return s.getBytes(StandardCharsets.ISO_8859_1);
    }

    static String parentOf(String path) {
        int i = path.lastIndexOf('/');
        return i <= 0 ? "/" : path.substring(0, i);
    }

    static String nameOf(String path) {
        return path.substring(path.lastIndexOf('/') + 1);
    }

    static byte[] fsRead(Ext4FileSystem fs, long ino, long off, int len) throws Ext4Exception {
        byte[] out = new byte[len];
        int pos = 0;
        while (pos < len) {
            int n = fs.read(ino, off + pos, ByteBuffer.wrap(out, pos, len - pos));
            if (n <= 0) {
                break;
            }
            pos += n;
        }
        return pos == len ? out : Arrays.copyOf(out, pos);
    }

    // ---------------------------------------------------------------- the driver

    /** Applies each operation to ext4j and, when it succeeds, to the model. */
    static final class Driver {
        final Ext4FileSystem fs;
        final Node root;

        /** A model of a filesystem fresh from mkfs: the root and an empty lost+found. */
        Driver(Ext4FileSystem fs) {
            this(fs, freshRoot());
        }

        Driver(Ext4FileSystem fs, Node root) {
            this.fs = fs;
            this.root = root;
        }

        static Node freshRoot() {
            Node root = new Node(Inode.S_IFDIR | 0755);
            root.parent = root;
            root.ino = Ext4FileSystem.ROOT_INO;
            Node lf = new Node(Inode.S_IFDIR | 0700);
            lf.parent = root;
            root.children.put("lost+found", lf);
            return root;
        }

        Node node(String path) {
            Node n = root;
            for (String part : path.split("/")) {
                if (part.isEmpty()) {
                    continue;
                }
                n = n.children.get(part);
                assertNotNull(n, "model has no " + path);
            }
            return n;
        }

        boolean exists(String path) {
            Node n = root;
            for (String part : path.split("/")) {
                if (part.isEmpty()) {
                    continue;
                }
                if (n.children == null) {
                    return false;
                }
                n = n.children.get(part);
                if (n == null) {
                    return false;
                }
            }
            return true;
        }

        long ino(String path) throws Ext4Exception {
            return fs.resolve(b(path));
        }

        private Node add(String path, Node n) {
            Node dir = node(parentOf(path));
            dir.children.put(nameOf(path), n);
            dir.touched();
            if (n.isDir()) {
                n.parent = dir;
            }
            return n;
        }

        /** The gid and mode bits a new inode gets under a setgid directory. */
        private Node fresh(String path, int mode, long uid, long gid) {
            Node dir = node(parentOf(path));
            Node n = new Node(mode);
            n.uid = uid;
            n.gid = gid;
            if ((dir.mode & 02000) != 0) {
                n.gid = dir.gid;
                if (n.isDir()) {
                    n.mode |= 02000;
                }
            }
            return n;
        }

        long mkdir(String path, int perm) throws Ext4Exception {
            return mkdir(path, perm, 0, 0);
        }

        long mkdir(String path, int perm, long uid, long gid) throws Ext4Exception {
            long ino = fs.mkdir(ino(parentOf(path)), b(nameOf(path)), perm, uid, gid);
            add(path, fresh(path, Inode.S_IFDIR | perm, uid, gid));
            return ino;
        }

        long create(String path, int perm) throws Ext4Exception {
            return create(path, perm, 0, 0);
        }

        long create(String path, int perm, long uid, long gid) throws Ext4Exception {
            long ino = fs.mknod(ino(parentOf(path)), b(nameOf(path)), Inode.S_IFREG | perm, 0, 0, uid, gid);
            add(path, fresh(path, Inode.S_IFREG | perm, uid, gid));
            return ino;
        }

        long mknod(String path, int mode, int major, int minor) throws Ext4Exception {
            long ino = fs.mknod(ino(parentOf(path)), b(nameOf(path)), mode, major, minor, 0, 0);
            Node n = fresh(path, mode, 0, 0);
            if ((mode & Inode.S_IFMT) == Inode.S_IFCHR || (mode & Inode.S_IFMT) == Inode.S_IFBLK) {
                n.major = major;
                n.minor = minor;
            }
            add(path, n);
            return ino;
        }

        long symlink(String path, byte[] target) throws Ext4Exception {
            long ino = fs.symlink(ino(parentOf(path)), b(nameOf(path)), target, 0, 0);
            Node n = fresh(path, Inode.S_IFLNK | 0777, 0, 0);
            n.target = target.clone();
            add(path, n);
            return ino;
        }

        void link(String existing, String newPath) throws Ext4Exception {
            fs.link(ino(existing), ino(parentOf(newPath)), b(nameOf(newPath)));
            Node n = node(existing);
            n.links++;
            add(newPath, n);
        }

        void unlink(String path) throws Ext4Exception {
            fs.unlink(ino(parentOf(path)), b(nameOf(path)));
            Node dir = node(parentOf(path));
            Node n = dir.children.remove(nameOf(path));
            n.links--;
            dir.touched();
        }

        void rmdir(String path) throws Ext4Exception {
            fs.rmdir(ino(parentOf(path)), b(nameOf(path)));
            Node dir = node(parentOf(path));
            dir.children.remove(nameOf(path));
            dir.touched();
        }

        void rename(String from, String to) throws Ext4Exception {
            fs.rename(ino(parentOf(from)), b(nameOf(from)), ino(parentOf(to)), b(nameOf(to)));
            Node fromDir = node(parentOf(from));
            Node toDir = node(parentOf(to));
            Node s = fromDir.children.get(nameOf(from));
            Node d = toDir.children.get(nameOf(to));
            if (d == s) {
                return;
            }
            fromDir.children.remove(nameOf(from));
            if (d != null && !d.isDir()) {
                d.links--;
            }
            toDir.children.put(nameOf(to), s);
            if (s.isDir()) {
                s.parent = toDir;
            }
            fromDir.touched();
            toDir.touched();
        }

        /** Writes {@code data} at {@code off} in pieces of random sizes (1 byte to 64 KiB). */
        void write(String path, long off, byte[] data, Random rnd) throws Ext4Exception {
            long ino = ino(path);
            int pos = 0;
            while (pos < data.length) {
                int n = Math.min(data.length - pos, rnd.nextInt(8) == 0 ? 1 + rnd.nextInt(100) : 1 + rnd.nextInt(65536));
                writeAll(ino, off + pos, data, pos, n);
                pos += n;
            }
            Node node = node(path);
            node.content.write(off, data, 0, data.length);
            node.touched();
        }

        void write(String path, long off, byte[] data) throws Ext4Exception {
            writeAll(ino(path), off, data, 0, data.length);
            Node node = node(path);
            node.content.write(off, data, 0, data.length);
            node.touched();
        }

        private void writeAll(long ino, long off, byte[] data, int from, int len) throws Ext4Exception {
            int done = 0;
            while (done < len) {
                int n = fs.write(ino, off + done, ByteBuffer.wrap(data, from + done, len - done));
                assertTrue(n > 0, "write made progress");
                done += n;
            }
        }

        void truncate(String path, long size) throws Ext4Exception {
            fs.truncate(ino(path), size);
            Node n = node(path);
            n.content.truncate(size);
            n.touched();
        }

        void fallocate(String path, int mode, long off, long len) throws Ext4Exception {
            fs.fallocate(ino(path), mode, off, len);
            Node n = node(path);
            Content c = n.content;
            if ((mode & 0x02) != 0) { // punch hole (with keep size)
                c.zero(off, Math.min(len, c.size - off));
                n.touched();
                return;
            }
            if ((mode & 0x10) != 0) { // zero range
                c.zero(off, Math.min(len, Math.max(0, c.size - off)));
                n.touched();
            }
            if ((mode & 0x01) == 0 && off + len > c.size) {
                c.size = off + len;
            }
        }

        void chmod(String path, int perm) throws Ext4Exception {
            fs.setAttributes(ino(path), perm, null, null, null, null);
            Node n = node(path);
            n.mode = (n.mode & Inode.S_IFMT) | (perm & 07777);
        }

        void chown(String path, long uid, long gid) throws Ext4Exception {
            fs.setAttributes(ino(path), null, uid, gid, null, null);
            Node n = node(path);
            n.uid = uid;
            n.gid = gid;
            if (!n.isDir()) {
                n.mode &= ~06000;
            }
        }

        void utimens(String path, Ext4FileSystem.Time atime, Ext4FileSystem.Time mtime) throws Ext4Exception {
            fs.setAttributes(ino(path), null, null, null, atime, mtime);
            Node n = node(path);
            if (atime != null) {
                n.atime = atime;
            }
            if (mtime != null) {
                n.mtime = mtime;
            }
        }

        /** Every path in the model, parents before children. */
        List<String> paths() {
            List<String> out = new ArrayList<>();
            collect(root, "", out);
            return out;
        }

        private static void collect(Node dir, String prefix, List<String> out) {
            for (Map.Entry<String, Node> e : dir.children.entrySet()) {
                String p = prefix + "/" + e.getKey();
                out.add(p);
                if (e.getValue().isDir()) {
                    collect(e.getValue(), p, out);
                }
            }
        }
    }

    // ---------------------------------------------------------------- checks through ext4j

    /** Walks the tree through ext4j and compares every name, inode and content with the model. */
    static void verifyFs(Ext4FileSystem fs, Node root) throws Exception {
        Map<Long, Node> byIno = new HashMap<>();
        checkAttrs(fs, root, Ext4FileSystem.ROOT_INO, "/", byIno);
        walkFs(fs, root, Ext4FileSystem.ROOT_INO, Ext4FileSystem.ROOT_INO, "", byIno);
    }

    private static void walkFs(Ext4FileSystem fs, Node dir, long dirIno, long parentIno, String path, Map<Long, Node> byIno)
            throws Exception {
        List<FsUtil.Entry> entries = dir.children.size() > 1000
                ? FsUtil.readdirChunked(FsUtil.of(fs, dirIno), 97)
                : FsUtil.readdirAll(FsUtil.of(fs, dirIno));
        Map<String, FsUtil.Entry> byName = new HashMap<>();
        for (FsUtil.Entry e : entries) {
            if (byName.put(e.nameString(), e) != null) {
                fail((path.isEmpty() ? "/" : path) + ": readdir returns \"" + e.nameString() + "\" twice");
            }
        }
        assertEquals(dirIno, byName.get(".").ino(), path + "/.");
        assertEquals(parentIno, byName.get("..").ino(), path + "/..");
        byName.remove(".");
        byName.remove("..");
        assertEquals(new TreeSet<>(dir.children.keySet()), new TreeSet<>(byName.keySet()), (path.isEmpty() ? "/" : path) + ": names");
        for (Map.Entry<String, Node> c : dir.children.entrySet()) {
            String p = path + "/" + c.getKey();
            FsUtil.Entry e = byName.get(c.getKey());
            long ino = fs.lookup(dirIno, b(c.getKey()));
            assertEquals(e.ino(), ino, p + ": lookup agrees with readdir");
            assertEquals(DirEntry.fileTypeOfMode(c.getValue().mode), e.fileType(), p + ": file type in the entry");
            checkAttrs(fs, c.getValue(), ino, p, byIno);
            if (c.getValue().isDir()) {
                walkFs(fs, c.getValue(), ino, dirIno, p, byIno);
            }
        }
    }

    private static void checkAttrs(Ext4FileSystem fs, Node n, long ino, String p, Map<Long, Node> byIno) throws Exception {
        Node seen = byIno.putIfAbsent(ino, n);
        if (seen != null && seen != n) {
            fail(p + ": inode " + ino + " also holds another file of the model");
        }
        if (n.ino == 0) {
            n.ino = ino;
        }
        assertEquals(n.ino, ino, p + ": inode number");
        if (seen != null) {
            return; // another name of an inode checked already
        }
        FileAttributes st = fs.stat(ino);
        assertEquals(Integer.toOctalString(n.mode), Integer.toOctalString(st.mode()), p + ": mode");
        assertEquals(n.nlink(), st.nlink(), p + ": links");
        assertEquals(n.uid, st.uid(), p + ": uid");
        assertEquals(n.gid, st.gid(), p + ": gid");
        if (n.mtime != null) {
            assertEquals(n.mtime, new Ext4FileSystem.Time(st.mtimeSeconds(), st.mtimeNanos()), p + ": mtime");
        }
        if (n.atime != null) {
            assertEquals(n.atime, new Ext4FileSystem.Time(st.atimeSeconds(), st.atimeNanos()), p + ": atime");
        }
        if (n.isDir()) {
            boolean inline = (st.flags() & Inode.INLINE_DATA_FL) != 0;
            assertTrue(st.size() > 0 && (inline || st.size() % fs.superblock().blockSize() == 0), p + ": directory size " + st.size());
            return;
        }
        assertEquals(n.size(), st.size(), p + ": size");
        if (n.content != null) {
            n.content.check(p, (off, len) -> fsRead(fs, ino, off, len));
        } else if (n.target != null) {
            assertEquals(new String(n.target, StandardCharsets.ISO_8859_1), new String(fs.readlink(ino), StandardCharsets.ISO_8859_1),
                    p + ": symlink target");
        } else if (n.type == Inode.S_IFCHR || n.type == Inode.S_IFBLK) {
            assertEquals(n.major, st.rdevMajor(), p + ": major");
            assertEquals(n.minor, st.rdevMinor(), p + ": minor");
        }
    }

    // ---------------------------------------------------------------- checks through the kernel

    /** Mounts {@code img} read-only through a loop device and compares the tree with the model; false when loop mounts fail. */
    static boolean verifyKernel(Path img, Path mnt, Node root) throws Exception {
        Files.createDirectories(mnt);
        Images.Result r = Images.run(List.of("mount", "-o", "loop,ro", img.toString(), mnt.toString()));
        if (r.exitCode() != 0) {
            System.err.println("loop mount of " + img + " failed, no kernel comparison: " + r.all().trim());
            return false;
        }
        try {
            Set<Node> seen = Collections.newSetFromMap(new IdentityHashMap<>());
            checkKernelAttrs(mnt, root, "/", seen);
            walkKernel(mnt, root, "", seen);
        } finally {
            Images.Result u = Images.run(List.of("umount", mnt.toString()));
            if (u.exitCode() != 0) {
                Images.run(List.of("umount", "-l", mnt.toString()));
                throw new IllegalStateException("umount " + mnt + ": " + u.all());
            }
        }
        return true;
    }

    private static void walkKernel(Path mnt, Node dir, String path, Set<Node> seen) throws Exception {
        Path d = path.isEmpty() ? mnt : mnt.resolve(path.substring(1));
        TreeSet<String> names = new TreeSet<>();
        try (Stream<Path> s = Files.list(d)) {
            s.forEach(p -> names.add(p.getFileName().toString()));
        }
        assertEquals(new TreeSet<>(dir.children.keySet()), names, "kernel: " + (path.isEmpty() ? "/" : path) + ": names");
        for (Map.Entry<String, Node> c : dir.children.entrySet()) {
            String p = path + "/" + c.getKey();
            checkKernelAttrs(mnt, c.getValue(), p, seen);
            if (c.getValue().isDir()) {
                walkKernel(mnt, c.getValue(), p, seen);
            }
        }
    }

    private static void checkKernelAttrs(Path mnt, Node n, String p, Set<Node> seen) throws Exception {
        Path f = p.equals("/") ? mnt : mnt.resolve(p.substring(1));
        String what = "kernel: " + p;
        if (!seen.add(n)) {
            assertEquals(n.ino, (long) (Long) Files.getAttribute(f, "unix:ino", LinkOption.NOFOLLOW_LINKS), what + ": inode number");
            return; // another name of an inode checked already
        }
        Map<String, Object> a = Files.readAttributes(f, "unix:*", LinkOption.NOFOLLOW_LINKS);
        assertEquals(Integer.toOctalString(n.mode), Integer.toOctalString((Integer) a.get("mode")), what + ": mode");
        assertEquals(n.nlink(), ((Integer) a.get("nlink")).longValue(), what + ": links");
        assertEquals(n.uid, ((Integer) a.get("uid")).longValue() & 0xFFFFFFFFL, what + ": uid");
        assertEquals(n.gid, ((Integer) a.get("gid")).longValue() & 0xFFFFFFFFL, what + ": gid");
        if (n.ino != 0) {
            assertEquals(n.ino, (long) (Long) a.get("ino"), what + ": inode number");
        }
        if (n.mtime != null) {
            assertEquals(n.mtime, time((FileTime) a.get("lastModifiedTime")), what + ": mtime");
        }
        if (n.atime != null) {
            assertEquals(n.atime, time((FileTime) a.get("lastAccessTime")), what + ": atime");
        }
        if (n.isDir()) {
            return;
        }
        assertEquals(n.size(), (long) (Long) a.get("size"), what + ": size");
        if (n.content != null) {
            try (RandomAccessFile raf = new RandomAccessFile(f.toFile(), "r")) {
                n.content.check(what, (off, len) -> {
                    int m = (int) Math.max(0, Math.min(len, raf.length() - off));
                    byte[] out = new byte[m];
                    raf.seek(off);
                    raf.readFully(out);
                    return out;
                });
            }
        } else if (n.target != null) {
            assertEquals(new String(n.target, StandardCharsets.ISO_8859_1), Files.readSymbolicLink(f).toString(), what + ": symlink target");
        } else if (n.type == Inode.S_IFCHR || n.type == Inode.S_IFBLK) {
            long rdev = (Long) a.get("rdev");
            long major = ((rdev >>> 8) & 0xFFF) | ((rdev >>> 32) & ~0xFFFL);
            long minor = (rdev & 0xFF) | ((rdev >>> 12) & ~0xFFL);
            assertEquals(n.major, major, what + ": major");
            assertEquals(n.minor, minor, what + ": minor");
        }
    }

    private static Ext4FileSystem.Time time(FileTime t) {
        java.time.Instant i = t.toInstant();
        return new Ext4FileSystem.Time(i.getEpochSecond(), i.getNano());
    }

    // ---------------------------------------------------------------- e2fsck

    /**
     * {@code e2fsck -fn}: exit 0 (as {@link Images#assertClean}) and nothing said beyond the pass
     * headers and the summary. One note is allowed: "extent tree (at level N) could be narrower",
     * which the kernel leaves just the same after punching holes across leaves (it never merges
     * leaves on removal); "could be shorter" and everything else fail.
     */
    static void assertFsckClean(Path img) {
        Images.assertSilentlyClean(img, "Inode \\d+ extent tree \\(at level \\d+\\) could be narrower\\.  Optimize\\? no");
    }
}
