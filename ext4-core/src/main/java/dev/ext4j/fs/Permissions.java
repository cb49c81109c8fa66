package dev.ext4j.fs;

import dev.ext4j.Errno;
import dev.ext4j.Ext4Exception;
import dev.ext4j.format.Inode;

/**
 * The permission and capability decisions a FUSE adapter makes itself because the kernel cannot
 * make them on a FUSE inode: may_open()'s immutable and append-only checks, inode_permission() /
 * generic_permission() for access(2), and the capable() / inode_owner_or_capable() checks of the
 * ext4 ioctls (fs/ext4/ioctl.c, fs/ioctl.c). Every adapter calls these, so they answer alike.
 *
 * <p>The caller is the current request's {@link Caller}, as the kernel's checks read {@code
 * current}'s credentials; root stands for every capability (CAP_DAC_OVERRIDE, CAP_FOWNER,
 * CAP_SYS_RESOURCE, CAP_LINUX_IMMUTABLE). Only the caller's primary group is known (FUSE passes no
 * supplementary groups) and POSIX ACLs are not consulted: the mode bits decide. Each check returns
 * normally when allowed and throws {@link Ext4Exception} with the kernel's errno otherwise.
 */
public final class Permissions {
    /** open(2) flags, as in include/uapi/asm-generic/fcntl.h. */
    public static final int O_ACCMODE = 3, O_RDONLY = 0, O_WRONLY = 1, O_RDWR = 2, O_TRUNC = 01000, O_APPEND = 02000;
    /** access(2) mask bits (MAY_READ, MAY_WRITE, MAY_EXEC); 0 is F_OK. */
    public static final int R_OK = 4, W_OK = 2, X_OK = 1;

    private Permissions() {
    }

    /** Whether an open with {@code openFlags} may change the file: opened for writing, or truncating. */
    public static boolean opensForWrite(int openFlags) {
        return (openFlags & O_ACCMODE) != O_RDONLY || (openFlags & O_TRUNC) != 0;
    }

    /**
     * may_open() for an existing inode: EROFS for a write open on a read-only filesystem; EPERM
     * for a write open of an immutable file, and for one of an append-only file that is not
     * O_APPEND or that truncates (IS_APPEND() in may_open() and do_truncate()).
     *
     * @param a         the inode's attributes, {@link FileAttributes#flags()} its inode flags
     * @param openFlags the open(2) flags
     * @param readOnly  whether the filesystem refuses changes
     */
    public static void checkOpen(FileAttributes a, int openFlags, boolean readOnly) throws Ext4Exception {
        if (!opensForWrite(openFlags)) {
            return;
        }
        if (readOnly) {
            throw new Ext4Exception(Errno.EROFS, "inode " + a.ino() + ": the filesystem is read-only");
        }
        if ((a.flags() & Inode.IMMUTABLE_FL) != 0) {
            throw new Ext4Exception(Errno.EPERM, "inode " + a.ino() + " is immutable: no write open");
        }
        if ((a.flags() & Inode.APPEND_FL) != 0) {
            if ((openFlags & O_APPEND) == 0) {
                throw new Ext4Exception(Errno.EPERM, "inode " + a.ino() + " is append-only: a write open needs O_APPEND");
            }
            if ((openFlags & O_TRUNC) != 0) {
                throw new Ext4Exception(Errno.EPERM, "inode " + a.ino() + " is append-only: no O_TRUNC");
            }
        }
    }

