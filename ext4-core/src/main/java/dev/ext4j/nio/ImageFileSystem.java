package dev.ext4j.nio;

import dev.ext4j.Errno;
import dev.ext4j.Ext4Exception;
import dev.ext4j.fs.Caller;
import dev.ext4j.fs.Ext4FileSystem;
import dev.ext4j.fs.FileAttributes;
import dev.ext4j.fs.Permissions;
import dev.ext4j.format.Inode;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.ClosedFileSystemException;
import java.nio.file.DirectoryStream;
import java.nio.file.FileStore;
import java.nio.file.FileSystem;
import java.nio.file.FileSystems;
import java.nio.file.Path;
import java.nio.file.PathMatcher;
import java.nio.file.ReadOnlyFileSystemException;
import java.nio.file.WatchService;
import java.nio.file.attribute.FileAttribute;
import java.nio.file.attribute.PosixFilePermission;
import java.nio.file.attribute.UserPrincipalLookupService;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Deque;
import java.util.Iterator;
import java.util.List;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.locks.ReentrantReadWriteLock;

/**
 * An ext4 image opened as a {@link FileSystem}: the same core a mount uses ({@link Ext4FileSystem}:
 * its journal, writeback, locking, image lock and error policy), reached by paths instead of FUSE
 * callbacks. Paths are walked here, one name at a time, following symbolic links as the VFS does;
 * every call runs as the process's user ({@link Caller}) and, unless that is root, is checked
 * against the mode bits as the kernel would ({@link Permissions}). Core errors become NIO
 * exceptions in {@link NioErrors}. {@link #close} writes everything home, so that the image is
 * e2fsck-clean and mountable. Thread-safe.
 *
 * <p>Made by {@link Ext4FileSystemProvider}; new files get mode 0644 and directories 0755 (a umask
 * of 022) unless a {@code posix:permissions} or {@code unix:mode} attribute says otherwise.
 */
public final class ImageFileSystem extends FileSystem {
    /** Symbolic links followed in one walk before ELOOP, as the kernel's MAXSYMLINKS. */
    private static final int MAX_SYMLINKS = 40;
    private static final byte[] DOT = {'.'};
    private static final byte[] DOTDOT = {'.', '.'};

    private final Ext4FileSystemProvider provider;
    private final Path image;
    final Ext4FileSystem core;
    /** The process's user: owner of what it creates, and whom permissions are checked for. */
    final long uid, gid;
    private final ImageFileStore store;
    /** Calls in flight hold it shared; {@link #close} holds it alone. */
    private final ReentrantReadWriteLock closing = new ReentrantReadWriteLock();
    private volatile boolean closed;
    final Set<ImageChannel> channels = ConcurrentHashMap.newKeySet();

    ImageFileSystem(Ext4FileSystemProvider provider, Path image, Ext4FileSystem core, long uid, long gid) {
        this.provider = provider;
        this.image = image;
        this.core = core;
        this.uid = uid;
        this.gid = gid;
        this.store = new ImageFileStore(this);
    }

    /** The image file this filesystem lives in. */
    public Path image() {
        return image;
    }

    /** The core filesystem underneath, for what {@code java.nio.file} has no words for (sync, freeze, flags). */
    public Ext4FileSystem core() {
        return core;
    }

    /** Makes everything written so far durable, as sync(2). */
    public void sync() throws IOException {
        io("sync", null, null, () -> {
            core.sync();
            return null;
        });
    }

    // ---- FileSystem ----

    @Override
    public Ext4FileSystemProvider provider() {
        return provider;
    }

    /** Writes everything home and closes the image; open channels are closed first. Idempotent. */
    @Override
    public void close() throws IOException {
        closing.writeLock().lock();
        try {
            if (closed) {
                return;
            }
            closed = true;
            for (ImageChannel c : List.copyOf(channels)) {
                c.releaseOnClose();
            }
            channels.clear();
            core.close();
        } finally {
            closing.writeLock().unlock();
            provider.forget(this);
        }
    }

    @Override
    public boolean isOpen() {
        return !closed;
    }

    @Override
    public boolean isReadOnly() {
        return core.isReadOnly();
    }

    @Override
    public String getSeparator() {
        return "/";
    }

    @Override
    public Iterable<Path> getRootDirectories() {
        return List.of(getPath("/"));
    }

    @Override
    public Iterable<FileStore> getFileStores() {
        return List.of(store);
    }

