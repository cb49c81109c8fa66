package dev.ext4j.fs;

import dev.ext4j.format.Inode;

/**
 * The inode flags seen and set through FS_IOC_GETFLAGS / FS_IOC_SETFLAGS (lsattr, chattr): the
 * kernel's EXT4_FL_USER_VISIBLE and EXT4_FL_USER_MODIFIABLE (fs/ext4/ext4.h). The FS_*_FL values of
 * include/uapi/linux/fs.h are the ext4 bits, so no translation is needed.
 */
final class InodeFlags {
    /** EXT4_FL_USER_VISIBLE (with EXT4_DAX_FL, since Linux 5.8). */
    static final int USER_VISIBLE = 0x725BDFFF;
    /** EXT4_FL_USER_MODIFIABLE (with EXT4_DAX_FL). */
    static final int USER_MODIFIABLE = 0x624BC0FF;
    /** EXT4_FL_INHERITED: what a new inode takes from its directory's flags. */
    static final int INHERITED = Inode.SECRM_FL | Inode.UNRM_FL | Inode.COMPR_FL | Inode.SYNC_FL | Inode.NODUMP_FL
            | Inode.NOATIME_FL | 0x400 /* NOCOMPR */ | Inode.JOURNAL_DATA_FL | Inode.NOTAIL_FL | Inode.DIRSYNC_FL
            | Inode.PROJINHERIT_FL | Inode.CASEFOLD_FL | Inode.DAX_FL;

    /**
     * ext4_mask_flags() of the directory's inherited flags: a directory takes them all, a regular
     * file all but the directory-only ones, anything else only nodump and noatime.
     */
    static int inherited(int dirFlags, int mode) {
        int flags = dirFlags & INHERITED;
        return switch (mode & Inode.S_IFMT) {
            case Inode.S_IFDIR -> flags;
            case Inode.S_IFREG -> flags & ~(Inode.DIRSYNC_FL | Inode.TOPDIR_FL | Inode.CASEFOLD_FL | Inode.PROJINHERIT_FL);
            default -> flags & (Inode.NODUMP_FL | Inode.NOATIME_FL);
        };
    }

    private InodeFlags() {
    }
}
