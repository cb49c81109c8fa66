package dev.ext4j.io;

import dev.ext4j.Errno;
import dev.ext4j.Ext4Exception;
import dev.ext4j.LockOrder;
import java.io.EOFException;
import java.io.IOException;
import java.lang.ref.WeakReference;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.locks.ReentrantLock;

/**
 * A bounded cache of metadata blocks (the buffer-head cache): inode table, directory, extent,
 * xattr, bitmap and descriptor blocks. File data does not pass through here.
 *
 * <p>Blocks are handed out as read-only little-endian views. Changes go through {@link #update},
 * which mutates a copy under a per-block lock and then swaps it in, so a reader always sees a
 * whole old or a whole new block and two updaters of one block (two inodes in one inode table
 * block) never lose each other's change.
 *
 * <p>A changed block is dirty: it stays in memory, pinned, until {@link #flush} writes it home
 * (the flusher's timer, sync, unmount, or too many dirty blocks), in block order. File data is
 * written before the metadata that points at it, so a crash never exposes stale blocks. Clean
 * blocks live in an {@link Lru}.
 */
public final class BufferCache {
    private final BlockDevice device;
    private final int blockSize;
    /** Grows with an online resize ({@link #growTo}); volatile so every thread sees the new range. */
    private volatile long blockCount;
    private final Lru<Long, byte[]> blocks;
    private final ConcurrentHashMap<Long, byte[]> dirty = new ConcurrentHashMap<>();
    /** Which contents of a block passed a check, and for whom (the kernel's buffer_verified()). */
    private final Lru<Long, Checked> checked;
    private final long maxDirty;
    private final ReentrantLock[] updateLocks = new ReentrantLock[256];
    /** Writes to the device finished so far ({@link #writesDone}). */
    private final AtomicLong writesDone = new AtomicLong();
    /** The writes a finished force covered: those finished before it began. */
    private final AtomicLong forcedWrites = new AtomicLong();
    /** One {@link #forceUpTo} force at a time, so callers that come meanwhile share the next one. */
    private final ReentrantLock forceLock = new ReentrantLock();
    /** One flush at a time; a writer over the dirty limit waits for it. */
    private final ReentrantLock flushLock = new ReentrantLock();
    /** The journal that logs every change, or null: dirty blocks are then written home by {@link #flush}. */
    private volatile Tracker tracker;

    /**
     * Told of every change and every forgotten block (the jbd2 hooks jbd2_journal_dirty_metadata()
     * and jbd2_journal_forget()/revoke). Called under the block's lock: it must not take locks
     * that wait for other blocks or for handles.
     */
    public interface Tracker {
        /** {@code block}'s new contents are in the cache (see {@link #dirtyCopy}). */
        void dirtied(long block);

        /** {@code block} was freed and dropped from the cache. */
        void forgotten(long block);
    }

    /** A reader's check of a block's bytes, run once per contents by {@link #getChecked}. */
    @FunctionalInterface
    public interface Check {
        /**
         * Throws for contents that cannot be used; returns whether they passed the whole check,
         * false for contents usable this once but to be checked again at the next read.
         */
        boolean verify(ByteBuffer block) throws Ext4Exception;
    }

    /** Contents that passed their owner's {@link Check}; weak, so the memo never keeps a block in memory. */
    private record Checked(WeakReference<byte[]> data, long owner) {
        boolean covers(byte[] contents, long who) {
            return owner == who && data.get() == contents;
        }
    }

    /** Changes a block's bytes in place; the buffer is little-endian, position 0. */
    @FunctionalInterface
    public interface Mutator {
        void apply(ByteBuffer block) throws Ext4Exception;
    }

    /**
     * @param maxBytes bound on the cached bytes
     * @param blockCount blocks in the filesystem; a block at or past it is refused as corrupt
     */
    public BufferCache(BlockDevice device, int blockSize, long blockCount, long maxBytes) {
        this(device, blockSize, blockCount, maxBytes, Math.max(64, maxBytes / blockSize / 2));
    }

    /** @param maxDirty changed blocks kept before the writer that adds one flushes them (0: write through) */
    public BufferCache(BlockDevice device, int blockSize, long blockCount, long maxBytes, long maxDirty) {
        this.device = device;
        this.blockSize = blockSize;
        this.blockCount = blockCount;
        this.blocks = new Lru<>(maxBytes / blockSize);
        this.checked = new Lru<>(maxBytes / blockSize);
        this.maxDirty = maxDirty;
        for (int i = 0; i < updateLocks.length; i++) {
            updateLocks[i] = new ReentrantLock();
        }
    }

    public int blockSize() {
        return blockSize;
    }

    /**
     * Hands every later change to {@code t} (a journal): dirty blocks then leave the cache only
     * through {@link #writeHome}, never through {@link #flush}, and the dirty limit no longer
     * forces a flush (the journal bounds it with its transactions).
     */
    public void setTracker(Tracker t) {
        this.tracker = t;
    }

    /** Changed blocks kept before a flush is forced (without a tracker). */
    public long maxDirty() {
        return maxDirty;
    }

