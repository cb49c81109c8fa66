package dev.ext4j.io;

import java.io.EOFException;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;

/**
 * An image file. Opened read-only, the channel itself has no write permission, so a read-only mount
 * cannot write to the image whatever the code above does.
 */
public final class FileBlockDevice implements BlockDevice {
    private final FileChannel channel;
    private final boolean readOnly;

    private FileBlockDevice(FileChannel channel, boolean readOnly) {
        this.channel = channel;
        this.readOnly = readOnly;
    }

    public static FileBlockDevice open(Path image, boolean readOnly) throws IOException {
        FileChannel ch = readOnly
                ? FileChannel.open(image, StandardOpenOption.READ)
                : FileChannel.open(image, StandardOpenOption.READ, StandardOpenOption.WRITE);
        return new FileBlockDevice(ch, readOnly);
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

    @Override
    public void sync() throws IOException {
        if (!readOnly) {
            channel.force(true);
        }
    }

    @Override
    public boolean isReadOnly() {
        return readOnly;
    }

    @Override
    public void close() throws IOException {
        channel.close();
    }
}
