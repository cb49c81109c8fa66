package dev.ext4j.fs;

import dev.ext4j.Errno;
import dev.ext4j.Ext4Exception;
import dev.ext4j.format.Inode;
import dev.ext4j.xattr.Acl;
import dev.ext4j.xattr.XattrNames;

/**
 * The permission and capability decisions a FUSE adapter makes itself because the kernel cannot
 * make them on a FUSE inode: may_open()'s immutable and append-only checks, inode_permission() /
 * generic_permission() for access(2), and the capable() / inode_owner_or_capable() checks of the
 * ext4 ioctls (fs/ext4/ioctl.c, fs/ioctl.c). Every adapter calls these, so they answer alike.
 *
 * <p>On a mount where the kernel cannot check ACLs (libfuse 2 has no FUSE_POSIX_ACL) the adapter
 * checks everything itself, as the VFS does for ext4: {@link #checkPermission}
 * (generic_permission() with posix_acl_permission()), {@link #checkMayOpen} (may_open()),
 * {@link #checkCreate} and {@link #checkDelete} (may_create(), may_delete() with the sticky bit),
 * {@link #checkLinkSource} (may_linkat()),
 * {@link #checkChmod}, {@link #checkChown} and {@link #checkTimes} (setattr_prepare(),
 * may_setattr()) and {@link #checkXattr} (xattr_permission(), set_posix_acl()).
 *
 * <p>The caller is the current request's {@link Caller}, as the kernel's checks read {@code
 * current}'s credentials; root stands for every capability (CAP_DAC_OVERRIDE,
 * CAP_DAC_READ_SEARCH, CAP_FOWNER, CAP_CHOWN, CAP_FSETID, CAP_SYS_RESOURCE, CAP_LINUX_IMMUTABLE).
 * Groups are {@link Caller#inGroup}'s. An access ACL is read only when a check needs it
 * ({@link AclSource}). Each check returns normally when allowed and throws {@link Ext4Exception}
 * with the kernel's errno otherwise.
 */
public final class Permissions {
    /** open(2) flags, as in include/uapi/asm-generic/fcntl.h. */
    public static final int O_ACCMODE = 3, O_RDONLY = 0, O_WRONLY = 1, O_RDWR = 2, O_TRUNC = 01000, O_APPEND = 02000;
    /** access(2) mask bits (MAY_READ, MAY_WRITE, MAY_EXEC); 0 is F_OK. */
    public static final int R_OK = 4, W_OK = 2, X_OK = 1;
    /**
     * __FMODE_EXEC: set in the open flags of execve()'s open of the program (open_exec()), which
     * FUSE passes on; such an open needs execute permission, not read.
     */
    public static final int FMODE_EXEC = 040;
    private static final int S_ISUID = 04000, S_ISGID = 02000, S_ISVTX = 01000;

    /** An inode's access ACL in the VFS xattr format, null for none; read only when a check needs it. */
    @FunctionalInterface
    public interface AclSource {
        /** An inode without an access ACL. */
        AclSource NONE = () -> null;

        byte[] read() throws Ext4Exception;

