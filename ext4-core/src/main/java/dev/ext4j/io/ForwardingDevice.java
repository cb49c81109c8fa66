package dev.ext4j.io;

import java.io.IOException;
import java.nio.ByteBuffer;

/**
 * A device that passes everything to another, for a layer (or a test) to override the one call it
 * changes: the MMP fence refuses writes, tests inject faults or record.
 */
public abstract class ForwardingDevice implements BlockDevice {
    protected final BlockDevice inner;

    protected ForwardingDevice(BlockDevice inner) {
        this.inner = inner;
    }

    @Override
    public void read(long offset, ByteBuffer dst) throws IOException {
        inner.read(offset, dst);
    }

    @Override
    public void write(long offset, ByteBuffer src) throws IOException {
        inner.write(offset, src);
    }

    @Override
    public long size() throws IOException {
        return inner.size();
    }

    @Override
    public void sync() throws IOException {
        inner.sync();
    }

    @Override
    public boolean isReadOnly() {
        return inner.isReadOnly();
    }

    @Override
    public long capacity() throws IOException {
        return inner.capacity();
    }

    @Override
    public void grow(long newSize) throws IOException {
        inner.grow(newSize);
    }

    @Override
    public void close() throws IOException {
        inner.close();
    }
}
