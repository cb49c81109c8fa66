package dev.ext4j.fs;

import dev.ext4j.Errno;
import dev.ext4j.Ext4Exception;
import dev.ext4j.format.Inode;
import dev.ext4j.io.BufferCache;
import java.nio.ByteBuffer;

/**
 * copy_file_range(2) inside the image, as the kernel does it for ext4 (which has no copy_file_range
 * of its own): vfs_copy_file_range()'s checks, then the bytes read and written through the normal
 * paths ({@link FileRead}, {@link FileWrite}) a bounded chunk at a time, so memory stays at one
 * chunk whatever the length.
 *
 * <p>The checks, as generic_copy_file_checks() and rw_verify_area() make them where they concern
 * the inodes: a directory on either side is EISDIR, another non-regular file EINVAL; an immutable
 * target EPERM, an append-only one EBADF (it can only be open with O_APPEND, which
 * copy_file_range refuses); a negative offset EINVAL, one whose end wraps EOVERFLOW; the length
 * is cut at the source's end (0 at or past it) and at the largest file size (EFBIG at or past
 * it); overlapping ranges of one file are EINVAL.
 *
 * <p>Beyond the kernel: a hole of the source copied past the end of the target is not written
 * but left a hole (the target's size still reaches the end of the copy).
 */
final class CopyRange {
    /** Bytes per read and write. */
    private static final int CHUNK = 1 << 20;

    /** What a copy needs from the mounted filesystem. */
    interface Host {
        /** A block account for one operation on {@code ino} (the target's map is opened with it). */
        BlockAccount account(long ino, Inode inode);
    }

    private final SuperState state;
    private final BufferCache cache;
    private final boolean metadataCsum;
    private final InodeTable inodes;
    private final FileRead fileRead;
    private final FileWrite fileWrite;
    private final FileSeek fileSeek;
    private final Retry retry;
    private final Host host;

    CopyRange(SuperState state, BufferCache cache, boolean metadataCsum, InodeTable inodes, FileRead fileRead, FileWrite fileWrite,
              FileSeek fileSeek, Retry retry, Host host) {
        this.state = state;
        this.cache = cache;
        this.metadataCsum = metadataCsum;
        this.inodes = inodes;
        this.fileRead = fileRead;
        this.fileWrite = fileWrite;
        this.fileSeek = fileSeek;
        this.retry = retry;
        this.host = host;
    }

    /** Copies up to {@code len} bytes; returns the count: short at the source's end, 0 at or past it. */
    long copy(long inIno, long inOff, long outIno, long outOff, long len) throws Ext4Exception {
        state.requireWritable();
        long count = check(inIno, inOff, outIno, outOff, len);
        if (count == 0) {
            return 0;
        }
        ByteBuffer buf = ByteBuffer.allocate((int) Math.min(CHUNK, count));
        long done = 0;
        boolean extend = false;
        try {
            while (done < count) {
                long in = inOff + done;
                long out = outOff + done;
                long run = count - done;
                if (inodes.get(outIno).size() <= out) {
                    // past the target's end: the source's holes need no write, its data runs do
                    long data = seekOr(fileSeek, inIno, in, FileSeek.SEEK_DATA, Long.MAX_VALUE);
                    if (data > in) {
                        done += Math.min(run, data - in);
                        extend = true;
                        continue;
                    }
                    run = Math.min(run, seekOr(fileSeek, inIno, in, FileSeek.SEEK_HOLE, Long.MAX_VALUE) - in);
                }
                buf.clear().limit((int) Math.min(buf.capacity(), run));
                int n = fileRead.read(inIno, in, buf);
                if (n <= 0) {
                    break; // the source shrank meanwhile
                }
                buf.flip();
                int w = retry.run(() -> fileWrite.write(outIno, out, buf));
                done += w;
                extend = false;
                if (w < n) {
                    break; // a short write: what was written counts
                }
            }
            if (extend && inodes.get(outIno).size() < outOff + done) {
                fileWrite.truncate(outIno, outOff + done);
            }
        } catch (Ext4Exception e) {
            if (done == 0) {
                throw e;
            }
            // as a splice that stops part way: the bytes copied so far are the answer
        }
        return done;
    }

    /** The byte count to copy, after the checks. */
    private long check(long inIno, long inOff, long outIno, long outOff, long len) throws Ext4Exception {
        Inode in = inodes.get(inIno).inode();
        InodeInfo outInfo = inodes.get(outIno);
        Inode out = outInfo.inode();
        if (in.isDirectory() || out.isDirectory()) {
            throw new Ext4Exception(Errno.EISDIR, "copy_file_range: inode " + (in.isDirectory() ? inIno : outIno) + " is a directory");
        }
        if (!in.isRegular() || !out.isRegular()) {
            throw new Ext4Exception(Errno.EINVAL, "copy_file_range: inode " + (in.isRegular() ? outIno : inIno) + " is not a regular file");
        }
        if (out.hasFlag(Inode.IMMUTABLE_FL)) {
            throw new Ext4Exception(Errno.EPERM, "copy_file_range: inode " + outIno + " is immutable");
        }
        if (out.hasFlag(Inode.APPEND_FL)) {
            throw new Ext4Exception(Errno.EBADF, "copy_file_range: inode " + outIno + " is append-only (open only with O_APPEND)");
        }
        if (inOff < 0 || outOff < 0 || len < 0) {
            throw new Ext4Exception(Errno.EINVAL, "copy_file_range: negative offset or length");
        }
        if (inOff + len < 0 || outOff + len < 0) {
            throw new Ext4Exception(Errno.EOVERFLOW, "copy_file_range: " + len + " bytes from " + inOff + " to " + outOff + " wrap");
        }
        long sizeIn = inodes.get(inIno).size();
        long count = inOff >= sizeIn ? 0 : Math.min(len, sizeIn - inOff);
        long max = maxSize(outIno, outInfo);
        if (outOff >= max) {
            throw new Ext4Exception(Errno.EFBIG, "copy_file_range: offset " + outOff + " is at or past the largest file size " + max);
        }
        count = Math.min(count, max - outOff);
        if (inIno == outIno && outOff + count > inOff && outOff < inOff + count) {
            throw new Ext4Exception(Errno.EINVAL, "copy_file_range: ranges " + inOff + "+" + count + " and " + outOff + "+" + count
                    + " of inode " + inIno + " overlap");
        }
        return count;
    }

    /** The largest size of the target's map; an inline-data target is limited by the write that moves it to blocks. */
    private long maxSize(long ino, InodeInfo info) {
        Inode copy = info.inode().copy();
        if (copy.hasFlag(Inode.INLINE_DATA_FL)) {
            return Long.MAX_VALUE;
        }
        return fileWrite.maxSize(FileMap.of(cache, ino, copy, info.csumSeed(), metadataCsum, host.account(ino, copy)));
    }

    /** SEEK_DATA or SEEK_HOLE in the source, with {@code none} for ENXIO (nothing more before its end). */
    private static long seekOr(FileSeek seek, long ino, long offset, int whence, long none) throws Ext4Exception {
        try {
            return seek.seek(ino, offset, whence);
        } catch (Ext4Exception e) {
            if (e.errno() != Errno.ENXIO) {
                throw e;
            }
            return none;
        }
    }
}
