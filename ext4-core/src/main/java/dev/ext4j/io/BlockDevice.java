package dev.ext4j.io;

import java.io.Closeable;
import java.io.IOException;
import java.nio.ByteBuffer;

/**
 * Positional byte I/O under the filesystem (libext2fs' io manager). Implementations: the image
 * file ({@link FileBlockDevice}), memory ({@link MemoryBlockDevice}) and a partition of an image
 * ({@link WindowDevice}); tests wrap them to inject faults.
 */
public interface BlockDevice extends Closeable {

    /** Reads {@code dst.remaining()} bytes at {@code offset}; fails with EOFException past the end. */
    void read(long offset, ByteBuffer dst) throws IOException;

    /** Writes all of {@code src} at {@code offset}. */
    void write(long offset, ByteBuffer src) throws IOException;

    /** Size in bytes. */
    long size() throws IOException;

    /** Makes every completed write durable. */
    void sync() throws IOException;

    boolean isReadOnly();

    /**
     * The size in bytes the device can ever reach by {@link #grow}: a partition's size for a
     * {@link WindowDevice}, unbounded for an image file (the host's free space aside).
     */
    default long capacity() throws IOException {
        return Long.MAX_VALUE;
    }

    /**
     * Makes the device at least {@code newSize} bytes long, for an online resize; the new bytes read
     * as zeros (a sparse extension where the file system allows). A device that cannot grow (a
     * fixed-size device, a read-only image, a failed write) throws and keeps its size.
     */
    default void grow(long newSize) throws IOException {
        throw new IOException("the device cannot grow (" + size() + " bytes, " + newSize + " wanted)");
    }
}
