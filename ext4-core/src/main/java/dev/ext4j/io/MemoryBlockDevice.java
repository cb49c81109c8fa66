package dev.ext4j.io;

import java.io.EOFException;
import java.nio.ByteBuffer;

/** An image held in memory, for tests that craft or damage structures byte by byte. */
public final class MemoryBlockDevice implements BlockDevice {
    private byte[] data;
    private final boolean readOnly;

    public MemoryBlockDevice(byte[] data, boolean readOnly) {
        this.data = data;
        this.readOnly = readOnly;
    }

    @Override
    public synchronized void read(long offset, ByteBuffer dst) throws EOFException {
        if (offset < 0 || offset + dst.remaining() > data.length) {
            throw new EOFException("read at byte " + offset + " is past the end of the image ("
                    + data.length + " bytes)");
        }
        dst.put(data, (int) offset, dst.remaining());
    }

    @Override
    public synchronized void write(long offset, ByteBuffer src) throws EOFException {
        if (readOnly) {
            throw new IllegalStateException("memory device is read-only");
        }
        if (offset < 0 || offset + src.remaining() > data.length) {
            throw new EOFException("write at byte " + offset + " is past the end of the image");
        }
        src.get(data, (int) offset, src.remaining());
    }

    @Override
    public synchronized long size() {
        return data.length;
    }

    /** Grows the array (up to 2 GiB) when the device is writable. */
    @Override
    public synchronized void grow(long newSize) throws java.io.IOException {
        if (readOnly || newSize > Integer.MAX_VALUE - 8) {
            throw new java.io.IOException("memory device cannot grow to " + newSize + " bytes" + (readOnly ? ": read-only" : ""));
        }
        if (newSize > data.length) {
            data = java.util.Arrays.copyOf(data, (int) newSize);
        }
    }

    @Override
    public void sync() {
    }

    @Override
    public boolean isReadOnly() {
        return readOnly;
    }

    @Override
    public void close() {
    }
}
