package dev.ext4j.io;

import dev.ext4j.Errno;
import dev.ext4j.Ext4Exception;
import java.io.EOFException;
import java.io.IOException;
import java.lang.ref.WeakReference;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.channels.FileLock;
import java.nio.channels.OverlappingFileLockException;
import java.nio.file.AccessDeniedException;
import java.nio.file.FileSystemException;
import java.nio.file.Files;
import java.nio.file.attribute.BasicFileAttributes;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.List;
import java.util.Optional;
import java.util.HashMap;
import java.util.Map;

/**
 * An image file. Opened read-only, the channel itself has no write permission, so a read-only mount
 * cannot write to the image whatever the code above does.
 *
 * <p>Exclusive use: the open image holds a lock on the whole file until it is closed, exclusive
 * when opened for writing and shared when read-only, so two mounts never write one image (nor one
 * reads while another writes). The lock is {@link FileChannel#tryLock}, a POSIX record lock
 * (fcntl F_SETLK): it works across processes and the kernel drops it the moment the process dies,
 * SIGKILL included. An open file description lock (F_OFD_SETLK) would be safer, but Java has no
 * call for it and ext4-core takes no native library. The price of POSIX locks is that closing ANY
 * descriptor of the file in this process drops them, so nothing in ext4j may open and close a
 * second channel to a mounted image; this class is the only place that opens it. Inside one JVM
 * Java would refuse a second lock on the file even when both are shared
 * ({@link OverlappingFileLockException}), but only after a second descriptor was opened, whose
 * close would drop the first one's lock: so the images open in this process are kept by device
 * and inode ({@link #OPEN}) and a second open of one is refused before any descriptor is opened.
 * A device is kept there weakly: one never closed frees its image once collected, before its
 * descriptor is closed (by the channel's cleaner) and so before the inode number can be reused.
 * Every conflict is one {@link Ext4Exception} with {@link Errno#EBUSY}.
 */
public final class FileBlockDevice implements BlockDevice {
    /**
     * The images this process has open, by device and inode ({@code fileKey()}): a weak reference
     * to the device, or {@link #OPENING} while it is being opened. Guarded by the class.
     */
    private static final Map<Object, Object> OPEN = new HashMap<>();
    private static final Object OPENING = new Object();

    private final FileChannel channel;
    private final boolean readOnly;
    /** Held until {@link #close}; closing the channel releases it. */
    @SuppressWarnings("unused")
    private final FileLock lock;
    private final Object key;

    private FileBlockDevice(FileChannel channel, boolean readOnly, FileLock lock, Object key) {
        this.channel = channel;
        this.readOnly = readOnly;
        this.lock = lock;
        this.key = key;
    }

    /**
     * Opens and locks the image: EBUSY when another mount (in any process) or a loop device uses it
     * in a way that conflicts, EACCES or EROFS (suggesting {@code -o ro}) when it cannot be opened
     * for writing, ENOENT when it does not exist.
     */
    public static FileBlockDevice open(Path image, boolean readOnly) throws IOException, Ext4Exception {
        if (!readOnly) {
            Optional<String> loop = ImageUse.loopDeviceOf(image);
            if (loop.isPresent()) {
                throw new Ext4Exception(Errno.EBUSY, "image " + image + " is in use: it is attached to loop device "
                        + loop.get() + " (losetup -d " + loop.get() + " after unmounting it, or mount with -o ro)");
            }
        }
        Object key;
        try {
            key = Files.readAttributes(image, BasicFileAttributes.class).fileKey();
        } catch (NoSuchFileException e) {
            throw new Ext4Exception(Errno.ENOENT, "image " + image + " does not exist", e);
        }
        if (key == null || !reserve(key)) {
            throw new Ext4Exception(Errno.EBUSY, "image " + image + " is in use: this process has it open already");
        }
        FileBlockDevice dev = null;
        try {
            dev = openAndLock(image, readOnly, key);
            return dev;
        } finally {
            settle(key, dev);
        }
    }

    /** Takes {@code key} for an open unless a live device of this process has it. */
    private static synchronized boolean reserve(Object key) {
        Object v = OPEN.get(key);
        if (v == OPENING || v instanceof WeakReference<?> r && r.get() != null) {
            return false;
        }
        OPEN.put(key, OPENING);
        return true;
    }