    /**
     * The newest contents of a dirty block, or null when it is not dirty. The array is never
     * changed afterwards (a change replaces it), so it serves as a frozen copy.
     */
    public byte[] dirtyCopy(long block) {
        return dirty.get(block);
    }

    /**
     * Writes {@code contents}, an earlier {@link #dirtyCopy} of {@code block}, home (a journal
     * checkpoint). The block stops being dirty only when no later change replaced that copy.
     */
    public void writeHome(long block, byte[] contents) throws Ext4Exception {
        ReentrantLock lock = lockBlock(block);
        try {
            writeToDevice(block * blockSize, ByteBuffer.wrap(contents));
            if (dirty.remove(block, contents)) {
                blocks.put(block, contents);
            }
        } finally {
            unlockBlock(lock, block);
        }
    }

    /** Accepts blocks up to {@code newBlockCount} (online resize, after the device has grown). */
    public void growTo(long newBlockCount) {
        if (newBlockCount > blockCount) {
            blockCount = newBlockCount;
        }
    }

    /** The block as a read-only little-endian buffer, position 0, limit the block size. */
    public ByteBuffer get(long block) throws Ext4Exception {
        return ByteBuffer.wrap(load(block)).asReadOnlyBuffer().order(ByteOrder.LITTLE_ENDIAN);
    }

    /**
     * The block as {@link #get} gives it, after {@code check} passed on these very contents for
     * {@code owner} (an inode, whose checksum seed the check uses, or an inode and a place in it):
     * a block read again from the device, or changed, is checked anew; unchanged contents are
     * checked once, as the kernel checks an extent or directory block once per read
     * (buffer_verified()).
     */
    public ByteBuffer getChecked(long block, long owner, Check check) throws Ext4Exception {
        byte[] data = load(block);
        ByteBuffer view = ByteBuffer.wrap(data).asReadOnlyBuffer().order(ByteOrder.LITTLE_ENDIAN);
        Checked c = checked.get(block);
        if ((c == null || !c.covers(data, owner)) && check.verify(view.duplicate().order(ByteOrder.LITTLE_ENDIAN))) {
            checked.put(block, new Checked(new WeakReference<>(data), owner));
        }
        return view;
    }

    /**
     * A miss reads the device under the block's lock, so that a read racing with a change, a
     * flush or a {@link #forget} can never put back contents older than what those left: a stale
     * copy of a freed block would otherwise become the starting point of its next owner's change.
     */
    private byte[] load(long block) throws Ext4Exception {
        checkRange(block);
        byte[] data = cached(block);
        if (data != null) {
            return data;
        }
        ReentrantLock lock = lockBlock(block);
        try {
            data = cached(block);
            if (data == null) {
                data = new byte[blockSize];
                readFromDevice(block, ByteBuffer.wrap(data));
                blocks.put(block, data);
            }
            return data;
        } finally {
            unlockBlock(lock, block);
        }
    }

    private byte[] cached(long block) {
        byte[] data = dirty.get(block);
        return data != null ? data : blocks.get(block);
    }

    private void checkRange(long block) throws Ext4Exception {
        if (block < 0 || block >= blockCount) {
            throw Ext4Exception.corrupted("block " + block + " is outside the filesystem (0.."
                    + (blockCount - 1) + ")");
        }
    }

    /** Applies {@code m} to a copy of the block and keeps the copy as the block's dirty contents. */
    public void update(long block, Mutator m) throws Ext4Exception {
        change(block, false, m);
    }

    /** Like {@link #update} for a block just allocated: starts from zeros instead of reading it. */
    public void create(long block, Mutator m) throws Ext4Exception {
        change(block, true, m);
    }

    /**
     * {@link #update} or {@link #create} with a mutator that leaves the block as {@code owner}'s
     * {@link Check} wants it (it wrote a whole valid node and its checksum): the new contents
     * count as checked.
     */
    public void changeChecked(long block, long owner, boolean fresh, Mutator m) throws Ext4Exception {
        byte[] data = change(block, fresh, m);
        checked.put(block, new Checked(new WeakReference<>(data), owner));
    }

    private byte[] change(long block, boolean fresh, Mutator m) throws Ext4Exception {
        checkRange(block);
        ReentrantLock lock = lockBlock(block);
        byte[] copy;
        try {
            copy = fresh ? new byte[blockSize] : Arrays.copyOf(load(block), blockSize); // not clone(): C1 makes that a call into the VM
            m.apply(ByteBuffer.wrap(copy).order(ByteOrder.LITTLE_ENDIAN));
            if (device.isReadOnly()) {
                throw new Ext4Exception(Errno.EROFS, "block " + block + ": the image is open read-only");
            }
            dirty.put(block, copy);
            blocks.remove(block);
            Tracker t = tracker;
            if (t != null) {
                t.dirtied(block);
                return copy;
            }
        } finally {
            unlockBlock(lock, block);
        }
        if (dirty.size() > maxDirty) {
            flush();
        }
        return copy;
    }

