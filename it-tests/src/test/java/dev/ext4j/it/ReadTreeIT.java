package dev.ext4j.it;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTimeoutPreemptively;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.io.IOException;
import java.nio.file.FileStore;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.TreeSet;
import java.util.concurrent.ConcurrentHashMap;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * Packs a source tree into images of several formats with {@code mkfs.ext4 -d}, mounts each with
 * ext4j and compares what ext4j shows with the source tree, then with the kernel's own ext4 driver
 * reading the same image (loop mount): attributes, content, xattrs, inode numbers, block counts,
 * statfs. A read-only mount must leave the image byte-for-byte unchanged.
 */
class ReadTreeIT extends FuseTestBase {

    /** One image format: mkfs arguments and whether its inodes can hold nanoseconds and post-2038 dates. */
    record Variant(String name, List<String> mkfsArgs, boolean extraTimes) {
        @Override
        public String toString() {
            return name + " (" + String.join(" ", mkfsArgs) + ")";
        }
    }

    static Stream<Variant> variants() {
        return Stream.of(
                new Variant("4k", List.of("-T", "default"), true),
                new Variant("1k", List.of("-T", "default", "-b", "1024"), true),
                new Variant("inline_data", List.of("-T", "default", "-O", "inline_data"), true),
                new Variant("no_metadata_csum", List.of("-T", "default", "-O", "^metadata_csum"), true),
                new Variant("ext3", List.of("-T", "default", "-t", "ext3"), true),
                new Variant("ext3-1k", List.of("-T", "default", "-t", "ext3", "-b", "1024"), true),
                new Variant("ext2", List.of("-T", "default", "-t", "ext2"), true),
                new Variant("no_64bit", List.of("-T", "default", "-O", "^64bit"), true),
                new Variant("64k", List.of("-T", "default", "-b", "65536"), true),
                new Variant("128-byte-inodes", List.of("-T", "default", "-I", "128"), false))
                .filter(v -> variantSelected(v.name()));
    }

    private static final String IMAGE_SIZE = "300M";
    private static SourceTree source;
    private static final Map<String, Path> images = new ConcurrentHashMap<>();

    @BeforeAll
    static void buildSource() throws IOException {
        source = SourceTree.build(scratch.resolve("src"), 20240601L);
    }

