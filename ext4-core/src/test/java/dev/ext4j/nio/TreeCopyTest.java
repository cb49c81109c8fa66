package dev.ext4j.nio;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.ext4j.testutil.Images;
import java.io.IOException;
import java.nio.file.FileSystem;
import java.nio.file.FileSystems;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.nio.file.attribute.FileTime;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.stream.Collectors;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@link TreeCopy#copyTree} with its pool of copying threads: a tree of many small files in and
 * out of an image comes back the same (contents, modes, times of files and of directories set
 * after their entries, hard links), and failures of files copied on the pool are all reported,
 * or stop the copy when the handler throws.
 */
class TreeCopyTest {
    private static final LinkOption NOFOLLOW = LinkOption.NOFOLLOW_LINKS;

    @TempDir
    Path tmp;

    private Path image() {
        return Images.mkfs(tmp.resolve("disk.img"), "64M", List.of(), null);
    }

    /** 12 directories (every third 0555) of 40 files each, some of them hard links into the first; all with set times. */
    private Path tree() throws IOException {
        Path src = Files.createDirectory(tmp.resolve("src"));
        List<Path> dirs = new ArrayList<>();
        for (int d = 0; d < 12; d++) {
            Path dir = Files.createDirectories(src.resolve("d" + d).resolve("inner"));
            dirs.add(dir.getParent());
            dirs.add(dir);
            for (int i = 0; i < 40; i++) {
                Path f = (i % 2 == 0 ? dir : dir.getParent()).resolve("f" + i);
                if (d > 0 && i % 13 == 0) {
                    Files.createLink(f, src.resolve("d0/" + (i % 2 == 0 ? "inner/" : "") + "f" + i));
                    continue;
                }
                byte[] data = new byte[(d * 40 + i) * 211 % 70_000];
                for (int k = 0; k < data.length; k++) {
                    data[k] = (byte) (k * 31 + d + i);
                }
                Files.write(f, data);
                Files.setAttribute(f, "unix:mode", 0600 | (i % 8) << 3 | (i % 3) * 2);
                Files.setLastModifiedTime(f, FileTime.fromMillis(1_500_000_000_000L + (d * 40L + i) * 1000));
            }
        }
        for (int k = 0; k < dirs.size(); k++) {
            Path dir = dirs.get(k);
            Files.setLastModifiedTime(dir, FileTime.fromMillis(1_400_000_000_000L + k * 60_000L));
            if (k % 3 == 0) {
                Files.setAttribute(dir, "unix:mode", 0555);
            }
        }
        Files.setLastModifiedTime(src, FileTime.fromMillis(1_300_000_000_000L));
        return src;
    }

    /** Each entry's type, mode, mtime, link count and contents, by its path under {@code root}. */
    private static Map<String, String> describe(Path root) throws IOException {
        Map<String, String> out = new TreeMap<>();
        try (Stream<Path> all = Files.walk(root)) {
            for (Path p : all.toList()) {
                Map<String, Object> u = Files.readAttributes(p, "unix:mode,nlink", NOFOLLOW);
                String what = Integer.toOctalString((int) u.get("mode")) + " " + Files.getLastModifiedTime(p, NOFOLLOW).toMillis()
                        + " " + (Files.isDirectory(p, NOFOLLOW) ? "" : u.get("nlink") + " " + java.util.Arrays.hashCode(Files.readAllBytes(p)));
                out.put(root.relativize(p).toString(), what);
            }
        }
        return out;
    }

    @Test
    void aTreeCopiedInAndOutComesBackTheSame() throws IOException {
        Path src = tree();
        Path img = image();
        Path back = tmp.resolve("back");
        try (FileSystem fs = FileSystems.newFileSystem(img, Map.of())) {
            new TreeCopy(true, (p, e) -> {
                throw e;
            }).copyTree(src, fs.getPath("/copy"));
            Path linked = fs.getPath("/copy/d5/f13");
            assertTrue(Files.isSameFile(fs.getPath("/copy/d0/f13"), linked), "a hard link stays one");
            assertEquals(12, Files.getAttribute(linked, "unix:nlink"));
            new TreeCopy(true, (p, e) -> {
                throw e;
            }).copyTree(fs.getPath("/copy"), back);
        }
        Images.assertSilentlyClean(img);
        Map<String, String> expected = describe(src);
        assertEquals(12 * 2 + 12 * 40 + 1, expected.size());
        assertEquals(expected, describe(back));
    }

    @Test
    void everyFailedFileIsReportedAndTheRestIsCopied() throws IOException {
        Path src = Files.createDirectory(tmp.resolve("src"));
        for (int i = 0; i < 300; i++) {
            Files.writeString(src.resolve("f" + i), "file " + i);
        }
        Path img = image();
        List<Path> failed = new ArrayList<>(); // not thread-safe: the calls come one at a time
        try (FileSystem fs = FileSystems.newFileSystem(img, Map.of())) {
            Path to = Files.createDirectory(fs.getPath("/to"));
            for (int i = 0; i < 300; i += 7) {
                Files.createDirectory(to.resolve("f" + i)); // a directory is in the way of a file
            }
            new TreeCopy(false, (p, e) -> failed.add(p)).copyTree(src, to);
            Set<Path> expected = Stream.iterate(0, i -> i < 300, i -> i + 7).map(i -> src.resolve("f" + i)).collect(Collectors.toSet());
            assertEquals(expected, Set.copyOf(failed));
            assertEquals(expected.size(), failed.size());
            for (int i = 1; i < 300; i++) {
                if (i % 7 != 0) {
                    assertEquals("file " + i, Files.readString(to.resolve("f" + i)));
                }
            }
        }
        Images.assertSilentlyClean(img);
    }

    @Test
    void whatTheHandlerThrowsStopsTheCopyAndIsThrown() throws IOException {
        Path src = Files.createDirectory(tmp.resolve("src"));
        for (int i = 0; i < 300; i++) {
            Files.writeString(src.resolve("f" + i), "file " + i);
        }
        Path img = image();
        IOException stop = new IOException("stop");
        try (FileSystem fs = FileSystems.newFileSystem(img, Map.of())) {
            Path to = Files.createDirectory(fs.getPath("/to"));
            Files.createDirectory(to.resolve("f150"));
            IOException thrown = assertThrows(IOException.class, () -> new TreeCopy(false, (p, e) -> {
                throw stop;
            }).copyTree(src, to));
            assertSame(stop, thrown);
        }
        Images.assertSilentlyClean(img);
    }
}
