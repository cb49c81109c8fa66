package dev.ext4j.io;

import java.io.EOFException;
import java.io.IOException;
import java.nio.ByteBuffer;

/**
 * A part of an image as a device of its own (the role of a partition's block device, or of
 * fuse2fs' offset=): bytes [0, length) of this device are bytes [offset, offset + length) of the
 * image. A read or write that reaches outside the window fails, naming the window, so nothing
 * outside the partition is ever read or written through it. The window cannot grow.
 */
public final class WindowDevice implements BlockDevice {
    private final BlockDevice image;
    private final long offset;
    private final long length;
    private final String name;

    /**
     * @param offset first byte of the window in the image
     * @param length bytes in the window
     * @param name   what the window is, for messages ("partition 2")
     */
    public WindowDevice(BlockDevice image, long offset, long length, String name) {
        if (offset < 0 || length < 0 || offset > Long.MAX_VALUE - length) {
            throw new IllegalArgumentException(name + ": window of " + length + " bytes at byte " + offset);
        }
        this.image = image;
        this.offset = offset;
        this.length = length;
        this.name = name;
    }

    /** First byte of the window in the image. */
    public long offset() {
        return offset;
    }

    /** What the window is and where: "partition 2 (1048576 bytes at byte 2097152 of the image)". */
    @Override
    public String toString() {
        return name + " (" + length + " bytes at byte " + offset + " of the image)";
    }

    private void check(String what, long pos, int bytes) throws IOException {
        if (pos < 0 || pos > length - bytes) {
            String msg = what + " of " + bytes + " bytes at byte " + pos + " is outside " + this;
            throw what.equals("read") ? new EOFException(msg) : new IOException(msg);
        }
    }

    @Override
    public void read(long pos, ByteBuffer dst) throws IOException {
        check("read", pos, dst.remaining());
        image.read(offset + pos, dst);
    }

    @Override
    public void write(long pos, ByteBuffer src) throws IOException {
        check("write", pos, src.remaining());
        image.write(offset + pos, src);
    }

    @Override
    public long size() {
        return length;
    }

    @Override
    public long capacity() {
        return length;
    }

    /** Nothing to do within the window; past its end, an IOException naming the window's size. */
    @Override
    public void grow(long newSize) throws IOException {
        if (newSize > length) {
            throw new IOException(this + " cannot grow to " + newSize + " bytes");
        }
    }

    @Override
    public void sync() throws IOException {
        image.sync();
    }

    @Override
    public boolean isReadOnly() {
        return image.isReadOnly();
    }

    @Override
    public void close() throws IOException {
        image.close();
    }
}
