package dev.ext4j;

/** The Linux errno values ext4j reports. The FUSE adapter returns {@code -errno()}. */
public enum Errno {
    EPERM(1), ENOENT(2), EINTR(4), EIO(5), ENXIO(6), E2BIG(7), EBADF(9), EAGAIN(11), ENOMEM(12), EACCES(13), EBUSY(16),
    EEXIST(17), EXDEV(18), ENOTDIR(20), EISDIR(21), EINVAL(22), ENOTTY(25), EFBIG(27), ENOSPC(28),
    EROFS(30), EMLINK(31), ERANGE(34), ENAMETOOLONG(36), ENOSYS(38), ENOTEMPTY(39), ELOOP(40),
    ENODATA(61), EBADMSG(74), EOVERFLOW(75), EOPNOTSUPP(95), EUCLEAN(117), ENOKEY(126);

    private final int value;

    Errno(int value) {
        this.value = value;
    }

    /** The positive errno number. */
    public int value() {
        return value;
    }
}