    ImageFileStore store() {
        return store;
    }

    @Override
    public Set<String> supportedFileAttributeViews() {
        return ImageFileStore.VIEWS;
    }

    @Override
    public ImagePath getPath(String first, String... more) {
        return ImagePath.parse(this, first, more);
    }

    /**
     * {@code glob:} and {@code regex:} as the default filesystem reads them (the same '/'
     * separator): the pattern is matched against the path's string.
     */
    @Override
    public PathMatcher getPathMatcher(String syntaxAndPattern) {
        PathMatcher m = FileSystems.getDefault().getPathMatcher(syntaxAndPattern);
        return p -> m.matches(Path.of(p.toString()));
    }

    @Override
    public UserPrincipalLookupService getUserPrincipalLookupService() {
        return Principals.SERVICE;
    }

    @Override
    public WatchService newWatchService() {
        throw new UnsupportedOperationException("ext4 images have no watch service");
    }

    // ---- calls into the core ----

    /** A core call that may fail with the core's exception. */
    @FunctionalInterface
    interface Body<T> {
        T run() throws Ext4Exception;
    }

    /**
     * Runs {@code body} as the process's user: core errors become NIO exceptions (on {@code file},
     * and {@code other} for two-path calls), corruption recorded first as a mount records it.
     */
    <T> T io(String op, Path file, Path other, Body<T> body) throws IOException {
        closing.readLock().lock();
        try {
            if (closed) {
                throw new ClosedFileSystemException();
            }
            Caller.set(uid, gid);
            return body.run();
        } catch (Ext4Exception e) {
            if (e.errno() == Errno.EUCLEAN || e.errno() == Errno.EBADMSG) {
                core.recordError(op, e);
            }
            throw NioErrors.translate(e, file == null ? image.toString() : file.toString(), other == null ? null : other.toString());
        } finally {
            closing.readLock().unlock();
        }
    }

    /** ReadOnlyFileSystemException before a change to a read-only image, as the JDK's filesystems do. */
    void requireWritable() {
        if (core.isReadOnly()) {
            throw new ReadOnlyFileSystemException();
        }
    }

    boolean isRoot() {
        return uid == 0;
    }

    /** inode_permission() for the process's user; root passes without a look (but for exec, see {@link Permissions#checkAccess}). */
    void access(long ino, int mask) throws Ext4Exception {
        if (!isRoot()) {
            Permissions.checkAccess(core.stat(ino), mask, false);
        }
    }

    static byte[] bytes(String name) {
        return name.getBytes(StandardCharsets.UTF_8);
    }

    static String name(byte[] name) {
        return new String(name, StandardCharsets.UTF_8);
    }

    /** Whether inode {@code ino} is of {@code type} (an S_IF* value): its mode alone, no stat. */
    boolean isType(long ino, int type) throws Ext4Exception {
        return (core.mode(ino) & Inode.S_IFMT) == type;
    }

    /** A name in a directory, and its inode (0 when the name is not there). */
    record Entry(long dir, byte[] name, long ino) {
    }

    /** The inode at {@code p}; symbolic links on the way are followed, the last one too when {@code followLast}. */
    long inode(ImagePath p, boolean followLast) throws Ext4Exception {
        return walk(p.names(), p.names().length, followLast);
    }

    /**
     * The directory that holds {@code p}'s last name, and that name with what it names now (0 for
     * nothing). The last name itself is not followed. ENOENT for the root, which has no parent.
     */
    Entry entry(ImagePath p) throws Ext4Exception {
        String[] names = p.names();
        if (names.length == 0) {
            throw new Ext4Exception(Errno.EBUSY, "the root directory has no name to change");
        }
        long dir = walk(names, names.length - 1, true);
        byte[] name = bytes(names[names.length - 1]);
        long ino = lookupOrZero(dir, name);
        return new Entry(dir, name, ino);
    }

    /** The entry for a new name: EEXIST when it is taken; write and search permission on the directory. */
    Entry newEntry(ImagePath p) throws Ext4Exception {
        if (p.names().length == 0) {
            throw new Ext4Exception(Errno.EEXIST, "the root directory is there");
        }
        Entry e = entry(p);
        if (e.ino() != 0) {
            throw new Ext4Exception(Errno.EEXIST, "the name is taken by inode " + e.ino());
        }
        access(e.dir(), Permissions.W_OK | Permissions.X_OK);
        return e;
    }

