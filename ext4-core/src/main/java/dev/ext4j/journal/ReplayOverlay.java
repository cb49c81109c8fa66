package dev.ext4j.journal;

import dev.ext4j.Ext4Exception;
import dev.ext4j.io.BlockDevice;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.Map;

/**
 * A read-only device that shows the image as recovery would leave it, without writing it: reads
 * of a replayed block come from its copy in the log (read from the journal on demand), every other
 * byte from the image. Used for a read-only mount of a filesystem that needs recovery, as the
 * kernel's norecovery cannot show committed changes and a real replay would change the image.
 */
public final class ReplayOverlay implements BlockDevice {
    private final BlockDevice inner;
    private final Journal journal;
    private final Map<Long, JournalRecovery.LogCopy> blocks;
    private final int blockSize;

    public ReplayOverlay(BlockDevice inner, Journal journal, JournalRecovery.Result result) {
        this.inner = inner;
        this.journal = journal;
        this.blocks = result.blocks();
        this.blockSize = journal.blockSize();
    }

    @Override
    public synchronized void read(long offset, ByteBuffer dst) throws IOException {
        long pos = offset;
        while (dst.hasRemaining()) {
            long block = pos / blockSize;
            int inBlock = (int) (pos % blockSize);
            int n = (int) Math.min(dst.remaining(), blockSize - inBlock);
            JournalRecovery.LogCopy copy = blocks.get(block);
            if (copy != null) {
                try {
                    dst.put(JournalRecovery.contents(journal, copy), inBlock, n);
                } catch (Ext4Exception e) {
                    throw new IOException("replayed block " + block + ": " + e.getMessage(), e);
                }
            } else {
                // the run of blocks up to the next replayed one comes from the image at once
                long end = pos + n;
                while (end - pos < dst.remaining() && !blocks.containsKey(end / blockSize)) {
                    end += Math.min(blockSize, dst.remaining() - (end - pos));
                }
                int len = (int) (end - pos);
                ByteBuffer part = dst.duplicate();
                part.limit(part.position() + len);
                inner.read(pos, part);
                dst.position(dst.position() + len);
                n = len;
            }
            pos += n;
        }
    }

    @Override
    public void write(long offset, ByteBuffer src) throws IOException {
        throw new IOException("the image is open read-only (journal replayed in memory)");
    }

    @Override
    public long size() throws IOException {
        return inner.size();
    }

    @Override
    public void sync() {
    }

    @Override
    public boolean isReadOnly() {
        return true;
    }

    @Override
    public void close() throws IOException {
        inner.close();
    }
}
