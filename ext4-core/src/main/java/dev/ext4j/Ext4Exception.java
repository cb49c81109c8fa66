package dev.ext4j;

/**
 * The one exception type of ext4-core: an errno and a message that names the object (inode, block,
 * offset) and says what was found against what was expected. The FUSE adapter turns it into
 * {@code -errno} in one place.
 */
public final class Ext4Exception extends Exception {
    private final Errno errno;

    /**
     * No stack trace is captured: ENOENT and ENODATA are answers on hot paths (every negative
     * lookup, the kernel's security.capability probe before each write), and the message already
     * names the object. A cause keeps its own trace.
     */
    public Ext4Exception(Errno errno, String message) {
        this(errno, message, null);
    }

    public Ext4Exception(Errno errno, String message, Throwable cause) {
        super(message, cause, false, false);
        this.errno = errno;
    }

    public Errno errno() {
        return errno;
    }

    /** On-disk structure is inconsistent: EUCLEAN, as the kernel's EFSCORRUPTED. */
    public static Ext4Exception corrupted(String message) {
        return new Ext4Exception(Errno.EUCLEAN, message);
    }

    /** A checksum did not match: EBADMSG, as the kernel's EFSBADCRC. */
    public static Ext4Exception badChecksum(String what, long stored, long computed) {
        return new Ext4Exception(Errno.EBADMSG,
                String.format("%s: stored crc 0x%x, computed 0x%x", what, stored, computed));
    }

    @Override
    public String toString() {
        return errno + ": " + getMessage();
    }
}
