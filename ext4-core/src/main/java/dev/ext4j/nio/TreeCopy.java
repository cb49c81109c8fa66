package dev.ext4j.nio;

import dev.ext4j.Errno;
import dev.ext4j.Ext4Exception;
import dev.ext4j.format.Inode;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.SeekableByteChannel;
import java.nio.file.FileAlreadyExistsException;
import java.nio.file.FileVisitResult;
import java.nio.file.FileVisitor;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.nio.file.attribute.BasicFileAttributeView;
import java.nio.file.attribute.BasicFileAttributes;
import java.nio.file.attribute.FileTime;
import java.nio.file.attribute.UserDefinedFileAttributeView;
import java.util.ArrayDeque;
import java.util.Deque;
import java.util.EnumSet;
import java.util.HashMap;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ArrayBlockingQueue;
import java.util.concurrent.ThreadPoolExecutor;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * cp(1) between any two {@code java.nio.file} filesystems, an image on one side or both: what
 * {@code ext4j cp} and {@link Ext4FileSystemProvider#copy} run, and what a Java program calls to
 * fill or extract an image. Symbolic links are copied as links. With {@code preserve} (cp -a) it
 * keeps the mode (with setuid, setgid and sticky), the owner and group when the process is root,
 * the access and modification times, hard links within the copied tree and the {@code user.}
 * xattrs; without, a new file gets its source's permissions less a umask of 022, as cp does.
 * Devices, fifos and sockets are made in an image; elsewhere they are reported and skipped (Java
 * cannot make them).
 *
 * <p>{@link #copyTree} copies regular files on a small pool of threads (one per processor, at most
 * four; the system property {@code ext4j.copy.threads} sets the number, 0 for none) while it walks
 * the tree, so that the core's work for one file overlaps another's. The walking thread makes
 * directories, links, devices and the files with more than one link (so a hard link always finds
 * its first copy made); a directory's mode and times are set once every entry in it is done. When
 * the pool is busy the walking thread copies the next file itself. Errors reach the
 * {@link OnError} one at a time, in the order the copies fail.
 *
 * <p>One copy at a time per instance.
 */
public final class TreeCopy {
    /**
     * What a copy does when one entry fails: throw to stop, return to go on. Called from the
     * copying threads, one call at a time.
     */
    @FunctionalInterface
    public interface OnError {
        void failed(Path source, IOException e) throws IOException;
    }

    private static final LinkOption[] NOFOLLOW = {LinkOption.NOFOLLOW_LINKS};
    private static final LinkOption[] FOLLOW = {};

    /** The threads a tree is copied with besides the walking one. */
    private static final int THREADS = Math.max(0,
            Integer.getInteger("ext4j.copy.threads", Math.min(4, Runtime.getRuntime().availableProcessors())));
    /** Files waiting for a copying thread, per thread; beyond that the walking thread copies. */
    private static final int QUEUED_PER_THREAD = 64;

    private final boolean preserve;
    private final OnError onError;
    private final boolean root;
    /** A multiply-linked source file's key and its first copy; the walking thread's. */
    private final Map<Object, Path> linked = new HashMap<>();
    private final ThreadLocal<ByteBuffer> buffers = ThreadLocal.withInitial(() -> ByteBuffer.allocateDirect(1 << 20));
    /** Serializes the calls of {@link #onError}. */
    private final Object errors = new Object();
    /** What stopped the copy: an exception {@link #onError} threw, or an unexpected one; null while it goes on. */
    private volatile Throwable stopped;

    /**
     * @param preserve cp -a's attributes (see the class comment)
     * @param onError  what a failed entry does; the copy of a tree goes on with the next when it returns
     */
    public TreeCopy(boolean preserve, OnError onError) {
        this.preserve = preserve;
        this.onError = onError;
        this.root = isRootProcess();
    }

    private static boolean isRootProcess() {
        try {
            return ((Number) Files.getAttribute(Path.of("/proc/self"), "unix:uid")).intValue() == 0;
        } catch (IOException | UnsupportedOperationException e) {
            return false;
        }
    }

    /** Files.copy of one entry: a directory as an empty one; see the provider's copy. */
    static void copyOne(Path source, Path target, boolean attrs, boolean follow, boolean replace) throws IOException {
        LinkOption[] lo = follow ? FOLLOW : NOFOLLOW;
        BasicFileAttributes a = Files.readAttributes(source, BasicFileAttributes.class, lo);
        if (replace) {
            Files.deleteIfExists(target);
        } else if (Files.exists(target, NOFOLLOW)) {
            throw new FileAlreadyExistsException(target.toString());
        }
        TreeCopy c = new TreeCopy(attrs, (p, e) -> {
            throw e;
        });
        Map<String, Object> u = unix(source, a, lo);
        c.entry(source, target, a, u);
        if (a.isDirectory()) {
            c.finish(source, target, a, u, false, null);
        }
    }

    /**
     * Copies {@code source} (a file, link or whole tree, links not followed) to {@code target},
     * which must not exist; its parent must. Returns when every copy is done; rethrows what
     * {@link #onError} threw, after the files being copied then are done.
     */
    public void copyTree(Path source, Path target) throws IOException {
        AtomicInteger made = new AtomicInteger();
        ThreadPoolExecutor pool = THREADS == 0 ? null : new ThreadPoolExecutor(THREADS, THREADS, 0, TimeUnit.SECONDS,
                new ArrayBlockingQueue<>(THREADS * QUEUED_PER_THREAD), r -> {
                    Thread t = new Thread(r, "ext4j-copy-" + made.incrementAndGet());
                    t.setDaemon(true);
                    return t;
                }, new ThreadPoolExecutor.CallerRunsPolicy());
        stopped = null;
        try {
            Files.walkFileTree(source, EnumSet.noneOf(java.nio.file.FileVisitOption.class), Integer.MAX_VALUE, new Walk(target, pool));
        } catch (IOException | RuntimeException | Error e) {
            stop(e);
        } finally {
            if (pool != null) {
                pool.shutdown();
                awaitQuietly(pool);
            }
        }
        Throwable t = stopped;
        if (t instanceof IOException e) {
            throw e;
        } else if (t instanceof RuntimeException e) {
            throw e;
        } else if (t instanceof Error e) {
            throw e;
        }
    }

    /** Waits for the pool's copies to end; an interrupt is kept for the caller. */
    private static void awaitQuietly(ThreadPoolExecutor pool) {
        boolean interrupted = false;
        while (true) {
            try {
                if (pool.awaitTermination(1, TimeUnit.DAYS)) {
                    break;
                }
            } catch (InterruptedException e) {
                interrupted = true;
            }
        }
        if (interrupted) {
            Thread.currentThread().interrupt();
        }
    }

    /** The first reason to stop wins. */
    private void stop(Throwable t) {
        synchronized (errors) {
            if (stopped == null) {
                stopped = t;
            }
        }
    }

    /** Reports one failure to {@link #onError}, one at a time; what it throws stops the copy. */
    private void failed(Path source, IOException e) {
        synchronized (errors) {
            if (stopped != null) {
                return;
            }
            try {
                onError.failed(source, e);
            } catch (IOException | RuntimeException | Error x) {
                stopped = x;
            }
        }
    }

    /**
     * A directory being copied: its entries still being copied (its subdirectories until they are
     * finished themselves), one more while the walk is in it; the last to be done sets the
     * directory's mode and times, so a parent's come after its children's, as in a plain walk.
     */
    private static final class Dir {
        final Dir parent;
        /** The directory's copy. */
        final Path target;
        final AtomicInteger pending = new AtomicInteger(1);
        /** Set by the walking thread before its own count is given back. */
        Runnable finish;

        Dir(Dir parent, Path target) {
            this.parent = parent;
            this.target = target;
            if (parent != null) {
                parent.pending.incrementAndGet();
            }
        }

        void done() {
            if (pending.decrementAndGet() == 0) {
                try {
                    finish.run();
                } finally {
                    if (parent != null) {
                        parent.done();
                    }
                }
            }
        }
    }

    /** The walk of one {@link #copyTree}. */
    private final class Walk implements FileVisitor<Path> {
        /** The copy of the walk's start. */
        private final Path target;
        /** Null to copy every entry on the walking thread. */
        private final ThreadPoolExecutor pool;
        /** The directories the walk is in, innermost first. */
        private final Deque<Dir> dirs = new ArrayDeque<>();

        Walk(Path target, ThreadPoolExecutor pool) {
            this.target = target;
            this.pool = pool;
        }

        /** The copy of {@code p}, an entry of the directory the walk is in (or the source itself). */
        private Path to(Path p) {
            Dir in = dirs.peek();
            return in == null ? target : in.target.resolve(p.getFileName().toString());
        }

        private FileVisitResult next() {
            return stopped == null ? FileVisitResult.CONTINUE : FileVisitResult.TERMINATE;
        }

        @Override
        public FileVisitResult preVisitDirectory(Path dir, BasicFileAttributes attrs) {
            Path to = to(dir);
            try {
                entry(dir, to, attrs, unix(dir, attrs, NOFOLLOW));
            } catch (IOException e) {
                failed(dir, e);
                return stopped == null ? FileVisitResult.SKIP_SUBTREE : FileVisitResult.TERMINATE;
            }
            dirs.push(new Dir(dirs.peek(), to));
            return next();
        }

        @Override
        public FileVisitResult visitFile(Path file, BasicFileAttributes attrs) {
            Path to = to(file);
            Map<String, Object> u;
            try {
                u = unix(file, attrs, NOFOLLOW);
            } catch (IOException e) {
                failed(file, e);
                return next();
            }
            Dir in = dirs.peek();
            if (pool == null || in == null || !attrs.isRegularFile() || preserve && ((Number) u.get("nlink")).intValue() > 1) {
                copy(file, to, attrs, u);
                return next();
            }
            in.pending.incrementAndGet();
            try {
                pool.execute(() -> {
                    try {
                        if (stopped == null) {
                            copy(file, to, attrs, u);
                        }
                    } finally {
                        in.done();
                    }
                });
            } catch (RuntimeException e) {
                in.done();
                throw e;
            }
            return next();
        }

        /** One entry, its failure reported; an unexpected exception stops the copy. */
        private void copy(Path file, Path to, BasicFileAttributes attrs, Map<String, Object> u) {
            try {
                entry(file, to, attrs, u);
            } catch (IOException e) {
                failed(file, e);
            } catch (RuntimeException | Error e) {
                stop(e);
            }
        }

        @Override
        public FileVisitResult visitFileFailed(Path file, IOException e) {
            failed(file, e);
            return next();
        }

        @Override
        public FileVisitResult postVisitDirectory(Path dir, IOException e) {
            if (e != null) {
                failed(dir, e);
            }
            Dir d = dirs.pop();
            Path to = d.target;
            d.finish = () -> {
                if (stopped != null) {
                    return;
                }
                try {
                    BasicFileAttributes a = Files.readAttributes(dir, BasicFileAttributes.class, NOFOLLOW);
                    finish(dir, to, a, unix(dir, a, NOFOLLOW), false, null);
                } catch (IOException x) {
                    failed(dir, x);
                } catch (RuntimeException | Error x) {
                    stop(x);
                }
            };
            d.done();
            return next();
        }
    }

    /** The source's mode, uid, gid and nlink; a filesystem without the unix view gives 0644/0755 and no owner. */
    private static Map<String, Object> unix(Path source, BasicFileAttributes a, LinkOption[] lo) throws IOException {
        try {
            return Files.readAttributes(source, "unix:mode,uid,gid,nlink,rdev", lo);
        } catch (UnsupportedOperationException | IllegalArgumentException e) {
            int type = a.isDirectory() ? Inode.S_IFDIR : a.isSymbolicLink() ? Inode.S_IFLNK : Inode.S_IFREG;
            return Map.of("mode", type | (a.isDirectory() ? 0755 : 0644), "nlink", 1);
        }
    }

    /**
     * Makes the copy of one entry; a directory's times wait for {@link #finish}. What is in the
     * way is replaced, as cp does, but a directory, which a directory's copy goes into, and a
     * file, which a file's data is written into.
     */
    private void entry(Path source, Path target, BasicFileAttributes a, Map<String, Object> u) throws IOException {
        Written w = new Written();
        try {
            copyEntry(source, target, a, u, w);
        } finally {
            if (w.channel != null) {
                w.channel.close();
            }
        }
    }

    /**
     * The file just copied into an image, still open (so its inode cannot go and be reused) until
     * its attributes are set without a second walk; null for none.
     */
    private static final class Written {
        ImageChannel channel;
    }

    private void copyEntry(Path source, Path target, BasicFileAttributes a, Map<String, Object> u, Written w) throws IOException {
        boolean made;
        boolean into = false;
        try {
            made = create(source, target, a, u, w);
        } catch (FileAlreadyExistsException e) {
            if (a.isDirectory() && Files.isDirectory(target)) {
                made = true;
            } else if (a.isRegularFile() && Files.exists(target) && !Files.isDirectory(target)) {
                if (Files.isSameFile(source, target)) {
                    throw new java.nio.file.FileSystemException(source.toString(), target.toString(), "the same file");
                }
                copyData(source, target, StandardOpenOption.TRUNCATE_EXISTING, w); // into the file (or device) there, as cp
                made = true;
                into = true;
            } else if (!a.isDirectory() && (Files.isRegularFile(target, NOFOLLOW) || Files.isSymbolicLink(target))) {
                Files.delete(target);
                made = create(source, target, a, u, w);
            } else {
                throw e;
            }
        }
        if (!made) {
            return;
        }
        if (preserve) {
            copyXattrs(source, target, a);
        }
        if (!a.isDirectory() && (!into || Files.isRegularFile(target))) { // a device written into keeps its attributes
            finish(source, target, a, u, into, w.channel);
        }
    }

    /** Creates the copy; false when it is a hard link to an earlier copy, which has the attributes already. */
    private boolean create(Path source, Path target, BasicFileAttributes a, Map<String, Object> u, Written w) throws IOException {
        if (preserve && !a.isDirectory() && ((Number) u.get("nlink")).intValue() > 1 && a.fileKey() != null) {
            Path first = linked.get(a.fileKey());
            if (first != null) {
                Files.createLink(target, first);
                return false;
            }
            linked.put(a.fileKey(), target);
        }
        if (a.isSymbolicLink()) {
            Files.createSymbolicLink(target, target.getFileSystem().getPath(Files.readSymbolicLink(source).toString()));
        } else if (a.isDirectory()) {
            Files.createDirectory(target);
        } else if (a.isRegularFile()) {
            copyData(source, target, StandardOpenOption.CREATE_NEW, w);
        } else if (target instanceof ImagePath t) {
            makeSpecial(t, ((Number) u.get("mode")).intValue(), ((Number) u.getOrDefault("rdev", 0L)).longValue());
        } else {
            throw new IOException(source + ": a device, fifo or socket: cannot be made outside an image");
        }
        return true;
    }

    /**
     * The mode, owner and times, as one change in an image. A file written {@code into} one that
     * was there keeps that one's mode unless preserving (as cp), and is reached through links.
     * {@code written} is the target's channel when the copy just wrote it into an image.
     */
    private void finish(Path source, Path target, BasicFileAttributes a, Map<String, Object> u, boolean into, ImageChannel written)
            throws IOException {
        boolean link = a.isSymbolicLink();
        int mode = ((Number) u.get("mode")).intValue() & 07777;
        Integer m = link || (into && !preserve) ? null : preserve ? mode : mode & 0755;
        LinkOption[] lo = into ? FOLLOW : NOFOLLOW;
        Long uid = preserve && root && u.containsKey("uid") ? ((Number) u.get("uid")).longValue() & 0xFFFFFFFFL : null;
        Long gid = preserve && root && u.containsKey("gid") ? ((Number) u.get("gid")).longValue() & 0xFFFFFFFFL : null;
        FileTime atime = preserve ? a.lastAccessTime() : null;
        FileTime mtime = preserve ? a.lastModifiedTime() : null;
        if (target instanceof ImagePath t) {
            if (m != null || uid != null || gid != null || atime != null) {
                ImageFileSystem fs = t.getFileSystem();
                if (written != null) {
                    long ino = written.ino();
                    fs.requireWritable();
                    fs.io("setattr", t, null, () -> {
                        fs.setAttributes(ino, m, uid, gid, ImageAttributes.time(atime), ImageAttributes.time(mtime));
                        return null;
                    });
                } else {
                    fs.setAttributes(t, into, m, uid, gid, ImageAttributes.time(atime), ImageAttributes.time(mtime));
                }
            }
            return;
        }
        if (uid != null) {
            Files.setAttribute(target, "unix:uid", (int) (long) uid, lo);
            Files.setAttribute(target, "unix:gid", (int) (long) gid, lo);
        }
        if (m != null) {
            Files.setAttribute(target, "unix:mode", m, lo);
        }
        if (mtime != null) {
            Files.getFileAttributeView(target, BasicFileAttributeView.class, lo).setTimes(mtime, atime, null);
        }
    }

    private void copyData(Path source, Path target, StandardOpenOption how, Written w) throws IOException {
        SeekableByteChannel out = Files.newByteChannel(target, Set.of(how, StandardOpenOption.WRITE));
        ByteBuffer buffer = buffers.get();
        try (SeekableByteChannel in = Files.newByteChannel(source)) {
            while (true) {
                buffer.clear();
                if (in.read(buffer) < 0) {
                    break;
                }
                buffer.flip();
                while (buffer.hasRemaining()) {
                    out.write(buffer);
                }
            }
        } catch (IOException | RuntimeException e) {
            out.close();
            throw e;
        }
        if (out instanceof ImageChannel c) {
            w.channel = c; // closed by entry() once the attributes are set
        } else {
            out.close();
        }
    }

    private static void makeSpecial(ImagePath t, int mode, long rdev) throws IOException {
        ImageFileSystem fs = t.getFileSystem();
        fs.requireWritable();
        int major = (int) (((rdev >>> 8) & 0xFFF) | ((rdev >>> 32) & ~0xFFFL));
        int minor = (int) ((rdev & 0xFF) | ((rdev >>> 12) & ~0xFFL));
        fs.io("mknod", t, null, () -> {
            ImageFileSystem.Entry e = fs.newEntry(t);
            if ((mode & Inode.S_IFMT) == 0) {
                throw new Ext4Exception(Errno.EINVAL, "no file type in mode 0" + Integer.toOctalString(mode));
            }
            return fs.core.mknod(e.dir(), e.name(), mode, major, minor, fs.uid, fs.gid);
        });
    }

    /** The {@code user.} xattrs; none on links (Linux allows none there). */
    private static void copyXattrs(Path source, Path target, BasicFileAttributes a) throws IOException {
        if (a.isSymbolicLink()) {
            return;
        }
        UserDefinedFileAttributeView from = Files.getFileAttributeView(source, UserDefinedFileAttributeView.class, NOFOLLOW);
        UserDefinedFileAttributeView to = Files.getFileAttributeView(target, UserDefinedFileAttributeView.class, NOFOLLOW);
        if (from == null || to == null) {
            return;
        }
        for (String name : from.list()) {
            ByteBuffer v = ByteBuffer.allocate(from.size(name));
            from.read(name, v);
            to.write(name, v.flip());
        }
    }

}
