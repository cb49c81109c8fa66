package dev.ext4j.nio;

import dev.ext4j.fs.Permissions;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.MappedByteBuffer;
import java.nio.channels.ClosedChannelException;
import java.nio.channels.FileChannel;
import java.nio.channels.FileLock;
import java.nio.channels.NonReadableChannelException;
import java.nio.channels.NonWritableChannelException;
import java.nio.channels.ReadableByteChannel;
import java.nio.channels.WritableByteChannel;
import java.nio.file.OpenOption;
import java.nio.file.StandardOpenOption;
import java.nio.file.LinkOption;
import java.util.Set;

/**
 * An open file of an image: a {@link FileChannel} with its own position over the core's read,
 * write, truncate and fsync of one inode, which the channel holds open (as a file handle does, so
 * a file unlinked while open lives until the channel closes). Memory mapping and file locks are not
 * supported. Thread-safe: calls on one channel are serialized.
 */
final class ImageChannel extends FileChannel {
    /** What an open asked for. */
    record Mode(boolean read, boolean write, boolean append, boolean create, boolean createNew, boolean truncate,
                boolean noFollow, boolean sync, boolean deleteOnClose) {
        static Mode of(Set<? extends OpenOption> o) {
            boolean append = o.contains(StandardOpenOption.APPEND);
            boolean write = o.contains(StandardOpenOption.WRITE) || append;
            boolean read = o.contains(StandardOpenOption.READ) || !write;
            if (append && (read && o.contains(StandardOpenOption.READ) || o.contains(StandardOpenOption.TRUNCATE_EXISTING))) {
                throw new IllegalArgumentException("APPEND cannot go with READ or TRUNCATE_EXISTING");
            }
            boolean createNew = o.contains(StandardOpenOption.CREATE_NEW);
            return new Mode(read, write, append, write && (createNew || o.contains(StandardOpenOption.CREATE)),
                    write && o.contains(StandardOpenOption.CREATE_NEW), write && o.contains(StandardOpenOption.TRUNCATE_EXISTING),
                    o.contains(LinkOption.NOFOLLOW_LINKS),
                    o.contains(StandardOpenOption.SYNC) || o.contains(StandardOpenOption.DSYNC),
                    o.contains(StandardOpenOption.DELETE_ON_CLOSE));
        }

        /** The open(2) flags, for {@link Permissions#checkOpen}. */
        int openFlags() {
            int acc = read && write ? Permissions.O_RDWR : write ? Permissions.O_WRONLY : Permissions.O_RDONLY;
            return acc | (append ? Permissions.O_APPEND : 0) | (truncate ? Permissions.O_TRUNC : 0);
        }
    }

    private final ImageFileSystem fs;
    private final ImagePath path;
    private final long ino;
    private final Mode mode;
    private long position;
    private boolean released;

    ImageChannel(ImageFileSystem fs, ImagePath path, long ino, Mode mode) {
        this.fs = fs;
        this.path = path;
        this.ino = ino;
        this.mode = mode;
    }

    /** The inode the channel holds open. */
    long ino() {
        return ino;
    }

    ImagePath path() {
        return path;
    }

    private void ensureOpen() throws IOException {
        if (!isOpen()) {
            throw new ClosedChannelException();
        }
    }

    @Override
    public synchronized int read(ByteBuffer dst) throws IOException {
        int n = read(dst, position);
        if (n > 0) {
            position += n;
        }
        return n;
    }

    @Override
    public synchronized long read(ByteBuffer[] dsts, int offset, int length) throws IOException {
        long total = 0;
        for (int i = offset; i < offset + length; i++) {
            if (!dsts[i].hasRemaining()) {
                continue;
            }
            int n = read(dsts[i]);
            if (n < 0) {
                return total == 0 ? -1 : total;
            }
            total += n;
            if (dsts[i].hasRemaining()) {
                break;
            }
        }
        return total;
    }

    @Override
    public synchronized int write(ByteBuffer src) throws IOException {
        if (mode.append()) {
            position = size();
        }
        int n = write(src, position);
        position += n;
        return n;
    }

    @Override
    public synchronized long write(ByteBuffer[] srcs, int offset, int length) throws IOException {
        long total = 0;
        for (int i = offset; i < offset + length; i++) {
            total += write(srcs[i]);
        }
        return total;
    }