    private long lookupOrZero(long dir, byte[] name) throws Ext4Exception {
        if (Arrays.equals(name, DOT) || Arrays.equals(name, DOTDOT)) {
            throw new Ext4Exception(Errno.EINVAL, "\".\" and \"..\" cannot be created, removed or renamed");
        }
        access(dir, Permissions.X_OK);
        try {
            return core.lookup(dir, name);
        } catch (Ext4Exception e) {
            if (e.errno() == Errno.ENOENT) {
                return 0;
            }
            throw e;
        }
    }

    /** Walks the first {@code count} names from the root (path_lookupat()). */
    private long walk(String[] names, int count, boolean followLast) throws Ext4Exception {
        Deque<byte[]> todo = new ArrayDeque<>(count);
        for (int i = 0; i < count; i++) {
            todo.add(bytes(names[i]));
        }
        Deque<Long> dirs = new ArrayDeque<>();
        long cur = Ext4FileSystem.ROOT_INO;
        int links = 0;
        while (!todo.isEmpty()) {
            byte[] n = todo.poll();
            if (Arrays.equals(n, DOT)) {
                continue;
            }
            if (Arrays.equals(n, DOTDOT)) {
                cur = dirs.isEmpty() ? Ext4FileSystem.ROOT_INO : dirs.pop();
                continue;
            }
            access(cur, Permissions.X_OK);
            long next = core.lookup(cur, n);
            boolean follow = !todo.isEmpty() || followLast;
            if (follow && isType(next, Inode.S_IFLNK)) {
                if (++links > MAX_SYMLINKS) {
                    throw new Ext4Exception(Errno.ELOOP, "more than " + MAX_SYMLINKS + " symbolic links on the way");
                }
                byte[] target = core.readlink(next);
                String[] parts = Arrays.stream(name(target).split("/")).filter(s -> !s.isEmpty()).toArray(String[]::new);
                for (int i = parts.length - 1; i >= 0; i--) {
                    todo.push(bytes(parts[i]));
                }
                if (target.length > 0 && target[0] == '/') {
                    dirs.clear();
                    cur = Ext4FileSystem.ROOT_INO;
                }
                continue;
            }
            dirs.push(cur);
            cur = next;
        }
        return cur;
    }

    /** The path without links, "." or "..": names looked up from the inode back to the root. */
    ImagePath realPath(ImagePath p, boolean follow) throws IOException {
        return io("toRealPath", p, null, () -> {
            List<String> rev = new ArrayList<>();
            long ino = inode(p, follow);
            long dir = isType(ino, Inode.S_IFDIR) ? ino : inode(p.toAbsolutePath().getParent(), true);
            if (dir != ino) {
                rev.add(p.getFileName().toString());
            }
            while (dir != Ext4FileSystem.ROOT_INO) {
                long parent = core.lookup(dir, DOTDOT);
                rev.add(nameOf(parent, dir));
                dir = parent;
            }
            java.util.Collections.reverse(rev);
            return new ImagePath(this, true, rev.toArray(String[]::new));
        });
    }

    private String nameOf(long dir, long ino) throws Ext4Exception {
        String[] found = new String[1];
        core.readdir(dir, 0, (name, entry, type, next) -> {
            if (entry == ino && !Arrays.equals(name, DOT) && !Arrays.equals(name, DOTDOT)) {
                found[0] = name(name);
                return false;
            }
            return true;
        });
        if (found[0] == null) {
            throw Ext4Exception.corrupted("directory inode " + dir + " has no entry for its subdirectory inode " + ino);
        }
        return found[0];
    }

    // ---- the operations the provider serves ----

    /** The mode a new inode gets: the attributes' or the default, and the process's owner. */
    static int createMode(int fallback, FileAttribute<?>... attrs) {
        int mode = fallback;
        for (FileAttribute<?> a : attrs) {
            switch (a.name()) {
                case "posix:permissions", "unix:permissions" -> {
                    @SuppressWarnings("unchecked")
                    Set<PosixFilePermission> perms = (Set<PosixFilePermission>) a.value();
                    mode = ImageAttributes.toMode(perms);
                }
                case "unix:mode" -> mode = ((Number) a.value()).intValue() & 07777;
                default -> throw new UnsupportedOperationException("attribute " + a.name() + " cannot be set at creation");
            }
        }
        return mode;
    }

