package dev.ext4j.nio;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.ext4j.Errno;
import dev.ext4j.Ext4Exception;
import dev.ext4j.fs.Ext4FileSystem;
import dev.ext4j.fs.MountOptions;
import dev.ext4j.testutil.Images;
import java.io.IOException;
import java.net.URI;
import java.nio.ByteBuffer;
import java.nio.channels.SeekableByteChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.AccessDeniedException;
import java.nio.file.DirectoryNotEmptyException;
import java.nio.file.DirectoryStream;
import java.nio.file.FileAlreadyExistsException;
import java.nio.file.FileStore;
import java.nio.file.FileSystem;
import java.nio.file.FileSystemException;
import java.nio.file.FileSystemLoopException;
import java.nio.file.FileSystems;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.NoSuchFileException;
import java.nio.file.NotDirectoryException;
import java.nio.file.NotLinkException;
import java.nio.file.Path;
import java.nio.file.ProviderNotFoundException;
import java.nio.file.ReadOnlyFileSystemException;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.nio.file.attribute.FileTime;
import java.nio.file.attribute.PosixFileAttributes;
import java.nio.file.attribute.PosixFilePermissions;
import java.nio.file.attribute.UserDefinedFileAttributeView;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.Callable;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.stream.Collectors;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The ext4 provider through {@code java.nio.file} on images made by mkfs.ext4: what {@code Files}
 * does, the errors it throws, four writers at once; each image that was changed is e2fsck-clean
 * after the close.
 */
class ImageFileSystemTest {
    @TempDir
    Path tmp;

    private Path image() {
        return Images.mkfs(tmp.resolve("disk.img"), "32M", List.of("-O", "inline_data"), null);
    }