        /** The access ACL of inode {@code ino} of {@code fs}. */
        static AclSource of(Ext4FileSystem fs, long ino) {
            return () -> fs.findXattr(ino, XattrNames.ACL_ACCESS);
        }
    }

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
     * access(2): {@link #checkPermission} without an ACL, for the adapters whose kernel checks
     * ACLs itself or whose callers are all root.
     *
     * @param mask R_OK, W_OK, X_OK or'ed; 0 (F_OK) asks only whether the inode exists
     */
    public static void checkAccess(FileAttributes a, int mask, boolean readOnly) throws Ext4Exception {
        checkPermission(a, AclSource.NONE, mask, readOnly);
    }

    /**
     * inode_permission(): for W_OK, EROFS on a read-only filesystem (for every file type; the
     * kernel's sb_permission() spares device files, which ext4j's adapters do not serve anyway)
     * and EPERM for an immutable inode; then generic_permission(). The owner's bits apply when the
     * caller owns the inode; else, when the group bits are not all clear and the inode has an
     * access ACL, posix_acl_permission() decides (named users, then the owning and named groups,
     * each limited by the mask, then other); else the group's bits when the caller is in the
     * inode's group, else the others'. Root may read and write anything, search any directory,
     * and execute a non-directory that has at least one execute bit (CAP_DAC_OVERRIDE). EACCES
     * otherwise.
     *
     * @param mask R_OK, W_OK, X_OK or'ed (MAY_READ, MAY_WRITE, MAY_EXEC); 0 passes
     */
    public static void checkPermission(FileAttributes a, AclSource acl, int mask, boolean readOnly) throws Ext4Exception {
        mask &= R_OK | W_OK | X_OK;
        if ((mask & W_OK) != 0) {
            if (readOnly) {
                throw new Ext4Exception(Errno.EROFS, "inode " + a.ino() + ": the filesystem is read-only");
            }
            if ((a.flags() & Inode.IMMUTABLE_FL) != 0) {
                throw new Ext4Exception(Errno.EPERM, "inode " + a.ino() + " is immutable: no write");
            }
        }
        if (mask == 0) {
            return;
        }
        int mode = a.mode();
        if (Caller.isRoot()) {
            // what root may do is a superset of what the mode and ACL give anyone: no need to read the ACL
            boolean dir = (mode & Inode.S_IFMT) == Inode.S_IFDIR;
            if ((mask & X_OK) == 0 || dir || (mode & 0111) != 0) {
                return;
            }
            throw new Ext4Exception(Errno.EACCES, "inode " + a.ino() + ": no execute bit in mode 0" + Integer.toOctalString(mode & 07777));
        }
        String denied = denied(a, acl, mask);
        if (denied != null) {
            throw new Ext4Exception(Errno.EACCES, "inode " + a.ino() + ": " + denied);
        }
    }

    /**
     * acl_permission_check(): null when the caller's class (owner, the ACL's entries, group,
     * other) has every bit of {@code mask}, else what refused, for the message.
     */
    private static String denied(FileAttributes a, AclSource acl, int mask) throws Ext4Exception {
        int mode = a.mode();
        String who = " (uid " + Caller.uid() + ", gid " + Caller.gid() + ") no ";
        if (Caller.uid() == a.uid()) {
            return modeDenies(mode, mode >> 6, mask, "owner" + who);
        }
        if ((mode & 070) != 0) {
            byte[] entries = acl.read();
            if (entries != null) {
                boolean ok = Acl.permits(entries, a.uid(), a.gid(), Caller.uid(), Caller::inGroup, mask);
                return ok ? null : "the access ACL gives" + who + rwx(mask);
            }
        }
        // the group's bits only when they differ from the others' in a bit asked for
        if ((mask & (mode ^ (mode >> 3))) != 0 && Caller.inGroup(a.gid())) {
            return modeDenies(mode, mode >> 3, mask, "group" + who);
        }
        return modeDenies(mode, mode, mask, "other" + who);
    }

    private static String modeDenies(int mode, int bits, int mask, String who) {
        int missing = mask & ~bits & 7;
        return missing == 0 ? null : "mode 0" + Integer.toOctalString(mode & 07777) + " gives " + who + rwx(missing);
    }

    /** Whether the caller owns the inode or is root: inode_owner_or_capable(). */
    private static boolean ownerOrRoot(FileAttributes a) {
        return Caller.uid() == a.uid() || Caller.isRoot();
    }

    /** The access an open with {@code openFlags} asks for (build_open_flags()' acc_mode). */
    static int openMask(int openFlags) {
        if ((openFlags & FMODE_EXEC) != 0) {
            return X_OK;
        }
        int mask = switch (openFlags & O_ACCMODE) {
            case O_RDONLY -> R_OK;
            case O_WRONLY -> W_OK;
            default -> R_OK | W_OK;
        };
        return (openFlags & O_TRUNC) != 0 ? mask | W_OK : mask;
    }

    /**
     * may_open() for an existing inode, with the permission check: {@link #checkPermission} for
     * what the flags ask (read, write, both; write also for O_TRUNC; execute for execve()'s
     * open), then {@link #checkOpen}'s append-only rules.
     */
    public static void checkMayOpen(FileAttributes a, AclSource acl, int openFlags, boolean readOnly) throws Ext4Exception {
        checkPermission(a, acl, openMask(openFlags), readOnly);
        checkOpen(a, openFlags, readOnly);
    }

    /** may_create(): write and search permission on the directory {@code dir}. */
    public static void checkCreate(FileAttributes dir, AclSource dirAcl, boolean readOnly) throws Ext4Exception {
        checkPermission(dir, dirAcl, W_OK | X_OK, readOnly);
    }

    /**
     * may_delete(): write and search permission on {@code dir}; EPERM when {@code dir} is
     * append-only, when it is sticky and the caller owns neither it nor {@code victim} and is not
     * root (check_sticky()), and when {@code victim} is append-only or immutable.
     */
    public static void checkDelete(FileAttributes dir, AclSource dirAcl, FileAttributes victim, boolean readOnly) throws Ext4Exception {
        checkPermission(dir, dirAcl, W_OK | X_OK, readOnly);
        if ((dir.flags() & Inode.APPEND_FL) != 0) {
            throw new Ext4Exception(Errno.EPERM, "inode " + dir.ino() + " is an append-only directory: nothing leaves it");
        }
        if ((dir.mode() & S_ISVTX) != 0 && Caller.uid() != victim.uid() && !ownerOrRoot(dir)) {
            throw new Ext4Exception(Errno.EPERM, "inode " + dir.ino() + " is sticky: only the owner of inode " + victim.ino()
                    + " (uid " + victim.uid() + ") or of the directory may remove it");
        }
        if ((victim.flags() & (Inode.APPEND_FL | Inode.IMMUTABLE_FL)) != 0) {
            throw new Ext4Exception(Errno.EPERM, "inode " + victim.ino() + " is immutable or append-only: it cannot be removed");
        }
    }

    /**
     * should_remove_suid(): the bits a change of owner or of data (by a caller without
     * CAP_FSETID) clears from a regular file's {@code mode}: setuid always, setgid only with group
     * execute (without it, setgid marks mandatory locking and stays).
     */
    public static int setidToDrop(int mode) {
        return (mode & S_ISUID) | ((mode & (S_ISGID | 010)) == (S_ISGID | 010) ? S_ISGID : 0);
    }

    /**
     * may_linkat() with fs.protected_hardlinks set: anyone but the owner and root may link only a
     * regular file that is neither setuid nor setgid-executable and that they may read and write;
     * EPERM otherwise.
     */
    public static void checkLinkSource(FileAttributes a, AclSource acl) throws Ext4Exception {
        int mode = a.mode();
        if (ownerOrRoot(a)) {
            return;
        }
        boolean safe = (mode & Inode.S_IFMT) == Inode.S_IFREG && setidToDrop(mode) == 0;
        if (safe) {
            try {
                checkPermission(a, acl, R_OK | W_OK, false);
            } catch (Ext4Exception e) {
                safe = false;
            }
        }
        if (!safe) {
            throw new Ext4Exception(Errno.EPERM, "inode " + a.ino() + ": protected_hardlinks: uid " + Caller.uid()
                    + " may link only a plain file it may read and write");
        }
    }

    /**
     * setattr_prepare() for a chmod: EPERM for anyone but the owner and root. Returns the mode to
     * set: without setgid when the caller is neither in the inode's group nor root.
     */
    public static int checkChmod(FileAttributes a, int mode) throws Ext4Exception {
        if (!ownerOrRoot(a)) {
            throw new Ext4Exception(Errno.EPERM, "inode " + a.ino() + ": only its owner (uid " + a.uid() + ") or root may chmod it");
        }
        return Caller.isRoot() || Caller.inGroup(a.gid()) ? mode : mode & ~S_ISGID;
    }

    /**
     * setattr_prepare()'s chown_ok() and chgrp_ok(): root may give any owner and group; the owner
     * may keep the owner and give a group they are in (or the one it has). EPERM otherwise.
     *
     * @param uid the new owner, null to keep it
     * @param gid the new group, null to keep it
     */
    public static void checkChown(FileAttributes a, Long uid, Long gid) throws Ext4Exception {
        if (Caller.isRoot()) {
            return;
        }
        boolean owner = Caller.uid() == a.uid();
        if (uid != null && !(owner && uid == a.uid())) {
            throw new Ext4Exception(Errno.EPERM, "inode " + a.ino() + ": only root may give it to uid " + uid);
        }
        if (gid != null && !(owner && (gid == a.gid() || Caller.inGroup(gid)))) {
            throw new Ext4Exception(Errno.EPERM, "inode " + a.ino() + ": uid " + Caller.uid() + " may not give it to group " + gid);
        }
    }

    /**
     * utimensat(2): setting both times to now (ATTR_TOUCH, may_setattr()) needs ownership, root,
     * or write permission; any other change of times (ATTR_TIMES_SET, setattr_prepare()) ownership
     * or root, else EPERM.
     */
    public static void checkTimes(FileAttributes a, AclSource acl, boolean bothNow, boolean readOnly) throws Ext4Exception {
        if (ownerOrRoot(a)) {
            return;
        }
        if (!bothNow) {
            throw new Ext4Exception(Errno.EPERM, "inode " + a.ino() + ": only its owner (uid " + a.uid() + ") or root may set its times");
        }
        checkPermission(a, acl, W_OK, readOnly);
    }

    /**
     * xattr_permission() with the namespaces' own rules: a change of an immutable or append-only
     * inode is EPERM; system.posix_acl_* may be changed by the owner and root only (EPERM,
     * set_posix_acl()) and read by anyone; security.* changed by root only (EPERM, the capability
     * module) and read by anyone; trusted.* is root's (EPERM to change, ENODATA to read); user.*
     * only on regular files and directories (EPERM to change, ENODATA to read), changed on a
     * sticky directory by its owner and root only (EPERM); then user.* and unknown namespaces need
     * read or write permission ({@link #checkPermission}).
     *
     * @param write a set or remove, not a get
     */
    public static void checkXattr(FileAttributes a, AclSource acl, String name, boolean write, boolean readOnly) throws Ext4Exception {
        if (write && (a.flags() & (Inode.IMMUTABLE_FL | Inode.APPEND_FL)) != 0) {
            throw new Ext4Exception(Errno.EPERM, "inode " + a.ino() + " is immutable or append-only: no xattr changes");
        }
        if (name.startsWith("system.")) {
            if (write && name.startsWith("system.posix_acl_") && !ownerOrRoot(a)) {
                throw new Ext4Exception(Errno.EPERM, "inode " + a.ino() + ": only its owner (uid " + a.uid() + ") or root may change its ACLs");
            }
            return;
        }
        if (name.startsWith("security.")) {
            if (write && !Caller.isRoot()) {
                throw new Ext4Exception(Errno.EPERM, "inode " + a.ino() + ": security.* attributes are root's to change");
            }
            return;
        }
        if (name.startsWith("trusted.")) {
            if (!Caller.isRoot()) {
                throw new Ext4Exception(write ? Errno.EPERM : Errno.ENODATA, "inode " + a.ino() + ": trusted.* attributes are root's");
            }
            return;
        }
        if (name.startsWith("user.")) {
            int type = a.mode() & Inode.S_IFMT;
            if (type != Inode.S_IFREG && type != Inode.S_IFDIR) {
                throw new Ext4Exception(write ? Errno.EPERM : Errno.ENODATA, "inode " + a.ino() + ": user.* attributes are for files and directories");
            }
            if (write && type == Inode.S_IFDIR && (a.mode() & S_ISVTX) != 0 && !ownerOrRoot(a)) {
                throw new Ext4Exception(Errno.EPERM, "inode " + a.ino() + " is sticky: only its owner or root may change its user.* attributes");
            }
        }
        checkPermission(a, acl, write ? W_OK : R_OK, readOnly);
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
