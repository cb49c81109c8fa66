package dev.ext4j.journal;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import dev.ext4j.Ext4Exception;
import dev.ext4j.fs.Ext4FileSystem;
import dev.ext4j.fs.FileAttributes;
import dev.ext4j.format.Inode;
import dev.ext4j.testutil.FsUtil;
import dev.ext4j.testutil.Images;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;

/** Images with journals to replay, and the oracles a replay is compared with (e2fsck, the kernel). */
final class JournalFixture {
    static final Path CORPUS = Path.of("/work/shared/corpus/e2fsprogs-tests");

    private JournalFixture() {
    }

    /** Unpacks corpus image {@code name} (image.gz or image.bz2) to {@code dir/name.img}. */
    static Path corpus(String name, Path dir) {
        Path out = dir.resolve(name + ".img");
        Path gz = CORPUS.resolve(name).resolve("image.gz");
        Path bz = CORPUS.resolve(name).resolve("image.bz2");
        String cmd = Files.exists(gz) ? "gzip -dc '" + gz + "'" : "bzip2 -dc '" + bz + "'";
        Images.runOk(List.of("sh", "-c", cmd + " > '" + out + "'"));
        return out;
    }

    /** A copy replayed by e2fsck alone ({@code e2fsck -E journal_only -y}): the reference replay. */
    static Path e2fsckReplayed(Path img, Path dir) {
        Path copy = Images.copy(img, dir.resolve(img.getFileName() + ".e2fsck"));
        Images.Result r = Images.run(List.of("e2fsck", "-E", "journal_only", "-y", copy.toString()));
        assertTrue(r.exitCode() <= 1, "e2fsck journal replay: " + r.all());
        return copy;
    }

    /** Mounts read-write with ext4j (replaying the journal) and unmounts. */
    static List<String> replayWithExt4j(Path img) throws Exception {
        try (Ext4FileSystem fs = Ext4FileSystem.open(img, dev.ext4j.fs.MountOptions.defaults())) {
            assertTrue(!fs.isReadOnly(), "mounted read-write: " + fs.messages());
            return fs.messages();
        }
    }

    /** Blocks of the journal inode (debugfs blocks &lt;8&gt;) and the block holding the primary superblock. */
    static Set<Long> superblockAndJournal(Path img, int blockSize) {
        Set<Long> skip = new HashSet<>();
        skip.add(1024L / blockSize);
        for (String s : Images.debugfsLenient(img, "blocks <8>").trim().split("\\s+")) {
            if (!s.isEmpty()) {
                skip.add(Long.parseLong(s));
            }
        }
        return skip;
    }

    /** Every block but those in {@code skip} is equal in both images. */
    static void assertSameBlocks(Path expected, Path actual, int blockSize, Set<Long> skip) throws IOException {
        byte[] a = Files.readAllBytes(expected);
        byte[] b = Files.readAllBytes(actual);
        assertEquals(a.length, b.length, "image sizes");
        List<Long> differ = new ArrayList<>();
        for (long blk = 0; blk < a.length / blockSize; blk++) {
            int off = (int) (blk * blockSize);
            if (!skip.contains(blk) && !FsUtil.equalRange(a, off, b, off, blockSize)) {
                differ.add(blk);
            }
        }
        assertTrue(differ.isEmpty(), "blocks that differ from the reference replay: "
                + differ.subList(0, Math.min(20, differ.size())) + (differ.size() > 20 ? " ..." : ""));
    }

    /** e2fsck -fn findings on {@code img}: the lines between the banner and the summary, paths removed. */
    static List<String> fsckFindings(Path img) {
        Images.Result r = Images.fsckCheck(img);
        List<String> out = new ArrayList<>();
        for (String line : r.all().split("\n")) {
            String l = line.trim();
            if (l.isEmpty() || l.startsWith("e2fsck ") || l.startsWith("Pass ") || l.contains(img.toString())
                    || Images.isClockNote(l)) {
                continue;
            }
            out.add(l.replace(img.getFileName().toString(), "IMG"));
        }
        return out;
    }

    /**
     * e2fsck finds nothing on the ext4j replay that it does not find on the reference replay. The
     * reverse may happen: ext4j's unmount writes the free counts into the superblock, e2fsck's
     * journal-only run does not.
     */
    static void assertNoWorseThan(Path reference, Path replayed) {
        List<String> ref = fsckFindings(reference);
        for (String l : fsckFindings(replayed)) {
            assertTrue(ref.contains(l), "e2fsck -fn on the ext4j replay says '" + l + "', not said on e2fsck's replay " + ref);
        }
    }

    /** The tree as path -> "mode size sha256(contents or target)", read through ext4j. */
    static Map<String, String> tree(Ext4FileSystem fs) throws Ext4Exception {
        Map<String, String> out = new TreeMap<>();
        walk(fs, Ext4FileSystem.ROOT_INO, "", out);
        return out;
    }

    private static void walk(Ext4FileSystem fs, long dir, String prefix, Map<String, String> out) throws Ext4Exception {
        for (FsUtil.Entry e : FsUtil.readdirAll(FsUtil.of(fs, dir))) {
            String name = e.nameString();
            if (name.equals(".") || name.equals("..")) {
                continue;
            }
            String path = prefix + "/" + name;
            FileAttributes a = fs.stat(e.ino());
            int type = a.mode() & Inode.S_IFMT;
            String content = "";
            if (type == Inode.S_IFREG) {
                content = sha(FsUtil.readAll(fs, e.ino(), 65536));
            } else if (type == Inode.S_IFLNK) {
                content = sha(fs.readlink(e.ino()));
            }
            out.put(path, Integer.toOctalString(a.mode()) + " " + a.size() + " " + content);
            if (type == Inode.S_IFDIR) {
                walk(fs, e.ino(), path, out);
            }
        }
    }

    static String sha(byte[] b) {
        try {
            return HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(b));
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }

    /** The tree of an image as a read-only ext4j mount sees it. */
    static Map<String, String> treeOf(Path img) throws Exception {
        try (Ext4FileSystem fs = Ext4FileSystem.open(img, dev.ext4j.fs.MountOptions.defaults().withReadOnly(true))) {
            return tree(fs);
        }
    }

    static boolean hasFeature(Path img, String feature) {
        String line = Images.dumpe2fsHeader(img).getOrDefault("Filesystem features", "");
        return List.of(line.split("\\s+")).contains(feature);
    }

    /** True when this process may loop-mount (root and a loop device). */
    static boolean canKernelMount() {
        return "root".equals(System.getProperty("user.name")) && Files.exists(Path.of("/dev/loop-control"));
    }

    /** {@code mount -o loop img mnt}, runs {@code body}, always unmounts. */
    static void withKernelMount(Path img, Path mnt, String opts, IoAction body) throws Exception {
        Files.createDirectories(mnt);
        Images.Result r = Images.run(List.of("mount", "-t", "ext4", "-o", opts, img.toString(), mnt.toString()));
        if (r.exitCode() != 0) {
            fail("mount -o " + opts + " " + img + ": " + r.all());
        }
        try {
            body.run();
        } finally {
            Images.Result u = Images.run(List.of("umount", mnt.toString()));
            if (u.exitCode() != 0) {
                Images.run(List.of("umount", "-l", mnt.toString()));
            }
        }
    }

    @FunctionalInterface
    interface IoAction {
        void run() throws Exception;
    }
}
