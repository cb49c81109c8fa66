package dev.ext4j.fs;

/**
 * What stat(2) reports for an inode. Times are seconds since the epoch plus nanoseconds; sizes in
 * bytes; {@code blocks512} in 512-byte units; {@code rdevMajor}/{@code rdevMinor} for device files;
 * {@code generation} is i_generation (with the inode number, what names one inode's life for NFS
 * and FUSE's {@code fuse_entry_param.generation}).
 */
public record FileAttributes(long ino, int mode, long nlink, long uid, long gid, long size, long blocks512,
                             long atimeSeconds, int atimeNanos, long mtimeSeconds, int mtimeNanos,
                             long ctimeSeconds, int ctimeNanos, long crtimeSeconds, int crtimeNanos,
                             int rdevMajor, int rdevMinor, int flags, int blockSize, long generation) {
}