    @Override
    public synchronized long position() throws IOException {
        ensureOpen();
        return position;
    }

    @Override
    public synchronized FileChannel position(long newPosition) throws IOException {
        ensureOpen();
        if (newPosition < 0) {
            throw new IllegalArgumentException("negative position " + newPosition);
        }
        position = newPosition;
        return this;
    }

    @Override
    public long size() throws IOException {
        ensureOpen();
        return fs.io("size", path, null, () -> fs.core.stat(ino).size());
    }

    @Override
    public synchronized FileChannel truncate(long size) throws IOException {
        ensureOpen();
        if (size < 0) {
            throw new IllegalArgumentException("negative size " + size);
        }
        if (!mode.write()) {
            throw new NonWritableChannelException();
        }
        if (size < size()) {
            fs.io("truncate", path, null, () -> {
                fs.core.truncate(ino, size);
                return null;
            });
        }
        position = Math.min(position, size);
        return this;
    }

    @Override
    public void force(boolean metaData) throws IOException {
        ensureOpen();
        fs.io("fsync", path, null, () -> {
            fs.core.fsync(ino, !metaData);
            return null;
        });
    }

    @Override
    public long transferTo(long pos, long count, WritableByteChannel target) throws IOException {
        ByteBuffer buf = ByteBuffer.allocate((int) Math.min(count, 1 << 20));
        long done = 0;
        while (done < count) {
            buf.clear().limit((int) Math.min(buf.capacity(), count - done));
            int n = read(buf, pos + done);
            if (n <= 0) {
                break;
            }
            buf.flip();
            while (buf.hasRemaining()) {
                target.write(buf);
            }
            done += n;
        }
        return done;
    }

    @Override
    public long transferFrom(ReadableByteChannel src, long pos, long count) throws IOException {
        ByteBuffer buf = ByteBuffer.allocate((int) Math.min(count, 1 << 20));
        long done = 0;
        while (done < count) {
            buf.clear().limit((int) Math.min(buf.capacity(), count - done));
            int n = src.read(buf);
            if (n <= 0) {
                break;
            }
            buf.flip();
            while (buf.hasRemaining()) {
                done += write(buf, pos + done);
            }
        }
        return done;
    }

    @Override
    public int read(ByteBuffer dst, long pos) throws IOException {
        ensureOpen();
        if (!mode.read()) {
            throw new NonReadableChannelException();
        }
        if (!dst.hasRemaining()) {
            return 0;
        }
        int n = fs.io("read", path, null, () -> fs.core.read(ino, pos, dst));
        return n == 0 ? -1 : n;
    }

    @Override
    public int write(ByteBuffer src, long pos) throws IOException {
        ensureOpen();
        if (!mode.write()) {
            throw new NonWritableChannelException();
        }
        int total = 0;
        while (src.hasRemaining()) {
            long at = pos + total;
            total += fs.io("write", path, null, () -> fs.core.write(ino, at, src));
        }
        if (mode.sync()) {
            force(false);
        }
        return total;
    }

    @Override
    public MappedByteBuffer map(MapMode mapMode, long pos, long size) {
        throw new UnsupportedOperationException("files of ext4 images cannot be memory-mapped");
    }

    @Override
    public FileLock lock(long pos, long size, boolean shared) {
        throw new UnsupportedOperationException("files of ext4 images cannot be locked");
    }

    @Override
    public FileLock tryLock(long pos, long size, boolean shared) {
        throw new UnsupportedOperationException("files of ext4 images cannot be locked");
    }

    @Override
    protected void implCloseChannel() throws IOException {
        if (fs.channels.remove(this)) { // else the filesystem's close released it
            fs.io("release", path, null, this::release);
        }
    }

    /** The filesystem closes: the inode is let go without the filesystem's guard, which close holds. */
    void releaseOnClose() {
        try {
            release();
        } catch (dev.ext4j.Ext4Exception e) {
            // the unmount that follows frees what is left
        }
    }

    private synchronized Void release() throws dev.ext4j.Ext4Exception {
        if (!released) {
            released = true;
            fs.core.release(ino);
        }
        return null;
    }
}
