package dev.ext4j.it;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.net.URL;
import java.net.URLClassLoader;
import java.nio.ByteBuffer;
import java.nio.file.FileSystem;
import java.nio.file.FileSystems;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.attribute.BasicFileAttributeView;
import java.nio.file.attribute.BasicFileAttributes;
import java.nio.file.attribute.FileTime;
import java.nio.file.attribute.UserDefinedFileAttributeView;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.stream.Stream;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * ext4j as a Java library, with the kernel as the oracle: a tree copied into a fresh image through
 * {@code java.nio.file} (the ext4 provider, loaded from the driver jar as a program would have it
 * on its class path) is what a kernel loop mount shows; an image the kernel filled reads the same
 * through the provider as through the kernel; {@code ext4j cp -a} into an image and back out gives
 * the tree again.
 */
class NioIT extends FuseTestBase {
    private static final LinkOption NOFOLLOW = LinkOption.NOFOLLOW_LINKS;
    private static Path src;
    private static ClassLoader driver;

    @BeforeAll
    static void buildTree() throws IOException {
        src = scratch.resolve("src");
        Random r = new Random(19);
        Files.createDirectories(src.resolve("a/b/deep"));
        Files.createDirectories(src.resolve("empty"));
        long[] sizes = {0, 1, 59, 61, 4095, 4097, 300_000};
        for (long size : sizes) {
            byte[] b = new byte[(int) size];
            r.nextBytes(b);
            Files.write(src.resolve("a/f" + size), b);
        }
        Files.writeString(src.resolve("a/b/deep/text.txt"), "deep\n".repeat(100));
        Files.createSymbolicLink(src.resolve("a/short"), Path.of("f59"));
        Files.createSymbolicLink(src.resolve("a/b/long"), Path.of("../" + "x".repeat(70) + "/../f4097"));
        Files.createSymbolicLink(src.resolve("dangling"), Path.of("/nowhere/at/all"));
        Files.createLink(src.resolve("a/b/hard"), src.resolve("a/f61"));
        Files.setAttribute(src.resolve("a/f1"), "unix:mode", 04755);
        Files.setAttribute(src.resolve("a/b"), "unix:mode", 01777);
        Files.setAttribute(src.resolve("empty"), "unix:mode", 0700);
        Files.setAttribute(src.resolve("a/f0"), "unix:uid", 1234);
        Files.setAttribute(src.resolve("a/f0"), "unix:gid", 567);
        xattr(src.resolve("a/f4095"), "color", "blue");
        xattr(src.resolve("a/b"), "big", "v".repeat(900));
        // times with nanoseconds on files and directories, whole microseconds on links (lutimes)
        List<Path> all;
        try (Stream<Path> s = Files.walk(src)) {
            all = new ArrayList<>(s.toList());
        }
        Collections.reverse(all);
        for (Path p : all) {
            boolean link = Files.isSymbolicLink(p);
            long ns = 1_600_000_000_000_000_000L + r.nextInt(1_000_000_000) * 1000L + (link ? 0 : r.nextInt(1000));
            FileTime t = FileTime.from(java.time.Instant.ofEpochSecond(0, ns));
            Files.getFileAttributeView(p, BasicFileAttributeView.class, NOFOLLOW).setTimes(t, t, null);
        }
        driver = driverClassLoader();
    }

    private static void xattr(Path p, String name, String value) throws IOException {
        Files.getFileAttributeView(p, UserDefinedFileAttributeView.class).write(name, ByteBuffer.wrap(value.getBytes()));
    }

    /** The driver jar and its lib/ as a program's class path: the provider is found there, through META-INF/services. */
    private static ClassLoader driverClassLoader() throws IOException {
        List<URL> urls = new ArrayList<>();
        urls.add(Tools.jar().toUri().toURL());
        try (Stream<Path> libs = Files.list(Tools.jar().resolveSibling("lib"))) {
            for (Path p : libs.toList()) {
                urls.add(p.toUri().toURL());
            }
        }
        return new URLClassLoader(urls.toArray(URL[]::new), NioIT.class.getClassLoader());
    }

    private static FileSystem open(Path image, boolean readOnly) throws IOException {
        return FileSystems.newFileSystem(image, Map.of("readOnly", readOnly), driver);
    }

    private static TreeCompare.Options allButLostAndFound() {
        TreeCompare.Options o = TreeCompare.Options.sourceVsImage();
        o.dirMtime = true;
        return o;
    }

    private static void assertSame(Path expected, Path actual, TreeCompare.Options o) {
        List<String> diffs = TreeCompare.compare(expected, actual, o);
        assertTrue(diffs.isEmpty(), "differences:\n" + String.join("\n", diffs));
    }

