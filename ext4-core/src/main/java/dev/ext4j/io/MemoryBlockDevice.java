package dev.ext4j.io;

import java.io.EOFException;
import java.nio.ByteBuffer;

/** An image held in memory, for tests that craft or damage structures byte by byte. */
public final class MemoryBlockDevice implements BlockDevice {
    private final byte[] data;
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
    public long size() {
        return data.length;
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