    void createDirectory(ImagePath dir, FileAttribute<?>... attrs) throws IOException {
        requireWritable();
        int mode = createMode(0755, attrs);
        io("mkdir", dir, null, () -> {
            Entry e = newEntry(dir);
            return core.mkdir(e.dir(), e.name(), mode, uid, gid);
        });
    }

    void delete(ImagePath p) throws IOException {
        requireWritable();
        io("delete", p, null, () -> {
            Entry e = entry(p);
            if (e.ino() == 0) {
                throw new Ext4Exception(Errno.ENOENT, "no such name");
            }
            access(e.dir(), Permissions.W_OK | Permissions.X_OK);
            if (isType(e.ino(), Inode.S_IFDIR)) {
                core.rmdir(e.dir(), e.name());
            } else {
                core.unlink(e.dir(), e.name());
            }
            return null;
        });
    }

    /** rename(2); without {@code replace} an existing target is EEXIST. */
    void move(ImagePath from, ImagePath to, boolean replace) throws IOException {
        requireWritable();
        io("move", from, to, () -> {
            Entry src = entry(from);
            Entry dst = entry(to);
            if (src.ino() == 0) {
                throw new Ext4Exception(Errno.ENOENT, "no such name");
            }
            if (src.ino() == dst.ino()) {
                return null; // the same file: nothing to do, as Files.move says
            }
            if (dst.ino() != 0 && !replace) {
                throw new Ext4Exception(Errno.EEXIST, "the target name is taken by inode " + dst.ino());
            }
            access(src.dir(), Permissions.W_OK | Permissions.X_OK);
            access(dst.dir(), Permissions.W_OK | Permissions.X_OK);
            // without replace, a target made since the check above is still refused, under the rename's locks
            core.rename(src.dir(), src.name(), dst.dir(), dst.name(), replace ? 0 : Ext4FileSystem.RENAME_NOREPLACE);
            return null;
        });
    }

    void createLink(ImagePath link, ImagePath existing) throws IOException {
        requireWritable();
        io("link", link, existing, () -> {
            long ino = inode(existing, false);
            Entry e = newEntry(link);
            core.link(ino, e.dir(), e.name());
            return null;
        });
    }

    void createSymbolicLink(ImagePath link, String target) throws IOException {
        requireWritable();
        io("symlink", link, null, () -> {
            Entry e = newEntry(link);
            return core.symlink(e.dir(), e.name(), bytes(target), uid, gid);
        });
    }

    String readSymbolicLink(ImagePath link) throws IOException {
        String target = io("readlink", link, null, () -> {
            long ino = inode(link, false);
            return isType(ino, Inode.S_IFLNK) ? name(core.readlink(ino)) : null;
        });
        if (target == null) {
            throw NioErrors.notLink(link.toString());
        }
        return target;
    }

    FileAttributes stat(ImagePath p, boolean follow) throws IOException {
        return io("stat", p, null, () -> core.stat(inode(p, follow)));
    }

    /**
     * Changes attributes, null leaving one alone. As the kernel's setattr_prepare(): the mode and
     * times need the owner or root, the owner needs root, the group the owner (to a group of
     * theirs) or root; EPERM otherwise.
     */
    void setAttributes(ImagePath p, boolean follow, Integer mode, Long newUid, Long newGid, Ext4FileSystem.Time atime,
                       Ext4FileSystem.Time mtime) throws IOException {
        requireWritable();
        io("setattr", p, null, () -> {
            setAttributes(inode(p, follow), mode, newUid, newGid, atime, mtime);
            return null;
        });
    }

    /** {@link #setAttributes(ImagePath, boolean, Integer, Long, Long, Ext4FileSystem.Time, Ext4FileSystem.Time)} of an inode in hand. */
    void setAttributes(long ino, Integer mode, Long newUid, Long newGid, Ext4FileSystem.Time atime, Ext4FileSystem.Time mtime)
            throws Ext4Exception {
        if (!isRoot()) {
            FileAttributes a = core.stat(ino);
            boolean owner = a.uid() == uid;
            if (!owner || (newUid != null && newUid != a.uid()) || (newGid != null && newGid != gid && newGid != a.gid())) {
                throw new Ext4Exception(Errno.EPERM, "inode " + ino + " belongs to uid " + a.uid() + ", not to uid " + uid);
            }
        }
        core.setAttributes(ino, mode, newUid, newGid, atime, mtime);
    }

