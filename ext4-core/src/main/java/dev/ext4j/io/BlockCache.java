package dev.ext4j.io;

import dev.ext4j.Errno;
import dev.ext4j.Ext4Exception;
import java.io.EOFException;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/**
 * A bounded cache of metadata blocks (the buffer-head cache): inode table, directory, extent,
 * xattr and descriptor blocks, in a {@link Lru}. File data does not pass through here.
 *
 * <p>Blocks are handed out as read-only little-endian views; callers never see a torn block.
 */
public final class BlockCache {
    private final BlockDevice device;
    private final int blockSize;
    private final long blockCount;
    private final Lru<Long, byte[]> blocks;

    /**
     * @param maxBytes bound on the cached bytes
     * @param blockCount blocks in the filesystem; a block at or past it is refused as corrupt
     */
    public BlockCache(BlockDevice device, int blockSize, long blockCount, long maxBytes) {
        this.device = device;
        this.blockSize = blockSize;
        this.blockCount = blockCount;
        this.blocks = new Lru<>(maxBytes / blockSize);
    }

    public int blockSize() {
        return blockSize;
    }

    /** The block as a read-only little-endian buffer, position 0, limit the block size. */
    public ByteBuffer get(long block) throws Ext4Exception {
        if (block < 0 || block >= blockCount) {
            throw Ext4Exception.corrupted("block " + block + " is outside the filesystem (0.."
                    + (blockCount - 1) + ")");
        }
        byte[] data = blocks.get(block);
        if (data == null) {
            data = new byte[blockSize];
            readFromDevice(block, ByteBuffer.wrap(data));
            blocks.put(block, data);
        }
        return ByteBuffer.wrap(data).asReadOnlyBuffer().order(ByteOrder.LITTLE_ENDIAN);
    }

    /**
     * Reads {@code dst.remaining()} bytes starting {@code offsetInBlock} bytes into {@code block},
     * bypassing the cache (file data).
     */
    public void readDirect(long block, int offsetInBlock, ByteBuffer dst) throws Ext4Exception {
        long n = (offsetInBlock + dst.remaining() + blockSize - 1) / blockSize;
        if (block <= 0 || block + n > blockCount) {
            throw Ext4Exception.corrupted("blocks " + block + ".." + (block + n - 1)
                    + " are outside the filesystem (1.." + (blockCount - 1) + ")");
        }
        try {
            device.read(block * blockSize + offsetInBlock, dst);
        } catch (IOException e) {
            throw new Ext4Exception(Errno.EIO, "block " + block + ": read failed: " + e.getMessage(), e);
        }
    }

    private void readFromDevice(long block, ByteBuffer dst) throws Ext4Exception {
        try {
            device.read(block * blockSize, dst);
        } catch (EOFException e) {
            throw new Ext4Exception(Errno.EIO, "block " + block + ": " + e.getMessage(), e);
        } catch (IOException e) {
            throw new Ext4Exception(Errno.EIO, "block " + block + ": read failed: " + e, e);
        }
    }
}
