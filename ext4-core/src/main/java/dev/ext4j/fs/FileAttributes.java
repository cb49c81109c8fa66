package dev.ext4j.fs;

/**
 * What stat(2) reports for an inode. Times are seconds since the epoch plus nanoseconds; sizes in
 * bytes; {@code blocks512} in 512-byte units; {@code rdevMajor}/{@code rdevMinor} for device files.
 */
public record FileAttributes(long ino, int mode, long nlink, long uid, long gid, long size, long blocks512,
                             long atimeSeconds, int atimeNanos, long mtimeSeconds, int mtimeNanos,
                             long ctimeSeconds, int ctimeNanos, long crtimeSeconds, int crtimeNanos,
                             int rdevMajor, int rdevMinor, int flags, int blockSize) {
}