    @Test
    void filesDirectoriesLinksAndAttributesRoundTripAndTheImageIsClean() throws IOException {
        Path img = image();
        try (FileSystem fs = FileSystems.newFileSystem(img, Map.of())) {
            assertInstanceOf(ImageFileSystem.class, fs);
            Path dir = fs.getPath("/a/b/c");
            Files.createDirectories(dir);
            Path f = dir.resolve("hello.txt");
            Files.writeString(f, "hello, image");
            assertEquals("hello, image", Files.readString(f));

            byte[] big = new byte[300_000];
            new java.util.Random(7).nextBytes(big);
            Path data = fs.getPath("/a/data.bin");
            Files.write(data, big);
            assertArrayEquals(big, Files.readAllBytes(data));
            try (SeekableByteChannel c = Files.newByteChannel(data, StandardOpenOption.READ, StandardOpenOption.WRITE)) {
                assertEquals(big.length, c.size());
                c.position(100_000);
                ByteBuffer b = ByteBuffer.allocate(4);
                assertEquals(4, c.read(b));
                assertArrayEquals(java.util.Arrays.copyOfRange(big, 100_000, 100_004), b.array());
                c.truncate(1000);
                assertEquals(1000, c.size());
                assertEquals(1000, c.position());
                c.position(2000).write(ByteBuffer.wrap(new byte[] {1}));
                assertEquals(2001, c.size());
                assertEquals(-1, c.read(ByteBuffer.allocate(1)));
            }
            Files.write(data, "+".getBytes(), StandardOpenOption.APPEND);
            assertEquals(2002, Files.size(data));

            Files.createSymbolicLink(fs.getPath("/a/link"), fs.getPath("b/c/hello.txt"));
            assertEquals("b/c/hello.txt", Files.readSymbolicLink(fs.getPath("/a/link")).toString());
            assertEquals("hello, image", Files.readString(fs.getPath("/a/link")), "the link is followed");
            assertTrue(Files.isSymbolicLink(fs.getPath("/a/link")));
            Files.createSymbolicLink(fs.getPath("/abs"), fs.getPath("/a/b"));
            assertTrue(Files.isRegularFile(fs.getPath("/abs/c/../c/hello.txt")), "a link in the middle, then ..");
            assertEquals("/a/b/c/hello.txt", fs.getPath("/abs/c/hello.txt").toRealPath().toString());

            Files.createLink(fs.getPath("/a/hard"), f);
            assertEquals(2, Files.getAttribute(f, "unix:nlink"));
            assertTrue(Files.isSameFile(f, fs.getPath("/a/hard")));

            Files.setPosixFilePermissions(f, PosixFilePermissions.fromString("rwxr-x---"));
            Files.setAttribute(f, "unix:uid", 1234);
            Files.setAttribute(f, "unix:gid", 567);
            Files.setAttribute(f, "unix:mode", 04750); // after the chown, which clears setuid
            FileTime t = FileTime.fromMillis(1_500_000_000_123L);
            Files.setLastModifiedTime(f, t);
            PosixFileAttributes pa = Files.readAttributes(f, PosixFileAttributes.class);
            assertEquals("rwxr-x---", PosixFilePermissions.toString(pa.permissions()));
            assertEquals(t, pa.lastModifiedTime());
            Map<String, Object> unix = Files.readAttributes(f, "unix:*");
            assertEquals(0104750, unix.get("mode"));
            assertEquals(1234, unix.get("uid"));
            assertEquals(567, unix.get("gid"));
            assertEquals(pa.fileKey(), unix.get("ino"));

            UserDefinedFileAttributeView x = Files.getFileAttributeView(f, UserDefinedFileAttributeView.class);
            x.write("color", StandardCharsets.UTF_8.encode("blue"));
            assertEquals(List.of("color"), x.list());
            assertArrayEquals("blue".getBytes(), (byte[]) Files.getAttribute(f, "user:color"));

            Files.copy(f, fs.getPath("/copy.txt"), StandardCopyOption.COPY_ATTRIBUTES);
            assertEquals("hello, image", Files.readString(fs.getPath("/copy.txt")));
            assertEquals(t, Files.getLastModifiedTime(fs.getPath("/copy.txt")));
            assertEquals(04750, (int) Files.getAttribute(fs.getPath("/copy.txt"), "unix:mode") & 07777);
            Files.copy(fs.getPath("/a/link"), fs.getPath("/link2"), LinkOption.NOFOLLOW_LINKS);
            assertTrue(Files.isSymbolicLink(fs.getPath("/link2")));

            Files.move(fs.getPath("/copy.txt"), fs.getPath("/a/moved.txt"));
            Files.writeString(fs.getPath("/other"), "x");
            Files.move(fs.getPath("/other"), fs.getPath("/a/moved.txt"), StandardCopyOption.ATOMIC_MOVE);
            assertEquals("x", Files.readString(fs.getPath("/a/moved.txt")));
            assertFalse(Files.exists(fs.getPath("/other")));

            try (DirectoryStream<Path> ds = Files.newDirectoryStream(fs.getPath("/a"), "*.{txt,bin}")) {
                List<String> names = new ArrayList<>();
                ds.forEach(p -> names.add(p.getFileName().toString()));
                names.sort(null);
                assertEquals(List.of("data.bin", "moved.txt"), names);
            }
            try (Stream<Path> w = Files.walk(fs.getPath("/"))) {
                assertEquals(Set.of("/", "/a", "/a/b", "/a/b/c", "/a/b/c/hello.txt", "/a/data.bin", "/a/link", "/abs",
                        "/a/hard", "/a/moved.txt", "/link2", "/lost+found"), w.map(Path::toString).collect(Collectors.toSet()));
            }

            FileStore store = Files.getFileStore(f);
            assertEquals("ext4", store.type());
            assertTrue(store.getTotalSpace() > 20L << 20 && store.getTotalSpace() <= 32L << 20, "total as df counts it, without the metadata: " + store.getTotalSpace());
            assertTrue(store.getUnallocatedSpace() > 0 && store.getUnallocatedSpace() < store.getTotalSpace());

            URI uri = f.toUri();
            assertEquals("ext4:" + img.toRealPath().toUri() + "!/a/b/c/hello.txt", uri.toString());
            assertEquals(f, Path.of(uri));
            assertSame(fs, FileSystems.getFileSystem(URI.create("ext4:" + img.toRealPath().toUri())));

            Files.delete(fs.getPath("/a/hard"));
            assertEquals(1, Files.getAttribute(f, "unix:nlink"));
            assertThrows(UnsupportedOperationException.class, fs::newWatchService);
        }
        Images.assertSilentlyClean(img);

        try (FileSystem fs = FileSystems.newFileSystem(img, Map.of("readOnly", true))) {
            assertTrue(fs.isReadOnly());
            assertEquals("x", Files.readString(fs.getPath("/a/moved.txt")));
            assertThrows(ReadOnlyFileSystemException.class, () -> Files.writeString(fs.getPath("/new"), "y"));
        }
    }

