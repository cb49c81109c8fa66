package dev.ext4j.testutil;

import dev.ext4j.io.BlockDevice;
import java.io.IOException;
import java.nio.ByteBuffer;

/**
 * A device that passes everything to another (grow() excepted: it keeps the interface's default,
 * a device that cannot grow), for tests to override the one call they inject a fault into or
 * record.
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
    public void close() throws IOException {
        inner.close();
    }
}