    void checkAccess(ImagePath p, int mask) throws IOException {
        if ((mask & Permissions.W_OK) != 0) {
            requireWritable();
        }
        io("access", p, null, () -> {
            long ino = inode(p, true);
            Permissions.checkAccess(core.stat(ino), mask, false);
            return null;
        });
    }

    boolean isSameFile(ImagePath a, ImagePath b) throws IOException {
        return a.equals(b) || io("stat", a, b, () -> inode(a, true) == inode(b, true));
    }

    /** The directory's entries but "." and "..", read at once: a stream sees the directory as it was when opened. */
    DirectoryStream<Path> newDirectoryStream(ImagePath dir, DirectoryStream.Filter<? super Path> filter) throws IOException {
        List<String> names = io("readdir", dir, null, () -> {
            long ino = inode(dir, true);
            if (!isType(ino, Inode.S_IFDIR)) {
                throw new Ext4Exception(Errno.ENOTDIR, "inode " + ino + " is not a directory");
            }
            access(ino, Permissions.R_OK);
            List<String> out = new ArrayList<>();
            core.readdir(ino, 0, (name, entry, type, next) -> {
                if (!Arrays.equals(name, DOT) && !Arrays.equals(name, DOTDOT)) {
                    out.add(name(name));
                }
                return true;
            });
            return out;
        });
        return new DirectoryStream<>() {
            private boolean iterated;
            private boolean streamClosed;

            @Override
            public Iterator<Path> iterator() {
                if (iterated || streamClosed) {
                    throw new IllegalStateException("a directory stream iterates once, while open");
                }
                iterated = true;
                List<Path> out = new ArrayList<>(names.size());
                for (String n : names) {
                    Path p = dir.resolve(n);
                    try {
                        if (filter == null || filter.accept(p)) {
                            out.add(p);
                        }
                    } catch (IOException e) {
                        throw new java.nio.file.DirectoryIteratorException(e);
                    }
                }
                Iterator<Path> it = out.iterator();
                return new Iterator<>() {
                    @Override
                    public boolean hasNext() {
                        return !streamClosed && it.hasNext();
                    }

                    @Override
                    public Path next() {
                        if (streamClosed) {
                            throw new java.util.NoSuchElementException();
                        }
                        return it.next();
                    }
                };
            }

            @Override
            public void close() {
                streamClosed = true;
            }
        };
    }

    /** open(2) as the options ask; see {@link ImageChannel}. */
    ImageChannel newChannel(ImagePath p, Set<? extends java.nio.file.OpenOption> options, FileAttribute<?>... attrs) throws IOException {
        ImageChannel.Mode m = ImageChannel.Mode.of(options);
        if (m.write()) {
            requireWritable();
        }
        if (m.deleteOnClose()) {
            throw new UnsupportedOperationException("DELETE_ON_CLOSE is not supported on ext4 images");
        }
        int mode = createMode(0644, attrs);
        long ino = io("open", p, null, () -> {
            Entry e = entry(p);
            long found = e.ino();
            if (found != 0 && m.createNew()) {
                throw new Ext4Exception(Errno.EEXIST, "the name is taken by inode " + found);
            }
            if (found != 0 && isType(found, Inode.S_IFLNK)) {
                if (m.noFollow()) {
                    throw new Ext4Exception(Errno.ELOOP, "inode " + found + " is a symbolic link (NOFOLLOW_LINKS)");
                }
                found = inode(p, true);
            }
            if (found == 0) {
                if (!m.create()) {
                    throw new Ext4Exception(Errno.ENOENT, "no such file");
                }
                access(e.dir(), Permissions.W_OK | Permissions.X_OK);
                found = core.mknod(e.dir(), e.name(), mode | Inode.S_IFREG, 0, 0, uid, gid);
            } else {
                FileAttributes a = core.stat(found);
                if (m.write() && (a.mode() & Inode.S_IFMT) == Inode.S_IFDIR) {
                    throw new Ext4Exception(Errno.EISDIR, "inode " + found + " is a directory");
                }
                access(found, (m.read() ? Permissions.R_OK : 0) | (m.write() ? Permissions.W_OK : 0));
                Permissions.checkOpen(a, m.openFlags(), false);
                if (m.truncate() && a.size() > 0) {
                    core.truncate(found, 0);
                }
            }
            core.open(found);
            return found;
        });
        ImageChannel c = new ImageChannel(this, p, ino, m);
        channels.add(c);
        return c;
    }
}
