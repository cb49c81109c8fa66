package dev.ext4j.io;

import java.io.IOException;
import java.nio.ByteBuffer;

/**
 * Read-around for small reads of the image (the role of the kernel's readahead and
 * inode_readahead_blks): the first small read in an aligned chunk reads the whole chunk, so the
 * host's page cache holds its neighbours (the next inode table block, the next small file's data)
 * and later reads there cost a memory copy instead of a disk seek. A bounded set remembers which
 * chunks were pulled; forgetting one only costs another chunk read.
 */
public final class ReadAroundDevice extends ForwardingDevice {
    static final int CHUNK = 128 * 1024;

    private final Lru<Long, Boolean> pulled;
    private final ThreadLocal<ByteBuffer> scratch = ThreadLocal.withInitial(() -> ByteBuffer.allocateDirect(2 * CHUNK));

    /** @param trackedBytes how much of the image the set of pulled chunks covers */
    public ReadAroundDevice(BlockDevice inner, long trackedBytes) {
        super(inner);
        this.pulled = new Lru<>(trackedBytes / CHUNK);
    }

    @Override
    public void read(long offset, ByteBuffer dst) throws IOException {
        int len = dst.remaining();
        long chunk = offset / CHUNK;
        if (len >= CHUNK || pulled.get(chunk) != null) {
            inner.read(offset, dst);
            return;
        }
        long start = chunk * CHUNK;
        long end = Math.min(inner.size(), ((offset + len + CHUNK - 1) / CHUNK) * CHUNK);
        if (end < offset + len) {
            inner.read(offset, dst); // past the end: let the device report it
            return;
        }
        ByteBuffer buf = scratch.get().clear().limit((int) (end - start));
        inner.read(start, buf);
        for (long c = chunk; c * CHUNK < end; c++) {
            pulled.put(c, Boolean.TRUE);
        }
        dst.put(buf.position((int) (offset - start)).limit((int) (offset - start) + len));
    }

    @Override
    public String toString() {
        return inner.toString();
    }
}
