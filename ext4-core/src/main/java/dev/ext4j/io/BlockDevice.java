package dev.ext4j.io;

import java.io.Closeable;
import java.io.IOException;
import java.nio.ByteBuffer;

/**
 * Positional byte I/O under the filesystem (libext2fs' io manager). Implementations: the image
 * file ({@link FileBlockDevice}) and memory ({@link MemoryBlockDevice}); tests wrap them to inject
 * faults.
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
}