    private ReentrantLock lockOf(long block) {
        return updateLocks[(int) (block & (updateLocks.length - 1))];
    }

    /** Takes the lock of {@code block} (shared with other blocks: the locks are striped). */
    private ReentrantLock lockBlock(long block) {
        if (LockOrder.ENABLED) {
            LockOrder.acquire(LockOrder.Level.BLOCK, block);
        }
        ReentrantLock lock = lockOf(block);
        lock.lock();
        return lock;
    }

    private static void unlockBlock(ReentrantLock lock, long block) {
        lock.unlock();
        if (LockOrder.ENABLED) {
            LockOrder.release(LockOrder.Level.BLOCK, block);
        }
    }

    /**
     * Drops a block from the cache, dirty or not: it was freed, and may be reused as file data
     * that a later flush must not overwrite.
     */
    public void forget(long block) {
        ReentrantLock lock = lockBlock(block);
        try {
            dirty.remove(block);
            blocks.remove(block);
            checked.remove(block);
            Tracker t = tracker;
            if (t != null) {
                t.forgotten(block);
            }
        } finally {
            unlockBlock(lock, block);
        }
    }

    /** Changed metadata blocks not yet written home. */
    public int dirtyBlocks() {
        return dirty.size();
    }

    /**
     * Writes every dirty block home in block order. A block that fails to write stays dirty and the
     * first failure is thrown after the others were tried; a block changed again while this runs is
     * written by the next flush.
     */
    public void flush() throws Ext4Exception {
        if (tracker != null) {
            throw new IllegalStateException("a journaled cache writes blocks home only by checkpoint");
        }
        if (LockOrder.ENABLED) {
            LockOrder.acquire(LockOrder.Level.FLUSH, -1);
        }
        flushLock.lock();
        try {
            List<Long> order = new ArrayList<>(dirty.keySet());
            order.sort(null);
            Ext4Exception failure = null;
            for (long block : order) {
                ReentrantLock lock = lockBlock(block);
                try {
                    byte[] data = dirty.get(block);
                    if (data == null) {
                        continue; // forgotten meanwhile
                    }
                    writeToDevice(block * blockSize, ByteBuffer.wrap(data));
                    dirty.remove(block);
                    blocks.put(block, data);
                } catch (Ext4Exception e) {
                    if (failure == null) {
                        failure = e;
                    }
                } finally {
                    unlockBlock(lock, block);
                }
            }
            if (failure != null) {
                throw failure;
            }
        } finally {
            flushLock.unlock();
            if (LockOrder.ENABLED) {
                LockOrder.release(LockOrder.Level.FLUSH, -1);
            }
        }
    }

    /** Writes file data straight to the image, {@code offsetInBlock} bytes into {@code block}. */
    public void writeDirect(long block, int offsetInBlock, ByteBuffer src) throws Ext4Exception {
        long n = (offsetInBlock + src.remaining() + blockSize - 1) / blockSize;
        if (block <= 0 || block + n > blockCount) {
            throw Ext4Exception.corrupted("write to blocks " + block + ".." + (block + n - 1)
                    + " outside the filesystem (1.." + (blockCount - 1) + ")");
        }
        writeToDevice(block * blockSize + offsetInBlock, src);
    }

    /** Writes bytes at an absolute image offset (superblock, descriptor table). */
    public void writeRaw(long offset, ByteBuffer src) throws Ext4Exception {
        writeToDevice(offset, src);
    }

    /** Writes the dirty blocks and makes every write so far durable. */
    public void sync() throws Ext4Exception {
        flush();
        force();
    }

    /** Makes every write so far durable. */
    public void force() throws Ext4Exception {
        long upTo = writesDone.get();
        try {
            device.sync();
        } catch (IOException e) {
            throw new Ext4Exception(Errno.EIO, "syncing the image failed: " + e.getMessage(), e);
        }
        forced(upTo);
    }

    /**
     * Writes through this cache (file data, blocks going home) finished so far: a caller that reads
     * this and later calls {@link #forceUpTo} with it has those writes durable.
     */
    public long writesDone() {
        return writesDone.get();
    }

    /** The first {@code writes} writes are durable: a force (a journal commit's) that began after them has finished. */
    public void forced(long writes) {
        forcedWrites.accumulateAndGet(writes, Math::max);
    }

    /**
     * Makes the first {@code writes} writes ({@link #writesDone}) durable, with a force only when
     * none that began after them has finished: fsyncs that come together share one (the group
     * flush of jbd2's commits).
     */
    public void forceUpTo(long writes) throws Ext4Exception {
        if (forcedWrites.get() >= writes) {
            return;
        }
        forceLock.lock();
        try {
            if (forcedWrites.get() < writes) {
                force();
            }
        } finally {
            forceLock.unlock();
        }
    }

    private void writeToDevice(long offset, ByteBuffer src) throws Ext4Exception {
        try {
            device.write(offset, src);
            writesDone.incrementAndGet();
        } catch (IOException e) {
            throw new Ext4Exception(Errno.EIO, "write at byte " + offset + " failed: " + e.getMessage(), e);
        }
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
