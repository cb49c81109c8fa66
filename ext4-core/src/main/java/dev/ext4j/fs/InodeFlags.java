package dev.ext4j.fs;

/**
 * The inode flags seen and set through FS_IOC_GETFLAGS / FS_IOC_SETFLAGS (lsattr, chattr): the
 * kernel's EXT4_FL_USER_VISIBLE and EXT4_FL_USER_MODIFIABLE (fs/ext4/ext4.h). The FS_*_FL values of
 * include/uapi/linux/fs.h are the ext4 bits, so no translation is needed.
 */
final class InodeFlags {
    /** EXT4_FL_USER_VISIBLE. */
    static final int USER_VISIBLE = 0x705BDFFF;
    /** EXT4_FL_USER_MODIFIABLE. */
    static final int USER_MODIFIABLE = 0x604BC0FF;

    private InodeFlags() {
    }
}