    /**
     * access(2): inode_permission() with generic_permission()'s mode-bit check. EROFS when
     * {@code mask} has W_OK and the filesystem is read-only (for every file type; the kernel's
     * sb_permission() spares device files, which ext4j's adapters do not serve anyway). Then the
     * owner's bits apply when the caller owns the inode, else the group's when the caller's group
     * is the inode's, else the others'. Root may read and write anything, search any directory,
     * and execute a non-directory that has at least one execute bit (CAP_DAC_OVERRIDE). EACCES
     * otherwise.
     *
     * @param mask R_OK, W_OK, X_OK or'ed; 0 (F_OK) asks only whether the inode exists
     */
    public static void checkAccess(FileAttributes a, int mask, boolean readOnly) throws Ext4Exception {
        mask &= R_OK | W_OK | X_OK;
        if ((mask & W_OK) != 0 && readOnly) {
            throw new Ext4Exception(Errno.EROFS, "inode " + a.ino() + ": the filesystem is read-only");
        }
        if (mask == 0) {
            return;
        }
        int mode = a.mode();
        if (Caller.isRoot()) {
            boolean dir = (mode & Inode.S_IFMT) == Inode.S_IFDIR;
            if ((mask & X_OK) == 0 || dir || (mode & 0111) != 0) {
                return;
            }
            throw new Ext4Exception(Errno.EACCES, "inode " + a.ino() + ": no execute bit in mode 0" + Integer.toOctalString(mode & 07777));
        }
        String whose;
        int bits;
        if (Caller.uid() == a.uid()) {
            whose = "owner";
            bits = mode >> 6;
        } else if (Caller.gid() == a.gid()) {
            whose = "group";
            bits = mode >> 3;
        } else {
            whose = "other";
            bits = mode;
        }
        if ((mask & ~bits & 7) != 0) {
            throw new Ext4Exception(Errno.EACCES, "inode " + a.ino() + ": mode 0" + Integer.toOctalString(mode & 07777)
                    + " gives " + whose + " (uid " + Caller.uid() + ", gid " + Caller.gid() + ") no " + rwx(mask & ~bits & 7));
        }
    }

    private static String rwx(int bits) {
        return ((bits & R_OK) != 0 ? "r" : "") + ((bits & W_OK) != 0 ? "w" : "") + ((bits & X_OK) != 0 ? "x" : "");
    }

    /**
     * EXT4_IOC_MIGRATE: inode_owner_or_capable() in ext4_ioctl(), EACCES for anyone but the
     * owner and root.
     */
    public static void checkMigrate(FileAttributes a) throws Ext4Exception {
        if (!Caller.isRoot() && Caller.uid() != a.uid()) {
            throw new Ext4Exception(Errno.EACCES, "inode " + a.ino() + ": only its owner (uid " + a.uid() + ") or root may migrate it");
        }
    }

    /**
     * FS_IOC_SETFLAGS and FS_IOC_FSSETXATTR: vfs_fileattr_set()'s inode_owner_or_capable() (EPERM
     * for anyone but the owner and root), then fileattr_set_prepare()'s CAP_LINUX_IMMUTABLE
     * (EPERM when a non-root caller would set or clear the immutable or append-only flag).
     *
     * <p>{@link Ioctl#setFlags} calls it after its read-only check.
     *
     * @param newFlags the inode flags asked for
     */
    public static void checkSetFlags(FileAttributes a, int newFlags) throws Ext4Exception {
        if (!Caller.isRoot() && Caller.uid() != a.uid()) {
            throw new Ext4Exception(Errno.EPERM, "inode " + a.ino() + ": only its owner (uid " + a.uid() + ") or root may change its flags");
        }
        if (((newFlags ^ a.flags()) & (Inode.IMMUTABLE_FL | Inode.APPEND_FL)) != 0 && !Caller.isRoot()) {
            throw new Ext4Exception(Errno.EPERM, "inode " + a.ino() + ": immutable and append-only need CAP_LINUX_IMMUTABLE");
        }
    }

    /**
     * EXT4_IOC_RESIZE_FS, EXT4_IOC_GROUP_EXTEND and EXT4_IOC_GROUP_ADD: ext4_resize_begin()'s
     * capable(CAP_SYS_RESOURCE), EPERM for anyone but root.
     * Only the caller decides, so this takes just the number of the inode the ioctl came on.
     */
    public static void checkResize(long ino) throws Ext4Exception {
        if (!Caller.isRoot()) {
            throw new Ext4Exception(Errno.EPERM, "inode " + ino + ": resizing needs CAP_SYS_RESOURCE (root), not uid " + Caller.uid());
        }
    }
}
