package dev.ext4j.nio;

import dev.ext4j.Ext4Exception;
import dev.ext4j.fs.Ext4FileSystem;
import dev.ext4j.fs.MountOptions;
import dev.ext4j.fs.Permissions;
import java.io.IOException;
import java.net.URI;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.channels.SeekableByteChannel;
import java.nio.file.AccessMode;
import java.nio.file.CopyOption;
import java.nio.file.DirectoryStream;
import java.nio.file.FileStore;
import java.nio.file.FileSystem;
import java.nio.file.FileSystemAlreadyExistsException;
import java.nio.file.FileSystemNotFoundException;
import java.nio.file.FileSystems;
import java.nio.file.LinkOption;
import java.nio.file.OpenOption;
import java.nio.file.Path;
import java.nio.file.ProviderMismatchException;
import java.nio.file.StandardCopyOption;
import java.nio.file.attribute.BasicFileAttributeView;
import java.nio.file.attribute.BasicFileAttributes;
import java.nio.file.attribute.FileAttribute;
import java.nio.file.attribute.FileAttributeView;
import java.nio.file.attribute.FileOwnerAttributeView;
import java.nio.file.attribute.PosixFileAttributeView;
import java.nio.file.attribute.PosixFileAttributes;
import java.nio.file.attribute.UserDefinedFileAttributeView;
import java.nio.file.spi.FileSystemProvider;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;

/**
 * The {@code ext4} provider of {@code java.nio.file}: ext4 images as filesystems, as zipfs does for
 * zip files. Registered in {@code META-INF/services}, so
 * <pre>{@code
 * try (FileSystem fs = FileSystems.newFileSystem(Path.of("disk.img"), Map.of())) {
 *     Files.writeString(fs.getPath("/hello.txt"), "hello");
 * }
 * }</pre>
 * opens an image read-write ({@code Map.of("readOnly", true)} read-only) and closing it writes
 * everything home. A file that is not ext4 makes this provider step aside
 * (UnsupportedOperationException), so the next provider is tried. URIs are
 * {@code ext4:file:///path/disk.img!/dir/file}, as zipfs's {@code jar:} ones. An image is open at
 * most once at a time (the image lock refuses a second open, in this process or another).
 */
public final class Ext4FileSystemProvider extends FileSystemProvider {
    public static final String SCHEME = "ext4";
    /** The superblock's magic number and where it is in the image. */
    private static final int MAGIC = 0xEF53;
    private static final long MAGIC_OFFSET = 1024 + 0x38;

    private final Map<Path, ImageFileSystem> open = new ConcurrentHashMap<>();

    @Override
    public String getScheme() {
        return SCHEME;
    }

    /** {@code ext4:file:///path/disk.img}; the part after a '!' is ignored. */
    @Override
    public ImageFileSystem newFileSystem(URI uri, Map<String, ?> env) throws IOException {
        Path image = imageOf(uri);
        if (open.containsKey(image.toRealPath())) {
            throw new FileSystemAlreadyExistsException(uri.toString());
        }
        ImageFileSystem fs = newFileSystem(image, env);
        if (fs == null) {
            throw new IOException(image + " is not an ext4 image");
        }
        return fs;
    }

    /**
     * Opens {@code image} (a file of the default filesystem); env {@code readOnly} (Boolean or
     * "true") opens it read-only. UnsupportedOperationException for a file without ext4's magic.
     */
    @Override
    public ImageFileSystem newFileSystem(Path image, Map<String, ?> env) throws IOException {
        if (image.getFileSystem() != FileSystems.getDefault() || java.nio.file.Files.isDirectory(image) || !isExt4(image)) {
            throw new UnsupportedOperationException(image + " is not an ext4 image");
        }
        Path real = image.toRealPath();
        boolean readOnly = Boolean.parseBoolean(String.valueOf(env.get("readOnly")));
        Ext4FileSystem core;
        try {
            core = Ext4FileSystem.open(real, MountOptions.defaults().withReadOnly(readOnly));
        } catch (Ext4Exception e) {
            throw NioErrors.translate(e, image.toString(), null);
        }
        Path self = Path.of("/proc/self");
        long uid = ((Number) java.nio.file.Files.getAttribute(self, "unix:uid")).longValue();
        long gid = ((Number) java.nio.file.Files.getAttribute(self, "unix:gid")).longValue();
        ImageFileSystem fs = new ImageFileSystem(this, real, core, uid, gid);
        if (open.putIfAbsent(real, fs) != null) {
            fs.close();
            throw new FileSystemAlreadyExistsException(real.toString());
        }
        return fs;
    }