    @Test
    void aTreeCopiedInThroughNioIsWhatTheKernelMounts() throws IOException {
        Path img = scratch.resolve("nio.img");
        Tools.mkfs(null, img, "64M", List.of("-O", "inline_data"));
        try (FileSystem fs = open(img, false)) {
            Path root = fs.getPath("/");
            Map<Object, Path> links = new HashMap<>();
            List<Path[]> dirs = new ArrayList<>();
            try (Stream<Path> walk = Files.walk(src)) {
                for (Path s : walk.toList()) {
                    Path t = root;
                    for (Path n : src.relativize(s)) {
                        t = n.toString().isEmpty() ? t : t.resolve(n.toString());
                    }
                    BasicFileAttributes a = Files.readAttributes(s, BasicFileAttributes.class, NOFOLLOW);
                    Path first = (Integer) Files.getAttribute(s, "unix:nlink", NOFOLLOW) > 1 ? links.putIfAbsent(a.fileKey(), t) : null;
                    if (first != null) {
                        Files.createLink(t, first);
                        continue;
                    }
                    if (a.isSymbolicLink()) {
                        Files.createSymbolicLink(t, fs.getPath(Files.readSymbolicLink(s).toString()));
                        Files.getFileAttributeView(t, BasicFileAttributeView.class, NOFOLLOW).setTimes(a.lastModifiedTime(), a.lastAccessTime(), null);
                        continue;
                    }
                    if (!t.equals(root)) {
                        Files.copy(s, t, StandardCopyOption.COPY_ATTRIBUTES, NOFOLLOW);
                    }
                    Files.setAttribute(t, "unix:uid", Files.getAttribute(s, "unix:uid"));
                    Files.setAttribute(t, "unix:gid", Files.getAttribute(s, "unix:gid"));
                    Files.setAttribute(t, "unix:mode", Files.getAttribute(s, "unix:mode"));
                    UserDefinedFileAttributeView from = Files.getFileAttributeView(s, UserDefinedFileAttributeView.class);
                    UserDefinedFileAttributeView to = Files.getFileAttributeView(t, UserDefinedFileAttributeView.class);
                    for (String name : from.list()) {
                        ByteBuffer v = ByteBuffer.allocate(from.size(name));
                        from.read(name, v);
                        to.write(name, v.flip());
                    }
                    if (a.isDirectory()) {
                        dirs.add(new Path[] {s, t}); // their times once their entries are in
                    } else {
                        Files.getFileAttributeView(t, BasicFileAttributeView.class).setTimes(a.lastModifiedTime(), a.lastAccessTime(), null);
                    }
                }
            }
            Collections.reverse(dirs);
            for (Path[] d : dirs) {
                BasicFileAttributes a = Files.readAttributes(d[0], BasicFileAttributes.class);
                Files.getFileAttributeView(d[1], BasicFileAttributeView.class).setTimes(a.lastModifiedTime(), a.lastAccessTime(), null);
            }
            TreeCompare.Options o = allButLostAndFound();
            o.rootNlink = false;
            assertSame(src, root, o);
        }
        Tools.e2fsckClean(img);
        Path mnt = newDir("kernel");
        try (KernelMount k = KernelMount.attempt(img, mnt)) {
            assertTrue(k.mounted(), k.result().describe());
            TreeCompare.Options o = allButLostAndFound();
            o.rootNlink = false;
            assertSame(src, mnt, o);
        }
    }

    @Test
    void anImageTheKernelFilledReadsTheSameThroughNio() throws IOException {
        Path img = scratch.resolve("kernel.img");
        Tools.mkfs(null, img, "64M", List.of());
        Path mnt = newDir("fill");
        try (KernelMount k = KernelMount.attemptReadWrite(img, mnt)) {
            assertTrue(k.mounted(), k.result().describe());
            Tools.run(Tools.LONG, "cp", "-a", src + "/.", mnt.toString()).requireOk();
        }
        Path ro = newDir("ro");
        try (KernelMount k = KernelMount.attempt(img, ro); FileSystem fs = open(img, true)) {
            assertTrue(k.mounted(), k.result().describe());
            assertSame(ro, fs.getPath("/"), TreeCompare.Options.sameImage());
            assertEquals(Files.getFileStore(ro).getTotalSpace(), Files.getFileStore(fs.getPath("/")).getTotalSpace());
            assertEquals(Files.getFileStore(ro).getUnallocatedSpace(), Files.getFileStore(fs.getPath("/")).getUnallocatedSpace());
        }
        Tools.e2fsckClean(img);
    }

    private static Tools.Result ext4j(String... args) {
        List<String> cmd = new ArrayList<>(List.of(Tools.java(), "-jar", Tools.jar().toString()));
        cmd.addAll(List.of(args));
        return Tools.run(Tools.LONG, cmd);
    }

    @Test
    void cpDashAIntoAnImageAndBackOutGivesTheTreeAgain() throws IOException {
        Path img = scratch.resolve("cp.img");
        Tools.mkfs(null, img, "64M", List.of());
        ext4j("cp", "-a", src.toString(), img + ":/").requireOk();
        Tools.e2fsckClean(img);
        Tools.Result ls = ext4j("ls", "-l", img + ":/src/a").requireOk();
        assertTrue(ls.stdout().contains("-rwsr-xr-x"), ls.stdout());
        assertTrue(ls.stdout().lines().anyMatch(l -> l.startsWith("lrwxrwxrwx") && l.endsWith(" short -> f59")), ls.stdout());
        assertEquals("a\ndangling\nempty\n", ext4j("ls", img + ":/src").requireOk().stdout());

        Path out = newDir("out");
        ext4j("cp", "-a", img + ":/src", out.toString()).requireOk();
        Tools.run(Duration.ofSeconds(60), "diff", "-r", "--no-dereference", src.toString(), out.resolve("src").toString()).requireOk();
        // atimes not: reading a tree (diff, the other tests) moves them on the host
        assertSame(src, out.resolve("src"), TreeCompare.Options.defaults());
        Tools.e2fsckClean(img);
    }
}