    /** Ends a reservation: {@code dev} holds the key now, or nothing does (null: the open failed). */
    private static synchronized void settle(Object key, FileBlockDevice dev) {
        if (dev == null) {
            OPEN.remove(key);
        } else {
            OPEN.put(key, new WeakReference<>(dev));
        }
    }

    private static synchronized void release(Object key, FileBlockDevice dev) {
        if (OPEN.get(key) instanceof WeakReference<?> r && r.get() == dev) {
            OPEN.remove(key);
        }
    }

    private static FileBlockDevice openAndLock(Path image, boolean readOnly, Object key) throws IOException, Ext4Exception {
        FileChannel ch;
        try {
            ch = readOnly
                    ? FileChannel.open(image, StandardOpenOption.READ)
                    : FileChannel.open(image, StandardOpenOption.READ, StandardOpenOption.WRITE);
        } catch (NoSuchFileException e) {
            throw new Ext4Exception(Errno.ENOENT, "image " + image + " does not exist", e);
        } catch (AccessDeniedException e) {
            throw new Ext4Exception(Errno.EACCES, "no permission to open image " + image
                    + (readOnly ? " for reading" : " for writing; mount it read-only with -o ro"), e);
        } catch (FileSystemException e) {
            if (!readOnly && "Read-only file system".equals(e.getReason())) {
                throw new Ext4Exception(Errno.EROFS, "image " + image + " is on a read-only filesystem; mount it read-only with -o ro", e);
            }
            if (!readOnly && "Operation not permitted".equals(e.getReason())) {
                throw new Ext4Exception(Errno.EPERM, "image " + image + " cannot be opened for writing (immutable or append-only?);"
                        + " mount it read-only with -o ro", e);
            }
            throw e;
        }
        FileLock lock;
        try {
            lock = ch.tryLock(0, Long.MAX_VALUE, readOnly);
        } catch (OverlappingFileLockException e) {
            ch.close();
            throw new Ext4Exception(Errno.EBUSY, "image " + image + " is in use: a channel of this process not opened by ext4j"
                    + " holds a lock on it");
        } catch (IOException e) {
            ch.close();
            throw e;
        }
        if (lock == null) {
            ch.close();
            List<String> mounts = ImageUse.mountPointsOf(image);
            throw new Ext4Exception(Errno.EBUSY, "image " + image + " is in use by another "
                    + (readOnly ? "read-write mount" : "mount") + (mounts.isEmpty() ? "" : " on " + String.join(", ", mounts))
                    + (readOnly ? "" : "; a read-write mount needs the image alone"));
        }
        return new FileBlockDevice(ch, readOnly, lock, key);
    }

    @Override
    public void read(long offset, ByteBuffer dst) throws IOException {
        long pos = offset;
        while (dst.hasRemaining()) {
            int n = channel.read(dst, pos);
            if (n < 0) {
                throw new EOFException("read at byte " + pos + " is past the end of the image ("
                        + channel.size() + " bytes)");
            }
            pos += n;
        }
    }

    @Override
    public void write(long offset, ByteBuffer src) throws IOException {
        if (readOnly) {
            throw new IOException("image is open read-only");
        }
        long pos = offset;
        while (src.hasRemaining()) {
            pos += channel.write(src, pos);
        }
    }

    @Override
    public long size() throws IOException {
        return channel.size();
    }

    /** Extends the file sparsely by writing its last byte (a zero), as truncate(1) would. */
    @Override
    public void grow(long newSize) throws IOException {
        if (readOnly) {
            throw new IOException("image is open read-only");
        }
        if (newSize > channel.size()) {
            ByteBuffer zero = ByteBuffer.allocate(1);
            while (zero.hasRemaining()) {
                channel.write(zero, newSize - 1);
            }
        }
    }

    /** fdatasync(2): what reading the data back needs (its blocks, the file's size), not the image file's times. */
    @Override
    public void sync() throws IOException {
        if (!readOnly) {
            channel.force(false);
        }
    }

    @Override
    public boolean isReadOnly() {
        return readOnly;
    }

    @Override
    public void close() throws IOException {
        try {
            channel.close();
        } finally {
            release(key, this);
        }
    }
}