    private static boolean isExt4(Path image) throws IOException {
        try (FileChannel c = FileChannel.open(image)) {
            ByteBuffer b = ByteBuffer.allocate(2).order(java.nio.ByteOrder.LITTLE_ENDIAN);
            return c.read(b, MAGIC_OFFSET) == 2 && (b.getShort(0) & 0xFFFF) == MAGIC;
        }
    }

    void forget(ImageFileSystem fs) {
        open.remove(fs.image(), fs);
    }

    private static Path imageOf(URI uri) {
        if (!SCHEME.equalsIgnoreCase(uri.getScheme())) {
            throw new IllegalArgumentException("not an ext4: URI: " + uri);
        }
        String spec = uri.getRawSchemeSpecificPart();
        int bang = spec.indexOf('!');
        return Path.of(URI.create(bang < 0 ? spec : spec.substring(0, bang)));
    }

    @Override
    public ImageFileSystem getFileSystem(URI uri) {
        try {
            ImageFileSystem fs = open.get(imageOf(uri).toRealPath());
            if (fs != null) {
                return fs;
            }
        } catch (IOException e) {
            // not there, so not open
        }
        throw new FileSystemNotFoundException(uri.toString());
    }

    /** The path of an {@code ext4:} URI whose image is open. */
    @Override
    public Path getPath(URI uri) {
        String spec = uri.getSchemeSpecificPart();
        int bang = spec.indexOf('!');
        return getFileSystem(uri).getPath(bang < 0 ? "/" : spec.substring(bang + 1));
    }

    private static ImagePath check(Path p) {
        if (!(p instanceof ImagePath ip)) {
            throw new ProviderMismatchException("not an ext4 image path: " + p);
        }
        return ip;
    }

    static boolean noFollow(Object... options) {
        return Arrays.asList(options).contains(LinkOption.NOFOLLOW_LINKS);
    }

    @Override
    public SeekableByteChannel newByteChannel(Path path, Set<? extends OpenOption> options, FileAttribute<?>... attrs) throws IOException {
        ImagePath p = check(path);
        return p.getFileSystem().newChannel(p, options, attrs);
    }

    @Override
    public FileChannel newFileChannel(Path path, Set<? extends OpenOption> options, FileAttribute<?>... attrs) throws IOException {
        ImagePath p = check(path);
        return p.getFileSystem().newChannel(p, options, attrs);
    }

    @Override
    public DirectoryStream<Path> newDirectoryStream(Path dir, DirectoryStream.Filter<? super Path> filter) throws IOException {
        ImagePath p = check(dir);
        return p.getFileSystem().newDirectoryStream(p, filter);
    }

    @Override
    public void createDirectory(Path dir, FileAttribute<?>... attrs) throws IOException {
        ImagePath p = check(dir);
        p.getFileSystem().createDirectory(p, attrs);
    }

    @Override
    public void createSymbolicLink(Path link, Path target, FileAttribute<?>... attrs) throws IOException {
        if (attrs.length > 0) {
            throw new UnsupportedOperationException("symbolic links take no attributes");
        }
        ImagePath p = check(link);
        p.getFileSystem().createSymbolicLink(p, target.toString());
    }

    @Override
    public void createLink(Path link, Path existing) throws IOException {
        ImagePath p = check(link);
        ImagePath e = check(existing);
        if (e.getFileSystem() != p.getFileSystem()) {
            throw new java.nio.file.FileSystemException(link.toString(), existing.toString(), "EXDEV: not in the same image");
        }
        p.getFileSystem().createLink(p, e);
    }

    @Override
    public Path readSymbolicLink(Path link) throws IOException {
        ImagePath p = check(link);
        return p.getFileSystem().getPath(p.getFileSystem().readSymbolicLink(p));
    }

    @Override
    public void delete(Path path) throws IOException {
        ImagePath p = check(path);
        p.getFileSystem().delete(p);
    }