    @Test
    void aFileThatIsNotExt4IsLeftToTheNextProvider() throws IOException {
        Path notExt4 = Files.write(tmp.resolve("zeros"), new byte[8192]);
        assertThrows(UnsupportedOperationException.class, () -> new Ext4FileSystemProvider().newFileSystem(notExt4, Map.of()));
        assertThrows(ProviderNotFoundException.class, () -> FileSystems.newFileSystem(notExt4, Map.of()));
    }

    private static <T extends Throwable> T failsWith(Class<T> type, String reason, org.junit.jupiter.api.function.Executable op) {
        T e = assertThrows(type, op);
        if (reason != null) {
            assertTrue(e.getMessage().contains(reason), e.getMessage());
        }
        return e;
    }

    @Test
    void eachErrnoBecomesItsNioException() throws IOException {
        Path img = image();
        try (FileSystem fs = FileSystems.newFileSystem(img, Map.of())) {
            Files.createDirectories(fs.getPath("/d/sub"));
            Files.writeString(fs.getPath("/d/f"), "f");
            Files.createSymbolicLink(fs.getPath("/loop"), fs.getPath("/loop"));
            failsWith(NoSuchFileException.class, "ENOENT", () -> Files.readString(fs.getPath("/nothing")));
            failsWith(NoSuchFileException.class, null, () -> Files.delete(fs.getPath("/d/nothing")));
            failsWith(FileAlreadyExistsException.class, "EEXIST", () -> Files.createDirectory(fs.getPath("/d/f")));
            failsWith(FileAlreadyExistsException.class, null, () -> Files.move(fs.getPath("/d/f"), fs.getPath("/d/sub")));
            failsWith(DirectoryNotEmptyException.class, null, () -> Files.delete(fs.getPath("/d")));
            failsWith(NotDirectoryException.class, null, () -> Files.createDirectory(fs.getPath("/d/f/x")));
            failsWith(NotDirectoryException.class, null, () -> Files.newDirectoryStream(fs.getPath("/d/f")));
            failsWith(FileSystemLoopException.class, null, () -> Files.readString(fs.getPath("/loop")));
            failsWith(NotLinkException.class, "EINVAL", () -> Files.readSymbolicLink(fs.getPath("/d/f")));
            failsWith(FileSystemException.class, "EISDIR", () -> Files.writeString(fs.getPath("/d"), "x"));
            failsWith(FileSystemException.class, "ENAMETOOLONG", () -> Files.createDirectory(fs.getPath("/" + "n".repeat(300))));
            failsWith(FileSystemException.class, "EINVAL", () -> Files.createDirectory(fs.getPath("/d/..")));
        }
        Images.assertSilentlyClean(img);
        // every errno has its exception; the NIO ones for those the JDK names
        Map<Errno, Class<?>> named = Map.of(Errno.ENOENT, NoSuchFileException.class, Errno.EEXIST, FileAlreadyExistsException.class,
                Errno.ENOTEMPTY, DirectoryNotEmptyException.class, Errno.ENOTDIR, NotDirectoryException.class,
                Errno.EACCES, AccessDeniedException.class, Errno.EPERM, AccessDeniedException.class, Errno.ELOOP, FileSystemLoopException.class);
        for (Errno e : Errno.values()) {
            FileSystemException x = NioErrors.translate(new Ext4Exception(e, "inode 12: why"), "/p", null);
            assertEquals(named.getOrDefault(e, FileSystemException.class), x.getClass(), e.name());
            assertEquals("/p", x.getFile());
            assertInstanceOf(Ext4Exception.class, x.getCause());
            if (!named.containsKey(e) || x.getReason() != null) {
                assertTrue(x.getMessage().contains(e.name()) && x.getMessage().contains("inode 12"), x.getMessage());
            }
        }
    }