    /** Builds (once) and returns the image for a variant; e2fsck must find it clean. */
    static synchronized Path image(Variant v) {
        return images.computeIfAbsent(v.name(), n -> {
            Path img = scratch.resolve(n + ".img");
            Tools.mkfs(source.root(), img, IMAGE_SIZE, v.mkfsArgs());
            if (v.mkfsArgs().contains("inline_data")) {
                // mkfs.ext4 1.47.0 -O inline_data -d cuts a sparse file that ends in a hole at its last
                // data block (debugfs shows the wrong i_size; the kernel agrees): put the sizes back.
                source.restoreSparseSizes(img);
            }
            if (v.extraTimes()) {
                source.stampExactTimes(img);
            }
            Tools.e2fsckClean(img);
            return img;
        });
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("variants")
    void ext4jShowsTheSourceTree(Variant v) {
        Path img = image(v);
        String sha = Tools.sha256(img);
        Path mnt = newDir("mnt-" + v.name());
        try (MountedImage m = MountedImage.mount(img, mnt, scratch.resolve("ext4j-" + v.name() + "-src.log"), "ro")) {
            TreeCompare.Options o = TreeCompare.Options.sourceVsImage();
            if (!v.extraTimes()) {
                // 128-byte inodes: no nanoseconds, no dates past 2038; the kernel comparison covers them
                o.mtime(false);
            }
            List<String> diffs = assertTimeoutPreemptively(Duration.ofMinutes(5), () -> TreeCompare.compare(source.root(), mnt, o),
                    "walking the ext4j mount took more than 5 minutes (hang?)");
            assertTrue(diffs.isEmpty(), "ext4j view of " + v + " differs from the source tree:\n  " + String.join("\n  ", diffs));

            if (v.extraTimes()) {
                // times to the nanosecond and past 2262, which FileTime cannot show
                List<String> tdiffs = ShellViews.diffMaps("mtime", ShellViews.mtimes(source.root()), ShellViews.mtimes(mnt, "lost+found"), 50);
                assertTrue(tdiffs.isEmpty(), "mtimes (find -printf %T@) differ from the source:\n  " + String.join("\n  ", tdiffs));
            }

            // all xattr namespaces (ACLs included), as getfattr sees them
            List<String> xdiffs = ShellViews.diffMaps("xattrs", ShellViews.xattrDump(source.root()), ShellViews.xattrDump(mnt, "lost+found"), 50);
            assertTrue(xdiffs.isEmpty(), "xattrs via getfattr differ from the source:\n  " + String.join("\n  ", xdiffs));

            assertTrue(m.alive(), "mount no longer answers");
            assertEquals(List.of(), m.unexpectedFailures(), "server log reports unexpected failures");
        }
        assertEquals(sha, Tools.sha256(img), "the image changed during a read-only ext4j mount");
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("variants")
    void ext4jAgreesWithTheKernel(Variant v) throws IOException {
        Path img = image(v);
        String sha = Tools.sha256(img);
        Path kmnt = newDir("kernel-" + v.name());
        Path mnt = newDir("mnt-" + v.name());
        try (KernelMount k = KernelMount.attempt(img, kmnt);
             MountedImage m = MountedImage.mount(img, mnt, scratch.resolve("ext4j-" + v.name() + "-kernel.log"), "ro")) {
            assumeTrue(k.mounted(), "the kernel cannot mount " + v + " here, nothing to compare with: " + k.result().output());
            compareWithKernel(kmnt, mnt, v.toString());
            assertTrue(m.alive(), "mount no longer answers");
            assertEquals(List.of(), m.unexpectedFailures(), "server log reports unexpected failures");
        }
        assertEquals(sha, Tools.sha256(img), "the image changed during the read-only mounts");
    }

    /** Everything visible through the two mounts of one image must be identical. */
    static void compareWithKernel(Path kernel, Path ext4j, String what) throws IOException {
        List<String> diffs = assertTimeoutPreemptively(Duration.ofMinutes(5),
                () -> TreeCompare.compare(kernel, ext4j, TreeCompare.Options.sameImage()), "walking the mounts took more than 5 minutes (hang?)");
        assertTrue(diffs.isEmpty(), "ext4j differs from the kernel on " + what + ":\n  " + String.join("\n  ", diffs));

        List<String> listing = ShellViews.diffMaps("find", ShellViews.findListing(kernel, true, true, true),
                ShellViews.findListing(ext4j, true, true, true), 50);
        assertTrue(listing.isEmpty(), "find -printf (inode, st_blocks, times...) differs from the kernel on " + what + ":\n  " + String.join("\n  ", listing));

        List<String> xdiffs = ShellViews.diffMaps("xattrs", ShellViews.xattrDump(kernel), ShellViews.xattrDump(ext4j), 50);
        assertTrue(xdiffs.isEmpty(), "xattrs via getfattr differ from the kernel on " + what + ":\n  " + String.join("\n  ", xdiffs));

        assertEquals(ShellViews.statfs(kernel), ShellViews.statfs(ext4j), "statfs (stat -f) differs from the kernel on " + what);
        FileStore ks = Files.getFileStore(kernel);
        FileStore es = Files.getFileStore(ext4j);
        assertEquals(ks.getTotalSpace(), es.getTotalSpace(), "FileStore total space");
        assertEquals(ks.getUsableSpace(), es.getUsableSpace(), "FileStore usable space");
        assertEquals(ks.getUnallocatedSpace(), es.getUnallocatedSpace(), "FileStore unallocated space");
        assertEquals(Files.getAttribute(kernel, "unix:ino"), Files.getAttribute(ext4j, "unix:ino"), "root inode number");
    }

    // ----------------------------------------------------------------------------------------------

    /**
     * A directory of 20,000 entries in a 1 KiB-block image, indexed by e2fsck -D: the hash tree
     * needs an indirect level. Listing, lookups of every name, misses, and the kernel comparison.
     */
    @Test
    void twoLevelHtreeDirectory() throws IOException {
        Path src = scratch.resolve("wide-src");
        Path wide = Files.createDirectories(src.resolve("wide"));
        Random r = new Random(7);
        TreeSet<String> names = new TreeSet<>();
        for (int i = 0; i < 20_000; i++) {
            StringBuilder n = new StringBuilder(String.format("file-%05d-", i));
            int extra = r.nextInt(40);
            for (int j = 0; j < extra; j++) {
                n.append((char) ('a' + r.nextInt(26)));
            }
            names.add(n.toString());
            Path f = wide.resolve(n.toString());
            if (i % 1000 == 0) {
                Files.writeString(f, n + "\n");
            } else {
                Files.createFile(f);
            }
        }
        Files.writeString(src.resolve("beside.txt"), "next to the wide directory\n");
        Tools.bash(Duration.ofMinutes(2), "find \"$1\" -exec touch -h -d @1600000000 {} +", src.toString()).requireOk();

        Path img = scratch.resolve("wide.img");
        Tools.mkfs(src, img, "64M", List.of("-T", "default", "-b", "1024", "-N", "25000"));
        Tools.e2fsckOptimizeDirs(img);
        Tools.e2fsckClean(img);
        String dump = Tools.debugfs(img, "htree_dump /wide");
        Matcher levels = Pattern.compile("Indirect levels: (\\d+)").matcher(dump);
        assertTrue(levels.find(), "debugfs htree_dump shows no htree root for /wide:\n" + Tools.abbreviate(dump, 2000));
        assertTrue(Integer.parseInt(levels.group(1)) >= 1, "expected a two-level htree, debugfs says: " + levels.group());

        String sha = Tools.sha256(img);
        Path mnt = newDir("mnt-wide");
        Path kmnt = newDir("kernel-wide");
        try (MountedImage m = MountedImage.mount(img, mnt, scratch.resolve("ext4j-wide.log"), "ro")) {
            assertTimeoutPreemptively(Duration.ofMinutes(5), () -> {
                TreeSet<String> listed = new TreeSet<>();
                try (Stream<Path> s = Files.list(mnt.resolve("wide"))) {
                    s.forEach(p -> listed.add(p.getFileName().toString()));
                }
                assertEquals(names.size(), listed.size(), "number of entries listed in /wide");
                assertEquals(names, listed, "names listed in /wide");
                // every name looked up on its own (hash lookup), in random order
                List<String> shuffled = new ArrayList<>(names);
                java.util.Collections.shuffle(shuffled, new Random(3));
                for (String n : shuffled) {
                    assertTrue(Files.exists(mnt.resolve("wide").resolve(n), LinkOption.NOFOLLOW_LINKS), "lookup of /wide/" + n);
                }
                for (String n : List.of("file-00000", "file-20000-", "nothere", "file-00001-zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz")) {
                    assertTrue(!Files.exists(mnt.resolve("wide").resolve(n), LinkOption.NOFOLLOW_LINKS), "/wide/" + n + " must not exist");
                }
            }, "listing/looking up 20,000 entries took more than 5 minutes");

            List<String> diffs = assertTimeoutPreemptively(Duration.ofMinutes(5),
                    () -> TreeCompare.compare(src, mnt, TreeCompare.Options.sourceVsImage()));
            assertTrue(diffs.isEmpty(), "ext4j view of the wide directory differs from the source:\n  " + String.join("\n  ", diffs));

            try (KernelMount k = KernelMount.attempt(img, kmnt)) {
                if (k.mounted()) {
                    compareWithKernel(kmnt, mnt, "the 20,000 entry htree image");
                } else {
                    System.err.println("kernel cannot mount the wide image, kernel comparison skipped: " + k.result().output());
                }
            }
            assertTrue(m.alive(), "mount no longer answers");
            assertEquals(List.of(), m.unexpectedFailures(), "server log reports unexpected failures");
        }
        assertEquals(sha, Tools.sha256(img), "the image changed during the read-only mounts");
    }
}