    /**
     * Copies within one image or between two: a symbolic link as a link (NOFOLLOW_LINKS), a
     * directory as an empty one; COPY_ATTRIBUTES copies the mode, the owner (when root), the
     * times and the {@code user.} xattrs, see {@link TreeCopy}.
     */
    @Override
    public void copy(Path source, Path target, CopyOption... options) throws IOException {
        check(source);
        check(target);
        List<CopyOption> o = Arrays.asList(options);
        TreeCopy.copyOne(source, target, o.contains(StandardCopyOption.COPY_ATTRIBUTES), !o.contains(LinkOption.NOFOLLOW_LINKS),
                o.contains(StandardCopyOption.REPLACE_EXISTING));
    }

    /**
     * rename(2) within an image (atomic, with or without ATOMIC_MOVE); between two images a copy
     * with its attributes, then the source deleted.
     */
    @Override
    public void move(Path source, Path target, CopyOption... options) throws IOException {
        ImagePath s = check(source);
        ImagePath t = check(target);
        List<CopyOption> o = Arrays.asList(options);
        boolean atomic = o.contains(StandardCopyOption.ATOMIC_MOVE);
        if (s.getFileSystem() == t.getFileSystem()) {
            s.getFileSystem().move(s, t, atomic || o.contains(StandardCopyOption.REPLACE_EXISTING));
            return;
        }
        if (atomic) {
            throw new java.nio.file.AtomicMoveNotSupportedException(source.toString(), target.toString(), "between two images");
        }
        TreeCopy.copyOne(source, target, true, false, o.contains(StandardCopyOption.REPLACE_EXISTING));
        delete(source);
    }

    @Override
    public boolean isSameFile(Path path, Path path2) throws IOException {
        ImagePath a = check(path);
        if (!(path2 instanceof ImagePath b) || a.getFileSystem() != b.getFileSystem()) {
            return false;
        }
        return a.getFileSystem().isSameFile(a, b);
    }

    @Override
    public boolean isHidden(Path path) {
        Path name = check(path).getFileName();
        return name != null && name.toString().startsWith(".");
    }

    @Override
    public FileStore getFileStore(Path path) throws IOException {
        ImagePath p = check(path);
        p.getFileSystem().stat(p, true);
        return p.getFileSystem().store();
    }

    @Override
    public void checkAccess(Path path, AccessMode... modes) throws IOException {
        ImagePath p = check(path);
        int mask = 0;
        for (AccessMode m : modes) {
            mask |= switch (m) {
                case READ -> Permissions.R_OK;
                case WRITE -> Permissions.W_OK;
                case EXECUTE -> Permissions.X_OK;
            };
        }
        p.getFileSystem().checkAccess(p, mask);
    }

    @Override
    @SuppressWarnings("unchecked")
    public <V extends FileAttributeView> V getFileAttributeView(Path path, Class<V> type, LinkOption... options) {
        ImagePath p = check(path);
        boolean follow = !noFollow((Object[]) options);
        if (type == BasicFileAttributeView.class) {
            return (V) new ImageAttributes.View(p.getFileSystem(), p, follow, "basic");
        }
        if (type == PosixFileAttributeView.class || type == FileOwnerAttributeView.class) {
            return (V) new ImageAttributes.View(p.getFileSystem(), p, follow, type == PosixFileAttributeView.class ? "posix" : "owner");
        }
        if (type == UserDefinedFileAttributeView.class) {
            return (V) new UserXattrView(p.getFileSystem(), p, follow);
        }
        return null;
    }

    @Override
    @SuppressWarnings("unchecked")
    public <A extends BasicFileAttributes> A readAttributes(Path path, Class<A> type, LinkOption... options) throws IOException {
        if (type != BasicFileAttributes.class && type != PosixFileAttributes.class) {
            throw new UnsupportedOperationException("attributes " + type.getName());
        }
        ImagePath p = check(path);
        return (A) new ImageAttributes.Attributes(p.getFileSystem().stat(p, !noFollow((Object[]) options)));
    }

    @Override
    public Map<String, Object> readAttributes(Path path, String attributes, LinkOption... options) throws IOException {
        ImagePath p = check(path);
        return ImageAttributes.read(p.getFileSystem(), p, !noFollow((Object[]) options), attributes);
    }

    @Override
    public void setAttribute(Path path, String attribute, Object value, LinkOption... options) throws IOException {
        ImagePath p = check(path);
        ImageAttributes.set(p.getFileSystem(), p, !noFollow((Object[]) options), attribute, value);
    }
}