    @Test
    void aUserIsCheckedAgainstTheModeBitsAsTheKernelWould() throws Exception {
        Path img = image();
        Ext4FileSystemProvider provider = new Ext4FileSystemProvider();
        try (ImageFileSystem root = provider.newFileSystem(img, Map.of())) {
            Files.createDirectory(root.getPath("/private"), PosixFilePermissions.asFileAttribute(PosixFilePermissions.fromString("rwx------")));
            Files.writeString(root.getPath("/private/secret"), "s");
            Files.writeString(root.getPath("/shared"), "r", StandardOpenOption.CREATE_NEW);
            Files.setAttribute(root.getPath("/shared"), "unix:mode", 0644);
            Files.createDirectory(root.getPath("/mine"));
            Files.setAttribute(root.getPath("/mine"), "unix:uid", 1000);
        }
        try (ImageFileSystem user = new ImageFileSystem(provider, img, Ext4FileSystem.open(img, MountOptions.defaults()), 1000, 1000)) {
            failsWith(AccessDeniedException.class, "EACCES", () -> Files.readString(user.getPath("/private/secret")));
            failsWith(AccessDeniedException.class, "EACCES", () -> Files.newDirectoryStream(user.getPath("/private")));
            failsWith(AccessDeniedException.class, "EACCES", () -> Files.writeString(user.getPath("/shared"), "w"));
            failsWith(AccessDeniedException.class, "EACCES", () -> Files.createDirectory(user.getPath("/new")));
            failsWith(AccessDeniedException.class, "EPERM", () -> Files.setAttribute(user.getPath("/shared"), "unix:uid", 1000));
            assertEquals("r", Files.readString(user.getPath("/shared")));
            assertFalse(Files.isWritable(user.getPath("/shared")));
            Files.writeString(user.getPath("/mine/file"), "m");
            assertEquals(1000, Files.getAttribute(user.getPath("/mine/file"), "unix:uid"));
            assertEquals(0100644, Files.getAttribute(user.getPath("/mine/file"), "unix:mode"));
        }
        Images.assertSilentlyClean(img);
    }

    @Test
    void fourThreadsWritingTheirOwnDirectoriesLeaveACleanImage() throws Exception {
        Path img = image();
        ExecutorService pool = Executors.newFixedThreadPool(4);
        try (FileSystem fs = FileSystems.newFileSystem(img, Map.of())) {
            List<Callable<Void>> jobs = new ArrayList<>();
            for (int t = 0; t < 4; t++) {
                Path dir = fs.getPath("/t" + t);
                jobs.add(() -> {
                    Files.createDirectories(dir.resolve("sub"));
                    for (int i = 0; i < 150; i++) {
                        Path f = dir.resolve((i % 2 == 0 ? "sub/" : "") + "f" + i);
                        Files.write(f, new byte[i * 97 % 20000]);
                        if (i % 7 == 0) {
                            Files.move(f, dir.resolve("m" + i));
                        } else if (i % 11 == 0) {
                            Files.delete(f);
                        }
                    }
                    return null;
                });
            }
            for (Future<Void> f : pool.invokeAll(jobs)) {
                f.get();
            }
            try (Stream<Path> w = Files.walk(fs.getPath("/"))) {
                assertEquals(2 + 4 * (2 + 150 - 12), w.count(), "/, lost+found, and per thread its directory, sub and the files not deleted");
            }
        } finally {
            pool.shutdown();
        }
        Images.assertSilentlyClean(img);
    }
}
